//! The other deployment files: the Dockerfile (stages, `--locked`, a non-root user, an entrypoint and command the
//! binary takes), `.dockerignore` (nothing the build reads is left out) and the systemd units (commands the
//! binary takes, hardening, writes only where the unit may write).

use std::collections::BTreeMap;

use super::binary::Binary;

/// Subcommands being built elsewhere that a unit may already name, with the only flags agreed for them. Once
/// the binary has one, it is checked like any other.
const PENDING: &[(&str, &[&str])] = &[("backup", &["--to"])];

/// What the checks of the manifests need from the Dockerfile.
#[derive(Debug)]
pub(crate) struct ImageFacts {
    pub(crate) entrypoint: String,
    pub(crate) uid: u32,
}

/// The Dockerfile's instructions, continuation lines joined and comments dropped: (keyword, rest).
fn instructions(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if current.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        if let Some(head) = trimmed.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
            continue;
        }
        current.push_str(trimmed);
        let (keyword, rest) = current.split_once(char::is_whitespace).unwrap_or((&current, ""));
        out.push((keyword.to_ascii_uppercase(), rest.trim().to_owned()));
        current.clear();
    }
    out
}

/// One stage of a Dockerfile: its base image, its name (`AS name`), its instructions.
struct Stage {
    image: String,
    name: Option<String>,
    instructions: Vec<(String, String)>,
}

/// The Dockerfile's rules; `members` are the workspace's crates (their manifests must reach the dependency
/// layer). Returns the image's facts, or every problem found.
pub(crate) fn check_dockerfile(text: &str, binary: &Binary, members: &[String]) -> Result<ImageFacts, Vec<String>> {
    let mut p = Vec::new();
    let mut stages: Vec<Stage> = Vec::new();
    for (keyword, rest) in instructions(text) {
        if keyword == "FROM" {
            let words: Vec<&str> = rest.split_whitespace().collect();
            let name = match words[..] {
                [_, as_, name] if as_.eq_ignore_ascii_case("as") => Some(name.to_owned()),
                _ => None,
            };
            let image = words.first().copied().unwrap_or("").to_owned();
            stages.push(Stage { image, name, instructions: Vec::new() });
        } else if let Some(stage) = stages.last_mut() {
            stage.instructions.push((keyword, rest));
        } else {
            p.push(format!("{keyword} before the first FROM"));
        }
    }
    let [builder, .., runtime] = &stages[..] else {
        return Err(vec![format!("the Dockerfile must be multi-stage; it has {} stage(s)", stages.len())]);
    };
    if !builder.image.starts_with("rust:") || builder.name.is_none() {
        p.push(format!("the first stage must be a named rust image (FROM rust:… AS builder), not {}", builder.image));
    }
    if runtime.image.starts_with("rust:") {
        p.push("the runtime stage must not be the Rust image".to_owned());
    }
    let all_runs = stages.iter().flat_map(|s| &s.instructions).filter(|(k, _)| k == "RUN").map(|(_, r)| r.as_str());
    let builds: Vec<&str> = all_runs.filter(|r| r.contains("cargo build")).collect();
    if builds.is_empty() {
        p.push("no RUN cargo build".to_owned());
    }
    for build in &builds {
        for part in build.split("&&").filter(|part| part.contains("cargo build")) {
            for needed in ["--locked", "--release", "-p rei-bin"] {
                if !part.contains(needed) {
                    p.push(format!("`{}` lacks {needed}", part.trim()));
                }
            }
        }
    }
    // The dependency layer: every workspace manifest is copied before the first build.
    let first_build =
        builder.instructions.iter().position(|(k, r)| k == "RUN" && r.contains("cargo build")).unwrap_or(0);
    let early_copies: Vec<&str> =
        builder.instructions[..first_build].iter().filter(|(k, _)| k == "COPY").map(|(_, r)| r.as_str()).collect();
    for member in members {
        let manifest = format!("{member}/Cargo.toml");
        if !early_copies.iter().any(|c| c.split_whitespace().any(|w| w == manifest)) {
            p.push(format!("{manifest} is not copied before the dependency build"));
        }
    }
    let last = |keyword: &str| runtime.instructions.iter().rev().find(|(k, _)| k == keyword).map(|(_, r)| r.as_str());
    let uid = match last("USER").map(|u| u.split(':').next().unwrap_or(u)) {
        None => {
            p.push("the runtime stage sets no USER: it would run as root".to_owned());
            None
        }
        Some(user) => match user.parse::<u32>() {
            Ok(0) | Err(_) => {
                p.push(format!("USER {user} must be a numeric non-root uid (Kubernetes' runAsNonRoot checks it)"));
                None
            }
            Ok(uid) => Some(uid),
        },
    };
    // The exec form (a JSON array): the shell form would put a shell between the kubelet's signals and rei.
    let exec_form = |keyword: &str| -> Option<Result<Vec<String>, String>> {
        let value = last(keyword)?;
        Some(serde_json::from_str(value).map_err(|_| format!("{keyword} {value} is not the exec form")))
    };
    let entrypoint = match exec_form("ENTRYPOINT") {
        Some(Ok(words)) if words.len() == 1 && words[0].ends_with("/rei") => Some(words[0].clone()),
        other => {
            p.push(format!("ENTRYPOINT must be the exec form of the rei binary alone, not {other:?}"));
            None
        }
    };
    if let Some(path) = &entrypoint {
        let copied = runtime.instructions.iter().any(|(k, r)| {
            k == "COPY"
                && builder.name.as_ref().is_some_and(|b| r.contains(&format!("--from={b}")))
                && r.ends_with(path.as_str())
        });
        if !copied {
            p.push(format!("the runtime stage does not COPY --from the builder to {path}"));
        }
    }
    match exec_form("CMD") {
        Some(Ok(args)) => match binary.check_args(&args) {
            Ok(_) => {
                let port = Binary::flag_value(&args, "--listen").and_then(|l| l.rsplit(':').next());
                if port.is_none_or(|port| last("EXPOSE") != Some(port)) {
                    p.push(format!("EXPOSE {:?} is not the port CMD listens on ({port:?})", last("EXPOSE")));
                }
            }
            Err(e) => p.push(format!("CMD: {e}")),
        },
        Some(Err(e)) => p.push(e),
        None => p.push("no CMD".to_owned()),
    }
    if !runtime.instructions.iter().any(|(k, r)| k == "RUN" && r.contains("ca-certificates")) {
        p.push("the runtime stage installs no ca-certificates (every provider is reached over HTTPS)".to_owned());
    }
    match (p.is_empty(), entrypoint, uid) {
        (true, Some(entrypoint), Some(uid)) => Ok(ImageFacts { entrypoint, uid }),
        _ => Err(p),
    }
}

/// `.dockerignore` leaves out the build output and history, and nothing the build reads.
pub(crate) fn check_dockerignore(text: &str, needed: &[&str]) -> Vec<String> {
    let patterns: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
    let ignored = |path: &str| patterns.iter().any(|pattern| ignores(pattern, path));
    let mut p = Vec::new();
    for path in ["target/release/rei", ".git/HEAD"] {
        if !ignored(path) {
            p.push(format!(".dockerignore must leave out {path}"));
        }
    }
    for path in needed.iter().filter(|path| ignored(path)) {
        p.push(format!(".dockerignore leaves out {path}, which the build reads"));
    }
    p
}

/// `pattern` (a .dockerignore line: `dir/`, `**/*.db`, `name`) covers `path` or a folder above it.
fn ignores(pattern: &str, path: &str) -> bool {
    let pattern: Vec<&str> = pattern.trim_matches('/').split('/').collect();
    let path: Vec<&str> = path.split('/').collect();
    (1..=path.len()).any(|n| glob(&pattern, &path[..n]))
}

fn glob(pattern: &[&str], path: &[&str]) -> bool {
    match (pattern.split_first(), path.split_first()) {
        (None, None) => true,
        (Some((&"**", rest)), _) => glob(rest, path) || (!path.is_empty() && glob(pattern, &path[1..])),
        (Some((segment, rest)), Some((name, tail))) => wildcard(segment, name) && glob(rest, tail),
        _ => false,
    }
}

/// `*` matches any run of characters within one name.
fn wildcard(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((head, tail)) => name.starts_with(head) && (head.len()..=name.len()).any(|i| wildcard(tail, &name[i..])),
    }
}

/// A systemd unit file: each section's keys in order (a key may repeat).
pub(crate) fn ini(text: &str) -> BTreeMap<String, Vec<(String, String)>> {
    let mut out: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    let mut section = String::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
            continue;
        }
        if let Some((key, value)) = line.split_once('=') {
            out.entry(section.clone()).or_default().push((key.trim().to_owned(), value.trim().to_owned()));
        }
    }
    out
}

fn values<'a>(unit: &'a BTreeMap<String, Vec<(String, String)>>, section: &str, key: &str) -> Vec<&'a str> {
    unit.get(section).into_iter().flatten().filter(|(k, _)| k == key).map(|(_, v)| v.as_str()).collect()
}

/// A service unit's rules. Returns the subcommand its ExecStart runs, and every problem found.
pub(crate) fn check_service(name: &str, text: &str, binary: &Binary) -> (Option<String>, Vec<String>) {
    let unit = ini(text);
    let mut p = Vec::new();
    let one = |key: &str| values(&unit, "Service", key).last().copied();
    for (key, wanted) in [("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"), ("PrivateTmp", "yes")] {
        if one(key) != Some(wanted) {
            p.push(format!("{name}: [Service] {key}= must be {wanted}"));
        }
    }
    match one("User") {
        None | Some("root" | "0") => p.push(format!("{name}: [Service] User= must name a user other than root")),
        Some(_) => {}
    }
    if one("EnvironmentFile").is_none() {
        p.push(format!("{name}: [Service] has no EnvironmentFile= for its secrets"));
    }
    let oneshot = one("Type") == Some("oneshot");
    if !oneshot && one("Restart") != Some("on-failure") {
        p.push(format!("{name}: [Service] Restart= must be on-failure"));
    }
    if !oneshot && values(&unit, "Install", "WantedBy").is_empty() {
        p.push(format!("{name}: [Install] WantedBy= is missing: the unit would never start at boot"));
    }
    let writable: Vec<&str> =
        values(&unit, "Service", "ReadWritePaths").into_iter().flat_map(str::split_whitespace).collect();
    if writable.is_empty() {
        p.push(format!("{name}: ProtectSystem=strict needs ReadWritePaths= for the state"));
    }
    let Some(exec) = one("ExecStart") else {
        p.push(format!("{name}: no ExecStart="));
        return (None, p);
    };
    let words: Vec<String> = exec.split_whitespace().map(str::to_owned).collect();
    let Some((program, args)) = words.split_first() else {
        p.push(format!("{name}: ExecStart= is empty"));
        return (None, p);
    };
    if !program.starts_with('/') || !program.ends_with("/rei") {
        p.push(format!("{name}: ExecStart= must run the rei binary by its absolute path, not {program}"));
    }
    for path in args.iter().filter(|a| a.starts_with('/') && !a.starts_with("/etc/") && !a.starts_with("/usr/")) {
        if !writable.iter().any(|w| under(path, w)) {
            p.push(format!(
                "{name}: {path} is outside ReadWritePaths ({writable:?}): ProtectSystem=strict makes it read-only"
            ));
        }
    }
    let subcommand = match binary.check_args(args) {
        Ok(subcommand) => Some(subcommand),
        Err(e) => match PENDING.iter().find(|(sub, _)| args.first().is_some_and(|a| a == sub)) {
            Some((sub, agreed)) if !binary.subcommands.contains_key(*sub) => {
                for flag in args.iter().filter(|a| a.starts_with("--")) {
                    if !agreed.contains(&flag.as_str()) {
                        p.push(format!(
                            "{name}: `rei {sub}` is not built yet, and {flag} is not among its agreed flags \
                                 {agreed:?}"
                        ));
                    }
                }
                Some((*sub).to_owned())
            }
            _ => {
                p.push(format!("{name}: ExecStart: {e}"));
                None
            }
        },
    };
    (subcommand, p)
}

/// `path` is `dir` or inside it.
pub(crate) fn under(path: &str, dir: &str) -> bool {
    let dir = dir.trim_end_matches('/');
    path == dir || path.strip_prefix(dir).is_some_and(|rest| rest.starts_with('/'))
}

/// A timer's rules: a schedule, a service unit among `services`, started at boot.
pub(crate) fn check_timer(name: &str, text: &str, services: &[String]) -> Vec<String> {
    let unit = ini(text);
    let mut p = Vec::new();
    if values(&unit, "Timer", "OnCalendar").is_empty() {
        p.push(format!("{name}: [Timer] has no OnCalendar="));
    }
    let implied = name.replace(".timer", ".service");
    let target = values(&unit, "Timer", "Unit").last().map_or(implied, |u| (*u).to_owned());
    if !services.contains(&target) {
        p.push(format!("{name}: starts {target}, which is not a unit beside it"));
    }
    if !values(&unit, "Install", "WantedBy").contains(&"timers.target") {
        p.push(format!("{name}: [Install] WantedBy=timers.target is missing"));
    }
    p
}

/// The variables an env file sets or offers commented out (`NAME=…`, `# NAME=…`).
pub(crate) fn env_file_names(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(|line| line.trim().trim_start_matches('#').trim())
        .filter_map(|line| line.split_once('='))
        .filter(|(name, _)| {
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        })
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect()
}
