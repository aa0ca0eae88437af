//! Errors of the management API and their one conversion to HTTP (Pulp's JSON shapes).

use std::collections::BTreeMap;

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};

use crate::db::DbError;

/// Per-field validation messages, `{"base_path": ["..."]}`.
pub type FieldErrors = BTreeMap<String, Vec<String>>;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("validation failed")]
    Invalid(FieldErrors),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("Authentication credentials were not provided.")]
    Unauthenticated,
    #[error("Invalid username/password.")]
    BadCredentials,
    /// Too many failed logins from one client; retry after this many seconds.
    #[error("Too many failed login attempts; try again in {0} seconds.")]
    Throttled(u64),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        let mut errors = FieldErrors::new();
        errors.insert(field.to_string(), vec![message.into()]);
        ApiError::Invalid(errors)
    }

    pub fn not_found() -> Self {
        ApiError::NotFound("Not found.".into())
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::Pool(e) => ApiError::Unavailable(format!("database unavailable: {e}")),
            DbError::Query(diesel::result::Error::NotFound) => ApiError::not_found(),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<diesel::result::Error> for ApiError {
    fn from(e: diesel::result::Error) -> Self {
        ApiError::from(DbError::Query(e))
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Invalid(_) | ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Unauthenticated | ApiError::BadCredentials => StatusCode::UNAUTHORIZED,
            ApiError::Throttled(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let body = match self {
            ApiError::Invalid(fields) => serde_json::to_value(fields).unwrap_or_default(),
            ApiError::Internal(message) => {
                tracing::error!(error = %message, "internal error");
                serde_json::json!({ "detail": message })
            }
            other => serde_json::json!({ "detail": other.to_string() }),
        };
        let mut response = HttpResponse::build(self.status_code());
        if matches!(self, ApiError::Unauthenticated | ApiError::BadCredentials) {
            response.insert_header((header::WWW_AUTHENTICATE, "Basic realm=\"pulpish\""));
        }
        if let ApiError::Throttled(seconds) = self {
            response.insert_header((header::RETRY_AFTER, seconds.to_string()));
        }
        response.content_type("application/json").body(body.to_string())
    }
}
