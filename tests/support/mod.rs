//! Test support: a fresh pulpish per test on SQLite or on a throwaway PostgreSQL cluster that
//! this test binary starts itself, and a small HTTP client speaking to it as a user would.
#![allow(dead_code)]

pub mod fault;
pub mod garage;
pub mod images;
pub mod nginx;
pub mod pki;
pub mod postgres;
pub mod registry;
pub mod replica;
pub mod sigstore;
pub mod token;

use std::time::{Duration, Instant};

use pulpish_server::{AppState, Config};
use reqwest::{Method, StatusCode};
use serde_json::Value;

/// Where a test server keeps its data: the database, and the store of artifacts and uploads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite and the filesystem store, under the data dir.
    Sqlite,
    /// A fresh PostgreSQL database and the filesystem store.
    Postgres,
    /// A fresh PostgreSQL database and a fresh bucket of the shared Garage (`--storage s3`).
    S3,
}

pub const PASSWORD: &str = "test-admin-password";

/// A port free on 127.0.0.1 now, for a process that binds it itself (a moment later).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Runs each named `async fn(Backend)` once per backend: SQLite, PostgreSQL, and PostgreSQL
/// with the S3 store (skipped when there is no Garage binary, except under CI).
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                $crate::database_tests!($name);
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn s3() {
                    if $crate::support::garage::available() {
                        super::$name($crate::support::Backend::S3).await
                    }
                }
            }
        )*
    };
}

/// Like `on_both_backends!` but on the two databases only, for tests that never touch blob bytes
/// (filters, API shapes): the object store adds nothing there.
#[macro_export]
macro_rules! on_databases {
    ($($name:ident),* $(,)?) => {
        $( mod $name { $crate::database_tests!($name); } )*
    };
}

/// The SQLite and PostgreSQL runs of one test, inside its module.
#[macro_export]
macro_rules! database_tests {
    ($name:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn sqlite() {
            super::$name($crate::support::Backend::Sqlite).await
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn postgres() {
            super::$name($crate::support::Backend::Postgres).await
        }
    };
}

/// The database URL for a fresh, empty database on `backend`, inside `dir` for SQLite.
pub fn fresh_database(backend: Backend, dir: &std::path::Path) -> String {
    match backend {
        Backend::Sqlite => format!("sqlite://{}", dir.join("pulpish.db").display()),
        Backend::Postgres | Backend::S3 => postgres::cluster().create_database(),
    }
}

/// A fresh bucket on the shared Garage for the S3 backend; `None` for the filesystem ones.
pub fn fresh_bucket(backend: Backend) -> Option<String> {
    (backend == Backend::S3).then(|| garage::instance().create_bucket())
}

/// The `pulpish serve` storage flags for `backend`, with a fresh bucket for S3.
pub fn storage_args(backend: Backend) -> Vec<String> {
    fresh_bucket(backend).map(|b| garage::instance().s3_args(&b)).unwrap_or_default()
}

/// pulpish running in this process on 127.0.0.1 with its own data dir and database.
pub struct TestServer {
    pub base: String,
    pub state: AppState,
    pub client: reqwest::Client,
    pub dir: tempfile::TempDir,
    /// The Garage bucket holding the store (S3 backend), else `None`: the data dir holds it.
    pub bucket: Option<String>,
}

impl TestServer {
    pub async fn start(backend: Backend) -> Self {
        Self::start_on(backend, |_| {}).await
    }

    /// A server on a fresh database (and for S3 a fresh bucket), its config tweaked first.
    pub async fn start_on(backend: Backend, tweak: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = fresh_database(backend, dir.path());
        let bucket = fresh_bucket(backend);
        Self::start_with(dir, url, |c| {
            if let Some(b) = &bucket {
                garage::instance().apply_to(c, b);
            }
            tweak(c)
        })
        .await
    }

    /// A server on `database_url` with its data in `dir/data` (two can share both, as replicas;
    /// with the S3 store, replicas share the bucket `tweak` sets: `garage::instance().apply_to`).
    pub async fn start_with(dir: tempfile::TempDir, database_url: String, tweak: impl FnOnce(&mut Config)) -> Self {
        let mut config = Config::for_data_dir(dir.path().join("data"));
        config.database_url = Some(database_url);
        config.admin_password = Some(PASSWORD.into());
        tweak(&mut config);
        let bucket = config.storage.s3_bucket.clone().filter(|_| config.storage.kind == pulpish_server::config::StorageKind::S3);
        assert!(bucket.is_none() || config.storage.s3_prefix.is_none(), "the test helpers read the bucket without a prefix");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let state = pulpish_server::prepare(config).await.expect("prepare");
        let running = pulpish_server::start(state, listener).await.expect("start");
        let https = running.state.config.tls.tls_cert.is_some();
        let base = format!("{}://{}", if https { "https" } else { "http" }, running.addr);
        // The tests' own calls; what a server trusts is what they test.
        let client = reqwest::Client::builder().danger_accept_invalid_certs(https).build().expect("client");
        tokio::spawn(running.server);
        TestServer { base, state: running.state, client, dir, bucket }
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

/// Enqueues a task that sleeps `seconds` holding `resources`; its href.
pub async fn sleep_task(s: &TestServer, seconds: f64, resources: &[&str]) -> String {
    let args = serde_json::json!({ "seconds": seconds });
    let resources = resources.iter().map(|r| r.to_string()).collect();
    let t = s.state.tasks.enqueue(&s.state, pulpish_server::tasks::DEBUG_SLEEP, args, resources).await.unwrap();
    format!("/pulp/api/v3/tasks/{}/", t.id)
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

/// Every artifact row's stored object: it hashes to its sha256 and has its recorded size.
pub async fn assert_store_intact(s: &TestServer) {
    let (status, page) = s.get("artifacts/?limit=1000").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    for a in page["results"].as_array().unwrap() {
        let sha = a["sha256"].as_str().unwrap();
        let key = format!("artifact/{}/{}", &sha[..2], &sha[2..]);
        let bytes = stored_object(s, &key).unwrap_or_else(|| panic!("no stored object {key}"));
        assert_eq!(sha256_hex(&bytes), sha, "stored object {key} hashes to its name");
        assert_eq!(bytes.len() as i64, a["size"].as_i64().unwrap(), "stored object {key} has its recorded size");
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("{:x}", sha2::Sha256::digest(bytes))
}

/// The bytes stored under `key` (`artifact/ab/cdef…`, `uploads/<id>/<part>`): the file under
/// the server's data dir, or the object in its bucket.
pub fn stored_object(s: &TestServer, key: &str) -> Option<Vec<u8>> {
    match &s.bucket {
        Some(bucket) => garage::instance().try_get_object(bucket, key),
        None => std::fs::read(s.state.config.data_dir.join(key)).ok(),
    }
}

/// Every stored key under `prefix` (which ends with `/`) with its size, in key order.
pub fn stored_keys(s: &TestServer, prefix: &str) -> Vec<(String, u64)> {
    match &s.bucket {
        Some(bucket) => garage::instance().list_keys(bucket, prefix),
        None => {
            fn walk(root: &std::path::Path, dir: &std::path::Path, out: &mut Vec<(String, u64)>) {
                for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                    let p = e.path();
                    if p.is_dir() {
                        walk(root, &p, out);
                    } else if let (Ok(rel), Ok(meta)) = (p.strip_prefix(root), e.metadata()) {
                        out.push((rel.to_string_lossy().into_owned(), meta.len()));
                    }
                }
            }
            let root = &s.state.config.data_dir;
            let mut out = Vec::new();
            walk(root, &root.join(prefix), &mut out);
            out.sort();
            out
        }
    }
}

/// The keys of the staged parts of upload `upload_id`, or of every upload for `""`.
pub fn staged_objects(s: &TestServer, upload_id: &str) -> Vec<String> {
    let prefix = if upload_id.is_empty() { "uploads/".to_string() } else { format!("uploads/{upload_id}/") };
    stored_keys(s, &prefix).into_iter().map(|(k, _)| k).collect()
}

/// Puts `bytes` under `key` where a server on `data_dir` (and `bucket`, for S3) will find it,
/// before or behind its back.
pub fn plant_object(data_dir: &std::path::Path, bucket: Option<&str>, key: &str, bytes: &[u8]) {
    match bucket {
        Some(bucket) => garage::instance().put_object(bucket, key, bytes),
        None => {
            let path = data_dir.join(key);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, bytes).unwrap();
        }
    }
}

/// Runs a client command; its stdout, or a panic with both outputs.
pub fn run(cmd: &mut std::process::Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed:\n{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Digests of every blob file in an OCI layout, each checked against its file's sha256.
pub fn layout_blobs(dir: &std::path::Path) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir(dir.join("blobs/sha256")).unwrap() {
        let path = entry.unwrap().path();
        let digest = format!("sha256:{}", path.file_name().unwrap().to_str().unwrap());
        assert_eq!(file_digest(&path), digest, "{} holds the bytes of its digest", path.display());
        out.insert(digest);
    }
    out
}

/// Polls `check` every 50 ms until it holds; fails the test after 30 s naming `what`.
pub async fn wait_for(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let start = std::time::Instant::now();
    while !check().await {
        assert!(start.elapsed() < std::time::Duration::from_secs(30), "timed out waiting for {what}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// `len` bytes of a xorshift sequence from `seed`: incompressible, the same on every run.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}
