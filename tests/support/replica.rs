//! pulpish replicas as real processes of the `pulpish` binary, for tests that kill one, put a
//! load balancer in front, read its log or run it from a config file: each has its own
//! directory and a log file to show on failure.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::PASSWORD;

pub struct Replica {
    child: Child,
    pub base: String,
    /// `127.0.0.1:PORT`, for a load balancer's upstream list.
    pub addr: String,
    /// A directory of its own: its data dir (`data`) unless its settings say otherwise, and its log.
    pub data: tempfile::TempDir,
    log: PathBuf,
}

/// `pulpish` with none of the caller's `PULPISH_*` variables: a test says every setting.
pub fn pulpish() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pulpish"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("PULPISH_") {
            cmd.env_remove(name);
        }
    }
    cmd
}

impl Replica {
    /// `pulpish serve` on a free port with `database_url`, an empty data dir and `extra` flags
    /// (e.g. `garage.s3_args(&bucket)`); returns once `status/` answers.
    pub async fn start(database_url: &str, extra: &[String]) -> Replica {
        let mut args = vec!["--database-url".to_string(), database_url.to_string()];
        args.extend_from_slice(extra);
        Self::serve(&args, "info", None).await
    }

    /// `pulpish serve` on a free port with an empty data dir (SQLite there unless `args` name
    /// a database), the tests' admin password, `args` and `RUST_LOG=rust_log`. Over HTTPS when
    /// `https` is a client trusting its certificate (`args` then hold `--tls-cert`/`--tls-key`).
    pub async fn serve(args: &[String], rust_log: &str, https: Option<&reqwest::Client>) -> Replica {
        let dir = tempfile::tempdir().unwrap();
        let addr = format!("127.0.0.1:{}", super::free_port());
        let mut cmd = pulpish();
        cmd.arg("serve")
            .args(["--bind", &addr, "--admin-password", PASSWORD])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(args)
            .env("RUST_LOG", rust_log);
        match https {
            Some(client) => Self::spawn(cmd, dir, addr, "https", client).await,
            None => Self::spawn(cmd, dir, addr, "http", &reqwest::Client::new()).await,
        }
    }

    /// `cmd`, a `pulpish serve` set up to listen on `addr`, with its log in `dir`; returns once
    /// `status/` answers `client` over `scheme`.
    pub async fn spawn(mut cmd: Command, dir: tempfile::TempDir, addr: String, scheme: &str, client: &reqwest::Client) -> Replica {
        let log = dir.path().join("pulpish.log");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start pulpish");
        let mut replica = Replica { child, base: format!("{scheme}://{addr}"), addr, data: dir, log };
        replica.wait_up(client).await;
        replica
    }

    async fn wait_up(&mut self, client: &reqwest::Client) {
        let start = Instant::now();
        while !client.get(format!("{}/pulp/api/v3/status/", self.base)).send().await.is_ok_and(|r| r.status().is_success()) {
            assert!(self.child.try_wait().unwrap().is_none(), "replica {} exited:\n{}", self.addr, self.log());
            assert!(start.elapsed() < Duration::from_secs(30), "replica {} did not come up:\n{}", self.addr, self.log());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("wait for replica").is_none()
    }

    /// SIGKILL: no shutdown, no cleanup, as a crash.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM: the graceful shutdown an orchestrator asks for.
    #[expect(unsafe_code, reason = "kill has no safe wrapper in std")]
    pub fn terminate(&self) {
        // SAFETY: kill only sends a signal to our own child.
        let sent = unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        assert_eq!(sent, 0, "SIGTERM to replica {}", self.addr);
    }

    /// Waits for the process to exit (a hang guard of `limit`); its exit status.
    pub async fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        // Blocking is fine here: the tests' runtimes have several threads.
        match tokio::task::block_in_place(|| wait_exit(&mut self.child, limit)) {
            Some(status) => status,
            None => panic!("replica {} did not exit within {limit:?}:\n{}", self.addr, self.log()),
        }
    }

    /// Waits until the log has a line containing `needle` (a hang guard of `limit`).
    pub async fn wait_log(&self, needle: &str, limit: Duration) -> String {
        let start = Instant::now();
        loop {
            if let Some(line) = self.log().lines().find(|l| l.contains(needle)) {
                return line.to_string();
            }
            assert!(start.elapsed() < limit, "replica {} never logged {needle:?}:\n{}", self.addr, self.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Waits for `child` to exit; `None` (and the child killed) when it still runs after `limit`.
pub fn wait_exit(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(status) = child.try_wait().expect("wait for pulpish") {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A REST call as the admin to the pulpish at `base` (a replica or the load balancer in front);
/// `path` is an href or relative to `/pulp/api/v3/`.
pub async fn call(base: &str, method: reqwest::Method, path: &str, body: Option<serde_json::Value>) -> (reqwest::StatusCode, serde_json::Value) {
    let url = if path.starts_with('/') { format!("{base}{path}") } else { format!("{base}/pulp/api/v3/{path}") };
    let mut req = reqwest::Client::new().request(method, url).basic_auth("admin", Some(PASSWORD));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status();
    (status, resp.json().await.unwrap_or(serde_json::Value::Null))
}

/// Polls a task of the pulpish at `base` until it ends (a hang guard of `limit`).
pub async fn wait_task(base: &str, href: &str, limit: Duration) -> serde_json::Value {
    let start = Instant::now();
    loop {
        let (_, t) = call(base, reqwest::Method::GET, href, None).await;
        if matches!(t["state"].as_str(), Some("completed" | "failed" | "canceled")) {
            return t;
        }
        assert!(start.elapsed() < limit, "task {href} did not finish: {t}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
