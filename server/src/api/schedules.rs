//! `sync-schedules/`: a repository synced from a remote every interval (`sync::schedule` runs
//! them). A schedule is a row: creating, changing and deleting one are immediate, not tasks.

use actix_web::{delete, get, patch, post, put, web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::body::{self, Integer};
use super::filters::{self, DetailQuery, Kind, ListQuery};
use super::pagination::Paginated;
use super::responses::{BadRequest, NotFound, Unauthorized};
use super::validate::Checks;
use super::{hrefs, timestamp};
use crate::app::AppState;
use crate::db::{is_unique_violation, DbConnection, DbError};
use crate::error::ApiError;
use crate::models::schedule::{self, SyncSchedule};
use crate::models::{now, remote, repository};

/// A year, in seconds: the longest interval.
pub const MAX_INTERVAL: i64 = 31_536_000;
const TAKEN: &str = "sync schedule with this repository already exists.";

/// A schedule to create, or to replace with PUT (`PatchedSyncScheduleRequest` for PATCH).
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct SyncScheduleRequest {
    /// The repository to sync (its `pulp_href`); a repository has at most one schedule.
    #[schema(value_type = String, required = true)]
    pub repository: Option<String>,
    /// The container remote to sync from (its `pulp_href`); default the repository's `remote`.
    pub remote: Option<String>,
    /// Seconds from the end of a successful sync to the next one (1 to 31536000).
    #[schema(value_type = i64, required = true, minimum = 1, maximum = 31536000)]
    pub interval: Option<Integer>,
    /// Remove from each new version what the upstream no longer has (default false).
    pub mirror: Option<bool>,
    /// Whether the schedule runs (default true).
    pub enabled: Option<bool>,
}

super::responses::patched_schema!(
    /// Some fields of a sync schedule (PATCH): the same fields as `SyncScheduleRequest`, none required.
    PatchedSyncScheduleRequest,
    SyncScheduleRequest
);

#[derive(Debug, Serialize, ToSchema)]
pub struct SyncScheduleResponse {
    pub pulp_href: String,
    /// `prn:pulpish.syncschedule:<id>`.
    pub prn: String,
    pub pulp_created: DateTime<Utc>,
    pub pulp_last_updated: DateTime<Utc>,
    pub repository: String,
    pub remote: String,
    /// Seconds from the end of a successful sync to the next one.
    pub interval: i64,
    pub mirror: bool,
    pub enabled: bool,
    /// When the next sync is due; null while one runs, or while the schedule is disabled.
    pub next_run: Option<DateTime<Utc>>,
    /// The task of the latest sync this schedule started.
    pub last_task: Option<String>,
    /// Syncs that failed in a row (0 after a success).
    pub failures: i32,
    /// Seconds the next attempt waits after the last failure (doubling up to the interval); 0
    /// when the last sync succeeded.
    pub current_backoff: f64,
}

impl From<SyncSchedule> for SyncScheduleResponse {
    fn from(s: SyncSchedule) -> Self {
        SyncScheduleResponse {
            pulp_href: hrefs::sync_schedule(&s.id),
            prn: format!("prn:pulpish.syncschedule:{}", s.id),
            pulp_created: timestamp(s.pulp_created),
            pulp_last_updated: timestamp(s.pulp_last_updated),
            repository: hrefs::repository(&s.repository_id),
            remote: hrefs::remote(&s.remote_id),
            interval: s.interval_seconds,
            mirror: s.mirror,
            enabled: s.enabled,
            next_run: s.next_run.filter(|_| s.enabled).map(timestamp),
            last_task: s.last_task_id.as_deref().map(hrefs::task),
            failures: s.failures,
            current_backoff: s.backoff_ms as f64 / 1000.0,
        }
    }
}

/// Applies a request to a row and checks the result. With `full` (create, PUT), absent fields
/// take their defaults and the required ones must be present.
fn apply(conn: &mut DbConnection, existing: Option<SyncSchedule>, req: SyncScheduleRequest, full: bool) -> Result<SyncSchedule, ApiError> {
    let mut checks = Checks::default();
    if full {
        checks.required("repository", &req.repository);
        checks.required("interval", &req.interval);
    }
    let repository = match &req.repository {
        Some(href) => match hrefs::parse_repository(href).map(|id| repository::find(conn, &id)).transpose()?.flatten() {
            Some(r) => Some(r),
            None => {
                checks.add("repository", format!("Invalid hyperlink - Object does not exist: {href}"));
                None
            }
        },
        None => None,
    };
    let remote_id = match &req.remote {
        Some(href) => match hrefs::parse_remote(href).map(|id| remote::find(conn, &id)).transpose()?.flatten() {
            Some(r) if r.kind == remote::CONTAINER => Some(r.id),
            Some(_) => {
                checks.add("remote", "A sync schedule needs a container remote, not a pull-through one.");
                None
            }
            None => {
                checks.add("remote", format!("Invalid hyperlink - Object does not exist: {href}"));
                None
            }
        },
        // Created or replaced without a remote: the repository's own.
        None if full => match &repository {
            Some(r) => match &r.remote_id {
                Some(id) => Some(id.clone()),
                None => {
                    checks.add("remote", "A remote must be specified, since the repository has none.");
                    None
                }
            },
            None => None,
        },
        None => None,
    };
    let interval = req.interval.map(|Integer(n)| n);
    if let Some(n) = interval {
        checks.check("interval", super::validate::int_range(n, 1, MAX_INTERVAL));
    }
    if let Some(r) = &repository {
        if let Some(other) = schedule::find_by_repository(conn, &r.id)? {
            if existing.as_ref().is_none_or(|e| e.id != other.id) {
                checks.add("repository", TAKEN);
            }
        }
    }
    checks.finish()?;

    let mut row = match existing {
        Some(e) if full => SyncSchedule { mirror: false, enabled: true, ..e },
        Some(e) => e,
        None => SyncSchedule::new(String::new(), String::new(), 0),
    };
    if let Some(r) = repository {
        row.repository_id = r.id;
    }
    if let Some(id) = remote_id {
        row.remote_id = id;
    }
    if let Some(n) = interval {
        row.interval_seconds = n;
    }
    if let Some(v) = req.mirror {
        row.mirror = v;
    }
    if let Some(v) = req.enabled {
        row.enabled = v;
    }
    row.pulp_last_updated = now();
    Ok(row)
}

async fn find_or_404(state: &AppState, id: String) -> Result<SyncSchedule, ApiError> {
    state
        .db
        .run(move |c| schedule::find(c, &id).map_err(DbError::from))
        .await?
        .ok_or_else(ApiError::not_found)
}

crate::listing!(
    SyncScheduleListing,
    SyncScheduleResponse,
    [
        filters::filter("repository", Kind::Id(hrefs::parse_repository), filters::EXACT, "Only the schedule of this repository (href)."),
        filters::filter("remote", Kind::Id(hrefs::parse_remote), filters::EXACT, "Only schedules syncing from this remote (href)."),
        filters::filter("enabled", Kind::Bool, filters::EXACT, "Only enabled (true) or disabled (false) schedules."),
        filters::filter("pulp_href", Kind::Id(hrefs::parse_sync_schedule), filters::IN, "Only these schedules (hrefs)."),
    ],
    ["pulp_created", "pulp_last_updated", "next_run", "failures"]
);

/// List sync schedules.
#[utoipa::path(
    tag = "Sync Schedules",
    operation_id = "sync_schedules_list",
    params(SyncScheduleListing),
    responses((status = 200, body = Paginated<SyncScheduleResponse>), BadRequest, Unauthorized)
)]
#[get("/sync-schedules/")]
pub async fn list(state: web::Data<AppState>, req: HttpRequest, query: ListQuery<SyncScheduleListing>) -> Result<HttpResponse, ApiError> {
    let (criteria, window) = (query.criteria.clone(), query.window);
    let rows = state.db.run(move |c| schedule::list(c, &criteria, window).map_err(DbError::from)).await?;
    Ok(query.respond(&req, rows, SyncScheduleResponse::from))
}

/// Schedule a repository's syncs; the first is due at once.
#[utoipa::path(
    tag = "Sync Schedules",
    operation_id = "sync_schedules_create",
    request_body = SyncScheduleRequest,
    responses((status = 201, body = SyncScheduleResponse), BadRequest, Unauthorized)
)]
#[post("/sync-schedules/")]
pub async fn create(state: web::Data<AppState>, bytes: web::Bytes) -> Result<HttpResponse, ApiError> {
    let req: SyncScheduleRequest = body::parse(&bytes)?;
    let row = state
        .db
        .run(move |c| {
            let row = apply(c, None, req, true)?;
            schedule::insert(c, &row).map_err(|e| if is_unique_violation(&e) { ApiError::field("repository", TAKEN) } else { e.into() })?;
            Ok::<_, ApiError>(row)
        })
        .await?;
    Ok(HttpResponse::Created().json(SyncScheduleResponse::from(row)))
}

/// Inspect a sync schedule: its next run, last task and current backoff.
#[utoipa::path(
    tag = "Sync Schedules",
    operation_id = "sync_schedules_read",
    params(filters::DetailParams),
    responses((status = 200, body = SyncScheduleResponse), BadRequest, Unauthorized, NotFound)
)]
#[get("/sync-schedules/{id}/")]
pub async fn read(state: web::Data<AppState>, id: web::Path<uuid::Uuid>, query: DetailQuery<SyncScheduleResponse>) -> Result<HttpResponse, ApiError> {
    let row = find_or_404(&state, id.to_string()).await?;
    Ok(query.respond(SyncScheduleResponse::from(row)))
}

/// Changing the interval or enabling the schedule makes it due now (unless a sync is running).
async fn update_with(state: &AppState, id: String, bytes: &[u8], full: bool) -> Result<HttpResponse, ApiError> {
    let req: SyncScheduleRequest = body::parse(bytes)?;
    let row = state
        .db
        .run(move |c| {
            crate::db::write_transaction(c, |c| {
                let existing = schedule::find_for_update(c, &id)?.ok_or_else(ApiError::not_found)?;
                let due_now = |r: &SyncSchedule| r.enabled && (!existing.enabled || r.interval_seconds != existing.interval_seconds);
                let row = apply(c, Some(existing.clone()), req, full)?;
                schedule::update_settings(c, &row.id, &row.settings(), due_now(&row))
                    .map_err(|e| if is_unique_violation(&e) { ApiError::field("repository", TAKEN) } else { e.into() })?;
                schedule::find(c, &row.id)?.ok_or_else(ApiError::not_found)
            })
        })
        .await?;
    Ok(HttpResponse::Ok().json(SyncScheduleResponse::from(row)))
}

/// Replace a sync schedule's settings (absent optional fields reset to defaults).
#[utoipa::path(
    tag = "Sync Schedules",
    operation_id = "sync_schedules_update",
    request_body = SyncScheduleRequest,
    responses((status = 200, body = SyncScheduleResponse), BadRequest, Unauthorized, NotFound)
)]
#[put("/sync-schedules/{id}/")]
pub async fn update(state: web::Data<AppState>, id: web::Path<uuid::Uuid>, bytes: web::Bytes) -> Result<HttpResponse, ApiError> {
    update_with(&state, id.to_string(), &bytes, true).await
}

/// Change some of a sync schedule's settings.
#[utoipa::path(
    tag = "Sync Schedules",
    operation_id = "sync_schedules_partial_update",
    request_body = PatchedSyncScheduleRequest,
    responses((status = 200, body = SyncScheduleResponse), BadRequest, Unauthorized, NotFound)
)]
#[patch("/sync-schedules/{id}/")]
pub async fn partial_update(state: web::Data<AppState>, id: web::Path<uuid::Uuid>, bytes: web::Bytes) -> Result<HttpResponse, ApiError> {
    update_with(&state, id.to_string(), &bytes, false).await
}

/// Delete a sync schedule (a sync it started runs to its end).
#[utoipa::path(
    tag = "Sync Schedules",
    operation_id = "sync_schedules_delete",
    responses((status = 204, description = "Deleted"), Unauthorized, NotFound)
)]
#[delete("/sync-schedules/{id}/")]
pub async fn remove(state: web::Data<AppState>, id: web::Path<uuid::Uuid>) -> Result<HttpResponse, ApiError> {
    let id = id.to_string();
    match state.db.run(move |c| schedule::delete(c, &id).map_err(DbError::from)).await? {
        0 => Err(ApiError::not_found()),
        _ => Ok(HttpResponse::NoContent().finish()),
    }
}
