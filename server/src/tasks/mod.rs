//! The task queue's workers: claim a waiting task, run it, record progress and outcome, stop it
//! when canceled, fail the tasks of workers that died, and at shutdown hand the tasks still
//! running back to the queue.

pub mod housekeeping;
mod kinds;
pub mod versions;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::app::AppState;
use crate::db::{CallsInFlight, DbError};
use crate::models::task::{self, Task};
use crate::shutdown::TIDY_UP;

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

/// Where this process's workers are in their life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    /// Shutting down: claim nothing more; running tasks go on.
    Draining,
    /// The shutdown deadline passed: stop running tasks and hand them back to the queue.
    HandBack,
    /// Workers gone; heartbeats stop.
    Stopped,
}

/// Wakes idle workers when a task is enqueued in this process (other processes find it by
/// polling), and holds this process's workers.
pub struct TaskQueue {
    pub wake: Notify,
    phase: watch::Sender<Phase>,
    workers: Mutex<Vec<JoinHandle<()>>>,
    names: Mutex<Vec<String>>,
    heartbeat: Mutex<Option<JoinHandle<()>>>,
    handed_back: AtomicUsize,
    /// The shutdown deadline, once shutdown has begun.
    deadline: OnceLock<Instant>,
}

impl Default for TaskQueue {
    fn default() -> Self {
        TaskQueue {
            wake: Notify::new(),
            phase: watch::Sender::new(Phase::Running),
            workers: Mutex::default(),
            names: Mutex::default(),
            heartbeat: Mutex::default(),
            handed_back: AtomicUsize::new(0),
            deadline: OnceLock::new(),
        }
    }
}

impl TaskQueue {
    /// Worker loops of this process that are running.
    pub fn workers_running(&self) -> usize {
        self.workers.lock().unwrap_or_else(PoisonError::into_inner).iter().filter(|w| !w.is_finished()).count()
    }

    /// Shuts the workers down: they claim nothing more, tasks running may finish until
    /// `deadline`, and those still running then go back to the queue (`waiting`, resources
    /// freed) for another worker. Then the workers leave the worker list. Returns how many
    /// tasks were handed back.
    pub async fn stop(&self, state: &AppState, deadline: Instant) -> usize {
        let _ = self.deadline.set(deadline);
        self.phase.send_replace(Phase::Draining);
        self.wake.notify_waiters();
        let workers = std::mem::take(&mut *self.workers.lock().unwrap_or_else(PoisonError::into_inner));
        let aborts: Vec<_> = workers.iter().map(JoinHandle::abort_handle).collect();
        let mut all = std::pin::pin!(futures_util::future::join_all(workers));
        if tokio::time::timeout_at(deadline.into(), &mut all).await.is_err() {
            self.phase.send_replace(Phase::HandBack);
            // Handing back and recording outcomes give up TIDY_UP past the deadline; a worker
            // still waiting on the database after that (claiming a task) is dropped.
            if tokio::time::timeout(TIDY_UP + Duration::from_secs(1), &mut all).await.is_err() {
                aborts.iter().for_each(tokio::task::AbortHandle::abort);
                tracing::warn!("task workers still waiting on the database were stopped; a task they claimed stays running until the orphan check of a running replica fails it");
            }
        }
        self.phase.send_replace(Phase::Stopped);
        let heartbeat = self.heartbeat.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(mut heartbeat) = heartbeat {
            // It ends at its next turn; one stuck on a database that does not answer is dropped.
            if tokio::time::timeout(TIDY_UP, &mut heartbeat).await.is_err() {
                heartbeat.abort();
            }
        }
        let names = std::mem::take(&mut *self.names.lock().unwrap_or_else(PoisonError::into_inner));
        let removed = state.db.run(move |c| names.iter().try_for_each(|n| task::remove_worker(c, n)).map_err(DbError::from));
        match tokio::time::timeout(TIDY_UP, removed).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "removing this process's workers from the worker list failed; they show offline shortly"),
            Err(_) => tracing::warn!("removing this process's workers from the worker list failed: the database did not answer; they show offline shortly"),
        }
        self.handed_back.load(Ordering::SeqCst)
    }

    /// Resolves TIDY_UP past the shutdown deadline (never before shutdown): what waits on the
    /// database at shutdown gives up then.
    async fn tidy_up_over(&self) {
        let mut phase = self.phase.subscribe();
        let _ = phase.wait_for(|p| *p != Phase::Running).await;
        let deadline = self.deadline.get().copied().unwrap_or_else(Instant::now);
        tokio::time::sleep_until((deadline + TIDY_UP).into()).await;
    }

    pub async fn enqueue(
        &self,
        state: &AppState,
        name: &str,
        args: serde_json::Value,
        resources: Vec<String>,
    ) -> Result<Task, DbError> {
        let name = name.to_string();
        // Dispatched by a request: its id, so the task's log lines and row lead back to it.
        let cid = crate::observe::request::current_request_id().unwrap_or_else(crate::observe::request::new_request_id);
        let t = state
            .db
            .run(move |c| task::enqueue(c, &name, &args, &resources, &cid).map_err(DbError::from))
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

    let workers = names.iter().map(|name| tokio::spawn(worker_loop(state.clone(), name.clone()))).collect();
    *state.tasks.workers.lock().unwrap_or_else(PoisonError::into_inner) = workers;
    *state.tasks.names.lock().unwrap_or_else(PoisonError::into_inner) = names.clone();
    let (s, n) = (state.clone(), names.clone());
    let mut phase = state.tasks.phase.subscribe();
    // Heartbeats go on while running tasks finish at shutdown (another replica would take a
    // silent worker for dead and fail its task), until the workers have stopped.
    let heartbeat = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(HEARTBEAT) => {}
                _ = async { let _ = phase.wait_for(|p| *p == Phase::Stopped).await; } => return,
            }
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
    *state.tasks.heartbeat.lock().unwrap_or_else(PoisonError::into_inner) = Some(heartbeat);
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

/// Claims and runs tasks until shutdown begins.
async fn worker_loop(state: AppState, name: String) {
    let mut phase = state.tasks.phase.subscribe();
    loop {
        let current = *phase.borrow_and_update();
        if current != Phase::Running {
            return;
        }
        let n = name.clone();
        let claimed = state.db.run(move |c| task::claim_next(c, &n).map_err(DbError::from)).await;
        let pause = match claimed {
            Ok(Some(t)) => {
                run_task(&state, t, phase.clone()).await;
                continue;
            }
            Ok(None) => POLL,
            Err(e) => {
                // Two workers racing for one resource on PostgreSQL lose on the unique key: retry.
                tracing::debug!(error = %e, worker = %name, "claim failed");
                POLL
            }
        };
        tokio::select! {
            _ = tokio::time::timeout(pause, state.tasks.wake.notified()) => {}
            _ = phase.changed() => {}
        }
    }
}

/// How a task's run ended.
enum Ended {
    Finished(Result<Vec<String>, String>),
    /// Stopped at the shutdown deadline, to run again elsewhere.
    HandedBack,
}

async fn run_task(state: &AppState, t: Task, mut phase: watch::Receiver<Phase>) {
    // The task's log lines carry the id of the request that dispatched it.
    let span = tracing::info_span!("task", task = %t.id, request_id = %t.logging_cid);
    span.in_scope(|| tracing::info!(task = %t.id, name = %t.name, "task started"));
    let ctx = TaskContext { state: state.clone(), task_id: t.id.clone(), reports: Arc::default() };
    let args: serde_json::Value = serde_json::from_str(&t.args).unwrap_or_default();
    let calls = CallsInFlight::default();
    let mut work = tokio::spawn(calls.scope(kinds::run(ctx, t.name.clone(), args)).instrument(span.clone()));
    state.metrics.tasks_running.inc();
    let timer = state.metrics.task_timer(&t.name).start_timer();

    let ended = loop {
        tokio::select! {
            // A task that has just finished is recorded, not handed back to run again.
            biased;
            joined = &mut work => {
                break Ended::Finished(match joined {
                    Ok(Ok(created)) => Ok(created),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(e) => Err(format!("task crashed: {e}")),
                });
            }
            _ = async { let _ = phase.wait_for(|p| *p == Phase::HandBack).await; } => {
                work.abort();
                break match work.await {
                    // It finished before the abort took hold.
                    Ok(done) => Ended::Finished(done.map_err(|e| e.to_string())),
                    Err(_) => Ended::HandedBack,
                };
            }
            _ = tokio::time::sleep(POLL) => {
                let id = t.id.clone();
                let current = tokio::select! {
                    current = state.db.run(move |c| task::state_of(c, &id).map_err(DbError::from)) => current,
                    // The deadline passed while the database was slow to answer: hand back.
                    _ = async { let _ = phase.wait_for(|p| *p == Phase::HandBack).await; } => continue,
                };
                if matches!(current.as_deref(), Ok(task::CANCELING)) {
                    work.abort();
                    let _ = (&mut work).await;
                    // Nothing the canceled task started may commit after its resources are free.
                    tokio::select! {
                        _ = settled(&calls, None) => {}
                        _ = state.tasks.tidy_up_over() => {}
                    }
                    break Ended::Finished(Err("canceled".into()));
                }
            }
        }
    };
    let outcome = match ended {
        Ended::Finished(outcome) => outcome,
        Ended::HandedBack => {
            timer.stop_and_discard();
            state.metrics.tasks_running.dec();
            return hand_back(state, &t, &calls).instrument(span).await;
        }
    };
    span.in_scope(|| tracing::info!(task = %t.id, ok = outcome.is_ok(), "task finished"));
    timer.observe_duration();
    state.metrics.tasks_running.dec();
    // Keep trying: a task left running with its resources held would block its repository.
    // Until shutdown gives up on the database: then the orphan check of another replica fails it.
    let recorded = async {
        loop {
            let (id, outcome) = (t.id.clone(), outcome.clone());
            match state.db.run(move |c| task::finish(c, &id, outcome).map_err(DbError::from)).await {
                Ok(final_state) => {
                    state.metrics.tasks_finished.with_label_values(&[&t.name, final_state]).inc();
                    if state.metrics.tasks_running.get() == 0 {
                        crate::memory::release_freed_heap().await;
                    }
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, task = %t.id, "recording task outcome failed; retrying");
                    tokio::time::sleep(POLL).await;
                }
            }
        }
    };
    tokio::select! {
        () = recorded => {}
        () = state.tasks.tidy_up_over() => {
            tracing::warn!(task = %t.id, "recording the task's outcome failed until the end of shutdown: the task stays running with this worker; the orphan check of a running replica will fail it");
        }
    }
}

/// Waits until the database calls in `calls` have ended (false: not by `until`).
async fn settled(calls: &CallsInFlight, until: Option<Instant>) -> bool {
    while calls.pending() > 0 {
        if until.is_some_and(|u| Instant::now() >= u) {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

/// Puts a task stopped at the shutdown deadline back in the queue. Briefly: the process is
/// exiting, and a task left running is failed by another worker's orphan check.
async fn hand_back(state: &AppState, t: &Task, calls: &CallsInFlight) {
    let give_up = Instant::now() + TIDY_UP;
    // A database call of the stopped task runs on to its end: once the task is waiting, another
    // worker may start it afresh, and the old call must not commit after that.
    if !settled(calls, Some(give_up)).await {
        tracing::warn!(task = %t.id, "the stopped task's database calls did not end in time: it stays running with this worker; the orphan check of a running replica will fail it");
        return;
    }
    loop {
        let id = t.id.clone();
        let handed = tokio::time::timeout_at(give_up.into(), state.db.run(move |c| task::hand_back(c, &id).map_err(DbError::from)));
        let Ok(handed) = handed.await else {
            tracing::warn!(task = %t.id, "handing the task back failed: the database did not answer; the orphan check of a running replica will fail it");
            return;
        };
        match handed {
            Ok(true) => {
                state.tasks.handed_back.fetch_add(1, Ordering::SeqCst);
                tracing::info!(task = %t.id, name = %t.name, "task handed back to the queue: shutdown deadline reached");
                return;
            }
            Ok(false) => {
                tracing::info!(task = %t.id, "task was being canceled at the shutdown deadline: canceled");
                return;
            }
            Err(e) if Instant::now() + POLL < give_up => {
                tracing::warn!(error = %e, task = %t.id, "handing the task back failed; retrying");
                tokio::time::sleep(POLL).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, task = %t.id, "handing the task back failed; the orphan check of a running replica will fail it");
                return;
            }
        }
    }
}
