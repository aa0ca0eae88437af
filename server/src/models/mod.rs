//! Diesel rows and the queries over them. Nothing here knows about HTTP.

pub mod admin;
pub mod artifact;
pub mod claim;
pub mod content;
pub mod distribution;
pub mod filter;
pub mod labels;
pub mod lease;
pub mod pull_through;
pub mod referrer;
pub mod remote;
pub mod schedule;
pub mod secret;
pub mod repository;
pub mod task;
pub mod upload;

use chrono::NaiveDateTime;

pub fn now() -> NaiveDateTime {
    chrono::Utc::now().naive_utc()
}

/// The database server's clock in UTC, for times several replicas compare (PostgreSQL); SQLite
/// serves one replica, whose clock is the only one.
pub fn database_now(conn: &mut crate::db::DbConnection) -> Result<NaiveDateTime, crate::db::DbError> {
    use diesel::RunQueryDsl;
    match conn {
        crate::db::DbConnection::Pg(c) => Ok(diesel::select(diesel::dsl::sql::<diesel::sql_types::Timestamp>("(now() AT TIME ZONE 'UTC')")).get_result(c)?),
        crate::db::DbConnection::Sqlite(_) => Ok(now()),
    }
}

pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub limit: i64,
    pub offset: i64,
}

/// A page of rows plus the total the filter matched.
#[derive(Debug)]
pub struct Page<T> {
    pub count: i64,
    pub rows: Vec<T>,
}

impl<T> Page<T> {
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page { count: self.count, rows: self.rows.into_iter().map(f).collect() }
    }
}

/// `load` over `ids` 500 at a time, results concatenated: a list of ids can be longer than one
/// statement may bind.
pub fn in_chunks<T>(ids: &[String], mut load: impl FnMut(&[String]) -> diesel::QueryResult<Vec<T>>) -> diesel::QueryResult<Vec<T>> {
    let mut out = Vec::new();
    for chunk in ids.chunks(500) {
        out.extend(load(chunk)?);
    }
    Ok(out)
}
