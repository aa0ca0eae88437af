//! Pull-through caching with real clients: podman and skopeo pull images of an upstream that
//! pulpish never synced, through a pull-through distribution; concurrent cold pullers cost the
//! upstream one GET per manifest and per blob; excluded names never reach it; tags are re-checked
//! after the remote's `tag_ttl` and served as last known when the upstream is gone.

mod support;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::Digest;
use support::registry::{Auth, Registry};
use support::{run, Backend, TestServer};

const OCI_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json,application/vnd.oci.image.index.v1+json,application/vnd.docker.distribution.manifest.v2+json,application/vnd.docker.distribution.manifest.list.v2+json";

/// A pull-through remote for `url` and a pull-through distribution at `base_path`.
async fn pull_through(s: &TestServer, url: &str, base_path: &str, remote_extra: Value, private: bool) {
    let mut body = json!({"name": base_path, "url": url});
    for (k, v) in remote_extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let (status, remote) = s.post("remotes/container/pull-through/", body).await;
    assert_eq!(status, StatusCode::CREATED, "{remote}");
    let answer = s
        .post("distributions/container/pull-through/", json!({"name": base_path, "base_path": base_path, "remote": remote["pulp_href"], "private": private}))
        .await;
    match answer.0 {
        StatusCode::ACCEPTED => {
            s.completed(answer).await;
        }
        status => assert_eq!(status, StatusCode::CREATED, "{}", answer.1),
    }
}

fn host(s: &TestServer) -> String {
    s.base.trim_start_matches("http://").to_string()
}

/// The upstream's access-log lines of `method` requests for manifests of `name`.
fn manifest_requests(registry: &Registry, method: &str, name: &str) -> usize {
    registry.log().lines().filter(|l| l.contains(&format!("\"{method} /v2/{name}/manifests/"))).count()
}

async fn upstream_digest(registry: &Registry, name: &str, tag: &str) -> String {
    let resp = reqwest::Client::new()
        .head(format!("http://{}/v2/{name}/manifests/{tag}", registry.addr))
        .header("accept", OCI_ACCEPT)
        .send()
        .await
        .unwrap();
    resp.headers()["docker-content-digest"].to_str().unwrap().to_string()
}

async fn get_manifest(s: &TestServer, path: &str, auth: Option<(&str, &str)>) -> reqwest::Response {
    let mut req = reqwest::Client::new().get(s.url(path)).header("accept", OCI_ACCEPT);
    if let Some((u, p)) = auth {
        req = req.basic_auth(u, Some(p));
    }
    req.send().await.unwrap()
}

fn podman(root: &std::path::Path) -> Command {
    let mut cmd = Command::new("podman");
    cmd.arg("--root").arg(root.join("root")).arg("--runroot").arg(root.join("run")).args(["--storage-driver", "vfs"]);
    cmd
}

async fn podman_and_skopeo_pull_with_no_sync(backend: Backend) {
    let registry = Registry::start(Auth::Anonymous);
    registry.push_layout_tag("amd64", "testbed/busybox:latest", false, None);
    registry.push_layout_tag("index", "testbed/list:latest", true, None);
    let busybox = upstream_digest(&registry, "testbed/busybox", "latest").await;
    let list = upstream_digest(&registry, "testbed/list", "latest").await;
    let s = TestServer::start(backend).await;
    pull_through(&s, &registry.url(), "cache", json!({}), false).await;
    assert_eq!(s.count("repositories/container/container/").await, 0);
    let h = host(&s);

    // podman: one image, never synced.
    let root = tempfile::tempdir().unwrap();
    run(podman(root.path()).args(["pull", "--quiet", "--tls-verify=false"]).arg(format!("{h}/cache/testbed/busybox:latest")));
    let raw = run(Command::new("skopeo").args(["inspect", "--raw", "--tls-verify=false"]).arg(format!("docker://{h}/cache/testbed/busybox:latest")));
    assert_eq!(format!("sha256:{:x}", sha2::Sha256::digest(raw.as_bytes())), busybox, "the upstream's exact manifest");

    // A repository, remote and distribution named as Pulp names them, holding the tag, the
    // manifest and its blobs, each blob now stored.
    let (_, repos) = s.get("repositories/container/container/?name=cache/testbed/busybox").await;
    assert_eq!(repos["count"], 1, "{repos}");
    let version = repos["results"][0]["latest_version_href"].as_str().unwrap().to_string();
    let (_, tags) = s.get(&format!("content/container/tags/?repository_version={version}")).await;
    assert_eq!(tags["results"][0]["name"], "latest", "{tags}");
    let (_, manifests) = s.get(&format!("content/container/manifests/?repository_version={version}")).await;
    assert_eq!(manifests["results"][0]["digest"], busybox.as_str());
    let (_, blobs) = s.get(&format!("content/container/blobs/?repository_version={version}")).await;
    let parsed: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(blobs["count"], 1 + parsed["layers"].as_array().unwrap().len(), "the config and the layers: {blobs}");
    assert!(blobs["results"].as_array().unwrap().iter().all(|b| b["artifact"].is_string()), "each blob pulled is stored: {blobs}");
    let (_, dists) = s.get("distributions/container/container/?base_path=cache/testbed/busybox").await;
    assert_eq!(dists["count"], 1, "{dists}");

    // skopeo --all of a manifest list: every platform, byte-identical.
    let out = tempfile::tempdir().unwrap();
    run(Command::new("skopeo")
        .args(["copy", "--all", "--quiet", "--src-tls-verify=false"])
        .arg(format!("docker://{h}/cache/testbed/list:latest"))
        .arg(format!("dir:{}", out.path().display())));
    let raw = run(Command::new("skopeo").args(["inspect", "--raw", "--tls-verify=false"]).arg(format!("docker://{h}/cache/testbed/list:latest")));
    assert_eq!(format!("sha256:{:x}", sha2::Sha256::digest(raw.as_bytes())), list);
    let (_, repos) = s.get("repositories/container/container/?name=cache/testbed/list").await;
    let version = repos["results"][0]["latest_version_href"].as_str().unwrap().to_string();
    let (_, manifests) = s.get(&format!("content/container/manifests/?repository_version={version}")).await;
    assert_eq!(manifests["count"], 3, "the list and both platform manifests: {manifests}");
    let (_, blobs) = s.get(&format!("content/container/blobs/?repository_version={version}&limit=100")).await;
    let recorded: BTreeSet<String> = blobs["results"].as_array().unwrap().iter().map(|b| b["digest"].as_str().unwrap().to_string()).collect();
    let index: Value = serde_json::from_str(&raw).unwrap();
    let mut referenced = BTreeSet::new();
    for m in index["manifests"].as_array().unwrap() {
        let platform: Value = get_manifest(&s, &format!("/v2/cache/testbed/list/manifests/{}", m["digest"].as_str().unwrap()), None).await.json().await.unwrap();
        for b in std::iter::once(&platform["config"]).chain(platform["layers"].as_array().unwrap()) {
            referenced.insert(b["digest"].as_str().unwrap().to_string());
        }
    }
    assert_eq!(recorded, referenced, "every platform's config and layers");
    for d in &recorded {
        let file = out.path().join(d.trim_start_matches("sha256:"));
        assert_eq!(&support::file_digest(&file), d, "{d} arrived with the right sha256");
    }
    support::assert_store_intact(&s).await;
}

async fn sixteen_cold_pullers_cost_one_get_each(backend: Backend) {
    let registry = Registry::start(Auth::Anonymous);
    registry.push_layout_tag("amd64", "testbed/busybox:latest", false, None);
    let digest = upstream_digest(&registry, "testbed/busybox", "latest").await;
    let s = TestServer::start(backend).await;
    pull_through(&s, &registry.url(), "cache", json!({}), false).await;
    let h = host(&s);
    let before_gets = manifest_requests(&registry, "GET", "testbed/busybox");

    let pulls: Vec<_> = (0..16)
        .map(|i| {
            let h = h.clone();
            tokio::task::spawn_blocking(move || {
                let out = tempfile::tempdir().unwrap();
                let status = Command::new("skopeo")
                    .args(["copy", "--quiet", "--src-tls-verify=false"])
                    .arg(format!("docker://{h}/cache/testbed/busybox:latest"))
                    .arg(format!("dir:{}", out.path().display()))
                    .output()
                    .unwrap();
                assert!(status.status.success(), "puller {i}: {}", String::from_utf8_lossy(&status.stderr));
                std::fs::read(out.path().join("manifest.json")).unwrap()
            })
        })
        .collect();
    for p in pulls {
        let manifest = p.await.unwrap();
        assert_eq!(format!("sha256:{:x}", sha2::Sha256::digest(&manifest)), digest);
    }
    assert_eq!(manifest_requests(&registry, "GET", "testbed/busybox") - before_gets, 1, "one manifest GET:\n{}", registry.log());
    let (_, m) = s.get(&format!("content/container/manifests/?digest={digest}")).await;
    let parsed: Value = {
        let resp = get_manifest(&s, &format!("/v2/cache/testbed/busybox/manifests/{digest}"), None).await;
        resp.json().await.unwrap()
    };
    assert_eq!(m["count"], 1);
    for blob in std::iter::once(&parsed["config"]).chain(parsed["layers"].as_array().unwrap()) {
        let d = blob["digest"].as_str().unwrap();
        assert_eq!(registry.blob_gets(Some(d)), 1, "one upstream GET of {d}:\n{}", registry.log().lines().filter(|l| l.contains(d)).collect::<Vec<_>>().join("\n"));
    }
    assert_eq!(s.count("repositories/container/container/").await, 1, "one repository however many asked at once");
}

async fn excluded_names_never_reach_the_upstream(backend: Backend) {
    let registry = Registry::start(Auth::Anonymous);
    registry.push_layout_tag("amd64", "testbed/busybox:latest", false, None);
    registry.push_layout_tag("amd64", "private/secret:latest", false, None);
    let s = TestServer::start(backend).await;
    pull_through(&s, &registry.url(), "cache", json!({"includes": ["testbed/*"], "excludes": ["testbed/no*"]}), false).await;
    let before = registry.log().lines().count();
    for name in ["cache/private/secret", "cache/testbed/nothing"] {
        let resp = get_manifest(&s, &format!("/v2/{name}/manifests/latest"), None).await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["errors"][0]["code"], "NAME_UNKNOWN", "{body}");
    }
    let after: Vec<String> = registry.log().lines().skip(before).map(str::to_string).collect();
    assert!(after.iter().all(|l| !l.contains("/v2/private") && !l.contains("/v2/testbed")), "no upstream request: {after:?}");
    assert_eq!(s.count("repositories/container/container/").await, 0, "nothing recorded");
    // An included name works.
    assert_eq!(get_manifest(&s, "/v2/cache/testbed/busybox/manifests/latest", None).await.status(), StatusCode::OK);
    // A name that is not a valid repository name is no upstream name either.
    let resp = get_manifest(&s, "/v2/cache/Testbed/busybox/manifests/latest", None).await;
    assert!(resp.status().is_client_error());
}

async fn moved_tags_after_the_ttl_and_stale_if_error(backend: Backend) {
    let registry = Registry::start(Auth::Anonymous);
    registry.push_layout_tag("amd64", "testbed/busybox:latest", false, None);
    let first = upstream_digest(&registry, "testbed/busybox", "latest").await;
    let s = TestServer::start(backend).await;
    pull_through(&s, &registry.url(), "cache", json!({"tag_ttl": 1}), false).await;
    let path = "/v2/cache/testbed/busybox/manifests/latest";
    let served = |r: &reqwest::Response| r.headers()["docker-content-digest"].to_str().unwrap().to_string();
    assert_eq!(served(&get_manifest(&s, path, None).await), first);

    // Moved upstream: still the old one within the TTL, the new one after it, in a new version.
    registry.push_layout_tag("arm64", "testbed/busybox:latest", false, None);
    let moved = upstream_digest(&registry, "testbed/busybox", "latest").await;
    assert_ne!(first, moved);
    let heads = manifest_requests(&registry, "HEAD", "testbed/busybox");
    assert_eq!(served(&get_manifest(&s, path, None).await), first, "within the TTL the upstream is not asked");
    assert_eq!(manifest_requests(&registry, "HEAD", "testbed/busybox"), heads);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(served(&get_manifest(&s, path, None).await), moved, "after the TTL the moved tag is served");
    let (_, repos) = s.get("repositories/container/container/?name=cache/testbed/busybox").await;
    let version = repos["results"][0]["latest_version_href"].as_str().unwrap().to_string();
    let (_, tags) = s.get(&format!("content/container/tags/?repository_version={version}")).await;
    assert_eq!(tags["count"], 1, "one tag 'latest', moved: {tags}");
    let (_, manifests) = s.get(&format!("content/container/manifests/?repository_version={version}")).await;
    let held: BTreeSet<&str> = manifests["results"].as_array().unwrap().iter().map(|m| m["digest"].as_str().unwrap()).collect();
    assert_eq!(held, BTreeSet::from([first.as_str(), moved.as_str()]), "the old manifest stays, untagged");
    let (_, tagged) = s.get(tags["results"][0]["tagged_manifest"].as_str().unwrap()).await;
    assert_eq!(tagged["digest"], moved.as_str());

    // Unchanged upstream after the TTL: a HEAD, no new GET, no new version.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let gets = manifest_requests(&registry, "GET", "testbed/busybox");
    assert_eq!(served(&get_manifest(&s, path, None).await), moved);
    assert_eq!(manifest_requests(&registry, "GET", "testbed/busybox"), gets);
    let (_, again) = s.get("repositories/container/container/?name=cache/testbed/busybox").await;
    assert_eq!(again["results"][0]["latest_version_href"], version.as_str());

    // The upstream gone: the last known manifest by tag, and both by digest.
    drop(registry);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let resp = get_manifest(&s, path, None).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(served(&resp), moved, "stale-if-error");
    for d in [&first, &moved] {
        let resp = get_manifest(&s, &format!("/v2/cache/testbed/busybox/manifests/{d}"), None).await;
        assert_eq!(resp.status(), StatusCode::OK, "{d} by digest with the upstream stopped");
        let bytes = resp.bytes().await.unwrap();
        assert_eq!(&format!("sha256:{:x}", sha2::Sha256::digest(&bytes)), d);
    }
    // A name never pulled cannot be served without the upstream.
    let resp = get_manifest(&s, "/v2/cache/testbed/other/manifests/latest", None).await;
    assert!(resp.status().is_server_error(), "{}", resp.status());
}

async fn private_pull_through_needs_credentials(backend: Backend) {
    let registry = Registry::start(Auth::Htpasswd { user: "up", password: "up-secret" });
    registry.push_layout_tag("amd64", "testbed/busybox:latest", false, Some("up:up-secret"));
    let s = TestServer::start(backend).await;
    pull_through(&s, &registry.url(), "cache", json!({"username": "up", "password": "up-secret"}), true).await;
    let path = "/v2/cache/testbed/busybox/manifests/latest";
    let before = registry.log().lines().count();
    let resp = get_manifest(&s, path, None).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(registry.log().lines().skip(before).all(|l| !l.contains("/v2/testbed")), "no upstream request before the client is authorized");
    let resp = get_manifest(&s, path, Some(("admin", support::PASSWORD))).await;
    assert_eq!(resp.status(), StatusCode::OK, "{:?}", resp.text().await);
    // The distribution made for it is private too, and its blobs follow.
    let resp = get_manifest(&s, path, None).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let h = host(&s);
    let out = tempfile::tempdir().unwrap();
    run(Command::new("skopeo")
        .args(["copy", "--quiet", "--src-tls-verify=false", "--src-creds", &format!("admin:{}", support::PASSWORD)])
        .arg(format!("docker://{h}/cache/testbed/busybox:latest"))
        .arg(format!("dir:{}", out.path().display())));
    // The upstream password is never shown: not by the pull-through remote, nor by the remote
    // made for the upstream repository.
    for list in ["remotes/container/pull-through/", "remotes/container/container/"] {
        let (_, remotes) = s.get(list).await;
        assert!(remotes["count"].as_i64().unwrap() >= 1, "{remotes}");
        assert!(!remotes.to_string().contains("up-secret"), "{remotes}");
    }
}

async fn remote_updates_reach_the_repositories_it_made(backend: Backend) {
    let registry = Registry::start(Auth::Anonymous);
    registry.push_layout_tag("amd64", "testbed/busybox:latest", false, None);
    let s = TestServer::start(backend).await;
    pull_through(&s, &registry.url(), "cache", json!({}), false).await;
    assert_eq!(get_manifest(&s, "/v2/cache/testbed/busybox/manifests/latest", None).await.status(), StatusCode::OK);
    let (_, remotes) = s.get("remotes/container/pull-through/").await;
    let href = remotes["results"][0]["pulp_href"].as_str().unwrap().to_string();
    s.completed(s.patch(&href, json!({"tag_ttl": 7, "retry_in_background": true})).await).await;
    let (_, child) = s.get("remotes/container/container/?name=cache/testbed/busybox").await;
    assert_eq!(child["count"], 1, "{child}");
    assert_eq!(child["results"][0]["upstream_name"], "testbed/busybox");
    assert_eq!(child["results"][0]["retry_in_background"], true, "{child}");
}

async fn what_the_upstream_lacks_and_rows_it_did_not_make(backend: Backend) {
    let registry = Registry::start(Auth::Anonymous);
    registry.push_layout_tag("amd64", "testbed/busybox:latest", false, None);
    registry.push_layout_tag("amd64", "testbed/mine:latest", false, None);
    let s = TestServer::start(backend).await;
    pull_through(&s, &registry.url(), "cache", json!({}), false).await;

    // A 404 upstream is remembered: asking again does not ask the upstream again.
    for _ in 0..3 {
        let resp = get_manifest(&s, "/v2/cache/testbed/nothing/manifests/latest", None).await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    }
    assert_eq!(manifest_requests(&registry, "GET", "testbed/nothing"), 1, "{}", registry.log());
    assert_eq!(s.count("repositories/container/container/").await, 0, "a name the upstream lacks leaves no rows");

    // A user's repository of the made name is never written to.
    let (status, mine) = s.post("repositories/container/container/", json!({"name": "cache/testbed/mine"})).await;
    assert_eq!(status, StatusCode::CREATED);
    let resp = get_manifest(&s, "/v2/cache/testbed/mine/manifests/latest", None).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let body: Value = resp.json().await.unwrap();
    assert!(body["errors"][0]["message"].as_str().unwrap().contains("did not make"), "{body}");
    let (_, mine) = s.get(mine["pulp_href"].as_str().unwrap()).await;
    assert!(mine["latest_version_href"].as_str().unwrap().ends_with("/versions/0/"), "{mine}");

    // A name excluded after it was pulled gets nothing new upstream: the stored tag is served.
    let (_, remotes) = s.get("remotes/container/pull-through/").await;
    let href = remotes["results"][0]["pulp_href"].as_str().unwrap().to_string();
    s.completed(s.patch(&href, json!({"tag_ttl": 0})).await).await;
    assert_eq!(get_manifest(&s, "/v2/cache/testbed/busybox/manifests/latest", None).await.status(), StatusCode::OK);
    s.completed(s.patch(&href, json!({"excludes": ["testbed/busybox"]})).await).await;
    let before = registry.log().lines().count();
    assert_eq!(get_manifest(&s, "/v2/cache/testbed/busybox/manifests/latest", None).await.status(), StatusCode::OK);
    let resp = get_manifest(&s, "/v2/cache/testbed/busybox/manifests/other", None).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    // Blob GETs may still come: the prefetch of the stored image's layers, as a client's blob
    // GETs would; what the exclusion stops is asking the upstream for its manifests.
    assert!(
        registry.log().lines().skip(before).all(|l| !l.contains("/v2/testbed/busybox/manifests")),
        "no upstream manifest request for an excluded name"
    );
}

on_both_backends!(
    what_the_upstream_lacks_and_rows_it_did_not_make,
    podman_and_skopeo_pull_with_no_sync,
    sixteen_cold_pullers_cost_one_get_each,
    excluded_names_never_reach_the_upstream,
    moved_tags_after_the_ttl_and_stale_if_error,
    private_pull_through_needs_credentials,
    remote_updates_reach_the_repositories_it_made,
);
