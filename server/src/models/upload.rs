//! Push state in the database (uploads, blobs pushed ahead of their manifest, settings), so
//! that no replica keeps any of it in memory.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::db::schema::{pushed_blob, setting, upload, upload_part};
use crate::db::{write_transaction, DbConnection};

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = upload)]
pub struct Upload {
    pub id: String,
    /// The path the upload was started on.
    pub base_path: String,
    pub size: i64,
    pub pulp_created: NaiveDateTime,
    pub pulp_last_updated: NaiveDateTime,
    /// A finishing PUT has claimed the upload: no request may add to it any more.
    pub committing: bool,
}

pub fn create(conn: &mut DbConnection, base_path: &str) -> QueryResult<Upload> {
    let now = super::now();
    let row = Upload { id: super::new_id(), base_path: base_path.into(), size: 0, pulp_created: now, pulp_last_updated: now, committing: false };
    diesel::insert_into(upload::table).values(&row).execute(conn)?;
    Ok(row)
}

/// Upload sessions started and not finished, cancelled or swept yet.
pub fn count_open(conn: &mut DbConnection) -> QueryResult<i64> {
    upload::table.count().get_result(conn)
}

pub fn find(conn: &mut DbConnection, id: &str) -> QueryResult<Option<Upload>> {
    upload::table.find(id).select(Upload::as_select()).first(conn).optional()
}

/// Claims `[from, from + size)` of an open upload for the staged part `key`: the offset moves
/// and the part is recorded together, or neither (false: another request moved the offset
/// first, or the upload is being committed or is gone).
pub fn claim_part(conn: &mut DbConnection, id: &str, from: i64, size: i64, key: &str) -> QueryResult<bool> {
    write_transaction(conn, |c| {
        let moved = diesel::update(upload::table.find(id).filter(upload::size.eq(from)).filter(upload::committing.eq(false)))
            .set((upload::size.eq(from + size), upload::pulp_last_updated.eq(super::now())))
            .execute(c)?;
        if moved != 1 {
            return Ok(false);
        }
        diesel::insert_into(upload_part::table)
            .values((upload_part::upload_id.eq(id), upload_part::start_offset.eq(from), upload_part::size.eq(size), upload_part::storage_key.eq(key)))
            .execute(c)?;
        Ok(true)
    })
}

/// Claims the whole upload for the finishing PUT, if it still holds `size` bytes and nobody
/// claimed it first; returns its parts' keys in order (their sizes checked to add up).
pub fn claim_commit(conn: &mut DbConnection, id: &str, size: i64) -> QueryResult<Option<Vec<String>>> {
    write_transaction(conn, |c| {
        let claimed = diesel::update(upload::table.find(id).filter(upload::size.eq(size)).filter(upload::committing.eq(false)))
            .set((upload::committing.eq(true), upload::pulp_last_updated.eq(super::now())))
            .execute(c)?;
        if claimed != 1 {
            return Ok(None);
        }
        let parts: Vec<(i64, i64, String)> = upload_part::table
            .filter(upload_part::upload_id.eq(id))
            .order(upload_part::start_offset)
            .select((upload_part::start_offset, upload_part::size, upload_part::storage_key))
            .load(c)?;
        let mut at = 0;
        for (start, len, _) in &parts {
            if *start != at {
                return Err(diesel::result::Error::RollbackTransaction);
            }
            at += len;
        }
        if at != size {
            return Err(diesel::result::Error::RollbackTransaction);
        }
        Ok(Some(parts.into_iter().map(|(_, _, k)| k).collect()))
    })
}

/// Keys of every staged part of an upload.
pub fn part_keys(conn: &mut DbConnection, id: &str) -> QueryResult<Vec<String>> {
    upload_part::table.filter(upload_part::upload_id.eq(id)).select(upload_part::storage_key).load(conn)
}

pub fn delete(conn: &mut DbConnection, id: &str) -> QueryResult<usize> {
    diesel::delete(upload_part::table.filter(upload_part::upload_id.eq(id))).execute(conn)?;
    diesel::delete(upload::table.find(id)).execute(conn)
}

/// Which of `ids` are uploads that still exist.
pub fn existing(conn: &mut DbConnection, ids: &[String]) -> QueryResult<Vec<String>> {
    let mut found = Vec::new();
    for chunk in ids.chunks(500) {
        found.extend(upload::table.filter(upload::id.eq_any(chunk)).select(upload::id).load::<String>(conn)?);
    }
    Ok(found)
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

/// Forgets one blob pushed ahead of its manifest; whether it was there.
pub fn remove_pushed_blob(conn: &mut DbConnection, repository_id: &str, blob_id: &str) -> QueryResult<bool> {
    diesel::delete(pushed_blob::table.filter(pushed_blob::repository_id.eq(repository_id)).filter(pushed_blob::blob_id.eq(blob_id)))
        .execute(conn)
        .map(|n| n > 0)
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
