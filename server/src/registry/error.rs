//! Errors of the /v2 content app, in the distribution spec's JSON:
//! `{"errors":[{"code":"MANIFEST_UNKNOWN","message":"...","detail":...}]}`.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};

use crate::db::DbError;
use crate::ondemand::FetchError;
use crate::upstream::UpstreamError;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("repository name not known to registry: {0}")]
    NameUnknown(String),
    #[error("manifest unknown: {0}")]
    ManifestUnknown(String),
    #[error("blob unknown to registry: {0}")]
    BlobUnknown(String),
    #[error("invalid digest: {0}")]
    DigestInvalid(String),
    #[error("authentication required")]
    Unauthorized(super::access::Challenge),
    #[error("{0}")]
    Denied(String),
    /// A delete refused because content in the served version still needs what it names.
    #[error("{0}")]
    StillReferenced(String),
    #[error("invalid repository name: {0}")]
    NameInvalid(String),
    #[error("blob upload unknown to registry: {0}")]
    UploadUnknown(String),
    #[error("chunk out of order: the upload holds {0} bytes")]
    UploadRange(i64),
    #[error("blob upload invalid: {0}")]
    UploadInvalid(String),
    #[error("{0}")]
    BadQuery(String),
    #[error("invalid tag {0:?}: a tag is up to 128 letters, digits, '_', '.' and '-', not starting with '.' or '-'")]
    TagInvalid(String),
    #[error("manifest invalid: {0}")]
    ManifestInvalid(String),
    #[error("manifest references an unknown blob or manifest: {0}")]
    ManifestBlobUnknown(String),
    #[error("{0}")]
    SizeInvalid(String),
    #[error("{0}")]
    TooManyRequests(String),
    #[error("{0}")]
    BadGateway(String),
    #[error("{0}")]
    GatewayTimeout(String),
    #[error("the requested range is not satisfiable: the blob holds {0} bytes")]
    RangeNotSatisfiable(u64),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

const MAX_MESSAGE: usize = 1024;

impl RegistryError {
    /// The store failed at `what`: 503 while it is unreachable, 500 otherwise. What the store
    /// said (and where it is) goes to the log, not to clients.
    pub fn storage(what: &str, e: std::io::Error) -> Self {
        if crate::storage::is_unavailable(&e) {
            tracing::warn!(error = %e, "{what}: the object store is unavailable");
            RegistryError::Unavailable(format!("{what}: the object store is unavailable; try again later"))
        } else {
            tracing::error!(error = %e, "{what}: storage error");
            RegistryError::Internal(format!("{what}: storage error"))
        }
    }

    fn code(&self) -> &'static str {
        match self {
            RegistryError::NameUnknown(_) => "NAME_UNKNOWN",
            RegistryError::ManifestUnknown(_) => "MANIFEST_UNKNOWN",
            RegistryError::BlobUnknown(_) => "BLOB_UNKNOWN",
            RegistryError::DigestInvalid(_) => "DIGEST_INVALID",
            RegistryError::Unauthorized(_) => "UNAUTHORIZED",
            RegistryError::Denied(_) | RegistryError::StillReferenced(_) => "DENIED",
            RegistryError::NameInvalid(_) => "NAME_INVALID",
            RegistryError::UploadUnknown(_) => "BLOB_UPLOAD_UNKNOWN",
            RegistryError::UploadRange(_) | RegistryError::UploadInvalid(_) => "BLOB_UPLOAD_INVALID",
            RegistryError::BadQuery(_) => "UNSUPPORTED",
            RegistryError::TagInvalid(_) => "TAG_INVALID",
            RegistryError::ManifestInvalid(_) => "MANIFEST_INVALID",
            RegistryError::ManifestBlobUnknown(_) => "MANIFEST_BLOB_UNKNOWN",
            RegistryError::SizeInvalid(_) => "SIZE_INVALID",
            RegistryError::TooManyRequests(_) => "TOOMANYREQUESTS",
            RegistryError::RangeNotSatisfiable(_) => "RANGE_INVALID",
            // Docker Distribution's code for a 503 (the spec has none).
            RegistryError::Unavailable(_) => "UNAVAILABLE",
            _ => "UNKNOWN",
        }
    }
}

impl From<DbError> for RegistryError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::Pool(e) => RegistryError::Unavailable(format!("database unavailable: {e}")),
            // Whatever input slipped past validation with a NUL byte: PostgreSQL refuses it.
            DbError::Query(e) if crate::db::is_nul_rejection(&e) => RegistryError::BadQuery("the request contains a NUL byte".into()),
            other => RegistryError::Internal(other.to_string()),
        }
    }
}

/// Upstream failures as the client sees them, naming the remote.
impl From<FetchError> for RegistryError {
    fn from(e: FetchError) -> Self {
        match e {
            FetchError::Upstream(UpstreamError::NotFound(what)) => RegistryError::BlobUnknown(format!("{what} (the remote no longer has it)")),
            FetchError::Upstream(e @ UpstreamError::TooManyRequests(..)) => RegistryError::TooManyRequests(e.to_string()),
            FetchError::Upstream(e @ UpstreamError::Timeout(_)) => RegistryError::GatewayTimeout(e.to_string()),
            FetchError::NoRemote => RegistryError::BlobUnknown("the blob's bytes are not stored and no remote can provide them".into()),
            // The replica downloading the blob failed: what its own clients were told.
            FetchError::Owner { status: 404, message } => RegistryError::BlobUnknown(message),
            FetchError::Owner { status: 429, message } => RegistryError::TooManyRequests(message),
            FetchError::Owner { status: 504, message } => RegistryError::GatewayTimeout(message),
            FetchError::Owner { status: 503, message } | FetchError::Unavailable(message) => RegistryError::Unavailable(message),
            e @ FetchError::OwnerGone { .. } => RegistryError::Unavailable(e.to_string()),
            other => RegistryError::BadGateway(other.to_string()),
        }
    }
}

impl ResponseError for RegistryError {
    fn status_code(&self) -> StatusCode {
        match self {
            RegistryError::NameUnknown(_) | RegistryError::ManifestUnknown(_) | RegistryError::BlobUnknown(_) | RegistryError::UploadUnknown(_) => StatusCode::NOT_FOUND,
            RegistryError::DigestInvalid(_)
            | RegistryError::NameInvalid(_)
            | RegistryError::ManifestInvalid(_)
            | RegistryError::ManifestBlobUnknown(_)
            | RegistryError::UploadInvalid(_)
            | RegistryError::BadQuery(_)
            | RegistryError::TagInvalid(_) => StatusCode::BAD_REQUEST,
            RegistryError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            RegistryError::Denied(_) => StatusCode::FORBIDDEN,
            RegistryError::StillReferenced(_) => StatusCode::CONFLICT,
            RegistryError::UploadRange(_) => StatusCode::RANGE_NOT_SATISFIABLE,
            RegistryError::SizeInvalid(_) => StatusCode::PAYLOAD_TOO_LARGE,
            RegistryError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            RegistryError::BadGateway(_) => StatusCode::BAD_GATEWAY,
            RegistryError::GatewayTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            RegistryError::RangeNotSatisfiable(_) => StatusCode::RANGE_NOT_SATISFIABLE,
            RegistryError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            RegistryError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let RegistryError::Internal(m) = self {
            tracing::error!(error = %m, "registry internal error");
        }
        // Messages may quote what the client sent; a 60 KB name is not echoed back whole.
        let mut message = self.to_string();
        if message.len() > MAX_MESSAGE {
            let cut = (0..=MAX_MESSAGE).rev().find(|i| message.is_char_boundary(*i)).unwrap_or(0);
            message.truncate(cut);
            message.push('…');
        }
        let body = serde_json::json!({"errors": [{"code": self.code(), "message": message, "detail": null}]});
        let mut resp = HttpResponse::build(self.status_code());
        resp.insert_header(("Docker-Distribution-API-Version", "registry/2.0"));
        match self {
            RegistryError::Unauthorized(challenge) => {
                resp.insert_header((header::WWW_AUTHENTICATE, challenge.header()));
            }
            RegistryError::UploadRange(size) => {
                resp.insert_header((header::RANGE, format!("0-{}", (size - 1).max(0))));
            }
            RegistryError::RangeNotSatisfiable(size) => {
                resp.insert_header((header::CONTENT_RANGE, format!("bytes */{size}")));
            }
            _ => {}
        }
        resp.content_type("application/json").body(body.to_string())
    }
}
