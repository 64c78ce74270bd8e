//! The Prometheus rules in `deploy/prometheus/`: `promtool check rules` on every rule file and `promtool test
//! rules` on every unit test file (which fire each alert and show where it must not fire). promtool is
//! `$REI_PROMTOOL` (which `scripts/servers start` writes into its env file), else `promtool` on the `PATH`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// `deploy/prometheus/<dir>/*.yml`, sorted.
fn yaml_files(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/prometheus").join(dir);
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .yml file in {}", dir.display());
    files
}

/// Runs promtool with `args` and `files`; panics with its output when it fails or cannot be run.
fn promtool(args: &[&str], files: &[PathBuf]) {
    let program = std::env::var("REI_PROMTOOL").unwrap_or_else(|_| "promtool".to_owned());
    let output = Command::new(&program).args(args).args(files).output().unwrap_or_else(|e| {
        panic!(
            "cannot run {program} ({e}): install it with `scripts/servers start DIR` (Debian's prometheus package) \
             and `source DIR/env`, or set REI_PROMTOOL"
        )
    });
    assert!(
        output.status.success(),
        "{program} {} failed ({}):\n{}{}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_prometheus_rules_are_valid_and_their_unit_tests_pass() {
    // Proves deploy/prometheus/: every rule file parses with valid PromQL and templates, and every promtool unit
    // test passes (each burn-rate and ledger alert fires on its input series and stays quiet where it must).
    promtool(&["check", "rules"], &yaml_files("rules"));
    promtool(&["test", "rules"], &yaml_files("tests"));
}
