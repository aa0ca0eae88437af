//! Receiving a blob's bytes into a download. Each chunk from the upstream's socket goes at
//! once to the readers that are caught up (a bounded broadcast of the chunks in flight), to
//! the writer of the temp file and to the hasher; the writer and the hasher run on threads of
//! their own fed by small queues, so the socket, the disk and SHA-256 overlap.
//!
//! When the upstream breaks off mid-blob (reset, early end, idle timeout), the download asks
//! for the rest (`Range: bytes=N-`) with backoff, up to the remote's `max_retries`, and goes on
//! with the same file and the same hash. An upstream that answers the whole blob (200) instead
//! restarts the download from 0: the hash and the file start over, and readers that already got
//! bytes are cut (their bytes came from a body the digest check no longer covers).

use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::BackoffBuilder;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::{broadcast, mpsc, watch};

use super::spool::Spool;
use super::{FetchError, Progress, IDLE_TIMEOUT};
use crate::app::AppState;
use crate::models::content::BlobSource;
use crate::models::remote::Remote;
use crate::upstream::{Upstream, UpstreamError};

/// Chunks kept for readers that are a little behind the socket; a reader further behind reads
/// the temp file.
pub(super) const LIVE_CHUNKS: usize = 8;

/// A chunk as received, for the readers that are caught up.
#[derive(Clone, Debug)]
pub(super) struct Chunk {
    /// Which attempt from 0 it belongs to (a restart from 0 makes a new one).
    pub epoch: u32,
    pub offset: u64,
    pub bytes: Bytes,
}

/// Chunks are handed to the writer and the hasher in batches of about this many bytes: one
/// wake-up of each thread per batch, not per socket read (often 16 KiB).
const BATCH: usize = 512 * 1024;
/// Range requests after cuts per download at most, whatever the remote's `max_retries`: each
/// may wait a whole idle timeout for an upstream that stopped answering.
const MOST_RESUMES: usize = 10;
/// A pause of the upstream this long puts what was received into the file.
const PAUSE: Duration = Duration::from_millis(5);

enum Feed {
    Bytes(Arc<Vec<Bytes>>),
    /// The upstream sends the blob again from its first byte.
    Restart,
    /// The upstream paused: whatever is held goes into the file now.
    Expose,
}

/// Why a body stopped before its end.
enum Broken {
    /// The connection broke off or stalled: the rest may be asked for again.
    Cut(FetchError),
    Fatal(FetchError),
}

/// Per-stage timings of one download, logged when it ends.
#[derive(Default, Debug)]
struct Stages {
    /// From the request to the response headers.
    headers: Duration,
    /// From the headers to the body's last byte received.
    body: Duration,
    /// Past the last byte: the writer and the hasher draining their queues.
    drain: Duration,
}

/// One blob's bytes on their way into the temp file and the hash.
struct Transfer {
    progress: Arc<watch::Sender<Progress>>,
    live: broadcast::Sender<Chunk>,
    to_writer: mpsc::Sender<Feed>,
    to_hasher: mpsc::Sender<Feed>,
    writer: tokio::task::JoinHandle<std::io::Result<()>>,
    hasher: tokio::task::JoinHandle<(String, String)>,
    received: u64,
    /// Received, not yet handed to the writer and the hasher.
    batch: Vec<Bytes>,
    batch_len: usize,
    /// Bytes received since the writer was last told to put everything into the file.
    unexposed: bool,
    epoch: u32,
    size: Option<u64>,
    digest: String,
}

impl Transfer {
    fn start(source: &BlobSource, progress: Arc<watch::Sender<Progress>>, live: broadcast::Sender<Chunk>, spool: Spool) -> Self {
        // Two small bounded queues (a few MiB in flight at most): one to the writer, which
        // publishes progress as soon as bytes are in the file, one to the hasher.
        let (to_writer, mut writer_rx) = mpsc::channel::<Feed>(4);
        let (to_hasher, mut hasher_rx) = mpsc::channel::<Feed>(4);
        let published = progress.clone();
        let writer = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let mut spool = spool;
            while let Some(feed) = writer_rx.blocking_recv() {
                match feed {
                    Feed::Bytes(chunks) => {
                        let mut moved = false;
                        for chunk in chunks.iter() {
                            moved |= spool.write(chunk)?;
                        }
                        if moved {
                            let written = spool.written();
                            published.send_modify(|p| p.written = written);
                        }
                    }
                    Feed::Restart => {
                        // The new attempt is announced before the old bytes go: a reader that
                        // reads the file after this sees the new epoch when it checks.
                        published.send_modify(|p| {
                            p.epoch += 1;
                            p.written = 0;
                        });
                        spool.restart()?;
                    }
                    Feed::Expose => {
                        if spool.expose()? {
                            let written = spool.written();
                            published.send_modify(|p| p.written = written);
                        }
                    }
                }
            }
            let written = spool.finish()?;
            published.send_modify(|p| p.written = written);
            Ok(())
        });
        let digest = source.digest.clone();
        let hasher = tokio::task::spawn_blocking(move || -> (String, String) {
            let mut hashing = crate::storage::BlobHasher::for_digest(&digest);
            while let Some(feed) = hasher_rx.blocking_recv() {
                match feed {
                    Feed::Bytes(chunks) => chunks.iter().for_each(|c| hashing.update(c)),
                    Feed::Restart => hashing = crate::storage::BlobHasher::for_digest(&digest),
                    Feed::Expose => {}
                }
            }
            hashing.finish()
        });
        let size = progress.borrow().size;
        Transfer { progress, live, to_writer, to_hasher, writer, hasher, received: 0, batch: Vec::new(), batch_len: 0, unexposed: false, epoch: 0, size, digest: source.digest.clone() }
    }

    /// Checks the first response's declared length and tells readers the bytes are coming.
    fn begin(&mut self, resp: &reqwest::Response, from: &str) -> Result<(), FetchError> {
        self.size = match (self.size, resp.content_length()) {
            (Some(e), Some(c)) if e != c => return Err(FetchError::Integrity(format!("{from} sent {c} bytes for {}, expected {e}", self.digest))),
            (e, c) => e.or(c),
        };
        let size = self.size;
        self.progress.send_modify(|p| {
            p.size = size;
            p.phase = super::Phase::Streaming;
        });
        Ok(())
    }

    /// Takes one response's body until its end, or until it breaks off; every byte received is
    /// handed on either way (a resume goes on from them).
    async fn take(&mut self, resp: reqwest::Response, from: &str, deadline: Option<Instant>, counted: &prometheus::IntCounter) -> Result<(), Broken> {
        let taken = self.take_body(resp, from, deadline, counted).await;
        match self.flush().await {
            Err(e) if taken.is_ok() => Err(Broken::Fatal(e)),
            _ => taken,
        }
    }

    async fn take_body(&mut self, resp: reqwest::Response, from: &str, deadline: Option<Instant>, counted: &prometheus::IntCounter) -> Result<(), Broken> {
        let mut body = resp.bytes_stream();
        loop {
            let wait = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()).min(IDLE_TIMEOUT),
                None => IDLE_TIMEOUT,
            };
            let timed_out = || FetchError::Upstream(UpstreamError::Timeout(from.to_string()));
            // When the upstream pauses, what was received goes into the file at once, for the
            // readers that read the file (late joiners, ranges, other replicas' relays).
            let quick = match self.unexposed {
                true => tokio::time::timeout(PAUSE, body.next()).await.ok(),
                false => None,
            };
            if quick.is_none() && self.unexposed {
                self.unexposed = false;
                self.flush().await.map_err(Broken::Fatal)?;
                self.feed(Feed::Expose).await.map_err(Broken::Fatal)?;
            }
            let next = match quick {
                Some(next) => Ok(next),
                None => tokio::time::timeout(wait, body.next()).await,
            };
            let next = match next {
                Ok(next) => next,
                // Past the remote's total timeout nothing is asked again; an idle stall is a cut.
                Err(_) if deadline.is_some_and(|d| Instant::now() >= d) => return Err(Broken::Fatal(timed_out())),
                Err(_) => return Err(Broken::Cut(timed_out())),
            };
            let chunk = match next {
                None if self.size.is_some_and(|s| self.received < s) => {
                    return Err(Broken::Cut(FetchError::Upstream(UpstreamError::Unreachable(format!(
                        "{from}: the download ended after {} of {} bytes",
                        self.received,
                        self.size.unwrap_or(0)
                    )))))
                }
                None => return Ok(()),
                // Every byte is here: the digest check decides, not the connection's end.
                Some(Err(_)) if self.size == Some(self.received) => return Ok(()),
                Some(Err(e)) => return Err(Broken::Cut(FetchError::Upstream(UpstreamError::Unreachable(format!("{from}: the download broke off: {e}"))))),
                Some(Ok(chunk)) => chunk,
            };
            let offset = self.received;
            self.unexposed = true;
            self.received += chunk.len() as u64;
            counted.inc_by(chunk.len() as u64);
            if let Some(size) = self.size.filter(|s| self.received > *s) {
                return Err(Broken::Fatal(FetchError::Integrity(format!("{from} sent more bytes than the {size} of {}", self.digest))));
            }
            // No receiver (no reader caught up) is not an error: the chunk is only dropped.
            let _ = self.live.send(Chunk { epoch: self.epoch, offset, bytes: chunk.clone() });
            self.batch_len += chunk.len();
            self.batch.push(chunk);
            if self.batch_len >= BATCH {
                self.flush().await.map_err(Broken::Fatal)?;
            }
        }
    }

    /// Hands the chunks received so far to the writer and the hasher.
    async fn flush(&mut self) -> Result<(), FetchError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        self.batch_len = 0;
        let batch = Arc::new(std::mem::take(&mut self.batch));
        self.feed(Feed::Bytes(batch)).await
    }

    async fn feed(&self, feed: Feed) -> Result<(), FetchError> {
        let to_hasher = match &feed {
            Feed::Bytes(b) => Some(Feed::Bytes(b.clone())),
            Feed::Restart => Some(Feed::Restart),
            // Only the file has anything to put out.
            Feed::Expose => None,
        };
        if let Some(to_hasher) = to_hasher {
            self.to_hasher.send(to_hasher).await.map_err(|_| FetchError::Io("the blob hasher stopped".into()))?;
        }
        self.to_writer.send(feed).await.map_err(|_| FetchError::Io("the blob writer stopped".into()))
    }

    /// The upstream sends the whole blob again: everything starts over from byte 0.
    async fn restart(&mut self) -> Result<(), FetchError> {
        self.epoch += 1;
        self.received = 0;
        self.feed(Feed::Restart).await
    }

    /// Waits for the writer and the hasher; the sha256 hex and the size once both are right.
    async fn finish(self) -> Result<(String, u64), FetchError> {
        let Transfer { to_writer, to_hasher, writer, hasher, received, size, digest, .. } = self;
        drop((to_writer, to_hasher));
        let written = writer.await.map_err(|_| FetchError::Io("the blob writer failed".into()))?;
        let (sha256_hex, actual) = hasher.await.map_err(|_| FetchError::Io("the blob hasher failed".into()))?;
        written.map_err(|e| FetchError::Io(e.to_string()))?;
        if let Some(s) = size.filter(|s| *s != received) {
            return Err(FetchError::Integrity(format!("size mismatch for {digest}: expected {s} bytes, got {received}")));
        }
        if actual != digest {
            return Err(FetchError::Integrity(format!("digest mismatch for {digest}: the bytes hash to {actual}")));
        }
        Ok((sha256_hex, received))
    }

    /// Stops the writer and the hasher after a failure (the temp file is removed by its owner).
    async fn abandon(self) {
        let Transfer { to_writer, to_hasher, writer, hasher, .. } = self;
        drop((to_writer, to_hasher));
        let _ = writer.await;
        let _ = hasher.await;
    }
}

/// Downloads from the remote into the temp file, resuming after cuts; returns the sha256 hex
/// once the size and the digest are right.
pub(super) async fn fetch(
    state: &AppState,
    remote: &Remote,
    source: &BlobSource,
    progress: Arc<watch::Sender<Progress>>,
    live: broadcast::Sender<Chunk>,
    spool: Spool,
) -> Result<(String, u64), FetchError> {
    let upstream = state.upstreams.get(remote)?;
    let url = upstream.blob_url(&source.digest);
    let started = Instant::now();
    // The response headers must come within the remote's timeout too (504 for the client).
    let deadline = upstream.total_timeout().map(|t| started + t);
    let wait = upstream.total_timeout().unwrap_or(IDLE_TIMEOUT);
    let resp = tokio::time::timeout(wait, upstream.get_blob(&source.digest))
        .await
        .map_err(|_| FetchError::Upstream(UpstreamError::Timeout(url.clone())))??;
    let mut stages = Stages { headers: started.elapsed(), ..Stages::default() };
    let mut transfer = Transfer::start(source, progress, live, spool);
    if let Err(e) = transfer.begin(&resp, &url) {
        transfer.abandon().await;
        return Err(e);
    }
    let mut backoff = resume_backoff(upstream.retries().min(MOST_RESUMES));
    let mut resp = resp;
    let body_started = Instant::now();
    loop {
        let cut = match transfer.take(resp, &url, deadline, &state.metrics.upstream_bytes).await {
            Ok(()) => break,
            Err(Broken::Fatal(e)) => {
                transfer.abandon().await;
                return Err(e);
            }
            Err(Broken::Cut(e)) => e,
        };
        match resume(&upstream, source, &mut transfer, &mut backoff, deadline, cut).await {
            Ok(next) => {
                state.metrics.download_resumes.inc();
                resp = next;
            }
            Err(e) => {
                transfer.abandon().await;
                return Err(e);
            }
        }
    }
    stages.body = body_started.elapsed();
    let drained = Instant::now();
    let verdict = transfer.finish().await;
    stages.drain = drained.elapsed();
    tracing::debug!(digest = %source.digest, headers_ms = stages.headers.as_millis() as u64, body_ms = stages.body.as_millis() as u64,
        drain_ms = stages.drain.as_millis() as u64, "on-demand download stages");
    verdict
}

/// The backoff between resumes: the remote's `max_retries` of them at most.
fn resume_backoff(times: usize) -> backon::ExponentialBackoff {
    backon::ExponentialBuilder::default().with_min_delay(Duration::from_millis(200)).with_max_delay(Duration::from_secs(5)).with_max_times(times).build()
}

/// After a cut at `transfer.received` bytes: the response that goes on with the blob (the
/// range asked for, or the whole blob again after a restart), or the cut's error when the
/// retries are spent, the deadline is past, or the upstream answers anything else.
async fn resume(
    upstream: &Upstream,
    source: &BlobSource,
    transfer: &mut Transfer,
    backoff: &mut backon::ExponentialBackoff,
    deadline: Option<Instant>,
    cut: FetchError,
) -> Result<reqwest::Response, FetchError> {
    let url = upstream.blob_url(&source.digest);
    let mut last = cut;
    loop {
        let Some(pause) = backoff.next() else { return Err(last) };
        if deadline.is_some_and(|d| Instant::now() + pause >= d) {
            return Err(last);
        }
        tracing::info!(digest = %source.digest, received = transfer.received, error = %last, "the upstream broke off a blob download; asking for the rest");
        tokio::time::sleep(pause).await;
        let wait = deadline.map_or(IDLE_TIMEOUT, |d| d.saturating_duration_since(Instant::now()).min(IDLE_TIMEOUT));
        let resp = match tokio::time::timeout(wait, upstream.get_blob_from(&source.digest, transfer.received)).await {
            Ok(Ok(resp)) => resp,
            Ok(Err(e))
                if matches!(e, UpstreamError::Unreachable(_) | UpstreamError::Timeout(_) | UpstreamError::TooManyRequests(..))
                    || matches!(e, UpstreamError::Status { status, .. } if status >= 500) =>
            {
                last = FetchError::Upstream(e);
                continue;
            }
            // Gone, or the credentials refused: asking again will not help.
            Ok(Err(e)) => return Err(FetchError::Upstream(e)),
            Err(_) => {
                last = FetchError::Upstream(UpstreamError::Timeout(url.clone()));
                continue;
            }
        };
        return match resp.status().as_u16() {
            206 if content_range_start(&resp) == Some(transfer.received) && range_total_fits(&resp, transfer.size) => Ok(resp),
            200 => {
                if transfer.size.is_some_and(|s| resp.content_length().is_some_and(|c| c != s)) {
                    return Err(FetchError::Integrity(format!("{url} sent a different length for {} when asked again", source.digest)));
                }
                tracing::warn!(digest = %source.digest, "the upstream ignored the range asked for and sent the whole blob again: the download restarts from 0");
                transfer.restart().await?;
                Ok(resp)
            }
            status => {
                tracing::warn!(digest = %source.digest, status, "the upstream answered a range request with something else than the range asked for");
                Err(last)
            }
        };
    }
}

/// The first byte of a 206's `Content-Range: bytes START-END/TOTAL`.
fn content_range_start(resp: &reqwest::Response) -> Option<u64> {
    let value = resp.headers().get(reqwest::header::CONTENT_RANGE)?.to_str().ok()?;
    value.strip_prefix("bytes ")?.split('-').next()?.trim().parse().ok()
}

/// A 206's total, when it gives one, is the size the download expects.
fn range_total_fits(resp: &reqwest::Response, size: Option<u64>) -> bool {
    let total = resp.headers().get(reqwest::header::CONTENT_RANGE).and_then(|v| v.to_str().ok()).and_then(|v| v.rsplit('/').next()).and_then(|t| t.trim().parse::<u64>().ok());
    match (total, size) {
        (Some(t), Some(s)) => t == s,
        _ => true,
    }
}

/// Receives the owner replica's relay of a blob into the temp file (no resume: a relay that
/// breaks off fails, and its readers ask again).
#[allow(clippy::too_many_arguments)]
pub(super) async fn relay(
    resp: reqwest::Response,
    from: &str,
    total_timeout: Option<Duration>,
    source: &BlobSource,
    progress: Arc<watch::Sender<Progress>>,
    live: broadcast::Sender<Chunk>,
    spool: Spool,
    counted: &prometheus::IntCounter,
) -> Result<(String, u64), FetchError> {
    let mut transfer = Transfer::start(source, progress, live, spool);
    if let Err(e) = transfer.begin(&resp, from) {
        transfer.abandon().await;
        return Err(e);
    }
    let deadline = total_timeout.map(|t| Instant::now() + t);
    match transfer.take(resp, from, deadline, counted).await {
        Ok(()) => transfer.finish().await,
        Err(Broken::Cut(e) | Broken::Fatal(e)) => {
            transfer.abandon().await;
            Err(e)
        }
    }
}
