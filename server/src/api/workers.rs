//! `workers/`: the task workers of every replica, as Pulp lists them.

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
use crate::models::task::{self, Worker, ONLINE_WITHIN};

#[derive(Debug, Serialize, ToSchema)]
pub struct WorkerResponse {
    pub pulp_href: String,
    /// `<index>@<host>:<pid>:<instance>`.
    pub name: String,
    pub last_heartbeat: DateTime<Utc>,
    /// Heartbeated within the last 30 seconds.
    pub online: bool,
    /// The task it is running, if any.
    pub current_task: Option<String>,
}

pub fn view(w: Worker, current_task: Option<String>) -> WorkerResponse {
    WorkerResponse {
        pulp_href: hrefs::worker(&w.name),
        online: w.last_heartbeat >= crate::models::now() - ONLINE_WITHIN,
        last_heartbeat: timestamp(w.last_heartbeat),
        current_task: current_task.as_deref().map(hrefs::task),
        name: w.name,
    }
}

crate::listing!(
    WorkerListing,
    WorkerResponse,
    [
        filters::text("name", "Filter by name."),
        filters::filter("last_heartbeat", Kind::Time, filters::RANGE_LOOKUPS, "Filter by last heartbeat."),
        filters::filter("online", Kind::Bool, filters::EXACT, "Only workers that are (or are not) online."),
    ],
    ["name", "last_heartbeat"]
);

/// Workers with the task each is running.
pub fn load(conn: &mut crate::db::DbConnection, rows: Vec<Worker>) -> Result<Vec<WorkerResponse>, DbError> {
    rows.into_iter()
        .map(|w| {
            let current = task::current_task(conn, &w.name)?;
            Ok(view(w, current))
        })
        .collect()
}

/// List workers.
#[utoipa::path(
    tag = "Workers",
    operation_id = "workers_list",
    params(WorkerListing),
    responses((status = 200, body = Paginated<WorkerResponse>), BadRequest, Unauthorized)
)]
#[get("/workers/")]
pub async fn list(state: web::Data<AppState>, req: HttpRequest, query: ListQuery<WorkerListing>) -> Result<HttpResponse, ApiError> {
    let (criteria, window) = (query.criteria.clone(), query.window);
    let page = state
        .db
        .run(move |c| {
            let page = task::list_workers(c, &criteria, window)?;
            Ok::<_, DbError>(crate::models::Page { count: page.count, rows: load(c, page.rows)? })
        })
        .await?;
    Ok(query.respond(&req, page, |w| w))
}

/// Inspect a worker.
#[utoipa::path(
    tag = "Workers",
    operation_id = "workers_read",
    params(filters::DetailParams),
    responses((status = 200, body = WorkerResponse), BadRequest, Unauthorized, NotFound)
)]
#[get("/workers/{id}/")]
pub async fn read(state: web::Data<AppState>, id: web::Path<String>, query: DetailQuery<WorkerResponse>) -> Result<HttpResponse, ApiError> {
    let name = id.into_inner();
    let found = state
        .db
        .run(move |c| match task::find_worker(c, &name)? {
            Some(w) => Ok::<_, DbError>(load(c, vec![w])?.pop()),
            None => Ok(None),
        })
        .await?
        .ok_or_else(ApiError::not_found)?;
    Ok(query.respond(found))
}
