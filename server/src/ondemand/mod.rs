//! The on-demand blob fetcher: one detached download per digest, however many clients ask.
//!
//! The download writes a temp file while hashing. Every reader opens that growing file and
//! streams from its own offset, waiting for more bytes; the last byte of the blob is held back
//! until the digest and size are verified, so no client ever receives a complete body with a
//! wrong digest. When verified: moved into the store and recorded (on_demand/immediate) or
//! dropped (streamed). On any failure: nothing recorded, the temp file removed, every reader's
//! stream ends in an error (the connection is cut before its final bytes).

use std::collections::HashMap;
use std::io::SeekFrom;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use sha2::{Digest, Sha256, Sha512};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::watch;

use crate::app::AppState;
use crate::db::DbError;
use crate::models::content::{self, BlobSource};
use crate::models::artifact::{self, Artifact};
use crate::storage::ScratchFile;
use crate::upstream::UpstreamError;

/// With no `total_timeout` on the remote, a download that sends nothing for this long fails.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
const READ_CHUNK: usize = 256 * 1024;

#[derive(Debug, Clone, thiserror::Error)]
pub enum FetchError {
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error("{0}")]
    Integrity(String),
    #[error("storage error: {0}")]
    Io(String),
    #[error("the blob has no remote to fetch it from")]
    NoRemote,
}

#[derive(Debug, Clone)]
enum Phase {
    /// Waiting for the upstream's response headers.
    Starting,
    Streaming,
    Verified,
    Failed(FetchError),
}

#[derive(Debug, Clone)]
struct Progress {
    size: Option<u64>,
    written: u64,
    phase: Phase,
}

struct Download {
    /// Removed when the last holder lets go: after the verified file is linked into the store
    /// and recorded, or after a failure.
    file: ScratchFile,
    progress: watch::Receiver<Progress>,
}

#[derive(Default)]
pub struct BlobFetcher {
    inflight: Mutex<HashMap<String, Arc<Download>>>,
    /// Downloads started (for tests and metrics).
    started: std::sync::atomic::AtomicUsize,
}

impl Download {
    fn open_for_reading(self: &Arc<Self>) -> Result<(Arc<Download>, std::fs::File), FetchError> {
        Ok((self.clone(), std::fs::File::open(self.file.path()).map_err(|e| FetchError::Io(e.to_string()))?))
    }
}

/// What a blob request gets: the stored file (it was recorded while the request looked), or
/// a reader of the download in flight.
pub enum Opened {
    Stored(Artifact),
    Reading(Reader),
}

/// One client's view of a download.
pub struct Reader {
    file: tokio::fs::File,
    progress: watch::Receiver<Progress>,
    pub size: Option<u64>,
}

impl BlobFetcher {
    pub fn downloads_started(&self) -> usize {
        self.started.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The in-flight map. A panic elsewhere while it was held leaves it consistent (every
    /// change is one insert or remove), so a poisoned lock is taken over, not propagated: one
    /// bad request must not stop every later fetch.
    fn inflight(&self) -> MutexGuard<'_, HashMap<String, Arc<Download>>> {
        self.inflight.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Joins the download of this blob, starting it if none is in flight, and waits until the
    /// upstream has answered (so the caller knows the size, or the error to report).
    pub async fn open(self: &Arc<Self>, state: &AppState, source: BlobSource) -> Result<Opened, FetchError> {
        let joined = match self.join(&source.digest)? {
            Some(joined) => joined,
            None => {
                // A download leaves the map only after its artifact is recorded, so a request
                // that found neither an artifact (before) nor a download (now) may have looked
                // in between: look at the database again before fetching a second time.
                let blob_id = source.blob_id.clone();
                let stored = state
                    .db
                    .run(move |c| content::blob_artifact(c, &blob_id).map_err(DbError::from))
                    .await
                    .map_err(|e| FetchError::Io(e.to_string()))?;
                if let Some(a) = stored {
                    return Ok(Opened::Stored(a));
                }
                self.join_or_start(state, source)?
            }
        };
        let (download, file) = joined;
        let mut progress = download.progress.clone();
        loop {
            let p = progress.borrow_and_update().clone();
            match p.phase {
                Phase::Starting => {}
                Phase::Failed(e) => return Err(e),
                Phase::Streaming | Phase::Verified => {
                    return Ok(Opened::Reading(Reader { file: tokio::fs::File::from_std(file), progress, size: p.size }));
                }
            }
            if progress.changed().await.is_err() && matches!(progress.borrow().phase, Phase::Starting) {
                return Err(FetchError::Io("download ended without a result".into()));
            }
        }
    }

    /// The download in flight for `digest`, opened for reading.
    fn join(&self, digest: &str) -> Result<Option<(Arc<Download>, std::fs::File)>, FetchError> {
        // Readers open the file under the lock; the download leaves the map (under the lock)
        // before its file is removed, so a reader never finds a path that is gone.
        self.inflight().get(digest).map(Download::open_for_reading).transpose()
    }

    fn join_or_start(self: &Arc<Self>, state: &AppState, source: BlobSource) -> Result<(Arc<Download>, std::fs::File), FetchError> {
        let io = |e: std::io::Error| FetchError::Io(e.to_string());
        let mut inflight = self.inflight();
        if let Some(d) = inflight.get(&source.digest) {
            return d.open_for_reading();
        }
        let (remote, _, expected_size) = source.remote.clone().ok_or(FetchError::NoRemote)?;
        let scratch = state.storage.scratch_file();
        let writer = std::fs::File::options().write(true).create_new(true).open(scratch.path()).map_err(io)?;
        let reader = std::fs::File::open(scratch.path()).map_err(io)?;
        let declared = expected_size.and_then(|s| u64::try_from(s).ok());
        let (tx, rx) = watch::channel(Progress { size: declared, written: 0, phase: Phase::Starting });
        let tx = Arc::new(tx);
        let download = Arc::new(Download { file: scratch, progress: rx });
        inflight.insert(source.digest.clone(), download.clone());
        drop(inflight);
        self.started.fetch_add(1, std::sync::atomic::Ordering::Relaxed);

        // Detached: a client hanging up must not cancel the download.
        let (fetcher, state, d) = (self.clone(), state.clone(), download.clone());
        let store = remote.policy != "streamed";
        tokio::spawn(async move {
            let digest = source.digest.clone();
            let result = fetch(&state, &remote, &source, tx.clone(), writer).await;
            match result {
                Ok((sha256_hex, size)) => {
                    // The bytes are right: readers may finish now, while the file is made durable
                    // and recorded; it leaves the map only once recorded.
                    tx.send_modify(|p| p.phase = Phase::Verified);
                    if store {
                        if let Err(e) = finish(&state, &source, d.file.path(), &sha256_hex, size).await {
                            tracing::warn!(digest = %digest, error = %e, "recording a verified download failed");
                        }
                    }
                    fetcher.inflight().remove(&digest);
                }
                Err(e) => {
                    tracing::warn!(digest = %digest, error = %e, "on-demand download failed");
                    fetcher.inflight().remove(&digest);
                    tx.send_modify(|p| p.phase = Phase::Failed(e));
                }
            }
            // No one can join any more: the scratch file is unlinked with the last `Download`
            // handle; readers that joined keep reading their open file.
            drop(d);
        });
        Ok((download, reader))
    }
}

/// Downloads into the temp file, publishing progress; returns the sha256 hex once the size and
/// the digest are right. Receiving runs here; writing and hashing run on two blocking threads
/// fed by small queues, so the three overlap, and readers see each chunk as soon as it is
/// written (before it is hashed).
async fn fetch(
    state: &AppState,
    remote: &crate::models::remote::Remote,
    source: &BlobSource,
    tx: Arc<watch::Sender<Progress>>,
    file: std::fs::File,
) -> Result<(String, u64), FetchError> {
    let upstream = state.upstreams.get(remote)?;
    // The response headers must come within the remote's timeout too (504 for the client).
    let wait = upstream.total_timeout().unwrap_or(IDLE_TIMEOUT);
    let resp = tokio::time::timeout(wait, upstream.get_blob(&source.digest))
        .await
        .map_err(|_| FetchError::Upstream(UpstreamError::Timeout(upstream.blob_url(&source.digest))))??;
    let expected = tx.borrow().size;
    let size = match (expected, resp.content_length()) {
        (Some(e), Some(c)) if e != c => {
            return Err(FetchError::Integrity(format!(
                "the upstream {} sent {} bytes for {}, expected {e}",
                upstream.describe(),
                c,
                source.digest
            )))
        }
        (e, c) => e.or(c),
    };
    tx.send_modify(|p| {
        p.size = size;
        p.phase = Phase::Streaming;
    });

    // Two small bounded queues (a few MiB in flight at most): one to the writer, which
    // publishes progress as soon as bytes are on disk, one to the hasher, which runs alongside.
    let (to_writer, mut writer_rx) = tokio::sync::mpsc::channel::<Bytes>(8);
    let (to_hasher, mut hasher_rx) = tokio::sync::mpsc::channel::<Bytes>(8);
    let progress = tx.clone();
    let writer = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        use std::io::Write;
        let mut file = file;
        let mut written: u64 = 0;
        while let Some(chunk) = writer_rx.blocking_recv() {
            file.write_all(&chunk)?;
            written += chunk.len() as u64;
            progress.send_modify(|p| p.written = written);
        }
        Ok(())
    });
    let sha512 = source.digest.starts_with("sha512:");
    let hasher = tokio::task::spawn_blocking(move || -> (String, String) {
        let (mut h256, mut h512) = (Sha256::new(), sha512.then(Sha512::new));
        while let Some(chunk) = hasher_rx.blocking_recv() {
            h256.update(&chunk);
            if let Some(h) = h512.as_mut() {
                h.update(&chunk);
            }
        }
        let hex = format!("{:x}", h256.finalize());
        let actual = match h512 {
            Some(h) => format!("sha512:{:x}", h.finalize()),
            None => format!("sha256:{hex}"),
        };
        (hex, actual)
    });

    let deadline = upstream.total_timeout().map(|t| Instant::now() + t);
    let mut body = resp.bytes_stream();
    let mut received: u64 = 0;
    let receiving: Result<(), FetchError> = async {
        loop {
            let wait = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()).min(IDLE_TIMEOUT),
                None => IDLE_TIMEOUT,
            };
            let next = tokio::time::timeout(wait, body.next())
                .await
                .map_err(|_| FetchError::Upstream(UpstreamError::Timeout(upstream.blob_url(&source.digest))))?;
            let Some(chunk) = next else { return Ok(()) };
            let chunk = chunk.map_err(|e| {
                FetchError::Upstream(UpstreamError::Unreachable(format!("{}: the download broke off: {e}", upstream.blob_url(&source.digest))))
            })?;
            received += chunk.len() as u64;
            if size.is_some_and(|s| received > s) {
                return Err(FetchError::Integrity(format!("the upstream sent more bytes than the {} of {}", size.unwrap_or(0), source.digest)));
            }
            to_hasher.send(chunk.clone()).await.map_err(|_| FetchError::Io("the blob hasher stopped".into()))?;
            to_writer.send(chunk).await.map_err(|_| FetchError::Io("the blob writer stopped".into()))?;
        }
    }
    .await;
    drop((to_writer, to_hasher));
    let written = writer.await.map_err(|_| FetchError::Io("the blob writer failed".into()))?;
    let (sha256_hex, actual) = hasher.await.map_err(|_| FetchError::Io("the blob hasher failed".into()))?;
    receiving?;
    written.map_err(|e| FetchError::Io(e.to_string()))?;
    if let Some(s) = size {
        if s != received {
            return Err(FetchError::Integrity(format!("size mismatch for {}: expected {s} bytes, got {received}", source.digest)));
        }
    }
    if actual != source.digest {
        return Err(FetchError::Integrity(format!("digest mismatch for {}: the bytes hash to {actual}", source.digest)));
    }
    Ok((sha256_hex, received))
}

/// Verified bytes: made durable, linked into the store and recorded (on_demand, immediate).
async fn finish(state: &AppState, source: &BlobSource, temp: &std::path::Path, sha256_hex: &str, size: u64) -> Result<(), FetchError> {
    let path = temp.to_path_buf();
    tokio::task::spawn_blocking(move || std::fs::File::open(path)?.sync_data())
        .await
        .map_err(|_| FetchError::Io("sync task failed".into()))?
        .map_err(|e| FetchError::Io(e.to_string()))?;
    let key = state.storage.commit(temp, sha256_hex, size).await.map_err(|e| FetchError::Io(e.to_string()))?;
    let (hex, blob_id, digest) = (sha256_hex.to_string(), source.blob_id.clone(), source.digest.clone());
    state
        .db
        .run(move |c| {
            crate::db::write_transaction(c, |c| {
                let a = artifact::ensure(c, &hex, size as i64, &key)?;
                content::ensure_blob_file(c, &blob_id, &digest, Some(&a.id), None)?;
                Ok::<_, DbError>(())
            })
        })
        .await
        .map_err(|e| FetchError::Io(format!("recording the artifact failed: {e}")))
}

impl Reader {
    /// The bytes `[start, end)` as they arrive. The blob's final byte is sent only after the
    /// download is verified; a failed download ends the stream with an error.
    pub fn stream(self, start: u64, end: Option<u64>) -> impl Stream<Item = Result<Bytes, std::io::Error>> {
        futures_util::stream::unfold((self, start, false), move |(mut r, pos, mut seeked)| async move {
            if !seeked {
                if let Err(e) = r.file.seek(SeekFrom::Start(pos)).await {
                    return Some((Err(e), (r, u64::MAX, true)));
                }
                seeked = true;
            }
            loop {
                let p = r.progress.borrow_and_update().clone();
                let end = end.or(p.size);
                if end.is_some_and(|e| pos >= e) || pos == u64::MAX {
                    return None;
                }
                let sendable = match p.phase {
                    Phase::Failed(e) => return Some((Err(std::io::Error::other(e.to_string())), (r, u64::MAX, seeked))),
                    Phase::Verified => p.written,
                    // Hold back the last byte until the digest is checked.
                    _ => match p.size {
                        Some(s) => p.written.min(s.saturating_sub(1)),
                        None => p.written.saturating_sub(1),
                    },
                };
                let limit = end.map_or(sendable, |e| sendable.min(e));
                if pos < limit {
                    let want = ((limit - pos) as usize).min(READ_CHUNK);
                    let mut buf = vec![0u8; want];
                    return match r.file.read(&mut buf).await {
                        Ok(0) => Some((Err(std::io::Error::other("the download file is shorter than reported")), (r, u64::MAX, seeked))),
                        Ok(n) => {
                            buf.truncate(n);
                            Some((Ok(Bytes::from(buf)), (r, pos + n as u64, seeked)))
                        }
                        Err(e) => Some((Err(e), (r, u64::MAX, seeked))),
                    };
                }
                if matches!(p.phase, Phase::Verified) {
                    // Verified and nothing more to send: the whole range has been sent.
                    return None;
                }
                if r.progress.changed().await.is_err() && !matches!(r.progress.borrow().phase, Phase::Verified | Phase::Failed(_)) {
                    return Some((Err(std::io::Error::other("the download stopped")), (r, u64::MAX, seeked)));
                }
            }
        })
    }
}
