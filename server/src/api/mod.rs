//! The management REST API under `/pulp/api/v3/`, Pulp's shapes. One file per resource;
//! handlers validate, then call `models` (reads, creates) or enqueue a task (updates, deletes).

pub mod actions;
pub mod artifacts;
pub mod auth;
pub mod body;
pub mod content;
pub mod distributions;
pub mod docs;
pub mod filters;
pub mod hrefs;
pub mod labels;
pub mod orphans;
pub mod pagination;
pub mod pull_through;
pub mod remotes;
pub mod repositories;
pub mod responses;
pub mod schedules;
pub mod status;
pub mod tasks;
pub mod validate;
pub mod workers;

use actix_web::{web, HttpResponse};
use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::models::task::Task;

pub fn timestamp(t: NaiveDateTime) -> DateTime<Utc> {
    Utc.from_utc_datetime(&t)
}

/// Pulp's answer to anything done by a task.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AsyncOperationResponse {
    /// The task's href; poll it to follow the work.
    pub task: String,
}

pub fn accepted(task: &Task) -> HttpResponse {
    HttpResponse::Accepted().json(AsyncOperationResponse { task: hrefs::task(&task.id) })
}

/// What Pulp (Django REST framework) answers for a NUL character in a string. PostgreSQL cannot
/// store one in `text`, so it is refused here, before any query, on both backends.
pub const NUL_MESSAGE: &str = "Null characters are not allowed.";

/// Extractor errors in Pulp's JSON: a malformed query is a 400, a malformed id a 404.
pub fn extractor_config(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::QueryConfig::default().error_handler(|e, _| {
        ApiError::BadRequest(format!("Invalid query parameters: {e}")).into()
    }))
    .app_data(web::PathConfig::default().error_handler(|_, _| ApiError::not_found().into()))
    .app_data(web::PayloadConfig::default().limit(4 * 1024 * 1024));
}
