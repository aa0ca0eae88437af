//! Pulp's list envelope: `{count, next, previous, results}` with `limit` / `offset`.

use actix_web::HttpRequest;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::ApiError;
use crate::models::{Page, Window};

pub const DEFAULT_LIMIT: i64 = 100;
pub const MAX_LIMIT: i64 = 1000;

/// Taken as text and checked here, so that a bad value is a 400 naming its parameter.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Number of results to return per page (default 100, at most 1000).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 1000)]
    pub limit: Option<String>,
    /// The initial index from which to return the results.
    #[param(value_type = Option<i64>, minimum = 0)]
    pub offset: Option<String>,
}

fn integer(field: &str, value: Option<&str>, default: i64, min: i64, max: i64) -> Result<i64, ApiError> {
    let Some(text) = value else { return Ok(default) };
    let n: i64 = text
        .trim()
        .parse()
        .map_err(|_| ApiError::field(field, format!("A valid integer is required (from {min} to {max}).")))?;
    if n < min {
        return Err(ApiError::field(field, format!("Ensure this value is greater than or equal to {min}.")));
    }
    if n > max {
        return Err(ApiError::field(field, format!("Ensure this value is less than or equal to {max}.")));
    }
    Ok(n)
}

impl PageParams {
    pub fn window(&self) -> Result<Window, ApiError> {
        let limit = integer("limit", self.limit.as_deref(), DEFAULT_LIMIT, 1, MAX_LIMIT)?;
        let offset = integer("offset", self.offset.as_deref(), 0, 0, i64::MAX)?;
        Ok(Window { limit, offset })
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Paginated<T> {
    pub count: i64,
    pub next: Option<String>,
    pub previous: Option<String>,
    pub results: Vec<T>,
}

impl<T> Paginated<T> {
    pub fn new<R>(req: &HttpRequest, window: Window, page: Page<R>, to_view: impl FnMut(R) -> T) -> Self {
        let link = |offset: i64| page_url(req, window.limit, offset);
        // `offset` may be as large as i64::MAX: past the end there is no next page, never an overflow.
        let next = window.offset.checked_add(window.limit).filter(|&n| n < page.count).map(link);
        let previous = (window.offset > 0).then(|| link((window.offset - window.limit).max(0)));
        Paginated { count: page.count, next, previous, results: page.rows.into_iter().map(to_view).collect() }
    }
}

fn page_url(req: &HttpRequest, limit: i64, offset: i64) -> String {
    let info = req.connection_info();
    let base = format!("{}://{}{}", info.scheme(), info.host(), req.path());
    let mut url = url::Url::parse(&base).unwrap_or_else(|_| url::Url::parse("http://localhost/").expect("valid"));
    let kept: Vec<(String, String)> = url::form_urlencoded::parse(req.query_string().as_bytes())
        .filter(|(k, _)| k != "limit" && k != "offset")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    {
        let mut pairs = url.query_pairs_mut();
        for (k, v) in &kept {
            pairs.append_pair(k, v);
        }
        pairs.append_pair("limit", &limit.to_string());
        pairs.append_pair("offset", &offset.to_string());
    }
    url.to_string()
}
