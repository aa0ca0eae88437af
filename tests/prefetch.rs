//! Prefetch on manifest (a remote's `prefetch`): a client's GET of an image manifest starts
//! fetching the image's blobs that are not stored, through the single-flight fetcher, so the
//! client's blob GETs join downloads already under way, and a client that never asks for the
//! blobs costs one upstream GET each. Not for a HEAD, nor for a manifest list.

mod support;

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};
use support::fault::serve_on_demand_once as serve;
use support::fault::{fault_image, sha256, BlobBehaviour, FaultState, FaultUpstream};
use support::{Backend, TestServer};

const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const INDEX: &str = "application/vnd.oci.image.index.v1+json";

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

/// The config digest of `fault_image`'s manifest (tag `latest`).
fn config_digest(state: &FaultState) -> String {
    let manifest: Value = serde_json::from_slice(&state.tags["latest"].0).unwrap();
    manifest["config"]["digest"].as_str().unwrap().to_string()
}

/// An image of these layers (each served with `behaviour`) under tag `latest`; returns the
/// state and the blob digests, config first.
fn image_of(layers: Vec<Vec<u8>>, behaviour: BlobBehaviour) -> (FaultState, Vec<String>) {
    let (mut state, first) = fault_image(layers[0].clone());
    let config = config_digest(&state);
    state.blobs.remove(&first);
    let mut descriptors = Vec::new();
    let mut digests = vec![config.clone()];
    for layer in layers {
        let digest = sha256(&layer);
        descriptors.push(json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest, "size": layer.len()}));
        digests.push(digest.clone());
        state.blobs.insert(digest, (layer.into(), behaviour.clone()));
    }
    let config_size = state.blobs[&config].0.len();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": config_size},
        "layers": descriptors,
    });
    state.tags.insert("latest".into(), (serde_json::to_vec(&manifest).unwrap(), MANIFEST.into()));
    (state, digests)
}

async fn manifest(s: &TestServer, method: reqwest::Method, path: &str) -> reqwest::Response {
    let r = s.client.request(method, s.url(path)).header("accept", format!("{MANIFEST},{INDEX}")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{path}");
    r
}

/// The blob's `artifact` as the content API shows it (null while not downloaded).
async fn artifact_of(s: &TestServer, digest: &str) -> Value {
    let (status, page) = s.get(&format!("content/container/blobs/?digest={digest}")).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["count"], 1, "{page}");
    page["results"][0]["artifact"].clone()
}

async fn wait_until_stored(s: &TestServer, digest: &str, within: Duration) {
    let start = Instant::now();
    while artifact_of(s, digest).await.is_null() {
        assert!(start.elapsed() < within, "{digest} was not stored within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// GETs the blob and checks its bytes against its digest and length.
async fn assert_served(s: &TestServer, name: &str, digest: &str, len: usize) {
    let r = s.client.get(format!("{}/v2/{name}/blobs/{digest}", s.base)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["docker-content-digest"], digest);
    let body = r.bytes().await.unwrap();
    assert_eq!(body.len(), len);
    assert_eq!(sha256(&body), digest);
}

/// A metric's value on `/metrics` (0 when absent).
async fn metric(s: &TestServer, name: &str) -> u64 {
    let text = s.client.get(format!("{}/metrics", s.base)).send().await.unwrap().text().await.unwrap();
    text.lines().find_map(|l| l.strip_prefix(&format!("{name} ")).map(|v| v.trim().parse().unwrap())).unwrap_or(0)
}

/// A manifest GET alone stores the config and the layer, one upstream GET each; the client's
/// blob GET then comes from the store.
async fn a_manifest_get_stores_the_images_blobs(backend: Backend) {
    let layer = pattern(300_000, 1);
    let (state, layer_digest) = fault_image(layer.clone());
    let config = config_digest(&state);
    let upstream = FaultUpstream::start(state).await;
    let s = TestServer::start(backend).await;
    serve(&s, &upstream, "app", json!({})).await;
    assert!(artifact_of(&s, &layer_digest).await.is_null(), "on_demand: nothing stored by the sync");

    manifest(&s, reqwest::Method::GET, "/v2/app/manifests/latest").await;
    wait_until_stored(&s, &config, Duration::from_secs(10)).await;
    wait_until_stored(&s, &layer_digest, Duration::from_secs(10)).await;
    assert_eq!((upstream.blob_gets(&config), upstream.blob_gets(&layer_digest)), (1, 1));
    assert_eq!(metric(&s, "pulpish_prefetches_started_total").await, 2);

    // Again, by tag and by digest: nothing more is fetched.
    let digest = manifest(&s, reqwest::Method::GET, "/v2/app/manifests/latest").await.headers()["docker-content-digest"].to_str().unwrap().to_string();
    manifest(&s, reqwest::Method::GET, &format!("/v2/app/manifests/{digest}")).await;
    assert_served(&s, "app", &layer_digest, layer.len()).await;
    let config_len = upstream.state.lock().unwrap().blobs[&config].0.len();
    assert_served(&s, "app", &config, config_len).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!((upstream.blob_gets(&config), upstream.blob_gets(&layer_digest)), (1, 1));
    assert_eq!(metric(&s, "pulpish_prefetches_started_total").await, 2);
    upstream.stop().await;
}

/// A blob GET arriving while the prefetch of that blob is downloading joins it.
async fn a_blob_get_joins_the_prefetch_in_flight(backend: Backend) {
    let layer = pattern(1024 * 1024, 2);
    let (state, layer_digest) = fault_image(layer.clone());
    let upstream = FaultUpstream::start(state).await;
    // 16 chunks of 64 KiB, 150 ms apart: about 2.4 s upstream.
    upstream.set_blob(&layer_digest, BlobBehaviour::Paced(Duration::from_millis(150)));
    let s = TestServer::start(backend).await;
    serve(&s, &upstream, "slow", json!({})).await;

    manifest(&s, reqwest::Method::GET, "/v2/slow/manifests/latest").await;
    let start = Instant::now();
    while upstream.blob_gets(&layer_digest) == 0 {
        assert!(start.elapsed() < Duration::from_secs(10), "the prefetch never asked the upstream");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(artifact_of(&s, &layer_digest).await.is_null(), "still downloading");
    let joined_before = metric(&s, "pulpish_ondemand_readers_joined_total").await;
    assert_served(&s, "slow", &layer_digest, layer.len()).await;
    assert_eq!(upstream.blob_gets(&layer_digest), 1, "the client joined the prefetch");
    assert_eq!(metric(&s, "pulpish_ondemand_readers_joined_total").await, joined_before + 1);
    wait_until_stored(&s, &layer_digest, Duration::from_secs(10)).await;
    upstream.stop().await;
}

/// `prefetch: false`: nothing is fetched before the client asks; its GET fetches the blob.
async fn without_prefetch_nothing_is_fetched_before_the_client_asks(backend: Backend) {
    let layer = pattern(200_000, 3);
    let (state, layer_digest) = fault_image(layer.clone());
    let config = config_digest(&state);
    let upstream = FaultUpstream::start(state).await;
    let s = TestServer::start(backend).await;
    serve(&s, &upstream, "off", json!({"prefetch": false})).await;

    manifest(&s, reqwest::Method::GET, "/v2/off/manifests/latest").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!((upstream.blob_gets(&config), upstream.blob_gets(&layer_digest)), (0, 0));
    assert_served(&s, "off", &layer_digest, layer.len()).await;
    assert_eq!(upstream.blob_gets(&layer_digest), 1);
    assert_eq!(metric(&s, "pulpish_prefetches_started_total").await, 0);
    upstream.stop().await;
}

/// A HEAD of the manifest (a tag watcher) and a GET of a manifest list fetch no blob; the GET
/// of the platform manifest does.
async fn a_head_or_a_list_fetches_nothing(backend: Backend) {
    let layer = pattern(200_000, 4);
    let (mut state, layer_digest) = fault_image(layer.clone());
    let config = config_digest(&state);
    let platform = state.tags["latest"].0.clone();
    let platform_digest = sha256(&platform);
    let index = json!({
        "schemaVersion": 2,
        "mediaType": INDEX,
        "manifests": [{"mediaType": MANIFEST, "digest": platform_digest, "size": platform.len(), "platform": {"architecture": "amd64", "os": "linux"}}],
    });
    state.tags.insert("multi".into(), (serde_json::to_vec(&index).unwrap(), INDEX.into()));
    let upstream = FaultUpstream::start(state).await;
    let s = TestServer::start(backend).await;
    serve(&s, &upstream, "watched", json!({})).await;

    let head = manifest(&s, reqwest::Method::HEAD, "/v2/watched/manifests/latest").await;
    assert_eq!(head.headers()["docker-content-digest"], platform_digest.as_str());
    let list = manifest(&s, reqwest::Method::GET, "/v2/watched/manifests/multi").await;
    assert_eq!(list.headers()["content-type"], INDEX);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!((upstream.blob_gets(&config), upstream.blob_gets(&layer_digest)), (0, 0), "a HEAD and a list fetch no blob");

    manifest(&s, reqwest::Method::GET, &format!("/v2/watched/manifests/{platform_digest}")).await;
    wait_until_stored(&s, &layer_digest, Duration::from_secs(10)).await;
    wait_until_stored(&s, &config, Duration::from_secs(10)).await;
    assert_eq!((upstream.blob_gets(&config), upstream.blob_gets(&layer_digest)), (1, 1));
    upstream.stop().await;
}

/// With `download_concurrency` 1, the prefetch of a three-layer image downloads one blob at a
/// time; with 3, they overlap.
async fn prefetches_run_at_most_download_concurrency_at_once(backend: Backend) {
    let s = TestServer::start(backend).await;
    let mut upstreams = Vec::new();
    for (name, concurrency, seed) in [("one", 1, 10u8), ("three", 3, 20u8)] {
        let layers = (0..3).map(|i| pattern(256 * 1024, seed + i)).collect();
        // 4 chunks of 64 KiB, 150 ms apart: about 0.6 s each.
        let (state, digests) = image_of(layers, BlobBehaviour::Paced(Duration::from_millis(150)));
        let upstream = FaultUpstream::start(state).await;
        serve(&s, &upstream, name, json!({"download_concurrency": concurrency})).await;

        manifest(&s, reqwest::Method::GET, &format!("/v2/{name}/manifests/latest")).await;
        let start = Instant::now();
        for d in &digests {
            wait_until_stored(&s, d, Duration::from_secs(15)).await;
        }
        // The config is the same in both images: stored by the first.
        let fetched = if concurrency == 1 { &digests[..] } else { &digests[1..] };
        for d in fetched {
            assert_eq!(upstream.blob_gets(d), 1, "{d}");
        }
        // Blob bodies the upstream was sending at once.
        let most = upstream.state.lock().unwrap().blob_bodies.most();
        if concurrency == 1 {
            assert_eq!(most, 1, "one prefetch download at a time");
            assert!(start.elapsed() >= Duration::from_millis(1700), "three paced layers one after the other: {:?}", start.elapsed());
        } else {
            assert!(most >= 2, "with download_concurrency 3 the layers overlap (at most {most} seen at once)");
        }
        upstreams.push(upstream);
    }
    for u in upstreams {
        u.stop().await;
    }
}

/// A pull-through distribution's first pull of a tag prefetches the image's blobs too; its
/// remote's `prefetch` reaches the remote made for the upstream repository.
async fn a_pull_through_pull_is_prefetched(backend: Backend) {
    let layer = pattern(150_000, 5);
    let (state, layer_digest) = fault_image(layer.clone());
    let config = config_digest(&state);
    let upstream = FaultUpstream::start(state).await;
    let s = TestServer::start(backend).await;
    let (status, remote) = s.post("remotes/container/pull-through/", json!({"name": "pt", "url": upstream.url()})).await;
    assert_eq!(status, StatusCode::CREATED, "{remote}");
    assert_eq!(remote["prefetch"], true);
    let answer = s.post("distributions/container/pull-through/", json!({"name": "pt", "base_path": "pt", "remote": remote["pulp_href"]})).await;
    if answer.0 == StatusCode::ACCEPTED {
        s.completed(answer).await;
    } else {
        assert_eq!(answer.0, StatusCode::CREATED, "{}", answer.1);
    }

    manifest(&s, reqwest::Method::GET, "/v2/pt/fault/app/manifests/latest").await;
    wait_until_stored(&s, &config, Duration::from_secs(10)).await;
    wait_until_stored(&s, &layer_digest, Duration::from_secs(10)).await;
    assert_eq!((upstream.blob_gets(&config), upstream.blob_gets(&layer_digest)), (1, 1));
    assert_served(&s, "pt/fault/app", &layer_digest, layer.len()).await;
    assert_eq!(upstream.blob_gets(&layer_digest), 1);

    s.completed(s.patch(remote["pulp_href"].as_str().unwrap(), json!({"prefetch": false})).await).await;
    let (_, child) = s.get("remotes/container/container/?name=pt/fault/app").await;
    assert_eq!(child["count"], 1, "{child}");
    assert_eq!(child["results"][0]["prefetch"], false, "{child}");
    upstream.stop().await;
}

/// The field on the API: default true, false with streamed; true with streamed and a
/// non-boolean are refused naming it; a change of policy takes the default along.
async fn the_prefetch_field(backend: Backend) {
    let s = TestServer::start(backend).await;
    let base = |extra: Value| {
        let mut b = json!({"name": "r", "url": "http://127.0.0.1:1", "upstream_name": "x", "policy": "on_demand"});
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };
    for (body, why) in [(base(json!({"policy": "streamed", "prefetch": true})), "streamed"), (base(json!({"prefetch": "yes"})), "not a boolean")] {
        let (status, answer) = s.post("remotes/container/container/", body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{why}: {answer}");
        assert!(answer.to_string().contains("prefetch"), "{why}: {answer}");
    }
    let (status, r) = s.post("remotes/container/container/", base(json!({}))).await;
    assert_eq!(status, StatusCode::CREATED, "{r}");
    assert_eq!(r["prefetch"], true);
    let href = r["pulp_href"].as_str().unwrap().to_string();
    let shown = async || s.get(&href).await.1["prefetch"].clone();

    s.completed(s.patch(&href, json!({"policy": "streamed"})).await).await;
    assert_eq!(shown().await, false, "streamed keeps nothing");
    let (status, answer) = s.patch(&href, json!({"prefetch": true})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(answer["prefetch"].is_array(), "{answer}");
    s.completed(s.patch(&href, json!({"policy": "on_demand"})).await).await;
    assert_eq!(shown().await, true, "back to the default");
    s.completed(s.patch(&href, json!({"prefetch": false, "policy": "immediate"})).await).await;
    assert_eq!(shown().await, false);
    s.completed(s.patch(&href, json!({"policy": "on_demand"})).await).await;
    assert_eq!(shown().await, false, "a choice made is kept");

    let (status, r) =
        s.post("remotes/container/container/", json!({"name": "st", "url": "http://127.0.0.1:1", "upstream_name": "x", "policy": "streamed"})).await;
    assert_eq!(status, StatusCode::CREATED, "{r}");
    assert_eq!(r["prefetch"], false);
    let (status, r) =
        s.post("remotes/container/pull-through/", json!({"name": "pt", "url": "http://127.0.0.1:1", "policy": "streamed", "prefetch": true})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{r}");
    assert!(r["prefetch"].is_array(), "{r}");
}

on_both_backends!(
    a_manifest_get_stores_the_images_blobs,
    a_blob_get_joins_the_prefetch_in_flight,
    without_prefetch_nothing_is_fetched_before_the_client_asks,
    a_head_or_a_list_fetches_nothing,
    prefetches_run_at_most_download_concurrency_at_once,
    a_pull_through_pull_is_prefetched,
);

on_databases!(the_prefetch_field);
