//! `pulp_href`s: how objects are named on the wire, and how a named object is found again.

pub const API: &str = "/pulp/api/v3";
pub const REMOTES: &str = "/pulp/api/v3/remotes/container/container/";
pub const REPOSITORIES: &str = "/pulp/api/v3/repositories/container/container/";
pub const DISTRIBUTIONS: &str = "/pulp/api/v3/distributions/container/container/";
pub const BLOBS: &str = "/pulp/api/v3/content/container/blobs/";
pub const MANIFESTS: &str = "/pulp/api/v3/content/container/manifests/";
pub const TAGS: &str = "/pulp/api/v3/content/container/tags/";
pub const ARTIFACTS: &str = "/pulp/api/v3/artifacts/";
pub const TASKS: &str = "/pulp/api/v3/tasks/";

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
