//! The push half of the distribution spec: blob uploads (monolithic, chunked, cross-repository
//! mount), manifest PUT and DELETE. Upload state is in the database and the staged bytes in the
//! store (`uploads/<id>/<part>`, one part per request: files on the filesystem, objects in a
//! bucket), so any replica can take any request of an upload.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde::Deserialize;

use super::access::{authorize, authorize_mount, Action};
use super::{valid_digest, valid_tag, RegistryError, API_VERSION};
use crate::api::validate;
use crate::app::AppState;
use crate::db::{is_unique_violation, write_transaction, DbConnection, DbError};
use crate::models::claim::WriteClaim;
use crate::models::content::{self, NewManifest};
use crate::models::distribution::{self, Distribution};
use crate::models::repository::{self, Repository};
use crate::models::referrer::ReferrerFacts;
use crate::models::{artifact, new_id, now, upload};
use crate::storage::{IngestError, StoredFile};
use crate::sync::{references, References};
use crate::upstream::{media_type_of, MAX_MANIFEST};

#[derive(Debug, Deserialize)]
pub struct UploadQuery {
    digest: Option<String>,
    mount: Option<String>,
    from: Option<String>,
}

/// The repository a push to `name` lands in; the first push to a new path creates the
/// repository and its distribution.
async fn push_target(state: &AppState, name: &str) -> Result<String, RegistryError> {
    validate::oci_name(name).map_err(RegistryError::NameInvalid)?;
    let n = name.to_string();
    let outcome = state
        .db
        .run(move |c| {
            write_transaction(c, |c| {
                match distribution::find_by_base_path(c, &n)? {
                    Some(d) if d.repository_version_id.is_some() => Ok(Err(pinned(&n))),
                    Some(Distribution { repository_id: Some(r), .. }) => Ok(Ok(r)),
                    Some(mut d) => {
                        let repo = create_repository(c, &n)?;
                        d.repository_id = Some(repo.clone());
                        distribution::update(c, &d)?;
                        Ok(Ok(repo))
                    }
                    None => {
                        let repo = create_repository(c, &n)?;
                        let d = Distribution {
                            repository_id: Some(repo.clone()),
                            description: Some("created by the first push".into()),
                            ..Distribution::new(&n, &n)
                        };
                        distribution::insert(c, &d)?;
                        Ok(Ok(repo))
                    }
                }
            })
        })
        .await;
    match outcome {
        Ok(Ok(repo)) => Ok(repo),
        Ok(Err(denied)) => Err(denied),
        // Another replica created it at the same moment: read what it made.
        Err(DbError::Query(e)) if is_unique_violation(&e) => {
            let n = name.to_string();
            state
                .db
                .run(move |c| Ok::<_, DbError>(distribution::find_by_base_path(c, &n)?.and_then(|d| d.repository_id)))
                .await?
                .ok_or_else(|| RegistryError::Internal("push target vanished".into()))
        }
        Err(e) => Err(e.into()),
    }
}

/// The repository a push to `name` would land in, without creating anything: `None` for a new
/// path, DENIED for a path serving a pinned version, NAME_INVALID for a bad name.
pub(super) async fn existing_target(state: &AppState, name: &str) -> Result<Option<String>, RegistryError> {
    validate::oci_name(name).map_err(RegistryError::NameInvalid)?;
    let n = name.to_string();
    let found = state.db.run(move |c| Ok::<_, DbError>(distribution::find_by_base_path(c, &n)?)).await?;
    match found {
        Some(d) if d.repository_version_id.is_some() => Err(pinned(name)),
        Some(d) => Ok(d.repository_id),
        None => Ok(None),
    }
}

fn pinned(name: &str) -> RegistryError {
    RegistryError::Denied(format!("{name} serves a pinned repository version; push to another path"))
}

fn create_repository(c: &mut DbConnection, name: &str) -> Result<String, DbError> {
    let taken = repository::find_by_name(c, name)?.is_some();
    let t = now();
    let id = new_id();
    let repo_name = if taken { format!("{name}-{}", &id[..8]) } else { name.to_string() };
    repository::insert(c, &Repository { id: id.clone(), name: repo_name, description: None, remote_id: None, latest_version_number: 0, pulp_created: t, pulp_last_updated: t, pulp_labels: "{}".into(), retain_repo_versions: None })?;
    Ok(id)
}

fn upload_response(resp: &mut actix_web::HttpResponseBuilder, name: &str, id: &str, size: i64) {
    resp.insert_header(API_VERSION)
        .insert_header((header::LOCATION, format!("/v2/{name}/blobs/uploads/{id}")))
        .insert_header(("Docker-Upload-UUID", id.to_string()))
        .insert_header((header::RANGE, format!("0-{}", (size - 1).max(0))));
}

fn blob_created(name: &str, digest: &str) -> HttpResponse {
    HttpResponse::Created()
        .insert_header(API_VERSION)
        .insert_header((header::LOCATION, format!("/v2/{name}/blobs/{digest}")))
        .insert_header(("Docker-Content-Digest", digest.to_string()))
        .finish()
}

/// Stores pushed bytes verified against `digest` (`sha256:` or `sha512:`), holding a claim on
/// their sha256 from before they reach the store until the caller releases it once the blob is
/// recorded: orphan cleanup then leaves the object alone. A sha256 digest is claimed up front; a
/// sha512 one names its sha256 only once the bytes are read, so they are hashed into a scratch
/// file first and claimed before they move into the store. The outer error is the claim's.
async fn store_claimed<S, E>(state: &AppState, body: S, digest: &str, size: Option<i64>) -> Result<Result<(StoredFile, WriteClaim), IngestError>, RegistryError>
where
    S: futures_util::Stream<Item = Result<bytes::Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    if let Some(hex) = digest.strip_prefix("sha256:") {
        let claim = WriteClaim::take(&state.db, hex).await?;
        return Ok(state.storage.ingest(body, digest, size).await.map(|stored| (stored, claim)));
    }
    let staged = match state.storage.stage_verified(body, digest, size).await {
        Ok(staged) => staged,
        Err(e) => return Ok(Err(e)),
    };
    let claim = WriteClaim::take(&state.db, &staged.sha256).await?;
    Ok(state.storage.commit_staged(staged).await.map(|stored| (stored, claim)).map_err(IngestError::Io))
}

/// Records stored bytes as a blob pushed to the repository.
async fn record_blob(state: &AppState, repository_id: &str, digest: &str, sha256_hex: &str, size: i64, key: &str) -> Result<(), RegistryError> {
    let (repo, digest, hex, key) = (repository_id.to_string(), digest.to_string(), sha256_hex.to_string(), key.to_string());
    state
        .db
        .run(move |c| {
            write_transaction(c, |c| {
                let a = artifact::ensure(c, &hex, size, &key)?;
                let blob_id = content::ensure_blob(c, &digest)?;
                content::ensure_blob_file(c, &blob_id, &digest, Some(&a.id), None)?;
                upload::add_pushed_blob(c, &repo, &blob_id)?;
                Ok::<_, DbError>(())
            })
        })
        .await?;
    Ok(())
}

/// `POST /v2/<name>/blobs/uploads/`: start an upload, take a whole blob (`?digest=`), or mount
/// one from another repository (`?mount=&from=`).
pub async fn start_upload(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    query: web::Query<UploadQuery>,
    body: web::Payload,
) -> Result<HttpResponse, RegistryError> {
    let name = path.into_inner();
    match &query.from {
        Some(from) if query.mount.is_some() => authorize_mount(&state, &req, &name, from).await?,
        _ => authorize(&state, &req, &name, Action::Push).await?,
    }
    existing_target(&state, &name).await?;

    if let (Some(digest), Some(from)) = (&query.mount, &query.from) {
        if valid_digest(digest) {
            // `served` asks for pull rights on a private source; a public one needs none.
            if let Ok((from_repo, number)) = super::served(&state, &req, from).await {
                let d = digest.clone();
                let source = state
                    .db
                    .run(move |c| match content::blob_in_version(c, &from_repo, number, &d)? {
                        Some(s) => Ok::<_, DbError>(Some(s)),
                        None => Ok(content::pushed_blob(c, &from_repo, &d)?),
                    })
                    .await?;
                if let Some(blob_id) = source.filter(|s| s.artifact.is_some()).map(|s| s.blob_id) {
                    let repo = push_target(&state, &name).await?;
                    state.db.run(move |c| upload::add_pushed_blob(c, &repo, &blob_id).map_err(DbError::from)).await?;
                    return Ok(blob_created(&name, digest));
                }
            }
        }
        // Not mountable: the spec says to start an ordinary upload instead.
    }

    if let Some(digest) = &query.digest {
        if !valid_digest(digest) {
            return Err(RegistryError::DigestInvalid(digest.clone()));
        }
        let (stored, claim) = store_claimed(&state, body, digest, None).await?.map_err(ingest_error)?;
        let repo = push_target(&state, &name).await?;
        record_blob(&state, &repo, digest, &stored.sha256, stored.size, &stored.key).await?;
        claim.release().await;
        return Ok(blob_created(&name, digest));
    }

    let n = name.clone();
    let up = state.db.run(move |c| upload::create(c, &n).map_err(DbError::from)).await?;
    state.storage.create_upload(&up.id).await.map_err(io)?;
    let mut resp = HttpResponse::Accepted();
    upload_response(&mut resp, &name, &up.id, 0);
    Ok(resp.finish())
}

fn io(e: std::io::Error) -> RegistryError {
    RegistryError::storage("blob upload", e)
}

fn ingest_error(e: IngestError) -> RegistryError {
    match e {
        IngestError::Digest { .. } | IngestError::Size { .. } => RegistryError::DigestInvalid(e.to_string()),
        IngestError::Source { reason, .. } => RegistryError::UploadInvalid(format!("the request body broke off: {reason}")),
        IngestError::Io(e) => io(e),
    }
}

/// The upload `id` of repository `name`, or BLOB_UPLOAD_UNKNOWN.
async fn find_upload(state: &AppState, req: &HttpRequest, name: &str, id: &str) -> Result<upload::Upload, RegistryError> {
    authorize(state, req, name, Action::Push).await?;
    if uuid::Uuid::try_parse(id).is_err() {
        return Err(RegistryError::UploadUnknown(id.to_string()));
    }
    let i = id.to_string();
    let up = state.db.run(move |c| upload::find(c, &i).map_err(DbError::from)).await?;
    match up {
        Some(u) if u.base_path == name && !u.committing => Ok(u),
        _ => Err(RegistryError::UploadUnknown(id.to_string())),
    }
}

/// Adds `body` to the upload as a part of its own: the bytes are staged in a file that only
/// this request writes, then the part's byte range is claimed in the database. If another
/// request moved the offset first (or a PUT is committing the upload), this part is dropped
/// and the client is told where the upload stands. Returns the new size.
async fn append(state: &AppState, req: &HttpRequest, up: &upload::Upload, body: web::Payload) -> Result<i64, RegistryError> {
    let declared = match req.headers().get(header::CONTENT_RANGE) {
        None => None,
        Some(v) => {
            let range = v.to_str().ok().and_then(super::range::parse_content_range).ok_or_else(|| {
                RegistryError::UploadInvalid(format!("invalid Content-Range {:?}: expected <start>-<end> with start <= end", String::from_utf8_lossy(v.as_bytes())))
            })?;
            if range.0 != up.size as u64 {
                return Err(RegistryError::UploadRange(up.size));
            }
            Some(range)
        }
    };
    let (key, size) = state.storage.stage_part(&up.id, body).await.map_err(|e| match e {
        IngestError::Io(e) if e.kind() == std::io::ErrorKind::NotFound => RegistryError::UploadUnknown(up.id.clone()),
        other => ingest_error(other),
    })?;
    if let Some((start, end)) = declared {
        if end - start + 1 != size {
            state.storage.remove_key(&key).await;
            return Err(RegistryError::UploadInvalid(format!("Content-Range {start}-{end} announces {} bytes, the body had {size}", end - start + 1)));
        }
    }
    if size == 0 {
        state.storage.remove_key(&key).await;
        return Ok(up.size);
    }
    let (id, from, k) = (up.id.clone(), up.size, key.clone());
    let claimed = state.db.run(move |c| upload::claim_part(c, &id, from, size as i64, &k).map_err(DbError::from)).await;
    match claimed {
        Ok(true) => Ok(up.size + size as i64),
        other => {
            state.storage.remove_key(&key).await;
            other?;
            // Someone else moved the upload on: say where it stands now, if it still exists.
            let i = up.id.clone();
            match state.db.run(move |c| upload::find(c, &i).map_err(DbError::from)).await? {
                Some(now) if !now.committing => Err(RegistryError::UploadRange(now.size)),
                _ => Err(RegistryError::UploadUnknown(up.id.clone())),
            }
        }
    }
}

/// `PATCH /v2/<name>/blobs/uploads/<id>`: one chunk, in order.
pub async fn append_chunk(state: web::Data<AppState>, req: HttpRequest, path: web::Path<(String, String)>, body: web::Payload) -> Result<HttpResponse, RegistryError> {
    let (name, id) = path.into_inner();
    let up = find_upload(&state, &req, &name, &id).await?;
    let size = append(&state, &req, &up, body).await?;
    let mut resp = HttpResponse::Accepted();
    upload_response(&mut resp, &name, &id, size);
    Ok(resp.finish())
}

/// `PUT /v2/<name>/blobs/uploads/<id>?digest=`: the last chunk (if any); then the upload is
/// claimed for this request alone, its parts are streamed through the digest check into a
/// scratch file, and that file is linked into the store. A wrong digest stores nothing and
/// ends the upload.
pub async fn finish_upload(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    query: web::Query<UploadQuery>,
    body: web::Payload,
) -> Result<HttpResponse, RegistryError> {
    let (name, id) = path.into_inner();
    let up = find_upload(&state, &req, &name, &id).await?;
    let digest = query.digest.clone().filter(|d| valid_digest(d)).ok_or_else(|| RegistryError::DigestInvalid(query.digest.clone().unwrap_or_else(|| "missing ?digest=".into())))?;
    let size = append(&state, &req, &up, body).await?;
    let i = id.clone();
    let parts = match state.db.run(move |c| upload::claim_commit(c, &i, size).map_err(DbError::from)).await? {
        Some(parts) => parts,
        // Another request finished, cancelled or extended the upload meanwhile.
        None => return Err(RegistryError::UploadUnknown(id)),
    };
    let stored = store_claimed(&state, state.storage.read_parts(parts), &digest, Some(size)).await;
    remove_upload(&state, &id).await?;
    let (stored, claim) = stored?.map_err(|e| match e {
        IngestError::Digest { actual, .. } => RegistryError::DigestInvalid(format!("the uploaded bytes hash to {actual}, not {digest}")),
        IngestError::Source { reason, .. } => RegistryError::Internal(format!("the staged upload is unreadable: {reason}")),
        other => ingest_error(other),
    })?;
    let repo = push_target(&state, &name).await?;
    record_blob(&state, &repo, &digest, &stored.sha256, stored.size, &stored.key).await?;
    claim.release().await;
    Ok(blob_created(&name, &digest))
}

/// `GET /v2/<name>/blobs/uploads/<id>`: how much has arrived.
pub async fn upload_status(state: web::Data<AppState>, req: HttpRequest, path: web::Path<(String, String)>) -> Result<HttpResponse, RegistryError> {
    let (name, id) = path.into_inner();
    let up = find_upload(&state, &req, &name, &id).await?;
    let mut resp = HttpResponse::NoContent();
    upload_response(&mut resp, &name, &id, up.size);
    Ok(resp.finish())
}

/// `DELETE /v2/<name>/blobs/uploads/<id>`: cancel, removing the staged bytes.
pub async fn cancel_upload(state: web::Data<AppState>, req: HttpRequest, path: web::Path<(String, String)>) -> Result<HttpResponse, RegistryError> {
    let (name, id) = path.into_inner();
    find_upload(&state, &req, &name, &id).await?;
    remove_upload(&state, &id).await?;
    Ok(HttpResponse::NoContent().insert_header(API_VERSION).finish())
}

pub async fn remove_upload(state: &AppState, id: &str) -> Result<(), RegistryError> {
    let i = id.to_string();
    state.db.run(move |c| upload::delete(c, &i).map_err(DbError::from)).await?;
    state.storage.remove_upload(id).await;
    Ok(())
}

/// Removes uploads untouched for longer than `max_age` and their staged bytes.
pub async fn reap_stale_uploads(state: &AppState, max_age: std::time::Duration) -> Result<usize, RegistryError> {
    let before = now() - chrono::Duration::from_std(max_age).unwrap_or(chrono::Duration::days(1));
    let stale = state.db.run(move |c| upload::stale(c, before).map_err(DbError::from)).await?;
    for id in &stale {
        remove_upload(state, id).await?;
    }
    Ok(stale.len())
}

/// A part file of a live upload that no part row names is the leftover of a request killed
/// between staging and claiming; older than this, nobody is about to claim it.
const UNCLAIMED_PART_GRACE: std::time::Duration = std::time::Duration::from_secs(600);

/// Removes staged bytes that no upload owns: directories of uploads that ended (a deleted
/// repository, a crash between the row's deletion and the files'), and unclaimed parts.
/// Returns the bytes freed.
pub async fn sweep_staged_uploads(state: &AppState) -> Result<u64, RegistryError> {
    let on_disk = state.storage.staged_uploads().await.map_err(io)?;
    let ids = on_disk.clone();
    let live: std::collections::HashSet<String> = state.db.run(move |c| upload::existing(c, &ids).map_err(DbError::from)).await?.into_iter().collect();
    let mut freed = 0;
    for id in on_disk {
        if !live.contains(&id) {
            freed += state.storage.remove_upload(&id).await;
            continue;
        }
        // Listed before the claims are read: a part that lands in between is then not in the
        // listing, rather than listed and not yet claimed.
        let parts = state.storage.staged_parts(&id).await.map_err(io)?;
        let i = id.clone();
        let claimed: std::collections::HashSet<String> = state.db.run(move |c| upload::part_keys(c, &i).map_err(DbError::from)).await?.into_iter().collect();
        for part in parts {
            let (key, age, size) = (part.key, part.age, part.size);
            if !claimed.contains(&key) && age > UNCLAIMED_PART_GRACE {
                freed += size;
                state.storage.remove_key(&key).await;
            }
        }
    }
    Ok(freed)
}

/// Reads a request body, refusing more than `limit` bytes.
async fn read_limited(mut body: web::Payload, limit: usize) -> Result<Vec<u8>, RegistryError> {
    let mut out = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| RegistryError::ManifestInvalid(format!("unreadable body: {e}")))?;
        if out.len() + chunk.len() > limit {
            return Err(RegistryError::SizeInvalid(format!("manifests are limited to {limit} bytes")));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// `PUT /v2/<name>/manifests/<tag|digest>`: validate, store the exact bytes, move the tag, and
/// make a new repository version.
pub async fn put_manifest(state: web::Data<AppState>, req: HttpRequest, path: web::Path<(String, String)>, body: web::Payload) -> Result<HttpResponse, RegistryError> {
    let (name, reference) = path.into_inner();
    authorize(&state, &req, &name, Action::Push).await?;
    let existing = existing_target(&state, &name).await?;
    let bytes = read_limited(body, MAX_MANIFEST).await?;
    let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(|v| v.split(';').next().unwrap_or("").trim().to_string());
    let media_type = media_type_of(&bytes, content_type.as_deref())
        .ok_or_else(|| RegistryError::ManifestInvalid("not a JSON Docker schema 2 or OCI manifest, list or index".into()))?;
    let refs = references(&media_type, &bytes).map_err(RegistryError::ManifestInvalid)?;
    let by_digest = reference.contains(':');
    if by_digest && !valid_digest(&reference) {
        return Err(RegistryError::DigestInvalid(reference));
    }
    if !by_digest && !valid_tag(&reference) {
        return Err(RegistryError::ManifestInvalid(format!("invalid tag '{reference}'")));
    }
    // Hashed with the algorithm the reference names; sha256 for a tag.
    let digest = crate::upstream::digest_with(&reference, &bytes).unwrap_or_else(|| crate::upstream::sha256_digest(&bytes));
    if by_digest && reference != digest {
        return Err(RegistryError::DigestInvalid(format!("the manifest's bytes hash to {digest}, not {reference}")));
    }
    let subject = ReferrerFacts::of(&media_type, &bytes).subject;
    // A new path holds nothing a manifest could reference; only one that references nothing
    // (an empty index) creates the path's repository.
    let repo = match (existing, &refs) {
        (Some(repo), _) => repo,
        (None, References::List(listed)) if listed.is_empty() => push_target(&state, &name).await?,
        (None, References::List(listed)) => return Err(RegistryError::ManifestBlobUnknown(format!("manifest {}", listed[0].digest))),
        (None, References::Image { config, .. }) => return Err(RegistryError::ManifestBlobUnknown(config.digest.clone())),
    };

    let (d, mt, tag) = (digest.clone(), media_type.clone(), (!by_digest).then(|| reference.clone()));
    // Two pushes racing for the next version number: the later one goes again on the new latest.
    super::in_write_transaction(&state, move |c| record_manifest(c, &repo, &d, &mt, bytes.clone(), &refs, tag.as_deref())).await?;
    let mut resp = HttpResponse::Created();
    resp.insert_header(API_VERSION)
        .insert_header((header::LOCATION, format!("/v2/{name}/manifests/{digest}")))
        .insert_header(("Docker-Content-Digest", digest.clone()));
    if let Some(s) = subject {
        resp.insert_header(("OCI-Subject", s));
    }
    Ok(resp.finish())
}

fn record_manifest(
    c: &mut DbConnection,
    repo: &str,
    digest: &str,
    media_type: &str,
    data: Vec<u8>,
    refs: &References,
    tag: Option<&str>,
) -> Result<Result<(), RegistryError>, DbError> {
    let latest = repository::latest_for_write(c, repo)?;
    let mut add = Vec::new();
    let new = match refs {
        References::Image { config, layers } => {
            let mut ids = Vec::new();
            for b in std::iter::once(config).chain(layers) {
                match content::usable_blob(c, repo, latest, &b.digest)? {
                    Some(id) => ids.push(id),
                    None => return Ok(Err(RegistryError::ManifestBlobUnknown(b.digest.clone()))),
                }
            }
            add.extend(ids.iter().cloned());
            NewManifest {
                digest: digest.into(),
                media_type: media_type.into(),
                data,
                config_blob_id: ids.first().cloned(),
                blob_ids: ids[1..].to_vec(),
                listed: vec![],
            }
        }
        References::List(listed) => {
            let mut entries = Vec::new();
            for l in listed {
                match content::manifest_in_version(c, repo, latest, &l.digest)? {
                    Some(id) => entries.push((id, l.architecture.clone(), l.os.clone())),
                    None => return Ok(Err(RegistryError::ManifestBlobUnknown(format!("manifest {}", l.digest)))),
                }
            }
            NewManifest { digest: digest.into(), media_type: media_type.into(), data, config_blob_id: None, blob_ids: vec![], listed: entries }
        }
    };
    let (manifest_id, _) = content::ensure_manifest(c, &new)?;
    add.push(manifest_id.clone());
    let mut remove = Vec::new();
    if let Some(t) = tag {
        let tag_id = content::ensure_tag(c, t, &manifest_id)?;
        remove = content::tags_named(c, repo, latest, t)?.into_iter().filter(|id| *id != tag_id).collect();
        add.push(tag_id);
    }
    repository::new_version(c, repo, &add, &remove)?;
    let blob_ids: Vec<String> = add.iter().filter(|id| **id != manifest_id).cloned().collect();
    upload::clear_pushed_blobs(c, repo, &blob_ids)?;
    Ok(Ok(()))
}
