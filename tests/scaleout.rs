//! The production shape: three replicas, each with its own empty data dir, on one PostgreSQL
//! database and one Garage bucket, behind nginx round-robin with no affinity. Real clients
//! (skopeo, podman, the Docker engine) push and pull through nginx.

mod support;

use std::collections::{BTreeSet, HashSet};
use std::process::Command;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::Digest;
use support::garage;
use support::nginx::Nginx;
use support::registry::{fixture_layout, Auth, Registry};
use support::replica::{call, wait_task, Replica};
use support::{layout_blobs, run};

const CREDS: &str = "admin:test-admin-password";

struct Cluster {
    replicas: Vec<Replica>,
    nginx: Nginx,
    bucket: String,
}

impl Cluster {
    async fn start(n: usize) -> Option<Cluster> {
        if !garage::available() || !support::nginx::available() {
            println!("SKIPPED: garage or nginx is not installed (.ci/run installs both)");
            return None;
        }
        let g = garage::instance();
        let bucket = g.create_bucket();
        let db = support::postgres::cluster().create_database();
        let mut replicas = Vec::new();
        for _ in 0..n {
            replicas.push(Replica::start(&db, &g.s3_args(&bucket)).await);
        }
        let nginx = Nginx::start(&replicas.iter().map(|r| r.addr.clone()).collect::<Vec<_>>());
        Some(Cluster { replicas, nginx, bucket })
    }

    /// Every replica's log, for failure messages.
    fn logs(&self) -> String {
        self.replicas.iter().map(|r| format!("--- {} ---\n{}", r.addr, r.log())).collect()
    }

    fn host(&self) -> String {
        self.nginx.url.trim_start_matches("http://").to_string()
    }

    /// The replicas (by address) that answered requests whose request line contains `needle`.
    fn served_by(&self, needle: &str) -> HashSet<String> {
        self.nginx
            .access_log()
            .iter()
            .filter(|l| l.contains(needle))
            .filter_map(|l| l.rsplit_once(" upstream=").map(|(_, u)| u.trim().to_string()))
            .collect()
    }
}

/// How long a sync or distribution task may take here (a hang guard).
const TASK_PATIENCE: Duration = Duration::from_secs(60);

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{:x}", sha2::Sha256::digest(bytes))
}

fn podman(root: &std::path::Path, args: &[&str]) -> String {
    run(Command::new("podman")
        .arg("--root")
        .arg(root.join("root"))
        .arg("--runroot")
        .arg(root.join("run"))
        .args(["--storage-driver", "vfs"])
        .args(args))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_spread_over_three_replicas_pulls_back_identical_through_nginx() {
    let Some(c) = Cluster::start(3).await else { return };
    let h = c.host();
    let layout = format!("{}/layout", fixture_layout(false).display());

    // skopeo pushes each blob as POST, PATCH, PUT: round robin sends them to different replicas.
    let push = Command::new("skopeo").args(["copy", "--quiet", "--all", "--dest-tls-verify=false", "--dest-creds", CREDS]).arg(format!("oci:{layout}:index")).arg(format!("docker://{h}/pushed/index:latest")).output().unwrap();
    assert!(push.status.success(), "{}\n{}", String::from_utf8_lossy(&push.stderr), c.logs());
    let upload_requests = c.served_by("/v2/pushed/index/blobs/uploads/");
    assert_eq!(upload_requests.len(), 3, "the upload requests landed on all three replicas: {upload_requests:?}");
    let g = garage::instance();
    assert_eq!(g.list_keys(&c.bucket, "uploads/"), vec![], "no staged parts left once the pushes finished");
    assert!(c.replicas.iter().all(|r| support::scratch_files(&r.data.path().join("data")).is_empty()), "no scratch files left on any replica");

    // Pull back through nginx: the manifest is byte-identical, every blob has its digest.
    let index: Value = serde_json::from_slice(&std::fs::read(format!("{layout}/index.json")).unwrap()).unwrap();
    let pushed_digest = index["manifests"].as_array().unwrap().iter().find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == "index").unwrap()["digest"].as_str().unwrap().to_string();
    let raw = run(Command::new("skopeo").args(["inspect", "--raw", "--tls-verify=false"]).arg(format!("docker://{h}/pushed/index:latest")));
    assert_eq!(sha256(raw.as_bytes()), pushed_digest, "the index reads back byte-identical");
    let back = tempfile::tempdir().unwrap();
    run(Command::new("skopeo").args(["copy", "--quiet", "--all", "--src-tls-verify=false"]).arg(format!("docker://{h}/pushed/index:latest")).arg(format!("oci:{}:x", back.path().display())));
    let pulled = layout_blobs(back.path());
    let blob_gets = c.served_by("GET /v2/pushed/index/blobs/");
    assert!(blob_gets.len() >= 2, "blob GETs were spread over replicas: {blob_gets:?}");
    let (_, artifacts) = call(&c.nginx.url, reqwest::Method::GET, "artifacts/?limit=1000", None).await;
    let stored: BTreeSet<String> = artifacts["results"].as_array().unwrap().iter().map(|a| format!("sha256:{}", a["sha256"].as_str().unwrap())).collect();
    // The layout also holds the manifests, which are not artifacts.
    assert!(!stored.is_empty() && stored.is_subset(&pulled), "every stored artifact was pulled back with its digest");
    let keys: BTreeSet<String> = g.list_keys(&c.bucket, "artifact/").into_iter().map(|(k, _)| k).collect();
    for digest in &stored {
        let hex = digest.trim_start_matches("sha256:");
        assert!(keys.contains(&format!("artifact/{}/{}", &hex[..2], &hex[2..])), "{digest} is in the bucket under its content address");
    }

    // podman through nginx, both platforms.
    let root = tempfile::tempdir().unwrap();
    for arch in ["amd64", "arm64"] {
        podman(root.path(), &["pull", "--quiet", "--tls-verify=false", "--arch", arch, &format!("{h}/pushed/index:latest")]);
    }

    // The Docker engine, where one answers on this machine.
    let info = Command::new("docker").args(["info", "--format", "{{.ServerVersion}}"]).output().ok();
    if info.is_some_and(|o| o.status.success()) {
        let image = format!("{h}/pushed/index:latest");
        let out = run(Command::new("docker").args(["pull", &image]));
        assert!(out.contains(&pushed_digest), "docker reports the pushed digest: {out}");
        let _ = Command::new("docker").args(["rmi", "-f", &image]).output();
    } else {
        println!("SKIPPED (docker part): no Docker engine answers `docker info`");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_run_through_one_replica_serves_on_the_others_at_once() {
    let Some(c) = Cluster::start(3).await else { return };
    let registry = Registry::start(Auth::Anonymous);
    registry.push_layout_tag("index", "fixtures/index:latest", false, None);
    let a = &c.replicas[0].base;
    let (status, remote) = call(a, reqwest::Method::POST, "remotes/container/container/", Some(json!({"name": "up", "url": registry.url(), "upstream_name": "fixtures/index", "policy": "on_demand"}))).await;
    assert_eq!(status, StatusCode::CREATED, "{remote}");
    let (_, repo) = call(a, reqwest::Method::POST, "repositories/container/container/", Some(json!({"name": "mirror", "remote": remote["pulp_href"]}))).await;
    let href = repo["pulp_href"].as_str().unwrap().to_string();
    let (_, t) = call(a, reqwest::Method::POST, &format!("{href}sync/"), Some(json!({}))).await;
    let t = wait_task(a, t["task"].as_str().unwrap(), TASK_PATIENCE).await;
    assert_eq!(t["state"], "completed", "{t}");
    let (_, t) = call(a, reqwest::Method::POST, "distributions/container/container/", Some(json!({"name": "mirror", "base_path": "mirror/index", "repository": href}))).await;
    assert_eq!(wait_task(a, t["task"].as_str().unwrap(), TASK_PATIENCE).await["state"], "completed");

    // Replicas B and C pull every platform at the same time, each directly, twice each.
    let pull = |host: String| {
        std::thread::spawn(move || {
            let out = tempfile::tempdir().unwrap();
            run(Command::new("skopeo").args(["copy", "--quiet", "--all", "--src-tls-verify=false"]).arg(format!("docker://{host}/mirror/index:latest")).arg(format!("oci:{}:x", out.path().display())));
            layout_blobs(out.path())
        })
    };
    let pulls: Vec<_> = c.replicas[1..].iter().flat_map(|r| [pull(r.addr.clone()), pull(r.addr.clone())]).collect();
    let results: Vec<BTreeSet<String>> = pulls.into_iter().map(|p| p.join().unwrap()).collect();
    assert!(results.windows(2).all(|w| w[0] == w[1]), "every pull got the same verified blobs");
    let (_, blobs) = call(a, reqwest::Method::GET, "content/container/blobs/?limit=1000", None).await;
    let distinct = blobs["results"].as_array().unwrap().len();
    assert!(results[0].len() >= distinct, "every synced blob was pulled");
    assert_eq!(registry.blob_gets(Some("/v2/fixtures/index/blobs/")), distinct, "one upstream GET per blob for four pulls on two replicas");
    let (_, artifacts) = call(a, reqwest::Method::GET, "artifacts/?limit=1000", None).await;
    assert_eq!(artifacts["count"].as_u64().unwrap() as usize, distinct, "each blob recorded once");

    // Replica A, which fetched nothing itself, serves them from the bucket.
    assert_eq!(pull(c.replicas[0].addr.clone()).join().unwrap(), results[0]);
    assert_eq!(registry.blob_gets(Some("/v2/fixtures/index/blobs/")), distinct, "served from the store");
}
