-- OCI 1.1 referrers (issue 13): a manifest's `subject` digest, indexed so that
-- GET /v2/<name>/referrers/<digest> is one lookup, and the `artifactType` and `annotations`
-- (JSON text) that the referrers index lists for it. Rows stored before this migration are
-- filled in at startup by `models::content::index_subjects`.
ALTER TABLE manifest ADD COLUMN subject TEXT;
ALTER TABLE manifest ADD COLUMN artifact_type TEXT;
ALTER TABLE manifest ADD COLUMN annotations TEXT;
CREATE INDEX manifest_subject ON manifest (subject);
-- Whether a sync also brings what refers to each manifest (signatures, attestations, SBOMs).
ALTER TABLE remote ADD COLUMN include_referrers BOOLEAN NOT NULL DEFAULT TRUE;
