//! What the OpenAPI document says about errors and PATCH bodies, shared by every resource.
//!
//! Errors are `ApiError`'s shapes (error.rs): `{"detail": "..."}`, or for invalid input
//! `{"<field>": ["message", ...]}`. A PATCH body is the create body with nothing required.

use std::collections::BTreeMap;

use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::{ContentBuilder, RefOr};
use utoipa::IntoResponses;

fn string() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String)
}

/// `{"detail": "..."}`
fn detail() -> Schema {
    ObjectBuilder::new().property("detail", string()).required("detail").into()
}

/// `{"name": ["This field is required."]}` or `{"detail": "JSON parse error - ..."}`.
fn invalid() -> Schema {
    let message = OneOfBuilder::new().item(string()).item(ArrayBuilder::new().items(string()));
    ObjectBuilder::new()
        .description(Some("Messages per field (or parameter); `detail` or `non_field_errors` for the whole request."))
        .additional_properties(Some(utoipa::openapi::schema::AdditionalProperties::RefOr(RefOr::T(Schema::OneOf(message.build())))))
        .into()
}

fn response(status: &str, description: &str, schema: Schema) -> BTreeMap<String, RefOr<Response>> {
    let content = ContentBuilder::new().schema(Some(schema)).build();
    let response = ResponseBuilder::new().description(description).content("application/json", content).build();
    BTreeMap::from([(status.to_string(), RefOr::T(response))])
}

/// 400: invalid body, field or query parameter (nothing was written).
pub struct BadRequest;

impl IntoResponses for BadRequest {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        response("400", "Invalid input, named per field or parameter; nothing was written", invalid())
    }
}

/// 401: every operation except `status/` needs HTTP Basic credentials.
pub struct Unauthorized;

impl IntoResponses for Unauthorized {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        response("401", "Missing or wrong HTTP Basic credentials", detail())
    }
}

/// 404: no such object.
pub struct NotFound;

impl IntoResponses for NotFound {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        response("404", "Not found", detail())
    }
}

/// 409 for a task that can no longer be canceled.
pub struct Conflict;

impl IntoResponses for Conflict {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        response("409", "The task already finished", detail())
    }
}

/// The schema of `$full` with no field required: the body of a PATCH (`Patched...` in Pulp).
macro_rules! patched_schema {
    ($(#[$doc:meta])* $name:ident, $full:ty) => {
        $(#[$doc])*
        pub struct $name;

        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                $crate::api::responses::without_required(<$full as utoipa::PartialSchema>::schema())
            }
        }

        impl utoipa::ToSchema for $name {
            fn name() -> std::borrow::Cow<'static, str> {
                std::borrow::Cow::Borrowed(stringify!($name))
            }

            fn schemas(schemas: &mut Vec<(String, utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>)>) {
                <$full as utoipa::ToSchema>::schemas(schemas);
            }
        }
    };
}
pub(crate) use patched_schema;

pub fn without_required(schema: RefOr<Schema>) -> RefOr<Schema> {
    match schema {
        RefOr::T(Schema::Object(mut object)) => {
            object.required.clear();
            RefOr::T(Schema::Object(object))
        }
        other => other,
    }
}
