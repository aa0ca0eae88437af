use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::filter::Criteria;
use super::{Page, Window};
use crate::db::schema::remote;
use crate::db::DbConnection;

#[derive(Clone, Queryable, Selectable, Insertable, AsChangeset, serde::Serialize, serde::Deserialize)]
#[diesel(table_name = remote, treat_none_as_null = true)]
pub struct Remote {
    pub id: String,
    pub name: String,
    pub url: String,
    pub upstream_name: String,
    pub policy: String,
    /// JSON array of wildcard patterns.
    pub include_tags: Option<String>,
    pub exclude_tags: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub tls_validation: bool,
    pub ca_cert: Option<String>,
    pub proxy_url: Option<String>,
    pub download_concurrency: Option<i32>,
    pub connect_timeout: Option<f64>,
    pub total_timeout: Option<f64>,
    pub max_retries: Option<i32>,
    pub pulp_created: NaiveDateTime,
    pub pulp_last_updated: NaiveDateTime,
    pub sock_connect_timeout: Option<f64>,
    pub sock_read_timeout: Option<f64>,
    /// JSON list of one-entry maps, `[{"X-Name": "value"}]`, as Pulp takes them.
    pub headers: Option<String>,
    /// Requests per second to the upstream.
    pub rate_limit: Option<i32>,
    /// PEM client certificate and key for upstreams that require one (the key is write-only).
    pub client_cert: Option<String>,
    pub client_key: Option<String>,
    /// JSON map of labels. (Defaulted so that task arguments written before labels existed
    /// still read.)
    #[serde(default = "no_labels")]
    pub pulp_labels: String,
    /// Whether a sync also brings what refers to each manifest it records (signatures,
    /// attestations, SBOMs), whatever the tag filters say.
    #[serde(default = "yes")]
    pub include_referrers: bool,
    /// `container` (one upstream repository) or `pull-through` (any repository of the upstream
    /// registry; `upstream_name` is empty and the tag filters are over repository names).
    #[serde(default = "container")]
    pub kind: String,
    /// Seconds a pull-through tag is served before it is checked upstream again (0: always).
    #[serde(default = "default_tag_ttl")]
    pub tag_ttl: i64,
    /// Whether an on-demand download that failed for a transient cause is retried in the
    /// background, so that a later client finds the blob stored.
    #[serde(default)]
    pub retry_in_background: bool,
    /// Whether a manifest GET starts fetching the image's config and layers that are not stored
    /// (`ondemand/prefetch.rs`). Never with the streamed policy, which keeps nothing.
    #[serde(default = "yes")]
    pub prefetch: bool,
}

pub const CONTAINER: &str = "container";
pub const PULL_THROUGH: &str = "pull-through";
pub const DEFAULT_TAG_TTL: i64 = 300;

pub(crate) fn container() -> String {
    CONTAINER.into()
}

fn default_tag_ttl() -> i64 {
    DEFAULT_TAG_TTL
}

fn yes() -> bool {
    true
}

fn no_labels() -> String {
    "{}".into()
}

/// Secrets stay out of logs: the password, the client key, and the proxy URL (it may carry
/// credentials).
impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("url", &self.url)
            .field("upstream_name", &self.upstream_name)
            .field("policy", &self.policy)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .field("proxy_url", &self.proxy_url.as_deref().map(without_credentials))
            .field("client_key", &self.client_key.as_ref().map(|_| "<hidden>"))
            .finish_non_exhaustive()
    }
}

/// A URL with any user name and password taken out, for showing (unchanged when it has none).
pub fn without_credentials(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) if u.username().is_empty() && u.password().is_none() => url.to_string(),
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.to_string()
        }
        Err(_) => "<unparseable URL>".into(),
    }
}

/// Whether a URL carries a (user name, password).
pub fn url_credentials(url: &str) -> (bool, bool) {
    url::Url::parse(url).map(|u| (!u.username().is_empty(), u.password().is_some())).unwrap_or((false, false))
}

impl Remote {
    /// The arguments of a task that writes this row: the secrets are staged in the database and
    /// the arguments name them, so no task row ever holds a password.
    pub fn into_task_args(mut self, conn: &mut DbConnection) -> QueryResult<serde_json::Value> {
        let mut staged = serde_json::Map::new();
        if let Some(p) = self.password.take() {
            staged.insert("password".into(), super::secret::stage(conn, &p)?.into());
        }
        if let Some(p) = self.proxy_url.take() {
            staged.insert("proxy_url".into(), super::secret::stage(conn, &p)?.into());
        }
        if let Some(k) = self.client_key.take() {
            staged.insert("client_key".into(), super::secret::stage(conn, &k)?.into());
        }
        Ok(serde_json::json!({ "remote": self, "secrets": staged }))
    }

    /// The row back from [`Remote::into_task_args`], taking its staged secrets out.
    pub fn from_task_args(conn: &mut DbConnection, args: &serde_json::Value) -> Result<Remote, String> {
        let mut row: Remote = serde_json::from_value(args["remote"].clone()).map_err(|e| format!("malformed task arguments: {e}"))?;
        let take = |conn: &mut DbConnection, field: &str| -> Result<Option<String>, String> {
            match args["secrets"][field].as_str() {
                None => Ok(None),
                Some(id) => super::secret::take(conn, id)
                    .map_err(|e| e.to_string())?
                    .map(Some)
                    .ok_or_else(|| format!("the staged {field} of this update is gone; send the update again")),
            }
        };
        row.password = take(conn, "password")?;
        row.proxy_url = take(conn, "proxy_url")?;
        row.client_key = take(conn, "client_key")?;
        Ok(row)
    }

    /// The remote a pull-through remote makes for one upstream repository (named as Pulp
    /// names it, `<base_path>/<upstream name>`): a container remote with this one's settings.
    pub fn for_upstream_repository(&self, name: &str, upstream_name: &str) -> Remote {
        let t = super::now();
        let mut child = Remote {
            id: super::new_id(),
            name: name.to_string(),
            upstream_name: upstream_name.to_string(),
            kind: CONTAINER.into(),
            include_tags: None,
            exclude_tags: None,
            pulp_labels: "{}".into(),
            pulp_created: t,
            pulp_last_updated: t,
            ..self.clone()
        };
        self.copy_settings_to(&mut child);
        child
    }

    /// Gives a remote made for one upstream repository this pull-through remote's connection
    /// settings (URL, credentials, TLS, proxy, timeouts, policy, freshness); true when any changed.
    pub fn copy_settings_to(&self, child: &mut Remote) -> bool {
        let mut changed = false;
        macro_rules! copy {
            ($($field:ident),*) => {$(
                if child.$field != self.$field {
                    child.$field = self.$field.clone();
                    changed = true;
                }
            )*};
        }
        copy!(
            url, policy, username, password, tls_validation, ca_cert, proxy_url, download_concurrency, connect_timeout,
            total_timeout, max_retries, sock_connect_timeout, sock_read_timeout, headers, rate_limit, client_cert,
            client_key, tag_ttl, retry_in_background, prefetch
        );
        if changed {
            child.pulp_last_updated = super::now();
        }
        changed
    }

    pub fn include_tags(&self) -> Option<Vec<String>> {
        self.include_tags.as_deref().and_then(|s| serde_json::from_str(s).ok())
    }

    pub fn exclude_tags(&self) -> Option<Vec<String>> {
        self.exclude_tags.as_deref().and_then(|s| serde_json::from_str(s).ok())
    }
}

pub fn insert(conn: &mut DbConnection, row: &Remote) -> QueryResult<()> {
    diesel::insert_into(remote::table).values(row).execute(conn).map(|_| ())
}

pub fn update(conn: &mut DbConnection, row: &Remote) -> QueryResult<()> {
    diesel::update(remote::table.find(&row.id)).set(row).execute(conn).map(|_| ())
}

pub fn delete(conn: &mut DbConnection, id: &str) -> QueryResult<usize> {
    diesel::delete(remote::table.find(id)).execute(conn)
}

pub fn find(conn: &mut DbConnection, id: &str) -> QueryResult<Option<Remote>> {
    remote::table.find(id).select(Remote::as_select()).first(conn).optional()
}

/// A remote of this kind (`CONTAINER` or `PULL_THROUGH`): the API of one kind never sees the other.
pub fn find_of_kind(conn: &mut DbConnection, id: &str, kind: &str) -> QueryResult<Option<Remote>> {
    Ok(find(conn, id)?.filter(|r| r.kind == kind))
}

/// The remotes made for a pull-through remote: those of the distributions made by the
/// pull-through distributions it serves.
pub fn made_for(conn: &mut DbConnection, pull_through_remote_id: &str) -> QueryResult<Vec<Remote>> {
    use crate::db::schema::distribution;
    let parents: Vec<String> = distribution::table
        .filter(distribution::kind.eq(PULL_THROUGH))
        .filter(distribution::remote_id.eq(pull_through_remote_id))
        .select(distribution::id)
        .load(conn)?;
    let children: Vec<Option<String>> = distribution::table
        .filter(distribution::pull_through_id.eq_any(&parents))
        .select(distribution::remote_id)
        .load(conn)?;
    let ids: Vec<String> = children.into_iter().flatten().collect();
    remote::table
        .filter(remote::id.eq_any(&ids))
        .filter(remote::kind.eq(CONTAINER))
        .order(remote::id)
        .select(Remote::as_select())
        .load(conn)
}

pub fn find_by_name(conn: &mut DbConnection, name: &str) -> QueryResult<Option<Remote>> {
    remote::table.filter(remote::name.eq(name)).select(Remote::as_select()).first(conn).optional()
}

pub fn list(conn: &mut DbConnection, kind: &str, criteria: &Criteria, window: Window) -> QueryResult<Page<Remote>> {
    let postgres = matches!(conn, DbConnection::Pg(_));
    let filtered = || {
        let mut q = crate::filter_text!(remote::table.filter(remote::kind.eq(kind.to_string())).into_boxed(), remote::name, criteria.text_match("name"));
        q = crate::filter_labels!(q, criteria, postgres);
        if let Some(ids) = criteria.list("pulp_href__in") {
            q = q.filter(remote::id.eq_any(ids));
        }
        crate::filter_range!(q, remote::pulp_last_updated, criteria.time_range("pulp_last_updated"))
    };
    let count = filtered().count().get_result(conn)?;
    let rows = crate::sort_by!(filtered(), criteria, [remote::pulp_created, remote::id], {
        "name" => remote::name,
        "pulp_created" => remote::pulp_created,
        "pulp_last_updated" => remote::pulp_last_updated,
        "url" => remote::url,
        "upstream_name" => remote::upstream_name,
        "policy" => remote::policy,
    })
        .limit(window.limit)
        .offset(window.offset)
        .select(Remote::as_select())
        .load(conn)?;
    Ok(Page { count, rows })
}
