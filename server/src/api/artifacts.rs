//! `artifacts/`: stored files, content-addressed.

use actix_web::{get, web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::pagination::{PageParams, Paginated};
use super::responses::{BadRequest, NotFound, Unauthorized};
use super::{hrefs, timestamp, Query};
use crate::app::AppState;
use crate::db::DbError;
use crate::error::ApiError;
use crate::models::artifact::{self, Artifact};

#[derive(Debug, Serialize, ToSchema)]
pub struct ArtifactResponse {
    pub pulp_href: String,
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
            pulp_created: timestamp(a.pulp_created),
            file: a.storage_key,
            size: a.size,
            sha256: a.sha256,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ArtifactParams {
    /// Filter by sha256 (hex).
    pub sha256: Option<String>,
}

/// List artifacts.
#[utoipa::path(
    tag = "Artifacts",
    operation_id = "artifacts_list",
    params(PageParams, ArtifactParams),
    responses((status = 200, body = Paginated<ArtifactResponse>), BadRequest, Unauthorized)
)]
#[get("/artifacts/")]
pub async fn list(state: web::Data<AppState>, req: HttpRequest, page: Query<PageParams>, params: Query<ArtifactParams>) -> Result<HttpResponse, ApiError> {
    let window = page.window()?;
    let sha = params.into_inner().sha256;
    let rows = state.db.run(move |c| artifact::list(c, sha.as_deref(), window).map_err(DbError::from)).await?;
    Ok(HttpResponse::Ok().json(Paginated::new(&req, window, rows, ArtifactResponse::from)))
}

/// Inspect an artifact.
#[utoipa::path(
    tag = "Artifacts",
    operation_id = "artifacts_read",
    responses((status = 200, body = ArtifactResponse), Unauthorized, NotFound)
)]
#[get("/artifacts/{id}/")]
pub async fn read(state: web::Data<AppState>, id: web::Path<uuid::Uuid>) -> Result<HttpResponse, ApiError> {
    let id = id.to_string();
    let row = state.db.run(move |c| artifact::find(c, &id).map_err(DbError::from)).await?.ok_or_else(ApiError::not_found)?;
    Ok(HttpResponse::Ok().json(ArtifactResponse::from(row)))
}
