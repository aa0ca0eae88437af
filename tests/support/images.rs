//! Content made cheaply: images pushed through the registry API with plain requests (one-request
//! blob uploads, OCI manifests and indexes), and what a repository version holds, read back
//! through the content lists.

use std::collections::{BTreeMap, BTreeSet};

use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::Digest;

use super::{TestServer, PASSWORD};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";

pub fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{:x}", sha2::Sha256::digest(bytes))
}

/// A pushed image manifest and its blobs.
#[derive(Debug, Clone)]
pub struct Image {
    pub digest: String,
    pub config: String,
    pub layers: Vec<String>,
}

impl Image {
    pub fn blobs(&self) -> BTreeSet<String> {
        std::iter::once(self.config.clone()).chain(self.layers.iter().cloned()).collect()
    }
}

/// Pushes a whole blob in one request (which makes `name`'s repository on a first push).
pub async fn push_blob(s: &TestServer, name: &str, bytes: &[u8]) -> String {
    let digest = digest_of(bytes);
    let r = s
        .client
        .post(format!("{}/v2/{name}/blobs/uploads/?digest={digest}", s.base))
        .basic_auth("admin", Some(PASSWORD))
        .body(bytes.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "blob push: {}", r.text().await.unwrap());
    digest
}

/// PUTs manifest bytes under `reference` (a tag or the digest); returns the digest.
pub async fn put_manifest(s: &TestServer, name: &str, reference: &str, media_type: &str, bytes: Vec<u8>) -> String {
    let r = s
        .client
        .put(format!("{}/v2/{name}/manifests/{reference}", s.base))
        .basic_auth("admin", Some(PASSWORD))
        .header("content-type", media_type)
        .body(bytes.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "manifest push: {}", r.text().await.unwrap());
    digest_of(&bytes)
}

/// Pushes an image tagged `tag`: a config unique to `seed` and a layer per entry of `layers`.
pub async fn push_image(s: &TestServer, name: &str, tag: &str, seed: &str, layers: &[&[u8]]) -> Image {
    let config_bytes = serde_json::to_vec(&json!({"architecture": "amd64", "os": "linux", "seed": seed})).unwrap();
    let config = push_blob(s, name, &config_bytes).await;
    let mut layer_digests = Vec::new();
    let mut descriptors = Vec::new();
    for l in layers {
        let d = push_blob(s, name, l).await;
        descriptors.push(json!({"mediaType": OCI_LAYER, "digest": d, "size": l.len()}));
        layer_digests.push(d);
    }
    let manifest = json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config, "size": config_bytes.len()},
        "layers": descriptors,
    });
    let digest = put_manifest(s, name, tag, OCI_MANIFEST, serde_json::to_vec(&manifest).unwrap()).await;
    Image { digest, config, layers: layer_digests }
}

/// Pushes an OCI index of images already in `name`'s latest version, tagged `tag`.
pub async fn push_index(s: &TestServer, name: &str, tag: &str, images: &[&Image]) -> String {
    let manifests: Vec<Value> = images
        .iter()
        .map(|i| json!({"mediaType": OCI_MANIFEST, "digest": i.digest, "size": 1, "platform": {"architecture": "amd64", "os": "linux"}}))
        .collect();
    let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests});
    put_manifest(s, name, tag, OCI_INDEX, serde_json::to_vec(&index).unwrap()).await
}

/// The repository (href) a distribution's base path serves.
pub async fn repository_at(s: &TestServer, base_path: &str) -> String {
    let (status, d) = s.get(&format!("distributions/container/container/?base_path={base_path}")).await;
    assert_eq!(status, StatusCode::OK, "{d}");
    d["results"][0]["repository"].as_str().unwrap_or_else(|| panic!("no repository at {base_path}: {d}")).to_string()
}

pub async fn latest_version(s: &TestServer, repository_href: &str) -> String {
    let (status, r) = s.get(repository_href).await;
    assert_eq!(status, StatusCode::OK, "{r}");
    r["latest_version_href"].as_str().unwrap().to_string()
}

/// What a repository version holds, as its content lists show it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Held {
    /// Tag name → the digest of its manifest.
    pub tags: BTreeMap<String, String>,
    pub manifests: BTreeSet<String>,
    pub blobs: BTreeSet<String>,
}

async fn results(s: &TestServer, list: &str, version_href: &str) -> Vec<Value> {
    let (status, page) = s.get(&format!("content/container/{list}/?repository_version={version_href}&limit=1000")).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["results"].as_array().unwrap().clone()
}

pub async fn held(s: &TestServer, version_href: &str) -> Held {
    let mut out = Held::default();
    for t in results(s, "tags", version_href).await {
        let (_, m) = s.get(t["tagged_manifest"].as_str().unwrap()).await;
        out.tags.insert(t["name"].as_str().unwrap().to_string(), m["digest"].as_str().unwrap().to_string());
    }
    out.manifests = results(s, "manifests", version_href).await.iter().map(|m| m["digest"].as_str().unwrap().to_string()).collect();
    out.blobs = results(s, "blobs", version_href).await.iter().map(|b| b["digest"].as_str().unwrap().to_string()).collect();
    out
}

/// The href of the content unit of `list` (`tags`, `manifests`, `blobs`) matching `filter`
/// (`name=a`, `digest=sha256:...`), in `version_href` when given.
pub async fn unit_href(s: &TestServer, list: &str, filter: &str, version_href: Option<&str>) -> String {
    let scope = version_href.map(|v| format!("&repository_version={v}")).unwrap_or_default();
    let (status, page) = s.get(&format!("content/container/{list}/?{filter}{scope}")).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["count"], 1, "one {list} unit with {filter}: {page}");
    page["results"][0]["pulp_href"].as_str().unwrap().to_string()
}

/// The digest a pull of `name:reference` answers, or the status when it fails.
pub async fn pulled(s: &TestServer, name: &str, reference: &str) -> Result<String, StatusCode> {
    let r = s
        .client
        .get(format!("{}/v2/{name}/manifests/{reference}", s.base))
        .header("accept", format!("{OCI_MANIFEST}, {OCI_INDEX}"))
        .send()
        .await
        .unwrap();
    if r.status() != StatusCode::OK {
        return Err(r.status());
    }
    let header = r.headers()["docker-content-digest"].to_str().unwrap().to_string();
    assert_eq!(digest_of(&r.bytes().await.unwrap()), header, "the pulled bytes hash to the digest header");
    Ok(header)
}
