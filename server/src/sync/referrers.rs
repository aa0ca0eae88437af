//! What refers to the manifests a sync records: signatures, attestations, SBOMs.
//!
//! For each manifest, the upstream's referrers API when it has one (asked once per sync: a 404
//! or anything but an image index means it has none), else the OCI 1.1 fallback tag
//! `sha256-<hex>`; and always cosign's tags `sha256-<hex>.sig`, `.att` and `.sbom`. The tags are
//! looked up in the upstream's full tag list (no request per candidate) and recorded as tags,
//! whatever the remote's tag filters say. Referrers of referrers follow, level by level, up to
//! `MAX_DEPTH` levels and `MAX_REFERRERS` manifests; past either bound the sync records what it
//! has and says what it left.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures_util::{stream, StreamExt, TryStreamExt};

use super::{by_digest, fetch_listed, resolve_tag, Known, References};
use crate::db::Db;
use crate::db::DbError;
use crate::tasks::TaskContext;
use crate::upstream::{Upstream, UpstreamError};

/// Levels of referrers followed: referrers of the synced manifests are level 1, theirs level 2.
pub const MAX_DEPTH: usize = 4;
/// Referrer manifests one sync fetches at most.
pub const MAX_REFERRERS: usize = 10_000;

/// The tags that may name what refers to `digest`: the fallback tag, then cosign's.
fn candidate_tags(digest: &str) -> Vec<String> {
    let Some((algorithm, hex)) = digest.split_once(':') else { return vec![] };
    // The spec's fallback tag: `<alg>-<ref>`, cut to the 128 characters a tag may have.
    let fallback: String = format!("{algorithm}-{hex}").chars().take(128).collect();
    let mut tags = vec![fallback.clone()];
    if algorithm == "sha256" {
        tags.extend(["sig", "att", "sbom"].map(|suffix| format!("{fallback}.{suffix}")));
    }
    tags
}

fn progress_failed(e: DbError) -> UpstreamError {
    UpstreamError::Invalid(format!("recording the progress failed: {e}"))
}

/// A referrer deleted upstream since it was listed is left out, not a failure.
fn gone_is_none<T>(fetched: Result<T, UpstreamError>) -> Result<Option<T>, UpstreamError> {
    match fetched {
        Ok(found) => Ok(Some(found)),
        Err(UpstreamError::NotFound(what)) => {
            tracing::warn!("skipping a referrer the upstream listed but no longer has: {what}");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Cuts the tags and digests to fetch to `budget` in all (tags first); false when it cut any.
fn within_budget(tags: &mut Vec<String>, digests: &mut Vec<String>, budget: usize) -> bool {
    if tags.len() + digests.len() <= budget {
        return true;
    }
    tags.truncate(budget);
    digests.truncate(budget - tags.len());
    false
}

/// Whether the blobs a manifest references can be stored (sha256 only).
fn storable(known: &Known) -> bool {
    match &known.refs {
        References::Image { config, layers } => std::iter::once(config).chain(layers).all(|b| b.digest.starts_with("sha256:")),
        References::List(_) => true,
    }
}

/// Adds the referrers of every manifest in `manifests` (and theirs, recursively) to
/// `manifests`, and the referrer tags to `tags`.
pub(super) async fn gather(
    ctx: &TaskContext,
    upstream: &Arc<Upstream>,
    db: &Db,
    all_tags: &[String],
    manifests: &mut HashMap<String, Known>,
    tags: &mut Vec<(String, String)>,
    concurrency: usize,
) -> Result<(), UpstreamError> {
    ctx.progress("sync.referrers", "Syncing referrers", None).await.map_err(progress_failed)?;
    let upstream_tags: HashSet<&str> = all_tags.iter().map(String::as_str).collect();
    let mut taken: HashSet<String> = tags.iter().map(|(t, _)| t.clone()).collect();
    // Whether the upstream has a referrers API: unknown until the first answer.
    let mut api: Option<bool> = None;
    let mut frontier: Vec<String> = manifests.keys().cloned().collect();
    frontier.sort();
    let mut fetched = 0usize;
    let mut skipped: HashSet<String> = HashSet::new();
    let mut left = None;
    for depth in 1..=MAX_DEPTH + 1 {
        if frontier.is_empty() {
            break;
        }
        if depth > MAX_DEPTH {
            left = Some(format!("referrers more than {MAX_DEPTH} levels deep were not synced"));
            break;
        }
        let mut want_tags: Vec<String> = Vec::new();
        for digest in &frontier {
            for tag in candidate_tags(digest) {
                if upstream_tags.contains(tag.as_str()) && taken.insert(tag.clone()) {
                    want_tags.push(tag);
                }
            }
        }
        let mut want: Vec<String> = Vec::new();
        let mut asked: HashSet<String> = HashSet::new();
        if api.is_none() {
            let found = upstream.referrers(&frontier[0]).await?;
            api = Some(found.is_some());
            if found.is_none() {
                tracing::info!(upstream = %upstream.describe(), "the upstream has no referrers API: using the fallback and cosign tags");
            }
            want.extend(found.into_iter().flatten().map(|d| d.digest));
            asked.insert(frontier[0].clone());
        }
        if api == Some(true) {
            let ask: Vec<String> = frontier.iter().filter(|d| !asked.contains(*d)).cloned().collect();
            let lists: Vec<Option<Vec<crate::upstream::Descriptor>>> = stream::iter(ask)
                .map(|digest| {
                    let upstream = upstream.clone();
                    async move { upstream.referrers(&digest).await }
                })
                .buffer_unordered(concurrency)
                .try_collect()
                .await?;
            want.extend(lists.into_iter().flatten().flatten().map(|d| d.digest));
        }
        let mut seen = HashSet::new();
        want.retain(|d| !manifests.contains_key(d) && seen.insert(d.clone()));
        want.retain(|d| {
            let ok = d.starts_with("sha256:") || d.starts_with("sha512:");
            if !ok {
                tracing::warn!(digest = %d, "skipping a referrer named by a digest algorithm other than sha256 and sha512");
            }
            ok
        });

        if !within_budget(&mut want_tags, &mut want, MAX_REFERRERS.saturating_sub(fetched)) {
            left = Some(format!("more than {MAX_REFERRERS} referrers: the rest were not synced"));
        }
        let before: HashSet<String> = manifests.keys().cloned().collect();
        let resolved: Vec<Option<(String, String, Known)>> = stream::iter(want_tags)
            .map(|tag| {
                let (upstream, db) = (upstream.clone(), db.clone());
                async move { gone_is_none(resolve_tag(&upstream, &db, &tag).await).map(|found| found.map(|(digest, known)| (tag, digest, known))) }
            })
            .buffer_unordered(concurrency)
            .try_collect()
            .await?;
        let by_digest_fetched: Vec<Option<(String, Known)>> = stream::iter(want)
            .map(|digest| {
                let (upstream, db) = (upstream.clone(), db.clone());
                async move { gone_is_none(by_digest(&upstream, &db, &digest).await) }
            })
            .buffer_unordered(concurrency)
            .try_collect()
            .await?;
        let (resolved, by_digest_fetched) = (resolved.into_iter().flatten(), by_digest_fetched.into_iter().flatten());
        let mut new_tags = Vec::new();
        for (tag, digest, known) in resolved {
            manifests.entry(digest.clone()).or_insert(known);
            new_tags.push((tag, digest));
        }
        for (digest, known) in by_digest_fetched {
            manifests.entry(digest).or_insert(known);
        }
        // A fallback tag's index lists the referrers themselves.
        fetch_listed(upstream, db, manifests, concurrency).await?;

        let mut added: Vec<String> = manifests.keys().filter(|d| !before.contains(*d)).cloned().collect();
        added.sort();
        // Kept in `manifests` until the end, so that no later level fetches them again.
        for d in added.iter().filter(|d| !storable(&manifests[*d])) {
            tracing::warn!(digest = %d, "skipping a referrer whose blobs are named by a digest other than sha256");
            skipped.insert(d.clone());
        }
        added.retain(|d| !skipped.contains(d));
        tags.extend(new_tags);
        fetched += added.len();
        ctx.advance("sync.referrers", fetched as u64, false).await.map_err(progress_failed)?;
        frontier = added;
        if left.is_some() {
            break;
        }
    }
    manifests.retain(|d, _| !skipped.contains(d));
    tags.retain(|(_, d)| !skipped.contains(d));
    ctx.advance("sync.referrers", fetched as u64, true).await.map_err(progress_failed)?;
    if let Some(why) = left {
        tracing::warn!(upstream = %upstream.describe(), fetched, "{why}");
        ctx.progress("sync.referrers_bounded", &format!("Not all referrers synced: {why}"), None).await.map_err(progress_failed)?;
        ctx.advance("sync.referrers_bounded", 0, true).await.map_err(progress_failed)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{candidate_tags, within_budget};

    #[test]
    fn the_budget_cuts_tags_last() {
        let list = |n: usize, p: &str| (0..n).map(|i| format!("{p}{i}")).collect::<Vec<_>>();
        let (mut tags, mut digests) = (list(2, "t"), list(3, "d"));
        assert!(within_budget(&mut tags, &mut digests, 5));
        assert_eq!((tags.len(), digests.len()), (2, 3));
        assert!(!within_budget(&mut tags, &mut digests, 3));
        assert_eq!((tags, digests), (list(2, "t"), list(1, "d")));
        let (mut tags, mut digests) = (list(4, "t"), list(3, "d"));
        assert!(!within_budget(&mut tags, &mut digests, 1));
        assert_eq!((tags.len(), digests.len()), (1, 0));
        assert!(!within_budget(&mut list(1, "t"), &mut vec![], 0));
    }

    #[test]
    fn candidate_tags_of_a_digest() {
        let hex = "a".repeat(64);
        assert_eq!(
            candidate_tags(&format!("sha256:{hex}")),
            vec![format!("sha256-{hex}"), format!("sha256-{hex}.sig"), format!("sha256-{hex}.att"), format!("sha256-{hex}.sbom")]
        );
        let long = candidate_tags(&format!("sha512:{}", "b".repeat(128)));
        assert_eq!(long.len(), 1);
        assert_eq!(long[0].len(), 128);
        assert!(candidate_tags("not a digest").is_empty());
    }
}
