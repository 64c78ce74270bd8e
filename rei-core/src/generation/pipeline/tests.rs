//! The pipeline on the in-memory stores with scripted providers: each outcome's ledger effect (exactly one
//! capture or one release), the job's final state and what the user is told.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use crate::billing::{BillingConfig, BillingService};
use crate::generation::{GenerationRequest, MessengerNotifier, RequestError, VideoMode};
use crate::ids::{HoldId, IdempotencyKey, PaymentId, ProductId, UserId};
use crate::jobs::{JobEvent, JobPorts, JobQueue, JobState, NewJob, Priority, QueueLimits, RetryPolicy, WorkerId};
use crate::ledger::LedgerStore;
use crate::money::Ratio;
use crate::pricing::{Pricer, PricingConfig};
use crate::routing::{BreakerView, Capability, Catalogue, Offer, RouterConfig};
use crate::testing::assets::MemoryAssetStore;
use crate::testing::billing::MemoryQuotes;
use crate::testing::clock::{ManualClock, SeqIds};
use crate::testing::generation::{ClockSleep, MemoryAttemptLog, RecordingMessenger, Scripted, ScriptedProvider};
use crate::testing::jobs::{MemoryJobQueue, MemoryJobStore};
use crate::testing::ledger::MemoryLedger;

const USER: UserId = UserId(7);
const START: Money = Money::from_kopecks(100_000);
const PRICE: Money = Money::from_kopecks(1_000);
const AFTER: Money = Money::from_kopecks(99_000);

struct Harness {
    clock: Arc<ManualClock>,
    billing: Arc<BillingService>,
    ledger: Arc<dyn LedgerStore>,
    jobs: Arc<JobService>,
    messenger: Arc<RecordingMessenger>,
    attempts: Arc<MemoryAttemptLog>,
    assets: Arc<MemoryAssetStore>,
    alpha: Arc<ScriptedProvider>,
    beta: Arc<ScriptedProvider>,
    pipeline: Pipeline,
    board: Arc<dyn crate::routing::ProviderBoard>,
    worker: WorkerId,
}

fn offer(provider: &str, capability: Capability, cost_kopecks: i64, quality: u8) -> Offer {
    let id = ProviderId::parse(provider).expect("id");
    Offer::new(
        id,
        &format!("{provider}-model"),
        capability,
        UnitPrice::from_money(Money::from_kopecks(cost_kopecks)),
        quality,
    )
    .expect("offer")
}

async fn harness(hold_ttl: Duration) -> Harness {
    harness_with(hold_ttl, BTreeMap::new()).await
}

async fn harness_with(hold_ttl: Duration, provider_concurrency: BTreeMap<ProviderId, usize>) -> Harness {
    let clock = Arc::new(ManualClock::new(Timestamp::from_millis(1_700_000_000_000)));
    let ledger: Arc<dyn LedgerStore> = Arc::new(MemoryLedger::new());
    let config = BillingConfig { hold_ttl, ..BillingConfig::default() };
    let billing = Arc::new(BillingService::new(
        ledger.clone(),
        Arc::new(MemoryQuotes::new()),
        clock.clone(),
        Arc::new(SeqIds::new(9)),
        Pricer::new(PricingConfig::example()),
        config,
    ));
    billing.top_up(USER, START, PaymentId::parse("pay-1").expect("id")).await.expect("top up");
    let messenger = RecordingMessenger::new();
    let limits = QueueLimits { capacity: 1_000, dead_letter_capacity: 1_000, aging_step: None };
    let queue: Arc<dyn JobQueue> = Arc::new(MemoryJobQueue::new(limits));
    let ports = JobPorts {
        store: Arc::new(MemoryJobStore::new()),
        queue,
        billing: billing.clone(),
        notifier: Arc::new(MessengerNotifier::new(messenger.clone())),
        clock: clock.clone(),
    };
    let retry = RetryPolicy::new(3, Duration::from_secs(1), Duration::from_secs(4), Ratio::ZERO).expect("retry");
    let jobs = Arc::new(JobService::new(ports, retry, Duration::from_secs(300)).expect("jobs"));
    // alpha is cheaper and ranks first; it cannot be queried (like Gemini). beta can (like Kling).
    let alpha = ScriptedProvider::new("alpha", false, Money::from_kopecks(300));
    let beta = ScriptedProvider::new("beta", true, Money::from_kopecks(400));
    let catalogue = Catalogue::new(vec![
        offer("alpha", Capability::TextToImage, 300, 80),
        offer("beta", Capability::TextToImage, 400, 80),
        offer("beta", Capability::TextToVideo, 90, 80),
    ])
    .expect("catalogue");
    let router = Router::new(catalogue, RouterConfig::default()).expect("router");
    let attempts = Arc::new(MemoryAttemptLog::new());
    let assets = Arc::new(MemoryAssetStore::new(clock.clone()));
    let board: Arc<dyn crate::routing::ProviderBoard> = Arc::new(crate::testing::board::MemoryBoard::new());
    let ports = PipelinePorts {
        jobs: jobs.clone(),
        billing: billing.clone(),
        router: Arc::new(Mutex::new(router)),
        providers: vec![alpha.clone(), beta.clone()],
        assets: assets.clone(),
        attempts: attempts.clone(),
        messenger: messenger.clone(),
        clock: clock.clone(),
        sleep: Arc::new(ClockSleep(clock.clone())),
        faults: Arc::new(NoFaults),
        board: Some(board.clone()),
    };
    let config = PipelineConfig {
        poll_interval: Duration::from_secs(10),
        attempt_timeout: Duration::from_secs(120),
        provider_concurrency,
        ..PipelineConfig::default()
    };
    let pipeline = Pipeline::new(ports, config);
    Harness {
        clock,
        billing,
        ledger,
        jobs,
        messenger,
        attempts,
        assets,
        alpha,
        beta,
        pipeline,
        board,
        worker: WorkerId::parse("w1").expect("name"),
    }
}

impl Harness {
    /// A confirmed, queued job of `request` at `price`, its money held.
    async fn submit(&self, id: u128, request: GenerationRequest, price: Money) -> JobId {
        let hold = HoldId::from(id);
        let key = IdempotencyKey::derived("hold", hold).expect("key");
        self.billing.hold(USER, hold, price, None, key).await.expect("hold");
        let spec = NewJob {
            id: JobId::from(id),
            user: USER,
            product: ProductId::parse("image.nano-banana").expect("id"),
            priority: Priority::Normal,
            price,
            hold,
            max_attempts: 3,
            request: Some(request),
        };
        let mut job = Job::new(spec, self.clock.now()).expect("job");
        job.apply(JobEvent::Confirm, self.clock.now()).expect("confirm");
        self.jobs.submit(job).await.expect("submit").id
    }

    /// Leases the next job (moving the clock past any retry delay) and runs it.
    async fn run_next(&self) -> RunOutcome {
        self.clock.advance(Duration::from_secs(5));
        let leased = self.jobs.lease(&self.worker).await.expect("lease").expect("a job is ready");
        self.pipeline.run(leased).await.expect("run")
    }

    async fn balance(&self) -> (Money, Money) {
        let b = self.billing.balance(USER).await.expect("balance");
        (b.available, b.held)
    }

    async fn verify_clean(&self) {
        let report = self.ledger.verify().await.expect("verify");
        assert!(report.is_clean(), "verify: {report:?}");
    }

    fn finals(&self, job: JobId) -> Vec<UserMessage> {
        self.messenger
            .about(job)
            .into_iter()
            .filter(|m| !matches!(m, UserMessage::Working { .. } | UserMessage::Progress { .. }))
            .collect()
    }
}

fn image(prompt: &str) -> GenerationRequest {
    GenerationRequest::text(Capability::TextToImage, prompt)
}

#[tokio::test]
async fn a_success_captures_once_stores_the_result_and_delivers_it() {
    // Proves the happy path: one capture of the price, the result in the asset store, and the user told twice
    // (working, delivered with the asset).
    let h = harness(Duration::from_secs(3_600)).await;
    let id = h.submit(1, image("a cat"), PRICE).await;
    let outcome = h.run_next().await;
    let RunOutcome::Succeeded { job, charged } = outcome else { panic!("{outcome:?}") };
    assert_eq!((job.state, charged), (JobState::Succeeded, PRICE));
    assert_eq!(h.balance().await, (AFTER, Money::ZERO));
    let key = job.result.clone().expect("result recorded");
    assert!(h.assets.get(&key).await.expect("get").is_some_and(|b| b.starts_with(b"\x89PNG")));
    assert_eq!(
        h.messenger.about(id),
        vec![
            UserMessage::Working { job: id },
            UserMessage::Delivered { job: id, asset: Some(key), kind: crate::generation::MediaKind::Image },
        ]
    );
    let records = h.attempts.for_job(id).await.expect("attempts");
    assert_eq!(records.len(), 1);
    assert_eq!(
        (records[0].outcome, records[0].cost, records[0].charged),
        (AttemptOutcome::Succeeded, Money::from_kopecks(300), PRICE)
    );
    h.verify_clean().await;
}

#[tokio::test]
async fn a_model_switched_off_is_not_offered_and_the_board_shows_what_the_router_saw() {
    // Proves the operators' switches reach the pipeline: with alpha's model off, the job goes to beta (dearer,
    // ranked second); with both off it fails and the money comes back; and after a run the board holds each
    // provider's breaker and recent outcomes as this worker's router saw them.
    let h = harness(Duration::from_secs(3_600)).await;
    let alpha = ProviderId::parse("alpha").expect("id");
    let beta = ProviderId::parse("beta").expect("id");
    h.board.set_model(&alpha, "alpha-model", false, h.clock.now()).await.expect("switch");
    h.submit(1, image("a cat"), PRICE).await;
    let RunOutcome::Succeeded { job, .. } = h.run_next().await else { panic!("beta runs it") };
    assert_eq!(job.provider, Some(beta.clone()));
    assert!(h.alpha.submits().is_empty(), "the switched-off model was never called");
    let statuses = h.board.statuses().await.expect("statuses");
    let names: Vec<&str> = statuses.iter().map(|s| s.provider.as_str()).collect();
    assert_eq!(names, ["alpha", "beta"]);
    let b = statuses.iter().find(|s| s.provider == beta).expect("beta");
    assert_eq!((b.breaker, b.successes, b.outcomes, b.reported_by.as_str()), (BreakerView::Closed, 1, 1, "w1"));
    assert!(b.latency_ewma_ms.is_some() && b.score.is_some());

    h.board.set_model(&beta, "beta-model", false, h.clock.now()).await.expect("switch");
    h.clock.advance(Duration::from_secs(3));
    let before = h.balance().await;
    h.submit(2, image("a dog"), PRICE).await;
    // No offer left: like every provider down, the job is retried, then given up with its money back.
    for _ in 0..2 {
        assert!(matches!(h.run_next().await, RunOutcome::Retrying { .. }));
    }
    let outcome = h.run_next().await;
    assert!(matches!(outcome, RunOutcome::Failed { .. }), "{outcome:?}");
    assert_eq!(h.balance().await, before, "the hold came back whole");
    h.verify_clean().await;
}

#[tokio::test]
async fn a_provider_failure_fails_over_to_the_next_provider() {
    // Proves a retryable failure on the first provider retries on the other one, and the job is charged once.
    let h = harness(Duration::from_secs(3_600)).await;
    h.alpha.push(Scripted::Fail(ProviderError::Retryable { reason: ErrorText::new("HTTP 503"), retry_after: None }));
    let id = h.submit(2, image("a dog"), PRICE).await;
    assert!(matches!(h.run_next().await, RunOutcome::Retrying { .. }));
    assert!(matches!(h.run_next().await, RunOutcome::Succeeded { .. }));
    assert_eq!((h.alpha.submits().len(), h.beta.submits().len()), (1, 1), "the retry went to the other provider");
    assert_eq!(h.balance().await, (AFTER, Money::ZERO));
    let outcomes: Vec<_> =
        h.attempts.for_job(id).await.expect("log").iter().map(|r| (r.provider.to_string(), r.outcome)).collect();
    assert_eq!(outcomes, vec![("alpha".into(), AttemptOutcome::Failed), ("beta".into(), AttemptOutcome::Succeeded)]);
    h.verify_clean().await;
}

#[tokio::test]
async fn a_content_block_gives_the_money_back_at_once() {
    // Proves a refusal is the user's: no retry, no failover, the hold released, and the user told why.
    let h = harness(Duration::from_secs(3_600)).await;
    h.alpha.push(Scripted::Fail(ProviderError::Rejected { reason: ErrorText::new("content blocked") }));
    let id = h.submit(3, image("forbidden"), PRICE).await;
    let outcome = h.run_next().await;
    assert!(matches!(&outcome, RunOutcome::Failed { job } if job.state == JobState::Failed), "{outcome:?}");
    assert_eq!(h.balance().await, (START, Money::ZERO));
    assert_eq!(h.beta.submits().len(), 0, "no failover after a refusal");
    assert!(
        matches!(&h.finals(id)[..], [UserMessage::Failed { reason, .. }] if reason.as_str().contains("content blocked"))
    );
    h.verify_clean().await;
}

#[tokio::test]
async fn every_attempt_failing_releases_the_hold_and_says_so() {
    // Proves the last attempt's failure releases the money and tells the user once.
    let h = harness(Duration::from_secs(3_600)).await;
    let down = || Scripted::Fail(ProviderError::Unavailable { reason: ErrorText::new("out of balance") });
    for _ in 0..3 {
        h.alpha.push(down());
        h.beta.push(down());
    }
    let id = h.submit(4, image("x"), PRICE).await;
    assert!(matches!(h.run_next().await, RunOutcome::Retrying { .. }));
    assert!(matches!(h.run_next().await, RunOutcome::Retrying { .. }));
    assert!(matches!(h.run_next().await, RunOutcome::Failed { .. }));
    assert_eq!(h.balance().await, (START, Money::ZERO));
    assert_eq!(h.finals(id).len(), 1, "{:?}", h.finals(id));
    h.verify_clean().await;
}

#[tokio::test]
async fn a_timeout_is_asked_about_before_anything_else() {
    // Proves a lost answer from a provider that can be asked is settled by asking: done means charged on the
    // same attempt, with no second submit anywhere.
    let h = harness(Duration::from_secs(3_600)).await;
    let video = GenerationRequest {
        duration_s: Some(5),
        mode: Some(VideoMode::Std),
        ..GenerationRequest::text(Capability::TextToVideo, "waves")
    };
    h.beta.push(Scripted::TimeoutButDone);
    let id = h.submit(5, video, PRICE).await;
    assert!(matches!(h.run_next().await, RunOutcome::Succeeded { .. }));
    assert_eq!(h.beta.submits().len(), 1);
    assert_eq!(h.attempts.for_job(id).await.expect("log").len(), 1);
    // 5.1 s produced of 5 s asked: charged for the 5 s confirmed, never more.
    assert_eq!(h.balance().await, (AFTER, Money::ZERO));
    h.verify_clean().await;
}

#[tokio::test]
async fn a_timeout_on_a_provider_that_cannot_be_asked_retries_elsewhere() {
    // Proves a synchronous provider's lost answer ends that attempt and the job goes on elsewhere, charged once.
    let h = harness(Duration::from_secs(3_600)).await;
    h.alpha.push(Scripted::TimeoutNotReceived);
    h.submit(6, image("y"), PRICE).await;
    assert!(matches!(h.run_next().await, RunOutcome::Retrying { .. }));
    assert!(matches!(h.run_next().await, RunOutcome::Succeeded { .. }));
    assert_eq!(h.balance().await, (AFTER, Money::ZERO));
    h.verify_clean().await;
}

#[tokio::test]
async fn no_result_in_time_is_unknown_and_holds_the_money_until_asked() {
    // Proves an attempt past its time becomes Unknown with the money still held, and is settled by asking the
    // provider later: still running leaves it, done charges it.
    let h = harness(Duration::from_secs(3_600)).await;
    let video = GenerationRequest { duration_s: Some(5), ..GenerationRequest::text(Capability::TextToVideo, "slow") };
    h.beta.push(Scripted::DoneAfterPolls(30));
    let id = h.submit(7, video, PRICE).await;
    let outcome = h.run_next().await;
    let RunOutcome::Unknown { job } = outcome else { panic!("{outcome:?}") };
    assert_eq!(h.balance().await, (AFTER, PRICE), "money stays held while the outcome is unknown");
    // The provider still works on it for a while: nothing moves.
    assert_eq!(h.pipeline.resolve(&job).await.expect("resolve"), None);
    for _ in 0..30 {
        let _ = h.pipeline.resolve(&h.jobs.get(id).await.expect("get").expect("job")).await.expect("resolve");
    }
    let done = h.jobs.get(id).await.expect("get").expect("job");
    assert_eq!(done.state, JobState::Succeeded);
    assert_eq!(h.balance().await, (AFTER, Money::ZERO));
    h.verify_clean().await;
}

#[tokio::test]
async fn a_result_after_the_hold_ended_is_recorded_never_charged() {
    // Proves the late result: the hold lapsed while the provider worked, so the capture charges nothing, the
    // job fails with the money back, and the attempt is recorded as a late result.
    let h = harness(Duration::from_secs(30)).await;
    let video = GenerationRequest { duration_s: Some(5), ..GenerationRequest::text(Capability::TextToVideo, "late") };
    h.beta.push(Scripted::DoneAfterPolls(5));
    let id = h.submit(8, video, PRICE).await;
    let outcome = h.run_next().await;
    assert!(matches!(outcome, RunOutcome::LateResult { .. }), "{outcome:?}");
    assert_eq!(h.balance().await, (START, Money::ZERO));
    let records = h.attempts.for_job(id).await.expect("log");
    assert_eq!(records.last().map(|r| (r.outcome, r.charged)), Some((AttemptOutcome::LateResult, Money::ZERO)));
    assert!(matches!(&h.finals(id)[..], [UserMessage::Failed { .. }]), "{:?}", h.finals(id));
    h.verify_clean().await;
}

#[tokio::test]
async fn a_job_never_runs_on_a_provider_dearer_than_its_price() {
    // Proves failover only to offers whose cost fits what the user confirmed: with only dearer offers the job
    // waits and finally fails with the money back, never running at a loss.
    let h = harness(Duration::from_secs(3_600)).await;
    let id = h.submit(9, image("cheap"), Money::from_kopecks(250)).await;
    for _ in 0..3 {
        let outcome = h.run_next().await;
        assert!(matches!(outcome, RunOutcome::Retrying { .. } | RunOutcome::Failed { .. }), "{outcome:?}");
    }
    assert!(h.alpha.submits().is_empty() && h.beta.submits().is_empty());
    assert_eq!(h.balance().await, (START, Money::ZERO));
    assert_eq!(h.jobs.get(id).await.expect("get").map(|j| j.state), Some(JobState::Failed));
}

#[tokio::test]
async fn a_provider_at_its_limit_is_waited_for_without_spending_an_attempt() {
    // Proves the per-provider concurrency limit: with room for one video at a time on the only video provider,
    // the second job waits for the slot and runs on its first attempt; both are charged once.
    let limit = BTreeMap::from([(ProviderId::parse("beta").expect("id"), 1)]);
    let h = harness_with(Duration::from_secs(3_600), limit).await;
    let video = || GenerationRequest { duration_s: Some(5), ..GenerationRequest::text(Capability::TextToVideo, "v") };
    h.beta.push(Scripted::DoneAfterPolls(3));
    h.beta.push(Scripted::DoneAfterPolls(3));
    h.submit(20, video(), PRICE).await;
    h.submit(21, video(), PRICE).await;
    let first = h.jobs.lease(&h.worker).await.expect("lease").expect("job");
    let second = h.jobs.lease(&h.worker).await.expect("lease").expect("job");
    let (a, b) = tokio::join!(h.pipeline.run(first), h.pipeline.run(second));
    for outcome in [a.expect("run"), b.expect("run")] {
        let RunOutcome::Succeeded { job, .. } = outcome else { panic!("{outcome:?}") };
        assert_eq!(job.attempts, 1, "waiting for the slot spent no attempt");
    }
    assert_eq!(h.beta.submits().len(), 2);
    assert_eq!(h.balance().await, (Money::from_kopecks(98_000), Money::ZERO));
    h.verify_clean().await;
}

#[test]
fn video_is_charged_per_second_produced_never_above_the_price() {
    // Proves the per-second charge: whole seconds produced (rounded up) at the quote's rate, capped at the price.
    let spec = NewJob {
        id: JobId::from(1),
        user: USER,
        product: ProductId::parse("video.kling").expect("id"),
        priority: Priority::Normal,
        price: Money::from_kopecks(2_000),
        hold: HoldId::from(1),
        max_attempts: 1,
        request: None,
    };
    let job = Job::new(spec, Timestamp::EPOCH).expect("job");
    let request = GenerationRequest { duration_s: Some(10), ..GenerationRequest::text(Capability::TextToVideo, "v") };
    let out = |ms| Output {
        media: OutputMedia::Inline(crate::generation::Media { mime: "video/mp4".into(), bytes: vec![1] }),
        cost: Money::ZERO,
        duration_ms: ms,
        provider_ref: None,
    };
    assert_eq!(charge_for(&job, &request, &out(Some(4_600))), Money::from_kopecks(1_000));
    assert_eq!(charge_for(&job, &request, &out(Some(10_100))), Money::from_kopecks(2_000));
    assert_eq!(charge_for(&job, &request, &out(None)), Money::from_kopecks(2_000));
    let image = GenerationRequest::text(Capability::TextToImage, "i");
    assert_eq!(charge_for(&job, &image, &out(Some(1))), Money::from_kopecks(2_000));
    assert!(matches!(GenerationRequest::text(Capability::TextToImage, "").validate(), Err(RequestError::Prompt)));
}
