//! The benchmark script's smoke mode, so it cannot rot: every figure must be produced (their
//! values are for docs/benchmarks.md, not for a test). Uses the debug binary this build made.
//!
//! B9–B11 need Garage (and B10 PostgreSQL's server binaries). Without them the script runs
//! B1–B8, B12 and B13 only and says so, as the other object-store tests skip; under CI a missing
//! one fails. B6 and B12 on PostgreSQL are checked only where its binaries are.

use std::path::{Path, PathBuf};
use std::process::Command;

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// What the script looks for: `GARAGE_BIN`, `garage` on PATH, ~/.cargo/bin/garage.
fn garage_found() -> bool {
    let on_path = std::env::var_os("PATH").map(|p| std::env::split_paths(&p).map(|d| d.join("garage")).collect::<Vec<_>>()).unwrap_or_default();
    let cargo = std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo/bin/garage"));
    std::env::var_os("GARAGE_BIN").map(PathBuf::from).into_iter().chain(on_path).chain(cargo).any(|p| p.is_file())
}

/// What the script looks for: `PULPISH_PG_BIN`, /usr/lib/postgresql/NN/bin.
fn postgres_found() -> bool {
    let given = std::env::var_os("PULPISH_PG_BIN").map(PathBuf::from);
    let installed = ["17", "16", "15", "14", "13"].map(|v| PathBuf::from(format!("/usr/lib/postgresql/{v}/bin")));
    given.into_iter().chain(installed).any(|d| d.join("initdb").is_file())
}

#[test]
fn benchmark_smoke_mode_produces_every_figure() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/bench/run.sh");
    let mut figures = vec!["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B12", "B13"];
    let mut cmd = Command::new("bash");
    cmd.arg(&script).arg("--smoke").env("PULPISH_BIN", env!("CARGO_BIN_EXE_pulpish"));
    if garage_found() && postgres_found() {
        figures.extend(["B9", "B10", "B11"]);
    } else {
        let why = "B9-B11 need garage (cargo install garage --locked) and PostgreSQL's server binaries";
        assert!(!in_ci(), "{why}");
        eprintln!("skipped B9-B11: {why}");
        cmd.args(["--only", &figures.join(",")]);
    }
    let out = cmd.output().expect("run tests/bench/run.sh");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "run.sh --smoke failed:\n{table}\n{}", String::from_utf8_lossy(&out.stderr));
    for figure in figures {
        assert!(table.lines().any(|l| l.starts_with(&format!("| {figure} "))), "{figure} missing from:\n{table}");
    }
    // Issue 15's figures, each a row with a value (B12 has one pair per image).
    let mut rows = vec![
        ("B2", "SHA-256 of the blob in memory", 1),
        ("B2", "pulpish ÷ max(U, SHA-256)", 1),
        ("B12", "pulpish ÷ U", 2),
        ("B12", "pulpish cold, s", 2),
        ("B13", "time to first byte, pulpish", 1),
        ("B13", "first byte pulpish ÷ U", 1),
    ];
    if postgres_found() {
        rows.extend([("B6", "p99, pulpish on PostgreSQL", 1), ("B12", "pulpish on PostgreSQL ÷ U", 2)]);
    }
    for (figure, text, count) in rows {
        let found = table
            .lines()
            .filter(|l| l.starts_with(&format!("| {figure} ")) && l.contains(text))
            .filter(|l| l.split('|').nth(3).is_some_and(|v| v.trim().parse::<f64>().is_ok()))
            .count();
        assert_eq!(found, count, "{figure} rows with \"{text}\" and a value, in:\n{table}");
    }
}
