//! The on-demand blob fetcher: one detached download per digest, however many clients ask.
//!
//! The download writes a temp file while hashing. Every reader opens that growing file and
//! streams from its own offset, waiting for more bytes; the last byte of the blob is held back
//! until the digest and size are verified, so no client ever receives a complete body with a
//! wrong digest. When verified: moved into the store and recorded (on_demand/immediate) or
//! dropped (streamed). On any failure: nothing recorded, the temp file removed, every reader's
//! stream ends in an error (the connection is cut before its final bytes).
//!
//! Across replicas, a lease row per digest names the one replica that fetches the blob from its
//! remote; the others relay that download from the owner's internal endpoint (`peer.rs`) into a
//! download of their own, which their local readers join like any other.

mod lease;
use lease::{lease_period, Leased};
pub mod peer;
pub mod prefetch;
mod reader;
mod receive;
mod retry;
mod spool;
pub use reader::Reader;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{broadcast, watch};

use crate::app::AppState;
use crate::db::DbError;
use crate::models::artifact::{self, Artifact};
use crate::models::claim::WriteClaim;
use crate::models::content::{self, BlobSource};
use crate::models::remote::Remote;
use crate::observe::metrics::DownloadFailure;
use crate::storage::ScratchFile;
use crate::upstream::UpstreamError;

/// With no `total_timeout` on the remote, a download that sends nothing for this long fails.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Pause before asking again who downloads a blob, after its lease holder had nothing to share.
const RETRY_PAUSE: Duration = Duration::from_millis(250);

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
    /// The replica holding the blob's lease has no download of it to share: it just finished
    /// (`stored`: the artifact is recorded), failed, or the replica is gone.
    #[error("the replica at {address} holds the download of the blob but shares nothing: {reason}")]
    OwnerGone { address: String, stored: bool, reason: String },
    /// The owner's download failed before its first byte; `status` is what its clients get.
    #[error("{message}")]
    Owner { status: u16, message: String },
    #[error("{0}")]
    Unavailable(String),
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
    /// Bytes in the temp file.
    written: u64,
    phase: Phase,
    /// Bumped when the upstream sends the blob again from byte 0 (`receive.rs`).
    epoch: u32,
}

struct Download {
    /// Removed when the last holder lets go: after the verified file is linked into the store
    /// and recorded, or after a failure.
    file: ScratchFile,
    progress: watch::Receiver<Progress>,
    /// The chunks in flight, for the readers that are caught up.
    live: broadcast::Sender<receive::Chunk>,
    /// Relayed from the replica that owns the download (never shared on with other replicas).
    relayed: bool,
}

/// Where a download's bytes come from.
enum Origin {
    /// The remote: this replica holds the lease.
    Remote,
    /// The lease holder's internal address.
    Owner(String),
}

pub struct BlobFetcher {
    inflight: Mutex<HashMap<String, Arc<Download>>>,
    /// This process's id as a lease owner.
    replica: String,
    /// Where other replicas reach this one; set once the listener is bound.
    advertise_url: OnceLock<String>,
    /// The secret replicas present to each other's internal endpoint (shared through the database).
    peer_secret: tokio::sync::OnceCell<String>,
    /// The client for relays from other replicas: plain HTTP, or HTTPS trusting the
    /// replicas' own certificate once `trust_peers` has been called.
    peers: OnceLock<reqwest::Client>,
    /// Downloads run here, not on the HTTP worker that started them: the HTTP workers stop at
    /// shutdown before a download may have recorded its blob. Set by `app::start`.
    runtime: OnceLock<tokio::runtime::Handle>,
    /// Set at the shutdown deadline: downloads still running end as failed.
    cut: watch::Sender<bool>,
    /// Digests with a background retry running in this process (`retry.rs`).
    retrying: Mutex<HashSet<String>>,
    /// Manifests prefetched or being prefetched, and a semaphore per remote (`prefetch.rs`).
    prefetches: prefetch::Prefetches,
}

/// Replicas talk directly, never through a proxy from the environment.
fn peer_client(builder: reqwest::ClientBuilder) -> reqwest::Client {
    builder.no_proxy().connect_timeout(Duration::from_secs(3)).build().expect("the replicas' client builds")
}

impl Default for BlobFetcher {
    fn default() -> Self {
        BlobFetcher {
            inflight: Mutex::default(),
            replica: crate::models::new_id(),
            advertise_url: OnceLock::new(),
            peer_secret: tokio::sync::OnceCell::new(),
            peers: OnceLock::new(),
            runtime: OnceLock::new(),
            cut: watch::Sender::new(false),
            retrying: Mutex::default(),
            prefetches: prefetch::Prefetches::default(),
        }
    }
}

impl Download {
    /// The reader's own handle on the file, and its subscription to the chunks in flight, taken
    /// now (under the fetcher's lock): the first chunks may come before the reader is ready.
    fn open_for_reading(self: &Arc<Self>) -> Result<Joined, FetchError> {
        let file = std::fs::File::open(self.file.path()).map_err(|e| FetchError::Io(e.to_string()))?;
        Ok((self.clone(), file, self.live.subscribe()))
    }
}

/// A download joined: the reader's own handle on its file and its subscription to the chunks.
type Joined = (Arc<Download>, std::fs::File, broadcast::Receiver<receive::Chunk>);

/// Waits until the download's source has answered: a reader from offset 0, or the error.
async fn ready((download, file, live): Joined) -> Result<Reader, FetchError> {
    let mut progress = download.progress.clone();
    loop {
        let p = progress.borrow_and_update().clone();
        match p.phase {
            Phase::Starting => {}
            Phase::Failed(e) => return Err(e),
            Phase::Streaming | Phase::Verified => {
                let file = tokio::fs::File::from_std(file);
                return Ok(Reader { file, progress, live: download.live.downgrade(), subscribed: Some(live), size: p.size, served: None });
            }
        }
        if progress.changed().await.is_err() && matches!(progress.borrow().phase, Phase::Starting) {
            return Err(FetchError::Io("download ended without a result".into()));
        }
    }
}

/// What a blob request gets: the stored file (it was recorded while the request looked), or
/// a reader of the download in flight.
pub enum Opened {
    Stored(Artifact),
    Reading(Reader),
}

impl BlobFetcher {
    /// The in-flight map. A panic elsewhere while it was held leaves it consistent (every
    /// change is one insert or remove), so a poisoned lock is taken over, not propagated: one
    /// bad request must not stop every later fetch.
    fn inflight(&self) -> MutexGuard<'_, HashMap<String, Arc<Download>>> {
        self.inflight.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Joins the download of this blob, starting it if none is in flight, and waits until the
    /// upstream has answered (so the caller knows the size, or the error to report). With
    /// several replicas, only the holder of the blob's lease downloads it from the remote; the
    /// others relay the holder's download.
    pub async fn open(self: &Arc<Self>, state: &AppState, source: BlobSource) -> Result<Opened, FetchError> {
        self.open_with(state, source, true).await?.ok_or_else(|| FetchError::Unavailable("no replica could download the blob; try again".into()))
    }

    /// One request for the blob, read until the download is verified or fails, its bytes sent
    /// nowhere: how background retries and prefetches fetch. Without `relay`, a blob whose
    /// lease another replica holds is left to that replica (Ok), not copied here for nothing.
    async fn settle(self: &Arc<Self>, state: &AppState, source: BlobSource, relay: bool) -> Result<(), FetchError> {
        match self.open_with(state, source, relay).await? {
            None | Some(Opened::Stored(_)) => Ok(()),
            Some(Opened::Reading(mut reader)) => reader.verdict().await,
        }
    }

    /// As `open`, but None where another replica holds the blob's lease and `relay` is false.
    async fn open_with(self: &Arc<Self>, state: &AppState, source: BlobSource, relay: bool) -> Result<Option<Opened>, FetchError> {
        // A lease whose holder shares nothing is stale (its download just ended, or its replica
        // died and stopped renewing it): it is gone or lapsed within a lease period.
        let give_up = Instant::now() + lease_period(state) + Duration::from_secs(2);
        loop {
            // A request that joined counts once, when it reads, however often it retried.
            let (joined, in_flight) = match self.join(&source.digest)? {
                Some(joined) => (joined, true),
                None => {
                    // A download leaves the map only after its artifact is recorded, so a request
                    // that found neither an artifact (before) nor a download (now) may have looked
                    // in between: the database is looked at again before fetching a second time.
                    let origin = match self.lease_unless_stored(state, &source).await? {
                        Leased::Stored(a) => return Ok(Some(Opened::Stored(a))),
                        Leased::NoRemote => return Err(FetchError::NoRemote),
                        Leased::Origin(origin) => origin,
                    };
                    if !relay && matches!(origin, Origin::Owner(_)) {
                        return Ok(None);
                    }
                    self.join_or_start(state, &source, origin)?
                }
            };
            match ready(joined).await {
                Ok(reader) => {
                    if in_flight {
                        state.metrics.readers_joined.inc();
                    }
                    return Ok(Some(Opened::Reading(reader.served_to_clients(&state.metrics.served_bytes))));
                }
                Err(FetchError::OwnerGone { stored: true, .. }) if Instant::now() < give_up => {}
                Err(FetchError::OwnerGone { .. }) if Instant::now() < give_up => tokio::time::sleep(RETRY_PAUSE).await,
                Err(e @ FetchError::OwnerGone { .. }) => {
                    // Replicas' addresses are for the log, not for clients.
                    tracing::warn!(digest = %source.digest, error = %e, "no replica could download the blob");
                    return Err(FetchError::Unavailable("no replica could download the blob; try again".into()));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Where downloads run from now on (the runtime that outlives the HTTP workers).
    pub fn set_runtime(&self, runtime: tokio::runtime::Handle) {
        let _ = self.runtime.set(runtime);
    }

    /// Relays from other replicas go over HTTPS with `tls` (see `tls::load`).
    pub fn trust_peers(&self, tls: rustls::ClientConfig) {
        let _ = self.peers.set(peer_client(reqwest::Client::builder().use_preconfigured_tls(tls)));
    }

    fn peers(&self) -> &reqwest::Client {
        self.peers.get_or_init(|| peer_client(reqwest::Client::builder()))
    }

    fn spawn<F: std::future::Future<Output = ()> + Send + 'static>(&self, work: F) {
        match self.runtime.get() {
            Some(runtime) => drop(runtime.spawn(work)),
            None => drop(tokio::spawn(work)),
        }
    }

    /// Downloads in flight in this process.
    pub fn downloads_in_flight(&self) -> usize {
        self.inflight().len()
    }

    /// At shutdown: lets the downloads in flight finish until `deadline`, then cuts those left
    /// (their readers' streams end with an error before the blob's last byte, and each releases
    /// its lease as a failed download does). Verified downloads being recorded then are not
    /// cut: they get until TIDY_UP past the deadline. Returns how many were cut.
    pub async fn stop(&self, deadline: Instant) -> usize {
        while self.downloads_in_flight() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let cut = self.inflight().values().filter(|d| !matches!(d.progress.borrow().phase, Phase::Verified)).count();
        if self.downloads_in_flight() > 0 {
            self.cut.send_replace(true);
            let give_up = deadline.max(Instant::now()) + crate::shutdown::TIDY_UP;
            while self.downloads_in_flight() > 0 && Instant::now() < give_up {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        let unfinished = self.recordings().len();
        if unfinished > 0 {
            tracing::warn!(
                recordings = unfinished,
                "verified downloads were still being recorded when shutdown gave up on them: they are fetched again at the next request, and their leases lapse by themselves"
            );
        }
        cut
    }

    /// Blobs this replica has downloaded and verified and is recording (storing, writing rows).
    fn recordings(&self) -> Vec<String> {
        self.inflight()
            .iter()
            .filter(|(_, d)| !d.relayed && matches!(d.progress.borrow().phase, Phase::Verified))
            .map(|(digest, _)| digest.clone())
            .collect()
    }

    /// For another replica: a reader of this replica's download of `digest` from its remote,
    /// once the remote has answered. None when no such download is in flight.
    pub async fn share(&self, digest: &str) -> Option<Result<Reader, FetchError>> {
        let joined = self.inflight().get(digest).filter(|d| !d.relayed).map(Download::open_for_reading)?;
        Some(match joined {
            Ok(joined) => ready(joined).await,
            Err(e) => Err(e),
        })
    }

    /// The download in flight for `digest`, opened for reading.
    fn join(&self, digest: &str) -> Result<Option<Joined>, FetchError> {
        // Readers open the file under the lock; the download leaves the map (under the lock)
        // before its file is removed, so a reader never finds a path that is gone.
        self.inflight().get(digest).map(Download::open_for_reading).transpose()
    }

    /// The download joined or started, and whether it was already in flight (joined).
    fn join_or_start(self: &Arc<Self>, state: &AppState, source: &BlobSource, origin: Origin) -> Result<(Joined, bool), FetchError> {
        let io = |e: std::io::Error| FetchError::Io(e.to_string());
        let mut inflight = self.inflight();
        if let Some(d) = inflight.get(&source.digest) {
            if d.relayed && matches!(origin, Origin::Remote) {
                // The lease came free while a relay started here: the relay serves, so the
                // lease (taken for nothing) goes back at once rather than lapsing.
                let (fetcher, state, digest) = (self.clone(), state.clone(), source.digest.clone());
                self.spawn(async move { fetcher.release_lease(&state, &digest).await });
            }
            return Ok((d.open_for_reading()?, true));
        }
        let (remote, _, expected_size) = source.remote.clone().ok_or(FetchError::NoRemote)?;
        let scratch = state.storage.scratch_file();
        let writer = spool::Spool::new(scratch.path(), scratch.create().map_err(io)?);
        let declared = expected_size.and_then(|s| u64::try_from(s).ok());
        let (tx, rx) = watch::channel(Progress { size: declared, written: 0, phase: Phase::Starting, epoch: 0 });
        let tx = Arc::new(tx);
        let relayed = matches!(origin, Origin::Owner(_));
        let (live, _) = broadcast::channel(receive::LIVE_CHUNKS);
        let download = Arc::new(Download { file: scratch, progress: rx, live, relayed });
        let joined = download.open_for_reading()?;
        inflight.insert(source.digest.clone(), download.clone());
        drop(inflight);
        if relayed {
            state.metrics.relays_started.inc();
        } else {
            state.metrics.downloads_started.inc();
            state.metrics.downloads_in_flight.inc();
        }

        // Detached: a client hanging up must not cancel the download.
        let (fetcher, state, source) = (self.clone(), state.clone(), source.clone());
        self.spawn(fetcher.run(state, source, remote, origin, tx, writer, download.clone()));
        Ok((joined, false))
    }

    /// One download from start to end. Owned (from the remote): heartbeat the lease, and
    /// release it once the artifact is recorded (or the download failed), before the download
    /// leaves the map. Relayed: the owner records; this replica keeps nothing.
    #[allow(clippy::too_many_arguments)]
    async fn run(
        self: Arc<Self>,
        state: AppState,
        source: BlobSource,
        remote: Remote,
        origin: Origin,
        tx: Arc<watch::Sender<Progress>>,
        writer: spool::Spool,
        d: Arc<Download>,
    ) {
        let digest = source.digest.clone();
        let owned = matches!(origin, Origin::Remote);
        let heartbeat = owned.then(|| self.heartbeat(&state, &digest));
        let mut cut = self.cut.subscribe();
        let fetching = async {
            match &origin {
                Origin::Remote => receive::fetch(&state, &remote, &source, tx.clone(), d.live.clone(), writer).await,
                Origin::Owner(address) => self.relay(&state, &remote, &source, address, tx.clone(), d.live.clone(), writer).await,
            }
        };
        let result = tokio::select! {
            result = fetching => result,
            _ = async { let _ = cut.wait_for(|cut| *cut).await; } => Err(FetchError::Unavailable("the server shut down before the download finished".into())),
        };
        if let Ok((sha256_hex, size)) = &result {
            // The bytes are right: readers may finish now, while the file is made durable
            // and recorded; it leaves the map only once recorded.
            tx.send_modify(|p| p.phase = Phase::Verified);
            if owned && remote.policy != "streamed" {
                if let Err(e) = finish(&state, &source, d.file.path(), sha256_hex, *size).await {
                    tracing::warn!(digest = %digest, error = %e, "recording a verified download failed");
                }
            }
        }
        if let Some(heartbeat) = heartbeat {
            heartbeat.stop().await;
            self.release_lease(&state, &digest).await;
        }
        let idle = {
            let mut inflight = self.inflight();
            inflight.remove(&digest);
            inflight.is_empty()
        };
        if owned {
            state.metrics.downloads_in_flight.dec();
        }
        if let Err(e) = result {
            if owned {
                state.metrics.download_failed(failure_cause(&e));
                self.retry_in_background(&state, &source, &remote, &e);
            }
            if !matches!(e, FetchError::OwnerGone { .. }) {
                tracing::warn!(digest = %digest, error = %e, relayed = d.relayed, "on-demand download failed");
            }
            tx.send_modify(|p| p.phase = Phase::Failed(e));
        }
        // No one can join any more: the scratch file is unlinked with the last `Download`
        // handle; readers that joined keep reading their open file.
        drop(d);
        if idle {
            crate::memory::release_freed_heap().await;
        }
    }

    /// Streams the owner's download of the blob into this replica's temp file, verifying it
    /// as a download from the remote is verified. The owner holds its last byte back until its
    /// own check passed, and cuts the response if it fails.
    #[allow(clippy::too_many_arguments)]
    async fn relay(
        &self,
        state: &AppState,
        remote: &Remote,
        source: &BlobSource,
        address: &str,
        tx: Arc<watch::Sender<Progress>>,
        live: broadcast::Sender<receive::Chunk>,
        file: spool::Spool,
    ) -> Result<(String, u64), FetchError> {
        let url = format!("{address}{}{}", peer::DOWNLOADS, source.digest);
        let gone = |reason: String, stored: bool| FetchError::OwnerGone { address: address.to_string(), stored, reason };
        let secret = self.peer_secret(state).await.map_err(|e| FetchError::Io(e.to_string()))?;
        let total_timeout = state.upstreams.get(remote)?.total_timeout();
        let resp = tokio::time::timeout(total_timeout.unwrap_or(IDLE_TIMEOUT), self.peers().get(&url).header(peer::SECRET_HEADER, secret).send())
            .await
            .map_err(|_| FetchError::Upstream(UpstreamError::Timeout(url.clone())))?
            .map_err(|e| gone(e.to_string(), false))?;
        let marker = resp.headers().get(peer::DOWNLOAD_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        match (resp.status().as_u16(), marker.as_str()) {
            (200, _) => {}
            (status, peer::FAILED) => return Err(FetchError::Owner { status, message: resp.text().await.unwrap_or_default() }),
            (_, peer::STORED) => return Err(gone("it is stored".into(), true)),
            (status, _) => return Err(gone(format!("HTTP {status}"), false)),
        }
        receive::relay(resp, &url, total_timeout, source, tx, live, file, &state.metrics.peer_bytes).await
    }
}

/// The `cause` label of a failed download from a remote.
fn failure_cause(e: &FetchError) -> DownloadFailure {
    match e {
        FetchError::Upstream(UpstreamError::Timeout(_)) => DownloadFailure::Timeout,
        FetchError::Upstream(UpstreamError::Unreachable(_) | UpstreamError::Tls(_)) => DownloadFailure::Unreachable,
        FetchError::Upstream(UpstreamError::DigestMismatch { .. }) | FetchError::Integrity(_) => DownloadFailure::Integrity,
        FetchError::Upstream(_) => DownloadFailure::Status,
        // A running download is made unavailable only by the shutdown cutting it.
        FetchError::Unavailable(_) => DownloadFailure::Shutdown,
        // Only relays meet the other replicas' failures; a download from the remote fails here.
        FetchError::Io(_) | FetchError::NoRemote | FetchError::OwnerGone { .. } | FetchError::Owner { .. } => DownloadFailure::Storage,
    }
}

/// Verified bytes: made durable, linked into the store and recorded (on_demand, immediate).
async fn finish(state: &AppState, source: &BlobSource, temp: &std::path::Path, sha256_hex: &str, size: u64) -> Result<(), FetchError> {
    let path = temp.to_path_buf();
    tokio::task::spawn_blocking(move || std::fs::File::open(path)?.sync_data())
        .await
        .map_err(|_| FetchError::Io("sync task failed".into()))?
        .map_err(|e| FetchError::Io(e.to_string()))?;
    // Held until the row is recorded: orphan cleanup must not delete an object kept here.
    let claim = WriteClaim::take(&state.db, sha256_hex).await.map_err(|e| FetchError::Io(format!("claiming the artifact failed: {e}")))?;
    let key = state.storage.commit(temp, sha256_hex, size).await.map_err(|e| FetchError::Io(e.to_string()))?;
    let (hex, blob_id, digest) = (sha256_hex.to_string(), source.blob_id.clone(), source.digest.clone());
    let recorded = state
        .db
        .run(move |c| {
            crate::db::write_transaction(c, |c| {
                let a = artifact::ensure(c, &hex, size as i64, &key)?;
                content::ensure_blob_file(c, &blob_id, &digest, Some(&a.id), None)?;
                Ok::<_, DbError>(())
            })
        })
        .await
        .map_err(|e| FetchError::Io(format!("recording the artifact failed: {e}")));
    claim.release().await;
    recorded
}
