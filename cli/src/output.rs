//! Tables for people, the API's JSON for scripts.

use comfy_table::{presets::NOTHING, Table};
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(a) if a.is_empty() => "-".into(),
        Value::Array(a) => a.iter().map(cell).collect::<Vec<_>>().join(", "),
        other => other.to_string(),
    }
}

/// A list: one row per item, the given columns (dotted paths reach into objects).
pub fn list(format: Format, items: &[Value], columns: &[&str]) {
    if format == Format::Json {
        println!("{}", serde_json::to_string_pretty(&Value::Array(items.to_vec())).expect("JSON"));
        return;
    }
    let mut table = Table::new();
    table.load_preset(NOTHING).set_header(columns.iter().map(|c| c.to_uppercase()));
    for item in items {
        table.add_row(columns.iter().map(|c| cell(lookup(item, c))));
    }
    println!("{table}");
}

/// One object: a field per row.
pub fn show(format: Format, item: &Value) {
    if format == Format::Json {
        println!("{}", serde_json::to_string_pretty(item).expect("JSON"));
        return;
    }
    let mut table = Table::new();
    table.load_preset(NOTHING);
    if let Some(obj) = item.as_object() {
        for (k, v) in obj {
            let text = match v {
                Value::Object(_) => serde_json::to_string(v).expect("JSON"),
                Value::Array(a) if a.iter().any(Value::is_object) => serde_json::to_string(v).expect("JSON"),
                other => cell(other),
            };
            table.add_row(vec![k.clone(), text]);
        }
    }
    println!("{table}");
}

fn lookup<'a>(v: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(v, |v, k| &v[k])
}

/// A line for people, or the object for scripts.
pub fn done(format: Format, message: &str, item: &Value) {
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(item).expect("JSON")),
        Format::Table if !message.is_empty() => println!("{message}"),
        Format::Table => {}
    }
}
