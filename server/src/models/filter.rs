//! What a list asks for, apart from HTTP: lookups on text, numbers and times, and a sort order.
//! `api::filters` parses and checks a query string into [`Criteria`]; the model queries apply it
//! with the macros below, so every list endpoint honours a filter the same way.

use std::collections::BTreeMap;

use chrono::NaiveDateTime;

/// Parsed, validated filter values by parameter name (`name__in`, `number__gte`, ...), plus the
/// requested order.
#[derive(Debug, Clone, Default)]
pub struct Criteria {
    values: BTreeMap<String, Value>,
    /// `(field, descending)` in the order given by `ordering`.
    pub sort: Vec<(String, bool)>,
}

#[derive(Debug, Clone)]
pub enum Value {
    Text(String),
    List(Vec<String>),
    Integer(i64),
    Time(NaiveDateTime),
    Bool(bool),
}

/// The text lookups on one field.
#[derive(Debug, Clone, Default)]
pub struct TextMatch {
    pub exact: Option<String>,
    pub any_of: Option<Vec<String>>,
    pub contains: Option<String>,
    pub icontains: Option<String>,
    pub startswith: Option<String>,
}

/// The comparisons on one ordered field (an integer or a time).
#[derive(Debug, Clone)]
pub struct Range<T> {
    pub exact: Option<T>,
    pub gt: Option<T>,
    pub gte: Option<T>,
    pub lt: Option<T>,
    pub lte: Option<T>,
}

impl<T> Default for Range<T> {
    fn default() -> Self {
        Range { exact: None, gt: None, gte: None, lt: None, lte: None }
    }
}

impl Criteria {
    pub fn insert(&mut self, parameter: &str, value: Value) {
        self.values.insert(parameter.to_string(), value);
    }

    pub fn get(&self, parameter: &str) -> Option<&Value> {
        self.values.get(parameter)
    }

    pub fn text(&self, parameter: &str) -> Option<String> {
        match self.values.get(parameter) {
            Some(Value::Text(s)) => Some(s.clone()),
            _ => None,
        }
    }

    pub fn list(&self, parameter: &str) -> Option<Vec<String>> {
        match self.values.get(parameter) {
            Some(Value::List(v)) => Some(v.clone()),
            _ => None,
        }
    }

    pub fn boolean(&self, parameter: &str) -> Option<bool> {
        match self.values.get(parameter) {
            Some(Value::Bool(b)) => Some(*b),
            _ => None,
        }
    }

    /// `field`, `field__in`, `field__contains`, `field__icontains`, `field__startswith`.
    pub fn text_match(&self, field: &str) -> TextMatch {
        TextMatch {
            exact: self.text(field),
            any_of: self.list(&format!("{field}__in")),
            contains: self.text(&format!("{field}__contains")),
            icontains: self.text(&format!("{field}__icontains")),
            startswith: self.text(&format!("{field}__startswith")),
        }
    }

    /// `field`, `field__gt`, `field__gte`, `field__lt`, `field__lte` as integers.
    pub fn integer_range(&self, field: &str) -> Range<i64> {
        let get = |suffix: &str| match self.values.get(&format!("{field}{suffix}")) {
            Some(Value::Integer(n)) => Some(*n),
            _ => None,
        };
        Range { exact: get(""), gt: get("__gt"), gte: get("__gte"), lt: get("__lt"), lte: get("__lte") }
    }

    /// `field`, `field__gt`, `field__gte`, `field__lt`, `field__lte` as times.
    pub fn time_range(&self, field: &str) -> Range<NaiveDateTime> {
        let get = |suffix: &str| match self.values.get(&format!("{field}{suffix}")) {
            Some(Value::Time(t)) => Some(*t),
            _ => None,
        };
        Range { exact: get(""), gt: get("__gt"), gte: get("__gte"), lt: get("__lt"), lte: get("__lte") }
    }

    /// `field` and `field__in` together: the values the field may take (None: any).
    pub fn one_of(&self, field: &str) -> Option<Vec<String>> {
        let mut wanted: Option<Vec<String>> = self.text(field).map(|v| vec![v]).or_else(|| self.list(field));
        if let Some(list) = self.list(&format!("{field}__in")) {
            wanted = Some(match wanted {
                Some(w) => w.into_iter().filter(|v| list.contains(v)).collect(),
                None => list,
            });
        }
        wanted
    }
}

/// `%`/`_` are wildcards in LIKE; a user's `name__contains=a_b` means the literal text.
pub fn like_escape(needle: &str) -> String {
    needle.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
}

diesel::define_sql_function!(fn lower(x: diesel::sql_types::Text) -> diesel::sql_types::Text);

diesel::define_sql_function! {
    /// `lower` as registered on SQLite connections (db::ConnectionManager), in place of SQLite's
    /// ASCII-only one; nullable, as a label that is not set reads as NULL.
    #[sql_name = "lower"]
    fn unicode_lower(x: diesel::sql_types::Nullable<diesel::sql_types::Text>) -> diesel::sql_types::Nullable<diesel::sql_types::Text>;
}

/// Applies a [`TextMatch`] to a boxed query on a text column. LIKE is case-sensitive on both
/// backends (SQLite connections set `case_sensitive_like`); `icontains` compares lower-cased.
#[macro_export]
macro_rules! filter_text {
    ($query:expr, $column:expr, $m:expr) => {{
        let m: &$crate::models::filter::TextMatch = &$m;
        let mut q = $query;
        if let Some(v) = &m.exact {
            q = q.filter($column.eq(v.clone()));
        }
        if let Some(v) = &m.any_of {
            q = q.filter($column.eq_any(v.clone()));
        }
        if let Some(v) = &m.contains {
            q = q.filter($column.like(format!("%{}%", $crate::models::filter::like_escape(v))).escape('\\'));
        }
        if let Some(v) = &m.startswith {
            q = q.filter($column.like(format!("{}%", $crate::models::filter::like_escape(v))).escape('\\'));
        }
        if let Some(v) = &m.icontains {
            let pattern = format!("%{}%", $crate::models::filter::like_escape(&v.to_lowercase()));
            q = q.filter($crate::models::filter::lower($column).like(pattern).escape('\\'));
        }
        q
    }};
}

/// Applies a [`Range`] to a boxed query on an ordered column (nullable or not).
#[macro_export]
macro_rules! filter_range {
    ($query:expr, $column:expr, $r:expr) => {{
        let r = &$r;
        let mut q = $query;
        if let Some(v) = r.exact {
            q = q.filter($column.eq(v));
        }
        if let Some(v) = r.gt {
            q = q.filter($column.gt(v));
        }
        if let Some(v) = r.gte {
            q = q.filter($column.ge(v));
        }
        if let Some(v) = r.lt {
            q = q.filter($column.lt(v));
        }
        if let Some(v) = r.lte {
            q = q.filter($column.le(v));
        }
        q
    }};
}

/// Orders a boxed query by `criteria.sort`, then by `$default` (which should end in a unique
/// column, so pages never overlap). Each sortable field is named with its column:
/// `sort_by!(q, criteria, [remote::pulp_created, remote::id], { "name" => remote::name })`.
/// A field not in the map cannot reach here: `api::filters` refuses it first.
#[macro_export]
macro_rules! sort_by {
    ($query:expr, $criteria:expr, [$($default:expr),+], { $($field:literal => $column:expr),* $(,)? }) => {{
        let mut q = $query;
        for (field, descending) in &$criteria.sort {
            q = match (field.as_str(), *descending) {
                $(
                    ($field, false) => q.then_order_by($column.asc()),
                    ($field, true) => q.then_order_by($column.desc()),
                )*
                _ => q,
            };
        }
        $( q = q.then_order_by($default); )+
        q
    }};
}

/// One term of Pulp's `pulp_label_select`: `key=value`, `key!=value`, `key~text` (contains,
/// any case), `key` (has the label), `!key` (has not).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelTerm {
    Equals(String, String),
    NotEquals(String, String),
    Contains(String, String),
    Has(String),
    HasNot(String),
}

impl LabelTerm {
    /// Parses a comma-separated selection. Keys and values follow the rules labels are stored
    /// under (`api::validate::labels`), so neither can hold a quote or a comma.
    pub fn parse_all(text: &str) -> Result<Vec<LabelTerm>, String> {
        let value_ok = |v: &str| !v.contains(['(', ')', '\'', '"', '\\']);
        let mut terms = Vec::new();
        if text.split(',').count() > 50 {
            return Err("Select by at most 50 labels at once.".into());
        }
        for raw in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let term = if let Some((k, v)) = raw.split_once("!=") {
                LabelTerm::NotEquals(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = raw.split_once('=') {
                LabelTerm::Equals(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = raw.split_once('~') {
                LabelTerm::Contains(k.trim().into(), v.trim().into())
            } else if let Some(k) = raw.strip_prefix('!') {
                LabelTerm::HasNot(k.trim().into())
            } else {
                LabelTerm::Has(raw.into())
            };
            let (key, value) = match &term {
                LabelTerm::Equals(k, v) | LabelTerm::NotEquals(k, v) | LabelTerm::Contains(k, v) => (k, Some(v)),
                LabelTerm::Has(k) | LabelTerm::HasNot(k) => (k, None),
            };
            if !super::labels::is_key(key) || !value.is_none_or(|v| value_ok(v)) {
                return Err(format!("'{raw}' is not a label selection: use key=value, key!=value, key~text, key or !key (keys of letters, digits, '_', '-', ' ')."));
            }
            terms.push(term);
        }
        Ok(terms)
    }

    /// The term as SQL over a JSON-text `pulp_labels` column. The key and value are spliced in
    /// as literals: `parse_all` admits no quote or backslash, so they cannot end the literal.
    pub fn sql(&self, postgres: bool) -> String {
        let value_of = |k: &str| {
            if postgres {
                format!("(pulp_labels::jsonb ->> '{k}')")
            } else {
                format!("json_extract(pulp_labels, '$.\"{k}\"')")
            }
        };
        match self {
            LabelTerm::Equals(k, v) => format!("{} = '{v}'", value_of(k)),
            LabelTerm::NotEquals(k, v) => format!("({0} IS NULL OR {0} <> '{v}')", value_of(k)),
            LabelTerm::Contains(k, v) => format!("lower({}) LIKE '%{}%' ESCAPE '\\'", value_of(k), like_escape(&v.to_lowercase())),
            LabelTerm::Has(k) => format!("{} IS NOT NULL", value_of(k)),
            LabelTerm::HasNot(k) => format!("{} IS NULL", value_of(k)),
        }
    }
}

impl Criteria {
    /// `pulp_label_select` as one SQL condition (None: not asked).
    pub fn label_condition(&self, postgres: bool) -> Option<String> {
        let text = self.text("pulp_label_select")?;
        let terms = LabelTerm::parse_all(&text).ok()?;
        (!terms.is_empty()).then(|| terms.iter().map(|t| t.sql(postgres)).collect::<Vec<_>>().join(" AND "))
    }
}

/// Applies `pulp_label_select` to a boxed query over a table with a `pulp_labels` column.
#[macro_export]
macro_rules! filter_labels {
    ($query:expr, $criteria:expr, $postgres:expr) => {{
        let mut q = $query;
        if let Some(condition) = $criteria.label_condition($postgres) {
            q = q.filter(diesel::dsl::sql::<diesel::sql_types::Bool>(&condition));
        }
        q
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_selections() {
        let terms = LabelTerm::parse_all("env=prod, team!=a b,tier~Gold,owner,!legacy").unwrap();
        assert_eq!(
            terms,
            [
                LabelTerm::Equals("env".into(), "prod".into()),
                LabelTerm::NotEquals("team".into(), "a b".into()),
                LabelTerm::Contains("tier".into(), "Gold".into()),
                LabelTerm::Has("owner".into()),
                LabelTerm::HasNot("legacy".into()),
            ]
        );
        for bad in ["a'b=1", "env=it's", "=x", "k=v\\", "a\"b"] {
            assert!(LabelTerm::parse_all(bad).is_err(), "{bad}");
        }
        assert_eq!(terms[0].sql(true), "(pulp_labels::jsonb ->> 'env') = 'prod'");
        assert_eq!(terms[4].sql(false), "json_extract(pulp_labels, '$.\"legacy\"') IS NULL");
    }
}
