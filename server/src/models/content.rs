//! Content units: blobs, manifests (and manifest lists), tags. A unit's row in `content`
//! carries its type and creation time; the typed tables carry the rest.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::{Page, Window};
use crate::db::schema::{blob, content, content_artifact, manifest, manifest_blob, manifest_list_entry, repository_content, tag};
use crate::db::DbConnection;

pub const BLOB: &str = "container.blob";
pub const MANIFEST: &str = "container.manifest";
pub const TAG: &str = "container.tag";

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = content)]
pub struct Content {
    pub id: String,
    pub pulp_type: String,
    pub pulp_created: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable)]
pub struct BlobRow {
    pub id: String,
    pub pulp_created: NaiveDateTime,
    pub digest: String,
    /// The stored artifact, when the bytes are here.
    pub artifact_id: Option<String>,
}

#[derive(Debug, Clone, Queryable)]
pub struct ManifestRow {
    pub id: String,
    pub pulp_created: NaiveDateTime,
    pub digest: String,
    pub media_type: String,
    pub schema_version: i32,
    pub config_blob_id: Option<String>,
}

#[derive(Debug, Clone, Queryable)]
pub struct TagRow {
    pub id: String,
    pub pulp_created: NaiveDateTime,
    pub name: String,
    pub tagged_manifest_id: String,
}

/// Which units a content list covers: all, or those in one repository version.
#[derive(Debug, Clone, Default)]
pub struct ContentFilter {
    pub version: Option<(String, i64)>,
    pub digest: Option<String>,
    pub name: Option<String>,
}

macro_rules! in_version {
    ($query:expr, $id_column:expr, $filter:expr) => {{
        let mut q = $query;
        if let Some((repository_id, number)) = &$filter.version {
            let number: i64 = *number;
            q = q.filter(
                $id_column.eq_any(
                    repository_content::table
                        .filter(repository_content::repository_id.eq(repository_id.clone()))
                        .filter(repository_content::version_added.le(number))
                        .filter(
                            repository_content::version_removed
                                .is_null()
                                .or(repository_content::version_removed.gt(number)),
                        )
                        .select(repository_content::content_id),
                ),
            );
        }
        q
    }};
}

pub fn list_blobs(conn: &mut DbConnection, filter: &ContentFilter, window: Window) -> QueryResult<Page<BlobRow>> {
    let boxed = || {
        let mut q = in_version!(
            blob::table
                .inner_join(content::table)
                .left_join(content_artifact::table.on(content_artifact::content_id.eq(blob::content_id)))
                .into_boxed(),
            blob::content_id,
            filter
        );
        if let Some(d) = &filter.digest {
            q = q.filter(blob::digest.eq(d.clone()));
        }
        q
    };
    let count = boxed().count().get_result(conn)?;
    let rows = boxed()
        .order((content::pulp_created, blob::content_id))
        .limit(window.limit)
        .offset(window.offset)
        .select((blob::content_id, content::pulp_created, blob::digest, content_artifact::artifact_id.nullable()))
        .load::<(String, NaiveDateTime, String, Option<String>)>(conn)?
        .into_iter()
        .map(|(id, pulp_created, digest, artifact_id)| BlobRow { id, pulp_created, digest, artifact_id })
        .collect();
    Ok(Page { count, rows })
}

pub fn find_blob(conn: &mut DbConnection, id: &str) -> QueryResult<Option<BlobRow>> {
    blob::table
        .inner_join(content::table)
        .left_join(content_artifact::table.on(content_artifact::content_id.eq(blob::content_id)))
        .filter(blob::content_id.eq(id))
        .select((blob::content_id, content::pulp_created, blob::digest, content_artifact::artifact_id.nullable()))
        .first::<(String, NaiveDateTime, String, Option<String>)>(conn)
        .optional()
        .map(|row| row.map(|(id, pulp_created, digest, a)| BlobRow { id, pulp_created, digest, artifact_id: a }))
}

type ManifestColumns = (
    manifest::content_id,
    content::pulp_created,
    manifest::digest,
    manifest::media_type,
    manifest::schema_version,
    manifest::config_blob_id,
);
const MANIFEST_COLUMNS: ManifestColumns = (
    manifest::content_id,
    content::pulp_created,
    manifest::digest,
    manifest::media_type,
    manifest::schema_version,
    manifest::config_blob_id,
);

pub fn list_manifests(conn: &mut DbConnection, filter: &ContentFilter, window: Window) -> QueryResult<Page<ManifestRow>> {
    let boxed = || {
        let mut q = in_version!(manifest::table.inner_join(content::table).into_boxed(), manifest::content_id, filter);
        if let Some(d) = &filter.digest {
            q = q.filter(manifest::digest.eq(d.clone()));
        }
        q
    };
    let count = boxed().count().get_result(conn)?;
    let rows = boxed()
        .order((content::pulp_created, manifest::content_id))
        .limit(window.limit)
        .offset(window.offset)
        .select(MANIFEST_COLUMNS)
        .load(conn)?;
    Ok(Page { count, rows })
}

pub fn find_manifest(conn: &mut DbConnection, id: &str) -> QueryResult<Option<ManifestRow>> {
    manifest::table
        .inner_join(content::table)
        .filter(manifest::content_id.eq(id))
        .select(MANIFEST_COLUMNS)
        .first(conn)
        .optional()
}

/// Blob ids a manifest references (config excluded) and manifest ids a list references.
pub fn manifest_links(conn: &mut DbConnection, id: &str) -> QueryResult<(Vec<String>, Vec<String>)> {
    let blobs = manifest_blob::table
        .filter(manifest_blob::manifest_id.eq(id))
        .select(manifest_blob::blob_id)
        .load(conn)?;
    let listed = manifest_list_entry::table
        .filter(manifest_list_entry::list_id.eq(id))
        .select(manifest_list_entry::manifest_id)
        .load(conn)?;
    Ok((blobs, listed))
}

pub fn list_tags(conn: &mut DbConnection, filter: &ContentFilter, window: Window) -> QueryResult<Page<TagRow>> {
    let boxed = || {
        let mut q = in_version!(tag::table.inner_join(content::table).into_boxed(), tag::content_id, filter);
        if let Some(n) = &filter.name {
            q = q.filter(tag::name.eq(n.clone()));
        }
        q
    };
    let count = boxed().count().get_result(conn)?;
    let rows = boxed()
        .order((tag::name, tag::content_id))
        .limit(window.limit)
        .offset(window.offset)
        .select((tag::content_id, content::pulp_created, tag::name, tag::tagged_manifest_id))
        .load(conn)?;
    Ok(Page { count, rows })
}

pub fn find_tag(conn: &mut DbConnection, id: &str) -> QueryResult<Option<TagRow>> {
    tag::table
        .inner_join(content::table)
        .filter(tag::content_id.eq(id))
        .select((tag::content_id, content::pulp_created, tag::name, tag::tagged_manifest_id))
        .first(conn)
        .optional()
}
