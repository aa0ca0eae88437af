//! Single flight across replicas: several pulpish replicas on one PostgreSQL database and one
//! object store download a cold on-demand blob from the remote once; the others relay the
//! owner's download through its internal endpoint. A killed owner's lease lapses and a
//! survivor takes over. The lease itself on both backends.
//!
//! Tests needing the object store are skipped when no `garage` binary is found (except in CI).

mod support;

use std::time::{Duration, Instant};

use chrono::Timelike;
use futures_util::StreamExt;
use pulpish_server::models::lease;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::Digest;
use support::fault::{fault_image, BlobBehaviour, FaultUpstream};
use support::replica::Replica;
use support::{garage, Backend, TestServer, PASSWORD};

const SECRET_HEADER: &str = "Pulpish-Peer-Secret";
const DOWNLOAD_HEADER: &str = "Pulpish-Download";

/// `len` bytes no compressor can shrink: a pseudo-random MiB, each copy stamped with its index.
fn blob_of(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let block: Vec<u8> = (0..1 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    let mut out = Vec::with_capacity(len);
    let mut i = 0u64;
    while out.len() < len {
        let start = out.len();
        out.extend_from_slice(&block[..block.len().min(len - start)]);
        let stamp = i.to_le_bytes();
        let n = stamp.len().min(out.len() - start);
        out[start..start + n].copy_from_slice(&stamp[..n]);
        i += 1;
    }
    out
}

async fn hash_download(resp: reqwest::Response) -> Result<(String, u64), String> {
    let mut h = sha2::Sha256::new();
    let mut n = 0u64;
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| format!("after {n} bytes: {e}"))?;
        n += chunk.len() as u64;
        h.update(&chunk);
    }
    Ok((format!("sha256:{:x}", h.finalize()), n))
}

async fn wait_for(what: &str, limit: Duration, mut check: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The management API of a replica by its base URL (in-process or a real process alike).
struct Api {
    base: String,
    client: reqwest::Client,
}

impl Api {
    fn new(base: &str) -> Api {
        Api { base: base.to_string(), client: reqwest::Client::new() }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let url = if path.starts_with('/') { format!("{}{path}", self.base) } else { format!("{}/pulp/api/v3/{path}", self.base) };
        let mut req = self.client.request(method, url).basic_auth("admin", Some(PASSWORD));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn wait_task(&self, href: &str) -> Value {
        let start = Instant::now();
        loop {
            let (_, task) = self.call(reqwest::Method::GET, href, None).await;
            if matches!(task["state"].as_str(), Some("completed" | "failed" | "canceled")) {
                return task;
            }
            assert!(start.elapsed() < Duration::from_secs(60), "task did not finish: {task}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Remote (on_demand) + repository + sync + distribution at `fault/app`.
    async fn serve_on_demand(&self, upstream: &str) {
        let (status, remote) = self
            .call(reqwest::Method::POST, "remotes/container/container/", Some(json!({"name": "fault", "url": upstream, "upstream_name": "fault/app", "policy": "on_demand"})))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{remote}");
        let (_, repo) = self.call(reqwest::Method::POST, "repositories/container/container/", Some(json!({"name": "fault", "remote": remote["pulp_href"]}))).await;
        let (_, t) = self.call(reqwest::Method::POST, &format!("{}sync/", repo["pulp_href"].as_str().unwrap()), Some(json!({}))).await;
        let t = self.wait_task(t["task"].as_str().unwrap()).await;
        assert_eq!(t["state"], "completed", "{t}");
        let (_, t) = self
            .call(reqwest::Method::POST, "distributions/container/container/", Some(json!({"name": "fault", "base_path": "fault/app", "repository": repo["pulp_href"]})))
            .await;
        let t = self.wait_task(t["task"].as_str().unwrap()).await;
        assert_eq!(t["state"], "completed", "{t}");
    }

    async fn artifacts_of(&self, digest: &str) -> i64 {
        let (_, page) = self.call(reqwest::Method::GET, &format!("artifacts/?sha256={}", digest.trim_start_matches("sha256:")), None).await;
        page["count"].as_i64().unwrap()
    }

    fn blob_url(&self, digest: &str) -> String {
        format!("{}/v2/fault/app/blobs/{digest}", self.base)
    }
}

async fn lease_of(db: &pulpish_server::db::Db, digest: &str) -> Option<lease::Lease> {
    let (db, d) = (db.clone(), digest.to_string());
    tokio::task::spawn_blocking(move || lease::find(&mut db.get().unwrap(), &d).unwrap()).await.unwrap()
}

/// `n` in-process replicas on one fresh PostgreSQL database and one fresh Garage bucket, each
/// with its own data dir (its scratch files).
async fn in_process_replicas(n: usize) -> Option<Vec<TestServer>> {
    if !garage::available() {
        return None;
    }
    let g = garage::instance();
    let bucket = g.create_bucket();
    let url = support::postgres::cluster().create_database();
    let mut replicas = Vec::new();
    for _ in 0..n {
        replicas.push(TestServer::start_with(tempfile::tempdir().unwrap(), url.clone(), |c| g.apply_to(c, &bucket)).await);
    }
    Some(replicas)
}

/// 32 clients spread round-robin over three replicas ask for one cold 256 MiB blob at once:
/// every client gets the right bytes, the remote sees one GET, the artifact is recorded once
/// and the lease is gone afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_download_a_cold_blob_once() {
    let Some(replicas) = in_process_replicas(3).await else { return };
    let layer = blob_of(256 * 1024 * 1024, 42);
    let size = layer.len() as u64;
    let (state, digest) = fault_image(layer);
    let upstream = FaultUpstream::start(state).await;
    let a = Api::new(&replicas[0].base);
    a.serve_on_demand(&upstream.url()).await;

    let start = Instant::now();
    let clients: Vec<_> = (0..32)
        .map(|i| {
            let url = Api::new(&replicas[i % 3].base).blob_url(&digest);
            tokio::spawn(async move { hash_download(reqwest::get(&url).await.unwrap()).await })
        })
        .collect();
    for (i, c) in clients.into_iter().enumerate() {
        assert_eq!(c.await.unwrap(), Ok((digest.clone(), size)), "client {i} (replica {}) gets the right bytes", i % 3);
    }
    println!("32 cold readers of {size} bytes on 3 replicas: {:.1} s", start.elapsed().as_secs_f64());
    assert_eq!(upstream.blob_gets(&digest), 1, "the upstream saw exactly one GET of the blob");
    let from_remote: u64 = replicas.iter().map(|r| r.state.metrics.downloads_started.get()).sum();
    assert_eq!(from_remote, 1, "one replica downloaded from the remote");
    let relays: Vec<u64> = replicas.iter().map(|r| r.state.metrics.relays_started.get()).collect();
    println!("relays started per replica: {relays:?}");
    assert_eq!(relays.iter().filter(|n| **n > 0).count(), 2, "the two other replicas relayed the owner's download");
    wait_for("the artifact", Duration::from_secs(60), async || a.artifacts_of(&digest).await == 1).await;
    let db = &replicas[0].state.db;
    wait_for("the lease to go", Duration::from_secs(10), async || lease_of(db, &digest).await.is_none()).await;
    // Stored now: every replica serves it from the object store.
    for r in &replicas {
        let got = hash_download(reqwest::get(Api::new(&r.base).blob_url(&digest)).await.unwrap()).await;
        assert_eq!(got, Ok((digest.clone(), size)));
    }
    assert_eq!(upstream.blob_gets(&digest), 1);
    assert_eq!(a.artifacts_of(&digest).await, 1);
    upstream.stop().await;
}

/// While replica A downloads (the upstream stalls half-way), Range requests on replica B are
/// answered from the relayed bytes at once; a range ending at the last byte waits until A has
/// verified the blob.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ranges_on_a_replica_that_relays_the_download() {
    let Some(replicas) = in_process_replicas(2).await else { return };
    let layer = blob_of(8 * 1024 * 1024, 7);
    let (mut state, digest) = fault_image(layer.clone());
    state.blobs.get_mut(&digest).unwrap().1 = BlobBehaviour::StallAfter(4 * 1024 * 1024, Duration::from_secs(3));
    let upstream = FaultUpstream::start(state).await;
    let (a, b) = (Api::new(&replicas[0].base), Api::new(&replicas[1].base));
    a.serve_on_demand(&upstream.url()).await;

    let started = Instant::now();
    let full = tokio::spawn(hash_download(reqwest::get(a.blob_url(&digest)).await.unwrap()));
    let db = &replicas[0].state.db;
    wait_for("A to hold the lease", Duration::from_secs(10), async || lease_of(db, &digest).await.is_some()).await;
    assert_eq!(lease_of(db, &digest).await.unwrap().address, a.base, "A owns the download");
    wait_for("A's download to start", Duration::from_secs(10), async || upstream.blob_gets(&digest) == 1).await;

    let tail = tokio::spawn({
        let r = b.client.get(b.blob_url(&digest)).header("range", "bytes=-100");
        async move {
            let resp = r.send().await.unwrap();
            (resp.status(), resp.bytes().await.unwrap(), Instant::now())
        }
    });
    let resp = b.client.get(b.blob_url(&digest)).header("range", "bytes=1000-1999").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(resp.headers()["content-range"], format!("bytes 1000-1999/{}", layer.len()).as_str());
    assert_eq!(&resp.bytes().await.unwrap()[..], &layer[1000..2000]);
    let resp = b.client.get(b.blob_url(&digest)).header("range", "bytes=4000000-4000099").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(&resp.bytes().await.unwrap()[..], &layer[4_000_000..4_000_100]);
    assert!(started.elapsed() < Duration::from_secs(3), "answered while the download was in flight");
    assert_eq!(replicas[1].state.metrics.downloads_started.get(), 0, "B never asked the remote");
    assert_eq!(replicas[1].state.metrics.relays_started.get(), 1, "B's requests shared one relay");

    let (status, bytes, at) = tail.await.unwrap();
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(&bytes[..], &layer[layer.len() - 100..]);
    assert!(at.duration_since(started) >= Duration::from_secs(3), "the last bytes came only after the stall");
    assert_eq!(full.await.unwrap(), Ok((digest.clone(), layer.len() as u64)));
    assert_eq!(upstream.blob_gets(&digest), 1);
    wait_for("the artifact", Duration::from_secs(30), async || b.artifacts_of(&digest).await == 1).await;
    wait_for("the lease to go", Duration::from_secs(10), async || lease_of(db, &digest).await.is_none()).await;
    upstream.stop().await;
}

/// Three `pulpish serve` processes; the one downloading is SIGKILLed mid-download while
/// clients read from all three. No client gets a complete body with a wrong digest, a survivor
/// takes over at the next request, and the blob is recorded once with no lease left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_owner_is_taken_over_by_a_survivor() {
    if !garage::available() {
        return;
    }
    let g = garage::instance();
    let bucket = g.create_bucket();
    let url = support::postgres::cluster().create_database();
    let mut flags = g.s3_args(&bucket);
    flags.extend(["--lease-seconds".to_string(), "2".to_string()]);
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(Replica::start(&url, &flags).await);
    }
    let layer = blob_of(24 * 1024 * 1024, 9);
    let size = layer.len() as u64;
    let (mut state, digest) = fault_image(layer);
    state.blobs.get_mut(&digest).unwrap().1 = BlobBehaviour::StallAfter(8 * 1024 * 1024, Duration::from_secs(600));
    let upstream = FaultUpstream::start(state).await;
    let apis: Vec<Api> = replicas.iter().map(|r| Api::new(&r.base)).collect();
    apis[0].serve_on_demand(&upstream.url()).await;

    let clients: Vec<_> = (0..6)
        .map(|i| {
            let url = apis[i % 3].blob_url(&digest);
            tokio::spawn(async move {
                match reqwest::get(&url).await {
                    Ok(resp) => hash_download(resp).await,
                    Err(e) => Err(e.to_string()),
                }
            })
        })
        .collect();
    let db = pulpish_server::db::Db::connect(&url).unwrap();
    wait_for("a replica to hold the lease", Duration::from_secs(20), async || lease_of(&db, &digest).await.is_some()).await;
    wait_for("the download to stall half-way", Duration::from_secs(20), async || upstream.blob_gets(&digest) == 1).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let owner_address = lease_of(&db, &digest).await.unwrap().address;
    let owner = replicas.iter().position(|r| r.base == owner_address).unwrap_or_else(|| panic!("the lease names {owner_address}"));
    assert_eq!(upstream.blob_gets(&digest), 1, "only the owner asked the remote");
    replicas[owner].kill();
    upstream.set_blob(&digest, BlobBehaviour::Serve);

    for (i, c) in clients.into_iter().enumerate() {
        let outcome = tokio::time::timeout(Duration::from_secs(30), c).await.unwrap_or_else(|_| panic!("client {i} hangs")).unwrap();
        println!("client {i} on replica {} (owner {owner}): {outcome:?}", i % 3);
        match &outcome {
            Err(_) => {}
            Ok((d, n)) => assert!(*n < size || d == &digest, "client {i} received a complete body with the wrong digest: {outcome:?}"),
        }
    }

    let survivor = (owner + 1) % 3;
    let takeover = Instant::now();
    let got = hash_download(reqwest::get(apis[survivor].blob_url(&digest)).await.unwrap()).await;
    println!("taken over and served in {:.1} s", takeover.elapsed().as_secs_f64());
    assert_eq!(got, Ok((digest.clone(), size)), "a survivor took over:\n{}", replicas[survivor].log());
    wait_for("the artifact", Duration::from_secs(30), async || apis[survivor].artifacts_of(&digest).await == 1).await;
    wait_for("no lease left", Duration::from_secs(10), async || lease_of(&db, &digest).await.is_none()).await;
    assert_eq!(upstream.blob_gets(&digest), 2, "the survivor downloaded it again, once");
    let other = (owner + 2) % 3;
    let got = hash_download(reqwest::get(apis[other].blob_url(&digest)).await.unwrap()).await;
    assert_eq!(got, Ok((digest.clone(), size)));
    assert_eq!(apis[other].artifacts_of(&digest).await, 1);
    upstream.stop().await;
}

/// The internal endpoint opens only with the replicas' secret: no credentials, the admin's
/// Basic credentials, an admin token or a wrong secret all get the same bare 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_internal_endpoint_takes_only_the_replicas_secret() {
    let layer = blob_of(4 * 1024 * 1024, 3);
    let (mut state, digest) = fault_image(layer.clone());
    state.blobs.get_mut(&digest).unwrap().1 = BlobBehaviour::StallAfter(2 * 1024 * 1024, Duration::from_secs(2));
    let upstream = FaultUpstream::start(state).await;
    let s = TestServer::start(Backend::Sqlite).await;
    let api = Api::new(&s.base);
    api.serve_on_demand(&upstream.url()).await;
    let internal = format!("{}/internal/v1/downloads/{digest}", s.base);
    let secret = s.state.fetcher.peer_secret(&s.state).await.unwrap().to_string();
    assert_eq!(secret.len(), 64);

    // Nothing in flight: the secret tells "none" apart; nothing else does.
    let resp = s.client.get(&internal).header(SECRET_HEADER, &secret).send().await.unwrap();
    assert_eq!((resp.status(), resp.headers().get(DOWNLOAD_HEADER).map(|v| v.to_str().unwrap().to_string())), (StatusCode::NOT_FOUND, Some("none".into())));

    // A download in flight.
    let full = tokio::spawn(hash_download(reqwest::get(api.blob_url(&digest)).await.unwrap()));
    wait_for("the download", Duration::from_secs(10), async || upstream.blob_gets(&digest) == 1).await;
    let token: Value = s
        .client
        .get(format!("{}/token?service=pulpish&scope=repository:fault/app:pull,push", s.base))
        .basic_auth("admin", Some(PASSWORD))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["token"].as_str().unwrap().to_string();
    let refusals = [
        s.client.get(&internal),
        s.client.get(&internal).basic_auth("admin", Some(PASSWORD)),
        s.client.get(&internal).bearer_auth(&token),
        s.client.get(&internal).header(SECRET_HEADER, "0".repeat(64)),
        s.client.get(&internal).header(SECRET_HEADER, &secret[..63]),
        s.client.get(&internal).header(SECRET_HEADER, format!("{secret}0")),
        s.client.get(&internal).header(SECRET_HEADER, PASSWORD).basic_auth("admin", Some(PASSWORD)),
    ];
    for (i, req) in refusals.into_iter().enumerate() {
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "refusal {i}");
        assert!(resp.headers().get(DOWNLOAD_HEADER).is_none(), "refusal {i} gives no hint");
        assert!(resp.bytes().await.unwrap().is_empty(), "refusal {i} has no body");
    }

    // The secret opens it: a range of the download in flight, as a local reader gets it.
    let resp = s.client.get(&internal).header(SECRET_HEADER, &secret).header("range", "bytes=10-19").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(&resp.bytes().await.unwrap()[..], &layer[10..20]);
    assert_eq!(full.await.unwrap(), Ok((digest.clone(), layer.len() as u64)));

    // Stored: the marker sends the caller to the database.
    wait_for("the artifact", Duration::from_secs(10), async || api.artifacts_of(&digest).await == 1).await;
    wait_for("the download to leave", Duration::from_secs(10), async || {
        let resp = s.client.get(&internal).header(SECRET_HEADER, &secret).send().await.unwrap();
        resp.status() == StatusCode::NOT_FOUND && resp.headers().get(DOWNLOAD_HEADER).is_some_and(|v| v == "stored")
    })
    .await;
    // SQLite: the single replica always holds the lease, and gives it back.
    assert!(lease_of(&s.state.db, &digest).await.is_none());
    assert_eq!(s.state.metrics.downloads_started.get(), 1);
    assert_eq!(s.state.metrics.relays_started.get(), 0);
    upstream.stop().await;
}

/// The lease: the first owner wins; another owner cannot take a live lease; the owner renews
/// it; a lapsed lease goes to the next owner who asks; only its owner releases it.
async fn lease_acquire_renew_expire_release(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let db = pulpish_server::db::Db::connect(&support::fresh_database(backend, dir.path())).unwrap();
    db.migrate().unwrap();
    let c = &mut db.get().unwrap();
    let t0 = chrono::Utc::now().naive_utc().with_nanosecond(0).unwrap();
    let at = |s: i64| t0 + chrono::Duration::seconds(s);
    let (d, other) = ("sha256:aa", "sha256:bb");

    let held = lease::acquire(c, d, "a", "http://a", at(0), at(10)).unwrap();
    assert_eq!(held, lease::Lease { digest: d.into(), owner: "a".into(), address: "http://a".into(), expires_at: at(10) });
    // Live: b learns who holds it, and changes nothing.
    let seen = lease::acquire(c, d, "b", "http://b", at(5), at(15)).unwrap();
    assert_eq!(seen, held);
    // Another digest is another lease.
    assert_eq!(lease::acquire(c, other, "b", "http://b", at(5), at(15)).unwrap().owner, "b");
    // The owner renews.
    assert_eq!(lease::acquire(c, d, "a", "http://a", at(8), at(18)).unwrap().expires_at, at(18));
    assert_eq!(lease::acquire(c, d, "b", "http://b", at(17), at(27)).unwrap().owner, "a", "still live at 17");
    // Lapsed: the next asker takes it over.
    let taken = lease::acquire(c, d, "b", "http://b", at(19), at(29)).unwrap();
    assert_eq!((taken.owner.as_str(), taken.address.as_str(), taken.expires_at), ("b", "http://b", at(29)));
    // Only the owner releases.
    assert!(!lease::release(c, d, "a").unwrap());
    assert_eq!(lease::find(c, d).unwrap().unwrap().owner, "b");
    assert!(lease::release(c, d, "b").unwrap());
    assert!(lease::find(c, d).unwrap().is_none());
    assert!(!lease::release(c, d, "b").unwrap());
    // Released: free for anyone at once.
    assert_eq!(lease::acquire(c, d, "a", "http://a", at(20), at(30)).unwrap().owner, "a");
    assert_eq!(lease::find(c, other).unwrap().unwrap().owner, "b", "the other digest's lease was not touched");
    // The sweep drops only leases that lapsed before its cut-off.
    assert_eq!(lease::drop_lapsed(c, at(16)).unwrap(), 1);
    assert!(lease::find(c, other).unwrap().is_none());
    assert_eq!(lease::drop_lapsed(c, at(30)).unwrap(), 0, "a lease expiring at 30 has not lapsed before 30");
    assert!(lease::find(c, d).unwrap().is_some());
}

on_both_backends!(lease_acquire_renew_expire_release);
