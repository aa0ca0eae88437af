//! The management API as a client sees it: CRUD, validation, auth, pagination, the OpenAPI
//! document. Every test runs on SQLite and on PostgreSQL.

mod support;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::{Backend, TestServer};

const REMOTES: &str = "remotes/container/container/";
const REPOS: &str = "repositories/container/container/";
const DISTS: &str = "distributions/container/container/";

fn remote_body(name: &str) -> Value {
    json!({
        "name": name,
        "url": "http://127.0.0.1:5001",
        "upstream_name": "library/busybox",
        "policy": "on_demand",
        "username": "puller",
        "password": "s3cret",
    })
}

async fn status_is_public_and_reports_the_database(backend: Backend) {
    let s = TestServer::start(backend).await;
    let resp = reqwest::get(s.url("status/")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["database_connection"]["connected"], true);
    let expected = if backend == Backend::Sqlite { "sqlite" } else { "postgresql" };
    assert_eq!(body["database_connection"]["backend"], expected);
    // Pulp's shape, and the same versions the document advertises (pulp-cli compares them).
    let doc: Value = reqwest::get(s.url("docs/api.json")).await.unwrap().json().await.unwrap();
    let advertised = doc["info"]["x-pulp-app-versions"].as_object().unwrap().clone();
    let reported: serde_json::Map<String, Value> =
        body["versions"].as_array().unwrap().iter().map(|v| (v["component"].as_str().unwrap().to_string(), v["version"].clone())).collect();
    assert_eq!(reported, advertised);
    assert_eq!(reported["core"], "3.85.0");
    assert!(reported.contains_key("container") && reported.contains_key("pulpish"));
    let workers = body["online_workers"].as_array().unwrap();
    assert_eq!(workers.len(), 2, "{body}");
    for w in workers {
        let (status, worker) = s.get(w["pulp_href"].as_str().unwrap()).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(worker["name"], w["name"]);
        assert_eq!(worker["online"], true);
    }
    assert_eq!(body["online_api_apps"].as_array().unwrap().len(), 1);
    assert_eq!(body["content_settings"]["content_path_prefix"], "/v2/");
    assert_eq!(body["redis_connection"]["connected"], false);
    if backend == Backend::S3 {
        assert_eq!(body["storage"]["backend"], "s3");
        assert!(body["storage"]["free"].is_null(), "an object store's free space is unknown: {body}");
    } else {
        assert_eq!(body["storage"]["backend"], "filesystem");
        let (total, used, free) = (&body["storage"]["total"], &body["storage"]["used"], &body["storage"]["free"]);
        assert!(free.as_u64().unwrap() > 0);
        assert_eq!(total.as_u64().unwrap(), used.as_u64().unwrap() + free.as_u64().unwrap(), "{body}");
    }
}

async fn everything_else_needs_credentials(backend: Backend) {
    let s = TestServer::start(backend).await;
    for path in [REMOTES, REPOS, DISTS, "tasks/", "artifacts/", "content/container/blobs/"] {
        let resp = reqwest::get(s.url(path)).await.unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(resp.headers()["content-type"], "application/json");
        assert!(resp.headers().contains_key("www-authenticate"));
        let body: Value = resp.json().await.unwrap();
        assert!(body["detail"].as_str().unwrap().contains("credentials"), "{body}");
    }
    let wrong = s.client.get(s.url(REMOTES)).basic_auth("admin", Some("wrong")).send().await.unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    // A rejected create leaves nothing behind.
    let anon = s.client.post(s.url(REMOTES)).json(&remote_body("anon")).send().await.unwrap();
    assert_eq!(anon.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(s.count(REMOTES).await, 0);
    let docs = reqwest::get(s.url("docs/api.json")).await.unwrap();
    assert_eq!(docs.status(), StatusCode::OK);
}

async fn remote_lifecycle(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (status, remote) = s.post(REMOTES, remote_body("upstream")).await;
    assert_eq!(status, StatusCode::CREATED, "{remote}");
    let href = remote["pulp_href"].as_str().unwrap().to_string();
    assert!(href.starts_with("/pulp/api/v3/remotes/container/container/") && href.ends_with('/'));
    assert_eq!(remote["policy"], "on_demand");
    assert_eq!(remote["upstream_name"], "library/busybox");
    assert_eq!(remote["tls_validation"], true);
    assert!(remote.get("password").is_none() && remote.get("username").is_none(), "write-only: {remote}");
    assert_eq!(
        remote["hidden_fields"],
        json!([{"name": "username", "is_set": true}, {"name": "password", "is_set": true}, {"name": "proxy_username", "is_set": false}, {"name": "proxy_password", "is_set": false}, {"name": "client_key", "is_set": false}])
    );

    let (status, read) = s.get(&href).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(read["name"], "upstream");

    // PATCH runs as a task and changes only what it names.
    s.completed(s.patch(&href, json!({"policy": "streamed", "include_tags": ["latest", "1.*"], "password": null})).await).await;
    let (_, read) = s.get(&href).await;
    assert_eq!(read["policy"], "streamed");
    assert_eq!(read["include_tags"], json!(["latest", "1.*"]));
    assert_eq!(read["url"], "http://127.0.0.1:5001");
    assert_eq!(read["hidden_fields"][1], json!({"name": "password", "is_set": false}));

    // PUT replaces: what it leaves out returns to the default.
    s.completed(s.put(&href, json!({"name": "upstream", "url": "https://example.test", "upstream_name": "x/y"})).await).await;
    let (_, read) = s.get(&href).await;
    assert_eq!(read["policy"], "immediate");
    assert_eq!(read["include_tags"], Value::Null);
    assert_eq!(read["url"], "https://example.test");

    s.completed(s.delete(&href).await).await;
    let (status, body) = s.get(&href).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["detail"], "Not found.");
    assert_eq!(s.count(REMOTES).await, 0);
}

async fn lists_paginate_and_filter(backend: Backend) {
    let s = TestServer::start(backend).await;
    for name in ["alpha", "beta", "gamma", "alphabet", "delta"] {
        let (status, body) = s.post(REMOTES, remote_body(name)).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let (_, page) = s.get(&format!("{REMOTES}?limit=2&offset=2")).await;
    assert_eq!(page["count"], 5);
    assert_eq!(page["results"].as_array().unwrap().len(), 2);
    let next = page["next"].as_str().unwrap();
    assert!(next.contains("limit=2") && next.contains("offset=4"), "{next}");
    let prev = page["previous"].as_str().unwrap();
    assert!(prev.contains("offset=0"), "{prev}");
    let (_, last) = s.get(next).await;
    assert_eq!(last["results"].as_array().unwrap().len(), 1);
    assert_eq!(last["next"], Value::Null);

    let (_, exact) = s.get(&format!("{REMOTES}?name=alpha")).await;
    assert_eq!(exact["count"], 1);
    let (_, contains) = s.get(&format!("{REMOTES}?name__contains=alpha")).await;
    assert_eq!(contains["count"], 2);
    let (_, none) = s.get(&format!("{REMOTES}?name__contains=%25")).await;
    assert_eq!(none["count"], 0, "% is matched literally");

    let (status, body) = s.get(&format!("{REMOTES}?limit=0")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["limit"].is_array(), "{body}");
    let (status, _) = s.get(&format!("{REMOTES}?limit=abc")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

/// Each bad remote body gets a 400 naming the field, and no row is written.
async fn bad_remotes_are_rejected_per_field(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (status, _) = s.post(REMOTES, remote_body("taken")).await;
    assert_eq!(status, StatusCode::CREATED);
    let cases: Vec<(Value, &str)> = vec![
        (json!({"url": "http://a", "upstream_name": "a"}), "name"),
        (json!({"name": "n", "upstream_name": "a"}), "url"),
        (json!({"name": "n", "url": "http://a"}), "upstream_name"),
        (json!({"name": "taken", "url": "http://a", "upstream_name": "a"}), "name"),
        (json!({"name": "n", "url": "not a url", "upstream_name": "a"}), "url"),
        (json!({"name": "n", "url": "ftp://host/x", "upstream_name": "a"}), "url"),
        (json!({"name": "n", "url": "http://a", "upstream_name": "a", "policy": "lazy"}), "policy"),
        (json!({"name": "n", "url": "http://a", "upstream_name": "Upper"}), "upstream_name"),
        (json!({"name": "n", "url": "http://a", "upstream_name": "a", "download_concurrency": 0}), "download_concurrency"),
        (json!({"name": "n", "url": "http://a", "upstream_name": "a", "download_concurrency": "ten"}), "download_concurrency"),
        (json!({"name": "n", "url": "http://a", "upstream_name": "a", "tls_validation": "yes"}), "tls_validation"),
        (json!({"name": "", "url": "http://a", "upstream_name": "a"}), "name"),
    ];
    for (body, field) in cases {
        let (status, errors) = s.post(REMOTES, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        let messages = errors[field].as_array().unwrap_or_else(|| panic!("no '{field}' in {errors} for {body}"));
        assert!(!messages.is_empty() && messages[0].as_str().unwrap().len() > 5, "{errors}");
    }
    let (status, body) = s.post_raw(REMOTES, "{\"name\": ").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["detail"].as_str().unwrap().contains("JSON parse error"), "{body}");
    let (status, _) = s.post_raw(REMOTES, "[1, 2]").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(s.count(REMOTES).await, 1);

    // A bad update is refused before any task is queued and changes nothing.
    let (_, list) = s.get(REMOTES).await;
    let href = list["results"][0]["pulp_href"].as_str().unwrap().to_string();
    let (status, body) = s.patch(&href, json!({"url": "nope"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(s.count("tasks/").await, 0);
    let (_, read) = s.get(&href).await;
    assert_eq!(read["url"], "http://127.0.0.1:5001");

    for missing in [
        "/pulp/api/v3/remotes/container/container/00000000-0000-0000-0000-000000000000/",
        "/pulp/api/v3/remotes/container/container/not-a-uuid/",
    ] {
        let (status, body) = s.get(missing).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{missing}");
        assert_eq!(body["detail"], "Not found.");
        let (status, _) = s.patch(missing, json!({"policy": "immediate"})).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _) = s.delete(missing).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
}

async fn repository_lifecycle_and_versions(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (_, remote) = s.post(REMOTES, remote_body("r")).await;
    let remote_href = remote["pulp_href"].as_str().unwrap();
    let (status, repo) = s.post(REPOS, json!({"name": "busybox", "remote": remote_href})).await;
    assert_eq!(status, StatusCode::CREATED, "{repo}");
    let href = repo["pulp_href"].as_str().unwrap().to_string();
    assert_eq!(repo["remote"], remote_href);
    assert_eq!(repo["versions_href"], format!("{href}versions/"));
    assert_eq!(repo["latest_version_href"], format!("{href}versions/0/"));

    let (_, versions) = s.get(repo["versions_href"].as_str().unwrap()).await;
    assert_eq!(versions["count"], 1);
    let v0 = &versions["results"][0];
    assert_eq!(v0["number"], 0);
    assert_eq!(v0["repository"], href.as_str());
    assert_eq!(v0["content_summary"], json!({"added": {}, "removed": {}, "present": {}}));
    let (status, _) = s.get(&format!("{href}versions/7/")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Content lists filtered by this (empty) version are empty; an unknown version is a 400.
    for kind in ["blobs", "manifests", "tags"] {
        let (status, body) = s.get(&format!("content/container/{kind}/?repository_version={href}versions/0/")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["count"], 0);
        let (status, body) = s.get(&format!("content/container/{kind}/?repository_version={href}versions/9/")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body["repository_version"].is_array(), "{body}");
    }

    let (status, body) = s.post(REPOS, json!({"name": "busybox"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["name"][0], "repository with this name already exists.");
    let (status, body) = s.post(REPOS, json!({"name": "other", "remote": "/pulp/api/v3/remotes/container/container/00000000-0000-0000-0000-000000000000/"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["remote"][0].as_str().unwrap().contains("does not exist"), "{body}");
    assert_eq!(s.count(REPOS).await, 1);

    s.completed(s.patch(&href, json!({"description": "mirrors busybox", "remote": null})).await).await;
    let (_, read) = s.get(&href).await;
    assert_eq!(read["description"], "mirrors busybox");
    assert_eq!(read["remote"], Value::Null);

    s.completed(s.delete(&href).await).await;
    assert_eq!(s.get(&href).await.0, StatusCode::NOT_FOUND);
    assert_eq!(s.get(&format!("{href}versions/0/")).await.0, StatusCode::NOT_FOUND);
}

async fn distribution_lifecycle(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (_, repo) = s.post(REPOS, json!({"name": "busybox"})).await;
    let repo_href = repo["pulp_href"].as_str().unwrap();
    let task = s
        .completed(s.post(DISTS, json!({"name": "bb", "base_path": "library/busybox", "repository": repo_href})).await)
        .await;
    let created = task["created_resources"][0].as_str().unwrap().to_string();
    assert!(created.starts_with("/pulp/api/v3/distributions/container/container/"), "{task}");
    let (status, dist) = s.get(&created).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(dist["base_path"], "library/busybox");
    assert_eq!(dist["repository"], repo_href);
    assert_eq!(dist["repository_version"], Value::Null);
    assert_eq!(dist["private"], false);
    assert!(dist["registry_path"].as_str().unwrap().ends_with("/library/busybox"));

    // Pinning a version clears `repository`, as in Pulp.
    let v0 = format!("{repo_href}versions/0/");
    s.completed(s.patch(&created, json!({"repository_version": v0})).await).await;
    let (_, dist) = s.get(&created).await;
    assert_eq!(dist["repository_version"], v0.as_str());
    assert_eq!(dist["repository"], Value::Null);

    let (_, by_path) = s.get(&format!("{DISTS}?base_path=library/busybox")).await;
    assert_eq!(by_path["count"], 1);

    s.completed(s.delete(&created).await).await;
    assert_eq!(s.count(DISTS).await, 0);
}

async fn bad_distributions_are_rejected_and_queue_nothing(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (_, repo) = s.post(REPOS, json!({"name": "busybox"})).await;
    let repo_href = repo["pulp_href"].as_str().unwrap().to_string();
    s.completed(s.post(DISTS, json!({"name": "taken", "base_path": "taken/path"})).await).await;
    let tasks_before = s.count("tasks/").await;
    let v0 = format!("{repo_href}versions/0/");
    let cases: Vec<(Value, &str)> = vec![
        (json!({"base_path": "a"}), "name"),
        (json!({"name": "d"}), "base_path"),
        (json!({"name": "d", "base_path": "../etc"}), "base_path"),
        (json!({"name": "d", "base_path": "a/../b"}), "base_path"),
        (json!({"name": "d", "base_path": "Library/Busybox"}), "base_path"),
        (json!({"name": "d", "base_path": "/leading"}), "base_path"),
        (json!({"name": "d", "base_path": "trailing/"}), "base_path"),
        (json!({"name": "d", "base_path": "sp ace"}), "base_path"),
        (json!({"name": "d", "base_path": "taken/path"}), "base_path"),
        (json!({"name": "taken", "base_path": "free"}), "name"),
        (json!({"name": "d", "base_path": "ok", "repository": repo_href, "repository_version": v0}), "non_field_errors"),
        (json!({"name": "d", "base_path": "ok", "repository": "/pulp/api/v3/repositories/container/container/00000000-0000-0000-0000-000000000000/"}), "repository"),
        (json!({"name": "d", "base_path": "ok", "repository": "garbage"}), "repository"),
        (json!({"name": "d", "base_path": "ok", "repository_version": format!("{repo_href}versions/5/")}), "repository_version"),
        (json!({"name": "d", "base_path": "ok", "private": "no"}), "private"),
    ];
    for (body, field) in cases {
        let (status, errors) = s.post(DISTS, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {errors}");
        assert!(errors[field].is_array(), "expected '{field}' in {errors} for {body}");
    }
    assert_eq!(s.count("tasks/").await, tasks_before, "no task may be queued for a bad request");
    assert_eq!(s.count(DISTS).await, 1);
}

async fn artifacts_and_content_start_empty(backend: Backend) {
    let s = TestServer::start(backend).await;
    for path in ["artifacts/", "content/container/blobs/", "content/container/manifests/", "content/container/tags/"] {
        let (status, body) = s.get(path).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(body, json!({"count": 0, "next": null, "previous": null, "results": []}));
    }
    let (status, _) = s.get("artifacts/00000000-0000-0000-0000-000000000000/").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// Out-of-range numbers on a remote (`total_timeout: 1e308` once panicked the fetcher) are a
/// 400 naming the field, on create, PUT and PATCH, and nothing is written or queued.
async fn remote_numbers_are_bounded(backend: Backend) {
    let s = TestServer::start(backend).await;
    let with = |extra: Value| {
        let mut body = json!({"name": "n", "url": "http://a", "upstream_name": "a"});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        body
    };
    let bad: Vec<(Value, &str)> = vec![
        (json!({"total_timeout": 1e308}), "total_timeout"),
        (json!({"total_timeout": 86400.5}), "total_timeout"),
        (json!({"total_timeout": 0}), "total_timeout"),
        (json!({"connect_timeout": -1.0}), "connect_timeout"),
        (json!({"connect_timeout": 1e308}), "connect_timeout"),
        (json!({"max_retries": 101}), "max_retries"),
        (json!({"max_retries": -1}), "max_retries"),
        (json!({"max_retries": 1e300}), "max_retries"),
        (json!({"download_concurrency": 101}), "download_concurrency"),
        (json!({"download_concurrency": 9_223_372_036_854_775_807i64}), "download_concurrency"),
        (json!({"download_concurrency": 2.5}), "download_concurrency"),
    ];
    for (extra, field) in &bad {
        let (status, errors) = s.post(REMOTES, with(extra.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{extra}: {errors}");
        assert!(errors[field].is_array(), "expected '{field}' in {errors} for {extra}");
    }
    let (status, raw) = s.post_raw(REMOTES, r#"{"name": "n", "url": "http://a", "upstream_name": "a", "total_timeout": 1e400}"#).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{raw}");
    assert_eq!(s.count(REMOTES).await, 0, "no remote may be written");

    // The bounds themselves, and integers written with a zero fraction (JSON Schema integers), pass.
    let (status, remote) = s
        .post(REMOTES, with(json!({"total_timeout": 86400, "connect_timeout": 0.5, "max_retries": 100, "download_concurrency": 26.0})))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{remote}");
    assert_eq!(remote["download_concurrency"], 26);
    let href = remote["pulp_href"].as_str().unwrap().to_string();
    let tasks_before = s.count("tasks/").await;
    for (extra, field) in &bad {
        let (status, errors) = s.patch(&href, extra.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "PATCH {extra}: {errors}");
        assert!(errors[field].is_array(), "PATCH: expected '{field}' in {errors}");
        let (status, errors) = s.put(&href, with(extra.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "PUT {extra}: {errors}");
        assert!(errors[field].is_array(), "PUT: expected '{field}' in {errors}");
    }
    assert_eq!(s.count("tasks/").await, tasks_before, "no task may be queued for a bad update");
    let (_, read) = s.get(&href).await;
    assert_eq!(read["total_timeout"], 86400.0);
    assert_eq!(read["max_retries"], 100);
}

/// NUL characters (which PostgreSQL cannot store in text) in JSON strings and in query
/// filters are a 400 naming the field or parameter, on both backends, and nothing is written.
async fn nul_characters_are_bad_input(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (_, repo) = s.post(REPOS, json!({"name": "repo"})).await;
    let repo_href = repo["pulp_href"].as_str().unwrap().to_string();
    let (_, remote) = s.post(REMOTES, remote_body("remote")).await;
    let remote_href = remote["pulp_href"].as_str().unwrap().to_string();
    let tasks_before = s.count("tasks/").await;

    let creates: Vec<(&str, Value, &str)> = vec![
        (REMOTES, json!({"name": "a\u{0}b", "url": "http://a", "upstream_name": "a"}), "name"),
        (REMOTES, json!({"name": "n", "url": "http://a", "upstream_name": "a", "ca_cert": "x\u{0}"}), "ca_cert"),
        (REMOTES, json!({"name": "n", "url": "http://a", "upstream_name": "a", "include_tags": ["ok", "\u{0}"]}), "include_tags"),
        (REMOTES, json!({"name": "n", "url": "http://a", "upstream_name": "a", "password": "\u{0}"}), "password"),
        (REPOS, json!({"name": "r\u{0}"}), "name"),
        (REPOS, json!({"name": "r", "description": "\u{0}"}), "description"),
        (DISTS, json!({"name": "d", "base_path": "a\u{0}"}), "base_path"),
        (DISTS, json!({"name": "d", "base_path": "d", "description": "\u{0}"}), "description"),
    ];
    for (path, body, field) in creates {
        let (status, errors) = s.post(path, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {errors}");
        assert_eq!(errors[field][0], "Null characters are not allowed.", "{body}: {errors}");
    }
    for (href, body, field) in [
        (&remote_href, json!({"upstream_name": "x\u{0}"}), "upstream_name"),
        (&remote_href, json!({"username": "\u{0}"}), "username"),
        (&repo_href, json!({"description": "\u{0}"}), "description"),
    ] {
        let (status, errors) = s.patch(href, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "PATCH {body}: {errors}");
        assert!(errors[field].is_array(), "{errors}");
    }
    let (status, errors) = s.post(&format!("{repo_href}sync/"), json!({"remote": "\u{0}"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{errors}");
    assert!(errors["remote"].is_array(), "{errors}");
    let (status, errors) = s.patch("tasks/00000000-0000-0000-0000-000000000000/", json!({"state": "cancel\u{0}ed"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{errors}");
    // An unknown field is refused by name (before its NUL is looked at), as Pulp refuses it.
    let (status, body) = s.post(REPOS, json!({"name": "other", "unknown": "\u{0}"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body, json!({"unknown": ["Unexpected field"]}));
    assert_eq!(s.count(REMOTES).await, 1);
    assert_eq!(s.count(REPOS).await, 1);
    assert_eq!(s.count(DISTS).await, 0);
    assert_eq!(s.count("tasks/").await, tasks_before, "no task may be queued");

    for (path, param) in [
        (REMOTES, "name"),
        (REMOTES, "name__contains"),
        (REPOS, "name"),
        (DISTS, "base_path"),
        ("tasks/", "name"),
        ("artifacts/", "sha256"),
        ("content/container/blobs/", "digest"),
        ("content/container/tags/", "name"),
        ("content/container/manifests/", "repository_version"),
        (REMOTES, "limit"),
    ] {
        let (status, errors) = s.get(&format!("{path}?{param}=a%00b")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}?{param}: {errors}");
        assert_eq!(errors[param][0], "Null characters are not allowed.", "{path}?{param}: {errors}");
    }
    let (status, _) = s.get(&format!("{REMOTES}?a%00=1")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // A NUL in a path id names nothing.
    let (status, _) = s.get(&format!("{REMOTES}a%00b/")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// `limit` is 1..=1000 and `offset` 0..=i64::MAX; past the end there is no `next` (it once
/// overflowed into a negative offset); out of range is a 400 naming the parameter.
async fn pagination_is_bounded(backend: Backend) {
    let s = TestServer::start(backend).await;
    for name in ["a", "b", "c"] {
        s.post(REMOTES, remote_body(name)).await;
    }
    let max = i64::MAX;
    let (status, page) = s.get(&format!("{REMOTES}?offset={max}")).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["count"], 3);
    assert_eq!(page["next"], Value::Null, "{page}");
    assert_eq!(page["results"], json!([]));
    let previous = page["previous"].as_str().unwrap();
    assert!(previous.contains(&format!("offset={}", max - 100)), "{previous}");
    let (status, page) = s.get(&format!("{REMOTES}?offset={}&limit=1000", max - 1)).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["next"], Value::Null, "{page}");

    for (query, param) in [
        ("offset=9223372036854775808", "offset"),
        ("offset=-1", "offset"),
        ("offset=x", "offset"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=9223372036854775807", "limit"),
        ("limit=-5", "limit"),
    ] {
        let (status, errors) = s.get(&format!("{REMOTES}?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {errors}");
        assert!(errors[param][0].as_str().unwrap().len() > 10, "{query}: {errors}");
    }
    let (status, page) = s.get(&format!("{REMOTES}?limit=1000")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["results"].as_array().unwrap().len(), 3);
    // Empty values are ignored, as Pulp (django-filter, DRF pagination) ignores them.
    let (status, page) = s.get(&format!("{REMOTES}?limit=&offset=&name=")).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["count"], 3);
    let (status, page) = s.get("content/container/blobs/?repository_version=").await;
    assert_eq!(status, StatusCode::OK, "{page}");
}

/// An unknown endpoint or method under the API answers Pulp's JSON 404, never an empty body.
async fn unknown_endpoints_answer_json(backend: Backend) {
    let s = TestServer::start(backend).await;
    for (method, path) in [(Method::TRACE, "status/"), (Method::GET, "no/such/thing/"), (Method::DELETE, "remotes/container/container/")] {
        let (status, body) = s.call(method.clone(), path, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}");
        assert_eq!(body["detail"], "Not found.", "{method} {path}: {body}");
    }
}

on_both_backends!(
    unknown_endpoints_answer_json,
    status_is_public_and_reports_the_database,
    everything_else_needs_credentials,
    remote_lifecycle,
    lists_paginate_and_filter,
    bad_remotes_are_rejected_per_field,
    repository_lifecycle_and_versions,
    distribution_lifecycle,
    bad_distributions_are_rejected_and_queue_nothing,
    artifacts_and_content_start_empty,
    remote_numbers_are_bounded,
    nul_characters_are_bad_input,
    pagination_is_bounded,
);

/// openapi/openapi.json must be what the code generates: regenerate it with
/// `UPDATE_OPENAPI=1 cargo test --test api openapi` after changing the API.
#[test]
fn openapi_document_is_up_to_date() {
    let generated = pulpish_server::openapi_json();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../openapi/openapi.json");
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(committed == generated, "openapi/openapi.json is stale: run UPDATE_OPENAPI=1 cargo test --test api openapi");
}

/// The document says what the server does: 401 on every operation but `status/` (public:
/// `security: []`, Basic everywhere else), required fields, bounds, unique Pulp operationIds.
#[test]
fn openapi_document_tells_the_truth() {
    let doc: Value = serde_json::from_str(&pulpish_server::openapi_json()).unwrap();
    assert_eq!(doc["security"], json!([{"basicAuth": []}]));
    assert_eq!(doc["components"]["securitySchemes"]["basicAuth"]["scheme"], "basic");
    let mut ids = std::collections::BTreeSet::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            let id = op["operationId"].as_str().unwrap();
            assert!(ids.insert(id.to_string()), "operationId {id} twice");
            let responses = op["responses"].as_object().unwrap();
            // What pulp-glue's strict parser requires of every operation.
            for (code, r) in responses {
                assert!(r["description"].is_string(), "{method} {path} {code}: a response needs a description");
            }
            for p in op["parameters"].as_array().into_iter().flatten() {
                assert!(p["in"] != "path" || p["required"] == true, "{method} {path}: path parameters are required");
            }
            if path == "/pulp/api/v3/status/" {
                assert_eq!(op["security"], json!([]), "status/ is public");
                assert!(!responses.contains_key("401"));
                continue;
            }
            assert!(op.get("security").is_none(), "{method} {path} must use the global Basic requirement");
            assert!(responses.contains_key("401"), "{method} {path} does not declare 401");
            if op.get("parameters").is_some_and(|p| p.as_array().unwrap().iter().any(|p| p["name"] == "limit")) {
                assert!(responses.contains_key("400"), "{method} {path}: a bad limit is a 400");
            }
            if op.get("requestBody").is_some() {
                assert!(responses.contains_key("400"), "{method} {path}: a bad body is a 400");
            }
        }
    }
    for id in ["remotes_container_container_list", "repositories_container_container_sync", "tasks_cancel", "status_read"] {
        assert!(ids.contains(id), "{id}");
    }
    let limit = &doc["paths"]["/pulp/api/v3/remotes/container/container/"]["get"]["parameters"][0];
    assert_eq!(limit["name"], "limit");
    assert_eq!((limit["schema"]["minimum"].as_i64(), limit["schema"]["maximum"].as_i64()), (Some(1), Some(1000)));
    let schemas = &doc["components"]["schemas"];
    assert_eq!(schemas["container.ContainerRemote"]["required"], json!(["name", "url", "upstream_name"]));
    assert_eq!(schemas["container.ContainerRepository"]["required"], json!(["name"]));
    assert_eq!(schemas["container.ContainerDistribution"]["required"], json!(["name", "base_path"]));
    assert_eq!(schemas["PatchedTaskCancel"]["required"], json!(["state"]));
    // Pulp's names, so bindings generated from the document look like Pulp's.
    for name in ["AsyncOperationResponse", "TaskResponse", "PaginatedTaskResponseList", "container.ContainerRemoteResponse", "Paginatedcontainer.ContainerRemoteResponseList", "StatusResponse", "RepositoryVersionResponse"] {
        assert!(schemas.get(name).is_some(), "no schema {name}");
    }
    for patched in ["Patchedcontainer.ContainerRemote", "Patchedcontainer.ContainerRepository", "Patchedcontainer.ContainerDistribution"] {
        assert!(schemas[patched]["required"].is_null(), "{patched}");
    }
    let remote = &schemas["container.ContainerRemote"]["properties"];
    assert_eq!(remote["total_timeout"]["maximum"], 86400);
    assert_eq!(remote["total_timeout"]["exclusiveMinimum"], 0);
    assert_eq!(remote["max_retries"]["maximum"], 100);
    assert_eq!(remote["download_concurrency"]["minimum"], 1);
    let patch = &doc["paths"]["{container_container_remote_href}"]["patch"];
    assert_eq!(patch["requestBody"]["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/Patchedcontainer.ContainerRemote");
    assert_eq!(patch["parameters"][0], json!({"name": "container_container_remote_href", "in": "path", "required": true, "schema": {"type": "string"}, "description": "The object's pulp_href, e.g. as a list returns it."}));
    // Every operation pulp-cli's container workflow calls, under Pulp's operationId.
    for id in [
        "remotes_container_container_partial_update", "repositories_container_container_versions_delete", "repositories_container_container_tag",
        "repositories_container_container_untag", "repositories_container_container_add", "repositories_container_container_remove",
        "repositories_container_container_copy_tags", "repositories_container_container_copy_manifests", "distributions_container_container_create",
        "content_container_tags_read", "artifacts_read", "tasks_delete", "tasks_purge", "orphans_cleanup_cleanup", "workers_list",
    ] {
        assert!(ids.contains(id), "{id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_document_and_swagger_ui_are_served_offline() {
    let s = TestServer::start(Backend::Sqlite).await;
    let doc: Value = reqwest::get(s.url("docs/api.json")).await.unwrap().json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    // Detail operations keyed by href as in Pulp's document, collections by path.
    for path in ["/pulp/api/v3/remotes/container/container/", "{task_href}", "{container_container_repository_href}versions/", "{container_container_repository_href}sync/", "{container_container_repository_version_href}"] {
        assert!(doc["paths"].get(path).is_some(), "{path} missing from the document");
    }
    // What the routes serve, with `{id}` paths, stays available to the tests' URL-template tools.
    let concrete: Value = serde_json::from_str(&pulpish_server::openapi_concrete_json()).unwrap();
    assert!(concrete["paths"].get("/pulp/api/v3/tasks/{id}/").is_some());
    assert_eq!(concrete["paths"].as_object().unwrap().len(), doc["paths"].as_object().unwrap().len());
    let page = reqwest::get(s.url("docs/")).await.unwrap().text().await.unwrap();
    assert!(page.contains("/pulp/api/v3/docs/swagger-ui-bundle.js"));
    let js = reqwest::get(s.url("docs/swagger-ui-bundle.js")).await.unwrap();
    assert_eq!(js.status(), StatusCode::OK);
    assert!(js.bytes().await.unwrap().len() > 500_000);
    let css = reqwest::get(s.url("docs/swagger-ui.css")).await.unwrap();
    assert_eq!(css.status(), StatusCode::OK);
}
