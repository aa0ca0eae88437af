use chrono::NaiveDateTime;
use diesel::prelude::*;

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

pub fn list(conn: &mut DbConnection, sha256: Option<&str>, window: Window) -> QueryResult<Page<Artifact>> {
    let boxed = || {
        let mut q = artifact::table.into_boxed();
        if let Some(s) = sha256 {
            q = q.filter(artifact::sha256.eq(s.to_string()));
        }
        q
    };
    let count = boxed().count().get_result(conn)?;
    let rows = boxed()
        .order((artifact::pulp_created, artifact::id))
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
