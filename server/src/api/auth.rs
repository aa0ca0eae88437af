//! HTTP Basic auth for the management API (`status/` and the API docs stay public).

use std::collections::HashSet;
use std::sync::Mutex;

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

/// Remembers credentials already checked, so argon2 (slow on purpose) runs once per password
/// rather than on every request.
#[derive(Default)]
pub struct VerifiedCredentials {
    seen: Mutex<HashSet<[u8; 32]>>,
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
    verify(&state, req.headers()).await
}

/// Checks HTTP Basic credentials against the stored admin password hash.
pub async fn verify(state: &AppState, headers: &actix_web::http::header::HeaderMap) -> Result<(), ApiError> {
    let (user, password) = basic_credentials(headers).ok_or(ApiError::Unauthenticated)?;
    let u = user.clone();
    let hash = state
        .db
        .run(move |c| admin::password_hash(c, &u).map_err(DbError::from))
        .await?
        .ok_or(ApiError::BadCredentials)?;
    let key = VerifiedCredentials::key(&user, &password, &hash);
    if state.credentials.seen.lock().expect("credentials lock").contains(&key) {
        return Ok(());
    }
    let ok = tokio::task::spawn_blocking(move || admin::verify_password(&password, &hash))
        .await
        .unwrap_or(false);
    if !ok {
        return Err(ApiError::BadCredentials);
    }
    state.credentials.seen.lock().expect("credentials lock").insert(key);
    Ok(())
}

fn basic_credentials(headers: &actix_web::http::header::HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ").or_else(|| value.strip_prefix("basic "))?;
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}
