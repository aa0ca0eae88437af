//! The download lease that makes one replica of several fetch a blob from its remote: taken
//! before a download starts, renewed by a heartbeat while it runs, released when it ends. The
//! others find the holder's address in the lease and relay its download (`peer.rs`).

use std::sync::Arc;
use std::time::Duration;

use super::{peer, BlobFetcher, FetchError, Origin};
use crate::app::AppState;
use crate::db::DbError;
use crate::models::artifact::Artifact;
use crate::models::content::{self, BlobSource};
use crate::models::lease;

/// What `lease_unless_stored` found.
pub(super) enum Leased {
    Stored(Artifact),
    NoRemote,
    Origin(Origin),
}

impl BlobFetcher {
    /// Where a blob that is neither stored nor in flight here comes from, in one trip to the
    /// database (the first byte of a cold GET waits on it): the artifact if it was recorded
    /// meanwhile; else the blob's lease taken (or renewed) or its holder. With the lease taken,
    /// the artifact is looked for again: the replica that held it before may have recorded the
    /// blob between the first look and its release (the lease then goes back at once).
    pub(super) async fn lease_unless_stored(&self, state: &AppState, source: &BlobSource) -> Result<Leased, FetchError> {
        let (blob_id, digest, owner, address) = (source.blob_id.clone(), source.digest.clone(), self.replica.clone(), self.advertise_url(state));
        let has_remote = source.remote.is_some();
        let period = lease_chrono_period(state);
        state
            .db
            .run(move |c| {
                if let Some(a) = content::blob_artifact(c, &blob_id)? {
                    return Ok(Leased::Stored(a));
                }
                if !has_remote {
                    return Ok(Leased::NoRemote);
                }
                let now = crate::models::database_now(c)?;
                let holder = lease::acquire(c, &digest, &owner, &address, now, now + period)?;
                if holder.owner != owner {
                    return Ok(Leased::Origin(Origin::Owner(holder.address)));
                }
                if let Some(a) = content::blob_artifact(c, &blob_id)? {
                    if let Err(e) = lease::release(c, &digest, &owner) {
                        // It lapses by itself after a lease period; the blob is served anyway.
                        tracing::warn!(digest = %digest, error = %e, "releasing a download lease failed");
                    }
                    return Ok(Leased::Stored(a));
                }
                Ok::<_, DbError>(Leased::Origin(Origin::Remote))
            })
            .await
            .map_err(|e| FetchError::Io(format!("looking up the blob and its download lease failed: {e}")))
    }

    async fn hold_lease(&self, state: &AppState, digest: &str) -> Result<lease::Lease, FetchError> {
        let (digest, owner, address) = (digest.to_string(), self.replica.clone(), self.advertise_url(state));
        let period = lease_chrono_period(state);
        state
            .db
            .run(move |c| {
                // The database's clock, not this replica's: replicas' clocks may disagree.
                let now = crate::models::database_now(c)?;
                lease::acquire(c, &digest, &owner, &address, now, now + period).map_err(DbError::from)
            })
            .await
            .map_err(|e| FetchError::Io(format!("taking the download lease failed: {e}")))
    }

    pub(super) async fn release_lease(&self, state: &AppState, digest: &str) {
        let (d, owner) = (digest.to_string(), self.replica.clone());
        if let Err(e) = state.db.run(move |c| lease::release(c, &d, &owner).map_err(DbError::from)).await {
            // It lapses by itself after a lease period.
            tracing::warn!(digest = %digest, error = %e, "releasing a download lease failed");
        }
    }

    /// At shutdown, after the downloads stopped: gives up every lease this replica still holds
    /// (a download that could not unwind in time), so another replica takes the blob at once
    /// instead of after the lease lapses. Not those of blobs still being recorded: another
    /// replica would fetch them again while this one may still store them.
    pub async fn release_leases(&self, state: &AppState) {
        let (owner, recording) = (self.replica.clone(), self.recordings());
        match state.db.run(move |c| lease::release_owned_except(c, &owner, &recording).map_err(DbError::from)).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(leases = n, "released download leases at shutdown"),
            Err(e) => tracing::warn!(error = %e, "releasing this replica's download leases failed; they lapse by themselves"),
        }
    }

    /// Renews the lease every third of its period until stopped.
    pub(super) fn heartbeat(self: &Arc<Self>, state: &AppState, digest: &str) -> Heartbeat {
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let (fetcher, state, digest) = (self.clone(), state.clone(), digest.to_string());
        let task = tokio::spawn(async move {
            let every = lease_period(&state) / 3;
            loop {
                tokio::select! {
                    _ = &mut stopped => return,
                    _ = tokio::time::sleep(every) => {}
                }
                match fetcher.hold_lease(&state, &digest).await {
                    Ok(holder) if holder.owner == fetcher.replica => {}
                    Ok(holder) => tracing::warn!(digest = %digest, owner = %holder.address, "another replica took over the download lease"),
                    Err(e) => tracing::warn!(digest = %digest, error = %e, "renewing a download lease failed"),
                }
            }
        });
        Heartbeat { stop, task }
    }

    /// This replica as other replicas reach it.
    pub fn advertise_url(&self, state: &AppState) -> String {
        self.advertise_url.get().cloned().unwrap_or_else(|| format!("http://{}", state.config.bind))
    }

    /// Set once the listener is bound: the configured URL, or `http://` + the bound address.
    pub fn set_advertise_url(&self, url: String) {
        let _ = self.advertise_url.set(url.trim_end_matches('/').to_string());
    }

    /// The secret of the internal endpoint, created by whichever replica asks first.
    pub async fn peer_secret(&self, state: &AppState) -> Result<&str, DbError> {
        let secret = self
            .peer_secret
            .get_or_try_init(|| async {
                state.db.run(|c| crate::models::upload::setting_or_init(c, "peer_secret", peer::new_secret).map_err(DbError::from)).await
            })
            .await?;
        Ok(secret)
    }
}

/// How long a lease lives without a heartbeat.
pub(super) fn lease_period(state: &AppState) -> Duration {
    Duration::from_secs(state.config.cluster.lease_seconds.max(1))
}

fn lease_chrono_period(state: &AppState) -> chrono::Duration {
    chrono::Duration::from_std(lease_period(state)).unwrap_or(chrono::Duration::seconds(10))
}

pub(super) struct Heartbeat {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Heartbeat {
    /// Returns once no renewal can happen any more, so a release after it is final.
    pub(super) async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

