//! The job, quote, usage-session, payment and audit stores on PostgreSQL and SQLite: each port's conformance
//! suite, the append-only audit table, a race of compare-and-set updates, racing marks of one payment, and corrupt
//! rows read as errors.

use std::sync::Arc;

use rei_adapters::postgres::access::{PgApiKeys, PgReplays};
use rei_adapters::postgres::audit::PgAuditLog;
use rei_adapters::postgres::jobs::PgJobStore;
use rei_adapters::postgres::payments::PgPaymentStore;
use rei_adapters::postgres::quotes::PgQuoteStore;
use rei_adapters::postgres::usage::PgUsageSessionStore;
use rei_adapters::sqlite::access::{SqliteApiKeys, SqliteReplays};
use rei_adapters::sqlite::audit::SqliteAuditLog;
use rei_adapters::sqlite::jobs::SqliteJobStore;
use rei_adapters::sqlite::payments::SqlitePaymentStore;
use rei_adapters::sqlite::quotes::SqliteQuoteStore;
use rei_adapters::sqlite::usage::SqliteUsageSessionStore;
use rei_core::billing::QuoteStore;
use rei_core::guards::{
    Appended, AuditAction, AuditFilter, AuditLog, AuditOutcome, AuditRecord, AuditTarget, Reason, Role,
};
use rei_core::ids::{AuditId, IdempotencyKey, JobId, UserId};
use rei_core::jobs::{JobState, JobStore, JobStoreError, Priority, WorkerId};
use rei_core::testing::access::{api_key_store_conformance, replay_store_conformance};
use rei_core::testing::billing::quote_store_conformance;
use rei_core::testing::guards::audit_log_conformance;
use rei_core::testing::jobs::{job_store_conformance, sample_job};
use rei_core::testing::payments::{payment_store_conformance, sample_payment};
use rei_core::testing::usage::usage_store_conformance;
use rei_core::time::Timestamp;
use rei_core::topups::{FinalStatus, PaymentRecordStatus, PaymentStore};
use rei_core::usage::UsageSessionStore;

use crate::support::{pg_pool, sqlite_pool};

fn at(ms: i64) -> Timestamp {
    Timestamp::from_millis(ms)
}

#[tokio::test]
async fn pg_job_store_passes_the_conformance_suite() {
    // Proves the PostgreSQL job store keeps every MUST of JobStore.
    job_store_conformance(|| async { Arc::new(PgJobStore::new(pg_pool(4).await)) as Arc<dyn JobStore> }).await;
}

#[tokio::test]
async fn sqlite_job_store_passes_the_conformance_suite() {
    // Proves the SQLite job store keeps every MUST of JobStore.
    job_store_conformance(|| async { Arc::new(SqliteJobStore::new(sqlite_pool().await)) as Arc<dyn JobStore> }).await;
}

#[tokio::test]
async fn pg_quote_store_passes_the_conformance_suite() {
    // Proves the PostgreSQL quote store keeps every MUST of QuoteStore.
    quote_store_conformance(|| async { Arc::new(PgQuoteStore::new(pg_pool(4).await)) as Arc<dyn QuoteStore> }).await;
}

#[tokio::test]
async fn sqlite_quote_store_passes_the_conformance_suite() {
    // Proves the SQLite quote store keeps every MUST of QuoteStore.
    quote_store_conformance(|| async { Arc::new(SqliteQuoteStore::new(sqlite_pool().await)) as Arc<dyn QuoteStore> })
        .await;
}

#[tokio::test]
async fn pg_usage_store_passes_the_conformance_suite() {
    // Proves the PostgreSQL usage-session store keeps every MUST of UsageSessionStore.
    usage_store_conformance(|| async {
        Arc::new(PgUsageSessionStore::new(pg_pool(4).await)) as Arc<dyn UsageSessionStore>
    })
    .await;
}

#[tokio::test]
async fn sqlite_usage_store_passes_the_conformance_suite() {
    // Proves the SQLite usage-session store keeps every MUST of UsageSessionStore.
    usage_store_conformance(|| async {
        Arc::new(SqliteUsageSessionStore::new(sqlite_pool().await)) as Arc<dyn UsageSessionStore>
    })
    .await;
}

#[tokio::test]
async fn pg_audit_log_passes_the_conformance_suite() {
    // Proves the PostgreSQL audit log keeps every MUST of AuditLog.
    audit_log_conformance(|| async { Arc::new(PgAuditLog::new(pg_pool(4).await)) as Arc<dyn AuditLog> }).await;
}

#[tokio::test]
async fn sqlite_audit_log_passes_the_conformance_suite() {
    // Proves the SQLite audit log keeps every MUST of AuditLog.
    audit_log_conformance(|| async { Arc::new(SqliteAuditLog::new(sqlite_pool().await)) as Arc<dyn AuditLog> }).await;
}

#[tokio::test]
async fn pg_board_passes_the_conformance_suite() {
    // Proves the PostgreSQL provider board keeps every MUST of ProviderBoard.
    rei_core::testing::board::board_conformance(|| async {
        Arc::new(rei_adapters::postgres::board::PgBoard::new(pg_pool(2).await))
            as Arc<dyn rei_core::routing::ProviderBoard>
    })
    .await;
}

#[tokio::test]
async fn sqlite_board_passes_the_conformance_suite() {
    // Proves the SQLite provider board keeps every MUST of ProviderBoard.
    rei_core::testing::board::board_conformance(|| async {
        Arc::new(rei_adapters::sqlite::board::SqliteBoard::new(sqlite_pool().await))
            as Arc<dyn rei_core::routing::ProviderBoard>
    })
    .await;
}

#[tokio::test]
async fn pg_payment_store_passes_the_conformance_suite() {
    // Proves the PostgreSQL payment store keeps every MUST of PaymentStore.
    payment_store_conformance(|| async { Arc::new(PgPaymentStore::new(pg_pool(4).await)) as Arc<dyn PaymentStore> })
        .await;
}

#[tokio::test]
async fn sqlite_payment_store_passes_the_conformance_suite() {
    // Proves the SQLite payment store keeps every MUST of PaymentStore.
    payment_store_conformance(|| async {
        Arc::new(SqlitePaymentStore::new(sqlite_pool().await)) as Arc<dyn PaymentStore>
    })
    .await;
}

/// Races marks `Succeeded` and `Canceled` (and concurrent inserts of the same record) on each of several
/// payments: exactly one mark changes each record, and the stored status is the winner's.
async fn one_mark_wins(store: Arc<dyn PaymentStore>) {
    const CONTENDERS: usize = 8;
    for n in 1..=10 {
        let record = sample_payment(n, 42, 10_000, 1_000);
        let inserts: Vec<_> = (0..4)
            .map(|_| {
                let (store, record) = (store.clone(), record.clone());
                tokio::spawn(async move { store.insert(&record).await })
            })
            .collect();
        for insert in inserts {
            assert_eq!(insert.await.expect("join").expect("insert"), record, "every insert sees the one record");
        }
        let marks: Vec<_> = (0..CONTENDERS)
            .map(|i| {
                let (store, id) = (store.clone(), record.id.clone());
                let status = if i % 2 == 0 { FinalStatus::Succeeded } else { FinalStatus::Canceled };
                tokio::spawn(async move { (status, store.mark(&id, status, at(2_000)).await) })
            })
            .collect();
        let mut winners = Vec::new();
        for mark in marks {
            let (status, marked) = mark.await.expect("join");
            if marked.expect("mark").changed {
                winners.push(status);
            }
        }
        assert_eq!(winners.len(), 1, "payment {n}: winners {winners:?}");
        let stored = store.get(&record.id).await.expect("get").expect("stored").status;
        assert_eq!(stored, PaymentRecordStatus::from(winners[0]), "payment {n}: the stored status is the winner's");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_racing_marks_of_one_payment_have_one_winner() {
    // Proves the PostgreSQL payment store decides a final status once under concurrent marks.
    one_mark_wins(Arc::new(PgPaymentStore::new(pg_pool(8).await))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_racing_marks_of_one_payment_have_one_winner() {
    // Proves the SQLite payment store decides a final status once under concurrent marks.
    one_mark_wins(Arc::new(SqlitePaymentStore::new(sqlite_pool().await))).await;
}

/// Writes a succeeded and an expired record and returns the statements the database itself must refuse.
async fn guarded_payments(store: &dyn PaymentStore) -> [&'static str; 4] {
    store.insert(&sample_payment(1, 42, 10_000, 1_000)).await.expect("insert");
    store.insert(&sample_payment(2, 42, 10_000, 1_000)).await.expect("insert");
    let paid = sample_payment(1, 0, 0, 0).id;
    let expired = sample_payment(2, 0, 0, 0).id;
    store.mark(&paid, FinalStatus::Succeeded, at(2_000)).await.expect("mark");
    store.mark(&expired, FinalStatus::Expired, at(2_000)).await.expect("mark");
    [
        "UPDATE payment_records SET status = 'canceled' WHERE status = 'succeeded'",
        "UPDATE payment_records SET status = 'pending' WHERE status = 'succeeded'",
        "UPDATE payment_records SET status = 'pending' WHERE status = 'expired'",
        "UPDATE payment_records SET amount = amount + 1",
    ]
}

#[tokio::test]
async fn pg_payment_table_refuses_a_final_status_going_back() {
    // Proves PostgreSQL itself refuses to move a final status back or to change a record's payment.
    let pool = pg_pool(2).await;
    let store = PgPaymentStore::new(pool.clone());
    for sql in guarded_payments(&store).await {
        assert!(sqlx::query(sql).execute(&pool).await.is_err(), "{sql} must be refused");
    }
    let paid = store.get(&sample_payment(1, 0, 0, 0).id).await.expect("get").expect("stored");
    assert_eq!((paid.status, paid.amount.kopecks()), (PaymentRecordStatus::Succeeded, 10_000));
}

#[tokio::test]
async fn sqlite_payment_table_refuses_a_final_status_going_back() {
    // Proves SQLite itself refuses to move a final status back or to change a record's payment.
    let pool = sqlite_pool().await;
    let store = SqlitePaymentStore::new(pool.clone());
    for sql in guarded_payments(&store).await {
        assert!(sqlx::query(sql).execute(&pool).await.is_err(), "{sql} must be refused");
    }
    let paid = store.get(&sample_payment(1, 0, 0, 0).id).await.expect("get").expect("stored");
    assert_eq!((paid.status, paid.amount.kopecks()), (PaymentRecordStatus::Succeeded, 10_000));
}

fn audit_record(id: u128, key: &str) -> AuditRecord {
    AuditRecord {
        id: AuditId::from(id),
        at: at(1_000),
        actor: UserId(7),
        actor_role: Role::Owner,
        action: AuditAction::RoleChange,
        target: AuditTarget::parse("user:42").expect("target"),
        reason: Reason::parse("promoted to support").expect("reason"),
        request_key: IdempotencyKey::parse(key).expect("key"),
        outcome: AuditOutcome::Done,
    }
}

/// Writes one record through the log and returns what a listing shows afterwards.
async fn audited(log: &dyn AuditLog) -> Vec<AuditRecord> {
    let record = audit_record(1, "grant:1");
    assert_eq!(log.append(record.clone()).await, Ok(Appended::New(record.id)));
    assert_eq!(log.append(record.clone()).await, Ok(Appended::Duplicate(record.id)), "a replay adds nothing");
    let clash = log.append(audit_record(1, "grant:2")).await;
    assert!(clash.is_err(), "a second record under a used id is refused, not reported as written: {clash:?}");
    let listed = log.list(&AuditFilter::latest(10)).await.expect("list");
    assert_eq!(listed, vec![record]);
    listed
}

#[tokio::test]
async fn pg_audit_table_refuses_update_delete_and_truncate() {
    // Proves the PostgreSQL database itself keeps the audit log append-only, whoever connects to it.
    let pool = pg_pool(2).await;
    let log = PgAuditLog::new(pool.clone());
    let before = audited(&log).await;
    for sql in [
        "UPDATE audit_log SET reason = 'rewritten'",
        "UPDATE audit_log SET outcome = 'failed' WHERE actor = 7",
        "DELETE FROM audit_log",
        "DELETE FROM audit_log WHERE actor = 7",
        "TRUNCATE audit_log",
        "INSERT INTO audit_log SELECT * FROM audit_log ON CONFLICT (id) DO UPDATE SET reason = 'rewritten'",
    ] {
        let refused = sqlx::query(sql).execute(&pool).await;
        assert!(refused.is_err(), "{sql} must be refused");
    }
    assert_eq!(log.list(&AuditFilter::latest(10)).await.expect("list"), before, "the record is untouched");
}

#[tokio::test]
async fn sqlite_audit_table_refuses_update_and_delete() {
    // Proves the SQLite database itself keeps the audit log append-only, whoever connects to it.
    let pool = sqlite_pool().await;
    let log = SqliteAuditLog::new(pool.clone());
    let before = audited(&log).await;
    for sql in [
        "UPDATE audit_log SET reason = 'rewritten'",
        "UPDATE audit_log SET outcome = 'failed' WHERE actor = 7",
        "DELETE FROM audit_log",
        "DELETE FROM audit_log WHERE actor = 7",
        "REPLACE INTO audit_log (id, at_ms, actor, actor_role, action, target, reason, request_key, outcome) \
         SELECT id, at_ms, actor, actor_role, action, target, 'rewritten', 'other-key', outcome FROM audit_log",
    ] {
        let refused = sqlx::query(sql).execute(&pool).await;
        assert!(refused.is_err(), "{sql} must be refused");
    }
    // REPLACE and upserts on the request key are skipped like any repeated key: they change nothing.
    for sql in [
        "REPLACE INTO audit_log SELECT * FROM audit_log",
        "INSERT INTO audit_log SELECT * FROM audit_log WHERE true ON CONFLICT DO UPDATE SET reason = 'rewritten'",
    ] {
        sqlx::query(sql).execute(&pool).await.expect("skipped, not failed");
    }
    assert_eq!(log.list(&AuditFilter::latest(10)).await.expect("list"), before, "the record is untouched");
}

/// Races `contenders` updates with one expectation on each of several jobs, first `Queued -> Running`, then
/// (fenced by the attempt) `Running -> Succeeded`, and checks that exactly one of each race wins and that the
/// stored job is the winner's.
async fn one_update_wins(store: Arc<dyn JobStore>) {
    const CONTENDERS: usize = 8;
    const JOBS: u128 = 10;
    for id in 1..=JOBS {
        let job = sample_job(id, Priority::Normal, at(0));
        store.insert(&job).await.expect("insert");
        for (expected, next_state, attempts) in
            [(JobState::Queued, JobState::Running, 1), (JobState::Running, JobState::Succeeded, 1)]
        {
            let tasks: Vec<_> = (0..CONTENDERS)
                .map(|n| {
                    let store = store.clone();
                    let mut next = job.clone();
                    next.state = next_state;
                    next.attempts = attempts;
                    next.lease_owner = Some(WorkerId::parse(&format!("w{n}")).expect("worker id"));
                    next.lease_deadline = Some(at(60_000));
                    tokio::spawn(async move { (n, store.update(&next, expected).await) })
                })
                .collect();
            let mut winners = Vec::new();
            for task in tasks {
                let (n, result) = task.await.expect("join");
                match result {
                    Ok(()) => winners.push(n),
                    Err(JobStoreError::Conflict { actual, actual_attempts: 1, .. }) if actual == next_state => {}
                    Err(e) => panic!("job {id}, {expected} -> {next_state}: unexpected {e:?}"),
                }
            }
            assert_eq!(winners.len(), 1, "job {id}, {expected} -> {next_state}: winners {winners:?}");
            let stored = store.get(JobId::from(id)).await.expect("get").expect("stored");
            assert_eq!(stored.state, next_state);
            let owner = stored.lease_owner.map(|w| w.as_str().to_owned());
            assert_eq!(owner, Some(format!("w{}", winners[0])), "the stored job is the winner's");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_concurrent_updates_with_one_expectation_have_one_winner() {
    // Proves the PostgreSQL compare-and-set admits exactly one of several simultaneous updates.
    one_update_wins(Arc::new(PgJobStore::new(pg_pool(8).await))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_concurrent_updates_with_one_expectation_have_one_winner() {
    // Proves the SQLite compare-and-set admits exactly one of several simultaneous updates.
    one_update_wins(Arc::new(SqliteJobStore::new(sqlite_pool().await))).await;
}

#[tokio::test]
async fn pg_corrupt_rows_are_errors_not_panics() {
    // Proves a row the domain refuses (here an unknown state, written around the CHECK) is reported as an error.
    let pool = pg_pool(2).await;
    let store = PgJobStore::new(pool.clone());
    store.insert(&sample_job(1, Priority::Normal, at(0))).await.expect("insert");
    sqlx::query("ALTER TABLE jobs DROP CONSTRAINT jobs_state_check").execute(&pool).await.expect("drop check");
    sqlx::query("UPDATE jobs SET state = 'bogus'").execute(&pool).await.expect("corrupt");
    let read = store.get(JobId::from(1)).await;
    assert!(matches!(&read, Err(JobStoreError::Unavailable { reason }) if reason.contains("jobs.state")), "{read:?}");
    let listed = store.list_by_state(JobState::Queued, None, 10).await.expect("list");
    assert!(listed.is_empty(), "a corrupt row matches no state");
}

#[tokio::test]
async fn sqlite_corrupt_rows_are_errors_not_panics() {
    // Proves a row the domain refuses (here an unknown state, written around the CHECK) is reported as an error.
    let pool = sqlite_pool().await;
    let store = SqliteJobStore::new(pool.clone());
    store.insert(&sample_job(1, Priority::Normal, at(0))).await.expect("insert");
    let mut conn = pool.acquire().await.expect("connection");
    sqlx::query("PRAGMA ignore_check_constraints = ON").execute(&mut *conn).await.expect("pragma");
    sqlx::query("UPDATE jobs SET state = 'bogus'").execute(&mut *conn).await.expect("corrupt");
    sqlx::query("PRAGMA ignore_check_constraints = OFF").execute(&mut *conn).await.expect("pragma");
    drop(conn);
    let read = store.get(JobId::from(1)).await;
    assert!(matches!(&read, Err(JobStoreError::Unavailable { reason }) if reason.contains("jobs.state")), "{read:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_lead_is_exclusive_and_lost_with_its_connection() {
    // Proves one process leads a role at a time, and that a leader whose connection the server ended knows it
    // lost the lead, which another can then take.
    let pool = pg_pool(4).await;
    let role = format!("test-{}", std::process::id());
    let key = u64::from_ne_bytes(rei_adapters::postgres::lead_key(&role).to_ne_bytes());
    let mut lead = rei_adapters::postgres::try_lead(&pool, &role).await.expect("ask").expect("the first leads");
    assert!(rei_adapters::postgres::try_lead(&pool, &role).await.expect("ask").is_none(), "only one leads");
    assert!(lead.still_held().await);
    // Only this role's lock: other tests hold advisory locks of their own (migrations).
    let ended: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(l.pid) FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted \
         AND l.objsubid = 1 AND l.classid::TEXT::NUMERIC * 4294967296 + l.objid::TEXT::NUMERIC = $1::NUMERIC",
    )
    .bind(key.to_string())
    .fetch_all(&pool)
    .await
    .expect("end the leader's session");
    assert_eq!(ended, vec![true], "the leader's session is the one holding the lock");
    assert!(!lead.still_held().await, "the leader must notice its session ended");
    // The server releases the lock once the ended backend has exited, a moment after the client saw it end: ask
    // again, a bounded number of times.
    for _ in 0..100 {
        if rei_adapters::postgres::try_lead(&pool, &role).await.expect("ask").is_some() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("the lead never came free after its holder's session ended");
}

#[tokio::test]
async fn pg_access_stores_pass_the_conformance_suites() {
    // Proves the PostgreSQL API keys and replays keep every MUST of their ports (one claim among 16 racers).
    let pool = pg_pool(20).await;
    api_key_store_conformance(&PgApiKeys::new(pool.clone())).await;
    replay_store_conformance(Arc::new(PgReplays::new(pool))).await;
}

#[tokio::test]
async fn sqlite_access_stores_pass_the_conformance_suites() {
    // Proves the SQLite API keys and replays keep every MUST of their ports.
    let pool = sqlite_pool().await;
    api_key_store_conformance(&SqliteApiKeys::new(pool.clone())).await;
    replay_store_conformance(Arc::new(SqliteReplays::new(pool))).await;
}

#[tokio::test]
async fn pg_replays_batched_from_many_tasks_start_once_and_replay() {
    // Proves the batched PostgreSQL replay store under load: 200 tasks claim 100 slots (each twice at once);
    // each slot starts exactly once, every stored response replays to both twins, another fingerprint mismatches.
    use rei_core::access::{ReplayBegin, ReplaySlot, ReplayStore, StoredResponse};
    let store: Arc<dyn ReplayStore> = Arc::new(PgReplays::new(pg_pool(20).await));
    let slot = |n: u32| ReplaySlot {
        api_key: rei_core::guards::ApiKeyId::parse("k_batch").expect("id"),
        key: format!("order-{n}"),
        fingerprint: format!("f-{n}"),
    };
    let claims: Vec<_> = (0..200u32)
        .map(|i| {
            let (store, slot) = (store.clone(), slot(i % 100));
            tokio::spawn(async move { (i % 100, store.begin(&slot, at(1_000), at(60_000)).await.expect("begin")) })
        })
        .collect();
    let mut started = vec![0u32; 100];
    for c in claims {
        let (n, begun) = c.await.expect("join");
        match begun {
            ReplayBegin::Started => started[n as usize] += 1,
            ReplayBegin::InProgress => {}
            other => panic!("slot {n}: {other:?}"),
        }
    }
    assert!(started.iter().all(|s| *s == 1), "each slot starts once: {started:?}");
    let finishes: Vec<_> = (0..100u32)
        .map(|n| {
            let store = store.clone();
            let response = StoredResponse {
                status: 201,
                content_type: "application/json".into(),
                body: n.to_string().into_bytes(),
            };
            tokio::spawn(async move { store.finish(&slot(n), &response).await.expect("finish") })
        })
        .collect();
    for f in finishes {
        f.await.expect("join");
    }
    for n in 0..100u32 {
        match store.begin(&slot(n), at(2_000), at(60_000)).await.expect("begin") {
            ReplayBegin::Replay(r) => assert_eq!(r.body, n.to_string().into_bytes()),
            other => panic!("slot {n}: {other:?}"),
        }
    }
    let other = ReplaySlot { fingerprint: "other".into(), ..slot(7) };
    assert_eq!(store.begin(&other, at(2_000), at(60_000)).await.expect("begin"), ReplayBegin::Mismatch);
}

#[tokio::test]
async fn pg_chat_stores_pass_the_conformance_suites() {
    // Proves the PostgreSQL update log (one claim among 16 racers) and conversation store keep their MUSTs.
    let pool = pg_pool(20).await;
    rei_core::testing::chat::update_log_conformance(&rei_adapters::postgres::chat::PgUpdateLog::new(pool.clone()))
        .await;
    rei_core::testing::chat::conversation_store_conformance(&rei_adapters::postgres::chat::PgConversations::new(pool))
        .await;
}

#[tokio::test]
async fn sqlite_chat_stores_pass_the_conformance_suites() {
    // Proves the SQLite update log and conversation store keep their MUSTs.
    let pool = sqlite_pool().await;
    rei_core::testing::chat::update_log_conformance(&rei_adapters::sqlite::chat::SqliteUpdateLog::new(pool.clone()))
        .await;
    rei_core::testing::chat::conversation_store_conformance(&rei_adapters::sqlite::chat::SqliteConversations::new(
        pool,
    ))
    .await;
}
