//! The task queue: exclusive resources, progress while running, cancel, failure descriptions.

mod support;

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::{sleep_task, Backend, TestServer};


fn time(task: &Value, field: &str) -> DateTime<Utc> {
    task[field].as_str().unwrap_or_else(|| panic!("{field} missing in {task}")).parse().unwrap()
}

async fn tasks_on_one_resource_run_one_after_the_other(backend: Backend) {
    let s = TestServer::start(backend).await;
    let first = sleep_task(&s, 1.0, &["repo:a"]).await;
    let second = sleep_task(&s, 0.3, &["repo:a"]).await;
    let other = sleep_task(&s, 0.3, &["repo:b"]).await;
    let first = s.wait_task(&first).await;
    let second = s.wait_task(&second).await;
    let other = s.wait_task(&other).await;
    for t in [&first, &second, &other] {
        assert_eq!(t["state"], "completed", "{t}");
    }
    assert!(time(&second, "started_at") >= time(&first, "finished_at"), "second overlapped first: {first} {second}");
    // A task on another resource did not wait for the first to finish.
    assert!(time(&other, "started_at") < time(&first, "finished_at"), "{first} {other}");
    assert_eq!(first["reserved_resources_record"], json!(["repo:a"]));
}

async fn progress_is_visible_while_running(backend: Backend) {
    let s = TestServer::start(backend).await;
    let href = sleep_task(&s, 3.0, &["repo:p"]).await;
    let mut seen_midway = false;
    for _ in 0..60 {
        let (_, t) = s.get(&href).await;
        if t["state"] == "running" {
            let report = &t["progress_reports"][0];
            let done = report["done"].as_u64().unwrap_or(0);
            if done > 0 && done < 30 {
                assert_eq!(report["total"], 30);
                assert_eq!(report["code"], "debug.sleep");
                assert_eq!(report["state"], "running");
                seen_midway = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(seen_midway, "never saw the task's progress part way through");
    let t = s.wait_task(&href).await;
    assert_eq!(t["progress_reports"][0]["done"], 30);
    assert_eq!(t["progress_reports"][0]["state"], "completed");
}

async fn cancel_waiting_and_running_tasks(backend: Backend) {
    let s = TestServer::start(backend).await;
    let running = sleep_task(&s, 30.0, &["repo:c"]).await;
    let waiting = sleep_task(&s, 1.0, &["repo:c"]).await;
    // Wait until the first one runs.
    for _ in 0..50 {
        if s.get(&running).await.1["state"] == "running" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, t) = s.patch(&waiting, json!({"state": "canceled"})).await;
    assert_eq!(status, StatusCode::OK, "{t}");
    assert_eq!(t["state"], "canceled");

    let (status, t) = s.patch(&running, json!({"state": "canceled"})).await;
    assert_eq!(status, StatusCode::OK, "{t}");
    assert!(matches!(t["state"].as_str(), Some("canceling" | "canceled")), "{t}");
    let t = support::wait_task(&s, &running, Duration::from_secs(10)).await;
    assert_eq!(t["state"], "canceled");
    assert!(t["finished_at"].is_string());

    // The resource is free again: a new task on it runs.
    let next = sleep_task(&s, 0.1, &["repo:c"]).await;
    assert_eq!(s.wait_task(&next).await["state"], "completed");

    let (status, body) = s.patch(&next, json!({"state": "canceled"})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(body["detail"].as_str().unwrap().contains("completed"), "{body}");
    let (status, body) = s.patch(&next, json!({"state": "running"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["state"].is_array());
    let (status, _) = s.patch("tasks/00000000-0000-0000-0000-000000000000/", json!({"state": "canceled"})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (_, canceled) = s.get("tasks/?state=canceled").await;
    assert_eq!(canceled["count"], 2);
    let (status, _) = s.get("tasks/?state=bogus").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

async fn a_failing_task_says_why(backend: Backend) {
    let s = TestServer::start(backend).await;
    // A remote update whose new name was taken after the request was checked.
    let (_, a) = s.post("remotes/container/container/", json!({"name": "a", "url": "http://x", "upstream_name": "x"})).await;
    let (_, _b) = s.post("remotes/container/container/", json!({"name": "b", "url": "http://x", "upstream_name": "x"})).await;
    let mut row = json!({
        "id": a["pulp_href"].as_str().unwrap().rsplit('/').nth(1).unwrap(),
        "name": "b", "url": "http://x", "upstream_name": "x", "policy": "immediate", "include_tags": null,
        "exclude_tags": null, "username": null, "password": null, "tls_validation": true, "ca_cert": null,
        "proxy_url": null, "download_concurrency": null, "connect_timeout": null, "total_timeout": null,
        "max_retries": null,
    });
    row["pulp_created"] = json!("2026-01-01T00:00:00");
    row["pulp_last_updated"] = json!("2026-01-01T00:00:00");
    let t = s
        .state
        .tasks
        .enqueue(&s.state, pulpish_server::tasks::REMOTE_UPDATE, json!({ "remote": row }), vec!["r".into()])
        .await
        .unwrap();
    let t = s.wait_task(&format!("/pulp/api/v3/tasks/{}/", t.id)).await;
    assert_eq!(t["state"], "failed");
    assert_eq!(t["error"]["description"], "a remote with this name already exists");
    let (_, a) = s.get(a["pulp_href"].as_str().unwrap()).await;
    assert_eq!(a["name"], "a", "the failed task changed nothing");
}

on_both_backends!(
    tasks_on_one_resource_run_one_after_the_other,
    progress_is_visible_while_running,
    cancel_waiting_and_running_tasks,
    a_failing_task_says_why,
);
