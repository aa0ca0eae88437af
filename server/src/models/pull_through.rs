//! Pull-through caching's rows: which pull-through distribution covers a name, the container
//! remote, repository and distribution it makes for an upstream repository, and when each tag
//! was last found current upstream.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::distribution::{self, Distribution};
use super::remote::{self, Remote, PULL_THROUGH};
use super::repository::{self, Repository};
use crate::db::schema::{distribution as dist, tag_check};
use crate::db::DbConnection;

/// The pull-through distribution whose base path is the longest leading part of `name` (whole
/// path components, not all of it), with its remote and the upstream repository name left over.
pub fn covering(conn: &mut DbConnection, name: &str) -> QueryResult<Option<(Distribution, Option<Remote>, String)>> {
    let prefixes: Vec<&str> = name.match_indices('/').map(|(i, _)| &name[..i]).collect();
    if prefixes.is_empty() {
        return Ok(None);
    }
    let found: Option<Distribution> = dist::table
        .filter(dist::kind.eq(PULL_THROUGH))
        .filter(dist::base_path.eq_any(&prefixes))
        .select(Distribution::as_select())
        .load(conn)?
        .into_iter()
        .max_by_key(|d| d.base_path.len());
    let Some(d) = found else { return Ok(None) };
    let upstream_name = name[d.base_path.len() + 1..].to_string();
    let r = match &d.remote_id {
        Some(id) => remote::find(conn, id)?.filter(|r| r.kind == PULL_THROUGH),
        None => None,
    };
    Ok(Some((d, r, upstream_name)))
}

/// The container remote, repository (keeping one version, as Pulp's do) and distribution,
/// all named `name`, that serve `upstream_name` through the pull-through distribution `parent`:
/// the ones made for it before, else new. Rows of that name made otherwise (a user's repository,
/// remote or distribution) are never taken over: `Err` names them. Call in a write transaction.
pub fn make_cache(conn: &mut DbConnection, parent: &Distribution, parent_remote: &Remote, name: &str, upstream_name: &str) -> QueryResult<Result<Distribution, String>> {
    let taken = |what: &str| Err(format!("{name}: a {what} of that name exists that the pull-through distribution '{}' did not make", parent.name));
    if let Some(d) = distribution::find_by_base_path(conn, name)? {
        return Ok(if d.pull_through_id.as_deref() == Some(parent.id.as_str()) && d.repository_id.is_some() { Ok(d) } else { taken("distribution") });
    }
    if distribution::find_by_name(conn, name)?.is_some() {
        return Ok(taken("distribution"));
    }
    // Left by a distribution made before and since deleted: the same upstream repository.
    let child_remote = match remote::find_by_name(conn, name)? {
        Some(mut r) if r.kind == remote::CONTAINER && r.upstream_name == upstream_name && r.url == parent_remote.url => {
            if parent_remote.copy_settings_to(&mut r) {
                remote::update(conn, &r)?;
            }
            r
        }
        Some(_) => return Ok(taken("remote")),
        None => {
            let r = parent_remote.for_upstream_repository(name, upstream_name);
            remote::insert(conn, &r)?;
            r
        }
    };
    let repository_id = match repository::find_by_name(conn, name)? {
        Some(r) if r.remote_id.as_deref() == Some(child_remote.id.as_str()) => r.id,
        Some(_) => return Ok(taken("repository")),
        None => {
            let t = super::now();
            let r = Repository {
                id: super::new_id(),
                name: name.to_string(),
                description: Some(format!("pulled through '{}'", parent.name)),
                remote_id: Some(child_remote.id.clone()),
                latest_version_number: 0,
                pulp_created: t,
                pulp_last_updated: t,
                pulp_labels: "{}".into(),
                retain_repo_versions: Some(1),
            };
            repository::insert(conn, &r)?;
            r.id
        }
    };
    let d = Distribution {
        repository_id: Some(repository_id),
        private: parent.private,
        hidden: parent.hidden,
        description: Some(format!("pulled through '{}'", parent.name)),
        remote_id: Some(child_remote.id),
        pull_through_id: Some(parent.id.clone()),
        ..Distribution::new(name, name)
    };
    distribution::insert(conn, &d)?;
    Ok(Ok(d))
}

/// The remote of the pull-through distribution `pull_through_id`, when both are still there.
pub fn remote_of(conn: &mut DbConnection, pull_through_id: &str) -> QueryResult<Option<Remote>> {
    let Some(remote_id) = distribution::find(conn, pull_through_id)?.and_then(|d| d.remote_id) else { return Ok(None) };
    remote::find(conn, &remote_id)
}

/// When `tag` of the repository was last found current upstream.
pub fn tag_checked_at(conn: &mut DbConnection, repository_id: &str, tag: &str) -> QueryResult<Option<NaiveDateTime>> {
    tag_check::table
        .find((repository_id, tag))
        .select(tag_check::checked_at)
        .first(conn)
        .optional()
}

pub fn mark_checked(conn: &mut DbConnection, repository_id: &str, tag: &str, at: NaiveDateTime) -> QueryResult<()> {
    let updated = diesel::update(tag_check::table.find((repository_id, tag))).set(tag_check::checked_at.eq(at)).execute(conn)?;
    if updated == 0 {
        let inserted = diesel::insert_into(tag_check::table)
            .values((tag_check::repository_id.eq(repository_id), tag_check::name.eq(tag), tag_check::checked_at.eq(at)))
            .execute(conn);
        match inserted {
            // Another replica marked it at the same moment: either time will do.
            Err(e) if crate::db::is_unique_violation(&e) => {}
            other => {
                other?;
            }
        }
    }
    Ok(())
}
