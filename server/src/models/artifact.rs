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
