//! A real load balancer: nginx (Debian's `nginx-light`) on 127.0.0.1 in front of several
//! pulpish replicas, round-robin, with its config, logs, pid and temp files in its own temp dir.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The nginx configuration the tests run (and the docs quote). `{dir}` is a directory for
/// nginx's own files, `{listen}` the `host:port` to listen on, `{servers}` one
/// `server HOST:PORT;` line per replica.
pub const CONFIG_TEMPLATE: &str = r#"worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log info;

events {
    worker_connections 1024;
}

http {
    # The replica that answered each request ($upstream_addr), last on the line.
    log_format upstreams '$remote_addr [$time_local] "$request" $status $body_bytes_sent upstream=$upstream_addr';
    access_log {dir}/access.log upstreams;

    # nginx's default temp paths are under /var/lib/nginx.
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;

    # The replicas: plain round-robin, no session affinity; any replica serves any request.
    upstream pulpish {
{servers}        keepalive 32;
    }

    server {
        listen {listen};

        # Blobs and uploads of any size, streamed both ways rather than spooled to disk.
        client_max_body_size 0;
        proxy_request_buffering off;
        proxy_buffering off;
        proxy_read_timeout 300s;
        proxy_send_timeout 300s;

        location / {
            proxy_pass http://pulpish;
            # HTTP/1.1 with an empty Connection header: keep-alive connections to the replicas.
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            # The address clients used, so that Location headers and the token realm name it.
            proxy_set_header Host $http_host;
        }

        # The replicas' internal endpoints are not exposed through the load balancer.
        location /internal/ {
            return 404;
        }
    }
}
"#;

/// The nginx binary: `NGINX_BIN`, else /usr/sbin/nginx, else `nginx` on PATH.
fn binary() -> PathBuf {
    if let Ok(b) = std::env::var("NGINX_BIN") {
        return PathBuf::from(b);
    }
    let sbin = Path::new("/usr/sbin/nginx");
    if sbin.exists() {
        return sbin.to_path_buf();
    }
    PathBuf::from("nginx")
}

/// Whether an nginx binary is installed (apt-get install nginx-light).
pub fn available() -> bool {
    Command::new(binary()).arg("-v").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

/// The configuration text for `listen` in front of `upstreams` (`host:port` each).
pub fn config(dir: &Path, listen: &str, upstreams: &[String]) -> String {
    let servers: String = upstreams.iter().map(|u| format!("        server {u};\n")).collect();
    CONFIG_TEMPLATE
        .replace("{dir}", &dir.display().to_string())
        .replace("{listen}", listen)
        .replace("{servers}", &servers)
}

pub struct Nginx {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    pub addr: String,
    child: Child,
    dir: tempfile::TempDir,
}

impl Nginx {
    /// nginx listening on a free 127.0.0.1 port, balancing over `upstreams` (`host:port`).
    pub fn start(upstreams: &[String]) -> Nginx {
        assert!(!upstreams.is_empty(), "nginx needs at least one upstream");
        let dir = tempfile::tempdir().expect("nginx temp dir");
        // As root, nginx's worker runs as `nobody`: it must reach the temp paths under the dir.
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let addr = format!("127.0.0.1:{}", super::free_port());
        let conf = dir.path().join("nginx.conf");
        std::fs::write(&conf, config(dir.path(), &addr, upstreams)).unwrap();
        let stderr = std::fs::File::create(dir.path().join("stderr.log")).unwrap();
        let child = Command::new(binary())
            .arg("-p")
            .arg(dir.path())
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(stderr.try_clone().unwrap())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("start nginx ({}): {e} (apt-get install nginx-light)", binary().display()));
        let mut nginx = Nginx { url: format!("http://{addr}"), addr, child, dir };
        nginx.wait_up();
        nginx
    }

    fn wait_up(&mut self) {
        let start = Instant::now();
        while std::net::TcpStream::connect(&self.addr).is_err() {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("nginx exited ({status}): {}", self.logs());
            }
            assert!(start.elapsed() < Duration::from_secs(20), "nginx did not start: {}", self.logs());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// nginx's stderr and error log, for assertion messages.
    pub fn logs(&self) -> String {
        let read = |f: &str| std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default();
        format!("nginx stderr:\n{}\nnginx error.log ({}):\n{}", read("stderr.log"), self.dir.path().join("error.log").display(), read("error.log"))
    }

    /// The access log's lines so far.
    pub fn access_log(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default().lines().map(String::from).collect()
    }

    /// The replica (`host:port`) that answered each logged request, in order; requests nginx
    /// answered itself (`-`) are left out. When nginx tried several, the last one is given.
    pub fn upstreams_used(&self) -> Vec<String> {
        self.access_log()
            .iter()
            .filter_map(|l| l.rsplit_once(" upstream=").map(|(_, u)| u.trim()))
            .map(|u| u.rsplit(", ").next().unwrap_or(u).trim().to_string())
            .filter(|u| u != "-" && !u.is_empty())
            .collect()
    }

    /// Waits (up to 10 s) until the access log holds at least `n` lines: nginx writes a line
    /// once the response is sent, which can be just after the client has read it.
    pub fn wait_logged(&self, n: usize) {
        let start = Instant::now();
        while self.access_log().len() < n {
            assert!(start.elapsed() < Duration::from_secs(10), "nginx logged {} of {n} requests", self.access_log().len());
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: the master stops its worker too (a SIGKILLed master would orphan it).
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
