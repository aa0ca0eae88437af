//! OCI 1.1 referrers: manifests whose `subject` names another manifest (signatures,
//! attestations, SBOMs). The subject digest, `artifactType` and `annotations` are kept in
//! columns of their own, so that the referrers of a digest are one indexed lookup.

use diesel::prelude::*;
use diesel::sql_types::BigInt;

use crate::db::schema::{manifest, repository_content};
use crate::db::DbConnection;

/// What the referrers index says of a manifest, read from its bytes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReferrerFacts {
    pub subject: Option<String>,
    pub artifact_type: Option<String>,
    /// The manifest's `annotations` map as JSON text.
    pub annotations: Option<String>,
}

impl ReferrerFacts {
    /// The facts of a manifest's bytes. The artifact type is `artifactType`, else (for an
    /// image manifest with a subject) its config's media type, as the spec says to report it.
    pub fn of(bytes: &[u8]) -> ReferrerFacts {
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(bytes) else { return ReferrerFacts::default() };
        let text = |v: &serde_json::Value| v.as_str().filter(|s| !s.is_empty() && !s.contains('\0')).map(str::to_string);
        let subject = text(&v["subject"]["digest"]).filter(|d| crate::registry::valid_digest(d));
        let artifact_type = text(&v["artifactType"]).or_else(|| subject.as_ref().and_then(|_| text(&v["config"]["mediaType"])));
        let annotations = v["annotations"].as_object().filter(|a| !a.is_empty()).map(|a| serde_json::Value::Object(a.clone()).to_string());
        ReferrerFacts { subject, artifact_type, annotations }
    }
}

/// A referrer as the referrers index lists it.
#[derive(Debug, Clone, PartialEq, Queryable)]
pub struct Referrer {
    pub digest: String,
    pub media_type: String,
    pub size: i64,
    pub artifact_type: Option<String>,
    pub annotations: Option<String>,
}

/// The manifests in a repository version whose subject is `subject`, optionally of one
/// artifact type, ordered by digest; after `last`, at most `limit`.
pub fn in_version(
    conn: &mut DbConnection,
    repository_id: &str,
    number: i64,
    subject: &str,
    artifact_type: Option<&str>,
    last: Option<&str>,
    limit: i64,
) -> QueryResult<Vec<Referrer>> {
    let members = repository_content::table
        .filter(repository_content::repository_id.eq(repository_id.to_string()))
        .filter(repository_content::version_added.le(number))
        .filter(repository_content::version_removed.is_null().or(repository_content::version_removed.gt(number)))
        .select(repository_content::content_id);
    let mut q = manifest::table.filter(manifest::subject.eq(subject)).filter(manifest::content_id.eq_any(members)).into_boxed();
    if let Some(t) = artifact_type {
        q = q.filter(manifest::artifact_type.eq(t.to_string()));
    }
    if let Some(l) = last {
        q = q.filter(manifest::digest.gt(l.to_string()));
    }
    q.order(manifest::digest.asc())
        .limit(limit)
        .select((
            manifest::digest,
            manifest::media_type,
            diesel::dsl::sql::<BigInt>("CAST(length(manifest.data) AS BIGINT)"),
            manifest::artifact_type,
            manifest::annotations,
        ))
        .load(conn)
}

const INDEXED: &str = "manifest_subjects_indexed";

/// Fills in the referrer columns of manifests stored before they existed (those whose bytes
/// mention `"subject"`), once per database: at the first startup after the migration, in
/// batches. Idempotent, so replicas starting together may all run it.
pub fn index_subjects(conn: &mut DbConnection) -> QueryResult<usize> {
    use crate::db::schema::setting;
    if setting::table.find(INDEXED).select(setting::name).first::<String>(conn).optional()?.is_some() {
        return Ok(0);
    }
    let filled = fill_subjects(conn)?;
    super::upload::setting_or_init(conn, INDEXED, || "1".into())?;
    Ok(filled)
}

fn fill_subjects(conn: &mut DbConnection) -> QueryResult<usize> {
    const BATCH: i64 = 200;
    let mut after = String::new();
    let mut filled = 0;
    loop {
        let ids: Vec<String> = manifest::table
            .filter(manifest::subject.is_null())
            .filter(manifest::content_id.gt(&after))
            .order(manifest::content_id.asc())
            .limit(BATCH)
            .select(manifest::content_id)
            .load(conn)?;
        let Some(last) = ids.last().cloned() else { return Ok(filled) };
        for id in ids {
            let data: Vec<u8> = manifest::table.find(&id).select(manifest::data).first(conn)?;
            if !data.windows(9).any(|w| w == b"\"subject\"") {
                continue;
            }
            let facts = ReferrerFacts::of(&data);
            if facts.subject.is_some() {
                diesel::update(manifest::table.find(&id))
                    .set((manifest::subject.eq(&facts.subject), manifest::artifact_type.eq(&facts.artifact_type), manifest::annotations.eq(&facts.annotations)))
                    .execute(conn)?;
                filled += 1;
            }
        }
        after = last;
    }
}

#[cfg(test)]
mod tests {
    use super::ReferrerFacts;

    #[test]
    fn facts_of_a_signature_manifest() {
        let sig = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
            "config":{"mediaType":"application/vnd.dev.cosign.artifact.sig.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},
            "layers":[],"subject":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":7},
            "annotations":{"org.example":"x"}}"#;
        let f = ReferrerFacts::of(sig);
        assert_eq!(f.subject.as_deref(), Some("sha256:0000000000000000000000000000000000000000000000000000000000000000"));
        assert_eq!(f.artifact_type.as_deref(), Some("application/vnd.dev.cosign.artifact.sig.v1+json"));
        assert_eq!(f.annotations.as_deref(), Some(r#"{"org.example":"x"}"#));
    }

    #[test]
    fn explicit_artifact_type_wins_and_bad_subjects_are_none() {
        let m = br#"{"artifactType":"application/spdx+json","config":{"mediaType":"application/vnd.oci.empty.v1+json"},"subject":{"digest":"sha256:nothex"}}"#;
        let f = ReferrerFacts::of(m);
        assert_eq!(f.subject, None);
        assert_eq!(f.artifact_type.as_deref(), Some("application/spdx+json"));
        assert_eq!(ReferrerFacts::of(b"not json"), ReferrerFacts::default());
    }
}
