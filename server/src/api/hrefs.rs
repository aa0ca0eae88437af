//! `pulp_href`s: how objects are named on the wire, and how a named object is found again.

pub const API: &str = "/pulp/api/v3";
pub const REMOTES: &str = "/pulp/api/v3/remotes/container/container/";
pub const REPOSITORIES: &str = "/pulp/api/v3/repositories/container/container/";
pub const DISTRIBUTIONS: &str = "/pulp/api/v3/distributions/container/container/";
pub const REMOTES_PULL_THROUGH: &str = "/pulp/api/v3/remotes/container/pull-through/";
pub const DISTRIBUTIONS_PULL_THROUGH: &str = "/pulp/api/v3/distributions/container/pull-through/";
pub const BLOBS: &str = "/pulp/api/v3/content/container/blobs/";
pub const MANIFESTS: &str = "/pulp/api/v3/content/container/manifests/";
pub const TAGS: &str = "/pulp/api/v3/content/container/tags/";
pub const ARTIFACTS: &str = "/pulp/api/v3/artifacts/";
pub const TASKS: &str = "/pulp/api/v3/tasks/";
pub const WORKERS: &str = "/pulp/api/v3/workers/";
pub const SYNC_SCHEDULES: &str = "/pulp/api/v3/sync-schedules/";

pub fn remote(id: &str) -> String {
    format!("{REMOTES}{id}/")
}
pub fn repository(id: &str) -> String {
    format!("{REPOSITORIES}{id}/")
}
pub fn repository_versions(repository_id: &str) -> String {
    format!("{REPOSITORIES}{repository_id}/versions/")
}
pub fn repository_version(repository_id: &str, number: i64) -> String {
    format!("{REPOSITORIES}{repository_id}/versions/{number}/")
}
pub fn distribution(id: &str) -> String {
    format!("{DISTRIBUTIONS}{id}/")
}
pub fn remote_pull_through(id: &str) -> String {
    format!("{REMOTES_PULL_THROUGH}{id}/")
}
pub fn distribution_pull_through(id: &str) -> String {
    format!("{DISTRIBUTIONS_PULL_THROUGH}{id}/")
}
pub fn blob(id: &str) -> String {
    format!("{BLOBS}{id}/")
}
pub fn manifest(id: &str) -> String {
    format!("{MANIFESTS}{id}/")
}
pub fn tag(id: &str) -> String {
    format!("{TAGS}{id}/")
}
pub fn artifact(id: &str) -> String {
    format!("{ARTIFACTS}{id}/")
}
pub fn task(id: &str) -> String {
    format!("{TASKS}{id}/")
}
/// Worker names (`0@host:pid:instance`) are path-safe except for unusual host names.
pub fn worker(name: &str) -> String {
    let segment: String = url::form_urlencoded::byte_serialize(name.as_bytes()).collect();
    format!("{WORKERS}{}/", segment.replace("%40", "@").replace("%3A", ":"))
}
pub fn parse_worker(href: &str) -> Option<String> {
    let segment = href.strip_prefix(WORKERS)?.strip_suffix('/')?;
    let name: String = url::form_urlencoded::parse(format!("n={}", segment.replace('+', "%2B")).as_bytes()).next()?.1.into_owned();
    (!name.is_empty() && !name.contains('/')).then_some(name)
}

/// The id in `{prefix}{id}/`, if `href` has that shape and the id is a UUID.
fn id_under(href: &str, prefix: &str) -> Option<String> {
    let id = href.strip_prefix(prefix)?.strip_suffix('/')?;
    uuid::Uuid::parse_str(id).ok().map(|u| u.to_string())
}

pub fn parse_remote(href: &str) -> Option<String> {
    id_under(href, REMOTES)
}
pub fn parse_repository(href: &str) -> Option<String> {
    id_under(href, REPOSITORIES)
}

/// `(repository id, version number)` of a repository version href.
pub fn parse_repository_version(href: &str) -> Option<(String, i64)> {
    let rest = href.strip_prefix(REPOSITORIES)?.strip_suffix('/')?;
    let (id, number) = rest.split_once("/versions/")?;
    let id = uuid::Uuid::parse_str(id).ok()?.to_string();
    Some((id, number.parse().ok().filter(|n: &i64| *n >= 0)?))
}

pub fn parse_distribution(href: &str) -> Option<String> {
    id_under(href, DISTRIBUTIONS)
}
pub fn parse_remote_pull_through(href: &str) -> Option<String> {
    id_under(href, REMOTES_PULL_THROUGH)
}
pub fn parse_distribution_pull_through(href: &str) -> Option<String> {
    id_under(href, DISTRIBUTIONS_PULL_THROUGH)
}
pub fn parse_blob(href: &str) -> Option<String> {
    id_under(href, BLOBS)
}
pub fn parse_manifest(href: &str) -> Option<String> {
    id_under(href, MANIFESTS)
}
pub fn parse_tag(href: &str) -> Option<String> {
    id_under(href, TAGS)
}
/// The content id of a blob's, manifest's or tag's href.
pub fn parse_content(href: &str) -> Option<String> {
    parse_blob(href).or_else(|| parse_manifest(href)).or_else(|| parse_tag(href))
}
pub fn parse_artifact(href: &str) -> Option<String> {
    id_under(href, ARTIFACTS)
}
pub fn parse_task(href: &str) -> Option<String> {
    id_under(href, TASKS)
}
pub fn sync_schedule(id: &str) -> String {
    format!("{SYNC_SCHEDULES}{id}/")
}
pub fn parse_sync_schedule(href: &str) -> Option<String> {
    id_under(href, SYNC_SCHEDULES)
}
