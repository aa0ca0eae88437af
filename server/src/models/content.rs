//! Content units: blobs, manifests (and manifest lists), tags. A unit's row in `content`
//! carries its type and creation time; the typed tables carry the rest.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::filter::Criteria;
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

/// Which units a content list covers: all, or those in / added by / removed by a repository
/// version (repository id, number); the other filters and the order are in `criteria`.
#[derive(Debug, Clone, Default)]
pub struct ContentFilter {
    pub version: Option<(String, i64)>,
    pub added_in: Option<(String, i64)>,
    pub removed_in: Option<(String, i64)>,
    pub criteria: Criteria,
}

/// Content ids in version `number` of a repository (a subquery). Written out as SQL once more
/// in `distribution::lookup_manifest`: a change to what a version holds goes in both.
macro_rules! version_members {
    ($repository_id:expr, $number:expr) => {
        repository_content::table
            .filter(repository_content::repository_id.eq($repository_id))
            .filter(repository_content::version_added.le($number))
            .filter(repository_content::version_removed.is_null().or(repository_content::version_removed.gt($number)))
            .select(repository_content::content_id)
    };
}
pub(crate) use version_members;

macro_rules! in_version {
    ($query:expr, $id_column:expr, $filter:expr) => {{
        let mut q = $query;
        if let Some((repository_id, number)) = &$filter.version {
            q = q.filter($id_column.eq_any(version_members!(repository_id.clone(), *number)));
        }
        if let Some((repository_id, number)) = &$filter.added_in {
            q = q.filter(
                $id_column.eq_any(
                    repository_content::table
                        .filter(repository_content::repository_id.eq(repository_id.clone()))
                        .filter(repository_content::version_added.eq(*number))
                        .select(repository_content::content_id),
                ),
            );
        }
        if let Some((repository_id, number)) = &$filter.removed_in {
            q = q.filter(
                $id_column.eq_any(
                    repository_content::table
                        .filter(repository_content::repository_id.eq(repository_id.clone()))
                        .filter(repository_content::version_removed.eq(*number))
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
        if let Some(ids) = filter.criteria.list("pulp_href__in") {
            q = q.filter(blob::content_id.eq_any(ids));
        }
        crate::filter_text!(q, blob::digest, filter.criteria.text_match("digest"))
    };
    let count = boxed().count().get_result(conn)?;
    let rows = crate::sort_by!(boxed(), filter.criteria, [content::pulp_created, blob::content_id], {
        "pulp_created" => content::pulp_created,
        "digest" => blob::digest,
    })
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
        if let Some(ids) = filter.criteria.list("pulp_href__in") {
            q = q.filter(manifest::content_id.eq_any(ids));
        }
        if let Some(types) = filter.criteria.list("media_type") {
            q = q.filter(manifest::media_type.eq_any(types));
        }
        crate::filter_text!(q, manifest::digest, filter.criteria.text_match("digest"))
    };
    let count = boxed().count().get_result(conn)?;
    let rows = crate::sort_by!(boxed(), filter.criteria, [content::pulp_created, manifest::content_id], {
        "pulp_created" => content::pulp_created,
        "digest" => manifest::digest,
    })
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
        if let Some(ids) = filter.criteria.list("pulp_href__in") {
            q = q.filter(tag::content_id.eq_any(ids));
        }
        // `digest` and `media_type` are the tagged manifest's.
        if let Some(digests) = filter.criteria.list("digest") {
            q = q.filter(tag::tagged_manifest_id.eq_any(manifest::table.filter(manifest::digest.eq_any(digests)).select(manifest::content_id)));
        }
        if let Some(types) = filter.criteria.list("media_type") {
            q = q.filter(tag::tagged_manifest_id.eq_any(manifest::table.filter(manifest::media_type.eq_any(types)).select(manifest::content_id)));
        }
        crate::filter_text!(q, tag::name, filter.criteria.text_match("name"))
    };
    let count = boxed().count().get_result(conn)?;
    let rows = crate::sort_by!(boxed(), filter.criteria, [tag::name, tag::content_id], {
        "pulp_created" => content::pulp_created,
        "name" => tag::name,
    })
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

fn new_content(conn: &mut DbConnection, pulp_type: &str) -> QueryResult<String> {
    let id = super::new_id();
    diesel::insert_into(content::table)
        .values(&Content { id: id.clone(), pulp_type: pulp_type.into(), pulp_created: super::now() })
        .execute(conn)?;
    Ok(id)
}

/// Drops a content row created for a unit that turned out to exist already (lost a race).
fn drop_content(conn: &mut DbConnection, id: &str) -> QueryResult<()> {
    diesel::delete(content::table.find(id)).execute(conn).map(|_| ())
}

pub fn blob_id(conn: &mut DbConnection, digest: &str) -> QueryResult<Option<String>> {
    blob::table.filter(blob::digest.eq(digest)).select(blob::content_id).first(conn).optional()
}

/// The blob unit for `digest`, created if new. Content is unique by digest, shared by repositories.
pub fn ensure_blob(conn: &mut DbConnection, digest: &str) -> QueryResult<String> {
    if let Some(id) = blob_id(conn, digest)? {
        return Ok(id);
    }
    let id = new_content(conn, BLOB)?;
    let inserted = crate::insert_or_ignore!(conn, diesel::insert_into(blob::table).values((blob::content_id.eq(&id), blob::digest.eq(digest))))?;
    if inserted == 0 {
        drop_content(conn, &id)?;
        return blob_id(conn, digest)?.ok_or(diesel::result::Error::NotFound);
    }
    Ok(id)
}

pub fn manifest_id(conn: &mut DbConnection, digest: &str) -> QueryResult<Option<String>> {
    manifest::table.filter(manifest::digest.eq(digest)).select(manifest::content_id).first(conn).optional()
}

/// What a manifest references, for storing it.
#[derive(Debug, Clone)]
pub struct NewManifest {
    pub digest: String,
    pub media_type: String,
    pub data: Vec<u8>,
    pub config_blob_id: Option<String>,
    pub blob_ids: Vec<String>,
    /// (manifest id, architecture, os) of listed manifests, for lists and indexes.
    pub listed: Vec<(String, Option<String>, Option<String>)>,
}

/// Returns (id, created?).
pub fn ensure_manifest(conn: &mut DbConnection, m: &NewManifest) -> QueryResult<(String, bool)> {
    if let Some(id) = manifest_id(conn, &m.digest)? {
        return Ok((id, false));
    }
    let id = new_content(conn, MANIFEST)?;
    let facts = super::referrer::ReferrerFacts::of(&m.media_type, &m.data);
    let inserted = crate::insert_or_ignore!(
        conn,
        diesel::insert_into(manifest::table).values((
            manifest::content_id.eq(&id),
            manifest::digest.eq(&m.digest),
            manifest::media_type.eq(&m.media_type),
            manifest::schema_version.eq(2),
            manifest::data.eq(&m.data),
            manifest::config_blob_id.eq(&m.config_blob_id),
            manifest::subject.eq(&facts.subject),
            manifest::artifact_type.eq(&facts.artifact_type),
            manifest::annotations.eq(&facts.annotations),
        ))
    )?;
    if inserted == 0 {
        drop_content(conn, &id)?;
        return Ok((manifest_id(conn, &m.digest)?.ok_or(diesel::result::Error::NotFound)?, false));
    }
    for b in &m.blob_ids {
        crate::insert_or_ignore!(conn, diesel::insert_into(manifest_blob::table).values((manifest_blob::manifest_id.eq(&id), manifest_blob::blob_id.eq(b))))?;
    }
    for (child, arch, os) in &m.listed {
        crate::insert_or_ignore!(
            conn,
            diesel::insert_into(manifest_list_entry::table).values((
                manifest_list_entry::list_id.eq(&id),
                manifest_list_entry::manifest_id.eq(child),
                manifest_list_entry::architecture.eq(arch),
                manifest_list_entry::os.eq(os),
            ))
        )?;
    }
    Ok((id, true))
}

fn tag_id(conn: &mut DbConnection, name: &str, manifest_id: &str) -> QueryResult<Option<String>> {
    tag::table
        .filter(tag::name.eq(name))
        .filter(tag::tagged_manifest_id.eq(manifest_id))
        .select(tag::content_id)
        .first(conn)
        .optional()
}

/// The tag unit `name → manifest`: a tag that moves is a new unit (as in Pulp).
pub fn ensure_tag(conn: &mut DbConnection, name: &str, manifest_id: &str) -> QueryResult<String> {
    if let Some(id) = tag_id(conn, name, manifest_id)? {
        return Ok(id);
    }
    let id = new_content(conn, TAG)?;
    let inserted = crate::insert_or_ignore!(
        conn,
        diesel::insert_into(tag::table).values((tag::content_id.eq(&id), tag::name.eq(name), tag::tagged_manifest_id.eq(manifest_id)))
    )?;
    if inserted == 0 {
        drop_content(conn, &id)?;
        return tag_id(conn, name, manifest_id)?.ok_or(diesel::result::Error::NotFound);
    }
    Ok(id)
}

/// Records where a blob's bytes are (`artifact_id`) or can be fetched (`remote_artifact`).
pub fn ensure_blob_file(
    conn: &mut DbConnection,
    blob_id: &str,
    digest: &str,
    artifact_id: Option<&str>,
    remote: Option<(&str, &str, Option<i64>)>,
) -> QueryResult<()> {
    use crate::db::schema::remote_artifact;
    let existing: Option<(String, Option<String>)> = content_artifact::table
        .filter(content_artifact::content_id.eq(blob_id))
        .select((content_artifact::id, content_artifact::artifact_id))
        .first(conn)
        .optional()?;
    let ca_id = match existing {
        Some((id, current)) => {
            if current.is_none() && artifact_id.is_some() {
                diesel::update(content_artifact::table.find(&id)).set(content_artifact::artifact_id.eq(artifact_id)).execute(conn)?;
            }
            id
        }
        None => {
            let id = super::new_id();
            crate::insert_or_ignore!(
                conn,
                diesel::insert_into(content_artifact::table).values((
                    content_artifact::id.eq(&id),
                    content_artifact::content_id.eq(blob_id),
                    content_artifact::relative_path.eq(digest),
                    content_artifact::artifact_id.eq(artifact_id),
                ))
            )?;
            content_artifact::table
                .filter(content_artifact::content_id.eq(blob_id))
                .select(content_artifact::id)
                .first(conn)?
        }
    };
    if let Some((remote_id, url, size)) = remote {
        let updated = diesel::update(
            remote_artifact::table
                .filter(remote_artifact::content_artifact_id.eq(&ca_id))
                .filter(remote_artifact::remote_id.eq(remote_id)),
        )
        .set((remote_artifact::url.eq(url), remote_artifact::size.eq(size)))
        .execute(conn)?;
        if updated == 0 {
            crate::insert_or_ignore!(
                conn,
                diesel::insert_into(remote_artifact::table).values((
                    remote_artifact::id.eq(super::new_id()),
                    remote_artifact::content_artifact_id.eq(&ca_id),
                    remote_artifact::remote_id.eq(remote_id),
                    remote_artifact::url.eq(url),
                    remote_artifact::sha256.eq(digest.strip_prefix("sha256:")),
                    remote_artifact::size.eq(size),
                ))
            )?;
        }
    }
    Ok(())
}

/// Blob digests (with their ids) that have no stored artifact yet.
pub fn blobs_without_artifact(conn: &mut DbConnection, ids: &[String]) -> QueryResult<Vec<(String, String)>> {
    let mut out = Vec::new();
    for chunk in ids.chunks(500) {
        let rows: Vec<(String, String, Option<String>)> = blob::table
            .left_join(content_artifact::table.on(content_artifact::content_id.eq(blob::content_id)))
            .filter(blob::content_id.eq_any(chunk))
            .select((blob::content_id, blob::digest, content_artifact::artifact_id.nullable()))
            .load(conn)?;
        out.extend(rows.into_iter().filter(|(_, _, a)| a.is_none()).map(|(id, d, _)| (id, d)));
    }
    Ok(out)
}

/// A manifest as the registry serves it.
#[derive(Debug, Clone)]
pub struct ServedManifest {
    pub digest: String,
    pub media_type: String,
    pub data: Vec<u8>,
}

pub fn manifest_for_tag(conn: &mut DbConnection, repository_id: &str, number: i64, name: &str) -> QueryResult<Option<ServedManifest>> {
    tag::table
        .inner_join(manifest::table.on(manifest::content_id.eq(tag::tagged_manifest_id)))
        .filter(tag::name.eq(name))
        .filter(tag::content_id.eq_any(version_members!(repository_id, number)))
        .select((manifest::digest, manifest::media_type, manifest::data))
        .first::<(String, String, Vec<u8>)>(conn)
        .optional()
        .map(|r| r.map(|(digest, media_type, data)| ServedManifest { digest, media_type, data }))
}

pub fn manifest_by_digest(conn: &mut DbConnection, repository_id: &str, number: i64, digest: &str) -> QueryResult<Option<ServedManifest>> {
    manifest::table
        .filter(manifest::digest.eq(digest))
        .filter(manifest::content_id.eq_any(version_members!(repository_id, number)))
        .select((manifest::digest, manifest::media_type, manifest::data))
        .first::<(String, String, Vec<u8>)>(conn)
        .optional()
        .map(|r| r.map(|(digest, media_type, data)| ServedManifest { digest, media_type, data }))
}

/// Tag names in a version, sorted, after `last`, at most `limit`.
pub fn tag_names(conn: &mut DbConnection, repository_id: &str, number: i64, last: Option<&str>, limit: i64) -> QueryResult<Vec<String>> {
    let mut q = tag::table
        .filter(tag::content_id.eq_any(version_members!(repository_id, number)))
        .select(tag::name)
        .order(tag::name)
        .limit(limit)
        .into_boxed();
    if let Some(l) = last {
        q = q.filter(tag::name.gt(l.to_string()));
    }
    q.load(conn)
}

/// Where a blob's bytes are: stored, or fetchable from a remote.
#[derive(Debug, Clone)]
pub struct BlobSource {
    pub blob_id: String,
    pub digest: String,
    pub artifact: Option<super::artifact::Artifact>,
    pub remote: Option<(super::remote::Remote, String, Option<i64>)>,
}

pub fn blob_in_version(conn: &mut DbConnection, repository_id: &str, number: i64, digest: &str) -> QueryResult<Option<BlobSource>> {
    use crate::db::schema::{remote, remote_artifact};
    let Some(blob_id) = blob::table
        .filter(blob::digest.eq(digest))
        .filter(blob::content_id.eq_any(version_members!(repository_id, number)))
        .select(blob::content_id)
        .first::<String>(conn)
        .optional()?
    else {
        return Ok(None);
    };
    let artifact = blob_artifact(conn, &blob_id)?;
    let remote = if artifact.is_some() {
        None
    } else {
        // Fetch through the served repository's own remote (its URL, credentials and policy),
        // never through another repository's that happens to know the digest. Only a
        // repository without a remote (synced with an explicit one) takes whichever remote
        // recorded the blob, the first by name.
        let own: Option<String> = crate::db::schema::repository::table
            .find(repository_id)
            .select(crate::db::schema::repository::remote_id)
            .first::<Option<String>>(conn)
            .optional()?
            .flatten();
        let mut q = content_artifact::table
            .inner_join(remote_artifact::table.on(remote_artifact::content_artifact_id.eq(content_artifact::id)))
            .inner_join(remote::table.on(remote::id.eq(remote_artifact::remote_id)))
            .filter(content_artifact::content_id.eq(&blob_id))
            .select((super::remote::Remote::as_select(), remote_artifact::url, remote_artifact::size))
            .order(remote::name)
            .into_boxed();
        if let Some(own) = own {
            q = q.filter(remote::id.eq(own));
        }
        q.first(conn).optional()?
    };
    Ok(Some(BlobSource { blob_id, digest: digest.to_string(), artifact, remote }))
}

/// The stored artifact of a blob, if its bytes are in the store.
pub fn blob_artifact(conn: &mut DbConnection, blob_id: &str) -> QueryResult<Option<super::artifact::Artifact>> {
    use crate::db::schema::artifact;
    content_artifact::table
        .inner_join(artifact::table)
        .filter(content_artifact::content_id.eq(blob_id))
        .select(super::artifact::Artifact::as_select())
        .first(conn)
        .optional()
}

/// A blob pushed to this repository but not yet in a version, with its stored artifact.
pub fn pushed_blob(conn: &mut DbConnection, repository_id: &str, digest: &str) -> QueryResult<Option<BlobSource>> {
    use crate::db::schema::{artifact, pushed_blob};
    let found: Option<(String, super::artifact::Artifact)> = pushed_blob::table
        .inner_join(blob::table.on(blob::content_id.eq(pushed_blob::blob_id)))
        .inner_join(content_artifact::table.on(content_artifact::content_id.eq(blob::content_id)))
        .inner_join(artifact::table.on(artifact::id.nullable().eq(content_artifact::artifact_id)))
        .filter(pushed_blob::repository_id.eq(repository_id))
        .filter(blob::digest.eq(digest))
        .select((blob::content_id, super::artifact::Artifact::as_select()))
        .first(conn)
        .optional()?;
    Ok(found.map(|(blob_id, a)| BlobSource { blob_id, digest: digest.to_string(), artifact: Some(a), remote: None }))
}

/// A blob usable by a manifest pushed to this repository: in its latest version or pushed to
/// it, and stored. Returns the blob id.
pub fn usable_blob(conn: &mut DbConnection, repository_id: &str, number: i64, digest: &str) -> QueryResult<Option<String>> {
    if let Some(b) = blob_in_version(conn, repository_id, number, digest)? {
        return Ok(Some(b.blob_id));
    }
    Ok(pushed_blob(conn, repository_id, digest)?.map(|b| b.blob_id))
}

/// The digest of a manifest in a version that uses blob `blob_id` as its config or a layer
/// (the first by digest), if any.
pub fn manifest_using_blob(conn: &mut DbConnection, repository_id: &str, number: i64, blob_id: &str) -> QueryResult<Option<String>> {
    let as_layer = manifest_blob::table.filter(manifest_blob::blob_id.eq(blob_id)).select(manifest_blob::manifest_id);
    manifest::table
        .filter(manifest::config_blob_id.eq(blob_id).or(manifest::content_id.eq_any(as_layer)))
        .filter(manifest::content_id.eq_any(version_members!(repository_id, number)))
        .order(manifest::digest.asc())
        .select(manifest::digest)
        .first(conn)
        .optional()
}

/// Tag ids in a version with this name (at most one in practice).
pub fn tags_named(conn: &mut DbConnection, repository_id: &str, number: i64, name: &str) -> QueryResult<Vec<String>> {
    tag::table
        .filter(tag::name.eq(name))
        .filter(tag::content_id.eq_any(version_members!(repository_id, number)))
        .select(tag::content_id)
        .load(conn)
}

/// Tag ids in a version pointing at a manifest.
pub fn tags_of_manifest(conn: &mut DbConnection, repository_id: &str, number: i64, manifest_id: &str) -> QueryResult<Vec<String>> {
    tag::table
        .filter(tag::tagged_manifest_id.eq(manifest_id))
        .filter(tag::content_id.eq_any(version_members!(repository_id, number)))
        .select(tag::content_id)
        .load(conn)
}

/// Manifest id by digest in a version.
pub fn manifest_in_version(conn: &mut DbConnection, repository_id: &str, number: i64, digest: &str) -> QueryResult<Option<String>> {
    manifest::table
        .filter(manifest::digest.eq(digest))
        .filter(manifest::content_id.eq_any(version_members!(repository_id, number)))
        .select(manifest::content_id)
        .first(conn)
        .optional()
}

/// The type (`container.tag`, ...) of each of `ids` that names a content unit.
pub fn types_of(conn: &mut DbConnection, ids: &[String]) -> QueryResult<std::collections::HashMap<String, String>> {
    let mut out = std::collections::HashMap::new();
    for chunk in ids.chunks(500) {
        out.extend(content::table.filter(content::id.eq_any(chunk)).select((content::id, content::pulp_type)).load::<(String, String)>(conn)?);
    }
    Ok(out)
}

/// `(referrer, referenced)` pairs: a tag and its manifest, a list and a manifest it lists, a
/// manifest and its config or a layer. `from` selects by referrer, else `to` by referenced.
fn reference_pairs(conn: &mut DbConnection, ids: &[String], from: bool) -> QueryResult<Vec<(String, String)>> {
    let mut out = Vec::new();
    for chunk in ids.chunks(500) {
        let pairs: [Vec<(String, String)>; 4] = if from {
            [
                tag::table.filter(tag::content_id.eq_any(chunk)).select((tag::content_id, tag::tagged_manifest_id)).load(conn)?,
                manifest_list_entry::table.filter(manifest_list_entry::list_id.eq_any(chunk)).select((manifest_list_entry::list_id, manifest_list_entry::manifest_id)).load(conn)?,
                manifest_blob::table.filter(manifest_blob::manifest_id.eq_any(chunk)).select((manifest_blob::manifest_id, manifest_blob::blob_id)).load(conn)?,
                manifest::table
                    .filter(manifest::content_id.eq_any(chunk))
                    .filter(manifest::config_blob_id.is_not_null())
                    .select((manifest::content_id, manifest::config_blob_id.assume_not_null()))
                    .load(conn)?,
            ]
        } else {
            [
                tag::table.filter(tag::tagged_manifest_id.eq_any(chunk)).select((tag::content_id, tag::tagged_manifest_id)).load(conn)?,
                manifest_list_entry::table.filter(manifest_list_entry::manifest_id.eq_any(chunk)).select((manifest_list_entry::list_id, manifest_list_entry::manifest_id)).load(conn)?,
                manifest_blob::table.filter(manifest_blob::blob_id.eq_any(chunk)).select((manifest_blob::manifest_id, manifest_blob::blob_id)).load(conn)?,
                manifest::table
                    .filter(manifest::config_blob_id.eq_any(chunk))
                    .select((manifest::content_id, manifest::config_blob_id.assume_not_null()))
                    .load(conn)?,
            ]
        };
        out.extend(pairs.into_iter().flatten());
    }
    Ok(out)
}

/// `ids` plus everything they reference, down to blobs: a tag's manifest, the manifests a list
/// names, a manifest's config and layers (what Pulp's recursive add adds).
pub fn with_references(conn: &mut DbConnection, ids: &[String]) -> QueryResult<Vec<String>> {
    let mut all: std::collections::HashSet<String> = ids.iter().cloned().collect();
    let mut frontier: Vec<String> = all.iter().cloned().collect();
    while !frontier.is_empty() {
        let referenced = reference_pairs(conn, &frontier, true)?;
        frontier = referenced.into_iter().map(|(_, to)| to).filter(|to| all.insert(to.clone())).collect();
    }
    Ok(all.into_iter().collect())
}

/// Takes out of `set`, until nothing changes, every unit that a unit outside `set` references:
/// what remains can go without leaving anything that stays pointing at a unit that went.
/// `pairs` must hold every reference to the units of `set` that counts.
fn keep_referenced(set: &mut std::collections::HashSet<String>, pairs: &[(String, String)]) {
    loop {
        let kept: Vec<String> = pairs.iter().filter(|(from, to)| set.contains(to) && !set.contains(from)).map(|(_, to)| to.clone()).collect();
        if kept.is_empty() {
            return;
        }
        for id in kept {
            set.remove(&id);
        }
    }
}

/// What removing `named` (all content when `None`) from version `number` takes out of it, as
/// Pulp's recursive remove does: the named units with what they reference (a tag's manifest, a
/// list's manifests, a manifest's blobs) unless a unit that stays in the version still needs
/// it. A named manifest that goes takes its tags with it, so no tag is left pointing at nothing.
pub fn removal(conn: &mut DbConnection, repository_id: &str, number: i64, named: Option<&[String]>) -> QueryResult<Vec<String>> {
    use std::collections::HashSet;
    let present: HashSet<String> = super::repository::version_content(conn, repository_id, number)?.into_iter().map(|(id, _)| id).collect();
    let Some(named) = named else { return Ok(present.into_iter().collect()) };
    let seeds: Vec<String> = named.iter().filter(|id| present.contains(*id)).cloned().collect();
    let mut following: Vec<(String, String)> = Vec::new();
    for chunk in seeds.chunks(500) {
        following.extend(tag::table.filter(tag::tagged_manifest_id.eq_any(chunk)).select((tag::content_id, tag::tagged_manifest_id)).load::<(String, String)>(conn)?);
    }
    following.retain(|(tag, _)| present.contains(tag));
    let followers: HashSet<&String> = following.iter().map(|(tag, _)| tag).collect();
    let mut going: HashSet<String> = with_references(conn, &seeds)?.into_iter().filter(|id| present.contains(id)).collect();
    let candidates: Vec<String> = going.iter().cloned().collect();
    let pairs: Vec<(String, String)> = reference_pairs(conn, &candidates, false)?
        .into_iter()
        .filter(|(from, _)| present.contains(from) && !followers.contains(from))
        .collect();
    keep_referenced(&mut going, &pairs);
    let tags: Vec<String> = following.iter().filter(|(_, manifest)| going.contains(manifest)).map(|(tag, _)| tag.clone()).collect();
    going.extend(tags);
    Ok(going.into_iter().collect())
}

/// `(id, name)` of the tags among `ids`.
pub fn tag_names_of(conn: &mut DbConnection, ids: &[String]) -> QueryResult<Vec<(String, String)>> {
    let mut out = Vec::new();
    for chunk in ids.chunks(500) {
        out.extend(tag::table.filter(tag::content_id.eq_any(chunk)).select((tag::content_id, tag::name)).load::<(String, String)>(conn)?);
    }
    Ok(out)
}

/// Tag ids in a version, only those named `names` when given.
pub fn tags_in_version(conn: &mut DbConnection, repository_id: &str, number: i64, names: Option<&[String]>) -> QueryResult<Vec<String>> {
    let mut q = tag::table.filter(tag::content_id.eq_any(version_members!(repository_id, number))).select(tag::content_id).into_boxed();
    if let Some(names) = names {
        q = q.filter(tag::name.eq_any(names));
    }
    q.load(conn)
}

/// Manifest ids in a version, only those with one of `digests` / `media_types` when given.
pub fn manifests_in_version(
    conn: &mut DbConnection,
    repository_id: &str,
    number: i64,
    digests: Option<&[String]>,
    media_types: Option<&[String]>,
) -> QueryResult<Vec<String>> {
    let mut q = manifest::table.filter(manifest::content_id.eq_any(version_members!(repository_id, number))).select(manifest::content_id).into_boxed();
    if let Some(digests) = digests {
        q = q.filter(manifest::digest.eq_any(digests));
    }
    if let Some(types) = media_types {
        q = q.filter(manifest::media_type.eq_any(types));
    }
    q.load(conn)
}

/// Content that no repository version holds or held (it has no membership row at all), created
/// before `before`, and that is no blob pushed to a repository ahead of its manifest; among
/// `only` when given. These are the candidates of an orphan cleanup.
pub fn unused(conn: &mut DbConnection, before: NaiveDateTime, only: Option<&[String]>) -> QueryResult<Vec<String>> {
    use crate::db::schema::pushed_blob;
    use diesel::dsl::{exists, not};
    let query = || {
        content::table
            .filter(content::pulp_created.lt(before))
            .filter(not(exists(repository_content::table.filter(repository_content::content_id.eq(content::id)))))
            .filter(not(exists(pushed_blob::table.filter(pushed_blob::blob_id.eq(content::id)))))
            .select(content::id)
            .into_boxed()
    };
    match only {
        None => query().load(conn),
        Some(ids) => super::in_chunks(ids, |chunk| query().filter(content::id.eq_any(chunk)).load::<String>(conn)),
    }
}

/// On PostgreSQL, locks these units' rows until the transaction ends, so that a concurrent
/// write that would make one of them used again (a version, a pushed blob, a tag) either
/// finished before, and the queries after this see it, or waits and then finds it gone.
/// SQLite's write transaction already keeps every other writer out.
pub fn lock(conn: &mut DbConnection, ids: &[String]) -> QueryResult<()> {
    let DbConnection::Pg(pg) = conn else { return Ok(()) };
    for chunk in ids.chunks(500) {
        content::table.filter(content::id.eq_any(chunk)).select(content::id).for_update().load::<String>(pg)?;
        blob::table.filter(blob::content_id.eq_any(chunk)).select(blob::content_id).for_update().load::<String>(pg)?;
        manifest::table.filter(manifest::content_id.eq_any(chunk)).select(manifest::content_id).for_update().load::<String>(pg)?;
    }
    Ok(())
}

/// Of `candidates`, those that can be deleted: any that content outside the set references
/// (a manifest a kept tag points at, a blob a kept manifest uses) stays, with what it references.
pub fn deletable(conn: &mut DbConnection, candidates: Vec<String>) -> QueryResult<Vec<String>> {
    let pairs = reference_pairs(conn, &candidates, false)?;
    let mut set: std::collections::HashSet<String> = candidates.into_iter().collect();
    keep_referenced(&mut set, &pairs);
    Ok(set.into_iter().collect())
}

/// Deletes these units (with their typed rows and where their bytes were recorded), referrers
/// before what they reference; nothing outside the set may reference them (see `deletable`).
/// Returns the artifact ids they used.
pub fn delete_units(conn: &mut DbConnection, ids: &[String]) -> QueryResult<Vec<String>> {
    let mut artifacts = Vec::new();
    for chunk in ids.chunks(500) {
        artifacts.extend(
            content_artifact::table
                .filter(content_artifact::content_id.eq_any(chunk))
                .filter(content_artifact::artifact_id.is_not_null())
                .select(content_artifact::artifact_id.assume_not_null())
                .load::<String>(conn)?,
        );
    }
    let pairs = reference_pairs(conn, ids, true)?;
    let mut left: std::collections::HashSet<String> = ids.iter().cloned().collect();
    while !left.is_empty() {
        let referenced: std::collections::HashSet<&String> = pairs.iter().filter(|(from, _)| left.contains(from)).map(|(_, to)| to).collect();
        let layer: Vec<String> = left.iter().filter(|id| !referenced.contains(id)).cloned().collect();
        if layer.is_empty() {
            // A cycle cannot be built from digests; refuse rather than loop.
            return Err(diesel::result::Error::RollbackTransaction);
        }
        for chunk in layer.chunks(500) {
            diesel::delete(content::table.filter(content::id.eq_any(chunk))).execute(conn)?;
        }
        for id in &layer {
            left.remove(id);
        }
    }
    Ok(artifacts)
}
