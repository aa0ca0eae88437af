//! pulpish: a container content manager with Pulp 3's container API.
//! See docs/architecture.md for the folders and how a request flows through them.

pub mod api;
pub mod app;
pub mod cached_answer;
pub mod config;
pub mod db;
pub mod error;
pub mod health;
pub mod memory;
#[doc(hidden)]
pub mod fuzzing;
pub mod models;
pub mod observe;
pub mod ondemand;
pub mod pull_through;
pub mod registry;
pub mod shutdown;
pub mod storage;
pub mod sync;
pub mod tasks;
pub mod tls;
pub mod upstream;

pub use app::{openapi_concrete_json, openapi_json, prepare, start, AppState, RunningServer};
pub use config::Config;

/// Sets up logging once (`text` or `json`), honouring `RUST_LOG`.
pub fn init_logging(format: &config::LogFormat) {
    use tracing_subscriber::EnvFilter;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let noise = observe::client_noise::ClientNoiseAtDebug;
    let _ = match format {
        config::LogFormat::Json => builder.json().finish().with(noise).try_init(),
        config::LogFormat::Text => builder.finish().with(noise).try_init(),
    };
}
