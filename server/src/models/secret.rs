//! Secrets on their way into a row through a task: a task's arguments are readable by anyone
//! who can list tasks, so they name a staged secret instead of holding its value.

use diesel::prelude::*;

use crate::db::schema::staged_secret;
use crate::db::DbConnection;

/// Stages `value`; returns the id the task's arguments carry instead.
pub fn stage(conn: &mut DbConnection, value: &str) -> QueryResult<String> {
    let id = super::new_id();
    diesel::insert_into(staged_secret::table)
        .values((staged_secret::id.eq(&id), staged_secret::value.eq(value), staged_secret::pulp_created.eq(super::now())))
        .execute(conn)?;
    Ok(id)
}

/// Takes a staged secret out: it is read once and gone.
pub fn take(conn: &mut DbConnection, id: &str) -> QueryResult<Option<String>> {
    let value = staged_secret::table.find(id).select(staged_secret::value).first::<String>(conn).optional()?;
    diesel::delete(staged_secret::table.find(id)).execute(conn)?;
    Ok(value)
}

/// Removes secrets staged before `before` whose task never took them (it failed or was
/// cancelled before applying them).
pub fn drop_stale(conn: &mut DbConnection, before: chrono::NaiveDateTime) -> QueryResult<usize> {
    diesel::delete(staged_secret::table.filter(staged_secret::pulp_created.lt(before))).execute(conn)
}
