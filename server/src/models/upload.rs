//! Push state in the database (uploads, blobs pushed ahead of their manifest, settings), so
//! that no replica keeps any of it in memory.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::db::schema::{pushed_blob, setting, upload};
use crate::db::DbConnection;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = upload)]
pub struct Upload {
    pub id: String,
    pub repository_id: String,
    pub size: i64,
    pub pulp_created: NaiveDateTime,
    pub pulp_last_updated: NaiveDateTime,
}

pub fn create(conn: &mut DbConnection, repository_id: &str) -> QueryResult<Upload> {
    let now = super::now();
    let row = Upload { id: super::new_id(), repository_id: repository_id.into(), size: 0, pulp_created: now, pulp_last_updated: now };
    diesel::insert_into(upload::table).values(&row).execute(conn)?;
    Ok(row)
}

pub fn find(conn: &mut DbConnection, id: &str) -> QueryResult<Option<Upload>> {
    upload::table.find(id).select(Upload::as_select()).first(conn).optional()
}

/// Moves the offset from `from` to `to`; false when another request moved it first.
pub fn advance(conn: &mut DbConnection, id: &str, from: i64, to: i64) -> QueryResult<bool> {
    let n = diesel::update(upload::table.find(id).filter(upload::size.eq(from)))
        .set((upload::size.eq(to), upload::pulp_last_updated.eq(super::now())))
        .execute(conn)?;
    Ok(n == 1)
}

pub fn delete(conn: &mut DbConnection, id: &str) -> QueryResult<usize> {
    diesel::delete(upload::table.find(id)).execute(conn)
}

/// Uploads untouched since `before`.
pub fn stale(conn: &mut DbConnection, before: NaiveDateTime) -> QueryResult<Vec<String>> {
    upload::table.filter(upload::pulp_last_updated.lt(before)).select(upload::id).load(conn)
}

pub fn add_pushed_blob(conn: &mut DbConnection, repository_id: &str, blob_id: &str) -> QueryResult<()> {
    crate::insert_or_ignore!(
        conn,
        diesel::insert_into(pushed_blob::table).values((
            pushed_blob::repository_id.eq(repository_id),
            pushed_blob::blob_id.eq(blob_id),
            pushed_blob::pulp_created.eq(super::now()),
        ))
    )
    .map(|_| ())
}

pub fn is_pushed_blob(conn: &mut DbConnection, repository_id: &str, blob_id: &str) -> QueryResult<bool> {
    use diesel::dsl::{exists, select};
    select(exists(pushed_blob::table.filter(pushed_blob::repository_id.eq(repository_id)).filter(pushed_blob::blob_id.eq(blob_id)))).get_result(conn)
}

pub fn clear_pushed_blobs(conn: &mut DbConnection, repository_id: &str, blob_ids: &[String]) -> QueryResult<()> {
    for chunk in blob_ids.chunks(500) {
        diesel::delete(pushed_blob::table.filter(pushed_blob::repository_id.eq(repository_id)).filter(pushed_blob::blob_id.eq_any(chunk))).execute(conn)?;
    }
    Ok(())
}

/// A setting, created with `init()` by whichever replica asks first.
pub fn setting_or_init(conn: &mut DbConnection, name: &str, init: impl FnOnce() -> String) -> QueryResult<String> {
    if let Some(v) = setting::table.find(name).select(setting::value).first::<String>(conn).optional()? {
        return Ok(v);
    }
    crate::insert_or_ignore!(conn, diesel::insert_into(setting::table).values((setting::name.eq(name), setting::value.eq(init()))))?;
    setting::table.find(name).select(setting::value).first(conn)
}
