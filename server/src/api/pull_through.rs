//! `remotes/container/pull-through/` and `distributions/container/pull-through/`: a remote that
//! names an upstream registry rather than one repository, and the distribution that serves any
//! of its repositories at `/v2/<base_path>/<upstream repository>` without a sync. The rows and
//! rules are the container ones (remotes.rs, distributions.rs), told apart by their kind.

use actix_web::{delete, get, patch, post, put, web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::body::{self, double_option, Integer};
use super::distributions::{self, DistributionKind, DistributionRequest};
use super::filters::{self, DetailQuery, Kind, ListQuery};
use super::pagination::Paginated;
use super::remotes::{self, HiddenField, Policy, RemoteKind, RemoteRequest, RemoteResponse};
use super::responses::{BadRequest, NotFound, Unauthorized};
use super::{hrefs, timestamp, validate, AsyncOperationResponse};
use crate::app::AppState;
use crate::db::{DbConnection, DbError};
use crate::error::ApiError;
use crate::models::distribution::{self, Distribution};
use crate::models::remote::Remote;

/// A pull-through remote to create, or to replace with PUT (`PatchedPullThroughRemoteRequest`
/// for PATCH). The connection settings are a container remote's; there is no `upstream_name`.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct PullThroughRemoteRequest {
    /// A unique name for this remote (among all remotes).
    #[schema(value_type = String, required = true, min_length = 1, max_length = 255, pattern = r"\S")]
    pub name: Option<String>,
    /// The URL of the upstream registry (http or https), e.g. `https://registry-1.docker.io`.
    #[schema(value_type = String, required = true, example = "https://registry-1.docker.io")]
    pub url: Option<String>,
    /// `on_demand` (default) or `streamed`.
    #[schema(value_type = Option<Policy>)]
    pub policy: Option<String>,
    /// Upstream repositories that may be pulled through (`*` and `?` wildcards, e.g.
    /// `library/*`); null allows every one.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<Vec<String>>)]
    pub includes: Option<Option<Vec<String>>>,
    /// Upstream repositories that may not be pulled through (`*` and `?` wildcards).
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<Vec<String>>)]
    pub excludes: Option<Option<Vec<String>>>,
    /// Seconds a pulled tag is served before it is checked upstream again (0: on every pull;
    /// at most a year). Default 300.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<i64>, minimum = 0, maximum = 31536000)]
    pub tag_ttl: Option<Option<Integer>>,
    /// Whether an on-demand download that failed for a transient cause is retried in the
    /// background. Default false.
    pub retry_in_background: Option<bool>,
    /// Whether a client's GET of an image manifest starts fetching the image's blobs that are
    /// not stored, in the background. Default true; false (and true refused) with `streamed`.
    pub prefetch: Option<bool>,
    /// Upstream username (write-only).
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub username: Option<Option<String>>,
    /// Upstream password (write-only).
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub password: Option<Option<String>>,
    pub tls_validation: Option<bool>,
    /// PEM CA certificate(s) to trust for the upstream.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub ca_cert: Option<Option<String>>,
    /// An http(s) proxy for requests to the upstream.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub proxy_url: Option<Option<String>>,
    /// The proxy's user name (write-only); a user name inside `proxy_url` sets it too.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub proxy_username: Option<Option<String>>,
    /// The proxy's password (write-only; needs `proxy_username`).
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub proxy_password: Option<Option<String>>,
    /// PEM client certificate presented to the upstream (with `client_key`).
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub client_cert: Option<Option<String>>,
    /// PEM private key of `client_cert` (write-only).
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub client_key: Option<Option<String>>,
    /// Headers sent with every request to the upstream: `[{"X-Name": "value"}, ...]`.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<Vec<std::collections::HashMap<String, String>>>)]
    pub headers: Option<Option<serde_json::Value>>,
    /// Requests per second to the upstream; 0 or null is unlimited.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<i64>, minimum = 0, maximum = 2147483647)]
    pub rate_limit: Option<Option<Integer>>,
    /// Labels: string keys and values.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = std::collections::HashMap<String, String>, required = false)]
    pub pulp_labels: Option<Option<serde_json::Value>>,
    /// Downloads run at once (1 to 100).
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 100)]
    pub download_concurrency: Option<Option<Integer>>,
    /// Seconds to wait for a connection (more than 0, at most 86400).
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<f64>, exclusive_minimum = 0, maximum = 86400)]
    pub connect_timeout: Option<Option<f64>>,
    /// Seconds a whole request may take (more than 0, at most 86400).
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<f64>, exclusive_minimum = 0, maximum = 86400)]
    pub total_timeout: Option<Option<f64>>,
    /// Seconds to wait for a TCP connection (more than 0, at most 86400).
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<f64>, exclusive_minimum = 0, maximum = 86400)]
    pub sock_connect_timeout: Option<Option<f64>>,
    /// Seconds to wait for each read from the upstream (more than 0, at most 86400).
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<f64>, exclusive_minimum = 0, maximum = 86400)]
    pub sock_read_timeout: Option<Option<f64>>,
    /// Retries of a failed request (0 to 100).
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<i64>, minimum = 0, maximum = 100)]
    pub max_retries: Option<Option<Integer>>,
}

super::responses::patched_schema!(
    /// Some fields of a pull-through remote (PATCH): the same fields as
    /// `PullThroughRemoteRequest`, none required.
    PatchedPullThroughRemoteRequest,
    PullThroughRemoteRequest
);

/// The container remote's request carries every rule; `includes`/`excludes` are stored where a
/// container remote keeps its tag filters, here over repository names.
impl From<PullThroughRemoteRequest> for RemoteRequest {
    fn from(r: PullThroughRemoteRequest) -> Self {
        RemoteRequest {
            name: r.name,
            url: r.url,
            policy: r.policy,
            includes: r.includes,
            excludes: r.excludes,
            tag_ttl: r.tag_ttl,
            retry_in_background: r.retry_in_background,
            prefetch: r.prefetch,
            username: r.username,
            password: r.password,
            tls_validation: r.tls_validation,
            ca_cert: r.ca_cert,
            proxy_url: r.proxy_url,
            proxy_username: r.proxy_username,
            proxy_password: r.proxy_password,
            client_cert: r.client_cert,
            client_key: r.client_key,
            headers: r.headers,
            rate_limit: r.rate_limit,
            pulp_labels: r.pulp_labels,
            download_concurrency: r.download_concurrency,
            connect_timeout: r.connect_timeout,
            total_timeout: r.total_timeout,
            sock_connect_timeout: r.sock_connect_timeout,
            sock_read_timeout: r.sock_read_timeout,
            max_retries: r.max_retries,
            ..RemoteRequest::default()
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PullThroughRemoteResponse {
    pub pulp_href: String,
    /// Pulp's resource name: `prn:container.containerpullthroughremote:<id>`.
    pub prn: String,
    pub pulp_created: DateTime<Utc>,
    pub pulp_last_updated: DateTime<Utc>,
    pub name: String,
    pub url: String,
    pub policy: String,
    /// Upstream repositories that may be pulled through (null: all).
    pub includes: Option<Vec<String>>,
    /// Upstream repositories that may not be pulled through.
    pub excludes: Option<Vec<String>>,
    /// Seconds a pulled tag is served before it is checked upstream again.
    pub tag_ttl: i64,
    pub retry_in_background: bool,
    pub prefetch: bool,
    pub tls_validation: bool,
    pub ca_cert: Option<String>,
    pub client_cert: Option<String>,
    /// The proxy's URL without its credentials (they are write-only: see `hidden_fields`).
    pub proxy_url: Option<String>,
    pub download_concurrency: Option<i32>,
    pub connect_timeout: Option<f64>,
    pub total_timeout: Option<f64>,
    pub sock_connect_timeout: Option<f64>,
    pub sock_read_timeout: Option<f64>,
    pub max_retries: Option<i32>,
    #[schema(value_type = Option<Vec<std::collections::HashMap<String, String>>>)]
    pub headers: Option<serde_json::Value>,
    pub rate_limit: Option<i32>,
    #[schema(value_type = std::collections::HashMap<String, String>)]
    pub pulp_labels: serde_json::Value,
    /// Write-only fields and whether each is set.
    pub hidden_fields: Vec<HiddenField>,
}

/// The container remote's view (which hides the secrets), less what a pull-through remote lacks.
impl From<Remote> for PullThroughRemoteResponse {
    fn from(r: Remote) -> Self {
        let (id, tag_ttl) = (r.id.clone(), r.tag_ttl);
        let v = RemoteResponse::from(r);
        PullThroughRemoteResponse {
            pulp_href: hrefs::remote_pull_through(&id),
            prn: format!("prn:container.containerpullthroughremote:{id}"),
            pulp_created: v.pulp_created,
            pulp_last_updated: v.pulp_last_updated,
            name: v.name,
            url: v.url,
            policy: v.policy,
            includes: v.includes,
            excludes: v.excludes,
            tag_ttl,
            retry_in_background: v.retry_in_background,
            prefetch: v.prefetch,
            tls_validation: v.tls_validation,
            ca_cert: v.ca_cert,
            client_cert: v.client_cert,
            proxy_url: v.proxy_url,
            download_concurrency: v.download_concurrency,
            connect_timeout: v.connect_timeout,
            total_timeout: v.total_timeout,
            sock_connect_timeout: v.sock_connect_timeout,
            sock_read_timeout: v.sock_read_timeout,
            max_retries: v.max_retries,
            headers: v.headers,
            rate_limit: v.rate_limit,
            pulp_labels: v.pulp_labels,
            hidden_fields: v.hidden_fields,
        }
    }
}

crate::listing!(
    PullThroughRemoteListing,
    PullThroughRemoteResponse,
    [
        filters::text("name", "Filter by name."),
        filters::LABELS,
        filters::filter("pulp_href", Kind::Id(hrefs::parse_remote_pull_through), filters::IN, "Only these remotes (hrefs)."),
        filters::filter("pulp_last_updated", Kind::Time, filters::RANGE_LOOKUPS, "Filter by last update time."),
    ],
    ["name", "pulp_created", "pulp_last_updated", "url", "policy"]
);

/// List pull-through remotes.
#[utoipa::path(
    tag = "Remotes: Pull-Through",
    operation_id = "remotes_container_pull_through_list",
    params(PullThroughRemoteListing),
    responses((status = 200, body = Paginated<PullThroughRemoteResponse>), BadRequest, Unauthorized)
)]
#[get("/remotes/container/pull-through/")]
pub async fn remote_list(state: web::Data<AppState>, req: HttpRequest, query: ListQuery<PullThroughRemoteListing>) -> Result<HttpResponse, ApiError> {
    remotes::list_of(&state, &req, &query, RemoteKind::PullThrough, PullThroughRemoteResponse::from).await
}

/// Create a pull-through remote.
#[utoipa::path(
    tag = "Remotes: Pull-Through",
    operation_id = "remotes_container_pull_through_create",
    request_body = PullThroughRemoteRequest,
    responses((status = 201, body = PullThroughRemoteResponse), BadRequest, Unauthorized)
)]
#[post("/remotes/container/pull-through/")]
pub async fn remote_create(state: web::Data<AppState>, bytes: web::Bytes) -> Result<HttpResponse, ApiError> {
    let req: PullThroughRemoteRequest = body::parse(&bytes)?;
    let row = remotes::create_of(&state, req.into(), RemoteKind::PullThrough).await?;
    Ok(HttpResponse::Created().json(PullThroughRemoteResponse::from(row)))
}

/// Inspect a pull-through remote.
#[utoipa::path(
    tag = "Remotes: Pull-Through",
    operation_id = "remotes_container_pull_through_read",
    params(filters::DetailParams),
    responses((status = 200, body = PullThroughRemoteResponse), BadRequest, Unauthorized, NotFound)
)]
#[get("/remotes/container/pull-through/{id}/")]
pub async fn remote_read(
    state: web::Data<AppState>,
    id: web::Path<uuid::Uuid>,
    query: DetailQuery<PullThroughRemoteResponse>,
) -> Result<HttpResponse, ApiError> {
    let row = remotes::find_or_404(&state, id.to_string(), RemoteKind::PullThrough).await?;
    Ok(query.respond(PullThroughRemoteResponse::from(row)))
}

/// Update a pull-through remote (every field; absent ones reset to defaults). The remotes it
/// made for upstream repositories take its new settings too.
#[utoipa::path(
    tag = "Remotes: Pull-Through",
    operation_id = "remotes_container_pull_through_update",
    request_body = PullThroughRemoteRequest,
    responses((status = 202, body = AsyncOperationResponse), BadRequest, Unauthorized, NotFound)
)]
#[put("/remotes/container/pull-through/{id}/")]
pub async fn remote_update(state: web::Data<AppState>, id: web::Path<uuid::Uuid>, bytes: web::Bytes) -> Result<HttpResponse, ApiError> {
    let req: PullThroughRemoteRequest = body::parse(&bytes)?;
    remotes::update_with(&state, id.to_string(), req.into(), true, RemoteKind::PullThrough).await
}

/// Update some fields of a pull-through remote (and of the remotes it made).
#[utoipa::path(
    tag = "Remotes: Pull-Through",
    operation_id = "remotes_container_pull_through_partial_update",
    request_body = PatchedPullThroughRemoteRequest,
    responses((status = 202, body = AsyncOperationResponse), BadRequest, Unauthorized, NotFound)
)]
#[patch("/remotes/container/pull-through/{id}/")]
pub async fn remote_partial_update(state: web::Data<AppState>, id: web::Path<uuid::Uuid>, bytes: web::Bytes) -> Result<HttpResponse, ApiError> {
    let req: PullThroughRemoteRequest = body::parse(&bytes)?;
    remotes::update_with(&state, id.to_string(), req.into(), false, RemoteKind::PullThrough).await
}

/// Delete a pull-through remote.
#[utoipa::path(
    tag = "Remotes: Pull-Through",
    operation_id = "remotes_container_pull_through_delete",
    responses((status = 202, body = AsyncOperationResponse), Unauthorized, NotFound)
)]
#[delete("/remotes/container/pull-through/{id}/")]
pub async fn remote_remove(state: web::Data<AppState>, id: web::Path<uuid::Uuid>) -> Result<HttpResponse, ApiError> {
    remotes::remove_of(&state, id.to_string(), RemoteKind::PullThrough).await
}

/// A pull-through distribution to create, or to replace with PUT
/// (`PatchedPullThroughDistributionRequest` for PATCH).
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct PullThroughDistributionRequest {
    /// A unique name for this distribution (among all distributions).
    #[schema(value_type = String, required = true, min_length = 1, max_length = 255, pattern = r"\S")]
    pub name: Option<String>,
    /// Clients pull `/v2/<base_path>/<upstream repository>`. OCI name grammar; unique among all
    /// distributions.
    #[schema(
        value_type = String,
        required = true,
        max_length = 255,
        example = "docker-cache",
        pattern = r"^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$"
    )]
    pub base_path: Option<String>,
    /// The pull-through remote to fetch from (its `pulp_href`).
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = String, required = true)]
    pub remote: Option<Option<String>>,
    /// Private distributions need credentials to pull; what they make is private too.
    pub private: Option<bool>,
    /// Hidden distributions are left out of the registry's `/v2/_catalog`.
    pub hidden: Option<bool>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
    /// Labels: string keys and values.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = std::collections::HashMap<String, String>, required = false)]
    pub pulp_labels: Option<Option<serde_json::Value>>,
}

super::responses::patched_schema!(
    /// Some fields of a pull-through distribution (PATCH): the same fields as
    /// `PullThroughDistributionRequest`, none required.
    PatchedPullThroughDistributionRequest,
    PullThroughDistributionRequest
);

impl From<PullThroughDistributionRequest> for DistributionRequest {
    fn from(r: PullThroughDistributionRequest) -> Self {
        DistributionRequest {
            name: r.name,
            base_path: r.base_path,
            remote: r.remote,
            private: r.private,
            hidden: r.hidden,
            description: r.description,
            pulp_labels: r.pulp_labels,
            ..DistributionRequest::default()
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PullThroughDistributionResponse {
    pub pulp_href: String,
    /// Pulp's resource name: `prn:container.containerpullthroughdistribution:<id>`.
    pub prn: String,
    pub pulp_created: DateTime<Utc>,
    pub pulp_last_updated: DateTime<Utc>,
    pub name: String,
    pub base_path: String,
    /// The pull-through remote (null once that remote is deleted).
    pub remote: Option<String>,
    pub private: bool,
    pub hidden: bool,
    pub description: Option<String>,
    #[schema(value_type = std::collections::HashMap<String, String>)]
    pub pulp_labels: serde_json::Value,
    /// The container distributions made by pulling through this one (read-only).
    pub distributions: Vec<String>,
}

fn load_view(conn: &mut DbConnection, d: Distribution, _host: &str) -> Result<PullThroughDistributionResponse, DbError> {
    let made = distribution::made_by(conn, &d.id)?;
    Ok(PullThroughDistributionResponse {
        pulp_href: hrefs::distribution_pull_through(&d.id),
        prn: format!("prn:container.containerpullthroughdistribution:{}", d.id),
        pulp_created: timestamp(d.pulp_created),
        pulp_last_updated: timestamp(d.pulp_last_updated),
        remote: d.remote_id.as_deref().map(hrefs::remote_pull_through),
        pulp_labels: validate::stored_labels(&d.pulp_labels),
        distributions: made.iter().map(|id| hrefs::distribution(id)).collect(),
        name: d.name,
        base_path: d.base_path,
        private: d.private,
        hidden: d.hidden,
        description: d.description,
    })
}

crate::listing!(
    PullThroughDistributionListing,
    PullThroughDistributionResponse,
    [
        filters::text("name", "Filter by name."),
        filters::LABELS,
        filters::text("base_path", "Filter by base path."),
        filters::filter("pulp_href", Kind::Id(hrefs::parse_distribution_pull_through), filters::IN, "Only these distributions (hrefs)."),
    ],
    ["name", "base_path", "pulp_created"]
);

/// List pull-through distributions.
#[utoipa::path(
    tag = "Distributions: Pull-Through",
    operation_id = "distributions_container_pull_through_list",
    params(PullThroughDistributionListing),
    responses((status = 200, body = Paginated<PullThroughDistributionResponse>), BadRequest, Unauthorized)
)]
#[get("/distributions/container/pull-through/")]
pub async fn distribution_list(
    state: web::Data<AppState>,
    req: HttpRequest,
    query: ListQuery<PullThroughDistributionListing>,
) -> Result<HttpResponse, ApiError> {
    distributions::list_of(&state, &req, &query, DistributionKind::PullThrough, load_view).await
}

/// Create a pull-through distribution (a task; its href lands in `created_resources`).
#[utoipa::path(
    tag = "Distributions: Pull-Through",
    operation_id = "distributions_container_pull_through_create",
    request_body = PullThroughDistributionRequest,
    responses((status = 202, body = AsyncOperationResponse), BadRequest, Unauthorized)
)]
#[post("/distributions/container/pull-through/")]
pub async fn distribution_create(state: web::Data<AppState>, bytes: web::Bytes) -> Result<HttpResponse, ApiError> {
    let req: PullThroughDistributionRequest = body::parse(&bytes)?;
    distributions::create_of(&state, req.into(), DistributionKind::PullThrough).await
}

/// Inspect a pull-through distribution.
#[utoipa::path(
    tag = "Distributions: Pull-Through",
    operation_id = "distributions_container_pull_through_read",
    params(filters::DetailParams),
    responses((status = 200, body = PullThroughDistributionResponse), BadRequest, Unauthorized, NotFound)
)]
#[get("/distributions/container/pull-through/{id}/")]
pub async fn distribution_read(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<uuid::Uuid>,
    query: DetailQuery<PullThroughDistributionResponse>,
) -> Result<HttpResponse, ApiError> {
    Ok(query.respond(distributions::read_of(&state, &req, id.to_string(), DistributionKind::PullThrough, load_view).await?))
}

/// Update a pull-through distribution.
#[utoipa::path(
    tag = "Distributions: Pull-Through",
    operation_id = "distributions_container_pull_through_update",
    request_body = PullThroughDistributionRequest,
    responses((status = 202, body = AsyncOperationResponse), BadRequest, Unauthorized, NotFound)
)]
#[put("/distributions/container/pull-through/{id}/")]
pub async fn distribution_update(state: web::Data<AppState>, id: web::Path<uuid::Uuid>, bytes: web::Bytes) -> Result<HttpResponse, ApiError> {
    let req: PullThroughDistributionRequest = body::parse(&bytes)?;
    distributions::update_with(&state, id.to_string(), req.into(), true, DistributionKind::PullThrough).await
}

/// Update some fields of a pull-through distribution.
#[utoipa::path(
    tag = "Distributions: Pull-Through",
    operation_id = "distributions_container_pull_through_partial_update",
    request_body = PatchedPullThroughDistributionRequest,
    responses((status = 202, body = AsyncOperationResponse), BadRequest, Unauthorized, NotFound)
)]
#[patch("/distributions/container/pull-through/{id}/")]
pub async fn distribution_partial_update(
    state: web::Data<AppState>,
    id: web::Path<uuid::Uuid>,
    bytes: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let req: PullThroughDistributionRequest = body::parse(&bytes)?;
    distributions::update_with(&state, id.to_string(), req.into(), false, DistributionKind::PullThrough).await
}

/// Delete a pull-through distribution (the distributions it made stay, no longer linked to it).
#[utoipa::path(
    tag = "Distributions: Pull-Through",
    operation_id = "distributions_container_pull_through_delete",
    responses((status = 202, body = AsyncOperationResponse), Unauthorized, NotFound)
)]
#[delete("/distributions/container/pull-through/{id}/")]
pub async fn distribution_remove(state: web::Data<AppState>, id: web::Path<uuid::Uuid>) -> Result<HttpResponse, ApiError> {
    distributions::remove_of(&state, id.to_string(), DistributionKind::PullThrough).await
}
