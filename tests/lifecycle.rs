//! pulpish run as a service: the probes an orchestrator asks (`/livez`, `/readyz`), and the
//! graceful shutdown of a real `pulpish serve` process on SIGTERM: requests and downloads in
//! flight finish within `--shutdown-timeout`, new connections are refused, a task still running
//! at the deadline goes back to the queue for another replica, a download still running then is
//! cut before its last byte and its lease released; the process exits 0. With the database
//! gone it still exits in bounded time, and a second signal ends it at once.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use diesel::prelude::*;
use futures_util::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::Digest;
use support::fault::{fault_image, sha256, BlobBehaviour, FaultState, FaultUpstream};
use support::replica::{call, wait_task, Replica};
use support::{Backend, TestServer};

/// Hang guard for anything a test waits on.
const PATIENCE: Duration = Duration::from_secs(90);
const MIB: usize = 1024 * 1024;

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed).wrapping_add((i >> 16) as u8)).collect()
}

/// An on-demand remote on the fault upstream, a repository synced from it and a distribution
/// at `name`.
async fn distribute(base: &str, upstream: &str, name: &str) {
    let (status, remote) = call(base, Method::POST, "remotes/container/container/", Some(json!({"name": name, "url": upstream, "upstream_name": "fault/app", "policy": "on_demand"}))).await;
    assert_eq!(status, StatusCode::CREATED, "{remote}");
    let (_, repo) = call(base, Method::POST, "repositories/container/container/", Some(json!({"name": name, "remote": remote["pulp_href"]}))).await;
    let (_, t) = call(base, Method::POST, &format!("{}sync/", repo["pulp_href"].as_str().unwrap()), Some(json!({}))).await;
    assert_eq!(wait_task(base, t["task"].as_str().unwrap(), PATIENCE).await["state"], "completed");
    let (_, t) = call(base, Method::POST, "distributions/container/container/", Some(json!({"name": name, "base_path": name, "repository": repo["pulp_href"]}))).await;
    assert_eq!(wait_task(base, t["task"].as_str().unwrap(), PATIENCE).await["state"], "completed");
}

/// One image whose two layers are `big` (served at full speed) and `cold` (as `cold_pace`).
fn two_layer_image(big: Vec<u8>, cold: Vec<u8>, cold_pace: Duration) -> (FaultState, String, String) {
    let (mut state, big_digest) = fault_image(big);
    let cold_digest = sha256(&cold);
    let (manifest, media_type) = state.tags.remove("latest").unwrap();
    let mut manifest: Value = serde_json::from_slice(&manifest).unwrap();
    manifest["layers"].as_array_mut().unwrap().push(json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": cold_digest, "size": cold.len()}));
    state.tags.insert("latest".into(), (serde_json::to_vec(&manifest).unwrap(), media_type));
    state.blobs.insert(cold_digest.clone(), (cold.into(), BlobBehaviour::Paced(cold_pace)));
    (state, big_digest, cold_digest)
}

/// What a client read of a blob: its bytes' digest and count, and whether the body ended in
/// an error (the connection was cut).
struct Read {
    digest: String,
    len: usize,
    cut: bool,
}

/// GETs `url`, reading at most `per_second` bytes a second (0: as fast as it comes); `started`
/// fires once `after` bytes have arrived.
async fn read_blob(url: String, per_second: usize, after: usize, started: tokio::sync::oneshot::Sender<()>) -> Read {
    let resp = reqwest::get(url).await.expect("GET blob");
    assert_eq!(resp.status(), StatusCode::OK);
    let (mut hasher, mut len, mut started, begun) = (sha2::Sha256::new(), 0usize, Some(started), Instant::now());
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        let Ok(chunk) = chunk else {
            return Read { digest: format!("sha256:{:x}", hasher.finalize()), len, cut: true };
        };
        hasher.update(&chunk);
        len += chunk.len();
        if len >= after {
            if let Some(s) = started.take() {
                let _ = s.send(());
            }
        }
        if per_second > 0 {
            let due = Duration::from_secs_f64(len as f64 / per_second as f64);
            if let Some(wait) = due.checked_sub(begun.elapsed()) {
                tokio::time::sleep(wait).await;
            }
        }
    }
    Read { digest: format!("sha256:{:x}", hasher.finalize()), len, cut: false }
}

/// The database of a test: a SQLite file in `dir`, or a fresh PostgreSQL database.
fn database(backend: Backend, dir: &Path) -> String {
    support::fresh_database(backend, dir)
}

/// `pulpish serve` with JSON logs and `--shutdown-timeout seconds`.
async fn replica(database_url: &str, shutdown_timeout: u64) -> Replica {
    Replica::start(database_url, &["--log-format".into(), "json".into(), "--shutdown-timeout".into(), shutdown_timeout.to_string()]).await
}

/// The fields of the log line whose message is `message`.
fn logged(replica: &Replica, message: &str) -> Option<Value> {
    replica.log().lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).find(|v| v["fields"]["message"] == message).map(|v| v["fields"].clone())
}

/// After SIGTERM: waits for the start of shutdown, then until a new connection is refused.
async fn assert_new_connections_refused(replica: &Replica) {
    replica.wait_log("shutting down: refusing new connections", PATIENCE).await;
    let start = Instant::now();
    loop {
        match tokio::net::TcpStream::connect(&replica.addr).await {
            // A connection that reached the listener's queue as it closed is reset, not served.
            Err(e) if matches!(e.kind(), std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::ConnectionReset) => return,
            Err(e) => panic!("connecting during shutdown: {e}"),
            // The listener closes right after the log line.
            Ok(_) => assert!(start.elapsed() < Duration::from_secs(10), "a new connection was still accepted during shutdown"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Ends with SIGTERM; the process must exit 0 and log what it gave up on.
async fn terminate(replica: Replica) -> Value {
    replica.terminate();
    shut_down(replica).await
}

/// Waits for the exit that a SIGTERM sent before began (a second one would cut it short): 0,
/// with the end-of-shutdown line and what it gave up on.
async fn shut_down(mut replica: Replica) -> Value {
    let status = replica.wait_exit(PATIENCE).await;
    assert!(status.success(), "pulpish exited with {status}:\n{}", replica.log());
    logged(&replica, "shutdown complete").unwrap_or_else(|| panic!("no end-of-shutdown line:\n{}", replica.log()))
}

fn connect(url: &str) -> pulpish_server::db::Db {
    pulpish_server::db::Db::connect(url).expect("open the test's database")
}

fn lease_of(url: &str, digest: &str) -> Option<pulpish_server::models::lease::Lease> {
    pulpish_server::models::lease::find(&mut connect(url).get().unwrap(), digest).unwrap()
}

on_databases!(
    sigterm_lets_a_warm_and_a_cold_pull_finish,
    a_download_running_at_the_deadline_is_cut_and_its_lease_released,
    a_task_running_at_the_deadline_goes_back_to_the_queue,
    a_task_running_at_sigterm_finishes_within_a_long_deadline,
    probes_answer_without_credentials_and_readyz_fails_once_shutdown_begins,
    a_second_sigterm_during_shutdown_exits_at_once,
);

/// A warm pull of a 256 MiB stored blob by a slow reader and a cold on-demand pull from a slow
/// upstream, both mid-stream at SIGTERM: both get every byte, right; new connections are
/// refused meanwhile; the cold blob is recorded and its lease gone; the process exits 0.
async fn sigterm_lets_a_warm_and_a_cold_pull_finish(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let db = database(backend, dir.path());
    let (big, cold) = (pattern(256 * MIB, 3), pattern(4 * MIB, 5));
    let (state, big_digest, cold_digest) = two_layer_image(big, cold, Duration::from_millis(40));
    let upstream = FaultUpstream::start(state).await;
    let r = replica(&db, 60).await;
    distribute(&r.base, &upstream.url(), "warm").await;

    // Pulled once, the big blob is stored: the next pull is warm.
    let (tx, _) = tokio::sync::oneshot::channel();
    let first = read_blob(format!("{}/v2/warm/blobs/{big_digest}", r.base), 0, 0, tx).await;
    assert_eq!((first.digest.as_str(), first.len, first.cut), (big_digest.as_str(), 256 * MIB, false));
    let start = Instant::now();
    while call(&r.base, Method::GET, "artifacts/", None).await.1["count"] != 1 {
        assert!(start.elapsed() < PATIENCE, "the pulled blob was never stored");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let (warm_started, warm_mid) = tokio::sync::oneshot::channel();
    let warm = tokio::spawn(read_blob(format!("{}/v2/warm/blobs/{big_digest}", r.base), 64 * MIB, 32 * MIB, warm_started));
    let (cold_started, cold_mid) = tokio::sync::oneshot::channel();
    let cold = tokio::spawn(read_blob(format!("{}/v2/warm/blobs/{cold_digest}", r.base), 0, 256 * 1024, cold_started));
    warm_mid.await.expect("the warm pull started");
    cold_mid.await.expect("the cold pull started");

    r.terminate();
    assert_new_connections_refused(&r).await;
    let (warm, cold) = (warm.await.unwrap(), cold.await.unwrap());
    assert_eq!((warm.digest.as_str(), warm.len, warm.cut), (big_digest.as_str(), 256 * MIB, false), "the warm pull got the whole blob");
    assert_eq!((cold.digest.as_str(), cold.len, cold.cut), (cold_digest.as_str(), 4 * MIB, false), "the cold pull got the whole blob");

    let end = shut_down(r).await;
    assert_eq!((end["tasks_handed_back"].as_u64(), end["downloads_cut"].as_u64()), (Some(0), Some(0)), "{end}");
    assert_eq!(upstream.blob_gets(&cold_digest), 1);
    assert_eq!(lease_of(&db, &cold_digest), None, "the cold download's lease is released");
    let cold_hex = cold_digest.trim_start_matches("sha256:").to_string();
    let stored: i64 = {
        use pulpish_server::db::schema::artifact;
        artifact::table.filter(artifact::sha256.eq(cold_hex)).count().get_result(&mut *connect(&db).get().unwrap()).unwrap()
    };
    assert_eq!(stored, 1, "the cold blob was recorded before the process exited");
}

/// A cold download that the shutdown deadline overtakes: its reader's body is cut before the
/// blob's end, the download's lease row is gone when the process has exited, and a replica
/// started next serves the blob whole.
async fn a_download_running_at_the_deadline_is_cut_and_its_lease_released(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let db = database(backend, dir.path());
    let layer = pattern(8 * MIB, 7);
    let (state, digest) = fault_image(layer);
    let upstream = FaultUpstream::start(state).await;
    // 128 chunks, 100 ms apart: far longer than the 1 s deadline.
    upstream.set_blob(&digest, BlobBehaviour::Paced(Duration::from_millis(100)));
    let r = replica(&db, 1).await;
    distribute(&r.base, &upstream.url(), "cut").await;

    let (started, mid) = tokio::sync::oneshot::channel();
    let reader = tokio::spawn(read_blob(format!("{}/v2/cut/blobs/{digest}", r.base), 0, 64 * 1024, started));
    mid.await.expect("the pull started");
    assert!(lease_of(&db, &digest).is_some(), "the running download holds the blob's lease");

    let end = terminate(r).await;
    let read = reader.await.unwrap();
    assert!(read.cut && read.len < 8 * MIB, "the reader was cut before the blob's end ({} bytes, cut: {})", read.len, read.cut);
    assert_eq!(end["downloads_cut"].as_u64(), Some(1), "{end}");
    assert_eq!(lease_of(&db, &digest), None, "the cut download's lease is released");

    upstream.set_blob(&digest, BlobBehaviour::Serve);
    let next = replica(&db, 1).await;
    let (tx, _) = tokio::sync::oneshot::channel();
    let read = read_blob(format!("{}/v2/cut/blobs/{digest}", next.base), 0, 0, tx).await;
    assert_eq!((read.digest.as_str(), read.len, read.cut), (digest.as_str(), 8 * MIB, false));
}

/// Enqueues a task that sleeps `seconds` holding a resource, straight into the database (as a
/// request to any replica would); its id.
fn sleep_task(database_url: &str, seconds: f64) -> String {
    let mut conn = connect(database_url).get().unwrap();
    let resources = vec!["test:lifecycle".to_string()];
    pulpish_server::models::task::enqueue(&mut conn, pulpish_server::tasks::DEBUG_SLEEP, &json!({ "seconds": seconds }), &resources, "lifecycle-test").unwrap().id
}

async fn wait_running(base: &str, href: &str) {
    let start = Instant::now();
    while call(base, Method::GET, href, None).await.1["state"] != "running" {
        assert!(start.elapsed() < PATIENCE, "task {href} never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A task longer than the deadline: at the deadline it is handed back, `waiting` with no worker,
/// no error and its resource free, and a replica started on the same database completes it.
async fn a_task_running_at_the_deadline_goes_back_to_the_queue(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let db = database(backend, dir.path());
    let first = replica(&db, 1).await;
    let id = sleep_task(&db, 6.0);
    let href = format!("/pulp/api/v3/tasks/{id}/");
    wait_running(&first.base, &href).await;

    let end = terminate(first).await;
    assert_eq!(end["tasks_handed_back"].as_u64(), Some(1), "{end}");
    let mut conn = connect(&db).get().unwrap();
    let t = pulpish_server::models::task::find(&mut conn, &id).unwrap().unwrap();
    assert_eq!((t.state.as_str(), t.worker.as_deref(), t.error.as_deref()), ("waiting", None, None), "handed back, not failed");
    let held: i64 = {
        use pulpish_server::db::schema::reserved_resource;
        reserved_resource::table.filter(reserved_resource::task_id.eq(&id)).count().get_result(&mut *conn).unwrap()
    };
    assert_eq!(held, 0, "the task's resource is free");
    drop(conn);

    let second = replica(&db, 30).await;
    let t = wait_task(&second.base, &href, PATIENCE).await;
    assert_eq!(t["state"], "completed", "{t}");
    assert!(t["worker"].as_str().unwrap().contains(&format!(":{}:", second.pid())), "the second replica ran it: {t}");
    terminate(second).await;
}

/// A task shorter than the deadline finishes before the process exits.
async fn a_task_running_at_sigterm_finishes_within_a_long_deadline(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let db = database(backend, dir.path());
    let r = replica(&db, 60).await;
    let id = sleep_task(&db, 3.0);
    wait_running(&r.base, &format!("/pulp/api/v3/tasks/{id}/")).await;

    let end = terminate(r).await;
    assert_eq!(end["tasks_handed_back"].as_u64(), Some(0), "{end}");
    let t = pulpish_server::models::task::find(&mut connect(&db).get().unwrap(), &id).unwrap().unwrap();
    assert_eq!(t.state, "completed", "{:?}", t.error);
}

/// A second SIGTERM while shutdown waits for a long task (its deadline minutes away) ends the
/// process at once: exit code 143 (128 + SIGTERM, as shells report a death by that signal) and
/// one log line saying so, no end-of-shutdown line.
async fn a_second_sigterm_during_shutdown_exits_at_once(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let db = database(backend, dir.path());
    let mut r = replica(&db, 600).await;
    let id = sleep_task(&db, 300.0);
    wait_running(&r.base, &format!("/pulp/api/v3/tasks/{id}/")).await;

    r.terminate();
    r.wait_log("shutting down: refusing new connections", PATIENCE).await;
    r.terminate();
    // Far less than the task or the deadline: only the second signal ends the process by then.
    let status = r.wait_exit(PATIENCE).await;
    assert_eq!(status.code(), Some(143), "{}", r.log());
    let line = logged(&r, "second signal during shutdown: exiting at once, cutting requests, downloads and tasks still running")
        .unwrap_or_else(|| panic!("no line about the second signal:\n{}", r.log()));
    assert_eq!(line["signal"], "SIGTERM");
    assert_eq!(logged(&r, "shutdown complete"), None, "the shutdown did not run to its end");
}

/// With PostgreSQL stopped under it, a replica told to stop still exits 0 within
/// `--shutdown-timeout` + 20 s as documented (the hang guard allows 25 s), saying it left the
/// running task to the orphan check; the task, still `running` with the gone worker, is failed
/// by the next replica once the database is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_in_time_while_the_database_is_down() {
    let cluster = support::postgres::PrivateCluster::start();
    let db = cluster.create_database();
    let mut r = replica(&db, 2).await;
    let id = sleep_task(&db, 300.0);
    let href = format!("/pulp/api/v3/tasks/{id}/");
    wait_running(&r.base, &href).await;

    cluster.stop();
    r.terminate();
    let status = r.wait_exit(Duration::from_secs(2 + 25)).await;
    assert!(status.success(), "pulpish exited with {status}:\n{}", r.log());
    assert!(logged(&r, "shutdown complete").is_some(), "no end-of-shutdown line:\n{}", r.log());
    assert!(r.log().contains("the orphan check of a running replica will fail it"), "the task left behind is not mentioned:\n{}", r.log());

    cluster.restart();
    let t = pulpish_server::models::task::find(&mut connect(&db).get().unwrap(), &id).unwrap().unwrap();
    assert_eq!(t.state, "running", "{t:?}");
    assert!(t.worker.as_deref().is_some_and(|w| w.contains(&format!(":{}:", r.pid()))), "{t:?}");
    let next = replica(&db, 5).await;
    let t = wait_task(&next.base, &href, PATIENCE).await;
    assert_eq!(t["state"], "failed", "the orphan check failed it: {t}");
    terminate(next).await;
}

/// `/livez` and `/readyz` need no credentials and name their checks; once shutdown has begun
/// `/readyz` answers 503 (the listener closes at the same moment, so this is what a request
/// already on its way sees).
async fn probes_answer_without_credentials_and_readyz_fails_once_shutdown_begins(backend: Backend) {
    let s = TestServer::start(backend).await;
    let live = reqwest::get(format!("{}/livez", s.base)).await.unwrap();
    assert_eq!(live.status(), StatusCode::OK);
    assert_eq!(live.json::<Value>().await.unwrap(), json!({"status": "live"}));
    let ready = reqwest::get(format!("{}/readyz", s.base)).await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    assert_eq!(ready.json::<Value>().await.unwrap(), json!({"status": "ready", "checks": {"database": "ok", "storage": "ok", "workers": "ok"}}));

    // A store that takes no writes: the artifact directory is a file now.
    let artifacts = s.state.config.data_dir.join("artifact");
    let aside = s.state.config.data_dir.join("artifact.aside");
    std::fs::rename(&artifacts, &aside).unwrap();
    std::fs::write(&artifacts, b"not a directory").unwrap();
    let broken = readyz_of(&s.base, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(broken, json!({"status": "not ready", "checks": {"database": "ok", "storage": "not writable", "workers": "ok"}}));
    std::fs::remove_file(&artifacts).unwrap();
    std::fs::rename(&aside, &artifacts).unwrap();
    readyz_of(&s.base, StatusCode::OK).await;

    s.state.readiness.begin_shutdown();
    let ready = reqwest::get(format!("{}/readyz", s.base)).await.unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.json::<Value>().await.unwrap(), json!({"status": "not ready", "checks": {"shutdown": "in progress"}}));
    assert_eq!(reqwest::get(format!("{}/livez", s.base)).await.unwrap().status(), StatusCode::OK, "still live");
}

/// `/readyz` goes 503 naming the database when PostgreSQL stops, and back to 200 when it is
/// back, without restarting pulpish; `/livez` stays 200 throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_the_database() {
    let cluster = support::postgres::PrivateCluster::start();
    let db = cluster.create_database();
    let r = replica(&db, 5).await;
    assert_eq!(readyz_of(&r.base, StatusCode::OK).await["checks"]["database"], "ok");

    cluster.stop();
    let down = readyz_of(&r.base, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(down["status"], "not ready", "{down}");
    assert_ne!(down["checks"]["database"], "ok", "{down}");
    assert_eq!((down["checks"]["storage"].as_str(), down["checks"]["workers"].as_str()), (Some("ok"), Some("ok")), "{down}");
    assert!(!down.to_string().contains(&cluster_dir(&db)), "the body names no host or socket: {down}");
    assert_eq!(reqwest::get(format!("{}/livez", r.base)).await.unwrap().status(), StatusCode::OK, "live while the database is down");

    cluster.restart();
    let up = readyz_of(&r.base, StatusCode::OK).await;
    assert_eq!(up, json!({"status": "ready", "checks": {"database": "ok", "storage": "ok", "workers": "ok"}}));
    terminate(r).await;
}

/// Polls `/readyz` until it answers `want` (its answers are reused for a few seconds); its body.
async fn readyz_of(base: &str, want: StatusCode) -> Value {
    let start = Instant::now();
    loop {
        let resp = reqwest::get(format!("{base}/readyz")).await.unwrap();
        let (status, body) = (resp.status(), resp.json::<Value>().await.unwrap());
        if status == want {
            return body;
        }
        assert!(start.elapsed() < PATIENCE, "/readyz never answered {want}: {status} {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The socket directory in a cluster URL (`...?host=DIR&user=...`).
fn cluster_dir(url: &str) -> String {
    url.split("host=").nth(1).and_then(|s| s.split('&').next()).unwrap_or_default().to_string()
}
