//! Server configuration: flags, each with a `PULPISH_*` environment twin and a key in the
//! `--config` file (file.rs); `X_file` reads the secret X from a file.

mod effective;
mod file;

use std::net::SocketAddr;
use std::path::PathBuf;

pub use effective::effective_settings;
pub use file::{ConfigFileError, FileLayer};

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
    #[arg(long, env = "PULPISH_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// File holding --database-url (URLs carry passwords); read into `database_url` when parsed.
    #[arg(long, env = "PULPISH_DATABASE_URL_FILE")]
    pub database_url_file: Option<PathBuf>,
    /// Password of the `admin` user. When unset at first start, one is generated and printed once.
    #[arg(long, env = "PULPISH_ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: Option<String>,
    /// File holding --admin-password; read into `admin_password` when parsed.
    #[arg(long, env = "PULPISH_ADMIN_PASSWORD_FILE")]
    pub admin_password_file: Option<PathBuf>,
    /// Task workers run inside this process (0: this replica only serves, others run the tasks).
    #[arg(long, env = "PULPISH_WORKERS", default_value_t = 2, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(0..=64))]
    pub workers: usize,
    #[arg(long, env = "PULPISH_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Blob uploads untouched for this many seconds are removed with their staged bytes.
    #[arg(long, env = "PULPISH_UPLOAD_EXPIRY", default_value_t = 86400, value_parser = clap::value_parser!(u64).range(1..=31_536_000))]
    pub upload_expiry: u64,
    /// Seconds that in-flight requests, blob streams and running tasks get to finish after
    /// SIGTERM or SIGINT; tasks still running then are handed back to the queue.
    #[arg(long, env = "PULPISH_SHUTDOWN_TIMEOUT", default_value_t = 30, value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub shutdown_timeout: u64,
    /// Who may read the Prometheus metrics at /metrics.
    #[arg(long, env = "PULPISH_METRICS", value_enum, default_value = "public")]
    pub metrics: MetricsAccess,
    #[command(flatten)]
    pub tls: TlsConfig,
    #[command(flatten)]
    pub storage: StorageConfig,
    #[command(flatten)]
    pub cluster: ClusterConfig,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum, PartialEq, Eq, Default)]
pub enum MetricsAccess {
    /// Anyone who can reach the port (what a Prometheus scrape config expects).
    #[default]
    Public,
    /// Only the API's credentials (Basic auth as the admin user).
    Admin,
    /// No /metrics endpoint (404).
    Off,
}

/// HTTPS for the API and the registry, without a proxy in front.
#[derive(Debug, Clone, clap::Args, Default)]
pub struct TlsConfig {
    /// PEM certificate chain to serve HTTPS with (needs --tls-key).
    #[arg(long, env = "PULPISH_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "PULPISH_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum, PartialEq, Eq, Default)]
pub enum StorageKind {
    /// Artifacts under DATA_DIR/artifact (the embedded default).
    #[default]
    Filesystem,
    /// An S3-compatible object store (`--s3-*`); DATA_DIR then holds only scratch files.
    S3,
}

/// Where artifacts and staged uploads live.
#[derive(Clone, clap::Args, Default)]
pub struct StorageConfig {
    #[arg(long = "storage", env = "PULPISH_STORAGE", value_enum, default_value = "filesystem")]
    pub kind: StorageKind,
    /// S3 endpoint, e.g. `http://127.0.0.1:3900`; unset means AWS itself.
    #[arg(long, env = "PULPISH_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    #[arg(long, env = "PULPISH_S3_BUCKET")]
    pub s3_bucket: Option<String>,
    #[arg(long, env = "PULPISH_S3_REGION", default_value = "us-east-1")]
    pub s3_region: String,
    #[arg(long, env = "PULPISH_S3_ACCESS_KEY_ID", hide_env_values = true)]
    pub s3_access_key_id: Option<String>,
    /// File holding --s3-access-key-id; read into `s3_access_key_id` when parsed.
    #[arg(long, env = "PULPISH_S3_ACCESS_KEY_ID_FILE")]
    pub s3_access_key_id_file: Option<PathBuf>,
    #[arg(long, env = "PULPISH_S3_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub s3_secret_access_key: Option<String>,
    /// File holding --s3-secret-access-key; read into `s3_secret_access_key` when parsed.
    #[arg(long, env = "PULPISH_S3_SECRET_ACCESS_KEY_FILE")]
    pub s3_secret_access_key_file: Option<PathBuf>,
    /// Key prefix inside the bucket (e.g. `pulpish/`), so one bucket can hold several installs.
    #[arg(long, env = "PULPISH_S3_PREFIX")]
    pub s3_prefix: Option<String>,
    /// Virtual-hosted-style requests (`bucket.endpoint`) instead of path-style ones.
    #[arg(long, env = "PULPISH_S3_VIRTUAL_HOSTED")]
    pub s3_virtual_hosted: bool,
    /// Answer GETs of stored blobs with a 307 to a presigned object-store URL (S3 only).
    #[arg(long, env = "PULPISH_REDIRECT_BLOBS")]
    pub redirect_blobs: bool,
    /// Seconds a presigned blob URL stays valid (S3 allows up to 7 days).
    #[arg(long, env = "PULPISH_REDIRECT_EXPIRY", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=604_800))]
    pub redirect_expiry: u64,
}

impl std::fmt::Debug for StorageConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorageConfig")
            .field("kind", &self.kind)
            .field("s3_endpoint", &self.s3_endpoint)
            .field("s3_bucket", &self.s3_bucket)
            .field("s3_region", &self.s3_region)
            .field("s3_access_key_id", &self.s3_access_key_id.as_ref().map(|_| "<redacted>"))
            .field("s3_secret_access_key", &self.s3_secret_access_key.as_ref().map(|_| "<redacted>"))
            .field("s3_prefix", &self.s3_prefix)
            .field("redirect_blobs", &self.redirect_blobs)
            .finish_non_exhaustive()
    }
}

/// How replicas of one installation find each other.
#[derive(Debug, Clone, clap::Args)]
pub struct ClusterConfig {
    /// URL at which the other replicas reach this one (for streaming a blob download this
    /// replica owns); default: http://BIND.
    #[arg(long, env = "PULPISH_ADVERTISE_URL")]
    pub advertise_url: Option<String>,
    /// Seconds after its last heartbeat that a dead replica's blob download may be taken over.
    #[arg(long, env = "PULPISH_LEASE_SECONDS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub lease_seconds: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig { advertise_url: None, lease_seconds: 10 }
    }
}

impl Config {
    /// A configuration for tests and embedding: everything under `data_dir`.
    pub fn for_data_dir(data_dir: impl Into<PathBuf>) -> Self {
        Config {
            bind: "127.0.0.1:0".parse().expect("valid address"),
            data_dir: data_dir.into(),
            database_url: None,
            database_url_file: None,
            admin_password: None,
            admin_password_file: None,
            workers: 2,
            log_format: LogFormat::Text,
            upload_expiry: 86400,
            shutdown_timeout: 30,
            metrics: MetricsAccess::Public,
            tls: TlsConfig::default(),
            storage: StorageConfig { s3_region: "us-east-1".into(), redirect_expiry: 300, ..Default::default() },
            cluster: ClusterConfig::default(),
        }
    }

    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}", self.data_dir.join("pulpish.db").display()),
        }
    }
}
