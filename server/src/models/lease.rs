//! Download leases: which replica fetches a blob from its remote while the others stream it
//! from that replica. A lease lives until its owner releases it or stops renewing it.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::db::schema::blob_lease;
use crate::db::DbConnection;

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = blob_lease)]
pub struct Lease {
    pub digest: String,
    /// The replica id of the holder.
    pub owner: String,
    /// Where the other replicas reach the holder.
    pub address: String,
    pub expires_at: NaiveDateTime,
}

/// Takes the lease on `digest` for `owner` until `expires_at` unless another owner holds one
/// that is still live at `now`; returns whoever holds it afterwards. One statement, so two
/// replicas asking at once cannot both win. The owner asking again renews its lease (also one
/// that was released or lapsed under it).
pub fn acquire(conn: &mut DbConnection, digest: &str, owner: &str, address: &str, now: NaiveDateTime, expires_at: NaiveDateTime) -> QueryResult<Lease> {
    let row = Lease { digest: digest.into(), owner: owner.into(), address: address.into(), expires_at };
    let take = (blob_lease::owner.eq(owner), blob_lease::address.eq(address), blob_lease::expires_at.eq(expires_at));
    let stale = blob_lease::expires_at.lt(now).or(blob_lease::owner.eq(owner));
    let insert = diesel::insert_into(blob_lease::table).values(&row).on_conflict(blob_lease::digest).do_update().set(take);
    // `filter` on an upsert is the WHERE of its DO UPDATE.
    let insert = diesel::query_dsl::methods::FilterDsl::filter(insert, stale);
    // A holder that released between the two statements leaves no row to read: ask again.
    for _ in 0..3 {
        // ON CONFLICT is built per backend: the multi-backend connection does not offer it.
        match conn {
            DbConnection::Pg(c) => insert.execute(c)?,
            DbConnection::Sqlite(c) => insert.execute(c)?,
        };
        if let Some(holder) = find(conn, digest)? {
            return Ok(holder);
        }
    }
    Err(diesel::result::Error::NotFound)
}

/// Gives the lease up, if `owner` still holds it.
pub fn release(conn: &mut DbConnection, digest: &str, owner: &str) -> QueryResult<bool> {
    let n = diesel::delete(blob_lease::table.filter(blob_lease::digest.eq(digest)).filter(blob_lease::owner.eq(owner))).execute(conn)?;
    Ok(n > 0)
}

/// Gives up every lease `owner` holds but those on `keep`; returns how many.
pub fn release_owned_except(conn: &mut DbConnection, owner: &str, keep: &[String]) -> QueryResult<usize> {
    diesel::delete(blob_lease::table.filter(blob_lease::owner.eq(owner)).filter(blob_lease::digest.ne_all(keep))).execute(conn)
}

pub fn find(conn: &mut DbConnection, digest: &str) -> QueryResult<Option<Lease>> {
    blob_lease::table.find(digest).select(Lease::as_select()).first(conn).optional()
}

/// Removes leases that lapsed before `before`: their owners died, and an expired lease binds
/// nobody anyway, so this only tidies the table.
pub fn drop_lapsed(conn: &mut DbConnection, before: NaiveDateTime) -> QueryResult<usize> {
    diesel::delete(blob_lease::table.filter(blob_lease::expires_at.lt(before))).execute(conn)
}
