//! Scheduled syncs: a schedule syncs its repository from a real upstream (Debian's
//! docker-registry) every interval; with the upstream stopped its delays grow, visible in the
//! API, and reset once the upstream is back; two replicas on one PostgreSQL never run one
//! schedule twice at once. The API's refusals, and the CLI's `repo sync --every` and `schedule`.

mod support;

use std::collections::BTreeSet;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::registry::{Auth, Registry};
use support::replica::Replica;
use support::{Backend, TestServer, PASSWORD};

const SCHEDULES: &str = "sync-schedules/";
const SYNC_TASK: &str = "pulpish.sync";

async fn wait_for<T>(what: &str, limit: Duration, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(start.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn time(v: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().unwrap_or_else(|| panic!("a time, not {v}"))).unwrap().with_timezone(&Utc)
}

/// A remote on `registry`'s `upstream_name` that fails at once when the upstream is down, and
/// a repository using it; the repository's href and the remote's.
async fn repo_and_remote(s: &TestServer, name: &str, url: &str, upstream_name: &str) -> (String, String) {
    let body = json!({"name": name, "url": url, "upstream_name": upstream_name, "policy": "on_demand", "max_retries": 0});
    let (status, remote) = s.post("remotes/container/container/", body).await;
    assert_eq!(status, StatusCode::CREATED, "{remote}");
    let remote = remote["pulp_href"].as_str().unwrap().to_string();
    let (status, repo) = s.post("repositories/container/container/", json!({"name": name, "remote": remote})).await;
    assert_eq!(status, StatusCode::CREATED, "{repo}");
    (repo["pulp_href"].as_str().unwrap().to_string(), remote)
}

async fn create_schedule(s: &TestServer, body: Value) -> Value {
    let (status, schedule) = s.post(SCHEDULES, body).await;
    assert_eq!(status, StatusCode::CREATED, "{schedule}");
    schedule
}

/// The latest version's number and tag names.
async fn latest_tags(s: &TestServer, repo: &str) -> (i64, BTreeSet<String>) {
    let (_, r) = s.get(repo).await;
    let version = r["latest_version_href"].as_str().unwrap().to_string();
    let (status, page) = s.get(&format!("content/container/tags/?repository_version={version}&limit=1000")).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let tags = page["results"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap().to_string()).collect();
    let number = version.trim_end_matches('/').rsplit('/').next().unwrap().parse().unwrap();
    (number, tags)
}

fn names(tags: &[&str]) -> BTreeSet<String> {
    tags.iter().map(|t| t.to_string()).collect()
}

async fn a_tag_pushed_upstream_appears_in_a_new_version(backend: Backend) {
    let registry = Registry::start(Auth::Anonymous);
    registry.push_layout_tag("amd64", "sched/busybox:one", false, None);
    let s = TestServer::start(backend).await;
    let (repo, remote) = repo_and_remote(&s, "busybox", &registry.url(), "sched/busybox").await;

    let schedule = create_schedule(&s, json!({"repository": repo, "interval": 2})).await;
    assert_eq!(schedule["repository"], repo.as_str());
    assert_eq!(schedule["remote"], remote.as_str(), "the repository's remote by default");
    assert_eq!((schedule["interval"].as_i64(), schedule["mirror"].as_bool(), schedule["enabled"].as_bool()), (Some(2), Some(false), Some(true)));
    assert_eq!((schedule["failures"].as_i64(), schedule["current_backoff"].as_f64()), (Some(0), Some(0.0)));
    assert!(time(&schedule["next_run"]) <= Utc::now(), "a new schedule is due at once: {schedule}");
    assert!(schedule["last_task"].is_null(), "{schedule}");
    let href = schedule["pulp_href"].as_str().unwrap().to_string();
    assert!(href.starts_with("/pulp/api/v3/sync-schedules/"), "{href}");

    let (first, tags) = wait_for("the first scheduled sync", Duration::from_secs(15), async || {
        let (n, tags) = latest_tags(&s, &repo).await;
        (n > 0).then_some((n, tags))
    })
    .await;
    assert_eq!(tags, names(&["one"]));
    let (_, now) = s.get(&href).await;
    let (_, task) = s.get(now["last_task"].as_str().expect("a last task")).await;
    assert_eq!((task["name"].as_str(), task["reserved_resources_record"][0].as_str()), (Some(SYNC_TASK), Some(repo.as_str())), "{task}");

    registry.push_layout_tag("amd64", "sched/busybox:two", false, None);
    let pushed = Instant::now();
    let (second, tags) = wait_for("the pushed tag in a new version", Duration::from_secs(12), async || {
        let (n, tags) = latest_tags(&s, &repo).await;
        (tags.len() == 2).then_some((n, tags))
    })
    .await;
    assert_eq!(tags, names(&["one", "two"]));
    assert_eq!(second, first + 1, "syncs that found nothing new made no version");
    assert!(pushed.elapsed() < Duration::from_secs(7), "within a few intervals: {:?}", pushed.elapsed());
    let (_, tasks) = s.get(&format!("tasks/?name={SYNC_TASK}&reserved_resources={repo}")).await;
    assert!(tasks["count"].as_i64().unwrap() >= 2, "several scheduled syncs: {tasks}");
}

async fn an_unreachable_upstream_backs_off_and_recovers(backend: Backend) {
    let mut registry = Registry::start(Auth::Anonymous);
    registry.push_layout_tag("amd64", "sched/busybox:one", false, None);
    let s = TestServer::start(backend).await;
    let (repo, _) = repo_and_remote(&s, "busybox", &registry.url(), "sched/busybox").await;
    let href = create_schedule(&s, json!({"repository": repo, "interval": 2})).await["pulp_href"].as_str().unwrap().to_string();
    wait_for("the first scheduled sync", Duration::from_secs(15), async || (latest_tags(&s, &repo).await.0 > 0).then_some(())).await;

    registry.stop();
    // failures → the backoff the schedule showed with them; for one snapshot per failure count,
    // the next run is the failed task's end plus that backoff.
    let mut seen: Vec<(i64, f64)> = Vec::new();
    let started = Instant::now();
    while seen.last().is_none_or(|(f, _)| *f < 5) {
        assert!(started.elapsed() < Duration::from_secs(25), "failures did not climb to 5: {seen:?}");
        let (status, sched) = s.get(&href).await;
        assert_eq!(status, StatusCode::OK, "{sched}");
        let failures = sched["failures"].as_i64().unwrap();
        if failures > 0 && seen.last().is_none_or(|(f, _)| *f != failures) && !sched["next_run"].is_null() {
            let backoff = sched["current_backoff"].as_f64().unwrap();
            let (_, task) = s.get(sched["last_task"].as_str().unwrap()).await;
            assert_eq!(task["state"], "failed", "{task}");
            let waited = (time(&sched["next_run"]) - time(&task["finished_at"])).num_microseconds().unwrap();
            assert_eq!(waited, (backoff * 1e6).round() as i64, "the next run is the backoff after the failure: {sched} {task}");
            seen.push((failures, backoff));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let expected = [(1, 0.25), (2, 0.5), (3, 1.0), (4, 2.0), (5, 2.0)];
    let got: Vec<(i64, f64)> = seen.iter().copied().filter(|(f, _)| *f <= 5).collect();
    // Polling may miss a short state, never show one out of order or with another backoff.
    assert!(got.iter().all(|g| expected.contains(g)), "doubling from 0.25 s up to the 2 s interval: {got:?}");
    assert!(got.windows(2).all(|w| w[0].0 < w[1].0), "{got:?}");
    assert!(got.len() >= 4, "the delays grew visibly: {got:?}");

    registry.start_again();
    let sched = wait_for("a completed sync after the upstream came back", Duration::from_secs(10), async || {
        let (_, sched) = s.get(&href).await;
        (sched["failures"] == 0).then_some(sched)
    })
    .await;
    assert_eq!(sched["current_backoff"].as_f64(), Some(0.0), "{sched}");
    let (_, task) = s.get(sched["last_task"].as_str().unwrap()).await;
    assert_eq!(task["state"], "completed", "{task}");
}

async fn the_api_refuses_bad_schedules_naming_the_field(backend: Backend) {
    let s = TestServer::start(backend).await;
    // Nothing listens on port 1: every sync fails at once.
    let (repo, remote) = repo_and_remote(&s, "unreachable", "http://127.0.0.1:1", "x/y").await;
    let (status, bare) = s.post("repositories/container/container/", json!({"name": "bare"})).await;
    assert_eq!(status, StatusCode::CREATED, "{bare}");
    let bare = bare["pulp_href"].as_str().unwrap().to_string();

    let refused = async |body: Value, field: &str| {
        let (status, answer) = s.post(SCHEDULES, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body} → {answer}");
        assert!(answer[field].is_array(), "{body}: the answer names {field}: {answer}");
        answer
    };
    let answer = refused(json!({}), "repository").await;
    assert_eq!(answer["interval"], json!(["This field is required."]), "{answer}");
    refused(json!({"repository": "/pulp/api/v3/repositories/container/container/00000000-0000-0000-0000-000000000000/", "interval": 10}), "repository").await;
    refused(json!({"repository": "busybox", "interval": 10}), "repository").await;
    refused(json!({"repository": bare, "interval": 10}), "remote").await;
    refused(json!({"repository": repo, "remote": "/pulp/api/v3/remotes/container/container/nope/", "interval": 10}), "remote").await;
    for interval in [json!(0), json!(-5), json!(1e308), json!(1.5), json!("10"), json!(31_536_001), json!(null)] {
        refused(json!({"repository": repo, "interval": interval}), "interval").await;
    }
    refused(json!({"repository": repo, "interval": 10, "mirror": "yes"}), "mirror").await;
    refused(json!({"repository": repo, "interval": 10, "every": 10}), "every").await;
    assert_eq!(s.count(SCHEDULES).await, 0, "nothing was written");

    let schedule = create_schedule(&s, json!({"repository": repo, "remote": remote, "interval": 3600, "mirror": true})).await;
    let href = schedule["pulp_href"].as_str().unwrap().to_string();
    assert_eq!(schedule["prn"], format!("prn:pulpish.syncschedule:{}", href.trim_end_matches('/').rsplit('/').next().unwrap()));
    refused(json!({"repository": repo, "interval": 10}), "repository").await;

    let listed = async |query: String| s.get(&format!("{SCHEDULES}?{query}")).await;
    assert_eq!(listed(format!("repository={repo}")).await.1["count"], 1);
    assert_eq!(listed(format!("repository={bare}")).await.1["count"], 0);
    assert_eq!(listed(format!("remote={remote}")).await.1["count"], 1);
    assert_eq!(listed("enabled=false".into()).await.1["count"], 0);
    let (status, answer) = listed("repository=nonsense".into()).await;
    assert_eq!((status, answer["repository"].is_array()), (StatusCode::BAD_REQUEST, true), "{answer}");

    // The first run fails (nothing listens): one failure, then the interval's backoff (an
    // eighth of an hour, at most a minute).
    let failed = wait_for("the first run to fail", Duration::from_secs(15), async || {
        let (_, sched) = s.get(&href).await;
        (sched["failures"] == 1 && !sched["next_run"].is_null()).then_some(sched)
    })
    .await;
    assert_eq!(failed["current_backoff"].as_f64(), Some(60.0), "{failed}");

    let (status, answer) = s.patch(&href, json!({"interval": 0})).await;
    assert_eq!((status, answer["interval"].is_array()), (StatusCode::BAD_REQUEST, true), "{answer}");
    let (status, paused) = s.patch(&href, json!({"enabled": false})).await;
    assert_eq!(status, StatusCode::OK, "{paused}");
    assert_eq!((paused["enabled"].as_bool(), paused["next_run"].is_null()), (Some(false), true), "{paused}");
    let (status, resumed) = s.patch(&href, json!({"enabled": true})).await;
    assert_eq!(status, StatusCode::OK, "{resumed}");
    assert!(time(&resumed["next_run"]) <= Utc::now(), "enabling makes it due now: {resumed}");

    let (status, replaced) = s.put(&href, json!({"repository": repo, "interval": 60})).await;
    assert_eq!(status, StatusCode::OK, "{replaced}");
    assert_eq!((replaced["interval"].as_i64(), replaced["mirror"].as_bool(), replaced["remote"].as_str()), (Some(60), Some(false), Some(remote.as_str())), "{replaced}");
    let (status, answer) = s.put(&href, json!({"interval": 60})).await;
    assert_eq!((status, answer["repository"].is_array()), (StatusCode::BAD_REQUEST, true), "{answer}");

    let (status, body) = s.delete(&href).await;
    assert_eq!((status, body), (StatusCode::NO_CONTENT, Value::Null));
    assert_eq!(s.get(&href).await.0, StatusCode::NOT_FOUND);
    assert_eq!(s.delete(&href).await.0, StatusCode::NOT_FOUND);
    assert_eq!(s.patch(&href, json!({"enabled": true})).await.0, StatusCode::NOT_FOUND);
}

/// The dispatch's compare-and-set: a replica that read a schedule as due before another one
/// dispatched it (the same `next_run`) enqueues nothing, however late it comes.
async fn a_dispatch_from_a_stale_read_enqueues_nothing(backend: Backend) {
    use pulpish_server::models::schedule::{self, SyncSchedule};
    let s = TestServer::start(backend).await;
    let (repo, remote) = repo_and_remote(&s, "unreachable", "http://127.0.0.1:1", "x/y").await;
    let id_of = |href: &str| href.trim_end_matches('/').rsplit('/').next().unwrap().to_string();
    // Due in an hour, so that the server's own scheduler leaves it alone.
    let mut row = SyncSchedule::new(id_of(&repo), id_of(&remote), 3600);
    row.next_run = Some(row.next_run.unwrap() + chrono::Duration::hours(1));
    let read = row.clone();
    let (first, second) = s
        .state
        .db
        .run(move |c| {
            schedule::insert(c, &row)?;
            let first = pulpish_server::sync::schedule::dispatch(c, &read)?;
            let second = pulpish_server::sync::schedule::dispatch(c, &read)?;
            Ok::<_, pulpish_server::db::DbError>((first, second))
        })
        .await
        .unwrap();
    let first = first.expect("the first dispatch wins");
    assert!(second.is_none(), "the stale read lost: {second:?}");
    let (_, tasks) = s.get(&format!("tasks/?reserved_resources={repo}")).await;
    assert_eq!(tasks["count"], 1, "one task: the loser's was rolled back: {tasks}");
    let (_, listed) = s.get(&format!("{SCHEDULES}?repository={repo}")).await;
    let shown = &listed["results"][0];
    assert_eq!(shown["last_task"], format!("/pulp/api/v3/tasks/{}/", first.id), "{shown}");
    assert!(shown["next_run"].is_null(), "running: {shown}");
}

on_databases!(
    a_tag_pushed_upstream_appears_in_a_new_version,
    an_unreachable_upstream_backs_off_and_recovers,
    the_api_refuses_bad_schedules_naming_the_field,
    a_dispatch_from_a_stale_read_enqueues_nothing
);

async fn call(base: &str, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    let mut req = reqwest::Client::new().request(method, format!("{base}/pulp/api/v3/{path}")).basic_auth("admin", Some(PASSWORD));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    (resp.status(), resp.json().await.unwrap_or(Value::Null))
}

/// Two `pulpish serve` processes on one PostgreSQL, both running the scheduler, a 1 s schedule
/// for about 10 s: each task the schedule started was dispatched after the one before it had
/// finished, and a whole interval after it (on one clock: both replicas run on this machine).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_never_run_one_schedule_twice_at_once() {
    let registry = Registry::start(Auth::Anonymous);
    registry.push_layout_tag("amd64", "sched/busybox:one", false, None);
    let url = support::postgres::cluster().create_database();
    let a = Replica::start(&url, &[]).await;
    let b = Replica::start(&url, &[]).await;
    let body = json!({"name": "busybox", "url": registry.url(), "upstream_name": "sched/busybox", "policy": "on_demand"});
    let (status, remote) = call(&a.base, Method::POST, "remotes/container/container/", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{remote}");
    let (status, repo) = call(&b.base, Method::POST, "repositories/container/container/", Some(json!({"name": "busybox", "remote": remote["pulp_href"]}))).await;
    assert_eq!(status, StatusCode::CREATED, "{repo}");
    let repo = repo["pulp_href"].as_str().unwrap().to_string();
    let (status, schedule) = call(&a.base, Method::POST, SCHEDULES, Some(json!({"repository": repo, "interval": 1}))).await;
    assert_eq!(status, StatusCode::CREATED, "{schedule}");

    tokio::time::sleep(Duration::from_secs(10)).await;
    let href = schedule["pulp_href"].as_str().unwrap().trim_start_matches("/pulp/api/v3/").to_string();
    call(&a.base, Method::PATCH, &href, Some(json!({"enabled": false}))).await;
    let path = format!("tasks/?name={SYNC_TASK}&reserved_resources={repo}&ordering=pulp_created&limit=100");
    let tasks = wait_for("the last scheduled sync to finish", Duration::from_secs(10), async || {
        let (status, page) = call(&b.base, Method::GET, &path, None).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let tasks = page["results"].as_array().unwrap().clone();
        tasks.iter().all(|t| !t["finished_at"].is_null()).then_some(tasks)
    })
    .await;
    assert!(tasks.len() >= 4, "several scheduled syncs in 10 s: {}", tasks.len());
    for t in &tasks {
        assert_eq!(t["state"], "completed", "{t}");
    }
    for pair in tasks.windows(2) {
        let (before, after) = (&pair[0], &pair[1]);
        let gap = time(&after["pulp_created"]) - time(&before["finished_at"]);
        assert!(gap >= chrono::Duration::seconds(1), "a sync was dispatched {gap} after the previous one finished:\n{before}\n{after}");
    }
    let dispatched = |r: &Replica| r.log().matches("scheduled sync dispatched").count();
    assert_eq!(dispatched(&a) + dispatched(&b), tasks.len(), "each dispatch made one task");
}

fn cli(server: &str, home: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pulpish"))
        .args(args)
        .env("PULPISH_SERVER", server)
        .env("PULPISH_PASSWORD", PASSWORD)
        .env_remove("PULPISH_USERNAME")
        .env("HOME", home)
        .env_remove("XDG_CONFIG_HOME")
        .output()
        .expect("run pulpish")
}

fn stdout(out: &Output, args: &[&str]) -> String {
    assert!(out.status.success(), "pulpish {args:?} failed:\n{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_schedules_syncs() {
    let registry = Registry::start(Auth::Anonymous);
    registry.push_layout_tag("amd64", "sched/busybox:one", false, None);
    let s = TestServer::start(Backend::Sqlite).await;
    let (repo, _) = repo_and_remote(&s, "busybox", &registry.url(), "sched/busybox").await;
    let home = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| cli(&s.base, home.path(), args);
    let ok = |args: &[&str]| stdout(&run(args), args);
    let json = |args: &[&str]| -> Value {
        let mut all = vec!["--format", "json"];
        all.extend_from_slice(args);
        serde_json::from_str(&ok(&all)).unwrap()
    };

    let created = ok(&["repo", "sync", "--name", "busybox", "--every", "2s"]);
    assert!(created.contains("Created the sync schedule of 'busybox': every 2s"), "{created}");
    let shown = json(&["schedule", "show", "--repo", "busybox"]);
    assert_eq!((shown["interval"].as_i64(), shown["repository"].as_str(), shown["mirror"].as_bool()), (Some(2), Some(repo.as_str()), Some(false)), "{shown}");
    wait_for("a scheduled sync", Duration::from_secs(15), async || (latest_tags(&s, &repo).await.0 > 0).then_some(())).await;

    let updated = ok(&["repo", "sync", "--name", "busybox", "--every", "1h30m", "--mirror"]);
    assert!(updated.contains("Updated the sync schedule of 'busybox': every 1h 30m"), "{updated}");
    let shown = json(&["schedule", "show", "--repo", "busybox"]);
    assert_eq!((shown["interval"].as_i64(), shown["mirror"].as_bool()), (Some(5400), Some(true)), "{shown}");
    assert_eq!(s.count(SCHEDULES).await, 1, "one schedule per repository");

    let listed = ok(&["schedule", "list"]);
    let row = listed.lines().find(|l| l.contains("busybox")).unwrap_or_else(|| panic!("{listed}"));
    assert!(row.contains("5400"), "{listed}");
    let paused = json(&["schedule", "update", "--repo", "busybox", "--enabled", "false", "--every", "300"]);
    assert_eq!((paused["enabled"].as_bool(), paused["interval"].as_i64(), paused["next_run"].is_null()), (Some(false), Some(300), true), "{paused}");

    let zero = run(&["repo", "sync", "--name", "busybox", "--every", "0"]);
    assert_eq!(zero.status.code(), Some(2), "a usage error");
    assert!(String::from_utf8_lossy(&zero.stderr).contains("at least 1 second"), "{}", String::from_utf8_lossy(&zero.stderr));
    let words = run(&["schedule", "update", "--repo", "busybox", "--every", "soon"]);
    assert_eq!(words.status.code(), Some(2), "{}", String::from_utf8_lossy(&words.stderr));

    assert!(ok(&["schedule", "delete", "--repo", "busybox"]).contains("Deleted the sync schedule of 'busybox'"));
    assert_eq!(s.count(SCHEDULES).await, 0);
    let gone = run(&["schedule", "show", "--repo", "busybox"]);
    assert_eq!(gone.status.code(), Some(5), "not found");
    assert!(String::from_utf8_lossy(&gone.stderr).contains("repository 'busybox' has no sync schedule"), "{}", String::from_utf8_lossy(&gone.stderr));
}
