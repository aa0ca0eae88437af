ALTER TABLE remote DROP COLUMN include_referrers;
DROP INDEX manifest_subject;
ALTER TABLE manifest DROP COLUMN annotations;
ALTER TABLE manifest DROP COLUMN artifact_type;
ALTER TABLE manifest DROP COLUMN subject;
