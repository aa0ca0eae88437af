//! Sync from a real upstream (Debian's docker-registry, started here, filled with fixture
//! images built here): on_demand, immediate, auth, versions, mirror, failures.

mod support;

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::Digest;
use support::registry::{Auth, Registry};
use support::{Backend, TestServer};

const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

fn shared() -> &'static (Registry, HashMap<String, String>) {
    support::registry::shared_upstream(false)
}

/// What the upstream holds for `name`, walked independently of pulpish: tags, manifest
/// digests (lists and the manifests they list), blob digests.
struct Inventory {
    tags: BTreeSet<String>,
    manifests: BTreeSet<String>,
    blobs: BTreeSet<String>,
}

async fn inventory(registry: &str, name: &str) -> Inventory {
    let client = reqwest::Client::new();
    let tags: Value = client.get(format!("http://{registry}/v2/{name}/tags/list")).send().await.unwrap().json().await.unwrap();
    let tags: BTreeSet<String> = tags["tags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_string()).collect();
    let mut inv = Inventory { tags: tags.clone(), manifests: BTreeSet::new(), blobs: BTreeSet::new() };
    let mut queue: Vec<String> = tags.into_iter().collect();
    while let Some(reference) = queue.pop() {
        let resp = client.get(format!("http://{registry}/v2/{name}/manifests/{reference}")).header("accept", ACCEPT).send().await.unwrap();
        let digest = resp.headers()["docker-content-digest"].to_str().unwrap().to_string();
        let doc: Value = resp.json().await.unwrap();
        if !inv.manifests.insert(digest) {
            continue;
        }
        if let Some(list) = doc["manifests"].as_array() {
            queue.extend(list.iter().map(|m| m["digest"].as_str().unwrap().to_string()));
        } else {
            inv.blobs.insert(doc["config"]["digest"].as_str().unwrap().to_string());
            for l in doc["layers"].as_array().unwrap() {
                inv.blobs.insert(l["digest"].as_str().unwrap().to_string());
            }
        }
    }
    inv
}

async fn remote(s: &TestServer, name: &str, url: &str, upstream: &str, policy: &str, extra: Value) -> String {
    let mut body = json!({"name": name, "url": url, "upstream_name": upstream, "policy": policy});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let (status, r) = s.post("remotes/container/container/", body).await;
    assert_eq!(status, StatusCode::CREATED, "{r}");
    r["pulp_href"].as_str().unwrap().to_string()
}

async fn new_repo(s: &TestServer, name: &str, remote: Option<&str>) -> String {
    let (status, r) = s.post("repositories/container/container/", json!({"name": name, "remote": remote})).await;
    assert_eq!(status, StatusCode::CREATED, "{r}");
    r["pulp_href"].as_str().unwrap().to_string()
}

async fn sync(s: &TestServer, repo: &str, body: Value) -> Value {
    let (status, t) = s.post(&format!("{repo}sync/"), body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{t}");
    s.wait_task(t["task"].as_str().unwrap()).await
}

async fn latest(s: &TestServer, repo: &str) -> String {
    s.get(repo).await.1["latest_version_href"].as_str().unwrap().to_string()
}

/// Every page of a content list in one version.
async fn content(s: &TestServer, kind: &str, version: &str) -> Vec<Value> {
    let (status, body) = s.get(&format!("content/container/{kind}/?repository_version={version}&limit=1000")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["results"].as_array().unwrap().clone()
}

fn field_set(items: &[Value], field: &str) -> BTreeSet<String> {
    items.iter().map(|i| i[field].as_str().unwrap().to_string()).collect()
}

async fn on_demand_saves_tags_and_manifests_but_no_blob_bytes(backend: Backend) {
    let (registry, _) = shared();
    let s = TestServer::start(backend).await;
    for (i, upstream) in ["fixtures/oci", "fixtures/docker", "fixtures/index", "fixtures/list"].into_iter().enumerate() {
        let r = remote(&s, &format!("r{i}"), &registry.url(), upstream, "on_demand", json!({})).await;
        let repo = new_repo(&s, &format!("repo{i}"), Some(&r)).await;
        let gets_before = registry.blob_gets(Some(&format!("/v2/{upstream}/blobs/")));
        let task = sync(&s, &repo, json!({})).await;
        assert_eq!(task["state"], "completed", "{task}");
        let version = latest(&s, &repo).await;
        assert!(version.ends_with("/versions/1/"), "{version}");
        assert_eq!(task["created_resources"], json!([version]));

        let inv = inventory(&registry.addr, upstream).await;
        let tags = content(&s, "tags", &version).await;
        let manifests = content(&s, "manifests", &version).await;
        let blobs = content(&s, "blobs", &version).await;
        assert_eq!(field_set(&tags, "name"), inv.tags, "{upstream}");
        assert_eq!(field_set(&manifests, "digest"), inv.manifests, "{upstream}");
        assert_eq!(field_set(&blobs, "digest"), inv.blobs, "{upstream}");
        assert!(blobs.iter().all(|b| b["artifact"].is_null()), "on_demand stores no blob bytes");
        assert_eq!(registry.blob_gets(Some(&format!("/v2/{upstream}/blobs/"))), gets_before, "no blob requests upstream during an on_demand sync");

        let (_, v) = s.get(&version).await;
        let present = &v["content_summary"]["present"];
        assert_eq!(present["container.tag"]["count"], inv.tags.len());
        assert_eq!(present["container.manifest"]["count"], inv.manifests.len());
        assert_eq!(present["container.blob"]["count"], inv.blobs.len());
        for (kind, entry) in v["content_summary"]["added"].as_object().unwrap() {
            assert_eq!(entry["count"], present[kind]["count"], "version 1 added everything it holds");
            assert_eq!(s.count(entry["href"].as_str().unwrap()).await, entry["count"].as_i64().unwrap(), "the summary's href lists what it counts");
        }
    }
    // The lists: two platforms each, the listed manifests linked.
    let (_, lists) = s.get("content/container/manifests/?limit=1000").await;
    let with_children: Vec<&Value> = lists["results"].as_array().unwrap().iter().filter(|m| !m["listed_manifests"].as_array().unwrap().is_empty()).collect();
    assert_eq!(with_children.len(), 2, "an OCI index and a Docker manifest list");
    let types: BTreeSet<&str> = with_children.iter().map(|m| m["media_type"].as_str().unwrap()).collect();
    assert_eq!(types, BTreeSet::from(["application/vnd.docker.distribution.manifest.list.v2+json", "application/vnd.oci.image.index.v1+json"]));
    for m in with_children {
        assert_eq!(m["listed_manifests"].as_array().unwrap().len(), 2);
    }
    // umoci writes OCI manifests without `mediaType`: the type comes from the response.
    let (_, oci) = s.get(&format!("content/container/manifests/?digest={}", shared().1.get("fixtures/oci:latest").unwrap())).await;
    assert_eq!(oci["results"][0]["media_type"], "application/vnd.oci.image.manifest.v1+json");
    assert_eq!(s.count("artifacts/").await, 0);
}

async fn immediate_stores_every_blob_with_its_digest(backend: Backend) {
    let (registry, _) = shared();
    let s = TestServer::start(backend).await;
    let r = remote(&s, "imm", &registry.url(), "fixtures/index", "immediate", json!({"download_concurrency": 2})).await;
    let repo = new_repo(&s, "imm", Some(&r)).await;
    let task = sync(&s, &repo, json!({})).await;
    assert_eq!(task["state"], "completed", "{task}");
    let reports: HashMap<String, Value> = task["progress_reports"].as_array().unwrap().iter().map(|p| (p["code"].as_str().unwrap().to_string(), p.clone())).collect();
    let downloads = &reports["sync.downloading_artifacts"];
    assert_eq!(downloads["done"], downloads["total"]);

    let inv = inventory(&registry.addr, "fixtures/index").await;
    let blobs = content(&s, "blobs", &latest(&s, &repo).await).await;
    assert_eq!(field_set(&blobs, "digest"), inv.blobs);
    assert_eq!(s.count("artifacts/").await as usize, inv.blobs.len());
    for b in &blobs {
        let (status, a) = s.get(b["artifact"].as_str().expect("immediate links an artifact")).await;
        assert_eq!(status, StatusCode::OK);
        let bytes = support::stored_object(&s, a["file"].as_str().unwrap()).expect("the artifact's object is stored");
        assert_eq!(format!("sha256:{:x}", sha2::Sha256::digest(&bytes)), b["digest"].as_str().unwrap(), "stored bytes hash to the digest");
        assert_eq!(bytes.len() as i64, a["size"].as_i64().unwrap());
    }
    assert_eq!(support::scratch_files(&s.dir.path().join("data")), Vec::<std::path::PathBuf>::new(), "no temp files left");
}

async fn resync_versions_and_mirror(backend: Backend) {
    let registry = Registry::start(Auth::Anonymous);
    registry.push_layout_tag("amd64", "app/x:one", false, None);
    registry.push_layout_tag("arm64", "app/x:two", false, None);
    let s = TestServer::start(backend).await;
    let r = remote(&s, "x", &registry.url(), "app/x", "on_demand", json!({})).await;
    let repo = new_repo(&s, "x", Some(&r)).await;
    assert_eq!(sync(&s, &repo, json!({})).await["state"], "completed");
    let v1 = latest(&s, &repo).await;
    assert_eq!(field_set(&content(&s, "tags", &v1).await, "name"), BTreeSet::from(["one".into(), "two".into()]));

    // Nothing changed upstream: no new version, and no manifest is downloaded again (HEAD only).
    let manifest_gets = || registry.log().lines().filter(|l| l.contains("\"GET /v2/app/x/manifests/")).count();
    let gets_before = manifest_gets();
    let again = sync(&s, &repo, json!({})).await;
    assert_eq!(manifest_gets(), gets_before, "a re-sync fetches no manifest it already has");
    assert_eq!(again["state"], "completed");
    assert_eq!(again["created_resources"], json!([]));
    assert_eq!(latest(&s, &repo).await, v1);
    assert_eq!(s.count(&format!("{repo}versions/")).await, 2);

    // A tag added upstream: a new version with one more tag.
    registry.push_layout_tag("amd64", "app/x:three", true, None);
    assert_eq!(sync(&s, &repo, json!({})).await["state"], "completed");
    let v2 = latest(&s, &repo).await;
    assert!(v2.ends_with("/versions/2/"), "{v2}");
    assert_eq!(content(&s, "tags", &v2).await.len(), 3);
    let (_, summary) = s.get(&v2).await;
    assert_eq!(summary["content_summary"]["added"]["container.tag"]["count"], 1);

    // A tag deleted upstream stays without mirror, goes with mirror=true.
    let two = registry_digest(&registry, "app/x", "two").await;
    registry.delete_manifest("app/x", &two);
    assert_eq!(sync(&s, &repo, json!({})).await["created_resources"], json!([]));
    let t = sync(&s, &repo, json!({"mirror": true})).await;
    assert_eq!(t["state"], "completed", "{t}");
    let v3 = latest(&s, &repo).await;
    assert!(v3.ends_with("/versions/3/"), "{v3}");
    let tags = field_set(&content(&s, "tags", &v3).await, "name");
    assert_eq!(tags, BTreeSet::from(["one".into(), "three".into()]));
    let (_, summary) = s.get(&v3).await;
    let removed = &summary["content_summary"]["removed"]["container.tag"];
    assert_eq!(removed["count"], 1);
    let (_, gone) = s.get(removed["href"].as_str().unwrap()).await;
    assert_eq!(gone["results"][0]["name"], "two");
    assert!(content(&s, "manifests", &v3).await.iter().all(|m| m["digest"] != two.as_str()));
    // Older versions still read as they were.
    assert_eq!(content(&s, "tags", &v1).await.len(), 2);
}

async fn registry_digest(registry: &Registry, name: &str, tag: &str) -> String {
    let resp = reqwest::Client::new()
        .head(format!("http://{}/v2/{name}/manifests/{tag}", registry.addr))
        .header("accept", ACCEPT)
        .send()
        .await
        .unwrap();
    resp.headers()["docker-content-digest"].to_str().unwrap().to_string()
}

async fn htpasswd_upstream_needs_the_right_credentials(backend: Backend) {
    let registry = Registry::start(Auth::Htpasswd { user: "puller", password: "pa55" });
    registry.push_layout_tag("amd64", "private/app:latest", false, Some("puller:pa55"));
    let s = TestServer::start(backend).await;
    let good = remote(&s, "good", &registry.url(), "private/app", "on_demand", json!({"username": "puller", "password": "pa55"})).await;
    let anon = remote(&s, "anon", &registry.url(), "private/app", "on_demand", json!({})).await;
    let wrong = remote(&s, "wrong", &registry.url(), "private/app", "on_demand", json!({"username": "puller", "password": "nope"})).await;
    let repo = new_repo(&s, "private", None).await;
    for r in [&anon, &wrong] {
        let t = sync(&s, &repo, json!({"remote": r})).await;
        assert_eq!(t["state"], "failed", "{t}");
        let why = t["error"]["description"].as_str().unwrap();
        assert!(why.contains("refused the credentials"), "{why}");
        assert!(latest(&s, &repo).await.ends_with("/versions/0/"), "a failed sync records no version");
        assert_eq!(s.count("content/container/manifests/").await, 0, "nor any content");
    }
    let t = sync(&s, &repo, json!({"remote": good})).await;
    assert_eq!(t["state"], "completed", "{t}");
    assert_eq!(content(&s, "tags", &latest(&s, &repo).await).await.len(), 1);
}

async fn token_auth_upstream_works_with_credentials_and_fails_clearly_without(backend: Backend) {
    use support::token::{TokenServer, ISSUER, SERVICE};
    let tokens = TokenServer::start("puller", "pa55").await;
    let registry = Registry::start(Auth::Token { realm: &tokens.realm, service: SERVICE, issuer: ISSUER, root_cert: &tokens.cert_path });
    registry.push_layout_tag("index", "tokened/app:latest", false, Some("puller:pa55"));
    registry.push_layout_tag("amd64", "tokened/app:other", false, Some("puller:pa55"));
    let s = TestServer::start(backend).await;
    let good = remote(&s, "good", &registry.url(), "tokened/app", "on_demand", json!({"username": "puller", "password": "pa55"})).await;
    let anon = remote(&s, "anon", &registry.url(), "tokened/app", "on_demand", json!({})).await;
    let wrong = remote(&s, "wrong", &registry.url(), "tokened/app", "on_demand", json!({"username": "puller", "password": "nope"})).await;
    let repo = new_repo(&s, "tokened", None).await;
    for r in [&anon, &wrong] {
        let t = sync(&s, &repo, json!({"remote": r})).await;
        assert_eq!(t["state"], "failed", "{t}");
        assert!(t["error"]["description"].as_str().unwrap().contains("refused the credentials"), "{t}");
    }
    let before = tokens.issued.load(std::sync::atomic::Ordering::SeqCst);
    let t = sync(&s, &repo, json!({"remote": good})).await;
    assert_eq!(t["state"], "completed", "{t}");
    let version = latest(&s, &repo).await;
    assert_eq!(content(&s, "tags", &version).await.len(), 2);
    assert_eq!(content(&s, "manifests", &version).await.len(), 3);
    // One token serves the whole sync (tag list, HEADs, manifests) until it expires.
    assert_eq!(tokens.issued.load(std::sync::atomic::Ordering::SeqCst) - before, 1);
    tokens.stop().await;
}

async fn many_tags_and_tag_filters(backend: Backend) {
    let (registry, _) = shared();
    let s = TestServer::start(backend).await;
    let r = remote(&s, "many", &registry.url(), "fixtures/many", "on_demand", json!({})).await;
    let repo = new_repo(&s, "many", Some(&r)).await;
    let start = Instant::now();
    let t = sync(&s, &repo, json!({})).await;
    let elapsed = start.elapsed();
    assert_eq!(t["state"], "completed", "{t}");
    println!("on_demand sync of 250 tags ({backend:?}): {:.2} s", elapsed.as_secs_f64());
    let version = latest(&s, &repo).await;
    let (_, v) = s.get(&version).await;
    assert_eq!(v["content_summary"]["present"]["container.tag"]["count"], 250);
    assert_eq!(v["content_summary"]["present"]["container.manifest"]["count"], 1);
    let reports: HashMap<String, Value> = t["progress_reports"].as_array().unwrap().iter().map(|p| (p["code"].as_str().unwrap().to_string(), p.clone())).collect();
    assert_eq!(reports["sync.processing_tags"]["done"], 250);
    assert_eq!(reports["sync.processing_tags"]["total"], 250);
    assert_eq!(reports["sync.listing_tags"]["done"], 250);

    let filtered = remote(&s, "filtered", &registry.url(), "fixtures/many", "on_demand", json!({"include_tags": ["tag-00*", "tag-1?0"], "exclude_tags": ["tag-005"]})).await;
    let repo2 = new_repo(&s, "filtered", Some(&filtered)).await;
    assert_eq!(sync(&s, &repo2, json!({})).await["state"], "completed");
    let names = field_set(&content(&s, "tags", &latest(&s, &repo2).await).await, "name");
    let expected: BTreeSet<String> = (0..10).filter(|n| *n != 5).map(|n| format!("tag-00{n}")).chain((0..10).map(|n| format!("tag-1{n}0"))).collect();
    assert_eq!(names, expected);
}

async fn failures_say_which_and_record_nothing(backend: Backend) {
    let (registry, _) = shared();
    let s = TestServer::start(backend).await;
    let closed = support::free_port();
    let cases = [
        (format!("http://127.0.0.1:{closed}"), "fixtures/oci", "cannot reach the upstream"),
        (registry.url(), "no/such/repository", "not found on the upstream"),
    ];
    let repo = new_repo(&s, "f", None).await;
    for (i, (url, name, expected)) in cases.iter().enumerate() {
        let r = remote(&s, &format!("f{i}"), url, name, "on_demand", json!({"max_retries": 0})).await;
        let t = sync(&s, &repo, json!({"remote": r})).await;
        assert_eq!(t["state"], "failed", "{t}");
        let why = t["error"]["description"].as_str().unwrap();
        assert!(why.contains(expected), "{why}");
    }
    let (status, body) = s.post(&format!("{repo}sync/"), json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["remote"].is_array(), "{body}");
    let (status, _) = s.post(&format!("{repo}sync/"), json!({"remote": "/pulp/api/v3/remotes/container/container/00000000-0000-0000-0000-000000000000/"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(latest(&s, &repo).await.ends_with("/versions/0/"));
    assert_eq!(s.count("content/container/tags/").await, 0);
}

async fn a_manifest_whose_digest_does_not_match_fails_the_sync(backend: Backend) {
    use support::fault::{FaultState, FaultUpstream};
    let manifest = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000001","size":2},"layers":[]}"#.to_vec();
    let mut state = FaultState { name: "bad/app".into(), ..Default::default() };
    state.tags.insert("latest".into(), (manifest, "application/vnd.oci.image.manifest.v1+json".into()));
    state.lying_digest = Some(format!("sha256:{}", "ab".repeat(32)));
    let upstream = FaultUpstream::start(state).await;
    let s = TestServer::start(backend).await;
    let r = remote(&s, "liar", &upstream.url(), "bad/app", "on_demand", json!({})).await;
    let repo = new_repo(&s, "liar", Some(&r)).await;
    let t = sync(&s, &repo, json!({})).await;
    assert_eq!(t["state"], "failed", "{t}");
    let why = t["error"]["description"].as_str().unwrap();
    assert!(why.contains("digest mismatch"), "{why}");
    assert!(latest(&s, &repo).await.ends_with("/versions/0/"));
    assert_eq!(s.count("content/container/manifests/").await, 0);
    assert_eq!(s.count("content/container/blobs/").await, 0);
    upstream.stop().await;
}

on_both_backends!(
    a_manifest_whose_digest_does_not_match_fails_the_sync,
    on_demand_saves_tags_and_manifests_but_no_blob_bytes,
    immediate_stores_every_blob_with_its_digest,
    resync_versions_and_mirror,
    htpasswd_upstream_needs_the_right_credentials,
    token_auth_upstream_works_with_credentials_and_fails_clearly_without,
    many_tags_and_tag_filters,
    failures_say_which_and_record_nothing,
);
