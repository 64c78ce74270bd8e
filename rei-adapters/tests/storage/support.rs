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
    let admin_url = pg_admin_url();
    let schema = format!("t_{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
    let admin = rei_adapters::postgres::connect(&admin_url, 1, Duration::from_secs(10)).await.expect("admin pool");
    sqlx::raw_sql(&format!("CREATE SCHEMA {schema}")).execute(&admin).await.expect("create schema");
    admin.close().await;
    let options: PgConnectOptions = admin_url.parse().expect("url");
    let options = options.options([("search_path", schema.as_str())]);
    let pool =
        rei_adapters::postgres::connect_with(options, connections_max, Duration::from_secs(10)).await.expect("pool");
    rei_adapters::postgres::migrate(&pool).await.expect("migrate");
    pool
}

/// A fresh, migrated SQLite file under the temp directory.
pub(crate) async fn sqlite_pool() -> SqlitePool {
    let path = std::env::temp_dir().join(format!(
        "rei-test-{}-{}.db",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_file(&path);
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
