//! The content app with real clients (skopeo, podman, the Docker engine) pulling through
//! pulpish from a real upstream, and the on-demand fetcher's promises under concurrency and
//! faults (with an upstream the tests own).

mod support;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::Digest;
use support::fault::{fault_image, BlobBehaviour, FaultUpstream};
use support::registry::{Auth, Registry};
use support::{layout_blobs, pseudo_random, run, wait_for, Backend, TestServer};

use support::registry::shared_upstream as shared;

/// Remote + repository + sync + distribution at `base_path`; returns the repository href.
async fn serve_upstream(s: &TestServer, url: &str, upstream: &str, policy: &str, base_path: &str, extra: Value) -> String {
    let mut body = json!({"name": base_path, "url": url, "upstream_name": upstream, "policy": policy});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let (status, remote) = s.post("remotes/container/container/", body).await;
    assert_eq!(status, StatusCode::CREATED, "{remote}");
    let (_, repo) = s.post("repositories/container/container/", json!({"name": base_path, "remote": remote["pulp_href"]})).await;
    let repo = repo["pulp_href"].as_str().unwrap().to_string();
    let (_, t) = s.post(&format!("{repo}sync/"), json!({})).await;
    let t = s.wait_task(t["task"].as_str().unwrap()).await;
    assert_eq!(t["state"], "completed", "{t}");
    s.completed(s.post("distributions/container/container/", json!({"name": base_path, "base_path": base_path, "repository": repo})).await).await;
    repo
}

fn registry_host(s: &TestServer) -> String {
    s.base.trim_start_matches("http://").to_string()
}

async fn skopeo_and_podman_pull_through_on_demand(backend: Backend) {
    // Its own upstream: the access log counts must not see other tests' pulls.
    let registry = Registry::start(Auth::Anonymous);
    registry.push_layout_tag("index", "fixtures/index:latest", false, None);
    let index_digest = {
        let resp = reqwest::Client::new()
            .head(format!("http://{}/v2/fixtures/index/manifests/latest", registry.addr))
            .header("accept", "application/vnd.oci.image.index.v1+json")
            .send()
            .await
            .unwrap();
        resp.headers()["docker-content-digest"].to_str().unwrap().to_string()
    };
    let s = TestServer::start(backend).await;
    serve_upstream(&s, &registry.url(), "fixtures/index", "on_demand", "mirror/index", json!({})).await;
    assert_eq!(s.count("artifacts/").await, 0);
    let host = registry_host(&s);
    let gets = || registry.blob_gets(Some("/v2/fixtures/index/blobs/"));
    let before = gets();

    // skopeo, every platform of the index.
    let out = tempfile::tempdir().unwrap();
    run(Command::new("skopeo").args(["copy", "--all", "--quiet", "--src-tls-verify=false"]).arg(format!("docker://{host}/mirror/index:latest")).arg(format!("oci:{}:latest", out.path().display())));
    let raw = run(Command::new("skopeo").args(["inspect", "--raw", "--tls-verify=false"]).arg(format!("docker://{host}/mirror/index:latest")));
    assert_eq!(format!("sha256:{:x}", sha2::Sha256::digest(raw.as_bytes())), index_digest, "the manifest digest is the upstream's");
    let upstream_blobs: BTreeSet<String> = {
        let (_, blobs) = s.get("content/container/blobs/?limit=1000").await;
        blobs["results"].as_array().unwrap().iter().map(|b| b["digest"].as_str().unwrap().to_string()).collect()
    };
    let pulled = layout_blobs(out.path());
    assert!(upstream_blobs.is_subset(&pulled), "every blob arrived with the right sha256");
    let artifacts = s.count("artifacts/").await as usize;
    assert_eq!(artifacts, upstream_blobs.len(), "each blob pulled is now a stored artifact");
    assert_eq!(gets() - before, upstream_blobs.len(), "one upstream GET per blob");
    let (_, blobs) = s.get("content/container/blobs/?limit=1000").await;
    assert!(blobs["results"].as_array().unwrap().iter().all(|b| b["artifact"].is_string()));

    // podman, both platforms; now served from the store.
    let root = tempfile::tempdir().unwrap();
    for arch in ["amd64", "arm64"] {
        run(Command::new("podman")
            .arg("--root").arg(root.path().join("root"))
            .arg("--runroot").arg(root.path().join("run"))
            .args(["--storage-driver", "vfs", "pull", "--quiet", "--tls-verify=false", "--arch", arch])
            .arg(format!("{host}/mirror/index:latest")));
    }
    assert_eq!(gets() - before, upstream_blobs.len(), "a second pull makes no upstream blob request");
}

async fn docker_manifest_list_pulls_both_platforms(backend: Backend) {
    let (registry, refs) = shared(false);
    let s = TestServer::start(backend).await;
    serve_upstream(&s, &registry.url(), "fixtures/list", "on_demand", "mirror/list", json!({})).await;
    let host = registry_host(&s);
    for arch in ["amd64", "arm64"] {
        let out = tempfile::tempdir().unwrap();
        run(Command::new("skopeo")
            .args(["copy", "--quiet", "--src-tls-verify=false", "--override-arch", arch])
            .arg(format!("docker://{host}/mirror/list:latest"))
            .arg(format!("dir:{}", out.path().display())));
        let manifest: Value = serde_json::from_slice(&std::fs::read(out.path().join("manifest.json")).unwrap()).unwrap();
        let config: Value = serde_json::from_slice(&std::fs::read(out.path().join(manifest["config"]["digest"].as_str().unwrap().trim_start_matches("sha256:"))).unwrap()).unwrap();
        assert_eq!(config["architecture"], arch);
    }
    let raw = run(Command::new("skopeo").args(["inspect", "--raw", "--tls-verify=false"]).arg(format!("docker://{host}/mirror/list:latest")));
    assert_eq!(format!("sha256:{:x}", sha2::Sha256::digest(raw.as_bytes())), refs["fixtures/list:latest"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_engine_pulls_through_pulpish() {
    let info = Command::new("docker").args(["info", "--format", "{{.ServerVersion}}"]).output().ok();
    let Some(info) = info.filter(|o| o.status.success()) else {
        println!("SKIPPED: no Docker engine answers `docker info` on this machine");
        return;
    };
    println!("Docker engine {}", String::from_utf8_lossy(&info.stdout).trim());
    let (registry, refs) = shared(false);
    let s = TestServer::start(Backend::Sqlite).await;
    serve_upstream(&s, &registry.url(), "fixtures/docker", "on_demand", "mirror/docker", json!({})).await;
    let image = format!("{}/mirror/docker:latest", registry_host(&s));
    let out = run(Command::new("docker").args(["pull", &image]));
    assert!(out.contains(&refs["fixtures/docker:latest"]), "docker reports the upstream's digest: {out}");
    let id = run(Command::new("docker").args(["image", "inspect", "--format", "{{.Id}}", &image]));
    let _ = Command::new("docker").args(["rmi", "-f", &image]).output();
    assert!(id.trim().starts_with("sha256:"));
    assert!(s.count("artifacts/").await >= 2, "config and layers were stored");
}

/// The big blob's digest and size from the upstream's manifest.
async fn big_blob(registry: &Registry) -> (String, u64) {
    let m: Value = reqwest::Client::new()
        .get(format!("http://{}/v2/fixtures/big/manifests/latest", registry.addr))
        .header("accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let layer = m["layers"].as_array().unwrap().iter().max_by_key(|l| l["size"].as_u64().unwrap()).unwrap();
    (layer["digest"].as_str().unwrap().to_string(), layer["size"].as_u64().unwrap())
}

async fn hash_download(resp: reqwest::Response) -> Result<(String, u64), String> {
    let mut h = sha2::Sha256::new();
    let mut n = 0u64;
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| e.to_string())?;
        n += chunk.len() as u64;
        h.update(&chunk);
    }
    Ok((format!("sha256:{:x}", h.finalize()), n))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_two_cold_readers_one_upstream_get() {
    let (registry, _) = shared(true);
    let s = TestServer::start(Backend::Sqlite).await;
    serve_upstream(&s, &registry.url(), "fixtures/big", "on_demand", "mirror/big", json!({})).await;
    let (digest, size) = big_blob(registry).await;
    assert!(size > 256 * 1024 * 1024);
    let url = format!("{}/v2/mirror/big/blobs/{digest}", s.base);
    let start = Instant::now();
    let clients: Vec<_> = (0..32)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { hash_download(reqwest::get(&url).await.unwrap()).await })
        })
        .collect();
    for c in clients {
        assert_eq!(c.await.unwrap().unwrap(), (digest.clone(), size), "every client gets the right bytes");
    }
    println!("32 cold readers of {size} bytes: {:.1} s", start.elapsed().as_secs_f64());
    assert_eq!(registry.blob_gets(Some(&format!("/v2/fixtures/big/blobs/{digest}"))), 1, "the upstream saw exactly one GET of the blob");
    assert_eq!(s.state.metrics.downloads_started.get(), 1);
    let (_, a) = s.get(&format!("artifacts/?sha256={}", digest.trim_start_matches("sha256:"))).await;
    assert_eq!(a["count"], 1);
}

async fn artifact_count(s: &TestServer, digest: &str) -> i64 {
    s.get(&format!("artifacts/?sha256={}", digest.trim_start_matches("sha256:"))).await.1["count"].as_i64().unwrap()
}

fn temp_files(s: &TestServer) -> usize {
    support::scratch_files(&s.dir.path().join("data")).len()
}

async fn range_on_a_cold_blob_while_in_flight(backend: Backend) {
    let layer = pseudo_random(8 * 1024 * 1024, 7);
    let (mut state, digest) = fault_image(layer.clone());
    state.blobs.get_mut(&digest).unwrap().1 = BlobBehaviour::StallAfter(4 * 1024 * 1024, Duration::from_secs(3));
    let upstream = FaultUpstream::start(state).await;
    let s = TestServer::start(backend).await;
    serve_upstream(&s, &upstream.url(), "fault/app", "on_demand", "fault/app", json!({})).await;
    let start = Instant::now();
    let resp = s.client.get(format!("{}/v2/fault/app/blobs/{digest}", s.base)).header("range", "bytes=1000-1999").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(resp.headers()["content-range"], format!("bytes 1000-1999/{}", layer.len()).as_str());
    let body = resp.bytes().await.unwrap();
    assert_eq!(&body[..], &layer[1000..2000]);
    assert!(start.elapsed() < Duration::from_secs(3), "answered before the download finished");
    assert_eq!(artifact_count(&s, &digest).await, 0, "still in flight");
    // The rest arrives; a full read then matches, and the artifact is recorded.
    wait_for("the artifact", async || artifact_count(&s, &digest).await == 1).await;
    let full = s.client.get(format!("{}/v2/fault/app/blobs/{digest}", s.base)).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(&full[..], &layer[..]);
    assert_eq!(upstream.blob_gets(&digest), 1);
    // Now stored: ranges and HEAD come from the store.
    let blob_url = format!("{}/v2/fault/app/blobs/{digest}", s.base);
    let status = s.client.get(&blob_url).header("range", format!("bytes={}-", layer.len())).send().await.unwrap().status();
    assert_eq!(status, StatusCode::RANGE_NOT_SATISFIABLE);
    let part = s.client.get(&blob_url).header("range", "bytes=-100").send().await.unwrap();
    assert_eq!(part.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(part.headers()["content-range"], format!("bytes {}-{}/{}", layer.len() - 100, layer.len() - 1, layer.len()).as_str());
    assert_eq!(&part.bytes().await.unwrap()[..], &layer[layer.len() - 100..]);
    let head = s.client.head(&blob_url).send().await.unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(head.headers()["content-length"], layer.len().to_string().as_str());
    assert_eq!(head.headers()["docker-content-digest"], digest.as_str());
    assert!(head.headers().get("content-encoding").is_none(), "never compressed");
    assert_eq!(upstream.blob_gets(&digest), 1);
    upstream.stop().await;
}

async fn a_client_hanging_up_cancels_nothing(backend: Backend) {
    let layer = pseudo_random(16 * 1024 * 1024, 11);
    let (mut state, digest) = fault_image(layer);
    state.blobs.get_mut(&digest).unwrap().1 = BlobBehaviour::StallAfter(2 * 1024 * 1024, Duration::from_millis(800));
    let upstream = FaultUpstream::start(state).await;
    let s = TestServer::start(backend).await;
    serve_upstream(&s, &upstream.url(), "fault/app", "on_demand", "fault/app", json!({})).await;
    let resp = s.client.get(format!("{}/v2/fault/app/blobs/{digest}", s.base)).send().await.unwrap();
    let mut body = resp.bytes_stream();
    let mut got = 0;
    while got < 1024 * 1024 {
        got += body.next().await.unwrap().unwrap().len();
    }
    drop(body);
    wait_for("the artifact after the client left", async || artifact_count(&s, &digest).await == 1).await;
    assert_eq!(upstream.blob_gets(&digest), 1);
    // The download removes its temp file just after the row is written (lease released first).
    wait_for("the temp file to go", async || temp_files(&s) == 0).await;
    upstream.stop().await;
}

/// Each fault: the client's transfer fails (never a complete body), nothing is recorded,
/// the temp file is gone, and the next request (upstream healthy again) succeeds.
async fn faults_record_nothing_and_the_next_request_succeeds(backend: Backend) {
    let layer = pseudo_random(4 * 1024 * 1024, 3);
    let (state, digest) = fault_image(layer.clone());
    let upstream = FaultUpstream::start(state).await;
    let s = TestServer::start(backend).await;
    serve_upstream(&s, &upstream.url(), "fault/app", "on_demand", "fault/app", json!({"total_timeout": 1.5, "max_retries": 0})).await;
    let url = format!("{}/v2/fault/app/blobs/{digest}", s.base);
    for fault in [
        BlobBehaviour::CutAfter(1024 * 1024),
        BlobBehaviour::WrongBytes,
        BlobBehaviour::StallAfter(1024 * 1024, Duration::from_secs(4)),
    ] {
        upstream.set_blob(&digest, fault.clone());
        let resp = s.client.get(&url).send().await.unwrap();
        let outcome = hash_download(resp).await;
        match &outcome {
            Err(_) => {}
            Ok((d, n)) => assert!(d != &digest && *n < layer.len() as u64, "{fault:?}: a client received a complete body: {outcome:?}"),
        }
        wait_for("the temp file to go", async || temp_files(&s) == 0).await;
        assert_eq!(artifact_count(&s, &digest).await, 0, "{fault:?} recorded nothing");
        upstream.set_blob(&digest, BlobBehaviour::Serve);
        // Let a stalled upstream response drain before the next round.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ok = hash_download(s.client.get(&url).send().await.unwrap()).await.unwrap();
    assert_eq!(ok, (digest.clone(), layer.len() as u64));
    wait_for("the artifact", async || artifact_count(&s, &digest).await == 1).await;
    upstream.stop().await;
}

async fn upstream_errors_are_mapped_for_the_client(backend: Backend) {
    let (state, digest) = fault_image(pseudo_random(1024, 5));
    let upstream = FaultUpstream::start(state).await;
    let s = TestServer::start(backend).await;
    serve_upstream(&s, &upstream.url(), "fault/app", "on_demand", "fault/app", json!({"max_retries": 0, "total_timeout": 1.0})).await;
    let url = format!("{}/v2/fault/app/blobs/{digest}", s.base);
    for (behaviour, status, code) in [
        (BlobBehaviour::Status(404), 404, "BLOB_UNKNOWN"),
        (BlobBehaviour::Status(429), 429, "TOOMANYREQUESTS"),
        (BlobBehaviour::Status(500), 502, "UNKNOWN"),
    ] {
        upstream.set_blob(&digest, behaviour);
        let resp = s.client.get(&url).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), status);
        assert_eq!(resp.headers()["content-type"], "application/json");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["errors"][0]["code"], code, "{body}");
        if status != 404 {
            assert!(body["errors"][0]["message"].as_str().unwrap().contains(&upstream.addr), "names the remote: {body}");
        }
    }
    // Anything else (here a 503 with retries off) is a 502 naming the remote.
    upstream.set_blob(&digest, BlobBehaviour::Status(503));
    let resp = s.client.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
    let body: Value = resp.json().await.unwrap();
    assert!(body["errors"][0]["message"].as_str().unwrap().contains(&upstream.addr), "{body}");
    // With the upstream gone, manifests are still answered from what the sync stored.
    upstream.stop().await;
    let m = s.client.get(format!("{}/v2/fault/app/manifests/latest", s.base)).send().await.unwrap();
    assert_eq!(m.status(), StatusCode::OK, "manifests by tag never wait on the upstream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_silent_past_the_timeout_is_a_504() {
    let (mut state, digest) = fault_image(pseudo_random(64 * 1024, 21));
    state.blobs.get_mut(&digest).unwrap().1 = BlobBehaviour::StallBeforeHeaders(Duration::from_secs(4));
    let upstream = FaultUpstream::start(state).await;
    let s = TestServer::start(Backend::Sqlite).await;
    serve_upstream(&s, &upstream.url(), "fault/app", "on_demand", "fault/app", json!({"max_retries": 0, "total_timeout": 1.0})).await;
    let start = Instant::now();
    let resp = s.client.get(format!("{}/v2/fault/app/blobs/{digest}", s.base)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::GATEWAY_TIMEOUT);
    assert!(start.elapsed() < Duration::from_secs(3));
    let body: Value = resp.json().await.unwrap();
    assert!(body["errors"][0]["message"].as_str().unwrap().contains("timed out"), "{body}");
    assert_eq!(artifact_count(&s, &digest).await, 0);
    wait_for("the temp file to go", async || temp_files(&s) == 0).await;
    upstream.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_upstream_errors_are_retried_with_backoff() {
    let layer = pseudo_random(256 * 1024, 23);
    let (mut state, digest) = fault_image(layer.clone());
    state.blobs.get_mut(&digest).unwrap().1 = BlobBehaviour::FailTimes(2, 503);
    let upstream = FaultUpstream::start(state).await;
    let s = TestServer::start(Backend::Sqlite).await;
    serve_upstream(&s, &upstream.url(), "fault/app", "on_demand", "fault/app", json!({"max_retries": 3})).await;
    let got = hash_download(s.client.get(format!("{}/v2/fault/app/blobs/{digest}", s.base)).send().await.unwrap()).await.unwrap();
    assert_eq!(got, (digest.clone(), layer.len() as u64));
    assert_eq!(upstream.blob_gets(&digest), 3, "two 503s, then the download");
    upstream.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_that_stalls_mid_body_fails_the_client() {
    let (mut state, digest) = fault_image(pseudo_random(1024 * 1024, 9));
    state.blobs.get_mut(&digest).unwrap().1 = BlobBehaviour::StallAfter(0, Duration::from_secs(5));
    let upstream = FaultUpstream::start(state).await;
    let s = TestServer::start(Backend::Sqlite).await;
    serve_upstream(&s, &upstream.url(), "fault/app", "on_demand", "fault/app", json!({"max_retries": 0, "total_timeout": 1.0})).await;
    let resp = s.client.get(format!("{}/v2/fault/app/blobs/{digest}", s.base)).send().await.unwrap();
    // Headers came, then nothing: the body fails (the status was already sent as 200).
    assert!(hash_download(resp).await.is_err());
    wait_for("the temp file to go", async || temp_files(&s) == 0).await;
    assert_eq!(artifact_count(&s, &digest).await, 0);
    upstream.stop().await;
}

async fn streamed_is_checked_every_time_and_never_stored(backend: Backend) {
    let layer = pseudo_random(2 * 1024 * 1024, 13);
    let (state, digest) = fault_image(layer.clone());
    let upstream = FaultUpstream::start(state).await;
    let s = TestServer::start(backend).await;
    serve_upstream(&s, &upstream.url(), "fault/app", "streamed", "fault/app", json!({})).await;
    let url = format!("{}/v2/fault/app/blobs/{digest}", s.base);
    for round in 1..=2 {
        let got = hash_download(s.client.get(&url).send().await.unwrap()).await.unwrap();
        assert_eq!(got, (digest.clone(), layer.len() as u64));
        wait_for("the download to end", async || temp_files(&s) == 0).await;
        assert_eq!(upstream.blob_gets(&digest), round, "fetched again every time");
    }
    assert_eq!(s.count("artifacts/").await, 0, "streamed never stores");
    // Still digest-checked: wrong bytes never make a complete body.
    upstream.set_blob(&digest, BlobBehaviour::WrongBytes);
    let outcome = hash_download(s.client.get(&url).send().await.unwrap()).await;
    assert!(outcome.as_ref().map_or(true, |(d, n)| d != &digest && *n < layer.len() as u64), "{outcome:?}");
    upstream.stop().await;
}

async fn registry_api_basics(backend: Backend) {
    let (registry, refs) = shared(false);
    let s = TestServer::start(backend).await;
    let repo = serve_upstream(&s, &registry.url(), "fixtures/many", "on_demand", "many/tags", json!({"include_tags": ["tag-00*"]})).await;
    let get = |path: String| {
        let client = s.client.clone();
        let url = format!("{}{path}", s.base);
        async move { client.get(url).send().await.unwrap() }
    };
    // /v2/ challenges anonymous clients to fetch a (grant-less) token, as Docker Hub does.
    let base = get("/v2/".into()).await;
    assert_eq!(base.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(base.headers()["docker-distribution-api-version"], "registry/2.0");
    let challenge = base.headers()["www-authenticate"].to_str().unwrap().to_string();
    assert!(challenge.starts_with("Bearer realm=\"http://") && challenge.contains("/token\""), "{challenge}");
    let token: Value = reqwest::get(format!("{}/token?service=pulpish&scope=repository:many/tags:pull", s.base)).await.unwrap().json().await.unwrap();
    let base = s.client.get(format!("{}/v2/", s.base)).bearer_auth(token["token"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(base.status(), StatusCode::OK);

    let page = get("/v2/many/tags/tags/list?n=4".into()).await;
    let link = page.headers()["link"].to_str().unwrap().to_string();
    let tags: Value = page.json().await.unwrap();
    assert_eq!(tags["tags"], json!(["tag-000", "tag-001", "tag-002", "tag-003"]));
    assert!(link.contains("last=tag-003") && link.contains("rel=\"next\""), "{link}");
    let next = link.trim_start_matches('<').split('>').next().unwrap().to_string();
    let rest: Value = get(format!("{next}&n=100").replace("n=4&", "")).await.json().await.unwrap();
    assert_eq!(rest["tags"].as_array().unwrap().len(), 6);

    let catalog: Value = get("/v2/_catalog".into()).await.json().await.unwrap();
    assert_eq!(catalog["repositories"], json!(["many/tags"]));

    let digest = &refs["fixtures/many:tag-000"];
    for reference in ["tag-005", digest.as_str()] {
        let m = get(format!("/v2/many/tags/manifests/{reference}")).await;
        assert_eq!(m.status(), StatusCode::OK);
        assert_eq!(m.headers()["docker-content-digest"], digest.as_str());
        assert_eq!(m.headers()["content-type"], "application/vnd.oci.image.manifest.v1+json");
        let bytes = m.bytes().await.unwrap();
        assert_eq!(&format!("sha256:{:x}", sha2::Sha256::digest(&bytes)), digest);
    }
    let head = s.client.head(format!("{}/v2/many/tags/manifests/tag-001", s.base)).send().await.unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    assert!(head.headers()["content-length"].to_str().unwrap().parse::<u64>().unwrap() > 100);

    for (path, status, code) in [
        ("/v2/no/such/manifests/latest".to_string(), 404, "NAME_UNKNOWN"),
        ("/v2/many/tags/manifests/tag-100".to_string(), 404, "MANIFEST_UNKNOWN"),
        (format!("/v2/many/tags/blobs/sha256:{}", "0".repeat(64)), 404, "BLOB_UNKNOWN"),
        ("/v2/many/tags/blobs/sha256:xyz".to_string(), 400, "DIGEST_INVALID"),
        ("/v2/many/tags/manifests/sha256:short".to_string(), 400, "DIGEST_INVALID"),
    ] {
        let r = get(path.clone()).await;
        assert_eq!(r.status().as_u16(), status, "{path}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["errors"][0]["code"], code, "{path}: {body}");
    }

    // A distribution pinned to version 0 serves nothing of version 1.
    let (_, d) = s.get("distributions/container/container/?name=many/tags").await;
    let href = d["results"][0]["pulp_href"].as_str().unwrap();
    s.completed(s.patch(href, json!({"repository_version": format!("{repo}versions/0/")})).await).await;
    let r = get("/v2/many/tags/manifests/tag-001".into()).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // A private one needs credentials.
    s.completed(s.patch(href, json!({"repository": repo, "private": true})).await).await;
    let r = get("/v2/many/tags/manifests/tag-001".into()).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let anonymous = s.client.get(format!("{}/v2/many/tags/manifests/tag-001", s.base)).bearer_auth(token["token"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED, "an anonymous token grants nothing private");
    let r = s.client.get(format!("{}/v2/many/tags/manifests/tag-001", s.base)).basic_auth("admin", Some(support::PASSWORD)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

on_both_backends!(
    skopeo_and_podman_pull_through_on_demand,
    docker_manifest_list_pulls_both_platforms,
    range_on_a_cold_blob_while_in_flight,
    a_client_hanging_up_cancels_nothing,
    faults_record_nothing_and_the_next_request_succeeds,
    upstream_errors_are_mapped_for_the_client,
    streamed_is_checked_every_time_and_never_stored,
    registry_api_basics,
);
