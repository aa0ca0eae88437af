//! HTTP Basic auth for the management API (`status/` and the API docs stay public).

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{web, ResponseError};
use base64::Engine;
use sha2::{Digest, Sha256};

use crate::app::AppState;
use crate::db::DbError;
use crate::error::ApiError;
use crate::models::admin;

/// Password checks, bounded. argon2 is slow and memory-hungry on purpose, so: credentials
/// already checked (right or wrong) are remembered and cost nothing the next time; at most
/// [`CONCURRENT_CHECKS`] hashes run at once (each thread reusing its memory), at most
/// [`QUEUED_CHECKS`] wait for one;
/// each client address has a budget of failures per window, after which it gets 429 without
/// any hashing.
pub struct VerifiedCredentials {
    good: Mutex<HashSet<[u8; 32]>>,
    bad: Mutex<HashSet<[u8; 32]>>,
    failures: Mutex<HashMap<IpAddr, (Instant, u32)>>,
    checker: admin::PasswordChecker,
}

const CONCURRENT_CHECKS: usize = 2;
/// Password checks waiting for a thread; past this, "busy" (503).
const QUEUED_CHECKS: usize = 64;
/// Remembered credential keys per kind; past this the set starts over.
const REMEMBERED: usize = 4096;
pub const FAILURE_BUDGET: u32 = 20;
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);

impl Default for VerifiedCredentials {
    fn default() -> Self {
        VerifiedCredentials {
            good: Mutex::default(),
            bad: Mutex::default(),
            failures: Mutex::default(),
            checker: admin::PasswordChecker::new(CONCURRENT_CHECKS, QUEUED_CHECKS),
        }
    }
}

impl VerifiedCredentials {
    fn key(user: &str, password: &str, hash: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        for part in [user, password, hash] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        h.finalize().into()
    }

    fn remember(set: &Mutex<HashSet<[u8; 32]>>, key: [u8; 32]) {
        let mut set = set.lock().unwrap_or_else(PoisonError::into_inner);
        if set.len() >= REMEMBERED {
            set.clear();
        }
        set.insert(key);
    }

    fn knows(set: &Mutex<HashSet<[u8; 32]>>, key: &[u8; 32]) -> bool {
        set.lock().unwrap_or_else(PoisonError::into_inner).contains(key)
    }

    /// Seconds until `client` may try again, if it spent its failure budget.
    fn throttled(&self, client: Option<IpAddr>) -> Option<u64> {
        let client = client?;
        let failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        let (since, count) = failures.get(&client)?;
        let left = FAILURE_WINDOW.checked_sub(since.elapsed())?;
        (*count >= FAILURE_BUDGET).then(|| left.as_secs().max(1))
    }

    /// Counts a failure against `client` and answers it.
    fn refuse(&self, client: Option<IpAddr>) -> ApiError {
        self.failed(client);
        ApiError::BadCredentials
    }

    fn failed(&self, client: Option<IpAddr>) {
        let Some(client) = client else { return };
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        if failures.len() >= REMEMBERED {
            failures.retain(|_, (since, _)| since.elapsed() < FAILURE_WINDOW);
        }
        let entry = failures.entry(client).or_insert((Instant::now(), 0));
        if entry.0.elapsed() >= FAILURE_WINDOW {
            *entry = (Instant::now(), 0);
        }
        entry.1 += 1;
    }
}

fn is_public(path: &str) -> bool {
    path == "/pulp/api/v3/status/" || path.starts_with("/pulp/api/v3/docs/")
}

pub async fn require_basic_auth(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    if is_public(req.path()) {
        return next.call(req).await.map(ServiceResponse::map_into_boxed_body);
    }
    match check(&req).await {
        Ok(()) => next.call(req).await.map(ServiceResponse::map_into_boxed_body),
        Err(e) => {
            let response = e.error_response();
            Ok(req.into_response(response))
        }
    }
}

async fn check(req: &ServiceRequest) -> Result<(), ApiError> {
    let state = req.app_data::<web::Data<AppState>>().expect("AppState is registered").clone();
    verify(&state, req.headers(), req.peer_addr().map(|a| a.ip())).await
}

/// Checks HTTP Basic credentials against the stored admin password hash. `client` is the peer
/// address whose failures are counted.
pub async fn verify(state: &AppState, headers: &actix_web::http::header::HeaderMap, client: Option<IpAddr>) -> Result<(), ApiError> {
    let (user, password) = basic_credentials(headers).ok_or(ApiError::Unauthenticated)?;
    let credentials = &state.credentials;
    let u = user.clone();
    let Some(hash) = state.db.run(move |c| admin::password_hash(c, &u).map_err(DbError::from)).await? else {
        if let Some(seconds) = credentials.throttled(client) {
            return Err(ApiError::Throttled(seconds));
        }
        return Err(credentials.refuse(client));
    };
    let key = VerifiedCredentials::key(&user, &password, &hash);
    if VerifiedCredentials::knows(&credentials.good, &key) {
        return Ok(());
    }
    // Known-good credentials pass even from a throttled address (a load balancer's, say);
    // anything else from it waits out the window without costing a hash.
    if let Some(seconds) = credentials.throttled(client) {
        return Err(ApiError::Throttled(seconds));
    }
    if VerifiedCredentials::knows(&credentials.bad, &key) {
        return Err(credentials.refuse(client));
    }
    let ok = credentials
        .checker
        .verify(password, hash)
        .await
        .ok_or_else(|| ApiError::Unavailable("too many logins are being checked; try again shortly".into()))?;
    if ok {
        VerifiedCredentials::remember(&credentials.good, key);
        Ok(())
    } else {
        VerifiedCredentials::remember(&credentials.bad, key);
        Err(credentials.refuse(client))
    }
}

fn basic_credentials(headers: &actix_web::http::header::HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ").or_else(|| value.strip_prefix("basic "))?;
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    // No user name or password holds a NUL byte; the database must not see one.
    if text.contains('\0') {
        return None;
    }
    Some((user.to_string(), password.to_string()))
}
