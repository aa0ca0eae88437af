//! `remotes/container/container/`: where and how to fetch from an upstream registry.

use actix_web::{delete, get, patch, post, put, web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::body::{self, double_option, Integer};
use super::filters::{self, DetailQuery, Kind, ListQuery};
use super::pagination::Paginated;
use super::responses::{BadRequest, NotFound, Unauthorized};
use super::validate::{self, Checks};
use super::{accepted, hrefs, timestamp, AsyncOperationResponse};
use crate::app::AppState;
use crate::db::{is_unique_violation, DbConnection, DbError};
use crate::error::ApiError;
use crate::models::remote::{self, Remote};
use crate::models::{new_id, now};
use crate::tasks;

/// A remote to create, or to replace with PUT (`PatchedRemoteRequest` for PATCH).
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct RemoteRequest {
    /// A unique name for this remote.
    #[schema(value_type = String, required = true, min_length = 1, max_length = 255, pattern = r"\S")]
    pub name: Option<String>,
    /// The URL of the upstream registry (http or https), e.g. `https://registry-1.docker.io`.
    #[schema(value_type = String, required = true, example = "https://registry-1.docker.io")]
    pub url: Option<String>,
    /// Name of the repository on the upstream registry, e.g. `library/busybox`.
    #[schema(
        value_type = String,
        required = true,
        max_length = 255,
        example = "library/busybox",
        pattern = r"^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$"
    )]
    pub upstream_name: Option<String>,
    /// `immediate` (default), `on_demand` or `streamed`.
    #[schema(value_type = Option<Policy>)]
    pub policy: Option<String>,
    /// Tags to sync (`*` and `?` wildcards); null syncs every tag.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<Vec<String>>)]
    pub includes: Option<Option<Vec<String>>>,
    /// Tags to leave out (`*` and `?` wildcards).
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<Vec<String>>)]
    pub excludes: Option<Option<Vec<String>>>,
    /// The former name of `includes` (the same setting).
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<Vec<String>>, deprecated)]
    pub include_tags: Option<Option<Vec<String>>>,
    /// The former name of `excludes` (the same setting).
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<Vec<String>>, deprecated)]
    pub exclude_tags: Option<Option<Vec<String>>>,
    /// Upstream username (write-only).
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub username: Option<Option<String>>,
    /// Upstream password (write-only).
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub password: Option<Option<String>>,
    pub tls_validation: Option<bool>,
    /// Whether a sync also brings what refers to each manifest it syncs (signatures,
    /// attestations, SBOMs: the upstream's referrers API, else the `sha256-<hex>` fallback tag,
    /// and cosign's `.sig`, `.att` and `.sbom` tags), whatever `includes` and `excludes` say.
    /// Default true.
    pub include_referrers: Option<bool>,
    /// Whether an on-demand download that failed for a transient cause (a 5xx, a 429, a
    /// timeout, a broken connection) is retried in the background with backoff, so that a later
    /// client finds the blob stored. The client that met the failure still gets its error.
    /// Default false.
    pub retry_in_background: Option<bool>,
    /// Whether a client's GET of an image manifest starts fetching the image's config and
    /// layers that are not stored, in the background (at most `download_concurrency` at once),
    /// so the blob GETs that follow join downloads already under way. A HEAD does not. Default
    /// true, false with the `streamed` policy, which keeps nothing (true is refused with it).
    pub prefetch: Option<bool>,
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
    /// Downloads run at once during an immediate sync, and prefetches at once (1 to 100; default 10).
    // Bounds: validate::MAX_DOWNLOAD_CONCURRENCY, MAX_RETRIES, MAX_TIMEOUT.
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
    /// Seconds to wait for a TCP connection (more than 0, at most 86400); with
    /// `connect_timeout` too, the smaller wins.
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
    /// A pull-through remote's `tag_ttl` (not a container remote's field: no body sets it here).
    #[serde(skip)]
    pub tag_ttl: Option<Option<Integer>>,
}

/// The two kinds of remote: one table, one set of rules, two endpoints that never see each
/// other's rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteKind {
    Container,
    PullThrough,
}

impl RemoteKind {
    /// The value of the `kind` column.
    pub fn column(self) -> &'static str {
        match self {
            RemoteKind::Container => remote::CONTAINER,
            RemoteKind::PullThrough => remote::PULL_THROUGH,
        }
    }

    pub fn href(self, id: &str) -> String {
        match self {
            RemoteKind::Container => hrefs::remote(id),
            RemoteKind::PullThrough => hrefs::remote_pull_through(id),
        }
    }

    fn default_policy(self) -> &'static str {
        match self {
            RemoteKind::Container => "immediate",
            RemoteKind::PullThrough => PULL_THROUGH_POLICIES[0],
        }
    }
}

/// A pull-through remote has nothing to sync ahead: content comes when a client asks for it.
const PULL_THROUGH_POLICIES: [&str; 2] = ["on_demand", "streamed"];

/// The longest a pull-through tag may be served unchecked: a year, in seconds.
pub const MAX_TAG_TTL: i64 = 31_536_000;

super::responses::patched_schema!(
    /// Some fields of a remote (PATCH): the same fields as `RemoteRequest`, none required.
    PatchedRemoteRequest,
    RemoteRequest
);

/// How a remote's blobs are fetched.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    Immediate,
    OnDemand,
    Streamed,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HiddenField {
    pub name: String,
    pub is_set: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RemoteResponse {
    pub pulp_href: String,
    /// Pulp's resource name: `prn:container.containerremote:<id>`.
    pub prn: String,
    pub pulp_created: DateTime<Utc>,
    pub pulp_last_updated: DateTime<Utc>,
    pub name: String,
    pub url: String,
    pub upstream_name: String,
    pub policy: String,
    pub includes: Option<Vec<String>>,
    pub excludes: Option<Vec<String>>,
    /// The same as `includes` (its former name).
    #[schema(deprecated)]
    pub include_tags: Option<Vec<String>>,
    /// The same as `excludes` (its former name).
    #[schema(deprecated)]
    pub exclude_tags: Option<Vec<String>>,
    pub tls_validation: bool,
    /// Whether a sync also brings the referrers (signatures, attestations, SBOMs) of what it syncs.
    pub include_referrers: bool,
    /// Whether failed on-demand downloads are retried in the background.
    pub retry_in_background: bool,
    /// Whether a manifest GET starts fetching the image's blobs that are not stored.
    pub prefetch: bool,
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

impl From<Remote> for RemoteResponse {
    fn from(r: Remote) -> Self {
        let proxy_credentials = r.proxy_url.as_deref().map(remote::url_credentials).unwrap_or_default();
        let hidden_fields = vec![
            HiddenField { name: "username".into(), is_set: r.username.is_some() },
            HiddenField { name: "password".into(), is_set: r.password.is_some() },
            HiddenField { name: "proxy_username".into(), is_set: proxy_credentials.0 },
            HiddenField { name: "proxy_password".into(), is_set: proxy_credentials.1 },
            HiddenField { name: "client_key".into(), is_set: r.client_key.is_some() },
        ];
        RemoteResponse {
            pulp_href: hrefs::remote(&r.id),
            prn: format!("prn:container.containerremote:{}", r.id),
            pulp_created: timestamp(r.pulp_created),
            pulp_last_updated: timestamp(r.pulp_last_updated),
            includes: r.include_tags(),
            excludes: r.exclude_tags(),
            include_tags: r.include_tags(),
            exclude_tags: r.exclude_tags(),
            headers: r.headers.as_deref().and_then(|h| serde_json::from_str(h).ok()),
            pulp_labels: validate::stored_labels(&r.pulp_labels),
            name: r.name,
            url: r.url,
            upstream_name: r.upstream_name,
            policy: r.policy,
            tls_validation: r.tls_validation,
            include_referrers: r.include_referrers,
            retry_in_background: r.retry_in_background,
            prefetch: r.prefetch,
            ca_cert: r.ca_cert,
            proxy_url: r.proxy_url.as_deref().map(remote::without_credentials),
            download_concurrency: r.download_concurrency,
            connect_timeout: r.connect_timeout,
            total_timeout: r.total_timeout,
            sock_connect_timeout: r.sock_connect_timeout,
            sock_read_timeout: r.sock_read_timeout,
            max_retries: r.max_retries,
            rate_limit: r.rate_limit,
            client_cert: r.client_cert,
            hidden_fields,
        }
    }
}

fn blank(kind: RemoteKind) -> Remote {
    let t = now();
    Remote {
        id: new_id(),
        name: String::new(),
        url: String::new(),
        upstream_name: String::new(),
        policy: kind.default_policy().into(),
        include_tags: None,
        exclude_tags: None,
        username: None,
        password: None,
        tls_validation: true,
        ca_cert: None,
        proxy_url: None,
        download_concurrency: None,
        connect_timeout: None,
        total_timeout: None,
        max_retries: None,
        pulp_created: t,
        pulp_last_updated: t,
        sock_connect_timeout: None,
        sock_read_timeout: None,
        headers: None,
        rate_limit: None,
        client_cert: None,
        client_key: None,
        pulp_labels: "{}".into(),
        include_referrers: true,
        kind: kind.column().into(),
        tag_ttl: remote::DEFAULT_TAG_TTL,
        retry_in_background: false,
        prefetch: true,
    }
}

/// Applies a request to a row of `kind` and checks the result. With `full` (create, PUT),
/// absent fields take their defaults and the required ones must be present.
fn apply(conn: &mut DbConnection, existing: Remote, req: RemoteRequest, full: bool, kind: RemoteKind) -> Result<Remote, ApiError> {
    let mut checks = Checks::default();
    let mut row = if full {
        checks.required("name", &req.name);
        checks.required("url", &req.url);
        if kind == RemoteKind::Container {
            checks.required("upstream_name", &req.upstream_name);
        }
        // A container remote has no tag_ttl field: what a pull-through remote gave it stays.
        Remote { id: existing.id, pulp_created: existing.pulp_created, tag_ttl: existing.tag_ttl, ..blank(kind) }
    } else {
        existing
    };
    let tags = |v: Option<Vec<String>>| v.map(|t| serde_json::to_string(&t).expect("strings serialise"));
    if let Some(v) = req.name { row.name = v; }
    if let Some(v) = req.url { row.url = v; }
    if let Some(v) = req.upstream_name { row.upstream_name = v; }
    let was_streamed = row.policy == "streamed";
    if let Some(v) = req.policy { row.policy = v; }
    if let Some(v) = alias(&mut checks, ("includes", req.includes), ("include_tags", req.include_tags)) { row.include_tags = tags(v); }
    if let Some(v) = alias(&mut checks, ("excludes", req.excludes), ("exclude_tags", req.exclude_tags)) { row.exclude_tags = tags(v); }
    if let Some(v) = req.username { row.username = v; }
    if let Some(v) = req.password { row.password = v; }
    if let Some(v) = req.tls_validation { row.tls_validation = v; }
    if let Some(v) = req.include_referrers { row.include_referrers = v; }
    if let Some(v) = req.retry_in_background { row.retry_in_background = v; }
    apply_prefetch(&mut checks, &mut row, req.prefetch, full || was_streamed);
    if let Some(v) = req.ca_cert { row.ca_cert = v; }
    if let Some(v) = req.client_cert { row.client_cert = v; }
    if let Some(v) = req.client_key { row.client_key = v; }
    apply_proxy(&mut checks, &mut row, req.proxy_url, req.proxy_username, req.proxy_password);
    if let Some(v) = req.connect_timeout { row.connect_timeout = v; }
    if let Some(v) = req.total_timeout { row.total_timeout = v; }
    if let Some(v) = req.sock_connect_timeout { row.sock_connect_timeout = v; }
    if let Some(v) = req.sock_read_timeout { row.sock_read_timeout = v; }
    if let Some(v) = req.headers {
        row.headers = match v {
            None => None,
            Some(h) => match validate::headers(&h) {
                Ok(json) => Some(json),
                Err(m) => {
                    checks.add("headers", m);
                    None
                }
            },
        };
    }
    if let Some(v) = req.pulp_labels {
        match validate::labels(&v.unwrap_or_default()) {
            Ok(json) => row.pulp_labels = json,
            Err(m) => checks.add("pulp_labels", m),
        }
    }
    if let Some(v) = req.rate_limit.map(|v| v.map(|n| n.0)) {
        if let Some(n) = v {
            checks.check("rate_limit", validate::int_range(n, 0, i64::from(i32::MAX)));
        }
        row.rate_limit = v.map(|n| n.clamp(0, i64::from(i32::MAX)) as i32);
    }
    if let Some(v) = req.download_concurrency.map(|v| v.map(|n| n.0)) {
        if let Some(n) = v {
            checks.check("download_concurrency", validate::int_range(n, 1, validate::MAX_DOWNLOAD_CONCURRENCY));
        }
        row.download_concurrency = v.map(|n| n.clamp(0, i64::from(i32::MAX)) as i32);
    }
    if let Some(v) = req.max_retries.map(|v| v.map(|n| n.0)) {
        if let Some(n) = v {
            checks.check("max_retries", validate::int_range(n, 0, validate::MAX_RETRIES));
        }
        row.max_retries = v.map(|n| n.clamp(0, i64::from(i32::MAX)) as i32);
    }
    match req.tag_ttl {
        Some(Some(Integer(n))) => {
            checks.check("tag_ttl", validate::int_range(n, 0, MAX_TAG_TTL));
            row.tag_ttl = n;
        }
        Some(None) => checks.add("tag_ttl", "This field may not be null."),
        None if full && kind == RemoteKind::PullThrough => row.tag_ttl = remote::DEFAULT_TAG_TTL,
        None => {}
    }
    row.pulp_last_updated = now();

    if !checks.has("name") {
        checks.check("name", validate::name(&row.name));
    }
    if !checks.has("url") {
        checks.check("url", validate::http_url(&row.url));
    }
    if !checks.has("upstream_name") && !row.upstream_name.is_empty() {
        checks.check("upstream_name", validate::oci_name(&row.upstream_name));
    }
    match kind {
        RemoteKind::Container => checks.check("policy", validate::policy(&row.policy)),
        RemoteKind::PullThrough if !PULL_THROUGH_POLICIES.contains(&row.policy.as_str()) => {
            checks.add("policy", format!("\"{}\" is not a valid choice. Choose one of: {}.", row.policy, PULL_THROUGH_POLICIES.join(", ")));
        }
        RemoteKind::PullThrough => {}
    }
    if let Some(p) = &row.proxy_url {
        checks.check("proxy_url", validate::http_url(p));
    }
    // Checked on the row, so that a PATCH cannot keep an out-of-range value stored earlier.
    for (field, v) in [
        ("connect_timeout", row.connect_timeout),
        ("total_timeout", row.total_timeout),
        ("sock_connect_timeout", row.sock_connect_timeout),
        ("sock_read_timeout", row.sock_read_timeout),
    ] {
        if let Some(v) = v {
            checks.check(field, validate::timeout(v));
        }
    }
    match (&row.client_cert, &row.client_key) {
        (Some(cert), Some(key)) => {
            if let Err((field, m)) = crate::upstream::client_identity(cert, key) {
                checks.add(field, m);
            }
        }
        (Some(_), None) => checks.add("client_key", "A client_key is needed with a client_cert."),
        (None, Some(_)) => checks.add("client_cert", "A client_cert is needed with a client_key."),
        (None, None) => {}
    }
    if !checks.has("name") {
        if let Some(other) = remote::find_by_name(conn, &row.name)? {
            if other.id != row.id {
                checks.add("name", "remote with this name already exists.");
            }
        }
    }
    checks.finish()?;
    Ok(row)
}

/// `prefetch` defaults to true, to false with the streamed policy (a prefetch would download
/// and discard). Not sent, it takes that default when the row is new or replaced, when the
/// policy becomes streamed, or when it leaves streamed (`reset`); sent true with streamed, it is
/// refused. Called after the policy is applied.
fn apply_prefetch(checks: &mut Checks, row: &mut Remote, sent: Option<bool>, reset: bool) {
    let streamed = row.policy == "streamed";
    match sent {
        Some(true) if streamed => checks.add("prefetch", "prefetch cannot be true with the streamed policy, which keeps nothing."),
        Some(v) => row.prefetch = v,
        None if reset || streamed => row.prefetch = !streamed,
        None => {}
    }
}

/// A field sent under its name, its former name, or both (then with the same value).
fn alias<T: PartialEq>(checks: &mut Checks, (name, value): (&str, Option<T>), (old_name, old_value): (&str, Option<T>)) -> Option<T> {
    match (value, old_value) {
        (Some(a), Some(b)) if a != b => {
            checks.add(name, format!("'{name}' and '{old_name}' (its former name) disagree; send one of them."));
            None
        }
        (a, b) => a.or(b),
    }
}

/// The proxy URL and its credentials, which live in the URL's user info (stored as a secret,
/// never shown). A new `proxy_url` without credentials keeps the ones set before, as Pulp keeps
/// its separate `proxy_username`/`proxy_password`; `proxy_username`/`proxy_password` (null
/// clears) win over credentials inside the URL.
fn apply_proxy(
    checks: &mut Checks,
    row: &mut Remote,
    url: Option<Option<String>>,
    username: Option<Option<String>>,
    password: Option<Option<String>>,
) {
    let stored = row.proxy_url.as_deref().and_then(|u| url::Url::parse(u).ok());
    let (mut user, mut pass) = stored.map(|u| (u.username().to_string(), u.password().map(str::to_string))).unwrap_or_default();
    if let Some(v) = url {
        row.proxy_url = v;
        if let Some(u) = row.proxy_url.as_deref().and_then(|u| url::Url::parse(u).ok()) {
            if !u.username().is_empty() || u.password().is_some() {
                (user, pass) = (u.username().to_string(), u.password().map(str::to_string));
            }
        }
    }
    let named = username.is_some() || password.is_some();
    // Kept percent-encoded, as a URL holds them: `set_username` encodes all but `%`.
    if let Some(v) = username {
        user = v.map(|u| u.replace('%', "%25")).unwrap_or_default();
    }
    if let Some(v) = password {
        pass = v.map(|p| p.replace('%', "%25"));
    }
    let Some(proxy) = row.proxy_url.as_deref() else {
        if named && (!user.is_empty() || pass.is_some()) {
            checks.add("proxy_url", "A proxy_url is needed with proxy credentials.");
        }
        return;
    };
    if pass.is_some() && user.is_empty() {
        checks.add("proxy_username", "A proxy_username is needed with a proxy_password.");
        return;
    }
    let Ok(mut u) = url::Url::parse(proxy) else {
        return; // refused as an invalid URL below
    };
    if u.set_username(&user).is_err() || u.set_password(pass.as_deref()).is_err() {
        checks.add("proxy_url", "This URL cannot carry proxy credentials.");
        return;
    }
    row.proxy_url = Some(u.to_string());
}

/// The remote of `kind` with this id; one of the other kind is not found.
pub(super) async fn find_or_404(state: &AppState, id: String, kind: RemoteKind) -> Result<Remote, ApiError> {
    state
        .db
        .run(move |c| remote::find_of_kind(c, &id, kind.column()).map_err(DbError::from))
        .await?
        .ok_or_else(ApiError::not_found)
}

/// One page of the remotes of `kind`.
pub(super) async fn list_of<L: filters::Listed, T: Serialize>(
    state: &AppState,
    req: &HttpRequest,
    query: &ListQuery<L>,
    kind: RemoteKind,
    view: impl FnMut(Remote) -> T,
) -> Result<HttpResponse, ApiError> {
    let (criteria, window) = (query.criteria.clone(), query.window);
    let rows = state.db.run(move |c| remote::list(c, kind.column(), &criteria, window).map_err(DbError::from)).await?;
    Ok(query.respond(req, rows, view))
}

/// Creates a remote of `kind` at once (as Pulp does): the row as stored.
pub(super) async fn create_of(state: &AppState, req: RemoteRequest, kind: RemoteKind) -> Result<Remote, ApiError> {
    state
        .db
        .run(move |c| {
            let row = apply(c, blank(kind), req, true, kind)?;
            remote::insert(c, &row).map_err(|e| {
                if is_unique_violation(&e) {
                    ApiError::field("name", "remote with this name already exists.")
                } else {
                    e.into()
                }
            })?;
            Ok::<_, ApiError>(row)
        })
        .await
}

/// Queues the deletion of a remote of `kind`.
pub(super) async fn remove_of(state: &AppState, id: String, kind: RemoteKind) -> Result<HttpResponse, ApiError> {
    let row = find_or_404(state, id, kind).await?;
    let task = state
        .tasks
        .enqueue(state, tasks::REMOTE_DELETE, serde_json::json!({ "id": row.id }), vec![kind.href(&row.id)])
        .await?;
    Ok(accepted(&task))
}

crate::listing!(
    RemoteListing,
    RemoteResponse,
    [
        filters::text("name", "Filter by name."),
        filters::LABELS,
        filters::filter("pulp_href", Kind::Id(hrefs::parse_remote), filters::IN, "Only these remotes (hrefs)."),
        filters::filter("pulp_last_updated", Kind::Time, filters::RANGE_LOOKUPS, "Filter by last update time."),
    ],
    ["name", "pulp_created", "pulp_last_updated", "url", "upstream_name", "policy"]
);

/// List container remotes.
#[utoipa::path(
    tag = "Remotes: Container",
    operation_id = "remotes_container_container_list",
    params(RemoteListing),
    responses((status = 200, body = Paginated<RemoteResponse>), BadRequest, Unauthorized)
)]
#[get("/remotes/container/container/")]
pub async fn list(state: web::Data<AppState>, req: HttpRequest, query: ListQuery<RemoteListing>) -> Result<HttpResponse, ApiError> {
    list_of(&state, &req, &query, RemoteKind::Container, RemoteResponse::from).await
}

/// Create a container remote.
#[utoipa::path(
    tag = "Remotes: Container",
    operation_id = "remotes_container_container_create",
    request_body = RemoteRequest,
    responses((status = 201, body = RemoteResponse), BadRequest, Unauthorized)
)]
#[post("/remotes/container/container/")]
pub async fn create(state: web::Data<AppState>, bytes: web::Bytes) -> Result<HttpResponse, ApiError> {
    let row = create_of(&state, body::parse(&bytes)?, RemoteKind::Container).await?;
    Ok(HttpResponse::Created().json(RemoteResponse::from(row)))
}

/// Inspect a container remote.
#[utoipa::path(
    tag = "Remotes: Container",
    operation_id = "remotes_container_container_read",
    params(filters::DetailParams),
    responses((status = 200, body = RemoteResponse), BadRequest, Unauthorized, NotFound)
)]
#[get("/remotes/container/container/{id}/")]
pub async fn read(state: web::Data<AppState>, id: web::Path<uuid::Uuid>, query: DetailQuery<RemoteResponse>) -> Result<HttpResponse, ApiError> {
    let row = find_or_404(&state, id.to_string(), RemoteKind::Container).await?;
    Ok(query.respond(RemoteResponse::from(row)))
}

/// Validates an update of a remote of `kind` and queues it; a pull-through remote's update also
/// reaches the remotes made for it (see `tasks::REMOTE_UPDATE`).
pub(super) async fn update_with(state: &AppState, id: String, req: RemoteRequest, full: bool, kind: RemoteKind) -> Result<HttpResponse, ApiError> {
    let keep_labels = !full && req.pulp_labels.is_none();
    let existing = find_or_404(state, id, kind).await?;
    let row = state.db.run(move |c| apply(c, existing, req, full, kind)).await?;
    let resources = vec![kind.href(&row.id)];
    // The task's arguments name the secrets staged for it; task rows are readable by API users.
    let mut args = state.db.run(move |c| row.into_task_args(c).map_err(DbError::from)).await?;
    args[tasks::KEEP_LABELS] = keep_labels.into();
    let task = state.tasks.enqueue(state, tasks::REMOTE_UPDATE, args, resources).await?;
    Ok(accepted(&task))
}

/// Update a container remote (every field; absent ones reset to defaults).
#[utoipa::path(
    tag = "Remotes: Container",
    operation_id = "remotes_container_container_update",
    request_body = RemoteRequest,
    responses((status = 202, body = AsyncOperationResponse), BadRequest, Unauthorized, NotFound)
)]
#[put("/remotes/container/container/{id}/")]
pub async fn update(state: web::Data<AppState>, id: web::Path<uuid::Uuid>, bytes: web::Bytes) -> Result<HttpResponse, ApiError> {
    update_with(&state, id.to_string(), body::parse(&bytes)?, true, RemoteKind::Container).await
}

/// Update some fields of a container remote.
#[utoipa::path(
    tag = "Remotes: Container",
    operation_id = "remotes_container_container_partial_update",
    request_body = PatchedRemoteRequest,
    responses((status = 202, body = AsyncOperationResponse), BadRequest, Unauthorized, NotFound)
)]
#[patch("/remotes/container/container/{id}/")]
pub async fn partial_update(state: web::Data<AppState>, id: web::Path<uuid::Uuid>, bytes: web::Bytes) -> Result<HttpResponse, ApiError> {
    update_with(&state, id.to_string(), body::parse(&bytes)?, false, RemoteKind::Container).await
}

/// Delete a container remote.
#[utoipa::path(
    tag = "Remotes: Container",
    operation_id = "remotes_container_container_delete",
    responses((status = 202, body = AsyncOperationResponse), Unauthorized, NotFound)
)]
#[delete("/remotes/container/container/{id}/")]
pub async fn remove(state: web::Data<AppState>, id: web::Path<uuid::Uuid>) -> Result<HttpResponse, ApiError> {
    remove_of(&state, id.to_string(), RemoteKind::Container).await
}
