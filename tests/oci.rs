//! The OCI distribution spec 1.1 as a client sees it, endpoint by endpoint from the spec's own
//! table (end-1 … end-13), each with its success and its error answers: status, error code,
//! headers. Then what OCI 1.1 added: the referrers API, blob deletes, sha512 digests, and
//! cross-repository mounts with a token. Blobs and manifests are built by hand per the spec;
//! every refused write is checked to have written nothing.

mod support;

use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::{json, Value};
use sha2::Digest;
use support::{Backend, TestServer, PASSWORD};

const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const INDEX: &str = "application/vnd.oci.image.index.v1+json";
const EMPTY: &str = "application/vnd.oci.empty.v1+json";
const EMPTY_DIGEST: &str = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{:x}", sha2::Sha256::digest(bytes))
}

fn sha512(bytes: &[u8]) -> String {
    format!("sha512:{:x}", sha2::Sha512::digest(bytes))
}

/// A small blob of random bytes.
fn random_blob(len: usize) -> Vec<u8> {
    std::iter::repeat_with(|| *uuid::Uuid::new_v4().as_bytes()).flatten().take(len).collect()
}

fn header(r: &Response, name: &str) -> String {
    r.headers().get(name).unwrap_or_else(|| panic!("no {name} header in {:?}", r.headers())).to_str().unwrap().to_string()
}

/// The status and `errors[0].code` of an error answer.
async fn error(r: Response) -> (StatusCode, String) {
    let status = r.status();
    let body: Value = r.json().await.expect("an OCI error body");
    (status, body["errors"][0]["code"].as_str().unwrap_or_else(|| panic!("no error code in {body}")).to_string())
}

fn descriptor(media_type: &str, digest: &str, size: usize) -> Value {
    json!({"mediaType": media_type, "digest": digest, "size": size})
}

/// An OCI image manifest with a config and layers.
fn image_manifest(config: &Value, layers: &[Value]) -> Value {
    json!({"schemaVersion": 2, "mediaType": MANIFEST, "config": config, "layers": layers})
}

/// An OCI 1.1 artifact manifest (the image spec's artifact guidance): the empty config, one
/// layer, `artifactType`, a `subject` and annotations.
fn artifact_manifest(artifact_type: &str, layer: &Value, subject: &Value, note: &str) -> Value {
    json!({"schemaVersion": 2, "mediaType": MANIFEST, "artifactType": artifact_type,
        "config": descriptor(EMPTY, EMPTY_DIGEST, 2), "layers": [layer], "subject": subject,
        "annotations": {"org.example.note": note}})
}

struct Oci<'a> {
    s: &'a TestServer,
}

/// An image pushed by [`Oci::image`].
struct Pushed {
    digest: String,
    bytes: Vec<u8>,
    config: String,
    layer: String,
}

impl Oci<'_> {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.s.base)
    }

    fn admin(&self, method: Method, path: &str) -> RequestBuilder {
        self.s.client.request(method, self.url(path)).basic_auth("admin", Some(PASSWORD))
    }

    fn anon(&self, method: Method, path: &str) -> RequestBuilder {
        self.s.client.request(method, self.url(path))
    }

    fn bearer(&self, method: Method, path: &str, token: &str) -> RequestBuilder {
        self.s.client.request(method, self.url(path)).bearer_auth(token)
    }

    /// A monolithic push of `bytes` as `digest` (end-4b).
    async fn push_blob_as(&self, name: &str, bytes: &[u8], digest: &str) -> Response {
        self.admin(Method::POST, &format!("/v2/{name}/blobs/uploads/?digest={digest}"))
            .header("content-type", "application/octet-stream")
            .body(bytes.to_vec())
            .send()
            .await
            .unwrap()
    }

    async fn push_blob(&self, name: &str, bytes: &[u8]) -> String {
        let digest = sha256(bytes);
        let r = self.push_blob_as(name, bytes, &digest).await;
        assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().await.unwrap());
        digest
    }

    async fn put_manifest(&self, name: &str, reference: &str, bytes: &[u8]) -> Response {
        self.admin(Method::PUT, &format!("/v2/{name}/manifests/{reference}")).header("content-type", MANIFEST).body(bytes.to_vec()).send().await.unwrap()
    }

    /// Pushes a manifest by `reference`; its digest and bytes.
    async fn push_manifest(&self, name: &str, reference: &str, manifest: &Value) -> (String, Vec<u8>) {
        let bytes = serde_json::to_vec(manifest).unwrap();
        let r = self.put_manifest(name, reference, &bytes).await;
        assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().await.unwrap());
        (header(&r, "docker-content-digest"), bytes)
    }

    /// A config and a layer, then an image manifest tagged `tag`.
    async fn image(&self, name: &str, tag: &str) -> Pushed {
        let config = self.push_blob(name, br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#).await;
        let layer_bytes = random_blob(300);
        let layer = self.push_blob(name, &layer_bytes).await;
        let m = image_manifest(&descriptor("application/vnd.oci.image.config.v1+json", &config, 78), &[descriptor("application/vnd.oci.image.layer.v1.tar", &layer, 300)]);
        let (digest, bytes) = self.push_manifest(name, tag, &m).await;
        Pushed { digest, bytes, config, layer }
    }

    /// An image tagged `v1` to refer to, and the empty config artifacts use: the image, its
    /// descriptor as a `subject`, and its layer's descriptor for artifacts to carry.
    async fn subject(&self, name: &str) -> (Pushed, Value, Value) {
        let img = self.image(name, "v1").await;
        self.push_blob(name, b"{}").await;
        let subject = descriptor(MANIFEST, &img.digest, img.bytes.len());
        let layer = descriptor("application/vnd.oci.image.layer.v1.tar", &img.layer, 300);
        (img, subject, layer)
    }

    /// What a refused write must leave as it was: the repository's latest version, the blob
    /// units and the stored artifacts.
    async fn snapshot(&self, name: &str) -> (Value, i64, i64) {
        let (status, repos) = self.s.get(&format!("repositories/container/container/?name={name}")).await;
        assert_eq!(status, StatusCode::OK, "{repos}");
        (repos["results"][0]["latest_version_href"].clone(), self.s.count("content/container/blobs/").await, self.s.count("artifacts/").await)
    }

    /// A token from `/token` for the scopes in `query` (`scope=...&scope=...`), as the admin.
    async fn token(&self, query: &str) -> String {
        let r = self.admin(Method::GET, &format!("/token?service=pulpish&{query}")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        r.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_string()
    }

    async fn make_private(&self, name: &str) {
        let (_, d) = self.s.get(&format!("distributions/container/container/?base_path={name}")).await;
        self.s.completed(self.s.patch(d["results"][0]["pulp_href"].as_str().unwrap(), json!({"private": true})).await).await;
    }
}

/// end-1 `GET /v2/`, end-2 `GET`/`HEAD` blob, end-3 `GET`/`HEAD` manifest.
async fn end_1_2_3_base_blobs_and_manifests(backend: Backend) {
    let s = TestServer::start(backend).await;
    let oci = Oci { s: &s };

    // end-1: anonymous clients are challenged (so they fetch a token); credentials get 200.
    let r = oci.anon(Method::GET, "/v2/").send().await.unwrap();
    assert!(header(&r, "www-authenticate").starts_with("Bearer realm="));
    assert_eq!(error(r).await, (StatusCode::UNAUTHORIZED, "UNAUTHORIZED".into()));
    let r = oci.admin(Method::GET, "/v2/").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "docker-distribution-api-version"), "registry/2.0");

    let img = oci.image("spec/pull", "v1").await;
    let layer = oci.admin(Method::GET, &format!("/v2/spec/pull/blobs/{}", img.layer)).send().await.unwrap();

    // end-2: the exact bytes, their digest, their length; HEAD the same headers without a body.
    assert_eq!(layer.status(), StatusCode::OK);
    assert_eq!(header(&layer, "docker-content-digest"), img.layer);
    assert_eq!(header(&layer, "content-length"), "300");
    assert_eq!(sha256(&layer.bytes().await.unwrap()), img.layer);
    let head = oci.anon(Method::HEAD, &format!("/v2/spec/pull/blobs/{}", img.layer)).send().await.unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(header(&head, "content-length"), "300");
    assert_eq!(header(&head, "docker-content-digest"), img.layer);
    let unknown = sha256(b"never pushed");
    assert_eq!(error(oci.anon(Method::GET, &format!("/v2/spec/pull/blobs/{unknown}")).send().await.unwrap()).await, (StatusCode::NOT_FOUND, "BLOB_UNKNOWN".into()));
    let head = oci.anon(Method::HEAD, &format!("/v2/spec/pull/blobs/{unknown}")).send().await.unwrap();
    assert_eq!(head.status(), StatusCode::NOT_FOUND);
    assert_eq!(error(oci.anon(Method::GET, "/v2/spec/pull/blobs/sha256:nothex").send().await.unwrap()).await, (StatusCode::BAD_REQUEST, "DIGEST_INVALID".into()));
    assert_eq!(error(oci.anon(Method::GET, &format!("/v2/spec/nothere/blobs/{}", img.layer)).send().await.unwrap()).await, (StatusCode::NOT_FOUND, "NAME_UNKNOWN".into()));

    // end-3: by tag and by digest, the bytes as pushed with their media type.
    for reference in ["v1", img.digest.as_str()] {
        let r = oci.anon(Method::GET, &format!("/v2/spec/pull/manifests/{reference}")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(header(&r, "content-type"), MANIFEST);
        assert_eq!(header(&r, "docker-content-digest"), img.digest);
        assert_eq!(r.bytes().await.unwrap().to_vec(), img.bytes);
        let head = oci.anon(Method::HEAD, &format!("/v2/spec/pull/manifests/{reference}")).send().await.unwrap();
        assert_eq!(head.status(), StatusCode::OK);
        assert_eq!(header(&head, "docker-content-digest"), img.digest);
        assert_eq!(header(&head, "content-length"), img.bytes.len().to_string());
    }
    assert_eq!(error(oci.anon(Method::GET, "/v2/spec/pull/manifests/v2").send().await.unwrap()).await, (StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN".into()));
    assert_eq!(oci.anon(Method::HEAD, "/v2/spec/pull/manifests/v2").send().await.unwrap().status(), StatusCode::NOT_FOUND);
    assert_eq!(error(oci.anon(Method::GET, &format!("/v2/spec/pull/manifests/{unknown}")).send().await.unwrap()).await, (StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN".into()));
    assert_eq!(error(oci.anon(Method::GET, "/v2/spec/pull/manifests/sha256:short").send().await.unwrap()).await, (StatusCode::BAD_REQUEST, "DIGEST_INVALID".into()));
    assert_eq!(error(oci.anon(Method::GET, "/v2/spec/pull/manifests/-tag").send().await.unwrap()).await, (StatusCode::BAD_REQUEST, "TAG_INVALID".into()));
    assert_eq!(error(oci.anon(Method::GET, "/v2/spec/nothere/manifests/v1").send().await.unwrap()).await, (StatusCode::NOT_FOUND, "NAME_UNKNOWN".into()));

    // Private: anonymous pulls are challenged for pull on that repository.
    oci.make_private("spec/pull").await;
    let r = oci.anon(Method::GET, "/v2/spec/pull/manifests/v1").send().await.unwrap();
    assert!(header(&r, "www-authenticate").contains("scope=\"repository:spec/pull:pull\""));
    assert_eq!(error(r).await, (StatusCode::UNAUTHORIZED, "UNAUTHORIZED".into()));
    assert_eq!(oci.anon(Method::GET, &format!("/v2/spec/pull/blobs/{}", img.layer)).send().await.unwrap().status(), StatusCode::UNAUTHORIZED);
    assert_eq!(oci.admin(Method::GET, "/v2/spec/pull/manifests/v1").send().await.unwrap().status(), StatusCode::OK);
}

/// end-4a `POST` upload, end-4b `POST ?digest=` monolithic, end-5 `PATCH` chunk, end-6 `PUT`
/// upload `?digest=`, end-13 `GET` upload status.
async fn end_4_5_6_13_blob_uploads(backend: Backend) {
    let s = TestServer::start(backend).await;
    let oci = Oci { s: &s };
    let blob = random_blob(1000);
    let digest = sha256(&blob);

    // end-4a: an upload session at Location, its UUID, nothing received yet.
    let r = oci.admin(Method::POST, "/v2/spec/push/blobs/uploads/").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let location = header(&r, "location");
    let uuid = header(&r, "docker-upload-uuid");
    assert_eq!(location, format!("/v2/spec/push/blobs/uploads/{uuid}"));
    assert_eq!(header(&r, "range"), "0-0");

    // end-13: where the upload stands.
    let r = oci.admin(Method::GET, &location).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&r, "range"), "0-0");
    assert_eq!(header(&r, "docker-upload-uuid"), uuid);
    assert_eq!(
        error(oci.admin(Method::GET, &format!("/v2/spec/push/blobs/uploads/{}", uuid::Uuid::new_v4())).send().await.unwrap()).await,
        (StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN".into())
    );
    assert_eq!(error(oci.admin(Method::GET, "/v2/spec/push/blobs/uploads/not-a-uuid").send().await.unwrap()).await, (StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN".into()));
    assert_eq!(oci.anon(Method::GET, &location).send().await.unwrap().status(), StatusCode::UNAUTHORIZED);

    // end-5: chunks in order; one out of order is refused with where the upload stands.
    let r =
        oci.admin(Method::PATCH, &location).header("content-type", "application/octet-stream").header("content-range", "0-399").body(blob[..400].to_vec()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(header(&r, "range"), "0-399");
    assert_eq!(header(&r, "location"), location);
    let r = oci.admin(Method::PATCH, &location).header("content-range", "500-999").body(blob[500..].to_vec()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(header(&r, "range"), "0-399");
    let anon = oci.anon(Method::PATCH, &location).body(blob[400..].to_vec()).send().await.unwrap();
    assert!(header(&anon, "www-authenticate").contains("repository:spec/push:pull,push"));
    assert_eq!(error(anon).await, (StatusCode::UNAUTHORIZED, "UNAUTHORIZED".into()));
    let r = oci.admin(Method::GET, &location).send().await.unwrap();
    assert_eq!(header(&r, "range"), "0-399", "refused chunks add nothing");

    // end-6: a PUT without a digest is refused; the right one closes the upload at the blob's
    // Location; a wrong one ends the upload and stores nothing.
    let r = oci.admin(Method::PUT, &location).body(blob[400..].to_vec()).send().await.unwrap();
    assert_eq!(error(r).await, (StatusCode::BAD_REQUEST, "DIGEST_INVALID".into()));
    let r = oci.admin(Method::PUT, &format!("{location}?digest={digest}")).body(blob[400..].to_vec()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(header(&r, "location"), format!("/v2/spec/push/blobs/{digest}"));
    assert_eq!(header(&r, "docker-content-digest"), digest);
    assert_eq!(error(oci.admin(Method::GET, &location).send().await.unwrap()).await, (StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN".into()), "a finished upload is gone");
    assert_eq!(oci.admin(Method::GET, &format!("/v2/spec/push/blobs/{digest}")).send().await.unwrap().bytes().await.unwrap().to_vec(), blob);

    let wrong = sha256(b"other bytes");
    let r = oci.admin(Method::POST, "/v2/spec/push/blobs/uploads/").send().await.unwrap();
    let second = header(&r, "location");
    let before_wrong = oci.snapshot("spec/push").await;
    let r = oci.admin(Method::PUT, &format!("{second}?digest={wrong}")).body(blob.clone()).send().await.unwrap();
    assert_eq!(error(r).await, (StatusCode::BAD_REQUEST, "DIGEST_INVALID".into()));
    assert_eq!(oci.snapshot("spec/push").await, before_wrong, "a refused PUT writes nothing");
    assert_eq!(
        error(oci.admin(Method::PUT, &format!("/v2/spec/push/blobs/uploads/{}?digest={digest}", uuid::Uuid::new_v4())).send().await.unwrap()).await,
        (StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN".into())
    );

    // end-4b: the whole blob in the POST.
    let mono = random_blob(200);
    let r = oci.push_blob_as("spec/push", &mono, &sha256(&mono)).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(header(&r, "location"), format!("/v2/spec/push/blobs/{}", sha256(&mono)));
    assert_eq!(header(&r, "docker-content-digest"), sha256(&mono));
    let before_mono = oci.snapshot("spec/push").await;
    assert_eq!(error(oci.push_blob_as("spec/push", &random_blob(10), &wrong).await).await, (StatusCode::BAD_REQUEST, "DIGEST_INVALID".into()));
    assert_eq!(error(oci.push_blob_as("spec/push", b"x", "sha256:nothex").await).await, (StatusCode::BAD_REQUEST, "DIGEST_INVALID".into()));
    let anon = oci.anon(Method::POST, &format!("/v2/spec/push/blobs/uploads/?digest={}", sha256(b"y"))).body(b"y".to_vec()).send().await.unwrap();
    assert_eq!(error(anon).await, (StatusCode::UNAUTHORIZED, "UNAUTHORIZED".into()));
    assert_eq!(error(oci.admin(Method::POST, "/v2/Bad_Name/blobs/uploads/").send().await.unwrap()).await, (StatusCode::BAD_REQUEST, "NAME_INVALID".into()));
    assert_eq!(oci.snapshot("spec/push").await, before_mono, "refused POSTs write nothing");
}

/// end-7 `PUT` manifest, end-8a `GET` tags/list, end-8b tags/list `?n=&last=`, end-9 `DELETE`
/// manifest.
async fn end_7_8_9_manifests_and_tags(backend: Backend) {
    let s = TestServer::start(backend).await;
    let oci = Oci { s: &s };
    let img = oci.image("spec/tags", "b").await;

    // end-7: created at Location by digest; tags move; refusals write nothing.
    let r = oci.put_manifest("spec/tags", "a", &img.bytes).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(header(&r, "location"), format!("/v2/spec/tags/manifests/{}", img.digest));
    assert_eq!(header(&r, "docker-content-digest"), img.digest);
    assert!(r.headers().get("oci-subject").is_none(), "no subject, no OCI-Subject");
    oci.put_manifest("spec/tags", "c", &img.bytes).await;
    let before = oci.snapshot("spec/tags").await;
    let missing =
        image_manifest(&descriptor("application/vnd.oci.image.config.v1+json", &img.config, 78), &[descriptor("application/vnd.oci.image.layer.v1.tar", &sha256(b"missing"), 7)]);
    let r = oci.put_manifest("spec/tags", "d", &serde_json::to_vec(&missing).unwrap()).await;
    assert_eq!(error(r).await, (StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN".into()));
    assert_eq!(error(oci.put_manifest("spec/tags", "d", b"{not json").await).await, (StatusCode::BAD_REQUEST, "MANIFEST_INVALID".into()));
    let r = oci.put_manifest("spec/tags", &sha256(b"other"), &img.bytes).await;
    assert_eq!(error(r).await, (StatusCode::BAD_REQUEST, "DIGEST_INVALID".into()));
    let anon = oci.anon(Method::PUT, "/v2/spec/tags/manifests/d").header("content-type", MANIFEST).body(img.bytes.clone()).send().await.unwrap();
    assert!(header(&anon, "www-authenticate").contains("repository:spec/tags:pull,push"));
    assert_eq!(error(anon).await, (StatusCode::UNAUTHORIZED, "UNAUTHORIZED".into()));
    assert_eq!(oci.snapshot("spec/tags").await, before);

    // end-8a: every tag, in order.
    let r = oci.anon(Method::GET, "/v2/spec/tags/tags/list").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers().get("link").is_none());
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"name": "spec/tags", "tags": ["a", "b", "c"]}));
    assert_eq!(error(oci.anon(Method::GET, "/v2/spec/none/tags/list").send().await.unwrap()).await, (StatusCode::NOT_FOUND, "NAME_UNKNOWN".into()));

    // end-8b: pages of n after last, with a Link to the next one while pages are full.
    let r = oci.anon(Method::GET, "/v2/spec/tags/tags/list?n=2").send().await.unwrap();
    assert_eq!(header(&r, "link"), "</v2/spec/tags/tags/list?n=2&last=b>; rel=\"next\"");
    assert_eq!(r.json::<Value>().await.unwrap()["tags"], json!(["a", "b"]));
    let r = oci.anon(Method::GET, "/v2/spec/tags/tags/list?n=2&last=b").send().await.unwrap();
    assert!(r.headers().get("link").is_none());
    assert_eq!(r.json::<Value>().await.unwrap()["tags"], json!(["c"]));
    let r = oci.anon(Method::GET, "/v2/spec/tags/tags/list?n=0").send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["tags"], json!([]));
    assert_eq!(error(oci.anon(Method::GET, "/v2/spec/tags/tags/list?last=a%00b").send().await.unwrap()).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(error(oci.anon(Method::GET, "/v2/spec/tags/tags/list?n=many").send().await.unwrap()).await.0, StatusCode::BAD_REQUEST);

    // end-9: a tag, then the manifest with its remaining tags; refusals write nothing.
    let before = oci.snapshot("spec/tags").await;
    let anon = oci.anon(Method::DELETE, "/v2/spec/tags/manifests/a").send().await.unwrap();
    assert_eq!(error(anon).await, (StatusCode::UNAUTHORIZED, "UNAUTHORIZED".into()));
    assert_eq!(error(oci.admin(Method::DELETE, "/v2/spec/tags/manifests/zzz").send().await.unwrap()).await, (StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN".into()));
    assert_eq!(
        error(oci.admin(Method::DELETE, &format!("/v2/spec/tags/manifests/{}", sha256(b"x"))).send().await.unwrap()).await,
        (StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN".into())
    );
    assert_eq!(error(oci.admin(Method::DELETE, "/v2/spec/none/manifests/a").send().await.unwrap()).await, (StatusCode::NOT_FOUND, "NAME_UNKNOWN".into()));
    assert_eq!(oci.snapshot("spec/tags").await, before);
    let r = oci.admin(Method::DELETE, "/v2/spec/tags/manifests/a").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(oci.anon(Method::GET, "/v2/spec/tags/tags/list").send().await.unwrap().json::<Value>().await.unwrap()["tags"], json!(["b", "c"]));
    assert_eq!(oci.anon(Method::GET, &format!("/v2/spec/tags/manifests/{}", img.digest)).send().await.unwrap().status(), StatusCode::OK);
    let r = oci.admin(Method::DELETE, &format!("/v2/spec/tags/manifests/{}", img.digest)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(oci.anon(Method::GET, &format!("/v2/spec/tags/manifests/{}", img.digest)).send().await.unwrap().status(), StatusCode::NOT_FOUND);
    assert_eq!(oci.anon(Method::GET, "/v2/spec/tags/tags/list").send().await.unwrap().json::<Value>().await.unwrap()["tags"], json!([]), "its tags went with it");
}

/// end-10 `DELETE /v2/<name>/blobs/<digest>`.
async fn end_10_blob_delete(backend: Backend) {
    let s = TestServer::start(backend).await;
    let oci = Oci { s: &s };
    let img = oci.image("spec/del/app", "v1").await;
    let blob_url = |d: &str| format!("/v2/spec/del/app/blobs/{d}");

    // Anonymous: challenged for push, nothing removed.
    let before = oci.snapshot("spec/del/app").await;
    let anon = oci.anon(Method::DELETE, &blob_url(&img.layer)).send().await.unwrap();
    assert_eq!(header(&anon, "www-authenticate"), format!("Bearer realm=\"{}/token\",service=\"pulpish\",scope=\"repository:spec/del/app:pull,push\"", s.base));
    assert_eq!(error(anon).await, (StatusCode::UNAUTHORIZED, "UNAUTHORIZED".into()));
    // Still used by the manifest: 409 DENIED naming it; the blob is still served.
    let r = oci.admin(Method::DELETE, &blob_url(&img.layer)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "DENIED");
    let message = body["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains(&img.layer) && message.contains(&img.digest), "{message}");
    assert_eq!(error(oci.admin(Method::DELETE, &blob_url(&img.config)).send().await.unwrap()).await, (StatusCode::CONFLICT, "DENIED".into()), "a config too");
    // Unknown, invalid, unknown name.
    assert_eq!(error(oci.admin(Method::DELETE, &blob_url(&sha256(b"never"))).send().await.unwrap()).await, (StatusCode::NOT_FOUND, "BLOB_UNKNOWN".into()));
    assert_eq!(error(oci.admin(Method::DELETE, &blob_url("sha256:xyz")).send().await.unwrap()).await, (StatusCode::BAD_REQUEST, "DIGEST_INVALID".into()));
    assert_eq!(error(oci.admin(Method::DELETE, &format!("/v2/spec/none/blobs/{}", img.layer)).send().await.unwrap()).await, (StatusCode::NOT_FOUND, "NAME_UNKNOWN".into()));
    assert_eq!(oci.snapshot("spec/del/app").await, before, "refused deletes write nothing");
    assert_eq!(oci.anon(Method::GET, &blob_url(&img.layer)).send().await.unwrap().status(), StatusCode::OK);

    // Once the manifest is gone: 202, a new version without the blob, and 404 from then on.
    assert_eq!(oci.admin(Method::DELETE, &format!("/v2/spec/del/app/manifests/{}", img.digest)).send().await.unwrap().status(), StatusCode::ACCEPTED);
    let r = oci.admin(Method::DELETE, &blob_url(&img.layer)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(header(&r, "docker-distribution-api-version"), "registry/2.0");
    let after = oci.snapshot("spec/del/app").await;
    assert_ne!(after.0, before.0, "a new repository version");
    let (_, version) = s.get(after.0.as_str().unwrap()).await;
    assert_eq!(version["content_summary"]["removed"]["container.blob"]["count"], 1, "{version}");
    assert_eq!(error(oci.anon(Method::GET, &blob_url(&img.layer)).send().await.unwrap()).await, (StatusCode::NOT_FOUND, "BLOB_UNKNOWN".into()));
    assert_eq!(oci.anon(Method::HEAD, &blob_url(&img.layer)).send().await.unwrap().status(), StatusCode::NOT_FOUND);
    assert_eq!(error(oci.admin(Method::DELETE, &blob_url(&img.layer)).send().await.unwrap()).await, (StatusCode::NOT_FOUND, "BLOB_UNKNOWN".into()), "deleted once");
    assert_eq!(oci.anon(Method::GET, &blob_url(&img.config)).send().await.unwrap().status(), StatusCode::OK, "the other blob stays");

    // A blob pushed ahead of any manifest: deleting it makes no version, and a manifest can
    // no longer use it.
    let ahead = oci.push_blob("spec/del/app", &random_blob(50)).await;
    let before = oci.snapshot("spec/del/app").await;
    assert_eq!(oci.admin(Method::DELETE, &blob_url(&ahead)).send().await.unwrap().status(), StatusCode::ACCEPTED);
    assert_eq!(oci.snapshot("spec/del/app").await.0, before.0);
    assert_eq!(oci.anon(Method::GET, &blob_url(&ahead)).send().await.unwrap().status(), StatusCode::NOT_FOUND);
    let uses = image_manifest(&descriptor("application/vnd.oci.image.config.v1+json", &img.config, 78), &[descriptor("application/vnd.oci.image.layer.v1.tar", &ahead, 50)]);
    let r = oci.put_manifest("spec/del/app", "v2", &serde_json::to_vec(&uses).unwrap()).await;
    assert_eq!(error(r).await, (StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN".into()));

    // The routes: an upload's DELETE still cancels it, under a name with slashes.
    let r = oci.admin(Method::POST, "/v2/spec/del/app/blobs/uploads/").send().await.unwrap();
    let location = header(&r, "location");
    assert_eq!(oci.admin(Method::DELETE, &location).send().await.unwrap().status(), StatusCode::NO_CONTENT);
    assert_eq!(oci.admin(Method::GET, &location).send().await.unwrap().status(), StatusCode::NOT_FOUND);

    // A pinned distribution refuses deletes as it refuses pushes.
    let (_, repos) = s.get("repositories/container/container/?name=spec/del/app").await;
    let (_, d) = s.get("distributions/container/container/?base_path=spec/del/app").await;
    let pinned = repos["results"][0]["latest_version_href"].clone();
    s.completed(s.patch(d["results"][0]["pulp_href"].as_str().unwrap(), json!({"repository": null, "repository_version": pinned})).await).await;
    assert_eq!(error(oci.admin(Method::DELETE, &blob_url(&img.config)).send().await.unwrap()).await, (StatusCode::FORBIDDEN, "DENIED".into()));
}

/// end-11 `POST ?mount=&from=` with a token, the way token clients (Docker, containerd) do it.
async fn end_11_mount_with_a_token(backend: Backend) {
    let s = TestServer::start(backend).await;
    let oci = Oci { s: &s };
    let layer = random_blob(500);
    let digest = oci.push_blob("spec/src", &layer).await;
    oci.push_manifest("spec/src", "v1", &image_manifest(&descriptor("application/vnd.oci.image.config.v1+json", &digest, 500), &[])).await;
    let mount = |to: &str, from: &str, d: &str| format!("/v2/{to}/blobs/uploads/?mount={d}&from={from}");

    // The challenge names both repositories in one scope parameter.
    let r = oci.anon(Method::POST, &mount("spec/dst", "spec/src", &digest)).send().await.unwrap();
    assert_eq!(header(&r, "www-authenticate"), format!("Bearer realm=\"{}/token\",service=\"pulpish\",scope=\"repository:spec/dst:pull,push repository:spec/src:pull\"", s.base));
    assert_eq!(error(r).await, (StatusCode::UNAUTHORIZED, "UNAUTHORIZED".into()));
    assert!(s.get("repositories/container/container/?name=spec/dst").await.1["count"] == 0, "nothing created");

    // A token for both scopes (two scope parameters), and one asked with space-separated scopes.
    let both = oci.token("scope=repository:spec/dst:pull,push&scope=repository:spec/src:pull").await;
    let spaced = oci.token("scope=repository%3Aspec%2Fdst2%3Apull%2Cpush%20repository%3Aspec%2Fsrc%3Apull").await;
    oci.make_private("spec/src").await;
    for (to, token) in [("spec/dst", &both), ("spec/dst2", &spaced)] {
        let r = oci.bearer(Method::POST, &mount(to, "spec/src", &digest), token).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::CREATED, "{to}");
        assert_eq!(header(&r, "location"), format!("/v2/{to}/blobs/{digest}"));
        assert_eq!(header(&r, "docker-content-digest"), digest);
        let got = oci.bearer(Method::GET, &format!("/v2/{to}/blobs/{digest}"), token).send().await.unwrap();
        assert_eq!(got.bytes().await.unwrap().to_vec(), layer);
    }

    // A private source with a token for the target only: no mount, an ordinary upload.
    let only_target = oci.token("scope=repository:spec/dst3:pull,push").await;
    let r = oci.bearer(Method::POST, &mount("spec/dst3", "spec/src", &digest), &only_target).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert!(header(&r, "location").starts_with("/v2/spec/dst3/blobs/uploads/"));
    assert_eq!(oci.bearer(Method::GET, &format!("/v2/spec/dst3/blobs/{digest}"), &only_target).send().await.unwrap().status(), StatusCode::NOT_FOUND);
    // A public source needs no grant on it.
    oci.push_blob("spec/public", &layer).await;
    oci.push_manifest("spec/public", "v1", &image_manifest(&descriptor("application/vnd.oci.image.config.v1+json", &digest, 500), &[])).await;
    let r = oci.bearer(Method::POST, &mount("spec/dst3", "spec/public", &digest), &only_target).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(header(&r, "docker-content-digest"), digest);
    // A token without push on the target is challenged again.
    let r = oci.bearer(Method::POST, &mount("spec/dst4", "spec/public", &digest), &only_target).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // An unknown blob, or one from an unknown repository: an ordinary upload (202).
    let before = oci.snapshot("spec/dst").await;
    for from in ["spec/public", "spec/nowhere", "Not%20A%20Name"] {
        let r = oci.bearer(Method::POST, &mount("spec/dst", from, &sha256(b"unknown")), &both).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::ACCEPTED, "{from}");
        assert!(header(&r, "location").starts_with("/v2/spec/dst/blobs/uploads/"));
    }
    assert_eq!(oci.snapshot("spec/dst").await, before);
}

/// end-12a `GET /v2/<name>/referrers/<digest>`, end-12b `?artifactType=`.
async fn end_12_referrers(backend: Backend) {
    let s = TestServer::start(backend).await;
    let oci = Oci { s: &s };
    let (img, subject, _) = oci.subject("spec/refs").await;
    let sbom_bytes: &[u8] = br#"{"spdxVersion":"SPDX-2.3"}"#;
    let sbom_layer = oci.push_blob("spec/refs", sbom_bytes).await;
    let sig_layer = oci.push_blob("spec/refs", b"signature bytes").await;
    let sbom = artifact_manifest("application/spdx+json", &descriptor("application/spdx+json", &sbom_layer, sbom_bytes.len()), &subject, "sbom");
    let sig = artifact_manifest("application/vnd.example.signature", &descriptor("application/octet-stream", &sig_layer, 15), &subject, "sig");
    let sig2 = artifact_manifest("application/vnd.example.signature", &descriptor("application/octet-stream", &sig_layer, 15), &subject, "second sig");

    // PUT by digest: OCI-Subject says the registry indexes the subject.
    let sbom_bytes = serde_json::to_vec(&sbom).unwrap();
    let r = oci.put_manifest("spec/refs", &sha256(&sbom_bytes), &sbom_bytes).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(header(&r, "oci-subject"), img.digest);
    let sbom_digest = sha256(&sbom_bytes);
    // A subject digest in an algorithm the registry does not index: stored, without OCI-Subject
    // (clients then fall back to the referrers tag). One that is no digest at all: refused.
    let other = format!("sha384:{}", "ab".repeat(48));
    let odd = artifact_manifest("application/vnd.example.signature", &descriptor("application/octet-stream", &sig_layer, 15), &descriptor(MANIFEST, &other, 1), "odd");
    let r = oci.put_manifest("spec/refs", "odd-subject", &serde_json::to_vec(&odd).unwrap()).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert!(r.headers().get("oci-subject").is_none());
    let before = oci.snapshot("spec/refs").await;
    let bad = artifact_manifest("application/vnd.example.signature", &descriptor("application/octet-stream", &sig_layer, 15), &descriptor(MANIFEST, "sha256:nothex", 1), "bad");
    let r = oci.put_manifest("spec/refs", "bad-subject", &serde_json::to_vec(&bad).unwrap()).await;
    assert_eq!(error(r).await, (StatusCode::BAD_REQUEST, "MANIFEST_INVALID".into()));
    assert_eq!(oci.snapshot("spec/refs").await, before);
    let (sig_digest, sig_bytes) = oci.push_manifest("spec/refs", &sha256(&serde_json::to_vec(&sig).unwrap()), &sig).await;
    let (sig2_digest, _) = oci.push_manifest("spec/refs", "second-sig", &sig2).await;
    let url = format!("/v2/spec/refs/referrers/{}", img.digest);

    // end-12a: an image index of every referrer, each with its artifactType and annotations.
    let r = oci.anon(Method::GET, &url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "content-type"), INDEX);
    assert!(r.headers().get("oci-filters-applied").is_none());
    assert!(r.headers().get("link").is_none());
    let index: Value = r.json().await.unwrap();
    assert_eq!(index["schemaVersion"], 2);
    assert_eq!(index["mediaType"], INDEX);
    let listed = index["manifests"].as_array().unwrap();
    let mut expected = [sbom_digest.clone(), sig_digest.clone(), sig2_digest.clone()];
    expected.sort();
    assert_eq!(listed.iter().map(|m| m["digest"].as_str().unwrap().to_string()).collect::<Vec<_>>(), expected);
    let sig_entry = listed.iter().find(|m| m["digest"] == sig_digest.as_str()).unwrap();
    assert_eq!(
        sig_entry,
        &json!({"mediaType": MANIFEST, "digest": sig_digest, "size": sig_bytes.len(), "artifactType": "application/vnd.example.signature", "annotations": {"org.example.note": "sig"}})
    );

    // end-12b: filtered by artifactType, saying so.
    let r = oci.anon(Method::GET, &format!("{url}?artifactType=application/spdx%2Bjson")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "oci-filters-applied"), "artifactType");
    let index: Value = r.json().await.unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 1);
    assert_eq!(index["manifests"][0]["digest"], sbom_digest.as_str());
    assert_eq!(index["manifests"][0]["artifactType"], "application/spdx+json");
    let r = oci.anon(Method::GET, &format!("{url}?artifactType=application/none")).send().await.unwrap();
    assert_eq!(header(&r, "oci-filters-applied"), "artifactType");
    assert_eq!(r.json::<Value>().await.unwrap()["manifests"], json!([]));

    // Pages: a Link to the next page while pages are full, the filter carried along.
    let r = oci.anon(Method::GET, &format!("{url}?artifactType=application/vnd.example.signature&n=1")).send().await.unwrap();
    let first = r.headers()["link"].to_str().unwrap().to_string();
    let page: Value = r.json().await.unwrap();
    assert_eq!(page["manifests"].as_array().unwrap().len(), 1);
    let last = page["manifests"][0]["digest"].as_str().unwrap();
    assert_eq!(first, format!("<{url}?artifactType=application%2Fvnd.example.signature&n=1&last={}>; rel=\"next\"", last.replace(':', "%3A")));
    let next = first.trim_start_matches('<').split('>').next().unwrap().to_string();
    let page2: Value = oci.anon(Method::GET, &next).send().await.unwrap().json().await.unwrap();
    assert_eq!(page2["manifests"].as_array().unwrap().len(), 1);
    assert_ne!(page2["manifests"][0]["digest"].as_str().unwrap(), last);
    assert_eq!(page2["manifests"][0]["artifactType"], "application/vnd.example.signature");

    // Empty (not 404): an image nobody refers to, a digest not in the repository.
    for d in [sbom_digest.clone(), sha256(b"not here")] {
        let r = oci.anon(Method::GET, &format!("/v2/spec/refs/referrers/{d}")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.json::<Value>().await.unwrap(), json!({"schemaVersion": 2, "mediaType": INDEX, "manifests": []}));
    }

    // A referrer whose subject is not (yet) in the repository is listed all the same.
    let absent = sha256(b"a manifest pushed later");
    let orphan = artifact_manifest("application/vnd.example.signature", &descriptor("application/octet-stream", &sig_layer, 15), &descriptor(MANIFEST, &absent, 100), "early");
    let (orphan_digest, _) = oci.push_manifest("spec/refs", "early", &orphan).await;
    let index: Value = oci.anon(Method::GET, &format!("/v2/spec/refs/referrers/{absent}")).send().await.unwrap().json().await.unwrap();
    assert_eq!(index["manifests"][0]["digest"], orphan_digest.as_str());

    // A deleted referrer is no longer listed.
    assert_eq!(oci.admin(Method::DELETE, &format!("/v2/spec/refs/manifests/{sig_digest}")).send().await.unwrap().status(), StatusCode::ACCEPTED);
    let index: Value = oci.anon(Method::GET, &url).send().await.unwrap().json().await.unwrap();
    let digests: Vec<&str> = index["manifests"].as_array().unwrap().iter().map(|m| m["digest"].as_str().unwrap()).collect();
    assert!(!digests.contains(&sig_digest.as_str()) && digests.len() == 2, "{digests:?}");

    // Errors: a bad digest, a bad filter or page, an unknown name, a private distribution.
    assert_eq!(error(oci.anon(Method::GET, "/v2/spec/refs/referrers/sha256:abc").send().await.unwrap()).await, (StatusCode::BAD_REQUEST, "DIGEST_INVALID".into()));
    assert_eq!(error(oci.anon(Method::GET, &format!("{url}?artifactType=a%00b")).send().await.unwrap()).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(error(oci.anon(Method::GET, &format!("{url}?artifactType={}", "a".repeat(300))).send().await.unwrap()).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(error(oci.anon(Method::GET, &format!("{url}?last=nodigest")).send().await.unwrap()).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(error(oci.anon(Method::GET, &format!("/v2/spec/none/referrers/{}", img.digest)).send().await.unwrap()).await, (StatusCode::NOT_FOUND, "NAME_UNKNOWN".into()));
    oci.make_private("spec/refs").await;
    let r = oci.anon(Method::GET, &url).send().await.unwrap();
    assert!(header(&r, "www-authenticate").contains("repository:spec/refs:pull"));
    assert_eq!(error(r).await, (StatusCode::UNAUTHORIZED, "UNAUTHORIZED".into()));
    assert_eq!(oci.admin(Method::GET, &url).send().await.unwrap().status(), StatusCode::OK);
}

/// A page of referrers holds at most 1000 descriptors, however many `?n=` asks for.
async fn referrers_pages_hold_at_most_1000(backend: Backend) {
    let s = TestServer::start(backend).await;
    let oci = Oci { s: &s };
    let (img, subject, layer) = oci.subject("spec/many").await;
    // A token: Basic credentials would cost a password hash per request.
    let token = oci.token("scope=repository:spec/many:pull,push").await;
    for i in 0..1001 {
        let bytes = serde_json::to_vec(&artifact_manifest("application/vnd.example.note", &layer, &subject, &i.to_string())).unwrap();
        let r = oci.bearer(Method::PUT, &format!("/v2/spec/many/manifests/{}", sha256(&bytes)), &token).header("content-type", MANIFEST).body(bytes).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    let url = format!("/v2/spec/many/referrers/{}", img.digest);
    let r = oci.anon(Method::GET, &format!("{url}?n=5000")).send().await.unwrap();
    let link = header(&r, "link");
    let page: Value = r.json().await.unwrap();
    let listed = page["manifests"].as_array().unwrap();
    assert_eq!(listed.len(), 1000);
    let last = listed[999]["digest"].as_str().unwrap();
    assert_eq!(link, format!("<{url}?n=1000&last={}>; rel=\"next\"", last.replace(':', "%3A")));
    let r = oci.anon(Method::GET, link.trim_start_matches('<').split('>').next().unwrap()).send().await.unwrap();
    assert!(r.headers().get("link").is_none());
    let rest: Value = r.json().await.unwrap();
    assert_eq!(rest["manifests"].as_array().unwrap().len(), 1);
    assert!(rest["manifests"][0]["digest"].as_str().unwrap() > last, "ordered by digest, after the last one");
}

/// sha512 wherever a digest is accepted: uploads (monolithic and chunked), blob pulls, mounts,
/// manifests by digest, referrers of a sha512 subject, blob deletes.
async fn sha512_everywhere(backend: Backend) {
    let s = TestServer::start(backend).await;
    let oci = Oci { s: &s };
    let (mono, chunked) = (random_blob(700), random_blob(900));
    let (mono_digest, chunked_digest) = (sha512(&mono), sha512(&chunked));

    let r = oci.push_blob_as("spec/512", &mono, &mono_digest).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(header(&r, "docker-content-digest"), mono_digest);
    assert_eq!(header(&r, "location"), format!("/v2/spec/512/blobs/{mono_digest}"));
    let before = oci.snapshot("spec/512").await;
    assert_eq!(error(oci.push_blob_as("spec/512", &mono[1..], &mono_digest).await).await, (StatusCode::BAD_REQUEST, "DIGEST_INVALID".into()));
    assert_eq!(oci.snapshot("spec/512").await, before, "a wrong sha512 stores nothing");

    let location = header(&oci.admin(Method::POST, "/v2/spec/512/blobs/uploads/").send().await.unwrap(), "location");
    assert_eq!(oci.admin(Method::PATCH, &location).body(chunked[..450].to_vec()).send().await.unwrap().status(), StatusCode::ACCEPTED);
    let r = oci.admin(Method::PUT, &format!("{location}?digest={chunked_digest}")).body(chunked[450..].to_vec()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(header(&r, "docker-content-digest"), chunked_digest);

    for (digest, bytes) in [(&mono_digest, &mono), (&chunked_digest, &chunked)] {
        let r = oci.anon(Method::GET, &format!("/v2/spec/512/blobs/{digest}")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(header(&r, "docker-content-digest"), *digest);
        assert_eq!(&r.bytes().await.unwrap().to_vec(), bytes);
        let head = oci.anon(Method::HEAD, &format!("/v2/spec/512/blobs/{digest}")).send().await.unwrap();
        assert_eq!(head.status(), StatusCode::OK);
        assert_eq!(header(&head, "content-length"), bytes.len().to_string());
    }

    // A manifest pushed by its sha512 digest is stored and served under it, bytes unchanged.
    let m =
        image_manifest(&descriptor("application/vnd.oci.image.config.v1+json", &mono_digest, 700), &[descriptor("application/vnd.oci.image.layer.v1.tar", &chunked_digest, 900)]);
    let bytes = serde_json::to_vec(&m).unwrap();
    let digest = sha512(&bytes);
    let before = oci.snapshot("spec/512").await;
    let r = oci.put_manifest("spec/512", &sha512(b"other bytes"), &bytes).await;
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    assert_eq!((status, body["errors"][0]["code"].as_str().unwrap()), (StatusCode::BAD_REQUEST, "DIGEST_INVALID"));
    let message = body["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains(&digest) && message.contains(&sha512(b"other bytes")), "names both digests: {message}");
    assert_eq!(oci.snapshot("spec/512").await, before);
    let r = oci.put_manifest("spec/512", &digest, &bytes).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(header(&r, "docker-content-digest"), digest);
    assert_eq!(header(&r, "location"), format!("/v2/spec/512/manifests/{digest}"));
    let r = oci.anon(Method::GET, &format!("/v2/spec/512/manifests/{digest}")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "docker-content-digest"), digest);
    assert_eq!(r.bytes().await.unwrap().to_vec(), bytes);
    let head = oci.anon(Method::HEAD, &format!("/v2/spec/512/manifests/{digest}")).send().await.unwrap();
    assert_eq!((head.status(), header(&head, "docker-content-digest")), (StatusCode::OK, digest.clone()));
    assert_eq!(
        oci.anon(Method::GET, &format!("/v2/spec/512/manifests/{}", sha256(&bytes))).send().await.unwrap().status(),
        StatusCode::NOT_FOUND,
        "stored under the digest it was pushed by"
    );

    // Referrers of a sha512 subject.
    oci.push_blob("spec/512", b"{}").await;
    let note = artifact_manifest("application/vnd.example.note", &descriptor("application/octet-stream", &mono_digest, 700), &descriptor(MANIFEST, &digest, bytes.len()), "n");
    let (note_digest, _) = oci.push_manifest("spec/512", "note", &note).await;
    let index: Value = oci.anon(Method::GET, &format!("/v2/spec/512/referrers/{digest}")).send().await.unwrap().json().await.unwrap();
    assert_eq!(index["manifests"][0]["digest"], note_digest.as_str());

    // Mount of a sha512 blob; then a sha512 delete (refused while used, then done).
    let r = oci.admin(Method::POST, &format!("/v2/spec/512b/blobs/uploads/?mount={mono_digest}&from=spec/512")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(header(&r, "docker-content-digest"), mono_digest);
    assert_eq!(oci.anon(Method::GET, &format!("/v2/spec/512b/blobs/{mono_digest}")).send().await.unwrap().bytes().await.unwrap().to_vec(), mono);
    assert_eq!(error(oci.admin(Method::DELETE, &format!("/v2/spec/512/blobs/{chunked_digest}")).send().await.unwrap()).await, (StatusCode::CONFLICT, "DENIED".into()));
    assert_eq!(oci.admin(Method::DELETE, &format!("/v2/spec/512/manifests/{digest}")).send().await.unwrap().status(), StatusCode::ACCEPTED);
    assert_eq!(oci.admin(Method::DELETE, &format!("/v2/spec/512/blobs/{chunked_digest}")).send().await.unwrap().status(), StatusCode::ACCEPTED);
    assert_eq!(oci.anon(Method::GET, &format!("/v2/spec/512/blobs/{chunked_digest}")).send().await.unwrap().status(), StatusCode::NOT_FOUND);
    support::assert_store_intact(&s).await;
}

/// Referrers whose annotations are megabytes: a page stops at about 4 MiB (at least one per
/// page) with a `Link`, and following the links lists every one exactly once.
async fn referrer_pages_are_bounded_in_bytes(backend: Backend) {
    let s = TestServer::start(backend).await;
    let oci = Oci { s: &s };
    let (img, subject, layer) = oci.subject("spec/big").await;
    let mut pushed = Vec::new();
    for i in 0..3 {
        let note = format!("{i}{}", "x".repeat(2 * 1024 * 1024 + 100));
        let bytes = serde_json::to_vec(&artifact_manifest("application/vnd.example.big", &layer, &subject, &note)).unwrap();
        let r = oci.put_manifest("spec/big", &sha256(&bytes), &bytes).await;
        assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().await.unwrap());
        pushed.push(sha256(&bytes));
    }
    pushed.sort();
    let mut url = format!("/v2/spec/big/referrers/{}", img.digest);
    let mut listed = Vec::new();
    for _ in 0..10 {
        let r = oci.anon(Method::GET, &url).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let link = r.headers().get("link").map(|l| l.to_str().unwrap().to_string());
        let body = r.bytes().await.unwrap();
        assert!(body.len() < 5 * 1024 * 1024, "a page of {} bytes", body.len());
        let page: Value = serde_json::from_slice(&body).unwrap();
        for m in page["manifests"].as_array().unwrap() {
            assert!(m["annotations"]["org.example.note"].as_str().unwrap().len() > 2 * 1024 * 1024, "annotations listed whole");
            listed.push(m["digest"].as_str().unwrap().to_string());
        }
        match link {
            Some(l) => url = l.trim_start_matches('<').split('>').next().unwrap().to_string(),
            None => break,
        }
    }
    assert_eq!(listed, pushed, "every referrer once, in digest order, over several pages");
}

/// What goes into a 401 challenge cannot be steered by the request: a name that is no
/// repository name is refused before it reaches the header, and the host only lends the realm
/// the characters of a host.
async fn challenges_quote_nothing_from_the_request(backend: Backend) {
    let s = TestServer::start(backend).await;
    let oci = Oci { s: &s };
    for name in ["a%22,realm=%22http:%2F%2Fevil", "a%0d%0aX-Evil:%201"] {
        let r = oci.anon(Method::POST, &format!("/v2/{name}/blobs/uploads/")).send().await.unwrap();
        assert!(r.headers().get("www-authenticate").is_none(), "{name}");
        assert_eq!(error(r).await, (StatusCode::BAD_REQUEST, "NAME_INVALID".into()), "{name}");
    }
    let r = oci.anon(Method::POST, "/v2/ok/blobs/uploads/").header("host", "evil\",scope=\"x").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let challenge = header(&r, "www-authenticate");
    assert_eq!(challenge.matches('"').count(), 6, "realm, service and scope, each quoted once: {challenge}");
    assert!(challenge.contains("realm=\"http://evilscopex/token\""), "{challenge}");
}

/// Which manifests are referrers: an OCI manifest's `subject` however deeply the rest of the
/// document nests, not a Docker schema 2 manifest's (that format has none); and a private
/// repository's referrers ask for credentials before anything else is checked.
async fn what_counts_as_a_referrer(backend: Backend) {
    let s = TestServer::start(backend).await;
    let oci = Oci { s: &s };
    let (img, subject, layer) = oci.subject("spec/which").await;
    let mut deep = artifact_manifest("application/vnd.example.deep", &layer, &subject, "deep");
    let mut nested = json!(1);
    for _ in 0..1000 {
        nested = json!([nested]);
    }
    deep["x-nested"] = nested;
    let deep_bytes = serde_json::to_vec(&deep).unwrap();
    let r = oci.put_manifest("spec/which", &sha256(&deep_bytes), &deep_bytes).await;
    assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().await.unwrap());
    assert_eq!(header(&r, "oci-subject"), img.digest);

    let mut docker = artifact_manifest("application/vnd.example.docker", &layer, &subject, "docker");
    docker["mediaType"] = json!("application/vnd.docker.distribution.manifest.v2+json");
    docker["config"] = descriptor("application/vnd.docker.container.image.v1+json", &img.config, 78);
    let docker_bytes = serde_json::to_vec(&docker).unwrap();
    let r = oci
        .admin(Method::PUT, &format!("/v2/spec/which/manifests/{}", sha256(&docker_bytes)))
        .header("content-type", "application/vnd.docker.distribution.manifest.v2+json")
        .body(docker_bytes)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().await.unwrap());
    assert!(r.headers().get("oci-subject").is_none(), "a Docker manifest refers to nothing");

    let r = oci.anon(Method::GET, &format!("/v2/spec/which/referrers/{}", img.digest)).send().await.unwrap();
    let index: Value = r.json().await.unwrap();
    let listed: Vec<&str> = index["manifests"].as_array().unwrap().iter().map(|m| m["digest"].as_str().unwrap()).collect();
    assert_eq!(listed, vec![sha256(&deep_bytes).as_str()]);

    oci.make_private("spec/which").await;
    for path in [format!("/v2/spec/which/referrers/{}", img.digest), "/v2/spec/which/referrers/sha256:nothex".into(), format!("/v2/spec/which/referrers/{}?last=bad", img.digest)] {
        let r = oci.anon(Method::GET, &path).send().await.unwrap();
        assert_eq!(error(r).await, (StatusCode::UNAUTHORIZED, "UNAUTHORIZED".into()), "{path}");
    }
}

/// A blob DELETE racing a manifest PUT that uses the blob: whichever lands first, the latest
/// version never holds a manifest without its blobs (the repository's row is the writers' turn).
async fn blob_delete_racing_a_manifest_put(backend: Backend) {
    let s = TestServer::start(backend).await;
    let oci = Oci { s: &s };
    let img = oci.image("spec/race", "v0").await;
    let token = oci.token("scope=repository:spec/race:pull,push").await;
    for round in 0..30 {
        let layer_bytes = random_blob(200 + round);
        let layer = oci.push_blob("spec/race", &layer_bytes).await;
        let m = image_manifest(&descriptor("application/vnd.oci.image.config.v1+json", &img.config, 78), &[descriptor("application/vnd.oci.image.layer.v1.tar", &layer, layer_bytes.len())]);
        let bytes = serde_json::to_vec(&m).unwrap();
        let put = oci.bearer(Method::PUT, &format!("/v2/spec/race/manifests/r{round}"), &token).header("content-type", MANIFEST).body(bytes.clone()).send();
        let delete = oci.bearer(Method::DELETE, &format!("/v2/spec/race/blobs/{layer}"), &token).send();
        let (put, delete) = tokio::join!(put, delete);
        let (put, delete) = (put.unwrap().status(), delete.unwrap().status());
        let manifest = oci.anon(Method::GET, &format!("/v2/spec/race/manifests/r{round}")).header("accept", MANIFEST).send().await.unwrap().status();
        let blob = oci.anon(Method::HEAD, &format!("/v2/spec/race/blobs/{layer}")).send().await.unwrap().status();
        match (put, delete) {
            // The manifest first: the delete is refused and the blob stays.
            (StatusCode::CREATED, StatusCode::CONFLICT) => assert_eq!((manifest, blob), (StatusCode::OK, StatusCode::OK), "round {round}"),
            // The delete first: the manifest names a blob the repository no longer has.
            (StatusCode::BAD_REQUEST, StatusCode::ACCEPTED) => assert_eq!((manifest, blob), (StatusCode::NOT_FOUND, StatusCode::NOT_FOUND), "round {round}"),
            other => panic!("round {round}: PUT and DELETE answered {other:?}; manifest {manifest}, blob {blob}"),
        }
    }
}

on_both_backends!(end_1_2_3_base_blobs_and_manifests, end_4_5_6_13_blob_uploads, end_10_blob_delete, end_11_mount_with_a_token, sha512_everywhere);
on_databases!(
    end_7_8_9_manifests_and_tags,
    end_12_referrers,
    referrers_pages_hold_at_most_1000,
    referrer_pages_are_bounded_in_bytes,
    challenges_quote_nothing_from_the_request,
    what_counts_as_a_referrer,
    blob_delete_racing_a_manifest_put,
);
