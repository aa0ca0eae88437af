//! One label set or removed on a remote, repository or distribution, read-modify-write under a
//! row lock (PostgreSQL) or the write lock (SQLite), so two label changes at once both land.

use diesel::prelude::*;

use crate::db::schema::{distribution, remote, repository};
use crate::db::{write_transaction, DbConnection};

/// A label key: letters, digits, `_`, `-` and spaces (what a label selection can name).
pub fn is_key(key: &str) -> bool {
    !key.is_empty() && key.chars().all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | ' '))
}

/// The labelled tables.
#[derive(Debug, Clone, Copy)]
pub enum Labelled {
    Remote,
    Repository,
    Distribution,
}

/// Reads `id`'s labels (locked), lets `change` edit them, writes them back. `None` when there is
/// no such row; `change`'s error aborts without writing.
pub fn update<T, E>(
    conn: &mut DbConnection,
    kind: Labelled,
    id: &str,
    change: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>) -> Result<T, E>,
) -> Result<Option<T>, E>
where
    E: From<diesel::result::Error>,
{
    macro_rules! locked_read {
        ($conn:expr, $table:ident) => {{
            let q = $table::table.find(id).select($table::pulp_labels);
            match $conn {
                DbConnection::Pg(c) => q.for_update().first::<String>(c).optional()?,
                DbConnection::Sqlite(c) => q.first::<String>(c).optional()?,
            }
        }};
    }
    write_transaction(conn, |conn| {
        let stored = match kind {
            Labelled::Remote => locked_read!(conn, remote),
            Labelled::Repository => locked_read!(conn, repository),
            Labelled::Distribution => locked_read!(conn, distribution),
        };
        let Some(stored) = stored else { return Ok(None) };
        let mut labels = match serde_json::from_str(&stored) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => serde_json::Map::new(),
        };
        let out = change(&mut labels)?;
        let text = serde_json::Value::Object(labels).to_string();
        let now = super::now();
        match kind {
            Labelled::Remote => diesel::update(remote::table.find(id)).set((remote::pulp_labels.eq(&text), remote::pulp_last_updated.eq(now))).execute(conn)?,
            Labelled::Repository => diesel::update(repository::table.find(id)).set((repository::pulp_labels.eq(&text), repository::pulp_last_updated.eq(now))).execute(conn)?,
            Labelled::Distribution => diesel::update(distribution::table.find(id)).set((distribution::pulp_labels.eq(&text), distribution::pulp_last_updated.eq(now))).execute(conn)?,
        };
        Ok(Some(out))
    })
}

/// The labels stored now (JSON text), if the row exists.
pub fn current(conn: &mut DbConnection, kind: Labelled, id: &str) -> QueryResult<Option<String>> {
    match kind {
        Labelled::Remote => remote::table.find(id).select(remote::pulp_labels).first(conn).optional(),
        Labelled::Repository => repository::table.find(id).select(repository::pulp_labels).first(conn).optional(),
        Labelled::Distribution => distribution::table.find(id).select(distribution::pulp_labels).first(conn).optional(),
    }
}
