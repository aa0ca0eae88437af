-- Uploads belong to the path they were started on, not to a repository: a path's repository and
-- distribution are created only when a push to it stores something (a rejected push leaves
-- nothing behind). An upload's bytes are staged one file per request; a request claims its
-- byte range in upload_part, and the finishing PUT first claims the whole upload (committing),
-- so nothing can be added to bytes that are being verified. Uploads in flight at the upgrade are
-- dropped (their clients start again).
DROP TABLE upload;
CREATE TABLE upload (
    id TEXT PRIMARY KEY NOT NULL,
    base_path TEXT NOT NULL,
    size BIGINT NOT NULL DEFAULT 0,
    committing BOOLEAN NOT NULL DEFAULT 0,
    pulp_created TIMESTAMP NOT NULL,
    pulp_last_updated TIMESTAMP NOT NULL
);
CREATE INDEX upload_updated ON upload (pulp_last_updated);
CREATE TABLE upload_part (
    upload_id TEXT NOT NULL REFERENCES upload(id) ON DELETE CASCADE,
    start_offset BIGINT NOT NULL,
    size BIGINT NOT NULL,
    storage_key TEXT NOT NULL,
    PRIMARY KEY (upload_id, start_offset)
);

-- Secrets on their way to a remote through an update task: the task row names the staged
-- secret, never its value; the task takes it out when it applies the update.
CREATE TABLE staged_secret (
    id TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL,
    pulp_created TIMESTAMP NOT NULL
);
