//! The real `pulpish` binary: first start from nothing, the README walkthrough with curl, and
//! recovery after SIGKILL in the middle of a task.

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::Backend;

struct Serve {
    child: Child,
    base: String,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(cwd: &Path, port: u16, args: &[&str]) -> Serve {
    let child = Command::new(env!("CARGO_BIN_EXE_pulpish"))
        .arg("serve")
        .args(args)
        .current_dir(cwd)
        .env("PULPISH_BIND", format!("127.0.0.1:{port}"))
        .env_remove("PULPISH_ADMIN_PASSWORD")
        .env_remove("PULPISH_DATABASE_URL")
        .env_remove("PULPISH_DATA_DIR")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start pulpish");
    Serve { child, base: format!("http://127.0.0.1:{port}") }
}

async fn wait_up(base: &str) {
    let start = Instant::now();
    loop {
        if let Ok(r) = reqwest::get(format!("{base}/pulp/api/v3/status/")).await {
            if r.status().is_success() {
                return;
            }
        }
        assert!(start.elapsed() < Duration::from_secs(30), "pulpish did not come up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The shell block of the README between the walkthrough markers.
fn readme_walkthrough() -> String {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md")).unwrap();
    let start = readme.find("<!-- walkthrough:start -->").expect("walkthrough start marker");
    let end = readme.find("<!-- walkthrough:end -->").expect("walkthrough end marker");
    let section = &readme[start..end];
    let code_start = section.find("```sh\n").expect("sh block") + 6;
    let code_end = section[code_start..].find("```").unwrap() + code_start;
    section[code_start..code_end].to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_start_from_nothing_and_the_readme_walkthrough() {
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let mut serve = spawn(dir.path(), port, &[]);
    // The generated admin password is printed once on stdout.
    let mut stdout = BufReader::new(serve.child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let password = line.trim().rsplit(' ').next().unwrap().to_string();
    assert!(line.starts_with("Generated password for user 'admin': ") && password.len() >= 16, "{line}");
    wait_up(&serve.base).await;
    assert!(dir.path().join("data/pulpish.db").exists(), "the default SQLite database lives in ./data");

    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &readme_walkthrough()])
        .env("PULPISH", format!("{}/pulp/api/v3", serve.base))
        .env("AUTH", format!("admin:{password}"))
        .output()
        .expect("bash");
    let stdout_text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "walkthrough failed:\n{stdout_text}\n{}", String::from_utf8_lossy(&out.stderr));

    let client = reqwest::Client::new();
    let list = |path: &'static str| {
        let client = client.clone();
        let url = format!("{}/pulp/api/v3/{path}", serve.base);
        let password = password.clone();
        async move { client.get(url).basic_auth("admin", Some(password)).send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let remotes = list("remotes/container/container/").await;
    assert_eq!(remotes["count"], 1);
    assert_eq!(remotes["results"][0]["policy"], "on_demand");
    let repos = list("repositories/container/container/").await;
    assert_eq!(repos["count"], 1);
    assert_eq!(repos["results"][0]["remote"], remotes["results"][0]["pulp_href"]);
    let dists = list("distributions/container/container/").await;
    assert_eq!(dists["count"], 1);
    assert_eq!(dists["results"][0]["repository"], repos["results"][0]["pulp_href"]);

    // A restart keeps the data and does not print a new password.
    drop(serve);
    let mut again = spawn(dir.path(), port, &[]);
    wait_up(&again.base).await;
    let resp = client
        .get(format!("{}/pulp/api/v3/distributions/container/container/", again.base))
        .basic_auth("admin", Some(&password))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.json::<Value>().await.unwrap()["count"], 1);
    again.child.kill().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(again.child.stdout.as_mut().unwrap(), &mut rest).unwrap();
    assert!(!rest.contains("Generated password"), "{rest}");
}

async fn killed_mid_task_restarts_and_the_task_reads_failed(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let url = support::fresh_database(backend, dir.path());
    let data = dir.path().join("data");
    let storage = support::storage_args(backend);
    let mut args = vec!["--data-dir", data.to_str().unwrap(), "--database-url", &url, "--admin-password", "pw"];
    args.extend(storage.iter().map(String::as_str));
    let port = support::free_port();
    let mut serve = spawn(dir.path(), port, &args);
    wait_up(&serve.base).await;

    // Queue a long task straight into the database, as another replica could.
    let db = pulpish_server::db::Db::connect(&url).unwrap();
    let mut conn = db.get().unwrap();
    let task = pulpish_server::models::task::enqueue(&mut conn, pulpish_server::tasks::DEBUG_SLEEP, &json!({"seconds": 60}), &["repo:k".into()], "serve-test").unwrap();
    drop(conn);
    let href = format!("{}/pulp/api/v3/tasks/{}/", serve.base, task.id);
    let client = reqwest::Client::new();
    let get = |href: String| {
        let client = client.clone();
        async move { client.get(href).basic_auth("admin", Some("pw")).send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let start = Instant::now();
    while get(href.clone()).await["state"] != "running" {
        assert!(start.elapsed() < Duration::from_secs(20), "task never started");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // SIGKILL (what Child::kill sends on Unix): no chance to clean up.
    serve.child.kill().unwrap();
    serve.child.wait().unwrap();

    let restarted = spawn(dir.path(), port, &args);
    wait_up(&restarted.base).await;
    let t = get(href.clone()).await;
    assert_eq!(t["state"], "failed", "{t}");
    let why = t["error"]["description"].as_str().unwrap();
    assert!(why.contains("killed or crashed"), "{why}");
    assert!(t["finished_at"].is_string());

    // Its resource was released: a new task on it runs to completion.
    let mut conn = db.get().unwrap();
    let next = pulpish_server::models::task::enqueue(&mut conn, pulpish_server::tasks::DEBUG_SLEEP, &json!({"seconds": 0.1}), &["repo:k".into()], "serve-test").unwrap();
    drop(conn);
    let next_href = format!("{}/pulp/api/v3/tasks/{}/", restarted.base, next.id);
    let start = Instant::now();
    loop {
        let t = get(next_href.clone()).await;
        if t["state"] == "completed" {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "{t}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

on_both_backends!(killed_mid_task_restarts_and_the_task_reads_failed);
