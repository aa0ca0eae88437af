//! The pull-through REST API and CLI as a client sees them: `remotes/container/pull-through/`
//! and `distributions/container/pull-through/` CRUD, each bad field named, secrets never shown
//! (nor kept in task rows), a pull-through remote's update reaching the remotes made for it, and
//! the container endpoints never seeing pull-through rows (nor the other way round).

mod support;

use std::process::{Command, Output};

use reqwest::StatusCode;
use serde_json::{json, Value};
use support::{Backend, TestServer, PASSWORD};

const PT_REMOTES: &str = "remotes/container/pull-through/";
const PT_DISTS: &str = "distributions/container/pull-through/";
const REMOTES: &str = "remotes/container/container/";
const DISTS: &str = "distributions/container/container/";
const REPOS: &str = "repositories/container/container/";
const SECRET: &str = "pt-s3cret-password";
const NEW_SECRET: &str = "n3w-pt-s3cret";

fn pt_remote_body(name: &str) -> Value {
    json!({
        "name": name,
        "url": "http://127.0.0.1:5001",
        "includes": ["library/*"],
        "excludes": ["library/secret*"],
        "tag_ttl": 60,
        "retry_in_background": true,
        "username": "puller",
        "password": SECRET,
    })
}

fn id_of(href: &str) -> String {
    href.trim_end_matches('/').rsplit('/').next().unwrap().to_string()
}

/// Makes what a first pull of `<base_path>/<upstream>` makes (the registry's own call): the
/// container remote, repository and distribution of that upstream repository.
async fn pull_through_once(s: &TestServer, dist_href: &str, upstream: &str) -> Value {
    let dist_id = id_of(dist_href);
    let upstream = upstream.to_string();
    let made = s
        .state
        .db
        .run(move |c| {
            pulpish_server::db::write_transaction(c, |c| {
                use pulpish_server::models::{distribution, pull_through, remote};
                let parent = distribution::find(c, &dist_id)?.expect("the pull-through distribution");
                let parent_remote = remote::find(c, parent.remote_id.as_deref().expect("its remote"))?.expect("the remote");
                let name = format!("{}/{upstream}", parent.base_path);
                pull_through::make_cache(c, &parent, &parent_remote, &name, &upstream)
            })
            .map_err(pulpish_server::db::DbError::from)
        })
        .await
        .unwrap()
        .expect("no row of that name was there before");
    let (status, child) = s.get(&format!("{DISTS}{}/", made.id)).await;
    assert_eq!(status, StatusCode::OK, "{child}");
    child
}

/// The stored arguments of every task, as the database holds them.
async fn task_rows(s: &TestServer) -> String {
    let (_, tasks) = s.get("tasks/?limit=1000").await;
    let mut all = tasks.to_string();
    for t in tasks["results"].as_array().unwrap() {
        let id = id_of(t["pulp_href"].as_str().unwrap());
        let row = s
            .state
            .db
            .run(move |c| pulpish_server::models::task::find(c, &id).map_err(pulpish_server::db::DbError::from))
            .await
            .unwrap()
            .unwrap();
        all.push_str(&row.args);
    }
    all
}

async fn pull_through_remote_lifecycle(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (status, remote) = s.post(PT_REMOTES, pt_remote_body("docker-cache")).await;
    assert_eq!(status, StatusCode::CREATED, "{remote}");
    let href = remote["pulp_href"].as_str().unwrap().to_string();
    assert!(href.starts_with("/pulp/api/v3/remotes/container/pull-through/"), "{href}");
    assert_eq!(remote["prn"], format!("prn:container.containerpullthroughremote:{}", id_of(&href)));
    assert_eq!(remote["policy"], "on_demand", "the default");
    assert_eq!(remote["includes"], json!(["library/*"]));
    assert_eq!(remote["excludes"], json!(["library/secret*"]));
    assert_eq!(remote["tag_ttl"], 60);
    assert_eq!(remote["retry_in_background"], true);
    assert!(remote.get("upstream_name").is_none() && remote.get("include_tags").is_none(), "{remote}");
    assert!(remote.get("password").is_none() && remote.get("username").is_none(), "write-only: {remote}");
    assert_eq!(remote["hidden_fields"][0], json!({"name": "username", "is_set": true}));
    assert_eq!(remote["hidden_fields"][1], json!({"name": "password", "is_set": true}));
    assert!(!remote.to_string().contains(SECRET));
    let (status, read) = s.get(&href).await;
    assert_eq!(status, StatusCode::OK);
    // (Timestamps aside: PostgreSQL keeps microseconds, the create answer has more.)
    let untimed = |mut v: Value| {
        v.as_object_mut().unwrap().retain(|k, _| !k.starts_with("pulp_created") && !k.starts_with("pulp_last_updated"));
        v
    };
    assert_eq!(untimed(read), untimed(remote.clone()));
    let (_, list) = s.get(PT_REMOTES).await;
    assert_eq!(list["count"], 1);
    assert_eq!(list["results"][0]["pulp_href"], href.as_str());
    assert_eq!(s.count(&format!("{PT_REMOTES}?name=docker-cache")).await, 1);

    // The distribution serving it, and what a first pull through it makes.
    let task = s.completed(s.post(PT_DISTS, json!({"name": "cache", "base_path": "cache", "remote": href})).await).await;
    let dist_href = task["created_resources"][0].as_str().unwrap().to_string();
    assert!(dist_href.starts_with("/pulp/api/v3/distributions/container/pull-through/"), "{task}");
    let child = pull_through_once(&s, &dist_href, "library/busybox").await;
    let child_remote = child["remote"].as_str().expect("the child's remote").to_string();
    assert!(child_remote.starts_with("/pulp/api/v3/remotes/container/container/"), "{child}");
    assert_eq!(child["pull_through_distribution"], dist_href.as_str());
    let (_, made) = s.get(&child_remote).await;
    assert_eq!(made["url"], "http://127.0.0.1:5001");
    assert_eq!(made["upstream_name"], "library/busybox");
    assert_eq!(made["policy"], "on_demand");

    // A PATCH changes what it names, here and in the remote made for it, in one task.
    let patch = json!({"url": "http://127.0.0.1:5002", "password": NEW_SECRET, "policy": "streamed", "tag_ttl": 0, "retry_in_background": false});
    s.completed(s.patch(&href, patch).await).await;
    let (_, read) = s.get(&href).await;
    assert_eq!((read["url"].as_str(), read["policy"].as_str(), read["tag_ttl"].as_i64()), (Some("http://127.0.0.1:5002"), Some("streamed"), Some(0)));
    assert_eq!(read["retry_in_background"], false);
    assert_eq!(read["includes"], json!(["library/*"]), "not named, kept");
    let (_, made) = s.get(&child_remote).await;
    assert_eq!((made["url"].as_str(), made["policy"].as_str()), (Some("http://127.0.0.1:5002"), Some("streamed")), "{made}");
    assert_eq!(made["upstream_name"], "library/busybox", "its own");
    assert_eq!(made["retry_in_background"], false);
    let child_id = id_of(&child_remote);
    let stored = s
        .state
        .db
        .run(move |c| pulpish_server::models::remote::find(c, &child_id).map_err(pulpish_server::db::DbError::from))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.password.as_deref(), Some(NEW_SECRET), "the new password reached the remote made for it");
    assert_eq!(stored.tag_ttl, 0);

    // PUT replaces: what it leaves out returns to the default.
    s.completed(s.put(&href, json!({"name": "docker-cache", "url": "http://127.0.0.1:5001"})).await).await;
    let (_, read) = s.get(&href).await;
    assert_eq!((read["policy"].as_str(), read["tag_ttl"].as_i64()), (Some("on_demand"), Some(300)));
    assert_eq!(read["includes"], Value::Null);
    assert_eq!(read["hidden_fields"][1], json!({"name": "password", "is_set": false}));

    // No secret in any answer, nor in a task row.
    for path in [href.as_str(), PT_REMOTES, REMOTES, child_remote.as_str(), "tasks/"] {
        let (_, body) = s.get(path).await;
        let text = body.to_string();
        assert!(!text.contains(SECRET) && !text.contains(NEW_SECRET), "{path}: {text}");
    }
    let rows = task_rows(&s).await;
    assert!(rows.contains("pulpish.remote.update"), "the updates' rows were read");
    assert!(!rows.contains(SECRET) && !rows.contains(NEW_SECRET), "{rows}");

    s.completed(s.delete(&dist_href).await).await;
    s.completed(s.delete(&href).await).await;
    let (status, body) = s.get(&href).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["detail"], "Not found.");
    assert_eq!(s.count(PT_REMOTES).await, 0);
    assert_eq!(s.count(REMOTES).await, 1, "the remote made for it stays a container remote");
}

async fn pull_through_distribution_lifecycle(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (_, remote) = s.post(PT_REMOTES, pt_remote_body("docker-cache")).await;
    let remote_href = remote["pulp_href"].as_str().unwrap().to_string();
    let (_, other) = s.post(PT_REMOTES, pt_remote_body("quay-cache")).await;
    let other_href = other["pulp_href"].as_str().unwrap().to_string();
    let body = json!({"name": "cache", "base_path": "cache", "remote": remote_href, "description": "Docker Hub", "pulp_labels": {"team": "infra"}});
    let task = s.completed(s.post(PT_DISTS, body).await).await;
    let href = task["created_resources"][0].as_str().unwrap().to_string();
    let (status, dist) = s.get(&href).await;
    assert_eq!(status, StatusCode::OK, "{dist}");
    assert_eq!(dist["prn"], format!("prn:container.containerpullthroughdistribution:{}", id_of(&href)));
    assert_eq!((dist["name"].as_str(), dist["base_path"].as_str()), (Some("cache"), Some("cache")));
    assert_eq!(dist["remote"], remote_href.as_str());
    assert_eq!((dist["private"].as_bool(), dist["hidden"].as_bool()), (Some(false), Some(false)));
    assert_eq!(dist["description"], "Docker Hub");
    assert_eq!(dist["pulp_labels"], json!({"team": "infra"}));
    assert_eq!(dist["distributions"], json!([]));
    assert!(dist["pulp_created"].is_string());

    let first = pull_through_once(&s, &href, "library/busybox").await;
    let second = pull_through_once(&s, &href, "library/alpine").await;
    let (_, dist) = s.get(&href).await;
    assert_eq!(dist["distributions"], json!([first["pulp_href"], second["pulp_href"]]));
    assert_eq!(first["base_path"], "cache/library/busybox");
    let (_, list) = s.get(PT_DISTS).await;
    assert_eq!(list["count"], 1);
    assert_eq!(list["results"][0]["distributions"], dist["distributions"]);
    assert_eq!(s.count(&format!("{PT_DISTS}?base_path=cache")).await, 1);
    // A container distribution's read-only links are not fields of its body.
    let (status, errors) = s.patch(first["pulp_href"].as_str().unwrap(), json!({"pull_through_distribution": null})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(errors["pull_through_distribution"].is_array(), "{errors}");
    // A PUT of one it made keeps its links.
    let body = json!({"name": first["name"], "base_path": first["base_path"], "repository": first["repository"]});
    s.completed(s.put(first["pulp_href"].as_str().unwrap(), body).await).await;
    let (_, again) = s.get(first["pulp_href"].as_str().unwrap()).await;
    assert_eq!((&again["remote"], &again["pull_through_distribution"]), (&first["remote"], &first["pull_through_distribution"]));

    s.completed(s.patch(&href, json!({"remote": other_href, "private": true, "hidden": true})).await).await;
    let (_, dist) = s.get(&href).await;
    assert_eq!(dist["remote"], other_href.as_str());
    assert_eq!((dist["private"].as_bool(), dist["hidden"].as_bool()), (Some(true), Some(true)));
    assert_eq!(dist["description"], "Docker Hub", "not named, kept");
    s.completed(s.put(&href, json!({"name": "cache", "base_path": "docker", "remote": remote_href})).await).await;
    let (_, dist) = s.get(&href).await;
    assert_eq!((dist["base_path"].as_str(), dist["private"].as_bool(), &dist["description"]), (Some("docker"), Some(false), &Value::Null));
    assert_eq!(dist["pulp_labels"], json!({}));

    s.completed(s.delete(&href).await).await;
    assert_eq!(s.get(&href).await.0, StatusCode::NOT_FOUND);
    assert_eq!(s.count(PT_DISTS).await, 0);
    let (_, left) = s.get(first["pulp_href"].as_str().unwrap()).await;
    assert_eq!(left["pull_through_distribution"], Value::Null, "what it made stays, unlinked: {left}");
    // Deleting the remote leaves a distribution without one.
    let task = s.completed(s.post(PT_DISTS, json!({"name": "c2", "base_path": "c2", "remote": other_href})).await).await;
    let href = task["created_resources"][0].as_str().unwrap().to_string();
    s.completed(s.delete(&other_href).await).await;
    let (_, dist) = s.get(&href).await;
    assert_eq!(dist["remote"], Value::Null);
}

async fn bad_input_is_refused_naming_the_field(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (_, container) = s.post(REMOTES, json!({"name": "plain", "url": "http://127.0.0.1:5001", "upstream_name": "a/b"})).await;
    let container_href = container["pulp_href"].as_str().unwrap().to_string();
    let (_, remote) = s.post(PT_REMOTES, pt_remote_body("docker-cache")).await;
    let remote_href = remote["pulp_href"].as_str().unwrap().to_string();
    s.completed(s.post(DISTS, json!({"name": "taken", "base_path": "taken"})).await).await;
    let tasks_before = s.count("tasks/").await;

    let base = |extra: Value| {
        let mut b = json!({"name": "n", "url": "http://127.0.0.1:5001"});
        b.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        b
    };
    let remote_cases: Vec<(Value, &str)> = vec![
        (base(json!({"upstream_name": "library/busybox"})), "upstream_name"),
        (base(json!({"include_tags": ["x"]})), "include_tags"),
        (base(json!({"include_referrers": true})), "include_referrers"),
        (base(json!({"policy": "immediate"})), "policy"),
        (base(json!({"policy": "eventually"})), "policy"),
        (base(json!({"tag_ttl": 1.5})), "tag_ttl"),
        (base(json!({"tag_ttl": 1e308})), "tag_ttl"),
        (base(json!({"tag_ttl": -1})), "tag_ttl"),
        (base(json!({"tag_ttl": "60"})), "tag_ttl"),
        (base(json!({"tag_ttl": 31_536_001})), "tag_ttl"),
        (base(json!({"tag_ttl": null})), "tag_ttl"),
        (base(json!({"retry_in_background": "yes"})), "retry_in_background"),
        (base(json!({"includes": "library/*"})), "includes"),
        (base(json!({"download_concurrency": 0})), "download_concurrency"),
        (base(json!({"connect_timeout": 0})), "connect_timeout"),
        (base(json!({"headers": {"X-A": "b"}})), "headers"),
        (base(json!({"url": "ftp://x"})), "url"),
        (base(json!({"name": "plain"})), "name"),
        (base(json!({"name": "docker-cache"})), "name"),
        (json!({"name": "n"}), "url"),
        (json!({"url": "http://127.0.0.1:5001"}), "name"),
    ];
    for (body, field) in remote_cases {
        let (status, errors) = s.post(PT_REMOTES, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {errors}");
        assert!(errors[field].is_array(), "expected '{field}' in {errors} for {body}");
        assert!(!errors.to_string().contains(SECRET));
    }
    for (body, field) in [(json!({"tag_ttl": -5}), "tag_ttl"), (json!({"policy": "immediate"}), "policy"), (json!({"upstream_name": "x"}), "upstream_name")] {
        let (status, errors) = s.patch(&remote_href, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {errors}");
        assert!(errors[field].is_array(), "expected '{field}' in {errors} for {body}");
    }
    // Names are unique across both kinds; a container remote has no tag_ttl.
    let (status, errors) = s.post(REMOTES, json!({"name": "docker-cache", "url": "http://a", "upstream_name": "a"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(errors["name"], json!(["remote with this name already exists."]));
    let (status, errors) = s.post(REMOTES, json!({"name": "x", "url": "http://a", "upstream_name": "a", "tag_ttl": 5})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(errors["tag_ttl"].is_array(), "{errors}");

    let unknown = format!("{PT_REMOTES}00000000-0000-0000-0000-000000000000/");
    let container_id_as_pull_through = format!("{PT_REMOTES}{}/", id_of(&container_href));
    let dist_cases: Vec<(Value, &str)> = vec![
        (json!({"name": "d", "base_path": "d"}), "remote"),
        (json!({"name": "d", "base_path": "d", "remote": null}), "remote"),
        (json!({"name": "d", "base_path": "d", "remote": container_href}), "remote"),
        (json!({"name": "d", "base_path": "d", "remote": container_id_as_pull_through}), "remote"),
        (json!({"name": "d", "base_path": "d", "remote": unknown}), "remote"),
        (json!({"name": "d", "base_path": "d", "remote": "garbage"}), "remote"),
        (json!({"name": "d", "base_path": "taken", "remote": remote_href}), "base_path"),
        (json!({"name": "taken", "base_path": "d", "remote": remote_href}), "name"),
        (json!({"name": "d", "base_path": "Not/Oci", "remote": remote_href}), "base_path"),
        (json!({"base_path": "d", "remote": remote_href}), "name"),
        (json!({"name": "d", "remote": remote_href}), "base_path"),
        (json!({"name": "d", "base_path": "d", "remote": remote_href, "repository": null}), "repository"),
        (json!({"name": "d", "base_path": "d", "remote": remote_href, "private": "no"}), "private"),
    ];
    for (body, field) in dist_cases {
        let (status, errors) = s.post(PT_DISTS, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {errors}");
        assert!(errors[field].is_array(), "expected '{field}' in {errors} for {body}");
    }
    // A container distribution takes no remote.
    let (status, errors) = s.post(DISTS, json!({"name": "d", "base_path": "d", "remote": remote_href})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(errors["remote"].is_array(), "{errors}");
    assert_eq!(s.count("tasks/").await, tasks_before, "no task may be queued for a bad request");
    assert_eq!(s.count(PT_DISTS).await, 0);
    assert_eq!(s.count(PT_REMOTES).await, 1);
}

async fn kinds_never_see_each_other(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (_, container) = s.post(REMOTES, json!({"name": "plain", "url": "http://127.0.0.1:5001", "upstream_name": "a/b"})).await;
    let container_id = id_of(container["pulp_href"].as_str().unwrap());
    let (_, pt) = s.post(PT_REMOTES, pt_remote_body("docker-cache")).await;
    let pt_href = pt["pulp_href"].as_str().unwrap().to_string();
    let pt_id = id_of(&pt_href);
    let (_, list) = s.get(REMOTES).await;
    assert_eq!(list["count"], 1);
    assert_eq!(list["results"][0]["name"], "plain");
    let (_, list) = s.get(PT_REMOTES).await;
    assert_eq!(list["count"], 1);
    assert_eq!(list["results"][0]["name"], "docker-cache");
    assert_eq!(s.count(&format!("{REMOTES}?name=docker-cache")).await, 0);

    let task = s.completed(s.post(DISTS, json!({"name": "plain", "base_path": "plain"})).await).await;
    let container_dist_id = id_of(task["created_resources"][0].as_str().unwrap());
    let task = s.completed(s.post(PT_DISTS, json!({"name": "cache", "base_path": "cache", "remote": pt_href})).await).await;
    let pt_dist_id = id_of(task["created_resources"][0].as_str().unwrap());
    let (_, list) = s.get(DISTS).await;
    assert_eq!(list["count"], 1);
    assert_eq!(list["results"][0]["remote"], Value::Null);
    assert_eq!(list["results"][0]["pull_through_distribution"], Value::Null);
    assert_eq!(s.count(PT_DISTS).await, 1);

    // Each id under the other kind's path is not found, whatever the method.
    for wrong in [
        format!("{REMOTES}{pt_id}/"),
        format!("{PT_REMOTES}{container_id}/"),
        format!("{DISTS}{pt_dist_id}/"),
        format!("{PT_DISTS}{container_dist_id}/"),
    ] {
        assert_eq!(s.get(&wrong).await.0, StatusCode::NOT_FOUND, "GET {wrong}");
        assert_eq!(s.patch(&wrong, json!({"name": "renamed"})).await.0, StatusCode::NOT_FOUND, "PATCH {wrong}");
        assert_eq!(s.delete(&wrong).await.0, StatusCode::NOT_FOUND, "DELETE {wrong}");
    }
    let put = s.put(&format!("{REMOTES}{pt_id}/"), json!({"name": "x", "url": "http://a", "upstream_name": "a"})).await;
    assert_eq!(put.0, StatusCode::NOT_FOUND);
    // A repository syncs from container remotes only.
    let (status, errors) = s.post(REPOS, json!({"name": "r", "remote": format!("{REMOTES}{pt_id}/")})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(errors["remote"].is_array(), "{errors}");
    let (_, list) = s.get(PT_REMOTES).await;
    assert_eq!(list["results"][0]["name"], "docker-cache", "untouched");
}

fn pulpish(s: &TestServer, home: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pulpish"))
        .args(args)
        .env("PULPISH_SERVER", &s.base)
        .env("PULPISH_PASSWORD", PASSWORD)
        .env_remove("PULPISH_USERNAME")
        .env("HOME", home)
        .env_remove("XDG_CONFIG_HOME")
        .output()
        .expect("run pulpish")
}

fn json_of(s: &TestServer, home: &std::path::Path, args: &[&str]) -> Value {
    let mut all = vec!["--format", "json"];
    all.extend_from_slice(args);
    let out = pulpish(s, home, &all);
    assert!(out.status.success(), "pulpish {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("pulpish {args:?}: {e}: {}", String::from_utf8_lossy(&out.stdout)))
}

async fn the_cli_sets_up_pull_through(backend: Backend) {
    let s = TestServer::start(backend).await;
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    let run = |args: &[&str]| json_of(&s, home, args);

    let remote = run(&[
        "pull-through", "remote", "create", "--name", "docker-cache", "--url", "http://127.0.0.1:5001", "--includes", "library/*,tools/*",
        "--excludes", "library/secret", "--tag-ttl", "120", "--retry-in-background", "true", "--upstream-username", "puller", "--upstream-password", SECRET,
        "--tls-validation", "false",
    ]);
    assert_eq!(remote["includes"], json!(["library/*", "tools/*"]));
    assert_eq!(remote["excludes"], json!(["library/secret"]));
    assert_eq!((remote["tag_ttl"].as_i64(), remote["retry_in_background"].as_bool()), (Some(120), Some(true)));
    assert_eq!((remote["policy"].as_str(), remote["tls_validation"].as_bool()), (Some("on_demand"), Some(false)));
    assert!(!remote.to_string().contains(SECRET));
    assert_eq!(remote["hidden_fields"][0], json!({"name": "username", "is_set": true}));
    assert_eq!(remote["hidden_fields"][1], json!({"name": "password", "is_set": true}));
    let listed = run(&["pull-through", "remote", "list"]);
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(run(&["remote", "list"]), json!([]), "no container remote");
    let updated = run(&["pull-through", "remote", "update", "--name", "docker-cache", "--policy", "streamed", "--tag-ttl", "0"]);
    assert_eq!(updated["state"], "completed", "{updated}");
    let shown = run(&["pull-through", "remote", "show", "--name", "docker-cache"]);
    assert_eq!((shown["policy"].as_str(), shown["tag_ttl"].as_i64()), (Some("streamed"), Some(0)));
    assert_eq!(shown["includes"], json!(["library/*", "tools/*"]));

    let task = run(&["pull-through", "distribution", "create", "--name", "cache", "--base-path", "cache", "--remote", "docker-cache", "--private"]);
    let href = task["created_resources"][0].as_str().unwrap().to_string();
    let dist = run(&["pull-through", "distribution", "show", "--name", "cache"]);
    assert_eq!(dist["pulp_href"], href.as_str());
    assert_eq!((dist["remote"].as_str(), dist["private"].as_bool()), (shown["pulp_href"].as_str(), Some(true)));
    assert_eq!(run(&["pull-through", "distribution", "list"]).as_array().unwrap().len(), 1);
    assert_eq!(run(&["distribution", "list"]), json!([]), "no container distribution");
    run(&["pull-through", "distribution", "update", "--name", "cache", "--base-path", "hub", "--private", "false"]);
    let dist = run(&["pull-through", "distribution", "show", "--name", "cache"]);
    assert_eq!((dist["base_path"].as_str(), dist["private"].as_bool()), (Some("hub"), Some(false)));
    let table = pulpish(&s, home, &["pull-through", "distribution", "list"]);
    assert!(String::from_utf8_lossy(&table.stdout).contains("hub"), "{}", String::from_utf8_lossy(&table.stdout));

    // Refusals carry the server's field and the invalid-input exit code.
    let out = pulpish(&s, home, &["pull-through", "remote", "create", "--name", "x", "--url", "http://a", "--policy", "immediate"]);
    assert_eq!(out.status.code(), Some(6), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("policy"), "{}", String::from_utf8_lossy(&out.stderr));
    let out = pulpish(&s, home, &["pull-through", "distribution", "create", "--name", "d", "--base-path", "d", "--remote", "nope"]);
    assert_eq!(out.status.code(), Some(5), "{}", String::from_utf8_lossy(&out.stderr));
    let out = pulpish(&s, home, &["pull-through", "remote", "show", "--name", "nope"]);
    assert_eq!(out.status.code(), Some(5));

    run(&["pull-through", "distribution", "delete", "--name", "cache"]);
    run(&["pull-through", "remote", "delete", "--name", "docker-cache"]);
    assert_eq!(s.count(PT_DISTS).await, 0);
    assert_eq!(s.count(PT_REMOTES).await, 0);
    let help = pulpish(&s, home, &["pull-through", "remote", "create", "--help"]);
    assert!(String::from_utf8_lossy(&help.stdout).contains("--tag-ttl <SECONDS>"));
}

on_both_backends!(
    pull_through_remote_lifecycle,
    pull_through_distribution_lifecycle,
    bad_input_is_refused_naming_the_field,
    kinds_never_see_each_other,
    the_cli_sets_up_pull_through,
);
