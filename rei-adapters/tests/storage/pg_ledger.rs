//! The PostgreSQL ledger against a real server.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rei_adapters::postgres::ledger::{PgLedger, PgLedgerConfig};
use rei_core::ids::{IdempotencyKey, PaymentId, TxId, UserId};
use rei_core::ledger::{LedgerCommand, LedgerError, LedgerOp, LedgerStore};
use rei_core::money::Money;
use rei_core::testing::ledger::{LedgerHarness, ledger_conformance, run_ledger_model};
use rei_core::time::Timestamp;

use crate::{support, workloads};

const T0: Timestamp = Timestamp::from_millis(1_800_000_000_000);

async fn store() -> Arc<PgLedger> {
    Arc::new(PgLedger::new(support::pg_pool(8).await, PgLedgerConfig::default()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_ledger_passes_the_conformance_suite() {
    // Proves the PostgreSQL store keeps every MUST of the ledger port.
    ledger_conformance(|| async { store().await as Arc<dyn LedgerStore> }).await;
}

struct PgHarness;

impl LedgerHarness for PgHarness {
    fn new_store() -> Arc<dyn LedgerStore> {
        support::runtime().block_on(async { store().await as Arc<dyn LedgerStore> })
    }

    fn block_on<F: std::future::Future>(fut: F) -> F::Output {
        support::runtime().block_on(fut)
    }
}

#[test]
fn pg_ledger_agrees_with_the_model() {
    // Proves the PostgreSQL store agrees with the oracle and keeps I1-I6 over random sequences.
    run_ledger_model::<PgHarness>(32, 40);
}

fn cmd(key: &str, n: u128, op: LedgerOp) -> LedgerCommand {
    // One transaction id per (operation, n): the kind goes into the high bits.
    let kind = u128::from(key.bytes().fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b))));
    LedgerCommand {
        key: IdempotencyKey::derived(key, n).expect("test key"),
        tx: TxId::from((kind << 64) | n),
        at: T0,
        op,
    }
}

fn top_up(user: i64, kopecks: i64, n: u128) -> LedgerCommand {
    let payment = PaymentId::parse(&format!("p-{user}-{n}")).expect("id");
    cmd("topup", n, LedgerOp::TopUp { user: UserId(user), amount: Money::from_kopecks(kopecks), payment })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_holds_never_overdraws() {
    // Proves 1,000 concurrent holds of 1.00 on 100.00 give exactly 100 successes and 900 refusals for funds.
    let s = store().await;
    workloads::fund_storm(&*s).await;
    let started = Instant::now();
    let outcomes = workloads::storm(s.clone(), 10..1_010).await;
    eprintln!("postgres storm: 1000 holds in {:?}", started.elapsed());
    workloads::assert_storm(&outcomes, 1_000);
    let b = s.balance(UserId(workloads::STORM_USER)).await.expect("balance");
    assert_eq!((b.available, b.held), (Money::ZERO, Money::from_kopecks(10_000)));
    let report = s.verify().await.expect("verify");
    assert!(report.is_clean(), "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bank_total_is_conserved_under_concurrent_moves() {
    // Proves four writers moving money over 50 shared users, read by a concurrent verifier, apply every kind of
    // move, refuse only holds short of funds, and keep the ledger clean at every read.
    let s = store().await;
    let writers: Vec<_> = (1..=4u128).map(|w| tokio::spawn(workloads::bank_writer(s.clone(), w, 150, 50))).collect();
    let reader = {
        let s = s.clone();
        tokio::spawn(async move {
            for _ in 0..20 {
                let report = s.verify().await.expect("verify");
                assert!(report.is_clean(), "{report:?}");
            }
        })
    };
    let mut outcomes = workloads::Outcomes::default();
    for w in writers {
        outcomes.merge(&w.await.expect("writer"));
    }
    reader.await.expect("reader");
    workloads::assert_bank(&outcomes);
    let report = s.verify().await.expect("verify");
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.transactions, workloads::applied(&outcomes));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_refuses_to_rewrite_the_ledger() {
    // Proves postings and transactions are append-only in the database itself, that an unbalanced
    // transaction is refused, and that verify reports a cached balance changed behind the ledger's back.
    let s = store().await;
    s.apply(top_up(7, 500, 1)).await.expect("top-up");
    let pool = s.pool();
    for sql in [
        "UPDATE ledger_postings SET amount = amount + 1",
        "DELETE FROM ledger_postings",
        "DELETE FROM ledger_transactions",
        "UPDATE ledger_transactions SET amount = 0",
        "TRUNCATE ledger_postings CASCADE",
    ] {
        let e = sqlx::raw_sql(sql).execute(pool).await;
        assert!(e.is_err(), "{sql} must be refused");
    }
    let unbalanced = "WITH t AS (INSERT INTO ledger_transactions (id, idem_key, fingerprint, kind, user_id, amount, \
                      released, at_ms) VALUES ('\\x00000000000000000000000000000099', 'forged', 'f', 'adjust', 7, 1, 0, 0) \
                      RETURNING seq) INSERT INTO ledger_postings (tx_seq, idx, account, user_id, amount) \
                      SELECT seq, 0, 'available', 7, 100 FROM t";
    let e = support::refusal(sqlx::raw_sql(unbalanced).execute(pool).await);
    assert!(e.contains("does not sum to zero"), "{e}");
    // Balanced postings slipped into a transaction written earlier.
    let slipped = "INSERT INTO ledger_postings (tx_seq, idx, account, user_id, amount) \
                   SELECT seq, 7, 'available', 7, 5 FROM ledger_transactions \
                   UNION ALL SELECT seq, 8, 'payments', NULL, -5 FROM ledger_transactions";
    let e = support::refusal(sqlx::raw_sql(slipped).execute(pool).await);
    assert!(e.contains("was committed before"), "{e}");
    // Balanced postings of a transaction that does not exist.
    let orphans = "INSERT INTO ledger_postings (tx_seq, idx, account, user_id, amount) \
                   VALUES (424242, 0, 'available', 7, 5), (424242, 1, 'payments', NULL, -5)";
    let e = support::refusal(sqlx::raw_sql(orphans).execute(pool).await);
    assert!(e.contains("does not exist"), "{e}");
    let e = sqlx::raw_sql("UPDATE ledger_accounts SET available = -1 WHERE user_id = 7").execute(pool).await;
    assert!(e.is_err(), "a negative balance must be refused by the database");
    assert!(s.verify().await.expect("verify").is_clean());
    sqlx::raw_sql("UPDATE ledger_accounts SET available = available + 1 WHERE user_id = 7")
        .execute(pool)
        .await
        .expect("a cached balance can be changed by hand");
    let report = s.verify().await.expect("verify");
    assert_eq!(report.drifts.len(), 1, "{report:?}");
    assert_eq!(report.drifts[0].recomputed, Money::from_kopecks(500));

    // A transaction row written with no postings at all slips past the postings check; verify names it.
    sqlx::raw_sql(
        "INSERT INTO ledger_transactions (id, idem_key, fingerprint, kind, user_id, amount, released, at_ms) \
         VALUES ('\\x000000000000000000000000000000aa', 'bare', 'f', 'adjust', 7, 1, 0, 0)",
    )
    .execute(pool)
    .await
    .expect("a bare transaction row");
    let report = s.verify().await.expect("verify");
    assert_eq!(report.unbalanced, vec![TxId::from(0xaa)], "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_locked_too_long_fails_the_command_as_unavailable_and_the_retry_applies_once() {
    // Proves the connections' lock timeout bounds a command stuck behind a lock held elsewhere: it fails as
    // unavailable after its bounded retries (no hang, nothing applied), and applies once the lock is gone.
    let timeouts =
        rei_adapters::postgres::SessionTimeouts { statement: Duration::from_secs(5), lock: Duration::from_millis(100) };
    let pool = support::pg_pool_with(4, timeouts).await;
    let s = PgLedger::new(pool.clone(), PgLedgerConfig { retries_max: 3, ..PgLedgerConfig::default() });
    s.apply(top_up(7, 100, 1)).await.expect("the user's row exists");
    let mut blocker = pool.begin().await.expect("begin");
    sqlx::query("SELECT 1 FROM ledger_accounts WHERE user_id = 7 FOR UPDATE")
        .execute(&mut *blocker)
        .await
        .expect("lock");
    let started = Instant::now();
    let e = s.apply(top_up(7, 100, 2)).await;
    assert!(matches!(e, Err(LedgerError::Store(rei_core::ledger::StoreError::Unavailable { .. }))), "{e:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "bounded: {:?}", started.elapsed());
    blocker.rollback().await.expect("release");
    let a = s.apply(top_up(7, 100, 2)).await.expect("applies once the lock is gone");
    assert!(!a.replayed);
    assert_eq!(s.balance(UserId(7)).await.expect("balance").available, Money::from_kopecks(200));
}
