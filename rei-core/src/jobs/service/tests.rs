//! Scenarios of [`JobService`] on the in-memory adapters, driven step by step with a manual clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use super::*;
use crate::ids::{HoldId, ProductId, UserId};
use crate::jobs::{NewJob, Priority};
use crate::money::{Money, Ratio};
use crate::testing::jobs::{
    BillingMove, MemoryJobQueue, MemoryJobStore, QueueSpec, RecordingBilling, RecordingNotifier,
};

/// A clock that only moves when told to.
struct ManualClock(AtomicI64);

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_millis(self.0.load(Ordering::SeqCst))
    }
}

impl ManualClock {
    fn advance(&self, d: Duration) {
        let ms = i64::try_from(d.as_millis()).expect("small duration");
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

const LEASE: Duration = Duration::from_secs(30);
const BASE: Duration = Duration::from_secs(1);

struct Harness {
    service: JobService,
    store: Arc<MemoryJobStore>,
    queue: Arc<MemoryJobQueue>,
    billing: Arc<RecordingBilling>,
    notifier: Arc<RecordingNotifier>,
    clock: Arc<ManualClock>,
    worker: WorkerId,
}

fn queue() -> Arc<MemoryJobQueue> {
    Arc::new(MemoryJobQueue::new(QueueSpec { capacity: 64, dead_letter_capacity: 64, aging_step: None }))
}

fn harness_on(store: Arc<MemoryJobStore>, queue: Arc<MemoryJobQueue>) -> Harness {
    let billing = Arc::new(RecordingBilling::new());
    let notifier = Arc::new(RecordingNotifier::new());
    let clock = Arc::new(ManualClock(AtomicI64::new(1_000_000)));
    let ports = JobPorts {
        store: store.clone(),
        queue: queue.clone(),
        billing: billing.clone(),
        notifier: notifier.clone(),
        clock: clock.clone(),
    };
    // No jitter, so retry times are exact in assertions.
    let retry = RetryPolicy::new(3, BASE, Duration::from_secs(60), Ratio::ZERO).expect("valid policy");
    let service = JobService::new(ports, retry, LEASE).expect("valid lease");
    Harness { service, store, queue, billing, notifier, clock, worker: WorkerId::parse("w1").expect("literal") }
}

fn harness() -> Harness {
    harness_on(Arc::new(MemoryJobStore::new()), queue())
}

impl Harness {
    fn confirmed(&self, id: u128) -> Job {
        let spec = NewJob {
            id: JobId::from(id),
            user: UserId(42),
            product: ProductId::parse("image.nano-banana").expect("literal"),
            priority: Priority::Normal,
            price: Money::from_kopecks(1_500),
            hold: HoldId::from(id + 100),
            max_attempts: 5,
            request: None,
        };
        let mut job = Job::new(spec, self.clock.now()).expect("valid job");
        job.apply(JobEvent::Confirm, self.clock.now()).expect("quoted -> confirmed");
        job
    }

    async fn submitted_and_leased(&self, id: u128) -> LeasedJob {
        self.service.submit(self.confirmed(id)).await.expect("submit");
        self.service.lease(&self.worker).await.expect("lease").expect("a job is ready")
    }

    fn capture(&self, id: u128) -> BillingMove {
        BillingMove::Capture { hold: HoldId::from(id + 100), amount: Money::from_kopecks(1_500) }
    }

    fn release(&self, id: u128) -> BillingMove {
        BillingMove::Release { hold: HoldId::from(id + 100) }
    }

    fn notices(&self) -> Vec<JobNotice> {
        self.notifier.notices().into_iter().map(|(_, n)| n).collect()
    }

    async fn stored(&self, id: u128) -> Job {
        self.store.get(JobId::from(id)).await.expect("get").expect("stored")
    }
}

fn provider() -> ProviderId {
    ProviderId::parse("gemini").expect("literal")
}

#[tokio::test]
async fn submit_is_idempotent_and_refuses_unconfirmed_jobs() {
    // Proves a repeated submit stores and dispatches the job once, and a quote without a hold is refused.
    let h = harness();
    let job = h.confirmed(1);
    let first = h.service.submit(job.clone()).await.expect("submit");
    let again = h.service.submit(job).await.expect("repeated submit");
    assert_eq!((first.state, &first), (JobState::Queued, &again));
    assert_eq!(h.queue.len_by_priority().await.expect("lengths").waiting(Priority::Normal), 1);
    let mut quoted = h.confirmed(2);
    quoted.state = JobState::Quoted;
    assert!(matches!(h.service.submit(quoted).await, Err(JobError::Transition { .. })));
}

#[tokio::test]
async fn success_captures_once_even_when_complete_is_called_twice() {
    // Proves a replayed complete, and a complete after a capture that was never recorded as done, take the
    // money exactly once and tell the user once.
    let h = harness();
    let leased = h.submitted_and_leased(1).await;
    assert_eq!((leased.job.state, leased.job.attempts), (JobState::Running, 1));
    assert_eq!(leased.job.lease_deadline, Some(h.clock.now().plus(LEASE)));
    let done = h.service.complete(&leased, provider()).await.expect("complete");
    let replay = h.service.complete(&leased, provider()).await.expect("replayed complete");
    assert_eq!((done.state, done.provider.clone()), (JobState::Succeeded, Some(provider())));
    assert_eq!(replay, done);
    assert_eq!(h.billing.moves(), vec![h.capture(1)]);
    assert_eq!(h.notices(), vec![JobNotice::Succeeded { job: JobId::from(1), result: None }]);
    assert!(!h.queue.contains(JobId::from(1)).await.expect("contains"), "the ticket is acked");

    // A crash between the capture and the state change: the replay's capture hits the same key.
    let leased = h.submitted_and_leased(2).await;
    let key = IdempotencyKey::derived("capture", JobId::from(2)).expect("test key");
    h.billing.capture(HoldId::from(102), Money::from_kopecks(1_500), &key).await.expect("first capture");
    h.service.complete(&leased, provider()).await.expect("complete after crash");
    assert_eq!(h.billing.moves(), vec![h.capture(1), h.capture(2)]);
}

#[tokio::test]
async fn retry_waits_for_backoff_then_succeeds() {
    // Proves a retryable failure requeues the job after its backoff, and the next attempt succeeds and
    // captures once with no release.
    let h = harness();
    let leased = h.submitted_and_leased(1).await;
    let outcome = h.service.fail(&leased, ErrorText::new("503"), true).await.expect("fail");
    let FailOutcome::Retrying { job } = outcome else { panic!("expected a retry, got {outcome:?}") };
    assert_eq!((job.state, job.not_before), (JobState::Queued, h.clock.now().plus(BASE)));
    assert!(h.service.lease(&h.worker).await.expect("lease").is_none(), "backoff is honoured");
    h.clock.advance(BASE);
    let second = h.service.lease(&h.worker).await.expect("lease").expect("retry is due");
    assert_eq!(second.job.attempts, 2);
    assert!(matches!(h.service.complete(&leased, provider()).await, Err(JobError::LeaseLost { attempt: 1, .. })));
    h.service.complete(&second, provider()).await.expect("complete");
    assert_eq!(h.billing.moves(), vec![h.capture(1)]);
}

#[tokio::test]
async fn last_attempt_failure_releases_once_dead_letters_and_notifies() {
    // Proves that when retries run out the hold is released once (even on replay), the ticket is
    // dead-lettered and the user is told once.
    let h = harness();
    h.service.submit(h.confirmed(1)).await.expect("submit");
    let mut last = None;
    for attempt in 1..=3 {
        let leased = h.service.lease(&h.worker).await.expect("lease").expect("due");
        assert_eq!(leased.job.attempts, attempt);
        last = Some(h.service.fail(&leased, ErrorText::new("timeout"), true).await.expect("fail"));
        h.clock.advance(Duration::from_secs(60));
        if attempt == 3 {
            let replay = h.service.fail(&leased, ErrorText::new("timeout"), true).await.expect("replayed fail");
            assert!(matches!(replay, FailOutcome::GaveUp { .. }));
        }
    }
    let Some(FailOutcome::GaveUp { job, dead_lettered }) = last else { panic!("expected to give up: {last:?}") };
    assert_eq!((job.state, dead_lettered), (JobState::Failed, true));
    assert_eq!(h.billing.moves(), vec![h.release(1)]);
    assert_eq!(h.notices(), vec![JobNotice::DeadLettered { job: JobId::from(1) }]);
    let dead = h.queue.dead_letters(10).await.expect("dead letters");
    assert_eq!(dead.iter().map(|d| d.ticket.job).collect::<Vec<_>>(), vec![JobId::from(1)]);
}

#[tokio::test]
async fn a_final_error_fails_at_once() {
    // Proves a non-retryable error fails the job on its first attempt and reports the reason.
    let h = harness();
    let leased = h.submitted_and_leased(1).await;
    let reason = ErrorText::new("prompt refused by provider");
    let outcome = h.service.fail(&leased, reason.clone(), false).await.expect("fail");
    assert!(matches!(outcome, FailOutcome::GaveUp { dead_lettered: true, .. }));
    assert_eq!(h.notices(), vec![JobNotice::Failed { job: JobId::from(1), reason }]);
    assert_eq!(h.billing.moves(), vec![h.release(1)]);
}

#[tokio::test]
async fn cancel_releases_the_hold_once_and_only_before_running() {
    // Proves a queued job cancels with one release and one notice, its stale ticket is skipped, and a
    // running job cannot be cancelled.
    let h = harness();
    h.service.submit(h.confirmed(1)).await.expect("submit");
    let cancelled = h.service.cancel(JobId::from(1)).await.expect("cancel");
    h.service.cancel(JobId::from(1)).await.expect("replayed cancel");
    assert_eq!(cancelled.state, JobState::Cancelled);
    assert_eq!(h.billing.moves(), vec![h.release(1)]);
    assert_eq!(h.notices(), vec![JobNotice::Cancelled { job: JobId::from(1) }]);
    assert!(h.service.lease(&h.worker).await.expect("lease").is_none(), "the stale ticket is skipped");
    assert!(!h.queue.contains(JobId::from(1)).await.expect("contains"));

    let leased = h.submitted_and_leased(2).await;
    let refused = h.service.cancel(leased.job.id).await;
    assert!(matches!(refused, Err(JobError::NotCancellable { state: JobState::Running, .. })), "{refused:?}");
    assert!(matches!(h.service.cancel(JobId::from(9)).await, Err(JobError::NotFound { .. })));
}

#[tokio::test]
async fn unknown_outcome_moves_no_money_until_resolved() {
    // Proves a timed-out provider call touches no money until resolution, and each resolution then moves
    // the right money once.
    let h = harness();
    let leased = h.submitted_and_leased(1).await;
    let unknown = h.service.mark_unknown(&leased, ErrorText::new("poll timed out")).await.expect("mark unknown");
    assert_eq!(unknown.state, JobState::Unknown);
    h.clock.advance(LEASE * 2);
    h.service.recover_expired_leases(10).await.expect("recover");
    assert!(h.service.lease(&h.worker).await.expect("lease").is_none());
    assert!(matches!(h.service.cancel(JobId::from(1)).await, Err(JobError::NotCancellable { .. })));
    assert_eq!(h.billing.calls(), 0, "no billing call while the outcome is unknown");

    let resolved = Resolution::Succeeded { provider: provider(), result: None, amount: None };
    let done = h.service.resolve_unknown(JobId::from(1), resolved.clone()).await.expect("resolve");
    h.service.resolve_unknown(JobId::from(1), resolved).await.expect("replayed resolve");
    assert_eq!(done.state, JobState::Succeeded);
    assert_eq!(h.billing.moves(), vec![h.capture(1)]);

    // Not done: the job goes back for another attempt, and no money moves.
    let leased = h.submitted_and_leased(2).await;
    h.service.mark_unknown(&leased, ErrorText::new("timeout")).await.expect("mark unknown");
    let requeued = h.service.resolve_unknown(JobId::from(2), Resolution::NotDone).await.expect("resolve");
    assert_eq!(requeued.state, JobState::Queued);
    h.clock.advance(BASE);
    let again = h.service.lease(&h.worker).await.expect("lease").expect("requeued job is due");
    assert_eq!((again.job.id, again.job.attempts), (JobId::from(2), 2));
    assert_eq!(h.billing.moves(), vec![h.capture(1)]);

    // Failed: released once.
    h.service.mark_unknown(&again, ErrorText::new("timeout")).await.expect("mark unknown");
    let failed = Resolution::Failed { reason: ErrorText::new("provider error") };
    h.service.resolve_unknown(JobId::from(2), failed).await.expect("resolve");
    assert_eq!(h.billing.moves(), vec![h.capture(1), h.release(2)]);
}

#[tokio::test]
async fn a_retry_after_unknown_puts_a_ticket_back() {
    // Proves a worker that learns its unknown attempt failed can retry it even though its queue lease is gone.
    let h = harness();
    let leased = h.submitted_and_leased(1).await;
    h.service.mark_unknown(&leased, ErrorText::new("timeout")).await.expect("mark unknown");
    let outcome = h.service.fail(&leased, ErrorText::new("provider said no result"), true).await.expect("fail");
    assert!(matches!(outcome, FailOutcome::Retrying { .. }), "{outcome:?}");
    assert!(h.queue.contains(JobId::from(1)).await.expect("contains"), "the ticket is back");
    h.clock.advance(BASE);
    let again = h.service.lease(&h.worker).await.expect("lease").expect("retry is due");
    assert_eq!(again.job.attempts, 2);
    assert_eq!(h.billing.calls(), 0);
}

#[tokio::test]
async fn expired_lease_is_recovered_by_the_dispatch_rule() {
    // Proves a vanished worker's job is retried when it never reached a provider, becomes Unknown when it
    // may have, and the stale worker can no longer move it.
    let h = harness();
    let stale = h.submitted_and_leased(1).await;
    let beat = h.service.heartbeat(&stale).await.expect("heartbeat");
    assert_eq!(beat.job.lease_deadline, Some(h.clock.now().plus(LEASE)));
    h.clock.advance(LEASE + Duration::from_secs(1));
    let report = h.service.recover_expired_leases(10).await.expect("recover");
    assert_eq!((report.reclaimed_tickets, report.requeued), (1, 1));
    assert!(matches!(h.service.heartbeat(&beat).await, Err(JobError::LeaseLost { .. })));
    h.clock.advance(BASE);
    let other = WorkerId::parse("w2").expect("literal");
    let fresh = h.service.lease(&other).await.expect("lease").expect("requeued job is due");
    assert_eq!(fresh.job.attempts, 2);
    assert!(matches!(h.service.complete(&beat, provider()).await, Err(JobError::LeaseLost { .. })));

    // Dispatched before the worker vanished: the outcome is unknown and no money moves.
    let fresh = h.service.record_dispatch(&fresh, provider()).await.expect("record dispatch");
    h.clock.advance(LEASE + Duration::from_secs(1));
    let report = h.service.recover_expired_leases(10).await.expect("recover");
    assert_eq!(report.unknown, 1);
    assert_eq!(h.stored(1).await.state, JobState::Unknown);
    assert!(matches!(h.service.fail(&fresh, ErrorText::new("late"), false).await, Ok(FailOutcome::GaveUp { .. })));
    assert_eq!(h.billing.moves(), vec![h.release(1)], "the surviving worker's own verdict still settles it");
}

#[tokio::test]
async fn reconcile_queue_restores_a_wiped_queue() {
    // Proves the queue can be rebuilt from the store: every Queued job comes back once, across pages.
    let store = Arc::new(MemoryJobStore::new());
    let before = harness_on(store.clone(), queue());
    for id in 1..=5 {
        before.service.submit(before.confirmed(id)).await.expect("submit");
    }
    before.service.cancel(JobId::from(3)).await.expect("cancel");
    let after = harness_on(store, queue());
    let report = after.service.reconcile_queue(2).await.expect("reconcile");
    assert_eq!((report.examined, report.enqueued), (4, 4));
    let again = after.service.reconcile_queue(2).await.expect("reconcile again");
    assert_eq!(again.enqueued, 0, "a second pass changes nothing");
    let mut leased = Vec::new();
    while let Some(job) = after.service.lease(&after.worker).await.expect("lease") {
        leased.push(job.job.id.as_u128());
    }
    assert_eq!(leased, vec![1, 2, 4, 5]);
}

#[tokio::test]
async fn service_refuses_unbounded_leases() {
    // Proves the lease duration is bounded at construction.
    let h = harness();
    let retry = RetryPolicy::new(3, BASE, BASE, Ratio::ZERO).expect("valid policy");
    let ports = h.service.ports.clone();
    assert!(JobService::new(ports.clone(), retry, Duration::ZERO).is_err());
    assert!(JobService::new(ports, retry, LEASE_MAX * 2).is_err());
}

#[tokio::test]
async fn a_crash_after_the_capture_ends_the_job_succeeded() {
    // Proves that when the job store fails right after the capture committed, recovery reads the ledger and
    // ends the job Succeeded, charging once and telling the user once.
    let h = harness();
    let leased = h.submitted_and_leased(1).await;
    let leased = h.service.record_dispatch(&leased, provider()).await.expect("dispatch");
    h.store.fail_next_update_to(JobState::Succeeded);
    let crashed = h.service.complete(&leased, provider()).await;
    assert!(matches!(crashed, Err(JobError::Store(JobStoreError::Unavailable { .. }))), "{crashed:?}");
    assert_eq!(h.stored(1).await.state, JobState::Running, "the store missed the success");
    h.clock.advance(LEASE + BASE);
    let report = h.service.recover_expired_leases(10).await.expect("recover");
    assert_eq!((report.settled, report.unknown), (1, 0), "{report:?}");
    let job = h.stored(1).await;
    assert_eq!((job.state, job.provider.clone()), (JobState::Succeeded, Some(provider())));
    assert_eq!(h.billing.moves(), vec![h.capture(1)], "charged once, nothing released");
    assert_eq!(h.notices(), vec![JobNotice::Succeeded { job: JobId::from(1), result: None }]);
}

#[tokio::test]
async fn a_crash_after_the_release_ends_the_job_failed() {
    // Proves that when the job store fails right after a final failure released the hold, recovery ends the
    // job Failed with the money back, and a slow success afterwards cannot charge it.
    let h = harness();
    let leased = h.submitted_and_leased(1).await;
    h.store.fail_next_update_to(JobState::Failed);
    let crashed = h.service.fail(&leased, ErrorText::new("bad prompt"), false).await;
    assert!(matches!(crashed, Err(JobError::Store(JobStoreError::Unavailable { .. }))), "{crashed:?}");
    assert_eq!(h.stored(1).await.state, JobState::Running);
    let late = h.service.complete(&leased, provider()).await.expect("a late complete settles");
    assert_eq!(late.state, JobState::Failed, "the money went back first, so the job failed");
    assert_eq!(h.billing.moves(), vec![h.release(1)], "the late success charged nothing");
    h.clock.advance(LEASE + BASE);
    let report = h.service.recover_expired_leases(10).await.expect("recover");
    assert_eq!(report.settled, 0, "nothing is left to settle: {report:?}");
    assert_eq!(h.stored(1).await.state, JobState::Failed);
}

#[tokio::test]
async fn a_job_whose_outcome_stays_unknown_fails_once_its_hold_expires() {
    // Proves an Unknown job does not stay Unknown forever: once the reaper expired its hold, recovery ends
    // it Failed with the money back, and a late resolution cannot charge it.
    let h = harness();
    let leased = h.submitted_and_leased(1).await;
    h.service.mark_unknown(&leased, ErrorText::new("timeout")).await.expect("unknown");
    let report = h.service.recover_expired_leases(10).await.expect("recover");
    assert_eq!(report.settled, 0, "the hold is still active: wait for the provider's answer");
    assert_eq!(h.stored(1).await.state, JobState::Unknown);
    h.billing.expire(HoldId::from(101));
    let report = h.service.recover_expired_leases(10).await.expect("recover");
    assert_eq!(report.settled, 1);
    assert_eq!(h.stored(1).await.state, JobState::Failed);
    let late = h
        .service
        .resolve_unknown(JobId::from(1), Resolution::Succeeded { provider: provider(), result: None, amount: None })
        .await;
    assert!(matches!(late, Err(JobError::Transition { .. })), "{late:?}");
    assert_eq!(h.billing.moves(), vec![BillingMove::Expire { hold: HoldId::from(101) }], "never charged");
}

#[tokio::test]
async fn a_capture_after_the_hold_lapsed_fails_the_job_without_charging() {
    // Proves a success reported after the hold expired ends the job Failed and charges nothing.
    let h = harness();
    let leased = h.submitted_and_leased(1).await;
    h.billing.expire(HoldId::from(101));
    let job = h.service.complete(&leased, provider()).await.expect("complete settles");
    assert_eq!(job.state, JobState::Failed);
    assert!(matches!(h.notices().as_slice(), [JobNotice::Failed { .. }]), "{:?}", h.notices());
    assert!(!h.queue.contains(JobId::from(1)).await.expect("contains"), "the ticket is acked");
}
