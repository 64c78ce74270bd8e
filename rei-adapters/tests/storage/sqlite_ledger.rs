//! The SQLite ledger: the conformance suite, the model test, a hold storm, a bank under concurrent readers, and
//! the database's own refusals.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rei_adapters::sqlite::ledger::{SqliteLedger, SqliteLedgerConfig};
use rei_core::ids::{IdempotencyKey, PaymentId, TxId, UserId};
use rei_core::ledger::{Account, LedgerCommand, LedgerError, LedgerOp, LedgerStore, StoreError};
use rei_core::money::Money;
use rei_core::testing::ledger::{LedgerHarness, ledger_conformance, run_ledger_model};
use rei_core::time::Timestamp;
use sqlx::sqlite::SqlitePool;

use crate::{support, workloads};

const T0: Timestamp = Timestamp::from_millis(1_800_000_000_000);

fn config() -> SqliteLedgerConfig {
    SqliteLedgerConfig { batch_max: 256, queue_max: 1_024 }
}

fn rub(r: i64) -> Money {
    Money::from_kopecks(r * 100)
}

fn cmd(key: &str, tx: u128, op: LedgerOp) -> LedgerCommand {
    LedgerCommand { key: IdempotencyKey::derived("t", key).expect("test key"), tx: TxId::from(tx), at: T0, op }
}

fn top_up(user: i64, amount: Money, payment: &str) -> LedgerOp {
    LedgerOp::TopUp { user: UserId(user), amount, payment: PaymentId::parse(payment).expect("payment id") }
}

async fn store_on(pool: SqlitePool) -> Arc<SqliteLedger> {
    Arc::new(SqliteLedger::new(pool, config()))
}

/// Operations per second, in integers.
fn per_second(ops: u64, elapsed: Duration) -> u128 {
    u128::from(ops) * 1_000_000 / elapsed.as_micros().max(1)
}

#[tokio::test]
async fn sqlite_ledger_passes_the_conformance_suite() {
    // Proves the SQLite store keeps every MUST of the ledger port.
    ledger_conformance(|| async {
        Arc::new(SqliteLedger::new(support::sqlite_pool().await, config())) as Arc<dyn LedgerStore>
    })
    .await;
}

struct SqliteHarness;

impl LedgerHarness for SqliteHarness {
    fn new_store() -> Arc<dyn LedgerStore> {
        support::runtime().block_on(async {
            Arc::new(SqliteLedger::new(support::sqlite_pool().await, config())) as Arc<dyn LedgerStore>
        })
    }

    fn block_on<F: Future>(fut: F) -> F::Output {
        support::runtime().block_on(fut)
    }
}

#[test]
fn sqlite_ledger_agrees_with_the_model() {
    // Proves the SQLite store agrees with the oracle and keeps I1-I6 over random sequences.
    run_ledger_model::<SqliteHarness>(48, 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_holds_never_overdraws() {
    // Proves 1,000 concurrent holds of 1.00 on 100.00 place exactly 100 and refuse the rest for funds.
    let store = store_on(support::sqlite_pool().await).await;
    workloads::fund_storm(&*store).await;
    let started = Instant::now();
    let outcomes = workloads::storm(store.clone(), 10..1_010).await;
    let elapsed = started.elapsed();
    eprintln!(
        "sqlite hold storm: 1000 concurrent holds in {} ms ({} ops/s)",
        elapsed.as_millis(),
        per_second(1_000, elapsed)
    );
    workloads::assert_storm(&outcomes, 1_000);
    let b = store.balance(UserId(workloads::STORM_USER)).await.expect("balance");
    assert_eq!((b.available, b.held), (Money::ZERO, rub(100)));
    let report = store.verify().await.expect("verify");
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.transactions, 101);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bank_conserves_money_at_every_read() {
    // Proves concurrent money moves over 50 users never show a reader a non-zero total or a negative balance.
    let pool = support::sqlite_pool().await;
    let store = store_on(pool.clone()).await;
    let done = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::new();
    for r in 0..2 {
        let (store, pool, done, reads) = (Arc::clone(&store), pool.clone(), Arc::clone(&done), Arc::clone(&reads));
        readers.push(tokio::spawn(async move {
            while !done.load(Ordering::Acquire) {
                if r == 0 {
                    let report = store.verify().await.expect("verify");
                    assert!(report.is_clean(), "a reader saw a broken ledger: {report:?}");
                } else {
                    // Sums every account itself, in one read transaction (one snapshot).
                    let mut tx = pool.begin().await.expect("begin");
                    let (users, min_available, min_held): (i64, i64, i64) = sqlx::query_as(
                        "SELECT COALESCE(SUM(available + held), 0), COALESCE(MIN(available), 0), \
                         COALESCE(MIN(held), 0) FROM ledger_accounts",
                    )
                    .fetch_one(&mut *tx)
                    .await
                    .expect("sum users");
                    let system: i64 = sqlx::query_scalar("SELECT SUM(balance) FROM ledger_system_accounts")
                        .fetch_one(&mut *tx)
                        .await
                        .expect("sum system");
                    tx.commit().await.expect("end read");
                    assert_eq!(users + system, 0, "money must be conserved at every read");
                    assert!(min_available >= 0 && min_held >= 0, "no balance may go negative");
                }
                reads.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let started = Instant::now();
    let writers: Vec<_> =
        (1..=4u128).map(|w| tokio::spawn(workloads::bank_writer(store.clone(), w, 400, 50))).collect();
    let mut outcomes = workloads::Outcomes::default();
    for w in writers {
        outcomes.merge(&w.await.expect("writer"));
    }
    workloads::assert_bank(&outcomes);
    let applied = workloads::applied(&outcomes);
    let elapsed = started.elapsed();
    done.store(true, Ordering::Release);
    for r in readers {
        r.await.expect("reader");
    }
    eprintln!(
        "sqlite bank: 1600 operations by 4 writers ({applied} applied) in {} ms ({} ops/s), {} reads alongside",
        elapsed.as_millis(),
        per_second(1_600, elapsed),
        reads.load(Ordering::Relaxed)
    );
    assert!(reads.load(Ordering::Relaxed) > 0, "the readers must have read");
    let report = store.verify().await.expect("verify");
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.transactions, applied);
}

#[tokio::test]
async fn the_database_refuses_to_change_or_unbalance_the_ledger() {
    // Proves postings and transactions cannot be updated, deleted, replaced or added unbalanced, even by raw SQL.
    let pool = support::sqlite_pool().await;
    let store = store_on(pool.clone()).await;
    store.apply(cmd("pay", 1, top_up(1, rub(100), "p1"))).await.expect("top-up");

    let e = support::refusal(sqlx::query("UPDATE ledger_postings SET amount = amount + 1").execute(&pool).await);
    assert!(e.contains("append-only"), "{e}");
    let e = support::refusal(sqlx::query("DELETE FROM ledger_transactions").execute(&pool).await);
    assert!(e.contains("append-only"), "{e}");
    let e = support::refusal(sqlx::query("DELETE FROM ledger_postings").execute(&pool).await);
    assert!(e.contains("append-only"), "{e}");
    let e = support::refusal(sqlx::query("UPDATE ledger_transactions SET amount = 0").execute(&pool).await);
    assert!(e.contains("append-only"), "{e}");
    let e = support::refusal(
        sqlx::query(
            "INSERT OR REPLACE INTO ledger_transactions (seq, id, idem_key, fingerprint, kind, user_id, amount, \
             released, at_ms) VALUES (1, randomblob(16), 'forged', 'x', 'adjust', 1, 0, 0, 0)",
        )
        .execute(&pool)
        .await,
    );
    assert!(e.contains("append-only"), "{e}");

    let tx_row = |seq: i64, kind: &str, amount: i64| {
        format!(
            "INSERT INTO ledger_transactions (seq, id, idem_key, fingerprint, kind, user_id, amount, released, at_ms) \
             VALUES ({seq}, randomblob(16), 'hand-{seq}', 'x', '{kind}', 1, {amount}, 0, 0)"
        )
    };
    // A transaction whose postings do not sum to zero.
    let mut tx = pool.begin().await.expect("begin");
    sqlx::query("INSERT INTO ledger_postings VALUES (100, 0, 'available', 1, 500)")
        .execute(&mut *tx)
        .await
        .expect("a posting alone is checked with its transaction");
    let e = support::refusal(sqlx::query(&tx_row(100, "adjust", 500)).execute(&mut *tx).await);
    assert!(e.contains("does not sum to zero"), "{e}");
    drop(tx);
    // A transaction with no postings at all.
    let e = support::refusal(sqlx::query(&tx_row(101, "top_up", 500)).execute(&pool).await);
    assert!(e.contains("does not sum to zero"), "{e}");
    // A posting slipped into a committed transaction.
    let e = support::refusal(
        sqlx::query("INSERT INTO ledger_postings VALUES (1, 9, 'available', 1, 0)").execute(&pool).await,
    );
    assert!(e.contains("before their transaction"), "{e}");
    // Balanced postings that never get their transaction row.
    let mut tx = pool.begin().await.expect("begin");
    sqlx::query("INSERT INTO ledger_postings VALUES (102, 0, 'payments', NULL, -5), (102, 1, 'available', 1, 5)")
        .execute(&mut *tx)
        .await
        .expect("postings");
    let e = support::refusal(tx.commit().await);
    assert!(e.to_lowercase().contains("foreign key"), "{e}");

    let report = store.verify().await.expect("verify");
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(store.transactions(0, 10).await.expect("transactions").len(), 1);
}

#[tokio::test]
async fn verify_reports_a_drifted_balance() {
    // Proves verify recomputes balances from the postings: a cached balance changed behind its back is reported.
    let pool = support::sqlite_pool().await;
    let store = store_on(pool.clone()).await;
    store.apply(cmd("pay", 1, top_up(7, rub(100), "p1"))).await.expect("top-up");
    assert!(store.verify().await.expect("verify").is_clean());
    sqlx::query("UPDATE ledger_accounts SET available = available + 1").execute(&pool).await.expect("raw update");
    let report = store.verify().await.expect("verify");
    assert!(!report.is_clean());
    assert_eq!(report.drifts.len(), 1, "{report:?}");
    let drift = &report.drifts[0];
    assert_eq!(drift.account, Account::Available(UserId(7)));
    assert_eq!((drift.cached, drift.recomputed), (Money::from_kopecks(10_001), rub(100)));
    assert_eq!(report.total, Money::from_kopecks(1));
}

#[tokio::test]
async fn a_locked_database_fails_with_unavailable_and_the_retry_applies_once() {
    // Proves a writer locked out of the database gives up after its bounded retries with Unavailable (no hang,
    // nothing applied), and the same command applies once the lock is gone.
    let path = support::test_db_path("locked");
    let url = format!("sqlite://{}", path.display());
    let busy_timeout = Duration::from_millis(20);
    let pool = rei_adapters::sqlite::connect(&url, busy_timeout).await.expect("pool");
    rei_adapters::sqlite::migrate(&pool).await.expect("migrate");
    let store = store_on(pool).await;
    let other = rei_adapters::sqlite::connect(&url, busy_timeout).await.expect("another pool");
    let lock = other.begin_with("BEGIN IMMEDIATE").await.expect("take the write lock");

    let started = Instant::now();
    let e = store.apply(cmd("pay", 1, top_up(1, rub(5), "p1"))).await;
    assert!(matches!(e, Err(LedgerError::Store(StoreError::Unavailable { .. }))), "{e:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "the retries must be bounded");

    lock.rollback().await.expect("release the lock");
    let a = store.apply(cmd("pay", 1, top_up(1, rub(5), "p1"))).await.expect("applies once the lock is gone");
    assert!(!a.replayed, "the locked-out attempt must not have applied");
    assert_eq!(store.balance(UserId(1)).await.expect("balance").available, rub(5));
}

#[tokio::test]
async fn one_command_the_database_refuses_does_not_fail_its_batch() {
    // Proves that when the database refuses one command of a group commit, the others still apply, each alone.
    let pool = support::sqlite_pool().await;
    let store = store_on(pool.clone()).await;
    // A trigger that refuses the second command's balance row: the database refuses what the plan allowed.
    sqlx::raw_sql(
        "CREATE TRIGGER refuse_user_2 BEFORE INSERT ON ledger_accounts WHEN NEW.user_id = 2 \
         BEGIN SELECT RAISE(ABORT, 'user 2 is refused'); END;",
    )
    .execute(&pool)
    .await
    .expect("refusing trigger");

    let results = store
        .apply_batch(vec![
            cmd("a", 1, top_up(1, rub(5), "pa")),
            cmd("b", 2, top_up(2, rub(5), "pb")),
            cmd("c", 3, top_up(3, rub(5), "pc")),
        ])
        .await
        .expect("batch");
    assert!(results[0].is_ok(), "{:?}", results[0]);
    assert!(matches!(results[1], Err(LedgerError::Store(StoreError::Corrupt { .. }))), "{:?}", results[1]);
    assert!(results[2].is_ok(), "{:?}", results[2]);
    assert_eq!(store.balance(UserId(2)).await.expect("balance").available, Money::ZERO);
    let report = store.verify().await.expect("verify");
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.transactions, 2);
}

#[tokio::test]
async fn an_in_memory_database_fails_writes_with_unavailable() {
    // Proves the ledger's writer, which opens its own connection to the pool's file, refuses an in-memory
    // database (no file to open) with Unavailable instead of hanging or writing somewhere else.
    let pool = rei_adapters::sqlite::connect("sqlite::memory:", Duration::from_secs(1)).await.expect("pool");
    rei_adapters::sqlite::migrate(&pool).await.expect("migrate");
    let store = store_on(pool).await;
    let e = store.apply(cmd("pay", 1, top_up(1, rub(5), "p1"))).await;
    assert!(matches!(e, Err(LedgerError::Store(StoreError::Unavailable { .. }))), "{e:?}");
    assert_eq!(store.balance(UserId(1)).await.expect("balance").available, Money::ZERO);
}
