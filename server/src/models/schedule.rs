//! Sync schedules: a repository synced from a remote every interval, the next run delayed by
//! a backoff after failures. `next_run` is NULL while the task a schedule dispatched
//! (`last_task_id`) has not finished; both columns change only by compare-and-set, so that
//! replicas sharing the database never dispatch one schedule twice (`sync::schedule`).

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::filter::Criteria;
use super::{Page, Window};
use crate::db::schema::sync_schedule;
use crate::db::DbConnection;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = sync_schedule)]
pub struct SyncSchedule {
    pub id: String,
    pub repository_id: String,
    pub remote_id: String,
    pub interval_seconds: i64,
    pub mirror: bool,
    pub enabled: bool,
    /// When the next sync is due; NULL while the last dispatched one has not finished.
    pub next_run: Option<NaiveDateTime>,
    pub last_task_id: Option<String>,
    /// Failed runs in a row.
    pub failures: i32,
    /// The delay after the last failure (0 when the last run succeeded).
    pub backoff_ms: i64,
    pub pulp_created: NaiveDateTime,
    pub pulp_last_updated: NaiveDateTime,
}

/// What a user sets; the rest belongs to the scheduler.
#[derive(Debug, Clone, AsChangeset)]
#[diesel(table_name = sync_schedule)]
pub struct Settings {
    pub repository_id: String,
    pub remote_id: String,
    pub interval_seconds: i64,
    pub mirror: bool,
    pub enabled: bool,
    pub pulp_last_updated: NaiveDateTime,
}

impl SyncSchedule {
    /// A new schedule, due now.
    pub fn new(repository_id: String, remote_id: String, interval_seconds: i64) -> SyncSchedule {
        let t = super::now();
        SyncSchedule {
            id: super::new_id(),
            repository_id,
            remote_id,
            interval_seconds,
            mirror: false,
            enabled: true,
            next_run: Some(t),
            last_task_id: None,
            failures: 0,
            backoff_ms: 0,
            pulp_created: t,
            pulp_last_updated: t,
        }
    }

    pub fn settings(&self) -> Settings {
        Settings {
            repository_id: self.repository_id.clone(),
            remote_id: self.remote_id.clone(),
            interval_seconds: self.interval_seconds,
            mirror: self.mirror,
            enabled: self.enabled,
            pulp_last_updated: self.pulp_last_updated,
        }
    }
}

pub fn insert(conn: &mut DbConnection, row: &SyncSchedule) -> QueryResult<()> {
    diesel::insert_into(sync_schedule::table).values(row).execute(conn).map(|_| ())
}

/// Writes a user's settings; with `due_now`, also makes the schedule due now unless its task
/// is running (that run's outcome then sets the next one).
/// Call in a write transaction, after `find_for_update`.
pub fn update_settings(conn: &mut DbConnection, id: &str, settings: &Settings, due_now: bool) -> QueryResult<()> {
    diesel::update(sync_schedule::table.find(id)).set(settings).execute(conn)?;
    if due_now {
        diesel::update(sync_schedule::table.find(id).filter(sync_schedule::next_run.is_not_null()))
            .set(sync_schedule::next_run.eq(settings.pulp_last_updated))
            .execute(conn)?;
    }
    Ok(())
}

/// The schedule, locked until the write transaction ends (PostgreSQL; SQLite's write
/// transactions are one at a time already), so that two updates never work from one reading.
pub fn find_for_update(conn: &mut DbConnection, id: &str) -> QueryResult<Option<SyncSchedule>> {
    if let DbConnection::Pg(pg) = conn {
        return sync_schedule::table.find(id).select(SyncSchedule::as_select()).for_update().first(pg).optional();
    }
    find(conn, id)
}

pub fn delete(conn: &mut DbConnection, id: &str) -> QueryResult<usize> {
    diesel::delete(sync_schedule::table.find(id)).execute(conn)
}

pub fn find(conn: &mut DbConnection, id: &str) -> QueryResult<Option<SyncSchedule>> {
    sync_schedule::table.find(id).select(SyncSchedule::as_select()).first(conn).optional()
}

pub fn find_by_repository(conn: &mut DbConnection, repository_id: &str) -> QueryResult<Option<SyncSchedule>> {
    sync_schedule::table
        .filter(sync_schedule::repository_id.eq(repository_id))
        .select(SyncSchedule::as_select())
        .first(conn)
        .optional()
}

pub fn list(conn: &mut DbConnection, criteria: &Criteria, window: Window) -> QueryResult<Page<SyncSchedule>> {
    let filtered = || {
        let mut q = sync_schedule::table.into_boxed();
        if let Some(ids) = criteria.list("pulp_href__in") {
            q = q.filter(sync_schedule::id.eq_any(ids));
        }
        if let Some(repository_id) = criteria.text("repository") {
            q = q.filter(sync_schedule::repository_id.eq(repository_id));
        }
        if let Some(remote_id) = criteria.text("remote") {
            q = q.filter(sync_schedule::remote_id.eq(remote_id));
        }
        if let Some(enabled) = criteria.boolean("enabled") {
            q = q.filter(sync_schedule::enabled.eq(enabled));
        }
        q
    };
    let count = filtered().count().get_result(conn)?;
    let rows = crate::sort_by!(filtered(), criteria, [sync_schedule::pulp_created, sync_schedule::id], {
        "pulp_created" => sync_schedule::pulp_created,
        "pulp_last_updated" => sync_schedule::pulp_last_updated,
        "next_run" => sync_schedule::next_run,
        "failures" => sync_schedule::failures,
    })
    .limit(window.limit)
    .offset(window.offset)
    .select(SyncSchedule::as_select())
    .load(conn)?;
    Ok(Page { count, rows })
}

/// Schedules whose dispatched task may have finished: their outcome is not recorded yet.
pub fn running(conn: &mut DbConnection) -> QueryResult<Vec<SyncSchedule>> {
    sync_schedule::table.filter(sync_schedule::next_run.is_null()).select(SyncSchedule::as_select()).load(conn)
}

/// Enabled schedules due at `now`, the most overdue first.
pub fn due(conn: &mut DbConnection, now: NaiveDateTime) -> QueryResult<Vec<SyncSchedule>> {
    sync_schedule::table
        .filter(sync_schedule::enabled.eq(true))
        .filter(sync_schedule::next_run.le(now))
        .order((sync_schedule::next_run, sync_schedule::id))
        .select(SyncSchedule::as_select())
        .load(conn)
}

/// The outcome of a run: the schedule `id` whose run `task_id` (NULL: none recorded) finished.
#[derive(Debug, Clone, Copy)]
pub struct Outcome {
    pub failures: i32,
    pub backoff_ms: i64,
    pub next_run: NaiveDateTime,
}

/// Records `outcome` if the schedule still waits for `task_id`; whether it did (another
/// replica may have recorded it first).
pub fn settle(conn: &mut DbConnection, id: &str, task_id: Option<&str>, outcome: Outcome) -> QueryResult<bool> {
    let target = sync_schedule::table.find(id).filter(sync_schedule::next_run.is_null());
    let changes = (
        sync_schedule::failures.eq(outcome.failures),
        sync_schedule::backoff_ms.eq(outcome.backoff_ms),
        sync_schedule::next_run.eq(outcome.next_run),
    );
    let updated = match task_id {
        Some(t) => diesel::update(target.filter(sync_schedule::last_task_id.eq(t))).set(changes).execute(conn)?,
        None => diesel::update(target.filter(sync_schedule::last_task_id.is_null())).set(changes).execute(conn)?,
    };
    Ok(updated == 1)
}

/// Marks the run of `task_id` as started, if the schedule is still due at `next_run` (what its
/// dispatcher read); whether it was. Inside the transaction that enqueues the task.
pub fn start_run(conn: &mut DbConnection, id: &str, next_run: NaiveDateTime, task_id: &str) -> QueryResult<bool> {
    let updated = diesel::update(
        sync_schedule::table
            .find(id)
            .filter(sync_schedule::enabled.eq(true))
            .filter(sync_schedule::next_run.eq(next_run)),
    )
    .set((sync_schedule::next_run.eq(None::<NaiveDateTime>), sync_schedule::last_task_id.eq(task_id)))
    .execute(conn)?;
    Ok(updated == 1)
}
