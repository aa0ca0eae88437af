//! A real S3-compatible object store: a single-node Garage (crates.io `garage`,
//! `cargo install garage --locked`) on 127.0.0.1 with its own ports and temp dir.
//!
//! `instance()` is one shared server per test binary, started on first use and killed when the
//! binary exits; tests share it by each taking fresh buckets (`create_bucket`). `private()` is a
//! server of the caller's own, for tests that stop and restart the object store.
//!
//! The binary: `GARAGE_BIN`, else `garage` on PATH, else ~/.cargo/bin/garage. When it is
//! missing, `available()` is false (tests skip) except under CI (`CI` set), where it panics.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use pulpish_server::config::StorageKind;
use pulpish_server::Config;

/// How long each start-up step (RPC up, S3 answering) may take.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

pub const REGION: &str = "garage";

pub struct Garage {
    /// `http://127.0.0.1:PORT`, path-style addressing.
    pub endpoint: String,
    /// Always `garage`.
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    /// The admin API, `http://127.0.0.1:PORT`, with `admin_token` as bearer token.
    pub admin_endpoint: String,
    pub admin_token: String,
    pub s3_port: u16,
    pub rpc_port: u16,
    pub admin_port: u16,
    dir: PathBuf,
    child: Option<Child>,
    /// Whether Drop kills the server and removes `dir` (false for the shared instance).
    owned: bool,
}

static BUCKETS: AtomicUsize = AtomicUsize::new(0);

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// The garage binary, if there is one.
pub fn binary() -> Option<PathBuf> {
    if let Ok(b) = std::env::var("GARAGE_BIN") {
        return Some(PathBuf::from(b));
    }
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join("garage")).collect::<Vec<_>>())
        .unwrap_or_default();
    let cargo = std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo/bin/garage"));
    on_path.into_iter().chain(cargo).find(|p| p.is_file())
}

fn missing() -> String {
    "the garage binary was not found (set GARAGE_BIN, or put it on PATH / in ~/.cargo/bin: \
     `cargo install garage --locked`, about 7.5 minutes)"
        .to_string()
}

/// Whether Garage can be run here. False means: skip the test. Under CI a missing binary is a
/// failure instead (this panics).
pub fn available() -> bool {
    if binary().is_some() {
        return true;
    }
    assert!(!in_ci(), "{}", missing());
    eprintln!("skipped: {}", missing());
    false
}

fn bin() -> PathBuf {
    binary().unwrap_or_else(|| panic!("{}", missing()))
}

fn random_hex(bytes: usize) -> String {
    let mut s = String::new();
    while s.len() < bytes * 2 {
        s.push_str(&uuid::Uuid::new_v4().simple().to_string());
    }
    s.truncate(bytes * 2);
    s
}

/// The shared Garage of this test binary (started on first call; killed at exit).
pub fn instance() -> &'static Garage {
    static SHARED: OnceLock<Garage> = OnceLock::new();
    static SHARED_DIR: OnceLock<PathBuf> = OnceLock::new();
    extern "C" fn remove_dir() {
        if let Some(d) = SHARED_DIR.get() {
            let _ = std::fs::remove_dir_all(d);
        }
    }
    SHARED.get_or_init(|| {
        let g = Garage::start(false);
        super::kill_at_exit(g.pid());
        SHARED_DIR.set(g.dir.clone()).ok();
        register_atexit(remove_dir);
        g
    })
}

#[expect(unsafe_code, reason = "atexit has no safe wrapper in std")]
fn register_atexit(f: extern "C" fn()) {
    // SAFETY: registering a plain extern "C" fn; runs at process exit.
    unsafe { libc::atexit(f) };
}

/// A Garage of the caller's own (stop/restart it freely); killed and removed on Drop.
pub fn private() -> Garage {
    Garage::start(true)
}

impl Garage {
    fn start(owned: bool) -> Garage {
        let dir = std::env::temp_dir().join(format!("pulpish-garage-{}-{}", std::process::id(), uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("garage dir");
        let (rpc_port, s3_port, admin_port) = (super::free_port(), super::free_port(), super::free_port());
        let admin_token = random_hex(16);
        let config = format!(
            r#"metadata_dir = "{dir}/meta"
data_dir = "{dir}/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:{rpc_port}"
rpc_public_addr = "127.0.0.1:{rpc_port}"
rpc_secret = "{secret}"

[s3_api]
s3_region = "{REGION}"
api_bind_addr = "127.0.0.1:{s3_port}"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:{admin_port}"
admin_token = "{admin_token}"
"#,
            dir = dir.display(),
            secret = random_hex(32),
        );
        std::fs::write(dir.join("garage.toml"), config).expect("write garage.toml");
        let mut g = Garage {
            endpoint: format!("http://127.0.0.1:{s3_port}"),
            region: REGION.into(),
            access_key_id: String::new(),
            secret_access_key: String::new(),
            admin_endpoint: format!("http://127.0.0.1:{admin_port}"),
            admin_token,
            s3_port,
            rpc_port,
            admin_port,
            dir,
            child: None,
            owned,
        };
        g.spawn();
        g.wait_rpc();
        let id = g.cli(&["node", "id", "-q"]);
        let id = id.trim().split('@').next().unwrap().to_string();
        g.cli(&["layout", "assign", "-z", "dc1", "-c", "1G", &id]);
        g.cli(&["layout", "apply", "--version", "1"]);
        let key = g.cli(&["key", "create", "pulpish-test"]);
        g.access_key_id = field(&key, "Key ID").unwrap_or_else(|| panic!("no Key ID in `garage key create` output:\n{key}"));
        g.secret_access_key = field(&key, "Secret key").unwrap_or_else(|| panic!("no Secret key in `garage key create` output:\n{key}"));
        g.wait_s3();
        g
    }

    /// Where the server's stdout and stderr go.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("garage.log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.join("garage.toml")
    }

    /// The server's pid (0 when stopped).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, |c| c.id())
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log_path()).expect("garage log");
        let child = Command::new(bin())
            .arg("-c")
            .arg(self.config_path())
            .arg("server")
            .env("RUST_LOG", std::env::var("GARAGE_LOG").unwrap_or_else(|_| "garage=info".into()))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", bin().display()));
        self.child = Some(child);
    }

    fn check_alive(&mut self, what: &str) {
        if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
            panic!("garage exited ({status}) while {what}; its log, {}:\n{}", self.log_path().display(), self.log());
        }
    }

    /// Polls the CLI (RPC to the daemon) until it answers.
    fn wait_rpc(&mut self) {
        let start = Instant::now();
        loop {
            self.check_alive("starting");
            let out = self.cli_command(&["status"]).output().expect("run garage status");
            if out.status.success() {
                return;
            }
            assert!(
                start.elapsed() < READY_TIMEOUT,
                "garage did not answer `garage status` in {READY_TIMEOUT:?}: {}\nlog {}:\n{}",
                String::from_utf8_lossy(&out.stderr),
                self.log_path().display(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Polls a signed ListBuckets until it gets a 200 (the layout is in force).
    fn wait_s3(&mut self) {
        let start = Instant::now();
        loop {
            self.check_alive("waiting for S3");
            let (status, body) = self.try_s3("GET", "/", None);
            if status == 200 {
                return;
            }
            assert!(
                start.elapsed() < READY_TIMEOUT,
                "garage's S3 API did not answer 200 in {READY_TIMEOUT:?} (last: {status} {})\nlog {}:\n{}",
                String::from_utf8_lossy(&body),
                self.log_path().display(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn cli_command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        c.arg("-c").arg(self.config_path()).args(args).env("RUST_LOG", "warn").stdin(Stdio::null());
        c
    }

    /// Runs `garage -c CONFIG ARGS...`; its stdout. Panics (with the server log) on failure.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = self.cli_command(args).output().expect("run garage");
        assert!(
            out.status.success(),
            "garage {} failed: {}{}\nserver log {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log_path().display()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A new bucket with a unique name; the access key may read, write and own it.
    pub fn create_bucket(&self) -> String {
        let name = format!("pulpish-{}-{}", std::process::id(), BUCKETS.fetch_add(1, Ordering::SeqCst));
        self.cli(&["bucket", "create", &name]);
        self.cli(&["bucket", "allow", "--read", "--write", "--owner", &name, "--key", &self.access_key_id]);
        name
    }

    /// Sets the S3 storage settings of a pulpish config to this server and `bucket`.
    pub fn apply_to(&self, config: &mut Config, bucket: &str) {
        config.storage.kind = StorageKind::S3;
        config.storage.s3_endpoint = Some(self.endpoint.clone());
        config.storage.s3_bucket = Some(bucket.to_string());
        config.storage.s3_region = self.region.clone();
        config.storage.s3_access_key_id = Some(self.access_key_id.clone());
        config.storage.s3_secret_access_key = Some(self.secret_access_key.clone());
    }

    /// The same as `pulpish serve` flags.
    pub fn s3_args(&self, bucket: &str) -> Vec<String> {
        [
            "--storage",
            "s3",
            "--s3-endpoint",
            &self.endpoint,
            "--s3-bucket",
            bucket,
            "--s3-region",
            &self.region,
            "--s3-access-key-id",
            &self.access_key_id,
            "--s3-secret-access-key",
            &self.secret_access_key,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    /// One signed S3 request with curl (`path_and_query` already encoded); status and body.
    pub fn try_s3(&self, method: &str, path_and_query: &str, body: Option<&[u8]>) -> (u16, Vec<u8>) {
        let mut c = Command::new("curl");
        c.args(["-sS", "-X", method, "--aws-sigv4", &format!("aws:amz:{}:s3", self.region)])
            .arg("--user")
            .arg(format!("{}:{}", self.access_key_id, self.secret_access_key))
            .args(["-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD", "-w", "\n%{http_code}"]);
        if body.is_some() {
            c.args(["-H", "Content-Type: application/octet-stream", "--data-binary", "@-"]);
        }
        c.arg(format!("{}{}", self.endpoint, path_and_query));
        c.stdin(if body.is_some() { Stdio::piped() } else { Stdio::null() }).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = c.spawn().expect("run curl");
        let writer = body.map(|b| {
            let mut stdin = child.stdin.take().unwrap();
            let b = b.to_vec();
            std::thread::spawn(move || {
                let _ = stdin.write_all(&b);
            })
        });
        let out = child.wait_with_output().expect("curl output");
        if let Some(w) = writer {
            let _ = w.join();
        }
        if !out.status.success() {
            return (0, out.stderr);
        }
        let mut stdout = out.stdout;
        let nl = stdout.iter().rposition(|&b| b == b'\n').expect("curl -w status line");
        let status = String::from_utf8_lossy(&stdout[nl + 1..]).trim().parse().unwrap_or(0);
        stdout.truncate(nl);
        (status, stdout)
    }

    fn s3_ok(&self, method: &str, path_and_query: &str, body: Option<&[u8]>) -> Vec<u8> {
        let (status, out) = self.try_s3(method, path_and_query, body);
        assert!((200..300).contains(&status), "S3 {method} {path_and_query}: {status} {}", String::from_utf8_lossy(&out));
        out
    }

    /// Every object (key, size) in `bucket` whose key starts with `prefix`, in key order.
    pub fn list_keys(&self, bucket: &str, prefix: &str) -> Vec<(String, u64)> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut q = format!("/{bucket}?list-type=2&prefix={}", encode(prefix, false));
            if let Some(t) = &token {
                q.push_str(&format!("&continuation-token={}", encode(t, false)));
            }
            let body = String::from_utf8(self.s3_ok("GET", &q, None)).expect("ListObjectsV2 XML");
            for item in body.split("<Contents>").skip(1) {
                let key = xml_text(item, "Key").expect("Key in Contents");
                let size = xml_text(item, "Size").and_then(|s| s.parse().ok()).expect("Size in Contents");
                keys.push((key, size));
            }
            token = match xml_text(&body, "IsTruncated").as_deref() {
                Some("true") => Some(xml_text(&body, "NextContinuationToken").expect("NextContinuationToken")),
                _ => None,
            };
            if token.is_none() {
                return keys;
            }
        }
    }

    /// The keys of the multipart uploads started in `bucket` and neither completed nor aborted.
    pub fn multipart_uploads(&self, bucket: &str) -> Vec<String> {
        let body = String::from_utf8(self.s3_ok("GET", &format!("/{bucket}?uploads="), None)).expect("ListMultipartUploads XML");
        body.split("<Upload>").skip(1).map(|u| xml_text(u, "Key").expect("Key in Upload")).collect()
    }

    /// The bytes of an object; panics when it is missing.
    pub fn get_object(&self, bucket: &str, key: &str) -> Vec<u8> {
        self.s3_ok("GET", &format!("/{bucket}/{}", encode(key, true)), None)
    }

    /// The bytes of an object, or None for a 404.
    pub fn try_get_object(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        let (status, body) = self.try_s3("GET", &format!("/{bucket}/{}", encode(key, true)), None);
        match status {
            404 => None,
            200 => Some(body),
            _ => panic!("S3 GET {bucket}/{key}: {status} {}", String::from_utf8_lossy(&body)),
        }
    }

    pub fn put_object(&self, bucket: &str, key: &str, bytes: &[u8]) {
        self.s3_ok("PUT", &format!("/{bucket}/{}", encode(key, true)), Some(bytes));
    }

    pub fn delete_object(&self, bucket: &str, key: &str) {
        self.s3_ok("DELETE", &format!("/{bucket}/{}", encode(key, true)), None);
    }

    /// SIGKILLs the server and waits for it (a private instance only).
    pub fn stop(&mut self) {
        assert!(self.owned, "the shared Garage cannot be stopped; use garage::private()");
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same ports, dirs, layout and key; returns once S3 answers.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
        self.wait_s3();
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        if self.owned {
            if let Some(mut c) = self.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// `Name: value` from the CLI's output.
fn field(out: &str, name: &str) -> Option<String> {
    out.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim().eq_ignore_ascii_case(name)).then(|| v.trim().to_string()).filter(|v| !v.is_empty())
    })
}

/// The text of the first `<tag>...</tag>`, XML entities decoded.
fn xml_text(xml: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = start + xml[start..].find(&format!("</{tag}>"))?;
    Some(
        xml[start..end]
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&#39;", "'")
            .replace("&amp;", "&"),
    )
}

/// Percent-encoding for S3 paths and query values: all but unreserved characters (and `/` in
/// object keys).
fn encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
