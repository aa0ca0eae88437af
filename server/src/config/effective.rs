//! `serve --check-config`: the settings `serve` would run with, as TOML, secrets redacted.

use std::fmt::Write;

use clap::ArgMatches;
use url::Position;

use super::file::{is_secret, key_of, kind, secret_of_file, settings, Kind};

const REDACTED: &str = "<redacted>";

/// Every setting of the parsed `serve` arguments, one `key = value` line each in the file's
/// syntax; an unset one is a comment. A `*_file` shows as the secret it supplied.
pub fn effective_settings(serve: &ArgMatches) -> String {
    let settings = settings();
    let mut out = String::from("# pulpish serve: effective settings (flags > PULPISH_* environment > --config file > defaults)\n");
    for arg in settings.get_arguments() {
        let Some(key) = key_of(arg) else { continue };
        if secret_of_file(&settings, &key).is_some() {
            continue;
        }
        let raw = serve.get_raw(arg.get_id().as_str()).and_then(|mut v| v.next()).map(|v| v.to_string_lossy().into_owned());
        let value = match raw {
            None => {
                let _ = writeln!(out, "# {key}: not set");
                continue;
            }
            // A secret URL (`database_url`) keeps where it points; any other secret is hidden whole.
            Some(raw) if is_secret(&settings, arg) => {
                let shown = if key.ends_with("_url") { without_password(&raw) } else { None };
                toml::Value::String(shown.unwrap_or_else(|| REDACTED.into()))
            }
            Some(raw) => match kind(arg) {
                Kind::Switch | Kind::Boolean => toml::Value::Boolean(raw == "true"),
                Kind::Integer => raw.parse().map(toml::Value::Integer).unwrap_or(toml::Value::String(raw)),
                Kind::Text => toml::Value::String(without_password(&raw).unwrap_or_else(|| REDACTED.into())),
            },
        };
        let _ = writeln!(out, "{key} = {value}");
    }
    out
}

/// `value` with a URL's password redacted: the userinfo's (`postgres://pulpish:<redacted>@db/pulpish`)
/// and libpq's `password=` and `sslpassword=` parameters. `None` when `value` is no URL with a
/// host yet may carry a password (`host=db password=...`): it cannot be shown in part.
fn without_password(value: &str) -> Option<String> {
    let mut url = match url::Url::parse(value) {
        Ok(url) if url.has_host() => url,
        _ if (value.contains("://") && value.contains('@')) || value.to_ascii_lowercase().contains("password=") => return None,
        _ => return Some(value.to_string()),
    };
    let has_parameter = url.query().is_some_and(|query| query.split('&').any(|p| is_password(p.split('=').next().unwrap_or_default())));
    if url.password().is_none() && !has_parameter {
        // As written: serializing would add a `/` to `http://host`.
        return Some(value.to_string());
    }
    if url.password().is_some() {
        let _ = url.set_password(Some("REDACTED"));
    }
    let mut shown = url[..Position::AfterPath].replacen(":REDACTED@", &format!(":{REDACTED}@"), 1);
    if let Some(query) = url.query() {
        let parameters = query.split('&').map(|parameter| match parameter.split_once('=') {
            Some((name, _)) if is_password(name) => format!("{name}={REDACTED}"),
            _ => parameter.to_string(),
        });
        shown.push('?');
        shown.push_str(&parameters.collect::<Vec<_>>().join("&"));
    }
    shown.push_str(&url[Position::AfterQuery..]);
    Some(shown)
}

/// libpq's parameters that carry a password, in a query's encoded `name`.
fn is_password(name: &str) -> bool {
    let decoded = url::form_urlencoded::parse(name.as_bytes()).next().map(|(name, _)| name.to_ascii_lowercase());
    matches!(decoded.as_deref(), Some("password" | "sslpassword"))
}
