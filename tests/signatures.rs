//! Signed images through pulpish with the real clients: skopeo pushes an image with its
//! sigstore signature stored as the `sha256-<hex>.sig` tag on a docker-registry upstream;
//! pulpish syncs the image on demand, its tag filter naming only the image's tag, and brings
//! the signature along; podman pulls through pulpish under a policy requiring the signature.
//! (Debian's skopeo and podman cannot sign or verify sigstore signatures: support/sigstore.rs.)

mod support;

use std::process::Command;

use reqwest::StatusCode;
use serde_json::{json, Value};
use support::images::{held, latest_version, OCI_MANIFEST};
use support::registry::{fixture_layout, Auth, Registry};
use support::sigstore::{self, Podman, SigningKey, NO_SIGNATURE, SIMPLE_SIGNING, SIGNATURE_ANNOTATION};
use support::{run, Backend, TestServer};

/// An upstream holding `test/signed:v1` and `test/signed:other` (each signed) and
/// `test/unsigned:v1` (the same image as `v1`, unsigned in that repository); returns v1's digest.
fn signed_upstream(key: &SigningKey) -> (Registry, String) {
    let upstream = Registry::start(Auth::Anonymous);
    let layout = fixture_layout(false).join("layout");
    let digest = key.push_signed(&format!("oci:{}:amd64", layout.display()), &format!("{}/test/signed:v1", upstream.addr));
    key.push_signed(&format!("oci:{}:arm64", layout.display()), &format!("{}/test/signed:other", upstream.addr));
    upstream.push_layout_tag("amd64", "test/unsigned:v1", false, None);
    (upstream, digest)
}

/// Remote (on_demand) + repository + sync + distribution at `base_path`; returns the repository.
async fn mirror(s: &TestServer, upstream: &Registry, name: &str, base_path: &str, extra: Value) -> String {
    let mut body = json!({"name": base_path, "url": upstream.url(), "upstream_name": name, "policy": "on_demand"});
    body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    let (status, remote) = s.post("remotes/container/container/", body).await;
    assert_eq!(status, StatusCode::CREATED, "{remote}");
    let (status, repo) = s.post("repositories/container/container/", json!({"name": base_path, "remote": remote["pulp_href"]})).await;
    assert_eq!(status, StatusCode::CREATED, "{repo}");
    let repo = repo["pulp_href"].as_str().unwrap().to_string();
    s.completed(s.post(&format!("{repo}sync/"), json!({})).await).await;
    s.completed(s.post("distributions/container/container/", json!({"name": base_path, "base_path": base_path, "repository": repo})).await).await;
    repo
}

/// A manifest's status and bytes (OCI manifests accepted).
async fn manifest(client: &reqwest::Client, base: &str, name: &str, reference: &str) -> (StatusCode, Vec<u8>) {
    let r = client.get(format!("{base}/v2/{name}/manifests/{reference}")).header("accept", OCI_MANIFEST).send().await.unwrap();
    (r.status(), r.bytes().await.unwrap().to_vec())
}

async fn tags(base: &str, name: &str) -> Vec<String> {
    let list: Value = reqwest::get(format!("{base}/v2/{name}/tags/list")).await.unwrap().json().await.unwrap();
    serde_json::from_value(list["tags"].clone()).unwrap()
}

/// The fixture itself, straight from the upstream: podman finds the signature skopeo stored
/// for `test/signed:v1`, and none for the same image in `test/unsigned`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn podman_finds_the_signature_skopeo_stored_upstream() {
    let key = SigningKey::generate();
    let (upstream, digest) = signed_upstream(&key);
    assert!(tags(&upstream.url(), "test/signed").await.contains(&sigstore::signature_tag(&digest)));
    let scope = format!("{}/test", upstream.addr);
    let podman = Podman::new(&sigstore::policy(&key.public_key, &scope, &scope));
    sigstore::assert_signature_found(&podman.pull(&format!("{scope}/signed:v1")));
    let unsigned = podman.pull(&format!("{scope}/unsigned:v1")).expect_err("an unsigned image is refused");
    assert!(unsigned.contains(NO_SIGNATURE), "{unsigned}");
}

async fn a_signed_image_syncs_with_its_signature(backend: Backend) {
    let key = SigningKey::generate();
    let (upstream, digest) = signed_upstream(&key);
    let sig_tag = sigstore::signature_tag(&digest);
    let (status, upstream_signature) = manifest(&reqwest::Client::new(), &upstream.url(), "test/signed", &sig_tag).await;
    assert_eq!(status, StatusCode::OK);

    let s = TestServer::start(backend).await;
    let repo = mirror(&s, &upstream, "test/signed", "mirror/signed", json!({"include_tags": ["v1"]})).await;
    mirror(&s, &upstream, "test/unsigned", "mirror/unsigned", json!({"include_tags": ["v1"]})).await;

    // The signature tag came along, byte-identical; the tag filter still kept `other` (and its
    // signature) out; nothing was downloaded yet.
    assert_eq!(s.count("artifacts/").await, 0, "on_demand: no blob fetched by the sync");
    let (status, served) = manifest(&s.client, &s.base, "mirror/signed", &sig_tag).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&served));
    assert_eq!(served, upstream_signature, "the .sig manifest is the upstream's bytes");
    let version = held(&s, &latest_version(&s, &repo).await).await;
    let tag_names: Vec<&str> = version.tags.keys().map(String::as_str).collect();
    assert_eq!(tag_names, [sig_tag.as_str(), "v1"]);
    assert_eq!(version.tags["v1"], digest);

    // What pulpish serves is a valid signature of the image, for the name it was signed as.
    let signature: Value = serde_json::from_slice(&served).unwrap();
    let layer = &signature["layers"][0];
    assert_eq!(layer["mediaType"], SIMPLE_SIGNING);
    let payload = s.client.get(format!("{}/v2/mirror/signed/blobs/{}", s.base, layer["digest"].as_str().unwrap())).send().await.unwrap();
    assert_eq!(payload.status(), StatusCode::OK, "the payload blob is fetched on demand");
    assert_eq!(upstream.blob_gets(layer["digest"].as_str()), 1);
    let payload = payload.bytes().await.unwrap();
    // (Debian's podman cannot verify sigstore signatures: this openssl check is the proof.)
    let signature_b64 = layer["annotations"][SIGNATURE_ANNOTATION].as_str().unwrap();
    assert!(key.verifies(&payload, signature_b64), "openssl verifies the signature served");
    assert!(!SigningKey::generate().verifies(&payload, signature_b64), "and another key does not");
    let claims: Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(claims["critical"]["image"]["docker-manifest-digest"], digest);
    assert_eq!(claims["critical"]["identity"]["docker-reference"], format!("{}/test/signed:v1", upstream.addr));

    // skopeo copies the image out of pulpish with that signature.
    let host = s.base.trim_start_matches("http://").to_string();
    let out = tempfile::tempdir().unwrap();
    let registries_d = sigstore::registries_d(out.path());
    let image = out.path().join("image");
    run(Command::new("skopeo")
        .arg("--registries.d")
        .arg(&registries_d)
        .args(["copy", "--quiet", "--src-tls-verify=false"])
        .arg(format!("docker://{host}/mirror/signed:v1"))
        .arg(format!("dir:{}", image.display())));
    let copied = std::fs::read(image.join("signature-1")).expect("skopeo copied the signature");
    let copied: Value = serde_json::from_slice(copied.strip_prefix(b"\0sigstore-json\n").unwrap()).unwrap();
    assert_eq!(copied["annotations"], layer["annotations"]);
    assert_eq!(copied["payload"], json!(sigstore::base64(&payload)));

    // podman, under a policy requiring the signature: the signed image has it, the unsigned one
    // (the same digest in another repository) has none.
    let podman = Podman::new(&sigstore::policy(&key.public_key, &format!("{host}/mirror"), &format!("{}/test", upstream.addr)));
    let signed = podman.pull(&format!("{host}/mirror/signed:v1"));
    sigstore::assert_signature_found(&signed);
    if signed.is_ok() {
        assert_eq!(podman.digest(&format!("{host}/mirror/signed:v1")), digest);
    }
    let unsigned = podman.pull(&format!("{host}/mirror/unsigned:v1")).expect_err("an unsigned image is refused");
    assert!(unsigned.contains(NO_SIGNATURE), "{unsigned}");

    // With referrers turned off, the same sync brings the image alone; turned back on, the next
    // sync brings the signature.
    let bare = mirror(&s, &upstream, "test/signed", "mirror/bare", json!({"include_tags": ["v1"], "include_referrers": false})).await;
    let (status, _) = manifest(&s.client, &s.base, "mirror/bare", &sig_tag).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let refused = podman.pull(&format!("{host}/mirror/bare:v1")).expect_err("no signature without referrers");
    assert!(refused.contains(NO_SIGNATURE), "{refused}");
    let (_, bare_repo) = s.get(&bare).await;
    s.completed(s.patch(bare_repo["remote"].as_str().unwrap(), json!({"include_referrers": true})).await).await;
    s.completed(s.post(&format!("{bare}sync/"), json!({})).await).await;
    assert_eq!(manifest(&s.client, &s.base, "mirror/bare", &sig_tag).await, (StatusCode::OK, upstream_signature));
    sigstore::assert_signature_found(&podman.pull(&format!("{host}/mirror/bare:v1")));
}

/// The image signed again upstream (a second key: skopeo adds a layer to the `.sig` manifest):
/// the next sync serves the new signature manifest.
async fn a_new_signature_arrives_with_the_next_sync(backend: Backend) {
    let key = SigningKey::generate();
    let (upstream, digest) = signed_upstream(&key);
    let sig_tag = sigstore::signature_tag(&digest);
    let s = TestServer::start(backend).await;
    let repo = mirror(&s, &upstream, "test/signed", "mirror/signed", json!({"include_tags": ["v1"]})).await;
    let (_, first) = manifest(&s.client, &s.base, "mirror/signed", &sig_tag).await;

    let second_key = SigningKey::generate();
    let layout = fixture_layout(false).join("layout");
    second_key.push_signed(&format!("oci:{}:amd64", layout.display()), &format!("{}/test/signed:v1", upstream.addr));
    let (_, resigned) = manifest(&reqwest::Client::new(), &upstream.url(), "test/signed", &sig_tag).await;
    let layers = serde_json::from_slice::<Value>(&resigned).unwrap()["layers"].as_array().unwrap().len();
    assert_eq!(layers, 2, "skopeo appended the second signature");

    s.completed(s.post(&format!("{repo}sync/"), json!({})).await).await;
    let (status, served) = manifest(&s.client, &s.base, "mirror/signed", &sig_tag).await;
    assert_eq!(status, StatusCode::OK);
    assert_ne!(served, first);
    assert_eq!(served, resigned, "the new .sig manifest is the upstream's bytes");
    let host = s.base.trim_start_matches("http://").to_string();
    let podman = Podman::new(&sigstore::policy(&second_key.public_key, &format!("{host}/mirror"), &format!("{}/test", upstream.addr)));
    sigstore::assert_signature_found(&podman.pull(&format!("{host}/mirror/signed:v1")));
}

on_databases!(a_signed_image_syncs_with_its_signature, a_new_signature_arrives_with_the_next_sync);
