//! The `rei` binary, run as a user runs it.

use std::process::Command;

fn rei(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rei")).args(args).output().expect("run rei");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn price_prints_a_breakdown_that_names_the_peak_window() {
    // Proves `rei price` prices with the example list: Friday 23:00 in Moscow is a x1.25 peak, PRO gets 10 % off.
    let (ok, out, err) =
        rei(&["price", "--product", "video.kling-2.6.5s", "--tier", "pro", "--at", "2026-11-20T20:00:00Z"]);
    assert!(ok, "{err}");
    assert!(out.contains("price        55.46 RUB"), "{out}");
    assert!(out.contains("(x1.25)"), "{out}");
}

#[test]
fn bad_input_is_a_clear_error_not_a_panic() {
    // Proves unknown products, bad ids, bad times and out-of-range bench settings exit 1 with a message and no
    // panic.
    for args in [
        &["price", "--product", "image.unknown"][..],
        &["price", "--product", "bad id!"][..],
        &["price", "--product", "image.nano-banana", "--at", "yesterday"][..],
        &["price", "--product", "image.nano-banana", "--units", "0"][..],
        &["bench", "queue", "--redis-url", "redis://127.0.0.1:1", "--producers", "0"][..],
        &["bench", "queue", "--redis-url", "redis://127.0.0.1:1", "--workers", "0"][..],
    ] {
        let (ok, _, err) = rei(args);
        assert!(!ok, "{args:?} must fail");
        assert!(err.starts_with("error: "), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

#[test]
fn migrate_then_verify_and_a_drift_exits_2() {
    // Proves `rei migrate` applies once, `rei verify` passes a clean ledger (exit 0) and reports a cached
    // balance changed behind the ledger's back with exit code 2.
    let path = std::env::temp_dir().join(format!("rei-cli-{}.db", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let url = format!("sqlite://{}", path.display());
    let (ok, out, err) = rei(&["migrate", "--database-url", &url]);
    assert!(ok, "{err}");
    assert!(out.contains("applied migrations"), "{out}");
    let (ok, out, _) = rei(&["migrate", "--database-url", &url]);
    assert!(ok && out.contains("up to date"), "{out}");
    let (ok, out, err) = rei(&["verify", "--database-url", &url]);
    assert!(ok && out.contains("clean"), "{out}{err}");

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let pool = sqlx::SqlitePool::connect(&url).await.expect("open");
        sqlx::query("INSERT INTO ledger_accounts (user_id, available) VALUES (9, 100)")
            .execute(&pool)
            .await
            .expect("drift");
        pool.close().await;
    });
    let out = Command::new(env!("CARGO_BIN_EXE_rei")).args(["verify", "--database-url", &url]).output().expect("run");
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stdout).contains("DRIFT"));
    let _ = std::fs::remove_file(&path);

    let (ok, _, err) = rei(&["verify", "--database-url", "mysql://h/db"]);
    assert!(!ok && err.starts_with("error: "), "{err}");
}

#[test]
fn migrations_at_start_are_applied_or_refused_as_configured() {
    // Proves `--migrate-on-start check` refuses to run on a database that lacks migrations (naming them),
    // that `rei verify` never migrates, and that the default applies them at start.
    let path = std::env::temp_dir().join(format!("rei-cli-start-{}.db", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let url = format!("sqlite://{}", path.display());
    let bench =
        ["bench", "ledger", "--database-url", &url, "--clients", "1", "--seconds", "1", "--warmup-seconds", "0"];

    let (ok, _, err) = rei(&["verify", "--database-url", &url]);
    assert!(!ok && err.contains("lacks migrations [1, 2, 3"), "{err}");
    let mut checked = vec!["--migrate-on-start", "check"];
    checked.extend(bench);
    let (ok, _, err) = rei(&checked);
    assert!(!ok && err.contains("lacks migrations"), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    let (ok, out, err) = rei(&bench);
    assert!(ok, "{err}");
    assert!(err.contains("applied migrations"), "{err}");
    assert!(out.contains("verify       clean"), "{out}");
    let (ok, _, err) = rei(&checked);
    assert!(ok, "a migrated database starts under check: {err}");
    let _ = std::fs::remove_file(&path);
}
