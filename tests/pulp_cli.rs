//! pulp-cli and pulp-glue 0.41.1 from PyPI, unmodified (installed by `.ci/pulp-cli-venv`, which
//! this test runs itself), drive the whole container workflow against pulpish. Each command must
//! exit 0; its output is checked against what the API holds; then skopeo pulls what pulp-cli set
//! up.

mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::fault::{fault_image, BlobBehaviour, FaultUpstream};
use support::registry::Registry;
use support::{Backend, TestServer, PASSWORD};

fn pulp_executable() -> PathBuf {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../.ci/pulp-cli-venv");
    let out = Command::new("bash").arg(script).output().expect("run .ci/pulp-cli-venv");
    assert!(out.status.success(), ".ci/pulp-cli-venv failed (it installs pulp-cli from PyPI): {}", String::from_utf8_lossy(&out.stderr));
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// pulp-cli pointed at one server, with its own (empty) config and API-document cache.
struct Cli {
    pulp: PathBuf,
    base: String,
    home: tempfile::TempDir,
}

impl Cli {
    fn new(s: &TestServer) -> Self {
        Cli { pulp: pulp_executable(), base: s.base.clone(), home: tempfile::tempdir().unwrap() }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.pulp);
        c.env("HOME", self.home.path())
            .env("XDG_CONFIG_HOME", self.home.path().join("config"))
            .env("XDG_CACHE_HOME", self.home.path().join("cache"))
            .args(["--base-url", &self.base, "--username", "admin", "--password", PASSWORD, "--format", "json"])
            .args(args);
        c
    }

    /// Runs a command that must succeed; its stdout.
    fn run(&self, args: &[&str]) -> String {
        let out = self.command(args).output().expect("run pulp");
        assert!(
            out.status.success(),
            "pulp {} exited {:?}\nstdout: {}\nstderr: {}",
            args.join(" "),
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs a command that must succeed and print JSON.
    fn json(&self, args: &[&str]) -> Value {
        let out = self.run(args);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("pulp {}: not JSON ({e}): {out}", args.join(" ")))
    }

    /// Runs a command that must fail; its stderr.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.command(args).output().expect("run pulp");
        assert!(!out.status.success(), "pulp {} succeeded: {}", args.join(" "), String::from_utf8_lossy(&out.stdout));
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

fn names(list: &Value) -> Vec<String> {
    let mut v: Vec<String> = list.as_array().unwrap().iter().map(|o| o["name"].as_str().unwrap().to_string()).collect();
    v.sort();
    v
}

fn field<'a>(v: &'a Value, name: &str) -> &'a str {
    v[name].as_str().unwrap_or_else(|| panic!("no {name} in {v}"))
}

async fn pulp_cli_drives_the_container_workflow(backend: Backend) {
    let upstream = Registry::start(support::registry::Auth::Anonymous);
    upstream.push_layout_tag("index", "fixtures/index:latest", false, None);
    let s = TestServer::start(backend).await;
    let cli = Cli::new(&s);

    // status: the versions pulp-cli requires, as the document advertises them.
    let status = cli.json(&["status"]);
    let versions: Vec<(String, String)> = status["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (field(v, "component").to_string(), field(v, "version").to_string()))
        .collect();
    assert!(versions.iter().any(|(c, _)| c == "core") && versions.iter().any(|(c, _)| c == "container"), "{status}");
    assert_eq!(status["database_connection"]["connected"], true);

    // Remotes.
    let remote = cli.json(&["container", "remote", "create", "--name", "index", "--url", &upstream.url(), "--upstream-name", "fixtures/index", "--policy", "on_demand"]);
    assert_eq!(remote["policy"], "on_demand");
    let remote_href = field(&remote, "pulp_href").to_string();
    assert_eq!(s.get(&remote_href).await.1["upstream_name"], "fixtures/index");
    cli.json(&["container", "remote", "create", "--name", "spare", "--url", &upstream.url(), "--upstream-name", "fixtures/oci"]);
    assert_eq!(names(&cli.json(&["container", "remote", "list"])), ["index", "spare"]);
    assert_eq!(cli.json(&["container", "remote", "show", "--name", "index"])["pulp_href"], remote_href.as_str());
    cli.run(&["container", "remote", "update", "--name", "index", "--download-concurrency", "3"]);
    assert_eq!(cli.json(&["container", "remote", "show", "--name", "index"])["download_concurrency"], 3);
    assert_eq!(s.get(&remote_href).await.1["download_concurrency"], 3);
    let spare = cli.json(&["container", "remote", "show", "--name", "spare"]);
    cli.run(&["container", "remote", "destroy", "--name", "spare"]);
    assert_eq!(s.get(field(&spare, "pulp_href")).await.0, 404);

    // Repositories, sync, versions.
    let repo = cli.json(&["container", "repository", "create", "--name", "index", "--remote", "index"]);
    let repo_href = field(&repo, "pulp_href").to_string();
    assert_eq!(repo["remote"], remote_href.as_str());
    assert_eq!(names(&cli.json(&["container", "repository", "list"])), ["index"]);
    cli.run(&["container", "repository", "update", "--name", "index", "--description", "synced by pulp-cli"]);
    assert_eq!(cli.json(&["container", "repository", "show", "--name", "index"])["description"], "synced by pulp-cli");
    assert_eq!(s.get(&repo_href).await.1["description"], "synced by pulp-cli");
    cli.run(&["container", "repository", "sync", "--name", "index"]);
    let repo = s.get(&repo_href).await.1;
    assert!(field(&repo, "latest_version_href").ends_with("/versions/1/"), "{repo}");
    let versions = cli.json(&["container", "repository", "version", "list", "--repository", "index"]);
    let numbers: Vec<i64> = versions.as_array().unwrap().iter().map(|v| v["number"].as_i64().unwrap()).collect();
    assert_eq!(numbers, [1, 0]);
    let v1 = cli.json(&["container", "repository", "version", "show", "--repository", "index", "--version", "1"]);
    assert_eq!(v1["number"], 1);
    let v1_href = field(&v1, "pulp_href").to_string();

    // Content, read the ways pulp-cli offers.
    let tags = cli.json(&["container", "content", "-t", "tag", "list", "--repository-version", &v1_href]);
    assert_eq!(names(&tags), ["latest"]);
    let index_tag = &tags[0];
    let index_manifest = s.get(field(index_tag, "tagged_manifest")).await.1;
    let index_digest = field(&index_manifest, "digest").to_string();
    let by_digest = cli.json(&["container", "content", "-t", "manifest", "list", "--digest", &index_digest]);
    assert_eq!(by_digest.as_array().unwrap().len(), 1, "{by_digest}");
    assert_eq!(by_digest[0]["pulp_href"], index_manifest["pulp_href"]);
    assert_eq!(cli.json(&["container", "content", "-t", "tag", "list", "--name", "latest"]).as_array().unwrap().len(), 1);
    assert!(cli.json(&["container", "content", "-t", "tag", "list", "--name", "nope"]).as_array().unwrap().is_empty());
    let indexes = cli.json(&["container", "content", "-t", "manifest", "list", "--media-type", field(&index_manifest, "media_type")]);
    assert_eq!(indexes.as_array().unwrap().len(), 1, "only the index has the index media type: {indexes}");
    let shown = cli.json(&["container", "content", "-t", "tag", "show", "--name", "latest", "--digest", &index_digest]);
    assert_eq!(shown["pulp_href"], index_tag["pulp_href"]);
    let blobs = cli.json(&["container", "content", "-t", "blob", "list", "--repository-version", &v1_href]);
    let (_, api_blobs) = s.get(&format!("content/container/blobs/?repository_version={v1_href}")).await;
    assert_eq!(blobs.as_array().unwrap().len() as i64, api_blobs["count"].as_i64().unwrap());
    assert!(!blobs.as_array().unwrap().is_empty());
    let blob = cli.json(&["container", "content", "-t", "blob", "show", "--digest", field(&blobs[0], "digest")]);
    assert_eq!(blob["pulp_href"], blobs[0]["pulp_href"]);
    let repo_tags = cli.json(&["container", "repository", "content", "list", "--repository", "index", "--version", "1"]);
    assert_eq!(names(&repo_tags), ["latest"]);

    // Tag and untag: each a new version.
    cli.run(&["container", "repository", "tag", "--repository", "index", "--tag", "extra", "--digest", &index_digest]);
    let latest = field(&s.get(&repo_href).await.1, "latest_version_href").to_string();
    assert!(latest.ends_with("/versions/2/"), "{latest}");
    assert_eq!(names(&cli.json(&["container", "content", "-t", "tag", "list", "--repository-version", &latest])), ["extra", "latest"]);
    cli.run(&["container", "repository", "untag", "--name", "index", "--tag", "extra"]);
    let latest = field(&s.get(&repo_href).await.1, "latest_version_href").to_string();
    assert!(latest.ends_with("/versions/3/"), "{latest}");
    assert_eq!(names(&cli.json(&["container", "repository", "content", "list", "--repository", "index"])), ["latest"]);
    cli.run(&["container", "repository", "version", "destroy", "--repository", "index", "--version", "2"]);
    let numbers: Vec<i64> = cli.json(&["container", "repository", "version", "list", "--repository", "index"])
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["number"].as_i64().unwrap())
        .collect();
    assert_eq!(numbers, [3, 1, 0]);

    // Labels, and lists selected by them.
    cli.run(&["container", "repository", "label", "set", "--repository", "index", "--key", "env", "--value", "prod"]);
    assert_eq!(s.get(&repo_href).await.1["pulp_labels"], serde_json::json!({"env": "prod"}));
    assert_eq!(names(&cli.json(&["container", "repository", "list", "--label-select", "env=prod"])), ["index"]);
    assert_eq!(names(&cli.json(&["container", "repository", "list", "--label-select", "env=dev"])), Vec::<String>::new());
    cli.run(&["container", "repository", "label", "unset", "--repository", "index", "--key", "env"]);
    assert_eq!(s.get(&repo_href).await.1["pulp_labels"], serde_json::json!({}));

    // Distributions.
    let dist = cli.json(&["container", "distribution", "create", "--name", "index", "--base-path", "cli/index", "--repository", "index"]);
    assert_eq!(dist["base_path"], "cli/index");
    assert_eq!(dist["repository"], repo_href.as_str());
    assert_eq!(names(&cli.json(&["container", "distribution", "list"])), ["index"]);
    cli.run(&["container", "distribution", "update", "--name", "index", "--base-path", "cli/moved"]);
    assert_eq!(cli.json(&["container", "distribution", "show", "--name", "index"])["base_path"], "cli/moved");

    // A real client pulls what pulp-cli set up (on_demand: the blobs come from the upstream now).
    let out = tempfile::tempdir().unwrap();
    let host = s.base.trim_start_matches("http://");
    support::run(Command::new("skopeo").args(["copy", "--all", "--quiet", "--src-tls-verify=false"]).arg(format!("docker://{host}/cli/moved:latest")).arg(format!("oci:{}:latest", out.path().display())));
    let pulled = support::layout_blobs(out.path());
    assert!(pulled.contains(&index_digest), "{pulled:?}");

    // Artifacts: what the pull stored.
    let artifacts = cli.json(&["artifact", "list"]);
    assert!(!artifacts.as_array().unwrap().is_empty());
    let shown = cli.json(&["artifact", "show", "--href", field(&artifacts[0], "pulp_href")]);
    assert_eq!(shown["sha256"], artifacts[0]["sha256"]);

    // Tasks: list by state, show, summary, cancel a running sync, destroy, purge.
    let completed = cli.json(&["task", "list", "--state", "completed"]);
    assert!(completed.as_array().unwrap().iter().all(|t| t["state"] == "completed"));
    let (_, api_completed) = s.get("tasks/?state=completed&limit=1").await;
    assert_eq!(completed.as_array().unwrap().len() as i64, api_completed["count"].as_i64().unwrap().min(25));
    let some_task = field(&completed[0], "pulp_href").to_string();
    assert_eq!(cli.json(&["task", "show", "--href", &some_task])["pulp_href"], some_task.as_str());
    let summary = cli.json(&["task", "summary"]);
    assert_eq!(summary["completed"].as_i64(), api_completed["count"].as_i64(), "{summary}");
    assert_eq!(summary["failed"], 0);

    let (state, layer) = fault_image((0..4 * 1024 * 1024).map(|i| (i % 251) as u8).collect());
    let slow = FaultUpstream::start(state).await;
    slow.set_blob(&layer, BlobBehaviour::StallAfter(1024 * 1024, Duration::from_secs(60)));
    cli.json(&["container", "remote", "create", "--name", "slow", "--url", &slow.url(), "--upstream-name", "fault/app", "--policy", "immediate"]);
    cli.json(&["container", "repository", "create", "--name", "slow", "--remote", "slow"]);
    let started = cli.command(&["--background", "container", "repository", "sync", "--name", "slow"]).output().unwrap();
    assert!(started.status.success(), "{}", String::from_utf8_lossy(&started.stderr));
    let running = wait_for_running(&s).await;
    cli.run(&["task", "cancel", "--href", &running]);
    assert_eq!(s.get(&running).await.1["state"], "canceled");

    cli.run(&["task", "destroy", "--href", &running]);
    assert_eq!(s.get(&running).await.0, 404);
    // By default Pulp purges what finished over 30 days ago: nothing here.
    let before = s.count("tasks/").await;
    cli.run(&["task", "purge"]);
    assert_eq!(s.count("tasks/").await, before + 1, "only the purge task was added");
    let now = (chrono::Utc::now() + chrono::Duration::seconds(1)).format("%Y-%m-%dT%H:%M:%S").to_string();
    cli.run(&["task", "purge", "--finished-before", &now, "--state", "completed"]);
    let (_, left) = s.get("tasks/?state=completed").await;
    // Only the last purge itself can remain completed.
    let names: Vec<&str> = left["results"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["pulpish.tasks.purge"], "{left}");

    // Orphans: the spare repository's content goes, the distributed one's stays and still pulls.
    cli.run(&["container", "repository", "destroy", "--name", "slow"]);
    cli.run(&["orphan", "cleanup", "--protection-time", "0"]);
    let out = tempfile::tempdir().unwrap();
    support::run(Command::new("skopeo").args(["copy", "--all", "--quiet", "--src-tls-verify=false"]).arg(format!("docker://{host}/cli/moved:latest")).arg(format!("oci:{}:latest", out.path().display())));

    // Teardown through the CLI, checked in the API.
    cli.run(&["container", "distribution", "destroy", "--name", "index"]);
    cli.run(&["container", "repository", "destroy", "--name", "index"]);
    cli.run(&["container", "remote", "destroy", "--name", "index"]);
    for list in ["distributions/container/container/", "repositories/container/container/"] {
        assert_eq!(s.count(list).await, 0, "{list}");
    }
    assert!(cli.fails(&["container", "repository", "show", "--name", "index"]).contains("Could not find"));
}

async fn wait_for_running(s: &TestServer) -> String {
    let start = Instant::now();
    loop {
        let (_, list) = s.get("tasks/?state=running&name=pulpish.sync").await;
        if let Some(t) = list["results"].as_array().and_then(|r| r.first()) {
            return t["pulp_href"].as_str().unwrap().to_string();
        }
        assert!(start.elapsed() < Duration::from_secs(20), "the sync never ran: {list}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The document validates as OpenAPI 3.1 (openapi-spec-validator, from the same venv). The served
/// one keys detail operations by href as Pulp's does (`{task_href}`), which the 3.1 schema's
/// "paths start with /" rule refuses, as it refuses Pulp's own; everything else is the same
/// document, so it is validated with the routes' paths put back.
#[test]
fn the_api_document_validates_as_openapi_3_1() {
    let python = pulp_executable().with_file_name("python");
    let dir = tempfile::tempdir().unwrap();
    let concrete = dir.path().join("concrete.json");
    std::fs::write(&concrete, pulpish_server::openapi_concrete_json()).unwrap();
    let served: Value = serde_json::from_str(&pulpish_server::openapi_json()).unwrap();
    assert_eq!(served["openapi"].as_str().map(|v| &v[..4]), Some("3.1."));
    let check = "import sys\nfrom openapi_spec_validator import validate\nfrom openapi_spec_validator.readers import read_from_filename\nvalidate(read_from_filename(sys.argv[1])[0])\nprint('valid')";
    let out = Command::new(&python).args(["-c", check]).arg(&concrete).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr).lines().rev().take(15).collect::<Vec<_>>().join("\n"));
    // The served document differs only in its detail path keys and their one href parameter.
    let concrete: Value = serde_json::from_str(&pulpish_server::openapi_concrete_json()).unwrap();
    assert_eq!(served["components"]["schemas"].as_object().unwrap().len(), concrete["components"]["schemas"].as_object().unwrap().len());
    let ids = |doc: &Value| {
        let mut ids: Vec<String> = doc["paths"].as_object().unwrap().values().flat_map(|item| item.as_object().unwrap().values().map(|op| op["operationId"].as_str().unwrap().to_string())).collect();
        ids.sort();
        ids
    };
    assert_eq!(ids(&served), ids(&concrete));
}

on_databases!(pulp_cli_drives_the_container_workflow);
