//! `GET /v2/<name>/referrers/<digest>` (OCI distribution 1.1): an image index of the manifests
//! in the served version whose `subject` is that digest, whether or not the subject itself is
//! there. Paged by digest: at most `MAX_REFERRERS` descriptors, then a `Link` to the next page.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::{page_link, served, valid_digest, RegistryError, API_VERSION};
use crate::app::AppState;
use crate::db::DbError;
use crate::models::referrer;

const INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MAX_REFERRERS: i64 = 1000;
/// Media types are at most 255 characters (RFC 6838: 127 for each half, and the slash).
const MAX_MEDIA_TYPE: usize = 255;

#[derive(Debug, Deserialize)]
pub struct ReferrersQuery {
    #[serde(rename = "artifactType")]
    artifact_type: Option<String>,
    n: Option<i64>,
    last: Option<String>,
}

impl ReferrersQuery {
    /// (artifact type, page size, last digest), each checked.
    fn checked(&self) -> Result<(Option<String>, i64, Option<String>), RegistryError> {
        if let Some(t) = &self.artifact_type {
            if t.is_empty() || t.len() > MAX_MEDIA_TYPE || t.chars().any(char::is_control) {
                return Err(RegistryError::BadQuery(format!("invalid ?artifactType=: a media type of 1 to {MAX_MEDIA_TYPE} characters without control characters")));
            }
        }
        if self.last.as_deref().is_some_and(|l| !valid_digest(l)) {
            return Err(RegistryError::BadQuery("invalid ?last=: it must be a digest (sha256:<64 hex> or sha512:<128 hex>)".into()));
        }
        Ok((self.artifact_type.clone(), self.n.unwrap_or(MAX_REFERRERS).clamp(0, MAX_REFERRERS), self.last.clone()))
    }
}

pub async fn list(state: web::Data<AppState>, req: HttpRequest, path: web::Path<(String, String)>, q: web::Query<ReferrersQuery>) -> Result<HttpResponse, RegistryError> {
    let (name, digest) = path.into_inner();
    // Who may read comes first: a private repository's callers learn nothing before they log in.
    let (repo, number) = served(&state, &req, &name).await?;
    if !valid_digest(&digest) {
        return Err(RegistryError::DigestInvalid(digest));
    }
    let (artifact_type, n, last) = q.checked()?;
    let (d, t) = (digest.clone(), artifact_type.clone());
    let (found, more) = state.db.run(move |c| referrer::page(c, &repo, number, &d, t.as_deref(), last.as_deref(), n).map_err(DbError::from)).await?;

    let manifests: Vec<Value> = found.iter().map(descriptor).collect();
    let mut resp = HttpResponse::Ok();
    resp.insert_header(API_VERSION).content_type(INDEX);
    let mut extra = vec![];
    if let Some(t) = &artifact_type {
        resp.insert_header(("OCI-Filters-Applied", "artifactType"));
        extra.push(("artifactType", t.as_str()));
    }
    if let Some(last) = found.last().filter(|_| more) {
        resp.insert_header((header::LINK, page_link(&format!("/v2/{name}/referrers/{digest}"), n, &last.digest, &extra)));
    }
    Ok(resp.body(json!({"schemaVersion": 2, "mediaType": INDEX, "manifests": manifests}).to_string()))
}

fn descriptor(r: &referrer::Referrer) -> Value {
    let mut d = Map::new();
    d.insert("mediaType".into(), r.media_type.clone().into());
    d.insert("digest".into(), r.digest.clone().into());
    d.insert("size".into(), r.size.into());
    if let Some(t) = &r.artifact_type {
        d.insert("artifactType".into(), t.clone().into());
    }
    if let Some(a) = r.annotations.as_deref().and_then(|a| serde_json::from_str::<Value>(a).ok()) {
        d.insert("annotations".into(), a);
    }
    Value::Object(d)
}
