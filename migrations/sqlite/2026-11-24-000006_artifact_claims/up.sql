-- Orphan cleanup deletes stored objects; a writer may at the same moment find the same bytes
-- already stored and keep them. Each side announces itself before deciding (a writer's claim
-- before it keeps or writes an object, cleanup's marker before it deletes one) and then looks
-- for the other: at least one of them sees the other, so a kept object is never deleted.
CREATE TABLE artifact_claim (
    id TEXT PRIMARY KEY NOT NULL,
    sha256 TEXT NOT NULL,
    created TIMESTAMP NOT NULL
);
CREATE INDEX artifact_claim_sha256 ON artifact_claim (sha256);
CREATE TABLE artifact_deletion (
    sha256 TEXT PRIMARY KEY NOT NULL,
    created TIMESTAMP NOT NULL
);
