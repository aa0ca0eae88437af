//! `status/`: is it up, which versions, is the database reachable, how much room is left.

use actix_web::{get, web, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use crate::app::AppState;
use crate::db::DbError;
use crate::error::ApiError;

#[derive(Debug, Serialize, ToSchema)]
pub struct ComponentVersion {
    pub component: String,
    pub version: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DatabaseConnection {
    pub connected: bool,
    /// `sqlite` or `postgresql`.
    pub backend: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StorageStatus {
    /// `filesystem` or `s3`.
    pub backend: String,
    /// Bytes free where artifacts are stored (unknown for an object store).
    pub free: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Status {
    pub versions: Vec<ComponentVersion>,
    pub database_connection: DatabaseConnection,
    pub storage: StorageStatus,
    pub online_workers: usize,
}

/// Server status (no credentials needed).
#[utoipa::path(
    tag = "Status",
    operation_id = "status_read",
    // Public: no credentials (the document's global requirement is HTTP Basic).
    security(),
    responses((status = 200, body = Status))
)]
#[get("/status/")]
pub async fn status(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    use diesel::connection::SimpleConnection;
    let connected = state
        .db
        .run(|c| c.batch_execute("SELECT 1").map_err(DbError::from))
        .await
        .is_ok();
    let body = Status {
        versions: vec![ComponentVersion { component: "pulpish".into(), version: env!("CARGO_PKG_VERSION").into() }],
        database_connection: DatabaseConnection { connected, backend: state.db.backend.name().into() },
        storage: StorageStatus { backend: state.storage.kind().into(), free: state.storage.free_bytes() },
        online_workers: state.config.workers,
    };
    Ok(HttpResponse::Ok().json(body))
}
