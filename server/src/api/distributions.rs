//! `distributions/container/container/`: a base path under /v2/ serving a repository.

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
use crate::db::{DbConnection, DbError};
use crate::error::ApiError;
use crate::models::distribution::{self, Distribution};
use crate::models::{now, remote, repository};
use crate::tasks;

/// A distribution to create, or to replace with PUT (`PatchedDistributionRequest` for PATCH).
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct DistributionRequest {
    /// A unique name for this distribution.
    #[schema(value_type = String, required = true, min_length = 1, max_length = 255, pattern = r"\S")]
    pub name: Option<String>,
    /// Where clients find it: `/v2/<base_path>/...`. OCI name grammar.
    #[schema(
        value_type = String,
        required = true,
        max_length = 255,
        example = "library/busybox",
        pattern = r"^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$"
    )]
    pub base_path: Option<String>,
    /// Serve this repository's latest version (a repository's `pulp_href`).
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub repository: Option<Option<String>>,
    /// Serve this exact version (a version's `pulp_href`; instead of `repository`).
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub repository_version: Option<Option<String>>,
    /// Private distributions need credentials to pull.
    pub private: Option<bool>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
    /// Hidden distributions are served but left out of the registry's `/v2/_catalog`.
    pub hidden: Option<bool>,
    /// Labels: string keys and values.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = std::collections::HashMap<String, String>, required = false)]
    pub pulp_labels: Option<Option<serde_json::Value>>,
    /// A pull-through distribution's remote (not a container distribution's field: no body sets
    /// it here).
    #[serde(skip)]
    pub remote: Option<Option<String>>,
}

/// The two kinds of distribution: one table (base paths unique across both), one set of rules,
/// two endpoints that never see each other's rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DistributionKind {
    Container,
    PullThrough,
}

impl DistributionKind {
    /// The value of the `kind` column.
    pub fn column(self) -> &'static str {
        match self {
            DistributionKind::Container => remote::CONTAINER,
            DistributionKind::PullThrough => remote::PULL_THROUGH,
        }
    }

    pub fn href(self, id: &str) -> String {
        match self {
            DistributionKind::Container => hrefs::distribution(id),
            DistributionKind::PullThrough => hrefs::distribution_pull_through(id),
        }
    }
}

super::responses::patched_schema!(
    /// Some fields of a distribution (PATCH): the same fields as `DistributionRequest`, none required.
    PatchedDistributionRequest,
    DistributionRequest
);

#[derive(Debug, Serialize, ToSchema)]
pub struct DistributionResponse {
    pub pulp_href: String,
    /// Pulp's resource name: `prn:container.containerdistribution:<id>`.
    pub prn: String,
    pub pulp_created: DateTime<Utc>,
    pub pulp_last_updated: DateTime<Utc>,
    pub name: String,
    pub base_path: String,
    pub repository: Option<String>,
    pub repository_version: Option<String>,
    pub private: bool,
    pub description: Option<String>,
    /// What to give `docker pull`: `host:port/base_path`.
    pub registry_path: String,
    pub hidden: bool,
    #[schema(value_type = std::collections::HashMap<String, String>)]
    pub pulp_labels: serde_json::Value,
    /// For a distribution a pull-through distribution made: the remote made with it (read-only).
    pub remote: Option<String>,
    /// The pull-through distribution that made this one, if one did (read-only).
    pub pull_through_distribution: Option<String>,
}

fn view(d: Distribution, version_number: Option<(String, i64)>, host: &str) -> DistributionResponse {
    DistributionResponse {
        pulp_href: hrefs::distribution(&d.id),
        prn: format!("prn:container.containerdistribution:{}", d.id),
        hidden: d.hidden,
        pulp_labels: validate::stored_labels(&d.pulp_labels),
        pulp_created: timestamp(d.pulp_created),
        pulp_last_updated: timestamp(d.pulp_last_updated),
        registry_path: format!("{host}/{}", d.base_path),
        repository: d.repository_id.as_deref().map(hrefs::repository),
        repository_version: version_number.map(|(repo, n)| hrefs::repository_version(&repo, n)),
        remote: d.remote_id.as_deref().map(hrefs::remote),
        pull_through_distribution: d.pull_through_id.as_deref().map(hrefs::distribution_pull_through),
        name: d.name,
        base_path: d.base_path,
        private: d.private,
        description: d.description,
    }
}

/// Looks up what a view needs beyond the row: the pinned version's repository and number.
fn load_view(conn: &mut DbConnection, d: Distribution, host: &str) -> Result<DistributionResponse, DbError> {
    let version = match &d.repository_version_id {
        Some(id) => repository::find_version_by_id(conn, id)?.map(|v| (v.repository_id, v.number)),
        None => None,
    };
    Ok(view(d, version, host))
}

fn blank(kind: DistributionKind) -> Distribution {
    Distribution { kind: kind.column().into(), ..Distribution::new("", "") }
}

/// Applies a request to a row of `kind` and checks the result. With `full` (create, PUT),
/// absent fields take their defaults and the required ones must be present.
fn apply(conn: &mut DbConnection, existing: Distribution, req: DistributionRequest, full: bool, kind: DistributionKind) -> Result<Distribution, ApiError> {
    let mut checks = Checks::default();
    let mut row = if full {
        checks.required("name", &req.name);
        checks.required("base_path", &req.base_path);
        if kind == DistributionKind::PullThrough {
            checks.required("remote", &req.remote);
        }
        // What a pull-through distribution made stays made by it: those fields are read-only.
        Distribution {
            id: existing.id,
            pulp_created: existing.pulp_created,
            remote_id: existing.remote_id,
            pull_through_id: existing.pull_through_id,
            ..blank(kind)
        }
    } else {
        existing
    };
    match &req.remote {
        None => {}
        Some(None) => checks.add("remote", "This field may not be null."),
        Some(Some(href)) => match hrefs::parse_remote_pull_through(href) {
            Some(id) if remote::find_of_kind(conn, &id, remote::PULL_THROUGH)?.is_some() => row.remote_id = Some(id),
            _ => checks.add("remote", format!("Invalid hyperlink - Object does not exist: {href}")),
        },
    }
    if let Some(v) = req.name { row.name = v; }
    if let Some(v) = req.base_path { row.base_path = v; }
    if let Some(v) = req.private { row.private = v; }
    if let Some(v) = req.description { row.description = v; }
    if let Some(v) = req.hidden { row.hidden = v; }
    if let Some(v) = req.pulp_labels {
        match validate::labels(&v.unwrap_or_default()) {
            Ok(json) => row.pulp_labels = json,
            Err(m) => checks.add("pulp_labels", m),
        }
    }
    if let Some(v) = &req.repository {
        row.repository_id = match v {
            None => None,
            Some(href) => match hrefs::parse_repository(href) {
                Some(id) if repository::find(conn, &id)?.is_some() => Some(id),
                _ => {
                    checks.add("repository", format!("Invalid hyperlink - Object does not exist: {href}"));
                    None
                }
            },
        };
    }
    if let Some(v) = &req.repository_version {
        row.repository_version_id = match v {
            None => None,
            Some(href) => {
                let found = match hrefs::parse_repository_version(href) {
                    Some((repo, n)) => repository::find_version(conn, &repo, n)?,
                    None => None,
                };
                match found {
                    Some(version) => Some(version.id),
                    None => {
                        checks.add("repository_version", format!("Invalid hyperlink - Object does not exist: {href}"));
                        None
                    }
                }
            }
        };
    }
    // Setting one of the pair through PATCH clears the other, as Pulp does.
    if !full {
        if matches!(req.repository, Some(Some(_))) && req.repository_version.is_none() {
            row.repository_version_id = None;
        }
        if matches!(req.repository_version, Some(Some(_))) && req.repository.is_none() {
            row.repository_id = None;
        }
    }
    if matches!(req.repository, Some(Some(_))) && matches!(req.repository_version, Some(Some(_))) {
        checks.add(
            "non_field_errors",
            "Only one of the attributes 'repository' and 'repository_version' may be used simultaneously.",
        );
    }
    row.pulp_last_updated = now();
    if !checks.has("name") {
        checks.check("name", validate::name(&row.name));
    }
    if !checks.has("base_path") {
        checks.check("base_path", validate::oci_name(&row.base_path));
    }
    if !checks.has("name") {
        if let Some(other) = distribution::find_by_name(conn, &row.name)? {
            if other.id != row.id {
                checks.add("name", "distribution with this name already exists.");
            }
        }
    }
    if !checks.has("base_path") {
        if let Some(other) = distribution::find_by_base_path(conn, &row.base_path)? {
            if other.id != row.id {
                checks.add("base_path", "distribution with this base path already exists.");
            }
        }
    }
    checks.finish()?;
    Ok(row)
}

/// The distribution of `kind` with this id; one of the other kind is not found.
pub(super) async fn find_or_404(state: &AppState, id: String, kind: DistributionKind) -> Result<Distribution, ApiError> {
    state
        .db
        .run(move |c| distribution::find_of_kind(c, &id, kind.column()).map_err(DbError::from))
        .await?
        .ok_or_else(ApiError::not_found)
}

pub(super) fn host(req: &HttpRequest) -> String {
    req.connection_info().host().to_string()
}

/// How a view is made from a row (with what else it shows, read in the same connection).
pub(super) type LoadView<T> = fn(&mut DbConnection, Distribution, &str) -> Result<T, DbError>;

/// One page of the distributions of `kind`.
pub(super) async fn list_of<L: filters::Listed, T: Serialize + Send + 'static>(
    state: &AppState,
    req: &HttpRequest,
    query: &ListQuery<L>,
    kind: DistributionKind,
    load: LoadView<T>,
) -> Result<HttpResponse, ApiError> {
    let (criteria, window) = (query.criteria.clone(), query.window);
    let host = host(req);
    let rows = state
        .db
        .run(move |c| {
            let page = distribution::list(c, kind.column(), &criteria, window)?;
            let mut views = Vec::with_capacity(page.rows.len());
            for d in page.rows {
                views.push(load(c, d, &host)?);
            }
            Ok::<_, DbError>(crate::models::Page { count: page.count, rows: views })
        })
        .await?;
    Ok(query.respond(req, rows, |v| v))
}

/// One distribution of `kind`, as `load` shows it.
pub(super) async fn read_of<T: Send + 'static>(state: &AppState, req: &HttpRequest, id: String, kind: DistributionKind, load: LoadView<T>) -> Result<T, ApiError> {
    let row = find_or_404(state, id, kind).await?;
    let host = host(req);
    Ok(state.db.run(move |c| load(c, row, &host)).await?)
}

/// Validates a new distribution of `kind` and queues its creation (its href lands in the
/// task's `created_resources`).
pub(super) async fn create_of(state: &AppState, req: DistributionRequest, kind: DistributionKind) -> Result<HttpResponse, ApiError> {
    let row = state.db.run(move |c| apply(c, blank(kind), req, true, kind)).await?;
    // Base paths are unique across both kinds: every creation holds the one lock.
    let task = state
        .tasks
        .enqueue(state, tasks::DISTRIBUTION_CREATE, serde_json::json!({ "distribution": row }), vec![hrefs::DISTRIBUTIONS.to_string()])
        .await?;
    Ok(accepted(&task))
}

/// Queues the deletion of a distribution of `kind`.
pub(super) async fn remove_of(state: &AppState, id: String, kind: DistributionKind) -> Result<HttpResponse, ApiError> {
    let row = find_or_404(state, id, kind).await?;
    let task = state
        .tasks
        .enqueue(state, tasks::DISTRIBUTION_DELETE, serde_json::json!({ "id": row.id }), vec![kind.href(&row.id)])
        .await?;
    Ok(accepted(&task))
}

crate::listing!(
    DistributionListing,
    DistributionResponse,
    [
        filters::text("name", "Filter by name."),
        filters::LABELS,
        filters::text("base_path", "Filter by base path."),
        filters::filter("pulp_href", Kind::Id(hrefs::parse_distribution), filters::IN, "Only these distributions (hrefs)."),
        filters::filter("repository", Kind::Id(hrefs::parse_repository), filters::EXACT, "Only distributions serving this repository (href)."),
    ],
    ["name", "base_path", "pulp_created"]
);

/// List container distributions.
#[utoipa::path(
    tag = "Distributions: Container",
    operation_id = "distributions_container_container_list",
    params(DistributionListing),
    responses((status = 200, body = Paginated<DistributionResponse>), BadRequest, Unauthorized)
)]
#[get("/distributions/container/container/")]
pub async fn list(state: web::Data<AppState>, req: HttpRequest, query: ListQuery<DistributionListing>) -> Result<HttpResponse, ApiError> {
    list_of(&state, &req, &query, DistributionKind::Container, load_view).await
}

/// Create a container distribution (a task; its href lands in `created_resources`).
#[utoipa::path(
    tag = "Distributions: Container",
    operation_id = "distributions_container_container_create",
    request_body = DistributionRequest,
    responses((status = 202, body = AsyncOperationResponse), BadRequest, Unauthorized)
)]
#[post("/distributions/container/container/")]
pub async fn create(state: web::Data<AppState>, bytes: web::Bytes) -> Result<HttpResponse, ApiError> {
    create_of(&state, body::parse(&bytes)?, DistributionKind::Container).await
}

/// Inspect a container distribution.
#[utoipa::path(
    tag = "Distributions: Container",
    operation_id = "distributions_container_container_read",
    params(filters::DetailParams),
    responses((status = 200, body = DistributionResponse), BadRequest, Unauthorized, NotFound)
)]
#[get("/distributions/container/container/{id}/")]
pub async fn read(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<uuid::Uuid>,
    query: DetailQuery<DistributionResponse>,
) -> Result<HttpResponse, ApiError> {
    Ok(query.respond(read_of(&state, &req, id.to_string(), DistributionKind::Container, load_view).await?))
}

/// Validates an update of a distribution of `kind` and queues it.
pub(super) async fn update_with(state: &AppState, id: String, req: DistributionRequest, full: bool, kind: DistributionKind) -> Result<HttpResponse, ApiError> {
    let keep_labels = !full && req.pulp_labels.is_none();
    let existing = find_or_404(state, id, kind).await?;
    let row = state.db.run(move |c| apply(c, existing, req, full, kind)).await?;
    let resources = vec![kind.href(&row.id)];
    let args = serde_json::json!({ "distribution": row, tasks::KEEP_LABELS: keep_labels });
    let task = state
        .tasks
        .enqueue(state, tasks::DISTRIBUTION_UPDATE, args, resources)
        .await?;
    Ok(accepted(&task))
}

/// Update a container distribution.
#[utoipa::path(
    tag = "Distributions: Container",
    operation_id = "distributions_container_container_update",
    request_body = DistributionRequest,
    responses((status = 202, body = AsyncOperationResponse), BadRequest, Unauthorized, NotFound)
)]
#[put("/distributions/container/container/{id}/")]
pub async fn update(state: web::Data<AppState>, id: web::Path<uuid::Uuid>, bytes: web::Bytes) -> Result<HttpResponse, ApiError> {
    update_with(&state, id.to_string(), body::parse(&bytes)?, true, DistributionKind::Container).await
}

/// Update some fields of a container distribution.
#[utoipa::path(
    tag = "Distributions: Container",
    operation_id = "distributions_container_container_partial_update",
    request_body = PatchedDistributionRequest,
    responses((status = 202, body = AsyncOperationResponse), BadRequest, Unauthorized, NotFound)
)]
#[patch("/distributions/container/container/{id}/")]
pub async fn partial_update(state: web::Data<AppState>, id: web::Path<uuid::Uuid>, bytes: web::Bytes) -> Result<HttpResponse, ApiError> {
    update_with(&state, id.to_string(), body::parse(&bytes)?, false, DistributionKind::Container).await
}

/// Delete a container distribution.
#[utoipa::path(
    tag = "Distributions: Container",
    operation_id = "distributions_container_container_delete",
    responses((status = 202, body = AsyncOperationResponse), Unauthorized, NotFound)
)]
#[delete("/distributions/container/container/{id}/")]
pub async fn remove(state: web::Data<AppState>, id: web::Path<uuid::Uuid>) -> Result<HttpResponse, ApiError> {
    remove_of(&state, id.to_string(), DistributionKind::Container).await
}
