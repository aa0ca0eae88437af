//! `tasks/`: follow and cancel background work.

use actix_web::{get, patch, web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::pagination::{PageParams, Paginated};
use super::responses::{BadRequest, Conflict, NotFound, Unauthorized};
use super::{body, hrefs, timestamp, Query};
use crate::app::AppState;
use crate::db::DbError;
use crate::error::ApiError;
use crate::models::task::{self, Task, STATES};

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

#[derive(Debug, Serialize, ToSchema)]
pub struct TaskResponse {
    pub pulp_href: String,
    pub pulp_created: DateTime<Utc>,
    pub name: String,
    /// waiting, running, completed, failed, canceling, canceled
    pub state: String,
    pub worker: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub error: Option<TaskError>,
    pub progress_reports: Vec<ProgressReportResponse>,
    pub created_resources: Vec<String>,
    pub reserved_resources_record: Vec<String>,
}

impl From<Task> for TaskResponse {
    fn from(t: Task) -> Self {
        TaskResponse {
            pulp_href: hrefs::task(&t.id),
            pulp_created: timestamp(t.pulp_created),
            reserved_resources_record: t.resources(),
            name: t.name,
            state: t.state,
            worker: t.worker,
            started_at: t.started_at.map(timestamp),
            finished_at: t.finished_at.map(timestamp),
            error: t.error.as_deref().and_then(|e| serde_json::from_str(e).ok()),
            progress_reports: serde_json::from_str(&t.progress_reports).unwrap_or_default(),
            created_resources: serde_json::from_str(&t.created_resources).unwrap_or_default(),
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TaskParams {
    /// Filter by state.
    #[param(value_type = Option<TaskState>, inline)]
    pub state: Option<String>,
    /// Filter by task name, e.g. `pulpish.sync`.
    pub name: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct TaskCancel {
    /// Must be `canceled`.
    #[schema(value_type = CancelState)]
    pub state: String,
}

/// A task's state (`models::task::STATES`).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    Waiting,
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

/// List tasks, newest first.
#[utoipa::path(
    tag = "Tasks",
    operation_id = "tasks_list",
    params(PageParams, TaskParams),
    responses((status = 200, body = Paginated<TaskResponse>), BadRequest, Unauthorized)
)]
#[get("/tasks/")]
pub async fn list(state: web::Data<AppState>, req: HttpRequest, page: Query<PageParams>, params: Query<TaskParams>) -> Result<HttpResponse, ApiError> {
    let window = page.window()?;
    let TaskParams { state: wanted, name } = params.into_inner();
    if let Some(s) = &wanted {
        if !STATES.contains(&s.as_str()) {
            return Err(ApiError::field("state", format!("Select a valid choice. {s} is not one of the available choices.")));
        }
    }
    let rows = state
        .db
        .run(move |c| task::list(c, wanted.as_deref(), name.as_deref(), window).map_err(DbError::from))
        .await?;
    Ok(HttpResponse::Ok().json(Paginated::new(&req, window, rows, TaskResponse::from)))
}

/// Inspect a task.
#[utoipa::path(
    tag = "Tasks",
    operation_id = "tasks_read",
    responses((status = 200, body = TaskResponse), Unauthorized, NotFound)
)]
#[get("/tasks/{id}/")]
pub async fn read(state: web::Data<AppState>, id: web::Path<uuid::Uuid>) -> Result<HttpResponse, ApiError> {
    let id = id.to_string();
    let row = state.db.run(move |c| task::find(c, &id).map_err(DbError::from)).await?.ok_or_else(ApiError::not_found)?;
    Ok(HttpResponse::Ok().json(TaskResponse::from(row)))
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
