//! Prefetch on manifest: a client's GET of an image manifest starts fetching the image's config
//! and layers that are not stored, in the background, so the blob GETs that follow join
//! downloads already under way (a cold pull no longer waits for the upstream blob by blob).
//!
//! Each blob is an ordinary request to the single-flight fetcher (`BlobFetcher::open`, read to
//! its verdict, as a background retry does): it joins a download in flight, respects another
//! replica's lease, and records the blob as any on-demand fetch does, so a client that never
//! asks for the blobs still costs at most one upstream GET each.
//!
//! Not for a HEAD (tag watchers HEAD manifests to see whether they changed) nor a manifest list
//! (only the platform a client then GETs is fetched). The request only looks at an in-process
//! memory; the database is read in the spawned task. At most the remote's
//! `download_concurrency` prefetch downloads run at once per remote in this process.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::sync::Semaphore;


use crate::app::AppState;
use crate::db::DbError;
use crate::models::content::{self, BlobSource, ServedManifest};
use crate::models::{distribution, remote};

/// A remote without `download_concurrency` prefetches this many blobs at once (as a sync
/// downloads, `sync::DEFAULT_CONCURRENCY`).
const DEFAULT_CONCURRENCY: usize = 10;
/// Manifests remembered per generation; two generations are kept (an approximate LRU).
const REMEMBERED: usize = 4096;
/// Blobs prefetched of one manifest at most.
const MOST_BLOBS: usize = 128;
/// Prefetches running at once per server; a manifest GET beyond them starts none.
const MOST_IN_FLIGHT: usize = 1024;
/// How long a manifest whose remote does not prefetch (or that failed) is left alone: a change of
/// the remote's `prefetch` is seen within this time.
const RECHECK_AFTER: Duration = Duration::from_secs(60);

/// After a manifest was served to a GET: starts the prefetch of its blobs unless this server
/// already did (or is doing) it. Cheap: one lock of an in-process map; nothing else on the
/// request's path.
pub fn after_manifest_get(state: &AppState, is_get: bool, base_path: &str, manifest: &ServedManifest) {
    if !is_get || is_list(&manifest.media_type) {
        return;
    }
    let key = format!("{base_path}@{}", manifest.digest);
    if state.readiness.shutting_down() || !state.fetcher.prefetches.begin(&key) {
        return;
    }
    let (state, base_path, data) = (state.clone(), base_path.to_string(), manifest.data.clone());
    // On the downloads' runtime, not the HTTP worker's (whose blocking threads serve clients).
    state.fetcher.clone().spawn(async move {
        let outcome = prefetch(&state, base_path, data).await;
        state.fetcher.prefetches.end(key, outcome);
    });
}

fn is_list(media_type: &str) -> bool {
    media_type.contains("manifest.list") || media_type.contains("image.index")
}

/// How a prefetch ended, for what the memory keeps.
pub(super) enum Outcome {
    /// Every blob is stored (or was never to be fetched): nothing to do for this manifest again.
    Done,
    /// The remote does not prefetch, or a fetch failed: look again later.
    Later,
}

async fn prefetch(state: &AppState, base_path: String, data: Vec<u8>) -> Outcome {
    let Some(digests) = blob_digests(&data) else { return Outcome::Done };
    drop(data);
    // A few lookups at once per server: a burst of new manifests must not take the database
    // pool and the blocking threads from the clients' own requests.
    static LOOKUPS: Semaphore = Semaphore::const_new(2);
    let Ok(_lookup) = LOOKUPS.acquire().await else { return Outcome::Later };
    let missing = state
        .db
        .run(move |c| {
            let Some(d) = distribution::find_by_base_path(c, &base_path)?.filter(|d| d.kind != remote::PULL_THROUGH) else {
                return Ok::<_, DbError>(Vec::new());
            };
            let Some((repo, number)) = distribution::served_version(c, &d)? else { return Ok(Vec::new()) };
            let mut missing = Vec::new();
            for digest in &digests {
                if let Some(source) = content::blob_in_version(c, &repo, number, digest)? {
                    let prefetched = source.remote.as_ref().map(|(r, _, _)| r.prefetch && r.policy != "streamed");
                    if source.artifact.is_none() && prefetched.is_some() {
                        missing.push(source);
                    }
                    // The blobs of a version share its repository's remote: one that does not
                    // prefetch needs no more lookups.
                    if prefetched == Some(false) {
                        break;
                    }
                }
            }
            Ok(missing)
        })
        .await;
    drop(_lookup);
    let missing = match missing {
        Ok(m) => m,
        Err(e) => {
            tracing::debug!(error = %e, "prefetch: looking up the manifest's blobs failed");
            return Outcome::Later;
        }
    };
    let mut later = false;
    let fetched: Vec<(BlobSource, Arc<Semaphore>)> = missing
        .into_iter()
        .filter_map(|source| {
            let (remote, _, _) = source.remote.as_ref()?;
            if !remote.prefetch || remote.policy == "streamed" {
                later = true;
                return None;
            }
            let permits = remote.download_concurrency.and_then(|n| usize::try_from(n).ok()).filter(|n| *n > 0).unwrap_or(DEFAULT_CONCURRENCY);
            let semaphore = state.fetcher.prefetches.semaphore(&remote.id, permits);
            Some((source, semaphore))
        })
        .collect();
    let failures = futures_util::stream::iter(fetched)
        .map(|(source, semaphore)| fetch_one(state, source, semaphore))
        .buffer_unordered(usize::MAX)
        .filter(|ok| std::future::ready(!ok))
        .count()
        .await;
    if later || failures > 0 {
        Outcome::Later
    } else {
        Outcome::Done
    }
}

/// The config and layer digests of an image manifest (Docker schema 2 or OCI); `None` for
/// anything else (a list or index without a known media type, schema 1, bytes that are not JSON).
fn blob_digests(data: &[u8]) -> Option<Vec<String>> {
    #[derive(serde::Deserialize)]
    struct Descriptor {
        digest: String,
    }
    #[derive(serde::Deserialize)]
    struct ImageManifest {
        config: Option<Descriptor>,
        #[serde(default)]
        layers: Vec<Descriptor>,
    }
    let m: ImageManifest = serde_json::from_slice(data).ok()?;
    // Past this many blobs the client's own GETs fetch the rest: an image is rarely larger,
    // and a hostile manifest must not make a long prefetch.
    let mut digests: Vec<String> = Vec::new();
    for d in m.config.into_iter().chain(m.layers).map(|d| d.digest) {
        if digests.len() == MOST_BLOBS {
            break;
        }
        if !digests.contains(&d) {
            digests.push(d);
        }
    }
    (!digests.is_empty()).then_some(digests)
}

/// One blob, fetched once a permit of its remote is free; true when it is stored.
async fn fetch_one(state: &AppState, source: BlobSource, semaphore: Arc<Semaphore>) -> bool {
    let Ok(_permit) = semaphore.acquire_owned().await else { return false };
    if state.readiness.shutting_down() {
        return false;
    }
    state.metrics.prefetches_started.inc();
    let digest = source.digest.clone();
    // Another replica's download of it is left to that replica, which records it.
    let verdict = state.fetcher.settle(state, source, false).await;
    if let Err(e) = &verdict {
        // The client that asks next gets (and reports) the error: here it is only noted.
        tracing::info!(digest = %digest, error = %e, "prefetch of a blob failed");
    }
    verdict.is_ok()
}

/// The fetcher's prefetch bookkeeping: which manifests were prefetched or are being prefetched,
/// and a semaphore per remote.
#[derive(Default)]
pub(super) struct Prefetches {
    memory: Mutex<Memory>,
    semaphores: Mutex<HashMap<String, (usize, Arc<Semaphore>)>>,
}

#[derive(Default)]
struct Memory {
    in_flight: HashSet<String>,
    /// Manifests with nothing left to do (`None`), or left alone until the instant.
    current: HashMap<String, Option<Instant>>,
    previous: HashMap<String, Option<Instant>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Prefetches {
    /// True when the prefetch of `key` should start now (it is then counted in flight).
    pub(super) fn begin(&self, key: &str) -> bool {
        let mut m = lock(&self.memory);
        let remembered = match m.current.get(key).copied() {
            Some(until) => Some(until),
            None => {
                let until = m.previous.remove(key);
                if let Some(until) = until {
                    m.remember(key.to_string(), until);
                }
                until
            }
        };
        let left_alone = match remembered {
            Some(None) => true,
            Some(Some(until)) => Instant::now() < until,
            None => false,
        };
        if left_alone || m.in_flight.len() >= MOST_IN_FLIGHT {
            return false;
        }
        m.in_flight.insert(key.to_string())
    }

    pub(super) fn end(&self, key: String, outcome: Outcome) {
        let mut m = lock(&self.memory);
        m.in_flight.remove(&key);
        let until = match outcome {
            Outcome::Done => None,
            Outcome::Later => Some(Instant::now() + RECHECK_AFTER),
        };
        m.remember(key, until);
    }

    /// The remote's semaphore of `permits` (a new one when its `download_concurrency` changed).
    pub(super) fn semaphore(&self, remote_id: &str, permits: usize) -> Arc<Semaphore> {
        let mut all = lock(&self.semaphores);
        if let Some((n, s)) = all.get(remote_id) {
            if *n == permits {
                return s.clone();
            }
        }
        if all.len() >= MOST_IN_FLIGHT {
            // Only semaphores some prefetch holds matter; the others are made again when needed.
            all.retain(|_, (_, s)| Arc::strong_count(s) > 1);
        }
        let s = Arc::new(Semaphore::new(permits));
        all.insert(remote_id.to_string(), (permits, s.clone()));
        s
    }
}

impl Memory {
    fn remember(&mut self, key: String, until: Option<Instant>) {
        if self.current.len() >= REMEMBERED && !self.current.contains_key(&key) {
            self.previous = std::mem::take(&mut self.current);
        }
        self.current.insert(key, until);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_image_manifest_names_its_config_then_its_layers() {
        let m = br#"{"schemaVersion":2,"config":{"digest":"sha256:c","size":1},"layers":[{"digest":"sha256:a"},{"digest":"sha256:b"}]}"#;
        assert_eq!(blob_digests(m), Some(vec!["sha256:c".into(), "sha256:a".into(), "sha256:b".into()]));
        assert_eq!(blob_digests(br#"{"schemaVersion":2,"manifests":[{"digest":"sha256:x"}]}"#), None);
        assert_eq!(blob_digests(b"not json"), None);
        assert!(is_list("application/vnd.docker.distribution.manifest.list.v2+json"));
        assert!(is_list("application/vnd.oci.image.index.v1+json"));
        assert!(!is_list("application/vnd.oci.image.manifest.v1+json"));
    }

    #[test]
    fn a_manifest_is_prefetched_once_and_the_memory_is_bounded() {
        let p = Prefetches::default();
        assert!(p.begin("a@1"));
        assert!(!p.begin("a@1"), "in flight");
        p.end("a@1".into(), Outcome::Done);
        assert!(!p.begin("a@1"), "done");
        for i in 0..REMEMBERED * 3 {
            p.end(format!("b@{i}"), Outcome::Done);
        }
        let m = lock(&p.memory);
        assert!(m.current.len() + m.previous.len() <= 2 * REMEMBERED);
        assert!(m.in_flight.is_empty());
    }

    #[test]
    fn a_manifest_left_for_later_is_not_prefetched_again_at_once() {
        let p = Prefetches::default();
        assert!(p.begin("a@1"));
        p.end("a@1".into(), Outcome::Later);
        assert!(!p.begin("a@1"));
        lock(&p.memory).current.insert("a@1".into(), Some(Instant::now()));
        assert!(p.begin("a@1"), "after the pause");
    }
}
