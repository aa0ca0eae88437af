//! `orphans/cleanup/`: remove content that no repository version holds, then artifacts that no
//! content uses, with their stored bytes (a task: `tasks::housekeeping`).

use actix_web::{post, web, HttpResponse};
use serde::Deserialize;
use utoipa::ToSchema;

use super::body::{self, double_option, Integer};
use super::responses::{BadRequest, Unauthorized};
use super::{accepted, AsyncOperationResponse};
use crate::app::AppState;
use crate::error::ApiError;
use crate::tasks::housekeeping::{CleanupArgs, DEFAULT_ORPHAN_PROTECTION_MINUTES, ORPHANS_RESOURCE, ORPHAN_CLEANUP};

#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct OrphansCleanup {
    /// Only these content units (hrefs), and the artifacts they use, are removed, if orphans.
    pub content_hrefs: Option<Vec<String>>,
    /// Minutes for which orphan content and artifacts are kept after they were created (it
    /// should outlast the longest task, whose content is orphan until its version is made);
    /// null or absent: 1440.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<i64>, minimum = 0)]
    pub orphan_protection_time: Option<Option<Integer>>,
}

/// Delete orphan content and artifacts (a task).
#[utoipa::path(
    tag = "Orphans: Cleanup",
    operation_id = "orphans_cleanup_cleanup",
    request_body = OrphansCleanup,
    responses((status = 202, body = AsyncOperationResponse), BadRequest, Unauthorized)
)]
#[post("/orphans/cleanup/")]
pub async fn cleanup(state: web::Data<AppState>, bytes: web::Bytes) -> Result<HttpResponse, ApiError> {
    let absent = bytes.iter().all(u8::is_ascii_whitespace);
    let req: OrphansCleanup = if absent { OrphansCleanup::default() } else { body::parse(&bytes)? };
    let protection_minutes = match req.orphan_protection_time.flatten() {
        Some(Integer(n)) if n < 0 => return Err(ApiError::field("orphan_protection_time", "Ensure this value is greater than or equal to 0.")),
        Some(Integer(n)) => n,
        None => DEFAULT_ORPHAN_PROTECTION_MINUTES,
    };
    // As in Pulp, an empty list restricts nothing.
    let content_ids = match req.content_hrefs.filter(|h| !h.is_empty()) {
        Some(hrefs) => Some(super::actions::resolve_content(&state, "content_hrefs", &hrefs).await?),
        None => None,
    };
    let args = CleanupArgs { protection_minutes, content_ids };
    let task = state
        .tasks
        .enqueue(&state, ORPHAN_CLEANUP, serde_json::to_value(&args).expect("serialisable"), vec![ORPHANS_RESOURCE.to_string()])
        .await?;
    Ok(accepted(&task))
}
