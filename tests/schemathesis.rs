//! schemathesis (PyPI) against the served OpenAPI document, on SQLite and on PostgreSQL (NUL
//! characters once gave 500s only there): property-based requests to every operation, with HTTP
//! Basic credentials, in a bounded mode. No server error, and every answer has a status, content
//! type and body that the document declares.
//!
//! schemathesis lives in a virtualenv outside the clone: `.ci/schemathesis-venv` creates it and
//! prints the path of its `st`; set `PULPISH_SCHEMATHESIS` to that path. Without it the test is
//! skipped, except under CI (`CI` set), where it fails.
//!
//!     PULPISH_SCHEMATHESIS=$(.ci/schemathesis-venv) cargo test -p pulpish --test schemathesis
//!
//! `PULPISH_SCHEMATHESIS_EXAMPLES` (default 30 per operation), `PULPISH_SCHEMATHESIS_SEED`
//! (default fixed, so a run is repeatable) and `PULPISH_SCHEMATHESIS_TIMEOUT` (seconds, default
//! 110 per backend) tune a run; `PULPISH_SCHEMATHESIS_CHECKS` replaces the list of checks.

mod support;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{Backend, TestServer, PASSWORD};

const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance";

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// The `st` to run, or None (test skipped) when none is configured outside CI.
fn schemathesis() -> Option<PathBuf> {
    match std::env::var_os("PULPISH_SCHEMATHESIS") {
        Some(path) if !path.is_empty() => {
            let path = PathBuf::from(path);
            assert!(path.is_file(), "PULPISH_SCHEMATHESIS={} is not a file: run .ci/schemathesis-venv", path.display());
            Some(path)
        }
        _ if in_ci() => panic!("CI is set but PULPISH_SCHEMATHESIS is not: run `PULPISH_SCHEMATHESIS=$(.ci/schemathesis-venv)`"),
        _ => {
            eprintln!("SKIPPED: set PULPISH_SCHEMATHESIS to schemathesis' `st` (see .ci/schemathesis-venv) to run this test");
            None
        }
    }
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

async fn schemathesis_finds_nothing(backend: Backend) {
    let Some(st) = schemathesis() else { return };
    let s = TestServer::start(backend).await;
    let examples = env_or("PULPISH_SCHEMATHESIS_EXAMPLES", 30);
    let seed = env_or("PULPISH_SCHEMATHESIS_SEED", 10);
    let timeout = Duration::from_secs(env_or("PULPISH_SCHEMATHESIS_TIMEOUT", 110));
    let work = tempfile::tempdir().expect("temp dir");
    // The served document keys detail operations by href (`{task_href}`), as Pulp's does; the
    // same document with the routes' own `{id}` paths is what a URL-template tool can call.
    let document = work.path().join("api.json");
    std::fs::write(&document, pulpish_server::openapi_concrete_json()).expect("write the document");
    let mut command = Command::new(&st);
    command
        .arg("run")
        .arg(&document)
        .args(["--url", &s.base])
        .args(["--auth", &format!("admin:{PASSWORD}")])
        .args(["--checks", &std::env::var("PULPISH_SCHEMATHESIS_CHECKS").unwrap_or_else(|_| CHECKS.into())])
        .args(["--max-examples", &examples.to_string()])
        .args(["--seed", &seed.to_string()])
        .args(["--workers", "2", "--request-timeout", "30"])
        .args(["--generation-database", "none", "--no-color", "--output-truncate", "true"])
        // Anything schemathesis writes stays out of the clone.
        .current_dir(work.path())
        .env("HOME", work.path())
        .env("SCHEMATHESIS_TELEMETRY", "false")
        .stdin(Stdio::null())
        .stdout(Stdio::from(std::fs::File::create(work.path().join("out.txt")).unwrap()))
        .stderr(Stdio::from(std::fs::File::create(work.path().join("err.txt")).unwrap()));
    let started = Instant::now();
    let mut child = command.spawn().unwrap_or_else(|e| panic!("cannot run {}: {e}", st.display()));
    // The server runs on this runtime: wait without blocking its threads.
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for schemathesis") {
            break Some(status);
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let out = std::fs::read_to_string(work.path().join("out.txt")).unwrap_or_default();
    let err = std::fs::read_to_string(work.path().join("err.txt")).unwrap_or_default();
    let summary: String = out.lines().rev().take(25).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
    eprintln!("schemathesis on {backend:?}: {:.1?}\n{summary}", started.elapsed());
    let Some(status) = status else {
        panic!("schemathesis did not finish within {timeout:?} on {backend:?}:\n{out}\n{err}");
    };
    assert!(
        status.success() && out.contains("Test cases:") && !out.contains("FAILURES"),
        "schemathesis found problems on {backend:?} ({status}):\n{out}\n{err}"
    );
}

on_both_backends!(schemathesis_finds_nothing);
