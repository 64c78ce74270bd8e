//! In-memory job store, queue, billing and notifier, and the conformance suites every [`JobStore`] and
//! [`JobQueue`] implementation must pass.
//!
//! The suites panic on the first broken contract, naming it; they take a factory so that each check starts
//! from an empty adapter.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;

use crate::generation::{AspectRatio, AssetKey, GenerationRequest};
use crate::ids::{HoldId, IdempotencyKey, JobId, ProductId, UserId};
use crate::jobs::{
    AckedAndTaken, DeadLetter, Enqueued, ErrorText, Job, JobBilling, JobBillingError, JobNotice, JobNotifier,
    JobNotifyError, JobQueue, JobQueueError, JobState, JobStore, JobStoreError, JobTicket, LIST_LIMIT_MAX, Lease,
    NewJob, Priority, QueueLengths, Settlement, WorkerId,
};
use crate::money::Money;
use crate::routing::Capability;
use crate::time::Timestamp;

/// Locks a mutex, taking the data even if another thread panicked while holding it: the fakes hold plain
/// collections that a panic cannot leave half-written in a way the tests care about.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A [`JobStore`] in a map.
#[derive(Default)]
pub struct MemoryJobStore {
    jobs: Mutex<BTreeMap<JobId, Job>>,
    fail_next_update_to: Mutex<Option<JobState>>,
}

impl MemoryJobStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> MemoryJobStore {
        MemoryJobStore::default()
    }

    /// Makes the next update that would store a job in `state` fail as unavailable, storing nothing: a crash
    /// between the ledger and the job store.
    pub fn fail_next_update_to(&self, state: JobState) {
        *lock(&self.fail_next_update_to) = Some(state);
    }
}

#[async_trait]
impl JobStore for MemoryJobStore {
    async fn insert(&self, job: &Job) -> Result<Job, JobStoreError> {
        Ok(lock(&self.jobs).entry(job.id).or_insert_with(|| job.clone()).clone())
    }

    async fn get(&self, id: JobId) -> Result<Option<Job>, JobStoreError> {
        Ok(lock(&self.jobs).get(&id).cloned())
    }

    async fn update(&self, job: &Job, expected: JobState) -> Result<(), JobStoreError> {
        {
            let mut failing = lock(&self.fail_next_update_to);
            if *failing == Some(job.state) {
                *failing = None;
                return Err(JobStoreError::Unavailable {
                    reason: format!("injected crash before storing {}", job.state),
                });
            }
        }
        let mut jobs = lock(&self.jobs);
        let stored = jobs.get_mut(&job.id).ok_or(JobStoreError::NotFound { id: job.id })?;
        let fenced = matches!(expected, JobState::Running | JobState::Unknown);
        if stored.state != expected || (fenced && stored.attempts != job.attempts) {
            return Err(JobStoreError::Conflict {
                id: job.id,
                expected,
                actual: stored.state,
                actual_attempts: stored.attempts,
            });
        }
        let request = stored.request.take();
        *stored = job.clone();
        stored.request = request;
        Ok(())
    }

    async fn list_by_state(
        &self,
        state: JobState,
        after: Option<JobId>,
        limit: usize,
    ) -> Result<Vec<Job>, JobStoreError> {
        let jobs = lock(&self.jobs);
        let from = after.map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded);
        let page = jobs.range((from, std::ops::Bound::Unbounded)).map(|(_, j)| j).filter(|j| j.state == state);
        Ok(page.take(limit.min(LIST_LIMIT_MAX)).cloned().collect())
    }

    async fn list_for_user(
        &self,
        user: UserId,
        before: Option<JobId>,
        limit: usize,
    ) -> Result<Vec<Job>, JobStoreError> {
        let jobs = lock(&self.jobs);
        let to = before.map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded);
        let page = jobs.range((std::ops::Bound::Unbounded, to)).rev().map(|(_, j)| j).filter(|j| j.user == user);
        Ok(page.take(limit.min(LIST_LIMIT_MAX)).cloned().collect())
    }

    async fn expired_leases(&self, now: Timestamp, limit: usize) -> Result<Vec<Job>, JobStoreError> {
        let jobs = lock(&self.jobs);
        let mut expired: Vec<Job> = jobs
            .values()
            .filter(|j| j.state == JobState::Running && j.lease_deadline.is_some_and(|d| d < now))
            .cloned()
            .collect();
        expired.sort_by_key(|j| (j.lease_deadline, j.id));
        expired.truncate(limit.min(LIST_LIMIT_MAX));
        Ok(expired)
    }
}

/// The in-memory queue's limits are the port's [`QueueLimits`](crate::jobs::QueueLimits).
pub use crate::jobs::QueueLimits as QueueSpec;

#[derive(Default)]
struct QueueState {
    waiting: BTreeMap<JobId, JobTicket>,
    in_flight: BTreeMap<JobId, Lease>,
    dead: VecDeque<DeadLetter>,
    next_lease_id: u64,
}

/// A bounded [`JobQueue`] behind a std mutex, with optional aging.
pub struct MemoryJobQueue {
    spec: QueueSpec,
    state: Mutex<QueueState>,
}

impl MemoryJobQueue {
    /// An empty queue of the given sizes. A zero `aging_step` counts as no aging.
    #[must_use]
    pub fn new(spec: QueueSpec) -> MemoryJobQueue {
        let aging_step = spec.aging_step.filter(|s| s.as_millis() > 0);
        MemoryJobQueue { spec: QueueSpec { aging_step, ..spec }, state: Mutex::new(QueueState::default()) }
    }

    /// Order key of a ready ticket at `now`: effective priority rank, then `enqueued_at`, then id.
    fn order_key(&self, t: &JobTicket, now: Timestamp) -> (usize, Timestamp, JobId) {
        let steps = self.spec.aging_step.map_or(0, |step| {
            let waited = now.since(t.enqueued_at).as_millis() / step.as_millis();
            u64::try_from(waited).unwrap_or(u64::MAX)
        });
        (t.priority.raised(steps).rank(), t.enqueued_at, t.job)
    }
}

/// The lease's ticket, if `lease` is still the current delivery of it.
fn held<'a>(state: &'a mut QueueState, lease: &Lease) -> Result<&'a mut Lease, JobQueueError> {
    match state.in_flight.get_mut(&lease.ticket.job) {
        Some(current) if current.lease_id == lease.lease_id => Ok(current),
        _ => Err(JobQueueError::LeaseLost { job: lease.ticket.job, lease_id: lease.lease_id }),
    }
}

#[async_trait]
impl JobQueue for MemoryJobQueue {
    async fn enqueue(&self, ticket: JobTicket) -> Result<Enqueued, JobQueueError> {
        let mut s = lock(&self.state);
        if s.waiting.contains_key(&ticket.job) || s.in_flight.contains_key(&ticket.job) {
            return Ok(Enqueued::AlreadyPresent);
        }
        if s.waiting.len() + s.in_flight.len() >= self.spec.capacity {
            return Err(JobQueueError::QueueFull { capacity: self.spec.capacity });
        }
        s.waiting.insert(ticket.job, ticket);
        Ok(Enqueued::Added)
    }

    async fn dequeue(
        &self,
        worker: &WorkerId,
        now: Timestamp,
        lease: Duration,
    ) -> Result<Option<Lease>, JobQueueError> {
        let mut s = lock(&self.state);
        let next = s.waiting.values().filter(|t| t.not_before <= now).min_by_key(|t| self.order_key(t, now));
        let Some(job) = next.map(|t| t.job) else { return Ok(None) };
        let Some(ticket) = s.waiting.remove(&job) else { return Ok(None) };
        s.next_lease_id += 1;
        let lease = Lease { ticket, worker: worker.clone(), lease_id: s.next_lease_id, deadline: now.plus(lease) };
        s.in_flight.insert(job, lease.clone());
        Ok(Some(lease))
    }

    async fn heartbeat(&self, lease: &Lease, now: Timestamp, extend: Duration) -> Result<Lease, JobQueueError> {
        let mut s = lock(&self.state);
        let current = held(&mut s, lease)?;
        if current.deadline < now {
            return Err(JobQueueError::LeaseLost { job: lease.ticket.job, lease_id: lease.lease_id });
        }
        current.deadline = now.plus(extend);
        Ok(current.clone())
    }

    async fn ack(&self, lease: &Lease) -> Result<(), JobQueueError> {
        let mut s = lock(&self.state);
        held(&mut s, lease)?;
        s.in_flight.remove(&lease.ticket.job);
        Ok(())
    }

    async fn nack(
        &self,
        lease: &Lease,
        now: Timestamp,
        retry_at: Option<Timestamp>,
        error: &ErrorText,
    ) -> Result<(), JobQueueError> {
        let mut s = lock(&self.state);
        let ticket = held(&mut s, lease)?.ticket.clone();
        match retry_at {
            Some(at) => {
                s.waiting.insert(ticket.job, JobTicket { not_before: at, ..ticket });
            }
            None => {
                if s.dead.len() >= self.spec.dead_letter_capacity {
                    return Err(JobQueueError::QueueFull { capacity: self.spec.dead_letter_capacity });
                }
                s.dead.push_back(DeadLetter { ticket: ticket.clone(), error: error.clone(), at: now });
            }
        }
        s.in_flight.remove(&ticket.job);
        Ok(())
    }

    async fn reclaim_expired(&self, now: Timestamp) -> Result<usize, JobQueueError> {
        let mut s = lock(&self.state);
        let expired: Vec<JobId> = s.in_flight.values().filter(|l| l.deadline < now).map(|l| l.ticket.job).collect();
        for job in &expired {
            if let Some(lease) = s.in_flight.remove(job) {
                s.waiting.insert(*job, lease.ticket);
            }
        }
        Ok(expired.len())
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, JobQueueError> {
        Ok(lock(&self.state).dead.iter().take(limit.min(LIST_LIMIT_MAX)).cloned().collect())
    }

    async fn replay_dead_letter(&self, job: JobId, now: Timestamp) -> Result<(), JobQueueError> {
        let mut s = lock(&self.state);
        let index = s.dead.iter().position(|d| d.ticket.job == job).ok_or(JobQueueError::NotDeadLettered { job })?;
        let present = s.waiting.contains_key(&job) || s.in_flight.contains_key(&job);
        if !present && s.waiting.len() + s.in_flight.len() >= self.spec.capacity {
            return Err(JobQueueError::QueueFull { capacity: self.spec.capacity });
        }
        if let Some(dead) = s.dead.remove(index)
            && !present
        {
            s.waiting.insert(job, JobTicket { enqueued_at: now, not_before: now, ..dead.ticket });
        }
        Ok(())
    }

    async fn len_by_priority(&self) -> Result<QueueLengths, JobQueueError> {
        let s = lock(&self.state);
        let mut lengths =
            QueueLengths { in_flight: s.in_flight.len(), dead_letters: s.dead.len(), ..Default::default() };
        for t in s.waiting.values() {
            lengths.waiting[t.priority.rank()] += 1;
        }
        Ok(lengths)
    }

    async fn contains(&self, job: JobId) -> Result<bool, JobQueueError> {
        let s = lock(&self.state);
        Ok(s.waiting.contains_key(&job) || s.in_flight.contains_key(&job))
    }
}

/// One money move [`RecordingBilling`] performed.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum BillingMove {
    /// A capture of `amount` from `hold`.
    Capture {
        /// The hold.
        hold: HoldId,
        /// The amount.
        amount: Money,
    },
    /// A release of `hold`.
    Release {
        /// The hold.
        hold: HoldId,
    },
    /// The reaper expired `hold` ([`RecordingBilling::expire`]).
    Expire {
        /// The hold.
        hold: HoldId,
    },
}

impl BillingMove {
    fn hold(&self) -> HoldId {
        match self {
            BillingMove::Capture { hold, .. } | BillingMove::Release { hold } | BillingMove::Expire { hold } => *hold,
        }
    }

    fn settlement(&self) -> Settlement {
        match self {
            BillingMove::Capture { .. } => Settlement::Captured,
            BillingMove::Release { .. } | BillingMove::Expire { .. } => Settlement::GaveBack,
        }
    }
}

#[derive(Default)]
struct BillingState {
    by_key: BTreeMap<IdempotencyKey, BillingMove>,
    moves: Vec<BillingMove>,
    ended: BTreeMap<HoldId, Settlement>,
    calls: usize,
    failure: Option<JobBillingError>,
}

/// A [`JobBilling`] that records each move once per key, and can be told to fail.
#[derive(Default)]
pub struct RecordingBilling {
    state: Mutex<BillingState>,
}

impl RecordingBilling {
    /// A billing that accepts everything.
    #[must_use]
    pub fn new() -> RecordingBilling {
        RecordingBilling::default()
    }

    /// Makes every following call fail with `error` (`None` heals it).
    pub fn fail_with(&self, error: Option<JobBillingError>) {
        lock(&self.state).failure = error;
    }

    /// Moves performed, in order: each key at most once.
    #[must_use]
    pub fn moves(&self) -> Vec<BillingMove> {
        lock(&self.state).moves.clone()
    }

    /// Calls received, replays and failures included.
    #[must_use]
    pub fn calls(&self) -> usize {
        lock(&self.state).calls
    }

    /// Expires `hold` as the reaper would, if it has not ended.
    pub fn expire(&self, hold: HoldId) {
        let mut s = lock(&self.state);
        if let std::collections::btree_map::Entry::Vacant(e) = s.ended.entry(hold) {
            e.insert(Settlement::GaveBack);
            s.moves.push(BillingMove::Expire { hold });
        }
    }

    fn record(&self, key: &IdempotencyKey, wanted: BillingMove) -> Result<Settlement, JobBillingError> {
        let mut s = lock(&self.state);
        s.calls += 1;
        if let Some(error) = &s.failure {
            return Err(error.clone());
        }
        let hold = wanted.hold();
        if let Some(first) = s.by_key.get(key) {
            // A replay returns the first outcome; a different move under the same key is a caller bug.
            if *first != wanted {
                return Err(JobBillingError::Rejected { reason: format!("key {key} was used for {first:?}") });
            }
        }
        // A hold that ended answers how it ended, and nothing moves again.
        if let Some(ended) = s.ended.get(&hold) {
            return Ok(*ended);
        }
        s.by_key.insert(key.clone(), wanted.clone());
        s.ended.insert(hold, wanted.settlement());
        s.moves.push(wanted.clone());
        Ok(wanted.settlement())
    }
}

#[async_trait]
impl JobBilling for RecordingBilling {
    async fn capture(&self, hold: HoldId, amount: Money, key: &IdempotencyKey) -> Result<Settlement, JobBillingError> {
        self.record(key, BillingMove::Capture { hold, amount })
    }

    async fn release(&self, hold: HoldId, key: &IdempotencyKey) -> Result<Settlement, JobBillingError> {
        self.record(key, BillingMove::Release { hold })
    }

    async fn settlement(&self, hold: HoldId) -> Result<Option<Settlement>, JobBillingError> {
        let s = lock(&self.state);
        if let Some(error) = &s.failure {
            return Err(error.clone());
        }
        Ok(s.ended.get(&hold).copied())
    }
}

/// A [`JobNotifier`] that records each notice once per (job, kind).
#[derive(Default)]
pub struct RecordingNotifier {
    notices: Mutex<Vec<(UserId, JobNotice)>>,
}

impl RecordingNotifier {
    /// An empty notifier.
    #[must_use]
    pub fn new() -> RecordingNotifier {
        RecordingNotifier::default()
    }

    /// Notices delivered, in order.
    #[must_use]
    pub fn notices(&self) -> Vec<(UserId, JobNotice)> {
        lock(&self.notices).clone()
    }
}

#[async_trait]
impl JobNotifier for RecordingNotifier {
    async fn notify(&self, user: UserId, notice: JobNotice) -> Result<(), JobNotifyError> {
        let mut notices = lock(&self.notices);
        let kind = std::mem::discriminant(&notice);
        if !notices.iter().any(|(_, n)| n.job() == notice.job() && std::mem::discriminant(n) == kind) {
            notices.push((user, notice));
        }
        Ok(())
    }
}

/// A `Queued` job for tests: price 1.00, three attempts, created at `at`.
///
/// # Panics
/// Never for the fixed literals it uses.
#[must_use]
pub fn sample_job(id: u128, priority: Priority, at: Timestamp) -> Job {
    let product = ProductId::parse("image.test").unwrap_or_else(|e| panic!("literal product id: {e}"));
    let spec = NewJob {
        id: JobId::from(id),
        user: UserId(i64::try_from(id % 1_000).unwrap_or(0)),
        product,
        priority,
        price: Money::from_kopecks(100),
        hold: HoldId::from(id),
        max_attempts: 3,
        request: None,
    };
    let mut job = Job::new(spec, at).unwrap_or_else(|e| panic!("sample job is valid: {e}"));
    job.state = JobState::Queued;
    job
}

fn ok<T, E: std::fmt::Debug>(result: Result<T, E>, what: &str) -> T {
    result.unwrap_or_else(|e| panic!("{what}: unexpected error {e:?}"))
}

fn at(ms: i64) -> Timestamp {
    Timestamp::from_millis(ms)
}

async fn a_users_jobs_are_listed_newest_first(store: &dyn JobStore) {
    // Jobs 1001, 2001 and 3001 are user 1's (ids modulo 1000), 1002 user 2's; every state counts.
    for (id, t) in [(1_001, 10), (1_002, 20), (2_001, 30), (3_001, 40)] {
        ok(store.insert(&sample_job(id, Priority::Normal, at(t))).await, "insert");
    }
    let mut done = ok(store.get(JobId::from(2_001)).await, "get").unwrap_or_else(|| panic!("stored"));
    done.state = JobState::Running;
    ok(store.update(&done, JobState::Queued).await, "update");
    let list = |jobs: Vec<Job>| jobs.into_iter().map(|j| j.id).collect::<Vec<_>>();
    let ids = |ns: &[u128]| ns.iter().map(|n| JobId::from(*n)).collect::<Vec<_>>();
    let mine = ok(store.list_for_user(UserId(1), None, 10).await, "list");
    assert_eq!(list(mine), ids(&[3_001, 2_001, 1_001]), "the user's jobs, newest first, any state");
    let page = ok(store.list_for_user(UserId(1), Some(JobId::from(3_001)), 1).await, "list before");
    assert_eq!(list(page), ids(&[2_001]), "below the cursor, at most the limit");
    assert_eq!(list(ok(store.list_for_user(UserId(7), None, 10).await, "none")), Vec::new());
}

/// Checks every MUST of [`JobStore`] against fresh stores from `make`.
///
/// # Panics
/// On the first broken contract, naming it.
pub async fn job_store_conformance<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn JobStore>>,
{
    a_users_jobs_are_listed_newest_first(make().await.as_ref()).await;

    // A repeated insert is a no-op returning the first record.
    let store = make().await;
    let first = sample_job(1, Priority::Normal, at(10));
    assert_eq!(ok(store.insert(&first).await, "insert"), first);
    let mut other = first.clone();
    other.price = Money::from_kopecks(999);
    assert_eq!(ok(store.insert(&other).await, "repeated insert"), first, "repeated insert must keep the first job");
    assert_eq!(ok(store.get(first.id).await, "get"), Some(first.clone()));
    assert_eq!(ok(store.get(JobId::from(404)).await, "get missing"), None);

    // Compare-and-set on state: the expected state wins once, the stale writer conflicts.
    let mut running = first.clone();
    running.state = JobState::Running;
    running.attempts = 1;
    ok(store.update(&running, JobState::Queued).await, "cas queued->running");
    let mut second_writer = first.clone();
    second_writer.state = JobState::Running;
    second_writer.attempts = 1;
    let conflict = store.update(&second_writer, JobState::Queued).await;
    assert!(matches!(conflict, Err(JobStoreError::Conflict { actual: JobState::Running, .. })), "{conflict:?}");
    let missing = store.update(&sample_job(404, Priority::Low, at(0)), JobState::Queued).await;
    assert!(matches!(missing, Err(JobStoreError::NotFound { .. })), "{missing:?}");

    // While running, the attempt number fences the run: an older attempt cannot move a newer one.
    let mut stale = running.clone();
    stale.attempts = 0;
    stale.state = JobState::Succeeded;
    let fenced = store.update(&stale, JobState::Running).await;
    assert!(matches!(fenced, Err(JobStoreError::Conflict { actual_attempts: 1, .. })), "{fenced:?}");
    assert_eq!(ok(store.get(first.id).await, "get after fence"), Some(running.clone()));

    // Listing filters by state, pages by id and honours the limit.
    let store = make().await;
    for id in 1..=5 {
        ok(store.insert(&sample_job(id, Priority::Normal, at(0))).await, "insert");
    }
    let mut done = sample_job(3, Priority::Normal, at(0));
    done.state = JobState::Failed;
    ok(store.update(&done, JobState::Queued).await, "cas queued->failed");
    let ids = |jobs: Vec<Job>| jobs.iter().map(|j| j.id.as_u128()).collect::<Vec<_>>();
    assert_eq!(ids(ok(store.list_by_state(JobState::Queued, None, 2).await, "list")), vec![1, 2]);
    let after = Some(JobId::from(2));
    assert_eq!(ids(ok(store.list_by_state(JobState::Queued, after, 10).await, "list page")), vec![4, 5]);
    assert_eq!(ids(ok(store.list_by_state(JobState::Failed, None, 10).await, "list failed")), vec![3]);

    // Expired leases: only running jobs, deadline strictly before now, earliest first, limited.
    for (id, deadline) in [(1, 50), (2, 30), (4, 100)] {
        let mut job = sample_job(id, Priority::Normal, at(0));
        job.state = JobState::Running;
        job.attempts = 1;
        job.lease_deadline = Some(at(deadline));
        ok(store.update(&job, JobState::Queued).await, "cas to running");
    }
    assert_eq!(ids(ok(store.expired_leases(at(100), 10).await, "expired")), vec![2, 1]);
    assert_eq!(ids(ok(store.expired_leases(at(100), 1).await, "expired limit")), vec![2]);
    assert_eq!(ids(ok(store.expired_leases(at(101), 10).await, "expired later")), vec![2, 1, 4]);

    // The request is kept exactly, written once; the result is written by updates.
    let store = make().await;
    let mut asked = sample_job(9, Priority::Normal, at(0));
    let mut request = GenerationRequest::text(Capability::ImageEdit, "line one\nline \\ two = ü");
    request.images = vec![ok(AssetKey::parse("inputs/9/a.png"), "key")];
    request.aspect_ratio = Some(ok(AspectRatio::parse("16:9"), "ratio"));
    asked.request = Some(request.clone());
    assert_eq!(ok(store.insert(&asked).await, "insert with request"), asked);
    let mut done = asked.clone();
    done.state = JobState::Failed;
    done.result = Some(ok(AssetKey::parse("results/9.png"), "key"));
    done.request = Some(GenerationRequest::text(Capability::TextToImage, "rewritten"));
    ok(store.update(&done, JobState::Queued).await, "update with result");
    let stored = ok(store.get(asked.id).await, "get").unwrap_or_else(|| panic!("job 9 stored"));
    assert_eq!(stored.result, done.result, "an update writes the result");
    assert_eq!(stored.request, Some(request), "the request is written once, by the insert");
}

fn ticket(id: u128, priority: Priority, enqueued_ms: i64) -> JobTicket {
    JobTicket { job: JobId::from(id), priority, enqueued_at: at(enqueued_ms), not_before: at(enqueued_ms) }
}

async fn drain(queue: &dyn JobQueue, worker: &WorkerId, now: Timestamp) -> Vec<u128> {
    let mut order = Vec::new();
    while let Some(lease) = ok(queue.dequeue(worker, now, Duration::from_secs(60)).await, "dequeue") {
        order.push(lease.ticket.job.as_u128());
        ok(queue.ack(&lease).await, "ack");
    }
    order
}

fn job_ids(leases: &[Lease]) -> Vec<u128> {
    leases.iter().map(|l| l.ticket.job.as_u128()).collect()
}

/// One step of a random workload run by [`check_batch_matches_singles`].
#[derive(Clone, Debug)]
pub enum BatchOp {
    /// Enqueue a new ticket at the current time, due `delay_ms` later.
    Enqueue {
        /// Its priority.
        priority: Priority,
        /// How long after `enqueued_at` its `not_before` is.
        delay_ms: i64,
    },
    /// Enqueue `count` new tickets at the current time in one `enqueue_many`, and with them again the job of
    /// the last single enqueue (waiting, in flight or gone) and the first of the new ones (given twice).
    EnqueueMany {
        /// Their priority.
        priority: Priority,
        /// How long after `enqueued_at` their `not_before` is.
        delay_ms: i64,
        /// New tickets.
        count: usize,
    },
    /// Take up to `max` tickets.
    Take {
        /// The batch size.
        max: usize,
    },
    /// Ack the `acks` oldest leases held (some may be lost), then take up to `max` tickets, in one call.
    AckAndTake {
        /// How many held leases to ack.
        acks: usize,
        /// The batch size.
        max: usize,
    },
    /// Give the oldest held lease back, due again `delay_ms` from now.
    Retry {
        /// The retry delay.
        delay_ms: i64,
    },
    /// Let time pass.
    Tick {
        /// How much.
        ms: i64,
    },
    /// Put expired leases back.
    Reclaim,
}

/// A random workload for [`check_batch_matches_singles`]: with or without aging, and 1 to 120 steps.
pub fn batch_workload() -> impl Strategy<Value = (bool, Vec<BatchOp>)> {
    let op = prop_oneof![
        10 => (prop::sample::select(Priority::ALL.to_vec()), prop_oneof![3 => Just(0i64), 1 => 1i64..40])
            .prop_map(|(priority, delay_ms)| BatchOp::Enqueue { priority, delay_ms }),
        2 => (prop::sample::select(Priority::ALL.to_vec()), prop_oneof![3 => Just(0i64), 1 => 1i64..40], 0usize..6)
            .prop_map(|(priority, delay_ms, count)| BatchOp::EnqueueMany { priority, delay_ms, count }),
        2 => (0usize..10).prop_map(|max| BatchOp::Take { max }),
        2 => (0usize..6, 0usize..10).prop_map(|(acks, max)| BatchOp::AckAndTake { acks, max }),
        1 => (0i64..30).prop_map(|delay_ms| BatchOp::Retry { delay_ms }),
        // Mostly no time at all, so that tickets share enqueued_at; sometimes several aging steps.
        4 => prop_oneof![2 => Just(0i64), 1 => 1i64..70].prop_map(|ms| BatchOp::Tick { ms }),
        1 => Just(BatchOp::Reclaim),
    ];
    (any::<bool>(), prop::collection::vec(op, 1..120))
}

/// What a worker can see of a lease besides its id: the ticket, the holder and the deadline.
fn seen(leases: &[Lease]) -> Vec<(JobTicket, WorkerId, Timestamp)> {
    leases.iter().map(|l| (l.ticket.clone(), l.worker.clone(), l.deadline)).collect()
}

/// Runs `ops` on two fresh queues from `make`, one through single calls (`enqueue`, `dequeue`, `ack`), the other
/// through the batch calls (`enqueue_many`, `dequeue_many`, `ack_many`, `ack_and_dequeue_many`), and checks that
/// they give the same outcomes, hand out the same tickets in the same order and lose the same leases.
///
/// # Panics
/// On the first difference, naming the step.
pub async fn check_batch_matches_singles<F, Fut>(make: &F, aging: bool, ops: &[BatchOp])
where
    F: Fn(QueueSpec) -> Fut,
    Fut: Future<Output = Arc<dyn JobQueue>>,
{
    let aging_step = aging.then_some(Duration::from_millis(20));
    let spec = QueueSpec { capacity: 10_000, dead_letter_capacity: 10, aging_step };
    let (single, batch) = (make(spec).await, make(spec).await);
    let worker = ok(WorkerId::parse("w1"), "worker id");
    let lease = Duration::from_millis(50);
    // Leases held, the same tickets on both sides at the same places (checked at every take).
    let (mut held_single, mut held_batch): (Vec<Lease>, Vec<Lease>) = (Vec::new(), Vec::new());
    let mut now = 1_000i64;
    let mut last_single = None;
    for (step, op) in ops.iter().enumerate() {
        match op {
            BatchOp::Enqueue { priority, delay_ms } => {
                // Ids run against time so that ties on enqueued_at are broken by id, not by arrival.
                let job = 1_000_000 - step as u128;
                let t = JobTicket { not_before: at(now + delay_ms), ..ticket(job, *priority, now) };
                let a = ok(single.enqueue(t.clone()).await, "enqueue");
                assert_eq!(a, ok(batch.enqueue(t).await, "enqueue"), "step {step}: enqueue");
                last_single = Some(job);
            }
            BatchOp::EnqueueMany { priority, delay_ms, count } => {
                let fresh = (0..*count).map(|i| 1_000_000_000 - (step * 8 + i) as u128);
                let jobs: Vec<u128> = fresh.clone().chain(last_single).chain(fresh.take(1)).collect();
                let tickets: Vec<JobTicket> = jobs
                    .iter()
                    .map(|job| JobTicket { not_before: at(now + delay_ms), ..ticket(*job, *priority, now) })
                    .collect();
                let mut singles = Vec::new();
                for t in &tickets {
                    singles.push(single.enqueue(t.clone()).await);
                }
                assert_eq!(batch.enqueue_many(&tickets).await, singles, "step {step}: enqueue_many");
            }
            BatchOp::Take { max } | BatchOp::AckAndTake { max, .. } => {
                let acks = match op {
                    BatchOp::AckAndTake { acks, .. } => (*acks).min(held_single.len()),
                    _ => 0,
                };
                let done_single: Vec<Lease> = held_single.drain(..acks).collect();
                let done_batch: Vec<Lease> = held_batch.drain(..acks).collect();
                let mut lost_single = Vec::new();
                for done in &done_single {
                    match single.ack(done).await {
                        Ok(()) => {}
                        Err(JobQueueError::LeaseLost { .. }) => lost_single.push(done.clone()),
                        Err(e) => panic!("step {step}: ack: unexpected error {e:?}"),
                    }
                }
                let mut taken_single = Vec::new();
                for _ in 0..*max {
                    match ok(single.dequeue(&worker, at(now), lease).await, "dequeue") {
                        Some(l) => taken_single.push(l),
                        None => break,
                    }
                }
                let AckedAndTaken { lost: lost_batch, taken: taken_batch } = if matches!(op, BatchOp::Take { .. }) {
                    let taken = ok(batch.dequeue_many(&worker, at(now), lease, *max).await, "dequeue_many");
                    AckedAndTaken { lost: Vec::new(), taken }
                } else if *max == 0 {
                    AckedAndTaken { lost: ok(batch.ack_many(&done_batch).await, "ack_many"), taken: Vec::new() }
                } else {
                    let both = batch.ack_and_dequeue_many(&done_batch, &worker, at(now), lease, *max).await;
                    ok(both, "ack_and_dequeue_many")
                };
                assert_eq!(job_ids(&lost_batch), job_ids(&lost_single), "step {step}: lost leases");
                assert_eq!(seen(&taken_batch), seen(&taken_single), "step {step}: taken at {now}");
                held_single.extend(taken_single);
                held_batch.extend(taken_batch);
            }
            BatchOp::Retry { delay_ms } => {
                if !held_single.is_empty() {
                    let (a, b) = (held_single.remove(0), held_batch.remove(0));
                    let error = ErrorText::new("retry");
                    let retry_at = Some(at(now + delay_ms));
                    let a = single.nack(&a, at(now), retry_at, &error).await;
                    assert_eq!(a, batch.nack(&b, at(now), retry_at, &error).await, "step {step}: nack");
                }
            }
            BatchOp::Tick { ms } => now += ms,
            BatchOp::Reclaim => {
                let a = ok(single.reclaim_expired(at(now)).await, "reclaim");
                assert_eq!(a, ok(batch.reclaim_expired(at(now)).await, "reclaim"), "step {step}: reclaimed");
            }
        }
    }
    let lengths = ok(single.len_by_priority().await, "lengths");
    assert_eq!(lengths, ok(batch.len_by_priority().await, "lengths"), "lengths at the end");
}

/// Runs [`check_batch_matches_singles`] on `cases` workloads drawn from [`batch_workload`] by a deterministic
/// generator, so that every run of a suite checks the same cases.
///
/// # Panics
/// On the first difference, naming the workload.
pub async fn batch_dequeue_property<F, Fut>(make: &F, cases: usize)
where
    F: Fn(QueueSpec) -> Fut,
    Fut: Future<Output = Arc<dyn JobQueue>>,
{
    let mut runner = TestRunner::deterministic();
    for case in 0..cases {
        let tree = batch_workload().new_tree(&mut runner);
        let (aging, ops) = tree.unwrap_or_else(|e| panic!("workload {case}: {e}")).current();
        // Shown only when the check below fails: the workload to replay.
        eprintln!("batch workload {case}: aging {aging}, {ops:?}");
        check_batch_matches_singles(make, aging, &ops).await;
    }
}

/// Checks every MUST of [`JobQueue`] against fresh queues from `make`, which builds a queue of the given
/// [`QueueSpec`].
///
/// # Panics
/// On the first broken contract, naming it.
pub async fn job_queue_conformance<F, Fut>(make: F)
where
    F: Fn(QueueSpec) -> Fut,
    Fut: Future<Output = Arc<dyn JobQueue>>,
{
    let spec = QueueSpec { capacity: 16, dead_letter_capacity: 2, aging_step: None };
    let worker = ok(WorkerId::parse("w1"), "worker id");
    let other = ok(WorkerId::parse("w2"), "worker id");
    let minute = Duration::from_secs(60);

    // Priority first, then FIFO by enqueued_at, then by id.
    let q = make(spec).await;
    for t in [
        ticket(1, Priority::Low, 1),
        ticket(2, Priority::Normal, 5),
        ticket(3, Priority::Critical, 9),
        ticket(4, Priority::Normal, 2),
        ticket(6, Priority::High, 3),
        ticket(5, Priority::High, 3),
    ] {
        assert_eq!(ok(q.enqueue(t).await, "enqueue"), Enqueued::Added);
    }
    assert_eq!(drain(q.as_ref(), &worker, at(10)).await, vec![3, 5, 6, 4, 2, 1], "priority then FIFO then id");

    // Ack-and-dequeue acks one lease and hands over the next ticket in order; a lost lease takes nothing.
    let q = make(spec).await;
    for t in [ticket(1, Priority::Normal, 1), ticket(2, Priority::High, 2), ticket(3, Priority::Low, 3)] {
        ok(q.enqueue(t).await, "enqueue");
    }
    let first = ok(q.dequeue(&worker, at(10), minute).await, "dequeue").unwrap_or_else(|| panic!("a ticket"));
    assert_eq!(first.ticket.job.as_u128(), 2);
    let second = ok(q.ack_and_dequeue(&first, at(11), minute).await, "ack and dequeue")
        .unwrap_or_else(|| panic!("the next ticket"));
    assert_eq!((second.ticket.job.as_u128(), &second.worker), (1, &worker), "the next in order, same worker");
    assert!(!ok(q.contains(first.ticket.job).await, "contains"), "the first ticket is acked");
    let lost = q.ack_and_dequeue(&first, at(12), minute).await;
    assert!(matches!(lost, Err(JobQueueError::LeaseLost { .. })), "a lost lease: {lost:?}");
    assert!(ok(q.contains(JobId::from(3)).await, "contains"), "nothing taken after a failed ack");
    let third = ok(q.ack_and_dequeue(&second, at(13), minute).await, "ack and dequeue")
        .unwrap_or_else(|| panic!("the last ticket"));
    assert_eq!(third.ticket.job.as_u128(), 3);
    assert_eq!(ok(q.ack_and_dequeue(&third, at(14), minute).await, "ack the last"), None, "empty after the last");
    assert!(!ok(q.contains(JobId::from(3)).await, "contains"));

    // Batch calls: dequeue_many hands out what single dequeues would, in order; ack_many acks each lease once
    // and reports the lost ones; ack_and_dequeue_many acks, then takes, and a lost lease does not stop the take.
    let q = make(spec).await;
    for t in [
        ticket(1, Priority::Low, 1),
        ticket(2, Priority::Normal, 5),
        ticket(3, Priority::Critical, 9),
        ticket(4, Priority::Normal, 2),
        ticket(6, Priority::High, 3),
        ticket(5, Priority::High, 3),
        JobTicket { not_before: at(50), ..ticket(7, Priority::Critical, 0) },
    ] {
        ok(q.enqueue(t).await, "enqueue");
    }
    assert!(ok(q.dequeue_many(&worker, at(10), minute, 0).await, "dequeue_many 0").is_empty(), "max 0 takes none");
    let first = ok(q.dequeue_many(&worker, at(10), minute, 4).await, "dequeue_many");
    assert_eq!(job_ids(&first), vec![3, 5, 6, 4], "the first four in order");
    assert!(first.iter().all(|l| l.worker == worker && l.deadline == at(10).plus(minute)), "{first:?}");
    let mut lease_ids: Vec<u64> = first.iter().map(|l| l.lease_id).collect();
    lease_ids.dedup();
    assert_eq!(lease_ids.len(), 4, "each ticket its own lease id: {first:?}");
    let rest = ok(q.dequeue_many(&worker, at(10), minute, 10).await, "dequeue_many");
    assert_eq!(job_ids(&rest), vec![2, 1], "then the rest; the delayed ticket is not due");
    let lost = ok(q.ack_many(&[first[0].clone(), first[1].clone(), first[0].clone()]).await, "ack_many");
    assert_eq!(lost, vec![first[0].clone()], "a lease given twice is acked once, then lost");
    assert!(!ok(q.contains(JobId::from(3)).await, "contains") && !ok(q.contains(JobId::from(5)).await, "contains"));
    let both =
        ok(q.ack_and_dequeue_many(&[first[2].clone(), first[0].clone()], &other, at(60), minute, 5).await, "a+d");
    assert_eq!(both.lost, vec![first[0].clone()], "the lost lease is reported");
    assert_eq!(job_ids(&both.taken), vec![7], "and the take goes on: the delayed ticket is due now");
    assert_eq!((&both.taken[0].worker, both.taken[0].deadline), (&other, at(60).plus(minute)));
    assert!(!ok(q.contains(JobId::from(6)).await, "contains"), "acked");
    let rest: Vec<Lease> = rest.into_iter().chain(both.taken).chain([first[3].clone()]).collect();
    assert!(ok(q.ack_many(&rest).await, "ack_many").is_empty(), "every held lease is acked");
    assert!(ok(q.ack_many(&[]).await, "ack_many none").is_empty());
    assert_eq!(ok(q.len_by_priority().await, "lengths"), QueueLengths::default(), "nothing left");

    // Batch calls over random workloads (delays, retries, expired leases, aging) equal the single calls.
    batch_dequeue_property(&make, 64).await;

    // Aging: a Low ticket that waited two steps counts as High and, being older, beats a fresh High.
    let q = make(QueueSpec { aging_step: Some(Duration::from_millis(100)), ..spec }).await;
    ok(q.enqueue(ticket(1, Priority::Low, 0)).await, "enqueue");
    ok(q.enqueue(ticket(2, Priority::High, 150)).await, "enqueue");
    ok(q.enqueue(ticket(3, Priority::Critical, 200)).await, "enqueue");
    assert_eq!(drain(q.as_ref(), &worker, at(200)).await, vec![3, 1, 2], "aging raises waiting tickets");

    // not_before: a delayed ticket is invisible until its time.
    let q = make(spec).await;
    ok(q.enqueue(JobTicket { not_before: at(500), ..ticket(1, Priority::Critical, 0) }).await, "enqueue");
    assert_eq!(ok(q.dequeue(&worker, at(499), minute).await, "dequeue early"), None, "not_before is honoured");
    assert!(ok(q.dequeue(&worker, at(500), minute).await, "dequeue on time").is_some());

    // enqueue_many: each ticket as a lone enqueue at its place in the order: dedup against the queue and within
    // the call, then QueueFull once the capacity is reached; delayed tickets and ready ones alike.
    let q = make(QueueSpec { capacity: 3, ..spec }).await;
    ok(q.enqueue(ticket(1, Priority::Normal, 0)).await, "enqueue");
    let many = q
        .enqueue_many(&[
            ticket(2, Priority::Low, 1),
            ticket(1, Priority::High, 1),
            JobTicket { not_before: at(40), ..ticket(3, Priority::Critical, 1) },
            ticket(2, Priority::High, 2),
            ticket(4, Priority::High, 2),
        ])
        .await;
    assert_eq!(many.len(), 5, "one outcome per ticket: {many:?}");
    assert_eq!(
        many[..4],
        [Ok(Enqueued::Added), Ok(Enqueued::AlreadyPresent), Ok(Enqueued::Added), Ok(Enqueued::AlreadyPresent)]
    );
    assert!(matches!(many[4], Err(JobQueueError::QueueFull { .. })), "full at the fourth job: {many:?}");
    assert!(q.enqueue_many(&[]).await.is_empty(), "nothing to add");
    assert_eq!(drain(q.as_ref(), &worker, at(40)).await, vec![3, 1, 2], "added as given, duplicates changed nothing");

    // Dedup: a waiting or in-flight job is not enqueued twice; contains sees both.
    let q = make(spec).await;
    assert_eq!(ok(q.enqueue(ticket(1, Priority::Normal, 0)).await, "enqueue"), Enqueued::Added);
    assert_eq!(ok(q.enqueue(ticket(1, Priority::High, 1)).await, "dup"), Enqueued::AlreadyPresent);
    let lease = ok(q.dequeue(&worker, at(1), minute).await, "dequeue").unwrap_or_else(|| panic!("a ticket waits"));
    assert_eq!(lease.ticket.priority, Priority::Normal, "the duplicate changed nothing");
    assert!(ok(q.contains(JobId::from(1)).await, "contains in flight"));
    assert_eq!(ok(q.enqueue(ticket(1, Priority::Normal, 2)).await, "dup in flight"), Enqueued::AlreadyPresent);
    assert_eq!(ok(q.dequeue(&worker, at(2), minute).await, "dequeue"), None, "no second delivery");

    // Ack removes for good; a second ack is a lost lease.
    ok(q.ack(&lease).await, "ack");
    assert!(!ok(q.contains(JobId::from(1)).await, "contains after ack"));
    assert!(matches!(q.ack(&lease).await, Err(JobQueueError::LeaseLost { .. })), "ack twice");

    // Heartbeat extends; an expired lease is redelivered and the old holder's calls fail.
    let q = make(spec).await;
    ok(q.enqueue(ticket(1, Priority::Normal, 0)).await, "enqueue");
    let first = ok(q.dequeue(&worker, at(0), Duration::from_millis(100)).await, "dequeue")
        .unwrap_or_else(|| panic!("a ticket waits"));
    assert_eq!(first.deadline, at(100));
    let extended = ok(q.heartbeat(&first, at(90), Duration::from_millis(100)).await, "heartbeat");
    assert_eq!(extended.deadline, at(190), "heartbeat extends to now + extend");
    assert_eq!(ok(q.reclaim_expired(at(150)).await, "reclaim before deadline"), 0, "extended lease is kept");
    let late = q.heartbeat(&extended, at(191), minute).await;
    assert!(matches!(late, Err(JobQueueError::LeaseLost { .. })), "heartbeat past the deadline fails: {late:?}");
    assert_eq!(ok(q.reclaim_expired(at(191)).await, "reclaim"), 1);
    let second = ok(q.dequeue(&other, at(191), minute).await, "redelivery").unwrap_or_else(|| panic!("redelivered"));
    assert_eq!(second.ticket.job, first.ticket.job, "at-least-once: the ticket comes back");
    assert_ne!(second.lease_id, first.lease_id, "a redelivery is a new lease");
    assert!(matches!(q.heartbeat(&extended, at(192), minute).await, Err(JobQueueError::LeaseLost { .. })));
    assert!(matches!(q.ack(&extended).await, Err(JobQueueError::LeaseLost { .. })), "stale ack must not remove");
    assert!(ok(q.contains(JobId::from(1)).await, "still held by the new lease"));

    // Nack with retry_at: waits again, not before retry_at.
    let error = ErrorText::new("provider timeout");
    ok(q.nack(&second, at(200), Some(at(300)), &error).await, "nack retry");
    assert_eq!(ok(q.dequeue(&worker, at(299), minute).await, "dequeue early"), None);
    let third = ok(q.dequeue(&worker, at(300), minute).await, "dequeue retry").unwrap_or_else(|| panic!("retried"));

    // Nack without retry_at: dead letter; replay puts it back; the dead-letter list is bounded.
    ok(q.nack(&third, at(310), None, &error).await, "nack dead");
    assert!(!ok(q.contains(JobId::from(1)).await, "dead letters are not waiting"));
    let dead = ok(q.dead_letters(10).await, "dead letters");
    assert_eq!(dead.len(), 1);
    assert_eq!((dead[0].ticket.job, &dead[0].error, dead[0].at), (JobId::from(1), &error, at(310)));
    ok(q.replay_dead_letter(JobId::from(1), at(400)).await, "replay");
    assert!(ok(q.dead_letters(10).await, "dead letters").is_empty());
    assert!(matches!(q.replay_dead_letter(JobId::from(1), at(400)).await, Err(JobQueueError::NotDeadLettered { .. })));
    assert_eq!(drain(q.as_ref(), &worker, at(400)).await, vec![1], "a replayed ticket is delivered");
    for id in 10..=12 {
        ok(q.enqueue(ticket(id, Priority::Normal, 500)).await, "enqueue");
    }
    let mut refused = 0;
    while let Some(lease) = ok(q.dequeue(&worker, at(500), minute).await, "dequeue") {
        match q.nack(&lease, at(500), None, &error).await {
            Ok(()) => {}
            Err(JobQueueError::QueueFull { .. }) => {
                refused += 1;
                assert!(ok(q.contains(lease.ticket.job).await, "refused dead letter keeps its lease"));
            }
            Err(e) => panic!("nack: {e:?}"),
        }
    }
    assert_eq!((refused, ok(q.dead_letters(10).await, "dead").len()), (1, 2), "dead letters are bounded");

    // Lengths per priority, and QueueFull at capacity counting in-flight tickets.
    let q = make(QueueSpec { capacity: 3, ..spec }).await;
    ok(q.enqueue(ticket(1, Priority::High, 0)).await, "enqueue");
    ok(q.enqueue(ticket(2, Priority::Low, 0)).await, "enqueue");
    ok(q.enqueue(ticket(3, Priority::Low, 0)).await, "enqueue");
    let full = q.enqueue(ticket(4, Priority::Critical, 0)).await;
    assert!(matches!(full, Err(JobQueueError::QueueFull { capacity: 3 })), "{full:?}");
    assert_eq!(ok(q.enqueue(ticket(2, Priority::Low, 0)).await, "dup when full"), Enqueued::AlreadyPresent);
    ok(q.dequeue(&worker, at(0), minute).await, "dequeue");
    let lengths = ok(q.len_by_priority().await, "lengths");
    assert_eq!((lengths.waiting(Priority::Low), lengths.waiting(Priority::High), lengths.in_flight), (2, 0, 1));
    assert!(q.enqueue(ticket(4, Priority::Critical, 0)).await.is_err(), "in-flight tickets count toward capacity");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memory_queue(spec: QueueSpec) -> Arc<dyn JobQueue> {
        Arc::new(MemoryJobQueue::new(spec))
    }

    #[tokio::test]
    async fn memory_store_passes_the_conformance_suite() {
        // Proves the in-memory store keeps every JobStore contract.
        job_store_conformance(|| async { Arc::new(MemoryJobStore::new()) as Arc<dyn JobStore> }).await;
    }

    #[tokio::test]
    async fn memory_queue_passes_the_conformance_suite() {
        // Proves the in-memory queue keeps every JobQueue contract.
        job_queue_conformance(|spec| async move { memory_queue(spec) }).await;
    }

    #[tokio::test]
    async fn recording_billing_moves_money_once_per_key_and_hold() {
        // Proves the billing fake is idempotent by key, ends a hold once, and answers how a hold ended.
        let billing = RecordingBilling::new();
        let key = IdempotencyKey::derived("capture", 1).expect("test key");
        let hold = HoldId::from(1);
        assert_eq!(billing.capture(hold, Money::from_kopecks(5), &key).await, Ok(Settlement::Captured));
        assert_eq!(billing.capture(hold, Money::from_kopecks(5), &key).await, Ok(Settlement::Captured), "replay");
        assert_eq!(billing.moves().len(), 1);
        let release = billing.release(hold, &IdempotencyKey::derived("release", 1).expect("test key")).await;
        assert_eq!(release, Ok(Settlement::Captured), "a captured hold stays captured");
        assert_eq!(billing.moves().len(), 1, "nothing moved");
        billing.expire(HoldId::from(3));
        let late = billing
            .capture(HoldId::from(3), Money::ZERO, &IdempotencyKey::derived("capture", 3).expect("test key"))
            .await;
        assert_eq!(late, Ok(Settlement::GaveBack), "an expired hold cannot be captured");
        assert_eq!(billing.settlement(HoldId::from(3)).await, Ok(Some(Settlement::GaveBack)));
        assert_eq!(billing.settlement(HoldId::from(4)).await, Ok(None));
        billing.fail_with(Some(JobBillingError::Unavailable { reason: "down".into() }));
        assert!(
            billing
                .capture(HoldId::from(2), Money::ZERO, &IdempotencyKey::derived("capture", 2).expect("test key"))
                .await
                .is_err()
        );
        assert_eq!(billing.calls(), 5);
    }

    #[derive(Clone, Debug)]
    enum Op {
        Enqueue(Priority),
        Dequeue,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => prop::sample::select(Priority::ALL.to_vec()).prop_map(Op::Enqueue),
            2 => Just(Op::Dequeue),
        ]
    }

    proptest! {
        #[test]
        fn batch_calls_hand_out_what_single_calls_do((aging, ops) in batch_workload()) {
            // Proves, for any workload of enqueues, takes, acks, retries, expiries and reclaims, with or without
            // aging, that the batch calls of the in-memory queue hand out the tickets single calls would, in order.
            let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
            let make = |spec| async move { memory_queue(spec) };
            runtime.block_on(check_batch_matches_singles(&make, aging, &ops));
        }

        #[test]
        fn dequeue_order_is_priority_then_fifo(ops in prop::collection::vec((op(), 0i64..3), 1..80)) {
            // Proves, for any interleaving of enqueues and dequeues without aging, each dequeue returns the most
            // urgent waiting ticket, the earliest enqueued (then smallest id) among equals.
            let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
            let queue = MemoryJobQueue::new(QueueSpec { capacity: 100, dead_letter_capacity: 1, aging_step: None });
            let worker = WorkerId::parse("w").expect("literal");
            let mut model: Vec<JobTicket> = Vec::new();
            let mut now = 0i64;
            for (n, (op, tick)) in ops.into_iter().enumerate() {
                now += tick;
                match op {
                    Op::Enqueue(priority) => {
                        // Ids run against time so that ties on enqueued_at are broken by id, not by arrival.
                        let t = ticket(1_000 - n as u128, priority, now);
                        runtime.block_on(queue.enqueue(t.clone())).expect("enqueue");
                        model.push(t);
                    }
                    Op::Dequeue => {
                        let got = runtime.block_on(queue.dequeue(&worker, at(now), Duration::from_secs(1))).expect("dequeue");
                        let want = model.iter().min_by_key(|t| (t.priority, t.enqueued_at, t.job)).cloned();
                        prop_assert_eq!(got.as_ref().map(|l| l.ticket.job), want.as_ref().map(|t| t.job));
                        if let Some(lease) = got {
                            model.retain(|t| t.job != lease.ticket.job);
                            runtime.block_on(queue.ack(&lease)).expect("ack");
                        }
                    }
                }
            }
        }
    }
}
