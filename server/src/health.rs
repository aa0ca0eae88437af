//! The probes of an orchestrator such as Kubernetes: `/livez` answers while the process does;
//! `/readyz` answers 200 while the database answers, the store takes writes and the task
//! workers run, and 503 once shutdown has begun, so a load balancer sends no more requests here.
//!
//! Both are public (probes carry no credentials) and name what failed, never why in detail:
//! the detail (hosts, paths, the store's answer) goes to the log when a check changes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_web::{get, web, HttpResponse};
use futures_util::future::{BoxFuture, FutureExt};
use serde_json::{json, Map, Value};

use crate::app::AppState;
use crate::cached_answer::CachedAnswer;
use crate::db::DbError;

/// A probe never waits longer than this for one check.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a database answer is reused.
const DATABASE_TTL: Duration = Duration::from_secs(1);
/// How long a storage answer is reused: on S3 each check writes, reads and deletes an object.
const STORAGE_TTL: Duration = Duration::from_secs(3);

type Outcome = Result<(), String>;

/// Whether this replica should get traffic: the shutdown flag and the last checks.
#[derive(Default)]
pub struct Readiness {
    shutting_down: AtomicBool,
    database: CachedCheck,
    storage: CachedCheck,
}

impl Readiness {
    /// From now on `/readyz` answers 503.
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
    }

    pub fn shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }
}

/// One check whose answer is reused for a while, so probes neither pile up nor hammer the
/// database or the store; a change between passing and failing is logged once.
#[derive(Default)]
struct CachedCheck {
    answer: CachedAnswer<Outcome>,
    failing: Arc<AtomicBool>,
}

impl CachedCheck {
    async fn outcome(&self, name: &'static str, ttl: Duration, check: impl FnOnce() -> BoxFuture<'static, Outcome>) -> Outcome {
        let failing = self.failing.clone();
        let logged = move || {
            let check = check();
            async move {
                let outcome = check.await;
                match &outcome {
                    Err(e) if !failing.swap(true, Ordering::Relaxed) => tracing::warn!(check = name, error = %e, "readiness check failed"),
                    Ok(()) if failing.swap(false, Ordering::Relaxed) => tracing::info!(check = name, "readiness check passes again"),
                    _ => {}
                }
                outcome
            }
            .boxed()
        };
        // A check that hangs (a database that accepts and never answers) keeps running in the
        // background; probes meanwhile answer "no answer" instead of waiting with it.
        self.answer
            .get(ttl, CHECK_TIMEOUT, logged)
            .await
            .unwrap_or_else(|| Err(format!("no answer within {} s", CHECK_TIMEOUT.as_secs())))
    }
}

/// 200 while the process answers; nothing else is looked at.
#[get("/livez")]
pub async fn livez() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "live" }))
}

/// 200 when this replica can serve: the database answers, the store takes writes, the task
/// workers run. Else 503 naming each failed check.
#[get("/readyz")]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let mut checks = Map::new();
    if state.readiness.shutting_down() {
        checks.insert("shutdown".into(), "in progress".into());
        return answer(checks, false);
    }
    let (database, storage) = tokio::join!(database(&state), storage(&state));
    let workers = workers(&state);
    let ready = database.is_ok() && storage.is_ok() && workers.is_ok();
    for (name, outcome, failure) in [
        ("database", database, "unreachable"),
        ("storage", storage, "not writable"),
        ("workers", workers, "not running"),
    ] {
        let text = match outcome {
            Ok(()) => "ok".to_string(),
            // The timeout says nothing private; other errors stay in the log.
            Err(e) if e.starts_with("no answer") => e,
            Err(_) => failure.to_string(),
        };
        checks.insert(name.into(), Value::String(text));
    }
    // Shutdown may have begun while the checks ran.
    if state.readiness.shutting_down() {
        checks.insert("shutdown".into(), "in progress".into());
        return answer(checks, false);
    }
    answer(checks, ready)
}

fn answer(checks: Map<String, Value>, ready: bool) -> HttpResponse {
    let body = json!({ "status": if ready { "ready" } else { "not ready" }, "checks": checks });
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

async fn database(state: &AppState) -> Outcome {
    let db = state.db.clone();
    state
        .readiness
        .database
        .outcome("database", DATABASE_TTL, move || {
            async move {
                db.run(|c| diesel::RunQueryDsl::execute(diesel::sql_query("SELECT 1"), c).map_err(DbError::from))
                    .await
                    .map(|_| ())
                    .map_err(|e: DbError| e.to_string())
            }
            .boxed()
        })
        .await
}

async fn storage(state: &AppState) -> Outcome {
    let storage = state.storage.clone();
    state
        .readiness
        .storage
        .outcome("storage", STORAGE_TTL, move || async move { storage.check().await.map_err(|e| e.to_string()) }.boxed())
        .await
}

/// Every worker loop this process started still runs (none configured is fine).
fn workers(state: &AppState) -> Outcome {
    let (running, wanted) = (state.tasks.workers_running(), state.config.workers);
    if running < wanted {
        return Err(format!("{running} of {wanted} task workers run"));
    }
    Ok(())
}
