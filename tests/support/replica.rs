//! pulpish replicas as real processes of the `pulpish` binary, for tests that kill one or put
//! a load balancer in front: each has its own empty data dir and a log file to show on failure.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::PASSWORD;

pub struct Replica {
    child: Child,
    pub base: String,
    /// `127.0.0.1:PORT`, for a load balancer's upstream list.
    pub addr: String,
    pub data: tempfile::TempDir,
    log: PathBuf,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Replica {
    /// `pulpish serve` on a free port with `database_url`, an empty data dir and `extra` flags
    /// (e.g. `garage.s3_args(&bucket)`); returns once `status/` answers.
    pub async fn start(database_url: &str, extra: &[String]) -> Replica {
        let data = tempfile::tempdir().unwrap();
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let log = data.path().join("pulpish.log");
        let child = Command::new(env!("CARGO_BIN_EXE_pulpish"))
            .arg("serve")
            .args(["--bind", &addr, "--database-url", database_url, "--admin-password", PASSWORD])
            .arg("--data-dir")
            .arg(data.path().join("data"))
            .args(extra)
            .env_remove("PULPISH_DATABASE_URL")
            .env_remove("PULPISH_DATA_DIR")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start pulpish");
        let replica = Replica { child, base: format!("http://{addr}"), addr, data, log };
        replica.wait_up().await;
        replica
    }

    async fn wait_up(&self) {
        let start = Instant::now();
        loop {
            if let Ok(r) = reqwest::get(format!("{}/pulp/api/v3/status/", self.base)).await {
                if r.status().is_success() {
                    return;
                }
            }
            assert!(start.elapsed() < Duration::from_secs(30), "replica {} did not come up:\n{}", self.addr, self.log());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
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
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for replica") {
                return status;
            }
            assert!(start.elapsed() < limit, "replica {} did not exit within {limit:?}:\n{}", self.addr, self.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
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

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
    }
}
