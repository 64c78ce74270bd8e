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
        &["worker", "--database-url", "sqlite:///nonexistent/rei.db"][..],
        &["worker", "--database-url", "sqlite:///nonexistent/rei.db", "--provider-concurrency", "gemini=0"][..],
        &["worker", "--database-url", "sqlite:///nonexistent/rei.db", "--kling-access-key", "only-half"][..],
        &["bench", "pipeline", "--jobs", "0"][..],
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

    let rt = runtime();
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
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }

    let (ok, _, err) = rei(&["verify", "--database-url", "mysql://h/db"]);
    assert!(!ok && err.starts_with("error: "), "{err}");
}

#[test]
fn verify_never_migrates_and_names_what_to_run() {
    // Proves `rei verify` refuses a database that lacks migrations, naming them and `rei migrate`, and leaves
    // it unmigrated; after `rei migrate` it verifies.
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("rei.db").display());
    let rt = runtime();
    rt.block_on(async {
        let pool = sqlx::SqlitePool::connect(&format!("{url}?mode=rwc")).await.expect("create an empty file");
        pool.close().await;
    });
    let (ok, _, err) = rei(&["verify", "--database-url", &url]);
    assert!(!ok && err.contains("the database lacks migrations 1, 2, 3"), "{err}");
    assert!(err.contains("run `rei migrate`"), "{err}");
    let (ok, _, err) = rei(&["verify", "--database-url", &url]);
    assert!(!ok && err.contains("lacks migrations 1, 2, 3"), "verify migrated nothing: {err}");
    let (ok, _, err) = rei(&["migrate", "--database-url", &url]);
    assert!(ok, "{err}");
    let (ok, out, err) = rei(&["verify", "--database-url", &url]);
    assert!(ok && out.contains("clean"), "{out}{err}");
}

#[test]
fn verify_of_a_missing_file_says_so_and_creates_nothing() {
    // Proves `rei verify` on a SQLite path that does not exist exits 1 saying the file does not exist, and
    // creates neither the file nor anything beside it.
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("missing.db");
    let url = format!("sqlite://{}", path.display());
    let out = Command::new(env!("CARGO_BIN_EXE_rei")).args(["verify", "--database-url", &url]).output().expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.starts_with("error: ") && err.contains("does not exist"), "{err}");
    assert!(err.contains(&path.display().to_string()), "names the file: {err}");
    assert!(!path.exists(), "verify created the file");
    assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 0, "nothing was created beside it");
}

#[test]
fn bench_ledger_on_sqlite_leaves_the_named_ledger_untouched() {
    // Proves `rei bench ledger` on a SQLite URL whose file holds a real top-up writes nothing into it (one
    // transaction before and after, the balance unchanged) and removes its scratch directory.
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("rei.db").display());
    let rt = runtime();
    rt.block_on(foreign_top_up(&url, None));
    let (ok, out, err) =
        rei(&["bench", "ledger", "--database-url", &url, "--clients", "1", "--seconds", "1", "--warmup-seconds", "0"]);
    assert!(ok, "{err}");
    assert!(out.contains("verify       clean"), "{out}");
    assert!(err.contains("removed afterwards"), "{err}");
    rt.block_on(assert_untouched(&url, None));
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .expect("dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".rei-bench-"))
        .collect();
    assert!(left.is_empty(), "the scratch directory was left behind: {left:?}");
}

#[test]
fn bench_ledger_on_postgresql_runs_in_a_schema_it_drops() {
    // Proves `rei bench ledger` on a PostgreSQL database whose ledger holds a real top-up (in the default
    // schema, where the bench's own tables would go if it used the database as it is) writes nothing into it,
    // and drops its scratch schema and pgbench database.
    let admin = pg_url();
    let name = format!("rei_cli_{}", std::process::id());
    let url = with_database(&admin, &name);
    let rt = runtime();
    rt.block_on(async {
        let pool = sqlx::PgPool::connect(&admin).await.expect("admin");
        sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&pool).await.expect("drop");
        sqlx::raw_sql(&format!("CREATE DATABASE {name}")).execute(&pool).await.expect("create");
        pool.close().await;
        foreign_top_up(&url, None).await;
    });
    let (ok, out, err) = rei(&[
        "bench",
        "ledger",
        "--database-url",
        &url,
        "--clients",
        "1",
        "--seconds",
        "1",
        "--warmup-seconds",
        "0",
        "--pgbench-scale",
        "1",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("verify       clean") && out.contains("pgbench tps"), "{out}");
    rt.block_on(async {
        assert_untouched(&url, None).await;
        let pool = sqlx::PgPool::connect(&url).await.expect("the database");
        let schemas: i64 =
            sqlx::query_scalar("SELECT count(*) FROM information_schema.schemata WHERE schema_name LIKE 'rei_bench%'")
                .fetch_one(&pool)
                .await
                .expect("schemas");
        assert_eq!(schemas, 0, "the scratch schema was dropped");
        let databases: i64 =
            sqlx::query_scalar("SELECT count(*) FROM pg_database WHERE datname LIKE 'rei_bench_pgbench%'")
                .fetch_one(&pool)
                .await
                .expect("databases");
        assert_eq!(databases, 0, "the pgbench database was dropped");
        pool.close().await;
        let pool = sqlx::PgPool::connect(&admin).await.expect("admin");
        sqlx::raw_sql(&format!("DROP DATABASE {name} WITH (FORCE)")).execute(&pool).await.expect("clean up");
        pool.close().await;
    });
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

/// The admin URL of the test PostgreSQL server; the suite is run by `scripts/test`, which starts it.
fn pg_url() -> String {
    std::env::var("REI_TEST_POSTGRES_URL").unwrap_or_else(|_| {
        panic!("REI_TEST_POSTGRES_URL is not set: run the suite with scripts/test, which starts PostgreSQL")
    })
}

/// The admin URL with another database name (the admin URL has no query string).
fn with_database(admin: &str, name: &str) -> String {
    let base = admin.rsplit_once('/').map_or(admin, |(base, _)| base);
    format!("{base}/{name}")
}

/// An engine on `url` (in `schema` on PostgreSQL).
async fn engine(url: &str, schema: Option<&str>) -> rei::Engine {
    let config = rei::EngineConfig { postgres_schema: schema.map(str::to_owned), ..rei::EngineConfig::default() };
    rei::Engine::builder().database_url(url).config(config).open().await.expect("engine")
}

/// Writes one real top-up of 123.45 for user 7 into the ledger at `url`.
async fn foreign_top_up(url: &str, schema: Option<&str>) {
    let engine = engine(url, schema).await;
    let payment = rei::core::ids::PaymentId::parse("real-payment-1").expect("id");
    let amount = rei::core::money::Money::from_kopecks(12_345);
    engine.billing().top_up(rei::core::ids::UserId(7), amount, payment).await.expect("top-up");
    engine.close().await;
}

/// Checks the ledger at `url` still holds only the top-up of [`foreign_top_up`].
async fn assert_untouched(url: &str, schema: Option<&str>) {
    let engine = engine(url, schema).await;
    let report = engine.billing().verify().await.expect("verify");
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.transactions, 1, "the bench wrote into the named ledger");
    let balance = engine.billing().balance(rei::core::ids::UserId(7)).await.expect("balance");
    assert_eq!(balance.available, rei::core::money::Money::from_kopecks(12_345));
    engine.close().await;
}

/// Starts a long-running `rei gc` on `url` and waits (bounded) until it says it leads.
fn leading_gc(url: &str) -> std::process::Child {
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_rei"))
        .args(["gc", "--database-url", url, "--interval-seconds", "3600"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start rei gc");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = std::io::BufReader::new(stdout).lines();
    let first = lines.next().expect("a line").expect("text");
    assert!(first.contains("leading"), "the first gc must lead: {first}");
    child
}

/// One `rei gc --once` beside a leading one stands by; once the leader is gone, it leads and runs a pass.
fn one_gc_leads(url: &str) {
    let mut leader = leading_gc(url);
    let (ok, out, err) = rei(&["gc", "--database-url", url, "--once"]);
    assert!(ok, "{err}");
    assert!(out.contains("another rei gc leads; standing by"), "{out}");
    assert!(!out.contains("pass:"), "a gc that does not lead runs no pass: {out}");
    leader.kill().expect("kill the leader");
    leader.wait().expect("reap the leader");
    // The server notices the dead leader's connection a moment later: ask again, a bounded number of times.
    let mut last = String::new();
    for _ in 0..50 {
        let (ok, out, err) = rei(&["gc", "--database-url", url, "--once"]);
        assert!(ok, "{err}");
        if out.contains("leading") {
            assert!(out.contains("pass: 0 sessions ended"), "{out}");
            return;
        }
        last = out;
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("the lead never passed on: {last}");
}

#[test]
fn one_rei_gc_leads_on_sqlite() {
    // Proves two `rei gc` on one SQLite file never both lead (a lock file beside it), and that the lead passes
    // on when the leader dies.
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("gc.db").display());
    let (ok, _, err) = rei(&["migrate", "--database-url", &url]);
    assert!(ok, "{err}");
    one_gc_leads(&url);
}

#[test]
fn one_rei_gc_leads_on_postgres() {
    // Proves two `rei gc` on one PostgreSQL database never both lead (an advisory lock), and that the lead
    // passes on when the leader dies.
    let admin = pg_url();
    let name = format!("rei_cli_gc_{}", std::process::id());
    runtime().block_on(async {
        let pool = rei::adapters::postgres::connect(&admin, 1, std::time::Duration::from_secs(10)).await.expect("pool");
        sqlx::raw_sql(&format!("CREATE DATABASE {name}")).execute(&pool).await.expect("create database");
        pool.close().await;
    });
    let url = with_database(&admin, &name);
    let (ok, _, err) = rei(&["migrate", "--database-url", &url]);
    assert!(ok, "{err}");
    one_gc_leads(&url);
    runtime().block_on(async {
        let pool = rei::adapters::postgres::connect(&admin, 1, std::time::Duration::from_secs(10)).await.expect("pool");
        sqlx::raw_sql(&format!("DROP DATABASE {name} WITH (FORCE)")).execute(&pool).await.expect("drop database");
        pool.close().await;
    });
}

#[path = "cli/crash.rs"]
mod crash;

#[path = "cli/drill.rs"]
mod drill;

#[path = "cli/serve.rs"]
mod serve;

#[path = "cli/settings.rs"]
mod settings;

#[test]
fn rei_gc_deletes_assets_past_their_retention() {
    // Proves `rei gc --assets-dir` deletes the asset files older than the retention and keeps the newer ones.
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("gc.db").display());
    let assets = dir.path().join("assets");
    std::fs::create_dir_all(assets.join("results")).expect("dir");
    let old = assets.join("results/old.png");
    let new = assets.join("results/new.png");
    std::fs::write(&old, b"old").expect("write");
    std::fs::write(&new, b"new").expect("write");
    let two_days_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(2 * 24 * 60 * 60);
    std::fs::File::options().write(true).open(&old).expect("open").set_modified(two_days_ago).expect("mtime");
    let assets_arg = assets.display().to_string();
    let (ok, out, err) =
        rei(&["gc", "--database-url", &url, "--once", "--assets-dir", &assets_arg, "--asset-retention-days", "1"]);
    assert!(ok, "{err}");
    assert!(out.contains("assets: 1 past retention deleted"), "{out}");
    assert!(!old.exists() && new.exists());
}

#[test]
fn rei_sandbox_plays_the_scenario_and_exits_0_on_a_clean_ledger() {
    // Proves the README's first command: `rei sandbox` needs no account or server, shows its progress, prints
    // the summary with its charts and the verify result, and exits 0.
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("sandbox");
    let path = path.to_str().expect("path");
    let (ok, out, err) = rei(&["sandbox", "--users", "2", "--jobs", "4", "--dir", path, "--deadline-seconds", "90"]);
    assert!(ok, "{out}\n{err}");
    for line in ["[1/7]", "[7/7] summary", "Jobs by status", "Provider use", "Ledger verify: CLEAN", "rei sandbox: OK"]
    {
        assert!(out.contains(line), "{line}: {out}");
    }
    assert!(dir.path().join("sandbox/rei.db").exists());
    let (ok, out, _) = rei(&["verify", "--database-url", &format!("sqlite://{path}/rei.db")]);
    assert!(ok, "{out}");
}
