use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::filter::Criteria;
use super::{Page, Window};
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
    /// `container`, or `pull-through` (serves `<base_path>/<upstream repository>` of its remote).
    #[serde(default = "super::remote::container")]
    pub kind: String,
    /// A pull-through distribution's pull-through remote; for one it made, that repository's remote.
    #[serde(default)]
    pub remote_id: Option<String>,
    /// For a distribution a pull-through distribution made: that pull-through distribution.
    #[serde(default)]
    pub pull_through_id: Option<String>,
}

impl Distribution {
    /// A public container distribution serving nothing yet.
    pub fn new(name: &str, base_path: &str) -> Distribution {
        let t = super::now();
        Distribution {
            id: super::new_id(),
            name: name.to_string(),
            base_path: base_path.to_string(),
            repository_id: None,
            repository_version_id: None,
            private: false,
            description: None,
            pulp_created: t,
            pulp_last_updated: t,
            pulp_labels: "{}".into(),
            hidden: false,
            kind: super::remote::CONTAINER.into(),
            remote_id: None,
            pull_through_id: None,
        }
    }
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

/// A distribution of this kind (`CONTAINER` or `PULL_THROUGH`): the API of one kind never sees the other.
pub fn find_of_kind(conn: &mut DbConnection, id: &str, kind: &str) -> QueryResult<Option<Distribution>> {
    Ok(find(conn, id)?.filter(|d| d.kind == kind))
}

/// The ids of the distributions a pull-through distribution made, oldest first.
pub fn made_by(conn: &mut DbConnection, pull_through_id: &str) -> QueryResult<Vec<String>> {
    distribution::table
        .filter(distribution::pull_through_id.eq(pull_through_id))
        .order((distribution::pulp_created, distribution::id))
        .select(distribution::id)
        .load(conn)
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

pub fn list(conn: &mut DbConnection, kind: &str, criteria: &Criteria, window: Window) -> QueryResult<Page<Distribution>> {
    let postgres = matches!(conn, DbConnection::Pg(_));
    let filtered = || {
        let mut q = crate::filter_text!(
            distribution::table.filter(distribution::kind.eq(kind.to_string())).into_boxed(),
            distribution::name,
            criteria.text_match("name")
        );
        q = crate::filter_labels!(q, criteria, postgres);
        q = crate::filter_text!(q, distribution::base_path, criteria.text_match("base_path"));
        if let Some(ids) = criteria.list("pulp_href__in") {
            q = q.filter(distribution::id.eq_any(ids));
        }
        if let Some(repository_id) = criteria.text("repository") {
            q = q.filter(distribution::repository_id.eq(repository_id));
        }
        q
    };
    let count = filtered().count().get_result(conn)?;
    let rows = crate::sort_by!(filtered(), criteria, [distribution::pulp_created, distribution::id], {
        "name" => distribution::name,
        "base_path" => distribution::base_path,
        "pulp_created" => distribution::pulp_created,
    })
    .limit(window.limit)
    .offset(window.offset)
    .select(Distribution::as_select())
    .load(conn)?;
    Ok(Page { count, rows })
}

/// Base paths in order, after `last`, at most `limit` (for `/v2/_catalog`); private ones (and
/// those a private pull-through distribution made) only when `with_private`; hidden ones and
/// pull-through distributions (which serve nothing themselves) never.
pub fn base_paths(conn: &mut DbConnection, last: Option<&str>, limit: i64, with_private: bool) -> QueryResult<Vec<String>> {
    let mut q = distribution::table
        .select(distribution::base_path)
        .filter(distribution::hidden.eq(false))
        .filter(distribution::kind.ne(super::remote::PULL_THROUGH))
        .order(distribution::base_path)
        .limit(limit)
        .into_boxed();
    if !with_private {
        let private_parents: Vec<String> = distribution::table
            .filter(distribution::kind.eq(super::remote::PULL_THROUGH))
            .filter(distribution::private.eq(true))
            .select(distribution::id)
            .load(conn)?;
        q = q
            .filter(distribution::private.eq(false))
            .filter(distribution::pull_through_id.is_null().or(distribution::pull_through_id.assume_not_null().ne_all(private_parents)));
    }
    if let Some(l) = last {
        q = q.filter(distribution::base_path.gt(l.to_string()));
    }
    q.load(conn)
}

/// Whether pulling from `d` needs credentials: it is private, or a private pull-through
/// distribution made it.
pub fn is_private(conn: &mut DbConnection, d: &Distribution) -> QueryResult<bool> {
    if d.private {
        return Ok(true);
    }
    match &d.pull_through_id {
        Some(parent) => Ok(find(conn, parent)?.is_some_and(|p| p.private)),
        None => Ok(false),
    }
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
