//! Observing each request: its id (the client's `Correlation-ID` or `X-Request-ID` when sane,
//! else a new one), echoed in both response headers and carried by every log line of the
//! request (a `request` span with `request_id`); its count and latency by route template; and
//! one access log line when its body has been sent (or the client went away).

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::web;
use bytes::Bytes;
use tracing::Instrument;

use super::metrics::{Metrics, UNMATCHED_ROUTE};
use crate::app::AppState;

/// pulp-glue sends one and refuses a response that does not echo it.
pub const CORRELATION_ID: HeaderName = HeaderName::from_static("correlation-id");
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// A longer client id is not an id but a payload: it is replaced.
const MAX_ID_LEN: usize = 128;

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The id of the request being handled on this task, if any (tasks it dispatches record it as
/// their `logging_cid`).
pub fn current_request_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

/// A fresh id, in the shape Pulp uses (32 hex digits).
pub fn new_request_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// The client's id, if it sent one that can go into a log line and a header unchanged:
/// 1..=128 visible ASCII characters.
fn given_request_id(headers: &HeaderMap) -> Option<String> {
    [CORRELATION_ID, X_REQUEST_ID].iter().filter_map(|name| headers.get(name)).map(HeaderValue::as_bytes).find_map(|id| {
        let sane = !id.is_empty() && id.len() <= MAX_ID_LEN && id.iter().all(|b| b.is_ascii_graphic());
        sane.then(|| String::from_utf8_lossy(id).into_owned())
    })
}

/// Methods outside this list share one label value, so a client cannot grow the label set.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

pub async fn observe_request(req: ServiceRequest, next: Next<impl MessageBody + 'static>) -> Result<ServiceResponse<ObservedBody>, actix_web::Error> {
    let started = Instant::now();
    let id = given_request_id(req.headers()).unwrap_or_else(new_request_id);
    let span = tracing::info_span!("request", request_id = %id);
    let metrics = req.app_data::<web::Data<AppState>>().map(|s| s.metrics.clone());
    // Handlers' and extractors' errors arrive as responses; an `Err` here (no service returns
    // one) would have no request left to answer with, so actix answers it.
    let response = REQUEST_ID.scope(id.clone(), next.call(req)).instrument(span.clone()).await?;
    let (request, mut response) = response.map_into_boxed_body().into_parts();
    let value = HeaderValue::from_str(&id).expect("request ids are visible ASCII");
    response.headers_mut().insert(CORRELATION_ID, value.clone());
    response.headers_mut().insert(X_REQUEST_ID, value);
    let finish = Finished {
        span,
        started,
        metrics,
        route: request.match_pattern().unwrap_or_else(|| UNMATCHED_ROUTE.to_string()),
        method: method_label(request.method()),
        status: response.status().as_u16(),
        request_line: format!("{} {}", request.method(), request.uri()),
        peer: request.peer_addr().map(|a| a.ip().to_string()).unwrap_or_default(),
    };
    let response = response.map_body(|_, body| ObservedBody { body, sent: 0, complete: false, finish: Some(finish) });
    Ok(ServiceResponse::new(request, response))
}

/// What is known of a request once its response head is ready.
struct Finished {
    span: tracing::Span,
    started: Instant,
    metrics: Option<std::sync::Arc<Metrics>>,
    route: String,
    method: &'static str,
    status: u16,
    request_line: String,
    peer: String,
}

impl Finished {
    fn record(self, sent: u64, complete: bool) {
        let seconds = self.started.elapsed().as_secs_f64();
        if let Some(m) = &self.metrics {
            m.http_requests.with_label_values(&[&self.route, self.method, &self.status.to_string()]).inc();
            m.http_request_duration.with_label_values(&[&self.route, self.method]).observe(seconds);
        }
        let _entered = self.span.enter();
        // Orchestrators probe and Prometheus scrapes every few seconds: their successes are no news.
        if self.status < 400 && matches!(self.route.as_str(), "/livez" | "/readyz" | "/metrics") {
            tracing::debug!(target: "pulpish::access", peer = %self.peer, status = self.status, bytes = sent, complete, seconds, "{}", self.request_line);
        } else {
            tracing::info!(target: "pulpish::access", peer = %self.peer, status = self.status, bytes = sent, complete, seconds, "{}", self.request_line);
        }
    }
}

/// The response body, counted as it is sent; recorded when it ends or is dropped (the client
/// went away), so the access line and the latency cover the whole transfer.
pub struct ObservedBody {
    body: BoxBody,
    sent: u64,
    complete: bool,
    finish: Option<Finished>,
}

impl MessageBody for ObservedBody {
    type Error = Box<dyn std::error::Error>;

    fn size(&self) -> BodySize {
        self.body.size()
    }

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, Self::Error>>> {
        let this = &mut *self;
        // Log lines of a streaming body (an on-demand blob) belong to its request too.
        let _entered = this.finish.as_ref().map(|f| f.span.enter());
        let next = Pin::new(&mut this.body).poll_next(cx);
        match &next {
            Poll::Ready(Some(Ok(chunk))) => this.sent += chunk.len() as u64,
            Poll::Ready(None) => this.complete = true,
            _ => {}
        }
        next
    }
}

impl Drop for ObservedBody {
    fn drop(&mut self) {
        // An empty body (HEAD, 204) is complete without ever being polled.
        let complete = self.complete || matches!(self.body.size(), BodySize::None | BodySize::Sized(0));
        if let Some(finish) = self.finish.take() {
            finish.record(self.sent, complete);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&HeaderName, &[u8])]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.insert((*name).clone(), HeaderValue::from_bytes(value).unwrap());
        }
        h
    }

    #[test]
    fn a_sane_client_id_is_kept_and_anything_else_replaced() {
        assert_eq!(given_request_id(&headers(&[(&CORRELATION_ID, b"abc-123")])).as_deref(), Some("abc-123"));
        assert_eq!(given_request_id(&headers(&[(&X_REQUEST_ID, b"xyz")])).as_deref(), Some("xyz"));
        // Correlation-ID first (pulp-glue checks that one), the other when it is unusable.
        assert_eq!(given_request_id(&headers(&[(&CORRELATION_ID, b"c"), (&X_REQUEST_ID, b"x")])).as_deref(), Some("c"));
        assert_eq!(given_request_id(&headers(&[(&CORRELATION_ID, b"a b"), (&X_REQUEST_ID, b"x")])).as_deref(), Some("x"));
        assert_eq!(given_request_id(&headers(&[(&CORRELATION_ID, &[b'a'; 129])])), None);
        assert_eq!(given_request_id(&headers(&[(&CORRELATION_ID, b"tab\there")])), None);
        assert_eq!(given_request_id(&headers(&[(&CORRELATION_ID, "caf\u{e9}".as_bytes())])), None);
        assert_eq!(given_request_id(&HeaderMap::new()), None);
    }
}
