//! Pulp's list envelope: `{count, next, previous, results}` with `limit` / `offset`.

use actix_web::HttpRequest;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::ApiError;
use crate::models::{Page, Window};

pub const DEFAULT_LIMIT: i64 = 100;
pub const MAX_LIMIT: i64 = 1000;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Number of results to return per page (default 100, at most 1000).
    pub limit: Option<i64>,
    /// The initial index from which to return the results.
    pub offset: Option<i64>,
}

impl PageParams {
    pub fn window(&self) -> Result<Window, ApiError> {
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT);
        let offset = self.offset.unwrap_or(0);
        if limit < 1 {
            return Err(ApiError::field("limit", "Ensure this value is greater than or equal to 1."));
        }
        if offset < 0 {
            return Err(ApiError::field("offset", "Ensure this value is greater than or equal to 0."));
        }
        Ok(Window { limit: limit.min(MAX_LIMIT), offset })
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
        let next = (window.offset + window.limit < page.count).then(|| link(window.offset + window.limit));
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
