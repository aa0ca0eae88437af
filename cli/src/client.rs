//! The CLI's side of the REST API: requests with credentials, errors turned into messages and
//! exit codes, names resolved to hrefs, tasks followed to the end.

use std::time::Duration;

use reqwest::blocking::{Client, Response};
use reqwest::{Method, StatusCode};
use serde_json::Value;

/// What went wrong, and the exit code that says so.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("cannot reach the pulpish server at {server}: {reason}\n(is `pulpish serve` running? set --server or PULPISH_SERVER)")]
    Unreachable { server: String, reason: String },
    #[error("authentication failed (HTTP 401): {0}\n(set --username/--password, PULPISH_USERNAME/PULPISH_PASSWORD, or `pulpish config create`)")]
    Unauthorized(String),
    #[error("{0}")]
    NotFound(String),
    #[error("invalid input:\n{0}")]
    Invalid(String),
    #[error("task failed: {0}")]
    TaskFailed(String),
    #[error("{0}")]
    Other(String),
}

impl CliError {
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Other(_) | CliError::TaskFailed(_) => 1,
            CliError::Unreachable { .. } => 3,
            CliError::Unauthorized(_) => 4,
            CliError::NotFound(_) => 5,
            CliError::Invalid(_) => 6,
        }
    }
}

pub struct Api {
    pub server: String,
    username: String,
    password: Option<String>,
    http: Client,
}

/// The API's error body as lines: `{"detail": ...}` or `{"field": ["msg", ...]}`.
fn describe_error(body: &Value) -> String {
    if let Some(d) = body.get("detail").and_then(Value::as_str) {
        return d.to_string();
    }
    match body.as_object() {
        Some(fields) => fields
            .iter()
            .map(|(field, msgs)| {
                let msgs: Vec<String> = match msgs {
                    Value::Array(a) => a.iter().map(|m| m.as_str().map(str::to_string).unwrap_or_else(|| m.to_string())).collect(),
                    other => vec![other.to_string()],
                };
                format!("  {field}: {}", msgs.join(" "))
            })
            .collect::<Vec<_>>()
            .join("\n"),
        None => body.to_string(),
    }
}

impl Api {
    pub fn new(server: &str, username: &str, password: Option<String>) -> Self {
        let http = Client::builder().timeout(Duration::from_secs(120)).build().expect("HTTP client");
        Api { server: server.trim_end_matches('/').to_string(), username: username.to_string(), password, http }
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            path.to_string()
        } else if path.starts_with('/') {
            format!("{}{path}", self.server)
        } else {
            format!("{}/pulp/api/v3/{path}", self.server)
        }
    }

    pub fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Value, CliError> {
        let mut req = self.http.request(method, self.url(path)).basic_auth(&self.username, self.password.as_deref());
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp: Response = req.send().map_err(|e| CliError::Unreachable { server: self.server.clone(), reason: root_cause(&e) })?;
        let status = resp.status();
        let text = resp.text().unwrap_or_default();
        let value: Value = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
        match status {
            s if s.is_success() => Ok(value),
            StatusCode::UNAUTHORIZED => Err(CliError::Unauthorized(describe_error(&value))),
            StatusCode::NOT_FOUND => Err(CliError::NotFound(format!("not found: {path}"))),
            StatusCode::BAD_REQUEST => Err(CliError::Invalid(describe_error(&value))),
            s => Err(CliError::Other(format!("the server answered HTTP {}: {}", s.as_u16(), describe_error(&value)))),
        }
    }

    pub fn get(&self, path: &str) -> Result<Value, CliError> {
        self.call(Method::GET, path, None)
    }

    pub fn post(&self, path: &str, body: &Value) -> Result<Value, CliError> {
        self.call(Method::POST, path, Some(body))
    }

    pub fn patch(&self, path: &str, body: &Value) -> Result<Value, CliError> {
        self.call(Method::PATCH, path, Some(body))
    }

    pub fn delete(&self, path: &str) -> Result<Value, CliError> {
        self.call(Method::DELETE, path, None)
    }

    /// Every item of a paginated list, following `next`.
    pub fn list_all(&self, path: &str) -> Result<Vec<Value>, CliError> {
        let mut out = Vec::new();
        let mut next = Some(self.url(path));
        while let Some(url) = next.take() {
            let page = self.get(&url)?;
            out.extend(page["results"].as_array().cloned().unwrap_or_default());
            next = page["next"].as_str().map(str::to_string);
        }
        Ok(out)
    }

    /// The object named `name` under a list endpoint; `kind` words the not-found message.
    pub fn find(&self, list: &str, kind: &str, name: &str) -> Result<Value, CliError> {
        let q = format!("{list}?name={}", encode(name));
        let page = self.get(&q)?;
        page["results"]
            .as_array()
            .and_then(|r| r.first().cloned())
            .ok_or_else(|| CliError::NotFound(format!("{kind} '{name}' not found")))
    }

    pub fn href_of(&self, list: &str, kind: &str, name: &str) -> Result<String, CliError> {
        Ok(self.find(list, kind, name)?["pulp_href"].as_str().unwrap_or_default().to_string())
    }
}

pub fn encode(s: &str) -> String {
    url_escape(s)
}

fn url_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn root_cause(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        msg = s.to_string();
        source = s.source();
    }
    msg
}

/// A task href from an href or a bare id.
pub fn task_href(id_or_href: &str) -> String {
    if id_or_href.starts_with('/') {
        id_or_href.to_string()
    } else {
        format!("/pulp/api/v3/tasks/{id_or_href}/")
    }
}

/// Follows a task to its end, drawing its progress reports; fails when the task did.
pub fn wait_task(api: &Api, href: &str, show_progress: bool) -> Result<Value, CliError> {
    let bar = show_progress.then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    });
    loop {
        let task = api.get(href)?;
        let state = task["state"].as_str().unwrap_or("");
        if let Some(bar) = &bar {
            let reports = task["progress_reports"].as_array().cloned().unwrap_or_default();
            if let Some(r) = reports.iter().rev().find(|r| r["state"] == "running").or(reports.last()) {
                bar.set_message(r["message"].as_str().unwrap_or("").to_string());
                bar.set_length(r["total"].as_u64().unwrap_or(0));
                bar.set_position(r["done"].as_u64().unwrap_or(0));
            } else {
                bar.set_message(format!("{} ({state})", task["name"].as_str().unwrap_or("task")));
            }
        }
        match state {
            "completed" => {
                if let Some(bar) = bar {
                    bar.finish_and_clear();
                }
                return Ok(task);
            }
            "failed" | "canceled" => {
                if let Some(bar) = bar {
                    bar.finish_and_clear();
                }
                let why = task["error"]["description"].as_str().unwrap_or(state).to_string();
                return Err(CliError::TaskFailed(why));
            }
            _ => std::thread::sleep(Duration::from_millis(250)),
        }
    }
}
