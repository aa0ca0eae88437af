//! Graceful shutdown on SIGTERM or SIGINT, within `--shutdown-timeout` seconds:
//!
//! - `/readyz` answers 503 and the listener closes: new connections are refused;
//! - requests and blob streams in flight go on until the deadline (then they are closed);
//! - task workers claim nothing more; tasks running at the deadline go back to the queue
//!   (`waiting`, resources freed) for another replica, or this one after its restart;
//! - on-demand downloads go on until the deadline; those left are cut (their readers never
//!   get the last byte of an unverified blob); verified downloads still being recorded get
//!   until TIDY_UP past the deadline; then this replica's download leases are released (but
//!   those of recordings unfinished) so another replica takes the blobs over at once.
//!
//! Whatever waits on the database after the deadline gives up within TIDY_UP a step, and a
//! second signal ends the process at once.

use std::time::{Duration, Instant};

use futures_util::{Stream, StreamExt};

use crate::app::RunningServer;

/// How long past the shutdown deadline this process waits for the database (handing tasks
/// back, recording outcomes and downloads, leaving the worker list, releasing leases) when it
/// does not answer.
pub const TIDY_UP: Duration = Duration::from_secs(5);

/// What shutdown had to give up on.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    pub tasks_handed_back: usize,
    pub downloads_cut: usize,
    /// The second signal that ended shutdown at once, if one did.
    pub cut_short_by: Option<&'static str>,
}

impl ShutdownReport {
    /// The exit code of a process whose shutdown a second signal cut short: 128 + the signal's
    /// number, as shells report a death by that signal.
    pub fn exit_code(&self) -> Option<i32> {
        self.cut_short_by.map(|signal| 128 + if signal == "SIGINT" { libc::SIGINT } else { libc::SIGTERM })
    }
}

/// Every SIGTERM and SIGINT from now on, by name. The handlers are installed before this
/// returns, so such a signal is never the default (immediate) exit.
pub fn signals() -> std::io::Result<impl Stream<Item = &'static str> + Unpin> {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate())?;
    let int = signal(SignalKind::interrupt())?;
    Ok(Box::pin(futures_util::stream::unfold((term, int), |(mut term, mut int)| async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        Some((name, (term, int)))
    })))
}

impl RunningServer {
    /// Serves until SIGTERM or SIGINT, then shuts down gracefully; a second one ends the
    /// shutdown at once.
    pub async fn run_until_stopped(self) -> std::io::Result<ShutdownReport> {
        self.run_until(signals()?).await
    }

    /// Serves until `stop` yields (the name of what stopped it, for the log), then shuts down
    /// gracefully; if `stop` yields again meanwhile, gives up on the shutdown at once (the
    /// report says so: the caller exits without waiting for anything).
    pub async fn run_until(self, mut stop: impl Stream<Item = &'static str> + Unpin) -> std::io::Result<ShutdownReport> {
        let RunningServer { state, server, .. } = self;
        let http = server.handle();
        let mut server = tokio::spawn(server);
        let signal = tokio::select! {
            ended = &mut server => return ended.map_err(std::io::Error::other)?.map(|()| ShutdownReport::default()),
            Some(signal) = stop.next() => signal,
        };
        let timeout = Duration::from_secs(state.config.shutdown_timeout);
        let deadline = Instant::now() + timeout;
        tracing::info!(
            signal,
            timeout_seconds = timeout.as_secs(),
            running_tasks = state.metrics.tasks_running.get(),
            downloads = state.fetcher.downloads_in_flight(),
            "shutting down: refusing new connections, letting requests, downloads and tasks finish until the deadline"
        );
        state.readiness.begin_shutdown();
        // The HTTP server closes its listener at once and force-closes what is left after its
        // own `shutdown_timeout`, the same deadline.
        let downloads = async {
            let cut = state.fetcher.stop(deadline).await;
            if tokio::time::timeout(TIDY_UP, state.fetcher.release_leases(&state)).await.is_err() {
                tracing::warn!("releasing this replica's download leases failed: the database did not answer; they lapse by themselves");
            }
            cut
        };
        let shutdown = async {
            let (_, tasks_handed_back, downloads_cut) = tokio::join!(http.stop(true), state.tasks.stop(&state, deadline), downloads);
            let _ = server.await;
            ShutdownReport { tasks_handed_back, downloads_cut, cut_short_by: None }
        };
        tokio::select! {
            report = shutdown => {
                tracing::info!(tasks_handed_back = report.tasks_handed_back, downloads_cut = report.downloads_cut, "shutdown complete");
                Ok(report)
            }
            Some(again) = stop.next() => {
                tracing::warn!(signal = again, "second signal during shutdown: exiting at once, cutting requests, downloads and tasks still running");
                Ok(ShutdownReport { cut_short_by: Some(again), ..ShutdownReport::default() })
            }
        }
    }
}
