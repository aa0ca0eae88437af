//! `artifacts/`: stored files, content-addressed.

use actix_web::{get, web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::filters::{self, DetailQuery, Kind, ListQuery};
use super::pagination::Paginated;
use super::responses::{BadRequest, NotFound, Unauthorized};
use super::{hrefs, timestamp};
use crate::app::AppState;
use crate::db::DbError;
use crate::error::ApiError;
use crate::models::artifact::{self, Artifact};

#[derive(Debug, Serialize, ToSchema)]
pub struct ArtifactResponse {
    pub pulp_href: String,
    /// Pulp's resource name (`prn:<app>.<model>:<id>`).
    pub prn: String,
    pub pulp_created: DateTime<Utc>,
    /// Where the file lives, relative to the data directory.
    pub file: String,
    pub size: i64,
    pub sha256: String,
}

impl From<Artifact> for ArtifactResponse {
    fn from(a: Artifact) -> Self {
        ArtifactResponse {
            pulp_href: hrefs::artifact(&a.id),
            prn: format!("prn:core.artifact:{}", a.id),
            pulp_created: timestamp(a.pulp_created),
            file: a.storage_key,
            size: a.size,
            sha256: a.sha256,
        }
    }
}

crate::listing!(
    ArtifactListing,
    ArtifactResponse,
    [
        filters::filter("sha256", Kind::Text, filters::EXACT_OR_IN, "Filter by sha256 (hex)."),
        filters::filter("pulp_href", Kind::Id(hrefs::parse_artifact), filters::IN, "Only these artifacts (hrefs)."),
    ],
    ["pulp_created", "size"]
);

/// List artifacts.
#[utoipa::path(
    tag = "Artifacts",
    operation_id = "artifacts_list",
    params(ArtifactListing),
    responses((status = 200, body = Paginated<ArtifactResponse>), BadRequest, Unauthorized)
)]
#[get("/artifacts/")]
pub async fn list(state: web::Data<AppState>, req: HttpRequest, query: ListQuery<ArtifactListing>) -> Result<HttpResponse, ApiError> {
    let (criteria, window) = (query.criteria.clone(), query.window);
    let rows = state.db.run(move |c| artifact::list(c, &criteria, window).map_err(DbError::from)).await?;
    Ok(query.respond(&req, rows, ArtifactResponse::from))
}

/// Inspect an artifact.
#[utoipa::path(
    tag = "Artifacts",
    operation_id = "artifacts_read",
    params(filters::DetailParams),
    responses((status = 200, body = ArtifactResponse), BadRequest, Unauthorized, NotFound)
)]
#[get("/artifacts/{id}/")]
pub async fn read(state: web::Data<AppState>, id: web::Path<uuid::Uuid>, query: DetailQuery<ArtifactResponse>) -> Result<HttpResponse, ApiError> {
    let id = id.to_string();
    let row = state.db.run(move |c| artifact::find(c, &id).map_err(DbError::from)).await?.ok_or_else(ApiError::not_found)?;
    Ok(query.respond(ArtifactResponse::from(row)))
}
