//! What the real `rei` binary accepts, asked of the binary itself: its subcommands (from `rei --help`, nested
//! ones too), each one's `--flags` and the variables it reads (`[env: NAME]` in `rei <sub> --help`), the
//! variables the binary's crates read straight from the environment, and the metric names its servers export.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

/// One subcommand's flags and variables.
#[derive(Debug, Default)]
pub(crate) struct Subcommand {
    pub(crate) flags: BTreeSet<String>,
    pub(crate) env: BTreeSet<String>,
}

/// The binary's surface.
#[derive(Debug)]
pub(crate) struct Binary {
    path: PathBuf,
    /// Subcommands by their words: `serve`, `bench ledger`.
    pub(crate) subcommands: BTreeMap<String, Subcommand>,
    /// Variables read with `std::env::var` in the binary's crates, outside clap (REI_LOG, REDIS_HOST, …).
    pub(crate) source_env: BTreeSet<String>,
    /// Metric names the servers export (`gauge!("…")`, `counter!`, `histogram!`).
    pub(crate) metrics: BTreeSet<String>,
    /// The binary's verdicts on argument lines and settings files already asked (the tests ask the same often).
    verdicts: Mutex<BTreeMap<Vec<String>, Result<(), String>>>,
}

/// The crates whose sources make up the binary, relative to the repository root.
const SOURCES: &[&str] = &["rei-bin/src", "rei-http/src", "rei-bot/src", "src"];

impl Binary {
    /// The `rei` binary cargo built for this test, asked once per test run.
    pub(crate) fn real() -> &'static Binary {
        static REAL: OnceLock<Binary> = OnceLock::new();
        REAL.get_or_init(|| Binary::ask(Path::new(env!("CARGO_BIN_EXE_rei")), &crate::repo()))
    }

    fn ask(path: &Path, repo: &Path) -> Binary {
        let mut binary = Binary {
            path: path.to_owned(),
            subcommands: BTreeMap::new(),
            source_env: BTreeSet::new(),
            metrics: BTreeSet::new(),
            verdicts: Mutex::new(BTreeMap::new()),
        };
        let mut pending: Vec<Vec<String>> = commands(&binary.help(&[])).into_iter().map(|c| vec![c]).collect();
        while let Some(words) = pending.pop() {
            let help = binary.help(&words);
            for nested in commands(&help) {
                let mut deeper = words.clone();
                deeper.push(nested);
                pending.push(deeper);
            }
            binary.subcommands.insert(words.join(" "), Subcommand { flags: flags(&help), env: env_names(&help) });
        }
        let mut text = String::new();
        for dir in SOURCES {
            read_sources(&repo.join(dir), &mut text);
        }
        binary.source_env = quoted_after(&text, &["env::var(\"", "env::var_os(\""]);
        binary.metrics = quoted_after(&text, &["gauge!(\"", "counter!(\"", "histogram!(\""]);
        binary
    }

    /// `rei <words> --help`, which must succeed.
    fn help(&self, words: &[String]) -> String {
        let out = self.run(words.iter().map(String::as_str).chain(["--help"]));
        assert!(
            out.status.success(),
            "rei {} --help failed: {}",
            words.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs the binary with `args`, with no environment and in an empty directory (no `.env` is read).
    fn run<'a>(&self, args: impl IntoIterator<Item = &'a str>) -> std::process::Output {
        Command::new(&self.path)
            .args(args)
            .env_clear()
            .current_dir(std::env::temp_dir())
            .output()
            .expect("run the rei binary")
    }

    /// The subcommand `args` start with (the longest run of leading words that names one), and the rest.
    pub(crate) fn split<'a>(&self, args: &'a [String]) -> Option<(String, &'a [String])> {
        let words = args.iter().take_while(|a| !a.starts_with('-')).count();
        (1..=words).rev().find_map(|n| {
            let name = args[..n].join(" ");
            self.subcommands.contains_key(&name).then(|| (name, &args[n..]))
        })
    }

    /// Checks that the binary takes `args` as they are: a known subcommand, every `--flag` one it lists, and
    /// the whole line (values included) parsed by the binary itself (`rei <args> --help` exits 0). Returns the
    /// subcommand.
    ///
    /// # Errors
    /// What is wrong, with the binary's own message where it refused.
    pub(crate) fn check_args(&self, args: &[String]) -> Result<String, String> {
        let Some((name, rest)) = self.split(args) else {
            return Err(format!("`rei {}`: no such subcommand", args.join(" ")));
        };
        let known = &self.subcommands[&name];
        for flag in rest.iter().filter(|a| a.starts_with("--")) {
            let flag = flag.split('=').next().unwrap_or(flag);
            if !known.flags.contains(flag) {
                return Err(format!("`rei {name}` has no flag {flag} (see `rei {name} --help`)"));
            }
        }
        self.verdict(args.to_vec(), || {
            let out = self.run(args.iter().map(String::as_str).chain(["--help"]));
            if out.status.success() {
                return Ok(());
            }
            let stderr = String::from_utf8_lossy(&out.stderr);
            Err(format!("`rei {}` is refused: {}", args.join(" "), stderr.lines().next().unwrap_or("")))
        })?;
        Ok(name)
    }

    /// `ask`'s answer for `key`, asked once.
    fn verdict(&self, key: Vec<String>, ask: impl FnOnce() -> Result<(), String>) -> Result<(), String> {
        if let Some(known) = self.verdicts.lock().expect("the verdicts").get(&key) {
            return known.clone();
        }
        let answer = ask();
        self.verdicts.lock().expect("the verdicts").insert(key, answer.clone());
        answer
    }

    /// Runs `rei config check` on `text`, a settings file named `name`.
    ///
    /// # Errors
    /// The binary's message when it refuses the file.
    pub(crate) fn config_check(&self, name: &str, text: &str) -> Result<(), String> {
        self.verdict(vec!["config check".to_owned(), name.to_owned(), text.to_owned()], || {
            let dir = tempfile::tempdir().expect("a temporary directory");
            let path = dir.path().join(name);
            std::fs::write(&path, text).expect("write the settings file");
            let out = self.run(["config", "check", "--config", path.to_str().expect("a UTF-8 path")]);
            if out.status.success() { Ok(()) } else { Err(String::from_utf8_lossy(&out.stderr).trim().to_owned()) }
        })
    }

    /// `true` when `rei <subcommand>` reads `name`, from its flags or straight from the environment.
    pub(crate) fn reads(&self, subcommand: &str, name: &str) -> bool {
        self.source_env.contains(name) || self.subcommands.get(subcommand).is_some_and(|s| s.env.contains(name))
    }

    /// The value of `--flag` in `args` (`--flag value` or `--flag=value`).
    pub(crate) fn flag_value<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
        let mut iter = args.iter();
        while let Some(arg) = iter.next() {
            if arg == flag {
                return iter.next().map(String::as_str);
            }
            if let Some(value) = arg.strip_prefix(flag).and_then(|v| v.strip_prefix('=')) {
                return Some(value);
            }
        }
        None
    }
}

/// The subcommands a help text lists under `Commands:` (without `help`).
fn commands(help: &str) -> Vec<String> {
    let Some((_, after)) = help.split_once("Commands:\n") else { return Vec::new() };
    after
        .lines()
        .take_while(|line| !line.trim().is_empty())
        .filter(|line| line.starts_with("  ") && !line.starts_with("   "))
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

/// The `--flags` a help text lists (`-h, --help`, `--database-url <DATABASE_URL>`).
fn flags(help: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in help.lines().map(str::trim_start).filter(|l| l.starts_with('-')) {
        for word in line.split_whitespace().take_while(|w| w.starts_with('-')) {
            if let Some(flag) = word.trim_end_matches(',').strip_prefix("--") {
                out.insert(format!("--{flag}"));
            }
        }
    }
    out
}

/// The variables a help text names as `[env: NAME=]` (or `[env: NAME]` for hidden values).
fn env_names(help: &str) -> BTreeSet<String> {
    quoted_names(help, "[env: ")
}

/// The names (A-Z, 0-9, _ and lower case for metric names) that follow each of `markers` in `text`.
fn quoted_after(text: &str, markers: &[&str]) -> BTreeSet<String> {
    markers.iter().flat_map(|m| quoted_names(text, m)).collect()
}

fn quoted_names(text: &str, marker: &str) -> BTreeSet<String> {
    text.match_indices(marker)
        .map(|(at, _)| {
            text[at + marker.len()..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect()
        })
        .filter(|name: &String| !name.is_empty())
        .collect()
}

/// Appends every `.rs` file under `dir` to `out`.
fn read_sources(dir: &Path, out: &mut String) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            read_sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display())));
        }
    }
}
