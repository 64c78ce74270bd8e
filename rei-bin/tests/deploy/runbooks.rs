//! The runbooks' commands: every `rei …` line in a shell block of `docs/runbooks/*.md` is one the binary takes
//! (a known subcommand, its flags, its values, as `rei <line> --help` parses them), every `scripts/…` and
//! `cargo … -p <crate>` names something that exists, and every link to another file or heading resolves.

use std::path::Path;

use super::binary::Binary;

/// The shell lines of a markdown text's fenced `sh` blocks, continuation lines joined.
pub(crate) fn shell_lines(markdown: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_block = false;
    let mut current = String::new();
    for line in markdown.lines() {
        let trimmed = line.trim();
        if let Some(lang) = trimmed.strip_prefix("```") {
            in_block = !in_block && matches!(lang.trim(), "sh" | "bash" | "console" | "shell");
            continue;
        }
        if !in_block || trimmed.starts_with('#') || trimmed.is_empty() {
            continue;
        }
        if let Some(head) = trimmed.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
            continue;
        }
        current.push_str(trimmed);
        out.push(std::mem::take(&mut current));
    }
    out
}

/// A line split into words as the shell would for plain words and double or single quotes (no expansion).
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut quote = None;
    let mut any = false;
    for c in line.chars() {
        match (quote, c) {
            // A comment runs to the end of the line.
            (None, '#') if !any => break,
            (None, '"' | '\'') => {
                quote = Some(c);
                any = true;
            }
            (Some(q), c) if c == q => quote = None,
            (None, c) if c.is_whitespace() => {
                if any {
                    out.push(std::mem::take(&mut word));
                    any = false;
                }
            }
            (_, c) => {
                word.push(c);
                any = true;
            }
        }
    }
    if any {
        out.push(word);
    }
    out
}

/// What is wrong with the commands of one runbook; empty when nothing is.
pub(crate) fn problems(binary: &Binary, repo: &Path, name: &str, markdown: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in shell_lines(markdown) {
        // Each command of a pipeline or list is checked on its own.
        for part in line.split(['|', ';']).flat_map(|p| p.split("&&")) {
            let w = words(part.trim().trim_end_matches('&'));
            // Leading VAR=value assignments and `target/release/` or `cargo run … --` prefixes name the binary too.
            let start = w.iter().position(|x| !x.contains('=') || x.starts_with('-')).unwrap_or(w.len());
            let w = &w[start..];
            let Some(first) = w.first() else { continue };
            if first == "rei" || first.ends_with("/rei") {
                if let Err(e) = binary.check_args(&w[1..]) {
                    out.push(format!("{name}: {e}"));
                }
            } else if first.starts_with("scripts/") && !repo.join(first).is_file() {
                out.push(format!("{name}: {first} does not exist"));
            } else if first == "cargo" {
                for pair in w.windows(2).filter(|p| p[0] == "-p") {
                    if !repo.join(&pair[1]).join("Cargo.toml").is_file() && pair[1] != "rei" {
                        out.push(format!("{name}: `cargo … -p {}`: no such crate", pair[1]));
                    }
                }
                if let Some(at) = w.iter().position(|x| x == "--")
                    && w.iter().any(|x| x == "rei-bin")
                    && let Err(e) = binary.check_args(&w[at + 1..])
                {
                    out.push(format!("{name}: {e}"));
                }
            }
        }
    }
    out.extend(links(repo, name, markdown));
    out
}

/// Links to files that do not exist, or to headings the target does not have.
fn links(repo: &Path, name: &str, markdown: &str) -> Vec<String> {
    let here = repo.join("docs/runbooks");
    let mut out = Vec::new();
    for (at, _) in markdown.match_indices("](") {
        let rest = &markdown[at + 2..];
        let Some(end) = rest.find(')') else { continue };
        let target = &rest[..end];
        if target.starts_with("http") || target.contains(' ') {
            continue;
        }
        let (file, anchor) = target.split_once('#').unwrap_or((target, ""));
        let path = if file.is_empty() { here.join(name) } else { here.join(file) };
        let Ok(text) = std::fs::read_to_string(&path) else {
            out.push(format!("{name}: the link {target} names a file that does not exist"));
            continue;
        };
        if !anchor.is_empty() && !text.lines().filter(|l| l.starts_with('#')).any(|l| slug(l) == anchor) {
            out.push(format!("{name}: the link {target} names a heading {} does not have", path.display()));
        }
    }
    out
}

/// A heading's anchor as GitHub makes it.
pub(crate) fn slug(heading: &str) -> String {
    heading
        .trim_start_matches('#')
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}
