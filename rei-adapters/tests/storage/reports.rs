//! The report store on PostgreSQL and SQLite: the conformance suite over a history written through the real
//! ledger, job, attempt and payment stores, and every statement's plan reading its range through its index.

use std::collections::BTreeMap;
use std::sync::Arc;

use rei_adapters::postgres::attempts::PgAttemptLog;
use rei_adapters::postgres::jobs::PgJobStore;
use rei_adapters::postgres::ledger::{PgLedger, PgLedgerConfig};
use rei_adapters::postgres::payments::PgPaymentStore;
use rei_adapters::postgres::reports::PgReportStore;
use rei_adapters::sqlite::attempts::SqliteAttemptLog;
use rei_adapters::sqlite::jobs::SqliteJobStore;
use rei_adapters::sqlite::ledger::{SqliteLedger, SqliteLedgerConfig};
use rei_adapters::sqlite::payments::SqlitePaymentStore;
use rei_adapters::sqlite::reports::SqliteReportStore;
use rei_core::testing::clock::ManualClock;
use rei_core::testing::reports::{ReportFixture, T0, report_store_conformance};
use sqlx::Row;

use crate::support::{pg_pool, sqlite_pool};

/// The index each statement must read its range through (the aggregates over the balance rows read them all).
fn indexes() -> BTreeMap<&'static str, &'static [&'static str]> {
    BTreeMap::from([
        ("jobs", &["jobs_created"][..]),
        ("money", &["ledger_transactions_flow", "job_attempts_started"][..]),
        ("providers", &["job_attempts_started"][..]),
        ("ledger_totals", &[][..]),
        ("job_success", &["jobs_finished"][..]),
        ("payment_success", &["payment_records_finished"][..]),
        ("job_latency", &["jobs_finished"][..]),
        ("revenue", &["ledger_transactions_flow"][..]),
        ("top_ups", &["ledger_transactions_flow"][..]),
        ("jobs_succeeded", &["jobs_finished"][..]),
        ("jobs_failed", &["jobs_finished"][..]),
        ("new_users", &["members_joined"][..]),
    ])
}

/// The tables a report must never read whole.
const LARGE: [&str; 5] = ["ledger_transactions", "jobs", "job_attempts", "payment_records", "members"];

/// The highest placeholder number in `sql` (`$n` or `?n`).
fn placeholders(sql: &str) -> usize {
    let bytes = sql.as_bytes();
    let mut most = 0;
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'$' || *b == b'?' {
            let digits: String = sql[i + 1..].chars().take_while(char::is_ascii_digit).collect();
            most = most.max(digits.parse().unwrap_or(0));
        }
    }
    most
}

#[tokio::test]
async fn sqlite_report_store_passes_the_conformance_suite() {
    // Proves the SQLite report store answers every figure of a known history exactly, with the edges of every range.
    report_store_conformance(|| async {
        let pool = sqlite_pool().await;
        ReportFixture {
            reports: Arc::new(SqliteReportStore::new(pool.clone())),
            ledger: Arc::new(SqliteLedger::new(pool.clone(), SqliteLedgerConfig::default())),
            jobs: Arc::new(SqliteJobStore::new(pool.clone())),
            attempts: Arc::new(SqliteAttemptLog::new(pool.clone())),
            payments: Arc::new(SqlitePaymentStore::new(pool)),
            clock: Arc::new(ManualClock::new(T0)),
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_report_store_passes_the_conformance_suite() {
    // Proves the PostgreSQL report store answers every figure of a known history exactly, with the edges of every
    // range.
    report_store_conformance(|| async {
        let pool = pg_pool(8).await;
        ReportFixture {
            reports: Arc::new(PgReportStore::new(pool.clone())),
            ledger: Arc::new(PgLedger::new(pool.clone(), PgLedgerConfig::default())),
            jobs: Arc::new(PgJobStore::new(pool.clone())),
            attempts: Arc::new(PgAttemptLog::new(pool.clone())),
            payments: Arc::new(PgPaymentStore::new(pool)),
            clock: Arc::new(ManualClock::new(T0)),
        }
    })
    .await;
}

#[tokio::test]
async fn sqlite_reports_read_their_ranges_through_their_indexes() {
    // Proves each SQLite report statement searches its index (no scan of a large table), so a report over a
    // range costs that range, not the table.
    let pool = sqlite_pool().await;
    let want = indexes();
    let statements = rei_adapters::sqlite::reports::statements();
    assert_eq!(statements.len(), want.len(), "every statement has its expected index");
    for (name, sql) in statements {
        let explain = format!("EXPLAIN QUERY PLAN {sql}");
        let mut query = sqlx::query(&explain);
        for _ in 0..placeholders(sql) {
            query = query.bind(0_i64);
        }
        let plan: Vec<String> = query
            .fetch_all(&pool)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .iter()
            .map(|row| row.get::<String, _>("detail"))
            .collect();
        for line in &plan {
            let scans_large = LARGE.iter().any(|t| line.starts_with(&format!("SCAN {t}")));
            assert!(!scans_large, "{name} scans a large table: {plan:?}");
        }
        for index in want[name] {
            assert!(plan.iter().any(|l| l.contains(&format!("INDEX {index} "))), "{name} uses {index}: {plan:?}");
        }
    }
}

#[tokio::test]
async fn pg_reports_read_their_ranges_through_their_indexes() {
    // Proves each PostgreSQL report statement can read its range through its index: with sequential scans
    // priced out, no plan reads a large table whole.
    let pool = pg_pool(2).await;
    let mut conn = pool.acquire().await.expect("connection");
    sqlx::query("SET enable_seqscan = off").execute(&mut *conn).await.expect("set");
    let want = indexes();
    let statements = rei_adapters::postgres::reports::statements();
    assert_eq!(statements.len(), want.len(), "every statement has its expected index");
    for (name, sql) in statements {
        let explain = format!("EXPLAIN {sql}");
        let mut query = sqlx::query(&explain);
        for _ in 0..placeholders(sql) {
            query = query.bind(0_i64);
        }
        let plan: Vec<String> = query
            .fetch_all(&mut *conn)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .iter()
            .map(|row| row.get::<String, _>(0))
            .collect();
        for line in &plan {
            let scans_large = LARGE.iter().any(|t| line.contains(&format!("Seq Scan on {t} ")));
            assert!(!scans_large, "{name} scans a large table: {plan:#?}");
        }
        for index in want[name] {
            assert!(plan.iter().any(|l| l.contains(&format!(" {index} "))), "{name} uses {index}: {plan:#?}");
        }
    }
}
