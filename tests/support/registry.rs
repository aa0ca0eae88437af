//! A real upstream: Debian's `docker-registry` (CNCF distribution) on 127.0.0.1, plain or
//! behind htpasswd, filled with the fixture images built by tests/fixtures/build.sh.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub struct Registry {
    pub addr: String,
    child: Child,
    dir: tempfile::TempDir,
    scheme: &'static str,
}

/// HTTPS for the registry (`http.tls`): its certificate and key, and the CAs whose client
/// certificates it demands (`clientcas`), if any.
#[derive(Clone, Copy)]
pub struct Tls<'a> {
    pub cert: &'a Path,
    pub key: &'a Path,
    pub client_ca: Option<&'a Path>,
}

#[derive(Clone, Copy)]
pub enum Auth<'a> {
    Anonymous,
    Htpasswd { user: &'a str, password: &'a str },
    Token { realm: &'a str, service: &'a str, issuer: &'a str, root_cert: &'a Path },
}

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

/// The OCI layout with the fixture images, built once per test binary (deterministic).
pub fn fixture_layout(big: bool) -> &'static Path {
    static SMALL: OnceLock<PathBuf> = OnceLock::new();
    static BIG: OnceLock<PathBuf> = OnceLock::new();
    let cell = if big { &BIG } else { &SMALL };
    cell.get_or_init(|| {
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(if big { "fixtures-big" } else { "fixtures" });
        let mut cmd = Command::new("bash");
        cmd.arg(fixtures_dir().join("build.sh")).arg(&out);
        if big {
            cmd.arg("--big");
        }
        let status = cmd.status().expect("run tests/fixtures/build.sh");
        assert!(status.success(), "tests/fixtures/build.sh failed");
        out
    })
}

impl Registry {
    pub fn start(auth: Auth) -> Registry {
        Self::launch(auth, None)
    }

    pub fn start_https(auth: Auth, tls: Tls) -> Registry {
        Self::launch(auth, Some(tls))
    }

    fn launch(auth: Auth, tls: Option<Tls>) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let port = super::free_port();
        let addr = format!("127.0.0.1:{port}");
        let auth_section = match auth {
            Auth::Anonymous => String::new(),
            Auth::Htpasswd { user, password } => {
                let out = Command::new("htpasswd").args(["-Bbn", user, password]).output().expect("htpasswd");
                assert!(out.status.success());
                std::fs::write(dir.path().join("htpasswd"), out.stdout).unwrap();
                format!("auth:\n  htpasswd:\n    realm: pulpish-test\n    path: {}\n", dir.path().join("htpasswd").display())
            }
            Auth::Token { realm, service, issuer, root_cert } => format!(
                "auth:\n  token:\n    realm: {realm}\n    service: {service}\n    issuer: {issuer}\n    rootcertbundle: {}\n",
                root_cert.display()
            ),
        };
        let tls_section = tls.map(|t| {
            let clientcas = t.client_ca.map(|ca| format!("    clientcas:\n      - {}\n", ca.display())).unwrap_or_default();
            format!("  tls:\n    certificate: {}\n    key: {}\n{clientcas}", t.cert.display(), t.key.display())
        });
        let config = format!(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n  secret: pulpish-test\n{}log:\n  level: info\n  accesslog:\n    disabled: false\n{auth_section}",
            dir.path().join("data").display(),
            tls_section.as_deref().unwrap_or_default()
        );
        std::fs::write(dir.path().join("config.yml"), config).unwrap();
        let child = serve(dir.path());
        let registry = Registry { addr, child, dir, scheme: if tls.is_some() { "https" } else { "http" } };
        registry.wait_up();
        registry
    }

    fn wait_up(&self) {
        let start = Instant::now();
        while std::net::TcpStream::connect(&self.addr).is_err() {
            assert!(start.elapsed() < Duration::from_secs(20), "docker-registry did not start: {}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    /// Pushes the fixture repositories (tests/fixtures/push.sh); returns `ref → manifest digest`.
    pub fn push_fixtures(&self, big: bool, creds: Option<&str>) -> std::collections::HashMap<String, String> {
        let layout = fixture_layout(big);
        let mut cmd = Command::new("bash");
        cmd.arg(fixtures_dir().join("push.sh")).arg(layout).arg(&self.addr);
        if let Some(c) = creds {
            cmd.arg(c);
        }
        let out = cmd.output().expect("run tests/fixtures/push.sh");
        assert!(out.status.success(), "push.sh failed: {}\n{}", String::from_utf8_lossy(&out.stderr), self.log());
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let mut parts = l.split_whitespace();
                let (r, d) = (parts.next()?, parts.next()?);
                let r = r.strip_prefix(&format!("{}/", self.addr)).unwrap_or(r);
                d.starts_with("sha256:").then(|| (r.to_string(), d.to_string()))
            })
            .collect()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Access-log lines of GET requests for blobs (optionally one digest).
    pub fn blob_gets(&self, digest: Option<&str>) -> usize {
        self.log()
            .lines()
            .filter(|l| l.contains("\"GET /v2/") && l.contains("/blobs/sha256:"))
            .filter(|l| digest.is_none_or(|d| l.contains(d)))
            .count()
    }

    /// Copies one reference to another name inside this registry (skopeo).
    pub fn copy(&self, from: &str, to: &str, creds: Option<&str>) {
        let mut cmd = Command::new("skopeo");
        cmd.args(["copy", "--quiet", "--src-tls-verify=false", "--dest-tls-verify=false"]);
        if let Some(c) = creds {
            cmd.args(["--src-creds", c, "--dest-creds", c]);
        }
        let out = cmd
            .arg(format!("docker://{}/{from}", self.addr))
            .arg(format!("docker://{}/{to}", self.addr))
            .output()
            .unwrap();
        assert!(out.status.success(), "skopeo copy: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Deletes a tag by deleting the manifest it points to (distribution has no tag delete).
    pub fn delete_manifest(&self, name: &str, digest: &str) {
        let out = Command::new("curl")
            .args(["-sf", "-X", "DELETE", &format!("http://{}/v2/{name}/manifests/{digest}", self.addr)])
            .output()
            .unwrap();
        assert!(out.status.success(), "delete manifest");
    }

    /// Writes raw manifest bytes under a tag with curl.
    pub fn put_manifest(&self, name: &str, tag: &str, media_type: &str, bytes: &[u8]) {
        let mut child = Command::new("curl")
            .args(["-sf", "-X", "PUT", "-H", &format!("Content-Type: {media_type}"), "--data-binary", "@-"])
            .arg(format!("http://{}/v2/{name}/manifests/{tag}", self.addr))
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(bytes).unwrap();
        assert!(child.wait().unwrap().success(), "put manifest");
    }
}

impl Registry {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Pushes one tag of the fixture layout (`amd64`, `index`, ...) as `dest` (`name:tag`).
    pub fn push_layout_tag(&self, layout_tag: &str, dest: &str, docker_format: bool, creds: Option<&str>) {
        let layout = fixture_layout(false);
        let mut cmd = Command::new("skopeo");
        cmd.args(["copy", "--quiet", "--dest-tls-verify=false"]);
        if docker_format {
            cmd.args(["--format", "v2s2"]);
        }
        if layout_tag == "index" {
            cmd.arg("--all");
        }
        if let Some(c) = creds {
            cmd.args(["--dest-creds", c]);
        }
        let out = cmd
            .arg(format!("oci:{}/layout:{layout_tag}", layout.display()))
            .arg(format!("docker://{}/{dest}", self.addr))
            .output()
            .unwrap();
        assert!(out.status.success(), "skopeo copy: {}", String::from_utf8_lossy(&out.stderr));
    }
}

/// `docker-registry serve` on the config in `dir`, its log appended to `dir/registry.log`.
fn serve(dir: &Path) -> Child {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("registry.log")).unwrap();
    Command::new("docker-registry")
        .arg("serve")
        .arg(dir.join("config.yml"))
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()
        .expect("start docker-registry (apt-get install docker-registry)")
}

impl Registry {
    /// Stops the registry (SIGKILL): its port refuses connections until `start_again`.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the registry again on the same port and storage, after `stop`.
    pub fn start_again(&mut self) {
        self.child = serve(self.dir.path());
        self.wait_up();
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One upstream per test binary, filled with every fixture, for tests that only read from it.
pub fn shared_upstream(big: bool) -> &'static (Registry, std::collections::HashMap<String, String>) {
    static SMALL: OnceLock<(Registry, std::collections::HashMap<String, String>)> = OnceLock::new();
    static BIG: OnceLock<(Registry, std::collections::HashMap<String, String>)> = OnceLock::new();
    (if big { &BIG } else { &SMALL }).get_or_init(|| {
        let r = Registry::start(Auth::Anonymous);
        super::kill_at_exit(r.pid());
        let refs = r.push_fixtures(big, None);
        (r, refs)
    })
}
