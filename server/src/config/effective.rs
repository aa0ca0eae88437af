//! `serve --check-config`: the settings `serve` would run with, as TOML, secrets redacted.

use std::fmt::Write;

use clap::ArgMatches;

use super::file::{key_of, kind, secret_of_file, settings, Kind};

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
            // The secrets are the settings whose environment value `--help` hides.
            Some(_) if arg.is_hide_env_values_set() => toml::Value::String(REDACTED.into()),
            Some(raw) => match kind(arg) {
                Kind::Switch | Kind::Boolean => toml::Value::Boolean(raw == "true"),
                Kind::Integer => raw.parse().map(toml::Value::Integer).unwrap_or(toml::Value::String(raw)),
                Kind::Text => toml::Value::String(without_password(raw)),
            },
        };
        let _ = writeln!(out, "{key} = {value}");
    }
    out
}

/// A URL with its password redacted (`postgres://pulpish:<redacted>@db/pulpish`).
fn without_password(value: String) -> String {
    match url::Url::parse(&value) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some("REDACTED"));
            url.to_string().replacen(":REDACTED@", &format!(":{REDACTED}@"), 1)
        }
        Ok(_) => value,
        // Not a URL to the parser, but it may still carry `user:password@`.
        Err(_) if value.contains("://") && value.contains('@') => REDACTED.to_string(),
        Err(_) => value,
    }
}
