DROP TABLE staged_secret;
DROP TABLE upload_part;
DROP TABLE upload;
CREATE TABLE upload (
    id TEXT PRIMARY KEY NOT NULL,
    repository_id TEXT NOT NULL REFERENCES repository(id) ON DELETE CASCADE,
    size BIGINT NOT NULL DEFAULT 0,
    pulp_created TIMESTAMP NOT NULL,
    pulp_last_updated TIMESTAMP NOT NULL
);
CREATE INDEX upload_updated ON upload (pulp_last_updated);
