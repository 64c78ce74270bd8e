//! The conformance suite every [`ReportStore`] must pass: a known history built through the real stores at
//! controlled times (a [`ManualClock`]), and every figure asserted exactly, with the edges of every range.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::caps::SpendCaps;
use crate::generation::{AttemptLog, AttemptOutcome, AttemptRecord};
use crate::guards::Reason;
use crate::ids::{HoldId, IdempotencyKey, JobId, PaymentId, ProductId, ProviderId, TxId, UserId};
use crate::jobs::{Job, JobEvent, JobStore, NewJob, Priority, WorkerId};
use crate::ledger::{LedgerCommand, LedgerOp, LedgerStore, SystemAccount};
use crate::money::Money;
use crate::reports::{
    JobCounts, LedgerTotals, MoneyFlow, Point, ProviderUsage, ReportError, ReportStore, SERIES_POINTS_MAX, Series,
    SloWindows,
};
use crate::slo::{Counts, LatencyBound, Severity, Window, WindowCounts};
use crate::testing::clock::ManualClock;
use crate::time::{Clock, Timestamp};
use crate::topups::{FinalStatus, PaymentProvider, PaymentRecord, PaymentRecordStatus, PaymentStore};

/// The stores a report store reads, on one database, and the clock the history is written on.
///
/// The clock must start at or before the suite's first time ([`T0`]); the suite moves it forward only.
pub struct ReportFixture {
    /// The store under test.
    pub reports: Arc<dyn ReportStore>,
    /// The ledger it reads.
    pub ledger: Arc<dyn LedgerStore>,
    /// The jobs it reads.
    pub jobs: Arc<dyn JobStore>,
    /// The attempts it reads.
    pub attempts: Arc<dyn AttemptLog>,
    /// The payment records it reads.
    pub payments: Arc<dyn PaymentStore>,
    /// The time every write of the history is stamped with.
    pub clock: Arc<ManualClock>,
}

/// The start of the suite's history, on the hour.
pub const T0: Timestamp = Timestamp::from_millis(1_800_000_000_000);

const ALICE: UserId = UserId(1);
const BOB: UserId = UserId(2);
const CAROL: UserId = UserId(3);
const DAN: UserId = UserId(4);
const MINUTE_MS: i64 = 60_000;

/// `minutes` after [`T0`].
fn m(minutes: i64) -> Timestamp {
    Timestamp::from_millis(T0.as_millis() + minutes * MINUTE_MS)
}

/// `minutes` and `ms` after [`T0`].
fn m_ms(minutes: i64, ms: i64) -> Timestamp {
    Timestamp::from_millis(m(minutes).as_millis() + ms)
}

fn rub(r: i64) -> Money {
    Money::from_kopecks(r * 100)
}

fn must<T, E: std::fmt::Display>(what: &str, r: Result<T, E>) -> T {
    r.unwrap_or_else(|e| panic!("{what}: {e}"))
}

fn provider(name: &str) -> ProviderId {
    must("provider id", ProviderId::parse(name))
}

fn payment_id(name: &str) -> PaymentId {
    must("payment id", PaymentId::parse(name))
}

/// Writes the history through the stores, each write at the clock's time.
struct History<'a> {
    f: &'a ReportFixture,
    next_tx: u128,
    jobs: BTreeMap<u128, Job>,
}

impl<'a> History<'a> {
    fn new(f: &'a ReportFixture) -> History<'a> {
        History { f, next_tx: 0x5e_0000, jobs: BTreeMap::new() }
    }

    fn at(&self, t: Timestamp) {
        assert!(self.f.clock.now() <= t, "the history is written in time order ({t:?})");
        self.f.clock.set(t);
    }

    fn now(&self) -> Timestamp {
        self.f.clock.now()
    }

    async fn ledger(&mut self, key: &str, op: LedgerOp) {
        self.next_tx += 1;
        let what = format!("{op:?}");
        let cmd = LedgerCommand {
            key: must("key", IdempotencyKey::derived("report", key)),
            tx: TxId::from(self.next_tx),
            at: self.now(),
            op,
        };
        must(&what, self.f.ledger.apply(cmd).await);
    }

    async fn top_up(&mut self, user: UserId, amount: Money, payment: &str) {
        let op = LedgerOp::TopUp { user, amount, payment: payment_id(payment) };
        self.ledger(&format!("top-up-{payment}"), op).await;
    }

    async fn hold(&mut self, user: UserId, hold: u128, amount: Money, ttl_minutes: i64) {
        let expires_at = Timestamp::from_millis(self.now().as_millis() + ttl_minutes * MINUTE_MS);
        let op = LedgerOp::Hold {
            user,
            hold: HoldId::from(hold),
            amount,
            provider: None,
            expires_at,
            caps: SpendCaps::NONE,
        };
        self.ledger(&format!("hold-{hold}"), op).await;
    }

    async fn capture(&mut self, hold: u128, amount: Money) {
        self.ledger(&format!("capture-{hold}"), LedgerOp::Capture { hold: HoldId::from(hold), amount }).await;
    }

    async fn release(&mut self, hold: u128) {
        self.ledger(&format!("release-{hold}"), LedgerOp::Release { hold: HoldId::from(hold) }).await;
    }

    async fn adjust(&mut self, user: UserId, amount: Money, why: &str) {
        let reason = must("reason", Reason::parse(why));
        self.ledger(
            &format!("adjust-{user}-{}", amount.kopecks()),
            LedgerOp::Adjust { user, amount, actor: UserId(99), reason },
        )
        .await;
    }

    /// A job of `user` paid by `hold`, created now and queued.
    async fn job(&mut self, id: u128, user: UserId, hold: u128, price: Money) {
        let spec = NewJob {
            id: JobId::from(id),
            user,
            product: must("product", ProductId::parse("image.nano-banana")),
            priority: Priority::Normal,
            price,
            hold: HoldId::from(hold),
            max_attempts: 3,
            request: None,
        };
        let now = self.now();
        let mut job = must("job", Job::new(spec, now));
        must("confirm", job.apply(JobEvent::Confirm, now));
        must("enqueue", job.apply(JobEvent::Enqueue, now));
        let stored = must("insert job", self.f.jobs.insert(&job).await);
        assert_eq!(stored, job, "a new job is stored as given");
        self.jobs.insert(id, job);
    }

    /// Moves job `id` by `event`, now, as a worker would (a start leases it for one more attempt).
    async fn step(&mut self, id: u128, event: JobEvent) {
        let now = self.now();
        let Some(job) = self.jobs.get_mut(&id) else { panic!("job {id} was never created") };
        let expected = job.state;
        must("job event", job.apply(event, now));
        if event == JobEvent::Start {
            job.attempts += 1;
            job.lease_deadline = Some(Timestamp::from_millis(now.as_millis() + 5 * MINUTE_MS));
            job.lease_owner = Some(must("worker", WorkerId::parse("worker-1")));
        } else {
            job.clear_lease();
        }
        let job = job.clone();
        must("update job", self.f.jobs.update(&job, expected).await);
    }

    /// An attempt record, written now.
    #[expect(clippy::too_many_arguments, reason = "one attempt is this many facts")]
    async fn attempt(
        &self,
        job: u128,
        attempt: u32,
        name: &str,
        outcome: AttemptOutcome,
        cost: Money,
        started_at: Timestamp,
        ended_at: Option<Timestamp>,
    ) {
        let charged =
            if outcome == AttemptOutcome::Succeeded { cost.checked_mul(2).unwrap_or(cost) } else { Money::ZERO };
        let record = AttemptRecord {
            job: JobId::from(job),
            attempt,
            provider: provider(name),
            model: format!("{name}-model"),
            outcome,
            cost,
            charged,
            started_at,
            ended_at,
            error: None,
        };
        must("record attempt", self.f.attempts.record(&record).await);
    }

    /// A payment record of `user`, created now and pending.
    async fn payment(&self, id: &str, user: UserId, amount: Money) {
        let now = self.now();
        let record = PaymentRecord {
            id: payment_id(id),
            provider: PaymentProvider::YooKassa,
            user,
            amount,
            topup: format!("topup-{id}"),
            status: PaymentRecordStatus::Pending,
            created_at: now,
            updated_at: now,
            next_check_at: Timestamp::from_millis(now.as_millis() + MINUTE_MS),
            checks: 0,
            confirmation_url: None,
        };
        must("insert payment", self.f.payments.insert(&record).await);
    }

    async fn mark(&self, id: &str, status: FinalStatus) {
        let marked = must("mark payment", self.f.payments.mark(&payment_id(id), status, self.now()).await);
        assert!(marked.changed, "payment {id} becomes {status:?}");
    }

    /// A paid payment: the record (pending, then succeeded) and the ledger's top-up, now.
    async fn paid(&mut self, id: &str, user: UserId, amount: Money) {
        self.payment(id, user, amount).await;
        self.mark(id, FinalStatus::Succeeded).await;
        self.top_up(user, amount, id).await;
    }
}

// Jobs (J*) and their holds (H*).
const J1: u128 = 0x101;
const J2: u128 = 0x102;
const J3: u128 = 0x103;
const J4: u128 = 0x104;
const J5: u128 = 0x105;
const J6: u128 = 0x106;
const J7: u128 = 0x107;
const J8: u128 = 0x108;
const J9: u128 = 0x109;
const H1: u128 = 0x201;
const H2: u128 = 0x202;
const H3: u128 = 0x203;
const H4: u128 = 0x204;
const H5: u128 = 0x205;
const H6: u128 = 0x206;
const H7: u128 = 0x207;
const H8: u128 = 0x208;
const H9: u128 = 0x209;
const H10: u128 = 0x210;

/// Builds the suite's history, in time order (minutes after [`T0`]):
///
/// | when | ledger | jobs | attempts (provider, outcome, cost, latency) | payments |
/// |---|---|---|---|---|
/// | 0 | top-up Alice 1000 | | | pa1 succeeded |
/// | 1 | top-up Bob 500 | | | pb1 succeeded |
/// | 2 | hold H1 100 (Alice) | J1 queued, started | J1#1 kling failed at 2:30 | |
/// | 3 | hold H2 50 (Alice) | J1 retried, started | J1#2 gemini succeeded 50 ₽ at 4 (60 s) | |
/// | 3 | | J2 queued, started | J2#1 kling failed at 4 | |
/// | 4 | hold H3 30 (Bob) | J2 retried; J3 queued, started | J3#1 kling succeeded 20 ₽, 120 s | |
/// | 5 | hold H4 20 (Bob) | J2 started; J4 queued | J2#2 kling rejected at 5:01 | |
/// | 6 | top-up Carol 200 | J4 started (stays running) | J4#1 kling dispatched | pc1 succeeded |
/// | 7 | capture H3 30; hold H5 15 (Carol) | J3 succeeded (180 s); J5 queued (stays) | | |
/// | 8, 9 | hold H6 40 (Alice), released at 9 | J6 queued, cancelled at 9 | | |
/// | 10 | capture H1 80 (20 back) | J1 succeeded (480 s); J2 started | J2#3 gemini, late result 7 ₽ at 20 | |
/// | 11 | release H2 | J2 failed | | |
/// | 13, 14 | hold H7 25 (Carol) | J7 queued, started, unknown at 14 (stays) | J7#1 kling dispatched | |
/// | 14, 15 | hold H8 10 (Bob), released at 15 | J9 queued, started, failed at 15 | J9#1 gemini failed | |
/// | 16, 30 | hold H9 5 (Carol, 5 min), expired at 30 | | | |
/// | 20–23 | refund H1 10; card refund Bob 40; adjust Alice +25, Bob −5 | | | |
/// | 24, 25 | top-up Dan 10, card refund Dan 10 | | | pd1 succeeded |
/// | 26–29 | | | | px1 canceled at 27; px2 expired at 28; px3 stays pending |
/// | 40, 41 | | | 20 flux successes 1 ₽ each (19 × 4 s, 1 × 1 300 s); veo success 13 ₽, 1 300 s | |
/// | 60 | top-up Alice 300; hold H10 100 | J8 queued, started | J8#1 gemini succeeded 60 ₽, 60 s | pa2 succeeded |
/// | 62 | capture H10 100 | J8 succeeded (120 s) | | |
async fn build_history(f: &ReportFixture) {
    use AttemptOutcome::{Dispatched, Failed, LateResult, Rejected, Succeeded};
    use JobEvent::{Cancel, Fail, OutcomeUnknown, Retry, Start, Succeed};
    let mut h = History::new(f);

    h.at(m(0));
    h.paid("pa1", ALICE, rub(1_000)).await;
    h.at(m(1));
    h.paid("pb1", BOB, rub(500)).await;

    h.at(m(2));
    h.hold(ALICE, H1, rub(100), 60).await;
    h.job(J1, ALICE, H1, rub(100)).await;
    h.step(J1, Start).await;
    h.at(m_ms(2, 30_000));
    h.attempt(J1, 1, "kling", Failed, Money::ZERO, m(2), Some(m_ms(2, 30_000))).await;
    h.step(J1, Retry).await;

    h.at(m(3));
    h.hold(ALICE, H2, rub(50), 60).await;
    h.step(J1, Start).await;
    h.attempt(J1, 2, "gemini", Dispatched, Money::ZERO, m(3), None).await;
    h.job(J2, ALICE, H2, rub(50)).await;
    h.step(J2, Start).await;

    h.at(m(4));
    h.attempt(J1, 2, "gemini", Succeeded, rub(50), m(3), Some(m(4))).await;
    h.attempt(J2, 1, "kling", Failed, Money::ZERO, m(3), Some(m(4))).await;
    h.step(J2, Retry).await;
    h.hold(BOB, H3, rub(30), 60).await;
    h.job(J3, BOB, H3, rub(30)).await;
    h.step(J3, Start).await;

    h.at(m(5));
    h.hold(BOB, H4, rub(20), 60).await;
    h.job(J4, BOB, H4, rub(20)).await;
    h.step(J2, Start).await;
    h.at(m_ms(5, 1_000));
    h.attempt(J2, 2, "kling", Rejected, Money::ZERO, m(5), Some(m_ms(5, 1_000))).await;
    h.step(J2, Retry).await;

    h.at(m(6));
    h.paid("pc1", CAROL, rub(200)).await;
    h.attempt(J3, 1, "kling", Succeeded, rub(20), m(4), Some(m(6))).await;
    h.step(J4, Start).await;
    h.attempt(J4, 1, "kling", Dispatched, Money::ZERO, m(6), None).await;

    h.at(m(7));
    h.capture(H3, rub(30)).await;
    h.step(J3, Succeed).await;
    h.hold(CAROL, H5, rub(15), 60).await;
    h.job(J5, CAROL, H5, rub(15)).await;

    h.at(m(8));
    h.hold(ALICE, H6, rub(40), 60).await;
    h.job(J6, ALICE, H6, rub(40)).await;
    h.at(m(9));
    h.step(J6, Cancel).await;
    h.release(H6).await;

    h.at(m(10));
    h.capture(H1, rub(80)).await;
    h.step(J1, Succeed).await;
    h.step(J2, Start).await;
    h.attempt(J2, 3, "gemini", Dispatched, Money::ZERO, m(10), None).await;

    h.at(m(11));
    h.step(J2, Fail).await;
    h.release(H2).await;

    h.at(m(13));
    h.hold(CAROL, H7, rub(25), 60).await;
    h.job(J7, CAROL, H7, rub(25)).await;
    h.step(J7, Start).await;
    h.attempt(J7, 1, "kling", Dispatched, Money::ZERO, m(13), None).await;
    h.at(m(14));
    h.step(J7, OutcomeUnknown).await;
    h.hold(BOB, H8, rub(10), 60).await;
    h.job(J9, BOB, H8, rub(10)).await;
    h.step(J9, Start).await;
    h.at(m(15));
    h.attempt(J9, 1, "gemini", Failed, Money::ZERO, m(14), Some(m(15))).await;
    h.step(J9, Fail).await;
    h.release(H8).await;

    h.at(m(16));
    h.hold(CAROL, H9, rub(5), 5).await;

    h.at(m(20));
    h.attempt(J2, 3, "gemini", LateResult, rub(7), m(10), Some(m(20))).await;
    h.ledger("refund-h1", LedgerOp::Refund { hold: HoldId::from(H1), amount: rub(10) }).await;
    h.at(m(21));
    let card = |user, payment: &str, amount| LedgerOp::RefundToCard { user, payment: payment_id(payment), amount };
    h.ledger("card-pb1", card(BOB, "pb1", rub(40))).await;
    h.at(m(22));
    h.adjust(ALICE, rub(25), "welcome bonus").await;
    h.at(m(23));
    h.adjust(BOB, rub(-5), "duplicate grant").await;
    h.at(m(24));
    h.paid("pd1", DAN, rub(10)).await;
    h.at(m(25));
    h.ledger("card-pd1", card(DAN, "pd1", rub(10))).await;

    h.at(m(26));
    h.payment("px1", ALICE, rub(100)).await;
    h.payment("px2", BOB, rub(50)).await;
    h.at(m(27));
    h.mark("px1", FinalStatus::Canceled).await;
    h.at(m(28));
    h.mark("px2", FinalStatus::Expired).await;
    h.at(m(29));
    h.payment("px3", CAROL, rub(70)).await;
    h.at(m(30));
    h.ledger("expire-h9", LedgerOp::Expire { hold: HoldId::from(H9) }).await;

    // Attempts of jobs another embedder keeps elsewhere: the report reads the attempt log alone.
    h.at(m(41));
    for i in 0..19u32 {
        let started = m_ms(40, i64::from(i) * 1_000);
        let ended = Timestamp::from_millis(started.as_millis() + 4_000);
        h.attempt(0x900 + u128::from(i), 1, "flux", Succeeded, rub(1), started, Some(ended)).await;
    }
    h.attempt(0x913, 1, "flux", Succeeded, rub(1), m_ms(40, 19_000), Some(m_ms(40, 1_319_000))).await;
    h.attempt(0x950, 1, "veo", Succeeded, rub(13), m(41), Some(m_ms(41, 1_300_000))).await;

    h.at(m(60));
    h.paid("pa2", ALICE, rub(300)).await;
    h.hold(ALICE, H10, rub(100), 60).await;
    h.job(J8, ALICE, H10, rub(100)).await;
    h.step(J8, Start).await;
    h.attempt(J8, 1, "gemini", Dispatched, Money::ZERO, m(60), None).await;
    h.at(m(61));
    h.attempt(J8, 1, "gemini", Succeeded, rub(60), m(60), Some(m(61))).await;
    h.at(m(62));
    h.capture(H10, rub(100)).await;
    h.step(J8, Succeed).await;
}

/// Runs every check of the suite, each on a fresh fixture from `make`.
///
/// # Panics
/// On the first figure that is not exactly what the history makes it.
pub async fn report_store_conformance<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = ReportFixture>,
{
    an_empty_store_reports_zeros(&make().await).await;
    let f = make().await;
    build_history(&f).await;
    jobs_are_counted_by_creation_and_state(&f).await;
    money_is_summed_by_kind(&f).await;
    providers_are_summed_by_attempt(&f).await;
    ledger_totals_agree_with_verify(&f).await;
    slo_windows_count_what_finished(&f).await;
    series_fill_every_bucket(&f).await;
    bad_requests_are_refused(&f).await;
}

fn zero_points(since: Timestamp, bucket_ms: i64, n: i64) -> Vec<Point> {
    (0..n).map(|i| Point { at: Timestamp::from_millis(since.as_millis() + i * bucket_ms), value: 0 }).collect()
}

fn points(since: Timestamp, bucket_ms: i64, values: &[i64]) -> Vec<Point> {
    let at = |i: usize| since.as_millis() + i64::try_from(i).unwrap_or(0) * bucket_ms;
    values.iter().enumerate().map(|(i, v)| Point { at: Timestamp::from_millis(at(i)), value: *v }).collect()
}

async fn an_empty_store_reports_zeros(f: &ReportFixture) {
    // Nothing happened: every figure is zero, no provider is listed, every system account is there at zero, and a
    // series is all zero points.
    let r = &f.reports;
    assert_eq!(must("jobs", r.jobs(m(0), m(60)).await), JobCounts::default());
    assert_eq!(must("money", r.money(m(0), m(60)).await), MoneyFlow::default());
    assert_eq!(must("providers", r.providers(m(0), m(60)).await), Vec::new());
    let totals = must("ledger totals", r.ledger_totals().await);
    let zero_system = SystemAccount::ALL.iter().map(|a| (*a, Money::ZERO)).collect();
    let empty = LedgerTotals {
        available: Money::ZERO,
        held: Money::ZERO,
        active_holds: 0,
        system: zero_system,
        users_with_money: 0,
    };
    assert_eq!(totals, empty);
    assert_eq!(must("slo windows", r.slo_windows(m(60)).await), SloWindows::default());
    for series in Series::ALL {
        let got = must("series", r.series(series, m(0), m(60), Duration::from_secs(600)).await);
        assert_eq!(got, zero_points(m(0), 10 * MINUTE_MS, 6), "{series:?}");
    }
}

async fn jobs_are_counted_by_creation_and_state(f: &ReportFixture) {
    // Jobs created in [since, until) by their state now: since inclusive, until exclusive, empty ranges zero.
    let r = &f.reports;
    let first_hour = JobCounts { queued: 1, running: 1, succeeded: 2, failed: 2, cancelled: 1, unknown: 1 };
    assert_eq!(must("jobs", r.jobs(m(0), m(60)).await), first_hour, "J8, created at 60, is out");
    let with_j8 = JobCounts { succeeded: 3, ..first_hour };
    assert_eq!(must("jobs", r.jobs(m(0), m_ms(60, 1)).await), with_j8, "J8, created at 60, is in");
    let j1 = JobCounts { succeeded: 1, ..JobCounts::default() };
    assert_eq!(must("jobs", r.jobs(m(2), m(3)).await), j1, "J1 created at 2 in, J2 created at 3 out");
    assert_eq!(must("jobs", r.jobs(m(3), m(3)).await), JobCounts::default(), "an empty range");
    assert_eq!(must("jobs", r.jobs(m(63), m(600)).await), JobCounts::default(), "after everything");
}

async fn money_is_summed_by_kind(f: &ReportFixture) {
    // Money moved in [since, until) by kind, from the ledger's transactions by time and the attempts by start.
    let r = &f.reports;
    let first_hour = MoneyFlow {
        top_ups: rub(1_710),
        top_up_count: 4,
        revenue: rub(110),
        refunds: rub(10),
        card_refunds: rub(50),
        grants: rub(20),
        provider_cost: rub(110),
    };
    let got = must("money", r.money(m(0), m(60)).await);
    assert_eq!(got, first_hour);
    assert_eq!(got.margin(), rub(-10), "110 earned, 10 refunded, 110 paid to providers");
    let all =
        MoneyFlow { top_ups: rub(2_010), top_up_count: 5, revenue: rub(210), provider_cost: rub(170), ..first_hour };
    let got = must("money", r.money(m(0), m(63)).await);
    assert_eq!(got, all);
    assert_eq!(got.margin(), rub(30));
    let at_ten = MoneyFlow { revenue: rub(80), provider_cost: rub(7), ..MoneyFlow::default() };
    assert_eq!(
        must("money", r.money(m(10), m(11)).await),
        at_ten,
        "the capture and the attempt at 10, since inclusive"
    );
    let before_ten = MoneyFlow { revenue: rub(30), ..MoneyFlow::default() };
    assert_eq!(must("money", r.money(m(7), m(10)).await), before_ten, "the capture at 10 is out, until exclusive");
    assert_eq!(must("money", r.money(m(60), m(60)).await), MoneyFlow::default(), "an empty range");
    let edge = MoneyFlow { top_ups: rub(300), top_up_count: 1, provider_cost: rub(60), ..MoneyFlow::default() };
    assert_eq!(must("money", r.money(m(60), m_ms(60, 1)).await), edge, "one millisecond");
    let holds_only = must("money", r.money(m(13), m(20)).await);
    assert_eq!(holds_only, MoneyFlow::default(), "holds, releases and attempts that cost nothing move nothing");
}

/// Provider, attempts, successes, failures, cost, p95.
type UsageRow<'a> = (&'a str, u64, u64, u64, Money, Option<u64>);

async fn providers_are_summed_by_attempt(f: &ReportFixture) {
    // Per provider, by name: attempts started in the range, successes, failures (not rejections), cost of every
    // outcome, and the successes' p95 as an exact bucket bound (u64::MAX above the largest).
    let r = &f.reports;
    let got = must("providers", r.providers(m(0), m(60)).await);
    let summary: Vec<UsageRow<'_>> = got
        .iter()
        .map(|u| (u.provider.as_str(), u.attempts, u.successes, u.failures, u.cost, u.latency_p95_ms))
        .collect();
    assert_eq!(
        summary,
        [
            ("flux", 20, 20, 0, rub(20), Some(5_000)),
            ("gemini", 3, 1, 1, rub(57), Some(60_000)),
            ("kling", 6, 1, 2, rub(20), Some(120_000)),
            ("veo", 1, 1, 0, rub(13), Some(u64::MAX)),
        ]
    );
    let by_name = |name: &str| got.iter().find(|u| u.provider.as_str() == name).cloned();
    let flux = by_name("flux").unwrap_or_else(|| panic!("flux is listed"));
    assert_eq!(flux.latency.count(), 20);
    assert_eq!(flux.charged, rub(40), "each of flux's 20 results was charged twice its cost");
    assert_eq!(flux.latency.within(5_000), Counts::new(19, 20).ok(), "19 of 20 within 5 s");
    assert_eq!(flux.latency_p95(), Some(LatencyBound::AtMost(5_000)));
    let veo = by_name("veo").unwrap_or_else(|| panic!("veo is listed"));
    assert_eq!(veo.latency_p95(), Some(LatencyBound::Above(1_200_000)));
    let kling = by_name("kling").unwrap_or_else(|| panic!("kling is listed"));
    assert_eq!(kling.latency.count(), 1, "only the success that ended has a latency");
    let cost: i64 = got.iter().map(|u| u.cost.kopecks()).sum();
    assert_eq!(Money::from_kopecks(cost), must("money", r.money(m(0), m(60)).await).provider_cost);

    let later: Vec<(String, u64, Option<u64>)> = must("providers", r.providers(m(60), m(63)).await)
        .into_iter()
        .map(|u: ProviderUsage| (u.provider.as_str().to_owned(), u.attempts, u.latency_p95_ms))
        .collect();
    assert_eq!(later, [("gemini".to_owned(), 1, Some(60_000))], "J8#1, started at 60, since inclusive");
    let edge = must("providers", r.providers(m(2), m(3)).await);
    let edge: Vec<(&str, u64)> = edge.iter().map(|u| (u.provider.as_str(), u.attempts)).collect();
    assert_eq!(edge, [("kling", 1)], "J1#1 at 2 in; J1#2 and J2#1 at 3 out");
    assert_eq!(must("providers", r.providers(m(3), m(3)).await), Vec::new(), "an empty range");
}

async fn ledger_totals_agree_with_verify(f: &ReportFixture) {
    // The ledger now: every figure exact, and the same sums verify and the balances read.
    let totals = must("ledger totals", f.reports.ledger_totals().await);
    let want = LedgerTotals {
        available: rub(1_720),
        held: rub(60),
        active_holds: 3,
        system: vec![
            (SystemAccount::Payments, rub(-2_010)),
            (SystemAccount::Revenue, rub(200)),
            (SystemAccount::Promo, rub(-20)),
            (SystemAccount::RefundsOut, rub(50)),
        ],
        users_with_money: 3,
    };
    assert_eq!(totals, want, "Dan's money all went back to his card");
    let report = must("verify", f.ledger.verify().await);
    assert!(report.is_clean(), "the history is a sound ledger: {report:?}");
    let mut sum = i128::from(totals.available.kopecks()) + i128::from(totals.held.kopecks());
    for (account, balance) in &totals.system {
        assert_eq!(*balance, must("system balance", f.ledger.system_balance(*account).await), "{account:?}");
        sum += i128::from(balance.kopecks());
    }
    assert_eq!(sum, i128::from(report.total.kopecks()), "the totals add up to verify's total");
    let (mut available, mut held, mut active) = (0i64, 0i64, 0u64);
    for user in [ALICE, BOB, CAROL, DAN] {
        let b = must("balance", f.ledger.balance(user).await);
        available += b.available.kopecks();
        held += b.held.kopecks();
        active += u64::from(b.active_holds);
    }
    assert_eq!(
        (Money::from_kopecks(available), Money::from_kopecks(held), active),
        (totals.available, totals.held, totals.active_holds)
    );
}

fn windows(counts: [(u64, u64); 6]) -> WindowCounts {
    let mut w = WindowCounts::new();
    for (window, (good, total)) in Window::ALL.into_iter().zip(counts) {
        w.set(window, must("counts", Counts::new(good, total)));
    }
    w
}

async fn slo_windows_count_what_finished(f: &ReportFixture) {
    // Good/total of the shipped SLOs over every window ending at `now`, each [now - length, now).
    let r = &f.reports;
    // At 68: M5 from 63, M30 from 38, H1 from 8, the longer ones hold everything.
    let got = must("slo windows", r.slo_windows(m(68)).await);
    let want = SloWindows {
        job_success: windows([(0, 0), (1, 1), (2, 4), (3, 5), (3, 5), (3, 5)]),
        payment_success: windows([(0, 0), (1, 1), (2, 4), (5, 7), (5, 7), (5, 7)]),
        job_latency: windows([(0, 0), (1, 1), (1, 2), (2, 3), (2, 3), (2, 3)]),
    };
    assert_eq!(got, want);
    let alerts = got.alerts();
    let fired: Vec<(&str, Severity)> = alerts.iter().map(|a| (a.slo.as_str(), a.rule.severity())).collect();
    assert_eq!(
        fired,
        [("job_success", Severity::Ticket), ("payment_success", Severity::Ticket), ("job_latency", Severity::Ticket)],
        "the slow burn of the last days opens tickets; the quiet last 5 minutes page nobody"
    );
    // J8 succeeded at 62 and pa2 at 60: a window ending at 62 excludes J8, one ending a millisecond later holds it.
    let at_62 = must("slo windows", r.slo_windows(m(62)).await);
    assert_eq!(at_62.job_success.get(Window::M5), Counts::ZERO);
    assert_eq!(at_62.payment_success.get(Window::M5), must("counts", Counts::new(1, 1)));
    let after = must("slo windows", r.slo_windows(m_ms(62, 1)).await);
    assert_eq!(after.job_success.get(Window::M5), must("counts", Counts::new(1, 1)));
    assert_eq!(after.job_latency.get(Window::M5), must("counts", Counts::new(1, 1)));
    // J3 took exactly the target (180 s) and counts as good: the H1 window ending at 67 (from 7) holds it.
    let at_67 = must("slo windows", r.slo_windows(m(67)).await);
    assert_eq!(at_67.job_latency.get(Window::H1), must("counts", Counts::new(2, 3)));
    assert_eq!(must("slo windows", r.slo_windows(m(0)).await), SloWindows::default(), "nothing before 0");
}

async fn series_fill_every_bucket(f: &ReportFixture) {
    // One point per bucket from since, zero where nothing happened, the last bucket cut at until, at most 1,000.
    let r = &f.reports;
    let ten = 10 * MINUTE_MS;
    let revenue = must("series", r.series(Series::Revenue, m(0), m(63), Duration::from_secs(600)).await);
    assert_eq!(revenue, points(m(0), ten, &[3_000, 8_000, 0, 0, 0, 0, 10_000]));
    let half_hour = 30 * MINUTE_MS;
    let top_ups = must("series", r.series(Series::TopUps, m(0), m(61), Duration::from_secs(1_800)).await);
    assert_eq!(top_ups, points(m(0), half_hour, &[171_000, 0, 30_000]), "a cut last bucket");
    let total: i64 = top_ups.iter().map(|p| p.value).sum();
    assert_eq!(Money::from_kopecks(total), must("money", r.money(m(0), m(61)).await).top_ups);
    let hour = Duration::from_secs(3_600);
    let succeeded = must("series", r.series(Series::JobsSucceeded, m(0), m(120), hour).await);
    assert_eq!(succeeded, points(m(0), 60 * MINUTE_MS, &[2, 1]), "by finish time: J3, J1, then J8");
    let until_62 = must("series", r.series(Series::JobsSucceeded, m(0), m(62), hour).await);
    assert_eq!(until_62, points(m(0), 60 * MINUTE_MS, &[2, 0]), "J8 at 62 is out, until exclusive");
    let five = Duration::from_secs(300);
    let failed = must("series", r.series(Series::JobsFailed, m(0), m(20), five).await);
    assert_eq!(failed, points(m(0), 5 * MINUTE_MS, &[0, 0, 1, 1]), "J2 at 11, J9 at 15 (since of its bucket)");
    let shifted = must("series", r.series(Series::Revenue, m(7), m(11), Duration::from_secs(180)).await);
    assert_eq!(shifted, points(m(7), 3 * MINUTE_MS, &[3_000, 8_000]), "buckets start at since, not on the clock");

    let limit = Duration::from_secs(60);
    let most = i64::try_from(SERIES_POINTS_MAX).unwrap_or(i64::MAX);
    let thousand = must("series", r.series(Series::Revenue, m(0), m(most), limit).await);
    assert_eq!(thousand.len(), SERIES_POINTS_MAX);
    let mut want = zero_points(m(0), MINUTE_MS, most);
    for (i, value) in [(7, 3_000), (10, 8_000), (62, 10_000)] {
        want[i].value = value;
    }
    assert_eq!(thousand, want);
    let over = r.series(Series::Revenue, m(0), m_ms(most, 1), limit).await;
    assert!(matches!(over, Err(ReportError::Invalid(_))), "1,001 buckets: {over:?}");
    assert_eq!(must("series", r.series(Series::TopUps, m(5), m(5), limit).await), Vec::new(), "an empty range");
}

async fn bad_requests_are_refused(f: &ReportFixture) {
    // A reversed range, a zero bucket and a bucket of a fraction of a millisecond are refused, not answered.
    let r = &f.reports;
    let invalid = |what: &str, e: Option<ReportError>| {
        assert!(matches!(e, Some(ReportError::Invalid(_))), "{what}: {e:?}");
    };
    invalid("jobs", r.jobs(m(2), m(1)).await.err());
    invalid("money", r.money(m(2), m(1)).await.err());
    invalid("providers", r.providers(m(2), m(1)).await.err());
    invalid("series", r.series(Series::Revenue, m(2), m(1), Duration::from_secs(60)).await.err());
    invalid("zero bucket", r.series(Series::Revenue, m(0), m(1), Duration::ZERO).await.err());
    invalid("sub-ms bucket", r.series(Series::JobsFailed, m(0), m(1), Duration::from_micros(1_500)).await.err());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_history_is_written_in_time_order() {
        // Proves the helper times are what the history table says, so the figures above follow from it.
        assert_eq!(m(1).as_millis() - m(0).as_millis(), MINUTE_MS);
        assert_eq!(m_ms(2, 30_000).as_millis(), T0.as_millis() + 150_000);
        assert_eq!(T0.as_millis() % 3_600_000, 0, "T0 is on the hour");
    }
}
