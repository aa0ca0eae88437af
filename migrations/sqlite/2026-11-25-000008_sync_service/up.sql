-- The sync service (issue 14).
--
-- Pull-through: a remote of kind 'pull-through' names an upstream registry, not one repository
-- (its upstream_name is empty; includes/excludes are wildcards over upstream repository names).
-- A distribution of kind 'pull-through' serves it under its base path; each upstream repository
-- a client asks for gets a remote, a repository and a distribution of kind 'container' named
-- '<base_path>/<upstream name>', whose pull_through_id is that pull-through distribution.
ALTER TABLE remote ADD COLUMN kind TEXT NOT NULL DEFAULT 'container';
-- Seconds a pull-through tag is served before it is checked upstream again (0: every time).
ALTER TABLE remote ADD COLUMN tag_ttl BIGINT NOT NULL DEFAULT 300;
-- Whether an on-demand download that failed for a transient cause is retried in the background.
ALTER TABLE remote ADD COLUMN retry_in_background BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE distribution ADD COLUMN kind TEXT NOT NULL DEFAULT 'container';
ALTER TABLE distribution ADD COLUMN remote_id TEXT REFERENCES remote(id) ON DELETE SET NULL;
ALTER TABLE distribution ADD COLUMN pull_through_id TEXT REFERENCES distribution(id) ON DELETE SET NULL;
CREATE INDEX distribution_pull_through ON distribution (pull_through_id);
CREATE INDEX distribution_kind ON distribution (kind);

-- When a pull-through repository's tag was last found current upstream.
CREATE TABLE tag_check (
    repository_id TEXT NOT NULL REFERENCES repository(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    checked_at TIMESTAMP NOT NULL,
    PRIMARY KEY (repository_id, name)
);

-- A repository synced from a remote every interval_seconds; after failures the next attempt
-- comes backoff_ms after the last, doubling up to the interval. next_run is NULL while the
-- task last_task_id (dispatched by the schedule) has not finished.
CREATE TABLE sync_schedule (
    id TEXT PRIMARY KEY NOT NULL,
    repository_id TEXT NOT NULL UNIQUE REFERENCES repository(id) ON DELETE CASCADE,
    remote_id TEXT NOT NULL REFERENCES remote(id) ON DELETE CASCADE,
    interval_seconds BIGINT NOT NULL,
    mirror BOOLEAN NOT NULL DEFAULT FALSE,
    enabled BOOLEAN NOT NULL DEFAULT TRUE,
    next_run TIMESTAMP,
    last_task_id TEXT,
    failures INTEGER NOT NULL DEFAULT 0,
    backoff_ms BIGINT NOT NULL DEFAULT 0,
    pulp_created TIMESTAMP NOT NULL,
    pulp_last_updated TIMESTAMP NOT NULL
);
CREATE INDEX sync_schedule_next_run ON sync_schedule (next_run);
