//! Request bodies: broken JSON is a 400 with `detail`; a field of the wrong type is a 400
//! naming that field, the way Pulp (Django REST framework) answers.

use serde::de::DeserializeOwned;

use crate::error::ApiError;

pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| ApiError::BadRequest(format!("JSON parse error - {e}")))?;
    if !value.is_object() {
        return Err(ApiError::field("non_field_errors", "Invalid data. Expected a dictionary."));
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { "non_field_errors".to_string() } else { path };
        ApiError::field(&field, e.into_inner().to_string())
    })
}

/// For PATCH: tells an absent field (`None`) from an explicit `null` (`Some(None)`).
pub fn double_option<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    serde::Deserialize::deserialize(d).map(Some)
}
