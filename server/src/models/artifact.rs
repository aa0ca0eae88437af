use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::filter::Criteria;
use super::{Page, Window};
use crate::db::schema::artifact;
use crate::db::DbConnection;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = artifact)]
pub struct Artifact {
    pub id: String,
    pub sha256: String,
    pub size: i64,
    /// Path relative to the data directory's artifact store.
    pub storage_key: String,
    pub pulp_created: NaiveDateTime,
}

pub fn find(conn: &mut DbConnection, id: &str) -> QueryResult<Option<Artifact>> {
    artifact::table.find(id).select(Artifact::as_select()).first(conn).optional()
}

pub fn list(conn: &mut DbConnection, criteria: &Criteria, window: Window) -> QueryResult<Page<Artifact>> {
    let filtered = || {
        let mut q = crate::filter_text!(artifact::table.into_boxed(), artifact::sha256, criteria.text_match("sha256"));
        if let Some(ids) = criteria.list("pulp_href__in") {
            q = q.filter(artifact::id.eq_any(ids));
        }
        q
    };
    let count = filtered().count().get_result(conn)?;
    let rows = crate::sort_by!(filtered(), criteria, [artifact::pulp_created, artifact::id], {
        "pulp_created" => artifact::pulp_created,
        "size" => artifact::size,
    })
    .limit(window.limit)
    .offset(window.offset)
    .select(Artifact::as_select())
    .load(conn)?;
    Ok(Page { count, rows })
}

pub fn find_by_sha256(conn: &mut DbConnection, sha256: &str) -> QueryResult<Option<Artifact>> {
    artifact::table.filter(artifact::sha256.eq(sha256)).select(Artifact::as_select()).first(conn).optional()
}

/// Records a stored file; an artifact with this sha256 may exist already (same bytes).
pub fn ensure(conn: &mut DbConnection, sha256: &str, size: i64, storage_key: &str) -> QueryResult<Artifact> {
    if let Some(a) = find_by_sha256(conn, sha256)? {
        return Ok(a);
    }
    let row = Artifact {
        id: super::new_id(),
        sha256: sha256.to_string(),
        size,
        storage_key: storage_key.to_string(),
        pulp_created: super::now(),
    };
    crate::insert_or_ignore!(conn, diesel::insert_into(artifact::table).values(&row))?;
    find_by_sha256(conn, sha256)?.ok_or(diesel::result::Error::NotFound)
}

/// Artifacts no content uses, created before `before`; among `only` when given.
pub fn unused(conn: &mut DbConnection, before: NaiveDateTime, only: Option<&[String]>) -> QueryResult<Vec<Artifact>> {
    use crate::db::schema::content_artifact;
    use diesel::dsl::{exists, not};
    let query = || {
        artifact::table
            .filter(artifact::pulp_created.lt(before))
            .filter(not(exists(content_artifact::table.filter(content_artifact::artifact_id.eq(artifact::id.nullable())))))
            .select(Artifact::as_select())
            .into_boxed()
    };
    match only {
        None => query().load(conn),
        Some(ids) => super::in_chunks(ids, |chunk| query().filter(artifact::id.eq_any(chunk)).load(conn)),
    }
}

/// On PostgreSQL, locks these artifacts' rows until the transaction ends: content that starts
/// using one meanwhile either did so before (and `unused` then sees it) or waits and fails.
pub fn lock(conn: &mut DbConnection, ids: &[String]) -> QueryResult<()> {
    let DbConnection::Pg(pg) = conn else { return Ok(()) };
    for chunk in ids.chunks(500) {
        artifact::table.filter(artifact::id.eq_any(chunk)).select(artifact::id).for_update().load::<String>(pg)?;
    }
    Ok(())
}

pub fn delete_all(conn: &mut DbConnection, ids: &[String]) -> QueryResult<usize> {
    let mut n = 0;
    for chunk in ids.chunks(500) {
        n += diesel::delete(artifact::table.filter(artifact::id.eq_any(chunk))).execute(conn)?;
    }
    Ok(n)
}

/// Which of these sha256s an artifact row has.
pub fn existing_sha256(conn: &mut DbConnection, hashes: &[String]) -> QueryResult<std::collections::HashSet<String>> {
    let mut out = std::collections::HashSet::new();
    for chunk in hashes.chunks(500) {
        out.extend(artifact::table.filter(artifact::sha256.eq_any(chunk)).select(artifact::sha256).load::<String>(conn)?);
    }
    Ok(out)
}
