-- PostgreSQL twin of migrations/sqlite; keep both in step.
CREATE TABLE admin_user (
    username TEXT PRIMARY KEY NOT NULL,
    password_hash TEXT NOT NULL,
    pulp_created TIMESTAMP NOT NULL
);

CREATE TABLE remote (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL UNIQUE,
    url TEXT NOT NULL,
    upstream_name TEXT NOT NULL,
    policy TEXT NOT NULL,
    include_tags TEXT,
    exclude_tags TEXT,
    username TEXT,
    password TEXT,
    tls_validation BOOLEAN NOT NULL DEFAULT TRUE,
    ca_cert TEXT,
    proxy_url TEXT,
    download_concurrency INTEGER,
    connect_timeout DOUBLE PRECISION,
    total_timeout DOUBLE PRECISION,
    max_retries INTEGER,
    pulp_created TIMESTAMP NOT NULL,
    pulp_last_updated TIMESTAMP NOT NULL
);

CREATE TABLE repository (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL UNIQUE,
    description TEXT,
    remote_id TEXT REFERENCES remote(id) ON DELETE SET NULL,
    latest_version_number BIGINT NOT NULL DEFAULT 0,
    pulp_created TIMESTAMP NOT NULL,
    pulp_last_updated TIMESTAMP NOT NULL
);

CREATE TABLE repository_version (
    id TEXT PRIMARY KEY NOT NULL,
    repository_id TEXT NOT NULL REFERENCES repository(id) ON DELETE CASCADE,
    number BIGINT NOT NULL,
    base_version_id TEXT REFERENCES repository_version(id) ON DELETE SET NULL,
    pulp_created TIMESTAMP NOT NULL,
    UNIQUE (repository_id, number)
);

CREATE TABLE content (
    id TEXT PRIMARY KEY NOT NULL,
    pulp_type TEXT NOT NULL,
    pulp_created TIMESTAMP NOT NULL
);

CREATE TABLE blob (
    content_id TEXT PRIMARY KEY NOT NULL REFERENCES content(id) ON DELETE CASCADE,
    digest TEXT NOT NULL UNIQUE
);

CREATE TABLE manifest (
    content_id TEXT PRIMARY KEY NOT NULL REFERENCES content(id) ON DELETE CASCADE,
    digest TEXT NOT NULL UNIQUE,
    media_type TEXT NOT NULL,
    schema_version INTEGER NOT NULL,
    data BYTEA NOT NULL,
    config_blob_id TEXT REFERENCES blob(content_id)
);

CREATE TABLE manifest_blob (
    manifest_id TEXT NOT NULL REFERENCES manifest(content_id) ON DELETE CASCADE,
    blob_id TEXT NOT NULL REFERENCES blob(content_id),
    PRIMARY KEY (manifest_id, blob_id)
);

CREATE TABLE manifest_list_entry (
    list_id TEXT NOT NULL REFERENCES manifest(content_id) ON DELETE CASCADE,
    manifest_id TEXT NOT NULL REFERENCES manifest(content_id),
    architecture TEXT,
    os TEXT,
    PRIMARY KEY (list_id, manifest_id)
);

CREATE TABLE tag (
    content_id TEXT PRIMARY KEY NOT NULL REFERENCES content(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    tagged_manifest_id TEXT NOT NULL REFERENCES manifest(content_id),
    UNIQUE (name, tagged_manifest_id)
);

CREATE TABLE artifact (
    id TEXT PRIMARY KEY NOT NULL,
    sha256 TEXT NOT NULL UNIQUE,
    size BIGINT NOT NULL,
    storage_key TEXT NOT NULL,
    pulp_created TIMESTAMP NOT NULL
);

CREATE TABLE content_artifact (
    id TEXT PRIMARY KEY NOT NULL,
    content_id TEXT NOT NULL REFERENCES content(id) ON DELETE CASCADE,
    relative_path TEXT NOT NULL,
    artifact_id TEXT REFERENCES artifact(id),
    UNIQUE (content_id, relative_path)
);

CREATE TABLE remote_artifact (
    id TEXT PRIMARY KEY NOT NULL,
    content_artifact_id TEXT NOT NULL REFERENCES content_artifact(id) ON DELETE CASCADE,
    remote_id TEXT NOT NULL REFERENCES remote(id) ON DELETE CASCADE,
    url TEXT NOT NULL,
    sha256 TEXT,
    size BIGINT,
    UNIQUE (content_artifact_id, remote_id)
);

CREATE TABLE repository_content (
    id TEXT PRIMARY KEY NOT NULL,
    repository_id TEXT NOT NULL REFERENCES repository(id) ON DELETE CASCADE,
    content_id TEXT NOT NULL REFERENCES content(id),
    -- Version numbers within the repository (Pulp's scheme): content is in version N when
    -- version_added <= N and (version_removed IS NULL or version_removed > N).
    version_added BIGINT NOT NULL,
    version_removed BIGINT
);
CREATE INDEX repository_content_repo ON repository_content (repository_id, content_id);
CREATE INDEX repository_content_added ON repository_content (repository_id, version_added);

CREATE TABLE distribution (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL UNIQUE,
    base_path TEXT NOT NULL UNIQUE,
    repository_id TEXT REFERENCES repository(id) ON DELETE SET NULL,
    repository_version_id TEXT REFERENCES repository_version(id) ON DELETE SET NULL,
    private BOOLEAN NOT NULL DEFAULT FALSE,
    description TEXT,
    pulp_created TIMESTAMP NOT NULL,
    pulp_last_updated TIMESTAMP NOT NULL
);

CREATE TABLE task (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    state TEXT NOT NULL,
    args TEXT NOT NULL,
    worker TEXT,
    error TEXT,
    progress_reports TEXT NOT NULL,
    created_resources TEXT NOT NULL,
    reserved_resources TEXT NOT NULL,
    pulp_created TIMESTAMP NOT NULL,
    started_at TIMESTAMP,
    finished_at TIMESTAMP
);
CREATE INDEX task_state ON task (state, pulp_created);

-- A row per resource a running task holds; the primary key makes two holders impossible.
CREATE TABLE reserved_resource (
    resource TEXT PRIMARY KEY NOT NULL,
    task_id TEXT NOT NULL REFERENCES task(id) ON DELETE CASCADE
);

CREATE TABLE worker (
    name TEXT PRIMARY KEY NOT NULL,
    hostname TEXT NOT NULL,
    pid BIGINT NOT NULL,
    last_heartbeat TIMESTAMP NOT NULL
);
