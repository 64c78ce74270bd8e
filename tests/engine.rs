//! End-to-end tests of the engine on the in-memory adapters: the money flow of a generation through billing
//! and jobs, and the ledger under concurrency; and of `rei::Engine` on SQLite and PostgreSQL (`embedding`,
//! `members`).

#[cfg(all(feature = "sqlite", feature = "postgres", feature = "redis"))]
#[path = "engine/embedding.rs"]
mod embedding;
#[cfg(feature = "sqlite")]
#[path = "engine/members.rs"]
mod members;
#[cfg(feature = "sqlite")]
#[path = "engine/payments.rs"]
mod payments;
#[cfg(all(feature = "sqlite", feature = "postgres", feature = "redis"))]
#[path = "engine/pipeline.rs"]
mod pipeline;
#[cfg(feature = "sqlite")]
#[path = "engine/replica.rs"]
mod replica;

#[path = "engine/reports.rs"]
mod reports;
#[cfg(all(feature = "sqlite", feature = "postgres", feature = "redis"))]
#[path = "../examples/embed/walkthrough.rs"]
mod walkthrough;
#[cfg(feature = "sqlite")]
#[path = "engine/worker.rs"]
mod worker;

use std::sync::Arc;
use std::time::Duration;

use rei::core::billing::{BillingConfig, BillingService};
use rei::core::caps::SpendCaps;
use rei::core::ids::ProviderId;
use rei::core::ids::{HoldId, IdempotencyKey, JobId, PaymentId, ProductId, TxId, UserId};
use rei::core::jobs::{
    ErrorText, FailOutcome, Job, JobEvent, JobNotice, JobPorts, JobService, JobState, JobStore, NewJob, Priority,
    RetryPolicy, WorkerId,
};
use rei::core::ledger::{LedgerCommand, LedgerError, LedgerOp, LedgerStore, SystemAccount};
use rei::core::money::{Money, Ratio};
use rei::core::pricing::{Pricer, PricingConfig, Tier};
use rei::core::testing::billing::MemoryQuotes;
use rei::core::testing::clock::{ManualClock, SeqIds};
use rei::core::testing::jobs::{MemoryJobQueue, MemoryJobStore, QueueSpec, RecordingNotifier};
use rei::core::testing::ledger::MemoryLedger;
use rei::core::time::{Clock, Timestamp};

const ALICE: UserId = UserId(1);
const T0: Timestamp = Timestamp::from_millis(1_800_000_000_000);

struct Engine {
    clock: Arc<ManualClock>,
    billing: Arc<BillingService>,
    jobs: JobService,
    store: Arc<MemoryJobStore>,
    notifier: Arc<RecordingNotifier>,
}

fn engine() -> Engine {
    let clock = Arc::new(ManualClock::new(T0));
    let ids = Arc::new(SeqIds::new(1));
    let billing = Arc::new(BillingService::new(
        Arc::new(MemoryLedger::new()),
        Arc::new(MemoryQuotes::new()),
        clock.clone(),
        ids,
        Pricer::new(PricingConfig::example()),
        BillingConfig::default(),
    ));
    let notifier = Arc::new(RecordingNotifier::new());
    let store = Arc::new(MemoryJobStore::new());
    let ports = JobPorts {
        store: store.clone(),
        queue: Arc::new(MemoryJobQueue::new(QueueSpec {
            capacity: 1_000,
            dead_letter_capacity: 100,
            aging_step: None,
        })),
        billing: billing.clone(),
        notifier: notifier.clone(),
        clock: clock.clone(),
    };
    let retry = RetryPolicy::new(2, Duration::from_secs(1), Duration::from_secs(10), Ratio::ZERO).expect("policy");
    let jobs = JobService::new(ports, retry, Duration::from_secs(60)).expect("job service");
    Engine { clock, billing, jobs, store, notifier }
}

/// Tops up, quotes one image, confirms, and submits the job; returns it.
async fn confirmed_job(e: &Engine) -> Job {
    e.billing
        .top_up(ALICE, Money::from_kopecks(100_000), PaymentId::parse("pay-1").expect("id"))
        .await
        .expect("top-up");
    submitted_job(e).await
}

/// Quotes one image, confirms, and submits the job; returns it.
async fn submitted_job(e: &Engine) -> Job {
    let quote = e
        .billing
        .quote(ALICE, &ProductId::parse("image.nano-banana").expect("id"), 1, Tier::Basic)
        .await
        .expect("quote");
    let held = e.billing.confirm(ALICE, quote.id, None).await.expect("confirm");
    let spec = NewJob {
        id: JobId::from(quote.id.as_u128()),
        user: ALICE,
        product: quote.product.clone(),
        priority: Priority::Normal,
        price: quote.price,
        hold: held.hold,
        max_attempts: 2,
        request: None,
    };
    let mut job = Job::new(spec, e.clock.now()).expect("job");
    job.apply(JobEvent::Confirm, e.clock.now()).expect("confirm the job: its money is held");
    e.jobs.submit(job).await.expect("submit")
}

#[tokio::test]
async fn a_successful_generation_is_charged_exactly_once() {
    // Proves confirm -> queue -> lease -> provider -> complete captures the price once, even when the worker
    // completes twice (a crash after capture, before the ack), and tells the user once.
    let e = engine();
    let job = confirmed_job(&e).await;
    let worker = WorkerId::parse("w1").expect("worker");
    let leased = e.jobs.lease(&worker).await.expect("lease").expect("a job");
    let gemini = ProviderId::parse("gemini").expect("id");
    let leased = e.jobs.record_dispatch(&leased, gemini.clone()).await.expect("dispatch");
    let done = e.jobs.complete(&leased, gemini.clone()).await.expect("complete");
    assert_eq!(done.state, JobState::Succeeded);
    e.jobs.complete(&leased, gemini).await.expect("complete again");
    let revenue = e.billing.ledger().system_balance(SystemAccount::Revenue).await.expect("revenue");
    assert_eq!(revenue, job.price, "charged once");
    let b = e.billing.balance(ALICE).await.expect("balance");
    assert_eq!(b.held, Money::ZERO);
    assert_eq!(b.available, Money::from_kopecks(100_000).checked_sub(job.price).expect("fits"));
    let succeeded = e.notifier.notices().iter().filter(|(_, n)| matches!(n, JobNotice::Succeeded { .. })).count();
    assert_eq!(succeeded, 1);
    assert!(e.billing.verify().await.expect("verify").is_clean());
}

#[tokio::test]
async fn a_failed_generation_gives_the_money_back_after_its_last_attempt() {
    // Proves a retryable failure retries with backoff, and the last failure releases the hold once and
    // dead-letters the job.
    let e = engine();
    let job = confirmed_job(&e).await;
    let worker = WorkerId::parse("w1").expect("worker");
    let first = e.jobs.lease(&worker).await.expect("lease").expect("a job");
    let out = e.jobs.fail(&first, ErrorText::new("provider 503"), true).await.expect("fail");
    assert!(matches!(out, FailOutcome::Retrying { .. }), "{out:?}");
    assert!(e.jobs.lease(&worker).await.expect("lease").is_none(), "not before the backoff");
    e.clock.advance(Duration::from_secs(5));
    let second = e.jobs.lease(&worker).await.expect("lease").expect("the retry");
    let out = e.jobs.fail(&second, ErrorText::new("provider 503 again"), true).await.expect("fail");
    assert!(matches!(out, FailOutcome::GaveUp { dead_lettered: true, .. }), "{out:?}");
    let b = e.billing.balance(ALICE).await.expect("balance");
    assert_eq!((b.available, b.held), (Money::from_kopecks(100_000), Money::ZERO), "all money back");
    let hold = e.billing.ledger().hold(job.hold).await.expect("hold").expect("exists");
    assert_eq!(hold.state, rei::core::ledger::HoldState::Released);
    assert!(e.billing.verify().await.expect("verify").is_clean());
}

fn hold_cmd(n: u128) -> LedgerCommand {
    LedgerCommand {
        key: IdempotencyKey::derived("storm", n).expect("test key"),
        tx: TxId::from(n),
        at: T0,
        op: LedgerOp::Hold {
            user: ALICE,
            hold: HoldId::from(n),
            amount: Money::from_kopecks(100),
            provider: None,
            expires_at: T0.plus(Duration::from_secs(600)),
            caps: SpendCaps::NONE,
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_holds_never_overdraws() {
    // Proves 1,000 concurrent holds of 1.00 on 100.00 give exactly 100 successes and 900 refusals.
    let ledger = Arc::new(MemoryLedger::new());
    let top_up = LedgerCommand {
        key: IdempotencyKey::derived("topup", 1).expect("test key"),
        tx: TxId::from(u128::MAX),
        at: T0,
        op: LedgerOp::TopUp {
            user: ALICE,
            amount: Money::from_kopecks(10_000),
            payment: PaymentId::parse("p").expect("id"),
        },
    };
    ledger.apply(top_up).await.expect("top-up");
    let tasks: Vec<_> = (1..=1_000u128)
        .map(|n| {
            let ledger = ledger.clone();
            tokio::spawn(async move { ledger.apply(hold_cmd(n)).await })
        })
        .collect();
    let (mut ok, mut refused) = (0, 0);
    for t in tasks {
        match t.await.expect("join") {
            Ok(_) => ok += 1,
            Err(LedgerError::InsufficientFunds { .. }) => refused += 1,
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!((ok, refused), (100, 900));
    let b = ledger.balance(ALICE).await.expect("balance");
    assert_eq!((b.available, b.held), (Money::ZERO, Money::from_kopecks(10_000)));
    assert!(ledger.verify().await.expect("verify").is_clean());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bank_total_is_conserved_under_concurrent_moves() {
    // Proves concurrent holds, captures, releases and refunds over 50 users, read by concurrent summing
    // readers, conserve the total at every read and never show a negative balance.
    let ledger = Arc::new(MemoryLedger::new());
    for u in 0..50 {
        let cmd = LedgerCommand {
            key: IdempotencyKey::derived("topup", u).expect("test key"),
            tx: TxId::from(1_000_000 + u128::from(u as u32)),
            at: T0,
            op: LedgerOp::TopUp {
                user: UserId(u),
                amount: Money::from_kopecks(10_000),
                payment: PaymentId::parse(&format!("p{u}")).expect("id"),
            },
        };
        ledger.apply(cmd).await.expect("top-up");
    }
    let writers: Vec<_> = (0..8u128)
        .map(|w| {
            let ledger = ledger.clone();
            tokio::spawn(async move {
                for i in 0..250u128 {
                    let n = w * 10_000 + i;
                    let user = UserId(i64::try_from(n % 50).expect("fits"));
                    let hold = HoldId::from(n);
                    let cmd = |k: &str, op| LedgerCommand {
                        key: IdempotencyKey::derived(k, n).expect("test key"),
                        tx: TxId::from(n * 8 + 1_000_000_000 + u128::from(k.len() as u32)),
                        at: T0,
                        op,
                    };
                    let amount = Money::from_kopecks(i64::try_from(1 + n % 700).expect("fits"));
                    let op = LedgerOp::Hold {
                        user,
                        hold,
                        amount,
                        provider: None,
                        expires_at: T0.plus(Duration::from_secs(60)),
                        caps: SpendCaps::NONE,
                    };
                    if ledger.apply(cmd("h", op)).await.is_err() {
                        continue;
                    }
                    if n % 3 == 0 {
                        ledger.apply(cmd("rel", LedgerOp::Release { hold })).await.expect("release");
                    } else {
                        let captured = Money::from_kopecks(amount.kopecks() / 2);
                        ledger.apply(cmd("cap", LedgerOp::Capture { hold, amount: captured })).await.expect("capture");
                        if n % 5 == 0 && captured.is_positive() {
                            ledger
                                .apply(cmd("refund", LedgerOp::Refund { hold, amount: captured }))
                                .await
                                .expect("refund");
                        }
                    }
                }
            })
        })
        .collect();
    let reader = {
        let ledger = ledger.clone();
        tokio::spawn(async move {
            let mut reads = 0;
            for _ in 0..200 {
                let report = ledger.verify().await.expect("verify");
                assert!(report.is_clean(), "{report:?}");
                let mut users = 0i64;
                for u in 0..50 {
                    let b = ledger.balance(UserId(u)).await.expect("balance");
                    assert!(!b.available.is_negative() && !b.held.is_negative(), "negative balance for {u}");
                    users += b.available.kopecks() + b.held.kopecks();
                }
                assert!(users <= 500_000, "users can only lose money to revenue");
                reads += 1;
                tokio::task::yield_now().await;
            }
            reads
        })
    };
    for w in writers {
        w.await.expect("writer");
    }
    assert_eq!(reader.await.expect("reader"), 200);
    let revenue = ledger.system_balance(SystemAccount::Revenue).await.expect("revenue").kopecks();
    let mut users = 0i64;
    for u in 0..50 {
        let b = ledger.balance(UserId(u)).await.expect("balance");
        users += b.available.kopecks() + b.held.kopecks();
    }
    assert_eq!(users + revenue, 500_000, "every kopeck is with a user or in revenue");
    assert!(ledger.verify().await.expect("verify").is_clean());
}

#[tokio::test]
async fn a_job_follows_the_ledger_after_a_crash_on_either_side() {
    // Proves, on the real billing service, that a job store failing right after the capture ends the job
    // Succeeded on recovery (charged once), and a job whose outcome stayed unknown until the reaper expired
    // its hold ends Failed with the money back.
    let e = engine();
    let job = confirmed_job(&e).await;
    let worker = WorkerId::parse("w1").expect("worker");
    let gemini = ProviderId::parse("gemini").expect("id");
    let leased = e.jobs.lease(&worker).await.expect("lease").expect("a job");
    let leased = e.jobs.record_dispatch(&leased, gemini.clone()).await.expect("dispatch");
    e.store.fail_next_update_to(JobState::Succeeded);
    assert!(e.jobs.complete(&leased, gemini.clone()).await.is_err(), "the store failed after the capture");
    e.clock.advance(Duration::from_secs(61));
    let report = e.jobs.recover_expired_leases(10).await.expect("recover");
    assert_eq!(report.settled, 1, "{report:?}");
    let stored = e.store.get(job.id).await.expect("get").expect("stored");
    assert_eq!(stored.state, JobState::Succeeded);
    let revenue = e.billing.ledger().system_balance(SystemAccount::Revenue).await.expect("revenue");
    assert_eq!(revenue, job.price, "charged once");

    // A second job: dispatched, outcome unknown, never resolved; the reaper expires its hold.
    let second = submitted_job(&e).await;
    let leased = e.jobs.lease(&worker).await.expect("lease").expect("the second job");
    e.jobs.mark_unknown(&leased, ErrorText::new("provider timed out")).await.expect("unknown");
    let before = e.billing.balance(ALICE).await.expect("balance");
    e.clock.advance(Duration::from_secs(3 * 60 * 60));
    let reaped = e.billing.reap_expired().await.expect("reap");
    assert_eq!(reaped.expired, vec![second.hold]);
    let report = e.jobs.recover_expired_leases(10).await.expect("recover");
    assert_eq!(report.settled, 1, "{report:?}");
    let stored = e.store.get(second.id).await.expect("get").expect("stored");
    assert_eq!(stored.state, JobState::Failed, "an unknown job does not stay unknown");
    let after = e.billing.balance(ALICE).await.expect("balance");
    assert_eq!(after.available, before.available.checked_add(second.price).expect("fits"), "the money is back");
    assert!(e.billing.verify().await.expect("verify").is_clean());
}

#[tokio::test]
async fn a_retried_hold_replays_after_the_clock_moved() {
    // Proves a hold retried with the same key a moment later replays: its expiry comes from the clock, and a
    // fingerprint never covers what the clock derives.
    let e = engine();
    e.billing.top_up(ALICE, Money::from_kopecks(1_000), PaymentId::parse("pay-h").expect("id")).await.expect("top-up");
    let key = IdempotencyKey::derived("hold", "retry-1").expect("test key");
    let first = e.billing.hold(ALICE, HoldId::from(900), Money::from_kopecks(1_000), None, key.clone()).await;
    let first = first.expect("first hold");
    e.clock.advance(Duration::from_secs(5));
    let again = e.billing.hold(ALICE, HoldId::from(900), Money::from_kopecks(1_000), None, key).await;
    let again = again.expect("a retry replays");
    assert!(again.replayed && !first.replayed, "the retry says it was a replay");
    assert_eq!(again.receipt, first.receipt);
    assert_eq!(e.billing.balance(ALICE).await.expect("balance").held, Money::from_kopecks(1_000), "held once");
}
