//! What refers to the manifests a sync records: signatures, attestations, SBOMs.
//!
//! For each manifest, the upstream's referrers API when it has one (asked once per sync: a 404,
//! 400 or 405, or a 200 that is no image index, means it has none; a 5xx, 429 or timeout fails
//! the sync rather than let a flaky upstream pass for one without referrers), else the OCI 1.1
//! fallback tag `sha256-<hex>`; and always cosign's tags `sha256-<hex>.sig`, `.att` and `.sbom`.
//! The tags are looked up in the upstream's full tag list (no request per candidate) and
//! recorded as tags, whatever the remote's tag filters say. A manifest the referrers API or a
//! fallback index lists for a digest is kept only if its own `subject` is that digest (cosign's
//! tags have none and are taken as they are), so the referrers path brings no image the filters
//! leave out; a fallback tag is kept only with everything it lists. Referrers of referrers
//! follow, level by level, up to `MAX_DEPTH` levels and `MAX_REFERRERS` manifests (the referrers
//! API is read no further than that budget, and `MAX_REFERRER_PAGES` pages per digest); past a
//! bound the sync records what it has and says what it left.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures_util::{stream, StreamExt, TryStreamExt};

use super::{by_digest, fetch_listed, resolve_tag, Known, References};
use crate::db::Db;
use crate::db::DbError;
use crate::tasks::TaskContext;
use crate::models::referrer::ReferrerFacts;
use crate::upstream::{Cut, ReferrerList, Upstream, UpstreamError, MAX_REFERRER_PAGES};

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
fn within_budget<T, D>(tags: &mut Vec<T>, digests: &mut Vec<D>, budget: usize) -> bool {
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

fn over_budget() -> String {
    format!("more than {MAX_REFERRERS} referrers: the rest were not synced")
}

/// Whether `tag` is the OCI fallback tag (an index of referrers), not one of cosign's.
fn is_fallback(tag: &str) -> bool {
    !tag.contains('.')
}

/// Whether a manifest listed as a referrer of `subject` says so itself: else an upstream could
/// list any manifest (an image the tag filters leave out) and have it recorded.
fn refers_to(known: &Known, subject: &str) -> bool {
    ReferrerFacts::of(&known.media_type, &known.bytes).subject.as_deref() == Some(subject)
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
    // Listed for a digest they do not refer to: never fetched again.
    let mut refused: HashSet<String> = HashSet::new();
    let mut left = None;
    // An answer cut at its page cap: reported, but the next levels are still gathered.
    let mut paged: Option<String> = None;
    let mut note_cut = |subject: &str, cut: Option<Cut>, left: &mut Option<String>| match cut {
        Some(Cut::Budget) => *left = Some(over_budget()),
        Some(Cut::Pages) => {
            paged.get_or_insert_with(|| format!("the referrers of {subject} span more than {MAX_REFERRER_PAGES} pages: the rest were not synced"));
        }
        None => {}
    };
    for depth in 1..=MAX_DEPTH + 1 {
        if frontier.is_empty() {
            break;
        }
        if depth > MAX_DEPTH {
            left = Some(format!("referrers more than {MAX_DEPTH} levels deep were not synced"));
            break;
        }
        let budget = MAX_REFERRERS.saturating_sub(fetched);
        let mut want_tags: Vec<(String, String)> = Vec::new();
        for digest in &frontier {
            for tag in candidate_tags(digest) {
                if upstream_tags.contains(tag.as_str()) && taken.insert(tag.clone()) {
                    want_tags.push((tag, digest.clone()));
                }
            }
        }
        // Referrer digest → the digest it was listed for.
        let mut listed_for: Vec<(String, String)> = Vec::new();
        // The first question tells whether the upstream has the API at all.
        let mut answers: Vec<(String, Option<ReferrerList>)> = Vec::new();
        let mut ask: &[String] = &frontier;
        if api.is_none() {
            let found = upstream.referrers(&frontier[0], budget).await?;
            api = Some(found.is_some());
            if found.is_none() {
                tracing::info!(upstream = %upstream.describe(), "the upstream has no referrers API: using the fallback and cosign tags");
            }
            answers.push((frontier[0].clone(), found));
            ask = &frontier[1..];
        }
        if api == Some(true) {
            let rest: Vec<(String, Option<ReferrerList>)> = stream::iter(ask.iter().cloned())
                .map(|digest| {
                    let upstream = upstream.clone();
                    async move { upstream.referrers(&digest, budget).await.map(|l| (digest, l)) }
                })
                .buffer_unordered(concurrency)
                .try_collect()
                .await?;
            answers.extend(rest);
        }
        for (subject, list) in answers {
            // A 404 once the upstream has shown it has the API: nothing refers to it.
            let Some(list) = list else { continue };
            note_cut(&subject, list.cut, &mut left);
            listed_for.extend(list.descriptors.into_iter().map(|d| (d.digest, subject.clone())));
        }
        listed_for.sort();
        let mut seen = HashSet::new();
        listed_for.retain(|(d, _)| !manifests.contains_key(d) && !refused.contains(d) && seen.insert(d.clone()));
        let listed = listed_for.len();
        listed_for.retain(|(d, _)| d.starts_with("sha256:") || d.starts_with("sha512:"));
        if listed_for.len() < listed {
            let n = listed - listed_for.len();
            tracing::warn!(skipped = n, "skipping referrers named by a digest algorithm other than sha256 and sha512");
        }

        if !within_budget(&mut want_tags, &mut listed_for, budget) {
            left = Some(over_budget());
        }
        let before: HashSet<String> = manifests.keys().cloned().collect();
        let resolved: Vec<Option<(String, String, String, Known)>> = stream::iter(want_tags.iter().cloned())
            .map(|(tag, subject)| {
                let (upstream, db) = (upstream.clone(), db.clone());
                async move {
                    gone_is_none(resolve_tag(&upstream, &db, &tag).await).map(|found| found.map(|(digest, known)| (tag, subject, digest, known)))
                }
            })
            .buffer_unordered(concurrency)
            .try_collect()
            .await?;
        // A fallback tag is an index of the referrers of its digest: what it lists is fetched
        // like what a referrers API lists, within the budget, and must refer to that digest.
        let mut fallbacks: Vec<(String, String, Known, Vec<String>)> = Vec::new();
        let mut new_tags = Vec::new();
        let mut spent = want_tags.len() + listed_for.len();
        let mut wanted: HashSet<String> = listed_for.iter().map(|(d, _)| d.clone()).collect();
        for (tag, subject, digest, known) in resolved.into_iter().flatten() {
            if !is_fallback(&tag) {
                manifests.entry(digest.clone()).or_insert(known);
                new_tags.push((tag, digest));
                continue;
            }
            let References::List(children) = &known.refs else {
                tracing::warn!(%tag, %digest, "skipping a fallback tag that is not an index of referrers");
                continue;
            };
            let children: Vec<String> = children.iter().map(|c| c.digest.clone()).collect();
            for child in &children {
                if manifests.contains_key(child) || refused.contains(child) || !wanted.insert(child.clone()) {
                    continue;
                }
                if spent >= budget {
                    left = Some(over_budget());
                    break;
                }
                spent += 1;
                listed_for.push((child.clone(), subject.clone()));
            }
            fallbacks.push((tag, digest, known, children));
        }
        let by_digest_fetched: Vec<Option<(String, String, Known)>> = stream::iter(listed_for)
            .map(|(digest, subject)| {
                let (upstream, db) = (upstream.clone(), db.clone());
                async move { gone_is_none(by_digest(&upstream, &db, &digest).await).map(|found| found.map(|(d, known)| (d, subject, known))) }
            })
            .buffer_unordered(concurrency)
            .try_collect()
            .await?;
        for (digest, subject, known) in by_digest_fetched.into_iter().flatten() {
            if refers_to(&known, &subject) {
                manifests.entry(digest).or_insert(known);
            } else {
                tracing::warn!(%digest, %subject, "skipping a manifest listed as a referrer whose subject is not the digest it was listed for");
                refused.insert(digest);
            }
        }
        // Kept only whole: an index listing a manifest the repository lacks cannot be served.
        for (tag, digest, known, children) in fallbacks {
            if let Some(missing) = children.iter().find(|c| !manifests.contains_key(*c)) {
                tracing::warn!(%tag, %missing, "skipping a fallback tag that lists a manifest not synced as a referrer of its digest (the referrers it lists that are are kept)");
                continue;
            }
            manifests.entry(digest.clone()).or_insert(known);
            new_tags.push((tag, digest));
        }
        // Lists among the referrers (an index-type artifact) bring what they list.
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
    let why: Vec<String> = left.into_iter().chain(paged).collect();
    if !why.is_empty() {
        let why = why.join("; ");
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
        assert!(!within_budget(&mut list(1, "t"), &mut Vec::<String>::new(), 0));
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
