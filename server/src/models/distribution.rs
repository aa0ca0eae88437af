use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::{NameFilter, Page, Window};
use crate::db::schema::distribution;
use crate::db::DbConnection;

#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset, serde::Serialize, serde::Deserialize)]
#[diesel(table_name = distribution, treat_none_as_null = true)]
pub struct Distribution {
    pub id: String,
    pub name: String,
    pub base_path: String,
    pub repository_id: Option<String>,
    pub repository_version_id: Option<String>,
    pub private: bool,
    pub description: Option<String>,
    pub pulp_created: NaiveDateTime,
    pub pulp_last_updated: NaiveDateTime,
    /// JSON map of labels.
    pub pulp_labels: String,
    /// Left out of the registry's catalog (still served).
    pub hidden: bool,
}

pub fn insert(conn: &mut DbConnection, row: &Distribution) -> QueryResult<()> {
    diesel::insert_into(distribution::table).values(row).execute(conn).map(|_| ())
}

pub fn update(conn: &mut DbConnection, row: &Distribution) -> QueryResult<()> {
    diesel::update(distribution::table.find(&row.id)).set(row).execute(conn).map(|_| ())
}

pub fn delete(conn: &mut DbConnection, id: &str) -> QueryResult<usize> {
    diesel::delete(distribution::table.find(id)).execute(conn)
}

pub fn find(conn: &mut DbConnection, id: &str) -> QueryResult<Option<Distribution>> {
    distribution::table.find(id).select(Distribution::as_select()).first(conn).optional()
}

pub fn find_by_name(conn: &mut DbConnection, name: &str) -> QueryResult<Option<Distribution>> {
    distribution::table
        .filter(distribution::name.eq(name))
        .select(Distribution::as_select())
        .first(conn)
        .optional()
}

pub fn find_by_base_path(conn: &mut DbConnection, base_path: &str) -> QueryResult<Option<Distribution>> {
    distribution::table
        .filter(distribution::base_path.eq(base_path))
        .select(Distribution::as_select())
        .first(conn)
        .optional()
}

pub fn list(
    conn: &mut DbConnection,
    filter: &NameFilter,
    base_path: Option<&str>,
    window: Window,
) -> QueryResult<Page<Distribution>> {
    let boxed = || {
        let mut q = crate::filter_by_name!(distribution::table.into_boxed(), distribution::name, filter);
        if let Some(bp) = base_path {
            q = q.filter(distribution::base_path.eq(bp.to_string()));
        }
        q
    };
    let count = boxed().count().get_result(conn)?;
    let rows = boxed()
        .order((distribution::pulp_created, distribution::id))
        .limit(window.limit)
        .offset(window.offset)
        .select(Distribution::as_select())
        .load(conn)?;
    Ok(Page { count, rows })
}

/// Base paths, sorted, after `last`, at most `limit` (for `/v2/_catalog`).
/// Base paths in order, after `last`; private ones only when `with_private`.
pub fn base_paths(conn: &mut DbConnection, last: Option<&str>, limit: i64, with_private: bool) -> QueryResult<Vec<String>> {
    let mut q = distribution::table.select(distribution::base_path).order(distribution::base_path).limit(limit).into_boxed();
    if !with_private {
        q = q.filter(distribution::private.eq(false));
    }
    if let Some(l) = last {
        q = q.filter(distribution::base_path.gt(l.to_string()));
    }
    q.load(conn)
}

/// The (repository id, version number) a distribution serves: its pinned version, or its
/// repository's latest.
pub fn served_version(conn: &mut DbConnection, d: &Distribution) -> QueryResult<Option<(String, i64)>> {
    if let Some(vid) = &d.repository_version_id {
        return Ok(super::repository::find_version_by_id(conn, vid)?.map(|v| (v.repository_id, v.number)));
    }
    if let Some(rid) = &d.repository_id {
        return Ok(super::repository::find(conn, rid)?.map(|r| (r.id, r.latest_version_number)));
    }
    Ok(None)
}
