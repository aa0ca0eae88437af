//! The store's promise under attack and bad luck: a blob served under a digest is exactly those
//! bytes, always; bad input gets a clear 4xx and leaves nothing behind; misbehaving clients and
//! upstreams cost bounded memory and disk.

mod support;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::fault::{fault_image, sha256, BlobBehaviour, FaultUpstream};
use support::{Backend, TestServer, PASSWORD};

fn req(s: &TestServer, method: Method, path: &str) -> reqwest::RequestBuilder {
    s.client.request(method, format!("{}{path}", s.base)).basic_auth("admin", Some(PASSWORD))
}

async fn start_upload(s: &TestServer, name: &str) -> String {
    let r = req(s, Method::POST, &format!("/v2/{name}/blobs/uploads/")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    r.headers()["location"].to_str().unwrap().to_string()
}

async fn code(r: reqwest::Response) -> (StatusCode, String) {
    let status = r.status();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    (status, body["errors"][0]["code"].as_str().unwrap_or("").to_string())
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

/// A request body the test feeds by hand, to hold a PATCH open across another request.
fn held_body() -> (tokio::sync::mpsc::Sender<Vec<u8>>, reqwest::Body) {
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
    let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (Ok::<_, std::io::Error>(b), rx)) });
    (tx, reqwest::Body::wrap_stream(stream))
}

/// Defect 1: a PATCH still streaming while the finishing PUT commits the upload used to write
/// on into the committed artifact. Now the PATCH's bytes go to a part of its own, which it can
/// no longer claim: the stored blob keeps exactly the verified bytes.
async fn a_patch_racing_the_finishing_put_cannot_touch_the_stored_blob(backend: Backend) {
    let s = TestServer::start(backend).await;
    let blob = pattern(300_000, 1);
    let digest = sha256(&blob);
    let location = start_upload(&s, "race/app").await;
    let r = req(&s, Method::PATCH, &location).body(blob.clone()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);

    // A second PATCH starts streaming and holds its body open.
    let (tx, body) = held_body();
    let patch = tokio::spawn({
        let r = req(&s, Method::PATCH, &location).body(body);
        async move { r.send().await }
    });
    tx.send(vec![0xEE; 64 * 1024]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The PUT commits what the upload holds.
    let r = req(&s, Method::PUT, &format!("{location}?digest={digest}")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);

    // The PATCH goes on writing, then ends: it is refused and its bytes go nowhere.
    for _ in 0..16 {
        tx.send(vec![0xEE; 64 * 1024]).await.unwrap();
    }
    drop(tx);
    let (status, c) = code(patch.await.unwrap().unwrap()).await;
    assert_eq!((status, c.as_str()), (StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN"));

    let got = reqwest::get(format!("{}/v2/race/app/blobs/{digest}", s.base)).await.unwrap();
    assert_eq!(got.status(), StatusCode::OK);
    assert_eq!(sha256(&got.bytes().await.unwrap()), digest);
    support::assert_store_intact(&s).await;
    assert_eq!(s.count("artifacts/").await, 1);
    assert!(support::scratch_files(&s.dir.path().join("data")).is_empty());
}

/// Two identical PUTs of one upload at once: one wins, the other is told the upload is gone;
/// the stored blob is right.
async fn two_puts_of_one_upload_at_once_one_wins_cleanly(backend: Backend) {
    let s = TestServer::start(backend).await;
    for round in 0..10u8 {
        let blob = pattern(200_000 + round as usize, round);
        let digest = sha256(&blob);
        let location = start_upload(&s, "twice/app").await;
        req(&s, Method::PATCH, &location).body(blob.clone()).send().await.unwrap();
        let put = || req(&s, Method::PUT, &format!("{location}?digest={digest}")).send();
        let (a, b) = tokio::join!(put(), put());
        let mut outcomes = vec![code(a.unwrap()).await, code(b.unwrap()).await];
        outcomes.sort();
        assert_eq!(outcomes[0].0, StatusCode::CREATED, "round {round}: {outcomes:?}");
        assert_eq!((outcomes[1].0, outcomes[1].1.as_str()), (StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN"), "round {round}");
        let got = reqwest::get(format!("{}/v2/twice/app/blobs/{digest}", s.base)).await.unwrap();
        assert_eq!(sha256(&got.bytes().await.unwrap()), digest);
    }
    support::assert_store_intact(&s).await;
    assert!(support::scratch_files(&s.dir.path().join("data")).is_empty());
}

/// For a bounded time, pushes of one blob to several repositories at once (monolithic,
/// chunked, overlapping PATCH/PUT, cancels) while other clients pull it: every body received
/// whole is right, and every stored file hashes to its name and has its recorded size.
async fn concurrent_pushes_and_pulls_of_one_blob_keep_the_store_intact(backend: Backend) {
    let s = std::sync::Arc::new(TestServer::start(backend).await);
    let blob = std::sync::Arc::new(pattern(1_500_000, 7));
    let digest = sha256(&blob);
    let deadline = Instant::now() + Duration::from_secs(8);
    let mut workers = Vec::new();
    for w in 0..6usize {
        let (s, blob, digest) = (s.clone(), blob.clone(), digest.clone());
        workers.push(tokio::spawn(async move {
            let name = format!("soak/r{}", w % 3);
            let mut done = 0;
            while Instant::now() < deadline {
                match (w + done) % 4 {
                    0 => {
                        let r = req(&s, Method::POST, &format!("/v2/{name}/blobs/uploads/?digest={digest}")).body(blob.to_vec()).send().await.unwrap();
                        assert_eq!(r.status(), StatusCode::CREATED);
                    }
                    1 => {
                        let location = start_upload(&s, &name).await;
                        let (a, b) = blob.split_at(600_000);
                        let r = req(&s, Method::PATCH, &location).header("content-range", format!("0-{}", a.len() - 1)).body(a.to_vec()).send().await.unwrap();
                        assert_eq!(r.status(), StatusCode::ACCEPTED);
                        // Overlapping: the same chunk again, and the PUT, at once.
                        let again = req(&s, Method::PATCH, &location).header("content-range", format!("0-{}", a.len() - 1)).body(a.to_vec()).send();
                        let put = req(&s, Method::PUT, &format!("{location}?digest={digest}")).body(b.to_vec()).send();
                        let (again, put) = tokio::join!(again, put);
                        assert!(!again.unwrap().status().is_server_error());
                        let put = put.unwrap().status();
                        assert!(put == StatusCode::CREATED || put.is_client_error(), "PUT: {put}");
                    }
                    2 => {
                        let location = start_upload(&s, &name).await;
                        req(&s, Method::PATCH, &location).body(blob[..1000].to_vec()).send().await.unwrap();
                        let r = req(&s, Method::DELETE, &location).send().await.unwrap();
                        assert_eq!(r.status(), StatusCode::NO_CONTENT);
                    }
                    _ => {
                        // Push a wrong body under the right digest: refused, nothing stored.
                        let mut bad = blob.to_vec();
                        bad[1000] ^= 1;
                        let r = req(&s, Method::POST, &format!("/v2/{name}/blobs/uploads/?digest={digest}")).body(bad).send().await.unwrap();
                        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
                    }
                }
                done += 1;
            }
            done
        }));
    }
    let mut readers = Vec::new();
    for r in 0..3usize {
        let (s, digest) = (s.clone(), digest.clone());
        readers.push(tokio::spawn(async move {
            let mut whole = 0;
            while Instant::now() < deadline {
                let resp = req(&s, Method::GET, &format!("/v2/soak/r{r}/blobs/{digest}")).send().await.unwrap();
                if resp.status() == StatusCode::OK {
                    let body = resp.bytes().await.unwrap();
                    assert_eq!(sha256(&body), digest, "a complete body is the blob's bytes");
                    whole += 1;
                } else {
                    assert!(resp.status().is_client_error(), "{}", resp.status());
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            whole
        }));
    }
    let pushes: usize = futures_util::future::join_all(workers).await.into_iter().map(|r| r.unwrap()).sum();
    let pulls: usize = futures_util::future::join_all(readers).await.into_iter().map(|r| r.unwrap()).sum();
    println!("{backend:?}: {pushes} push operations, {pulls} whole pulls in 8 s");
    assert!(pushes > 20 && pulls > 5, "the soak did work: {pushes} pushes, {pulls} pulls");
    support::assert_store_intact(&s).await;
    assert_eq!(s.count(&format!("artifacts/?sha256={}", digest.trim_start_matches("sha256:"))).await, 1);
    assert!(support::scratch_files(&s.dir.path().join("data")).is_empty());
}

/// Defect 10: a push refused at its first request leaves no repository or distribution behind.
async fn a_rejected_push_to_a_new_path_creates_nothing(backend: Backend) {
    let s = TestServer::start(backend).await;
    let wrong = format!("sha256:{}", "1".repeat(64));
    let r = req(&s, Method::POST, &format!("/v2/new/one/blobs/uploads/?digest={wrong}")).body("abc").send().await.unwrap();
    assert_eq!(code(r).await, (StatusCode::BAD_REQUEST, "DIGEST_INVALID".into()));
    let r = req(&s, Method::PUT, "/v2/new/two/manifests/latest")
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(json!({"schemaVersion": 2, "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": wrong, "size": 3}, "layers": []}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(code(r).await, (StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN".into()));
    let r = req(&s, Method::PUT, "/v2/new/three/manifests/latest").body("not json").send().await.unwrap();
    assert_eq!(code(r).await, (StatusCode::BAD_REQUEST, "MANIFEST_INVALID".into()));
    let location = start_upload(&s, "new/four").await;
    req(&s, Method::DELETE, &location).send().await.unwrap();
    assert_eq!(s.count("repositories/container/container/").await, 0);
    assert_eq!(s.count("distributions/container/container/").await, 0);
}

/// Sends a request with a `Content-Length` it does not honour, then half-closes: the server
/// sees the body break off. Returns the status line.
fn cut_request(base: &str, path: &str, declared: usize, sent: usize) -> String {
    let addr = base.trim_start_matches("http://");
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = base64_basic();
    write!(conn, "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Basic {auth}\r\nContent-Length: {declared}\r\n\r\n").unwrap();
    conn.write_all(&vec![b'x'; sent]).unwrap();
    conn.shutdown(std::net::Shutdown::Write).unwrap();
    let mut out = String::new();
    let _ = conn.read_to_string(&mut out);
    out.lines().next().unwrap_or("").to_string()
}

fn base64_basic() -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("admin:{PASSWORD}"))
}

/// Defect 10: malformed upload requests get the spec's 4xx, and a cut monolithic push leaves no
/// scratch file.
async fn malformed_upload_requests_get_client_errors(backend: Backend) {
    let s = TestServer::start(backend).await;
    let digest = sha256(b"abc");
    let status = cut_request(&s.base, &format!("/v2/cut/app/blobs/uploads/?digest={digest}"), 1000, 10);
    assert!(status.is_empty() || status.contains(" 400 "), "a cut push is a client error, not a 500: {status:?}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(support::scratch_files(&s.dir.path().join("data")).is_empty(), "the cut push left nothing");
    assert_eq!(s.count("artifacts/").await, 0);

    let location = start_upload(&s, "cut/app").await;
    let r = req(&s, Method::PATCH, &location).header("content-range", "500-10").body("x").send().await.unwrap();
    assert_eq!(code(r).await, (StatusCode::BAD_REQUEST, "BLOB_UPLOAD_INVALID".into()));
    let r = req(&s, Method::PATCH, &location).header("content-range", "0-9").body("too short").send().await.unwrap();
    assert_eq!(code(r).await, (StatusCode::BAD_REQUEST, "BLOB_UPLOAD_INVALID".into()), "the range says 10 bytes, the body has 9");
    let r = req(&s, Method::PATCH, &location).header("content-range", "5-9").body("12345").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(r.headers()["range"], "0-0");
    let status = req(&s, Method::GET, &location).send().await.unwrap();
    assert_eq!(status.headers()["range"], "0-0", "nothing was added by the refused chunks");
}

/// Defect 10: Range edge cases on a stored blob; the 416's message says what is wrong.
async fn range_edge_cases(backend: Backend) {
    let s = TestServer::start(backend).await;
    let blob = pattern(5000, 3);
    let digest = sha256(&blob);
    req(&s, Method::POST, &format!("/v2/range/app/blobs/uploads/?digest={digest}")).body(blob).send().await.unwrap();
    let get = |range: &'static str| req(&s, Method::GET, &format!("/v2/range/app/blobs/{digest}")).header("range", range).send();
    let r = get("bytes=-0").await.unwrap();
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(r.headers()["content-range"], "bytes */5000");
    let body: Value = r.json().await.unwrap();
    let message = body["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("not satisfiable") && message.contains("5000"), "{message}");
    assert_eq!(get("bytes=9000-").await.unwrap().status(), StatusCode::RANGE_NOT_SATISFIABLE);
    let r = get("bytes=-10").await.unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.bytes().await.unwrap().len(), 10);
}

/// Defect 5: NUL bytes in /v2 names, references, `?last=` and Basic user names are bad input on
/// both backends (PostgreSQL refuses NUL in text: that used to be a 500).
async fn nul_bytes_in_registry_requests_are_client_errors(backend: Backend) {
    let s = TestServer::start(backend).await;
    for path in [
        "/v2/a%00b/tags/list",
        "/v2/a%00b/manifests/latest",
        "/v2/app/manifests/la%00test",
        "/v2/a%00b/blobs/sha256:0000000000000000000000000000000000000000000000000000000000000000",
        "/v2/_catalog?last=a%00b",
        "/v2/a%00b/blobs/uploads/",
    ] {
        let method = if path.ends_with("uploads/") { Method::POST } else { Method::GET };
        let r = req(&s, method, path).send().await.unwrap();
        let status = r.status();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        assert!(status.is_client_error(), "{path}: {status} {body}");
        assert!(body["errors"][0]["code"].is_string(), "{path}: an OCI error body: {body}");
    }
    let r = s.client.get(format!("{}/v2/", s.base)).basic_auth("ad\0min", Some("x")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = s.client.get(format!("{}/pulp/api/v3/remotes/container/container/", s.base)).basic_auth("ad\0min", Some("x")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // A long bad name is not echoed back whole.
    let long = "A".repeat(20_000);
    let r = req(&s, Method::GET, &format!("/v2/{long}/tags/list")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.bytes().await.unwrap().len() < 2048);
    // /v2 query errors are OCI errors too.
    let r = req(&s, Method::GET, "/v2/_catalog?n=lots").send().await.unwrap();
    assert_eq!(code(r).await, (StatusCode::BAD_REQUEST, "UNSUPPORTED".into()));
}

/// Defect 8: anonymous clients do not see private distributions in the catalog.
async fn the_catalog_hides_private_distributions_from_anonymous_clients(backend: Backend) {
    let s = TestServer::start(backend).await;
    for (name, private) in [("open/app", false), ("secret/app", true)] {
        let (_, repo) = s.post("repositories/container/container/", json!({"name": name})).await;
        s.completed(s.post("distributions/container/container/", json!({"name": name, "base_path": name, "repository": repo["pulp_href"], "private": private})).await).await;
    }
    let anonymous: Value = reqwest::get(format!("{}/v2/_catalog", s.base)).await.unwrap().json().await.unwrap();
    assert_eq!(anonymous["repositories"], json!(["open/app"]));
    let admin: Value = req(&s, Method::GET, "/v2/_catalog").send().await.unwrap().json().await.unwrap();
    assert_eq!(admin["repositories"], json!(["open/app", "secret/app"]));
}

/// Defect 7: a blob known to two repositories is fetched through the served repository's own
/// remote: an on_demand repository stores it even when a streamed one knows the digest too.
async fn a_blob_is_fetched_through_the_served_repositorys_own_remote(backend: Backend) {
    let (state, layer) = fault_image(pattern(100_000, 9));
    let upstream = FaultUpstream::start(state).await;
    let s = TestServer::start(backend).await;
    // The streamed repository syncs first, so its remote artifact is the older row.
    for (name, policy) in [("streamed", "streamed"), ("stored", "on_demand")] {
        serve(&s, &upstream.url(), name, policy).await;
    }
    let body = reqwest::get(format!("{}/v2/stored/blobs/{layer}", s.base)).await.unwrap().bytes().await.unwrap();
    assert_eq!(sha256(&body), layer);
    let sha = layer.trim_start_matches("sha256:").to_string();
    let start = Instant::now();
    while s.count(&format!("artifacts/?sha256={sha}")).await == 0 {
        assert!(start.elapsed() < Duration::from_secs(10), "the on_demand repository's remote stores the blob");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A remote whose manifest declares 0 bytes for a layer that is not the empty blob, then sends
/// bytes: the client never gets a complete (empty) 200 for it, and nothing is recorded.
async fn a_layer_declared_empty_is_not_served_empty(backend: Backend) {
    let (mut state, layer) = fault_image(pattern(50_000, 11));
    let (bytes, media_type) = state.tags["latest"].clone();
    let mut manifest: Value = serde_json::from_slice(&bytes).unwrap();
    manifest["layers"][0]["size"] = json!(0);
    state.tags.insert("latest".into(), (serde_json::to_vec(&manifest).unwrap(), media_type));
    let upstream = FaultUpstream::start(state).await;
    upstream.set_blob(&layer, BlobBehaviour::Oversized(50_000));
    let s = TestServer::start(backend).await;
    assert_eq!(serve(&s, &upstream.url(), "empty", "on_demand").await["state"], "completed");
    let resp = reqwest::get(format!("{}/v2/empty/blobs/{layer}", s.base)).await.unwrap();
    let status = resp.status();
    let body = resp.bytes().await;
    assert!(!(status.is_success() && body.is_ok()), "a complete {status} body of {:?} bytes was served for {layer}", body.map(|b| b.len()));
    assert_eq!(status, StatusCode::BAD_GATEWAY, "the remote's lie is reported as a gateway error");
    assert_eq!(s.count("artifacts/").await, 0);
}

/// A stored file shorter than its record (disk damage): its readers are cut, never sent zeros
/// or a short body as complete, and the server keeps running (no mapping past the file's end).
async fn a_damaged_stored_file_cuts_its_readers_and_nothing_else() {
    let s = TestServer::start(Backend::Sqlite).await;
    let blob = pattern(3 * 1024 * 1024 + 100, 12);
    let digest = sha256(&blob);
    let r = req(&s, Method::POST, &format!("/v2/damaged/app/blobs/uploads/?digest={digest}")).body(blob.clone()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let hex = digest.trim_start_matches("sha256:");
    let path = s.dir.path().join("data/artifact").join(&hex[..2]).join(&hex[2..]);
    std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(1024 * 1024 + 10).unwrap();
    for range in [None, Some("bytes=2000000-3000000"), Some("bytes=0-2000000")] {
        let mut get = req(&s, Method::GET, &format!("/v2/damaged/app/blobs/{digest}"));
        if let Some(r) = range {
            get = get.header("range", r);
        }
        let resp = get.send().await.unwrap();
        let status = resp.status();
        let body = resp.bytes().await;
        assert!(!(status.is_success() && body.is_ok()), "{range:?}: a complete {status} body was served from a damaged file");
    }
    let (status, _) = s.get("status/").await;
    assert_eq!(status, StatusCode::OK, "the server still runs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_stored_file_cuts_its_readers() {
    a_damaged_stored_file_cuts_its_readers_and_nothing_else().await
}

/// Remote + repository + sync + distribution named `name`.
async fn serve(s: &TestServer, url: &str, name: &str, policy: &str) -> Value {
    let (status, remote) = s.post("remotes/container/container/", json!({"name": name, "url": url, "upstream_name": "fault/app", "policy": policy})).await;
    assert_eq!(status, StatusCode::CREATED, "{remote}");
    let (_, repo) = s.post("repositories/container/container/", json!({"name": name, "remote": remote["pulp_href"]})).await;
    let (_, t) = s.post(&format!("{}sync/", repo["pulp_href"].as_str().unwrap()), json!({})).await;
    let task = s.wait_task(t["task"].as_str().unwrap()).await;
    if task["state"] == "completed" {
        s.completed(s.post("distributions/container/container/", json!({"name": name, "base_path": name, "repository": repo["pulp_href"]})).await).await;
    }
    task
}

/// Defect 4: an upstream cannot make pulpish read more than it allows: an endless manifest, an
/// endless tag list, a blob far larger than declared (immediate sync). Each sync fails naming
/// the cause, having read a bounded number of bytes, and leaves no scratch file.
async fn upstream_bodies_are_read_with_limits(backend: Backend) {
    let s = TestServer::start(backend).await;
    let limit = 64 * 1024 * 1024;

    let (mut state, _) = fault_image(pattern(1000, 1));
    state.tags.insert("huge".into(), (b"{}".to_vec(), "application/vnd.oci.image.manifest.v1+json".into()));
    state.endless_manifest = Some("huge".into());
    let upstream = FaultUpstream::start(state).await;
    let task = serve(&s, &upstream.url(), "manifest", "on_demand").await;
    assert_eq!(task["state"], "failed", "{task}");
    assert!(task["error"]["description"].as_str().unwrap().contains("larger than"), "{task}");
    let sent = upstream.state.lock().unwrap().filler_sent.load(std::sync::atomic::Ordering::SeqCst);
    assert!(sent < limit, "read {sent} bytes of an endless manifest");

    let (mut state, _) = fault_image(pattern(1000, 2));
    state.endless_tag_list = true;
    let upstream = FaultUpstream::start(state).await;
    let task = serve(&s, &upstream.url(), "tags", "on_demand").await;
    assert_eq!(task["state"], "failed", "{task}");
    assert!(task["error"]["description"].as_str().unwrap().contains("larger than"), "{task}");
    let sent = upstream.state.lock().unwrap().filler_sent.load(std::sync::atomic::Ordering::SeqCst);
    assert!(sent < limit, "read {sent} bytes of an endless tag list");

    let (state, layer) = fault_image(pattern(400, 3));
    let upstream = FaultUpstream::start(state).await;
    upstream.set_blob(&layer, BlobBehaviour::Oversized(2 << 30));
    let task = serve(&s, &upstream.url(), "blob", "immediate").await;
    assert_eq!(task["state"], "failed", "{task}");
    assert!(task["error"]["description"].as_str().unwrap().contains("size mismatch"), "{task}");
    let sent = upstream.state.lock().unwrap().filler_sent.load(std::sync::atomic::Ordering::SeqCst);
    assert!(sent < limit, "read {sent} bytes of a blob declared as 400");
    assert!(support::scratch_files(&s.dir.path().join("data")).is_empty(), "the failed sync removed its scratch files");
    // The config blob downloads beside the layer and may be verified and stored before the
    // layer fails; the oversized layer never is.
    assert_eq!(s.count(&format!("artifacts/?sha256={}", layer.trim_start_matches("sha256:"))).await, 0);
}

/// Defect 3: a remote row holding an absurd timeout (written before validation existed) fails
/// its own fetches with a clear error and takes no other remote's fetches down with it.
async fn one_bad_remote_does_not_break_other_fetches(backend: Backend) {
    let (state, layer) = fault_image(pattern(50_000, 4));
    let upstream = FaultUpstream::start(state).await;
    let s = TestServer::start(backend).await;
    serve(&s, &upstream.url(), "bad", "on_demand").await;
    serve(&s, &upstream.url(), "good", "streamed").await;
    let db = s.state.db.clone();
    tokio::task::spawn_blocking(move || {
        use diesel::RunQueryDsl;
        let mut c = db.get().unwrap();
        diesel::sql_query("UPDATE remote SET total_timeout = 1e308 WHERE name = 'bad'").execute(&mut *c).unwrap();
    })
    .await
    .unwrap();
    // The cache holds the remote by its last-updated time: make it read again.
    let (_, remotes) = s.get("remotes/container/container/?name=bad").await;
    let _ = remotes;
    for _ in 0..3 {
        let r = reqwest::get(format!("{}/v2/bad/blobs/{layer}", s.base)).await.unwrap();
        let status = r.status();
        let body = r.text().await.unwrap();
        assert!(status == StatusCode::BAD_GATEWAY || status == StatusCode::OK, "{status} {body}");
        let r = reqwest::get(format!("{}/v2/good/blobs/{layer}", s.base)).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "another remote's fetch still works");
        assert_eq!(sha256(&r.bytes().await.unwrap()), layer);
    }
}

/// Defect 10: HEAD of an on_demand blob not stored yet declares the recorded size.
async fn head_of_a_blob_not_yet_stored_declares_its_size(backend: Backend) {
    let layer_bytes = pattern(12_345, 5);
    let (state, layer) = fault_image(layer_bytes);
    let upstream = FaultUpstream::start(state).await;
    let s = TestServer::start(backend).await;
    serve(&s, &upstream.url(), "head", "on_demand").await;
    let r = s.client.head(format!("{}/v2/head/blobs/{layer}", s.base)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-length"], "12345");
    assert_eq!(upstream.blob_gets(&layer), 0, "a HEAD downloads nothing");
}

/// Defect 10: many cold readers arriving at any moment of a download, including the moment it
/// is verified but not yet recorded, make one upstream GET.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readers_arriving_as_a_download_completes_make_one_upstream_get() {
    let (state, layer) = fault_image(pattern(4 * 1024 * 1024, 6));
    let upstream = FaultUpstream::start(state).await;
    upstream.set_blob(&layer, BlobBehaviour::StallAfter(2 * 1024 * 1024, Duration::from_millis(400)));
    let s = std::sync::Arc::new(TestServer::start(Backend::Sqlite).await);
    serve(&s, &upstream.url(), "cold", "on_demand").await;
    let url = format!("{}/v2/cold/blobs/{layer}", s.base);
    let readers: Vec<_> = (0..50u64)
        .map(|i| {
            let (url, layer) = (url.clone(), layer.clone());
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(i * 12)).await;
                let body = reqwest::get(&url).await.unwrap().bytes().await.unwrap();
                assert_eq!(sha256(&body), layer);
            })
        })
        .collect();
    for r in readers {
        r.await.unwrap();
    }
    assert_eq!(upstream.blob_gets(&layer), 1, "one upstream GET for 50 readers");
}

/// Defect 6: what dead processes and ended uploads left behind is swept at start.
async fn leftovers_are_swept_at_start(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let url = support::fresh_database(backend, dir.path());
    let bucket = support::fresh_bucket(backend);
    let data = dir.path().join("data");
    // A scratch directory of a process that died (its lock file is not held), a loose temp
    // file of an older version (scratch is local on every backend), and staged bytes of an
    // upload nobody knows (where the store keeps them: the data dir or the bucket).
    let dead = data.join("tmp/0b7f0d9e-dead-4000-8000-000000000000");
    std::fs::create_dir_all(&dead).unwrap();
    std::fs::write(dead.join("download"), vec![0u8; 1 << 20]).unwrap();
    std::fs::write(data.join("tmp/0b7f0d9e-dead-4000-8000-000000000000.lock"), b"").unwrap();
    std::fs::write(data.join("tmp/old-temp-file"), vec![0u8; 1000]).unwrap();
    let orphan = "5d1c7f2a-0000-4000-8000-000000000000";
    support::plant_object(&data, bucket.as_deref(), &format!("uploads/{orphan}/part"), &[0u8; 1000]);
    let s = TestServer::start_with(dir, url, |c| {
        if let Some(b) = &bucket {
            support::garage::instance().apply_to(c, b);
        }
    })
    .await;
    let start = Instant::now();
    while !support::staged_objects(&s, orphan).is_empty() || data.join("uploads").join(orphan).exists() {
        assert!(start.elapsed() < Duration::from_secs(10), "the orphan upload was swept");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!dead.exists(), "the dead process's scratch directory is gone");
    assert!(!data.join("tmp/old-temp-file").exists());
    assert!(support::scratch_files(&data).is_empty());
    // A live upload's staged bytes stay.
    let location = start_upload(&s, "live/app").await;
    req(&s, Method::PATCH, &location).body(vec![1u8; 100]).send().await.unwrap();
    s.state.storage.sweep_scratch().unwrap();
    pulpish_server::app::sweep(&s.state, Duration::from_secs(3600)).await;
    let status = req(&s, Method::GET, &location).send().await.unwrap();
    assert_eq!(status.headers()["range"], "0-99");
    let id = location.rsplit('/').next().unwrap();
    assert_eq!(support::staged_objects(&s, id).len(), 1, "the live upload's part stays");
}

/// Downloads being written: scratch files, and on S3 (where an immediate sync streams a blob
/// straight into the bucket) multipart uploads not yet completed or aborted.
fn being_written(s: &TestServer) -> usize {
    support::scratch_files(&s.dir.path().join("data")).len() + s.bucket.as_ref().map_or(0, |b| support::garage::instance().multipart_uploads(b).len())
}

/// Defect 6: a cancelled or failed immediate sync removes its own scratch files (on S3: aborts
/// its multipart uploads), and a download cut by the upstream leaves none.
async fn failed_and_cancelled_downloads_leave_no_scratch_files(backend: Backend) {
    // Larger than one S3 part, stalling past it: on S3 the multipart upload has started.
    let (state, layer) = fault_image(pattern(8 * 1024 * 1024, 8));
    let upstream = FaultUpstream::start(state).await;
    upstream.set_blob(&layer, BlobBehaviour::CutAfter(6 * 1024 * 1024));
    let s = TestServer::start(backend).await;
    let task = serve(&s, &upstream.url(), "cut", "immediate").await;
    assert_eq!(task["state"], "failed");
    let start = Instant::now();
    while being_written(&s) > 0 {
        assert!(start.elapsed() < Duration::from_secs(10), "the failed sync left a download behind");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    upstream.set_blob(&layer, BlobBehaviour::StallAfter(6 * 1024 * 1024, Duration::from_secs(30)));
    let (_, remote) = s.post("remotes/container/container/", json!({"name": "slow", "url": upstream.url(), "upstream_name": "fault/app", "policy": "immediate"})).await;
    let (_, repo) = s.post("repositories/container/container/", json!({"name": "slow", "remote": remote["pulp_href"]})).await;
    let (_, t) = s.post(&format!("{}sync/", repo["pulp_href"].as_str().unwrap()), json!({})).await;
    let task = t["task"].as_str().unwrap().to_string();
    let start = Instant::now();
    while being_written(&s) == 0 {
        assert!(start.elapsed() < Duration::from_secs(10), "the download started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, _) = s.patch(&task, json!({"state": "canceled"})).await;
    assert_eq!(status, StatusCode::OK);
    let t = s.wait_task(&task).await;
    assert_eq!(t["state"], "canceled");
    let start = Instant::now();
    while being_written(&s) > 0 {
        assert!(start.elapsed() < Duration::from_secs(10), "the cancelled sync removed its scratch file");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Defect 11: a fresh SQLite file opens without a single failed connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_sqlite_starts_open_every_connection() {
    for _ in 0..20 {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("pulpish.db").display());
        let db = pulpish_server::db::Db::connect(&url).unwrap();
        let migrate = db.clone();
        tokio::task::spawn_blocking(move || migrate.migrate()).await.unwrap().unwrap();
        let all = db.clone();
        tokio::task::spawn_blocking(move || (0..8).map(|_| all.get().unwrap()).collect::<Vec<_>>()).await.unwrap();
        assert_eq!(db.connection_errors(), 0);
    }
}

/// Defect 8: a remote's secrets are in no response and no task row, yet the update applies them.
async fn remote_secrets_stay_out_of_responses_and_task_rows(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (status, remote) = s
        .post("remotes/container/container/", json!({"name": "secret", "url": "http://127.0.0.1:9", "upstream_name": "x", "password": "first-s3cret", "proxy_url": "http://puser:proxy-s3cret@127.0.0.1:3128"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{remote}");
    let href = remote["pulp_href"].as_str().unwrap().to_string();
    let (_, shown) = s.get(&href).await;
    let text = shown.to_string();
    assert!(!text.contains("s3cret") && !text.contains("puser"), "{text}");
    assert_eq!(shown["proxy_url"], "http://127.0.0.1:3128/");
    let hidden: Vec<(String, bool)> = shown["hidden_fields"].as_array().unwrap().iter().map(|h| (h["name"].as_str().unwrap().to_string(), h["is_set"].as_bool().unwrap())).collect();
    assert!(hidden.contains(&("proxy_password".into(), true)) && hidden.contains(&("password".into(), true)), "{hidden:?}");

    let task = s.completed(s.patch(&href, json!({"password": "second-s3cret", "proxy_url": "http://puser:other-s3cret@127.0.0.1:3128"})).await).await;
    assert!(!task.to_string().contains("s3cret"), "{task}");
    let (_, tasks) = s.get("tasks/?limit=100").await;
    assert!(!tasks.to_string().contains("s3cret"));
    let db = s.state.db.clone();
    let (args, stored) = tokio::task::spawn_blocking(move || {
        use diesel::prelude::*;
        let mut c = db.get().unwrap();
        let args: Vec<String> = pulpish_server::db::schema::task::table.select(pulpish_server::db::schema::task::args).load(&mut *c).unwrap();
        let stored = pulpish_server::models::remote::find_by_name(&mut c, "secret").unwrap().unwrap();
        (args, stored)
    })
    .await
    .unwrap();
    assert!(args.iter().all(|a| !a.contains("s3cret")), "task rows: {args:?}");
    assert_eq!(stored.password.as_deref(), Some("second-s3cret"), "the update applied the staged password");
    assert_eq!(stored.proxy_url.as_deref(), Some("http://puser:other-s3cret@127.0.0.1:3128/"), "stored normalised, credentials kept");
    assert!(!format!("{stored:?}").contains("s3cret"), "Debug hides secrets");
}

on_both_backends!(
    remote_secrets_stay_out_of_responses_and_task_rows,
    a_patch_racing_the_finishing_put_cannot_touch_the_stored_blob,
    two_puts_of_one_upload_at_once_one_wins_cleanly,
    concurrent_pushes_and_pulls_of_one_blob_keep_the_store_intact,
    a_rejected_push_to_a_new_path_creates_nothing,
    malformed_upload_requests_get_client_errors,
    range_edge_cases,
    nul_bytes_in_registry_requests_are_client_errors,
    the_catalog_hides_private_distributions_from_anonymous_clients,
    a_blob_is_fetched_through_the_served_repositorys_own_remote,
    upstream_bodies_are_read_with_limits,
    one_bad_remote_does_not_break_other_fetches,
    head_of_a_blob_not_yet_stored_declares_its_size,
    leftovers_are_swept_at_start,
    failed_and_cancelled_downloads_leave_no_scratch_files,
    a_layer_declared_empty_is_not_served_empty,
);
