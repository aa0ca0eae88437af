//! pulp_container's repository actions: `tag/`, `untag/`, `add/`, `remove/`, `copy_tags/` and
//! `copy_manifests/`. Each checks its request here and leaves the change to a task
//! (`tasks::versions`) that makes one new version from the latest.

use actix_web::{post, web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::body::{self, double_option};
use super::repositories::find_or_404;
use super::responses::{BadRequest, NotFound, Unauthorized};
use super::validate::Checks;
use super::{accepted, hrefs, AsyncOperationResponse};
use crate::app::AppState;
use crate::db::DbError;
use crate::error::ApiError;
use crate::models::content;
use crate::models::repository::{self, Repository};
use crate::tasks::versions::{Change, ChangeArgs};
use crate::upstream;

/// Pulp's message for a tag outside the grammar (the distribution spec's, which also bounds the
/// length to 128).
const INVALID_TAG: &str = "The provided tag is not valid. A tag may contain lowercase and uppercase ASCII alphabetic \
     characters, digits, underscores, periods, and dashes. A tag must not start with a period or a dash, and may be at \
     most 128 characters long.";

/// Tag a manifest of the latest version.
#[derive(Debug, Deserialize, ToSchema)]
pub struct TagImage {
    /// A tag name.
    #[schema(value_type = String, required = true, pattern = r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")]
    pub tag: Option<String>,
    /// The digest of a manifest in the repository's latest version (`sha256:...`).
    #[schema(value_type = String, required = true)]
    pub digest: Option<String>,
}

/// Remove a tag from the latest version.
#[derive(Debug, Deserialize, ToSchema)]
pub struct UnTagImage {
    /// A tag name.
    #[schema(value_type = String, required = true, pattern = r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")]
    pub tag: Option<String>,
}

/// Content to add or remove, with what it references.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RecursiveManage {
    /// Content hrefs (tags, manifests, blobs). A tag brings its manifest, a list its manifests,
    /// a manifest its blobs; a removal keeps what the remaining content still needs. `["*"]`
    /// removes everything.
    pub content_units: Option<Vec<String>>,
}

/// Copy tags, with their manifests and blobs, from a repository version.
#[derive(Debug, Deserialize, ToSchema)]
pub struct TagCopy {
    /// The repository version to copy from (an href).
    pub source_repository_version: Option<String>,
    /// A repository whose latest version to copy from, instead of `source_repository_version`.
    pub source_repository: Option<String>,
    /// Only the tags with these names (default: every tag).
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Vec<String>, required = false)]
    pub names: Option<Option<Vec<String>>>,
}

/// Copy manifests, with their blobs (and a list's manifests), but no tags, from a repository
/// version.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ManifestCopy {
    /// The repository version to copy from (an href).
    pub source_repository_version: Option<String>,
    /// A repository whose latest version to copy from, instead of `source_repository_version`.
    pub source_repository: Option<String>,
    /// Only the manifests with these digests (default: every manifest).
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Vec<String>, required = false)]
    pub digests: Option<Option<Vec<String>>>,
    /// Only the manifests of these media types (default: every type).
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Vec<ManifestMediaType>, required = false)]
    pub media_types: Option<Option<Vec<String>>>,
}

/// The media types a manifest can have (Pulp's choices).
#[derive(Debug, Serialize, ToSchema)]
pub enum ManifestMediaType {
    #[serde(rename = "application/vnd.docker.distribution.manifest.v1+json")]
    DockerV1,
    #[serde(rename = "application/vnd.docker.distribution.manifest.v1+prettyjws")]
    DockerV1Signed,
    #[serde(rename = "application/vnd.docker.distribution.manifest.v2+json")]
    DockerV2,
    #[serde(rename = "application/vnd.docker.distribution.manifest.list.v2+json")]
    DockerList,
    #[serde(rename = "application/vnd.oci.image.manifest.v1+json")]
    OciManifest,
    #[serde(rename = "application/vnd.oci.image.index.v1+json")]
    OciIndex,
}

const MEDIA_TYPES: [&str; 6] = [
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
    upstream::DOCKER_MANIFEST,
    upstream::DOCKER_MANIFEST_LIST,
    upstream::OCI_MANIFEST,
    upstream::OCI_INDEX,
];

/// How Pulp names a repository version in messages.
fn version_name(repo: &Repository) -> String {
    format!("<Repository: {}; Version: {}>", repo.name, repo.latest_version_number)
}

/// The tag, checked against the grammar; notes a missing or invalid one.
fn checked_tag(checks: &mut Checks, tag: Option<String>) -> Option<String> {
    checks.required("tag", &tag);
    let tag = tag?;
    if crate::registry::valid_tag(&tag) {
        Some(tag)
    } else {
        checks.add("tag", INVALID_TAG);
        None
    }
}

/// A list field sent as `null`, which Pulp refuses.
fn not_null<T>(checks: &mut Checks, field: &str, value: Option<Option<T>>) -> Option<T> {
    match value {
        Some(None) => {
            checks.add(field, "This field may not be null.");
            None
        }
        other => other.flatten(),
    }
}

/// The content ids of `units` (content hrefs); any href that names no unit of its type is a 400
/// on `field`.
pub(super) async fn resolve_content(state: &AppState, field: &str, units: &[String]) -> Result<Vec<String>, ApiError> {
    let mut checks = Checks::default();
    let mut wanted: Vec<(String, &'static str, &String)> = Vec::new();
    for href in units {
        let typed = hrefs::parse_tag(href)
            .map(|id| (id, content::TAG))
            .or_else(|| hrefs::parse_manifest(href).map(|id| (id, content::MANIFEST)))
            .or_else(|| hrefs::parse_blob(href).map(|id| (id, content::BLOB)));
        match typed {
            Some((id, pulp_type)) => wanted.push((id, pulp_type, href)),
            None => checks.add(field, format!("Invalid hyperlink - No URL match: {href}")),
        }
    }
    let ids: Vec<String> = wanted.iter().map(|(id, _, _)| id.clone()).collect();
    let types = state.db.run(move |c| content::types_of(c, &ids).map_err(DbError::from)).await?;
    for (id, pulp_type, href) in &wanted {
        if types.get(id).map(String::as_str) != Some(*pulp_type) {
            checks.add(field, format!("Invalid hyperlink - Object does not exist: {href}"));
        }
    }
    checks.finish()?;
    let mut seen = std::collections::HashSet::new();
    Ok(wanted.into_iter().map(|(id, _, _)| id).filter(|id| seen.insert(id.clone())).collect())
}

/// `(repository id, number)` of the version to copy from: `source_repository_version`, or the
/// latest version of `source_repository`.
async fn copy_source(state: &AppState, version: Option<String>, repository: Option<String>) -> Result<(String, i64), ApiError> {
    const FIELD: &str = "source_repository_version";
    match (version, repository) {
        (Some(href), None) => {
            let found = match hrefs::parse_repository_version(&href) {
                Some((id, n)) => state.db.run(move |c| repository::find_version(c, &id, n).map_err(DbError::from)).await?,
                None => None,
            };
            found.map(|v| (v.repository_id, v.number)).ok_or_else(|| ApiError::field(FIELD, format!("Invalid hyperlink - Object does not exist: {href}")))
        }
        (None, Some(href)) => {
            let found = match hrefs::parse_repository(&href) {
                Some(id) => state.db.run(move |c| repository::find(c, &id).map_err(DbError::from)).await?,
                None => None,
            };
            found
                .map(|r| (r.id, r.latest_version_number))
                .ok_or_else(|| ApiError::field("source_repository", format!("Invalid hyperlink - Object does not exist: {href}")))
        }
        (None, None) => Err(ApiError::field(FIELD, "Either the 'repository' or 'repository_version' need to be specified")),
        (Some(_), Some(_)) => Err(ApiError::field(FIELD, "Either the 'repository' or 'repository_version' need to be specified but not both.")),
    }
}

async fn submit(state: &AppState, repo: &Repository, change: Change) -> Result<HttpResponse, ApiError> {
    let name = change.task_name();
    let args = ChangeArgs { repository_id: repo.id.clone(), change };
    let task = state
        .tasks
        .enqueue(state, name, serde_json::to_value(&args).expect("serialisable"), vec![hrefs::repository(&repo.id)])
        .await?;
    Ok(accepted(&task))
}

/// Tag a manifest of the latest version, in a new version (a tag of that name moves).
#[utoipa::path(
    tag = "Repositories: Container",
    operation_id = "repositories_container_container_tag",
    request_body = TagImage,
    responses((status = 202, body = AsyncOperationResponse), BadRequest, Unauthorized, NotFound)
)]
#[post("/repositories/container/container/{id}/tag/")]
pub async fn tag_image(state: web::Data<AppState>, id: web::Path<uuid::Uuid>, bytes: web::Bytes) -> Result<HttpResponse, ApiError> {
    let repo = find_or_404(&state, id.to_string()).await?;
    let req: TagImage = body::parse(&bytes)?;
    let mut checks = Checks::default();
    let tag = checked_tag(&mut checks, req.tag);
    checks.required("digest", &req.digest);
    checks.finish()?;
    let (tag, digest) = (tag.expect("checked"), req.digest.expect("checked"));
    let (r, n, d) = (repo.id.clone(), repo.latest_version_number, digest.clone());
    let manifest_id = state
        .db
        .run(move |c| content::manifest_in_version(c, &r, n, &d).map_err(DbError::from))
        .await?
        .ok_or_else(|| {
            ApiError::field("digest", format!("A manifest with the digest '{digest}' does not exist in the latest repository version '{}'", version_name(&repo)))
        })?;
    submit(&state, &repo, Change::Tag { tag, manifest_id }).await
}

/// Remove a tag, in a new version.
#[utoipa::path(
    tag = "Repositories: Container",
    operation_id = "repositories_container_container_untag",
    request_body = UnTagImage,
    responses((status = 202, body = AsyncOperationResponse), BadRequest, Unauthorized, NotFound)
)]
#[post("/repositories/container/container/{id}/untag/")]
pub async fn untag_image(state: web::Data<AppState>, id: web::Path<uuid::Uuid>, bytes: web::Bytes) -> Result<HttpResponse, ApiError> {
    let repo = find_or_404(&state, id.to_string()).await?;
    let req: UnTagImage = body::parse(&bytes)?;
    let mut checks = Checks::default();
    let tag = checked_tag(&mut checks, req.tag);
    checks.finish()?;
    let tag = tag.expect("checked");
    let (r, n, t) = (repo.id.clone(), repo.latest_version_number, tag.clone());
    let present = state.db.run(move |c| content::tags_named(c, &r, n, &t).map_err(DbError::from)).await?;
    if present.is_empty() {
        return Err(ApiError::field("tag", format!("The tag '{tag}' does not exist in the latest repository version '{}'", version_name(&repo))));
    }
    submit(&state, &repo, Change::Untag { tag }).await
}

/// Add content with everything it references, in a new version.
#[utoipa::path(
    tag = "Repositories: Container",
    operation_id = "repositories_container_container_add",
    request_body = RecursiveManage,
    responses((status = 202, body = AsyncOperationResponse), BadRequest, Unauthorized, NotFound)
)]
#[post("/repositories/container/container/{id}/add/")]
pub async fn add_content(state: web::Data<AppState>, id: web::Path<uuid::Uuid>, bytes: web::Bytes) -> Result<HttpResponse, ApiError> {
    let repo = find_or_404(&state, id.to_string()).await?;
    let req: RecursiveManage = body::parse(&bytes)?;
    let content_ids = resolve_content(&state, "content_units", &req.content_units.unwrap_or_default()).await?;
    let ids = content_ids.clone();
    let names = state.db.run(move |c| content::tag_names_of(c, &ids).map_err(DbError::from)).await?;
    let mut seen = std::collections::HashSet::new();
    if let Some((_, twice)) = names.iter().find(|(_, name)| !seen.insert(name.as_str())) {
        return Err(ApiError::field("content_units", format!("Two tags named '{twice}' cannot be added together: a version holds one tag of a name.")));
    }
    submit(&state, &repo, Change::Add { content_ids }).await
}

/// Remove content with what only it needed, in a new version.
#[utoipa::path(
    tag = "Repositories: Container",
    operation_id = "repositories_container_container_remove",
    request_body = RecursiveManage,
    responses((status = 202, body = AsyncOperationResponse), BadRequest, Unauthorized, NotFound)
)]
#[post("/repositories/container/container/{id}/remove/")]
pub async fn remove_content(state: web::Data<AppState>, id: web::Path<uuid::Uuid>, bytes: web::Bytes) -> Result<HttpResponse, ApiError> {
    let repo = find_or_404(&state, id.to_string()).await?;
    let req: RecursiveManage = body::parse(&bytes)?;
    let units = req.content_units.unwrap_or_default();
    let content_ids = if units.iter().any(|u| u == "*") {
        if units.len() > 1 {
            return Err(ApiError::field("content_units", "'*' should be the only item present in the list"));
        }
        None
    } else {
        Some(resolve_content(&state, "content_units", &units).await?)
    };
    submit(&state, &repo, Change::Remove { content_ids }).await
}

/// Copy tags (all, or those named) with their manifests and blobs from a repository version,
/// in a new version; a copied tag replaces the one of its name.
#[utoipa::path(
    tag = "Repositories: Container",
    operation_id = "repositories_container_container_copy_tags",
    request_body = TagCopy,
    responses((status = 202, body = AsyncOperationResponse), BadRequest, Unauthorized, NotFound)
)]
#[post("/repositories/container/container/{id}/copy_tags/")]
pub async fn copy_tags(state: web::Data<AppState>, id: web::Path<uuid::Uuid>, bytes: web::Bytes) -> Result<HttpResponse, ApiError> {
    let repo = find_or_404(&state, id.to_string()).await?;
    let req: TagCopy = body::parse(&bytes)?;
    let mut checks = Checks::default();
    let names = not_null(&mut checks, "names", req.names).filter(|n| !n.is_empty());
    checks.finish()?;
    let (source, number) = copy_source(&state, req.source_repository_version, req.source_repository).await?;
    let content_ids = state.db.run(move |c| content::tags_in_version(c, &source, number, names.as_deref()).map_err(DbError::from)).await?;
    submit(&state, &repo, Change::Add { content_ids }).await
}

/// Copy manifests (all, or those of the digests / media types given) with their blobs, but no
/// tags, from a repository version, in a new version.
#[utoipa::path(
    tag = "Repositories: Container",
    operation_id = "repositories_container_container_copy_manifests",
    request_body = ManifestCopy,
    responses((status = 202, body = AsyncOperationResponse), BadRequest, Unauthorized, NotFound)
)]
#[post("/repositories/container/container/{id}/copy_manifests/")]
pub async fn copy_manifests(state: web::Data<AppState>, id: web::Path<uuid::Uuid>, bytes: web::Bytes) -> Result<HttpResponse, ApiError> {
    let repo = find_or_404(&state, id.to_string()).await?;
    let req: ManifestCopy = body::parse(&bytes)?;
    let mut checks = Checks::default();
    let digests = not_null(&mut checks, "digests", req.digests).filter(|d| !d.is_empty());
    let media_types = not_null(&mut checks, "media_types", req.media_types).filter(|m| !m.is_empty());
    for m in media_types.iter().flatten() {
        if !MEDIA_TYPES.contains(&m.as_str()) {
            checks.add("media_types", format!("\"{m}\" is not a valid choice."));
        }
    }
    checks.finish()?;
    let (source, number) = copy_source(&state, req.source_repository_version, req.source_repository).await?;
    let content_ids = state
        .db
        .run(move |c| content::manifests_in_version(c, &source, number, digests.as_deref(), media_types.as_deref()).map_err(DbError::from))
        .await?;
    submit(&state, &repo, Change::Add { content_ids }).await
}
