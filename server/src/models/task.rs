//! The task table: enqueue, claim (with exclusive resources), progress, finish, cancel,
//! and the recovery of tasks whose worker died.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::{Page, Window};
use crate::db::schema::{reserved_resource, task, worker};
use crate::db::{write_transaction, DbConnection};

pub const WAITING: &str = "waiting";
pub const RUNNING: &str = "running";
pub const COMPLETED: &str = "completed";
pub const FAILED: &str = "failed";
pub const CANCELING: &str = "canceling";
pub const CANCELED: &str = "canceled";
pub const STATES: [&str; 6] = [WAITING, RUNNING, COMPLETED, FAILED, CANCELING, CANCELED];

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = task)]
pub struct Task {
    pub id: String,
    pub name: String,
    pub state: String,
    pub args: String,
    pub worker: Option<String>,
    pub error: Option<String>,
    pub progress_reports: String,
    pub created_resources: String,
    pub reserved_resources: String,
    pub pulp_created: NaiveDateTime,
    pub started_at: Option<NaiveDateTime>,
    pub finished_at: Option<NaiveDateTime>,
    /// The correlation id of the request that dispatched it.
    pub logging_cid: String,
    pub unblocked_at: Option<NaiveDateTime>,
}

impl Task {
    pub fn resources(&self) -> Vec<String> {
        serde_json::from_str(&self.reserved_resources).unwrap_or_default()
    }

    pub fn is_final(&self) -> bool {
        matches!(self.state.as_str(), COMPLETED | FAILED | CANCELED)
    }
}

/// `logging_cid`: the correlation id of the request that dispatches the task.
pub fn enqueue(conn: &mut DbConnection, name: &str, args: &serde_json::Value, resources: &[String], logging_cid: &str) -> QueryResult<Task> {
    let row = Task {
        id: super::new_id(),
        name: name.to_string(),
        state: WAITING.to_string(),
        args: args.to_string(),
        worker: None,
        error: None,
        progress_reports: "[]".into(),
        created_resources: "[]".into(),
        reserved_resources: serde_json::to_string(resources).expect("strings serialise"),
        pulp_created: super::now(),
        started_at: None,
        finished_at: None,
        logging_cid: logging_cid.to_string(),
        unblocked_at: None,
    };
    diesel::insert_into(task::table).values(&row).execute(conn)?;
    Ok(row)
}

pub fn find(conn: &mut DbConnection, id: &str) -> QueryResult<Option<Task>> {
    task::table.find(id).select(Task::as_select()).first(conn).optional()
}

/// Tasks in `state` (the `task_state` index answers it).
pub fn count_in_state(conn: &mut DbConnection, state: &str) -> QueryResult<i64> {
    task::table.filter(task::state.eq(state)).count().get_result(conn)
}

pub fn state_of(conn: &mut DbConnection, id: &str) -> QueryResult<String> {
    task::table.find(id).select(task::state).first(conn)
}

type Db = <DbConnection as diesel::Connection>::Backend;
type TaskCondition = Box<dyn BoxableExpression<task::table, Db, SqlType = diesel::sql_types::Bool>>;

/// Rows whose JSON list of strings in `$column` has any of `$values` as an element: a LIKE on
/// the JSON-quoted element, so `"a"` never matches inside `"ab"`.
macro_rules! json_list_has_any {
    ($column:expr, $values:expr) => {{
        use diesel::IntoSql;
        let mut condition: TaskCondition = Box::new(false.into_sql::<diesel::sql_types::Bool>());
        for value in $values {
            let quoted = serde_json::to_string(value).expect("strings serialise");
            let pattern = format!("%{}%", super::filter::like_escape(&quoted));
            condition = Box::new(condition.or($column.like(pattern).escape('\\')));
        }
        condition
    }};
}

/// Tasks, newest first unless `ordering` says otherwise. `worker` is a worker's name.
pub fn list(conn: &mut DbConnection, criteria: &super::filter::Criteria, window: Window) -> QueryResult<Page<Task>> {
    let filtered = || {
        let mut q = crate::filter_text!(task::table.into_boxed(), task::name, criteria.text_match("name"));
        q = crate::filter_text!(q, task::logging_cid, criteria.text_match("logging_cid"));
        if let Some(states) = criteria.one_of("state") {
            q = q.filter(task::state.eq_any(states));
        }
        if let Some(w) = criteria.text("worker") {
            q = q.filter(task::worker.eq(w));
        }
        if let Some(ids) = criteria.list("pulp_href__in") {
            q = q.filter(task::id.eq_any(ids));
        }
        // Every reservation is exclusive: `exclusive_resources` reads the same record, and
        // `shared_resources` matches no task.
        let given = |field: &str| criteria.text(field).map(|v| vec![v]).into_iter().chain(criteria.list(&format!("{field}__in")));
        for any_of in given("reserved_resources").chain(given("exclusive_resources")) {
            q = q.filter(json_list_has_any!(task::reserved_resources, &any_of));
        }
        if given("shared_resources").next().is_some() {
            q = q.filter(json_list_has_any!(task::reserved_resources, &[] as &[String]));
        }
        if let Some(href) = criteria.text("created_resources") {
            q = q.filter(json_list_has_any!(task::created_resources, [&href]));
        }
        q = crate::filter_range!(q, task::started_at, criteria.time_range("started_at"));
        crate::filter_range!(q, task::finished_at, criteria.time_range("finished_at"))
    };
    let count = filtered().count().get_result(conn)?;
    let mut q = filtered();
    // Unset times sort as PostgreSQL sorts NULL (after the rest ascending, before descending)
    // on both backends.
    for (field, descending) in &criteria.sort {
        q = match (field.as_str(), *descending) {
            ("pulp_created", false) => q.then_order_by(task::pulp_created.asc()),
            ("pulp_created", true) => q.then_order_by(task::pulp_created.desc()),
            ("name", false) => q.then_order_by(task::name.asc()),
            ("name", true) => q.then_order_by(task::name.desc()),
            ("state", false) => q.then_order_by(task::state.asc()),
            ("state", true) => q.then_order_by(task::state.desc()),
            ("started_at", false) => q.then_order_by(task::started_at.is_null().asc()).then_order_by(task::started_at.asc()),
            ("started_at", true) => q.then_order_by(task::started_at.is_null().desc()).then_order_by(task::started_at.desc()),
            ("finished_at", false) => q.then_order_by(task::finished_at.is_null().asc()).then_order_by(task::finished_at.asc()),
            ("finished_at", true) => q.then_order_by(task::finished_at.is_null().desc()).then_order_by(task::finished_at.desc()),
            _ => q,
        };
    }
    let rows = q
        .then_order_by(task::pulp_created.desc())
        .then_order_by(task::id)
        .limit(window.limit)
        .offset(window.offset)
        .select(Task::as_select())
        .load(conn)?;
    Ok(Page { count, rows })
}

/// Claims the oldest waiting task whose resources are free, reserving them. Waiting tasks
/// queue in creation order: a later task never overtakes an earlier one on the same resource.
pub fn claim_next(conn: &mut DbConnection, worker_name: &str) -> QueryResult<Option<Task>> {
    write_transaction(conn, |conn| {
        let candidates: Vec<Task> = match conn {
            DbConnection::Pg(pg) => {
                // One claim at a time across every replica (a claim takes milliseconds): with
                // SKIP LOCKED alone, a worker could skip the oldest task while another worker
                // is claiming it, find its resource still free, and start a later task first.
                diesel::sql_query("SELECT pg_advisory_xact_lock(7157017)").execute(pg)?;
                task::table
                .filter(task::state.eq(WAITING))
                .order((task::pulp_created, task::id))
                .limit(100)
                .for_update()
                .skip_locked()
                .select(Task::as_select())
                .load(pg)?
            }
            // SQLite: the immediate transaction already makes this the only writer.
            DbConnection::Sqlite(_) => task::table
                .filter(task::state.eq(WAITING))
                .order((task::pulp_created, task::id))
                .limit(100)
                .select(Task::as_select())
                .load(conn)?,
        };
        let held: Vec<String> = reserved_resource::table.select(reserved_resource::resource).load(conn)?;
        let mut queued: Vec<String> = Vec::new();
        for candidate in candidates {
            let resources = candidate.resources();
            if resources.iter().any(|r| held.contains(r) || queued.contains(r)) {
                queued.extend(resources);
                continue;
            }
            for r in &resources {
                diesel::insert_into(reserved_resource::table)
                    .values((reserved_resource::resource.eq(r), reserved_resource::task_id.eq(&candidate.id)))
                    .execute(conn)?;
            }
            let started = super::now();
            diesel::update(task::table.find(&candidate.id))
                .set((task::state.eq(RUNNING), task::worker.eq(worker_name), task::started_at.eq(started), task::unblocked_at.eq(started)))
                .execute(conn)?;
            return Ok(Some(Task {
                state: RUNNING.into(),
                worker: Some(worker_name.into()),
                started_at: Some(started),
                unblocked_at: Some(started),
                ..candidate
            }));
        }
        Ok(None)
    })
}

pub fn set_progress(conn: &mut DbConnection, id: &str, reports: &serde_json::Value) -> QueryResult<()> {
    diesel::update(task::table.find(id))
        .set(task::progress_reports.eq(reports.to_string()))
        .execute(conn)
        .map(|_| ())
}

/// Records the outcome and frees the task's resources. A task asked to cancel ends canceled.
pub fn finish(
    conn: &mut DbConnection,
    id: &str,
    outcome: Result<Vec<String>, String>,
) -> QueryResult<&'static str> {
    write_transaction(conn, |conn| {
        let current: String = task::table.find(id).select(task::state).first(conn)?;
        let finished = super::now();
        let (state, error, created) = match (current.as_str(), outcome) {
            (CANCELING, _) => (CANCELED, None, None),
            (_, Ok(created)) => (COMPLETED, None, Some(created)),
            (_, Err(description)) => (FAILED, Some(serde_json::json!({ "description": description }).to_string()), None),
        };
        diesel::update(task::table.find(id))
            .set((task::state.eq(state), task::error.eq(error), task::finished_at.eq(finished)))
            .execute(conn)?;
        if let Some(created) = created {
            diesel::update(task::table.find(id))
                .set(task::created_resources.eq(serde_json::to_string(&created).expect("strings serialise")))
                .execute(conn)?;
        }
        diesel::delete(reserved_resource::table.filter(reserved_resource::task_id.eq(id))).execute(conn)?;
        Ok(state)
    })
}

/// Asks a task to stop. Waiting tasks are canceled at once; running ones move to `canceling`
/// and their worker stops them. Returns None when the task is already final.
pub fn request_cancel(conn: &mut DbConnection, id: &str) -> QueryResult<Option<Task>> {
    write_transaction(conn, |conn| {
        let current: Task = task::table.find(id).select(Task::as_select()).first(conn)?;
        match current.state.as_str() {
            WAITING => {
                diesel::update(task::table.find(id))
                    .set((task::state.eq(CANCELED), task::finished_at.eq(super::now())))
                    .execute(conn)?;
            }
            RUNNING => {
                diesel::update(task::table.find(id)).set(task::state.eq(CANCELING)).execute(conn)?;
            }
            CANCELING => {}
            _ => return Ok(None),
        }
        task::table.find(id).select(Task::as_select()).first(conn).map(Some)
    })
}

pub fn heartbeat(conn: &mut DbConnection, name: &str, hostname: &str, pid: i64) -> QueryResult<()> {
    let now = super::now();
    let updated = diesel::update(worker::table.find(name))
        .set(worker::last_heartbeat.eq(now))
        .execute(conn)?;
    if updated == 0 {
        diesel::insert_into(worker::table)
            .values((worker::name.eq(name), worker::hostname.eq(hostname), worker::pid.eq(pid), worker::last_heartbeat.eq(now)))
            .execute(conn)?;
    }
    Ok(())
}

pub fn remove_worker(conn: &mut DbConnection, name: &str) -> QueryResult<()> {
    diesel::delete(worker::table.find(name)).execute(conn).map(|_| ())
}

/// Puts a task its worker stopped at shutdown back in the queue: `waiting` again, in its old
/// place (creation order), with no worker and its resources free, for any worker to run
/// afresh. A task that was being canceled ends canceled instead. Returns whether it went back.
pub fn hand_back(conn: &mut DbConnection, id: &str) -> QueryResult<bool> {
    write_transaction(conn, |conn| {
        let current: String = task::table.find(id).select(task::state).first(conn)?;
        let back = current == RUNNING;
        if back {
            diesel::update(task::table.find(id))
                .set((
                    task::state.eq(WAITING),
                    task::worker.eq(None::<String>),
                    task::started_at.eq(None::<NaiveDateTime>),
                    task::unblocked_at.eq(None::<NaiveDateTime>),
                    task::progress_reports.eq("[]"),
                ))
                .execute(conn)?;
        } else if current == CANCELING {
            diesel::update(task::table.find(id)).set((task::state.eq(CANCELED), task::finished_at.eq(super::now()))).execute(conn)?;
        }
        diesel::delete(reserved_resource::table.filter(reserved_resource::task_id.eq(id))).execute(conn)?;
        Ok(back)
    })
}

/// Marks failed every running task whose worker is gone: its process on this host no longer
/// exists, or it stopped sending heartbeats (another host). Returns how many were failed.
pub fn fail_orphans(
    conn: &mut DbConnection,
    my_workers: &[String],
    hostname: &str,
    stale_before: NaiveDateTime,
    process_alive: impl Fn(i64) -> bool,
) -> QueryResult<usize> {
    write_transaction(conn, |conn| {
        let running: Vec<Task> = task::table
            .filter(task::state.eq_any([RUNNING, CANCELING]))
            .select(Task::as_select())
            .load(conn)?;
        let mut failed = 0;
        for t in running {
            let Some(worker_name) = t.worker.clone() else { continue };
            if my_workers.contains(&worker_name) {
                continue;
            }
            let row: Option<(String, i64, NaiveDateTime)> = worker::table
                .find(&worker_name)
                .select((worker::hostname, worker::pid, worker::last_heartbeat))
                .first(conn)
                .optional()?;
            let dead = match row {
                None => true,
                Some((host, pid, beat)) => {
                    (host == hostname && (pid == i64::from(std::process::id()) || !process_alive(pid)))
                        || beat < stale_before
                }
            };
            if !dead {
                continue;
            }
            let description = format!(
                "Task was running on worker {worker_name}, which stopped before the task finished \
                 (the process was killed or crashed). It can be run again."
            );
            diesel::update(task::table.find(&t.id))
                .set((
                    task::state.eq(FAILED),
                    task::error.eq(serde_json::json!({ "description": description }).to_string()),
                    task::finished_at.eq(super::now()),
                ))
                .execute(conn)?;
            diesel::delete(reserved_resource::table.filter(reserved_resource::task_id.eq(&t.id))).execute(conn)?;
            diesel::delete(worker::table.find(&worker_name)).execute(conn)?;
            failed += 1;
        }
        Ok(failed)
    })
}

/// A worker that heartbeated within this long is online (heartbeats come every 5 s).
pub const ONLINE_WITHIN: chrono::Duration = chrono::Duration::seconds(30);

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = worker)]
pub struct Worker {
    pub name: String,
    pub hostname: String,
    pub pid: i64,
    pub last_heartbeat: NaiveDateTime,
}

pub fn list_workers(conn: &mut DbConnection, criteria: &super::filter::Criteria, window: Window) -> QueryResult<Page<Worker>> {
    let filtered = || {
        let mut q = crate::filter_text!(worker::table.into_boxed(), worker::name, criteria.text_match("name"));
        q = crate::filter_range!(q, worker::last_heartbeat, criteria.time_range("last_heartbeat"));
        let cutoff = super::now() - ONLINE_WITHIN;
        match criteria.boolean("online") {
            Some(true) => q.filter(worker::last_heartbeat.ge(cutoff)),
            Some(false) => q.filter(worker::last_heartbeat.lt(cutoff)),
            None => q,
        }
    };
    let count = filtered().count().get_result(conn)?;
    let rows = crate::sort_by!(filtered(), criteria, [worker::name], {
        "name" => worker::name,
        "last_heartbeat" => worker::last_heartbeat,
    })
    .limit(window.limit)
    .offset(window.offset)
    .select(Worker::as_select())
    .load(conn)?;
    Ok(Page { count, rows })
}

pub fn find_worker(conn: &mut DbConnection, name: &str) -> QueryResult<Option<Worker>> {
    worker::table.find(name).select(Worker::as_select()).first(conn).optional()
}

/// The task a worker is running, if any.
pub fn current_task(conn: &mut DbConnection, worker_name: &str) -> QueryResult<Option<String>> {
    task::table
        .filter(task::worker.eq(worker_name))
        .filter(task::state.eq_any([RUNNING, CANCELING]))
        .select(task::id)
        .first(conn)
        .optional()
}

/// The states a task ends in.
pub const FINAL_STATES: [&str; 4] = [COMPLETED, "skipped", FAILED, CANCELED];

/// Deletes a task that has finished: `None` when there is no such task, `Some(Err(state))`
/// when it has not finished (it stays).
pub fn delete_finished(conn: &mut DbConnection, id: &str) -> QueryResult<Option<Result<(), String>>> {
    let deleted = diesel::delete(task::table.find(id).filter(task::state.eq_any(FINAL_STATES))).execute(conn)?;
    if deleted > 0 {
        return Ok(Some(Ok(())));
    }
    Ok(task::table.find(id).select(task::state).first::<String>(conn).optional()?.map(Err))
}

/// Deletes the tasks in one of `states` (final ones only) that finished before `before`;
/// returns how many.
pub fn purge(conn: &mut DbConnection, before: NaiveDateTime, states: &[String]) -> QueryResult<usize> {
    let states: Vec<&str> = states.iter().map(String::as_str).filter(|s| FINAL_STATES.contains(s)).collect();
    diesel::delete(task::table.filter(task::state.eq_any(states)).filter(task::finished_at.lt(before))).execute(conn)
}
