//! Top-ups recorded and reconciled end to end: the YooKassa adapter against the fake YooKassa, the ledger and the
//! payment records on real SQLite and PostgreSQL, a manual clock. A payment whose notice never comes is credited
//! by the reconciler, the webhook and the reconciler racing credit once, cancelled payments credit nothing, the
//! looks back off and cap, old payments expire after a last look, and a gateway failure loses nothing.

use std::sync::Arc;
use std::time::Duration;

use rei_adapters::fakes::yookassa::{FakeYooKassa, YooKassaOutcome};
use rei_adapters::postgres::ledger::{PgLedger, PgLedgerConfig};
use rei_adapters::postgres::payments::PgPaymentStore;
use rei_adapters::postgres::quotes::PgQuoteStore;
use rei_adapters::sqlite::ledger::{SqliteLedger, SqliteLedgerConfig};
use rei_adapters::sqlite::payments::SqlitePaymentStore;
use rei_adapters::sqlite::quotes::SqliteQuoteStore;
use rei_adapters::yookassa::{YooKassa, YooKassaConfig, parse_notice};
use rei_core::billing::{BillingConfig, BillingService, QuoteStore};
use rei_core::ids::{PaymentId, UserId};
use rei_core::ledger::LedgerStore;
use rei_core::money::Money;
use rei_core::pricing::{Pricer, PricingConfig};
use rei_core::testing::clock::{ManualClock, SeqIds};
use rei_core::time::Timestamp;
use rei_core::topups::{
    NoticeError, NoticeOutcome, PaymentRecord, PaymentRecordStatus, PaymentStore, ReconcileReport, Reconciler,
    ReconcilerConfig, TopUpPorts, TopUps, TopUpsConfig,
};

use crate::support::{pg_pool, sqlite_pool};

const SHOP: &str = "100500";
const SECRET: &str = "test_secret";
const T0: i64 = 1_800_000_000_000;
const MINUTE: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, Debug)]
enum Backend {
    Sqlite,
    Postgres,
}

struct Rig {
    fake: FakeYooKassa,
    clock: Arc<ManualClock>,
    billing: Arc<BillingService>,
    payments: Arc<dyn PaymentStore>,
    top_ups: Arc<TopUps>,
    reconciler: Arc<Reconciler>,
}

async fn rig(backend: Backend) -> Rig {
    let fake = FakeYooKassa::start(SHOP, SECRET).await.expect("fake");
    let gateway = YooKassa::new(YooKassaConfig {
        base_url: fake.base_url(),
        retry_pause: Duration::from_millis(5),
        ..YooKassaConfig::new(SHOP, SECRET)
    })
    .expect("adapter");
    let (ledger, quotes, payments): (Arc<dyn LedgerStore>, Arc<dyn QuoteStore>, Arc<dyn PaymentStore>) = match backend {
        Backend::Sqlite => {
            let pool = sqlite_pool().await;
            (
                Arc::new(SqliteLedger::new(pool.clone(), SqliteLedgerConfig::default())),
                Arc::new(SqliteQuoteStore::new(pool.clone())),
                Arc::new(SqlitePaymentStore::new(pool)),
            )
        }
        Backend::Postgres => {
            let pool = pg_pool(8).await;
            (
                Arc::new(PgLedger::new(pool.clone(), PgLedgerConfig::default())),
                Arc::new(PgQuoteStore::new(pool.clone())),
                Arc::new(PgPaymentStore::new(pool)),
            )
        }
    };
    let clock = Arc::new(ManualClock::new(Timestamp::from_millis(T0)));
    let billing = Arc::new(BillingService::new(
        ledger,
        quotes,
        clock.clone(),
        Arc::new(SeqIds::new(3)),
        Pricer::new(PricingConfig::example()),
        BillingConfig::default(),
    ));
    let ports = TopUpPorts {
        gateway: Arc::new(gateway),
        billing: billing.clone(),
        payments: payments.clone(),
        clock: clock.clone(),
    };
    let top_ups = Arc::new(TopUps::new(ports, TopUpsConfig::default()));
    let reconciler =
        Arc::new(Reconciler::new(top_ups.clone(), clock.clone(), ReconcilerConfig::default()).expect("config"));
    Rig { fake, clock, billing, payments, top_ups, reconciler }
}

impl Rig {
    async fn create(&self, user: i64, topup: &str, kopecks: i64) -> PaymentId {
        let payment = self
            .top_ups
            .create(UserId(user), topup, Money::from_kopecks(kopecks), "Пополнение баланса", "https://t.me/rei_bot")
            .await
            .expect("create");
        payment.id
    }

    async fn record(&self, id: &PaymentId) -> PaymentRecord {
        self.payments.get(id).await.expect("get").expect("recorded")
    }

    async fn available(&self, user: i64) -> Money {
        self.billing.balance(UserId(user)).await.expect("balance").available
    }

    async fn assert_ledger_clean(&self) {
        let report = self.billing.verify().await.expect("verify");
        assert!(report.is_clean(), "ledger verify: {report:?}");
    }

    fn now(&self) -> Timestamp {
        rei_core::time::Clock::now(self.clock.as_ref())
    }
}

fn succeeded_notice(id: &PaymentId) -> rei_core::topups::Notice {
    let body = serde_json::json!({"type": "notification", "event": "payment.succeeded",
        "object": {"id": id.as_str(), "status": "succeeded"}});
    parse_notice(body.to_string().as_bytes()).expect("notice")
}

fn report(looked: u32, credited: u32, canceled: u32, still_pending: u32, expired: u32, errors: u32) -> ReconcileReport {
    ReconcileReport { looked, credited, canceled, still_pending, expired, errors }
}

async fn a_payment_paid_without_a_notice_is_credited(backend: Backend) {
    let rig = rig(backend).await;
    let id = rig.create(42, "t-1", 50_000).await;
    assert_eq!(rig.create(42, "t-1", 50_000).await, id, "a top-up created twice is one payment");
    assert_eq!(rig.fake.payments(), 1);
    let page = rig.payments.list_for_user(UserId(42), None, 10).await.expect("list");
    assert_eq!(page.records.len(), 1, "and one record");
    let record = &page.records[0];
    assert_eq!(
        (record.status, record.amount, record.topup.as_str()),
        (PaymentRecordStatus::Pending, Money::from_kopecks(50_000), "t-1")
    );
    assert!(record.confirmation_url.as_deref().is_some_and(|u| u.contains(id.as_str())), "the link to pay is kept");
    assert_eq!(record.next_check_at, Timestamp::from_millis(T0).plus(MINUTE), "first look a minute after creation");
    assert_eq!(rig.reconciler.run_once().await, ReconcileReport::default(), "nothing is due yet");
    assert!(rig.fake.set_status(id.as_str(), "succeeded"), "the user pays; the notice never comes");
    rig.clock.advance(MINUTE);
    assert_eq!(rig.reconciler.run_once().await, report(1, 1, 0, 0, 0, 0));
    assert_eq!(rig.available(42).await, Money::from_kopecks(50_000));
    assert_eq!(rig.record(&id).await.status, PaymentRecordStatus::Succeeded);
    rig.clock.advance(MINUTE * 60);
    assert_eq!(rig.reconciler.run_once().await, ReconcileReport::default(), "a settled payment is not looked at again");
    let late = rig.top_ups.on_notice(&succeeded_notice(&id)).await.expect("a late notice");
    assert!(matches!(late, NoticeOutcome::Credited { replayed: true, .. }), "{late:?}");
    assert_eq!(rig.available(42).await, Money::from_kopecks(50_000), "credited once");
    rig.assert_ledger_clean().await;
}

#[tokio::test]
async fn sqlite_a_payment_paid_without_a_notice_is_credited_by_the_reconciler() {
    // Proves a paid payment whose notice never arrives is found and credited once by the reconciler (SQLite).
    a_payment_paid_without_a_notice_is_credited(Backend::Sqlite).await;
}

#[tokio::test]
async fn pg_a_payment_paid_without_a_notice_is_credited_by_the_reconciler() {
    // Proves a paid payment whose notice never arrives is found and credited once by the reconciler (PostgreSQL).
    a_payment_paid_without_a_notice_is_credited(Backend::Postgres).await;
}

async fn the_webhook_and_the_reconciler_racing_credit_once(backend: Backend) {
    const ROUNDS: i64 = 12;
    const RACERS: usize = 4;
    let rig = rig(backend).await;
    for round in 0..ROUNDS {
        let id = rig.create(7, &format!("race-{round}"), 10_000).await;
        assert!(rig.fake.set_status(id.as_str(), "succeeded"));
        rig.clock.advance(MINUTE);
        let mut notices = Vec::new();
        let mut looks = Vec::new();
        for _ in 0..RACERS {
            let (top_ups, notice) = (rig.top_ups.clone(), succeeded_notice(&id));
            notices.push(tokio::spawn(async move { top_ups.on_notice(&notice).await }));
            let reconciler = rig.reconciler.clone();
            looks.push(tokio::spawn(async move { reconciler.run_once().await }));
        }
        let mut fresh = 0;
        for notice in notices {
            match notice.await.expect("join").expect("a notice of a paid payment is credited or replayed") {
                NoticeOutcome::Credited { replayed: false, .. } => fresh += 1,
                NoticeOutcome::Credited { replayed: true, .. } => {}
                other => panic!("round {round}: {other:?}"),
            }
        }
        let mut looked = 0;
        for look in looks {
            let report = look.await.expect("join");
            assert_eq!(report.errors, 0, "round {round}: {report:?}");
            assert_eq!(report.looked, report.credited, "round {round}: every look finds it paid: {report:?}");
            looked += report.looked;
        }
        assert!(fresh <= 1, "round {round}: {fresh} notices credited anew");
        assert!(fresh == 1 || looked >= 1, "round {round}: someone credited it");
        assert_eq!(rig.record(&id).await.status, PaymentRecordStatus::Succeeded, "round {round}");
        let expected = Money::from_kopecks(10_000 * (round + 1));
        assert_eq!(rig.available(7).await, expected, "round {round}: exactly one top-up per payment");
    }
    rig.clock.advance(MINUTE * 60);
    assert_eq!(rig.reconciler.run_once().await, ReconcileReport::default(), "nothing left pending");
    rig.assert_ledger_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_the_webhook_and_the_reconciler_racing_credit_once() {
    // Proves notices and reconciler runs settling one payment at once credit it exactly once (SQLite).
    the_webhook_and_the_reconciler_racing_credit_once(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_the_webhook_and_the_reconciler_racing_credit_once() {
    // Proves notices and reconciler runs settling one payment at once credit it exactly once (PostgreSQL).
    the_webhook_and_the_reconciler_racing_credit_once(Backend::Postgres).await;
}

async fn a_canceled_payment_credits_nothing(backend: Backend) {
    let rig = rig(backend).await;
    let id = rig.create(42, "t-cancel", 30_000).await;
    assert!(rig.fake.set_status(id.as_str(), "canceled"));
    rig.clock.advance(MINUTE);
    assert_eq!(rig.reconciler.run_once().await, report(1, 0, 1, 0, 0, 0));
    let record = rig.record(&id).await;
    assert_eq!((record.status, record.updated_at), (PaymentRecordStatus::Canceled, rig.now()));
    assert_eq!(rig.available(42).await, Money::ZERO);
    let forged = rig.top_ups.on_notice(&succeeded_notice(&id)).await;
    assert!(matches!(forged, Err(NoticeError::Refused { .. })), "{forged:?}");
    assert_eq!(rig.record(&id).await.status, PaymentRecordStatus::Canceled, "a cancelled record stays cancelled");
    rig.clock.advance(MINUTE * 60);
    assert_eq!(rig.reconciler.run_once().await, ReconcileReport::default());
    assert_eq!(rig.available(42).await, Money::ZERO);
    rig.assert_ledger_clean().await;
}

#[tokio::test]
async fn sqlite_a_payment_canceled_at_the_gateway_is_recorded_canceled_and_credits_nothing() {
    // Proves a cancelled payment ends cancelled, moves no money, and a later "succeeded" notice is refused (SQLite).
    a_canceled_payment_credits_nothing(Backend::Sqlite).await;
}

#[tokio::test]
async fn pg_a_payment_canceled_at_the_gateway_is_recorded_canceled_and_credits_nothing() {
    // Proves a cancelled payment ends cancelled, moves no money, and a later "succeeded" notice is refused
    // (PostgreSQL).
    a_canceled_payment_credits_nothing(Backend::Postgres).await;
}

async fn the_looks_back_off_and_cap(backend: Backend) {
    let rig = rig(backend).await;
    let id = rig.create(42, "t-slow", 10_000).await;
    rig.clock.advance(MINUTE);
    // The wait after each look: 2, 4, 8, 16 minutes, then 30 (the cap) from then on.
    for (checks, wait_minutes) in [(1, 2), (2, 4), (3, 8), (4, 16), (5, 30), (6, 30), (7, 30)] {
        assert_eq!(rig.reconciler.run_once().await, report(1, 0, 0, 1, 0, 0), "look {checks}");
        let record = rig.record(&id).await;
        let wait = MINUTE * wait_minutes;
        assert_eq!((record.checks, record.next_check_at), (checks, rig.now().plus(wait)), "look {checks}");
        rig.clock.advance(wait - Duration::from_millis(1));
        assert_eq!(rig.reconciler.run_once().await, ReconcileReport::default(), "not before its next check");
        rig.clock.advance(Duration::from_millis(1));
    }
    assert_eq!(rig.record(&id).await.status, PaymentRecordStatus::Pending);
    assert!(rig.fake.set_status(id.as_str(), "succeeded"));
    assert_eq!(rig.reconciler.run_once().await, report(1, 1, 0, 0, 0, 0));
    assert_eq!(rig.available(42).await, Money::from_kopecks(10_000));
}

#[tokio::test]
async fn sqlite_pending_payments_are_looked_at_with_growing_capped_waits() {
    // Proves the backoff: checks count up and the next check moves 2, 4, 8, 16, then 30 minutes on (SQLite).
    the_looks_back_off_and_cap(Backend::Sqlite).await;
}

#[tokio::test]
async fn pg_pending_payments_are_looked_at_with_growing_capped_waits() {
    // Proves the backoff: checks count up and the next check moves 2, 4, 8, 16, then 30 minutes on (PostgreSQL).
    the_looks_back_off_and_cap(Backend::Postgres).await;
}

async fn too_old_payments_expire_after_a_last_look(backend: Backend) {
    let rig = rig(backend).await;
    let never = rig.create(42, "t-never", 10_000).await;
    let late = rig.create(42, "t-late", 20_000).await;
    let max_age = ReconcilerConfig::default().max_age;
    rig.clock.advance(max_age);
    // Both are past max_age without a look (the reconciler was not running): one last look each.
    assert!(rig.fake.set_status(late.as_str(), "succeeded"), "one was paid after all");
    assert_eq!(rig.reconciler.run_once().await, report(2, 1, 0, 0, 1, 0));
    assert_eq!(rig.record(&never).await.status, PaymentRecordStatus::Expired);
    assert_eq!(rig.record(&late).await.status, PaymentRecordStatus::Succeeded, "the last look credits what is paid");
    assert_eq!(rig.available(42).await, Money::from_kopecks(20_000));
    rig.clock.advance(MINUTE * 60);
    assert_eq!(rig.reconciler.run_once().await, ReconcileReport::default(), "an expired payment is not looked at");
    // The gateway's word still counts after REI gave up: a notice of a payment made at the last moment credits it.
    assert!(rig.fake.set_status(never.as_str(), "succeeded"));
    let credited = rig.top_ups.on_notice(&succeeded_notice(&never)).await.expect("notice");
    assert!(matches!(credited, NoticeOutcome::Credited { replayed: false, .. }), "{credited:?}");
    assert_eq!(rig.record(&never).await.status, PaymentRecordStatus::Succeeded);
    assert_eq!(rig.available(42).await, Money::from_kopecks(30_000));
    rig.assert_ledger_clean().await;
}

#[tokio::test]
async fn sqlite_payments_pending_too_long_expire_after_a_last_look() {
    // Proves a payment past max_age gets one last look: credited when paid, marked expired when not (SQLite).
    too_old_payments_expire_after_a_last_look(Backend::Sqlite).await;
}

#[tokio::test]
async fn pg_payments_pending_too_long_expire_after_a_last_look() {
    // Proves a payment past max_age gets one last look: credited when paid, marked expired when not (PostgreSQL).
    too_old_payments_expire_after_a_last_look(Backend::Postgres).await;
}

async fn a_gateway_error_loses_nothing(backend: Backend) {
    let rig = rig(backend).await;
    let id = rig.create(42, "t-down", 40_000).await;
    assert!(rig.fake.set_status(id.as_str(), "succeeded"));
    rig.fake.read_script().set_default(YooKassaOutcome::ServerError);
    rig.clock.advance(MINUTE);
    assert_eq!(rig.reconciler.run_once().await, report(1, 0, 0, 0, 0, 1), "the failed look is counted");
    let record = rig.record(&id).await;
    assert_eq!((record.status, record.checks), (PaymentRecordStatus::Pending, 1), "and the payment kept pending");
    assert_eq!(rig.available(42).await, Money::ZERO);
    rig.fake.read_script().set_default(YooKassaOutcome::Garbage);
    rig.clock.advance(MINUTE * 2);
    assert_eq!(rig.reconciler.run_once().await, report(1, 0, 0, 0, 0, 1), "garbage is a failure too");
    rig.fake.read_script().set_default(YooKassaOutcome::Normal);
    assert_eq!(rig.reconciler.run_once().await, ReconcileReport::default(), "retried when next due, not before");
    rig.clock.advance(MINUTE * 4);
    assert_eq!(rig.reconciler.run_once().await, report(1, 1, 0, 0, 0, 0), "the next run credits it");
    assert_eq!(rig.record(&id).await.status, PaymentRecordStatus::Succeeded);
    assert_eq!(rig.available(42).await, Money::from_kopecks(40_000));
    rig.assert_ledger_clean().await;
}

#[tokio::test]
async fn sqlite_a_gateway_error_is_counted_and_retried_and_nothing_is_lost() {
    // Proves a look that fails at the gateway is counted, keeps the payment pending, and is retried (SQLite).
    a_gateway_error_loses_nothing(Backend::Sqlite).await;
}

#[tokio::test]
async fn pg_a_gateway_error_is_counted_and_retried_and_nothing_is_lost() {
    // Proves a look that fails at the gateway is counted, keeps the payment pending, and is retried (PostgreSQL).
    a_gateway_error_loses_nothing(Backend::Postgres).await;
}
