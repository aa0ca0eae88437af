DROP TABLE artifact_deletion;
DROP TABLE artifact_claim;
