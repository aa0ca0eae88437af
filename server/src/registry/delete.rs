//! Deletes under /v2: manifests and tags, and blobs. Each one makes a new repository version
//! without what it removes, as Pulp's remove does; a refused delete writes nothing. Deleting is
//! always on for whoever may push: there is no switch answering `UNSUPPORTED`.

use actix_web::{web, HttpRequest, HttpResponse};

use super::access::{authorize, Action};
use super::push::existing_target;
use super::{in_write_transaction, valid_digest, RegistryError, API_VERSION};
use crate::app::AppState;
use crate::db::{DbConnection, DbError};
use crate::models::{content, repository, upload};

/// `DELETE /v2/<name>/manifests/<digest|tag>`: a new version without the manifest (and the
/// tags pointing at it), or without the tag.
pub async fn delete_manifest(state: web::Data<AppState>, req: HttpRequest, path: web::Path<(String, String)>) -> Result<HttpResponse, RegistryError> {
    let (name, reference) = path.into_inner();
    authorize(&state, &req, &name, Action::Push).await?;
    let (repo, _) = super::served(&state, &req, &name).await?;
    let unknown = format!("{name}:{reference}");
    in_write_transaction(&state, move |c| {
        let latest = repository::latest_for_write(c, &repo)?;
        let remove = if reference.contains(':') {
            match content::manifest_in_version(c, &repo, latest, &reference)? {
                Some(m) => {
                    let mut ids = content::tags_of_manifest(c, &repo, latest, &m)?;
                    ids.push(m);
                    ids
                }
                None => vec![],
            }
        } else {
            content::tags_named(c, &repo, latest, &reference)?
        };
        if remove.is_empty() {
            return Ok(Err(RegistryError::ManifestUnknown(unknown.clone())));
        }
        repository::new_version(c, &repo, &[], &remove)?;
        Ok(Ok(()))
    })
    .await?;
    Ok(HttpResponse::Accepted().insert_header(API_VERSION).finish())
}

/// `DELETE /v2/<name>/blobs/<digest>`: a new version without the blob, and it is no longer
/// pushed ahead to the repository either. A blob that a manifest of the latest version uses is
/// refused (409 DENIED, naming the manifest): that manifest would be left broken.
pub async fn delete_blob(state: web::Data<AppState>, req: HttpRequest, path: web::Path<(String, String)>) -> Result<HttpResponse, RegistryError> {
    let (name, digest) = path.into_inner();
    authorize(&state, &req, &name, Action::Push).await?;
    if !valid_digest(&digest) {
        return Err(RegistryError::DigestInvalid(digest));
    }
    let repo = existing_target(&state, &name).await?.ok_or_else(|| RegistryError::NameUnknown(name.clone()))?;
    in_write_transaction(&state, move |c| remove_blob(c, &repo, &digest)).await?;
    Ok(HttpResponse::Accepted().insert_header(API_VERSION).finish())
}

fn remove_blob(c: &mut DbConnection, repo: &str, digest: &str) -> Result<Result<(), RegistryError>, DbError> {
    let unknown = || Ok(Err(RegistryError::BlobUnknown(digest.to_string())));
    let Some(blob_id) = content::blob_id(c, digest)? else { return unknown() };
    let latest = repository::latest_for_write(c, repo)?;
    let in_latest = repository::holds(c, repo, latest, &blob_id)?;
    if in_latest {
        if let Some(m) = content::manifest_using_blob(c, repo, latest, &blob_id)? {
            return Ok(Err(RegistryError::StillReferenced(format!("blob {digest} is referenced by manifest {m}; delete the manifest first"))));
        }
        repository::new_version(c, repo, &[], std::slice::from_ref(&blob_id))?;
    }
    let was_pushed = upload::remove_pushed_blob(c, repo, &blob_id)?;
    if !in_latest && !was_pushed {
        return unknown();
    }
    Ok(Ok(()))
}
