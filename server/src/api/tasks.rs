//! `tasks/`: follow and cancel background work.

use actix_web::{delete, get, patch, post, web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::filters::{self, DetailQuery, Kind, ListQuery};
use super::pagination::Paginated;
use super::responses::{BadRequest, Conflict, NotFound, Unauthorized};
use super::{body, hrefs, timestamp};
use crate::app::AppState;
use crate::db::DbError;
use crate::error::ApiError;
use crate::models::filter::Value;
use crate::models::task::{self, Task};

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TaskError {
    pub description: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ProgressReportResponse {
    pub message: String,
    pub code: String,
    pub state: String,
    pub total: Option<u64>,
    pub done: u64,
}

/// A task as Pulp shows it. pulpish has no task groups, subtasks or per-user ownership, so
/// `parent_task`, `task_group` and `created_by` are null and `child_tasks` empty.
#[derive(Debug, Serialize, ToSchema)]
pub struct TaskResponse {
    pub pulp_href: String,
    pub prn: String,
    pub pulp_created: DateTime<Utc>,
    /// When the task last changed state.
    pub pulp_last_updated: DateTime<Utc>,
    pub name: String,
    /// waiting, skipped, running, completed, failed, canceling, canceled
    pub state: String,
    /// The correlation id of the request that dispatched the task.
    pub logging_cid: String,
    pub created_by: Option<String>,
    /// When its resources became free (it was claimed by a worker).
    pub unblocked_at: Option<DateTime<Utc>>,
    /// The worker running or that ran it (href).
    pub worker: Option<String>,
    pub parent_task: Option<String>,
    pub child_tasks: Vec<String>,
    pub task_group: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub error: Option<TaskError>,
    pub progress_reports: Vec<ProgressReportResponse>,
    pub created_resources: Vec<String>,
    pub reserved_resources_record: Vec<String>,
    /// What the task returned (no pulpish task returns a value).
    #[schema(value_type = Option<Object>)]
    pub result: Option<serde_json::Value>,
}

impl From<Task> for TaskResponse {
    fn from(t: Task) -> Self {
        TaskResponse {
            pulp_href: hrefs::task(&t.id),
            prn: format!("prn:core.task:{}", t.id),
            pulp_created: timestamp(t.pulp_created),
            pulp_last_updated: timestamp(t.finished_at.or(t.started_at).unwrap_or(t.pulp_created)),
            reserved_resources_record: t.resources(),
            logging_cid: t.logging_cid.clone(),
            created_by: None,
            unblocked_at: t.unblocked_at.map(timestamp),
            parent_task: None,
            child_tasks: Vec::new(),
            task_group: None,
            result: None,
            name: t.name,
            state: t.state,
            worker: t.worker.as_deref().map(hrefs::worker),
            started_at: t.started_at.map(timestamp),
            finished_at: t.finished_at.map(timestamp),
            error: t.error.as_deref().and_then(|e| serde_json::from_str(e).ok()),
            progress_reports: serde_json::from_str(&t.progress_reports).unwrap_or_default(),
            created_resources: serde_json::from_str(&t.created_resources).unwrap_or_default(),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct TaskCancel {
    /// Must be `canceled`.
    #[schema(value_type = CancelState)]
    pub state: String,
}

/// A task's state (`TASK_STATES`).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    Waiting,
    Skipped,
    Running,
    Completed,
    Failed,
    Canceling,
    Canceled,
}

/// The only state a client may ask for.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CancelState {
    Canceled,
}

/// Pulp's task states (`TaskState`), which the `state` filter takes.
pub const TASK_STATES: &[&str] = &["waiting", "skipped", "running", "completed", "failed", "canceling", "canceled"];

crate::listing!(
    TaskListing,
    TaskResponse,
    [
        filters::filter("state", Kind::Choice(TASK_STATES), filters::EXACT_OR_IN, "Filter by state."),
        filters::text("name", "Filter by task name, e.g. `pulpish.sync`."),
        filters::filter("logging_cid", Kind::Text, &["", "contains"], "Filter by the correlation id of the request that dispatched it."),
        filters::filter("worker", Kind::Text, filters::EXACT, "Only tasks run by this worker (href or name)."),
        filters::filter("reserved_resources", Kind::Text, filters::EXACT_OR_IN, "Only tasks that reserved this resource."),
        filters::filter("exclusive_resources", Kind::Text, filters::EXACT_OR_IN, "Only tasks that reserved this resource exclusively."),
        filters::filter("shared_resources", Kind::Text, filters::EXACT_OR_IN, "Only tasks that reserved this resource shared (pulpish reserves exclusively: none)."),
        filters::filter("created_resources", Kind::Text, filters::EXACT, "Only tasks that created this object (href)."),
        filters::filter("started_at", Kind::Time, filters::RANGE_LOOKUPS, "Filter by start time."),
        filters::filter("finished_at", Kind::Time, filters::RANGE_LOOKUPS, "Filter by finish time."),
        filters::filter("pulp_href", Kind::Id(hrefs::parse_task), filters::IN, "Only these tasks (hrefs)."),
    ],
    ["pulp_created", "started_at", "finished_at", "name", "state"]
);

/// List tasks, newest first.
#[utoipa::path(
    tag = "Tasks",
    operation_id = "tasks_list",
    params(TaskListing),
    responses((status = 200, body = Paginated<TaskResponse>), BadRequest, Unauthorized)
)]
#[get("/tasks/")]
pub async fn list(state: web::Data<AppState>, req: HttpRequest, query: ListQuery<TaskListing>) -> Result<HttpResponse, ApiError> {
    let (mut criteria, window) = (query.criteria.clone(), query.window);
    if let Some(name) = criteria.text("worker").as_deref().and_then(hrefs::parse_worker) {
        criteria.insert("worker", Value::Text(name));
    }
    let rows = state.db.run(move |c| task::list(c, &criteria, window).map_err(DbError::from)).await?;
    Ok(query.respond(&req, rows, TaskResponse::from))
}

/// Inspect a task.
#[utoipa::path(
    tag = "Tasks",
    operation_id = "tasks_read",
    params(filters::DetailParams),
    responses((status = 200, body = TaskResponse), BadRequest, Unauthorized, NotFound)
)]
#[get("/tasks/{id}/")]
pub async fn read(state: web::Data<AppState>, id: web::Path<uuid::Uuid>, query: DetailQuery<TaskResponse>) -> Result<HttpResponse, ApiError> {
    let id = id.to_string();
    let row = state.db.run(move |c| task::find(c, &id).map_err(DbError::from)).await?.ok_or_else(ApiError::not_found)?;
    Ok(query.respond(TaskResponse::from(row)))
}

/// Cancel a waiting or running task: `{"state": "canceled"}`.
#[utoipa::path(
    tag = "Tasks",
    operation_id = "tasks_cancel",
    request_body = TaskCancel,
    responses((status = 200, body = TaskResponse), BadRequest, Unauthorized, NotFound, Conflict)
)]
#[patch("/tasks/{id}/")]
pub async fn cancel(state: web::Data<AppState>, id: web::Path<uuid::Uuid>, bytes: web::Bytes) -> Result<HttpResponse, ApiError> {
    let req: TaskCancel = body::parse(&bytes)?;
    if req.state != task::CANCELED {
        return Err(ApiError::field("state", "The only accepted value is 'canceled'."));
    }
    let id = id.to_string();
    let lookup = id.clone();
    let current = state.db.run(move |c| task::find(c, &lookup).map_err(DbError::from)).await?.ok_or_else(ApiError::not_found)?;
    let updated = state.db.run(move |c| task::request_cancel(c, &id).map_err(DbError::from)).await?;
    match updated {
        Some(t) => Ok(HttpResponse::Ok().json(TaskResponse::from(t))),
        None => Err(ApiError::Conflict(format!("The task is already {}; only waiting or running tasks can be canceled.", current.state))),
    }
}

/// 409 for a task that has not finished, which therefore stays.
pub struct NotFinished;

impl utoipa::IntoResponses for NotFinished {
    fn responses() -> std::collections::BTreeMap<String, utoipa::openapi::RefOr<utoipa::openapi::response::Response>> {
        let mut responses = Conflict::responses();
        for response in responses.values_mut() {
            if let utoipa::openapi::RefOr::T(r) = response {
                r.description = "The task has not finished yet".into();
            }
        }
        responses
    }
}

/// Delete a finished task's record.
#[utoipa::path(
    tag = "Tasks",
    operation_id = "tasks_delete",
    responses((status = 204, description = "Deleted"), Unauthorized, NotFound, NotFinished)
)]
#[delete("/tasks/{id}/")]
pub async fn remove(state: web::Data<AppState>, id: web::Path<uuid::Uuid>) -> Result<HttpResponse, ApiError> {
    let id = id.to_string();
    match state.db.run(move |c| task::delete_finished(c, &id).map_err(DbError::from)).await? {
        None => Err(ApiError::not_found()),
        Some(Ok(())) => Ok(HttpResponse::NoContent().finish()),
        Some(Err(current)) => Err(ApiError::Conflict(format!("The task is {current}: only a finished task can be deleted (cancel it first)."))),
    }
}

/// A final task state, which `Purge` takes.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FinalState {
    Completed,
    Skipped,
    Failed,
    Canceled,
}

/// Which finished tasks to purge.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct Purge {
    /// Purge tasks that finished before this time (default: the start of the day 30 days ago).
    #[serde(default, deserialize_with = "body::double_option")]
    #[schema(value_type = DateTime<Utc>, required = false)]
    pub finished_before: Option<Option<String>>,
    /// Purge tasks in these states (final states only; default `["completed"]`).
    #[serde(default, deserialize_with = "body::double_option")]
    #[schema(value_type = Vec<FinalState>, required = false, default = json!(["completed"]))]
    pub states: Option<Option<Vec<String>>>,
}

/// Delete the records of finished tasks (a task).
#[utoipa::path(
    tag = "Tasks",
    operation_id = "tasks_purge",
    request_body = Purge,
    responses((status = 202, body = super::AsyncOperationResponse), BadRequest, Unauthorized)
)]
#[post("/tasks/purge/")]
pub async fn purge(state: web::Data<AppState>, bytes: web::Bytes) -> Result<HttpResponse, ApiError> {
    use crate::tasks::housekeeping::{PurgeArgs, PURGE};
    let absent = bytes.iter().all(u8::is_ascii_whitespace);
    let req: Purge = if absent { Purge::default() } else { body::parse(&bytes)? };
    let mut checks = super::validate::Checks::default();
    let finished_before = match req.finished_before {
        Some(None) => {
            checks.add("finished_before", "This field may not be null.");
            None
        }
        Some(Some(text)) => {
            let parsed = filters::parse_time(text.trim());
            if parsed.is_none() {
                checks.add("finished_before", "Datetime has wrong format. Use one of these formats instead: YYYY-MM-DDThh:mm[:ss[.uuuuuu]][+HH:MM|-HH:MM|Z].");
            }
            parsed
        }
        None => (crate::models::now() - chrono::Duration::days(30)).date().and_hms_opt(0, 0, 0),
    };
    let states = match req.states {
        Some(None) => {
            checks.add("states", "This field may not be null.");
            vec![]
        }
        Some(Some(states)) => states,
        None => vec![task::COMPLETED.to_string()],
    };
    for s in &states {
        if !task::FINAL_STATES.contains(&s.as_str()) {
            checks.add("states", format!("\"{s}\" is not a valid choice."));
        }
    }
    checks.finish()?;
    let args = PurgeArgs { finished_before: finished_before.expect("checked"), states };
    let task = state.tasks.enqueue(&state, PURGE, serde_json::to_value(&args).expect("serialisable"), vec![]).await?;
    Ok(super::accepted(&task))
}
