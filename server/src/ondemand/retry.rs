//! Background retries of failed on-demand downloads. When a remote allows it
//! (`retry_in_background`), a download from it that failed for a cause that may pass (5xx, 429,
//! a timeout, a connection refused or broken off) is tried again a few times with backoff after
//! its clients got their error, so the next client finds the blob stored.
//!
//! Each attempt is an ordinary request for the blob (`BlobFetcher::open`, read to its verdict):
//! it joins a download in flight, respects the lease of another replica, and records the blob
//! as any on-demand fetch does. One retry per digest per process runs at a time; the attempts'
//! own failures start none.

use std::sync::{Arc, PoisonError};
use std::time::Duration;

use super::{BlobFetcher, FetchError};
use crate::app::AppState;
use crate::models::content::BlobSource;
use crate::models::remote::Remote;
use crate::upstream::UpstreamError;

/// The pause before each attempt. The remote's `max_retries` is spent inside each attempt.
const BACKOFF: [Duration; 5] = [Duration::from_secs(1), Duration::from_secs(2), Duration::from_secs(4), Duration::from_secs(8), Duration::from_secs(16)];
/// The longest a `Retry-After` may hold an attempt back.
const LONGEST_RETRY_AFTER: Duration = Duration::from_secs(600);

enum Outcome {
    Stored,
    /// A lasting error: the blob is gone upstream, wrong, or the credentials are refused.
    Failed(FetchError),
    GaveUp(FetchError),
    Shutdown,
}

/// A cause of failure that may pass by itself.
fn transient(e: &FetchError) -> bool {
    match e {
        FetchError::Upstream(UpstreamError::Status { status, .. }) => *status >= 500,
        FetchError::Upstream(UpstreamError::TooManyRequests(..) | UpstreamError::Timeout(_) | UpstreamError::Unreachable(_)) => true,
        _ => false,
    }
}

/// After the first try, an attempt may have relayed another replica's download: its transient
/// failures (as its clients were told them) and "no replica could download" also pass.
fn worth_another_try(e: &FetchError) -> bool {
    transient(e) || matches!(e, FetchError::Owner { status, .. } if *status == 429 || *status >= 500) || matches!(e, FetchError::Unavailable(_))
}

fn retry_after(e: &FetchError) -> Duration {
    match e {
        FetchError::Upstream(UpstreamError::TooManyRequests(_, Some(wait))) => (*wait).min(LONGEST_RETRY_AFTER),
        _ => Duration::ZERO,
    }
}

impl BlobFetcher {
    /// After an owned download from `remote` failed with `error`: starts the background retry
    /// of the blob if the remote allows it, the cause may pass, and none runs for it already.
    /// A streamed remote keeps nothing, so it never retries.
    pub(super) fn retry_in_background(self: &Arc<Self>, state: &AppState, source: &BlobSource, remote: &Remote, error: &FetchError) {
        if !remote.retry_in_background || remote.policy == "streamed" || !transient(error) || state.readiness.shutting_down() {
            return;
        }
        if !self.retrying.lock().unwrap_or_else(PoisonError::into_inner).insert(source.digest.clone()) {
            return;
        }
        let (fetcher, state, source, first_wait) = (self.clone(), state.clone(), source.clone(), retry_after(error));
        self.spawn(async move {
            let digest = source.digest.clone();
            let outcome = fetcher.retry(&state, source, first_wait).await;
            fetcher.retrying.lock().unwrap_or_else(PoisonError::into_inner).remove(&digest);
            let label = match &outcome {
                Outcome::Stored => {
                    tracing::info!(digest = %digest, "background retry stored the blob");
                    "stored"
                }
                Outcome::Failed(e) => {
                    tracing::warn!(digest = %digest, error = %e, "background retry stopped: the failure is not transient");
                    "failed"
                }
                Outcome::GaveUp(e) => {
                    tracing::warn!(digest = %digest, attempts = BACKOFF.len(), error = %e, "background retry gave up");
                    "gave_up"
                }
                Outcome::Shutdown => return,
            };
            state.metrics.background_retries.with_label_values(&[label]).inc();
        });
    }

    async fn retry(self: &Arc<Self>, state: &AppState, source: BlobSource, first_wait: Duration) -> Outcome {
        let mut cut = self.cut.subscribe();
        let mut asked = first_wait;
        let mut last = None;
        for backoff in BACKOFF {
            tokio::select! {
                _ = tokio::time::sleep(backoff.max(asked)) => {}
                _ = async { let _ = cut.wait_for(|cut| *cut).await; } => return Outcome::Shutdown,
            }
            if state.readiness.shutting_down() {
                return Outcome::Shutdown;
            }
            match self.settle(state, source.clone(), true).await {
                Ok(()) => return Outcome::Stored,
                Err(e) if worth_another_try(&e) => {
                    tracing::debug!(digest = %source.digest, error = %e, "background retry attempt failed");
                    asked = retry_after(&e);
                    last = Some(e);
                }
                Err(e) => return Outcome::Failed(e),
            }
        }
        Outcome::GaveUp(last.unwrap_or_else(|| FetchError::Unavailable("no attempt ran".into())))
    }

}
