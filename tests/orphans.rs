//! Housekeeping: orphan cleanup removes content that no repository version holds and the
//! artifacts no content uses, their stored bytes included, and keeps everything in use or too
//! new; finished tasks can be deleted one by one or purged.

mod support;

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use support::images::{digest_of, latest_version, pulled, push_blob, push_image, put_manifest, repository_at, unit_href, OCI_MANIFEST};
use support::{sleep_task, stored_object, Backend, TestServer, PASSWORD};

const CLEANUP: &str = "orphans/cleanup/";

fn key_of(digest: &str) -> String {
    let hex = digest.strip_prefix("sha256:").unwrap();
    format!("artifact/{}/{}", &hex[..2], &hex[2..])
}

async fn artifacts_of(s: &TestServer, digest: &str) -> i64 {
    s.count(&format!("artifacts/?sha256={}", digest.strip_prefix("sha256:").unwrap())).await
}

/// Runs a cleanup to completion; returns the numbers of units and artifacts it reports removed.
async fn cleanup(s: &TestServer, body: Value) -> (u64, u64) {
    let task = s.completed(s.post(CLEANUP, body).await).await;
    assert_eq!(task["created_resources"], json!([]), "{task}");
    let reports = task["progress_reports"].as_array().unwrap().clone();
    let done = |message: &str| {
        let r = reports.iter().find(|r| r["message"] == message).unwrap_or_else(|| panic!("no report {message}: {task}"));
        assert_eq!(r["state"], "completed", "{r}");
        r["done"].as_u64().unwrap()
    };
    (done("Clean up orphan Content"), done("Clean up orphan Artifacts"))
}

async fn blob_pulled(s: &TestServer, name: &str, digest: &str) -> Vec<u8> {
    let r = s.client.get(format!("{}/v2/{name}/blobs/{digest}", s.base)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{name}@{digest}");
    r.bytes().await.unwrap().to_vec()
}

async fn orphan_cleanup_removes_only_what_nothing_uses(backend: Backend) {
    let s = TestServer::start(backend).await;
    let kept = push_image(&s, "keep/app", "v1", "keep", &[b"shared layer", b"kept layer"]).await;
    let gone = push_image(&s, "gone/app", "v1", "gone", &[b"shared layer", b"gone layer"]).await;
    // A blob pushed ahead of its manifest, and an upload half done.
    let ahead = push_blob(&s, "keep/app", b"pushed ahead of its manifest").await;
    let upload_bytes = b"an upload in two halves".to_vec();
    let r = s.client.post(format!("{}/v2/keep/app/blobs/uploads/", s.base)).basic_auth("admin", Some(PASSWORD)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let r = s.client.patch(format!("{}{location}", s.base)).basic_auth("admin", Some(PASSWORD)).body(upload_bytes[..10].to_vec()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);

    let gone_repo = repository_at(&s, "gone/app").await;
    let gone_tag = unit_href(&s, "tags", "name=v1", Some(&latest_version(&s, &gone_repo).await)).await;
    s.completed(s.delete(&gone_repo).await).await;
    let only_gone = [gone.config.clone(), digest_of(b"gone layer")];

    // All of it is younger than the default protection (a day), and than 10 minutes.
    assert_eq!(cleanup(&s, json!({})).await, (0, 0));
    assert_eq!(cleanup(&s, json!({"orphan_protection_time": 10})).await, (0, 0));
    for d in &only_gone {
        assert_eq!(artifacts_of(&s, d).await, 1);
        assert!(stored_object(&s, &key_of(d)).is_some());
    }

    // Only the units named: the tag goes; its manifest, not named, stays.
    assert_eq!(cleanup(&s, json!({"orphan_protection_time": 0, "content_hrefs": [gone_tag]})).await, (1, 0));
    assert_eq!(s.get(&gone_tag).await.0, StatusCode::NOT_FOUND);
    assert_eq!(s.count(&format!("content/container/manifests/?digest={}", gone.digest)).await, 1);

    // The rest of gone/app's image: the manifest, its config and own layer, with their files.
    assert_eq!(cleanup(&s, json!({"orphan_protection_time": 0})).await, (3, 2));
    assert_eq!(s.count(&format!("content/container/manifests/?digest={}", gone.digest)).await, 0);
    for d in &only_gone {
        assert_eq!(s.count(&format!("content/container/blobs/?digest={d}")).await, 0);
        assert_eq!(artifacts_of(&s, d).await, 0);
        assert!(stored_object(&s, &key_of(d)).is_none(), "the file of {d} is gone");
    }
    // Nothing else: the layer keep/app shares, keep/app's image, the blob pushed ahead.
    for d in kept.blobs().iter().chain([&ahead]) {
        assert_eq!(artifacts_of(&s, d).await, 1, "{d}");
        assert_eq!(digest_of(&stored_object(&s, &key_of(d)).unwrap_or_else(|| panic!("file of {d}"))), *d);
    }
    assert_eq!(cleanup(&s, json!({"orphan_protection_time": 0})).await, (0, 0), "nothing more to do");
    support::assert_store_intact(&s).await;

    // What keep/app distributes still pulls, byte for byte.
    assert_eq!(pulled(&s, "keep/app", "v1").await, Ok(kept.digest.clone()));
    for d in kept.blobs() {
        assert_eq!(digest_of(&blob_pulled(&s, "keep/app", &d).await), d);
    }
    // The blob pushed ahead still serves the manifest that comes after the cleanup ...
    let manifest = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": ahead, "size": 28}, "layers": []});
    put_manifest(&s, "keep/app", "late", OCI_MANIFEST, serde_json::to_vec(&manifest).unwrap()).await;
    // ... and the upload finishes.
    let digest = digest_of(&upload_bytes);
    let r = s.client.put(format!("{}{location}?digest={digest}", s.base)).basic_auth("admin", Some(PASSWORD)).body(upload_bytes[10..].to_vec()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(blob_pulled(&s, "keep/app", &digest).await, upload_bytes);

    for (body, field) in [
        (json!({"orphan_protection_time": -1}), "orphan_protection_time"),
        (json!({"orphan_protection_time": "soon"}), "orphan_protection_time"),
        (json!({"content_hrefs": ["/pulp/api/v3/content/container/tags/x/"]}), "content_hrefs"),
        (json!({"content_hrefs": ["/pulp/api/v3/content/container/tags/00000000-0000-0000-0000-000000000000/"]}), "content_hrefs"),
        (json!({"content_hrefs": "x"}), "content_hrefs"),
        (json!({"protection": 0}), "protection"),
    ] {
        let (status, answer) = s.post(CLEANUP, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        assert!(answer[field].is_array(), "{body} names {field}: {answer}");
    }
}


/// Makes a finished task look finished long ago.
async fn backdate(s: &TestServer, href: &str) {
    use diesel::prelude::*;
    use pulpish_server::db::schema::task;
    let id = href.trim_end_matches('/').rsplit('/').next().unwrap().to_string();
    let long_ago = chrono::NaiveDate::from_ymd_opt(2020, 1, 1).unwrap().and_hms_opt(0, 0, 0).unwrap();
    let n = s
        .state
        .db
        .run(move |c| diesel::update(task::table.find(id)).set(task::finished_at.eq(Some(long_ago))).execute(c).map_err(pulpish_server::db::DbError::from))
        .await
        .unwrap();
    assert_eq!(n, 1);
}

async fn state_of(s: &TestServer, href: &str) -> Option<String> {
    let (status, t) = s.get(href).await;
    (status == StatusCode::OK).then(|| t["state"].as_str().unwrap().to_string())
}

async fn finished_tasks_can_be_deleted_and_purged(backend: Backend) {
    let s = TestServer::start(backend).await;
    let done = sleep_task(&s, 0.1, &[]).await;
    s.wait_task(&done).await;
    assert_eq!(s.delete(&done).await.0, StatusCode::NO_CONTENT);
    assert_eq!(s.get(&done).await.0, StatusCode::NOT_FOUND);
    assert_eq!(s.delete(&done).await.0, StatusCode::NOT_FOUND);

    let running = sleep_task(&s, 30.0, &["r"]).await;
    let waiting = sleep_task(&s, 0.1, &["r"]).await;
    for _ in 0..100 {
        if state_of(&s, &running).await.as_deref() == Some("running") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (href, state) in [(&running, "running"), (&waiting, "waiting")] {
        let (status, body) = s.delete(href).await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert!(body["detail"].as_str().unwrap().contains(state), "{body}");
        assert_eq!(state_of(&s, href).await.as_deref(), Some(state), "it stays");
    }
    s.patch(&running, json!({"state": "canceled"})).await;
    assert_eq!(s.wait_task(&running).await["state"], "canceled");
    assert_eq!(s.wait_task(&waiting).await["state"], "completed");

    // Old: a completed, a failed, a canceled task; new: a completed one.
    let old_completed = sleep_task(&s, 0.1, &[]).await;
    let t = s.state.tasks.enqueue(&s.state, "pulpish.no-such-kind", json!({}), vec![]).await.unwrap();
    let old_failed = format!("/pulp/api/v3/tasks/{}/", t.id);
    assert_eq!(s.wait_task(&old_failed).await["state"], "failed");
    s.wait_task(&old_completed).await;
    let (old_canceled, new_completed) = (running, waiting);
    for href in [&old_completed, &old_failed, &old_canceled] {
        backdate(&s, href).await;
    }

    // Default: completed tasks that finished more than 30 days ago.
    let first = s.completed(s.post("tasks/purge/", json!({})).await).await;
    assert_eq!(first["progress_reports"][0]["done"], 1, "{first}");
    assert_eq!(state_of(&s, &old_completed).await, None);
    for href in [&old_failed, &old_canceled, &new_completed] {
        assert!(state_of(&s, href).await.is_some(), "{href} stays");
    }
    // The states and the time asked for.
    let second = s.completed(s.post("tasks/purge/", json!({"finished_before": "2021-01-01T00:00:00.000000Z", "states": ["failed", "canceled"]})).await).await;
    assert_eq!(second["progress_reports"][0]["done"], 2, "{second}");
    assert_eq!(state_of(&s, &old_failed).await, None);
    assert_eq!(state_of(&s, &old_canceled).await, None);
    assert_eq!(state_of(&s, &new_completed).await.as_deref(), Some("completed"));
    // Every completed task up to now, the earlier purges included; never the purge itself.
    let soon = (chrono::Utc::now() + chrono::Duration::minutes(1)).format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
    let third = s.completed(s.post("tasks/purge/", json!({"finished_before": soon})).await).await;
    for href in [&new_completed, first["pulp_href"].as_str().unwrap(), second["pulp_href"].as_str().unwrap()] {
        assert_eq!(state_of(&s, href).await, None, "{href}");
    }
    assert_eq!(state_of(&s, third["pulp_href"].as_str().unwrap()).await.as_deref(), Some("completed"));

    for (body, field) in [
        (json!({"states": ["running"]}), "states"),
        (json!({"states": "completed"}), "states"),
        (json!({"states": null}), "states"),
        (json!({"finished_before": "yesterday"}), "finished_before"),
        (json!({"finished_before": null}), "finished_before"),
        (json!({"state": "completed"}), "state"),
    ] {
        let (status, answer) = s.post("tasks/purge/", body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        assert!(answer[field].is_array(), "{body} names {field}: {answer}");
    }
}

/// Orphan cleanup against a writer of the same bytes (models::claim): an object a writer has
/// claimed is not deleted, and a writer waits while cleanup deletes the object, then stores it
/// again. Either way what the writer records has its bytes.
async fn cleanup_never_deletes_an_object_a_writer_keeps(backend: Backend) {
    use pulpish_server::models::claim;
    const BYTES: &[u8] = b"a layer someone pushes again";
    let s = TestServer::start(backend).await;
    push_image(&s, "gone/app", "v1", "gone", &[BYTES]).await;
    let layer = digest_of(BYTES);
    let hex = layer.strip_prefix("sha256:").unwrap().to_string();
    s.completed(s.delete(&repository_at(&s, "gone/app").await).await).await;

    // A writer holds a claim (say it found the object stored and keeps it): cleanup removes the
    // orphan rows but not the object.
    let held = claim::WriteClaim::take(&s.state.db, &hex).await.unwrap();
    let (_, artifacts) = cleanup(&s, json!({"orphan_protection_time": 0})).await;
    assert!(artifacts >= 1, "the orphan artifacts' rows went");
    assert_eq!(artifacts_of(&s, &layer).await, 0);
    assert!(stored_object(&s, &key_of(&layer)).is_some(), "a claimed object stays");
    held.release().await;

    // Cleanup is deleting the object: a push of the same bytes waits, then stores them again.
    let h = hex.clone();
    s.state.db.run(move |c| claim::mark_deleting(c, &h)).await.unwrap();
    let push = tokio::spawn({
        let (client, base, digest) = (s.client.clone(), s.base.clone(), layer.clone());
        async move {
            let url = format!("{base}/v2/late/app/blobs/uploads/?digest={digest}");
            client.post(url).basic_auth("admin", Some(PASSWORD)).body(BYTES.to_vec()).send().await.unwrap().status()
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!push.is_finished(), "the push waits while the object is being deleted");
    s.state.storage.remove_artifact(&key_of(&layer)).await.unwrap();
    let h = hex.clone();
    s.state.db.run(move |c| claim::unmark(c, &h)).await.unwrap();
    assert_eq!(push.await.unwrap(), StatusCode::CREATED);
    assert_eq!(digest_of(&stored_object(&s, &key_of(&layer)).expect("stored again")), layer);
    assert_eq!(blob_pulled(&s, "late/app", &layer).await, BYTES);
    assert_eq!(artifacts_of(&s, &layer).await, 1);
    support::assert_store_intact(&s).await;
}

on_both_backends!(orphan_cleanup_removes_only_what_nothing_uses, cleanup_never_deletes_an_object_a_writer_keeps);
on_databases!(finished_tasks_can_be_deleted_and_purged);
