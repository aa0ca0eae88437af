//! Server configuration: flags, each with a `PULPISH_*` environment twin.

use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Clone, clap::ValueEnum, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Address the management API and the /v2 content app listen on.
    #[arg(long, env = "PULPISH_BIND", default_value = "127.0.0.1:24817")]
    pub bind: SocketAddr,
    /// Directory for the SQLite database (by default) and stored artifacts.
    #[arg(long, env = "PULPISH_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// `postgres://user@host/db` for PostgreSQL; default: SQLite at DATA_DIR/pulpish.db.
    #[arg(long, env = "PULPISH_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Password of the `admin` user. When unset at first start, one is generated and printed once.
    #[arg(long, env = "PULPISH_ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: Option<String>,
    /// Task workers run inside this process.
    #[arg(long, env = "PULPISH_WORKERS", default_value_t = 2)]
    pub workers: usize,
    #[arg(long, env = "PULPISH_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Blob uploads untouched for this many seconds are removed with their staged bytes.
    #[arg(long, env = "PULPISH_UPLOAD_EXPIRY", default_value_t = 86400)]
    pub upload_expiry: u64,
}

impl Config {
    /// A configuration for tests and embedding: everything under `data_dir`.
    pub fn for_data_dir(data_dir: impl Into<PathBuf>) -> Self {
        Config {
            bind: "127.0.0.1:0".parse().expect("valid address"),
            data_dir: data_dir.into(),
            database_url: None,
            admin_password: None,
            workers: 2,
            log_format: LogFormat::Text,
            upload_expiry: 86400,
        }
    }

    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}", self.data_dir.join("pulpish.db").display()),
        }
    }
}
