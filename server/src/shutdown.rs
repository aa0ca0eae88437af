//! Graceful shutdown on SIGTERM or SIGINT, within `--shutdown-timeout` seconds:
//!
//! - `/readyz` answers 503 and the listener closes: new connections are refused;
//! - requests and blob streams in flight go on until the deadline (then they are closed);
//! - task workers claim nothing more; tasks running at the deadline go back to the queue
//!   (`waiting`, resources freed) for another replica, or this one after its restart;
//! - on-demand downloads go on until the deadline; those left are cut (their readers never
//!   get the last byte of an unverified blob) and this replica's download leases are released
//!   so another replica takes the blobs over at once.

use std::future::Future;
use std::time::{Duration, Instant};

use crate::app::RunningServer;

/// What shutdown had to give up on.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    pub tasks_handed_back: usize,
    pub downloads_cut: usize,
}

/// Resolves at the first SIGTERM or SIGINT, naming it. The handlers are installed before this
/// returns, so a signal from then on is never the default (immediate) exit.
pub fn signal() -> std::io::Result<impl Future<Output = &'static str>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        }
    })
}

impl RunningServer {
    /// Serves until SIGTERM or SIGINT, then shuts down gracefully.
    pub async fn run_until_stopped(self) -> std::io::Result<ShutdownReport> {
        let stop = signal()?;
        self.run_until(stop).await
    }

    /// Serves until `stop` resolves (with the name of what stopped it, for the log), then shuts
    /// down gracefully.
    pub async fn run_until(self, stop: impl Future<Output = &'static str>) -> std::io::Result<ShutdownReport> {
        let RunningServer { state, server, .. } = self;
        let http = server.handle();
        let mut server = tokio::spawn(server);
        let signal = tokio::select! {
            ended = &mut server => return ended.map_err(std::io::Error::other)?.map(|()| ShutdownReport::default()),
            signal = stop => signal,
        };
        let timeout = Duration::from_secs(state.config.shutdown_timeout);
        let deadline = Instant::now() + timeout;
        tracing::info!(
            signal,
            timeout_seconds = timeout.as_secs(),
            running_tasks = state.tasks.running_tasks(),
            downloads = state.fetcher.downloads_in_flight(),
            "shutting down: refusing new connections, letting requests, downloads and tasks finish until the deadline"
        );
        state.readiness.begin_shutdown();
        // The HTTP server closes its listener at once and force-closes what is left after its
        // own `shutdown_timeout`, the same deadline.
        let (_, tasks_handed_back, downloads_cut) = tokio::join!(
            http.stop(true),
            state.tasks.stop(&state, deadline),
            state.fetcher.stop(deadline),
        );
        if tokio::time::timeout(crate::tasks::TIDY_UP, state.fetcher.release_leases(&state)).await.is_err() {
            tracing::warn!("releasing this replica's download leases failed: the database did not answer; they lapse by themselves");
        }
        let _ = server.await;
        let report = ShutdownReport { tasks_handed_back, downloads_cut };
        tracing::info!(tasks_handed_back, downloads_cut, "shutdown complete");
        Ok(report)
    }
}
