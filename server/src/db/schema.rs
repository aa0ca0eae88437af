// Mirrors migrations/{sqlite,postgres}; written by hand because diesel's print-schema
// speaks to one backend at a time.

diesel::table! {
    admin_user (username) {
        username -> Text,
        password_hash -> Text,
        pulp_created -> Timestamp,
    }
}

diesel::table! {
    remote (id) {
        id -> Text,
        name -> Text,
        url -> Text,
        upstream_name -> Text,
        policy -> Text,
        include_tags -> Nullable<Text>,
        exclude_tags -> Nullable<Text>,
        username -> Nullable<Text>,
        password -> Nullable<Text>,
        tls_validation -> Bool,
        ca_cert -> Nullable<Text>,
        proxy_url -> Nullable<Text>,
        download_concurrency -> Nullable<Integer>,
        connect_timeout -> Nullable<Double>,
        total_timeout -> Nullable<Double>,
        max_retries -> Nullable<Integer>,
        pulp_created -> Timestamp,
        pulp_last_updated -> Timestamp,
        sock_connect_timeout -> Nullable<Double>,
        sock_read_timeout -> Nullable<Double>,
        headers -> Nullable<Text>,
        rate_limit -> Nullable<Integer>,
        client_cert -> Nullable<Text>,
        client_key -> Nullable<Text>,
        pulp_labels -> Text,
        include_referrers -> Bool,
        kind -> Text,
        tag_ttl -> BigInt,
        retry_in_background -> Bool,
        prefetch -> Bool,
    }
}

diesel::table! {
    repository (id) {
        id -> Text,
        name -> Text,
        description -> Nullable<Text>,
        remote_id -> Nullable<Text>,
        latest_version_number -> BigInt,
        pulp_created -> Timestamp,
        pulp_last_updated -> Timestamp,
        pulp_labels -> Text,
        retain_repo_versions -> Nullable<BigInt>,
    }
}

diesel::table! {
    repository_version (id) {
        id -> Text,
        repository_id -> Text,
        number -> BigInt,
        base_version_id -> Nullable<Text>,
        pulp_created -> Timestamp,
    }
}

diesel::table! {
    content (id) {
        id -> Text,
        pulp_type -> Text,
        pulp_created -> Timestamp,
    }
}

diesel::table! {
    blob (content_id) {
        content_id -> Text,
        digest -> Text,
    }
}

diesel::table! {
    manifest (content_id) {
        content_id -> Text,
        digest -> Text,
        media_type -> Text,
        schema_version -> Integer,
        data -> Binary,
        config_blob_id -> Nullable<Text>,
        subject -> Nullable<Text>,
        artifact_type -> Nullable<Text>,
        annotations -> Nullable<Text>,
    }
}

diesel::table! {
    manifest_blob (manifest_id, blob_id) {
        manifest_id -> Text,
        blob_id -> Text,
    }
}

diesel::table! {
    manifest_list_entry (list_id, manifest_id) {
        list_id -> Text,
        manifest_id -> Text,
        architecture -> Nullable<Text>,
        os -> Nullable<Text>,
    }
}

diesel::table! {
    tag (content_id) {
        content_id -> Text,
        name -> Text,
        tagged_manifest_id -> Text,
    }
}

diesel::table! {
    artifact (id) {
        id -> Text,
        sha256 -> Text,
        size -> BigInt,
        storage_key -> Text,
        pulp_created -> Timestamp,
    }
}

diesel::table! {
    content_artifact (id) {
        id -> Text,
        content_id -> Text,
        relative_path -> Text,
        artifact_id -> Nullable<Text>,
    }
}

diesel::table! {
    remote_artifact (id) {
        id -> Text,
        content_artifact_id -> Text,
        remote_id -> Text,
        url -> Text,
        sha256 -> Nullable<Text>,
        size -> Nullable<BigInt>,
    }
}

diesel::table! {
    repository_content (id) {
        id -> Text,
        repository_id -> Text,
        content_id -> Text,
        version_added -> BigInt,
        version_removed -> Nullable<BigInt>,
    }
}

diesel::table! {
    distribution (id) {
        id -> Text,
        name -> Text,
        base_path -> Text,
        repository_id -> Nullable<Text>,
        repository_version_id -> Nullable<Text>,
        private -> Bool,
        description -> Nullable<Text>,
        pulp_created -> Timestamp,
        pulp_last_updated -> Timestamp,
        pulp_labels -> Text,
        hidden -> Bool,
        kind -> Text,
        remote_id -> Nullable<Text>,
        pull_through_id -> Nullable<Text>,
    }
}

diesel::table! {
    task (id) {
        id -> Text,
        name -> Text,
        state -> Text,
        args -> Text,
        worker -> Nullable<Text>,
        error -> Nullable<Text>,
        progress_reports -> Text,
        created_resources -> Text,
        reserved_resources -> Text,
        pulp_created -> Timestamp,
        started_at -> Nullable<Timestamp>,
        finished_at -> Nullable<Timestamp>,
        logging_cid -> Text,
        unblocked_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    reserved_resource (resource) {
        resource -> Text,
        task_id -> Text,
    }
}

diesel::table! {
    worker (name) {
        name -> Text,
        hostname -> Text,
        pid -> BigInt,
        last_heartbeat -> Timestamp,
    }
}

diesel::table! {
    artifact_claim (id) {
        id -> Text,
        sha256 -> Text,
        created -> Timestamp,
    }
}

diesel::table! {
    artifact_deletion (sha256) {
        sha256 -> Text,
        created -> Timestamp,
    }
}

diesel::joinable!(repository_version -> repository (repository_id));
diesel::joinable!(blob -> content (content_id));
diesel::joinable!(manifest -> content (content_id));
diesel::joinable!(tag -> content (content_id));
diesel::joinable!(content_artifact -> content (content_id));
diesel::joinable!(content_artifact -> artifact (artifact_id));
diesel::joinable!(remote_artifact -> content_artifact (content_artifact_id));
diesel::joinable!(repository_content -> content (content_id));
diesel::joinable!(reserved_resource -> task (task_id));

diesel::allow_tables_to_appear_in_same_query!(
    admin_user, remote, repository, repository_version, content, blob, manifest, manifest_blob,
    manifest_list_entry, tag, artifact, content_artifact, remote_artifact, repository_content,
    distribution, task, reserved_resource, worker, upload, pushed_blob, setting, upload_part, staged_secret, blob_lease, artifact_claim, artifact_deletion, tag_check, sync_schedule,
);

diesel::table! {
    upload (id) {
        id -> Text,
        base_path -> Text,
        size -> BigInt,
        committing -> Bool,
        pulp_created -> Timestamp,
        pulp_last_updated -> Timestamp,
    }
}

diesel::table! {
    upload_part (upload_id, start_offset) {
        upload_id -> Text,
        start_offset -> BigInt,
        size -> BigInt,
        storage_key -> Text,
    }
}

diesel::table! {
    staged_secret (id) {
        id -> Text,
        value -> Text,
        pulp_created -> Timestamp,
    }
}

diesel::table! {
    pushed_blob (repository_id, blob_id) {
        repository_id -> Text,
        blob_id -> Text,
        pulp_created -> Timestamp,
    }
}

diesel::table! {
    setting (name) {
        name -> Text,
        value -> Text,
    }
}


diesel::table! {
    blob_lease (digest) {
        digest -> Text,
        owner -> Text,
        address -> Text,
        expires_at -> Timestamp,
    }
}

diesel::table! {
    tag_check (repository_id, name) {
        repository_id -> Text,
        name -> Text,
        checked_at -> Timestamp,
    }
}

diesel::table! {
    sync_schedule (id) {
        id -> Text,
        repository_id -> Text,
        remote_id -> Text,
        interval_seconds -> BigInt,
        mirror -> Bool,
        enabled -> Bool,
        next_run -> Nullable<Timestamp>,
        last_task_id -> Nullable<Text>,
        failures -> Integer,
        backoff_ms -> BigInt,
        pulp_created -> Timestamp,
        pulp_last_updated -> Timestamp,
    }
}
