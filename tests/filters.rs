//! Every documented list filter changes the answer, on every list endpoint; ordering both ways,
//! `fields` / `exclude_fields`, and an undeclared parameter is a 400 naming it. Each test builds
//! two or more objects of which a filter keeps some.

mod support;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::Digest;
use support::{sleep_task, Backend, TestServer, PASSWORD};

const REPOS: &str = "repositories/container/container/";
const DISTS: &str = "distributions/container/container/";
const TAGS: &str = "content/container/tags/";
const MANIFESTS: &str = "content/container/manifests/";
const BLOBS: &str = "content/container/blobs/";
const OCI: &str = "application/vnd.oci.image.manifest.v1+json";
const DOCKER: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// A media type as a query value (`+` would read as a space).
fn q(media_type: &str) -> String {
    media_type.replace('+', "%2B")
}

/// A 200 list or object.
async fn ok(s: &TestServer, path: &str) -> Value {
    let (status, body) = s.get(path).await;
    assert_eq!(status, StatusCode::OK, "{path}: {body}");
    body
}

/// `field` of each result of a list, as text.
async fn column(s: &TestServer, path: &str, field: &str) -> Vec<String> {
    let page = ok(s, path).await;
    let results = page["results"].as_array().unwrap_or_else(|| panic!("{path}: {page}"));
    assert_eq!(page["count"].as_u64().unwrap() as usize, results.len(), "{path}: one page holds the whole answer");
    results
        .iter()
        .map(|r| match &r[field] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect()
}

/// Asserts a 400 whose body names `param`.
async fn rejects(s: &TestServer, path: &str, param: &str) {
    let (status, body) = s.get(path).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
    assert!(body.get(param).is_some_and(Value::is_array), "{path}: the 400 names {param}: {body}");
}

/// The keys of an object, sorted.
fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().unwrap_or_else(|| panic!("not an object: {v}")).keys().cloned().collect();
    k.sort();
    k
}

/// `fields` keeps only the named keys and `exclude_fields` drops them, on a list and on `detail`.
async fn selects_fields(s: &TestServer, list: &str, detail: &str, keep: &[&str], drop: &str) {
    let sep = if list.contains('?') { '&' } else { '?' };
    let query: Vec<String> = keep.iter().map(|f| format!("fields={f}")).collect();
    let page = ok(s, &format!("{list}{sep}{}", query.join("&"))).await;
    let mut wanted: Vec<String> = keep.iter().map(|f| f.to_string()).collect();
    wanted.sort();
    assert!(!page["results"].as_array().unwrap().is_empty(), "{list}");
    for r in page["results"].as_array().unwrap() {
        assert_eq!(keys(r), wanted, "{list} fields");
    }
    let page = ok(s, &format!("{list}{sep}exclude_fields={drop}")).await;
    for r in page["results"].as_array().unwrap() {
        assert!(r.get(drop).is_none() && r.get("pulp_href").is_some(), "{list} exclude_fields: {r}");
    }
    let one = ok(s, &format!("{detail}?fields={}", keep.join(","))).await;
    assert_eq!(keys(&one), wanted, "{detail} fields");
    let one = ok(s, &format!("{detail}?exclude_fields={drop}")).await;
    assert!(one.get(drop).is_none() && one.get("pulp_href").is_some(), "{detail} exclude_fields: {one}");
    rejects(s, &format!("{detail}?fields=nope"), "fields").await;
    rejects(s, &format!("{detail}?name__in=x"), "name__in").await;
}

fn href(v: &Value) -> String {
    v["pulp_href"].as_str().unwrap_or_else(|| panic!("no pulp_href in {v}")).to_string()
}

async fn repositories_filter_and_order(backend: Backend) {
    let s = &TestServer::start(backend).await;
    let mut repos = Vec::new();
    for name in ["alpha", "beta", "gamma_x"] {
        let (status, r) = s.post(REPOS, json!({"name": name})).await;
        assert_eq!(status, StatusCode::CREATED, "{r}");
        repos.push(r);
    }
    // alpha changes last. Times are read back: the database may store them less precisely.
    s.completed(s.patch(&href(&repos[0]), json!({"description": "changed"})).await).await;
    let alpha = &ok(s, &href(&repos[0])).await;
    let beta = &ok(s, &href(&repos[1])).await;
    let gamma = &ok(s, &href(&repos[2])).await;
    let names = |q: &str| {
        let path = format!("{REPOS}?{q}");
        async move { column(s, &path, "name").await }
    };

    assert_eq!(names("name=beta").await, ["beta"]);
    assert_eq!(names("name__in=beta,gamma_x").await, ["beta", "gamma_x"]);
    assert_eq!(names("name__contains=et").await, ["beta"]);
    // `_` is the literal character, not LIKE's wildcard.
    assert_eq!(names("name__contains=_").await, ["gamma_x"]);
    assert_eq!(names("name__contains=ALP").await, Vec::<String>::new(), "contains is case-sensitive");
    assert_eq!(names("name__icontains=ALP").await, ["alpha"]);
    assert_eq!(names("name__startswith=g").await, ["gamma_x"]);
    let q = format!("{REPOS}?pulp_href__in={},{}", href(alpha), href(gamma));
    assert_eq!(column(s, &q, "name").await, ["alpha", "gamma_x"]);
    rejects(s, &format!("{REPOS}?pulp_href__in={DISTS}"), "pulp_href__in").await;

    let updated = |r: &Value| r["pulp_last_updated"].as_str().unwrap().to_string();
    let by = |lookup: &str, r: &Value| format!("{REPOS}?pulp_last_updated{lookup}={}", updated(r));
    assert_eq!(column(s, &by("", beta), "name").await, ["beta"]);
    assert_eq!(column(s, &by("__gt", gamma), "name").await, ["alpha"]);
    assert_eq!(column(s, &by("__gte", gamma), "name").await, ["alpha", "gamma_x"]);
    assert_eq!(column(s, &by("__lt", gamma), "name").await, ["beta"]);
    assert_eq!(column(s, &by("__lte", gamma), "name").await, ["beta", "gamma_x"]);
    rejects(s, &format!("{REPOS}?pulp_last_updated__gt=yesterday"), "pulp_last_updated__gt").await;

    assert_eq!(names("ordering=name").await, ["alpha", "beta", "gamma_x"]);
    assert_eq!(names("ordering=-name").await, ["gamma_x", "beta", "alpha"]);
    assert_eq!(names("ordering=pulp_created").await, ["alpha", "beta", "gamma_x"]);
    assert_eq!(names("ordering=-pulp_created").await, ["gamma_x", "beta", "alpha"]);
    assert_eq!(names("ordering=pulp_last_updated").await, ["beta", "gamma_x", "alpha"]);
    assert_eq!(names("ordering=-pulp_last_updated").await, ["alpha", "gamma_x", "beta"]);
    rejects(s, &format!("{REPOS}?ordering=remote"), "ordering").await;
    rejects(s, &format!("{REPOS}?bogus=1"), "bogus").await;
    rejects(s, &format!("{REPOS}?name__iexact=alpha"), "name__iexact").await;
    selects_fields(s, REPOS, &href(alpha), &["name", "pulp_href"], "versions_href").await;
}

async fn distributions_filter_and_order(backend: Backend) {
    let s = &TestServer::start(backend).await;
    let (_, repo) = s.post(REPOS, json!({"name": "served"})).await;
    let repo = href(&repo);
    s.completed(s.post(DISTS, json!({"name": "web", "base_path": "team/web", "repository": repo})).await).await;
    s.completed(s.post(DISTS, json!({"name": "api", "base_path": "other/api"})).await).await;
    let names = |q: String| async move { column(s, &format!("{DISTS}?{q}"), "name").await };

    assert_eq!(names("name=web".into()).await, ["web"]);
    assert_eq!(names("name__in=api,nope".into()).await, ["api"]);
    assert_eq!(names("name__contains=e".into()).await, ["web"]);
    assert_eq!(names("name__icontains=WE".into()).await, ["web"]);
    assert_eq!(names("name__startswith=a".into()).await, ["api"]);
    assert_eq!(names("base_path=team/web".into()).await, ["web"]);
    assert_eq!(names("base_path__contains=her".into()).await, ["api"]);
    assert_eq!(names("base_path__icontains=TEAM".into()).await, ["web"]);
    assert_eq!(names("base_path__in=other/api,x/y".into()).await, ["api"]);
    assert_eq!(names("base_path__startswith=team/".into()).await, ["web"]);
    assert_eq!(names(format!("repository={repo}")).await, ["web"]);
    rejects(s, &format!("{DISTS}?repository=/pulp/api/v3/remotes/container/container/x/"), "repository").await;
    let web = ok(s, &format!("{DISTS}?name=web")).await["results"][0].clone();
    assert_eq!(names(format!("pulp_href__in={}", href(&web))).await, ["web"]);

    assert_eq!(names("ordering=name".into()).await, ["api", "web"]);
    assert_eq!(names("ordering=-name".into()).await, ["web", "api"]);
    assert_eq!(names("ordering=base_path".into()).await, ["api", "web"]);
    assert_eq!(names("ordering=-base_path".into()).await, ["web", "api"]);
    assert_eq!(names("ordering=pulp_created".into()).await, ["web", "api"]);
    assert_eq!(names("ordering=-pulp_created".into()).await, ["api", "web"]);
    rejects(s, &format!("{DISTS}?ordering=private"), "ordering").await;
    rejects(s, &format!("{DISTS}?private=true"), "private").await;
    selects_fields(s, DISTS, &href(&web), &["base_path", "pulp_href"], "registry_path").await;
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{:x}", sha2::Sha256::digest(bytes))
}

fn registry(s: &TestServer, method: Method, path: &str) -> reqwest::RequestBuilder {
    s.client.request(method, format!("{}{path}", s.base)).basic_auth("admin", Some(PASSWORD))
}

async fn push_blob(s: &TestServer, bytes: &[u8]) -> String {
    let digest = sha256(bytes);
    let r = registry(s, Method::POST, &format!("/v2/filt/app/blobs/uploads/?digest={digest}")).body(bytes.to_vec()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    digest
}

/// Pushes an image manifest under `tag`; returns its digest.
async fn push_manifest(s: &TestServer, tag: &str, media_type: &str, config: (&str, usize), layer: (&str, usize)) -> String {
    let body = json!({"schemaVersion": 2, "mediaType": media_type,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.0, "size": config.1},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer.0, "size": layer.1}]});
    let bytes = serde_json::to_vec(&body).unwrap();
    let r = registry(s, Method::PUT, &format!("/v2/filt/app/manifests/{tag}")).header("content-type", media_type).body(bytes.clone()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().await.unwrap());
    sha256(&bytes)
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

/// Versions, content and artifacts of one pushed repository: version 1 tags `one` (an OCI
/// manifest), version 2 adds `two` (a Docker manifest with another config), version 3 untags `one`.
async fn versions_content_and_artifacts_filter_and_order(backend: Backend) {
    let s = &TestServer::start(backend).await;
    let (config_a, config_b, layer) = (b"{\"a\":1}".to_vec(), b"{\"bb\":22}".to_vec(), vec![7u8; 100]);
    let ca = push_blob(s, &config_a).await;
    let cb = push_blob(s, &config_b).await;
    let l = push_blob(s, &layer).await;
    let ma = push_manifest(s, "one", OCI, (&ca, config_a.len()), (&l, layer.len())).await;
    let mb = push_manifest(s, "two", DOCKER, (&cb, config_b.len()), (&l, layer.len())).await;
    let r = registry(s, Method::DELETE, "/v2/filt/app/manifests/one").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);

    let repo = ok(s, &format!("{REPOS}?name=filt/app")).await["results"][0].clone();
    let versions = repo["versions_href"].as_str().unwrap().to_string();
    let v = |n: i64| format!("{versions}{n}/");
    let numbers = |q: String| {
        let path = format!("{versions}?{q}");
        async move { column(s, &path, "number").await }
    };

    // Versions.
    assert_eq!(numbers(String::new()).await, ["3", "2", "1", "0"], "newest first");
    assert_eq!(numbers("number=1".into()).await, ["1"]);
    assert_eq!(numbers("number__gt=1".into()).await, ["3", "2"]);
    assert_eq!(numbers("number__gte=1".into()).await, ["3", "2", "1"]);
    assert_eq!(numbers("number__lt=1".into()).await, ["0"]);
    assert_eq!(numbers("number__lte=1".into()).await, ["1", "0"]);
    rejects(s, &format!("{versions}?number=one"), "number").await;
    let tag_href = |name: &'static str| {
        let path = format!("{TAGS}?name={name}");
        async move { href(&ok(s, &path).await["results"][0]) }
    };
    let (one, two) = (tag_href("one").await, tag_href("two").await);
    let manifest_a = href(&ok(s, &format!("{MANIFESTS}?digest={ma}")).await["results"][0]);
    let blob_b = href(&ok(s, &format!("{BLOBS}?digest={cb}")).await["results"][0]);
    assert_eq!(numbers(format!("content={one}")).await, ["2", "1"]);
    assert_eq!(numbers(format!("content={two}")).await, ["3", "2"]);
    assert_eq!(numbers(format!("content__in={one},{two}")).await, ["3", "2", "1"]);
    assert_eq!(numbers(format!("content={manifest_a}")).await, ["3", "2", "1"]);
    assert_eq!(numbers(format!("content={blob_b}&number__lt=3")).await, ["2"]);
    rejects(s, &format!("{versions}?content={}", href(&repo)), "content").await;
    rejects(s, &format!("{versions}?content__in={BLOBS}00000000-0000-0000-0000-000000000000/"), "content__in").await;
    let v2 = ok(s, &v(2)).await;
    let created = v2["pulp_created"].as_str().unwrap();
    assert_eq!(numbers(format!("pulp_created__gte={created}")).await, ["3", "2"]);
    assert_eq!(numbers(format!("pulp_created__lt={created}")).await, ["1", "0"]);
    assert_eq!(numbers(format!("pulp_created={created}")).await, ["2"]);
    assert_eq!(numbers("ordering=number".into()).await, ["0", "1", "2", "3"]);
    assert_eq!(numbers("ordering=-number".into()).await, ["3", "2", "1", "0"]);
    assert_eq!(numbers("ordering=pulp_created".into()).await, ["0", "1", "2", "3"]);
    assert_eq!(numbers("ordering=-pulp_created".into()).await, ["3", "2", "1", "0"]);
    rejects(s, &format!("{versions}?name=x"), "name").await;
    selects_fields(s, &versions, &v(2), &["number", "pulp_href"], "content_summary").await;

    // Tags.
    let tags = |q: String| async move { column(s, &format!("{TAGS}?{q}"), "name").await };
    assert_eq!(tags(format!("repository_version={}", v(1))).await, ["one"]);
    assert_eq!(tags(format!("repository_version={}", v(2))).await, ["one", "two"]);
    assert_eq!(tags(format!("repository_version={}", v(3))).await, ["two"]);
    assert_eq!(tags(format!("repository_version_added={}", v(2))).await, ["two"]);
    assert_eq!(tags(format!("repository_version_removed={}", v(3))).await, ["one"]);
    rejects(s, &format!("{TAGS}?repository_version={}", v(9)), "repository_version").await;
    rejects(s, &format!("{TAGS}?repository_version_added={}", v(9)), "repository_version_added").await;
    rejects(s, &format!("{TAGS}?repository_version_removed=nope"), "repository_version_removed").await;
    assert_eq!(tags(format!("pulp_href__in={two}")).await, ["two"]);
    assert_eq!(tags("name=one".into()).await, ["one"]);
    assert_eq!(tags("name__in=one,two".into()).await, ["one", "two"]);
    assert_eq!(tags("name__contains=w".into()).await, ["two"]);
    assert_eq!(tags("name__icontains=ON".into()).await, ["one"]);
    assert_eq!(tags("name__startswith=t".into()).await, ["two"]);
    assert_eq!(tags(format!("digest={ma}")).await, ["one"]);
    assert_eq!(tags(format!("digest={ma},{mb}")).await, ["one", "two"]);
    assert_eq!(tags(format!("digest={ma}&digest={mb}")).await, ["one", "two"]);
    assert_eq!(tags(format!("media_type={}", q(DOCKER))).await, ["two"]);
    assert_eq!(tags(format!("media_type={}&name__in=one,two", q(OCI))).await, ["one"]);
    assert_eq!(tags("ordering=name".into()).await, ["one", "two"]);
    assert_eq!(tags("ordering=-name".into()).await, ["two", "one"]);
    assert_eq!(tags("ordering=pulp_created".into()).await, ["one", "two"]);
    assert_eq!(tags("ordering=-pulp_created".into()).await, ["two", "one"]);
    rejects(s, &format!("{TAGS}?ordering=digest"), "ordering").await;
    rejects(s, &format!("{TAGS}?digest__in={ma}"), "digest__in").await;
    selects_fields(s, TAGS, &one, &["name", "pulp_href"], "tagged_manifest").await;

    // Manifests.
    let manifests = |q: String| async move { column(s, &format!("{MANIFESTS}?{q}"), "digest").await };
    assert_eq!(manifests(format!("digest={mb}")).await, [mb.as_str()]);
    assert_eq!(sorted(manifests(format!("digest__in={ma},{mb}")).await), sorted(vec![ma.as_str(), mb.as_str()]));
    assert_eq!(manifests(format!("media_type={}", q(OCI))).await, [ma.as_str()]);
    assert_eq!(sorted(manifests(format!("media_type={},{}", q(OCI), q(DOCKER))).await), sorted(vec![ma.as_str(), mb.as_str()]));
    assert_eq!(manifests(format!("pulp_href__in={manifest_a}")).await, [ma.as_str()]);
    assert_eq!(manifests(format!("repository_version={}", v(1))).await, [ma.as_str()]);
    assert_eq!(manifests(format!("repository_version_added={}", v(2))).await, [mb.as_str()]);
    assert_eq!(manifests(format!("repository_version_removed={}", v(3))).await, Vec::<String>::new());
    assert_eq!(manifests("ordering=digest".into()).await, sorted(vec![ma.as_str(), mb.as_str()]));
    let mut desc = sorted(vec![ma.as_str(), mb.as_str()]);
    desc.reverse();
    assert_eq!(manifests("ordering=-digest".into()).await, desc);
    assert_eq!(manifests("ordering=pulp_created".into()).await, [ma.as_str(), mb.as_str()]);
    assert_eq!(manifests("ordering=-pulp_created".into()).await, [mb.as_str(), ma.as_str()]);
    rejects(s, &format!("{MANIFESTS}?name=one"), "name").await;
    selects_fields(s, MANIFESTS, &manifest_a, &["digest", "pulp_href"], "blobs").await;

    // Blobs.
    let blobs = |q: String| async move { column(s, &format!("{BLOBS}?{q}"), "digest").await };
    assert_eq!(blobs(format!("digest={l}")).await, [l.as_str()]);
    assert_eq!(sorted(blobs(format!("digest__in={ca},{cb}")).await), sorted(vec![ca.as_str(), cb.as_str()]));
    assert_eq!(blobs(format!("pulp_href__in={blob_b}")).await, [cb.as_str()]);
    assert_eq!(sorted(blobs(format!("repository_version={}", v(1))).await), sorted(vec![ca.as_str(), l.as_str()]));
    assert_eq!(blobs(format!("repository_version_added={}", v(2))).await, [cb.as_str()]);
    let all = vec![ca.as_str(), cb.as_str(), l.as_str()];
    assert_eq!(blobs("ordering=pulp_created".into()).await, all);
    assert_eq!(blobs("ordering=-pulp_created".into()).await, [l.as_str(), cb.as_str(), ca.as_str()]);
    assert_eq!(blobs("ordering=digest".into()).await, sorted(all.clone()));
    let mut desc = sorted(all.clone());
    desc.reverse();
    assert_eq!(blobs("ordering=-digest".into()).await, desc);
    rejects(s, &format!("{BLOBS}?media_type={}", q(OCI)), "media_type").await;
    selects_fields(s, BLOBS, &blob_b, &["digest", "pulp_href"], "artifact").await;

    // Artifacts: the three blobs' files, of sizes 7, 9 and 100.
    let hex = |d: &str| d.trim_start_matches("sha256:").to_string();
    let artifacts = |q: String| async move { column(s, &format!("artifacts/?{q}"), "sha256").await };
    assert_eq!(artifacts(format!("sha256={}", hex(&l))).await, [hex(&l)]);
    assert_eq!(sorted(artifacts(format!("sha256__in={},{}", hex(&ca), hex(&cb))).await), sorted(vec![hex(&ca), hex(&cb)]));
    let artifact_b = ok(s, &format!("artifacts/?sha256={}", hex(&cb))).await["results"][0].clone();
    assert_eq!(artifacts(format!("pulp_href__in={}", href(&artifact_b))).await, [hex(&cb)]);
    assert_eq!(artifacts("ordering=size".into()).await, [hex(&ca), hex(&cb), hex(&l)]);
    assert_eq!(artifacts("ordering=-size".into()).await, [hex(&l), hex(&cb), hex(&ca)]);
    assert_eq!(artifacts("ordering=pulp_created".into()).await, [hex(&ca), hex(&cb), hex(&l)]);
    assert_eq!(artifacts("ordering=-pulp_created".into()).await, [hex(&l), hex(&cb), hex(&ca)]);
    rejects(s, "artifacts/?md5=abc", "md5").await;
    rejects(s, "artifacts/?ordering=sha256", "ordering").await;
    selects_fields(s, "artifacts/", &href(&artifact_b), &["pulp_href", "size"], "file").await;
}


/// Four real tasks: a completed distribution create, a failed sync, a running and a waiting
/// sleep on one resource.
async fn tasks_filter_and_order(backend: Backend) {
    let s = &TestServer::start(backend).await;
    let (_, created) = s.post(DISTS, json!({"name": "d", "base_path": "d/one"})).await;
    let t1 = s.wait_task(created["task"].as_str().unwrap()).await;
    assert_eq!(t1["state"], "completed", "{t1}");
    let (_, remote) = s
        .post("remotes/container/container/", json!({"name": "dead", "url": "http://127.0.0.1:1", "upstream_name": "x/y", "max_retries": 0}))
        .await;
    let (_, repo) = s.post(REPOS, json!({"name": "syncme", "remote": href(&remote)})).await;
    let repo = href(&repo);
    let (status, sync) = s.post(&format!("{repo}sync/"), json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{sync}");
    let t2 = s.wait_task(sync["task"].as_str().unwrap()).await;
    assert_eq!(t2["state"], "failed", "{t2}");
    let t3 = sleep_task(s, 60.0, &["res:x"]).await;
    let t4 = sleep_task(s, 1.0, &["res:x"]).await;
    let mut running = Value::Null;
    for _ in 0..100 {
        running = ok(s, &t3).await;
        if running["state"] == "running" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(running["state"], "running", "{running}");
    let (h1, h2) = (href(&t1), href(&t2));
    let all = [h1.as_str(), h2.as_str(), t3.as_str(), t4.as_str()];
    let ids = |list: &[usize]| list.iter().map(|i| all[*i].to_string()).collect::<Vec<_>>();
    let tasks = |q: String| async move { column(s, &format!("tasks/?{q}"), "pulp_href").await };

    assert_eq!(tasks(String::new()).await, ids(&[3, 2, 1, 0]), "newest first");
    assert_eq!(tasks("state=failed".into()).await, ids(&[1]));
    assert_eq!(tasks("state=completed".into()).await, ids(&[0]));
    assert_eq!(tasks("state__in=waiting,running".into()).await, ids(&[3, 2]));
    assert_eq!(tasks("state=skipped".into()).await, ids(&[]));
    rejects(s, "tasks/?state=done", "state").await;
    rejects(s, "tasks/?state__in=running,done", "state__in").await;
    assert_eq!(tasks("name=pulpish.sync".into()).await, ids(&[1]));
    assert_eq!(tasks("name__contains=distribution".into()).await, ids(&[0]));
    assert_eq!(tasks("name__icontains=DEBUG".into()).await, ids(&[3, 2]));
    assert_eq!(tasks("name__in=pulpish.sync,pulpish.distribution.create".into()).await, ids(&[1, 0]));
    assert_eq!(tasks("name__startswith=pulpish.d".into()).await, ids(&[3, 2, 0]));
    let cid = t2["logging_cid"].as_str().unwrap().to_string();
    assert!(!cid.is_empty() && cid != t1["logging_cid"], "{t1} {t2}");
    assert_eq!(tasks(format!("logging_cid={cid}")).await, ids(&[1]));
    assert_eq!(tasks(format!("logging_cid__contains={}", &cid[4..12])).await, ids(&[1]));
    let worker = running["worker"].as_str().unwrap().to_string();
    let by_worker = tasks(format!("worker={worker}")).await;
    assert!(by_worker.contains(&t3) && !by_worker.contains(&t4), "{by_worker:?}");
    assert_eq!(tasks("worker=nobody".into()).await, ids(&[]));

    assert_eq!(tasks(format!("reserved_resources={repo}")).await, ids(&[1]));
    assert_eq!(tasks(format!("reserved_resources__in={repo},res:x")).await, ids(&[3, 2, 1]));
    assert_eq!(tasks("reserved_resources=res:".into()).await, ids(&[]), "an element matches whole");
    assert_eq!(tasks("reserved_resources=res_x".into()).await, ids(&[]), "`_` is no wildcard");
    assert_eq!(tasks("exclusive_resources=res:x".into()).await, ids(&[3, 2]));
    assert_eq!(tasks(format!("exclusive_resources__in={repo}")).await, ids(&[1]));
    assert_eq!(tasks("shared_resources=res:x".into()).await, ids(&[]));
    assert_eq!(tasks(format!("shared_resources__in=res:x,{repo}")).await, ids(&[]));
    let dist = t1["created_resources"][0].as_str().unwrap().to_string();
    assert_eq!(tasks(format!("created_resources={dist}")).await, ids(&[0]));
    assert_eq!(tasks(format!("created_resources={}", &dist[..dist.len() - 2])).await, ids(&[]));

    let at = |t: &Value, f: &str| t[f].as_str().unwrap().to_string();
    let started = at(&t2, "started_at");
    assert_eq!(tasks(format!("started_at__gte={started}")).await, ids(&[2, 1]));
    assert_eq!(tasks(format!("started_at__gt={started}")).await, ids(&[2]));
    assert_eq!(tasks(format!("started_at__lte={started}")).await, ids(&[1, 0]));
    assert_eq!(tasks(format!("started_at__lt={started}")).await, ids(&[0]));
    let finished = at(&t1, "finished_at");
    assert_eq!(tasks(format!("finished_at__gte={finished}")).await, ids(&[1, 0]));
    assert_eq!(tasks(format!("finished_at__gt={finished}")).await, ids(&[1]));
    assert_eq!(tasks(format!("finished_at__lte={finished}")).await, ids(&[0]));
    assert_eq!(tasks(format!("finished_at__lt={finished}")).await, ids(&[]));
    assert_eq!(tasks(format!("pulp_href__in={h1},{t4}")).await, ids(&[3, 0]));
    rejects(s, &format!("tasks/?pulp_href__in={repo}"), "pulp_href__in").await;

    assert_eq!(tasks("ordering=pulp_created".into()).await, ids(&[0, 1, 2, 3]));
    assert_eq!(tasks("ordering=-pulp_created".into()).await, ids(&[3, 2, 1, 0]));
    // Ties (the two sleeps) fall back to newest first.
    assert_eq!(tasks("ordering=name".into()).await, ids(&[3, 2, 0, 1]));
    assert_eq!(tasks("ordering=-name".into()).await, ids(&[1, 0, 3, 2]));
    assert_eq!(tasks("ordering=state".into()).await, ids(&[0, 1, 2, 3]));
    assert_eq!(tasks("ordering=-state".into()).await, ids(&[3, 2, 1, 0]));
    // Unset times come last ascending and first descending, on both databases.
    assert_eq!(tasks("ordering=started_at".into()).await, ids(&[0, 1, 2, 3]));
    assert_eq!(tasks("ordering=-started_at".into()).await, ids(&[3, 2, 1, 0]));
    assert_eq!(tasks("ordering=finished_at".into()).await, ids(&[0, 1, 3, 2]));
    assert_eq!(tasks("ordering=-finished_at".into()).await, ids(&[3, 2, 1, 0]));
    rejects(s, "tasks/?ordering=worker", "ordering").await;
    rejects(s, "tasks/?task_group=x", "task_group").await;
    selects_fields(s, "tasks/", &h2, &["pulp_href", "state"], "progress_reports").await;

    for t in [&t4, &t3] {
        let (status, body) = s.patch(t, json!({"state": "canceled"})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    for t in [&t4, &t3] {
        assert_eq!(s.wait_task(t).await["state"], "canceled");
    }
    assert_eq!(tasks("state=canceled".into()).await, ids(&[3, 2]));
}

/// `pulp_label_select` on the three labelled resources: each term kind changes the answer.
async fn labels_select(backend: Backend) {
    let s = TestServer::start(backend).await;
    let labelled = [("a", json!({"env": "prod", "tier": "Gold plus été"})), ("b", json!({"env": "dev"})), ("c", json!({}))];
    for (name, labels) in &labelled {
        let (status, body) = s.post(REPOS, json!({"name": name, "pulp_labels": labels})).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let (status, body) = s.post("remotes/container/container/", json!({"name": name, "url": "http://127.0.0.1:1", "upstream_name": "x", "pulp_labels": labels})).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        s.completed(s.post(DISTS, json!({"name": name, "base_path": name, "pulp_labels": labels})).await).await;
    }
    for list in [REPOS, "remotes/container/container/", DISTS] {
        let names = |select: &str| format!("{list}?ordering=name&pulp_label_select={}", select.replace(' ', "%20").replace('!', "%21"));
        assert_eq!(column(&s, &names("env=prod"), "name").await, ["a"], "{list}");
        assert_eq!(column(&s, &names("env!=prod"), "name").await, ["b", "c"], "{list}");
        assert_eq!(column(&s, &names("env"), "name").await, ["a", "b"], "{list}");
        assert_eq!(column(&s, &names("!env"), "name").await, ["c"], "{list}");
        assert_eq!(column(&s, &names("tier~gold"), "name").await, ["a"], "{list}");
        assert_eq!(column(&s, &names("tier~%C3%89T%C3%89"), "name").await, ["a"], "{list}: case folds beyond ASCII");
        assert_eq!(column(&s, &names("env,!tier"), "name").await, ["b"], "{list}");
        rejects(&s, &format!("{list}?pulp_label_select=env='x'"), "pulp_label_select").await;
    }
    // Case folds beyond ASCII in `__icontains` too (SQLite's own lower() would not).
    assert_eq!(s.post(REPOS, json!({"name": "Élan"})).await.0, StatusCode::CREATED);
    assert_eq!(column(&s, &format!("{REPOS}?name__icontains=%C3%A9L"), "name").await, ["Élan"]);
}

on_databases!(
    labels_select,
    repositories_filter_and_order,
    distributions_filter_and_order,
    versions_content_and_artifacts_filter_and_order,
    tasks_filter_and_order,
);
