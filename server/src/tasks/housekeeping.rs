//! Housekeeping tasks: orphan cleanup (content in no repository version, then artifacts no
//! content uses, with their stored bytes) and the purge of finished tasks.

use chrono::NaiveDateTime;
use serde::{Deserialize, Serialize};

use super::{TaskContext, TaskError, TaskResult};
use crate::db::{write_transaction, DbConnection, DbError};
use crate::models::artifact::{self, Artifact};
use crate::models::{claim, content, task};

pub const ORPHAN_CLEANUP: &str = "pulpish.orphans.cleanup";
pub const PURGE: &str = "pulpish.tasks.purge";
/// What every orphan cleanup reserves (Pulp's resource): one runs at a time.
pub const ORPHANS_RESOURCE: &str = "/pulp/api/v3/orphans/cleanup/";
/// Pulp's `ORPHAN_PROTECTION_TIME`: a day, in minutes.
pub const DEFAULT_ORPHAN_PROTECTION_MINUTES: i64 = 1440;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CleanupArgs {
    /// Only content and artifacts created longer ago than this are removed.
    pub protection_minutes: i64,
    /// Only these units (and the artifacts they used) are candidates.
    pub content_ids: Option<Vec<String>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PurgeArgs {
    pub finished_before: NaiveDateTime,
    pub states: Vec<String>,
}

/// Pulp's progress code for both halves of the cleanup.
const CLEANUP_CODE: &str = "clean-up.content";

pub async fn orphan_cleanup(ctx: TaskContext, args: CleanupArgs) -> TaskResult {
    let mut attempt = 0;
    let (content_removed, artifacts) = loop {
        let a = args.clone();
        match ctx.state.db.run(move |c| write_transaction(c, |c| remove_orphans(c, &a))).await {
            Ok(removed) => break removed,
            // PostgreSQL: a concurrent push or sync reached for a candidate first (a lock
            // conflict or deadlock victim): the next attempt sees it in use.
            Err(DbError::Query(diesel::result::Error::DatabaseError(..))) if attempt < 3 => attempt += 1,
            Err(e) => return Err(e.into()),
        }
    };
    ctx.progress(CLEANUP_CODE, "Clean up orphan Content", Some(content_removed as u64)).await?;
    ctx.advance(CLEANUP_CODE, content_removed as u64, true).await?;

    // The rows are gone; now their bytes, each unless a writer claims them (models::claim).
    let total = artifacts.len() as u64;
    ctx.progress(CLEANUP_CODE, "Clean up orphan Artifacts", Some(total)).await?;
    let mut failures = Vec::new();
    for (done, a) in artifacts.iter().enumerate() {
        let hex = a.sha256.clone();
        let free = ctx
            .state
            .db
            .run(move |c| {
                claim::mark_deleting(c, &hex)?;
                Ok::<_, DbError>(!claim::claimed(c, &hex)? && artifact::existing_sha256(c, std::slice::from_ref(&hex))?.is_empty())
            })
            .await?;
        if free {
            if let Err(e) = ctx.state.storage.remove_artifact(&a.storage_key).await {
                tracing::warn!(key = %a.storage_key, error = %e, "could not remove an orphan artifact's stored object");
                failures.push(a.storage_key.clone());
            }
        }
        let hex = a.sha256.clone();
        ctx.state.db.run(move |c| claim::unmark(c, &hex)).await?;
        if (done + 1) % 100 == 0 {
            ctx.advance(CLEANUP_CODE, done as u64 + 1, false).await?;
        }
    }
    ctx.advance(CLEANUP_CODE, total, true).await?;
    if let Some(first) = failures.first() {
        return Err(TaskError::Failed(format!(
            "Removed {total} orphan artifacts from the database, but the store refused to delete {} of their objects (e.g. {first}); they take space until deleted by hand.",
            failures.len()
        )));
    }
    Ok(vec![])
}

/// One transaction: the orphan content, then the artifacts no content uses; returns how many
/// units went and the artifacts whose bytes are to be deleted.
fn remove_orphans(c: &mut DbConnection, args: &CleanupArgs) -> Result<(usize, Vec<Artifact>), DbError> {
    let now = crate::models::database_now(c)?;
    // A protection longer than the calendar reaches back protects everything.
    let epoch = chrono::DateTime::UNIX_EPOCH.naive_utc();
    let cutoff = chrono::Duration::try_minutes(args.protection_minutes).and_then(|d| now.checked_sub_signed(d)).map_or(epoch, |t| t.max(epoch));
    let only = args.content_ids.as_deref();
    let candidates = content::unused(c, cutoff, only)?;
    content::lock(c, &candidates)?;
    // Again, now that nobody can start using them: a write that came first is visible now.
    let candidates = content::unused(c, cutoff, Some(&candidates))?;
    let doomed = content::deletable(c, candidates)?;
    let used = content::delete_units(c, &doomed)?;

    let scope = only.map(|_| used);
    let candidates: Vec<String> = artifact::unused(c, cutoff, scope.as_deref())?.into_iter().map(|a| a.id).collect();
    artifact::lock(c, &candidates)?;
    let artifacts = artifact::unused(c, cutoff, Some(&candidates))?;
    let ids: Vec<String> = artifacts.iter().map(|a| a.id.clone()).collect();
    artifact::delete_all(c, &ids)?;
    Ok((doomed.len(), artifacts))
}

pub async fn purge(ctx: TaskContext, args: PurgeArgs) -> TaskResult {
    let purged = ctx.state.db.run(move |c| task::purge(c, args.finished_before, &args.states).map_err(DbError::from)).await? as u64;
    ctx.progress("purge.tasks.total", "Purged task-objects total", Some(purged)).await?;
    ctx.advance("purge.tasks.total", purged, true).await?;
    Ok(vec![])
}
