//! Field checks shared by the resources. Each returns the message a user sees.

use crate::error::{ApiError, FieldErrors};

pub const POLICIES: [&str; 3] = ["immediate", "on_demand", "streamed"];

/// Bounds of a remote's numbers; the OpenAPI document declares the same (remotes.rs).
pub const MAX_DOWNLOAD_CONCURRENCY: i64 = 100;
pub const MAX_RETRIES: i64 = 100;
/// A day, in seconds: the longest connect or total timeout.
pub const MAX_TIMEOUT: f64 = 86_400.0;

/// The OCI repository name grammar as a regular expression, for the OpenAPI document.
pub const OCI_NAME_PATTERN: &str = r"^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$";

/// Collects per-field messages so one response lists every problem.
#[derive(Default)]
pub struct Checks {
    errors: FieldErrors,
}

impl Checks {
    pub fn add(&mut self, field: &str, message: impl Into<String>) {
        self.errors.entry(field.to_string()).or_default().push(message.into());
    }

    pub fn check(&mut self, field: &str, result: Result<(), String>) {
        if let Err(m) = result {
            self.add(field, m);
        }
    }

    /// The value of a required field, noting its absence.
    pub fn required<'a, T>(&mut self, field: &str, value: &'a Option<T>) -> Option<&'a T> {
        if value.is_none() {
            self.add(field, "This field is required.");
        }
        value.as_ref()
    }

    pub fn has(&self, field: &str) -> bool {
        self.errors.contains_key(field)
    }

    pub fn finish(self) -> Result<(), ApiError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Invalid(self.errors))
        }
    }
}

pub fn name(value: &str) -> Result<(), String> {
    if value.trim().is_empty() {
        return Err("This field may not be blank.".into());
    }
    if value.chars().count() > 255 {
        return Err("Ensure this field has no more than 255 characters.".into());
    }
    Ok(())
}

pub fn http_url(value: &str) -> Result<(), String> {
    match url::Url::parse(value) {
        Ok(u) if (u.scheme() == "http" || u.scheme() == "https") && u.host_str().is_some() => Ok(()),
        _ => Err("Enter a valid URL.".into()),
    }
}

pub fn policy(value: &str) -> Result<(), String> {
    if POLICIES.contains(&value) {
        Ok(())
    } else {
        Err(format!("\"{value}\" is not a valid choice. Choose one of: immediate, on_demand, streamed."))
    }
}

/// The OCI distribution-spec repository name grammar:
/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`.
pub fn oci_name(value: &str) -> Result<(), String> {
    let fail = || {
        Err(format!(
            "'{value}' is not a valid repository name: use lower-case letters, digits and the separators \
             '.', '_', '__', '-' inside '/'-separated components, with no leading or trailing '/' and no '..'"
        ))
    };
    if value.is_empty() || value.len() > 255 {
        return fail();
    }
    for component in value.split('/') {
        if !oci_component(component) {
            return fail();
        }
    }
    Ok(())
}

fn oci_component(c: &str) -> bool {
    let bytes = c.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
    }
    true
}

pub fn int_range(value: i64, min: i64, max: i64) -> Result<(), String> {
    if value < min {
        Err(format!("Ensure this value is greater than or equal to {min}."))
    } else if value > max {
        Err(format!("Ensure this value is less than or equal to {max}."))
    } else {
        Ok(())
    }
}

/// A timeout in seconds: more than 0, at most `MAX_TIMEOUT`.
pub fn timeout(value: f64) -> Result<(), String> {
    if !value.is_finite() {
        Err("A valid number is required.".into())
    } else if value <= 0.0 {
        Err("Ensure this value is greater than 0.".into())
    } else if value > MAX_TIMEOUT {
        Err(format!("Ensure this value is less than or equal to {MAX_TIMEOUT}."))
    } else {
        Ok(())
    }
}

/// `pulp_labels`: an object of string values whose keys hold letters, digits, `_`, `-` and
/// spaces and whose values hold no `,`, `(` or `)` (Pulp's label selector syntax uses those).
/// Returns the labels as the JSON text stored.
pub fn labels(value: &serde_json::Value) -> Result<String, String> {
    let serde_json::Value::Object(map) = value else {
        return Err(if value.is_null() { "This field may not be null.".into() } else { "Expected a dictionary of items.".into() });
    };
    for (key, v) in map {
        if key.chars().count() > 255 || !crate::models::labels::is_key(key) {
            return Err(format!("Key '{key}' contains non-alphanumerics."));
        }
        let Some(text) = v.as_str() else {
            return Err(format!("The value of label '{key}' must be a string."));
        };
        if text.contains([',', '(', ')']) {
            return Err(format!("Key '{key}' contains value with comma or parenthesis."));
        }
    }
    Ok(value.to_string())
}

/// Stored labels as a JSON object for a response (`{}` for anything unreadable).
pub fn stored_labels(json: &str) -> serde_json::Value {
    serde_json::from_str::<serde_json::Value>(json).ok().filter(serde_json::Value::is_object).unwrap_or_else(|| serde_json::json!({}))
}

/// Headers a remote may not set: the client sets these itself, and `Authorization` belongs in
/// the write-only `username`/`password` (a header's value is shown to anyone who reads the remote).
const RESERVED_HEADERS: [&str; 6] = ["authorization", "host", "content-length", "transfer-encoding", "connection", "proxy-authorization"];

/// A remote's `headers`, Pulp's list of one-entry objects (`[{"X-Name": "value"}]`): valid HTTP
/// header names and values. Returns the JSON text stored.
pub fn headers(value: &serde_json::Value) -> Result<String, String> {
    let serde_json::Value::Array(items) = value else {
        return Err("Expected a list of items.".into());
    };
    for item in items {
        let serde_json::Value::Object(map) = item else {
            return Err("Each header must be an object such as {\"X-Name\": \"value\"}.".into());
        };
        if map.is_empty() {
            return Err("A header object may not be empty.".into());
        }
        for (name, v) in map {
            let header = http::HeaderName::from_bytes(name.as_bytes()).map_err(|_| format!("'{name}' is not a valid HTTP header name."))?;
            if RESERVED_HEADERS.contains(&header.as_str()) {
                return Err(format!("The header '{name}' cannot be set on a remote."));
            }
            let text = v.as_str().ok_or_else(|| format!("The value of header '{name}' must be a string."))?;
            http::HeaderValue::from_str(text).map_err(|_| format!("The value of header '{name}' is not a valid HTTP header value."))?;
        }
    }
    Ok(value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_and_counts() {
        for ok in [0.001, 1.5, MAX_TIMEOUT] {
            assert!(timeout(ok).is_ok(), "{ok}");
        }
        for bad in [0.0, -1.0, MAX_TIMEOUT + 0.5, 1e308, f64::INFINITY, f64::NAN] {
            assert!(timeout(bad).is_err(), "{bad}");
        }
        assert!(int_range(0, 0, 100).is_ok() && int_range(100, 0, 100).is_ok());
        assert!(int_range(-1, 0, 100).is_err() && int_range(101, 0, 100).is_err() && int_range(i64::MAX, 1, 100).is_err());
    }

    #[test]
    fn labels_and_headers() {
        use serde_json::json;
        assert_eq!(labels(&json!({"env": "prod", "team name_1-x": ""})).unwrap(), r#"{"env":"prod","team name_1-x":""}"#);
        for bad in [json!(null), json!([]), json!({"a": 1}), json!({"a": null}), json!({"a/b": "x"}), json!({"": "x"}), json!({"a": "x,y"})] {
            assert!(labels(&bad).is_err(), "{bad}");
        }
        assert!(headers(&json!([{"X-A": "1"}, {"X-B": "2", "X-C": ""}])).is_ok());
        for bad in [json!({"X-A": "1"}), json!(["X-A"]), json!([{}]), json!([{"X A": "1"}]), json!([{"X-A": 1}]), json!([{"X-A": "a\nb"}]), json!([{"Authorization": "Bearer x"}]), json!([{"host": "x"}])] {
            assert!(headers(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn oci_names() {
        for ok in ["busybox", "library/busybox", "a.b_c__d---e/f0", "x/y/z"] {
            assert!(oci_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "/abs", "trail/", "Upper", "a..b", "a/../b", "a//b", "-a", "a-", "a___b", "a b", "a:b"] {
            assert!(oci_name(bad).is_err(), "{bad}");
        }
    }
}
