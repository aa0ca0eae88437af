//! The content app: the read side of the OCI distribution spec under `/v2/`.
//! A distribution's base path names the repository; it serves its repository's latest version
//! (or its pinned version), and only content in that version.

pub mod access;
mod delete;
mod error;
mod push;
mod referrers;

pub use push::{reap_stale_uploads, sweep_staged_uploads};
pub(crate) mod range;

use actix_web::body::SizedStream;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde::Deserialize;

pub use error::RegistryError;
use range::ByteRange;

use crate::app::AppState;
use crate::db::{is_unique_violation, write_transaction, DbConnection, DbError};
use crate::models::{content, distribution, remote};

pub(crate) const API_VERSION: (&str, &str) = ("Docker-Distribution-API-Version", "registry/2.0");
const MAX_PAGE: i64 = 10_000;
/// The size of the pieces a stored blob is sent in: what a client that stops reading holds
/// (B8), against throughput (B1: 128 KiB cost a fifth of it; 1 MiB gained nothing over 256 KiB).
const SEND_SLICE: usize = 256 * 1024;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/token", web::get().to(access::token));
    cfg.service(
        web::scope("/v2")
            // Malformed paths and queries get the registry's JSON errors, not the REST API's.
            .app_data(web::QueryConfig::default().error_handler(|e, _| RegistryError::BadQuery(format!("invalid query: {e}")).into()))
            .app_data(web::PathConfig::default().error_handler(|e, _| RegistryError::BadQuery(format!("invalid path: {e}")).into()))
            .route("", web::get().to(base))
            .route("/", web::get().to(base))
            .route("/", web::head().to(base))
            .route("/_catalog", web::get().to(catalog))
            .route("/{name:.+}/blobs/uploads/", web::post().to(push::start_upload))
            .route("/{name:.+}/blobs/uploads/{id}", web::patch().to(push::append_chunk))
            .route("/{name:.+}/blobs/uploads/{id}", web::put().to(push::finish_upload))
            .route("/{name:.+}/blobs/uploads/{id}", web::get().to(push::upload_status))
            .route("/{name:.+}/blobs/uploads/{id}", web::delete().to(push::cancel_upload))
            .route("/{name:.+}/manifests/{reference}", web::put().to(push::put_manifest))
            .route("/{name:.+}/manifests/{reference}", web::delete().to(delete::delete_manifest))
            .route("/{name:.+}/manifests/{reference}", web::get().to(manifest))
            .route("/{name:.+}/manifests/{reference}", web::head().to(manifest))
            .route("/{name:.+}/blobs/{digest}", web::get().to(blob))
            .route("/{name:.+}/blobs/{digest}", web::head().to(blob))
            // After the upload routes: `<name>/blobs/uploads/<id>` is an upload, not a blob.
            .route("/{name:.+}/blobs/{digest}", web::delete().to(delete::delete_blob))
            .route("/{name:.+}/referrers/{digest}", web::get().to(referrers::list))
            .route("/{name:.+}/tags/list", web::get().to(tags))
            .default_service(web::to(|| async {
                Err::<HttpResponse, _>(RegistryError::NameUnknown("no such registry endpoint".into()))
            })),
    );
}

async fn base(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, RegistryError> {
    access::check_base(&state, &req).await?;
    Ok(HttpResponse::Ok().insert_header(API_VERSION).json(serde_json::json!({})))
}

/// The (repository id, version number) served at `name`, checking access to private ones.
pub(crate) async fn served(state: &AppState, req: &HttpRequest, name: &str) -> Result<(String, i64), RegistryError> {
    crate::api::validate::oci_name(name).map_err(RegistryError::NameInvalid)?;
    let n = name.to_string();
    let found = state.db.run(move |c| served_in(c, &n)).await?;
    authorized_version(state, req, name, found).await
}

/// The blob in the served version, or pushed ahead of its manifest (readable by the pusher
/// checking for it).
fn blob_to_serve(c: &mut DbConnection, repo: &str, number: i64, digest: &str) -> Result<Option<content::BlobSource>, DbError> {
    match content::blob_in_version(c, repo, number, digest)? {
        Some(s) => Ok(Some(s)),
        None => Ok(content::pushed_blob(c, repo, digest)?),
    }
}

/// A distribution found by name: whether it is private, and the repository version it serves.
type Served = Option<(bool, Option<(String, i64)>)>;

/// The distribution at `name`, for a handler that looks up more in the same trip to the database.
fn served_in(c: &mut DbConnection, name: &str) -> Result<Served, DbError> {
    let Some(d) = distribution::find_by_base_path(c, name)? else { return Ok(None) };
    let version = distribution::served_version(c, &d)?;
    Ok(Some((distribution::is_private(c, &d)?, version)))
}

/// `served_in`'s answer, once the client may pull from a private distribution.
async fn authorized_version(state: &AppState, req: &HttpRequest, name: &str, found: Served) -> Result<(String, i64), RegistryError> {
    let Some((private, version)) = found else {
        return Err(RegistryError::NameUnknown(name.to_string()));
    };
    if private {
        access::authorize(state, req, name, access::Action::Pull).await?;
    }
    version.ok_or_else(|| RegistryError::NameUnknown(format!("{name} serves no repository yet")))
}

/// Runs `change` in a write transaction, again (up to 5 times) when another writer took the
/// next version number first.
pub(crate) async fn in_write_transaction<F>(state: &AppState, change: F) -> Result<(), RegistryError>
where
    F: Fn(&mut DbConnection) -> Result<Result<(), RegistryError>, DbError> + Clone + Send + 'static,
{
    let mut attempt = 0;
    loop {
        let change = change.clone();
        match state.db.run(move |c| write_transaction(c, |c| change(c))).await {
            Ok(outcome) => return outcome,
            Err(DbError::Query(e)) if is_unique_violation(&e) && attempt < 5 => attempt += 1,
            Err(e) => return Err(e.into()),
        }
    }
}

pub fn valid_digest(d: &str) -> bool {
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    match d.split_once(':') {
        Some(("sha256", h)) => hex(h, 64),
        Some(("sha512", h)) => hex(h, 128),
        _ => false,
    }
}

/// The distribution spec's tag grammar: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
pub fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

async fn manifest(state: web::Data<AppState>, req: HttpRequest, path: web::Path<(String, String)>) -> Result<HttpResponse, RegistryError> {
    let (name, reference) = path.into_inner();
    crate::api::validate::oci_name(&name).map_err(RegistryError::NameInvalid)?;
    let by_digest = reference.contains(':');
    if by_digest && !valid_digest(&reference) {
        return Err(RegistryError::DigestInvalid(reference));
    }
    if !by_digest && !valid_tag(&reference) {
        return Err(RegistryError::TagInvalid(reference));
    }
    // One trip to the database for the distribution and the manifest: this is the hot path.
    let (n, r) = (name.clone(), reference.clone());
    let (found, private, cache) = state
        .db
        .run(move |c| {
            let Some(l) = distribution::lookup_manifest(c, &n, &r, by_digest)?.filter(|l| l.distribution.kind != remote::PULL_THROUGH) else {
                return Ok::<_, DbError>((None, false, None));
            };
            let Some((repo, _)) = &l.version else { return Ok((None, l.private, None)) };
            // Made by a pull-through distribution (and serving its latest version): kept fresh.
            let cache = crate::pull_through::Cache::of(c, &l.distribution, repo, (!by_digest).then_some(r.as_str()))?;
            Ok((Some(l.manifest), l.private, cache))
        })
        .await?;
    let Some(found) = found else {
        // No distribution: one a pull-through distribution makes for this name, else the error
        // `served` gives.
        if let Some(m) = crate::pull_through::first_pull(&state, &req, &name, &reference).await? {
            crate::ondemand::prefetch::after_manifest_get(&state, req.method() == actix_web::http::Method::GET, &name, &m);
            return Ok(manifest_response(m));
        }
        served(&state, &req, &name).await?;
        return Err(RegistryError::NameUnknown(name));
    };
    if private {
        access::authorize(&state, &req, &name, access::Action::Pull).await?;
    }
    let found = match cache {
        Some(cache) if !cache.fresh(&found, by_digest) => {
            crate::pull_through::refresh(&state, &cache, &reference, found).await?
        }
        _ => found.ok_or_else(|| RegistryError::ManifestUnknown(format!("{name}:{reference}")))?,
    };
    crate::ondemand::prefetch::after_manifest_get(&state, req.method() == actix_web::http::Method::GET, &name, &found);
    Ok(manifest_response(found))
}

fn manifest_response(found: content::ServedManifest) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(API_VERSION)
        .insert_header(("Docker-Content-Digest", found.digest.clone()))
        .insert_header((header::ETAG, format!("\"{}\"", found.digest)))
        .content_type(found.media_type)
        .body(found.data)
}

async fn blob(state: web::Data<AppState>, req: HttpRequest, path: web::Path<(String, String)>) -> Result<HttpResponse, RegistryError> {
    let (name, digest) = path.into_inner();
    if !valid_digest(&digest) {
        return Err(RegistryError::DigestInvalid(digest));
    }
    crate::api::validate::oci_name(&name).map_err(RegistryError::NameInvalid)?;
    // One trip to the database for a public distribution and the blob: a cold GET's first byte
    // waits on every trip before the upstream is asked. A private one's blob is looked up only
    // once the client may pull (no work, and no timing, for a client that may not).
    let (n, d) = (name.clone(), digest.clone());
    let (found, source) = state
        .db
        .run(move |c| {
            let found = served_in(c, &n)?;
            let source = match &found {
                Some((false, Some((repo, number)))) => blob_to_serve(c, repo, *number, &d)?,
                _ => None,
            };
            Ok::<_, DbError>((found, source))
        })
        .await?;
    let private = matches!(found, Some((true, _)));
    let (repo, number) = authorized_version(&state, &req, &name, found).await?;
    let source = match source {
        None if private => {
            let d = digest.clone();
            state.db.run(move |c| blob_to_serve(c, &repo, number, &d)).await?
        }
        source => source,
    };
    let source = source.ok_or_else(|| RegistryError::BlobUnknown(digest.clone()))?;

    let is_get = req.method() == actix_web::http::Method::GET;
    if let Some(artifact) = &source.artifact {
        if is_get {
            state.metrics.blob_cache_hits.inc();
        }
        return serve_stored(&state, &req, &digest, artifact).await;
    }
    let expected_size = source.remote.as_ref().and_then(|(_, _, size)| *size).and_then(|s| u64::try_from(s).ok());
    if req.method() == actix_web::http::Method::HEAD {
        // Answered from what the sync recorded; no download for a HEAD. The length is the body's
        // (never sent for a HEAD), so it is declared through an empty sized body.
        let mut resp = blob_headers(HttpResponse::Ok(), &digest);
        return Ok(match expected_size {
            Some(size) => head_with_length(resp, size),
            None => resp.finish(),
        });
    }
    let opened = state.fetcher.open(&state, source).await;
    // Recorded while this request looked: served from the store after all.
    let found = if matches!(opened, Ok(crate::ondemand::Opened::Stored(_))) { &state.metrics.blob_cache_hits } else { &state.metrics.blob_cache_misses };
    found.inc();
    match opened? {
        crate::ondemand::Opened::Stored(artifact) => serve_stored(&state, &req, &digest, &artifact).await,
        crate::ondemand::Opened::Reading(reader) => reading_response(&req, &digest, reader).await,
    }
}

/// A download in flight as the response to `req`: a single `Range` → 206 with those bytes as
/// they arrive, otherwise the whole blob. A failed download cuts the body before its end.
pub(crate) async fn reading_response(req: &HttpRequest, digest: &str, mut reader: crate::ondemand::Reader) -> Result<HttpResponse, RegistryError> {
    if reader.size == Some(0) {
        // An empty body is complete as soon as its headers are sent: answer only once the
        // download is verified, so a remote that declared 0 bytes for a blob cannot pass.
        reader.verdict().await?;
    }
    match (reader.size, ByteRange::parse(req.headers().get(header::RANGE), reader.size)) {
        (_, Err(size)) => Err(RegistryError::RangeNotSatisfiable(size)),
        (Some(size), Ok(Some(range))) => {
            let stream = reader.stream(range.start, Some(range.end + 1));
            Ok(blob_headers(HttpResponse::PartialContent(), digest)
                .insert_header((header::CONTENT_RANGE, format!("bytes {}-{}/{size}", range.start, range.end)))
                .body(SizedStream::new(range.len(), stream)))
        }
        (Some(size), Ok(None)) => Ok(blob_headers(HttpResponse::Ok(), digest).body(SizedStream::new(size, reader.stream(0, None)))),
        (None, _) => Ok(blob_headers(HttpResponse::Ok(), digest).streaming(reader.stream(0, None))),
    }
}

fn head_with_length(mut resp: actix_web::HttpResponseBuilder, size: u64) -> HttpResponse {
    resp.body(SizedStream::new(size, futures_util::stream::empty::<Result<bytes::Bytes, std::io::Error>>()))
}

fn blob_headers(mut resp: actix_web::HttpResponseBuilder, digest: &str) -> actix_web::HttpResponseBuilder {
    resp.insert_header(API_VERSION)
        .insert_header(("Docker-Content-Digest", digest.to_string()))
        .insert_header((header::ETAG, format!("\"{digest}\"")))
        .insert_header((header::ACCEPT_RANGES, "bytes"))
        .content_type("application/octet-stream");
    resp
}

/// A stored blob, streamed from the store (a single `Range` → 206 with just those bytes asked of
/// the store, unsatisfiable → 416), or with `--redirect-blobs` a 307 to a presigned URL. The
/// size is the artifact row's: HEAD never touches the bytes.
async fn serve_stored(state: &AppState, req: &HttpRequest, digest: &str, artifact: &crate::models::artifact::Artifact) -> Result<HttpResponse, RegistryError> {
    let size = artifact.size as u64;
    let unreadable = |e| RegistryError::storage(&format!("stored blob {digest}"), e);
    if req.method() == actix_web::http::Method::GET && state.config.storage.redirect_blobs {
        let expires = std::time::Duration::from_secs(state.config.storage.redirect_expiry);
        if let Some(url) = state.storage.presign(&artifact.storage_key, expires).await.map_err(unreadable)? {
            return Ok(blob_headers(HttpResponse::TemporaryRedirect(), digest).insert_header((header::LOCATION, url)).finish());
        }
    }
    let (mut resp, start, end) = match ByteRange::parse(req.headers().get(header::RANGE), Some(size)) {
        Err(size) => return Err(RegistryError::RangeNotSatisfiable(size)),
        Ok(Some(r)) => {
            let mut resp = blob_headers(HttpResponse::PartialContent(), digest);
            resp.insert_header((header::CONTENT_RANGE, format!("bytes {}-{}/{size}", r.start, r.end)));
            (resp, r.start, r.end + 1)
        }
        Ok(None) => (blob_headers(HttpResponse::Ok(), digest), 0, size),
    };
    if req.method() == actix_web::http::Method::HEAD {
        return Ok(head_with_length(resp, end - start));
    }
    let stream = state.storage.read(&artifact.storage_key, Some(start..end)).await.map_err(unreadable)?;
    // Handed out in small slices: the server copies a chunk whole into the connection's write
    // buffer, so a client that stops reading holds one slice, not a whole window.
    let pieces = stream.flat_map(|piece| {
        let slices: Vec<std::io::Result<bytes::Bytes>> = match piece {
            Ok(w) => (0..w.len()).step_by(SEND_SLICE).map(|i| Ok(w.slice(i..(i + SEND_SLICE).min(w.len())))).collect(),
            Err(e) => vec![Err(e)],
        };
        futures_util::stream::iter(slices)
    });
    Ok(resp.body(SizedStream::new(end - start, pieces)))
}

#[derive(Debug, Deserialize)]
struct PageQuery {
    n: Option<i64>,
    last: Option<String>,
}

impl PageQuery {
    /// `n` clamped to a page, `last` checked: a NUL byte is no tag or name.
    fn checked(&self) -> Result<(i64, Option<String>), RegistryError> {
        if self.last.as_deref().is_some_and(|l| l.contains('\0') || l.len() > 4096) {
            return Err(RegistryError::BadQuery("invalid ?last=: it holds a NUL byte or is longer than 4096 bytes".into()));
        }
        Ok((self.n.unwrap_or(MAX_PAGE).clamp(0, MAX_PAGE), self.last.clone()))
    }
}

/// `Link: </v2/...?n=N&last=X>; rel="next"` when a page came back full; `extra` query pairs
/// (a filter) are carried to the next page.
fn next_link(path: &str, n: i64, items: &[String]) -> Option<String> {
    let last = items.last()?;
    (items.len() as i64 == n).then(|| page_link(path, n, last, &[]))
}

/// `<path?extra&n=N&last=X>; rel="next"`.
fn page_link(path: &str, n: i64, last: &str, extra: &[(&str, &str)]) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    q.extend_pairs(extra).append_pair("n", &n.to_string()).append_pair("last", last);
    format!("<{path}?{}>; rel=\"next\"", q.finish())
}

async fn tags(state: web::Data<AppState>, req: HttpRequest, path: web::Path<String>, q: web::Query<PageQuery>) -> Result<HttpResponse, RegistryError> {
    let name = path.into_inner();
    let (n, last) = q.checked()?;
    let (repo, number) = served(&state, &req, &name).await?;
    let names = state
        .db
        .run(move |c| content::tag_names(c, &repo, number, last.as_deref(), n).map_err(DbError::from))
        .await?;
    let mut resp = HttpResponse::Ok();
    resp.insert_header(API_VERSION);
    if let Some(link) = next_link(&format!("/v2/{name}/tags/list"), n, &names) {
        resp.insert_header((header::LINK, link));
    }
    Ok(resp.json(serde_json::json!({"name": name, "tags": names})))
}

/// `GET /v2/_catalog`: every public base path; private ones only for the admin.
async fn catalog(state: web::Data<AppState>, req: HttpRequest, q: web::Query<PageQuery>) -> Result<HttpResponse, RegistryError> {
    let (n, last) = q.checked()?;
    let with_private = access::is_admin(&state, &req).await?;
    let names = state.db.run(move |c| distribution::base_paths(c, last.as_deref(), n, with_private).map_err(DbError::from)).await?;
    let mut resp = HttpResponse::Ok();
    resp.insert_header(API_VERSION);
    if let Some(link) = next_link("/v2/_catalog", n, &names) {
        resp.insert_header((header::LINK, link));
    }
    Ok(resp.json(serde_json::json!({"repositories": names})))
}
