//! The sync task: read the upstream's tags and manifests into a new repository version.
//!
//! 1. list tags (filtered by include/exclude wildcards);
//! 2. resolve each tag to a digest with HEAD and fetch only manifests not already stored
//!    (lists first, then the manifests they list, level by level); then, unless the remote's
//!    `include_referrers` is off, what refers to them (`referrers.rs`);
//! 3. `immediate`: download every blob not yet stored, digest-checked, into the store;
//! 4. in one write transaction: record content (blobs with their remote artifacts), tags,
//!    and the new version. Nothing is recorded when any step fails.

mod manifest;
mod referrers;
pub mod schedule;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures_util::{stream, StreamExt, TryStreamExt};
use wildmatch::WildMatch;

pub use manifest::{references, References};

use crate::api::hrefs;
use crate::db::{write_transaction, DbError};
use crate::models::claim::WriteClaim;
use crate::models::content::{self, NewManifest};
use crate::models::remote::Remote;
use crate::models::repository::Repository;
use crate::models::{artifact, remote, repository};
use crate::tasks::{TaskContext, TaskError, TaskResult};
use crate::upstream::{Upstream, UpstreamError};

pub const TASK_NAME: &str = "pulpish.sync";
const DEFAULT_CONCURRENCY: usize = 10;
/// How deep lists may nest (an index listing indexes ...).
const MAX_NESTING: usize = 4;

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct SyncArgs {
    pub repository_id: String,
    pub remote_id: String,
    pub mirror: bool,
}

/// A manifest as the sync knows it: bytes (stored or just fetched) and what it references.
pub(crate) struct Known {
    pub(crate) media_type: String,
    pub(crate) bytes: Vec<u8>,
    pub(crate) refs: References,
}

fn failed(e: impl std::fmt::Display) -> TaskError {
    TaskError::Failed(e.to_string())
}

pub fn tag_selected(tag: &str, include: &Option<Vec<String>>, exclude: &Option<Vec<String>>) -> bool {
    let matches = |patterns: &Vec<String>| patterns.iter().any(|p| WildMatch::new(p).matches(tag));
    include.as_ref().is_none_or(matches) && !exclude.as_ref().is_some_and(matches)
}

pub async fn run(ctx: TaskContext, args: SyncArgs) -> TaskResult {
    let db = ctx.state.db.clone();
    let (repo_id, remote_id) = (args.repository_id.clone(), args.remote_id.clone());
    let (repo, remote): (Repository, Remote) = db
        .run(move |c| {
            let repo = repository::find(c, &repo_id)?.ok_or(diesel::result::Error::NotFound)?;
            let remote = remote::find(c, &remote_id)?.ok_or(diesel::result::Error::NotFound)?;
            Ok::<_, DbError>((repo, remote))
        })
        .await
        .map_err(|_| failed("the repository or the remote no longer exists"))?;
    // The process's client for the remote, which the content app's downloads use too: its
    // connections and token are warm for the first on-demand GET after the sync.
    let upstream = ctx.state.upstreams.get(&remote).map_err(failed)?;
    let context = |e: UpstreamError| failed(format!("sync of '{}' from {} failed: {e}", repo.name, upstream.describe()));
    let concurrency = remote.download_concurrency.map(|n| n.max(1) as usize).unwrap_or(DEFAULT_CONCURRENCY);

    // 1. Tags.
    ctx.progress("sync.listing_tags", "Listing tags", None).await?;
    let (include, exclude) = (remote.include_tags(), remote.exclude_tags());
    let all_tags = upstream.list_tags().await.map_err(context)?;
    let tags: Vec<String> = all_tags.iter().filter(|t| tag_selected(t, &include, &exclude)).cloned().collect();
    ctx.advance("sync.listing_tags", tags.len() as u64, true).await?;

    // 2. Resolve tags to digests, fetch the manifests not stored yet.
    ctx.progress("sync.processing_tags", "Processing tags", Some(tags.len() as u64)).await?;
    let done = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut manifests: HashMap<String, Known> = HashMap::new();
    let resolved: Vec<(String, String, Option<Known>)> = stream::iter(tags.iter().cloned())
        .map(|tag| {
            let (upstream, db, ctx, done) = (upstream.clone(), db.clone(), ctx.clone(), done.clone());
            async move {
                let (digest, known) = resolve_tag(&upstream, &db, &tag).await?;
                let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                if n % 25 == 0 {
                    let _ = ctx.advance("sync.processing_tags", n, false).await;
                }
                Ok::<_, UpstreamError>((tag, digest, Some(known)))
            }
        })
        .buffer_unordered(concurrency)
        .try_collect()
        .await
        .map_err(context)?;
    let mut tag_digests = Vec::with_capacity(resolved.len());
    for (tag, digest, known) in resolved {
        if let Some(k) = known {
            manifests.entry(digest.clone()).or_insert(k);
        }
        tag_digests.push((tag, digest));
    }
    ctx.advance("sync.processing_tags", tags.len() as u64, true).await?;

    // The manifests that lists name, fetched by digest.
    fetch_listed(&upstream, &db, &mut manifests, concurrency).await.map_err(context)?;

    // What refers to every manifest recorded (signatures, attestations, SBOMs).
    if remote.include_referrers {
        referrers::gather(&ctx, &upstream, &db, &all_tags, &mut manifests, &mut tag_digests, concurrency).await.map_err(context)?;
    }

    let blobs = blobs_of(&manifests);

    // 3. immediate: download the blobs not stored yet.
    let mut stored: HashMap<String, String> = HashMap::new();
    if remote.policy == "immediate" {
        stored = download_blobs(&ctx, &upstream, &blobs, concurrency).await.map_err(|e| failed(format!("sync of '{}' from {} failed: {e}", repo.name, upstream.describe())))?;
    }

    // 4. Record content and the new version, all or nothing.
    ctx.progress("sync.associating", "Associating content", None).await?;
    let (repo_id, remote_id, mirror) = (repo.id.clone(), remote.id.clone(), args.mirror);
    let upstream_for_urls = upstream.clone();
    let number = db
        .run(move |c| {
            write_transaction(c, |c| {
                record(c, &repo_id, &remote_id, mirror, &upstream_for_urls, &manifests, &blobs, &stored, &tag_digests)
            })
        })
        .await
        .map_err(|e: DbError| failed(format!("recording the sync failed: {e}")))?;
    ctx.advance("sync.associating", 1, true).await?;
    Ok(number.map(|n| vec![hrefs::repository_version(&repo.id, n)]).unwrap_or_default())
}

/// Every blob the manifests reference, with its size.
pub(crate) fn blobs_of(manifests: &HashMap<String, Known>) -> HashMap<String, i64> {
    let mut blobs = HashMap::new();
    for k in manifests.values() {
        if let References::Image { config, layers } = &k.refs {
            for b in std::iter::once(config).chain(layers) {
                blobs.insert(b.digest.clone(), b.size);
            }
        }
    }
    blobs
}

/// A tag's digest and manifest: re-read from the database when its digest is stored already.
async fn resolve_tag(upstream: &Upstream, db: &crate::db::Db, tag: &str) -> Result<(String, Known), UpstreamError> {
    if let Some(digest) = upstream.head_manifest(tag).await? {
        if let Some(found) = load_stored(db, &digest).await? {
            return Ok(found);
        }
    }
    fetch(upstream, tag).await
}

/// A manifest fetched (and checked) by tag or digest.
pub(crate) async fn fetch(upstream: &Upstream, reference: &str) -> Result<(String, Known), UpstreamError> {
    let m = upstream.get_manifest(reference).await?;
    let refs = references(&m.media_type, &m.bytes).map_err(UpstreamError::Invalid)?;
    Ok((m.digest, Known { media_type: m.media_type, bytes: m.bytes.to_vec(), refs }))
}

/// A manifest by digest: the stored one, else fetched.
async fn by_digest(upstream: &Upstream, db: &crate::db::Db, digest: &str) -> Result<(String, Known), UpstreamError> {
    match load_stored(db, digest).await? {
        Some(found) => Ok(found),
        None => fetch(upstream, digest).await,
    }
}

/// Fetches what the lists among `manifests` name and is not there yet, level by level (an index
/// may list indexes, `MAX_NESTING` levels at most).
async fn fetch_listed(
    upstream: &Arc<Upstream>,
    db: &crate::db::Db,
    manifests: &mut HashMap<String, Known>,
    concurrency: usize,
) -> Result<(), UpstreamError> {
    for level in 0..=MAX_NESTING {
        let missing: Vec<String> = manifests
            .values()
            .filter_map(|k| match &k.refs {
                References::List(l) => Some(l.iter().map(|r| r.digest.clone()).collect::<Vec<_>>()),
                References::Image { .. } => None,
            })
            .flatten()
            .filter(|d| !manifests.contains_key(d))
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        if level == MAX_NESTING {
            break;
        }
        let fetched: Vec<(String, Known)> = stream::iter(missing)
            .map(|digest| {
                let (upstream, db) = (upstream.clone(), db.clone());
                async move { by_digest(&upstream, &db, &digest).await }
            })
            .buffer_unordered(concurrency)
            .try_collect()
            .await?;
        manifests.extend(fetched);
    }
    Err(UpstreamError::Invalid(format!("manifest lists are nested more than {MAX_NESTING} deep")))
}

/// A manifest already in the database, re-read from its stored bytes.
async fn load_stored(db: &crate::db::Db, digest: &str) -> Result<Option<(String, Known)>, UpstreamError> {
    let d = digest.to_string();
    let row = db
        .run(move |c| {
            use crate::db::schema::manifest;
            use diesel::prelude::*;
            manifest::table
                .filter(manifest::digest.eq(&d))
                .select((manifest::media_type, manifest::data))
                .first::<(String, Vec<u8>)>(c)
                .optional()
                .map_err(DbError::from)
        })
        .await
        .map_err(|e| UpstreamError::Invalid(e.to_string()))?;
    Ok(match row {
        Some((media_type, bytes)) => {
            let refs = references(&media_type, &bytes).map_err(UpstreamError::Invalid)?;
            Some((digest.to_string(), Known { media_type, bytes, refs }))
        }
        None => None,
    })
}

/// Downloads (concurrently) each blob that has no artifact yet; returns digest → artifact id.
async fn download_blobs(
    ctx: &TaskContext,
    upstream: &Arc<Upstream>,
    blobs: &HashMap<String, i64>,
    concurrency: usize,
) -> Result<HashMap<String, String>, String> {
    let db = ctx.state.db.clone();
    let digests: Vec<(String, i64)> = blobs.iter().map(|(d, s)| (d.clone(), *s)).collect();
    let mut stored = HashMap::new();
    let mut missing = Vec::new();
    for (digest, size) in digests {
        let sha = digest.strip_prefix("sha256:").unwrap_or(&digest).to_string();
        match db.run(move |c| artifact::find_by_sha256(c, &sha).map_err(DbError::from)).await.map_err(|e| e.to_string())? {
            Some(a) => {
                stored.insert(digest, a.id);
            }
            None => missing.push((digest, size)),
        }
    }
    ctx.progress("sync.downloading_artifacts", "Downloading artifacts", Some(missing.len() as u64)).await.map_err(|e| e.to_string())?;
    let done = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let results: Vec<(String, String)> = stream::iter(missing)
        .map(|(digest, size)| {
            let (upstream, state, ctx, done) = (upstream.clone(), ctx.state.clone(), ctx.clone(), done.clone());
            async move {
                if !digest.starts_with("sha256:") {
                    return Err(format!("blob {digest}: only sha256 digests can be downloaded"));
                }
                // Held until the row is recorded: orphan cleanup must not delete an object kept here.
                let claim = WriteClaim::take(&state.db, &digest["sha256:".len()..]).await.map_err(|e| e.to_string())?;
                let resp = upstream.get_blob(&digest).await.map_err(|e| e.to_string())?;
                let body = resp.bytes_stream();
                let download = state.storage.ingest(body, &digest, Some(size));
                let file = match upstream.total_timeout() {
                    Some(t) => tokio::time::timeout(t, download).await.map_err(|_| format!("download of {digest} timed out"))?,
                    None => download.await,
                }
                .map_err(|e| e.to_string())?;
                let a = state
                    .db
                    .run(move |c| artifact::ensure(c, &file.sha256, file.size, &file.key).map_err(DbError::from))
                    .await
                    .map_err(|e| e.to_string())?;
                claim.release().await;
                let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                let _ = ctx.advance("sync.downloading_artifacts", n, false).await;
                Ok::<_, String>((digest, a.id))
            }
        })
        .buffer_unordered(concurrency)
        .try_collect()
        .await?;
    let total = results.len() as u64;
    stored.extend(results);
    ctx.advance("sync.downloading_artifacts", total, true).await.map_err(|e| e.to_string())?;
    Ok(stored)
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn record(
    c: &mut crate::db::DbConnection,
    repo_id: &str,
    remote_id: &str,
    mirror: bool,
    upstream: &Upstream,
    manifests: &HashMap<String, Known>,
    blobs: &HashMap<String, i64>,
    stored: &HashMap<String, String>,
    tag_digests: &[(String, String)],
) -> Result<Option<i64>, DbError> {
    let mut add: Vec<String> = Vec::new();
    let mut blob_ids: HashMap<&str, String> = HashMap::new();
    for (digest, size) in blobs {
        let id = content::ensure_blob(c, digest)?;
        let url = upstream.blob_url(digest);
        content::ensure_blob_file(c, &id, digest, stored.get(digest).map(String::as_str), Some((remote_id, &url, Some(*size))))?;
        add.push(id.clone());
        blob_ids.insert(digest.as_str(), id);
    }
    // A list after everything it lists.
    let mut manifest_ids: HashMap<&str, String> = HashMap::new();
    for (digest, k) in dependency_order(manifests) {
        let new = match &k.refs {
            References::Image { config, layers } => NewManifest {
                digest: digest.clone(),
                media_type: k.media_type.clone(),
                data: k.bytes.clone(),
                config_blob_id: blob_ids.get(config.digest.as_str()).cloned(),
                blob_ids: layers.iter().filter_map(|l| blob_ids.get(l.digest.as_str()).cloned()).collect(),
                listed: vec![],
            },
            References::List(listed) => NewManifest {
                digest: digest.clone(),
                media_type: k.media_type.clone(),
                data: k.bytes.clone(),
                config_blob_id: None,
                blob_ids: vec![],
                listed: listed
                    .iter()
                    .filter_map(|l| manifest_ids.get(l.digest.as_str()).map(|id| (id.clone(), l.architecture.clone(), l.os.clone())))
                    .collect(),
            },
        };
        let (id, _) = content::ensure_manifest(c, &new)?;
        add.push(id.clone());
        manifest_ids.insert(digest.as_str(), id);
    }
    let mut synced_tag_names = HashSet::new();
    for (tag, digest) in tag_digests {
        let manifest_id = manifest_ids.get(digest.as_str()).ok_or(diesel::result::Error::NotFound)?;
        add.push(content::ensure_tag(c, tag, manifest_id)?);
        synced_tag_names.insert(tag.clone());
    }

    let latest = repository::latest_for_write(c, repo_id)?;
    let present = repository::version_content(c, repo_id, latest)?;
    let adding: HashSet<&String> = add.iter().collect();
    let remove: Vec<String> = if mirror {
        present.into_iter().filter(|(id, _)| !adding.contains(id)).map(|(id, _)| id).collect()
    } else {
        // A tag that moved upstream replaces the old one of the same name.
        let names = tag_names(c, &present)?;
        present
            .into_iter()
            .filter(|(id, t)| t == content::TAG && !adding.contains(id) && names.get(id).is_some_and(|n| synced_tag_names.contains(n)))
            .map(|(id, _)| id)
            .collect()
    };
    Ok(repository::new_version(c, repo_id, &add, &remove)?)
}

/// Manifests ordered so that each list comes after the manifests it lists (images first, then
/// lists of images, lists of those, ...).
fn dependency_order(manifests: &HashMap<String, Known>) -> Vec<(&String, &Known)> {
    fn height<'a>(digest: &'a str, manifests: &'a HashMap<String, Known>, memo: &mut HashMap<&'a str, usize>, depth: usize) -> usize {
        if let Some(h) = memo.get(digest) {
            return *h;
        }
        let h = match manifests.get(digest).map(|k| &k.refs) {
            // Nesting is bounded when fetched; the guard only keeps a cycle from recursing forever.
            Some(References::List(listed)) if depth < 64 => {
                1 + listed.iter().map(|l| height(&l.digest, manifests, memo, depth + 1)).max().unwrap_or(0)
            }
            _ => 0,
        };
        memo.insert(digest, h);
        h
    }
    let mut memo = HashMap::new();
    let mut ordered: Vec<(usize, &String, &Known)> = manifests.iter().map(|(d, k)| (height(d, manifests, &mut memo, 0), d, k)).collect();
    ordered.sort_by_key(|(h, d, _)| (*h, d.as_str()));
    ordered.into_iter().map(|(_, d, k)| (d, k)).collect()
}

fn tag_names(c: &mut crate::db::DbConnection, present: &[(String, String)]) -> Result<HashMap<String, String>, DbError> {
    use crate::db::schema::tag;
    use diesel::prelude::*;
    let ids: Vec<&String> = present.iter().filter(|(_, t)| t == content::TAG).map(|(id, _)| id).collect();
    let mut out = HashMap::new();
    for chunk in ids.chunks(500) {
        let rows: Vec<(String, String)> = tag::table.filter(tag::content_id.eq_any(chunk)).select((tag::content_id, tag::name)).load(c)?;
        out.extend(rows);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::tag_selected;

    #[test]
    fn tag_filters() {
        let some = |v: &[&str]| Some(v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert!(tag_selected("latest", &None, &None));
        assert!(tag_selected("1.36", &some(&["1.*"]), &None));
        assert!(!tag_selected("2.0", &some(&["1.*"]), &None));
        assert!(!tag_selected("1.36-rc", &some(&["1.*"]), &some(&["*-rc"])));
        assert!(tag_selected("v1", &some(&["v?"]), &None));
        assert!(!tag_selected("v10", &some(&["v?"]), &None));
    }
}
