//! Background retries of failed on-demand downloads (`retry_in_background` on a remote): a
//! client gets the upstream's transient failure as before, and the blob is fetched again in the
//! background with backoff, so a later client finds it stored without a new upstream GET.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};
use support::fault::serve_on_demand_once as serve;
use support::fault::{fault_image, sha256, BlobBehaviour, FaultUpstream};
use support::{Backend, TestServer, PASSWORD};

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(37).wrapping_add(seed)).collect()
}

async fn get_blob(s: &TestServer, name: &str, digest: &str) -> reqwest::Response {
    s.client.get(format!("{}/v2/{name}/blobs/{digest}", s.base)).send().await.unwrap()
}

/// The blob's `artifact` as the content API shows it (null while not downloaded).
async fn artifact_of(s: &TestServer, digest: &str) -> Value {
    let (status, page) = s.get(&format!("content/container/blobs/?digest={digest}")).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["count"], 1, "{page}");
    page["results"][0]["artifact"].clone()
}

/// Polls the content API until the blob has an artifact; returns how long that took.
async fn wait_until_stored(s: &TestServer, digest: &str, within: Duration) -> Duration {
    let start = Instant::now();
    while artifact_of(s, digest).await.is_null() {
        assert!(start.elapsed() < within, "the blob was not stored within {within:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    start.elapsed()
}

/// The blob is served from the store with exactly its bytes.
async fn assert_served(s: &TestServer, name: &str, digest: &str, bytes: &[u8]) {
    let r = get_blob(s, name, digest).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["docker-content-digest"], digest);
    let body = r.bytes().await.unwrap();
    assert_eq!(body.len(), bytes.len());
    assert_eq!(sha256(&body), digest);
}

/// The `outcome` count of background retries on `/metrics`, once it shows `expected`.
async fn wait_for_retry_count(s: &TestServer, outcome: &str, expected: u64) {
    let line = format!("pulpish_background_retries_total{{outcome=\"{outcome}\"}} {expected}");
    let start = Instant::now();
    loop {
        let text = s.client.get(format!("{}/metrics", s.base)).send().await.unwrap().text().await.unwrap();
        if text.lines().any(|l| l == line) {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "/metrics never showed {line}:\n{text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Two 503s, then the upstream serves: the first client gets the error; the background retry
/// fails once more, then stores the blob; a later client gets it from the store.
async fn a_blob_that_failed_is_stored_by_the_background_retry(backend: Backend) {
    let layer = pattern(300_000, 1);
    let (mut state, digest) = fault_image(layer.clone());
    state.blobs.get_mut(&digest).unwrap().1 = BlobBehaviour::FailTimes(2, 503);
    let upstream = FaultUpstream::start(state).await;
    let s = TestServer::start(backend).await;
    serve(&s, &upstream, "retried", json!({"retry_in_background": true})).await;

    let r = get_blob(&s, "retried", &digest).await;
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY, "{}", r.text().await.unwrap());
    assert!(artifact_of(&s, &digest).await.is_null(), "nothing stored by the failed download");
    wait_until_stored(&s, &digest, Duration::from_secs(15)).await;
    assert_eq!(upstream.blob_gets(&digest), 3, "the client's GET, a retry that failed, the retry that stored");

    assert_served(&s, "retried", &digest, &layer).await;
    assert_eq!(upstream.blob_gets(&digest), 3, "the later client was served from the store");
    wait_for_retry_count(&s, "stored", 1).await;
    upstream.stop().await;
}

/// A remote that does not ask for background retries (the default): one GET, nothing stored.
async fn without_retry_in_background_a_failure_stays_a_failure(backend: Backend) {
    let (mut state, digest) = fault_image(pattern(100_000, 2));
    state.blobs.get_mut(&digest).unwrap().1 = BlobBehaviour::FailTimes(2, 503);
    let upstream = FaultUpstream::start(state).await;
    let s = TestServer::start(backend).await;
    serve(&s, &upstream, "plain", json!({})).await;
    let (_, remote) = s.get("remotes/container/container/?name=plain").await;
    assert_eq!(remote["results"][0]["retry_in_background"], false, "off by default");

    assert_eq!(get_blob(&s, "plain", &digest).await.status(), StatusCode::BAD_GATEWAY);
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(upstream.blob_gets(&digest), 1);
    assert!(artifact_of(&s, &digest).await.is_null());
    upstream.stop().await;
}

/// A 404 does not pass by itself, and a streamed remote keeps nothing: neither is retried.
async fn lasting_failures_and_streamed_remotes_are_not_retried(backend: Backend) {
    let (state, digest) = fault_image(pattern(100_000, 3));
    let upstream = FaultUpstream::start(state).await;
    let s = TestServer::start(backend).await;
    serve(&s, &upstream, "gone", json!({"retry_in_background": true})).await;
    upstream.set_blob(&digest, BlobBehaviour::Status(404));
    assert_eq!(get_blob(&s, "gone", &digest).await.status(), StatusCode::NOT_FOUND);
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(upstream.blob_gets(&digest), 1, "a 404 is not retried");
    assert!(artifact_of(&s, &digest).await.is_null());

    let (mut state, digest) = fault_image(pattern(100_000, 4));
    state.blobs.get_mut(&digest).unwrap().1 = BlobBehaviour::FailTimes(1, 503);
    let upstream = FaultUpstream::start(state).await;
    serve(&s, &upstream, "streamed", json!({"retry_in_background": true, "policy": "streamed"})).await;
    assert_eq!(get_blob(&s, "streamed", &digest).await.status(), StatusCode::BAD_GATEWAY);
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(upstream.blob_gets(&digest), 1, "a streamed remote's failure is not retried");
    wait_for_retry_count(&s, "stored", 0).await;
}

/// A 429 with `Retry-After: 3`: the client gets the 429; the retry waits the 3 s the upstream
/// asked for (not the first backoff's 1 s), then stores the blob.
async fn a_rate_limited_blob_is_retried_after_what_the_upstream_asked(backend: Backend) {
    let layer = pattern(200_000, 5);
    let (mut state, digest) = fault_image(layer.clone());
    state.blobs.get_mut(&digest).unwrap().1 = BlobBehaviour::FailTimes(1, 429);
    state.retry_after = Some(3);
    let upstream = FaultUpstream::start(state).await;
    let s = TestServer::start(backend).await;
    serve(&s, &upstream, "limited", json!({"retry_in_background": true})).await;

    let asked = Instant::now();
    assert_eq!(get_blob(&s, "limited", &digest).await.status(), StatusCode::TOO_MANY_REQUESTS);
    wait_until_stored(&s, &digest, Duration::from_secs(15)).await;
    assert!(asked.elapsed() >= Duration::from_secs(3), "stored after {:?}, before the Retry-After", asked.elapsed());
    assert_eq!(upstream.blob_gets(&digest), 2);
    assert_served(&s, "limited", &digest, &layer).await;
    assert_eq!(upstream.blob_gets(&digest), 2);
    upstream.stop().await;
}

/// `pulpish remote create/update --retry-in-background` sets the remote's field.
async fn the_cli_sets_retry_in_background(backend: Backend) {
    let s = TestServer::start(backend).await;
    let home = tempfile::tempdir().unwrap();
    let pulpish = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_pulpish"))
            .args(args)
            .env("PULPISH_SERVER", &s.base)
            .env("PULPISH_PASSWORD", PASSWORD)
            .env_remove("PULPISH_USERNAME")
            .env("HOME", home.path())
            .env_remove("XDG_CONFIG_HOME")
            .output()
            .unwrap();
        assert!(out.status.success(), "pulpish {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let shown = async || s.get("remotes/container/container/?name=r").await.1["results"][0]["retry_in_background"].clone();
    pulpish(&["remote", "create", "--name", "r", "--url", "http://127.0.0.1:1", "--upstream-name", "x", "--retry-in-background", "true"]);
    assert_eq!(shown().await, true);
    pulpish(&["remote", "update", "--name", "r", "--retry-in-background", "false"]);
    assert_eq!(shown().await, false);
    let out = Command::new(env!("CARGO_BIN_EXE_pulpish")).args(["remote", "update", "--name", "r", "--retry-in-background", "maybe"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--retry-in-background"), "{}", String::from_utf8_lossy(&out.stderr));
}

on_both_backends!(
    a_blob_that_failed_is_stored_by_the_background_retry,
    without_retry_in_background_a_failure_stays_a_failure,
    lasting_failures_and_streamed_remotes_are_not_retried,
    a_rate_limited_blob_is_retried_after_what_the_upstream_asked,
);

on_databases!(the_cli_sets_retry_in_background);
