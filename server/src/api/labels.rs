//! `set_label/` and `unset_label/` on remotes, repositories and distributions: one label changed
//! at once, answered at once (201), as Pulp does; pulp-cli's `label set` / `label unset` use them.

use actix_web::{post, web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::body;
use super::responses::{BadRequest, NotFound, Unauthorized};
use crate::app::AppState;
use crate::error::ApiError;
use crate::models::labels::{self, Labelled};

#[derive(Debug, Deserialize, ToSchema)]
pub struct SetLabel {
    /// Letters, digits, `_`, `-` and spaces.
    pub key: String,
    /// Any text without `,`, `(` or `)`.
    pub value: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct UnsetLabel {
    pub key: String,
}

/// The label as set, or as it was before it was removed.
#[derive(Debug, Serialize, ToSchema)]
pub struct SetLabelResponse {
    pub key: String,
    pub value: String,
}

async fn set(state: &AppState, kind: Labelled, id: uuid::Uuid, bytes: &[u8]) -> Result<HttpResponse, ApiError> {
    let req: SetLabel = body::parse(bytes)?;
    // The rules of `pulp_labels`, checked apart so that the 400 names the part at fault.
    super::validate::labels(&serde_json::json!({ req.key.clone(): "" })).map_err(|m| ApiError::field("key", m))?;
    super::validate::labels(&serde_json::json!({ "key": req.value.clone() })).map_err(|m| ApiError::field("value", m))?;
    let id = id.to_string();
    let (key, value) = (req.key.clone(), req.value.clone());
    state
        .db
        .run(move |c| {
            labels::update::<_, ApiError>(c, kind, &id, |map| {
                map.insert(key, serde_json::Value::String(value));
                Ok(())
            })
        })
        .await?
        .ok_or_else(ApiError::not_found)?;
    Ok(HttpResponse::Created().json(SetLabelResponse { key: req.key, value: req.value }))
}

async fn unset(state: &AppState, kind: Labelled, id: uuid::Uuid, bytes: &[u8]) -> Result<HttpResponse, ApiError> {
    let req: UnsetLabel = body::parse(bytes)?;
    let id = id.to_string();
    let key = req.key.clone();
    let value = state
        .db
        .run(move |c| {
            labels::update::<_, ApiError>(c, kind, &id, |map| match map.remove(&key) {
                Some(v) => Ok(v.as_str().unwrap_or_default().to_string()),
                None => Err(ApiError::field("key", format!("Label '{key}' is not set."))),
            })
        })
        .await?
        .ok_or_else(ApiError::not_found)?;
    Ok(HttpResponse::Created().json(SetLabelResponse { key: req.key, value }))
}

/// Declares the two handlers of one labelled resource.
macro_rules! label_handlers {
    ($set:ident, $unset:ident, $kind:expr, $tag:literal, $set_id:literal, $unset_id:literal, $set_path:literal, $unset_path:literal) => {
        /// Set one label (replacing its value).
        #[utoipa::path(
            tag = $tag,
            operation_id = $set_id,
            request_body = SetLabel,
            responses((status = 201, body = SetLabelResponse), BadRequest, Unauthorized, NotFound)
        )]
        #[post($set_path)]
        pub async fn $set(state: web::Data<AppState>, id: web::Path<uuid::Uuid>, bytes: web::Bytes) -> Result<HttpResponse, ApiError> {
            set(&state, $kind, id.into_inner(), &bytes).await
        }

        /// Remove one label.
        #[utoipa::path(
            tag = $tag,
            operation_id = $unset_id,
            request_body = UnsetLabel,
            responses((status = 201, body = SetLabelResponse), BadRequest, Unauthorized, NotFound)
        )]
        #[post($unset_path)]
        pub async fn $unset(state: web::Data<AppState>, id: web::Path<uuid::Uuid>, bytes: web::Bytes) -> Result<HttpResponse, ApiError> {
            unset(&state, $kind, id.into_inner(), &bytes).await
        }
    };
}

label_handlers!(
    remote_set,
    remote_unset,
    Labelled::Remote,
    "Remotes: Container",
    "remotes_container_container_set_label",
    "remotes_container_container_unset_label",
    "/remotes/container/container/{id}/set_label/",
    "/remotes/container/container/{id}/unset_label/"
);
label_handlers!(
    repository_set,
    repository_unset,
    Labelled::Repository,
    "Repositories: Container",
    "repositories_container_container_set_label",
    "repositories_container_container_unset_label",
    "/repositories/container/container/{id}/set_label/",
    "/repositories/container/container/{id}/unset_label/"
);
label_handlers!(
    distribution_set,
    distribution_unset,
    Labelled::Distribution,
    "Distributions: Container",
    "distributions_container_container_set_label",
    "distributions_container_container_unset_label",
    "/distributions/container/container/{id}/set_label/",
    "/distributions/container/container/{id}/unset_label/"
);
