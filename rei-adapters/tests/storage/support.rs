//! Fresh databases for each test.

#![allow(dead_code, reason = "each test module uses its own part of the support")]

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool};
use sqlx::sqlite::SqlitePool;

static NEXT: AtomicU64 = AtomicU64::new(1);

/// The admin URL of the test PostgreSQL server. Fails loudly without it: the suite is run by `scripts/test`,
/// which starts the server.
pub(crate) fn pg_admin_url() -> String {
    std::env::var("REI_TEST_POSTGRES_URL").unwrap_or_else(|_| {
        panic!("REI_TEST_POSTGRES_URL is not set: run the suite with scripts/test, which starts PostgreSQL")
    })
}

/// A runtime shared by the synchronous tests (the model tests) of this binary.
pub(crate) fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a runtime")
    })
}

/// A pool on a fresh, migrated schema of the test server.
pub(crate) async fn pg_pool(connections_max: u32) -> PgPool {
    pg_pool_with(connections_max, rei_adapters::postgres::SessionTimeouts::default()).await
}

/// A pool on a fresh, migrated schema of the test server, with the schema's name (for other processes).
pub(crate) async fn pg_pool_in_schema(connections_max: u32) -> (PgPool, String) {
    let schema = format!("t_{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
    let pool = pg_pool_named(connections_max, rei_adapters::postgres::SessionTimeouts::default(), &schema).await;
    (pool, schema)
}

/// A pool on a fresh, migrated schema of the test server, with these session timeouts.
pub(crate) async fn pg_pool_with(connections_max: u32, timeouts: rei_adapters::postgres::SessionTimeouts) -> PgPool {
    let schema = format!("t_{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
    pg_pool_named(connections_max, timeouts, &schema).await
}

async fn pg_pool_named(
    connections_max: u32,
    timeouts: rei_adapters::postgres::SessionTimeouts,
    schema: &str,
) -> PgPool {
    let admin_url = pg_admin_url();
    let admin = rei_adapters::postgres::connect(&admin_url, 1, Duration::from_secs(10)).await.expect("admin pool");
    sqlx::raw_sql(&format!("CREATE SCHEMA {schema}")).execute(&admin).await.expect("create schema");
    admin.close().await;
    let options: PgConnectOptions = admin_url.parse().expect("url");
    let options = options.options([("search_path", schema)]);
    let pool =
        rei_adapters::postgres::connect_with_timeouts(options, connections_max, Duration::from_secs(10), timeouts)
            .await
            .expect("pool");
    rei_adapters::postgres::migrate(&pool).await.expect("migrate");
    pool
}

/// This process's directory for test databases, `<temp>/rei-test-<pid>`. The first call removes the
/// directories that earlier runs left behind (their process is gone), so runs do not pile files up; within a
/// `scripts/test` run the temp directory is the run's own and goes with it.
pub(crate) fn test_dir() -> &'static std::path::Path {
    static DIR: OnceLock<std::path::PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let temp = std::env::temp_dir();
        if let Ok(entries) = std::fs::read_dir(&temp) {
            for entry in entries.flatten() {
                let name = entry.file_name();
                let Some(pid) = name.to_str().and_then(|n| n.strip_prefix("rei-test-")) else { continue };
                let gone = pid.parse::<u32>().is_ok_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists());
                if gone {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
        let dir = temp.join(format!("rei-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("test directory");
        dir
    })
}

/// A path for a test database file named `name` in [`test_dir`], with no file there yet.
pub(crate) fn test_db_path(name: &str) -> std::path::PathBuf {
    let path = test_dir().join(format!("{name}.db"));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    path
}

/// A fresh, migrated SQLite file in [`test_dir`].
pub(crate) async fn sqlite_pool() -> SqlitePool {
    let path = test_db_path(&NEXT.fetch_add(1, Ordering::Relaxed).to_string());
    let url = format!("sqlite://{}", path.display());
    let pool = rei_adapters::sqlite::connect(&url, Duration::from_secs(10)).await.expect("sqlite pool");
    rei_adapters::sqlite::migrate(&pool).await.expect("migrate");
    pool
}

/// The database's message for a statement it must refuse.
pub(crate) fn refusal<T: std::fmt::Debug>(r: Result<T, sqlx::Error>) -> String {
    match r {
        Ok(v) => panic!("the database accepted what it must refuse: {v:?}"),
        Err(e) => e.to_string(),
    }
}
