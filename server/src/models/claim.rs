//! Writers of stored artifacts and orphan cleanup, kept apart (migration 000006). A writer
//! claims a digest before it keeps or writes its object and waits while cleanup is deleting that
//! object; cleanup marks a digest before deleting its object and leaves it when a writer holds a
//! claim. Both write their row before they read the other's, so at least one sees the other.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::db::schema::{artifact_claim, artifact_deletion};
use crate::db::{DbConnection, DbError};

/// A deletion marker older than this belongs to a cleanup that died: one object's delete is
/// bounded by the store's 30 s answer timeout.
pub const MARKER_LIFETIME: chrono::Duration = chrono::Duration::minutes(5);
/// A claim older than this belongs to a writer that died (a download may take hours).
pub const CLAIM_LIFETIME: chrono::Duration = chrono::Duration::days(1);

pub fn claim(conn: &mut DbConnection, sha256_hex: &str) -> Result<String, DbError> {
    let id = super::new_id();
    diesel::insert_into(artifact_claim::table)
        .values((artifact_claim::id.eq(&id), artifact_claim::sha256.eq(sha256_hex), artifact_claim::created.eq(super::database_now(conn)?)))
        .execute(conn)?;
    Ok(id)
}

pub fn release(conn: &mut DbConnection, id: &str) -> Result<(), DbError> {
    diesel::delete(artifact_claim::table.find(id)).execute(conn)?;
    Ok(())
}

/// Whether cleanup is deleting this digest's object now.
pub fn being_deleted(conn: &mut DbConnection, sha256_hex: &str) -> Result<bool, DbError> {
    let since = super::database_now(conn)? - MARKER_LIFETIME;
    diesel::select(diesel::dsl::exists(
        artifact_deletion::table.filter(artifact_deletion::sha256.eq(sha256_hex)).filter(artifact_deletion::created.ge(since)),
    ))
    .get_result(conn)
    .map_err(DbError::from)
}

pub fn mark_deleting(conn: &mut DbConnection, sha256_hex: &str) -> Result<(), DbError> {
    let now = super::database_now(conn)?;
    diesel::delete(artifact_deletion::table.find(sha256_hex)).execute(conn)?;
    diesel::insert_into(artifact_deletion::table)
        .values((artifact_deletion::sha256.eq(sha256_hex), artifact_deletion::created.eq(now)))
        .execute(conn)?;
    Ok(())
}

pub fn unmark(conn: &mut DbConnection, sha256_hex: &str) -> Result<(), DbError> {
    diesel::delete(artifact_deletion::table.find(sha256_hex)).execute(conn)?;
    Ok(())
}

/// Whether a live writer holds a claim on this digest.
pub fn claimed(conn: &mut DbConnection, sha256_hex: &str) -> Result<bool, DbError> {
    let since = super::database_now(conn)? - CLAIM_LIFETIME;
    diesel::select(diesel::dsl::exists(
        artifact_claim::table.filter(artifact_claim::sha256.eq(sha256_hex)).filter(artifact_claim::created.ge(since)),
    ))
    .get_result(conn)
    .map_err(DbError::from)
}

/// Claims and markers of writers and cleanups that died.
pub fn drop_stale(conn: &mut DbConnection, now: NaiveDateTime) -> Result<usize, DbError> {
    let claims = diesel::delete(artifact_claim::table.filter(artifact_claim::created.lt(now - CLAIM_LIFETIME))).execute(conn)?;
    let markers = diesel::delete(artifact_deletion::table.filter(artifact_deletion::created.lt(now - MARKER_LIFETIME))).execute(conn)?;
    Ok(claims + markers)
}

/// A writer's claim, held from before it keeps or writes an object until its artifact row is
/// recorded. Dropped without `release` (an error path), it is released in the background.
pub struct WriteClaim {
    db: crate::db::Db,
    id: Option<String>,
}

impl WriteClaim {
    /// Claims `sha256_hex`, then waits while cleanup deletes that object (after which the writer
    /// finds it gone and writes it again).
    pub async fn take(db: &crate::db::Db, sha256_hex: &str) -> Result<Self, crate::db::DbError> {
        let hex = sha256_hex.to_string();
        let id = db.run(move |c| claim(c, &hex)).await?;
        let held = WriteClaim { db: db.clone(), id: Some(id) };
        loop {
            let hex = sha256_hex.to_string();
            if !db.run(move |c| being_deleted(c, &hex)).await? {
                return Ok(held);
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    pub async fn release(mut self) {
        if let Some(id) = self.id.take() {
            if let Err(e) = self.db.run(move |c| release(c, &id)).await {
                tracing::warn!(error = %e, "could not release an artifact claim (it lapses in a day)");
            }
        }
    }
}

impl Drop for WriteClaim {
    fn drop(&mut self) {
        if let (Some(id), Ok(runtime)) = (self.id.take(), tokio::runtime::Handle::try_current()) {
            let db = self.db.clone();
            runtime.spawn(async move {
                let _ = db.run(move |c| release(c, &id)).await;
            });
        }
    }
}
