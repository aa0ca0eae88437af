//! The management REST API under `/pulp/api/v3/`, Pulp's shapes. One file per resource;
//! handlers validate, then call `models` (reads, creates) or enqueue a task (updates, deletes).

pub mod artifacts;
pub mod auth;
pub mod body;
pub mod content;
pub mod distributions;
pub mod docs;
pub mod filters;
pub mod hrefs;
pub mod pagination;
pub mod remotes;
pub mod repositories;
pub mod responses;
pub mod status;
pub mod tasks;
pub mod validate;

use actix_web::{dev::Payload, web, FromRequest, HttpRequest, HttpResponse};
use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::ApiError;
use crate::models::task::Task;
use crate::models::NameFilter;

pub fn timestamp(t: NaiveDateTime) -> DateTime<Utc> {
    Utc.from_utc_datetime(&t)
}

/// Pulp's answer to anything done by a task.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AsyncOperationResponse {
    /// The task's href; poll it to follow the work.
    pub task: String,
}

pub fn accepted(task: &Task) -> HttpResponse {
    HttpResponse::Accepted().json(AsyncOperationResponse { task: hrefs::task(&task.id) })
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NameParams {
    /// Exact name.
    pub name: Option<String>,
    /// Names containing this text.
    #[serde(rename = "name__contains")]
    pub name_contains: Option<String>,
}

impl From<NameParams> for NameFilter {
    fn from(p: NameParams) -> Self {
        NameFilter { name: p.name, name_contains: p.name_contains }
    }
}

/// What Pulp (Django REST framework) answers for a NUL character in a string. PostgreSQL cannot
/// store one in `text`, so it is refused here, before any query, on both backends.
pub const NUL_MESSAGE: &str = "Null characters are not allowed.";

/// `web::Query` with Pulp's rules: a parameter with an empty value is ignored (as django-filter
/// and DRF's pagination ignore it); a NUL anywhere is a 400 naming the parameter; a value of the
/// wrong shape a 400 `detail`.
pub struct Query<T>(pub T);

impl<T> Query<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> std::ops::Deref for Query<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: DeserializeOwned> FromRequest for Query<T> {
    type Error = actix_web::Error;
    type Future = std::future::Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(parse_query(req.query_string()).map(Query).map_err(actix_web::Error::from))
    }
}

pub fn parse_query<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    let mut kept = url::form_urlencoded::Serializer::new(String::new());
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        if key.contains('\0') {
            return Err(ApiError::field("non_field_errors", format!("{NUL_MESSAGE} (in a query parameter name)")));
        }
        if value.contains('\0') {
            return Err(ApiError::field(&key, NUL_MESSAGE));
        }
        if !value.is_empty() {
            kept.append_pair(&key, &value);
        }
    }
    web::Query::<T>::from_query(&kept.finish())
        .map(web::Query::into_inner)
        .map_err(|e| ApiError::BadRequest(format!("Invalid query parameters: {e}")))
}

/// Extractor errors in Pulp's JSON: a malformed query is a 400, a malformed id a 404.
pub fn extractor_config(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::QueryConfig::default().error_handler(|e, _| {
        ApiError::BadRequest(format!("Invalid query parameters: {e}")).into()
    }))
    .app_data(web::PathConfig::default().error_handler(|_, _| ApiError::not_found().into()))
    .app_data(web::PayloadConfig::default().limit(4 * 1024 * 1024));
}
