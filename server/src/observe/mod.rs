//! Watching the running service: Prometheus metrics (`metrics.rs`, served by `scrape.rs`), the
//! per-request id, counts and access log (`request.rs`), and the log filter that keeps clients'
//! noise out of the error log (`client_noise.rs`).

pub mod client_noise;
pub mod metrics;
pub mod request;
pub mod scrape;

pub use metrics::Metrics;
