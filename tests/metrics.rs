//! What an operator watching pulpish sees: `/metrics` as Prometheus reads it (and who may read
//! it), counters that move with a cold on-demand pull, request ids in response headers, task
//! rows and JSON logs, and no ERROR line for a client probing TLS on the plain-HTTP port.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use support::fault::{fault_image, sha256, BlobBehaviour, FaultUpstream};
use support::replica::Replica;
use support::{Backend, TestServer, PASSWORD};

const BLOB_ROUTE: &str = "/v2/{name:.+}/blobs/{digest}";

/// The reference parser of the text exposition (Debian's python3-prometheus-client, which
/// scripts/test.sh installs): it refuses any line it cannot read.
const PARSER: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
families = [{"name": f.name, "type": f.type, "help": f.documentation,
             "samples": [{"name": s.name, "labels": s.labels, "value": s.value} for s in f.samples]}
            for f in text_string_to_metric_families(sys.stdin.read())]
json.dump(families, sys.stdout)
"#;

struct Sample {
    name: String,
    labels: std::collections::HashMap<String, String>,
    value: f64,
}

/// `/metrics` as Prometheus reads it.
async fn scrape(s: &TestServer) -> Vec<Sample> {
    let resp = s.client.get(format!("{}/metrics", s.base)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "text/plain; version=0.0.4");
    parse(&resp.text().await.unwrap())
}

/// Parses the exposition; every family is pulpish's, typed, with its HELP text.
fn parse(text: &str) -> Vec<Sample> {
    use std::io::Write;
    let mut python = Command::new("/usr/bin/python3")
        .args(["-c", PARSER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("/usr/bin/python3 (apt-get install python3-prometheus-client)");
    python.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = python.wait_with_output().unwrap();
    assert!(out.status.success(), "the exposition does not parse (or python3-prometheus-client is missing):\n{}\n{text}", String::from_utf8_lossy(&out.stderr));
    let families: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert!(!families.is_empty());
    let mut samples = Vec::new();
    for f in families {
        let name = f["name"].as_str().unwrap();
        assert!(name.starts_with("pulpish_"), "{name} is not prefixed pulpish_");
        assert!(f["help"].as_str().is_some_and(|h| !h.is_empty()), "{name} has no HELP");
        assert_ne!(f["type"], "unknown", "{name} has no TYPE");
        for sample in f["samples"].as_array().unwrap() {
            samples.push(Sample {
                name: sample["name"].as_str().unwrap().to_string(),
                labels: serde_json::from_value(sample["labels"].clone()).unwrap(),
                value: sample["value"].as_f64().unwrap(),
            });
        }
    }
    samples
}

/// The sum of the samples named `metric` whose labels include `labels` (0 when there is none).
fn value(scrape: &[Sample], metric: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .iter()
        .filter(|s| s.name == metric && labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v)))
        .map(|s| s.value)
        .sum()
}

fn has(scrape: &[Sample], metric: &str) -> bool {
    scrape.iter().any(|s| s.name == metric)
}

/// Remote + on_demand repository + sync + distribution `name` over `url`; the sync task.
async fn serve_on_demand(s: &TestServer, url: &str, name: &str) -> serde_json::Value {
    let (status, remote) = s.post("remotes/container/container/", json!({"name": name, "url": url, "upstream_name": "fault/app", "policy": "on_demand"})).await;
    assert_eq!(status, StatusCode::CREATED, "{remote}");
    let (_, repo) = s.post("repositories/container/container/", json!({"name": name, "remote": remote["pulp_href"]})).await;
    let task = s.completed(s.post(&format!("{}sync/", repo["pulp_href"].as_str().unwrap()), json!({})).await).await;
    s.completed(s.post("distributions/container/container/", json!({"name": name, "base_path": name, "repository": repo["pulp_href"]})).await).await;
    task
}

/// Scrapes until `done` holds (the request counters move when a response body has been sent,
/// a moment after the client read its last byte); panics after a generous while.
async fn scrape_until(s: &TestServer, what: &str, done: impl Fn(&[Sample]) -> bool) -> Vec<Sample> {
    let start = Instant::now();
    loop {
        let scraped = scrape(s).await;
        if done(&scraped) {
            return scraped;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "metrics never showed {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Four clients pull one blob that is not stored yet, at once: one download from the remote,
/// three readers joining it, the blob's bytes received once and sent four times; then a warm
/// GET is a cache hit. The sync that came before is counted as a finished task.
async fn a_cold_pull_by_four_clients_moves_the_download_counters(backend: Backend) {
    let layer = (0..3 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect::<Vec<u8>>();
    let size = layer.len() as f64;
    let (state, digest) = fault_image(layer);
    let upstream = FaultUpstream::start(state).await;
    // The remote pauses mid-blob, so all four clients find the download in flight.
    upstream.set_blob(&digest, BlobBehaviour::StallAfter(1024 * 1024, Duration::from_millis(1500)));
    let s = TestServer::start(backend).await;
    let sync = serve_on_demand(&s, &upstream.url(), "cold").await;

    let before = scrape(&s).await;
    let sync_name = sync["name"].as_str().unwrap();
    assert!(value(&before, "pulpish_tasks_finished_total", &[("name", sync_name), ("state", "completed")]) >= 1.0);
    assert!(value(&before, "pulpish_task_duration_seconds_count", &[("name", sync_name)]) >= 1.0);
    for cause in ["timeout", "unreachable", "status", "integrity", "storage", "shutdown"] {
        assert!(before.iter().any(|x| x.name == "pulpish_ondemand_downloads_failed_total" && x.labels["cause"] == cause), "cause {cause} exported");
    }

    let url = format!("{}/v2/cold/blobs/{digest}", s.base);
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (client, url, digest) = (s.client.clone(), url.clone(), digest.clone());
            tokio::spawn(async move {
                let resp = client.get(&url).send().await.unwrap();
                assert_eq!(resp.status(), StatusCode::OK);
                assert_eq!(sha256(&resp.bytes().await.unwrap()), digest);
            })
        })
        .collect();
    for c in clients {
        c.await.unwrap();
    }
    let blob_200 = [("route", BLOB_ROUTE), ("method", "GET"), ("status", "200")];
    let base_requests = value(&before, "pulpish_http_requests_total", &blob_200);
    // The download ends (recorded, out of flight) just after its readers had their last byte.
    let after = scrape_until(&s, "the four blob GETs and the download ended", |m| {
        value(m, "pulpish_http_requests_total", &blob_200) == base_requests + 4.0 && value(m, "pulpish_ondemand_downloads_in_flight", &[]) == 0.0
    })
    .await;
    let delta = |metric: &str| value(&after, metric, &[]) - value(&before, metric, &[]);
    assert_eq!(upstream.blob_gets(&digest), 1, "one GET to the remote");
    assert_eq!(delta("pulpish_ondemand_downloads_started_total"), 1.0);
    assert_eq!(delta("pulpish_ondemand_readers_joined_total"), 3.0, "three clients joined the first one's download");
    assert_eq!(delta("pulpish_ondemand_upstream_bytes_total"), size, "the blob came from the remote once");
    assert_eq!(delta("pulpish_ondemand_served_bytes_total"), 4.0 * size, "and went to each of the four clients");
    assert_eq!(delta("pulpish_ondemand_downloads_failed_total"), 0.0);
    assert_eq!(delta("pulpish_blob_cache_misses_total"), 4.0);
    assert_eq!(delta("pulpish_blob_cache_hits_total"), 0.0);
    assert!(value(&after, "pulpish_http_request_duration_seconds_count", &[("route", BLOB_ROUTE), ("method", "GET")]) >= 4.0);

    // Stored now: a warm GET is a hit and downloads nothing.
    let resp = s.client.get(&url).send().await.unwrap();
    assert_eq!(sha256(&resp.bytes().await.unwrap()), digest);
    let warm = scrape_until(&s, "the warm GET", |m| value(m, "pulpish_http_requests_total", &blob_200) == base_requests + 5.0).await;
    assert_eq!(value(&warm, "pulpish_blob_cache_hits_total", &[]) - value(&after, "pulpish_blob_cache_hits_total", &[]), 1.0);
    assert_eq!(value(&warm, "pulpish_ondemand_downloads_started_total", &[]), value(&after, "pulpish_ondemand_downloads_started_total", &[]));
    assert_eq!(value(&warm, "pulpish_ondemand_served_bytes_total", &[]), value(&after, "pulpish_ondemand_served_bytes_total", &[]));
    assert_eq!(upstream.blob_gets(&digest), 1);

    // A path no route matches is counted under one label, not under its own path.
    let resp = s.client.get(format!("{}/no/such/path/{}", s.base, uuid::Uuid::new_v4())).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let unmatched = [("route", "unmatched"), ("method", "GET"), ("status", "404")];
    scrape_until(&s, "the unmatched request", |m| value(m, "pulpish_http_requests_total", &unmatched) >= 1.0).await;
    assert!(!scrape(&s).await.iter().any(|x| x.labels.get("route").is_some_and(|r| r.contains("no/such"))));
}

/// Failed downloads from a remote are counted by cause: wrong bytes are `integrity`, an error
/// status from the remote is `status`; nothing is left in flight.
async fn failed_downloads_are_counted_by_cause(backend: Backend) {
    let (state, layer) = fault_image((0..200_000u32).map(|i| (i % 13) as u8).collect());
    let config = state.blobs.keys().find(|d| **d != layer).unwrap().clone();
    let upstream = FaultUpstream::start(state).await;
    let s = TestServer::start(backend).await;
    serve_on_demand(&s, &upstream.url(), "failing").await;
    upstream.set_blob(&layer, BlobBehaviour::WrongBytes);
    upstream.set_blob(&config, BlobBehaviour::Status(404));

    let cut = s.client.get(format!("{}/v2/failing/blobs/{layer}", s.base)).send().await.unwrap();
    assert!(cut.bytes().await.is_err(), "a blob whose bytes are wrong is cut before its end");
    let missing = s.client.get(format!("{}/v2/failing/blobs/{config}", s.base)).send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);

    let failed = |cause| move |m: &[Sample]| value(m, "pulpish_ondemand_downloads_failed_total", &[("cause", cause)]);
    let after = scrape_until(&s, "two failed downloads", |m| failed("integrity")(m) == 1.0 && failed("status")(m) == 1.0).await;
    assert_eq!(value(&after, "pulpish_ondemand_downloads_failed_total", &[]), 2.0);
    assert_eq!(value(&after, "pulpish_ondemand_downloads_started_total", &[]), 2.0);
    assert_eq!(value(&after, "pulpish_ondemand_downloads_in_flight", &[]), 0.0);
}

/// Gauges read when scraped: upload sessions open and tasks waiting (from the database), tasks
/// running on this replica, the database pool's connections.
async fn scrape_time_gauges_follow_the_database(backend: Backend) {
    let s = TestServer::start(backend).await;
    let first = scrape(&s).await;
    assert_eq!(value(&first, "pulpish_upload_sessions_open", &[]), 0.0);
    let pool = |state| value(&first, "pulpish_db_pool_connections", &[("state", state)]);
    assert!(pool("in_use") + pool("idle") >= 1.0);
    assert!(pool("max") >= pool("in_use") + pool("idle") && pool("max") >= 1.0, "the pool's size is exported");

    let upload = s.client.post(format!("{}/v2/gauges/app/blobs/uploads/", s.base)).basic_auth("admin", Some(PASSWORD)).send().await.unwrap();
    assert_eq!(upload.status(), StatusCode::ACCEPTED);
    let location = upload.headers()["location"].to_str().unwrap().to_string();
    // The counts read from the database are reused for a moment: they follow within seconds.
    let uploads = |n: f64| move |m: &[Sample]| value(m, "pulpish_upload_sessions_open", &[]) == n;
    scrape_until(&s, "the upload session", uploads(1.0)).await;
    let cancel = s.client.delete(format!("{}{location}", s.base)).basic_auth("admin", Some(PASSWORD)).send().await.unwrap();
    assert_eq!(cancel.status(), StatusCode::NO_CONTENT);
    scrape_until(&s, "the upload session cancelled", uploads(0.0)).await;

    // One task holds the resource; the second waits for it.
    let holder = support::sleep_task(&s, 3.0, &["gauges"]).await;
    let waiter = support::sleep_task(&s, 0.0, &["gauges"]).await;
    let start = Instant::now();
    while s.get(&holder).await.1["state"] != "running" {
        assert!(start.elapsed() < Duration::from_secs(20), "the first task never ran");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let busy = scrape_until(&s, "the waiting task", |m| value(m, "pulpish_tasks_waiting", &[]) == 1.0).await;
    assert_eq!(value(&busy, "pulpish_tasks_running", &[]), 1.0);
    assert_eq!(s.wait_task(&waiter).await["state"], "completed");
    let idle = scrape_until(&s, "both tasks finished, none waiting", |m| {
        value(m, "pulpish_tasks_finished_total", &[("name", "pulpish.debug.sleep")]) == 2.0 && value(m, "pulpish_tasks_waiting", &[]) == 0.0
    })
    .await;
    assert_eq!(value(&idle, "pulpish_tasks_running", &[]), 0.0);
}

/// `waves` times twelve scrapes at once; each answers within a generous hang guard.
async fn scrape_in_waves(s: &TestServer, waves: usize) -> Vec<Vec<Sample>> {
    let mut scraped = Vec::new();
    for _ in 0..waves {
        let wave = futures_util::future::join_all((0..12).map(|_| scrape(s)));
        scraped.extend(tokio::time::timeout(Duration::from_secs(30), wave).await.expect("/metrics answers while the database does not"));
    }
    scraped
}

/// `/metrics` is public by default, so scrapes must not pile queries onto the database nor
/// wait with it. While a transaction locks the task table, 24 scrapes all answer (the gauges
/// keep their last value, each scrape counts an error) and PostgreSQL holds one count query
/// waiting for the lock, not 24; once the lock goes, the gauges move. With the database
/// stopped, `/metrics` still answers. (PostgreSQL only: the lock and `pg_stat_activity` are
/// what make the queries visible.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrapes_share_one_database_read_and_do_not_wait_for_it() {
    use diesel::connection::SimpleConnection;
    use diesel::Connection;
    let cluster = support::postgres::PrivateCluster::start();
    let url = cluster.create_database();
    // No workers: nothing but the scrapes reads the task table.
    let s = TestServer::start_with(tempfile::tempdir().unwrap(), url.clone(), |c| c.workers = 0).await;
    let upload = s.client.post(format!("{}/v2/locked/app/blobs/uploads/", s.base)).basic_auth("admin", Some(PASSWORD)).send().await.unwrap();
    assert_eq!(upload.status(), StatusCode::ACCEPTED);

    let mut holder = diesel::PgConnection::establish(&url).unwrap();
    holder.batch_execute("BEGIN; LOCK TABLE task IN ACCESS EXCLUSIVE MODE").unwrap();
    let during = scrape_in_waves(&s, 2).await;
    assert!(during.iter().all(|m| value(m, "pulpish_upload_sessions_open", &[]) == 0.0), "the gauges keep their last value");
    #[derive(diesel::QueryableByName)]
    struct Waiting {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let waiting: Waiting = diesel::RunQueryDsl::get_result(
        diesel::sql_query("SELECT count(*) AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query ILIKE '%count(%'"),
        &mut holder,
    )
    .unwrap();
    assert_eq!(waiting.n, 1, "24 scrapes, one query waiting for the lock");

    holder.batch_execute("COMMIT").unwrap();
    let after = scrape_until(&s, "the upload count once the lock went", |m| value(m, "pulpish_upload_sessions_open", &[]) == 1.0).await;
    assert_eq!(value(&after, "pulpish_metrics_scrape_errors_total", &[]), 24.0, "every scrape without the counts was counted");

    cluster.stop();
    let errors = value(&after, "pulpish_metrics_scrape_errors_total", &[]);
    let start = Instant::now();
    while !scrape_in_waves(&s, 1).await.iter().any(|m| value(m, "pulpish_metrics_scrape_errors_total", &[]) > errors) {
        assert!(start.elapsed() < Duration::from_secs(30), "no scrape error with the database stopped");
    }
}

/// `--metrics public|admin|off`: anyone; the API's Basic credentials (401 without or with
/// wrong ones); nobody (404, like any unknown path).
async fn access_to_metrics_is_configurable(backend: Backend) {
    use pulpish_server::config::MetricsAccess;
    let public = TestServer::start_on(backend, |c| c.metrics = MetricsAccess::Public).await;
    parse(&public.client.get(format!("{}/metrics", public.base)).send().await.unwrap().text().await.unwrap());

    let admin = TestServer::start_on(backend, |c| c.metrics = MetricsAccess::Admin).await;
    let url = format!("{}/metrics", admin.base);
    let anonymous = admin.client.get(&url).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert!(anonymous.headers()["www-authenticate"].to_str().unwrap().starts_with("Basic"));
    let wrong = admin.client.get(&url).basic_auth("admin", Some("not-the-password")).send().await.unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let right = admin.client.get(&url).basic_auth("admin", Some(PASSWORD)).send().await.unwrap();
    assert_eq!(right.status(), StatusCode::OK);
    assert!(has(&parse(&right.text().await.unwrap()), "pulpish_http_requests_total"));

    let off = TestServer::start_on(backend, |c| c.metrics = MetricsAccess::Off).await;
    for creds in [None, Some(PASSWORD)] {
        let mut req = off.client.get(format!("{}/metrics", off.base));
        if let Some(p) = creds {
            req = req.basic_auth("admin", Some(p));
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        let body: serde_json::Value = resp.json().await.unwrap();
        assert!(body["detail"].is_string(), "{body}");
    }
}

fn is_generated_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The id a response carries, the same in both headers.
fn response_id(resp: &reqwest::Response) -> String {
    let correlation = resp.headers().get("correlation-id").expect("Correlation-ID in the response").to_str().unwrap();
    let x_request = resp.headers().get("x-request-id").expect("X-Request-ID in the response").to_str().unwrap();
    assert_eq!(correlation, x_request);
    correlation.to_string()
}

/// A client's id comes back in `Correlation-ID` and `X-Request-ID` (pulp-glue refuses a
/// response without it); one is generated when there is none or it is not sane; a task
/// dispatched by the request records it as its `logging_cid`.
async fn request_ids_are_echoed_generated_or_replaced(backend: Backend) {
    let s = TestServer::start(backend).await;
    let status = format!("{}/pulp/api/v3/status/", s.base);
    for (header, path) in [("Correlation-ID", "/pulp/api/v3/status/"), ("X-Request-ID", "/v2/"), ("Correlation-ID", "/no/such/path")] {
        let resp = s.client.get(format!("{}{path}", s.base)).header(header, "client-chosen-id.42").send().await.unwrap();
        assert_eq!(response_id(&resp), "client-chosen-id.42", "{header} on {path} ({})", resp.status());
    }

    let generated: Vec<String> = futures_util::future::join_all((0..2).map(|_| s.client.get(&status).send()))
        .await
        .into_iter()
        .map(|r| response_id(&r.unwrap()))
        .collect();
    assert!(generated.iter().all(|id| is_generated_id(id)), "{generated:?}");
    assert_ne!(generated[0], generated[1]);

    let too_long = "x".repeat(129);
    let tab = reqwest::header::HeaderValue::from_bytes(b"evil\tid").unwrap();
    let non_ascii = reqwest::header::HeaderValue::from_bytes("caf\u{e9}".as_bytes()).unwrap();
    for bad in [reqwest::header::HeaderValue::from_str(&too_long).unwrap(), tab, non_ascii] {
        let resp = s.client.get(&status).header("Correlation-ID", bad.clone()).send().await.unwrap();
        assert!(is_generated_id(&response_id(&resp)), "{bad:?} was replaced");
    }

    let (_, remote) = s.post("remotes/container/container/", json!({"name": "traced", "url": "http://127.0.0.1:9", "upstream_name": "app"})).await;
    let resp = s
        .client
        .patch(s.url(remote["pulp_href"].as_str().unwrap()))
        .basic_auth("admin", Some(PASSWORD))
        .header("Correlation-ID", "dispatching-request-7")
        .json(&json!({"tls_validation": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert_eq!(response_id(&resp), "dispatching-request-7");
    let href = resp.json::<serde_json::Value>().await.unwrap()["task"].as_str().unwrap().to_string();
    let task = s.wait_task(&href).await;
    assert_eq!(task["logging_cid"], "dispatching-request-7", "{task}");
    let (_, found) = s.get("tasks/?logging_cid=dispatching-request-7").await;
    assert_eq!(found["count"], 1, "{found}");
}

on_databases!(
    a_cold_pull_by_four_clients_moves_the_download_counters,
    failed_downloads_are_counted_by_cause,
    scrape_time_gauges_follow_the_database,
    access_to_metrics_is_configurable,
    request_ids_are_echoed_generated_or_replaced,
);

/// The JSON lines the real binary logged.
fn json_lines(serve: &Replica) -> Vec<serde_json::Value> {
    // A line still being written is not read yet.
    serve
        .log()
        .split_inclusive('\n')
        .filter(|l| l.ends_with('\n'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}")))
        .collect()
}

/// Waits until a log line satisfies `found`.
async fn wait_for_line(serve: &Replica, what: &str, found: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let start = Instant::now();
    loop {
        if let Some(line) = json_lines(serve).into_iter().find(|l| found(l)) {
            return line;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "no log line {what}:\n{}", serve.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The real binary on SQLite, logging JSON at `rust_log`.
async fn serve_json_logs(rust_log: &str) -> Replica {
    Replica::serve(&["--log-format".into(), "json".into()], rust_log, None).await
}

fn request_id_of(line: &serde_json::Value) -> Option<&str> {
    line["span"]["request_id"].as_str()
}

/// `--log-format json`: the access line of a request and the lines of the task it dispatched
/// carry its id as `request_id`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_the_request_id() {
    let serve = serve_json_logs("info").await;
    let client = reqwest::Client::new();
    let created: serde_json::Value = client
        .post(format!("{}/pulp/api/v3/remotes/container/container/", serve.base))
        .basic_auth("admin", Some(PASSWORD))
        .json(&json!({"name": "logged", "url": "http://127.0.0.1:9", "upstream_name": "app"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let href = created["pulp_href"].as_str().unwrap();
    let resp = client
        .delete(format!("{}{href}", serve.base))
        .basic_auth("admin", Some(PASSWORD))
        .header("Correlation-ID", "json-log-request-1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);

    let access = wait_for_line(&serve, "for the DELETE", |l| l["target"] == "pulpish::access" && l["fields"]["message"].as_str().is_some_and(|m| m.starts_with("DELETE "))).await;
    assert_eq!(request_id_of(&access), Some("json-log-request-1"), "{access}");
    assert_eq!(access["fields"]["status"], 202, "{access}");
    let task_line = wait_for_line(&serve, "of the task finishing", |l| l["fields"]["message"] == "task finished").await;
    assert_eq!(request_id_of(&task_line), Some("json-log-request-1"), "{task_line}");

    // Without an id from the client, the generated one is what the response says.
    let resp = client.get(format!("{}/v2/", serve.base)).send().await.unwrap();
    let generated = response_id(&resp);
    let line = wait_for_line(&serve, "for GET /v2/", |l| l["target"] == "pulpish::access" && request_id_of(l) == Some(generated.as_str())).await;
    assert_eq!(line["fields"]["message"], "GET /v2/", "{line}");
    assert_eq!(line["fields"]["status"], resp.status().as_u16(), "{line}");
}

/// podman, skopeo and docker try HTTPS first: a TLS ClientHello on the plain-HTTP port is
/// logged at DEBUG (seen with RUST_LOG at debug for that target), never as an ERROR.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_probe_on_the_plain_port_logs_no_error() {
    let serve = serve_json_logs("info,actix_http::h1::dispatcher=debug").await;
    let probe = reqwest::Client::builder().danger_accept_invalid_certs(true).build().unwrap();
    let https = serve.base.replacen("http://", "https://", 1);
    for _ in 0..3 {
        assert!(probe.get(format!("{https}/v2/")).send().await.is_err(), "the plain port speaks no TLS");
    }
    let probe_line = wait_for_line(&serve, "about the probe", |l| l["target"] == "actix_http::h1::dispatcher" && l["level"] == "DEBUG").await;
    assert!(probe_line["fields"]["message"].as_str().unwrap().starts_with("stream error"), "{probe_line}");
    // The server still answers, and the log holds no ERROR.
    assert!(reqwest::get(format!("{}/pulp/api/v3/status/", serve.base)).await.unwrap().status().is_success());
    let errors: Vec<_> = json_lines(&serve).into_iter().filter(|l| l["level"] == "ERROR").collect();
    assert!(errors.is_empty(), "ERROR lines: {errors:?}");
}
