//! Test support: a fresh pulpish per test on SQLite or on a throwaway PostgreSQL cluster that
//! this test binary starts itself, and a small HTTP client speaking to it as a user would.
#![allow(dead_code)]

pub mod fault;
pub mod postgres;
pub mod registry;
pub mod token;

use std::time::{Duration, Instant};

use pulpish_server::{AppState, Config};
use reqwest::{Method, StatusCode};
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub const PASSWORD: &str = "test-admin-password";

/// Runs each named `async fn(Backend)` once on SQLite and once on PostgreSQL.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name(crate::support::Backend::Sqlite).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name(crate::support::Backend::Postgres).await
                }
            }
        )*
    };
}

/// The database URL for a fresh, empty database on `backend`, inside `dir` for SQLite.
pub fn fresh_database(backend: Backend, dir: &std::path::Path) -> String {
    match backend {
        Backend::Sqlite => format!("sqlite://{}", dir.join("pulpish.db").display()),
        Backend::Postgres => postgres::cluster().create_database(),
    }
}

/// pulpish running in this process on 127.0.0.1 with its own data dir and database.
pub struct TestServer {
    pub base: String,
    pub state: AppState,
    pub client: reqwest::Client,
    pub dir: tempfile::TempDir,
}

impl TestServer {
    pub async fn start(backend: Backend) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = fresh_database(backend, dir.path());
        Self::start_with(dir, url, |_| {}).await
    }

    /// A server on `database_url` with its data in `dir/data` (two can share both, as replicas).
    pub async fn start_with(dir: tempfile::TempDir, database_url: String, tweak: impl FnOnce(&mut Config)) -> Self {
        let mut config = Config::for_data_dir(dir.path().join("data"));
        config.database_url = Some(database_url);
        config.admin_password = Some(PASSWORD.into());
        tweak(&mut config);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let state = pulpish_server::prepare(config).await.expect("prepare");
        let running = pulpish_server::start(state, listener).await.expect("start");
        let base = format!("http://{}", running.addr);
        tokio::spawn(running.server);
        TestServer { base, state: running.state, client: reqwest::Client::new(), dir }
    }

    /// `path` may be a full href (`/pulp/api/v3/...`) or relative to `/pulp/api/v3/`.
    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http") {
            path.to_string()
        } else if path.starts_with('/') {
            format!("{}{}", self.base, path)
        } else {
            format!("{}/pulp/api/v3/{}", self.base, path)
        }
    }

    pub async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> (StatusCode, Value) {
        let mut req = self.client.request(method, self.url(path)).basic_auth("admin", Some(PASSWORD));
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let text = resp.text().await.expect("body");
        let value = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
        (status, value)
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, None).await
    }
    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(&body)).await
    }
    pub async fn patch(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::PATCH, path, Some(&body)).await
    }
    pub async fn put(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::PUT, path, Some(&body)).await
    }
    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::DELETE, path, None).await
    }

    /// Sends raw bytes as the body, for malformed-JSON cases.
    pub async fn post_raw(&self, path: &str, body: &'static str) -> (StatusCode, Value) {
        let resp = self
            .client
            .post(self.url(path))
            .basic_auth("admin", Some(PASSWORD))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request");
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// Polls a task until it reaches a final state.
    pub async fn wait_task(&self, task_href: &str) -> Value {
        wait_task(self, task_href, Duration::from_secs(60)).await
    }

    /// Expects a 202 with a task, waits for it, and asserts it completed.
    pub async fn completed(&self, (status, body): (StatusCode, Value)) -> Value {
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        let task = self.wait_task(body["task"].as_str().expect("task href")).await;
        assert_eq!(task["state"], "completed", "{task}");
        task
    }

    pub async fn count(&self, list_path: &str) -> i64 {
        let (status, body) = self.get(list_path).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["count"].as_i64().expect("count")
    }
}

pub async fn wait_task(server: &TestServer, task_href: &str, timeout: Duration) -> Value {
    let start = Instant::now();
    loop {
        let (status, task) = server.get(task_href).await;
        assert_eq!(status, StatusCode::OK, "{task}");
        if matches!(task["state"].as_str(), Some("completed" | "failed" | "canceled")) {
            return task;
        }
        assert!(start.elapsed() < timeout, "task did not finish in {timeout:?}: {task}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

static CHILDREN: std::sync::Mutex<Vec<u32>> = std::sync::Mutex::new(Vec::new());

extern "C" fn kill_children() {
    if let Ok(pids) = CHILDREN.lock() {
        for pid in pids.iter() {
            let _ = std::process::Command::new("kill").arg("-9").arg(pid.to_string()).status();
        }
    }
}

/// Processes kept in statics are never dropped: kill them when the test binary exits.
#[expect(unsafe_code, reason = "atexit has no safe wrapper in std")]
pub fn kill_at_exit(pid: u32) {
    let mut pids = CHILDREN.lock().unwrap();
    if pids.is_empty() {
        // SAFETY: registering a plain extern "C" fn; runs at process exit.
        unsafe { libc::atexit(kill_children) };
    }
    pids.push(pid);
}

/// sha256 of a file, `sha256:<hex>`, read in chunks.
pub fn file_digest(path: &std::path::Path) -> String {
    let out = std::process::Command::new("sha256sum").arg(path).output().expect("sha256sum");
    assert!(out.status.success(), "sha256sum {}", path.display());
    format!("sha256:{}", String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap())
}

/// Files being written under a data dir's scratch area (`tmp/<process>/...`); the per-process
/// directories and their lock files are not counted.
pub fn scratch_files(data_dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_none_or(|x| x != "lock") {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(&data_dir.join("tmp"), &mut out);
    out
}

/// Every artifact row's file: it hashes to its sha256 and has its recorded size.
pub async fn assert_store_intact(s: &TestServer) {
    let (status, page) = s.get("artifacts/?limit=1000").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    for a in page["results"].as_array().unwrap() {
        let sha = a["sha256"].as_str().unwrap();
        let path = s.dir.path().join("data/artifact").join(&sha[..2]).join(&sha[2..]);
        assert_eq!(file_digest(&path), format!("sha256:{sha}"), "stored file {} hashes to its name", path.display());
        assert_eq!(std::fs::metadata(&path).unwrap().len() as i64, a["size"].as_i64().unwrap(), "stored file {} has its recorded size", path.display());
    }
}
