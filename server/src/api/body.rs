//! Request bodies: broken JSON is a 400 with `detail`; a field of the wrong type, or a string
//! holding a NUL character (which PostgreSQL cannot store), is a 400 naming that field, the way
//! Pulp (Django REST framework) answers.

use serde::de::{DeserializeOwned, Unexpected, Visitor};
use serde_json::Value;
use utoipa::openapi::{RefOr, Schema};
use utoipa::PartialSchema;

use super::NUL_MESSAGE;
use crate::error::ApiError;

/// Parses a body of type `T`. A field that `T`'s schema does not list is refused by name, as
/// Pulp refuses it ("Unexpected field"), so a misspelt or unsupported field never goes unnoticed.
pub fn parse<T: DeserializeOwned + PartialSchema>(bytes: &[u8]) -> Result<T, ApiError> {
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| ApiError::BadRequest(format!("JSON parse error - {e}")))?;
    let Value::Object(fields) = &value else {
        return Err(ApiError::field("non_field_errors", "Invalid data. Expected a dictionary."));
    };
    if let Some(known) = properties(&T::schema()) {
        let unexpected: crate::error::FieldErrors = fields
            .keys()
            .filter(|name| !known.contains(*name))
            .map(|name| (name.clone(), vec![UNEXPECTED.to_string()]))
            .collect();
        if !unexpected.is_empty() {
            return Err(ApiError::Invalid(unexpected));
        }
    }
    for (name, field) in fields {
        if holds_nul(field) {
            return Err(ApiError::field(name, NUL_MESSAGE));
        }
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        // serde names a missing required field only in its message; Pulp keys the error by it.
        if let Some(missing) = message.strip_prefix("missing field `").and_then(|m| m.strip_suffix('`')) {
            let field = if path == "." { missing.to_string() } else { format!("{path}.{missing}") };
            return ApiError::field(&field, "This field is required.");
        }
        let field = if path == "." { "non_field_errors".to_string() } else { path };
        ApiError::field(&field, message)
    })
}

/// Pulp's message for a field its serializer does not have.
pub const UNEXPECTED: &str = "Unexpected field";

/// The field names an object schema lists (an `allOf` of objects lists all of theirs); `None`
/// when the schema is no object, so nothing can be said about its fields.
fn properties(schema: &RefOr<Schema>) -> Option<Vec<String>> {
    match schema {
        RefOr::T(Schema::Object(object)) => Some(object.properties.keys().cloned().collect()),
        RefOr::T(Schema::AllOf(all)) => {
            let mut names = Vec::new();
            for item in &all.items {
                names.extend(properties(item)?);
            }
            Some(names)
        }
        _ => None,
    }
}

/// An integer field that, like DRF's `IntegerField`, also takes an integral number written
/// with a fraction (`26.0`): JSON Schema calls that an integer too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Integer(pub i64);

impl<'de> serde::Deserialize<'de> for Integer {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct IntegerVisitor;
        impl Visitor<'_> for IntegerVisitor {
            type Value = Integer;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a valid integer")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Integer, E> {
                Ok(Integer(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Integer, E> {
                i64::try_from(v).map(Integer).map_err(|_| E::invalid_value(Unexpected::Unsigned(v), &self))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Integer, E> {
                // Integral and inside i64: |v| < 2^63 (exactly `-(i64::MIN as f64)`).
                let bound = -(i64::MIN as f64);
                if v.fract() == 0.0 && v.abs() < bound {
                    Ok(Integer(v as i64))
                } else {
                    Err(E::invalid_value(Unexpected::Float(v), &self))
                }
            }
        }
        d.deserialize_any(IntegerVisitor)
    }
}

/// Whether a NUL character appears in any string (or object key) inside `value`.
fn holds_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(holds_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || holds_nul(v)),
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    }
}

/// For PATCH: tells an absent field (`None`) from an explicit `null` (`Some(None)`).
pub fn double_option<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    serde::Deserialize::deserialize(d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
    struct Body {
        #[allow(dead_code)]
        name: Option<String>,
        #[allow(dead_code)]
        tags: Option<Vec<String>>,
        #[allow(dead_code)]
        #[schema(value_type = Option<i64>)]
        count: Option<Integer>,
    }

    fn error_field(body: &str) -> String {
        match parse::<Body>(body.as_bytes()) {
            Err(ApiError::Invalid(fields)) => fields.keys().next().cloned().unwrap_or_default(),
            other => panic!("{body}: {other:?}"),
        }
    }

    #[test]
    fn nul_characters_are_refused_naming_the_field() {
        assert_eq!(error_field(r#"{"name": "a\u0000b"}"#), "name");
        assert_eq!(error_field(r#"{"tags": ["ok", "\u0000"]}"#), "tags");
        assert!(parse::<Body>(br#"{"name": "a\\u0000b"}"#).is_ok(), "an escaped backslash is no NUL");
    }

    #[test]
    fn unknown_fields_are_refused_by_name() {
        let refused = |body: &str| match parse::<Body>(body.as_bytes()) {
            Err(ApiError::Invalid(fields)) => fields,
            other => panic!("{body}: {other:?}"),
        };
        let fields = refused(r#"{"name": "n", "colour": "red", "size": {"x": "\u0000"}}"#);
        assert_eq!(fields.keys().collect::<Vec<_>>(), ["colour", "size"]);
        assert_eq!(fields["colour"], [UNEXPECTED]);
        assert!(refused(r#"{"\u0000": 1}"#).contains_key("\0"));
        assert!(parse::<Body>(br#"{"name": "n", "tags": null}"#).is_ok());
    }

    #[test]
    fn a_missing_required_field_is_named() {
        #[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
        struct Required {
            #[allow(dead_code)]
            key: String,
        }
        match parse::<Required>(b"{}") {
            Err(ApiError::Invalid(fields)) => assert_eq!(fields["key"], ["This field is required."]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn integers_may_be_written_with_a_zero_fraction() {
        let count = |body: &str| parse::<Body>(body.as_bytes()).map(|b| b.count);
        assert_eq!(count(r#"{"count": 26.0}"#).unwrap(), Some(Integer(26)));
        assert_eq!(count(r#"{"count": -3}"#).unwrap(), Some(Integer(-3)));
        for bad in [r#"{"count": 2.5}"#, r#"{"count": 1e300}"#, r#"{"count": "ten"}"#, r#"{"count": 18446744073709551615}"#] {
            assert_eq!(error_field(bad), "count", "{bad}");
        }
    }
}
