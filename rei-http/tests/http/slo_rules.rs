//! The Prometheus rules in `deploy/prometheus/`: `promtool check rules` on every rule file and `promtool test
//! rules` on every unit test file (which fire each alert and show where it must not fire); and the queries of the
//! Grafana dashboards in `deploy/grafana/`, parsed by promtool too. promtool is `$REI_PROMTOOL` (which
//! `scripts/servers start` writes into its env file), else `promtool` on the `PATH`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// `deploy/<dir>/*.<extension>`, sorted.
fn deployed(dir: &str, extension: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy").join(dir);
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == extension))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .{extension} file in {}", dir.display());
    files
}

/// Every string under an `expr` key of a JSON document (a Grafana panel's queries).
fn exprs(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("expr", serde_json::Value::String(e)) => out.push(e.clone()),
                    _ => exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| exprs(v, out)),
        _ => {}
    }
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
    promtool(&["check", "rules"], &deployed("prometheus/rules", "yml"));
    promtool(&["test", "rules"], &deployed("prometheus/tests", "yml"));
}

#[test]
fn the_dashboards_queries_are_valid_promql() {
    // Proves deploy/grafana/: every panel's query parses as PromQL, with Grafana's range variables set to
    // durations (each query becomes a recording rule of a scratch file that promtool checks).
    let mut rules = String::from("groups:\n  - name: dashboards\n    rules:\n");
    let mut n = 0;
    for path in deployed("grafana", "json") {
        let text = std::fs::read_to_string(&path).expect("read the dashboard");
        let board: serde_json::Value = serde_json::from_str(&text).expect("a dashboard is JSON");
        let mut found = Vec::new();
        exprs(&board, &mut found);
        assert!(!found.is_empty(), "{} has no query", path.display());
        for expr in found {
            let expr = expr.replace("$__rate_interval", "5m").replace("$__range", "1h").replace("$__interval", "1m");
            // A JSON string is a YAML double-quoted scalar.
            let quoted = serde_json::to_string(&expr).expect("a string");
            rules.push_str(&format!("      - record: dashboard:query_{n}\n        expr: {quoted}\n"));
            n += 1;
        }
    }
    let dir = tempfile::tempdir().expect("a scratch directory");
    let file = dir.path().join("dashboards.yml");
    std::fs::write(&file, rules).expect("write the scratch rules");
    promtool(&["check", "rules"], &[file]);
}
