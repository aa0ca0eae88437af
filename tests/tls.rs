//! TLS for real. Upstream: Debian's docker-registry serving HTTPS with a certificate of a CA this
//! test makes, as the upstream of remotes: refused by default with the certificate problem
//! named, trusted through `ca_cert`, unchecked with `tls_validation: false`, client certificates
//! for an upstream that demands them, and through tinyproxy (with and without Basic credentials).
//! Served: `pulpish serve --tls-cert --tls-key` to skopeo, curl and the REST API.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};
use support::pki::Ca;
use support::registry::{fixture_layout, Auth, Registry, Tls};
use support::replica::Replica;
use support::{layout_blobs, run, Backend, TestServer, PASSWORD};

/// The image every upstream here serves: the fixture layout's `amd64` image.
const IMAGE: &str = "tls/app";

/// The test CA and what it signed, as files: `server/` holds a certificate for 127.0.0.1 and its
/// key; `certs/` is a container tools' cert dir (`ca.crt`, and `client.cert` + `client.key`).
struct Pki {
    ca_pem: String,
    client_cert: String,
    client_key: String,
    dir: tempfile::TempDir,
}

impl Pki {
    fn server_cert(&self) -> PathBuf {
        self.dir.path().join("server/cert.pem")
    }
    fn server_key(&self) -> PathBuf {
        self.dir.path().join("server/key.pem")
    }
    fn ca_file(&self) -> PathBuf {
        self.dir.path().join("certs/ca.crt")
    }
    fn cert_dir(&self) -> PathBuf {
        self.dir.path().join("certs")
    }
}

fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        let ca = Ca::new();
        let dir = tempfile::tempdir().unwrap();
        for sub in ["server", "certs"] {
            std::fs::create_dir(dir.path().join(sub)).unwrap();
        }
        let (cert, key) = ca.leaf("127.0.0.1");
        let (client_cert, client_key) = ca.leaf("pulpish client");
        let pki = Pki { ca_pem: ca.cert.pem(), client_cert, client_key, dir };
        std::fs::write(pki.server_cert(), cert).unwrap();
        std::fs::write(pki.server_key(), key).unwrap();
        std::fs::write(pki.ca_file(), &pki.ca_pem).unwrap();
        std::fs::write(pki.cert_dir().join("client.cert"), &pki.client_cert).unwrap();
        std::fs::write(pki.cert_dir().join("client.key"), &pki.client_key).unwrap();
        pki
    })
}

/// An HTTPS docker-registry holding IMAGE:latest, one per test binary; `client_certs` makes it
/// demand client certificates signed by the test CA.
fn upstream(client_certs: bool) -> &'static Registry {
    static PLAIN: OnceLock<Registry> = OnceLock::new();
    static MUTUAL: OnceLock<Registry> = OnceLock::new();
    (if client_certs { &MUTUAL } else { &PLAIN }).get_or_init(|| {
        let pki = pki();
        let ca = pki.ca_file();
        let registry = Registry::start_https(
            Auth::Anonymous,
            Tls { cert: &pki.server_cert(), key: &pki.server_key(), client_ca: client_certs.then_some(ca.as_path()) },
        );
        support::kill_at_exit(registry.pid());
        // skopeo verifies the registry against the CA and shows the client certificate.
        run(Command::new("skopeo")
            .args(["copy", "--quiet", "--dest-cert-dir"])
            .arg(pki.cert_dir())
            .arg(format!("oci:{}/layout:amd64", fixture_layout(false).display()))
            .arg(format!("docker://{}/{IMAGE}:latest", registry.addr)));
        registry
    })
}

/// The bytes of a blob of the fixture layout, as the upstream has them.
fn upstream_blob(digest: &str) -> Vec<u8> {
    std::fs::read(fixture_layout(false).join("layout/blobs/sha256").join(digest.trim_start_matches("sha256:"))).unwrap()
}

async fn remote(s: &TestServer, name: &str, upstream: &Registry, extra: Value) -> String {
    let mut body = json!({"name": name, "url": upstream.url(), "upstream_name": IMAGE, "policy": "on_demand"});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let (status, r) = s.post("remotes/container/container/", body).await;
    assert_eq!(status, StatusCode::CREATED, "{r}");
    r["pulp_href"].as_str().unwrap().to_string()
}

/// A repository on `remote`, distributed at `name`; its href.
async fn repository(s: &TestServer, name: &str, remote: &str) -> String {
    let (status, r) = s.post("repositories/container/container/", json!({"name": name, "remote": remote})).await;
    assert_eq!(status, StatusCode::CREATED, "{r}");
    let repo = r["pulp_href"].as_str().unwrap().to_string();
    s.completed(s.post("distributions/container/container/", json!({"name": name, "base_path": name, "repository": repo})).await).await;
    repo
}

/// Syncs `repo` from its own remote or from `remote`; the finished task.
async fn sync(s: &TestServer, repo: &str, remote: Option<&str>) -> Value {
    let body = remote.map(|r| json!({"remote": r})).unwrap_or(json!({}));
    let (status, t) = s.post(&format!("{repo}sync/"), body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{t}");
    s.wait_task(t["task"].as_str().unwrap()).await
}

fn failure(task: &Value) -> String {
    assert_eq!(task["state"], "failed", "{task}");
    task["error"]["description"].as_str().unwrap().to_string()
}

/// The blob digests of the latest version of `repo`.
async fn blobs(s: &TestServer, repo: &str) -> Vec<String> {
    let version = s.get(repo).await.1["latest_version_href"].as_str().unwrap().to_string();
    let (status, page) = s.get(&format!("content/container/blobs/?repository_version={version}&limit=1000")).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let digests: Vec<String> = page["results"].as_array().unwrap().iter().map(|b| b["digest"].as_str().unwrap().to_string()).collect();
    assert_eq!(digests.iter().cloned().collect::<BTreeSet<_>>(), amd64_image().1, "the image's config and layers: {page}");
    digests
}

/// A synced `repo` (on demand: no blob bytes yet) pulled blob by blob through /v2/`name`: each
/// answer holds the upstream's bytes, fetched over TLS and then stored.
async fn pull_every_blob(s: &TestServer, name: &str, repo: &str) {
    let digests = blobs(s, repo).await;
    assert_eq!(s.count("artifacts/").await, 0, "an on-demand sync stores no blob bytes");
    for digest in &digests {
        let resp = s.client.get(format!("{}/v2/{name}/blobs/{digest}", s.base)).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{digest}: {}", resp.text().await.unwrap());
        assert!(resp.bytes().await.unwrap() == upstream_blob(digest), "{digest}: the upstream's bytes");
    }
    // The artifact row is written as the download finishes, which may be just after the reply.
    let start = Instant::now();
    while s.count("artifacts/").await < digests.len() as i64 {
        assert!(start.elapsed() < Duration::from_secs(20), "every pulled blob is stored");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(s.count("artifacts/").await, digests.len() as i64);
}

/// A blob pull through /v2/`name` whose upstream request fails: a 502 with the OCI error's
/// message, and nothing stored.
async fn refused_pull(s: &TestServer, name: &str, digest: &str) -> String {
    let resp = s.client.get(format!("{}/v2/{name}/blobs/{digest}", s.base)).send().await.unwrap();
    let status = resp.status();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(s.count("artifacts/").await, 0, "a refused download stores nothing");
    body["errors"][0]["message"].as_str().unwrap().to_string()
}

async fn an_untrusted_certificate_is_refused_naming_the_problem(backend: Backend) {
    let upstream = upstream(false);
    let s = TestServer::start(backend).await;
    let remote = remote(&s, "default", upstream, json!({})).await;
    let repo = repository(&s, "untrusted", &remote).await;
    let error = failure(&sync(&s, &repo, None).await);
    assert!(error.contains("invalid peer certificate: UnknownIssuer") && error.contains("ca_cert"), "{error}");
    assert!(s.get(&repo).await.1["latest_version_href"].as_str().unwrap().ends_with("/versions/0/"), "nothing recorded");

    // Synced while the remote trusted the CA; pulled once it no longer does.
    s.completed(s.patch(&remote, json!({"ca_cert": pki().ca_pem})).await).await;
    assert_eq!(sync(&s, &repo, None).await["state"], "completed");
    s.completed(s.patch(&remote, json!({"ca_cert": null})).await).await;
    let error = refused_pull(&s, "untrusted", &blobs(&s, &repo).await[0]).await;
    assert!(error.contains(&upstream.addr) && error.contains("invalid peer certificate: UnknownIssuer"), "{error}");
}

async fn ca_cert_trusts_the_upstream(backend: Backend) {
    let upstream = upstream(false);
    let s = TestServer::start(backend).await;
    let remote = remote(&s, "trusting", upstream, json!({"ca_cert": pki().ca_pem})).await;
    let repo = repository(&s, "trusted", &remote).await;
    assert_eq!(sync(&s, &repo, None).await["state"], "completed");
    pull_every_blob(&s, "trusted", &repo).await;
}

async fn tls_validation_false_accepts_the_unknown_certificate(backend: Backend) {
    let upstream = upstream(false);
    let s = TestServer::start(backend).await;
    let remote = remote(&s, "unchecked", upstream, json!({"tls_validation": false})).await;
    let repo = repository(&s, "unchecked", &remote).await;
    assert_eq!(sync(&s, &repo, None).await["state"], "completed");
    pull_every_blob(&s, "unchecked", &repo).await;
}

async fn client_certificates_for_an_upstream_that_demands_them(backend: Backend) {
    let upstream = upstream(true);
    let pki = pki();
    let s = TestServer::start(backend).await;
    let remote = remote(&s, "mutual", upstream, json!({"ca_cert": pki.ca_pem})).await;
    let repo = repository(&s, "mutual", &remote).await;
    // The upstream's alert (TLS 1.3: after the handshake) or, when it is lost, the connection it
    // closes; either way the message names the setting.
    let error = failure(&sync(&s, &repo, None).await);
    assert!(error.contains("set the remote's client_cert and client_key"), "{error}");

    let identity = json!({"client_cert": pki.client_cert, "client_key": pki.client_key});
    s.completed(s.patch(&remote, identity.clone()).await).await;
    assert_eq!(sync(&s, &repo, None).await["state"], "completed");
    // Without the certificate again, the blob downloads are refused the same way.
    s.completed(s.patch(&remote, json!({"client_cert": null, "client_key": null})).await).await;
    let error = refused_pull(&s, "mutual", &blobs(&s, &repo).await[0]).await;
    assert!(error.contains(&upstream.addr) && error.contains("set the remote's client_cert and client_key"), "{error}");
    s.completed(s.patch(&remote, identity).await).await;
    pull_every_blob(&s, "mutual", &repo).await;
}

/// tinyproxy in the foreground on a free port, logging to its own file, with Basic credentials
/// when given.
struct Tinyproxy {
    port: u16,
    child: Child,
    dir: tempfile::TempDir,
}

impl Tinyproxy {
    fn start(credentials: Option<(&str, &str)>) -> Tinyproxy {
        let dir = tempfile::tempdir().unwrap();
        let port = support::free_port();
        let auth = credentials.map(|(u, p)| format!("BasicAuth {u} {p}\n")).unwrap_or_default();
        // No ConnectPort line: CONNECT to any port (the upstream is not on 443).
        let config = format!(
            "Port {port}\nListen 127.0.0.1\nTimeout 60\nMaxClients 20\nAllow 127.0.0.1\nLogLevel Connect\nLogFile \"{}\"\n{auth}",
            dir.path().join("tinyproxy.log").display()
        );
        std::fs::write(dir.path().join("tinyproxy.conf"), config).unwrap();
        let child = Command::new("tinyproxy")
            .arg("-d")
            .arg("-c")
            .arg(dir.path().join("tinyproxy.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tinyproxy (apt-get install tinyproxy)");
        let proxy = Tinyproxy { port, child, dir };
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(start.elapsed() < Duration::from_secs(10), "tinyproxy did not start: {}", proxy.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        proxy
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("tinyproxy.log")).unwrap_or_default()
    }

    /// Tunnels the proxy was asked to open to `addr`.
    fn connects_to(&self, addr: &str) -> usize {
        self.log().lines().filter(|l| l.contains(&format!("CONNECT {addr} "))).count()
    }
}

impl Drop for Tinyproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn through_a_forward_proxy(backend: Backend) {
    let upstream = upstream(false);
    let proxy = Tinyproxy::start(None);
    let s = TestServer::start(backend).await;
    let remote = remote(&s, "proxied", upstream, json!({"ca_cert": pki().ca_pem, "proxy_url": proxy.url()})).await;
    let repo = repository(&s, "proxied", &remote).await;
    assert_eq!(sync(&s, &repo, None).await["state"], "completed");
    let after_sync = proxy.connects_to(&upstream.addr);
    assert!(after_sync >= 1, "the sync tunnelled through the proxy: {}", proxy.log());
    // Downloads share the sync's client for the remote, and with it the tunnel it keeps open: a
    // changed remote gets a new client, whose downloads must open a tunnel of their own.
    s.completed(s.patch(&remote, json!({"download_concurrency": 3})).await).await;
    pull_every_blob(&s, "proxied", &repo).await;
    assert!(proxy.connects_to(&upstream.addr) > after_sync, "so did the blob downloads: {}", proxy.log());
}

async fn a_proxy_with_basic_credentials(backend: Backend) {
    let upstream = upstream(false);
    let proxy = Tinyproxy::start(Some(("puller", "pr0xy-pass")));
    let s = TestServer::start(backend).await;
    let pem = &pki().ca_pem;
    let anonymous = remote(&s, "anonymous", upstream, json!({"ca_cert": pem, "proxy_url": proxy.url()})).await;
    let wrong = remote(&s, "wrong", upstream, json!({"ca_cert": pem, "proxy_url": proxy.url(), "proxy_username": "puller", "proxy_password": "nope"})).await;
    let right = remote(&s, "right", upstream, json!({"ca_cert": pem, "proxy_url": proxy.url(), "proxy_username": "puller", "proxy_password": "pr0xy-pass"})).await;
    let repo = repository(&s, "behind-proxy", &right).await;
    // tinyproxy answers no credentials with 407 and wrong ones with 401.
    for (refused, why) in [(&anonymous, "proxy authorization required"), (&wrong, "unsuccessful")] {
        let error = failure(&sync(&s, &repo, Some(refused)).await);
        let named = format!("the proxy {}/ did not open a tunnel to it ({why}): check the remote's proxy_url, proxy_username and proxy_password", proxy.url());
        assert!(error.contains(&named), "{error}");
    }
    assert_eq!(sync(&s, &repo, None).await["state"], "completed");
    pull_every_blob(&s, "behind-proxy", &repo).await;
    assert!(!proxy.log().contains("pr0xy-pass"), "the proxy never logs the password");
}

on_databases!(
    an_untrusted_certificate_is_refused_naming_the_problem,
    ca_cert_trusts_the_upstream,
    tls_validation_false_accepts_the_unknown_certificate,
    client_certificates_for_an_upstream_that_demands_them,
    through_a_forward_proxy,
    a_proxy_with_basic_credentials,
    pulpish_serves_https,
);

// ---------------------------------------------------------------------------------------------
// pulpish itself over HTTPS: the real binary with --tls-cert and --tls-key.

fn serve(dir: &Path, port: u16, args: &[&std::ffi::OsStr]) -> Command {
    let mut cmd = support::replica::pulpish();
    cmd.arg("serve")
        .args(["--bind", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(args)
        .env("PULPISH_ADMIN_PASSWORD", PASSWORD)
        .stdin(Stdio::null());
    cmd
}

async fn pulpish_serves_https(backend: Backend) {
    let pki = pki();
    let dir = tempfile::tempdir().unwrap();
    let database = support::fresh_database(backend, dir.path());
    let client = reqwest::Client::builder().add_root_certificate(reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).unwrap()).build().unwrap();
    let path = |p: PathBuf| p.display().to_string();
    let args = ["--database-url".into(), database, "--tls-cert".into(), path(pki.server_cert()), "--tls-key".into(), path(pki.server_key())];
    let mut served = Replica::serve(&args, "info", Some(&client)).await;
    let base = served.base.clone();

    // The REST API, with reqwest and with curl trusting the CA.
    let (status, created) = {
        let resp = client.post(format!("{base}/pulp/api/v3/repositories/container/container/")).basic_auth("admin", Some(PASSWORD)).json(&json!({"name": "over-tls"})).send().await.unwrap();
        (resp.status(), resp.json::<Value>().await.unwrap())
    };
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let href = created["pulp_href"].as_str().unwrap();
    let read: Value = serde_json::from_str(&run(Command::new("curl")
        .args(["-sSf", "--cacert"])
        .arg(pki.ca_file())
        .args(["-u", &format!("admin:{PASSWORD}")])
        .arg(format!("{base}{href}"))))
    .unwrap();
    assert_eq!(read["name"], "over-tls", "{read}");

    // skopeo pushes and pulls back over verified TLS (the CA in the cert dir).
    let host = served.addr.clone();
    run(Command::new("skopeo")
        .args(["copy", "--quiet", "--dest-tls-verify=true", "--dest-cert-dir"])
        .arg(pki.cert_dir())
        .args(["--dest-creds", &format!("admin:{PASSWORD}")])
        .arg(format!("oci:{}/layout:amd64", fixture_layout(false).display()))
        .arg(format!("docker://{host}/secure/app:latest")));
    let out = tempfile::tempdir().unwrap();
    run(Command::new("skopeo")
        .args(["copy", "--quiet", "--src-tls-verify=true", "--src-cert-dir"])
        .arg(pki.cert_dir())
        .args(["--src-creds", &format!("admin:{PASSWORD}")])
        .arg(format!("docker://{host}/secure/app:latest"))
        .arg(format!("oci:{}:x", out.path().display())));
    let (manifest, mut pushed) = amd64_image();
    pushed.insert(manifest);
    assert_eq!(layout_blobs(out.path()), pushed, "the image came back byte for byte");

    // Plain HTTP on the HTTPS port fails for that client only.
    let plain = reqwest::get(format!("http://{host}/pulp/api/v3/status/")).await;
    assert!(plain.is_err(), "plain HTTP is not answered: {plain:?}");
    assert!(served.is_running(), "pulpish still runs: {}", served.log());
    let again = client.get(format!("{base}/pulp/api/v3/status/")).send().await.unwrap();
    assert_eq!(again.status(), StatusCode::OK);
    assert!(!served.log().contains("panicked"), "{}", served.log());
}

/// The manifest digest and the blob digests (config and layers) of the fixture layout's `amd64`
/// image.
fn amd64_image() -> (String, BTreeSet<String>) {
    let layout = fixture_layout(false).join("layout");
    let index: Value = serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifest = index["manifests"].as_array().unwrap().iter().find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == "amd64").unwrap();
    let digest = manifest["digest"].as_str().unwrap().to_string();
    let body: Value = serde_json::from_slice(&upstream_blob(&digest)).unwrap();
    let mut blobs: BTreeSet<String> = body["layers"].as_array().unwrap().iter().map(|l| l["digest"].as_str().unwrap().to_string()).collect();
    blobs.insert(body["config"]["digest"].as_str().unwrap().to_string());
    (digest, blobs)
}

/// `serve` with unusable TLS files stops at once, naming the flag and the file.
#[test]
fn unusable_tls_files_stop_serve_naming_the_flag_and_file() {
    let pki = pki();
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "this is not PEM\n").unwrap();
    let other_key = dir.path().join("other.key");
    std::fs::write(&other_key, Ca::new().leaf("127.0.0.1").1).unwrap();
    let (cert, key) = (pki.server_cert(), pki.server_key());
    let cases: [(&Path, &Path, &str, &Path, &str); 5] = [
        (&missing, &key, "--tls-cert", &missing, "cannot read it"),
        (&cert, &missing, "--tls-key", &missing, "cannot read it"),
        (&garbage, &key, "--tls-cert", &garbage, "no PEM certificate"),
        (&cert, &garbage, "--tls-key", &garbage, "no PEM private key"),
        (&cert, &other_key, "--tls-key", &other_key, "certificate"),
    ];
    for (cert, key, flag, file, reason) in cases {
        let out = serve(dir.path(), support::free_port(), &["--tls-cert".as_ref(), cert.as_os_str(), "--tls-key".as_ref(), key.as_os_str()]).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{flag} {}: {stderr}", file.display());
        let error = stderr.lines().find(|l| l.starts_with("Error: ")).unwrap_or_else(|| panic!("an error line: {stderr}"));
        assert!(error.contains(&format!("{flag} {}", file.display())) && error.contains(reason), "{error}");
    }
    // One flag without the other is a usage error naming the missing one.
    let out = serve(dir.path(), support::free_port(), &["--tls-cert".as_ref(), cert.as_os_str()]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--tls-key"), "{}", String::from_utf8_lossy(&out.stderr));
}

/// With TLS on, the other replicas are told to reach this one at https://BIND.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_advertise_url_is_https_with_tls() {
    let pki = pki();
    let s = TestServer::start_on(Backend::Sqlite, |c| {
        c.tls.tls_cert = Some(pki.server_cert());
        c.tls.tls_key = Some(pki.server_key());
    })
    .await;
    let port = s.base.rsplit(':').next().unwrap();
    assert_eq!(s.state.fetcher.advertise_url(&s.state), format!("https://127.0.0.1:{port}"));
    let plain = TestServer::start(Backend::Sqlite).await;
    assert_eq!(plain.state.fetcher.advertise_url(&plain.state), plain.base);
}

/// Two replicas on one database and bucket, serving HTTPS with one certificate of a private CA:
/// a cold blob asked of both is downloaded once, the second replica relaying the first one's
/// download over HTTPS (replicas trust the certificate they serve themselves).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_serving_https_relay_downloads_to_each_other() {
    use support::fault::{fault_image, BlobBehaviour, FaultUpstream};
    if !support::garage::available() {
        return;
    }
    let (pki, g) = (pki(), support::garage::instance());
    let (bucket, url) = (g.create_bucket(), support::postgres::cluster().create_database());
    let replica = || {
        TestServer::start_with(tempfile::tempdir().unwrap(), url.clone(), |c| {
            g.apply_to(c, &bucket);
            c.tls.tls_cert = Some(pki.server_cert());
            c.tls.tls_key = Some(pki.server_key());
        })
    };
    let (a, b) = (replica().await, replica().await);
    let layer: Vec<u8> = (0..4u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let (state, digest) = fault_image(layer.clone());
    let upstream = FaultUpstream::start(state).await;
    upstream.set_blob(&digest, BlobBehaviour::Paced(Duration::from_millis(20)));
    let (status, remote) = a.post("remotes/container/container/", json!({"name": "fault", "url": upstream.url(), "upstream_name": "fault/app", "policy": "on_demand"})).await;
    assert_eq!(status, StatusCode::CREATED, "{remote}");
    let (status, repo) = a.post("repositories/container/container/", json!({"name": "fault", "remote": remote["pulp_href"]})).await;
    assert_eq!(status, StatusCode::CREATED, "{repo}");
    a.completed(a.post(&format!("{}sync/", repo["pulp_href"].as_str().unwrap()), json!({})).await).await;
    a.completed(a.post("distributions/container/container/", json!({"name": "fault", "base_path": "fault/app", "repository": repo["pulp_href"]})).await).await;

    let get = |s: &TestServer| {
        let req = s.client.get(format!("{}/v2/fault/app/blobs/{digest}", s.base));
        async move { req.send().await.unwrap().bytes().await.unwrap() }
    };
    let first = tokio::spawn(get(&a));
    let deadline = Instant::now() + Duration::from_secs(30);
    while a.state.metrics.downloads_started.get() == 0 {
        assert!(Instant::now() < deadline, "replica A started its download");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let second = get(&b).await;
    assert!(second == layer, "replica B served the blob's bytes ({} of {})", second.len(), layer.len());
    assert!(first.await.unwrap() == layer, "replica A served the blob's bytes");
    assert_eq!(b.state.metrics.relays_started.get(), 1, "B relayed A's download");
    assert_eq!(b.state.metrics.downloads_started.get(), 0, "B did not download from the remote");
    assert_eq!(upstream.blob_gets(&digest), 1, "the remote saw one GET of the blob");
    upstream.stop().await;
}
