//! Pull-through caching: a manifest asked of `/v2/<base_path>/<upstream repository>/` that is not
//! stored (or a tag whose last check upstream is older than the remote's `tag_ttl`) is fetched
//! from the upstream, checked against its digest, recorded into the repository made for that
//! upstream repository (a new version, with its blobs as on-demand content), and served. Its
//! blobs then follow the on-demand path.
//!
//! One fetch per (name, reference) at a time in this process: concurrent requests wait for
//! it and serve what it recorded. A tag whose check fails (the upstream unreachable, failing or
//! without it) is served as last known; the failed check counts as a check, so a dead upstream
//! costs one attempt per `tag_ttl`, not one per request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use chrono::NaiveDateTime;

use diesel::QueryResult;

use crate::app::AppState;
use crate::db::{DbConnection, DbError};
use crate::models::content::ServedManifest;
use crate::models::distribution::Distribution;
use crate::models::{pull_through, remote, remote::Remote};
use crate::registry::{access, RegistryError};
use crate::upstream::UpstreamError;

/// A distribution a pull-through distribution made, as a manifest request found it.
pub struct Cache {
    /// Its base path.
    pub name: String,
    pub repository_id: String,
    pub remote_id: String,
    /// The pull-through distribution that made it.
    pub pull_through_id: String,
    /// For a tag: when it was last found current upstream.
    pub checked_at: Option<NaiveDateTime>,
    /// Its remote's `tag_ttl`.
    pub ttl: i64,
}

impl Cache {
    /// The cache `d` is, serving `repository_id`'s latest version; for a tag, with its last check.
    /// None for a distribution no pull-through distribution made, or one pinned to a version.
    pub fn of(c: &mut DbConnection, d: &Distribution, repository_id: &str, tag: Option<&str>) -> QueryResult<Option<Cache>> {
        let (Some(pull_through_id), Some(remote_id), None) = (&d.pull_through_id, &d.remote_id, &d.repository_version_id) else {
            return Ok(None);
        };
        let Some(r) = remote::find(c, remote_id)? else { return Ok(None) };
        let checked_at = match tag {
            Some(t) => pull_through::tag_checked_at(c, repository_id, t)?,
            None => None,
        };
        Ok(Some(Cache {
            name: d.base_path.clone(),
            repository_id: repository_id.to_string(),
            remote_id: r.id,
            pull_through_id: pull_through_id.clone(),
            checked_at,
            ttl: r.tag_ttl,
        }))
    }

    /// Whether the stored `found` may be served without asking the upstream: by digest always,
    /// by tag while its last check is younger than the remote's `tag_ttl`.
    pub fn fresh(&self, found: &Option<ServedManifest>, by_digest: bool) -> bool {
        found.is_some() && (by_digest || checked_within(self.checked_at, self.ttl))
    }
}

/// Whether a tag's last check is younger than `ttl` seconds.
fn checked_within(checked_at: Option<NaiveDateTime>, ttl: i64) -> bool {
    checked_at.is_some_and(|at| (crate::models::now() - at).num_milliseconds() < ttl.saturating_mul(1000))
}

/// A manifest asked of a name that no distribution serves: when a pull-through distribution
/// covers it (and its remote's includes and excludes let the upstream name through), fetched
/// from the upstream, and only then are the remote, repository and distribution for that
/// upstream repository made and the manifest recorded. `None` when no pull-through
/// distribution covers the name.
pub async fn first_pull(state: &AppState, req: &actix_web::HttpRequest, name: &str, reference: &str) -> Result<Option<ServedManifest>, RegistryError> {
    let n = name.to_string();
    let Some((parent, parent_remote, upstream_name)) = state.db.run(move |c| pull_through::covering(c, &n).map_err(DbError::from)).await? else {
        return Ok(None);
    };
    let Some(parent_remote) = parent_remote else {
        return Err(RegistryError::NameUnknown(format!("{name}: the pull-through distribution '{}' has no remote", parent.name)));
    };
    if crate::api::validate::oci_name(&upstream_name).is_err()
        || !crate::sync::tag_selected(&upstream_name, &parent_remote.include_tags(), &parent_remote.exclude_tags())
    {
        return Err(RegistryError::NameUnknown(name.to_string()));
    }
    if parent.private {
        access::authorize(state, req, name, access::Action::Pull).await?;
    }
    let arrived = crate::models::now();
    let lock = flight(name, reference);
    let _turn = lock.lock().await;
    // Made while this request waited its turn.
    let (n, tag) = (name.to_string(), (!reference.contains(':')).then(|| reference.to_string()));
    let made = state
        .db
        .run(move |c| {
            let Some(d) = crate::models::distribution::find_by_base_path(c, &n)? else { return Ok::<_, DbError>(None) };
            let Some(repo) = d.repository_id.clone() else { return Ok(None) };
            Ok(Cache::of(c, &d, &repo, tag.as_deref())?)
        })
        .await?;
    if let Some(cache) = made {
        return refresh_in_turn(state, &cache, reference, None, arrived).await.map(Some);
    }

    if not_found::remembered(&child_remote_url(&parent_remote, name), reference) {
        return Err(RegistryError::ManifestUnknown(format!("{name}:{reference} (the upstream did not have it a moment ago)")));
    }
    let child_remote = parent_remote.for_upstream_repository(name, &upstream_name);
    let upstream = Arc::new(crate::upstream::Upstream::for_remote(&child_remote).map_err(upstream_error)?);
    let fetched = bounded(&upstream, crate::sync::fetch(&upstream, reference)).await.map_err(|e| {
        not_found::remember(&e, &child_remote_url(&parent_remote, name), reference, child_remote.tag_ttl);
        manifest_error(e, name, reference)
    })?;
    let child = make_cache(state, parent, parent_remote, name, &upstream_name).await?;
    let cache = Cache {
        name: name.to_string(),
        repository_id: child.repository_id.clone().unwrap_or_default(),
        remote_id: child.remote_id.clone().unwrap_or_default(),
        pull_through_id: child.pull_through_id.clone().unwrap_or_default(),
        checked_at: None,
        ttl: child_remote.tag_ttl,
    };
    record_and_serve(state, &cache, upstream, fetched, reference).await.map(Some)
}

async fn make_cache(state: &AppState, parent: Distribution, parent_remote: Remote, name: &str, upstream_name: &str) -> Result<Distribution, RegistryError> {
    let (n, u) = (name.to_string(), upstream_name.to_string());
    let mut attempt = 0;
    loop {
        let (parent, parent_remote, n, u) = (parent.clone(), parent_remote.clone(), n.clone(), u.clone());
        let made = state
            .db
            .run(move |c| crate::db::write_transaction(c, |c| pull_through::make_cache(c, &parent, &parent_remote, &n, &u).map_err(DbError::from)))
            .await;
        match made {
            // Another replica made the same rows first: read theirs.
            Err(DbError::Query(e)) if crate::db::is_unique_violation(&e) && attempt < 3 => attempt += 1,
            Err(e) => return Err(e.into()),
            Ok(Ok(d)) => return Ok(d),
            Ok(Err(taken)) => return Err(RegistryError::NameUnknown(taken)),
        }
    }
}

type Flights = Mutex<HashMap<(String, String), Arc<tokio::sync::Mutex<()>>>>;

/// One fetch per (name, reference) at a time in this process.
fn flight(name: &str, reference: &str) -> Arc<tokio::sync::Mutex<()>> {
    static FLIGHTS: OnceLock<Flights> = OnceLock::new();
    let mut flights = FLIGHTS.get_or_init(Default::default).lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    // Locks nobody holds or waits for are dropped as others are taken.
    flights.retain(|_, l| Arc::strong_count(l) > 1);
    flights.entry((name.to_string(), reference.to_string())).or_default().clone()
}

/// The manifest `reference` of the cache, from the upstream when `stored` is missing or a stale
/// tag: fetched and recorded once however many ask at the same moment.
pub async fn refresh(state: &AppState, cache: &Cache, reference: &str, stored: Option<ServedManifest>) -> Result<ServedManifest, RegistryError> {
    let arrived = crate::models::now();
    let lock = flight(&cache.name, reference);
    let _turn = lock.lock().await;
    refresh_in_turn(state, cache, reference, stored, arrived).await
}

/// `refresh` once this request's turn came: a request that arrived while another checked the
/// same reference serves what that one left.
async fn refresh_in_turn(state: &AppState, cache: &Cache, reference: &str, stored: Option<ServedManifest>, arrived: NaiveDateTime) -> Result<ServedManifest, RegistryError> {
    let (repo, remote_id, parent_id, r) = (cache.repository_id.clone(), cache.remote_id.clone(), cache.pull_through_id.clone(), reference.to_string());
    let by_digest = reference.contains(':');
    let (stored, checked_at, remote, allowed) = state
        .db
        .run(move |c| {
            let remote = remote::find(c, &remote_id)?;
            // Names the pull-through remote's filters leave out now get nothing new upstream.
            let allowed = match (pull_through::remote_of(c, &parent_id)?, &remote) {
                (Some(parent_remote), Some(child)) => {
                    crate::sync::tag_selected(&child.upstream_name, &parent_remote.include_tags(), &parent_remote.exclude_tags())
                }
                _ => true,
            };
            let number = crate::models::repository::find(c, &repo)?.map(|r| r.latest_version_number).unwrap_or(0);
            let m = if by_digest {
                crate::models::content::manifest_by_digest(c, &repo, number, &r)?
            } else {
                crate::models::content::manifest_for_tag(c, &repo, number, &r)?
            };
            let checked = if by_digest { None } else { pull_through::tag_checked_at(c, &repo, &r)? };
            Ok::<_, DbError>((m.or(stored), checked, remote, allowed))
        })
        .await?;
    let remote = remote.ok_or_else(|| RegistryError::NameUnknown(format!("{}: its remote is gone", cache.name)))?;
    if !allowed {
        return stored.ok_or_else(|| RegistryError::NameUnknown(cache.name.clone()));
    }
    if let Some(found) = &stored {
        if by_digest || checked_at.is_some_and(|at| at >= arrived) || checked_within(checked_at, remote.tag_ttl) {
            return Ok(found.clone());
        }
    }
    let upstream = state.upstreams.get(&remote).map_err(upstream_error)?;

    if let (Some(found), false) = (&stored, by_digest) {
        // A stored tag: a HEAD says whether it moved.
        match bounded(&upstream, upstream.head_manifest(reference)).await {
            Ok(Some(digest)) if digest == found.digest => {
                mark_checked(state, cache, reference).await;
                return Ok(found.clone());
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(repository = %cache.name, tag = %reference, error = %e, "the upstream check of a pull-through tag failed; serving the last known manifest");
                mark_checked(state, cache, reference).await;
                return Ok(found.clone());
            }
        }
    }
    if stored.is_none() && not_found::remembered(&child_remote_url(&remote, &cache.name), reference) {
        return Err(RegistryError::ManifestUnknown(format!("{}:{reference} (the upstream did not have it a moment ago)", cache.name)));
    }
    let fetched = match bounded(&upstream, crate::sync::fetch(&upstream, reference)).await {
        Ok(f) => f,
        Err(e) => {
            not_found::remember(&e, &child_remote_url(&remote, &cache.name), reference, remote.tag_ttl);
            if let Some(found) = stored {
                tracing::warn!(repository = %cache.name, tag = %reference, error = %e, "fetching a moved pull-through tag failed; serving the last known manifest");
                mark_checked(state, cache, reference).await;
                return Ok(found);
            }
            return Err(manifest_error(e, &cache.name, reference));
        }
    };
    record_and_serve(state, cache, upstream, fetched, reference).await
}

async fn record_and_serve(
    state: &AppState,
    cache: &Cache,
    upstream: Arc<crate::upstream::Upstream>,
    fetched: (String, crate::sync::Known),
    reference: &str,
) -> Result<ServedManifest, RegistryError> {
    let served = ServedManifest { digest: fetched.0.clone(), media_type: fetched.1.media_type.clone(), data: fetched.1.bytes.clone() };
    let by_digest = reference.contains(':');
    record(state, cache, upstream, fetched, (!by_digest).then(|| reference.to_string())).await?;
    if !by_digest {
        mark_checked(state, cache, reference).await;
    }
    Ok(served)
}

/// What the 404 memory knows a name by: the upstream it was asked of, too.
fn child_remote_url(remote: &Remote, name: &str) -> String {
    format!("{} {name}", remote.url)
}

/// How long a manifest request to the upstream may take when the remote sets no `total_timeout`:
/// requests for the same reference wait behind it.
const UPSTREAM_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

async fn bounded<T>(upstream: &crate::upstream::Upstream, request: impl std::future::Future<Output = Result<T, UpstreamError>>) -> Result<T, UpstreamError> {
    let wait = upstream.total_timeout().unwrap_or(UPSTREAM_WAIT);
    tokio::time::timeout(wait, request).await.unwrap_or_else(|_| Err(UpstreamError::Timeout(upstream.describe())))
}

/// References the upstream answered 404 for, remembered for a while (at most a minute, never
/// longer than the remote's `tag_ttl`), so that clients asking for names or tags that do not
/// exist cannot turn each request into upstream requests (and spend the remote's rate limit).
mod not_found {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    use std::time::{Duration, Instant};

    use crate::upstream::UpstreamError;

    const MAX_REMEMBERED: usize = 10_000;
    const AT_MOST: Duration = Duration::from_secs(60);

    fn memory() -> std::sync::MutexGuard<'static, HashMap<(String, String), Instant>> {
        static MEMORY: OnceLock<Mutex<HashMap<(String, String), Instant>>> = OnceLock::new();
        MEMORY.get_or_init(Default::default).lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn remembered(name: &str, reference: &str) -> bool {
        memory().get(&(name.to_string(), reference.to_string())).is_some_and(|until| *until > Instant::now())
    }

    pub fn remember(e: &UpstreamError, name: &str, reference: &str, ttl_seconds: i64) {
        let ttl = Duration::from_secs(u64::try_from(ttl_seconds).unwrap_or(0)).min(AT_MOST);
        if !matches!(e, UpstreamError::NotFound(_)) || ttl.is_zero() {
            return;
        }
        let mut m = memory();
        if m.len() >= MAX_REMEMBERED {
            let now = Instant::now();
            m.retain(|_, until| *until > now);
            if m.len() >= MAX_REMEMBERED {
                m.clear();
            }
        }
        m.insert((name.to_string(), reference.to_string()), Instant::now() + ttl);
    }
}

fn manifest_error(e: UpstreamError, name: &str, reference: &str) -> RegistryError {
    match e {
        UpstreamError::NotFound(_) => RegistryError::ManifestUnknown(format!("{name}:{reference}")),
        e => upstream_error(e),
    }
}

/// Records a fetched manifest (its blobs as on-demand content of the cache's remote, the tag
/// moved to it) into a new version of the cache's repository.
async fn record(
    state: &AppState,
    cache: &Cache,
    upstream: Arc<crate::upstream::Upstream>,
    (digest, known): (String, crate::sync::Known),
    tag: Option<String>,
) -> Result<(), RegistryError> {
    let manifests = Arc::new(HashMap::from([(digest.clone(), known)]));
    let blobs = Arc::new(crate::sync::blobs_of(&manifests));
    let tags: Arc<Vec<(String, String)>> = Arc::new(tag.into_iter().map(|t| (t, digest.clone())).collect());
    let (repo, remote_id) = (cache.repository_id.clone(), cache.remote_id.clone());
    crate::registry::in_write_transaction(state, move |c| {
        crate::sync::record(c, &repo, &remote_id, false, &upstream, &manifests, &blobs, &HashMap::new(), &tags).map(|_| Ok(()))
    })
    .await
}

async fn mark_checked(state: &AppState, cache: &Cache, tag: &str) {
    let (repo, tag) = (cache.repository_id.clone(), tag.to_string());
    let at = crate::models::now();
    if let Err(e) = state.db.run(move |c| pull_through::mark_checked(c, &repo, &tag, at).map_err(DbError::from)).await {
        tracing::warn!(error = %e, "recording a pull-through tag check failed");
    }
}

fn upstream_error(e: UpstreamError) -> RegistryError {
    RegistryError::from(crate::ondemand::FetchError::Upstream(e))
}
