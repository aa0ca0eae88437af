use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::filter::Criteria;
use super::{Page, Window};
use crate::db::schema::distribution;
use crate::db::DbConnection;

#[derive(Debug, Clone, Queryable, QueryableByName, Selectable, Insertable, AsChangeset, serde::Serialize, serde::Deserialize)]
#[diesel(table_name = distribution, treat_none_as_null = true)]
pub struct Distribution {
    pub id: String,
    pub name: String,
    pub base_path: String,
    pub repository_id: Option<String>,
    pub repository_version_id: Option<String>,
    pub private: bool,
    pub description: Option<String>,
    pub pulp_created: NaiveDateTime,
    pub pulp_last_updated: NaiveDateTime,
    /// JSON map of labels.
    pub pulp_labels: String,
    /// Left out of the registry's catalog (still served).
    pub hidden: bool,
    /// `container`, or `pull-through` (serves `<base_path>/<upstream repository>` of its remote).
    #[serde(default = "super::remote::container")]
    pub kind: String,
    /// A pull-through distribution's pull-through remote; for one it made, that repository's remote.
    #[serde(default)]
    pub remote_id: Option<String>,
    /// For a distribution a pull-through distribution made: that pull-through distribution.
    #[serde(default)]
    pub pull_through_id: Option<String>,
}

impl Distribution {
    /// A public container distribution serving nothing yet.
    pub fn new(name: &str, base_path: &str) -> Distribution {
        let t = super::now();
        Distribution {
            id: super::new_id(),
            name: name.to_string(),
            base_path: base_path.to_string(),
            repository_id: None,
            repository_version_id: None,
            private: false,
            description: None,
            pulp_created: t,
            pulp_last_updated: t,
            pulp_labels: "{}".into(),
            hidden: false,
            kind: super::remote::CONTAINER.into(),
            remote_id: None,
            pull_through_id: None,
        }
    }
}

pub fn insert(conn: &mut DbConnection, row: &Distribution) -> QueryResult<()> {
    diesel::insert_into(distribution::table).values(row).execute(conn).map(|_| ())
}

pub fn update(conn: &mut DbConnection, row: &Distribution) -> QueryResult<()> {
    diesel::update(distribution::table.find(&row.id)).set(row).execute(conn).map(|_| ())
}

pub fn delete(conn: &mut DbConnection, id: &str) -> QueryResult<usize> {
    diesel::delete(distribution::table.find(id)).execute(conn)
}

pub fn find(conn: &mut DbConnection, id: &str) -> QueryResult<Option<Distribution>> {
    distribution::table.find(id).select(Distribution::as_select()).first(conn).optional()
}

/// A distribution of this kind (`CONTAINER` or `PULL_THROUGH`): the API of one kind never sees the other.
pub fn find_of_kind(conn: &mut DbConnection, id: &str, kind: &str) -> QueryResult<Option<Distribution>> {
    Ok(find(conn, id)?.filter(|d| d.kind == kind))
}

/// The ids of the distributions a pull-through distribution made, oldest first.
pub fn made_by(conn: &mut DbConnection, pull_through_id: &str) -> QueryResult<Vec<String>> {
    distribution::table
        .filter(distribution::pull_through_id.eq(pull_through_id))
        .order((distribution::pulp_created, distribution::id))
        .select(distribution::id)
        .load(conn)
}

pub fn find_by_name(conn: &mut DbConnection, name: &str) -> QueryResult<Option<Distribution>> {
    distribution::table
        .filter(distribution::name.eq(name))
        .select(Distribution::as_select())
        .first(conn)
        .optional()
}

pub fn find_by_base_path(conn: &mut DbConnection, base_path: &str) -> QueryResult<Option<Distribution>> {
    distribution::table
        .filter(distribution::base_path.eq(base_path))
        .select(Distribution::as_select())
        .first(conn)
        .optional()
}

pub fn list(conn: &mut DbConnection, kind: &str, criteria: &Criteria, window: Window) -> QueryResult<Page<Distribution>> {
    let postgres = matches!(conn, DbConnection::Pg(_));
    let filtered = || {
        let mut q = crate::filter_text!(
            distribution::table.filter(distribution::kind.eq(kind.to_string())).into_boxed(),
            distribution::name,
            criteria.text_match("name")
        );
        q = crate::filter_labels!(q, criteria, postgres);
        q = crate::filter_text!(q, distribution::base_path, criteria.text_match("base_path"));
        if let Some(ids) = criteria.list("pulp_href__in") {
            q = q.filter(distribution::id.eq_any(ids));
        }
        if let Some(repository_id) = criteria.text("repository") {
            q = q.filter(distribution::repository_id.eq(repository_id));
        }
        q
    };
    let count = filtered().count().get_result(conn)?;
    let rows = crate::sort_by!(filtered(), criteria, [distribution::pulp_created, distribution::id], {
        "name" => distribution::name,
        "base_path" => distribution::base_path,
        "pulp_created" => distribution::pulp_created,
    })
    .limit(window.limit)
    .offset(window.offset)
    .select(Distribution::as_select())
    .load(conn)?;
    Ok(Page { count, rows })
}

/// Base paths in order, after `last`, at most `limit` (for `/v2/_catalog`); private ones (and
/// those a private pull-through distribution made) only when `with_private`; hidden ones and
/// pull-through distributions (which serve nothing themselves) never.
pub fn base_paths(conn: &mut DbConnection, last: Option<&str>, limit: i64, with_private: bool) -> QueryResult<Vec<String>> {
    let mut q = distribution::table
        .select(distribution::base_path)
        .filter(distribution::hidden.eq(false))
        .filter(distribution::kind.ne(super::remote::PULL_THROUGH))
        .order(distribution::base_path)
        .limit(limit)
        .into_boxed();
    if !with_private {
        let private_parents: Vec<String> = distribution::table
            .filter(distribution::kind.eq(super::remote::PULL_THROUGH))
            .filter(distribution::private.eq(true))
            .select(distribution::id)
            .load(conn)?;
        q = q
            .filter(distribution::private.eq(false))
            .filter(distribution::pull_through_id.is_null().or(distribution::pull_through_id.assume_not_null().ne_all(private_parents)));
    }
    if let Some(l) = last {
        q = q.filter(distribution::base_path.gt(l.to_string()));
    }
    q.load(conn)
}

/// Whether pulling from `d` needs credentials: it is private, or a private pull-through
/// distribution made it.
pub fn is_private(conn: &mut DbConnection, d: &Distribution) -> QueryResult<bool> {
    if d.private {
        return Ok(true);
    }
    match &d.pull_through_id {
        Some(parent) => Ok(find(conn, parent)?.is_some_and(|p| p.private)),
        None => Ok(false),
    }
}

/// The (repository id, version number) a distribution serves: its pinned version, or its
/// repository's latest.
pub fn served_version(conn: &mut DbConnection, d: &Distribution) -> QueryResult<Option<(String, i64)>> {
    if let Some(vid) = &d.repository_version_id {
        return Ok(super::repository::find_version_by_id(conn, vid)?.map(|v| (v.repository_id, v.number)));
    }
    if let Some(rid) = &d.repository_id {
        return Ok(super::repository::find(conn, rid)?.map(|r| (r.id, r.latest_version_number)));
    }
    Ok(None)
}

/// What a manifest GET needs to know about `base_path`, read in one statement.
#[derive(Debug)]
pub struct ManifestLookup {
    pub distribution: Distribution,
    /// As `is_private` answers.
    pub private: bool,
    /// As `served_version` answers.
    pub version: Option<(String, i64)>,
    /// The manifest tagged `reference` (or with that digest) in that version.
    pub manifest: Option<super::content::ServedManifest>,
}

/// The distribution at `base_path`, whether it is private, the version it serves and the
/// manifest `reference` names in it (a digest when `by_digest`, else a tag): the answers of
/// `find_by_base_path`, `is_private`, `served_version` and `content::manifest_for_tag` /
/// `manifest_by_digest`, in one round trip to the database, as a statement each connection
/// prepares once (B6 on PostgreSQL: three statements a GET, each a round trip, kept p99 far
/// above SQLite's).
pub fn lookup_manifest(conn: &mut DbConnection, base_path: &str, reference: &str, by_digest: bool) -> QueryResult<Option<ManifestLookup>> {
    fn load<const BY_DIGEST: bool>(conn: &mut DbConnection, base_path: &str, reference: &str) -> QueryResult<Option<LookupRow>> {
        let (reference, base_path) = (reference.to_string(), base_path.to_string());
        // On the backend's own connection: its statement cache keys this query by type.
        match conn {
            DbConnection::Pg(c) => lookup::Query::<BY_DIGEST, true> { reference, base_path }.get_result(c).optional(),
            DbConnection::Sqlite(c) => lookup::Query::<BY_DIGEST, false> { reference, base_path }.get_result(c).optional(),
        }
    }
    let row = if by_digest { load::<true>(conn, base_path, reference)? } else { load::<false>(conn, base_path, reference)? };
    Ok(row.map(|r| {
        let private = r.distribution.private || r.parent_private == Some(true);
        let version = r.served_repository_id.zip(r.served_number);
        let manifest = match (r.manifest_digest, r.manifest_media_type, r.manifest_data) {
            (Some(digest), Some(media_type), Some(data)) => Some(super::content::ServedManifest { digest, media_type, data }),
            _ => None,
        };
        ManifestLookup { distribution: r.distribution, private, version, manifest }
    }))
}

#[derive(QueryableByName)]
struct LookupRow {
    #[diesel(embed)]
    distribution: Distribution,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Bool>)]
    parent_private: Option<bool>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    served_repository_id: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::BigInt>)]
    served_number: Option<i64>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    manifest_digest: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    manifest_media_type: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Binary>)]
    manifest_data: Option<Vec<u8>>,
}

/// `lookup_manifest`'s statement. Written as SQL because the version to search depends on the
/// row (a pinned version, or the repository's latest), which diesel's DSL cannot join on; a
/// type of its own (not `sql_query`, which is never cached) so that each connection prepares
/// it once.
mod lookup {
    use diesel::backend::Backend;
    use diesel::query_builder::{AstPass, QueryFragment, QueryId};
    use diesel::serialize::ToSql;
    use diesel::sql_types::{Text, Untyped};
    use diesel::QueryResult;

    pub(super) struct Query<const BY_DIGEST: bool, const POSTGRES: bool> {
        pub reference: String,
        pub base_path: String,
    }

    const SELECT: &str = "SELECT d.*, p.private AS parent_private, \
        COALESCE(v.repository_id, r.id) AS served_repository_id, \
        COALESCE(v.number, r.latest_version_number) AS served_number, \
        m.digest AS manifest_digest, m.media_type AS manifest_media_type, m.data AS manifest_data \
        FROM distribution d \
        LEFT JOIN distribution p ON p.id = d.pull_through_id \
        LEFT JOIN repository_version v ON v.id = d.repository_version_id \
        LEFT JOIN repository r ON d.repository_version_id IS NULL AND r.id = d.repository_id ";
    /// The `repository_content` row `rc` is in the served version (`content::version_members`).
    macro_rules! in_served_version {
        () => {
            "rc.repository_id = COALESCE(v.repository_id, r.id) \
             AND rc.version_added <= COALESCE(v.number, r.latest_version_number) \
             AND (rc.version_removed IS NULL OR rc.version_removed > COALESCE(v.number, r.latest_version_number))"
        };
    }

    impl<const BY_DIGEST: bool, const POSTGRES: bool> QueryId for Query<BY_DIGEST, POSTGRES> {
        type QueryId = Self;
        const HAS_STATIC_QUERY_ID: bool = true;
    }

    impl<const BY_DIGEST: bool, const POSTGRES: bool> diesel::query_builder::Query for Query<BY_DIGEST, POSTGRES> {
        type SqlType = Untyped;
    }

    impl<const BY_DIGEST: bool, const POSTGRES: bool, Conn> diesel::RunQueryDsl<Conn> for Query<BY_DIGEST, POSTGRES> {}

    impl<const BY_DIGEST: bool, const POSTGRES: bool, DB: Backend> QueryFragment<DB> for Query<BY_DIGEST, POSTGRES>
    where
        str: ToSql<Text, DB>,
    {
        fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
            out.push_sql(SELECT);
            if BY_DIGEST {
                out.push_sql("LEFT JOIN manifest m ON m.digest = ");
                out.push_bind_param::<Text, str>(&self.reference)?;
                out.push_sql(concat!(
                    " AND EXISTS (SELECT 1 FROM repository_content rc WHERE rc.content_id = m.content_id AND ",
                    in_served_version!(),
                    ") "
                ));
            } else if POSTGRES {
                // A join PostgreSQL can start from either side: the repository's content, or
                // the tags of that name (as an EXISTS per tag, it probed every repository's
                // `latest`: 33 ms with 5,000 of them, against 0.04 ms).
                out.push_sql("LEFT JOIN (repository_content rc INNER JOIN tag t ON t.content_id = rc.content_id AND t.name = ");
                out.push_bind_param::<Text, str>(&self.reference)?;
                out.push_sql(concat!(") ON ", in_served_version!(), " LEFT JOIN manifest m ON m.content_id = t.tagged_manifest_id "));
            } else {
                // SQLite would materialise that join for every repository: one probe per tag
                // of that name instead.
                out.push_sql("LEFT JOIN tag t ON t.name = ");
                out.push_bind_param::<Text, str>(&self.reference)?;
                out.push_sql(concat!(
                    " AND EXISTS (SELECT 1 FROM repository_content rc WHERE rc.content_id = t.content_id AND ",
                    in_served_version!(),
                    ") LEFT JOIN manifest m ON m.content_id = t.tagged_manifest_id "
                ));
            }
            out.push_sql("WHERE d.base_path = ");
            out.push_bind_param::<Text, str>(&self.base_path)?;
            out.push_sql(" LIMIT 1");
            Ok(())
        }
    }
}
