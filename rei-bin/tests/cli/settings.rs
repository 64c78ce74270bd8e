//! `rei config check` and `.env`: the settings file checked as an operator checks it, from a working directory of
//! its own.

use std::path::Path;
use std::process::Command;

const SHIPPED: &str = include_str!("../../rei.toml");

/// Runs `rei` in `dir` with `REI_CONFIG` set to `config` (or unset); returns the exit code, stdout and stderr.
fn rei_in(dir: &Path, args: &[&str], config: Option<&str>) -> (Option<i32>, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rei"));
    command.args(args).current_dir(dir).env_remove("REI_CONFIG");
    if let Some(config) = config {
        command.env("REI_CONFIG", config);
    }
    let out = command.output().expect("run rei");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The shipped file with its Nano Banana cost written with a comma.
fn broken() -> String {
    SHIPPED.replacen(r#"cost = "3.20""#, r#"cost = "3,20""#, 1)
}

const BROKEN_KEY: &str =
    r#"pricing.products."image.nano-banana".cost: "3,20" is not an amount in roubles (write "3.20")"#;

#[test]
fn config_check_of_the_shipped_file_exits_0_and_prints_the_products() {
    // Proves `rei config check` without a file checks the shipped default, and with the shipped file itself, exits
    // 0 and lists every product with its off-peak basic price, and that without a `.env` it says nothing on stderr.
    let dir = tempfile::tempdir().expect("temp dir");
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/rei.toml");
    for args in [&["config", "check"][..], &["config", "check", "--config", shipped][..]] {
        let (code, out, err) = rei_in(dir.path(), args, None);
        assert_eq!(code, Some(0), "{args:?}: {err}");
        assert!(err.is_empty(), "{args:?} printed on stderr: {err}");
        assert!(out.lines().next().is_some_and(|l| l.ends_with(": valid")), "{out}");
        for product in [
            "image.nano-banana ",
            "image.nano-banana-pro ",
            "video.kling-3.0.5s ",
            "video.kling-3.0.10s ",
            "video.kling-2.6.5s ",
            "video.kling-2.6.10s ",
            "video.kling-1.5.5s ",
            "video.kling-1.5.10s ",
        ] {
            assert!(out.lines().any(|l| l.trim_start().starts_with(product)), "{product}in\n{out}");
        }
        assert!(out.contains("6.40 RUB per image"), "{out}");
    }
}

#[test]
fn config_check_of_a_broken_file_exits_1_naming_the_key() {
    // Proves a settings file with a wrong value makes `rei config check` exit 1 with an error naming the file, the
    // key and what to write instead, through --config and through REI_CONFIG alike.
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("prices.toml");
    std::fs::write(&path, broken()).expect("write");
    let path = path.display().to_string();
    for (args, config) in
        [(&["config", "check", "--config", &path][..], None), (&["config", "check"][..], Some(&*path))]
    {
        let (code, out, err) = rei_in(dir.path(), args, config);
        assert_eq!(code, Some(1), "{args:?}: {out}");
        assert!(err.starts_with(&format!("error: {path}: {BROKEN_KEY}")), "{args:?}: {err}");
        assert!(out.is_empty(), "{out}");
    }
    let (code, _, err) = rei_in(dir.path(), &["config", "check", "--config", "missing.toml"], None);
    assert_eq!(code, Some(1));
    assert!(err.starts_with("error: failed to read the settings file missing.toml"), "{err}");
}

#[test]
fn dotenv_in_the_working_directory_is_read_and_a_variable_already_set_wins() {
    // Proves `.env` in the working directory sets REI_CONFIG (its broken file then fails the check, named), and that
    // REI_CONFIG already in the environment wins over the `.env` line.
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("broken.toml"), broken()).expect("write");
    std::fs::write(dir.path().join("good.toml"), SHIPPED).expect("write");
    std::fs::write(dir.path().join(".env"), "# the operator's settings\nREI_CONFIG=broken.toml\n").expect("write");
    let (code, out, err) = rei_in(dir.path(), &["config", "check"], None);
    assert_eq!(code, Some(1), "{out}");
    assert!(err.starts_with(&format!("error: broken.toml: {BROKEN_KEY}")), "{err}");
    let (code, out, err) = rei_in(dir.path(), &["config", "check"], Some("good.toml"));
    assert_eq!(code, Some(0), "{err}");
    assert!(out.starts_with("good.toml: valid"), "{out}");
}

#[test]
fn a_broken_dotenv_is_an_error_naming_it() {
    // Proves a `.env` line that is not NAME=value stops every command with exit 1 and the file's path, before the
    // command line is read.
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join(".env"), "REI_CONFIG='unterminated\n").expect("write");
    let (code, _, err) = rei_in(dir.path(), &["config", "check"], None);
    assert_eq!(code, Some(1));
    let path = dir.path().join(".env");
    assert!(err.starts_with(&format!("error: failed to read {}", path.display())), "{err}");
}

#[test]
fn config_default_prints_the_shipped_file() {
    // Proves `rei config default` prints the shipped file byte for byte, to start a settings file from.
    let dir = tempfile::tempdir().expect("temp dir");
    let (code, out, err) = rei_in(dir.path(), &["config", "default"], None);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, SHIPPED);
}
