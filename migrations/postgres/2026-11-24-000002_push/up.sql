-- Blob uploads in progress (push). The staged bytes live in the shared data directory under
-- uploads/<id>, so any replica can continue an upload another one started.
CREATE TABLE upload (
    id TEXT PRIMARY KEY NOT NULL,
    repository_id TEXT NOT NULL REFERENCES repository(id) ON DELETE CASCADE,
    size BIGINT NOT NULL DEFAULT 0,
    pulp_created TIMESTAMP NOT NULL,
    pulp_last_updated TIMESTAMP NOT NULL
);
CREATE INDEX upload_updated ON upload (pulp_last_updated);

-- Blobs pushed to a repository and not yet part of a version: a manifest push adds them.
CREATE TABLE pushed_blob (
    repository_id TEXT NOT NULL REFERENCES repository(id) ON DELETE CASCADE,
    blob_id TEXT NOT NULL REFERENCES blob(content_id) ON DELETE CASCADE,
    pulp_created TIMESTAMP NOT NULL,
    PRIMARY KEY (repository_id, blob_id)
);

-- Server-wide settings shared by replicas (the token signing secret).
CREATE TABLE setting (
    name TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);
