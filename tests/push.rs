//! Push: pulpish as a registry for skopeo, podman and the Docker engine; uploads that any
//! replica can continue; the spec's errors for bad pushes, with nothing stored.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::Digest;
use support::registry::fixture_layout;
use support::{Backend, TestServer, PASSWORD};

const CREDS: &str = "admin:test-admin-password";

fn host(s: &TestServer) -> String {
    s.base.trim_start_matches("http://").to_string()
}

fn skopeo(args: &[&str]) -> std::process::Output {
    Command::new("skopeo").args(args).output().expect("skopeo")
}

fn ok(out: std::process::Output) -> String {
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn layout() -> String {
    format!("{}/layout", fixture_layout(false).display())
}

/// Manifest digests and blob digests of an OCI layout tag, read from the layout itself.
fn layout_digest(tag: &str) -> String {
    let index: Value = serde_json::from_slice(&std::fs::read(format!("{}/index.json", layout())).unwrap()).unwrap();
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{:x}", sha2::Sha256::digest(bytes))
}

async fn skopeo_and_podman_push_and_pull_back_identical(backend: Backend) {
    let s = TestServer::start(backend).await;
    let h = host(&s);
    ok(skopeo(&["copy", "--quiet", "--dest-tls-verify=false", "--dest-creds", CREDS, &format!("oci:{}:amd64", layout()), &format!("docker://{h}/pushed/busybox:latest")]));
    ok(skopeo(&["copy", "--quiet", "--all", "--dest-tls-verify=false", "--dest-creds", CREDS, &format!("oci:{}:index", layout()), &format!("docker://{h}/pushed/index:latest")]));

    // Byte-identical: the manifest digests are the layout's, every blob hashes to its digest.
    let raw = ok(skopeo(&["inspect", "--raw", "--tls-verify=false", &format!("docker://{h}/pushed/busybox:latest")]));
    assert_eq!(sha256(raw.as_bytes()), layout_digest("amd64"));
    let raw = ok(skopeo(&["inspect", "--raw", "--tls-verify=false", &format!("docker://{h}/pushed/index:latest")]));
    assert_eq!(sha256(raw.as_bytes()), layout_digest("index"));
    let back = tempfile::tempdir().unwrap();
    ok(skopeo(&["copy", "--quiet", "--all", "--src-tls-verify=false", &format!("docker://{h}/pushed/index:latest"), &format!("oci:{}:x", back.path().display())]));
    let mut blobs = 0;
    for e in std::fs::read_dir(back.path().join("blobs/sha256")).unwrap() {
        let p = e.unwrap().path();
        assert_eq!(support::file_digest(&p), format!("sha256:{}", p.file_name().unwrap().to_str().unwrap()));
        blobs += 1;
    }
    assert!(blobs >= 7, "index + 2 manifests + 2 configs + layers, got {blobs}");

    // The first push made a repository and a distribution; the version holds what was pushed.
    let (_, dists) = s.get("distributions/container/container/?base_path=pushed/index").await;
    let repo = dists["results"][0]["repository"].as_str().unwrap().to_string();
    let (_, r) = s.get(&repo).await;
    let (_, v) = s.get(r["latest_version_href"].as_str().unwrap()).await;
    assert_eq!(v["content_summary"]["present"]["container.manifest"]["count"], 3);
    assert_eq!(v["content_summary"]["present"]["container.tag"]["count"], 1);

    // podman, after `podman login`.
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("auth.json"), "{}").unwrap();
    let podman = |args: &[&str]| {
        Command::new("podman")
            .arg("--root").arg(root.path().join("r"))
            .arg("--runroot").arg(root.path().join("rr"))
            .args(["--storage-driver", "vfs"])
            .args(args)
            .env("REGISTRY_AUTH_FILE", root.path().join("auth.json"))
            .output()
            .unwrap()
    };
    ok(podman(&["pull", "--quiet", "--tls-verify=false", &format!("{h}/pushed/busybox:latest")]));
    ok(podman(&["login", "--tls-verify=false", "-u", "admin", "-p", PASSWORD, &h]));
    ok(podman(&["push", "--quiet", "--tls-verify=false", &format!("{h}/pushed/busybox:latest"), &format!("{h}/podman/busybox:v1")]));
    let pushed = ok(skopeo(&["inspect", "--tls-verify=false", &format!("docker://{h}/podman/busybox:v1")]));
    let pushed: Value = serde_json::from_str(&pushed).unwrap();
    assert_eq!(pushed["Architecture"], "amd64");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_engine_push_and_pull() {
    let info = Command::new("docker").args(["info", "--format", "{{.ServerVersion}}"]).output().ok();
    if !info.is_some_and(|o| o.status.success()) {
        println!("SKIPPED: no Docker engine answers `docker info` on this machine");
        return;
    }
    let s = TestServer::start(Backend::Sqlite).await;
    let h = host(&s);
    ok(skopeo(&["copy", "--quiet", "--dest-tls-verify=false", "--dest-creds", CREDS, &format!("oci:{}:amd64", layout()), &format!("docker://{h}/seed/busybox:latest")]));
    let config = tempfile::tempdir().unwrap();
    let docker = |args: &[&str]| Command::new("docker").arg("--config").arg(config.path()).args(args).output().unwrap();
    ok(docker(&["pull", "-q", &format!("{h}/seed/busybox:latest")]));
    ok(docker(&["tag", &format!("{h}/seed/busybox:latest"), &format!("{h}/docker/busybox:v1")]));
    let denied = docker(&["push", &format!("{h}/docker/busybox:v1")]);
    assert!(!denied.status.success(), "push without login must fail");
    ok(docker(&["login", "-u", "admin", "-p", PASSWORD, &h]));
    let out = ok(docker(&["push", &format!("{h}/docker/busybox:v1")]));
    let _ = docker(&["rmi", "-f", &format!("{h}/docker/busybox:v1"), &format!("{h}/seed/busybox:latest")]);
    let digest = out.split("digest: ").nth(1).unwrap().split_whitespace().next().unwrap().to_string();
    let raw = ok(skopeo(&["inspect", "--raw", "--tls-verify=false", &format!("docker://{h}/docker/busybox:v1")]));
    assert_eq!(sha256(raw.as_bytes()), digest);
}

async fn push_without_credentials_is_refused_and_stores_nothing(backend: Backend) {
    let s = TestServer::start(backend).await;
    let out = skopeo(&["copy", "--quiet", "--dest-tls-verify=false", &format!("oci:{}:amd64", layout()), &format!("docker://{}/anon/busybox:latest", host(&s))]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unauthorized"), "{}", String::from_utf8_lossy(&out.stderr));
    let resp = s.client.post(format!("{}/v2/anon/busybox/blobs/uploads/", s.base)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(resp.headers()["www-authenticate"].to_str().unwrap().contains("scope=\"repository:anon/busybox:pull,push\""));
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "UNAUTHORIZED");
    // A token fetched without credentials grants no push either.
    let token: Value = reqwest::get(format!("{}/token?service=pulpish&scope=repository:anon/busybox:pull,push", s.base)).await.unwrap().json().await.unwrap();
    let resp = s.client.post(format!("{}/v2/anon/busybox/blobs/uploads/", s.base)).bearer_auth(token["token"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let wrong = reqwest::Client::new().get(format!("{}/token?scope=repository:anon/busybox:push", s.base)).basic_auth("admin", Some("nope")).send().await.unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(s.count("distributions/container/container/").await, 0);
    assert_eq!(s.count("repositories/container/container/").await, 0);
    assert_eq!(s.count("artifacts/").await, 0);
}

/// A push client speaking raw HTTP with the admin's Basic credentials.
struct Pusher<'a> {
    s: &'a TestServer,
}

impl Pusher<'_> {
    fn req(&self, method: reqwest::Method, base: &str, path: &str) -> reqwest::RequestBuilder {
        self.s.client.request(method, format!("{base}{path}")).basic_auth("admin", Some(PASSWORD))
    }

    async fn start(&self, base: &str, name: &str) -> String {
        let r = self.req(reqwest::Method::POST, base, &format!("/v2/{name}/blobs/uploads/")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        assert_eq!(r.headers()["range"], "0-0");
        r.headers()["location"].to_str().unwrap().to_string()
    }
}

/// Staged parts of every upload, on disk or in the bucket.
fn staged_files(s: &TestServer) -> usize {
    support::staged_objects(s, "").len()
}

/// Two replicas sharing one data dir on the filesystem; the S3 twin (replicas sharing a bucket,
/// each with its own data dir) is in tests/object_store.rs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_one_postgresql_finish_each_others_uploads() {
    let a = TestServer::start(Backend::Postgres).await;
    let url = a.state.config.database_url.clone().unwrap();
    let shared_data = a.dir.path().join("data");
    let b = TestServer::start_with(tempfile::tempdir().unwrap(), url, |c| c.data_dir = shared_data.clone()).await;
    let p = Pusher { s: &a };
    let blob: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let digest = sha256(&blob);
    let (first, second) = blob.split_at(1024 * 1024 + 17);

    let location = p.start(&a.base, "replicas/app").await;
    let r = p.req(reqwest::Method::PATCH, &b.base, &location)
        .header("content-range", format!("0-{}", first.len() - 1))
        .body(first.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED, "PATCH on replica B");
    assert_eq!(r.headers()["range"], format!("0-{}", first.len() - 1).as_str());
    let status = p.req(reqwest::Method::GET, &a.base, &location).send().await.unwrap();
    assert_eq!(status.status(), StatusCode::NO_CONTENT);
    assert_eq!(status.headers()["range"], format!("0-{}", first.len() - 1).as_str(), "replica A sees B's chunk");
    let r = p.req(reqwest::Method::PUT, &a.base, &format!("{location}?digest={digest}")).body(second.to_vec()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "PUT on replica A");
    assert_eq!(r.headers()["docker-content-digest"], digest.as_str());
    for server in [&a, &b] {
        let got = p.req(reqwest::Method::GET, &server.base, &format!("/v2/replicas/app/blobs/{digest}")).send().await.unwrap();
        assert_eq!(got.status(), StatusCode::OK);
        assert_eq!(sha256(&got.bytes().await.unwrap()), digest, "the blob reads back identical from {}", server.base);
    }
    assert_eq!(staged_files(&a), 0, "the staged bytes moved into the store");
}

async fn cancel_and_reaping_remove_staged_bytes(backend: Backend) {
    let s = TestServer::start_on(backend, |c| c.upload_expiry = 1).await;
    let p = Pusher { s: &s };
    let location = p.start(&s.base, "reap/app").await;
    p.req(reqwest::Method::PATCH, &s.base, &location).body(vec![7u8; 1000]).send().await.unwrap();
    assert_eq!(staged_files(&s), 1);
    let r = p.req(reqwest::Method::DELETE, &s.base, &location).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(staged_files(&s), 0, "cancel removes the staged bytes");
    let gone = p.req(reqwest::Method::GET, &s.base, &location).send().await.unwrap();
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
    assert_eq!(gone.json::<Value>().await.unwrap()["errors"][0]["code"], "BLOB_UPLOAD_UNKNOWN");

    // Left alone past the expiry, an upload is swept by the periodic reaper.
    let stale = p.start(&s.base, "reap/app").await;
    p.req(reqwest::Method::PATCH, &s.base, &stale).body(vec![1u8; 10]).send().await.unwrap();
    let start = Instant::now();
    while staged_files(&s) > 0 {
        assert!(start.elapsed() < Duration::from_secs(10), "the stale upload was not reaped");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = p.req(reqwest::Method::GET, &s.base, &stale).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

async fn bad_pushes_get_the_spec_errors_and_store_nothing(backend: Backend) {
    let s = TestServer::start(backend).await;
    let p = Pusher { s: &s };
    let blob = b"some layer bytes".to_vec();
    let digest = sha256(&blob);

    // Wrong digest, monolithic and chunked.
    let wrong = format!("sha256:{}", "1".repeat(64));
    let r = p.req(reqwest::Method::POST, &s.base, &format!("/v2/bad/app/blobs/uploads/?digest={wrong}")).body(blob.clone()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.json::<Value>().await.unwrap()["errors"][0]["code"], "DIGEST_INVALID");
    let location = p.start(&s.base, "bad/app").await;
    let r = p.req(reqwest::Method::PUT, &s.base, &format!("{location}?digest={wrong}")).body(blob.clone()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.json::<Value>().await.unwrap()["errors"][0]["code"], "DIGEST_INVALID");
    assert_eq!(s.count("artifacts/").await, 0);
    assert_eq!(staged_files(&s), 0);
    assert_eq!(support::scratch_files(&s.dir.path().join("data")).len(), 0);

    // A chunk out of order.
    let location = p.start(&s.base, "bad/app").await;
    p.req(reqwest::Method::PATCH, &s.base, &location).header("content-range", "0-4").body(blob[..5].to_vec()).send().await.unwrap();
    let r = p.req(reqwest::Method::PATCH, &s.base, &location).header("content-range", "9-15").body(blob[9..].to_vec()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(r.headers()["range"], "0-4");
    // ... and then in order, finishing right.
    let r = p.req(reqwest::Method::PATCH, &s.base, &location).header("content-range", format!("5-{}", blob.len() - 1)).body(blob[5..].to_vec()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = p.req(reqwest::Method::PUT, &s.base, &format!("{location}?digest={digest}")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);

    let versions_before = s.count("repositories/container/container/?name=bad/app").await;
    let put = |body: Vec<u8>, media_type: &'static str, reference: &'static str| {
        p.req(reqwest::Method::PUT, &s.base, &format!("/v2/bad/app/manifests/{reference}")).header("content-type", media_type).body(body).send()
    };
    let oci = "application/vnd.oci.image.manifest.v1+json";
    let missing = json!({"schemaVersion": 2, "mediaType": oci, "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest, "size": blob.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": format!("sha256:{}", "2".repeat(64)), "size": 3}]});
    let r = put(serde_json::to_vec(&missing).unwrap(), oci, "latest").await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "MANIFEST_BLOB_UNKNOWN", "{body}");
    let r = put(b"{not json".to_vec(), oci, "latest").await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.json::<Value>().await.unwrap()["errors"][0]["code"], "MANIFEST_INVALID");
    let mut huge = serde_json::to_vec(&missing).unwrap();
    huge.extend(std::iter::repeat_n(b' ', 4 * 1024 * 1024 + 1));
    let r = put(huge, oci, "latest").await.unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.json::<Value>().await.unwrap()["errors"][0]["code"], "SIZE_INVALID");
    let good = json!({"schemaVersion": 2, "mediaType": oci, "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest, "size": blob.len()}, "layers": []});
    let r = put(serde_json::to_vec(&good).unwrap(), oci, "sha256:3333333333333333333333333333333333333333333333333333333333333333").await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.json::<Value>().await.unwrap()["errors"][0]["code"], "DIGEST_INVALID");
    assert_eq!(s.count("content/container/manifests/").await, 0, "no bad manifest was stored");
    assert_eq!(s.count("repositories/container/container/?name=bad/app").await, versions_before);

    // The good one goes in; a tag moves; OCI 1.1 subject is answered; deletes make versions.
    let good_bytes = serde_json::to_vec(&good).unwrap();
    let r = put(good_bytes.clone(), oci, "latest").await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(r.headers()["docker-content-digest"], sha256(&good_bytes).as_str());
    let referrer = json!({"schemaVersion": 2, "mediaType": oci, "artifactType": "application/example",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest, "size": blob.len()}, "layers": [],
        "subject": {"mediaType": oci, "digest": sha256(&good_bytes), "size": good_bytes.len()}});
    let referrer_bytes = serde_json::to_vec(&referrer).unwrap();
    let r = put(referrer_bytes.clone(), oci, "latest").await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(r.headers()["oci-subject"], sha256(&good_bytes).as_str());
    let now = s.client.get(format!("{}/v2/bad/app/manifests/latest", s.base)).send().await.unwrap();
    assert_eq!(now.headers()["docker-content-digest"], sha256(&referrer_bytes).as_str(), "tags move");
    let by_digest = s.client.get(format!("{}/v2/bad/app/manifests/{}", s.base, sha256(&good_bytes))).send().await.unwrap();
    assert_eq!(by_digest.status(), StatusCode::OK, "the old manifest is still there by digest");
    let r = p.req(reqwest::Method::DELETE, &s.base, "/v2/bad/app/manifests/latest").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(s.client.get(format!("{}/v2/bad/app/manifests/latest", s.base)).send().await.unwrap().status(), StatusCode::NOT_FOUND);
    let r = p.req(reqwest::Method::DELETE, &s.base, &format!("/v2/bad/app/manifests/{}", sha256(&good_bytes))).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(s.client.get(format!("{}/v2/bad/app/manifests/{}", s.base, sha256(&good_bytes))).send().await.unwrap().status(), StatusCode::NOT_FOUND);
    let r = p.req(reqwest::Method::DELETE, &s.base, "/v2/bad/app/manifests/nope").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

async fn a_private_distribution_needs_credentials_to_pull(backend: Backend) {
    let s = TestServer::start(backend).await;
    let h = host(&s);
    ok(skopeo(&["copy", "--quiet", "--dest-tls-verify=false", "--dest-creds", CREDS, &format!("oci:{}:amd64", layout()), &format!("docker://{h}/secret/app:latest")]));
    let (_, d) = s.get("distributions/container/container/?base_path=secret/app").await;
    s.completed(s.patch(d["results"][0]["pulp_href"].as_str().unwrap(), json!({"private": true})).await).await;
    let out = tempfile::tempdir().unwrap();
    let denied = skopeo(&["copy", "--quiet", "--src-tls-verify=false", &format!("docker://{h}/secret/app:latest"), &format!("dir:{}", out.path().display())]);
    assert!(!denied.status.success(), "anonymous pull of a private distribution");
    ok(skopeo(&["copy", "--quiet", "--src-tls-verify=false", "--src-creds", CREDS, &format!("docker://{h}/secret/app:latest"), &format!("dir:{}", out.path().display())]));

    // Its blobs: the same 401 for a blob it holds and one it does not, and with credentials the
    // bytes the image names.
    let manifest: Value = serde_json::from_slice(&std::fs::read(out.path().join("manifest.json")).unwrap()).unwrap();
    let layer = manifest["layers"][0]["digest"].as_str().unwrap().to_string();
    let expected = std::fs::read(out.path().join(layer.trim_start_matches("sha256:"))).unwrap();
    for digest in [layer.clone(), format!("sha256:{}", "0".repeat(64))] {
        let r = s.client.get(format!("{}/v2/secret/app/blobs/{digest}", s.base)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "anonymous GET of blob {digest}");
    }
    let r = s.client.get(format!("{}/v2/secret/app/blobs/{layer}", s.base)).basic_auth("admin", Some(PASSWORD)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.unwrap().as_ref(), expected.as_slice());
    let r = s.client.get(format!("{}/v2/secret/app/blobs/sha256:{}", s.base, "0".repeat(64))).basic_auth("admin", Some(PASSWORD)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "with credentials, a blob it does not hold");
}

/// A manifest GET serves the version a distribution serves: a tag moved in a later version
/// still names its old manifest in a distribution pinned to the earlier one, and content added
/// later is unknown there; repointed at the repository, the latest version is served again.
async fn a_pinned_version_serves_its_own_tags(backend: Backend) {
    use support::images::{latest_version, pulled, push_image, repository_at};
    let s = TestServer::start(backend).await;
    let old = push_image(&s, "pin/app", "t", "old", &[b"old layer"]).await;
    let repo = repository_at(&s, "pin/app").await;
    let before = latest_version(&s, &repo).await;
    let new = push_image(&s, "pin/app", "t", "new", &[b"new layer"]).await;
    assert_eq!(pulled(&s, "pin/app", "t").await, Ok(new.digest.clone()), "the tag moved");
    assert_eq!(pulled(&s, "pin/app", &old.digest).await, Ok(old.digest.clone()), "the old manifest stays, by digest");

    let (_, d) = s.get("distributions/container/container/?base_path=pin/app").await;
    let href = d["results"][0]["pulp_href"].as_str().unwrap().to_string();
    s.completed(s.patch(&href, json!({"repository_version": before})).await).await;
    assert_eq!(pulled(&s, "pin/app", "t").await, Ok(old.digest.clone()), "pinned: the tag as it was");
    assert_eq!(pulled(&s, "pin/app", &new.digest).await, Err(StatusCode::NOT_FOUND), "pinned: not yet pushed");

    s.completed(s.patch(&href, json!({"repository": repo})).await).await;
    assert_eq!(pulled(&s, "pin/app", "t").await, Ok(new.digest.clone()), "repointed at the repository: its latest");
}

on_both_backends!(
    a_pinned_version_serves_its_own_tags,
    skopeo_and_podman_push_and_pull_back_identical,
    push_without_credentials_is_refused_and_stores_nothing,
    cancel_and_reaping_remove_staged_bytes,
    bad_pushes_get_the_spec_errors_and_store_nothing,
    a_private_distribution_needs_credentials_to_pull,
);
