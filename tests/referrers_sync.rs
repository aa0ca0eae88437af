//! Sync of referrers (signatures, attestations, SBOMs) with the images they refer to: from
//! Debian's docker-registry (no referrers API: the `sha256-<hex>` fallback tag and cosign's
//! `.sig`/`.att`/`.sbom` tags) and from pulpish itself (the referrers API); recursively and
//! bounded; on_demand holds for their blobs; the remote's `include_referrers` turns it off.

mod support;

use std::collections::{BTreeMap, BTreeSet};

use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::Digest;
use support::fault::{fault_image, sha256 as fault_sha256, FaultUpstream};
use support::images::{digest_of, held, OCI_INDEX, OCI_MANIFEST};
use support::registry::{Auth, Registry};
use support::{Backend, TestServer, PASSWORD};

const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const EMPTY: &str = "application/vnd.oci.empty.v1+json";
const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
const SPDX: &str = "application/spdx+json";
const IN_TOTO: &str = "application/vnd.dsse.envelope.v1+json";

/// A registry's /v2 API, written to with plain requests (as a client library would).
struct V2 {
    base: String,
    admin: bool,
    client: reqwest::Client,
}

/// A manifest pushed: its digest and exact bytes.
#[derive(Clone, Debug)]
struct Pushed {
    digest: String,
    bytes: Vec<u8>,
}

impl Pushed {
    fn hex(&self) -> &str {
        self.digest.strip_prefix("sha256:").unwrap()
    }

    fn descriptor(&self, media_type: &str) -> Value {
        json!({"mediaType": media_type, "digest": self.digest, "size": self.bytes.len()})
    }
}

impl V2 {
    fn docker_registry(r: &Registry) -> V2 {
        V2 { base: r.url(), admin: false, client: reqwest::Client::new() }
    }

    fn pulpish(s: &TestServer) -> V2 {
        V2 { base: s.base.clone(), admin: true, client: s.client.clone() }
    }

    fn req(&self, method: reqwest::Method, url: String) -> reqwest::RequestBuilder {
        let r = self.client.request(method, url);
        if self.admin {
            r.basic_auth("admin", Some(PASSWORD))
        } else {
            r
        }
    }

    /// Uploads a blob (POST, then PUT with the digest); returns its digest.
    async fn blob(&self, name: &str, bytes: &[u8]) -> String {
        let digest = digest_of(bytes);
        let r = self.req(reqwest::Method::POST, format!("{}/v2/{name}/blobs/uploads/", self.base)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::ACCEPTED, "start upload: {}", r.text().await.unwrap());
        let location = r.headers()["location"].to_str().unwrap().to_string();
        let mut url = reqwest::Url::parse(&self.base).unwrap().join(&location).unwrap();
        url.query_pairs_mut().append_pair("digest", &digest);
        let r = self.req(reqwest::Method::PUT, url.to_string()).header("content-type", "application/octet-stream").body(bytes.to_vec()).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::CREATED, "finish upload: {}", r.text().await.unwrap());
        digest
    }

    /// PUTs a manifest document under `reference` (a tag), or by its own digest when `None`.
    async fn manifest(&self, name: &str, reference: Option<&str>, doc: &Value) -> Pushed {
        let bytes = serde_json::to_vec(doc).unwrap();
        let digest = digest_of(&bytes);
        let media_type = doc["mediaType"].as_str().unwrap();
        let r = self
            .req(reqwest::Method::PUT, format!("{}/v2/{name}/manifests/{}", self.base, reference.unwrap_or(&digest)))
            .header("content-type", media_type)
            .body(bytes.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED, "manifest push: {}", r.text().await.unwrap());
        Pushed { digest, bytes }
    }

    /// An image with a config unique to `seed` and one layer.
    async fn image(&self, name: &str, tag: &str, seed: &str) -> Pushed {
        let config = serde_json::to_vec(&json!({"architecture": "amd64", "os": "linux", "seed": seed})).unwrap();
        let layer = format!("layer of {seed}").into_bytes();
        let (c, l) = (self.blob(name, &config).await, self.blob(name, &layer).await);
        let doc = json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": c, "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": l, "size": layer.len()}],
        });
        self.manifest(name, Some(tag), &doc).await
    }

    /// A cosign-shaped signature of `subject` under the tag `sha256-<hex>.sig`.
    /// The OCI 1.1 fallback tag `sha256-<hex>` of `subject`: an index of `(media type,
    /// referrer)` descriptors with their artifact types.
    async fn fallback_tag(&self, name: &str, subject: &Pushed, listed: &[(&str, &Pushed, &str)]) -> Pushed {
        let manifests: Vec<Value> = listed
            .iter()
            .map(|(media_type, r, artifact_type)| json!({"mediaType": media_type, "digest": r.digest, "size": r.bytes.len(), "artifactType": artifact_type}))
            .collect();
        let tag = format!("sha256-{}", subject.hex());
        self.manifest(name, Some(&tag), &json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests})).await
    }

    async fn signature(&self, name: &str, subject: &Pushed) -> Pushed {
        let payload = serde_json::to_vec(&json!({
            "critical": {"identity": {"docker-reference": format!("example.test/{name}")}, "image": {"docker-manifest-digest": subject.digest}, "type": "cosign container image signature"},
            "optional": null,
        }))
        .unwrap();
        let config =
            serde_json::to_vec(&json!({"architecture": "", "os": "", "rootfs": {"type": "layers", "diff_ids": [digest_of(&payload)]}, "config": {}})).unwrap();
        let (c, p) = (self.blob(name, &config).await, self.blob(name, &payload).await);
        let doc = json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": c, "size": config.len()},
            "layers": [{"mediaType": SIMPLE_SIGNING, "digest": p, "size": payload.len(),
                        "annotations": {"dev.cosignproject.cosign/signature": format!("MEUCIQ{}", &subject.hex()[..16])}}],
        });
        self.manifest(name, Some(&format!("sha256-{}.sig", subject.hex())), &doc).await
    }

    /// An OCI 1.1 artifact with `subject`, pushed by its sha256 digest (no tag).
    async fn artifact(&self, name: &str, subject: &Pushed, artifact_type: &str, content: &[u8]) -> Pushed {
        let doc = self.artifact_doc(name, subject, artifact_type, content).await;
        self.manifest(name, None, &doc).await
    }

    /// The same, pushed by its sha512 digest.
    async fn artifact_sha512(&self, name: &str, subject: &Pushed, artifact_type: &str, content: &[u8]) -> Pushed {
        let doc = self.artifact_doc(name, subject, artifact_type, content).await;
        let bytes = serde_json::to_vec(&doc).unwrap();
        let digest = format!("sha512:{:x}", sha2::Sha512::digest(&bytes));
        let pushed = self.manifest(name, Some(&digest), &doc).await;
        Pushed { digest, bytes: pushed.bytes }
    }

    async fn artifact_doc(&self, name: &str, subject: &Pushed, artifact_type: &str, content: &[u8]) -> Value {
        self.blob(name, b"{}").await;
        let layer = self.blob(name, content).await;
        json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": artifact_type,
            "config": {"mediaType": EMPTY, "digest": digest_of(b"{}"), "size": 2},
            "layers": [{"mediaType": artifact_type, "digest": layer, "size": content.len()}],
            "subject": subject.descriptor(OCI_MANIFEST),
            "annotations": {"org.opencontainers.image.created": "2026-11-25T00:00:00Z"},
        })
    }

    /// GET a manifest: status, `Docker-Content-Digest`, bytes.
    async fn get(&self, name: &str, reference: &str) -> (StatusCode, Option<String>, Vec<u8>) {
        let r = self.client.get(format!("{}/v2/{name}/manifests/{reference}", self.base)).header("accept", ACCEPT).send().await.unwrap();
        let digest = r.headers().get("docker-content-digest").map(|v| v.to_str().unwrap().to_string());
        (r.status(), digest, r.bytes().await.unwrap().to_vec())
    }

    async fn get_blob(&self, name: &str, digest: &str) -> (StatusCode, Vec<u8>) {
        let r = self.client.get(format!("{}/v2/{name}/blobs/{digest}", self.base)).send().await.unwrap();
        (r.status(), r.bytes().await.unwrap().to_vec())
    }

    async fn referrers(&self, name: &str, digest: &str) -> Value {
        let r = self.client.get(format!("{}/v2/{name}/referrers/{digest}", self.base)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "referrers of {digest}");
        r.json().await.unwrap()
    }
}

/// Remote, repository, sync (which must complete), distribution at `base_path`; returns the
/// finished task and the repository's latest version href.
async fn mirror(s: &TestServer, url: &str, upstream: &str, base_path: &str, remote: Value) -> (Value, String) {
    let mut body = json!({"name": base_path, "url": url, "upstream_name": upstream, "policy": "on_demand"});
    for (k, v) in remote.as_object().unwrap() {
        body[k] = v.clone();
    }
    let (status, r) = s.post("remotes/container/container/", body).await;
    assert_eq!(status, StatusCode::CREATED, "{r}");
    let (status, repo) = s.post("repositories/container/container/", json!({"name": base_path, "remote": r["pulp_href"]})).await;
    assert_eq!(status, StatusCode::CREATED, "{repo}");
    let repo = repo["pulp_href"].as_str().unwrap().to_string();
    let task = sync(s, &repo, json!({})).await;
    s.completed(s.post("distributions/container/container/", json!({"name": base_path, "base_path": base_path, "repository": repo})).await).await;
    let version = s.get(&repo).await.1["latest_version_href"].as_str().unwrap().to_string();
    (task, version)
}

async fn sync(s: &TestServer, repo: &str, body: Value) -> Value {
    let (status, t) = s.post(&format!("{repo}sync/"), body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{t}");
    let task = s.wait_task(t["task"].as_str().unwrap()).await;
    assert_eq!(task["state"], "completed", "{task}");
    task
}

fn tags(pairs: &[(&str, &Pushed)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(t, p)| (t.to_string(), p.digest.clone())).collect()
}

fn digests(items: &[&Pushed]) -> BTreeSet<String> {
    items.iter().map(|p| p.digest.clone()).collect()
}

fn listed(index: &Value) -> BTreeSet<String> {
    index["manifests"].as_array().unwrap().iter().map(|m| m["digest"].as_str().unwrap().to_string()).collect()
}

/// docker-registry has no referrers API: the cosign tag and the fallback tag (with the SBOM it
/// lists) come with `v1` although `include_tags` names only `v1`; their blobs stay upstream
/// until pulled; `include_referrers: false` brings `v1` alone.
async fn fallback_and_cosign_tags_come_with_the_image(backend: Backend) {
    let registry = Registry::start(Auth::Anonymous);
    let up = V2::docker_registry(&registry);
    let v1 = up.image("app", "v1", "v1").await;
    let other = up.image("app", "other", "other").await;
    let sig = up.signature("app", &v1).await;
    let sbom = up.artifact("app", &v1, SPDX, br#"{"spdxVersion": "SPDX-2.3"}"#).await;
    let fallback = format!("sha256-{}", v1.hex());
    let index = up.fallback_tag("app", &v1, &[(OCI_MANIFEST, &sbom, SPDX)]).await;
    // What refers to the unselected `other` stays upstream.
    let other_sig = up.signature("app", &other).await;

    let s = TestServer::start(backend).await;
    // Without prefetch, so that the manifest GETs below leave the blobs unstored until pulled.
    let (task, version) = mirror(&s, &registry.url(), "app", "mirror/app", json!({"include_tags": ["v1"], "prefetch": false})).await;
    let reports = task["progress_reports"].as_array().unwrap();
    let referrers = reports.iter().find(|r| r["code"] == "sync.referrers").unwrap_or_else(|| panic!("{task}"));
    assert_eq!((&referrers["state"], &referrers["done"]), (&json!("completed"), &json!(3)), "{task}");
    let h = held(&s, &version).await;
    let sig_tag = format!("{fallback}.sig");
    assert_eq!(h.tags, tags(&[("v1", &v1), (sig_tag.as_str(), &sig), (fallback.as_str(), &index)]));
    assert_eq!(h.manifests, digests(&[&v1, &sig, &index, &sbom]));
    assert!(!h.manifests.contains(&other.digest) && !h.manifests.contains(&other_sig.digest));
    // Candidate tags are looked up in the tag list, not asked for one by one.
    let asked = |suffix: &str| registry.log().lines().filter(|l| l.contains(&format!("/manifests/{fallback}{suffix} "))).count();
    assert_eq!((asked(".att"), asked(".sbom")), (0, 0), "{}", registry.log());
    assert!(asked(".sig") > 0, "the log shows manifest requests: {}", registry.log());

    // Served byte for byte under the same names; `other` is not.
    for reference in ["v1", sig_tag.as_str(), fallback.as_str(), sbom.digest.as_str()] {
        let (status, digest, bytes) = V2::pulpish(&s).get("mirror/app", reference).await;
        let (_, up_digest, up_bytes) = up.get("app", reference).await;
        assert_eq!(status, StatusCode::OK, "{reference}");
        assert_eq!((digest, bytes), (up_digest, up_bytes), "{reference}");
    }
    assert_eq!(V2::pulpish(&s).get("mirror/app", "other").await.0, StatusCode::NOT_FOUND);

    // on_demand: the referrers' blobs are recorded, not stored, until pulled.
    assert_eq!(s.count("artifacts/").await, 0);
    let payload = serde_json::from_slice::<Value>(&sig.bytes).unwrap()["layers"][0]["digest"].as_str().unwrap().to_string();
    let (status, bytes) = V2::pulpish(&s).get_blob("mirror/app", &payload).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(bytes, up.get_blob("app", &payload).await.1);
    assert_eq!(digest_of(&bytes), payload);
    // Recorded once the download is verified, which may end just after the client has it all.
    let start = std::time::Instant::now();
    while s.count("artifacts/").await != 1 {
        assert!(start.elapsed() < std::time::Duration::from_secs(10), "the pulled blob was never stored");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // pulpish's own referrers API lists the SBOM.
    let answer = V2::pulpish(&s).referrers("mirror/app", &v1.digest).await;
    assert!(listed(&answer).contains(&sbom.digest), "{answer}");
    let entry = answer["manifests"].as_array().unwrap().iter().find(|m| m["digest"] == sbom.digest.as_str()).unwrap();
    assert_eq!(entry["artifactType"], SPDX, "{answer}");

    // Turned off: exactly the selected tag.
    let (task, version) = mirror(&s, &registry.url(), "app", "plain/app", json!({"include_tags": ["v1"], "include_referrers": false})).await;
    assert!(task["progress_reports"].as_array().unwrap().iter().all(|r| r["code"] != "sync.referrers"), "{task}");
    let h = held(&s, &version).await;
    assert_eq!(h.tags, tags(&[("v1", &v1)]));
    assert_eq!(h.manifests, digests(&[&v1]));
}

/// A mirror keeps the referrers it synced: `mirror=true` removes only what the upstream no
/// longer has.
async fn mirror_mode_keeps_referrers(backend: Backend) {
    let registry = Registry::start(Auth::Anonymous);
    let up = V2::docker_registry(&registry);
    let v1 = up.image("app", "v1", "v1").await;
    let sig = up.signature("app", &v1).await;
    let s = TestServer::start(backend).await;
    let (_, version) = mirror(&s, &registry.url(), "app", "m/app", json!({"include_tags": ["v1"]})).await;
    let repo = version.split("versions/").next().unwrap().to_string();
    sync(&s, &repo, json!({"mirror": true})).await;
    let again = s.get(&repo).await.1["latest_version_href"].as_str().unwrap().to_string();
    assert_eq!(again, version, "nothing changed upstream: no new version");
    let h = held(&s, &again).await;
    assert_eq!(h.manifests, digests(&[&v1, &sig]), "{again}");
    assert!(h.tags.contains_key(&format!("sha256-{}.sig", v1.hex())));
}

/// pulpish A (with a referrers API) → pulpish B: an artifact pushed by digest only (no tag,
/// so no other way to find it) comes with its subject, byte-identical, blobs downloaded.
async fn from_pulpish_through_its_referrers_api(backend: Backend) {
    let a = TestServer::start(backend).await;
    let up = V2::pulpish(&a);
    let v1 = up.image("src/app", "v1", "v1").await;
    let sbom = up.artifact("src/app", &v1, SPDX, br#"{"spdxVersion": "SPDX-2.3", "name": "v1"}"#).await;
    // One named by its sha512 digest: synced under that digest.
    let signed = up.artifact_sha512("src/app", &v1, "application/vnd.example.signature", b"sha512-named").await;
    let upstream_answer = up.referrers("src/app", &v1.digest).await;
    assert_eq!(listed(&upstream_answer), digests(&[&sbom, &signed]), "A's own referrers API");

    let b = TestServer::start(backend).await;
    let (_, version) = mirror(&b, &a.base, "src/app", "copy/app", json!({"policy": "immediate"})).await;
    let h = held(&b, &version).await;
    assert_eq!(h.tags, tags(&[("v1", &v1)]));
    assert_eq!(h.manifests, digests(&[&v1, &sbom, &signed]));

    let down = V2::pulpish(&b);
    let answer = down.referrers("copy/app", &v1.digest).await;
    assert_eq!(listed(&answer), digests(&[&sbom, &signed]), "{answer}");
    let entry = answer["manifests"].as_array().unwrap().iter().find(|m| m["digest"] == sbom.digest.as_str()).unwrap();
    assert_eq!((&entry["artifactType"], &entry["size"]), (&json!(SPDX), &json!(sbom.bytes.len())), "{answer}");
    for m in [&sbom, &signed] {
        let (status, digest, bytes) = down.get("copy/app", &m.digest).await;
        assert_eq!((status, digest.as_deref(), &bytes), (StatusCode::OK, Some(m.digest.as_str()), &m.bytes));
    }
    let doc: Value = serde_json::from_slice(&sbom.bytes).unwrap();
    for blob in [&doc["config"]["digest"], &doc["layers"][0]["digest"]] {
        let blob = blob.as_str().unwrap();
        let (status, bytes) = down.get_blob("copy/app", blob).await;
        assert_eq!(status, StatusCode::OK, "{blob}");
        assert_eq!(bytes, up.get_blob("src/app", blob).await.1, "{blob}");
    }
    // immediate: downloaded during the sync (image 2, artifacts' shared empty config 1, layers 2).
    assert_eq!(b.count("artifacts/").await, 5);
}

/// A private upstream pulpish: the referrers API is asked with the token its challenge leads
/// to, like every other request of the sync.
async fn referrers_api_behind_token_auth(backend: Backend) {
    let a = TestServer::start(backend).await;
    let up = V2::pulpish(&a);
    let v1 = up.image("private/app", "v1", "v1").await;
    let sbom = up.artifact("private/app", &v1, SPDX, b"private sbom").await;
    let (_, d) = a.get("distributions/container/container/?base_path=private/app").await;
    a.completed(a.patch(d["results"][0]["pulp_href"].as_str().unwrap(), json!({"private": true})).await).await;
    let anonymous = a.client.get(format!("{}/v2/private/app/referrers/{}", a.base, v1.digest)).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);

    let b = TestServer::start(backend).await;
    let (_, version) = mirror(&b, &a.base, "private/app", "copy/app", json!({"username": "admin", "password": PASSWORD})).await;
    assert_eq!(held(&b, &version).await.manifests, digests(&[&v1, &sbom]));
    assert_eq!(listed(&V2::pulpish(&b).referrers("copy/app", &v1.digest).await), digests(&[&sbom]));
}

/// A signature of an attestation (a referrer of a referrer) comes too; a chain of signatures
/// deeper than the bound stops at the bound and the sync completes, saying so.
async fn referrers_of_referrers_up_to_the_bound(backend: Backend) {
    let registry = Registry::start(Auth::Anonymous);
    let up = V2::docker_registry(&registry);
    let v1 = up.image("app", "v1", "v1").await;
    let att = {
        let envelope_bytes = br#"{"payloadType": "application/vnd.in-toto+json", "payload": "e30=", "signatures": []}"#;
        let envelope = up.blob("app", envelope_bytes).await;
        let config = up.blob("app", b"{}").await;
        let doc = json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config, "size": 2},
            "layers": [{"mediaType": IN_TOTO, "digest": envelope, "size": envelope_bytes.len(), "annotations": {"predicateType": "https://slsa.dev/provenance/v1"}}],
        });
        up.manifest("app", Some(&format!("sha256-{}.att", v1.hex())), &doc).await
    };
    let att_sig = up.signature("app", &att).await;
    // The fallback tag lists an index-type referrer, which lists an artifact: lists nest.
    let inner = up.artifact("app", &v1, SPDX, b"inner sbom").await;
    let nested = up
        .manifest(
            "app",
            None,
            &json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "artifactType": "application/vnd.example.bundle",
            "manifests": [inner.descriptor(OCI_MANIFEST)], "subject": v1.descriptor(OCI_MANIFEST)}),
        )
        .await;
    let fallback = format!("sha256-{}", v1.hex());
    let index = up.fallback_tag("app", &v1, &[(OCI_INDEX, &nested, "application/vnd.example.bundle")]).await;

    // A second image whose signatures chain six deep: the bound (4 levels) keeps four.
    let v2 = up.image("app", "v2", "v2").await;
    let mut chain = vec![up.signature("app", &v2).await];
    for _ in 1..6 {
        let next = up.signature("app", chain.last().unwrap()).await;
        chain.push(next);
    }

    let s = TestServer::start(backend).await;
    let (task, version) = mirror(&s, &registry.url(), "app", "deep/app", json!({"include_tags": ["v1", "v2"]})).await;
    let h = held(&s, &version).await;
    assert!(h.manifests.contains(&att.digest) && h.manifests.contains(&att_sig.digest), "{h:?}");
    assert!(h.tags.contains_key(&format!("sha256-{}.sig", att.hex())));
    assert_eq!(h.tags.get(&fallback), Some(&index.digest));
    for m in [&index, &nested, &inner] {
        assert!(h.manifests.contains(&m.digest), "{m:?}");
        let (status, digest, bytes) = V2::pulpish(&s).get("deep/app", &m.digest).await;
        assert_eq!((status, digest.as_deref(), &bytes), (StatusCode::OK, Some(m.digest.as_str()), &m.bytes));
    }
    for (level, sig) in chain.iter().enumerate() {
        assert_eq!(h.manifests.contains(&sig.digest), level < 4, "signature level {}", level + 1);
    }
    let reports = task["progress_reports"].as_array().unwrap();
    let bounded = reports.iter().find(|r| r["code"] == "sync.referrers_bounded").unwrap_or_else(|| panic!("{task}"));
    assert!(bounded["message"].as_str().unwrap().contains("4 levels"), "{bounded}");
}

/// Remote and repository for `upstream` at `url` (on_demand, `tag` only, no retries), synced
/// once whatever the outcome: the task and the repository href.
async fn try_sync(s: &TestServer, url: &str, upstream: &str, name: &str, tag: &str) -> (Value, String) {
    try_sync_with(s, json!({"name": name, "url": url, "upstream_name": upstream, "include_tags": [tag]})).await
}

/// The same with the remote's fields in `remote` (on_demand and no retries unless it says).
async fn try_sync_with(s: &TestServer, remote: Value) -> (Value, String) {
    let mut body = json!({"policy": "on_demand", "max_retries": 0});
    for (k, v) in remote.as_object().unwrap() {
        body[k] = v.clone();
    }
    let name = body["name"].clone();
    let (status, r) = s.post("remotes/container/container/", body).await;
    assert_eq!(status, StatusCode::CREATED, "{r}");
    let (_, repo) = s.post("repositories/container/container/", json!({"name": name, "remote": r["pulp_href"]})).await;
    let repo = repo["pulp_href"].as_str().unwrap().to_string();
    (sync_once(s, &repo, json!({})).await, repo)
}

/// One sync of `repo`, whatever the outcome.
async fn sync_once(s: &TestServer, repo: &str, body: Value) -> Value {
    let (status, t) = s.post(&format!("{repo}sync/"), body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{t}");
    s.wait_task(t["task"].as_str().unwrap()).await
}

async fn latest_version(s: &TestServer, repo: &str) -> String {
    s.get(repo).await.1["latest_version_href"].as_str().unwrap().to_string()
}

/// A fault upstream serving `latest` and its cosign signature: the upstream, the image and the
/// signature's bytes.
async fn signed_fault_upstream() -> (FaultUpstream, Pushed, Vec<u8>) {
    let (mut state, _) = fault_image(b"layer".to_vec());
    let (latest, media_type) = state.tags["latest"].clone();
    let subject = Pushed { digest: fault_sha256(&latest), bytes: latest.clone() };
    let mut sig_doc: Value = serde_json::from_slice(&latest).unwrap();
    sig_doc["annotations"] = json!({"dev.cosignproject.cosign/signature": "MEUC"});
    let sig = serde_json::to_vec(&sig_doc).unwrap();
    state.tags.insert(format!("sha256-{}.sig", subject.hex()), (sig.clone(), media_type));
    (FaultUpstream::start(state).await, subject, sig)
}

use support::fault::Answer as Pages;

/// A referrers answer: an index of `digests`, with a `Link` to `next` when given.
fn referrers_page(digests: &[String], next: Option<String>) -> actix_web::HttpResponse {
    let manifests: Vec<Value> = digests.iter().map(|d| json!({"mediaType": OCI_MANIFEST, "digest": d, "size": 10})).collect();
    let mut resp = actix_web::HttpResponse::Ok();
    resp.content_type(OCI_INDEX);
    if let Some(next) = next {
        resp.insert_header(("Link", format!("<{next}>; rel=\"next\"")));
    }
    resp.body(json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}).to_string())
}

/// A referrers API that is not one (404, 400, 405, an answer that is no index) means "no API":
/// asked once per sync, and the cosign tag still comes. A listed digest of an unknown algorithm, or one
/// the upstream no longer has, is skipped; a manifest whose bytes do not hash to the sha512 digest it is fetched by fails the
/// sync, which records nothing.
async fn a_misbehaving_referrers_api(backend: Backend) {
    let (mut state, _) = fault_image(b"layer".to_vec());
    let (latest, media_type) = state.tags["latest"].clone();
    let subject = Pushed { digest: fault_sha256(&latest), bytes: latest.clone() };
    let mut sig_doc: Value = serde_json::from_slice(&latest).unwrap();
    sig_doc["annotations"] = json!({"dev.cosignproject.cosign/signature": "MEUC"});
    let sig = serde_json::to_vec(&sig_doc).unwrap();
    state.tags.insert(format!("sha256-{}.sig", subject.hex()), (sig.clone(), media_type.clone()));
    // Served under a sha512 "digest" its bytes do not have.
    let liar = format!("sha512:{}", "ab".repeat(64));
    state.tags.insert(liar.clone(), (sig.clone(), media_type));
    let up = FaultUpstream::start(state).await;
    let s = TestServer::start(backend).await;
    let index = |digest: &str| {
        json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [{"mediaType": OCI_MANIFEST, "digest": digest, "size": 10}]}).to_string()
    };

    let answers = [
        (404, String::new()),
        (400, String::new()),
        (405, String::new()),
        (200, "<html>not an index</html>".to_string()),
        (200, String::from_utf8(latest.clone()).unwrap()),
    ];
    for (i, answer) in answers.into_iter().enumerate() {
        {
            let mut st = up.state.lock().unwrap();
            st.referrers = Some(answer.clone());
            st.referrer_gets = 0;
        }
        let (task, repo) = try_sync(&s, &up.url(), "fault/app", &format!("r{i}"), "latest").await;
        assert_eq!(task["state"], "completed", "{answer:?}: {task}");
        let h = held(&s, &format!("{repo}versions/1/")).await;
        assert_eq!(h.manifests, [subject.digest.clone(), fault_sha256(&sig)].into(), "{answer:?}");
        assert_eq!(up.state.lock().unwrap().referrer_gets, 1, "asked once per sync: {answer:?}");
    }

    // Skipped: an unknown algorithm, and a referrer listed but gone.
    for (i, listed) in ["blake3:0123abcd".to_string(), fault_sha256(b"gone")].iter().enumerate() {
        up.state.lock().unwrap().referrers = Some((200, index(listed)));
        let (task, repo) = try_sync(&s, &up.url(), "fault/app", &format!("skipped{i}"), "latest").await;
        assert_eq!(task["state"], "completed", "{listed}: {task}");
        assert_eq!(held(&s, &format!("{repo}versions/1/")).await.manifests, [subject.digest.clone(), fault_sha256(&sig)].into());
    }

    up.state.lock().unwrap().referrers = Some((200, index(&liar)));
    let (task, repo) = try_sync(&s, &up.url(), "fault/app", "lying", "latest").await;
    assert_eq!(task["state"], "failed", "{task}");
    let why = task["error"]["description"].as_str().unwrap();
    assert!(why.contains("digest mismatch") && why.contains(&liar), "{why}");
    assert!(s.get(&repo).await.1["latest_version_href"].as_str().unwrap().ends_with("/versions/0/"));
    up.stop().await;
}

/// A referrers API that fails (a 5xx or 429 after the retries, a timeout, a page over 4 MiB) is
/// not taken for one the upstream lacks: the sync fails naming the upstream and the digest, and
/// records nothing, so a mirror sync keeps the referrers it has.
async fn a_failing_referrers_api_fails_the_sync(backend: Backend) {
    let (up, subject, sig) = signed_fault_upstream().await;
    let s = TestServer::start(backend).await;
    let (task, repo) = try_sync(&s, &up.url(), "fault/app", "m", "latest").await;
    assert_eq!(task["state"], "completed", "{task}");
    let synced = latest_version(&s, &repo).await;
    assert_eq!(held(&s, &synced).await.manifests, [subject.digest.clone(), fault_sha256(&sig)].into());
    let remote = s.get(&repo).await.1["remote"].as_str().unwrap().to_string();
    s.completed(s.patch(&remote, json!({"total_timeout": 1.0})).await).await;

    let stall: Pages = std::sync::Arc::new(|_| {
        let late = futures_util::stream::once(async {
            tokio::time::sleep(std::time::Duration::from_secs(5)).await;
            Ok::<_, actix_web::Error>(bytes::Bytes::from_static(b"{}"))
        });
        actix_web::HttpResponse::Ok().content_type(OCI_INDEX).streaming(late)
    });
    let huge: Pages = std::sync::Arc::new(|_| {
        let body = format!(r#"{{"schemaVersion":2,"manifests":[],"x":"{}"}}"#, "a".repeat(5 << 20));
        actix_web::HttpResponse::Ok().content_type(OCI_INDEX).body(body)
    });
    // (what, canned answer, answering function, what the error says)
    type Fault<'a> = (&'a str, Option<(u16, String)>, Option<Pages>, &'a str);
    let faults: [Fault; 5] = [
        ("500", Some((500, "oops".into())), None, "HTTP 500"),
        ("503", Some((503, String::new())), None, "HTTP 503"),
        ("429", Some((429, String::new())), None, "rate limiting"),
        ("a stall", None, Some(stall), "timed out"),
        ("a 5 MiB page", None, Some(huge), "larger than"),
    ];
    for (what, answer, pages, says) in faults {
        {
            let mut st = up.state.lock().unwrap();
            st.referrers = answer;
            st.referrer_pages = pages;
        }
        let task = sync_once(&s, &repo, json!({"mirror": true})).await;
        assert_eq!(task["state"], "failed", "{what}: {task}");
        let why = task["error"]["description"].as_str().unwrap();
        assert!(why.contains(&format!("referrers of {}", subject.digest)) && why.contains(&up.addr) && why.contains(says), "{what}: {why}");
        assert_eq!(latest_version(&s, &repo).await, synced, "{what}: nothing recorded");
    }
    assert_eq!(held(&s, &synced).await.manifests, [subject.digest.clone(), fault_sha256(&sig)].into());
    up.stop().await;
}

/// The referrers API is read no further than the sync's budget of referrers and 10 pages per
/// digest (each cut reported as the depth bound is), and not again from a page already read.
async fn referrer_pages_are_bounded(backend: Backend) {
    let (up, subject, sig) = signed_fault_upstream().await;
    let s = TestServer::start(backend).await;
    // Endless pages of `per_page` new digests (of an algorithm a sync skips, so none is fetched).
    let endless = |per_page: usize| -> Pages {
        std::sync::Arc::new(move |req: &actix_web::HttpRequest| {
            let page: usize = req.query_string().strip_prefix("page=").and_then(|p| p.parse().ok()).unwrap_or(0);
            let digests: Vec<String> = (0..per_page).map(|i| format!("blake3:{page:08}{i:08}")).collect();
            referrers_page(&digests, Some(format!("{}?page={}", req.path(), page + 1)))
        })
    };
    // Cut at 10 pages, the image's and its signature's (the next level is still gathered); cut at
    // the budget (10,000) on the third page of 4000, and no level after.
    let cases: [(&str, usize, usize, &str); 2] = [("pages", 1, 20, "more than 10 pages"), ("budget", 4000, 3, "more than 10000 referrers")];
    for (name, per_page, gets, says) in cases {
        {
            let mut st = up.state.lock().unwrap();
            st.referrer_pages = Some(endless(per_page));
            st.referrer_gets = 0;
        }
        let (task, repo) = try_sync(&s, &up.url(), "fault/app", name, "latest").await;
        assert_eq!(task["state"], "completed", "{name}: {task}");
        assert_eq!(up.state.lock().unwrap().referrer_gets, gets, "{name}");
        let reports = task["progress_reports"].as_array().unwrap();
        let bounded = reports.iter().find(|r| r["code"] == "sync.referrers_bounded").unwrap_or_else(|| panic!("{name}: {task}"));
        assert!(bounded["message"].as_str().unwrap().contains(says), "{name}: {bounded}");
        assert_eq!(held(&s, &latest_version(&s, &repo).await).await.manifests, [subject.digest.clone(), fault_sha256(&sig)].into());
    }

    // A `Link` back at the page itself (absolute, on the same origin: followed) is read once.
    let base = up.url();
    let looping: Pages = std::sync::Arc::new(move |req: &actix_web::HttpRequest| {
        referrers_page(&["blake3:00".to_string()], Some(format!("{base}{}", req.path())))
    });
    {
        let mut st = up.state.lock().unwrap();
        st.referrer_pages = Some(looping);
        st.referrer_gets = 0;
    }
    let (task, _) = try_sync(&s, &up.url(), "fault/app", "loop", "latest").await;
    assert_eq!(task["state"], "completed", "{task}");
    // Once for the image, once for its signature (the next level).
    assert_eq!(up.state.lock().unwrap().referrer_gets, 2);
    assert!(task["progress_reports"].as_array().unwrap().iter().all(|r| r["code"] != "sync.referrers_bounded"), "{task}");
    up.stop().await;
}

/// A `Link` to the next page of the tag list or of the referrers on another origin is not
/// followed: the sync fails naming its host, and that host gets no request (and so not the
/// remote's Basic credentials, which the upstream asks for and gets).
async fn credentials_go_to_no_other_origin(backend: Backend) {
    let (other, _) = fault_image(b"layer".to_vec());
    let elsewhere = FaultUpstream::start(other).await;
    let (up, _, _) = signed_fault_upstream().await;
    let credentials = "Basic c2VjcmV0dXNlcjpTM2NyM3Qh"; // secretuser:S3cr3t!
    up.state.lock().unwrap().basic_auth = Some(credentials.to_string());
    let s = TestServer::start(backend).await;
    let remote = |name: &str| {
        json!({"name": name, "url": up.url(), "upstream_name": "fault/app", "username": "secretuser", "password": "S3cr3t!", "include_tags": ["latest"]})
    };
    let (task, _) = try_sync_with(&s, remote("ok")).await;
    assert_eq!(task["state"], "completed", "{task}");

    let tags_next = format!("{}/v2/fault/app/tags/list?last=latest&n=1000", elsewhere.url());
    up.state.lock().unwrap().tag_list_link = Some(format!("<{tags_next}>; rel=\"next\""));
    let (task, repo) = try_sync_with(&s, remote("tags")).await;
    assert_eq!(task["state"], "failed", "{task}");
    let why = task["error"]["description"].as_str().unwrap();
    assert!(why.contains(&format!("another host, {}", elsewhere.addr)), "{why}");
    assert!(latest_version(&s, &repo).await.ends_with("/versions/0/"));

    let referrers_next = format!("{}/v2/fault/app/referrers/x?page=2", elsewhere.url());
    {
        let mut st = up.state.lock().unwrap();
        st.tag_list_link = None;
        st.referrer_pages = Some(std::sync::Arc::new(move |_| referrers_page(&["blake3:00".to_string()], Some(referrers_next.clone()))));
    }
    let (task, _) = try_sync_with(&s, remote("referrers")).await;
    assert_eq!(task["state"], "failed", "{task}");
    let why = task["error"]["description"].as_str().unwrap();
    assert!(why.contains(&format!("another host, {}", elsewhere.addr)), "{why}");

    assert!(up.state.lock().unwrap().authorizations.iter().any(|a| a == credentials));
    assert_eq!(elsewhere.requests.load(std::sync::atomic::Ordering::SeqCst), 0);
    assert!(elsewhere.state.lock().unwrap().authorizations.is_empty());
    up.stop().await;
    elsewhere.stop().await;
}

/// What the referrers API or a fallback tag lists for a digest is recorded only if its own
/// `subject` is that digest: an image the tag filters leave out (`v2`) cannot come in that way.
/// A fallback tag listing such an image is dropped; the true referrer it lists is kept.
async fn listed_referrers_must_refer_to_their_subject(backend: Backend) {
    let (mut state, _) = fault_image(b"layer".to_vec());
    let (v1, media_type) = state.tags["latest"].clone();
    let (v2_state, _) = fault_image(b"excluded".to_vec());
    let v2 = v2_state.tags["latest"].0.clone();
    state.tags.insert("v2".into(), (v2.clone(), media_type.clone()));
    state.blobs.extend(v2_state.blobs);
    let v1_digest = fault_sha256(&v1);
    let artifact = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": SPDX,
        "config": {"mediaType": EMPTY, "digest": digest_of(b"{}"), "size": 2},
        "layers": [{"mediaType": SPDX, "digest": digest_of(b"sbom"), "size": 4}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": v1_digest, "size": v1.len()},
    }))
    .unwrap();
    state.tags.insert("art".into(), (artifact.clone(), OCI_MANIFEST.into()));
    let listed = vec![fault_sha256(&v2), fault_sha256(&artifact)];
    let up = FaultUpstream::start(state).await;
    let s = TestServer::start(backend).await;
    let expected: BTreeSet<String> = [v1_digest.clone(), fault_sha256(&artifact)].into();

    // The referrers API lists v2 for v1.
    let (for_v1, all) = (v1_digest.clone(), listed.clone());
    up.state.lock().unwrap().referrer_pages = Some(std::sync::Arc::new(move |req: &actix_web::HttpRequest| {
        referrers_page(if req.path().ends_with(&for_v1) { &all } else { &[] }, None)
    }));
    let (task, repo) = try_sync(&s, &up.url(), "fault/app", "api", "latest").await;
    assert_eq!(task["state"], "completed", "{task}");
    let h = held(&s, &latest_version(&s, &repo).await).await;
    assert_eq!(h.manifests, expected);
    assert_eq!(h.tags.keys().collect::<Vec<_>>(), ["latest"]);

    // No API; the fallback tag lists v2 and the artifact.
    let fallback = format!("sha256-{}", v1_digest.strip_prefix("sha256:").unwrap());
    let manifests: Vec<Value> = listed.iter().map(|d| json!({"mediaType": OCI_MANIFEST, "digest": d, "size": 10})).collect();
    let index = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests})).unwrap();
    {
        let mut st = up.state.lock().unwrap();
        st.referrer_pages = None;
        st.tags.insert(fallback.clone(), (index.clone(), OCI_INDEX.into()));
    }
    let (task, repo) = try_sync(&s, &up.url(), "fault/app", "fallback", "latest").await;
    assert_eq!(task["state"], "completed", "{task}");
    let h = held(&s, &latest_version(&s, &repo).await).await;
    assert_eq!(h.manifests, expected);
    assert_eq!(h.tags.keys().collect::<Vec<_>>(), ["latest"]);
    let (_, v2_units) = s.get(&format!("content/container/manifests/?digest={}", fault_sha256(&v2))).await;
    assert_eq!(v2_units["count"], 0, "{v2_units}");
    up.stop().await;
}

/// Indexes may list indexes, 4 levels deep: a chain of four syncs whole (recorded with each list
/// after what it lists); a fifth level fails the sync with a message saying so, recording nothing.
async fn nested_indexes_up_to_four_levels(backend: Backend) {
    let registry = Registry::start(Auth::Anonymous);
    let up = V2::docker_registry(&registry);
    let v1 = up.image("app", "v1", "v1").await;
    let mut chain = vec![v1.clone()];
    for level in 1..=5 {
        let below = chain.last().unwrap();
        let media_type = if level == 1 { OCI_MANIFEST } else { OCI_INDEX };
        let mut entry = below.descriptor(media_type);
        entry["platform"] = json!({"architecture": "amd64", "os": "linux"});
        let index = up.manifest("app", Some(&format!("level{level}")), &json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [entry]})).await;
        chain.push(index);
    }
    let s = TestServer::start(backend).await;
    let (_, version) = mirror(&s, &registry.url(), "app", "nested/app", json!({"include_tags": ["level4"]})).await;
    assert_eq!(held(&s, &version).await.manifests, digests(&chain[..5].iter().collect::<Vec<_>>()));
    let (status, digest, bytes) = V2::pulpish(&s).get("nested/app", "level4").await;
    assert_eq!((status, digest.as_deref(), bytes), (StatusCode::OK, Some(chain[4].digest.as_str()), chain[4].bytes.clone()));

    let (task, repo) = try_sync(&s, &registry.url(), "app", "deeper", "level5").await;
    assert_eq!(task["state"], "failed", "{task}");
    assert!(task["error"]["description"].as_str().unwrap().contains("nested more than 4 deep"), "{task}");
    assert!(s.get(&repo).await.1["latest_version_href"].as_str().unwrap().ends_with("/versions/0/"));
}

/// `include_referrers` in the REST API: default true, set by create, PUT and PATCH; anything
/// but a boolean is refused naming the field, and nothing is written.
async fn include_referrers_in_the_api(backend: Backend) {
    let s = TestServer::start(backend).await;
    let base = json!({"name": "r", "url": "http://upstream.test", "upstream_name": "a"});
    let (status, r) = s.post("remotes/container/container/", base.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{r}");
    assert_eq!(r["include_referrers"], true);
    let href = r["pulp_href"].as_str().unwrap().to_string();
    s.completed(s.patch(&href, json!({"include_referrers": false})).await).await;
    assert_eq!(s.get(&href).await.1["include_referrers"], false);
    // PUT without the field: back to the default.
    s.completed(s.put(&href, base.clone()).await).await;
    assert_eq!(s.get(&href).await.1["include_referrers"], true);
    let mut off = base.clone();
    off["include_referrers"] = json!(false);
    s.completed(s.put(&href, off).await).await;
    assert_eq!(s.get(&href).await.1["include_referrers"], false);

    let mut bad = base.clone();
    bad["name"] = json!("other");
    bad["include_referrers"] = json!("yes");
    let (status, errors) = s.post("remotes/container/container/", bad).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(errors["include_referrers"].is_array(), "{errors}");
    let (status, errors) = s.patch(&href, json!({"include_referrers": 1})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(errors["include_referrers"].is_array(), "{errors}");
    assert_eq!(s.count("remotes/container/container/").await, 1);
    assert_eq!(s.get(&href).await.1["include_referrers"], false);
}

on_both_backends!(fallback_and_cosign_tags_come_with_the_image, from_pulpish_through_its_referrers_api);
on_databases!(
    mirror_mode_keeps_referrers,
    referrers_of_referrers_up_to_the_bound,
    a_misbehaving_referrers_api,
    a_failing_referrers_api_fails_the_sync,
    referrer_pages_are_bounded,
    credentials_go_to_no_other_origin,
    listed_referrers_must_refer_to_their_subject,
    referrers_api_behind_token_auth,
    nested_indexes_up_to_four_levels,
    include_referrers_in_the_api
);
