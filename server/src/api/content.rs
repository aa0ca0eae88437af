//! `content/container/{blobs,manifests,tags}/`, read-only, filterable by repository version.

use actix_web::{get, web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::filters::{self, DetailQuery, Filter, Kind, ListQuery};
use super::pagination::Paginated;
use super::responses::{BadRequest, NotFound, Unauthorized};
use super::{hrefs, timestamp};
use crate::app::AppState;
use crate::db::DbError;
use crate::error::ApiError;
use crate::models::content::{self, BlobRow, ContentFilter, ManifestRow, TagRow};
use crate::models::filter::Criteria;
use crate::models::repository;

const IN_VERSION: Filter =
    filters::filter("repository_version", Kind::Text, filters::EXACT, "Only content in this repository version (href).");
const ADDED_IN: Filter =
    filters::filter("repository_version_added", Kind::Text, filters::EXACT, "Only content this repository version added (href).");
const REMOVED_IN: Filter =
    filters::filter("repository_version_removed", Kind::Text, filters::EXACT, "Only content this repository version removed (href).");

crate::listing!(
    BlobListing,
    BlobResponse,
    [
        IN_VERSION,
        ADDED_IN,
        REMOVED_IN,
        filters::filter("pulp_href", Kind::Id(hrefs::parse_blob), filters::IN, "Only these blobs (hrefs)."),
        filters::filter("digest", Kind::Text, filters::EXACT_OR_IN, "Filter by digest (`sha256:...`)."),
    ],
    ["pulp_created", "digest"]
);

crate::listing!(
    ManifestListing,
    ManifestResponse,
    [
        IN_VERSION,
        ADDED_IN,
        REMOVED_IN,
        filters::filter("pulp_href", Kind::Id(hrefs::parse_manifest), filters::IN, "Only these manifests (hrefs)."),
        filters::filter("digest", Kind::Text, filters::EXACT_OR_IN, "Filter by digest (`sha256:...`)."),
        filters::filter("media_type", Kind::TextList, filters::EXACT, "Only manifests of these media types."),
    ],
    ["pulp_created", "digest"]
);

crate::listing!(
    TagListing,
    TagResponse,
    [
        IN_VERSION,
        ADDED_IN,
        REMOVED_IN,
        filters::filter("pulp_href", Kind::Id(hrefs::parse_tag), filters::IN, "Only these tags (hrefs)."),
        filters::text("name", "Filter by tag name."),
        filters::filter("digest", Kind::TextList, filters::EXACT, "Only tags of manifests with these digests."),
        filters::filter("media_type", Kind::TextList, filters::EXACT, "Only tags of manifests of these media types."),
    ],
    ["pulp_created", "name"]
);

/// The query's content filter, its version hrefs resolved; an href that names no version is a
/// 400 on that field.
async fn content_filter(state: &AppState, criteria: &Criteria) -> Result<ContentFilter, ApiError> {
    Ok(ContentFilter {
        version: resolve(state, "repository_version", criteria.text("repository_version")).await?,
        added_in: resolve(state, "repository_version_added", criteria.text("repository_version_added")).await?,
        removed_in: resolve(state, "repository_version_removed", criteria.text("repository_version_removed")).await?,
        criteria: criteria.clone(),
    })
}

async fn resolve(state: &AppState, field: &str, href: Option<String>) -> Result<Option<(String, i64)>, ApiError> {
    let Some(href) = href else { return Ok(None) };
    let parsed = hrefs::parse_repository_version(&href);
    let exists = match parsed.clone() {
        Some((repo, n)) => state
            .db
            .run(move |c| repository::find_version(c, &repo, n).map_err(DbError::from))
            .await?
            .is_some(),
        None => false,
    };
    if !exists {
        return Err(ApiError::field(field, format!("Invalid hyperlink - Object does not exist: {href}")));
    }
    Ok(parsed)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BlobResponse {
    pub pulp_href: String,
    /// Pulp's resource name (`prn:<app>.<model>:<id>`).
    pub prn: String,
    pub pulp_created: DateTime<Utc>,
    pub digest: String,
    /// The stored artifact; null while the bytes have not been downloaded (on_demand).
    pub artifact: Option<String>,
}

impl From<BlobRow> for BlobResponse {
    fn from(b: BlobRow) -> Self {
        BlobResponse {
            pulp_href: hrefs::blob(&b.id),
            prn: format!("prn:container.blob:{}", b.id),
            pulp_created: timestamp(b.pulp_created),
            digest: b.digest,
            artifact: b.artifact_id.as_deref().map(hrefs::artifact),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ManifestResponse {
    pub pulp_href: String,
    /// Pulp's resource name (`prn:<app>.<model>:<id>`).
    pub prn: String,
    pub pulp_created: DateTime<Utc>,
    pub digest: String,
    pub media_type: String,
    pub schema_version: i32,
    pub config_blob: Option<String>,
    pub blobs: Vec<String>,
    pub listed_manifests: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TagResponse {
    pub pulp_href: String,
    /// Pulp's resource name (`prn:<app>.<model>:<id>`).
    pub prn: String,
    pub pulp_created: DateTime<Utc>,
    pub name: String,
    pub tagged_manifest: String,
}

impl From<TagRow> for TagResponse {
    fn from(t: TagRow) -> Self {
        TagResponse {
            pulp_href: hrefs::tag(&t.id),
            prn: format!("prn:container.tag:{}", t.id),
            pulp_created: timestamp(t.pulp_created),
            name: t.name,
            tagged_manifest: hrefs::manifest(&t.tagged_manifest_id),
        }
    }
}

fn manifest_view(conn: &mut crate::db::DbConnection, m: ManifestRow) -> Result<ManifestResponse, DbError> {
    let (blobs, listed) = content::manifest_links(conn, &m.id)?;
    Ok(ManifestResponse {
        pulp_href: hrefs::manifest(&m.id),
        prn: format!("prn:container.manifest:{}", m.id),
        pulp_created: timestamp(m.pulp_created),
        digest: m.digest,
        media_type: m.media_type,
        schema_version: m.schema_version,
        config_blob: m.config_blob_id.as_deref().map(hrefs::blob),
        blobs: blobs.iter().map(|b| hrefs::blob(b)).collect(),
        listed_manifests: listed.iter().map(|l| hrefs::manifest(l)).collect(),
    })
}

/// List blobs.
#[utoipa::path(
    tag = "Content: Blobs",
    operation_id = "content_container_blobs_list",
    params(BlobListing),
    responses((status = 200, body = Paginated<BlobResponse>), BadRequest, Unauthorized)
)]
#[get("/content/container/blobs/")]
pub async fn list_blobs(state: web::Data<AppState>, req: HttpRequest, query: ListQuery<BlobListing>) -> Result<HttpResponse, ApiError> {
    let filter = content_filter(&state, &query.criteria).await?;
    let window = query.window;
    let rows = state.db.run(move |c| content::list_blobs(c, &filter, window).map_err(DbError::from)).await?;
    Ok(query.respond(&req, rows, BlobResponse::from))
}

/// Inspect a blob.
#[utoipa::path(
    tag = "Content: Blobs",
    operation_id = "content_container_blobs_read",
    params(filters::DetailParams),
    responses((status = 200, body = BlobResponse), BadRequest, Unauthorized, NotFound)
)]
#[get("/content/container/blobs/{id}/")]
pub async fn read_blob(state: web::Data<AppState>, id: web::Path<uuid::Uuid>, query: DetailQuery<BlobResponse>) -> Result<HttpResponse, ApiError> {
    let id = id.to_string();
    let row = state.db.run(move |c| content::find_blob(c, &id).map_err(DbError::from)).await?.ok_or_else(ApiError::not_found)?;
    Ok(query.respond(BlobResponse::from(row)))
}

/// List manifests and manifest lists.
#[utoipa::path(
    tag = "Content: Manifests",
    operation_id = "content_container_manifests_list",
    params(ManifestListing),
    responses((status = 200, body = Paginated<ManifestResponse>), BadRequest, Unauthorized)
)]
#[get("/content/container/manifests/")]
pub async fn list_manifests(state: web::Data<AppState>, req: HttpRequest, query: ListQuery<ManifestListing>) -> Result<HttpResponse, ApiError> {
    let filter = content_filter(&state, &query.criteria).await?;
    let window = query.window;
    let rows = state
        .db
        .run(move |c| {
            let page = content::list_manifests(c, &filter, window)?;
            let mut views = Vec::with_capacity(page.rows.len());
            for m in page.rows {
                views.push(manifest_view(c, m)?);
            }
            Ok::<_, DbError>(crate::models::Page { count: page.count, rows: views })
        })
        .await?;
    Ok(query.respond(&req, rows, |v| v))
}

/// Inspect a manifest.
#[utoipa::path(
    tag = "Content: Manifests",
    operation_id = "content_container_manifests_read",
    params(filters::DetailParams),
    responses((status = 200, body = ManifestResponse), BadRequest, Unauthorized, NotFound)
)]
#[get("/content/container/manifests/{id}/")]
pub async fn read_manifest(state: web::Data<AppState>, id: web::Path<uuid::Uuid>, query: DetailQuery<ManifestResponse>) -> Result<HttpResponse, ApiError> {
    let id = id.to_string();
    let view = state
        .db
        .run(move |c| match content::find_manifest(c, &id)? {
            Some(m) => manifest_view(c, m).map(Some),
            None => Ok::<_, DbError>(None),
        })
        .await?
        .ok_or_else(ApiError::not_found)?;
    Ok(query.respond(view))
}

/// List tags.
#[utoipa::path(
    tag = "Content: Tags",
    operation_id = "content_container_tags_list",
    params(TagListing),
    responses((status = 200, body = Paginated<TagResponse>), BadRequest, Unauthorized)
)]
#[get("/content/container/tags/")]
pub async fn list_tags(state: web::Data<AppState>, req: HttpRequest, query: ListQuery<TagListing>) -> Result<HttpResponse, ApiError> {
    let filter = content_filter(&state, &query.criteria).await?;
    let window = query.window;
    let rows = state.db.run(move |c| content::list_tags(c, &filter, window).map_err(DbError::from)).await?;
    Ok(query.respond(&req, rows, TagResponse::from))
}

/// Inspect a tag.
#[utoipa::path(
    tag = "Content: Tags",
    operation_id = "content_container_tags_read",
    params(filters::DetailParams),
    responses((status = 200, body = TagResponse), BadRequest, Unauthorized, NotFound)
)]
#[get("/content/container/tags/{id}/")]
pub async fn read_tag(state: web::Data<AppState>, id: web::Path<uuid::Uuid>, query: DetailQuery<TagResponse>) -> Result<HttpResponse, ApiError> {
    let id = id.to_string();
    let row = state.db.run(move |c| content::find_tag(c, &id).map_err(DbError::from)).await?.ok_or_else(ApiError::not_found)?;
    Ok(query.respond(TagResponse::from(row)))
}
