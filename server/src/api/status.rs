//! `status/` in Pulp's shape: versions, online workers and apps, database, storage, content
//! settings. pulp-cli compares `versions` with the document's `x-pulp-app-versions`.

use actix_web::{get, web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::docs::PULP_COMPONENTS;
use super::workers::{self, WorkerResponse};
use crate::app::AppState;
use crate::db::DbError;
use crate::error::ApiError;
use crate::models::filter::{Criteria, Value};
use crate::models::{task, Window};

#[derive(Debug, Serialize, ToSchema)]
pub struct ComponentVersion {
    pub component: String,
    pub version: String,
    /// The Python package Pulp ships the component as (pulpish answers as that component).
    pub package: String,
    pub domain_compatible: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DatabaseConnection {
    pub connected: bool,
    /// `sqlite` or `postgresql`.
    pub backend: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RedisConnection {
    /// pulpish uses no Redis.
    pub connected: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StorageStatus {
    /// `filesystem` or `s3`.
    pub backend: String,
    /// Bytes of the filesystem holding the artifacts (null for an object store).
    pub total: Option<u64>,
    pub used: Option<u64>,
    pub free: Option<u64>,
}

/// An API or content app: in pulpish every process serves both.
#[derive(Debug, Serialize, ToSchema)]
pub struct AppStatus {
    pub name: String,
    pub last_heartbeat: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ContentSettings {
    /// Where clients reach content (this server's scheme and host as the request named it).
    pub content_origin: String,
    pub content_path_prefix: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Status {
    pub versions: Vec<ComponentVersion>,
    pub online_workers: Vec<WorkerResponse>,
    pub online_api_apps: Vec<AppStatus>,
    pub online_content_apps: Vec<AppStatus>,
    pub database_connection: DatabaseConnection,
    pub redis_connection: RedisConnection,
    pub storage: StorageStatus,
    pub content_settings: ContentSettings,
    pub domain_enabled: bool,
}

pub fn versions() -> Vec<ComponentVersion> {
    PULP_COMPONENTS
        .iter()
        .map(|(component, version, package)| ComponentVersion {
            component: component.to_string(),
            version: version.to_string(),
            package: package.to_string(),
            domain_compatible: false,
        })
        .collect()
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
pub async fn status(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let workers = state
        .db
        .run(|c| {
            let mut online = Criteria::default();
            online.insert("online", Value::Bool(true));
            let page = task::list_workers(c, &online, Window { limit: 1000, offset: 0 })?;
            workers::load(c, page.rows)
        })
        .await;
    let connected = workers.is_ok();
    let online_workers = workers.unwrap_or_else(|e: DbError| {
        tracing::warn!(error = %e, "status: the database did not answer");
        Vec::new()
    });
    let this_process = || vec![AppStatus { name: app_name(), last_heartbeat: Utc::now() }];
    let space = state.storage.space();
    let info = req.connection_info();
    let body = Status {
        versions: versions(),
        online_workers,
        online_api_apps: this_process(),
        online_content_apps: this_process(),
        database_connection: DatabaseConnection { connected, backend: state.db.backend.name().into() },
        redis_connection: RedisConnection { connected: false },
        storage: StorageStatus {
            backend: state.storage.kind().into(),
            total: space.map(|(total, _)| total),
            used: space.map(|(total, free)| total.saturating_sub(free)),
            free: space.map(|(_, free)| free),
        },
        content_settings: ContentSettings {
            content_origin: format!("{}://{}", info.scheme(), info.host()),
            content_path_prefix: "/v2/".into(),
        },
        domain_enabled: false,
    };
    Ok(HttpResponse::Ok().json(body))
}

fn app_name() -> String {
    format!("{}@{}", std::process::id(), crate::tasks::hostname())
}
