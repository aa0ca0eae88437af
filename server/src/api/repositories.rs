//! `repositories/container/container/` and their `versions/`.

use std::collections::BTreeMap;

use diesel::Connection;
use actix_web::{delete, get, patch, post, put, web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::body::{self, double_option};
use super::filters::{self, DetailQuery, Kind, ListQuery};
use super::pagination::Paginated;
use super::responses::{BadRequest, NotFound, Unauthorized};
use super::validate::{self, Checks};
use super::{accepted, hrefs, timestamp, AsyncOperationResponse};
use crate::app::AppState;
use crate::db::{is_unique_violation, DbConnection, DbError};
use crate::error::ApiError;
use crate::models::repository::{self, ContentSummary, Repository, RepositoryVersion};
use crate::models::{new_id, now, remote};
use crate::tasks;

/// A repository to create, or to replace with PUT (`PatchedRepositoryRequest` for PATCH).
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct RepositoryRequest {
    /// A unique name for this repository.
    #[schema(value_type = String, required = true, min_length = 1, max_length = 255, pattern = r"\S")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
    /// The remote a sync uses when its request names none (a remote's `pulp_href`).
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub remote: Option<Option<String>>,
    /// Labels: string keys and values.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = std::collections::HashMap<String, String>, required = false)]
    pub pulp_labels: Option<Option<serde_json::Value>>,
    /// Keep only this many of the newest versions (at least 1); null keeps every version.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<i64>, minimum = 1)]
    pub retain_repo_versions: Option<Option<body::Integer>>,
}

super::responses::patched_schema!(
    /// Some fields of a repository (PATCH): the same fields as `RepositoryRequest`, none required.
    PatchedRepositoryRequest,
    RepositoryRequest
);

#[derive(Debug, Serialize, ToSchema)]
pub struct RepositoryResponse {
    pub pulp_href: String,
    /// Pulp's resource name: `prn:container.containerrepository:<id>`.
    pub prn: String,
    pub pulp_created: DateTime<Utc>,
    pub pulp_last_updated: DateTime<Utc>,
    pub versions_href: String,
    pub latest_version_href: String,
    pub name: String,
    pub description: Option<String>,
    pub remote: Option<String>,
    #[schema(value_type = std::collections::HashMap<String, String>)]
    pub pulp_labels: serde_json::Value,
    pub retain_repo_versions: Option<i64>,
}

impl From<Repository> for RepositoryResponse {
    fn from(r: Repository) -> Self {
        RepositoryResponse {
            pulp_href: hrefs::repository(&r.id),
            prn: format!("prn:container.containerrepository:{}", r.id),
            pulp_labels: validate::stored_labels(&r.pulp_labels),
            retain_repo_versions: r.retain_repo_versions,
            pulp_created: timestamp(r.pulp_created),
            pulp_last_updated: timestamp(r.pulp_last_updated),
            versions_href: hrefs::repository_versions(&r.id),
            latest_version_href: hrefs::repository_version(&r.id, r.latest_version_number),
            remote: r.remote_id.as_deref().map(hrefs::remote),
            name: r.name,
            description: r.description,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SummaryEntry {
    pub count: i64,
    /// The content list filtered to this version.
    pub href: String,
}

/// `{"added": {"container.blob": {"count": 3, "href": ...}}, "removed": {...}, "present": {...}}`
#[derive(Debug, Serialize, ToSchema)]
pub struct ContentSummaryResponse {
    pub added: BTreeMap<String, SummaryEntry>,
    pub removed: BTreeMap<String, SummaryEntry>,
    pub present: BTreeMap<String, SummaryEntry>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RepositoryVersionResponse {
    pub pulp_href: String,
    /// Pulp's resource name (`prn:<app>.<model>:<id>`).
    pub prn: String,
    pub pulp_created: DateTime<Utc>,
    pub number: i64,
    pub repository: String,
    pub base_version: Option<String>,
    pub content_summary: ContentSummaryResponse,
}

fn content_list_href(pulp_type: &str) -> &'static str {
    match pulp_type {
        crate::models::content::BLOB => hrefs::BLOBS,
        crate::models::content::MANIFEST => hrefs::MANIFESTS,
        _ => hrefs::TAGS,
    }
}

fn version_view(v: RepositoryVersion, base: Option<i64>, summary: ContentSummary) -> RepositoryVersionResponse {
    let href = hrefs::repository_version(&v.repository_id, v.number);
    let section = |counts: BTreeMap<String, i64>, filter: &str| {
        counts
            .into_iter()
            .map(|(t, count)| {
                let entry = SummaryEntry { count, href: format!("{}?{filter}={href}", content_list_href(&t)) };
                (t, entry)
            })
            .collect()
    };
    RepositoryVersionResponse {
        prn: format!("prn:core.repositoryversion:{}", v.id),
        pulp_created: timestamp(v.pulp_created),
        number: v.number,
        repository: hrefs::repository(&v.repository_id),
        base_version: base.map(|n| hrefs::repository_version(&v.repository_id, n)),
        content_summary: ContentSummaryResponse {
            added: section(summary.added, "repository_version_added"),
            removed: section(summary.removed, "repository_version_removed"),
            present: section(summary.present, "repository_version"),
        },
        pulp_href: href,
    }
}

fn blank() -> Repository {
    let t = now();
    Repository {
        id: new_id(),
        name: String::new(),
        description: None,
        remote_id: None,
        latest_version_number: 0,
        pulp_created: t,
        pulp_last_updated: t,
        pulp_labels: "{}".into(),
        retain_repo_versions: None,
    }
}

fn apply(conn: &mut DbConnection, existing: Repository, req: RepositoryRequest, full: bool) -> Result<Repository, ApiError> {
    let mut checks = Checks::default();
    let mut row = if full {
        checks.required("name", &req.name);
        Repository { name: String::new(), description: None, remote_id: None, pulp_labels: "{}".into(), retain_repo_versions: None, ..existing }
    } else {
        existing
    };
    if let Some(v) = req.name { row.name = v; }
    if let Some(v) = req.description { row.description = v; }
    if let Some(v) = req.pulp_labels {
        match validate::labels(&v.unwrap_or_default()) {
            Ok(json) => row.pulp_labels = json,
            Err(m) => checks.add("pulp_labels", m),
        }
    }
    if let Some(v) = req.retain_repo_versions {
        if let Some(n) = v {
            checks.check("retain_repo_versions", validate::int_range(n.0, 1, i64::MAX));
        }
        row.retain_repo_versions = v.map(|n| n.0);
    }
    if let Some(v) = req.remote {
        row.remote_id = match v {
            None => None,
            Some(href) => match hrefs::parse_remote(&href) {
                Some(id) if remote::find_of_kind(conn, &id, remote::CONTAINER)?.is_some() => Some(id),
                _ => {
                    checks.add("remote", format!("Invalid hyperlink - Object does not exist: {href}"));
                    None
                }
            },
        };
    }
    row.pulp_last_updated = now();
    if !checks.has("name") {
        checks.check("name", validate::name(&row.name));
    }
    if !checks.has("name") {
        if let Some(other) = repository::find_by_name(conn, &row.name)? {
            if other.id != row.id {
                checks.add("name", "repository with this name already exists.");
            }
        }
    }
    checks.finish()?;
    Ok(row)
}

pub(super) async fn find_or_404(state: &AppState, id: String) -> Result<Repository, ApiError> {
    state
        .db
        .run(move |c| repository::find(c, &id).map_err(DbError::from))
        .await?
        .ok_or_else(ApiError::not_found)
}

crate::listing!(
    RepositoryListing,
    RepositoryResponse,
    [
        filters::text("name", "Filter by name."),
        filters::LABELS,
        filters::filter("pulp_href", Kind::Id(hrefs::parse_repository), filters::IN, "Only these repositories (hrefs)."),
        filters::filter("pulp_last_updated", Kind::Time, filters::RANGE_LOOKUPS, "Filter by last update time."),
    ],
    ["name", "pulp_created", "pulp_last_updated"]
);

/// List container repositories.
#[utoipa::path(
    tag = "Repositories: Container",
    operation_id = "repositories_container_container_list",
    params(RepositoryListing),
    responses((status = 200, body = Paginated<RepositoryResponse>), BadRequest, Unauthorized)
)]
#[get("/repositories/container/container/")]
pub async fn list(state: web::Data<AppState>, req: HttpRequest, query: ListQuery<RepositoryListing>) -> Result<HttpResponse, ApiError> {
    let (criteria, window) = (query.criteria.clone(), query.window);
    let rows = state.db.run(move |c| repository::list(c, &criteria, window).map_err(DbError::from)).await?;
    Ok(query.respond(&req, rows, RepositoryResponse::from))
}

/// Create a container repository (with its empty version 0).
#[utoipa::path(
    tag = "Repositories: Container",
    operation_id = "repositories_container_container_create",
    request_body = RepositoryRequest,
    responses((status = 201, body = RepositoryResponse), BadRequest, Unauthorized)
)]
#[post("/repositories/container/container/")]
pub async fn create(state: web::Data<AppState>, bytes: web::Bytes) -> Result<HttpResponse, ApiError> {
    let req: RepositoryRequest = body::parse(&bytes)?;
    let row = state
        .db
        .run(move |c| {
            let row = apply(c, blank(), req, true)?;
            c.transaction(|c| repository::insert(c, &row)).map_err(|e| {
                if is_unique_violation(&e) {
                    ApiError::field("name", "repository with this name already exists.")
                } else {
                    e.into()
                }
            })?;
            Ok::<_, ApiError>(row)
        })
        .await?;
    Ok(HttpResponse::Created().json(RepositoryResponse::from(row)))
}

/// Inspect a container repository.
#[utoipa::path(
    tag = "Repositories: Container",
    operation_id = "repositories_container_container_read",
    params(filters::DetailParams),
    responses((status = 200, body = RepositoryResponse), BadRequest, Unauthorized, NotFound)
)]
#[get("/repositories/container/container/{id}/")]
pub async fn read(state: web::Data<AppState>, id: web::Path<uuid::Uuid>, query: DetailQuery<RepositoryResponse>) -> Result<HttpResponse, ApiError> {
    let row = find_or_404(&state, id.to_string()).await?;
    Ok(query.respond(RepositoryResponse::from(row)))
}

async fn update_with(state: &AppState, id: String, bytes: &[u8], full: bool) -> Result<HttpResponse, ApiError> {
    let req: RepositoryRequest = body::parse(bytes)?;
    let keep_labels = !full && req.pulp_labels.is_none();
    let existing = find_or_404(state, id).await?;
    let row = state.db.run(move |c| apply(c, existing, req, full)).await?;
    let resources = vec![hrefs::repository(&row.id)];
    let args = serde_json::json!({ "repository": row, tasks::KEEP_LABELS: keep_labels });
    let task = state
        .tasks
        .enqueue(state, tasks::REPOSITORY_UPDATE, args, resources)
        .await?;
    Ok(accepted(&task))
}

/// Update a container repository.
#[utoipa::path(
    tag = "Repositories: Container",
    operation_id = "repositories_container_container_update",
    request_body = RepositoryRequest,
    responses((status = 202, body = AsyncOperationResponse), BadRequest, Unauthorized, NotFound)
)]
#[put("/repositories/container/container/{id}/")]
pub async fn update(state: web::Data<AppState>, id: web::Path<uuid::Uuid>, bytes: web::Bytes) -> Result<HttpResponse, ApiError> {
    update_with(&state, id.to_string(), &bytes, true).await
}

/// Update some fields of a container repository.
#[utoipa::path(
    tag = "Repositories: Container",
    operation_id = "repositories_container_container_partial_update",
    request_body = PatchedRepositoryRequest,
    responses((status = 202, body = AsyncOperationResponse), BadRequest, Unauthorized, NotFound)
)]
#[patch("/repositories/container/container/{id}/")]
pub async fn partial_update(state: web::Data<AppState>, id: web::Path<uuid::Uuid>, bytes: web::Bytes) -> Result<HttpResponse, ApiError> {
    update_with(&state, id.to_string(), &bytes, false).await
}

/// Delete a container repository and its versions.
#[utoipa::path(
    tag = "Repositories: Container",
    operation_id = "repositories_container_container_delete",
    responses((status = 202, body = AsyncOperationResponse), Unauthorized, NotFound)
)]
#[delete("/repositories/container/container/{id}/")]
pub async fn remove(state: web::Data<AppState>, id: web::Path<uuid::Uuid>) -> Result<HttpResponse, ApiError> {
    let row = find_or_404(&state, id.to_string()).await?;
    let task = state
        .tasks
        .enqueue(&state, tasks::REPOSITORY_DELETE, serde_json::json!({ "id": row.id }), vec![hrefs::repository(&row.id)])
        .await?;
    Ok(accepted(&task))
}

async fn version_response(state: &AppState, v: RepositoryVersion) -> Result<RepositoryVersionResponse, ApiError> {
    let v2 = v.clone();
    let (base, summary) = state
        .db
        .run(move |c| {
            let base = match &v2.base_version_id {
                Some(id) => repository::find_version_by_id(c, id)?.map(|b| b.number),
                None => None,
            };
            Ok::<_, DbError>((base, repository::content_summary(c, &v2)?))
        })
        .await?;
    Ok(version_view(v, base, summary))
}

crate::listing!(
    RepositoryVersionListing,
    RepositoryVersionResponse,
    [
        filters::filter("number", Kind::Integer, filters::RANGE_LOOKUPS, "Filter by version number."),
        filters::filter(
            "content",
            Kind::Id(hrefs::parse_content),
            filters::EXACT_OR_IN,
            "Only versions holding this content unit (a blob's, manifest's or tag's href)."
        ),
        filters::filter("pulp_created", Kind::Time, filters::RANGE_LOOKUPS, "Filter by creation time."),
    ],
    ["number", "pulp_created"]
);

/// A 400 naming `content` / `content__in` when an href among them names no content unit.
async fn check_content_exists(state: &AppState, criteria: &crate::models::filter::Criteria) -> Result<(), ApiError> {
    for name in ["content", "content__in"] {
        let ids = criteria.text(name).map(|id| vec![id]).or_else(|| criteria.list(name)).unwrap_or_default();
        if ids.is_empty() {
            continue;
        }
        let missing = state.db.run(move |c| repository::missing_content(c, &ids).map_err(DbError::from)).await?;
        if let Some(id) = missing.first() {
            return Err(ApiError::field(name, format!("Invalid hyperlink - Object does not exist: content unit {id}")));
        }
    }
    Ok(())
}

/// List a repository's versions, newest first.
#[utoipa::path(
    tag = "Repositories: Container Versions",
    operation_id = "repositories_container_container_versions_list",
    params(RepositoryVersionListing),
    responses((status = 200, body = Paginated<RepositoryVersionResponse>), BadRequest, Unauthorized, NotFound)
)]
#[get("/repositories/container/container/{id}/versions/")]
pub async fn list_versions(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<uuid::Uuid>,
    query: ListQuery<RepositoryVersionListing>,
) -> Result<HttpResponse, ApiError> {
    let repo = find_or_404(&state, id.to_string()).await?;
    check_content_exists(&state, &query.criteria).await?;
    let (criteria, window) = (query.criteria.clone(), query.window);
    let rows = state.db.run(move |c| repository::list_versions(c, &repo.id, &criteria, window).map_err(DbError::from)).await?;
    let count = rows.count;
    let mut views = Vec::with_capacity(rows.rows.len());
    for v in rows.rows {
        views.push(version_response(&state, v).await?);
    }
    Ok(query.respond(&req, crate::models::Page { count, rows: views }, |v| v))
}

/// Inspect one repository version.
#[utoipa::path(
    tag = "Repositories: Container Versions",
    operation_id = "repositories_container_container_versions_read",
    params(filters::DetailParams),
    responses((status = 200, body = RepositoryVersionResponse), BadRequest, Unauthorized, NotFound)
)]
#[get("/repositories/container/container/{id}/versions/{number}/")]
pub async fn read_version(
    state: web::Data<AppState>,
    path: web::Path<(uuid::Uuid, i64)>,
    query: DetailQuery<RepositoryVersionResponse>,
) -> Result<HttpResponse, ApiError> {
    let (id, number) = path.into_inner();
    let id = id.to_string();
    let v = state
        .db
        .run(move |c| repository::find_version(c, &id, number).map_err(DbError::from))
        .await?
        .ok_or_else(ApiError::not_found)?;
    Ok(query.respond(version_response(&state, v).await?))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct SyncRequest {
    /// The remote to sync from; defaults to the repository's own `remote`.
    pub remote: Option<String>,
    /// Remove from the new version what the upstream no longer has (default false: additive).
    pub mirror: Option<bool>,
}

/// Sync a repository from a remote into a new version (a task).
#[utoipa::path(
    tag = "Repositories: Container",
    operation_id = "repositories_container_container_sync",
    // Optional: an empty body syncs from the repository's own remote.
    request_body = Option<SyncRequest>,
    responses((status = 202, body = AsyncOperationResponse), BadRequest, Unauthorized, NotFound)
)]
#[post("/repositories/container/container/{id}/sync/")]
pub async fn sync(state: web::Data<AppState>, id: web::Path<uuid::Uuid>, bytes: web::Bytes) -> Result<HttpResponse, ApiError> {
    // No body (or `null`): sync from the repository's own remote.
    let absent = bytes.iter().all(u8::is_ascii_whitespace) || serde_json::from_slice::<serde_json::Value>(&bytes).is_ok_and(|v| v.is_null());
    let req: SyncRequest = if absent { SyncRequest::default() } else { body::parse(&bytes)? };
    let repo = find_or_404(&state, id.to_string()).await?;
    let remote_id = match &req.remote {
        Some(href) => {
            let found = match hrefs::parse_remote(href) {
                Some(rid) => state.db.run(move |c| remote::find_of_kind(c, &rid, remote::CONTAINER).map_err(DbError::from)).await?,
                None => None,
            };
            found.map(|r| r.id).ok_or_else(|| ApiError::field("remote", format!("Invalid hyperlink - Object does not exist: {href}")))?
        }
        None => repo
            .remote_id
            .clone()
            .ok_or_else(|| ApiError::field("remote", "A remote must be specified, since the repository has none."))?,
    };
    let args = crate::sync::SyncArgs { repository_id: repo.id.clone(), remote_id: remote_id.clone(), mirror: req.mirror.unwrap_or(false) };
    let task = state
        .tasks
        .enqueue(&state, crate::sync::TASK_NAME, serde_json::to_value(&args).expect("serialisable"), vec![hrefs::repository(&repo.id)])
        .await?;
    Ok(accepted(&task))
}

/// Delete a repository version (a task): its changes fold into the next version, so the
/// others keep their content. The latest version stays.
#[utoipa::path(
    tag = "Repositories: Container Versions",
    operation_id = "repositories_container_container_versions_delete",
    responses((status = 202, body = AsyncOperationResponse), BadRequest, Unauthorized, NotFound)
)]
#[delete("/repositories/container/container/{id}/versions/{number}/")]
pub async fn delete_version(state: web::Data<AppState>, path: web::Path<(uuid::Uuid, i64)>) -> Result<HttpResponse, ApiError> {
    let (id, number) = path.into_inner();
    let repo = find_or_404(&state, id.to_string()).await?;
    let r = repo.id.clone();
    let (exists, first) = state
        .db
        .run(move |c| Ok::<_, DbError>((repository::find_version(c, &r, number)?.is_some(), repository::next_version_number(c, &r, -1)?)))
        .await?;
    if !exists {
        return Err(ApiError::not_found());
    }
    if number == repo.latest_version_number {
        let only = first == Some(number);
        return Err(ApiError::BadRequest(if only { tasks::versions::ONLY_VERSION } else { tasks::versions::LATEST_VERSION }.into()));
    }
    let args = tasks::versions::DeleteVersionArgs { repository_id: repo.id.clone(), number };
    let task = state
        .tasks
        .enqueue(&state, tasks::versions::DELETE_VERSION, serde_json::to_value(&args).expect("serialisable"), vec![hrefs::repository(&repo.id)])
        .await?;
    Ok(accepted(&task))
}
