//! OCI 1.1 referrers: manifests whose `subject` names another manifest (signatures,
//! attestations, SBOMs). The subject digest, `artifactType` and `annotations` are kept in
//! columns of their own, so that the referrers of a digest are one indexed lookup.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable};

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

/// The fields of a manifest the facts come from. Typed, as the manifest's validation parses it,
/// so that whatever else the document holds (however deeply nested) is skipped alike.
#[derive(serde::Deserialize)]
struct Shape {
    subject: Option<Subject>,
    #[serde(rename = "artifactType")]
    artifact_type: Option<String>,
    config: Option<Config>,
    annotations: Option<std::collections::BTreeMap<String, String>>,
}

#[derive(serde::Deserialize)]
struct Subject {
    digest: String,
}

#[derive(serde::Deserialize)]
struct Config {
    #[serde(rename = "mediaType")]
    media_type: Option<String>,
}

impl ReferrerFacts {
    /// The facts of an OCI image manifest's or index's bytes (Docker's schema 2 has no
    /// `subject`). The artifact type is `artifactType`, else (for an image manifest with a
    /// subject) its config's media type, as the spec says to report it.
    pub fn of(media_type: &str, bytes: &[u8]) -> ReferrerFacts {
        if !matches!(media_type, crate::upstream::OCI_MANIFEST | crate::upstream::OCI_INDEX) {
            return ReferrerFacts::default();
        }
        let Ok(shape) = serde_json::from_slice::<Shape>(bytes) else { return ReferrerFacts::default() };
        let text = |v: Option<String>| v.filter(|s| !s.is_empty() && !s.contains('\0'));
        let subject = text(shape.subject.map(|s| s.digest)).filter(|d| crate::registry::valid_digest(d));
        let artifact_type = text(shape.artifact_type).or_else(|| subject.as_ref().and_then(|_| text(shape.config.and_then(|c| c.media_type))));
        let annotations = shape.annotations.filter(|a| !a.is_empty()).map(|a| serde_json::to_string(&a).expect("strings serialise"));
        ReferrerFacts { subject, artifact_type, annotations }
    }
}

/// A referrer as the referrers index lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct Referrer {
    pub digest: String,
    pub media_type: String,
    pub size: i64,
    pub artifact_type: Option<String>,
    pub annotations: Option<String>,
}

/// What one page of a referrers index may hold, annotations included: a referrer's annotations
/// can be megabytes, and a page of a thousand of them must not be gigabytes in memory.
pub const PAGE_BYTES: i64 = 4 * 1024 * 1024;

/// The manifests in a repository version whose subject is `subject`, optionally of one
/// artifact type, ordered by digest, after `last`: at most `limit` and about `PAGE_BYTES`
/// (at least one). The flag says whether more may follow.
#[allow(clippy::too_many_arguments)]
pub fn page(
    conn: &mut DbConnection,
    repository_id: &str,
    number: i64,
    subject: &str,
    artifact_type: Option<&str>,
    last: Option<&str>,
    limit: i64,
) -> QueryResult<(Vec<Referrer>, bool)> {
    let members = super::content::version_members!(repository_id.to_string(), number);
    let mut q = manifest::table.filter(manifest::subject.eq(subject)).filter(manifest::content_id.eq_any(members)).into_boxed();
    if let Some(t) = artifact_type {
        q = q.filter(manifest::artifact_type.eq(t.to_string()));
    }
    if let Some(l) = last {
        q = q.filter(manifest::digest.gt(l.to_string()));
    }
    // First without the annotations, only their lengths: what fits is known before any is read.
    // (digest, media type, size, artifact type, length of the annotations)
    type Row = (String, String, i64, Option<String>, Option<i64>);
    let rows: Vec<Row> = q
        .order(manifest::digest.asc())
        .limit(limit)
        .select((
            manifest::digest,
            manifest::media_type,
            diesel::dsl::sql::<BigInt>("CAST(length(manifest.data) AS BIGINT)"),
            manifest::artifact_type,
            diesel::dsl::sql::<Nullable<BigInt>>("CAST(length(manifest.annotations) AS BIGINT)"),
        ))
        .load(conn)?;
    let mut more = rows.len() as i64 == limit;
    let mut taken = Vec::new();
    let mut bytes = 0;
    for (digest, media_type, size, artifact_type, annotated) in rows {
        let cost = 256 + digest.len() as i64 + media_type.len() as i64 + artifact_type.as_ref().map_or(0, |t| t.len() as i64) + annotated.unwrap_or(0);
        if !taken.is_empty() && bytes + cost > PAGE_BYTES {
            more = true;
            break;
        }
        bytes += cost;
        taken.push((Referrer { digest, media_type, size, artifact_type, annotations: None }, annotated.is_some()));
    }
    let annotated: Vec<&str> = taken.iter().filter(|(_, a)| *a).map(|(r, _)| r.digest.as_str()).collect();
    let mut annotations: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    for chunk in annotated.chunks(100) {
        let found: Vec<(String, Option<String>)> = manifest::table.filter(manifest::digest.eq_any(chunk)).select((manifest::digest, manifest::annotations)).load(conn)?;
        annotations.extend(found.into_iter().filter_map(|(d, a)| a.map(|a| (d, a))));
    }
    let referrers = taken
        .into_iter()
        .map(|(mut r, _)| {
            r.annotations = annotations.remove(&r.digest);
            r
        })
        .collect();
    Ok((referrers, more))
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
            let (media_type, data): (String, Vec<u8>) = manifest::table.find(&id).select((manifest::media_type, manifest::data)).first(conn)?;
            if !data.windows(9).any(|w| w == b"\"subject\"") {
                continue;
            }
            let facts = ReferrerFacts::of(&media_type, &data);
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
        let f = ReferrerFacts::of(crate::upstream::OCI_MANIFEST, sig);
        assert_eq!(f.subject.as_deref(), Some("sha256:0000000000000000000000000000000000000000000000000000000000000000"));
        assert_eq!(f.artifact_type.as_deref(), Some("application/vnd.dev.cosign.artifact.sig.v1+json"));
        assert_eq!(f.annotations.as_deref(), Some(r#"{"org.example":"x"}"#));
    }

    #[test]
    fn explicit_artifact_type_wins_and_bad_subjects_are_none() {
        let m = br#"{"artifactType":"application/spdx+json","config":{"mediaType":"application/vnd.oci.empty.v1+json"},"subject":{"digest":"sha256:nothex"}}"#;
        let f = ReferrerFacts::of(crate::upstream::OCI_MANIFEST, m);
        assert_eq!(f.subject, None);
        assert_eq!(f.artifact_type.as_deref(), Some("application/spdx+json"));
        assert_eq!(ReferrerFacts::of(crate::upstream::OCI_MANIFEST, b"not json"), ReferrerFacts::default());
        // Docker's schema 2 has no subject; deep nesting elsewhere does not hide one.
        let deep = format!(r#"{{"x":{}1{},"subject":{{"digest":"sha256:{}"}}}}"#, "[".repeat(100_000), "]".repeat(100_000), "0".repeat(64));
        assert!(ReferrerFacts::of(crate::upstream::OCI_MANIFEST, deep.as_bytes()).subject.is_some());
        assert_eq!(ReferrerFacts::of("application/vnd.docker.distribution.manifest.v2+json", deep.as_bytes()), ReferrerFacts::default());
    }
}
