//! The S3 store against a real object store (Garage): the bucket holds exactly the
//! content-addressed artifacts and, while they are open, the parts of uploads; replicas that
//! share a bucket finish each other's uploads; Range, HEAD and presigned redirects; bad settings
//! stop the binary naming the setting at fault; the store going away is a 503, not a hang.
//!
//! Skipped when no `garage` binary is found, except under CI.

mod support;

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::fault::{fault_image, sha256, FaultUpstream};
use support::{garage, Backend, TestServer, PASSWORD};

fn client() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

fn req(base: &str, method: Method, path: &str) -> reqwest::RequestBuilder {
    client().request(method, format!("{base}{path}")).basic_auth("admin", Some(PASSWORD))
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed).wrapping_add((i >> 16) as u8)).collect()
}

fn key_of(digest: &str) -> String {
    let hex = digest.trim_start_matches("sha256:");
    format!("artifact/{}/{}", &hex[..2], &hex[2..])
}

/// A whole blob in one `POST ?digest=`.
async fn push_blob(base: &str, name: &str, bytes: &[u8]) -> String {
    let digest = sha256(bytes);
    let r = req(base, Method::POST, &format!("/v2/{name}/blobs/uploads/?digest={digest}")).body(bytes.to_vec()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().await.unwrap());
    digest
}

/// `POST /v2/<name>/blobs/uploads/`; returns (location, upload id).
async fn start_upload(base: &str, name: &str) -> (String, String) {
    let r = req(base, Method::POST, &format!("/v2/{name}/blobs/uploads/")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let id = location.rsplit('/').next().unwrap().to_string();
    (location, id)
}

async fn patch(base: &str, location: &str, from: usize, chunk: &[u8]) {
    let r = req(base, Method::PATCH, location).header("content-range", format!("{from}-{}", from + chunk.len() - 1)).body(chunk.to_vec()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED, "PATCH on {base}: {}", r.text().await.unwrap());
}

/// An image manifest for `config` and `layers`, put under `tag`; returns its digest.
async fn push_manifest(base: &str, name: &str, tag: &str, config: &[u8], layers: &[&[u8]]) -> String {
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(config), "size": config.len()},
        "layers": layers.iter().map(|l| json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha256(l), "size": l.len()})).collect::<Vec<_>>(),
    });
    let bytes = serde_json::to_vec(&manifest).unwrap();
    let r = req(base, Method::PUT, &format!("/v2/{name}/manifests/{tag}"))
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(bytes.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().await.unwrap());
    sha256(&bytes)
}

/// Remote + repository + sync + distribution `name` on the tests' own upstream.
async fn serve_upstream(s: &TestServer, upstream: &FaultUpstream, name: &str, policy: &str) {
    let (status, remote) = s.post("remotes/container/container/", json!({"name": name, "url": upstream.url(), "upstream_name": "fault/app", "policy": policy})).await;
    assert_eq!(status, StatusCode::CREATED, "{remote}");
    let (_, repo) = s.post("repositories/container/container/", json!({"name": name, "remote": remote["pulp_href"]})).await;
    s.completed(s.post(&format!("{}sync/", repo["pulp_href"].as_str().unwrap()), json!({})).await).await;
    s.completed(s.post("distributions/container/container/", json!({"name": name, "base_path": name, "repository": repo["pulp_href"]})).await).await;
}

async fn wait_for(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < Duration::from_secs(15), "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Files under a data dir other than scratch files and the SQLite database: with the S3 store
/// nothing of the store lives there.
fn local_store_files(data_dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    for sub in ["artifact", "uploads"] {
        walk(&data_dir.join(sub), &mut out);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bucket_holds_exactly_the_content_addressed_artifacts() {
    if !garage::available() {
        return;
    }
    let s = TestServer::start(Backend::S3).await;
    let bucket = s.bucket.clone().unwrap();
    let status: Value = reqwest::get(s.url("status/")).await.unwrap().json().await.unwrap();
    assert_eq!(status["storage"]["backend"], "s3", "{status}");
    assert!(status["storage"]["free"].is_null(), "{status}");

    // A push: the config in one request, a 12 MiB layer in three chunks (each staged as an
    // object of its own, each larger than one multipart part).
    let config = br#"{"architecture":"arm64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#.to_vec();
    push_blob(&s.base, "pushed/app", &config).await;
    let layer = pattern(12 * 1024 * 1024 + 5, 1);
    let (location, id) = start_upload(&s.base, "pushed/app").await;
    assert!(support::staged_objects(&s, &id).is_empty(), "nothing is staged before a chunk arrives");
    let (one, rest) = layer.split_at(5 * 1024 * 1024 + 1);
    let (two, three) = rest.split_at(6 * 1024 * 1024);
    patch(&s.base, &location, 0, one).await;
    assert_eq!(support::staged_objects(&s, &id).len(), 1);
    patch(&s.base, &location, one.len(), two).await;
    let staged = support::staged_objects(&s, &id);
    assert_eq!(staged.len(), 2, "{staged:?}");
    assert!(staged.iter().all(|k| k.starts_with(&format!("uploads/{id}/"))), "{staged:?}");
    let r = req(&s.base, Method::PUT, &format!("{location}?digest={}", sha256(&layer))).body(three.to_vec()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().await.unwrap());
    assert!(support::staged_objects(&s, "").is_empty(), "the parts went with the PUT");
    push_manifest(&s.base, "pushed/app", "latest", &config, &[&layer]).await;

    // A cancelled upload takes its parts with it.
    let (location, id) = start_upload(&s.base, "pushed/app").await;
    patch(&s.base, &location, 0, &pattern(1000, 9)).await;
    assert_eq!(support::staged_objects(&s, &id).len(), 1);
    let r = req(&s.base, Method::DELETE, &location).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert!(support::staged_objects(&s, "").is_empty(), "DELETE removed the parts");

    // An immediate sync stores the upstream's config and layer.
    let (state, _) = fault_image(pattern(300_000, 2));
    let upstream = FaultUpstream::start(state).await;
    serve_upstream(&s, &upstream, "synced/app", "immediate").await;

    // The bucket holds the artifacts, each under the key its bytes hash to, and nothing else.
    let (_, page) = s.get("artifacts/?limit=1000").await;
    let artifacts = page["results"].as_array().unwrap();
    assert_eq!(artifacts.len(), 4, "two pushed blobs, two synced: {page}");
    let expected: BTreeSet<String> = artifacts.iter().map(|a| key_of(a["sha256"].as_str().unwrap())).collect();
    let recorded: BTreeSet<String> = artifacts.iter().map(|a| a["file"].as_str().unwrap().to_string()).collect();
    assert_eq!(recorded, expected, "the rows name their content-addressed keys");
    let listed = garage::instance().list_keys(&bucket, "");
    assert_eq!(listed.iter().map(|(k, _)| k.clone()).collect::<BTreeSet<_>>(), expected, "exactly the artifacts: {listed:?}");
    for (key, size) in &listed {
        let bytes = garage::instance().get_object(&bucket, key);
        assert_eq!(key_of(&sha256(&bytes)), *key, "{key} holds the bytes of its name");
        assert_eq!(bytes.len() as u64, *size);
    }
    support::assert_store_intact(&s).await;
    assert!(garage::instance().multipart_uploads(&bucket).is_empty(), "no multipart upload was left open");
    assert!(local_store_files(&s.state.config.data_dir).is_empty());
    assert!(support::scratch_files(&s.state.config.data_dir).is_empty());
    upstream.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_upload_loses_its_parts() {
    if !garage::available() {
        return;
    }
    let s = TestServer::start_on(Backend::S3, |c| c.upload_expiry = 1).await;
    let (location, id) = start_upload(&s.base, "expiry/app").await;
    patch(&s.base, &location, 0, &pattern(1000, 3)).await;
    assert_eq!(support::staged_objects(&s, &id).len(), 1);
    wait_for("the expired upload's parts to go", async || support::staged_objects(&s, "").is_empty()).await;
    let r = req(&s.base, Method::GET, &location).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

/// POST on one replica, PATCHes and the PUT on others, each with its own empty data dir: the
/// database and the bucket are all they share. A replica that took no part serves the blob.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_spread_over_replicas_sharing_a_bucket() {
    if !garage::available() {
        return;
    }
    let a = TestServer::start(Backend::S3).await;
    let url = a.state.config.database_url.clone().unwrap();
    let bucket = a.bucket.clone().unwrap();
    let replica = || TestServer::start_with(tempfile::tempdir().unwrap(), url.clone(), |c| garage::instance().apply_to(c, &bucket));
    let (b, c) = (replica().await, replica().await);

    let layer = pattern(7 * 1024 * 1024 + 3, 4);
    let digest = sha256(&layer);
    let (one, rest) = layer.split_at(3 * 1024 * 1024);
    let (two, three) = rest.split_at(3 * 1024 * 1024 + 1);
    let (location, id) = start_upload(&a.base, "spread/app").await;
    patch(&b.base, &location, 0, one).await;
    let r = req(&c.base, Method::GET, &location).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(r.headers()["range"], format!("0-{}", one.len() - 1).as_str(), "replica C sees B's chunk");
    patch(&a.base, &location, one.len(), two).await;
    assert_eq!(support::staged_objects(&a, &id).len(), 2);
    let r = req(&b.base, Method::PUT, &format!("{location}?digest={digest}")).body(three.to_vec()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "PUT on replica B: {}", r.text().await.unwrap());
    let config = br#"{"architecture":"amd64","os":"linux","spread":true}"#.to_vec();
    push_blob(&b.base, "spread/app", &config).await;
    let manifest = push_manifest(&a.base, "spread/app", "v1", &config, &[&layer]).await;

    for s in [&c, &a] {
        let got = req(&s.base, Method::GET, &format!("/v2/spread/app/blobs/{digest}")).send().await.unwrap();
        assert_eq!(got.status(), StatusCode::OK);
        assert_eq!(sha256(&got.bytes().await.unwrap()), digest, "identical from {}", s.base);
        let m = req(&s.base, Method::GET, "/v2/spread/app/manifests/v1").send().await.unwrap();
        assert_eq!(m.headers()["docker-content-digest"], manifest.as_str());
    }
    assert!(support::staged_objects(&a, "").is_empty(), "the staged parts went with the PUT");
    support::assert_store_intact(&c).await;
    for s in [&a, &b, &c] {
        assert!(local_store_files(&s.state.config.data_dir).is_empty(), "nothing of the store in {}", s.state.config.data_dir.display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn range_and_head_of_a_stored_blob() {
    if !garage::available() {
        return;
    }
    let s = TestServer::start(Backend::S3).await;
    let blob = pattern(3 * 1024 * 1024 + 7, 5);
    let digest = push_blob(&s.base, "range/app", &blob).await;
    let url = format!("/v2/range/app/blobs/{digest}");
    let len = blob.len();
    for (range, start, end) in [("bytes=1000-1999", 1000, 1999), ("bytes=-100", len - 100, len - 1), ("bytes=100-2100000", 100, 2_100_000), ("bytes=2000000-", 2_000_000, len - 1)] {
        let r = req(&s.base, Method::GET, &url).header("range", range).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(r.headers()["content-range"], format!("bytes {start}-{end}/{len}").as_str(), "{range}");
        assert_eq!(r.headers()["content-length"], (end - start + 1).to_string().as_str(), "{range}");
        assert!(r.bytes().await.unwrap() == blob[start..=end], "{range}: the right bytes");
    }
    let r = req(&s.base, Method::GET, &url).header("range", format!("bytes={len}-")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(r.headers()["content-range"], format!("bytes */{len}").as_str());
    let whole = req(&s.base, Method::GET, &url).send().await.unwrap();
    assert_eq!(whole.status(), StatusCode::OK);
    assert!(whole.bytes().await.unwrap() == blob);

    // HEAD is answered from the artifact row: it still answers with the object gone.
    garage::instance().delete_object(s.bucket.as_ref().unwrap(), &key_of(&digest));
    let head = req(&s.base, Method::HEAD, &url).send().await.unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(head.headers()["content-length"], len.to_string().as_str());
    assert_eq!(head.headers()["docker-content-digest"], digest.as_str());
    assert_eq!(head.headers()["accept-ranges"], "bytes");
    let head = req(&s.base, Method::HEAD, &url).header("range", "bytes=0-9").send().await.unwrap();
    assert_eq!(head.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(head.headers()["content-length"], "10");
    let gone = req(&s.base, Method::GET, &url).send().await.unwrap();
    assert!(gone.status().is_server_error(), "a recorded blob missing from the store is the server's fault: {}", gone.status());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_blobs_hands_out_presigned_urls_for_stored_blobs() {
    if !garage::available() {
        return;
    }
    let s = TestServer::start_on(Backend::S3, |c| c.storage.redirect_blobs = true).await;
    let blob = pattern(1024 * 1024 + 1, 6);
    let digest = push_blob(&s.base, "redirect/app", &blob).await;
    let url = format!("/v2/redirect/app/blobs/{digest}");
    let r = req(&s.base, Method::GET, &url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(r.headers()["docker-content-digest"], digest.as_str());
    let location = r.headers()["location"].to_str().unwrap().to_string();
    assert!(location.starts_with(&garage::instance().endpoint), "{location}");
    assert!(!location.contains(&garage::instance().secret_access_key));
    // Fetched without any credentials of ours: the signature in the URL is the permission.
    let got = reqwest::get(&location).await.unwrap();
    assert_eq!(got.status(), StatusCode::OK);
    assert!(got.bytes().await.unwrap() == blob, "the presigned URL serves the exact bytes");
    let part = reqwest::Client::new().get(&location).header("range", "bytes=10-19").send().await.unwrap();
    assert_eq!(part.status(), StatusCode::PARTIAL_CONTENT, "a client's Range goes with it");
    assert!(part.bytes().await.unwrap() == blob[10..20]);
    let head = req(&s.base, Method::HEAD, &url).send().await.unwrap();
    assert_eq!(head.status(), StatusCode::OK, "HEAD is answered here");
    assert_eq!(head.headers()["content-length"], blob.len().to_string().as_str());

    // An on_demand blob not stored yet is streamed through; once stored, redirected.
    let (state, layer) = fault_image(pattern(200_000, 7));
    let upstream = FaultUpstream::start(state).await;
    serve_upstream(&s, &upstream, "ondemand/app", "on_demand").await;
    let url = format!("/v2/ondemand/app/blobs/{layer}");
    let r = req(&s.base, Method::GET, &url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "not stored yet: streamed, not redirected");
    assert_eq!(sha256(&r.bytes().await.unwrap()), layer);
    let sha = layer.trim_start_matches("sha256:").to_string();
    wait_for("the on_demand blob to be stored", async || s.count(&format!("artifacts/?sha256={sha}")).await == 1).await;
    let r = req(&s.base, Method::GET, &url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::TEMPORARY_REDIRECT);
    let got = reqwest::get(r.headers()["location"].to_str().unwrap()).await.unwrap();
    assert_eq!(sha256(&got.bytes().await.unwrap()), layer);
    upstream.stop().await;
}

/// `pulpish serve` with `args` in a fresh dir; waits for it to exit (at most `limit`).
/// Returns (exit success, stdout + stderr, how long it ran).
fn serve_until_exit(dir: &std::path::Path, args: &[String], limit: Duration) -> (bool, String, Duration) {
    let start = Instant::now();
    let (out, err) = (dir.join(format!("out-{}", uuid::Uuid::new_v4())), dir.join(format!("err-{}", uuid::Uuid::new_v4())));
    let mut child = Command::new(env!("CARGO_BIN_EXE_pulpish"))
        .arg("serve")
        .args(["--bind", &format!("127.0.0.1:{}", support::free_port()), "--admin-password", "pw"])
        .args(args)
        .current_dir(dir)
        .env_remove("PULPISH_DATABASE_URL")
        .env_remove("PULPISH_DATA_DIR")
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .stdin(Stdio::null())
        .spawn()
        .expect("start pulpish");
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("pulpish serve {args:?} still runs after {limit:?}:\n{}", std::fs::read_to_string(&err).unwrap_or_default());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = std::fs::read_to_string(&out).unwrap() + &std::fs::read_to_string(&err).unwrap();
    (status.success(), text, start.elapsed())
}

/// `args` with the value after `flag` replaced.
fn with(args: &[String], flag: &str, value: &str) -> Vec<String> {
    let mut args = args.to_vec();
    let at = args.iter().position(|a| a == flag).unwrap() + 1;
    args[at] = value.to_string();
    args
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_settings_stop_the_binary_naming_the_setting() {
    if !garage::available() {
        return;
    }
    let g = garage::instance();
    let bucket = g.create_bucket();
    let good = g.s3_args(&bucket);
    let wrong_secret = "wrong-secret-0123456789abcdef0123456789abcdef";
    let cases = [
        ("unreachable endpoint", with(&good, "--s3-endpoint", &format!("http://127.0.0.1:{}", support::free_port())), "--s3-endpoint"),
        ("endpoint without a scheme", with(&good, "--s3-endpoint", g.endpoint.trim_start_matches("http://")), "--s3-endpoint"),
        ("endpoint host:port", with(&good, "--s3-endpoint", &g.endpoint.replace("http://127.0.0.1", "localhost")), "--s3-endpoint"),
        ("wrong secret key", with(&good, "--s3-secret-access-key", wrong_secret), "--s3-secret-access-key"),
        ("unknown access key", with(&good, "--s3-access-key-id", "GK0123456789abcdef01234567"), "--s3-access-key-id"),
        ("missing bucket", with(&good, "--s3-bucket", "pulpish-no-such-bucket"), "--s3-bucket"),
    ];
    for (what, args, setting) in cases {
        let dir = tempfile::tempdir().unwrap();
        let (ok, output, took) = serve_until_exit(dir.path(), &args, Duration::from_secs(30));
        assert!(!ok, "{what}: pulpish started:\n{output}");
        assert!(output.contains(setting), "{what}: the message names {setting}:\n{output}");
        assert!(!output.contains(&g.secret_access_key) && !output.contains(wrong_secret), "{what}: a secret was printed:\n{output}");
        assert!(took < Duration::from_secs(30), "{what}: took {took:?}");
        println!("{what}: exited after {took:?}: {}", output.lines().last().unwrap_or(""));
    }

    // Settings out of range or that the store's key rules would rewrite.
    for (what, extra, setting) in [
        ("a prefix with ..", ["--s3-prefix", "team/../other"], "--s3-prefix"),
        ("a prefix with //", ["--s3-prefix", "team//other"], "--s3-prefix"),
        ("a presigned URL that is expired at once", ["--redirect-expiry", "0"], "--redirect-expiry"),
        ("a presigned URL longer than S3 allows", ["--redirect-expiry", "604801"], "--redirect-expiry"),
        ("a lease of no time", ["--lease-seconds", "0"], "--lease-seconds"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut args = good.clone();
        args.extend(extra.iter().map(|a| a.to_string()));
        let (ok, output, _) = serve_until_exit(dir.path(), &args, Duration::from_secs(30));
        assert!(!ok, "{what}: pulpish started:\n{output}");
        assert!(output.contains(setting), "{what}: the message names {setting}:\n{output}");
    }

    // SQLite serves one replica: a second process on the same database with the S3 store is refused.
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let mut first = Command::new(env!("CARGO_BIN_EXE_pulpish"))
        .arg("serve")
        .args(["--bind", &format!("127.0.0.1:{port}"), "--admin-password", "pw", "--data-dir"])
        .arg(dir.path().join("data"))
        .args(&good)
        .env_remove("PULPISH_DATABASE_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while reqwest::get(format!("http://127.0.0.1:{port}/pulp/api/v3/status/")).await.is_err() {
        assert!(start.elapsed() < Duration::from_secs(30), "the first replica did not come up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let other = tempfile::tempdir().unwrap();
    // The same file spelled another way: a bare path through `.`.
    let other_spelling = dir.path().join("data/./pulpish.db");
    let mut args = vec!["--database-url".to_string(), other_spelling.display().to_string(), "--data-dir".into(), other.path().join("data").display().to_string()];
    args.extend(good.iter().cloned());
    let (ok, output, _) = serve_until_exit(other.path(), &args, Duration::from_secs(30));
    let _ = first.kill();
    let _ = first.wait();
    assert!(!ok, "a second replica on one SQLite database started:\n{output}");
    assert!(output.contains("SQLite serves a single replica"), "{output}");
}

/// An endpoint that accepts connections and never answers: `serve` gives up after the store's
/// answer timeout (30 s) with a message naming the endpoint, instead of hanging.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_endpoint_stops_the_binary_instead_of_hanging() {
    if !garage::available() {
        return;
    }
    let g = garage::instance();
    let bucket = g.create_bucket();
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", silent.local_addr().unwrap());
    // Accepted connections are kept open and never read from or answered.
    let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = held.clone();
    std::thread::spawn(move || {
        for conn in silent.incoming().flatten() {
            keep.lock().unwrap().push(conn);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let (ok, output, took) = serve_until_exit(dir.path(), &with(&g.s3_args(&bucket), "--s3-endpoint", &endpoint), Duration::from_secs(60));
    assert!(!ok, "pulpish started on a silent store:\n{output}");
    assert!(output.contains("did not answer") && output.contains("--s3-endpoint"), "{output}");
    assert!(took < Duration::from_secs(45), "gave up after {took:?}");
    assert!(!held.lock().unwrap().is_empty(), "pulpish did connect to the silent endpoint");
}

/// The object store stops while pulpish serves: reads and pushes fail fast with 503 and record
/// nothing; once it is back, the same requests work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_going_away_is_a_503_until_it_is_back() {
    if !garage::available() {
        return;
    }
    let mut g = garage::private();
    let bucket = g.create_bucket();
    let dir = tempfile::tempdir().unwrap();
    let url = support::fresh_database(Backend::Postgres, dir.path());
    let s = TestServer::start_with(dir, url, |c| g.apply_to(c, &bucket)).await;
    let blob = pattern(600_000, 8);
    let digest = push_blob(&s.base, "down/app", &blob).await;
    let config = br#"{"architecture":"amd64","os":"linux","down":true}"#.to_vec();
    push_blob(&s.base, "down/app", &config).await;
    push_manifest(&s.base, "down/app", "latest", &config, &[&blob]).await;
    let url = format!("/v2/down/app/blobs/{digest}");

    g.stop();
    let start = Instant::now();
    let r = req(&s.base, Method::GET, &url).send().await.unwrap();
    let took = start.elapsed();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "UNAVAILABLE", "{body}");
    assert!(took < Duration::from_secs(15), "the 503 took {took:?}");
    println!("GET with the store down answered in {took:?}");
    let head = req(&s.base, Method::HEAD, &url).send().await.unwrap();
    assert_eq!(head.status(), StatusCode::OK, "HEAD needs only the database");

    let new = pattern(300_000, 9);
    let new_digest = sha256(&new);
    let start = Instant::now();
    let r = req(&s.base, Method::POST, &format!("/v2/down/app/blobs/uploads/?digest={new_digest}")).body(new.clone()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.json::<Value>().await.unwrap()["errors"][0]["code"], "UNAVAILABLE");
    assert!(start.elapsed() < Duration::from_secs(15), "the push's 503 took {:?}", start.elapsed());
    let (location, _) = start_upload(&s.base, "down/app").await;
    let r = req(&s.base, Method::PATCH, &location).body(new.clone()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.json::<Value>().await.unwrap()["errors"][0]["code"], "UNAVAILABLE");
    let status = req(&s.base, Method::GET, &location).send().await.unwrap();
    assert_eq!(status.headers()["range"], "0-0", "the failed chunk was not claimed");
    let sha = new_digest.trim_start_matches("sha256:").to_string();
    assert_eq!(s.count(&format!("artifacts/?sha256={sha}")).await, 0, "nothing recorded");

    g.restart();
    let r = req(&s.base, Method::GET, &url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.bytes().await.unwrap() == blob);
    push_blob(&s.base, "down/app", &new).await;
    patch(&s.base, &location, 0, &new).await;
    let r = req(&s.base, Method::PUT, &format!("{location}?digest={new_digest}")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().await.unwrap());
    assert_eq!(s.count(&format!("artifacts/?sha256={sha}")).await, 1);
    assert_eq!(g.get_object(&bucket, &key_of(&new_digest)), new);
}
