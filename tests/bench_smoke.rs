//! The benchmark script's smoke mode, so it cannot rot: every figure must be produced (their
//! values are for docs/benchmarks.md, not for a test). Uses the debug binary this build made.

use std::process::Command;

#[test]
fn benchmark_smoke_mode_produces_every_figure() {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/bench/run.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg("--smoke")
        .env("PULPISH_BIN", env!("CARGO_BIN_EXE_pulpish"))
        .output()
        .expect("run tests/bench/run.sh");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "run.sh --smoke failed:\n{table}\n{}", String::from_utf8_lossy(&out.stderr));
    for figure in ["B1", "B2", "B3", "B4", "B5", "B6"] {
        assert!(table.lines().any(|l| l.starts_with(&format!("| {figure} "))), "{figure} missing from:\n{table}");
    }
}
