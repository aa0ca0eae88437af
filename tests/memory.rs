//! Memory under abuse, measured in a test binary of its own (the server runs in this process,
//! so no other test may share it): a wrong-password flood and clients that never read.

mod support;

use std::io::Write;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use support::fault::sha256;
use support::{Backend, TestServer, PASSWORD};

fn req(s: &TestServer, method: Method, path: &str) -> reqwest::RequestBuilder {
    s.client.request(method, format!("{}{path}", s.base)).basic_auth("admin", Some(PASSWORD))
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

/// One test, so that the two measurements never overlap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_under_abuse() {
    a_wrong_password_flood_is_bounded_and_throttled().await;
    stalled_readers_of_a_stored_blob_cost_bounded_memory().await;
}

fn rss_kib() -> u64 {
    status_kib("VmRSS:")
}

/// Anonymous resident memory: the heap and stacks, without the pages of mapped files (this
/// binary's code, a stored blob being served), which the kernel shares and can drop.
fn anon_kib() -> u64 {
    status_kib("RssAnon:")
}

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status.lines().find(|l| l.starts_with(field)).unwrap().split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Defect 2: a wrong-password flood costs bounded memory, turns into 429s once a client spent
/// its failure budget, and does not lock out the admin's known-good credentials.
async fn a_wrong_password_flood_is_bounded_and_throttled() {
    let s = std::sync::Arc::new(TestServer::start(Backend::Sqlite).await);
    // The admin logs in once before the flood.
    assert_eq!(s.get("remotes/container/container/").await.0, StatusCode::OK);
    let before = rss_kib();
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for wave in 0..12 {
        let reqs = (0..50).map(|i| {
            let s = s.clone();
            async move {
                let path = if i % 2 == 0 { "/pulp/api/v3/remotes/container/container/".to_string() } else { "/token?scope=repository:x:pull".to_string() };
                let r = s.client.get(format!("{}{path}", s.base)).basic_auth("admin", Some(format!("wrong-{wave}-{i}"))).send().await.unwrap();
                r.status().as_u16()
            }
        });
        for status in futures_util::future::join_all(reqs).await {
            *statuses.entry(status).or_default() += 1;
        }
    }
    let after = rss_kib();
    println!("600 wrong passwords: {statuses:?}; RSS {} MiB -> {} MiB", before / 1024, after / 1024);
    assert_eq!(statuses.values().sum::<usize>(), 600);
    assert!(statuses.get(&429).copied().unwrap_or(0) >= 500, "after the budget, 429s: {statuses:?}");
    assert_eq!(statuses.get(&500), None);
    assert!(after.saturating_sub(before) < 200 * 1024, "RSS grew by {} MiB", (after - before) / 1024);
    // The admin's known credentials still work meanwhile.
    assert_eq!(s.get("remotes/container/container/").await.0, StatusCode::OK);
    let r = s.client.get(format!("{}/pulp/api/v3/remotes/container/container/", s.base)).basic_auth("admin", Some("one-more-wrong")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().contains_key("retry-after"));
}

/// Defect 9: clients that open a stored blob and never read cost little memory each, and give
/// it back when they leave.
async fn stalled_readers_of_a_stored_blob_cost_bounded_memory() {
    let s = TestServer::start(Backend::Sqlite).await;
    let blob = pattern(64 * 1024 * 1024, 11);
    let digest = sha256(&blob);
    let r = req(&s, Method::POST, &format!("/v2/stall/app/blobs/uploads/?digest={digest}")).body(blob).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let (before, anon_before) = (rss_kib(), anon_kib());
    let addr = s.base.trim_start_matches("http://").to_string();
    let mut conns = Vec::new();
    for _ in 0..200 {
        let mut c = std::net::TcpStream::connect(&addr).unwrap();
        // A small receive window, as a client that never reads would have once it filled.
        write!(c, "GET /v2/stall/app/blobs/{digest} HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
        conns.push(c);
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (during, anon_during) = (rss_kib(), anon_kib());
    drop(conns);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (after, anon_after) = (rss_kib(), anon_kib());
    println!(
        "200 stalled readers: RSS {} MiB before, {} MiB during, {} MiB after; anonymous {} / {} / {} MiB",
        before / 1024, during / 1024, after / 1024, anon_before / 1024, anon_during / 1024, anon_after / 1024
    );
    // What each reader holds is heap (anonymous); the file pages they map are the one blob's,
    // shared by all of them, plus this debug binary's code as it runs: bounded by 64 MiB more.
    let per_reader = anon_during.saturating_sub(anon_before) / 200;
    assert!(per_reader < 768, "each stalled reader holds {per_reader} KiB of heap");
    assert!(during.saturating_sub(before) < (200 * 768 + 64 * 1024 + 64 * 1024), "200 stalled readers took {} MiB in all", (during - before) / 1024);
    assert!(anon_after.saturating_sub(anon_before) < 64 * 1024, "{} MiB of heap stayed after they left", (anon_after - anon_before) / 1024);
}

