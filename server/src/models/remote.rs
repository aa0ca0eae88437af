use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::{NameFilter, Page, Window};
use crate::db::schema::remote;
use crate::db::DbConnection;

#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset, serde::Serialize, serde::Deserialize)]
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
}

impl Remote {
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

pub fn find_by_name(conn: &mut DbConnection, name: &str) -> QueryResult<Option<Remote>> {
    remote::table.filter(remote::name.eq(name)).select(Remote::as_select()).first(conn).optional()
}

pub fn list(conn: &mut DbConnection, filter: &NameFilter, window: Window) -> QueryResult<Page<Remote>> {
    let count = crate::filter_by_name!(remote::table.into_boxed(), remote::name, filter)
        .count()
        .get_result(conn)?;
    let rows = crate::filter_by_name!(remote::table.into_boxed(), remote::name, filter)
        .order((remote::pulp_created, remote::id))
        .limit(window.limit)
        .offset(window.offset)
        .select(Remote::as_select())
        .load(conn)?;
    Ok(Page { count, rows })
}
