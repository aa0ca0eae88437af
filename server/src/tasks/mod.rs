//! The task queue's workers: claim a waiting task, run it, record progress and outcome, stop it
//! when canceled, and fail the tasks of workers that died.

pub mod housekeeping;
mod kinds;
pub mod versions;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::Notify;

use crate::app::AppState;
use crate::db::DbError;
use crate::models::task::{self, Task};

/// Task argument of the remote, repository and distribution updates: the request did not name
/// `pulp_labels`, so the labels stored when the task runs stay.
pub const KEEP_LABELS: &str = "keep_labels";

pub use kinds::{DEBUG_SLEEP, DISTRIBUTION_CREATE, DISTRIBUTION_DELETE, DISTRIBUTION_UPDATE, REMOTE_DELETE,
    REMOTE_UPDATE, REPOSITORY_DELETE, REPOSITORY_UPDATE};

const POLL: Duration = Duration::from_millis(500);
const HEARTBEAT: Duration = Duration::from_secs(5);
/// A worker on another host is presumed dead after this long without a heartbeat.
const STALE_AFTER: Duration = Duration::from_secs(30);

/// Why a task stopped without completing; becomes `error.description`.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error("{0}")]
    Failed(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<diesel::result::Error> for TaskError {
    fn from(e: diesel::result::Error) -> Self {
        TaskError::Db(DbError::Query(e))
    }
}

pub type TaskResult = Result<Vec<String>, TaskError>;

/// One progress report, Pulp's shape.
#[derive(Debug, Clone, Serialize)]
pub struct ProgressReport {
    pub message: String,
    pub code: String,
    pub state: String,
    pub total: Option<u64>,
    pub done: u64,
}

/// What a running task sees: the app's state and its own progress reports.
#[derive(Clone)]
pub struct TaskContext {
    pub state: AppState,
    pub task_id: String,
    reports: Arc<Mutex<Vec<ProgressReport>>>,
}

impl TaskContext {
    /// Starts a progress report and returns its code for later updates.
    pub async fn progress(&self, code: &str, message: &str, total: Option<u64>) -> Result<(), DbError> {
        {
            let mut reports = self.reports.lock().expect("progress lock");
            reports.push(ProgressReport {
                message: message.into(),
                code: code.into(),
                state: "running".into(),
                total,
                done: 0,
            });
        }
        self.save().await
    }

    pub async fn advance(&self, code: &str, done: u64, finished: bool) -> Result<(), DbError> {
        {
            let mut reports = self.reports.lock().expect("progress lock");
            if let Some(r) = reports.iter_mut().rev().find(|r| r.code == code) {
                r.done = done;
                if finished {
                    r.state = "completed".into();
                }
            }
        }
        self.save().await
    }

    async fn save(&self) -> Result<(), DbError> {
        let json = serde_json::to_value(&*self.reports.lock().expect("progress lock")).expect("reports serialise");
        let id = self.task_id.clone();
        self.state.db.run(move |c| task::set_progress(c, &id, &json).map_err(DbError::from)).await
    }
}

/// Wakes idle workers when a task is enqueued in this process; other processes find it by polling.
#[derive(Default)]
pub struct TaskQueue {
    pub wake: Notify,
}

impl TaskQueue {
    pub async fn enqueue(
        &self,
        state: &AppState,
        name: &str,
        args: serde_json::Value,
        resources: Vec<String>,
    ) -> Result<Task, DbError> {
        let name = name.to_string();
        let t = state
            .db
            .run(move |c| task::enqueue(c, &name, &args, &resources).map_err(DbError::from))
            .await?;
        self.wake.notify_waiters();
        Ok(t)
    }
}

/// This machine's host name, as workers and status/ report it.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|s| s.trim().to_string()).unwrap_or_else(|_| "localhost".into())
}

fn process_alive(pid: i64) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Starts `count` workers plus their heartbeat and orphan reaper; returns the workers' names.
pub async fn start_workers(state: AppState, count: usize) -> Result<Vec<String>, DbError> {
    let host = hostname();
    let pid = i64::from(std::process::id());
    let instance = &uuid::Uuid::new_v4().to_string()[..8];
    let names: Vec<String> = (0..count).map(|i| format!("{i}@{host}:{pid}:{instance}")).collect();
    for name in &names {
        let (n, h) = (name.clone(), host.clone());
        state.db.run(move |c| task::heartbeat(c, &n, &h, pid).map_err(DbError::from)).await?;
    }
    reap_orphans(&state, &names, &host).await?;

    for name in names.clone() {
        tokio::spawn(worker_loop(state.clone(), name));
    }
    let (s, n) = (state.clone(), names.clone());
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(HEARTBEAT).await;
            for name in &n {
                let (nm, h) = (name.clone(), host.clone());
                if let Err(e) = s.db.run(move |c| task::heartbeat(c, &nm, &h, pid).map_err(DbError::from)).await {
                    tracing::warn!(error = %e, "worker heartbeat failed");
                }
            }
            if let Err(e) = reap_orphans(&s, &n, &host).await {
                tracing::warn!(error = %e, "orphaned task check failed");
            }
        }
    });
    Ok(names)
}

async fn reap_orphans(state: &AppState, mine: &[String], host: &str) -> Result<(), DbError> {
    let (mine, host) = (mine.to_vec(), host.to_string());
    let stale_before = crate::models::now() - chrono::Duration::from_std(STALE_AFTER).expect("small duration");
    let failed = state
        .db
        .run(move |c| task::fail_orphans(c, &mine, &host, stale_before, process_alive).map_err(DbError::from))
        .await?;
    if failed > 0 {
        tracing::warn!(failed, "marked tasks of dead workers as failed");
    }
    Ok(())
}

async fn worker_loop(state: AppState, name: String) {
    loop {
        let n = name.clone();
        let claimed = state.db.run(move |c| task::claim_next(c, &n).map_err(DbError::from)).await;
        match claimed {
            Ok(Some(t)) => run_task(&state, t).await,
            Ok(None) => {
                let _ = tokio::time::timeout(POLL, state.tasks.wake.notified()).await;
            }
            Err(e) => {
                // Two workers racing for one resource on PostgreSQL lose on the unique key: retry.
                tracing::debug!(error = %e, worker = %name, "claim failed");
                tokio::time::sleep(POLL).await;
            }
        }
    }
}

async fn run_task(state: &AppState, t: Task) {
    tracing::info!(task = %t.id, name = %t.name, "task started");
    let ctx = TaskContext { state: state.clone(), task_id: t.id.clone(), reports: Arc::default() };
    let args: serde_json::Value = serde_json::from_str(&t.args).unwrap_or_default();
    let mut work = tokio::spawn(kinds::run(ctx, t.name.clone(), args));

    let outcome: Result<Vec<String>, String> = loop {
        tokio::select! {
            joined = &mut work => {
                break match joined {
                    Ok(Ok(created)) => Ok(created),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(e) => Err(format!("task crashed: {e}")),
                };
            }
            _ = tokio::time::sleep(POLL) => {
                let id = t.id.clone();
                let current = state.db.run(move |c| task::state_of(c, &id).map_err(DbError::from)).await;
                if matches!(current.as_deref(), Ok(task::CANCELING)) {
                    work.abort();
                    break Err("canceled".into());
                }
            }
        }
    };
    tracing::info!(task = %t.id, ok = outcome.is_ok(), "task finished");
    let id = t.id.clone();
    // Keep trying: a task left running with its resources held would block its repository.
    loop {
        let (id, outcome) = (id.clone(), outcome.clone());
        match state.db.run(move |c| task::finish(c, &id, outcome).map_err(DbError::from)).await {
            Ok(()) => break,
            Err(e) => {
                tracing::warn!(error = %e, task = %t.id, "recording task outcome failed; retrying");
                tokio::time::sleep(POLL).await;
            }
        }
    }
}
