//! Every Prometheus metric this process exposes, defined once. Each `AppState` has its own
//! registry (tests run several servers in one process); the code that counts calls the fields
//! here, and `/metrics` renders them with a few gauges read at scrape time.

use prometheus::{Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};

use std::time::Duration;

use futures_util::future::FutureExt;

use crate::app::AppState;
use crate::cached_answer::CachedAnswer;
use crate::db::DbError;

/// The `route` label of requests that matched no route: one value, however many paths.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// Why an on-demand download from a remote failed (the `cause` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownloadFailure {
    /// No byte (or no next byte) within the remote's timeout.
    Timeout,
    /// Connection refused, reset or broken off.
    Unreachable,
    /// The remote answered an error status (401, 404, 429, 5xx) or an unusable response.
    Status,
    /// Wrong digest or size.
    Integrity,
    /// The scratch file or the store failed here.
    Storage,
    /// Still running at the shutdown deadline.
    Shutdown,
}

impl DownloadFailure {
    pub const ALL: [DownloadFailure; 6] = [
        DownloadFailure::Timeout,
        DownloadFailure::Unreachable,
        DownloadFailure::Status,
        DownloadFailure::Integrity,
        DownloadFailure::Storage,
        DownloadFailure::Shutdown,
    ];

    pub fn label(self) -> &'static str {
        match self {
            DownloadFailure::Timeout => "timeout",
            DownloadFailure::Unreachable => "unreachable",
            DownloadFailure::Status => "status",
            DownloadFailure::Integrity => "integrity",
            DownloadFailure::Storage => "storage",
            DownloadFailure::Shutdown => "shutdown",
        }
    }
}

pub struct Metrics {
    registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_request_duration: HistogramVec,
    pub downloads_in_flight: IntGauge,
    pub downloads_started: IntCounter,
    pub downloads_failed: IntCounterVec,
    pub relays_started: IntCounter,
    pub background_retries: IntCounterVec,
    pub prefetches_started: IntCounter,
    pub upstream_bytes: IntCounter,
    pub download_resumes: IntCounter,
    pub peer_bytes: IntCounter,
    pub served_bytes: IntCounter,
    pub readers_joined: IntCounter,
    pub blob_cache_hits: IntCounter,
    pub blob_cache_misses: IntCounter,
    pub tasks_finished: IntCounterVec,
    pub task_duration: HistogramVec,
    pub tasks_running: IntGauge,
    tasks_waiting: IntGauge,
    db_connections: IntGaugeVec,
    upload_sessions: IntGauge,
    scrape_errors: IntCounter,
    database_counts: CachedAnswer<Result<(i64, i64), String>>,
}

/// How long the counts read from the database are reused.
const DATABASE_COUNTS_TTL: Duration = Duration::from_secs(2);
/// A scrape waits no longer than this for them.
const DATABASE_COUNTS_TIMEOUT: Duration = Duration::from_secs(2);

/// Request latencies, from a fast manifest GET to a long blob stream.
const HTTP_BUCKETS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];
/// Tasks run from milliseconds (a label) to hours (a large immediate sync).
const TASK_BUCKETS: &[f64] = &[0.01, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 14400.0];

impl Default for Metrics {
    fn default() -> Self {
        let registry = Registry::new();
        let counter = |name: &str, help: &str| register(&registry, IntCounter::new(name, help));
        let counter_vec = |name: &str, help: &str, labels: &[&str]| register(&registry, IntCounterVec::new(Opts::new(name, help), labels));
        let gauge = |name: &str, help: &str| register(&registry, IntGauge::new(name, help));
        let histogram_vec = |name: &str, help: &str, buckets: &[f64], labels: &[&str]| {
            register(&registry, HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets.to_vec()), labels))
        };
        let m = Metrics {
            http_requests: counter_vec(
                "pulpish_http_requests_total",
                "HTTP requests answered, by route template, method and status code.",
                &["route", "method", "status"],
            ),
            http_request_duration: histogram_vec(
                "pulpish_http_request_duration_seconds",
                "Time from a request's arrival until its response body was sent, by route template and method.",
                HTTP_BUCKETS,
                &["route", "method"],
            ),
            downloads_in_flight: gauge("pulpish_ondemand_downloads_in_flight", "On-demand blob downloads from remotes running now."),
            downloads_started: counter("pulpish_ondemand_downloads_started_total", "On-demand blob downloads started from a remote."),
            downloads_failed: counter_vec(
                "pulpish_ondemand_downloads_failed_total",
                "On-demand blob downloads from a remote that failed, by cause (timeout, unreachable, status, integrity, storage, shutdown).",
                &["cause"],
            ),
            relays_started: counter(
                "pulpish_ondemand_relays_started_total",
                "On-demand blob downloads relayed from the replica that downloads them from the remote.",
            ),
            background_retries: counter_vec(
                "pulpish_background_retries_total",
                "Background retries of failed on-demand downloads that ended, by outcome (stored, failed: a lasting error, gave_up: still failing after every attempt).",
                &["outcome"],
            ),
            prefetches_started: counter(
                "pulpish_prefetches_started_total",
                "Blobs (config or layer) a manifest GET's prefetch asked the on-demand fetcher for, not stored when it looked.",
            ),
            upstream_bytes: counter("pulpish_ondemand_upstream_bytes_total", "Blob bytes received from remotes by on-demand downloads."),
            download_resumes: counter(
                "pulpish_ondemand_download_resumes_total",
                "Blob downloads from a remote asked again from where the upstream broke them off (a range request, or the whole blob when it ignored the range).",
            ),
            peer_bytes: counter("pulpish_ondemand_peer_bytes_total", "Blob bytes received from other replicas by relayed downloads."),
            served_bytes: counter("pulpish_ondemand_served_bytes_total", "Bytes of on-demand downloads in flight sent to clients."),
            readers_joined: counter(
                "pulpish_ondemand_readers_joined_total",
                "Blob requests that joined a download already in flight instead of starting one.",
            ),
            blob_cache_hits: counter("pulpish_blob_cache_hits_total", "Blob GETs answered from the store."),
            blob_cache_misses: counter("pulpish_blob_cache_misses_total", "Blob GETs of blobs not stored yet, answered by an on-demand download."),
            tasks_finished: counter_vec(
                "pulpish_tasks_finished_total",
                "Tasks that ran on this replica's workers and ended, by task name and final state.",
                &["name", "state"],
            ),
            task_duration: histogram_vec(
                "pulpish_task_duration_seconds",
                "Running time of the tasks this replica's workers finished, by task name.",
                TASK_BUCKETS,
                &["name"],
            ),
            tasks_running: gauge("pulpish_tasks_running", "Tasks running on this replica's workers now."),
            tasks_waiting: gauge("pulpish_tasks_waiting", "Tasks waiting for a worker, in the whole installation (read from the database)."),
            db_connections: register(
                &registry,
                IntGaugeVec::new(Opts::new("pulpish_db_pool_connections", "Connections of this replica's database pool, by state (in_use, idle), and the most it opens (max)."), &["state"]),
            ),
            upload_sessions: gauge(
                "pulpish_upload_sessions_open",
                "Blob upload sessions started and not yet finished or cancelled, in the whole installation (read from the database).",
            ),
            scrape_errors: counter(
                "pulpish_metrics_scrape_errors_total",
                "Scrapes whose database-backed gauges could not be read, or not within 2 s (they kept their last value).",
            ),
            database_counts: CachedAnswer::default(),
            registry,
        };
        // Every cause is exported from the start, so a rate over it is defined before the first failure.
        for cause in DownloadFailure::ALL {
            m.downloads_failed.with_label_values(&[cause.label()]);
        }
        for outcome in ["stored", "failed", "gave_up"] {
            m.background_retries.with_label_values(&[outcome]);
        }
        m
    }
}

fn register<M: prometheus::core::Collector + Clone + 'static>(registry: &Registry, metric: prometheus::Result<M>) -> M {
    let metric = metric.expect("metric definitions are valid");
    registry.register(Box::new(metric.clone())).expect("metric names are unique");
    metric
}

impl Metrics {
    pub fn download_failed(&self, cause: DownloadFailure) {
        self.downloads_failed.with_label_values(&[cause.label()]).inc();
    }

    /// The histogram of one task name (for timing a run).
    pub fn task_timer(&self, name: &str) -> Histogram {
        self.task_duration.with_label_values(&[name])
    }

    /// The text exposition, with the gauges read now: the pool's state, and two counts from
    /// the database (indexed or small tables). The counts are reused for a moment and read by
    /// one query at a time, so scrapes (public by default) cannot pile queries onto the
    /// database; when they fail or do not come in time, the gauges keep their last values.
    pub async fn render(&self, state: &AppState) -> String {
        let pool = state.db.pool_state();
        self.db_connections.with_label_values(&["in_use"]).set(i64::from(pool.connections - pool.idle_connections));
        self.db_connections.with_label_values(&["idle"]).set(i64::from(pool.idle_connections));
        self.db_connections.with_label_values(&["max"]).set(i64::from(state.db.pool_max_size()));
        let db = state.db.clone();
        let counts = self
            .database_counts
            .get(DATABASE_COUNTS_TTL, DATABASE_COUNTS_TIMEOUT, move || {
                async move {
                    let counts = db
                        .run(|c| {
                            let waiting = crate::models::task::count_in_state(c, crate::models::task::WAITING)?;
                            let uploads = crate::models::upload::count_open(c)?;
                            Ok::<_, DbError>((waiting, uploads))
                        })
                        .await
                        .map_err(|e| e.to_string());
                    if let Err(e) = &counts {
                        tracing::warn!(error = %e, "metrics: cannot read the task and upload counts");
                    }
                    counts
                }
                .boxed()
            })
            .await;
        match counts {
            Some(Ok((waiting, uploads))) => {
                self.tasks_waiting.set(waiting);
                self.upload_sessions.set(uploads);
            }
            Some(Err(_)) | None => self.scrape_errors.inc(),
        }
        let mut out = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut out).expect("the text encoder writes to memory");
        String::from_utf8(out).expect("the text exposition is UTF-8")
    }
}
