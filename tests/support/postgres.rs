//! A throwaway PostgreSQL cluster from the installed server binaries, one per test binary,
//! started on first use and stopped when the binary exits. A database per test.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use diesel::connection::SimpleConnection;
use diesel::Connection;

pub struct Cluster {
    dir: PathBuf,
    next: AtomicUsize,
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();
static CLUSTER_DIR: OnceLock<PathBuf> = OnceLock::new();

fn bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("PULPISH_PG_BIN") {
        return PathBuf::from(dir);
    }
    for v in ["17", "16", "15", "14", "13"] {
        let p = PathBuf::from(format!("/usr/lib/postgresql/{v}/bin"));
        if p.join("initdb").exists() {
            return p;
        }
    }
    panic!("PostgreSQL server binaries not found (install postgresql, or set PULPISH_PG_BIN)");
}

#[expect(unsafe_code, reason = "geteuid has no safe wrapper in std")]
fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Runs a PostgreSQL binary, as the `postgres` user when we are root (initdb refuses root).
fn pg_command(bin: &Path, args: &[&str]) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin).args(args);
        c
    } else {
        let mut c = Command::new(bin);
        c.args(args);
        c
    }
}

fn run(mut c: Command, what: &str) {
    let out = c.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(out.status.success(), "{what} failed: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

extern "C" fn stop_cluster() {
    if let Some(dir) = CLUSTER_DIR.get() {
        let data = dir.join("data");
        let _ = pg_command(&bin_dir().join("pg_ctl"), &["-D", data.to_str().unwrap(), "-m", "immediate", "-w", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[expect(unsafe_code, reason = "atexit has no safe wrapper in std")]
pub fn cluster() -> &'static Cluster {
    CLUSTER.get_or_init(|| {
        let cluster = Cluster::create();
        CLUSTER_DIR.set(cluster.dir.clone()).ok();
        // SAFETY: registering a plain extern "C" fn; runs at process exit.
        unsafe { libc::atexit(stop_cluster) };
        cluster
    })
}

/// A cluster of one test's own, which it may stop and start again (the database going away
/// under a running server) without disturbing the other tests. Removed when dropped.
pub struct PrivateCluster(Cluster);

impl PrivateCluster {
    pub fn start() -> Self {
        PrivateCluster(Cluster::create())
    }

    /// Stops the server, disconnecting every client (`-m fast`).
    pub fn stop(&self) {
        self.0.pg_ctl(&["-m", "fast", "-w", "stop"], "pg_ctl stop");
    }

    pub fn restart(&self) {
        self.0.start_server();
    }
}

impl std::ops::Deref for PrivateCluster {
    type Target = Cluster;
    fn deref(&self) -> &Cluster {
        &self.0
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let data = self.0.dir.join("data");
        let _ = pg_command(&bin_dir().join("pg_ctl"), &["-D", data.to_str().unwrap(), "-m", "immediate", "-w", "stop"]).output();
        let _ = std::fs::remove_dir_all(&self.0.dir);
    }
}

impl Cluster {
    /// initdb in a fresh directory, then start the server on a Unix socket there.
    fn create() -> Cluster {
        let dir = std::env::temp_dir().join(format!("pulpish-pg-{}-{}", std::process::id(), uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("cluster dir");
        if is_root() {
            run({ let mut c = Command::new("chown"); c.args(["postgres:postgres"]).arg(&dir); c }, "chown cluster dir");
        }
        let data = dir.join("data");
        run(pg_command(&bin_dir().join("initdb"), &["-D", data.to_str().unwrap(), "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C.UTF-8"]), "initdb");
        let cluster = Cluster { dir, next: AtomicUsize::new(0) };
        cluster.start_server();
        cluster
    }

    fn start_server(&self) {
        let opts = format!("-k {} -c listen_addresses='' -c fsync=off -c max_connections=300", self.dir.display());
        let log = self.dir.join("server.log");
        self.pg_ctl(&["-o", &opts, "-l", log.to_str().unwrap(), "-w", "start"], "pg_ctl start");
    }

    fn pg_ctl(&self, args: &[&str], what: &str) {
        let data = self.dir.join("data");
        let mut all = vec!["-D", data.to_str().unwrap()];
        all.extend_from_slice(args);
        run(pg_command(&bin_dir().join("pg_ctl"), &all), what);
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgresql:///{database}?host={}&user=postgres", self.dir.display())
    }

    pub fn create_database(&self) -> String {
        let name = format!("t_{}_{}", std::process::id(), self.next.fetch_add(1, Ordering::SeqCst));
        let mut admin = diesel::PgConnection::establish(&self.url("postgres")).expect("connect to the test cluster");
        admin.batch_execute(&format!("CREATE DATABASE {name}")).expect("create database");
        self.url(&name)
    }
}
