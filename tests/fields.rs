//! The fields Pulp users send: unknown ones are refused by name; the newer remote, repository and
//! distribution fields are stored, returned, validated, and used where they act (the upstream
//! client, version retention, the registry catalog). Every test runs on SQLite and PostgreSQL.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::fault::{fault_image, sha256, BlobBehaviour, FaultUpstream};
use support::pki::Ca;
use support::{Backend, TestServer};

const REMOTES: &str = "remotes/container/container/";
const REPOS: &str = "repositories/container/container/";
const DISTS: &str = "distributions/container/container/";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

fn remote_body(name: &str, url: &str) -> Value {
    json!({"name": name, "url": url, "upstream_name": "test/app", "policy": "immediate"})
}

async fn create(s: &TestServer, path: &str, body: Value) -> Value {
    let (status, created) = s.post(path, body).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    created
}

fn href(v: &Value) -> String {
    v["pulp_href"].as_str().expect("pulp_href").to_string()
}

fn id_of(href: &str) -> &str {
    href.trim_end_matches('/').rsplit('/').next().unwrap()
}

/// Expects a 400 whose only field is `field`.
fn refused((status, body): (StatusCode, Value), field: &str, what: &str) {
    assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {body}");
    let fields: Vec<&String> = body.as_object().map(|o| o.keys().collect()).unwrap_or_default();
    assert_eq!(fields, [field], "{what}: {body}");
    assert!(body[field][0].is_string(), "{what}: {body}");
}

// ---------------------------------------------------------------------------------------------
// An upstream the tests own: images by tag, each request recorded with its time and headers.

#[derive(Default)]
struct Served {
    name: String,
    tags: BTreeMap<String, Vec<u8>>,
    blobs: HashMap<String, Vec<u8>>,
    log: Vec<Request>,
}

#[derive(Clone, Debug)]
struct Request {
    at: Instant,
    path: String,
    headers: HashMap<String, String>,
}

struct Recorder {
    url: String,
    state: Arc<Mutex<Served>>,
}

impl Recorder {
    async fn start() -> Recorder {
        let state = Arc::new(Mutex::new(Served { name: "test/app".into(), ..Default::default() }));
        let shared = state.clone();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = HttpServer::new(move || App::new().app_data(web::Data::new(shared.clone())).default_service(web::to(serve)))
            .workers(2)
            .disable_signals()
            .listen(listener)
            .unwrap()
            .run();
        tokio::spawn(server);
        Recorder { url, state }
    }

    /// Serves a small image (its own config and layer) under `tag`.
    fn tag(&self, tag: &str) {
        let config = format!(r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":[]}},"comment":"{tag}"}}"#).into_bytes();
        let layer = format!("the layer of {tag}").into_bytes();
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(&config), "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha256(&layer), "size": layer.len()}],
        });
        let mut s = self.state.lock().unwrap();
        s.blobs.insert(sha256(&config), config);
        s.blobs.insert(sha256(&layer), layer);
        s.tags.insert(tag.into(), serde_json::to_vec(&manifest).unwrap());
    }

    fn untag(&self, tag: &str) {
        self.state.lock().unwrap().tags.remove(tag);
    }

    /// The requests recorded so far, and a fresh log.
    fn take_log(&self) -> Vec<Request> {
        std::mem::take(&mut self.state.lock().unwrap().log)
    }
}

async fn serve(req: HttpRequest, state: web::Data<Arc<Mutex<Served>>>) -> HttpResponse {
    let mut s = state.lock().unwrap();
    let headers = req.headers().iter().map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string())).collect();
    s.log.push(Request { at: Instant::now(), path: req.path().to_string(), headers });
    let Some(rest) = req.path().strip_prefix(&format!("/v2/{}/", s.name)) else {
        return HttpResponse::NotFound().finish();
    };
    if rest == "tags/list" {
        return HttpResponse::Ok().json(json!({"name": s.name, "tags": s.tags.keys().collect::<Vec<_>>()}));
    }
    if let Some(reference) = rest.strip_prefix("manifests/") {
        let Some(bytes) = s.tags.iter().find(|(t, b)| *t == reference || sha256(b) == reference).map(|(_, b)| b.clone()) else {
            return HttpResponse::NotFound().json(json!({"errors": [{"code": "MANIFEST_UNKNOWN"}]}));
        };
        let mut resp = HttpResponse::Ok();
        resp.insert_header(("Docker-Content-Digest", sha256(&bytes))).content_type(OCI_MANIFEST);
        return if req.method() == actix_web::http::Method::HEAD { resp.finish() } else { resp.body(bytes) };
    }
    if let Some(digest) = rest.strip_prefix("blobs/") {
        if let Some(bytes) = s.blobs.get(digest) {
            return HttpResponse::Ok().content_type("application/octet-stream").body(bytes.clone());
        }
    }
    HttpResponse::NotFound().finish()
}

/// Syncs `repo` from `remote` and expects the task to complete.
async fn sync(s: &TestServer, repo: &str, remote: &str, mirror: bool) -> Value {
    s.completed(s.post(&format!("{repo}sync/"), json!({"remote": remote, "mirror": mirror})).await).await
}

/// Syncs and expects the task to fail; its error description.
async fn failed_sync(s: &TestServer, repo: &str, remote: &str) -> String {
    let (status, body) = s.post(&format!("{repo}sync/"), json!({"remote": remote})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let task = s.wait_task(body["task"].as_str().unwrap()).await;
    assert_eq!(task["state"], "failed", "{task}");
    task["error"]["description"].as_str().unwrap_or_default().to_string()
}

// ---------------------------------------------------------------------------------------------

async fn unknown_fields_are_refused_by_name(backend: Backend) {
    let s = TestServer::start(backend).await;
    for (path, body) in [
        (REMOTES, json!({"name": "r", "url": "http://x.test", "upstream_name": "a", "colour": "red"})),
        (REPOS, json!({"name": "r", "colour": "red"})),
        (DISTS, json!({"name": "d", "base_path": "d", "colour": "red"})),
    ] {
        let (status, errors) = s.post(path, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(errors, json!({"colour": ["Unexpected field"]}), "{body}");
        assert_eq!(s.count(path).await, 0, "nothing was created: {body}");
    }

    let remote = create(&s, REMOTES, remote_body("r", "http://x.test")).await;
    let repo = create(&s, REPOS, json!({"name": "r"})).await;
    let dist_task = s.completed(s.post(DISTS, json!({"name": "d", "base_path": "d"})).await).await;
    let dist = dist_task["created_resources"][0].as_str().unwrap().to_string();
    let tasks_before = s.count("tasks/").await;
    for target in [href(&remote), href(&repo), dist.clone()] {
        let (status, errors) = s.patch(&target, json!({"name": "renamed", "colour": "red", "size": 3})).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "PATCH {target}: {errors}");
        assert_eq!(errors, json!({"colour": ["Unexpected field"], "size": ["Unexpected field"]}));
    }
    let (status, errors) = s.put(&href(&repo), json!({"name": "renamed", "colour": "red"})).await;
    assert_eq!((status, errors), (StatusCode::BAD_REQUEST, json!({"colour": ["Unexpected field"]})));
    let (status, errors) = s.post(&format!("{}sync/", href(&repo)), json!({"remote": href(&remote), "mirorr": true})).await;
    assert_eq!((status, errors), (StatusCode::BAD_REQUEST, json!({"mirorr": ["Unexpected field"]})));
    let (status, errors) = s.patch("tasks/00000000-0000-0000-0000-000000000000/", json!({"state": "canceled", "reason": "x"})).await;
    assert_eq!((status, errors), (StatusCode::BAD_REQUEST, json!({"reason": ["Unexpected field"]})));
    assert_eq!(s.count("tasks/").await, tasks_before, "no task was queued");
    let (_, read) = s.get(&href(&repo)).await;
    assert_eq!(read["name"], "r");

    // Known fields, the new ones and the former names included, still go through.
    s.completed(s.patch(&href(&remote), json!({"include_tags": ["a*"], "exclude_tags": ["b"]})).await).await;
    let (_, read) = s.get(&href(&remote)).await;
    assert_eq!((&read["includes"], &read["excludes"]), (&json!(["a*"]), &json!(["b"])));
    assert_eq!((&read["include_tags"], &read["exclude_tags"]), (&json!(["a*"]), &json!(["b"])));
    s.completed(s.patch(&href(&remote), json!({"includes": ["c"], "include_tags": ["c"], "excludes": null})).await).await;
    let (_, read) = s.get(&href(&remote)).await;
    assert_eq!((&read["includes"], &read["excludes"], &read["exclude_tags"]), (&json!(["c"]), &Value::Null, &Value::Null));
    let (status, errors) = s.patch(&href(&remote), json!({"includes": ["c"], "include_tags": ["d"]})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{errors}");
    assert!(errors["includes"][0].as_str().unwrap().contains("include_tags"), "{errors}");
}

async fn remote_fields_round_trip_and_secrets_stay_hidden(backend: Backend) {
    let s = TestServer::start(backend).await;
    let ca = Ca::new();
    let (cert, key) = ca.leaf("client.test");
    let mut body = remote_body("full", "https://upstream.test");
    for (k, v) in [
        ("includes", json!(["1.*", "latest"])),
        ("excludes", json!(["*-rc"])),
        ("sock_connect_timeout", json!(5)),
        ("sock_read_timeout", json!(7.5)),
        ("headers", json!([{"X-Custom": "v1"}, {"X-Other": "two"}])),
        ("rate_limit", json!(3)),
        ("proxy_url", json!("http://proxy.test:3128")),
        ("proxy_username", json!("proxy user")),
        ("proxy_password", json!("proxy-s3cret%")),
        ("client_cert", json!(cert)),
        ("client_key", json!(key)),
        ("pulp_labels", json!({"env": "prod", "team": ""})),
    ] {
        body[k] = v;
    }
    let created = create(&s, REMOTES, body).await;
    let h = href(&created);
    let (_, read) = s.get(&h).await;
    assert_eq!((&created["prn"], &created["hidden_fields"], &created["headers"]), (&read["prn"], &read["hidden_fields"], &read["headers"]));
    assert_eq!(read["prn"], format!("prn:container.containerremote:{}", id_of(&h)));
    assert_eq!(read["includes"], json!(["1.*", "latest"]));
    assert_eq!(read["excludes"], json!(["*-rc"]));
    assert_eq!(read["sock_connect_timeout"], 5.0);
    assert_eq!(read["sock_read_timeout"], 7.5);
    assert_eq!(read["headers"], json!([{"X-Custom": "v1"}, {"X-Other": "two"}]));
    assert_eq!(read["rate_limit"], 3);
    assert_eq!(read["client_cert"], cert.as_str());
    assert_eq!(read["pulp_labels"], json!({"env": "prod", "team": ""}));
    assert_eq!(read["proxy_url"], "http://proxy.test:3128/");
    assert!(read["pulp_last_updated"].is_string());
    let hidden = |v: &Value| -> BTreeMap<String, bool> {
        v["hidden_fields"].as_array().unwrap().iter().map(|f| (f["name"].as_str().unwrap().to_string(), f["is_set"].as_bool().unwrap())).collect()
    };
    assert_eq!(
        hidden(&read),
        BTreeMap::from([("username".into(), false), ("password".into(), false), ("proxy_username".into(), true), ("proxy_password".into(), true), ("client_key".into(), true)])
    );
    let text = read.to_string();
    assert!(!text.contains("PRIVATE KEY") && !text.contains("s3cret") && !text.contains("proxy user"), "{text}");
    for write_only in ["client_key", "proxy_username", "proxy_password"] {
        assert!(read.get(write_only).is_none(), "{write_only} is write-only: {read}");
    }
    // The proxy gets its credentials: they are in the stored proxy URL, percent-encoded.
    let stored = stored_remote(&s, "full").await;
    assert_eq!(stored.proxy_url.as_deref(), Some("http://proxy%20user:proxy-s3cret%25@proxy.test:3128/"));
    assert_eq!(stored.client_key.as_deref(), Some(key.as_str()));

    // PATCH changes what it names; null clears; a new proxy URL keeps the credentials.
    let task = s
        .completed(s.patch(&h, json!({"sock_read_timeout": null, "rate_limit": 0, "headers": null, "pulp_labels": {"a": "b"}, "proxy_password": null, "proxy_url": "http://other.test:8080"})).await)
        .await;
    assert!(!task.to_string().contains("PRIVATE KEY"), "no task row holds the key: {task}");
    let (_, read) = s.get(&h).await;
    assert_eq!((&read["sock_read_timeout"], &read["rate_limit"], &read["headers"]), (&Value::Null, &json!(0), &Value::Null));
    assert_eq!(read["pulp_labels"], json!({"a": "b"}));
    assert_eq!(read["sock_connect_timeout"], 5.0);
    assert_eq!((hidden(&read)["proxy_username"], hidden(&read)["proxy_password"], hidden(&read)["client_key"]), (true, false, true));
    assert_eq!(stored_remote(&s, "full").await.proxy_url.as_deref(), Some("http://proxy%20user@other.test:8080/"));
    assert_eq!(stored_remote(&s, "full").await.client_key.as_deref(), Some(key.as_str()), "the staged key was applied");

    // The pair goes together.
    refused(s.patch(&h, json!({"client_key": null})).await, "client_key", "a certificate without its key");
    s.completed(s.patch(&h, json!({"client_cert": null, "client_key": null})).await).await;
    let (_, read) = s.get(&h).await;
    assert_eq!((&read["client_cert"], hidden(&read)["client_key"]), (&Value::Null, false));

    // PUT resets the new fields to their defaults.
    s.completed(s.put(&h, remote_body("full", "https://upstream.test")).await).await;
    let (_, read) = s.get(&h).await;
    assert_eq!((&read["sock_connect_timeout"], &read["includes"], &read["pulp_labels"], &read["proxy_url"]), (&Value::Null, &Value::Null, &json!({}), &Value::Null));
    assert!(!hidden(&read)["proxy_username"]);
}

async fn stored_remote(s: &TestServer, name: &'static str) -> pulpish_server::models::remote::Remote {
    let db = s.state.db.clone();
    tokio::task::spawn_blocking(move || pulpish_server::models::remote::find_by_name(&mut db.get().unwrap(), name).unwrap().unwrap()).await.unwrap()
}

async fn bad_values_are_refused_naming_the_field(backend: Backend) {
    let s = TestServer::start(backend).await;
    let ca = Ca::new();
    let (cert, key) = ca.leaf("client.test");
    let (_, other_key) = ca.leaf("other.test");
    let remote = create(&s, REMOTES, remote_body("r", "http://x.test")).await;
    let repo = create(&s, REPOS, json!({"name": "r"})).await;
    let dist = s.completed(s.post(DISTS, json!({"name": "d", "base_path": "d"})).await).await["created_resources"][0].as_str().unwrap().to_string();

    let mut cases: Vec<(Value, &str)> = Vec::new();
    for field in ["sock_connect_timeout", "sock_read_timeout"] {
        for v in [json!(0), json!(-1), json!(1e308), json!(86401), json!("soon"), json!([1])] {
            cases.push((json!({ field: v }), field));
        }
    }
    for v in [json!(-1), json!(1.5), json!(1e308), json!("fast"), json!(3_000_000_000u64)] {
        cases.push((json!({"rate_limit": v}), "rate_limit"));
    }
    for v in [json!({"X-A": "1"}), json!(["X-A: 1"]), json!([{}]), json!([{"Bad Header": "1"}]), json!([{"X-A": 1}]), json!([{"X-A": "a\nb"}]), json!([{"Authorization": "Basic eA=="}]), json!([{"Host": "x"}])] {
        cases.push((json!({"headers": v}), "headers"));
    }
    for v in [json!({"a": 1}), json!({"a": null}), json!({"a": ["b"]}), json!(["a"]), json!(null), json!({"a/b": "c"}), json!({"a": "b,c"})] {
        cases.push((json!({"pulp_labels": v}), "pulp_labels"));
    }
    cases.push((json!({"client_cert": "not a certificate", "client_key": key}), "client_cert"));
    cases.push((json!({"client_cert": cert, "client_key": "not a key"}), "client_key"));
    cases.push((json!({"client_cert": cert, "client_key": other_key}), "client_key"));
    cases.push((json!({"client_cert": cert}), "client_key"));
    cases.push((json!({"client_key": key}), "client_cert"));
    cases.push((json!({"proxy_username": "u"}), "proxy_url"));
    cases.push((json!({"proxy_url": "http://proxy.test", "proxy_password": "p"}), "proxy_username"));
    cases.push((json!({"excludes": ["a"], "exclude_tags": ["b"]}), "excludes"));
    for (body, field) in cases {
        let mut create_body = remote_body("new", "http://x.test");
        create_body.as_object_mut().unwrap().extend(body.as_object().unwrap().clone());
        refused(s.post(REMOTES, create_body).await, field, &format!("create {body}"));
        refused(s.patch(&href(&remote), body.clone()).await, field, &format!("PATCH {body}"));
    }
    for (body, field) in [
        (json!({"retain_repo_versions": 0}), "retain_repo_versions"),
        (json!({"retain_repo_versions": -2}), "retain_repo_versions"),
        (json!({"retain_repo_versions": 1.5}), "retain_repo_versions"),
        (json!({"retain_repo_versions": 1e308}), "retain_repo_versions"),
        (json!({"retain_repo_versions": "2"}), "retain_repo_versions"),
        (json!({"pulp_labels": {"a": 1}}), "pulp_labels"),
    ] {
        refused(s.patch(&href(&repo), body.clone()).await, field, &format!("PATCH repository {body}"));
    }
    for (body, field) in [(json!({"hidden": "yes"}), "hidden"), (json!({"pulp_labels": {"a": true}}), "pulp_labels")] {
        refused(s.patch(&dist, body.clone()).await, field, &format!("PATCH distribution {body}"));
    }
    assert_eq!(s.count(REMOTES).await, 1);
}

async fn repository_and_distribution_fields_round_trip(backend: Backend) {
    let s = TestServer::start(backend).await;
    let repo = create(&s, REPOS, json!({"name": "r", "pulp_labels": {"env": "prod"}, "retain_repo_versions": 2, "description": "d"})).await;
    let h = href(&repo);
    assert_eq!(repo["prn"], format!("prn:container.containerrepository:{}", id_of(&h)));
    assert_eq!((&repo["pulp_labels"], &repo["retain_repo_versions"]), (&json!({"env": "prod"}), &json!(2)));
    s.completed(s.patch(&h, json!({"retain_repo_versions": null, "pulp_labels": {}})).await).await;
    let (_, read) = s.get(&h).await;
    assert_eq!((&read["pulp_labels"], &read["retain_repo_versions"], &read["description"]), (&json!({}), &Value::Null, &json!("d")));
    s.completed(s.patch(&h, json!({"retain_repo_versions": 5.0})).await).await;
    assert_eq!(s.get(&h).await.1["retain_repo_versions"], 5);

    let task = s.completed(s.post(DISTS, json!({"name": "d", "base_path": "d", "repository": h, "hidden": true, "pulp_labels": {"tier": "gold"}})).await).await;
    let d = task["created_resources"][0].as_str().unwrap().to_string();
    let (_, read) = s.get(&d).await;
    assert_eq!(read["prn"], format!("prn:container.containerdistribution:{}", id_of(&d)));
    assert_eq!((&read["hidden"], &read["pulp_labels"]), (&json!(true), &json!({"tier": "gold"})));
    s.completed(s.patch(&d, json!({"hidden": false})).await).await;
    let (_, read) = s.get(&d).await;
    assert_eq!((&read["hidden"], &read["pulp_labels"]), (&json!(false), &json!({"tier": "gold"})));
    let (_, created) = s.post(DISTS, json!({"name": "e", "base_path": "e"})).await;
    let e = s.wait_task(created["task"].as_str().unwrap()).await["created_resources"][0].as_str().unwrap().to_string();
    let (_, read) = s.get(&e).await;
    assert_eq!((&read["hidden"], &read["pulp_labels"]), (&json!(false), &json!({})), "defaults");
}

async fn hidden_distributions_are_served_but_not_in_the_catalog(backend: Backend) {
    let s = TestServer::start(backend).await;
    let repo = create(&s, REPOS, json!({"name": "r"})).await;
    for (name, hidden) in [("shown", false), ("secret/app", true)] {
        s.completed(s.post(DISTS, json!({"name": name, "base_path": name, "repository": href(&repo), "hidden": hidden})).await).await;
    }
    assert_eq!(catalog(&s).await, json!(["shown"]));
    let served = s.client.get(format!("{}/v2/secret/app/tags/list", s.base)).send().await.unwrap();
    assert_eq!(served.status(), StatusCode::OK, "a hidden distribution is still served");
    let (_, list) = s.get(&format!("{DISTS}?name=secret/app")).await;
    let d = href(&list["results"][0]);
    s.completed(s.patch(&d, json!({"hidden": false})).await).await;
    assert_eq!(catalog(&s).await, json!(["secret/app", "shown"]));
}

/// `/v2/_catalog` as the admin sees it (private distributions included).
async fn catalog(s: &TestServer) -> Value {
    let resp = s.client.get(format!("{}/v2/_catalog", s.base)).basic_auth("admin", Some(support::PASSWORD)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    resp.json::<Value>().await.unwrap()["repositories"].clone()
}

async fn custom_headers_reach_the_upstream(backend: Backend) {
    let s = TestServer::start(backend).await;
    let upstream = Recorder::start().await;
    upstream.tag("latest");
    let mut body = remote_body("h", &upstream.url);
    body["headers"] = json!([{"X-Custom": "v1"}, {"X-Other": "two", "X-Third": "3"}]);
    let remote = create(&s, REMOTES, body).await;
    let repo = create(&s, REPOS, json!({"name": "r"})).await;
    sync(&s, &href(&repo), &href(&remote), false).await;
    let log = upstream.take_log();
    assert!(log.iter().any(|r| r.path.contains("/blobs/")), "the sync fetched blobs: {log:?}");
    for r in &log {
        for (name, value) in [("x-custom", "v1"), ("x-other", "two"), ("x-third", "3")] {
            assert_eq!(r.headers.get(name).map(String::as_str), Some(value), "{} lacks {name}: {:?}", r.path, r.headers);
        }
    }
    // Without headers none are sent.
    s.completed(s.patch(&href(&remote), json!({"headers": null})).await).await;
    upstream.tag("other");
    sync(&s, &href(&repo), &href(&remote), false).await;
    let log = upstream.take_log();
    assert!(!log.is_empty() && log.iter().all(|r| !r.headers.contains_key("x-custom")), "{log:?}");
}

/// The smallest gap covering three consecutive requests (at 2 per second, about 1 s).
fn tightest_triple(log: &[Request]) -> Duration {
    log.windows(3).map(|w| w[2].at - w[0].at).min().unwrap_or(Duration::MAX)
}

async fn rate_limit_spaces_upstream_requests(backend: Backend) {
    let s = TestServer::start(backend).await;
    let upstream = Recorder::start().await;
    for t in ["a", "b", "c"] {
        upstream.tag(t);
    }
    let free = create(&s, REMOTES, remote_body("free", &upstream.url)).await;
    let mut limited_body = remote_body("limited", &upstream.url);
    limited_body["rate_limit"] = json!(2);
    let limited = create(&s, REMOTES, limited_body).await;

    // Unlimited, the requests come in a burst (so the check below can fail).
    let repo = create(&s, REPOS, json!({"name": "free"})).await;
    sync(&s, &href(&repo), &href(&free), false).await;
    let log = upstream.take_log();
    assert!(log.len() >= 10, "{log:?}");
    assert!(tightest_triple(&log) < Duration::from_millis(500), "{:?}", tightest_triple(&log));

    // At 2 per second: a tag list and a HEAD per tag (the manifests and blobs are stored).
    let repo = create(&s, REPOS, json!({"name": "limited"})).await;
    let start = Instant::now();
    sync(&s, &href(&repo), &href(&limited), false).await;
    let log = upstream.take_log();
    assert!(log.len() >= 4, "a tag list and three HEADs: {log:?}");
    assert!(tightest_triple(&log) >= Duration::from_millis(900), "{:?}: {log:?}", tightest_triple(&log));
    assert!(log[3].at - log[0].at >= Duration::from_millis(1400), "{log:?}");
    assert!(start.elapsed() < Duration::from_secs(20));
    let (_, versions) = s.get(&format!("{}versions/", href(&repo))).await;
    assert_eq!(versions["count"], 2, "the limited sync still completes: {versions}");
}

async fn sock_read_timeout_fails_a_stalled_sync(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (state, layer) = fault_image(vec![7u8; 1024]);
    let upstream = FaultUpstream::start(state).await;
    upstream.set_blob(&layer, BlobBehaviour::StallBeforeHeaders(Duration::from_secs(60)));
    let mut body = json!({"name": "slow", "url": upstream.url(), "upstream_name": "fault/app", "policy": "immediate"});
    body["sock_read_timeout"] = json!(1);
    body["max_retries"] = json!(0);
    let remote = create(&s, REMOTES, body).await;
    let repo = create(&s, REPOS, json!({"name": "r"})).await;
    let start = Instant::now();
    let error = failed_sync(&s, &href(&repo), &href(&remote)).await;
    let took = start.elapsed();
    assert!(error.contains("timed out") && error.contains("sock_read_timeout 1 s"), "{error}");
    assert!(took >= Duration::from_secs(1) && took < Duration::from_secs(15), "{took:?}");
    let (_, read) = s.get(&href(&repo)).await;
    assert!(read["latest_version_href"].as_str().unwrap().ends_with("/versions/0/"), "nothing was recorded: {read}");
}

/// `openssl s_server` as an HTTPS upstream that demands a client certificate signed by `ca`,
/// serving an empty tag list for `x`.
struct TlsUpstream {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl TlsUpstream {
    fn start(ca: &Ca) -> TlsUpstream {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = ca.leaf("127.0.0.1");
        std::fs::write(dir.path().join("server.pem"), cert).unwrap();
        std::fs::write(dir.path().join("server.key"), key).unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.cert.pem()).unwrap();
        let www = dir.path().join("www");
        std::fs::create_dir_all(www.join("v2/x/tags")).unwrap();
        // `-WWW` serves the file named by the whole request target, query included.
        std::fs::write(www.join("v2/x/tags/list?n=1000"), r#"{"name":"x","tags":[]}"#).unwrap();
        let port = support::free_port();
        let child = std::process::Command::new("openssl")
            .args(["s_server", "-quiet", "-WWW", "-Verify", "1", "-accept"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("-cert")
            .arg(dir.path().join("server.pem"))
            .arg("-key")
            .arg(dir.path().join("server.key"))
            .arg("-CAfile")
            .arg(dir.path().join("ca.pem"))
            .current_dir(&www)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("openssl s_server (apt-get install openssl)");
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(start.elapsed() < Duration::from_secs(10), "openssl s_server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        TlsUpstream { child, port, _dir: dir }
    }
}

impl Drop for TlsUpstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn client_certificates_are_presented_to_the_upstream(backend: Backend) {
    let s = TestServer::start(backend).await;
    let ca = Ca::new();
    let upstream = TlsUpstream::start(&ca);
    let (cert, key) = ca.leaf("pulpish client");
    let url = format!("https://127.0.0.1:{}", upstream.port);
    let remote = create(&s, REMOTES, json!({"name": "tls", "url": url, "upstream_name": "x", "ca_cert": ca.cert.pem()})).await;
    let repo = create(&s, REPOS, json!({"name": "r"})).await;

    let error = failed_sync(&s, &href(&repo), &href(&remote)).await;
    assert!(error.contains("cannot reach"), "without a client certificate the handshake fails: {error}");
    s.completed(s.patch(&href(&remote), json!({"client_cert": cert, "client_key": key})).await).await;
    let task = sync(&s, &href(&repo), &href(&remote), false).await;
    assert_eq!(task["created_resources"], json!([]), "an empty upstream, reached: {task}");
}

async fn retain_repo_versions_keeps_the_newest(backend: Backend) {
    let s = TestServer::start(backend).await;
    let upstream = Recorder::start().await;
    let remote = href(&create(&s, REMOTES, remote_body("u", &upstream.url)).await);
    let all = href(&create(&s, REPOS, json!({"name": "all"})).await);
    let two = href(&create(&s, REPOS, json!({"name": "two", "retain_repo_versions": 2})).await);
    let pinned = href(&create(&s, REPOS, json!({"name": "pinned", "retain_repo_versions": 1})).await);
    s.completed(s.post(DISTS, json!({"name": "two", "base_path": "two", "repository": two})).await).await;

    // v1: base + a; v2 (mirror): base + b, a removed; v3: base + b + c.
    let mut steps: Vec<(Vec<&str>, Vec<&str>, bool)> = vec![(vec!["base", "a"], vec![], false), (vec!["b"], vec!["a"], true), (vec!["c"], vec![], false)];
    for (i, (add, remove, mirror)) in steps.drain(..).enumerate() {
        add.iter().for_each(|t| upstream.tag(t));
        remove.iter().for_each(|t| upstream.untag(t));
        for repo in [&all, &two, &pinned] {
            sync(&s, repo, &remote, mirror).await;
        }
        if i == 0 {
            // Pinning version 1 of `pinned` protects it from retention.
            s.completed(s.post(DISTS, json!({"name": "pin", "base_path": "pin", "repository_version": format!("{pinned}versions/1/")})).await).await;
        }
    }
    assert_eq!(version_numbers(&s, &all).await, [3, 2, 1, 0]);
    assert_eq!(version_numbers(&s, &two).await, [3, 2]);
    assert_eq!(version_numbers(&s, &pinned).await, [3, 1], "the pinned version stays and is not counted");

    // The kept versions hold what the same versions of the unpruned repository hold.
    for n in [2, 3] {
        let expected = version_content(&s, &format!("{all}versions/{n}/")).await;
        assert!(!expected.is_empty());
        assert_eq!(version_content(&s, &format!("{two}versions/{n}/")).await, expected, "version {n}");
    }
    for n in [1, 3] {
        assert_eq!(version_content(&s, &format!("{pinned}versions/{n}/")).await, version_content(&s, &format!("{all}versions/{n}/")).await);
    }
    let (_, tags) = s.get(&format!("content/container/tags/?repository_version={two}versions/3/")).await;
    let mut names: Vec<&str> = tags["results"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["b", "base", "c"]);

    // The oldest kept version now adds everything it holds; the newest's changes are unchanged.
    let summary = |v: Value| v["content_summary"].clone();
    let oldest = summary(s.get(&format!("{two}versions/2/")).await.1);
    let counts = |section: &Value| section.as_object().unwrap().iter().map(|(k, v)| (k.clone(), v["count"].clone())).collect::<BTreeMap<_, _>>();
    assert_eq!(counts(&oldest["added"]), counts(&oldest["present"]), "{oldest}");
    assert!(counts(&oldest["removed"]).is_empty(), "{oldest}");
    let newest = summary(s.get(&format!("{two}versions/3/")).await.1);
    let reference = summary(s.get(&format!("{all}versions/3/")).await.1);
    for section in ["added", "removed", "present"] {
        assert_eq!(counts(&newest[section]), counts(&reference[section]), "{section}: {newest} vs {reference}");
    }

    // A tag first synced into a deleted version still pulls, manifest and blobs.
    let manifest = s.client.get(format!("{}/v2/two/manifests/base", s.base)).header("accept", OCI_MANIFEST).send().await.unwrap();
    assert_eq!(manifest.status(), StatusCode::OK);
    let manifest: Value = serde_json::from_slice(&manifest.bytes().await.unwrap()).unwrap();
    for digest in [&manifest["config"]["digest"], &manifest["layers"][0]["digest"]] {
        let blob = s.client.get(format!("{}/v2/two/blobs/{}", s.base, digest.as_str().unwrap())).send().await.unwrap();
        assert_eq!(blob.status(), StatusCode::OK, "{digest}");
        assert_eq!(sha256(&blob.bytes().await.unwrap()), digest.as_str().unwrap());
    }
}

async fn version_numbers(s: &TestServer, repo: &str) -> Vec<i64> {
    let (_, page) = s.get(&format!("{repo}versions/")).await;
    page["results"].as_array().unwrap().iter().map(|v| v["number"].as_i64().unwrap()).collect()
}

/// The hrefs of every tag, manifest and blob in a repository version, sorted.
async fn version_content(s: &TestServer, version: &str) -> Vec<String> {
    let mut hrefs = Vec::new();
    for kind in ["tags", "manifests", "blobs"] {
        let (status, page) = s.get(&format!("content/container/{kind}/?repository_version={version}&limit=1000")).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        hrefs.extend(page["results"].as_array().unwrap().iter().map(|c| c["pulp_href"].as_str().unwrap().to_string()));
    }
    hrefs.sort();
    hrefs
}

async fn retain_repo_versions_applies_to_pushes(backend: Backend) {
    let s = TestServer::start(backend).await;
    let push = |method: reqwest::Method, path: String| s.client.request(method, format!("{}{path}", s.base)).basic_auth("admin", Some(support::PASSWORD));
    let mut first_digest = String::new();
    for (i, tag) in ["one", "two", "three"].into_iter().enumerate() {
        let config = format!(r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":[]}},"comment":"{tag}"}}"#).into_bytes();
        let r = push(reqwest::Method::POST, format!("/v2/pushed/app/blobs/uploads/?digest={}", sha256(&config))).body(config.clone()).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        let manifest = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(&config), "size": config.len()}, "layers": []}))
        .unwrap();
        let r = push(reqwest::Method::PUT, format!("/v2/pushed/app/manifests/{tag}")).header("content-type", OCI_MANIFEST).body(manifest.clone()).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        if i == 0 {
            first_digest = sha256(&manifest);
            let (_, page) = s.get(&format!("{REPOS}?name=pushed/app")).await;
            s.completed(s.patch(&href(&page["results"][0]), json!({"retain_repo_versions": 1})).await).await;
        }
    }
    let (_, page) = s.get(&format!("{REPOS}?name=pushed/app")).await;
    let repo = href(&page["results"][0]);
    let (_, versions) = s.get(&format!("{repo}versions/")).await;
    assert_eq!(versions["count"], 1, "{versions}");
    assert_eq!(versions["results"][0]["number"], 3);
    let first = s.client.get(format!("{}/v2/pushed/app/manifests/one", s.base)).header("accept", OCI_MANIFEST).send().await.unwrap();
    assert_eq!(first.status(), StatusCode::OK, "the first push's tag is still in the latest version");
    assert_eq!(first.headers()["docker-content-digest"], first_digest.as_str());
}

/// The request bodies in the API document list the new fields, none of them required (pulp-cli
/// checks bodies against the document before sending them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_declares_the_new_fields_as_optional() {
    let s = TestServer::start(Backend::Sqlite).await;
    let doc: Value = reqwest::get(s.url("docs/api.json")).await.unwrap().json().await.unwrap();
    let body_schema = |path: &str, method: &str| {
        let reference = doc["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]["$ref"].as_str().unwrap_or_else(|| panic!("{method} {path}"));
        doc["components"]["schemas"][reference.rsplit('/').next().unwrap()].clone()
    };
    for (path, fields, required) in [
        (
            "/pulp/api/v3/remotes/container/container/",
            &["includes", "excludes", "include_tags", "sock_connect_timeout", "sock_read_timeout", "headers", "rate_limit", "proxy_username", "proxy_password", "client_cert", "client_key", "pulp_labels"][..],
            json!(["name", "url", "upstream_name"]),
        ),
        ("/pulp/api/v3/repositories/container/container/", &["pulp_labels", "retain_repo_versions"][..], json!(["name"])),
        ("/pulp/api/v3/distributions/container/container/", &["pulp_labels", "hidden"][..], json!(["name", "base_path"])),
    ] {
        let schema = body_schema(path, "post");
        for f in fields {
            assert!(schema["properties"].get(*f).is_some(), "{path}: {f} in {schema}");
        }
        let mut listed = schema["required"].as_array().cloned().unwrap_or_default();
        listed.sort_by_key(|v| v.to_string());
        let mut expected = required.as_array().unwrap().clone();
        expected.sort_by_key(|v| v.to_string());
        assert_eq!(listed, expected, "{path}");
    }
}

/// `set_label/` and `unset_label/` change one label at once on each labelled resource, and
/// two label changes at the same moment both land.
async fn labels_are_set_and_unset_one_at_a_time(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (_, remote) = s.post(REMOTES, json!({"name": "r", "url": "http://127.0.0.1:1", "upstream_name": "x", "pulp_labels": {"keep": "1"}})).await;
    let (_, repo) = s.post(REPOS, json!({"name": "r", "pulp_labels": {"keep": "1"}})).await;
    let task = s.completed(s.post("distributions/container/container/", json!({"name": "r", "base_path": "r", "pulp_labels": {"keep": "1"}})).await).await;
    let dist = task["created_resources"][0].as_str().unwrap().to_string();
    for href in [remote["pulp_href"].as_str().unwrap(), repo["pulp_href"].as_str().unwrap(), &dist] {
        let (status, body) = s.post(&format!("{href}set_label/"), json!({"key": "env", "value": "prod"})).await;
        assert_eq!(status, StatusCode::CREATED, "{href}: {body}");
        assert_eq!(body, json!({"key": "env", "value": "prod"}));
        assert_eq!(s.get(href).await.1["pulp_labels"], json!({"keep": "1", "env": "prod"}), "{href}");
        // Two at once: neither overwrites the other.
        let set_label = format!("{href}set_label/");
        let (a, b) = tokio::join!(s.post(&set_label, json!({"key": "a", "value": "1"})), s.post(&set_label, json!({"key": "b", "value": "2"})));
        assert_eq!((a.0, b.0), (StatusCode::CREATED, StatusCode::CREATED));
        assert_eq!(s.get(href).await.1["pulp_labels"], json!({"keep": "1", "env": "prod", "a": "1", "b": "2"}), "{href}");
        let (status, body) = s.post(&format!("{href}unset_label/"), json!({"key": "env"})).await;
        assert_eq!((status, body), (StatusCode::CREATED, json!({"key": "env", "value": "prod"})));
        assert_eq!(s.get(href).await.1["pulp_labels"], json!({"keep": "1", "a": "1", "b": "2"}));
        for (path, bad, field) in [
            ("unset_label/", json!({"key": "env"}), "key"),
            ("set_label/", json!({"key": "a/b", "value": "x"}), "key"),
            ("set_label/", json!({"key": "k", "value": "x,y"}), "value"),
            ("set_label/", json!({"key": "k"}), "value"),
            ("set_label/", json!({"key": "k", "value": "v", "color": "red"}), "color"),
        ] {
            let (status, body) = s.post(&format!("{href}{path}"), bad.clone()).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{href}{path} {bad}: {body}");
            assert!(body.get(field).is_some(), "{href}{path} {bad}: {body}");
        }
        assert_eq!(s.get(href).await.1["pulp_labels"], json!({"keep": "1", "a": "1", "b": "2"}), "refused changes wrote nothing");
    }
    // An update queued before a label change, and run after it, keeps the label it did not name
    // (one that names pulp_labels replaces them).
    for href in [remote["pulp_href"].as_str().unwrap(), repo["pulp_href"].as_str().unwrap(), &dist] {
        let sleeping = support::sleep_task(&s, 1.0, &[href]).await;
        let (status, queued) = s.patch(href, json!({"name": "renamed"})).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{queued}");
        assert_eq!(s.post(&format!("{href}set_label/"), json!({"key": "late", "value": "yes"})).await.0, StatusCode::CREATED);
        assert_eq!(s.get(&sleeping).await.1["state"], "running", "the update is still queued");
        assert_eq!(s.wait_task(queued["task"].as_str().unwrap()).await["state"], "completed");
        let now = s.get(href).await.1;
        assert_eq!((&now["name"], &now["pulp_labels"]["late"]), (&json!("renamed"), &json!("yes")), "{href}: {now}");
        s.completed(s.patch(href, json!({"pulp_labels": {"only": "this"}})).await).await;
        assert_eq!(s.get(href).await.1["pulp_labels"], json!({"only": "this"}));
    }
    let missing = format!("{REPOS}00000000-0000-0000-0000-000000000000/set_label/");
    assert_eq!(s.post(&missing, json!({"key": "k", "value": "v"})).await.0, StatusCode::NOT_FOUND);
}

on_databases!(
    labels_are_set_and_unset_one_at_a_time,
    unknown_fields_are_refused_by_name,
    remote_fields_round_trip_and_secrets_stay_hidden,
    bad_values_are_refused_naming_the_field,
    repository_and_distribution_fields_round_trip,
    hidden_distributions_are_served_but_not_in_the_catalog,
    custom_headers_reach_the_upstream,
    rate_limit_spaces_upstream_requests,
    sock_read_timeout_fails_a_stalled_sync,
    client_certificates_are_presented_to_the_upstream,
    retain_repo_versions_keeps_the_newest,
    retain_repo_versions_applies_to_pushes,
);
