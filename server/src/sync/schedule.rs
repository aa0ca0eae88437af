//! The scheduler: every replica runs it; each turn it records how the schedules' last runs
//! ended, then dispatches the schedules that are due, each as an ordinary sync task.
//!
//! A schedule never fires twice at once, on one replica or several: the task is enqueued in the
//! same write transaction that moves the schedule from "due at T" to "running task X" (compare
//! and set on T), and a replica whose compare-and-set changes nothing rolls its task back. The
//! next run is set only once X has finished: the interval after a success; after a failure a
//! delay doubling from a short base up to the interval.

use std::time::Duration;

use chrono::NaiveDateTime;

use crate::api::hrefs;
use crate::app::AppState;
use crate::db::{write_transaction, DbConnection, DbError};
use crate::models::schedule::{self, Outcome, SyncSchedule};
use crate::models::task;

const TICK: Duration = Duration::from_millis(250);
const MIN_BASE: Duration = Duration::from_millis(100);
const MAX_BASE: Duration = Duration::from_secs(60);

/// The delay before the next attempt after `failures` (at least 1) failed runs in a row:
/// `base · 2^(failures-1)`, at most the interval, with `base` an eighth of the interval within
/// 100 ms .. 60 s.
pub fn backoff(interval_seconds: i64, failures: i32) -> Duration {
    let interval = Duration::from_secs(interval_seconds.max(1) as u64);
    let base = (interval / 8).clamp(MIN_BASE, MAX_BASE);
    let doublings = failures.saturating_sub(1).clamp(0, 31) as u32;
    base.saturating_mul(1 << doublings).min(interval)
}

/// Runs the scheduler on this replica until shutdown begins.
pub fn spawn(state: AppState) {
    tokio::spawn(async move {
        // A database that is down fails every turn: say so once, not four times a second.
        let mut failing = false;
        while !state.readiness.shutting_down() {
            let turn = async {
                state.db.run(settle_finished).await?;
                state.db.run(dispatch_due).await
            };
            match turn.await {
                Ok(dispatched) => {
                    if dispatched > 0 {
                        state.tasks.wake.notify_waiters();
                    }
                    if std::mem::take(&mut failing) {
                        tracing::info!("the scheduler reaches the database again");
                    }
                }
                Err(e) if !failing => {
                    failing = true;
                    tracing::warn!(error = %e, "the scheduler cannot run scheduled syncs; retrying");
                }
                Err(e) => tracing::debug!(error = %e, "the scheduler cannot run scheduled syncs"),
            }
            tokio::time::sleep(TICK).await;
        }
    });
}

/// Records the outcome of every schedule whose task has finished (or was deleted).
fn settle_finished(conn: &mut DbConnection) -> Result<(), DbError> {
    for s in schedule::running(conn)? {
        let Some(task_id) = s.last_task_id.as_deref() else {
            // Nothing running after all: due now.
            let outcome = Outcome { failures: s.failures, backoff_ms: s.backoff_ms, next_run: crate::models::now() };
            schedule::settle(conn, &s.id, None, outcome)?;
            continue;
        };
        let (succeeded, finished_at, why) = match task::find(conn, task_id)? {
            Some(t) if !t.is_final() => continue,
            Some(t) => (t.state == task::COMPLETED, t.finished_at.unwrap_or_else(crate::models::now), t.state),
            None => (false, crate::models::now(), "deleted".to_string()),
        };
        let outcome = outcome_after(&s, succeeded, finished_at);
        if schedule::settle(conn, &s.id, Some(task_id), outcome)? && !succeeded {
            tracing::warn!(
                schedule = %s.id,
                repository = %s.repository_id,
                task = task_id,
                outcome = %why,
                failures = outcome.failures,
                backoff_seconds = outcome.backoff_ms as f64 / 1000.0,
                "scheduled sync did not complete; backing off"
            );
        }
    }
    Ok(())
}

fn outcome_after(s: &SyncSchedule, succeeded: bool, finished_at: NaiveDateTime) -> Outcome {
    let after = |d: Duration| finished_at + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX);
    if succeeded {
        return Outcome { failures: 0, backoff_ms: 0, next_run: after(Duration::from_secs(s.interval_seconds.max(0) as u64)) };
    }
    let failures = s.failures.saturating_add(1);
    let delay = backoff(s.interval_seconds, failures);
    Outcome { failures, backoff_ms: delay.as_millis() as i64, next_run: after(delay) }
}

/// Enqueues a sync task for every due schedule this replica wins; how many it dispatched.
fn dispatch_due(conn: &mut DbConnection) -> Result<usize, DbError> {
    let mut dispatched = 0;
    for s in schedule::due(conn, crate::models::now())? {
        if let Some(t) = dispatch(conn, &s)? {
            dispatched += 1;
            tracing::info!(schedule = %s.id, repository = %s.repository_id, task = %t.id, request_id = %t.logging_cid, "scheduled sync dispatched");
        }
    }
    Ok(dispatched)
}

/// Enqueues the sync of `s` (as read: due at its `next_run`) and marks the schedule running, in
/// one transaction; `None`, and no task, when the schedule changed since it was read (another
/// replica dispatched it, or a user changed it).
pub fn dispatch(conn: &mut DbConnection, s: &SyncSchedule) -> diesel::QueryResult<Option<task::Task>> {
    let Some(due_at) = s.next_run else { return Ok(None) };
    let args = crate::sync::SyncArgs { repository_id: s.repository_id.clone(), remote_id: s.remote_id.clone(), mirror: s.mirror };
    let args = serde_json::to_value(&args).expect("serialisable");
    let resources = [hrefs::repository(&s.repository_id)];
    let cid = crate::observe::request::new_request_id();
    let won = write_transaction(conn, |conn| {
        let t = task::enqueue(conn, super::TASK_NAME, &args, &resources, &cid)?;
        if schedule::start_run(conn, &s.id, due_at, &t.id)? {
            Ok(t)
        } else {
            Err(diesel::result::Error::RollbackTransaction)
        }
    });
    match won {
        Ok(t) => Ok(Some(t)),
        Err(diesel::result::Error::RollbackTransaction) => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::backoff;
    use std::time::Duration;

    #[test]
    fn backoff_doubles_from_an_eighth_of_the_interval_up_to_it() {
        let ms = |n| Duration::from_millis(n);
        let two_seconds: Vec<Duration> = (1..=6).map(|f| backoff(2, f)).collect();
        assert_eq!(two_seconds, [ms(250), ms(500), ms(1000), ms(2000), ms(2000), ms(2000)]);
        assert_eq!(backoff(1, 1), ms(125));
        assert_eq!(backoff(3600, 1), Duration::from_secs(60), "an eighth of an hour is over the 60 s cap");
        assert_eq!(backoff(3600, 7), Duration::from_secs(3600));
        assert_eq!(backoff(31_536_000, i32::MAX), Duration::from_secs(31_536_000));
    }
}
