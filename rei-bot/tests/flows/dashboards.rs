//! Every metric the Grafana dashboards (`deploy/grafana/*.json`) and the Prometheus rules
//! (`deploy/prometheus/rules/*.yml`) query is exported: the sandbox's scenario serves real traffic, and each
//! name in each PromQL expression must be in the live `/metrics` (a recording rule's name counts as known).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rei_adapters::telegram::Pacing;
use rei_bot::sandbox::{ScenarioOptions, Stack, StackOptions, play};
use rei_core::guards::RateLimitPolicy;
use serde_json::Value;

/// Words of PromQL that are not metric names where they stand outside a call: binary operators and modifiers.
const KEYWORDS: [&str; 13] = [
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
    "inf",
    "nan",
];

/// The aggregation operators: a call, whether their `by (…)` comes before or after their parentheses.
const AGGREGATIONS: [&str; 14] = [
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];

/// The keywords whose label list in parentheses follows them.
const LABEL_LISTS: [&str; 6] = ["by", "without", "on", "ignoring", "group_left", "group_right"];

/// `text` with every quoted string (PromQL's "…", '…' and `…`) blanked out, escapes included.
fn without_strings(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in text.chars() {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' && q != '`' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                }
                out.push(' ');
            }
            None if matches!(c, '"' | '\'' | '`') => {
                quote = Some(c);
                out.push(' ');
            }
            None => out.push(c),
        }
    }
    out
}

/// `text` with everything between `open` and `close` (not nested) blanked out, the brackets too.
fn without_spans(text: &str, open: char, close: char) -> String {
    let mut inside = false;
    text.chars()
        .map(|c| {
            if c == open {
                inside = true;
            }
            let blank = inside;
            if c == close {
                inside = false;
            }
            if blank { ' ' } else { c }
        })
        .collect()
}

fn is_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_part(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// The metric names a PromQL expression reads: identifiers outside label matchers, ranges and label lists that
/// are neither calls (an aggregation, or a function: followed by `(`) nor keywords. Grafana's variables (`$x`,
/// `${x}`) are skipped.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let text = without_spans(&without_spans(&without_strings(expr), '{', '}'), '[', ']');
    let chars: Vec<char> = text.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let after_value = i > 0 && (is_part(chars[i - 1]) || matches!(chars[i - 1], '.' | '$'));
        if !is_start(c) || after_value {
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len() && is_part(chars[i]) {
            i += 1;
        }
        let word: String = chars[start..i].iter().collect();
        let mut next = i;
        while next < chars.len() && chars[next].is_whitespace() {
            next += 1;
        }
        let called = chars.get(next) == Some(&'(');
        if LABEL_LISTS.contains(&word.as_str()) && called {
            // Skip the label list: `by (status, le)`.
            while i < chars.len() && chars[i] != ')' {
                i += 1;
            }
            continue;
        }
        if !called && !KEYWORDS.contains(&word.as_str()) && !AGGREGATIONS.contains(&word.as_str()) {
            names.insert(word);
        }
    }
    names
}

/// The sample names of a Prometheus text exposition, and the names its `# TYPE` lines call histograms.
fn exported(text: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut samples = BTreeSet::new();
    let mut histograms = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            if let (Some(name), Some("histogram")) = (parts.next(), parts.next()) {
                histograms.insert(name.to_owned());
            }
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            samples.insert(line[..end].to_owned());
        }
    }
    (samples, histograms)
}

/// The names `exprs` read that are neither in the exposition `text` (a histogram's `_bucket`, `_sum` and
/// `_count` by the histogram's name) nor in `recorded`, sorted.
fn missing(text: &str, exprs: &[String], recorded: &BTreeSet<String>) -> Vec<String> {
    let (samples, histograms) = exported(text);
    let known = |name: &str| {
        samples.contains(name)
            || recorded.contains(name)
            || ["_bucket", "_sum", "_count"]
                .iter()
                .any(|suffix| name.strip_suffix(suffix).is_some_and(|base| histograms.contains(base)))
    };
    let names: BTreeSet<String> = exprs.iter().flat_map(|e| metric_names(e)).collect();
    names.into_iter().filter(|n| !known(n)).collect()
}

/// Every string under an `expr` key of a JSON document (Grafana's panels keep their queries in `targets`).
fn json_exprs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("expr", Value::String(e)) => out.push(e.clone()),
                    _ => json_exprs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| json_exprs(v, out)),
        _ => {}
    }
}

/// A YAML scalar written after a key on its line: plain, or in single or double quotes.
fn unquote(value: &str) -> String {
    let value = value.trim();
    if let Some(inner) = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        inner.replace("\\\"", "\"").replace("\\\\", "\\")
    } else if let Some(inner) = value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')) {
        inner.replace("''", "'")
    } else {
        value.to_owned()
    }
}

/// The `expr:` values and the `record:` names of a Prometheus rule file: a value on the key's line, or a block
/// (`|` or `>`) on the lines indented deeper below it. The rule files keep to these forms.
fn yaml_rules(text: &str) -> (Vec<String>, BTreeSet<String>) {
    let lines: Vec<&str> = text.lines().collect();
    let (mut exprs, mut records) = (Vec::new(), BTreeSet::new());
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let trimmed = line.trim_start().trim_start_matches("- ");
        let indent = line.len() - line.trim_start().len();
        i += 1;
        if let Some(name) = trimmed.strip_prefix("record:") {
            records.insert(unquote(name));
        } else if let Some(value) = trimmed.strip_prefix("expr:") {
            let value = value.trim();
            if value.starts_with('|') || value.starts_with('>') {
                let mut block = Vec::new();
                while i < lines.len()
                    && (lines[i].trim().is_empty() || lines[i].len() - lines[i].trim_start().len() > indent)
                {
                    block.push(lines[i].trim());
                    i += 1;
                }
                exprs.push(block.join(" "));
            } else {
                exprs.push(unquote(value));
            }
        }
    }
    (exprs, records)
}

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// The files of `dir` ending in `.extension`, sorted.
fn files(dir: &Path, extension: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == extension))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .{extension} file in {}", dir.display());
    files
}

/// Every expression of the dashboards and the rule files, each with the file it came from, and the names the
/// rule files record.
fn deployed_exprs() -> (Vec<(PathBuf, String)>, BTreeSet<String>) {
    let mut all = Vec::new();
    for path in files(&deploy().join("grafana"), "json") {
        let board: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
            .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
        let mut exprs = Vec::new();
        json_exprs(&board, &mut exprs);
        assert!(!exprs.is_empty(), "{} has no query", path.display());
        all.extend(exprs.into_iter().map(|e| (path.clone(), e)));
    }
    let mut recorded = BTreeSet::new();
    for path in files(&deploy().join("prometheus/rules"), "yml") {
        let (exprs, records) = yaml_rules(&std::fs::read_to_string(&path).unwrap());
        assert!(!exprs.is_empty(), "{} has no expression", path.display());
        all.extend(exprs.into_iter().map(|e| (path.clone(), e)));
        recorded.extend(records);
    }
    (all, recorded)
}

#[test]
fn the_checker_finds_each_metric_name_and_reports_an_unknown_one() {
    // Proves the checker itself: names are taken from selectors, ranges, aggregations, histogram quantiles,
    // binary operations and Grafana variables, never from functions, keywords, label names or label values; a
    // histogram's series count by the histogram's name; and a name nobody exports is reported.
    let names = |e: &str| metric_names(e).into_iter().collect::<Vec<_>>();
    assert_eq!(
        names(
            r#"(sum(rate(jobs_total{status=~"failed|dead_lettered"}[5m])) or vector(0)) / sum(rate(jobs_total[1h]))"#
        ),
        ["jobs_total"]
    );
    assert_eq!(
        names(
            "histogram_quantile(0.95, sum by (provider, le) (rate(provider_latency_seconds_bucket[$__rate_interval])))"
        ),
        ["provider_latency_seconds_bucket"]
    );
    assert_eq!(
        names("time() - max(ledger_verify_last_run_timestamp_seconds) > 1800"),
        ["ledger_verify_last_run_timestamp_seconds"]
    );
    assert_eq!(
        names("slo:job_errors:ratio_rate1h > (14.4 * 0.005) and slo:job_errors:ratio_rate5m offset 5m > 1e3"),
        ["slo:job_errors:ratio_rate1h", "slo:job_errors:ratio_rate5m"]
    );
    assert_eq!(names("sum(a) by (le) / on (instance) group_left (x) b unless c"), ["a", "b", "c"]);
    assert_eq!(names(r#"max by (priority) (queue_length{priority="by"})"#), ["queue_length"]);
    assert_eq!(
        names("sum by (status) (increase(jobs_total[$__range])) / count without (x) (up)"),
        ["jobs_total", "up"]
    );

    let text = "# TYPE x_seconds histogram\nx_seconds_bucket{le=\"1\"} 0\nx_seconds_sum 0\nx_seconds_count 0\n\
                # TYPE jobs_total counter\njobs_total{status=\"succeeded\"} 1\nqueue_in_flight 0\n";
    let exprs: Vec<String> = [
        "sum(rate(jobs_total[5m]))",
        "histogram_quantile(0.9, rate(x_seconds_bucket[5m])) + rate(x_seconds_count[5m])",
        "max(queue_in_flight) + slo:known:ratio_rate5m",
        "rate(rei_no_such_metric_total[5m]) or x_seconds_total",
    ]
    .map(str::to_owned)
    .to_vec();
    let recorded = BTreeSet::from(["slo:known:ratio_rate5m".to_owned()]);
    assert_eq!(missing(text, &exprs, &recorded), ["rei_no_such_metric_total", "x_seconds_total"]);

    let (exprs, records) = yaml_rules(
        "groups:\n  - name: g\n    rules:\n      - record: slo:a:ratio_rate5m\n        expr: sum(rate(a_total[5m]))\n      \
         - alert: B\n        expr: |\n          slo:a:ratio_rate5m\n            > 0.1\n        labels:\n          severity: page\n      \
         - alert: C\n        expr: \"c_total > 0\"\n",
    );
    assert_eq!(exprs, ["sum(rate(a_total[5m]))", "slo:a:ratio_rate5m > 0.1", "c_total > 0"]);
    assert_eq!(records, BTreeSet::from(["slo:a:ratio_rate5m".to_owned()]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_of_the_dashboards_and_rules_is_served() {
    // Proves deploy/: after the sandbox's scenario (top-ups by card and Stars, images, a video, a failover, a
    // blocked prompt, a refund), a confirm the wallet cannot cover, a malformed payment notice and one verify,
    // the live /metrics has every metric each dashboard panel and each rule reads; and a bogus name is reported.
    let _ = rei_http::ops::recorder();
    let (exprs, recorded) = deployed_exprs();
    let dir = tempfile::tempdir().unwrap();
    let fast = RateLimitPolicy::new(1_000, Duration::from_secs(1), 1_000).unwrap();
    let options = StackOptions { pacing: Pacing { per_chat: fast, global: fast }, ..StackOptions::new(dir.path()) };
    let stack = Stack::start(options).await.unwrap();
    let options = ScenarioOptions { users: 3, jobs: 6, deadline: Duration::from_secs(60) };
    let summary = play(&stack, options, |_| {}).await.unwrap();
    assert!(summary.ok(), "{}", summary.render());

    // What the scenario does not do: a hold refused for want of money, a notice refused, a verify.
    let engine = &stack.engine;
    let product = rei_core::ids::ProductId::parse("image.nano-banana").unwrap();
    let poor = rei_core::ids::UserId(77_001);
    let quote = engine.billing().quote(poor, &product, 1, rei_core::pricing::Tier::Basic).await.unwrap();
    assert!(engine.billing().confirm(poor, quote.id, None).await.is_err(), "an empty wallet covers nothing");
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let notice = client.post(format!("http://{}/webhooks/yookassa", stack.addr)).body("{not json").send().await;
    assert_eq!(notice.unwrap().status().as_u16(), 400);
    let state = rei_http::HttpState::new(engine.clone(), rei_http::HttpConfig::default());
    assert!(rei_http::ops::verify_now(&state).await.unwrap().is_clean());

    let response = client.get(format!("http://{}/metrics", stack.addr)).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let text = response.text().await.unwrap();
    stack.stop().await;

    let mut absent = Vec::new();
    for (path, expr) in &exprs {
        for name in missing(&text, std::slice::from_ref(expr), &recorded) {
            let file = path.strip_prefix(deploy()).unwrap_or(path);
            absent.push(format!("{name} (in deploy/{}: {expr})", file.display()));
        }
    }
    assert!(absent.is_empty(), "not in /metrics:\n{}\n\n/metrics:\n{text}", absent.join("\n"));
    let bogus = vec!["sum(rate(rei_no_such_metric_total[5m]))".to_owned()];
    assert_eq!(missing(&text, &bogus, &recorded), ["rei_no_such_metric_total"]);
}
