//! `rei::Engine::reports` on real databases: the report conformance suite over a history written through the
//! engine's own ledger, attempt log and payment store (and the job store on the engine's pool), on the engine's
//! manual clock.

use std::sync::{Arc, Mutex, PoisonError};

use rei::core::testing::clock::ManualClock;
use rei::core::testing::reports::{ReportFixture, T0, report_store_conformance};
use rei::{Database, Engine};

/// The fixture of an opened engine: its stores, its clock, and the job store on its pool.
fn fixture(engine: &Engine, clock: Arc<ManualClock>) -> ReportFixture {
    let jobs: Arc<dyn rei::core::jobs::JobStore> = match engine.database() {
        #[cfg(feature = "postgres")]
        Database::Postgres(p) => Arc::new(rei::adapters::postgres::jobs::PgJobStore::new(p.clone())),
        Database::Sqlite(p) => Arc::new(rei::adapters::sqlite::jobs::SqliteJobStore::new(p.clone())),
        _ => panic!("an engine this build does not know"),
    };
    ReportFixture {
        reports: engine.reports().clone(),
        ledger: engine.ledger().clone(),
        jobs,
        attempts: engine.attempts().clone(),
        payments: engine.payments(),
        clock,
    }
}

#[tokio::test]
async fn the_engine_reports_on_sqlite_pass_the_conformance_suite() {
    // Proves `Engine::reports` is wired to the engine's SQLite database (migration 12 applied) and answers the
    // suite's history, written through the engine's stores on its clock, exactly.
    let dirs = Mutex::new(Vec::new());
    report_store_conformance(|| async {
        let dir = tempfile::Builder::new().prefix("rei-reports-").tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("rei.db").display());
        dirs.lock().unwrap_or_else(PoisonError::into_inner).push(dir);
        let clock = Arc::new(ManualClock::new(T0));
        let engine = Engine::builder().database_url(url).clock(clock.clone()).open().await.expect("engine");
        assert!(engine.migrations_applied().contains(&12), "{:?}", engine.migrations_applied());
        fixture(&engine, clock)
    })
    .await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_reports_on_postgresql_pass_the_conformance_suite() {
    // Proves `Engine::reports` on PostgreSQL, in a schema of its own, answers the same history exactly.
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let url = std::env::var("REI_TEST_POSTGRES_URL").unwrap_or_else(|_| {
        panic!("REI_TEST_POSTGRES_URL is not set: run the suite with scripts/test, which starts PostgreSQL")
    });
    report_store_conformance(|| async {
        let schema = format!("rei_reports_{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let config = rei::EngineConfig { postgres_schema: Some(schema), ..rei::EngineConfig::default() };
        let clock = Arc::new(ManualClock::new(T0));
        let engine = Engine::builder()
            .database_url(url.clone())
            .config(config)
            .clock(clock.clone())
            .open()
            .await
            .expect("engine");
        fixture(&engine, clock)
    })
    .await;
}
