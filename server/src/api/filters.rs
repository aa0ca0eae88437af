//! List and detail queries as Pulp takes them: every parameter a list endpoint accepts is
//! declared once, in its [`Listed`] impl; the same declaration becomes the API document's
//! parameters and the parser's whitelist, so a parameter that is documented is honoured and one
//! that is not is a 400 naming it (never silently ignored).

use std::collections::BTreeMap;
use std::marker::PhantomData;

use actix_web::{dev::Payload, FromRequest, HttpRequest, HttpResponse};
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde::Serialize;
use serde_json::Value as Json;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn, ParameterStyle};
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, SchemaFormat, KnownFormat, Type};
use utoipa::openapi::{RefOr, Required, Schema};
use utoipa::PartialSchema;

use super::pagination::{self, Paginated};
use super::NUL_MESSAGE;
use crate::error::ApiError;
use crate::models::filter::{Criteria, Value};
use crate::models::{Page, Window};

/// How a filter's value is read.
#[derive(Clone, Copy)]
pub enum Kind {
    Text,
    /// One of a fixed set of values.
    Choice(&'static [&'static str]),
    Integer,
    /// An ISO 8601 date or date-time; without a zone it is UTC.
    Time,
    Bool,
    /// An href, turned into the id it names (`None`: not an href of that kind, a 400).
    Id(fn(&str) -> Option<String>),
    /// One value or several (comma-separated or repeated), matching any: what Pulp declares as
    /// an array and pulp-cli sends as a single string (`digest` on tags, `media_type`).
    TextList,
    /// Pulp's `pulp_label_select` syntax (`models::filter::LabelTerm`).
    LabelSelect,
}

/// One filtered field and the lookups it takes: `""` is the exact match, the others become
/// `field__lookup` (`in`, `contains`, `icontains`, `startswith`, `gt`, `gte`, `lt`, `lte`).
#[derive(Clone, Copy)]
pub struct Filter {
    pub field: &'static str,
    pub kind: Kind,
    pub lookups: &'static [&'static str],
    pub description: &'static str,
}

/// The text lookups Pulp offers on names.
pub const TEXT_LOOKUPS: &[&str] = &["", "in", "contains", "icontains", "startswith"];
pub const RANGE_LOOKUPS: &[&str] = &["", "gt", "gte", "lt", "lte"];
pub const EXACT: &[&str] = &[""];
pub const EXACT_OR_IN: &[&str] = &["", "in"];
pub const IN: &[&str] = &["in"];

impl Filter {
    fn parameters(&self) -> impl Iterator<Item = (String, &'static str)> + '_ {
        self.lookups.iter().map(move |l| {
            let name = if l.is_empty() { self.field.to_string() } else { format!("{}__{l}", self.field) };
            (name, *l)
        })
    }
}

/// A list endpoint's declared parameters (besides `limit`, `offset`, `fields`, `exclude_fields`).
pub trait Listed {
    /// The response object, whose properties `fields` and `exclude_fields` may name.
    type View: PartialSchema;
    const FILTERS: &'static [Filter];
    /// Fields `ordering` may name (each also with a leading `-`).
    const ORDERING: &'static [&'static str];
}

/// Declares a listing type and its document parameters:
/// `listing!(RemoteListing, RemoteResponse, [filters...], ["name", "pulp_created"]);`
#[macro_export]
macro_rules! listing {
    ($(#[$meta:meta])* $name:ident, $view:ty, [$($filter:expr),* $(,)?], [$($order:literal),* $(,)?]) => {
        $(#[$meta])*
        pub struct $name;
        impl $crate::api::filters::Listed for $name {
            type View = $view;
            const FILTERS: &'static [$crate::api::filters::Filter] = &[$($filter),*];
            const ORDERING: &'static [&'static str] = &[$($order),*];
        }
        impl utoipa::IntoParams for $name {
            fn into_params(
                _: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>,
            ) -> Vec<utoipa::openapi::path::Parameter> {
                $crate::api::filters::list_parameters::<$name>()
            }
        }
    };
}

pub const fn text(field: &'static str, description: &'static str) -> Filter {
    Filter { field, kind: Kind::Text, lookups: TEXT_LOOKUPS, description }
}

/// `pulp_label_select`, on resources with labels.
pub const LABELS: Filter = Filter {
    field: "pulp_label_select",
    kind: Kind::LabelSelect,
    lookups: EXACT,
    description: "Filter by labels: comma-separated `key=value`, `key!=value`, `key~text`, `key` or `!key`, all of which must hold.",
};

pub const fn filter(field: &'static str, kind: Kind, lookups: &'static [&'static str], description: &'static str) -> Filter {
    Filter { field, kind, lookups, description }
}

fn string_schema() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String)
}

fn value_schema(kind: Kind) -> Schema {
    let object = match kind {
        Kind::Text | Kind::Id(_) | Kind::LabelSelect => string_schema(),
        Kind::TextList => {
            let one = Schema::Object(string_schema().build());
            let schema = utoipa::openapi::schema::OneOfBuilder::new().item(one.clone()).item(array_of(one)).build();
            return Schema::OneOf(schema);
        }
        Kind::Choice(choices) => string_schema().enum_values(Some(choices.iter().copied())),
        Kind::Integer => ObjectBuilder::new().schema_type(Type::Integer).format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64))),
        Kind::Time => string_schema().format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime))),
        Kind::Bool => ObjectBuilder::new().schema_type(Type::Boolean),
    };
    Schema::Object(object.build())
}

fn array_of(items: Schema) -> Schema {
    Schema::Array(ArrayBuilder::new().items(RefOr::T(items)).build())
}

fn query_parameter(name: &str, description: &str, schema: Schema, comma_list: bool) -> Parameter {
    let mut p = ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Query)
        .required(Required::False)
        .description(Some(description))
        .schema(Some(schema));
    if comma_list {
        p = p.style(Some(ParameterStyle::Form)).explode(Some(false));
    }
    p.build()
}

/// The document's parameters of a list endpoint: paging, ordering, field selection and filters.
pub fn list_parameters<L: Listed>() -> Vec<Parameter> {
    let integer = |min: i64, max: Option<i64>| Schema::Object(ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(min)).maximum(max).build());
    let mut out = vec![
        query_parameter("limit", "Number of results to return per page (default 100, at most 1000).", integer(1, Some(pagination::MAX_LIMIT)), false),
        query_parameter("offset", "The initial index from which to return the results.", integer(0, None), false),
    ];
    if !L::ORDERING.is_empty() {
        let choices: Vec<String> = L::ORDERING.iter().flat_map(|f| [f.to_string(), format!("-{f}")]).collect();
        let schema = array_of(Schema::Object(string_schema().enum_values(Some(choices)).build()));
        out.push(query_parameter("ordering", "Which fields to sort by, comma-separated; `-` for descending.", schema, true));
    }
    out.extend(field_parameters());
    for f in L::FILTERS {
        for (name, lookup) in f.parameters() {
            let schema = match lookup {
                "in" => array_of(value_schema(f.kind)),
                "contains" | "icontains" | "startswith" => Schema::Object(string_schema().build()),
                _ => value_schema(f.kind),
            };
            let description = match lookup {
                "" => f.description.to_string(),
                "in" => format!("{} Any of these (comma-separated).", f.description),
                other => format!("{} Lookup `{other}`.", f.description),
            };
            let comma_list = lookup == "in" || matches!(f.kind, Kind::TextList);
            out.push(query_parameter(&name, &description, schema, comma_list));
        }
    }
    out
}

fn field_parameters() -> Vec<Parameter> {
    let list = || array_of(Schema::Object(string_schema().build()));
    vec![
        query_parameter("fields", "A list of fields to include in the response.", list(), false),
        query_parameter("exclude_fields", "A list of fields to exclude from the response.", list(), false),
    ]
}

/// Detail endpoints take `fields` and `exclude_fields` too (and nothing else).
pub struct DetailParams;

impl utoipa::IntoParams for DetailParams {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        field_parameters()
    }
}

/// `fields` / `exclude_fields`, checked against the response's properties.
#[derive(Debug, Clone, Default)]
pub struct FieldSelection {
    only: Option<Vec<String>>,
    exclude: Vec<String>,
}

impl FieldSelection {
    pub fn is_empty(&self) -> bool {
        self.only.is_none() && self.exclude.is_empty()
    }

    /// The object with only the selected fields.
    pub fn apply<T: Serialize>(&self, object: T) -> Json {
        let mut value = serde_json::to_value(object).expect("responses serialise");
        if let Json::Object(map) = &mut value {
            if let Some(only) = &self.only {
                map.retain(|k, _| only.contains(k));
            }
            for k in &self.exclude {
                map.remove(k);
            }
        }
        value
    }
}

fn properties<V: PartialSchema>() -> Vec<String> {
    match V::schema() {
        RefOr::T(Schema::Object(object)) => object.properties.into_keys().collect(),
        _ => Vec::new(),
    }
}

/// Query parameters by name, in order, without empty values (Pulp ignores those); a NUL is a 400.
fn parameters(query: &str) -> Result<BTreeMap<String, Vec<String>>, ApiError> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        if key.contains('\0') {
            return Err(ApiError::field("non_field_errors", format!("{NUL_MESSAGE} (in a query parameter name)")));
        }
        if value.contains('\0') {
            return Err(ApiError::field(&key, NUL_MESSAGE));
        }
        if !value.is_empty() {
            out.entry(key.into_owned()).or_default().push(value.into_owned());
        }
    }
    Ok(out)
}

/// The most values one `__in` parameter (or label selection) takes: a query stays far inside what
/// either database parses (SQLite refuses expressions nested 1000 deep).
pub const MAX_LIST: usize = 500;

/// Comma-separated and repeated values, flattened, blanks dropped.
fn items(values: &[String]) -> Vec<String> {
    values.iter().flat_map(|v| v.split(',')).map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect()
}

/// `items`, at most `MAX_LIST` of them (a 400 on `name` beyond).
fn bounded_items(name: &str, values: &[String]) -> Result<Vec<String>, ApiError> {
    let given = items(values);
    if given.len() > MAX_LIST {
        return Err(ApiError::field(name, format!("Give at most {MAX_LIST} values (not {}).", given.len())));
    }
    Ok(given)
}

fn single<'a>(name: &str, values: &'a [String]) -> Result<&'a str, ApiError> {
    match values {
        [one] => Ok(one),
        _ => Err(ApiError::field(name, "Give this parameter once.")),
    }
}

fn field_selection<V: PartialSchema>(params: &mut BTreeMap<String, Vec<String>>) -> Result<FieldSelection, ApiError> {
    let known = properties::<V>();
    let mut pick = |name: &str| -> Result<Option<Vec<String>>, ApiError> {
        let Some(values) = params.remove(name) else { return Ok(None) };
        let wanted = items(&values);
        if let Some(bad) = wanted.iter().find(|f| !known.contains(f)) {
            return Err(ApiError::field(name, format!("'{bad}' is not a field of this object; it has: {}.", known.join(", "))));
        }
        Ok(Some(wanted))
    };
    let only = pick("fields")?;
    let exclude = pick("exclude_fields")?.unwrap_or_default();
    Ok(FieldSelection { only, exclude })
}

fn unknown(name: &str) -> ApiError {
    ApiError::field(name, format!("Unknown query parameter '{name}': it is not a filter of this endpoint (see the API document)."))
}

pub fn parse_time(text: &str) -> Option<NaiveDateTime> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc).naive_utc());
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, format) {
            return Some(t);
        }
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d").ok().and_then(|d| d.and_hms_opt(0, 0, 0))
}

fn parse_value(name: &str, kind: Kind, text: &str) -> Result<Value, ApiError> {
    let bad = |m: String| ApiError::field(name, m);
    Ok(match kind {
        Kind::Text => Value::Text(text.to_string()),
        Kind::TextList => Value::List(items(&[text.to_string()])),
        Kind::LabelSelect => {
            crate::models::filter::LabelTerm::parse_all(text).map_err(bad)?;
            Value::Text(text.to_string())
        }
        Kind::Choice(choices) => {
            if !choices.contains(&text) {
                return Err(bad(format!("Select a valid choice. {text} is not one of the available choices: {}.", choices.join(", "))));
            }
            Value::Text(text.to_string())
        }
        Kind::Integer => Value::Integer(text.trim().parse().map_err(|_| bad(format!("Enter a whole number (not '{text}').")))?),
        Kind::Time => Value::Time(parse_time(text.trim()).ok_or_else(|| bad(format!("Enter a valid date/time (ISO 8601), not '{text}'.")))?),
        Kind::Bool => match text.trim() {
            "true" | "True" | "1" => Value::Bool(true),
            "false" | "False" | "0" => Value::Bool(false),
            _ => return Err(bad(format!("Enter true or false (not '{text}')."))),
        },
        Kind::Id(parse) => Value::Text(parse(text).ok_or_else(|| bad(format!("Invalid hyperlink - Object does not exist: {text}")))?),
    })
}

/// Reads a whole list query against `L`'s declaration.
pub fn parse_list<L: Listed>(query: &str) -> Result<(Window, Criteria, FieldSelection), ApiError> {
    let mut params = parameters(query)?;
    let page = |params: &mut BTreeMap<String, Vec<String>>, name: &str| -> Result<Option<String>, ApiError> {
        params.remove(name).map(|v| single(name, &v).map(String::from)).transpose()
    };
    let window = pagination::PageParams { limit: page(&mut params, "limit")?, offset: page(&mut params, "offset")? }.window()?;
    let fields = field_selection::<L::View>(&mut params)?;
    let mut criteria = Criteria::default();
    if let Some(values) = params.remove("ordering") {
        let given = items(&values);
        if given.len() > L::ORDERING.len() {
            return Err(ApiError::field("ordering", format!("Sort by at most {} fields.", L::ORDERING.len())));
        }
        for item in given {
            let (field, descending) = match item.strip_prefix('-') {
                Some(f) => (f.to_string(), true),
                None => (item.clone(), false),
            };
            if !L::ORDERING.contains(&field.as_str()) {
                return Err(ApiError::field(
                    "ordering",
                    format!("Select a valid choice. {item} is not one of the available choices: {}.", L::ORDERING.join(", ")),
                ));
            }
            criteria.sort.push((field, descending));
        }
    }
    for (name, values) in params {
        let (filter, lookup) = L::FILTERS
            .iter()
            .find_map(|f| f.parameters().find(|(n, _)| *n == name).map(|(_, l)| (f, l)))
            .ok_or_else(|| unknown(&name))?;
        let value = match lookup {
            "in" => {
                let mut list = Vec::new();
                for item in bounded_items(&name, &values)? {
                    match parse_value(&name, filter.kind, &item)? {
                        Value::Text(s) => list.push(s),
                        Value::Integer(n) => list.push(n.to_string()),
                        other => list.push(format!("{other:?}")),
                    }
                }
                Value::List(list)
            }
            "contains" | "icontains" | "startswith" => Value::Text(single(&name, &values)?.to_string()),
            "" if matches!(filter.kind, Kind::TextList) => Value::List(bounded_items(&name, &values)?),
            _ => parse_value(&name, filter.kind, single(&name, &values)?)?,
        };
        criteria.insert(&name, value);
    }
    Ok((window, criteria, fields))
}

/// A list endpoint's query: page, filters and order, field selection.
pub struct ListQuery<L> {
    pub window: Window,
    pub criteria: Criteria,
    pub fields: FieldSelection,
    listing: PhantomData<L>,
}

impl<L: Listed> FromRequest for ListQuery<L> {
    type Error = actix_web::Error;
    type Future = std::future::Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(
            parse_list::<L>(req.query_string())
                .map(|(window, criteria, fields)| ListQuery { window, criteria, fields, listing: PhantomData })
                .map_err(actix_web::Error::from),
        )
    }
}

impl<L: Listed> ListQuery<L> {
    /// Pulp's page envelope with each result's fields selected.
    pub fn respond<R, T: Serialize>(&self, req: &HttpRequest, page: Page<R>, to_view: impl FnMut(R) -> T) -> HttpResponse {
        let page = page.map(to_view);
        let body = Paginated::new(req, self.window, page, |v| self.fields.apply(v));
        HttpResponse::Ok().json(body)
    }
}

/// A detail endpoint's query: only `fields` and `exclude_fields` (of the response `V`).
pub struct DetailQuery<V> {
    pub fields: FieldSelection,
    view: PhantomData<V>,
}

impl<V: PartialSchema> FromRequest for DetailQuery<V> {
    type Error = actix_web::Error;
    type Future = std::future::Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let parsed = parameters(req.query_string()).and_then(|mut params| {
            let fields = field_selection::<V>(&mut params)?;
            match params.keys().next() {
                Some(name) => Err(unknown(name)),
                None => Ok(DetailQuery { fields, view: PhantomData }),
            }
        });
        std::future::ready(parsed.map_err(actix_web::Error::from))
    }
}

impl<V: Serialize> DetailQuery<V> {
    pub fn respond(&self, object: V) -> HttpResponse {
        HttpResponse::Ok().json(self.fields.apply(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize, utoipa::ToSchema)]
    pub struct Thing {
        name: String,
        number: i64,
    }

    crate::listing!(
        ThingListing,
        Thing,
        [text("name", "By name."), filter("number", Kind::Integer, RANGE_LOOKUPS, "By number."), filter("state", Kind::Choice(&["a", "b"]), EXACT_OR_IN, "By state.")],
        ["name", "number"]
    );

    fn field_of(query: &str) -> String {
        match parse_list::<ThingListing>(query) {
            Err(ApiError::Invalid(f)) => f.keys().next().cloned().unwrap_or_default(),
            Err(other) => panic!("{query}: {other:?}"),
            Ok(_) => panic!("{query}: accepted"),
        }
    }

    #[test]
    fn declared_parameters_are_read() {
        let (window, c, fields) =
            parse_list::<ThingListing>("limit=5&name__in=a,b&name__in=c&number__gte=3&ordering=-number,name&state__in=a&fields=name").unwrap();
        assert_eq!((window.limit, window.offset), (5, 0));
        assert_eq!(c.text_match("name").any_of, Some(vec!["a".into(), "b".into(), "c".into()]));
        assert_eq!(c.integer_range("number").gte, Some(3));
        assert_eq!(c.sort, vec![("number".into(), true), ("name".into(), false)]);
        assert_eq!(c.one_of("state"), Some(vec!["a".into()]));
        assert_eq!(fields.apply(Thing { name: "x".into(), number: 1 }), serde_json::json!({"name": "x"}));
    }

    #[test]
    fn anything_undeclared_or_malformed_is_named() {
        assert_eq!(field_of("nmae=x"), "nmae");
        assert_eq!(field_of("name__iexact=x"), "name__iexact");
        assert_eq!(field_of("number__gt=x"), "number__gt");
        assert_eq!(field_of("number=1&number=2"), "number");
        assert_eq!(field_of("state=c"), "state");
        assert_eq!(field_of("ordering=-size"), "ordering");
        assert_eq!(field_of("fields=nope"), "fields");
        assert_eq!(field_of("limit=0"), "limit");
        let many = vec!["a"; MAX_LIST + 1].join(",");
        assert_eq!(field_of(&format!("name__in={many}")), "name__in");
        assert_eq!(field_of("ordering=name,name,name"), "ordering");
        // Empty values are ignored, as Pulp ignores them.
        assert!(parse_list::<ThingListing>("name=&ordering=").is_ok());
    }

    #[test]
    fn times_take_dates_and_zones() {
        let t = |s: &str| parse_time(s).map(|t| t.to_string());
        assert_eq!(t("2026-01-02").as_deref(), Some("2026-01-02 00:00:00"));
        assert_eq!(t("2026-01-02T03:04:05+01:00").as_deref(), Some("2026-01-02 02:04:05"));
        assert_eq!(t("2026-01-02T03:04:05.5").as_deref(), Some("2026-01-02 03:04:05.500"));
        assert!(t("yesterday").is_none());
    }
}
