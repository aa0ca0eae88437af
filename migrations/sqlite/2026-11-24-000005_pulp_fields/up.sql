-- Fields Pulp users send and read (issue 12). Labels and headers are JSON text: a label map
-- {"key": "value"}, headers a list of one-entry maps as Pulp takes them.
ALTER TABLE remote ADD COLUMN sock_connect_timeout DOUBLE;
ALTER TABLE remote ADD COLUMN sock_read_timeout DOUBLE;
ALTER TABLE remote ADD COLUMN headers TEXT;
ALTER TABLE remote ADD COLUMN rate_limit INTEGER;
ALTER TABLE remote ADD COLUMN client_cert TEXT;
ALTER TABLE remote ADD COLUMN client_key TEXT;
ALTER TABLE remote ADD COLUMN pulp_labels TEXT NOT NULL DEFAULT '{}';
ALTER TABLE repository ADD COLUMN pulp_labels TEXT NOT NULL DEFAULT '{}';
ALTER TABLE repository ADD COLUMN retain_repo_versions BIGINT;
ALTER TABLE distribution ADD COLUMN pulp_labels TEXT NOT NULL DEFAULT '{}';
ALTER TABLE distribution ADD COLUMN hidden BOOLEAN NOT NULL DEFAULT 0;
-- The correlation id of the request that dispatched a task (Pulp's logging_cid).
ALTER TABLE task ADD COLUMN logging_cid TEXT NOT NULL DEFAULT '';
ALTER TABLE task ADD COLUMN unblocked_at TIMESTAMP;
