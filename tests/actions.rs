//! The repository actions pulp-cli drives: deleting a version (the others keep their content),
//! tag, untag, add, remove (recursive, as pulp_container's), copy_tags and copy_manifests, each
//! making one version that the content lists and the registry show; bad input is a 400 naming
//! the field.

mod support;

use std::collections::BTreeMap;

use reqwest::StatusCode;
use serde_json::{json, Value};
use support::images::{held, latest_version, pulled, push_image, push_index, repository_at, unit_href, Held, Image, OCI_INDEX};
use support::{Backend, TestServer, PASSWORD};

const REPOS: &str = "repositories/container/container/";
const MISSING_REPO: &str = "repositories/container/container/00000000-0000-0000-0000-000000000000/";

/// Every version of a repository, by number, with what it holds.
async fn snapshot(s: &TestServer, repo: &str) -> BTreeMap<i64, Held> {
    let (status, page) = s.get(&format!("{repo}versions/?limit=1000")).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let mut out = BTreeMap::new();
    for v in page["results"].as_array().unwrap() {
        out.insert(v["number"].as_i64().unwrap(), held(s, v["pulp_href"].as_str().unwrap()).await);
    }
    out
}

/// Expects a 400 and returns its body.
async fn refused(s: &TestServer, path: &str, body: Value) -> Value {
    let (status, answer) = s.post(path, body.clone()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{path} {body}: {answer}");
    answer
}

/// Runs an action to completion; returns the version it made, if any.
async fn act(s: &TestServer, path: &str, body: Value) -> Option<String> {
    let task = s.completed(s.post(path, body).await).await;
    task["created_resources"][0].as_str().map(str::to_string)
}

/// Removes a tag, or a manifest by digest, through the registry: a new version.
async fn registry_delete(s: &TestServer, name: &str, reference: &str) {
    let r = s.client.delete(format!("{}/v2/{name}/manifests/{reference}", s.base)).basic_auth("admin", Some(PASSWORD)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
}

fn held_of(tags: &[(&str, &Image)], manifests: &[&str], images: &[&Image]) -> Held {
    Held {
        tags: tags.iter().map(|(t, i)| (t.to_string(), i.digest.clone())).collect(),
        manifests: manifests.iter().map(|m| m.to_string()).collect(),
        blobs: images.iter().flat_map(|i| i.blobs()).collect(),
    }
}

async fn deleting_a_version_keeps_the_others_content(backend: Backend) {
    let s = TestServer::start(backend).await;
    let name = "versions/app";
    let _a = push_image(&s, name, "a", "a", &[b"layer a"]).await; // 1
    let repo = repository_at(&s, name).await;
    let b = push_image(&s, name, "b", "b", &[b"layer b"]).await; // 2
    registry_delete(&s, name, "a").await; // 3: tag a goes
    let c = push_image(&s, name, "c", "c", &[b"layer c"]).await; // 4
    push_image(&s, name, "tmp", "c", &[b"layer c"]).await; // 5: a tag that 6 removes again
    registry_delete(&s, name, "tmp").await; // 6
    registry_delete(&s, name, "b").await; // 7: tag b goes ...
    push_image(&s, name, "b", "b", &[b"layer b"]).await; // 8: ... and comes back
    let mut expected = snapshot(&s, &repo).await;
    assert_eq!(expected.keys().copied().collect::<Vec<_>>(), (0..=8).collect::<Vec<_>>());
    let names = |n: i64| expected[&n].tags.keys().cloned().collect::<Vec<_>>();
    assert_eq!((names(2), names(3), names(5), names(7), names(8)), (vec!["a".into(), "b".into()], vec!["b".into()], vec!["b".into(), "c".into(), "tmp".into()], vec!["c".into()], vec!["b".into(), "c".into()]));
    let version = |n: i64| format!("{repo}versions/{n}/");

    // 2 added b's image, which stays in the later versions; 3 now adds it.
    let task = s.completed(s.delete(&version(2)).await).await;
    assert_eq!(task["created_resources"], json!([]));
    expected.remove(&2);
    assert_eq!(snapshot(&s, &repo).await, expected);
    assert_eq!(s.get(&version(2)).await.0, StatusCode::NOT_FOUND);
    let (_, v3) = s.get(&version(3)).await;
    assert!(v3["base_version"].is_null(), "its base is gone: {v3}");
    assert_eq!(v3["content_summary"]["added"]["container.manifest"]["count"], 1, "{v3}");
    assert_eq!(v3["content_summary"]["added"]["container.tag"]["count"], 1, "tag b: {v3}");
    assert_eq!(v3["content_summary"]["removed"]["container.tag"]["count"], 1, "tag a: {v3}");

    // 5 added tag tmp, which 6 removed: it is in no version any more, and 6 changes nothing.
    // A distribution serving 5 then serves nothing (Pulp's SET_NULL).
    let pinned = s.completed(s.post("distributions/container/container/", json!({"name": "pinned", "base_path": "pinned", "repository_version": version(5)})).await).await;
    let pinned = pinned["created_resources"][0].as_str().unwrap().to_string();
    assert_eq!(pulled(&s, "pinned", "tmp").await, Ok(c.digest.clone()));
    s.completed(s.delete(&version(5)).await).await;
    expected.remove(&5);
    assert_eq!(snapshot(&s, &repo).await, expected);
    assert!(s.get(&pinned).await.1["repository_version"].is_null());
    assert!(pulled(&s, "pinned", "tmp").await.is_err());
    let (_, v6) = s.get(&version(6)).await;
    assert_eq!(v6["content_summary"]["removed"], json!({}), "{v6}");
    assert_eq!(s.count(&format!("content/container/tags/?name=tmp&repository_version={}", version(4))).await, 0);

    // 7 removed tag b, which 8 added back: one membership continues through 8.
    s.completed(s.delete(&version(7)).await).await;
    expected.remove(&7);
    assert_eq!(snapshot(&s, &repo).await, expected);
    assert_eq!(s.count(&format!("content/container/tags/?repository_version_added={}", version(8))).await, 0);

    // Version 0 may go too, when it is not the latest.
    s.completed(s.delete(&version(0)).await).await;
    expected.remove(&0);
    assert_eq!(snapshot(&s, &repo).await, expected);
    assert!(s.get(&version(1)).await.1["base_version"].is_null());

    // The latest stays; what it serves is unchanged.
    let (status, body) = s.delete(&version(8)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["detail"], "The latest version of a repository cannot be deleted.");
    assert_eq!(s.delete(&version(2)).await.0, StatusCode::NOT_FOUND);
    assert_eq!(s.delete(&format!("{MISSING_REPO}versions/1/")).await.0, StatusCode::NOT_FOUND);
    assert_eq!(pulled(&s, name, "b").await, Ok(b.digest.clone()));
    assert_eq!(pulled(&s, name, "c").await, Ok(c.digest.clone()));

    // A repository's only version cannot go.
    let (_, empty) = s.post(REPOS, json!({"name": "empty"})).await;
    let (status, body) = s.delete(&format!("{}versions/0/", empty["pulp_href"].as_str().unwrap())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["detail"], "Cannot delete repository version. Repositories must have at least one repository version.");
}

async fn tag_and_untag_make_versions_that_pulls_follow(backend: Backend) {
    let s = TestServer::start(backend).await;
    let name = "tagging/app";
    let a = push_image(&s, name, "a", "a", &[b"layer a"]).await;
    let b = push_image(&s, name, "b", "b", &[b"layer b"]).await;
    let repo = repository_at(&s, name).await;
    let (tag, untag) = (format!("{repo}tag/"), format!("{repo}untag/"));

    let v = act(&s, &tag, json!({"tag": "extra", "digest": a.digest})).await.expect("a new version");
    assert_eq!(v, latest_version(&s, &repo).await);
    assert_eq!(held(&s, &v).await, held_of(&[("a", &a), ("b", &b), ("extra", &a)], &[&a.digest, &b.digest], &[&a, &b]));
    assert_eq!(pulled(&s, name, "extra").await, Ok(a.digest.clone()));

    // The tag moves; the version before keeps it where it was.
    let moved = act(&s, &tag, json!({"tag": "extra", "digest": b.digest})).await.unwrap();
    assert_eq!(held(&s, &moved).await.tags["extra"], b.digest);
    assert_eq!(held(&s, &v).await.tags["extra"], a.digest);
    assert_eq!(pulled(&s, name, "extra").await, Ok(b.digest.clone()));

    let untagged = act(&s, &untag, json!({"tag": "extra"})).await.unwrap();
    assert_eq!(held(&s, &untagged).await, held_of(&[("a", &a), ("b", &b)], &[&a.digest, &b.digest], &[&a, &b]));
    assert_eq!(pulled(&s, name, "extra").await, Err(StatusCode::NOT_FOUND));

    // Tagging a manifest as it already is tagged changes nothing: no new version.
    assert_eq!(act(&s, &tag, json!({"tag": "a", "digest": a.digest})).await, None);
    assert_eq!(latest_version(&s, &repo).await, untagged);

    let body = refused(&s, &tag, json!({})).await;
    assert_eq!(body["tag"], json!(["This field is required."]));
    assert_eq!(body["digest"], json!(["This field is required."]));
    for t in [".dot", "-dash", "sp ace", &"x".repeat(129)] {
        assert!(refused(&s, &tag, json!({"tag": t, "digest": a.digest})).await["tag"][0].as_str().unwrap().contains("not valid"), "{t}");
    }
    let missing = format!("sha256:{}", "0".repeat(64));
    let body = refused(&s, &tag, json!({"tag": "x", "digest": missing})).await;
    assert!(body["digest"][0].as_str().unwrap().contains("does not exist in the latest repository version"), "{body}");
    assert_eq!(refused(&s, &tag, json!({"tag": "x", "digest": a.digest, "colour": "red"})).await["colour"], json!(["Unexpected field"]));
    assert!(refused(&s, &tag, json!({"tag": 5, "digest": a.digest})).await["tag"].is_array());
    assert!(refused(&s, &untag, json!({"tag": "extra"})).await["tag"][0].as_str().unwrap().contains("does not exist"));
    assert_eq!(refused(&s, &untag, json!({})).await["tag"], json!(["This field is required."]));
    assert_eq!(s.post(&format!("{MISSING_REPO}tag/"), json!({"tag": "x", "digest": a.digest})).await.0, StatusCode::NOT_FOUND);
    assert_eq!(latest_version(&s, &repo).await, untagged, "nothing refused made a version");
}

/// `src/app`: images a and b sharing a layer, and an index `multi` listing both.
async fn source(s: &TestServer) -> (String, Image, Image, String) {
    let name = "src/app";
    let a = push_image(s, name, "a", "a", &[b"shared layer", b"layer a"]).await;
    let b = push_image(s, name, "b", "b", &[b"shared layer", b"layer b"]).await;
    let index = push_index(s, name, "multi", &[&a, &b]).await;
    (repository_at(s, name).await, a, b, index)
}

async fn empty_repository(s: &TestServer, name: &str) -> String {
    let (status, r) = s.post(REPOS, json!({"name": name})).await;
    assert_eq!(status, StatusCode::CREATED, "{r}");
    r["pulp_href"].as_str().unwrap().to_string()
}

async fn add_and_remove_take_what_content_references(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (src, a, b, index) = source(&s).await;
    let srcv = latest_version(&s, &src).await;
    let dest = empty_repository(&s, "dest").await;
    s.completed(s.post("distributions/container/container/", json!({"name": "dest", "base_path": "dest/app", "repository": dest})).await).await;
    let (add, remove) = (format!("{dest}add/"), format!("{dest}remove/"));
    let tag_a = unit_href(&s, "tags", "name=a", Some(&srcv)).await;
    let tag_b = unit_href(&s, "tags", "name=b", Some(&srcv)).await;
    let manifest_b = unit_href(&s, "manifests", &format!("digest={}", b.digest), None).await;
    let index_href = unit_href(&s, "manifests", &format!("digest={index}"), None).await;
    let shared = unit_href(&s, "blobs", &format!("digest={}", support::images::digest_of(b"shared layer")), None).await;

    // A tag brings its manifest and the manifest's blobs.
    let v = act(&s, &add, json!({"content_units": [tag_a]})).await.unwrap();
    assert_eq!(held(&s, &v).await, held_of(&[("a", &a)], &[&a.digest], &[&a]));
    assert_eq!(pulled(&s, "dest/app", "a").await, Ok(a.digest.clone()));
    let v = act(&s, &add, json!({"content_units": [tag_b]})).await.unwrap();
    assert_eq!(held(&s, &v).await, held_of(&[("a", &a), ("b", &b)], &[&a.digest, &b.digest], &[&a, &b]));

    // A manifest goes with its tags and the blobs only it used: a's image keeps the shared layer.
    let v = act(&s, &remove, json!({"content_units": [manifest_b]})).await.unwrap();
    assert_eq!(held(&s, &v).await, held_of(&[("a", &a)], &[&a.digest], &[&a]));
    assert_eq!(pulled(&s, "dest/app", "b").await, Err(StatusCode::NOT_FOUND));
    // A blob that a remaining manifest uses stays: nothing changes.
    assert_eq!(act(&s, &remove, json!({"content_units": [shared]})).await, None);
    // A tag goes with its manifest, as nothing else keeps it.
    let v = act(&s, &remove, json!({"content_units": [tag_a]})).await.unwrap();
    assert_eq!(held(&s, &v).await, Held::default());

    // An index brings the manifests it lists, with their blobs, and no tags.
    let v = act(&s, &add, json!({"content_units": [index_href]})).await.unwrap();
    assert_eq!(held(&s, &v).await, held_of(&[], &[&a.digest, &b.digest, &index], &[&a, &b]));
    assert_eq!(pulled(&s, "dest/app", &index).await, Ok(index.clone()));
    // Removing a listed manifest while its index stays changes nothing.
    assert_eq!(act(&s, &remove, json!({"content_units": [manifest_b]})).await, None);
    let v = act(&s, &remove, json!({"content_units": ["*"]})).await.unwrap();
    assert_eq!(held(&s, &v).await, Held::default());

    let not_found = "/pulp/api/v3/content/container/tags/00000000-0000-0000-0000-000000000000/";
    let blob_as_tag = shared.replace("/blobs/", "/tags/");
    for units in [json!(["/pulp/api/v3/content/container/tags/x/"]), json!([not_found]), json!([blob_as_tag]), json!(["*"]), json!("x")] {
        let body = refused(&s, &add, json!({"content_units": units})).await;
        assert!(body["content_units"].is_array(), "{units}: {body}");
    }
    assert!(refused(&s, &remove, json!({"content_units": ["*", tag_a]})).await["content_units"].is_array());
    assert_eq!(refused(&s, &add, json!({"content_units": [], "base_version": 1})).await["base_version"], json!(["Unexpected field"]));
    // Two tags of one name cannot go into one version.
    act(&s, &format!("{src}tag/"), json!({"tag": "a", "digest": b.digest})).await.unwrap();
    let moved_a = unit_href(&s, "tags", "name=a", Some(&latest_version(&s, &src).await)).await;
    assert_ne!(moved_a, tag_a);
    assert!(refused(&s, &add, json!({"content_units": [tag_a, moved_a]})).await["content_units"][0].as_str().unwrap().contains("'a'"));
    assert_eq!(s.post(&format!("{MISSING_REPO}add/"), json!({"content_units": []})).await.0, StatusCode::NOT_FOUND);
}

async fn copies_take_tags_or_manifests_with_their_blobs(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (src, a, b, index) = source(&s).await;
    let srcv = latest_version(&s, &src).await;

    let tags = empty_repository(&s, "tags").await;
    let copy_tags = format!("{tags}copy_tags/");
    let v = act(&s, &copy_tags, json!({"source_repository_version": srcv, "names": ["b"]})).await.unwrap();
    assert_eq!(held(&s, &v).await, held_of(&[("b", &b)], &[&b.digest], &[&b]));
    let v = act(&s, &copy_tags, json!({"source_repository_version": srcv})).await.unwrap();
    assert_eq!(held(&s, &v).await, held(&s, &srcv).await, "every tag with everything it needs");

    let manifests = empty_repository(&s, "manifests").await;
    let copy_manifests = format!("{manifests}copy_manifests/");
    let v = act(&s, &copy_manifests, json!({"source_repository_version": srcv, "digests": [a.digest]})).await.unwrap();
    assert_eq!(held(&s, &v).await, held_of(&[], &[&a.digest], &[&a]));
    let v = act(&s, &copy_manifests, json!({"source_repository": src, "media_types": [OCI_INDEX]})).await.unwrap();
    assert_eq!(held(&s, &v).await, held_of(&[], &[&a.digest, &b.digest, &index], &[&a, &b]));
    // Nothing matches: no version.
    assert_eq!(act(&s, &copy_tags, json!({"source_repository_version": srcv, "names": ["nope"]})).await, None);

    let before = [latest_version(&s, &tags).await, latest_version(&s, &manifests).await];
    for (path, body, field) in [
        (&copy_tags, json!({}), "source_repository_version"),
        (&copy_tags, json!({"source_repository_version": format!("{src}versions/99/")}), "source_repository_version"),
        (&copy_tags, json!({"source_repository_version": srcv, "source_repository": src}), "source_repository_version"),
        (&copy_tags, json!({"source_repository": "/pulp/api/v3/remotes/container/container/x/"}), "source_repository"),
        (&copy_tags, json!({"source_repository_version": srcv, "names": null}), "names"),
        (&copy_tags, json!({"source_repository_version": srcv, "names": "b"}), "names"),
        (&copy_manifests, json!({"source_repository_version": srcv, "media_types": ["text/plain"]}), "media_types"),
        (&copy_manifests, json!({"source_repository_version": srcv, "digests": [1]}), "digests"),
        (&copy_manifests, json!({"source_repository_version": srcv, "tags": []}), "tags"),
    ] {
        let answer = refused(&s, path, body.clone()).await;
        // A list's item is named by its place: `digests[0]`.
        assert!(answer.as_object().unwrap().keys().any(|k| k == field || k.starts_with(&format!("{field}["))), "{body} names {field}: {answer}");
    }
    assert_eq!([latest_version(&s, &tags).await, latest_version(&s, &manifests).await], before, "nothing refused made a version");
}

on_databases!(
    deleting_a_version_keeps_the_others_content,
    tag_and_untag_make_versions_that_pulls_follow,
    add_and_remove_take_what_content_references,
    copies_take_tags_or_manifests_with_their_blobs,
);
