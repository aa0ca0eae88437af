//! The internal endpoint replicas relay each other's downloads through:
//! `GET /internal/v1/downloads/{digest}` serves the download this replica has in flight from
//! a remote exactly as a local reader gets it (a single `Range`, the last byte held back until
//! verified, the response cut if the download fails).
//!
//! Only the replicas' shared secret opens it (user credentials and tokens never do); without
//! it, every answer is an empty 404. A 404 with `Pulpish-Download: stored` tells the caller
//! the blob is in the store now; `none` that nothing is in flight here. An owner's download
//! that failed before its first byte answers with the status its own clients got and
//! `Pulpish-Download: failed`.

use actix_web::{web, HttpRequest, HttpResponse};

use crate::app::AppState;
use crate::db::DbError;
use crate::models::content;

pub const DOWNLOADS: &str = "/internal/v1/downloads/";
pub const SECRET_HEADER: &str = "Pulpish-Peer-Secret";
pub const DOWNLOAD_HEADER: &str = "Pulpish-Download";
pub const STORED: &str = "stored";
pub const NONE: &str = "none";
pub const FAILED: &str = "failed";

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route(&format!("{DOWNLOADS}{{digest}}"), web::get().to(download));
}

/// A fresh secret: 32 random bytes, hex.
pub fn new_secret() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn download(state: web::Data<AppState>, req: HttpRequest, digest: web::Path<String>) -> HttpResponse {
    if !from_a_replica(&state, &req).await {
        return HttpResponse::NotFound().finish();
    }
    let digest = digest.into_inner();
    if !crate::registry::valid_digest(&digest) {
        return marked(NONE);
    }
    match state.fetcher.share(&digest).await {
        Some(Ok(reader)) => crate::registry::reading_response(&req, &digest, reader).await.unwrap_or_else(|e| actix_web::ResponseError::error_response(&e)),
        Some(Err(e)) => {
            let status = actix_web::ResponseError::status_code(&crate::registry::RegistryError::from(e.clone()));
            HttpResponse::build(status).insert_header((DOWNLOAD_HEADER, FAILED)).body(e.to_string())
        }
        None => {
            let d = digest.clone();
            let stored = state
                .db
                .run(move |c| {
                    let Some(blob) = content::blob_id(c, &d)? else { return Ok::<_, DbError>(false) };
                    Ok(content::blob_artifact(c, &blob)?.is_some())
                })
                .await;
            match stored {
                Ok(true) => marked(STORED),
                Ok(false) => marked(NONE),
                Err(e) => HttpResponse::ServiceUnavailable().body(e.to_string()),
            }
        }
    }
}

fn marked(marker: &'static str) -> HttpResponse {
    HttpResponse::NotFound().insert_header((DOWNLOAD_HEADER, marker)).finish()
}

/// Whether the request carries the replicas' secret (compared in constant time).
async fn from_a_replica(state: &AppState, req: &HttpRequest) -> bool {
    let Some(given) = req.headers().get(SECRET_HEADER) else { return false };
    match state.fetcher.peer_secret(state).await {
        Ok(secret) => same_secret(given.as_bytes(), secret.as_bytes()),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the replicas' secret");
            false
        }
    }
}

fn same_secret(given: &[u8], secret: &[u8]) -> bool {
    // The length is no secret (always 64 hex digits); the bytes are compared without an early exit.
    given.len() == secret.len() && given.iter().zip(secret).fold(0u8, |diff, (a, b)| diff | (a ^ b)) == 0
}

#[cfg(test)]
mod tests {
    use super::same_secret;

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"abcd", b"abcd"));
        assert!(!same_secret(b"abce", b"abcd"));
        assert!(!same_secret(b"abc", b"abcd"));
        assert!(!same_secret(b"", b"abcd"));
    }
}
