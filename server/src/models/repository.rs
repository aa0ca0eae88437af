use std::collections::BTreeMap;

use chrono::NaiveDateTime;
use diesel::dsl::count_star;
use diesel::prelude::*;

use super::{NameFilter, Page, Window};
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

pub fn update(conn: &mut DbConnection, row: &Repository) -> QueryResult<()> {
    diesel::update(repository::table.find(&row.id)).set(row).execute(conn).map(|_| ())
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

pub fn list(conn: &mut DbConnection, filter: &NameFilter, window: Window) -> QueryResult<Page<Repository>> {
    let count = crate::filter_by_name!(repository::table.into_boxed(), repository::name, filter)
        .count()
        .get_result(conn)?;
    let rows = crate::filter_by_name!(repository::table.into_boxed(), repository::name, filter)
        .order((repository::pulp_created, repository::id))
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

pub fn list_versions(conn: &mut DbConnection, repository_id: &str, window: Window) -> QueryResult<Page<RepositoryVersion>> {
    let count = repository_version::table
        .filter(repository_version::repository_id.eq(repository_id))
        .count()
        .get_result(conn)?;
    let rows = repository_version::table
        .filter(repository_version::repository_id.eq(repository_id))
        .order(repository_version::number.desc())
        .limit(window.limit)
        .offset(window.offset)
        .select(RepositoryVersion::as_select())
        .load(conn)?;
    Ok(Page { count, rows })
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

/// Makes the next version of a repository from the latest one plus `add` minus `remove`.
/// Returns the new version's number, or None when nothing would change (no empty versions).
pub fn new_version(conn: &mut DbConnection, repository_id: &str, add: &[String], remove: &[String]) -> QueryResult<Option<i64>> {
    use std::collections::HashSet;
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
    Ok(Some(number))
}
