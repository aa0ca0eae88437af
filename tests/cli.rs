//! The `pulpish` CLI as an operator uses it: the whole workflow from a terminal, its exit
//! codes and messages, JSON output for scripts, profiles, and help with examples.

mod support;

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;
use support::registry::{Auth, Registry};
use support::{Backend, TestServer, PASSWORD};

struct Cli<'a> {
    server: String,
    home: &'a Path,
}

impl Cli<'_> {
    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_pulpish"))
            .args(args)
            .env("PULPISH_SERVER", &self.server)
            .env("PULPISH_PASSWORD", PASSWORD)
            .env_remove("PULPISH_USERNAME")
            .env("HOME", self.home)
            .env_remove("XDG_CONFIG_HOME")
            .output()
            .expect("run pulpish")
    }

    /// Runs and expects success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "pulpish {args:?} failed ({:?}):\n{}\n{}", out.status.code(), String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--format", "json"];
        all.extend_from_slice(args);
        let text = self.ok(&all);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("pulpish {args:?} --format json is not JSON ({e}):\n{text}"))
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

async fn the_readme_workflow_with_the_cli_alone(backend: Backend) {
    let registry = Registry::start(Auth::Anonymous);
    registry.push_layout_tag("index", "fixtures/index:latest", false, None);
    let s = TestServer::start(backend).await;
    let home = tempfile::tempdir().unwrap();
    let cli = Cli { server: s.base.clone(), home: home.path() };

    assert!(cli.ok(&["status"]).contains("connected"));
    cli.ok(&["remote", "create", "--name", "busybox", "--url", &registry.url(), "--upstream-name", "fixtures/index", "--policy", "on_demand"]);
    cli.ok(&["repo", "create", "--name", "busybox", "--remote", "busybox"]);
    let synced = cli.ok(&["repo", "sync", "--name", "busybox"]);
    assert!(synced.contains("completed: new version") && synced.contains("/versions/1/"), "{synced}");
    let dist = cli.ok(&["distribution", "create", "--name", "busybox", "--base-path", "library/busybox", "--repository", "busybox"]);
    let host = s.base.trim_start_matches("http://");
    assert!(dist.contains(&format!("{host}/library/busybox")), "{dist}");

    let before = cli.ok(&["content", "list", "--repo", "busybox", "--type", "blob"]);
    assert_eq!(before.matches("not downloaded yet").count(), 5, "{before}");

    // A real client pulls through the content app.
    let out = tempfile::tempdir().unwrap();
    let pulled = Command::new("skopeo")
        .args(["copy", "--quiet", "--src-tls-verify=false"])
        .arg(format!("docker://{host}/library/busybox:latest"))
        .arg(format!("oci:{}:latest", out.path().display()))
        .output()
        .unwrap();
    assert!(pulled.status.success(), "{}", stderr(&pulled));

    // The blobs of the pulled platform (config + 2 layers) now have artifacts.
    let blobs = cli.json(&["content", "list", "--repo", "busybox", "--type", "blob"]);
    let stored = blobs.as_array().unwrap().iter().filter(|b| b["artifact"].is_string()).count();
    assert_eq!(stored, 3, "{blobs}");
    let table = cli.ok(&["content", "list", "--repo", "busybox", "--type", "blob"]);
    assert_eq!(table.matches("/pulp/api/v3/artifacts/").count(), 3, "{table}");

    let tags = cli.ok(&["content", "list", "--repo", "busybox"]);
    assert!(tags.contains("latest") && tags.contains("sha256:"), "{tags}");
    let versions = cli.ok(&["repo", "versions", "--name", "busybox"]);
    assert!(versions.lines().any(|l| l.split_whitespace().next() == Some("1")), "{versions}");

    // Updates and deletes wait for their tasks.
    assert_eq!(cli.json(&["remote", "show", "--name", "busybox"])["include_referrers"], true);
    cli.ok(&["remote", "update", "--name", "busybox", "--policy", "streamed", "--include-tags", "latest,1.*", "--include-referrers", "false"]);
    let shown = cli.json(&["remote", "show", "--name", "busybox"]);
    assert_eq!(shown["policy"], "streamed");
    assert_eq!(shown["include_referrers"], false);
    assert_eq!(shown["include_tags"], serde_json::json!(["latest", "1.*"]));
    cli.ok(&["distribution", "delete", "--name", "busybox"]);
    assert_eq!(cli.json(&["distribution", "list"]).as_array().unwrap().len(), 0);
}

async fn failures_have_clear_messages_and_exit_codes(backend: Backend) {
    let s = TestServer::start(backend).await;
    let home = tempfile::tempdir().unwrap();
    let cli = Cli { server: s.base.clone(), home: home.path() };

    let closed = support::free_port();
    let out = cli.run(&["--server", &format!("http://127.0.0.1:{closed}"), "repo", "list"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("cannot reach the pulpish server"), "{}", stderr(&out));

    let out = cli.run(&["--password", "wrong", "repo", "list"]);
    assert_eq!(out.status.code(), Some(4));
    assert!(stderr(&out).contains("authentication failed"), "{}", stderr(&out));

    let out = cli.run(&["repo", "sync", "--name", "foo"]);
    assert_eq!(out.status.code(), Some(5));
    assert!(stderr(&out).contains("repository 'foo' not found"), "{}", stderr(&out));

    let out = cli.run(&["remote", "create", "--name", "r", "--url", "not a url", "--upstream-name", "x"]);
    assert_eq!(out.status.code(), Some(6));
    assert!(stderr(&out).contains("url: Enter a valid URL."), "{}", stderr(&out));
    let out = cli.run(&["distribution", "create", "--name", "d", "--base-path", "../Up"]);
    assert_eq!(out.status.code(), Some(6));
    assert!(stderr(&out).contains("base_path:"), "{}", stderr(&out));
    assert_eq!(cli.json(&["distribution", "list"]).as_array().unwrap().len(), 0);

    // A failing task: its error, and a non-zero exit.
    cli.ok(&["remote", "create", "--name", "gone", "--url", &format!("http://127.0.0.1:{closed}"), "--upstream-name", "x"]);
    cli.ok(&["repo", "create", "--name", "r", "--remote", "gone"]);
    let out = cli.run(&["repo", "sync", "--name", "r"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("task failed") && stderr(&out).contains("cannot reach the upstream"), "{}", stderr(&out));

    let out = cli.run(&["repo", "sync"]);
    assert_eq!(out.status.code(), Some(2), "usage errors come from clap");

    // The upstream's credentials have their own flags: the CLI still logs in as admin.
    cli.ok(&["remote", "create", "--name", "with-creds", "--url", "http://127.0.0.1:1", "--upstream-name", "x", "--upstream-username", "up", "--upstream-password", "up-secret"]);
    let (_, remotes) = s.get("remotes/container/container/?name=with-creds").await;
    let hidden = remotes["results"][0]["hidden_fields"].as_array().unwrap().clone();
    assert!(hidden.iter().any(|f| f["name"] == "password" && f["is_set"] == true), "{remotes}");
    assert!(!remotes.to_string().contains("up-secret"));
}

async fn json_output_background_tasks_and_profiles(backend: Backend) {
    let s = TestServer::start(backend).await;
    let home = tempfile::tempdir().unwrap();
    let cli = Cli { server: s.base.clone(), home: home.path() };
    assert_eq!(cli.json(&["status"])["database_connection"]["connected"], true);
    let created = cli.json(&["repo", "create", "--name", "j"]);
    assert!(created["pulp_href"].as_str().unwrap().starts_with("/pulp/api/v3/repositories/"));
    assert_eq!(cli.json(&["repo", "list"])[0]["name"], "j");
    assert_eq!(cli.json(&["repo", "show", "--name", "j"])["name"], "j");
    assert_eq!(cli.json(&["repo", "versions", "--name", "j"])[0]["number"], 0);

    let started = cli.json(&["distribution", "create", "--name", "j", "--base-path", "j", "--repository", "j", "--background"]);
    let task = started["task"].as_str().unwrap().to_string();
    let waited = cli.json(&["task", "wait", &task]);
    assert_eq!(waited["state"], "completed");
    assert_eq!(cli.json(&["task", "show", &task])["pulp_href"], task.as_str());
    assert!(!cli.json(&["task", "list"]).as_array().unwrap().is_empty());
    let out = cli.run(&["task", "cancel", &task]);
    assert_eq!(out.status.code(), Some(1), "a finished task cannot be canceled");
    assert!(stderr(&out).contains("409"), "{}", stderr(&out));

    // A saved profile stands in for the flags.
    let saved = cli.ok(&["--username", "admin", "config", "create"]);
    assert!(saved.contains("cli.toml"));
    let profile = std::fs::read_to_string(home.path().join(".config/pulpish/cli.toml")).unwrap();
    assert!(profile.contains(&s.base) && profile.contains(PASSWORD));
    let out = Command::new(env!("CARGO_BIN_EXE_pulpish"))
        .args(["--format", "json", "repo", "list"])
        .env("HOME", home.path())
        .env_remove("PULPISH_SERVER")
        .env_remove("PULPISH_PASSWORD")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(serde_json::from_slice::<Value>(&out.stdout).unwrap()[0]["name"], "j");
    let again = cli.run(&["config", "create"]);
    assert_eq!(again.status.code(), Some(1), "no silent overwrite");
}

on_both_backends!(
    the_readme_workflow_with_the_cli_alone,
    failures_have_clear_messages_and_exit_codes,
    json_output_background_tasks_and_profiles,
);

#[test]
fn every_command_has_help_with_an_example() {
    let commands: &[&[&str]] = &[
        &["serve"], &["status"], &["config", "create"],
        &["remote", "create"], &["remote", "list"], &["remote", "show"], &["remote", "update"], &["remote", "delete"],
        &["repo", "create"], &["repo", "list"], &["repo", "show"], &["repo", "update"], &["repo", "delete"], &["repo", "sync"], &["repo", "versions"],
        &["distribution", "create"], &["distribution", "list"], &["distribution", "show"], &["distribution", "update"], &["distribution", "delete"],
        &["content", "list"],
        &["task", "list"], &["task", "show"], &["task", "wait"], &["task", "cancel"],
    ];
    for c in commands {
        let out = Command::new(env!("CARGO_BIN_EXE_pulpish")).args(*c).arg("--help").output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && text.contains("Example:\n  pulpish "), "pulpish {c:?} --help:\n{text}");
    }
}
