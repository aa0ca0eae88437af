//! Resume on upstream cut (issue 15): when the upstream breaks off a blob mid-way, the
//! on-demand download asks for the rest (`Range: bytes=N-`) and goes on with the same file and
//! hash; its clients only wait. An upstream that ignores the range restarts the download from
//! 0 (clients that already got bytes are cut, never given a wrong complete body); cuts past the
//! remote's `max_retries` fail as before.

mod support;


use futures_util::StreamExt;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::Digest;
use support::fault::{fault_image, sha256, BlobBehaviour, FaultUpstream};
use support::{pseudo_random, wait_for, Backend, TestServer};

/// Not a multiple of any block size, so the temp file's last partial block is exercised.
const SIZE: usize = 8 * 1024 * 1024 + 12_345;
const CUT: usize = SIZE * 2 / 5;

/// An on_demand remote on the fault upstream, its repository synced and served at `name`.
async fn serve(s: &TestServer, upstream: &FaultUpstream, name: &str, extra: Value) {
    support::fault::serve_on_demand(s, upstream, name, extra).await;
}

/// What a client got: the status, the bytes it received, and whether the body ended cleanly.
struct Got {
    status: StatusCode,
    body: Vec<u8>,
    complete: bool,
}

async fn get(s: &TestServer, name: &str, digest: &str, range: Option<&str>) -> Got {
    let mut req = s.client.get(format!("{}/v2/{name}/blobs/{digest}", s.base));
    if let Some(r) = range {
        req = req.header("Range", r);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let mut body = Vec::new();
    let mut stream = resp.bytes_stream();
    let mut complete = true;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(c) => body.extend_from_slice(&c),
            Err(_) => {
                complete = false;
                break;
            }
        }
    }
    Got { status, body, complete }
}

async fn artifact_count(s: &TestServer, digest: &str) -> i64 {
    s.get(&format!("artifacts/?sha256={}", digest.trim_start_matches("sha256:"))).await.1["count"].as_i64().unwrap()
}

async fn metric(s: &TestServer, name: &str) -> f64 {
    let text = s.client.get(format!("{}/metrics", s.base)).send().await.unwrap().text().await.unwrap();
    text.lines().find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok())).unwrap_or(0.0)
}

/// The upstream cuts the blob at 40%, then serves ranges: 8 concurrent clients (two of them
/// asking for ranges of pulpish) each get exactly their bytes; the upstream saw one full GET
/// and one ranged GET from where it cut; one artifact is recorded.
async fn a_cut_at_40_percent_is_resumed_for_every_client(backend: Backend) {
    let layer = pseudo_random(SIZE, 40);
    let (state, digest) = fault_image(layer.clone());
    let upstream = FaultUpstream::start(state).await;
    upstream.set_blob(&digest, BlobBehaviour::CutOnce(CUT));
    let s = TestServer::start(backend).await;
    serve(&s, &upstream, "resume/app", json!({})).await;

    let ranges = [None, None, None, None, None, None, Some(1_000_000usize), Some(SIZE - 4096)];
    let clients = ranges.map(|r| {
        let (s, digest) = (&s, &digest);
        async move { (r, get(s, "resume/app", digest, r.map(|r| format!("bytes={r}-")).as_deref()).await) }
    });
    for (from, got) in futures_util::future::join_all(clients).await {
        assert!(got.complete, "a client's body broke off (range from {from:?})");
        match from {
            None => {
                assert_eq!(got.status, StatusCode::OK);
                assert_eq!(got.body.len(), SIZE);
                assert_eq!(sha256(&got.body), digest, "a client got the wrong bytes");
            }
            Some(from) => {
                assert_eq!(got.status, StatusCode::PARTIAL_CONTENT);
                assert!(got.body == layer[from..], "the range from {from} is not the blob's bytes from {from}");
            }
        }
    }
    assert_eq!(upstream.blob_ranges(&digest), vec![None, Some(format!("bytes={CUT}-"))], "one full GET, then one ranged GET from the cut");
    wait_for("the artifact", async || artifact_count(&s, &digest).await == 1).await;
    assert_eq!(metric(&s, "pulpish_ondemand_download_resumes_total").await, 1.0);
    // Stored: the next client is served without the upstream.
    let again = get(&s, "resume/app", &digest, None).await;
    assert_eq!(sha256(&again.body), digest);
    assert_eq!(upstream.blob_gets(&digest), 2);
    upstream.stop().await;
}

/// After a cut, an upstream that answers the range request with the whole blob (200): the
/// download restarts from 0. Here the first attempt's bytes were wrong, so a client that mixed
/// them with the second attempt's would hold a wrong body. The clients that already received
/// bytes are cut; no client gets a complete body with a wrong digest; the blob is recorded
/// right, and served whole afterwards.
async fn an_upstream_ignoring_the_range_restarts_the_download(backend: Backend) {
    let layer = pseudo_random(SIZE, 41);
    let (state, digest) = fault_image(layer.clone());
    let upstream = FaultUpstream::start(state).await;
    upstream.set_blob(&digest, BlobBehaviour::WrongCutOnceIgnoringRange(CUT));
    let s = TestServer::start(backend).await;
    serve(&s, &upstream, "restart/app", json!({})).await;

    let clients = (0..4).map(|_| get(&s, "restart/app", &digest, None));
    let got = futures_util::future::join_all(clients).await;
    let mut cut = 0;
    for g in &got {
        assert_eq!(g.status, StatusCode::OK);
        if g.complete {
            assert_eq!(g.body.len(), SIZE, "a complete body of the wrong length");
            assert_eq!(sha256(&g.body), digest, "a client got a complete body with the wrong bytes");
        } else {
            assert!(g.body.len() < SIZE);
            cut += 1;
        }
    }
    assert!(cut > 0, "the clients that had bytes of the first attempt are cut");
    let ranges = upstream.blob_ranges(&digest);
    assert_eq!(ranges, vec![None, Some(format!("bytes={CUT}-"))], "asked for the range once; the whole blob came instead");
    wait_for("the artifact", async || artifact_count(&s, &digest).await == 1).await;
    let again = get(&s, "restart/app", &digest, None).await;
    assert!(again.complete);
    assert_eq!(sha256(&again.body), digest);
    assert_eq!(upstream.blob_gets(&digest), 2, "served from the store");
    upstream.stop().await;
}

/// An upstream that cuts every response: the download asks again `max_retries` times (here 2),
/// then fails as it did before resumes existed: the client's body is cut before its end,
/// nothing is recorded, no temp file is left; the next request, upstream healthy, succeeds.
async fn cuts_beyond_the_retry_budget_fail_the_download(backend: Backend) {
    let layer = pseudo_random(SIZE, 42);
    let (state, digest) = fault_image(layer.clone());
    let upstream = FaultUpstream::start(state).await;
    upstream.set_blob(&digest, BlobBehaviour::CutEvery(1024 * 1024));
    let s = TestServer::start(backend).await;
    serve(&s, &upstream, "budget/app", json!({"max_retries": 2})).await;

    let got = get(&s, "budget/app", &digest, None).await;
    assert!(!got.complete, "the client's body is cut");
    assert!(got.body.len() < SIZE);
    assert!(got.body == layer[..got.body.len()]);
    let mib = 1024 * 1024;
    assert_eq!(
        upstream.blob_ranges(&digest),
        vec![None, Some(format!("bytes={mib}-")), Some(format!("bytes={}-", 2 * mib))],
        "one GET and max_retries ranged GETs, each from where the last one broke off"
    );
    wait_for("the temp file to go", async || support::scratch_files(&s.dir.path().join("data")).is_empty()).await;
    assert_eq!(artifact_count(&s, &digest).await, 0, "nothing recorded");

    upstream.set_blob(&digest, BlobBehaviour::Serve);
    let ok = get(&s, "budget/app", &digest, None).await;
    assert!(ok.complete);
    assert_eq!(sha256(&ok.body), digest);
    wait_for("the artifact", async || artifact_count(&s, &digest).await == 1).await;
    upstream.stop().await;
}

/// With `max_retries` 0 nothing is asked again: one GET, the client cut (today's behaviour).
async fn no_retries_means_no_resume(backend: Backend) {
    let (state, digest) = fault_image(pseudo_random(SIZE, 43));
    let upstream = FaultUpstream::start(state).await;
    upstream.set_blob(&digest, BlobBehaviour::CutOnce(CUT));
    let s = TestServer::start(backend).await;
    serve(&s, &upstream, "none/app", json!({"max_retries": 0})).await;
    let got = get(&s, "none/app", &digest, None).await;
    assert!(!got.complete);
    assert_eq!(upstream.blob_ranges(&digest), vec![None]);
    upstream.stop().await;
}

/// The ranged request carries the remote's credentials like the first one.
async fn the_resume_is_authenticated(backend: Backend) {
    let layer = pseudo_random(SIZE, 44);
    let (mut state, digest) = fault_image(layer);
    use base64::Engine;
    let basic = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("puller:secret"));
    state.basic_auth = Some(basic.clone());
    let upstream = FaultUpstream::start(state).await;
    upstream.set_blob(&digest, BlobBehaviour::CutOnce(CUT));
    let s = TestServer::start(backend).await;
    serve(&s, &upstream, "auth/app", json!({"username": "puller", "password": "secret"})).await;
    let got = get(&s, "auth/app", &digest, None).await;
    assert!(got.complete);
    let mut h = sha2::Sha256::new();
    h.update(&got.body);
    assert_eq!(format!("sha256:{:x}", h.finalize()), digest);
    assert_eq!(upstream.blob_ranges(&digest).len(), 2);
    assert!(upstream.state.lock().unwrap().authorizations.iter().rev().take(1).all(|a| *a == basic), "the ranged GET was authenticated");
    upstream.stop().await;
}

on_both_backends!(
    a_cut_at_40_percent_is_resumed_for_every_client,
    an_upstream_ignoring_the_range_restarts_the_download,
    cuts_beyond_the_retry_budget_fail_the_download,
);
on_databases!(no_retries_means_no_resume, the_resume_is_authenticated);
