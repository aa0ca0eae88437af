use std::collections::BTreeMap;

use chrono::NaiveDateTime;
use diesel::dsl::count_star;
use diesel::prelude::*;

use super::filter::Criteria;
use super::{Page, Window};
use crate::db::schema::{content, repository, repository_content, repository_version};
use crate::db::DbConnection;

#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset, serde::Serialize, serde::Deserialize)]
#[diesel(table_name = repository, treat_none_as_null = true)]
pub struct Repository {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    pub remote_id: Option<String>,
    pub latest_version_number: i64,
    pub pulp_created: NaiveDateTime,
    pub pulp_last_updated: NaiveDateTime,
    /// JSON map of labels.
    pub pulp_labels: String,
    /// How many of the newest versions to keep (null keeps all).
    pub retain_repo_versions: Option<i64>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = repository_version)]
pub struct RepositoryVersion {
    pub id: String,
    pub repository_id: String,
    pub number: i64,
    pub base_version_id: Option<String>,
    pub pulp_created: NaiveDateTime,
}

/// Counts per content type (`container.blob`, ...) of what a version added, removed, holds.
#[derive(Debug, Default, Clone)]
pub struct ContentSummary {
    pub added: BTreeMap<String, i64>,
    pub removed: BTreeMap<String, i64>,
    pub present: BTreeMap<String, i64>,
}

/// Inserts the repository and its empty version 0, as Pulp does.
pub fn insert(conn: &mut DbConnection, row: &Repository) -> QueryResult<()> {
    diesel::insert_into(repository::table).values(row).execute(conn)?;
    diesel::insert_into(repository_version::table)
        .values(&RepositoryVersion {
            id: super::new_id(),
            repository_id: row.id.clone(),
            number: 0,
            base_version_id: None,
            pulp_created: row.pulp_created,
        })
        .execute(conn)?;
    Ok(())
}

/// Writes the fields a user edits. `latest_version_number` is not one: a version made between
/// the request and its task (a push) must not be undone by the task's older copy of the row.
pub fn update(conn: &mut DbConnection, row: &Repository) -> QueryResult<()> {
    diesel::update(repository::table.find(&row.id))
        .set((
            repository::name.eq(&row.name),
            repository::description.eq(&row.description),
            repository::remote_id.eq(&row.remote_id),
            repository::pulp_labels.eq(&row.pulp_labels),
            repository::retain_repo_versions.eq(row.retain_repo_versions),
            repository::pulp_last_updated.eq(row.pulp_last_updated),
        ))
        .execute(conn)
        .map(|_| ())
}

pub fn delete(conn: &mut DbConnection, id: &str) -> QueryResult<usize> {
    diesel::delete(repository_content::table.filter(repository_content::repository_id.eq(id)))
        .execute(conn)?;
    diesel::delete(repository_version::table.filter(repository_version::repository_id.eq(id)))
        .execute(conn)?;
    diesel::delete(repository::table.find(id)).execute(conn)
}

pub fn find(conn: &mut DbConnection, id: &str) -> QueryResult<Option<Repository>> {
    repository::table.find(id).select(Repository::as_select()).first(conn).optional()
}

pub fn find_by_name(conn: &mut DbConnection, name: &str) -> QueryResult<Option<Repository>> {
    repository::table
        .filter(repository::name.eq(name))
        .select(Repository::as_select())
        .first(conn)
        .optional()
}

pub fn list(conn: &mut DbConnection, criteria: &Criteria, window: Window) -> QueryResult<Page<Repository>> {
    let postgres = matches!(conn, DbConnection::Pg(_));
    let filtered = || {
        let mut q = crate::filter_text!(repository::table.into_boxed(), repository::name, criteria.text_match("name"));
        q = crate::filter_labels!(q, criteria, postgres);
        if let Some(ids) = criteria.list("pulp_href__in") {
            q = q.filter(repository::id.eq_any(ids));
        }
        crate::filter_range!(q, repository::pulp_last_updated, criteria.time_range("pulp_last_updated"))
    };
    let count = filtered().count().get_result(conn)?;
    let rows = crate::sort_by!(filtered(), criteria, [repository::pulp_created, repository::id], {
        "name" => repository::name,
        "pulp_created" => repository::pulp_created,
        "pulp_last_updated" => repository::pulp_last_updated,
    })
    .limit(window.limit)
    .offset(window.offset)
    .select(Repository::as_select())
    .load(conn)?;
    Ok(Page { count, rows })
}

pub fn find_version(conn: &mut DbConnection, repository_id: &str, number: i64) -> QueryResult<Option<RepositoryVersion>> {
    repository_version::table
        .filter(repository_version::repository_id.eq(repository_id))
        .filter(repository_version::number.eq(number))
        .select(RepositoryVersion::as_select())
        .first(conn)
        .optional()
}

pub fn find_version_by_id(conn: &mut DbConnection, id: &str) -> QueryResult<Option<RepositoryVersion>> {
    repository_version::table.find(id).select(RepositoryVersion::as_select()).first(conn).optional()
}

/// A repository's versions; `content` / `content__in` (content ids) keep those holding that unit
/// / any of those units.
pub fn list_versions(conn: &mut DbConnection, repository_id: &str, criteria: &Criteria, window: Window) -> QueryResult<Page<RepositoryVersion>> {
    let mut holding: Vec<Vec<i64>> = Vec::new();
    if let Some(id) = criteria.text("content") {
        holding.push(numbers_holding_any(conn, repository_id, &[id])?);
    }
    if let Some(ids) = criteria.list("content__in") {
        holding.push(numbers_holding_any(conn, repository_id, &ids)?);
    }
    let filtered = || {
        let mut q = repository_version::table.filter(repository_version::repository_id.eq(repository_id.to_string())).into_boxed();
        q = crate::filter_range!(q, repository_version::number, criteria.integer_range("number"));
        q = crate::filter_range!(q, repository_version::pulp_created, criteria.time_range("pulp_created"));
        for numbers in &holding {
            q = q.filter(repository_version::number.eq_any(numbers.clone()));
        }
        q
    };
    let count = filtered().count().get_result(conn)?;
    let rows = crate::sort_by!(filtered(), criteria, [repository_version::number.desc()], {
        "number" => repository_version::number,
        "pulp_created" => repository_version::pulp_created,
    })
    .limit(window.limit)
    .offset(window.offset)
    .select(RepositoryVersion::as_select())
    .load(conn)?;
    Ok(Page { count, rows })
}

/// The numbers of a repository's versions that hold any of these content units.
fn numbers_holding_any(conn: &mut DbConnection, repository_id: &str, content_ids: &[String]) -> QueryResult<Vec<i64>> {
    let spans: Vec<(i64, Option<i64>)> = repository_content::table
        .filter(repository_content::repository_id.eq(repository_id))
        .filter(repository_content::content_id.eq_any(content_ids))
        .select((repository_content::version_added, repository_content::version_removed))
        .load(conn)?;
    let numbers: Vec<i64> = repository_version::table
        .filter(repository_version::repository_id.eq(repository_id))
        .select(repository_version::number)
        .load(conn)?;
    Ok(numbers.into_iter().filter(|n| spans.iter().any(|(added, removed)| added <= n && removed.is_none_or(|r| *n < r))).collect())
}

/// Which of these ids name no content unit.
pub fn missing_content(conn: &mut DbConnection, ids: &[String]) -> QueryResult<Vec<String>> {
    let found: Vec<String> = content::table.filter(content::id.eq_any(ids)).select(content::id).load(conn)?;
    Ok(ids.iter().filter(|id| !found.contains(id)).cloned().collect())
}

pub fn content_summary(conn: &mut DbConnection, version: &RepositoryVersion) -> QueryResult<ContentSummary> {
    let base = || {
        repository_content::table
            .inner_join(content::table)
            .filter(repository_content::repository_id.eq(version.repository_id.clone()))
            .group_by(content::pulp_type)
            .select((content::pulp_type, count_star()))
            .into_boxed()
    };
    let n = version.number;
    let added: Vec<(String, i64)> = base().filter(repository_content::version_added.eq(n)).load(conn)?;
    let removed: Vec<(String, i64)> = base().filter(repository_content::version_removed.eq(n)).load(conn)?;
    let present: Vec<(String, i64)> = base()
        .filter(repository_content::version_added.le(n))
        .filter(repository_content::version_removed.is_null().or(repository_content::version_removed.gt(n)))
        .load(conn)?;
    Ok(ContentSummary {
        added: added.into_iter().collect(),
        removed: removed.into_iter().collect(),
        present: present.into_iter().collect(),
    })
}

/// Content ids in version `number` with their types.
pub fn version_content(conn: &mut DbConnection, repository_id: &str, number: i64) -> QueryResult<Vec<(String, String)>> {
    repository_content::table
        .inner_join(content::table)
        .filter(repository_content::repository_id.eq(repository_id))
        .filter(repository_content::version_added.le(number))
        .filter(repository_content::version_removed.is_null().or(repository_content::version_removed.gt(number)))
        .select((repository_content::content_id, content::pulp_type))
        .load(conn)
}

/// On PostgreSQL, holds the repository's row until the transaction ends, so that its version
/// writers (a push, a sync, a version delete, pruning) take turns; SQLite's write transactions
/// already do.
fn lock(conn: &mut DbConnection, repository_id: &str) -> QueryResult<()> {
    if let DbConnection::Pg(pg) = conn {
        repository::table.find(repository_id).select(repository::id).for_update().first::<String>(pg).optional()?;
    }
    Ok(())
}

/// The latest version number of a repository whose next version this transaction may write:
/// read under the repository's lock, so that what the writer checks against it (a manifest's
/// blobs, a blob's users) cannot change before its version lands.
pub fn latest_for_write(conn: &mut DbConnection, repository_id: &str) -> QueryResult<i64> {
    lock(conn, repository_id)?;
    repository::table.find(repository_id).select(repository::latest_version_number).first(conn)
}

/// Makes the next version of a repository from the latest one plus `add` minus `remove`.
/// Returns the new version's number, or None when nothing would change (no empty versions).
pub fn new_version(conn: &mut DbConnection, repository_id: &str, add: &[String], remove: &[String]) -> QueryResult<Option<i64>> {
    use std::collections::HashSet;
    lock(conn, repository_id)?;
    let repo: Repository = repository::table.find(repository_id).select(Repository::as_select()).first(conn)?;
    let latest = repo.latest_version_number;
    let present: HashSet<String> = version_content(conn, repository_id, latest)?.into_iter().map(|(id, _)| id).collect();
    let to_add: Vec<&String> = add.iter().filter(|id| !present.contains(*id)).collect::<HashSet<_>>().into_iter().collect();
    let to_remove: Vec<&String> = remove.iter().filter(|id| present.contains(*id)).collect::<HashSet<_>>().into_iter().collect();
    if to_add.is_empty() && to_remove.is_empty() {
        return Ok(None);
    }
    let number = latest + 1;
    let base = find_version(conn, repository_id, latest)?;
    diesel::insert_into(repository_version::table)
        .values(&RepositoryVersion {
            id: super::new_id(),
            repository_id: repository_id.to_string(),
            number,
            base_version_id: base.map(|b| b.id),
            pulp_created: super::now(),
        })
        .execute(conn)?;
    for id in to_add {
        diesel::insert_into(repository_content::table)
            .values((
                repository_content::id.eq(super::new_id()),
                repository_content::repository_id.eq(repository_id),
                repository_content::content_id.eq(id),
                repository_content::version_added.eq(number),
            ))
            .execute(conn)?;
    }
    for chunk in to_remove.chunks(500) {
        diesel::update(
            repository_content::table
                .filter(repository_content::repository_id.eq(repository_id))
                .filter(repository_content::content_id.eq_any(chunk))
                .filter(repository_content::version_removed.is_null()),
        )
        .set(repository_content::version_removed.eq(number))
        .execute(conn)?;
    }
    diesel::update(repository::table.find(repository_id))
        .set((repository::latest_version_number.eq(number), repository::pulp_last_updated.eq(super::now())))
        .execute(conn)?;
    prune_versions(conn, repository_id)?;
    Ok(Some(number))
}

/// Deletes the versions the repository's `retain_repo_versions` no longer keeps, as Pulp does
/// after each new version: a version a distribution serves is protected and not counted; of the
/// rest, all but the newest N go (so never the latest). Each is squashed into the next
/// (`delete_version`), so the kept versions hold exactly what they held. Returns the numbers
/// deleted.
pub fn prune_versions(conn: &mut DbConnection, repository_id: &str) -> QueryResult<Vec<i64>> {
    use crate::db::schema::distribution;
    lock(conn, repository_id)?;
    let Some(keep) = find(conn, repository_id)?.and_then(|r| r.retain_repo_versions) else {
        return Ok(Vec::new());
    };
    let versions: Vec<(String, i64)> = repository_version::table
        .filter(repository_version::repository_id.eq(repository_id))
        .order(repository_version::number.desc())
        .select((repository_version::id, repository_version::number))
        .load(conn)?;
    // Locked before the pins are read: a distribution pinning one of them meanwhile waits for
    // this transaction (its reference needs the row), so pruning never unpins a distribution.
    if let DbConnection::Pg(pg) = conn {
        repository_version::table
            .filter(repository_version::repository_id.eq(repository_id))
            .select(repository_version::id)
            .for_update()
            .load::<String>(pg)?;
    }
    let ids: Vec<&String> = versions.iter().map(|(id, _)| id).collect();
    let pinned: Vec<Option<String>> = distribution::table
        .filter(distribution::repository_version_id.eq_any(ids))
        .select(distribution::repository_version_id)
        .load(conn)?;
    let keep = usize::try_from(keep.max(1)).unwrap_or(usize::MAX);
    let mut doomed: Vec<i64> = versions
        .iter()
        .filter(|(id, _)| !pinned.iter().flatten().any(|p| p == id))
        .skip(keep)
        .map(|(_, n)| *n)
        .collect();
    doomed.sort_unstable();
    for n in &doomed {
        delete_version(conn, repository_id, *n)?;
    }
    Ok(doomed)
}

/// The number of the version after `number` (numbers have gaps once versions are deleted).
pub fn next_version_number(conn: &mut DbConnection, repository_id: &str, number: i64) -> QueryResult<Option<i64>> {
    repository_version::table
        .filter(repository_version::repository_id.eq(repository_id))
        .filter(repository_version::number.gt(number))
        .select(diesel::dsl::min(repository_version::number))
        .first(conn)
}

/// Deletes version `number`, which must have a later version: its changes are folded into the
/// next version (Pulp's squash), so every other version keeps exactly the content it had.
/// Versions based on it lose their base; a distribution serving it serves nothing.
pub fn delete_version(conn: &mut DbConnection, repository_id: &str, number: i64) -> QueryResult<()> {
    use crate::db::schema::distribution;
    lock(conn, repository_id)?;
    let version = find_version(conn, repository_id, number)?.ok_or(diesel::result::Error::NotFound)?;
    let next = next_version_number(conn, repository_id, number)?.ok_or(diesel::result::Error::NotFound)?;
    let rows = || repository_content::table.filter(repository_content::repository_id.eq(repository_id));

    // Added here and removed by the next version: in no version once this one is gone.
    diesel::delete(rows().filter(repository_content::version_added.eq(number)).filter(repository_content::version_removed.eq(next)))
        .execute(conn)?;
    // Removed here and added back by the next version: one membership that simply continues.
    let removed_here: Vec<(String, String)> = rows()
        .filter(repository_content::version_removed.eq(number))
        .select((repository_content::id, repository_content::content_id))
        .load(conn)?;
    let readded: std::collections::HashMap<String, (String, Option<i64>)> = rows()
        .filter(repository_content::version_added.eq(next))
        .select((repository_content::content_id, repository_content::id, repository_content::version_removed))
        .load::<(String, String, Option<i64>)>(conn)?
        .into_iter()
        .map(|(content, id, removed)| (content, (id, removed)))
        .collect();
    for (row_id, content_id) in removed_here {
        if let Some((readded_id, removed)) = readded.get(&content_id) {
            diesel::delete(repository_content::table.find(readded_id)).execute(conn)?;
            diesel::update(repository_content::table.find(&row_id)).set(repository_content::version_removed.eq(removed)).execute(conn)?;
        }
    }
    diesel::update(rows().filter(repository_content::version_added.eq(number)))
        .set(repository_content::version_added.eq(next))
        .execute(conn)?;
    diesel::update(rows().filter(repository_content::version_removed.eq(number)))
        .set(repository_content::version_removed.eq(next))
        .execute(conn)?;

    let none: Option<String> = None;
    diesel::update(repository_version::table.filter(repository_version::base_version_id.eq(&version.id)))
        .set(repository_version::base_version_id.eq(&none))
        .execute(conn)?;
    diesel::update(distribution::table.filter(distribution::repository_version_id.eq(&version.id)))
        .set(distribution::repository_version_id.eq(&none))
        .execute(conn)?;
    diesel::delete(repository_version::table.find(&version.id)).execute(conn)?;
    Ok(())
}

/// Whether version `number` of the repository holds the unit.
pub fn holds(conn: &mut DbConnection, repository_id: &str, number: i64, content_id: &str) -> QueryResult<bool> {
    use diesel::dsl::{exists, select};
    select(exists(
        repository_content::table
            .filter(repository_content::repository_id.eq(repository_id))
            .filter(repository_content::content_id.eq(content_id))
            .filter(repository_content::version_added.le(number))
            .filter(repository_content::version_removed.is_null().or(repository_content::version_removed.gt(number))),
    ))
    .get_result(conn)
}
