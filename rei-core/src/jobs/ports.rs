//! The ports the job service talks through: the store (the record of truth), the queue (dispatch only),
//! the narrow view of billing it needs, and the notifier.

use std::time::Duration;

use async_trait::async_trait;

use super::model::{ErrorText, Job, JobState, Priority, WorkerId};
use crate::generation::AssetKey;
use crate::ids::{HoldId, IdempotencyKey, JobId, UserId};
use crate::money::Money;
use crate::time::Timestamp;

/// The most records one listing call returns; larger limits are clamped to it.
pub const LIST_LIMIT_MAX: usize = 1_000;

/// The most tickets one batch call ([`JobQueue::dequeue_many`], [`JobQueue::ack_and_dequeue_many`]) leases;
/// a larger `max` is clamped to it.
pub const BATCH_MAX: usize = 1_000;

/// Why a [`JobStore`] call failed.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum JobStoreError {
    /// No job has this id.
    #[error("job {id} not found")]
    NotFound {
        /// The missing job.
        id: JobId,
    },
    /// The stored job is not in the expected state (or, while running, not in the same attempt): someone else
    /// moved it first.
    #[error("job {id} is {actual} at attempt {actual_attempts}, expected {expected}")]
    Conflict {
        /// The job.
        id: JobId,
        /// The state the caller expected.
        expected: JobState,
        /// The state the store holds.
        actual: JobState,
        /// The attempt the store holds.
        actual_attempts: u32,
    },
    /// The store could not be reached or refused for its own reasons; the call may be retried.
    #[error("job store unavailable: {reason}")]
    Unavailable {
        /// What the adapter saw.
        reason: String,
    },
}

/// The record of truth for jobs. Whatever the queue says, the store decides what state a job is in.
#[async_trait]
pub trait JobStore: Send + Sync {
    /// Stores a new job and returns what is stored.
    ///
    /// A repeated insert of an id already stored MUST be a no-op returning the stored job unchanged, even if
    /// the given record differs.
    ///
    /// # Errors
    /// [`JobStoreError::Unavailable`].
    async fn insert(&self, job: &Job) -> Result<Job, JobStoreError>;

    /// The stored job, or `None`.
    ///
    /// # Errors
    /// [`JobStoreError::Unavailable`].
    async fn get(&self, id: JobId) -> Result<Option<Job>, JobStoreError>;

    /// Replaces the stored job with `job`, atomically, only if the stored state equals `expected`. The request
    /// ([`Job::request`]) is written once, by `insert`: an update MUST keep the stored one.
    ///
    /// When `expected` is `Running` or `Unknown` the stored `attempts` MUST also equal `job.attempts`: the
    /// attempt number fences a run, so a worker whose lease expired and whose job was leased again cannot move
    /// the newer run. Otherwise the call MUST fail with [`JobStoreError::Conflict`] and change nothing.
    ///
    /// # Errors
    /// [`JobStoreError::Conflict`] as above, [`JobStoreError::NotFound`] when no job has the id,
    /// [`JobStoreError::Unavailable`].
    async fn update(&self, job: &Job, expected: JobState) -> Result<(), JobStoreError>;

    /// Up to `limit` (at most [`LIST_LIMIT_MAX`]) jobs in `state` whose id is greater than `after`, in id
    /// order, so that a caller can walk every job in pages.
    ///
    /// # Errors
    /// [`JobStoreError::Unavailable`].
    async fn list_by_state(
        &self,
        state: JobState,
        after: Option<JobId>,
        limit: usize,
    ) -> Result<Vec<Job>, JobStoreError>;

    /// Up to `limit` (at most [`LIST_LIMIT_MAX`]) of `user`'s jobs in any state whose id is less than `before`,
    /// newest first (ids are time-ordered, so by id descending): a user's jobs on the operator console.
    ///
    /// # Errors
    /// [`JobStoreError::Unavailable`].
    async fn list_for_user(&self, user: UserId, before: Option<JobId>, limit: usize)
    -> Result<Vec<Job>, JobStoreError>;

    /// Up to `limit` (at most [`LIST_LIMIT_MAX`]) `Running` jobs whose `lease_deadline` is before `now`
    /// (strictly), earliest deadline first, then by id.
    ///
    /// # Errors
    /// [`JobStoreError::Unavailable`].
    async fn expired_leases(&self, now: Timestamp, limit: usize) -> Result<Vec<Job>, JobStoreError>;
}

/// One job waiting in the queue.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct JobTicket {
    /// The job.
    pub job: JobId,
    /// Its priority.
    pub priority: Priority,
    /// When it entered the queue: orders tickets of one priority and drives aging.
    pub enqueued_at: Timestamp,
    /// It MUST NOT be handed out before this time.
    pub not_before: Timestamp,
}

/// How big a queue may grow and how it ages tickets; every [`JobQueue`] adapter takes these.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct QueueLimits {
    /// Waiting plus in-flight tickets allowed.
    pub capacity: usize,
    /// Dead letters allowed.
    pub dead_letter_capacity: usize,
    /// Wait that raises a ticket one priority; `None` (or less than a millisecond) turns aging off.
    pub aging_step: Option<Duration>,
}

/// A ticket handed to one worker until `deadline`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Lease {
    /// The ticket.
    pub ticket: JobTicket,
    /// Who holds it.
    pub worker: WorkerId,
    /// Which delivery of the ticket this is: a redelivered ticket gets a new id, so the old holder's calls fail.
    pub lease_id: u64,
    /// When the lease ends unless extended.
    pub deadline: Timestamp,
}

/// A ticket that will not be retried, with the reason.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct DeadLetter {
    /// The ticket.
    pub ticket: JobTicket,
    /// Why it was given up.
    pub error: ErrorText,
    /// When it was given up.
    pub at: Timestamp,
}

/// Sizes of a queue.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct QueueLengths {
    /// Waiting tickets (ready or delayed) per priority, indexed by [`Priority::rank`].
    pub waiting: [usize; 4],
    /// Tickets leased to workers.
    pub in_flight: usize,
    /// Dead letters.
    pub dead_letters: usize,
}

impl QueueLengths {
    /// Waiting tickets of one priority.
    #[must_use]
    pub fn waiting(&self, priority: Priority) -> usize {
        self.waiting[priority.rank()]
    }
}

/// What [`JobQueue::enqueue`] did.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Enqueued {
    /// A new ticket was added.
    Added,
    /// The job was already waiting or in flight; nothing changed.
    AlreadyPresent,
}

/// What [`JobQueue::ack_and_dequeue_many`] did.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct AckedAndTaken {
    /// The leases given to ack that were no longer held, in the order given; nothing changed for them.
    pub lost: Vec<Lease>,
    /// The leases taken, in the order single dequeues would have handed them out.
    pub taken: Vec<Lease>,
}

/// Why a [`JobQueue`] call failed.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum JobQueueError {
    /// The queue (or its dead-letter list) is at capacity and refuses to grow.
    #[error("queue is full ({capacity} entries)")]
    QueueFull {
        /// The capacity that was reached.
        capacity: usize,
    },
    /// The lease is no longer held: it expired, was redelivered, or was already acked or nacked.
    #[error("lease {lease_id} on job {job} was lost")]
    LeaseLost {
        /// The job.
        job: JobId,
        /// The lost lease.
        lease_id: u64,
    },
    /// No dead letter has this job.
    #[error("no dead letter for job {job}")]
    NotDeadLettered {
        /// The job.
        job: JobId,
    },
    /// The queue could not be reached; the call may be retried.
    #[error("job queue unavailable: {reason}")]
    Unavailable {
        /// What the adapter saw.
        reason: String,
    },
}

/// Dispatch of jobs to workers, at least once. Holds tickets, not jobs: it can always be rebuilt from the
/// [`JobStore`]. Every size is bounded.
#[async_trait]
pub trait JobQueue: Send + Sync {
    /// Adds a ticket.
    ///
    /// A job already waiting or in flight MUST NOT get a second ticket: the call MUST return
    /// [`Enqueued::AlreadyPresent`] and change nothing. When waiting plus in-flight tickets reach the
    /// capacity it MUST refuse with [`JobQueueError::QueueFull`].
    ///
    /// # Errors
    /// [`JobQueueError::QueueFull`], [`JobQueueError::Unavailable`].
    async fn enqueue(&self, ticket: JobTicket) -> Result<Enqueued, JobQueueError>;

    /// Adds `tickets`, in order: a caller with many tickets (the reconciler, after the queue's data was lost)
    /// makes one call, which a store MAY serve in a few round trips.
    ///
    /// Each ticket MUST get the outcome [`JobQueue::enqueue`] would give it at its place in that order: a job
    /// given twice is [`Enqueued::AlreadyPresent`] the second time, and once the capacity is reached the rest are
    /// [`JobQueueError::QueueFull`]. A ticket whose outcome is [`JobQueueError::Unavailable`] may or may not have
    /// been added, as with an `enqueue` whose answer was lost. One outcome per ticket, in the order given.
    async fn enqueue_many(&self, tickets: &[JobTicket]) -> Vec<Result<Enqueued, JobQueueError>> {
        let mut outcomes = Vec::with_capacity(tickets.len());
        for ticket in tickets {
            outcomes.push(self.enqueue(ticket.clone()).await);
        }
        outcomes
    }

    /// Leases the next ticket to `worker` until `now + lease`, or returns `None`.
    ///
    /// MUST skip tickets whose `not_before` is after `now`, and MUST pick the most urgent effective priority,
    /// then the earliest `enqueued_at`, then the smallest job id. With aging configured (an `aging_step`), a
    /// ticket that has waited `k` whole steps since `enqueued_at` MUST count `k` priorities more urgent (never
    /// past `Critical`), so that `Low` is never starved.
    ///
    /// # Errors
    /// [`JobQueueError::Unavailable`].
    async fn dequeue(&self, worker: &WorkerId, now: Timestamp, lease: Duration)
    -> Result<Option<Lease>, JobQueueError>;

    /// Extends a held lease to `now + extend` and returns the extended lease.
    ///
    /// MUST fail with [`JobQueueError::LeaseLost`] when the lease is no longer held or its deadline is before
    /// `now`, even if no reclaim has run yet.
    ///
    /// # Errors
    /// [`JobQueueError::LeaseLost`], [`JobQueueError::Unavailable`].
    async fn heartbeat(&self, lease: &Lease, now: Timestamp, extend: Duration) -> Result<Lease, JobQueueError>;

    /// Removes the ticket for good. MUST fail with [`JobQueueError::LeaseLost`] (and change nothing) when the
    /// lease is no longer held, so a stale worker cannot remove a redelivered ticket.
    ///
    /// # Errors
    /// [`JobQueueError::LeaseLost`], [`JobQueueError::Unavailable`].
    async fn ack(&self, lease: &Lease) -> Result<(), JobQueueError>;

    /// Acks `done` and takes the next ticket for the same worker, leased for `lease` from `now`: a worker's
    /// loop in one call, which a store MAY serve in one round trip.
    ///
    /// It MUST behave exactly as [`JobQueue::ack`] followed by [`JobQueue::dequeue`] for `done.worker`; when the
    /// ack fails, nothing is taken.
    ///
    /// # Errors
    /// As `ack`, then as `dequeue`.
    async fn ack_and_dequeue(
        &self,
        done: &Lease,
        now: Timestamp,
        lease: Duration,
    ) -> Result<Option<Lease>, JobQueueError> {
        self.ack(done).await?;
        self.dequeue(&done.worker, now, lease).await
    }

    /// Leases up to `max` (at most [`BATCH_MAX`]) tickets to `worker` until `now + lease`: a worker with room for
    /// several jobs fills it in one call, which a store MAY serve in one round trip.
    ///
    /// It MUST hand out exactly the tickets, in the same order, that `max` calls of [`JobQueue::dequeue`] with the
    /// same arguments would, stopping at the first that finds nothing ready; each with its own lease id.
    /// `max = 0` takes nothing. When the call fails, tickets it may already have leased stay leased to `worker`
    /// until their deadline, as with a `dequeue` whose answer was lost.
    ///
    /// # Errors
    /// As `dequeue`.
    async fn dequeue_many(
        &self,
        worker: &WorkerId,
        now: Timestamp,
        lease: Duration,
        max: usize,
    ) -> Result<Vec<Lease>, JobQueueError> {
        let mut taken = Vec::new();
        for _ in 0..max.min(BATCH_MAX) {
            match self.dequeue(worker, now, lease).await? {
                Some(leased) => taken.push(leased),
                None => break,
            }
        }
        Ok(taken)
    }

    /// Acks every lease of `leases`, in order, each exactly as [`JobQueue::ack`] would, and returns the ones that
    /// were no longer held (for which nothing changed), in the order given. A lease given twice is acked once
    /// and then counts as lost.
    ///
    /// # Errors
    /// [`JobQueueError::Unavailable`]; leases acked before the failure stay acked.
    async fn ack_many(&self, leases: &[Lease]) -> Result<Vec<Lease>, JobQueueError> {
        let mut lost = Vec::new();
        for done in leases {
            match self.ack(done).await {
                Ok(()) => {}
                Err(JobQueueError::LeaseLost { .. }) => lost.push(done.clone()),
                Err(e) => return Err(e),
            }
        }
        Ok(lost)
    }

    /// Acks `done` and then takes up to `max` tickets for `worker`, leased for `lease` from `now`: the loop of a
    /// worker with room for several jobs, in one call, which a store MAY serve in one round trip.
    ///
    /// It MUST behave exactly as [`JobQueue::ack_many`] of `done` followed by [`JobQueue::dequeue_many`]. Unlike
    /// [`JobQueue::ack_and_dequeue`], a lost lease does not stop the take: it is reported in
    /// [`AckedAndTaken::lost`], and the worker's room is still free.
    ///
    /// # Errors
    /// As `ack_many`, then as `dequeue_many`.
    async fn ack_and_dequeue_many(
        &self,
        done: &[Lease],
        worker: &WorkerId,
        now: Timestamp,
        lease: Duration,
        max: usize,
    ) -> Result<AckedAndTaken, JobQueueError> {
        let lost = self.ack_many(done).await?;
        let taken = self.dequeue_many(worker, now, lease, max).await?;
        Ok(AckedAndTaken { lost, taken })
    }

    /// Gives the ticket back: with `retry_at`, it MUST wait again (keeping its `enqueued_at`) and not be handed
    /// out before `retry_at`; without, it MUST move to the dead letters with `error`. When the dead-letter
    /// list is full the call MUST refuse with [`JobQueueError::QueueFull`] and keep the lease.
    ///
    /// # Errors
    /// [`JobQueueError::LeaseLost`] as for [`JobQueue::ack`], [`JobQueueError::QueueFull`],
    /// [`JobQueueError::Unavailable`].
    async fn nack(
        &self,
        lease: &Lease,
        now: Timestamp,
        retry_at: Option<Timestamp>,
        error: &ErrorText,
    ) -> Result<(), JobQueueError>;

    /// Puts every lease whose deadline is before `now` back to waiting (at-least-once delivery) and returns
    /// how many. The old holders' leases MUST count as lost from then on.
    ///
    /// # Errors
    /// [`JobQueueError::Unavailable`].
    async fn reclaim_expired(&self, now: Timestamp) -> Result<usize, JobQueueError>;

    /// Up to `limit` (at most [`LIST_LIMIT_MAX`]) dead letters, oldest first.
    ///
    /// # Errors
    /// [`JobQueueError::Unavailable`].
    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, JobQueueError>;

    /// Moves a dead letter back to waiting, ready at `now` with `enqueued_at = now`. If the job already has a
    /// waiting or in-flight ticket the dead letter MUST just be dropped.
    ///
    /// # Errors
    /// [`JobQueueError::NotDeadLettered`], [`JobQueueError::QueueFull`], [`JobQueueError::Unavailable`].
    async fn replay_dead_letter(&self, job: JobId, now: Timestamp) -> Result<(), JobQueueError>;

    /// Current sizes.
    ///
    /// # Errors
    /// [`JobQueueError::Unavailable`].
    async fn len_by_priority(&self) -> Result<QueueLengths, JobQueueError>;

    /// `true` when the job has a waiting or in-flight ticket (dead letters do not count).
    ///
    /// # Errors
    /// [`JobQueueError::Unavailable`].
    async fn contains(&self, job: JobId) -> Result<bool, JobQueueError>;
}

/// Why billing refused a job's capture or release.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum JobBillingError {
    /// The ledger refused for good (the hold ended otherwise, the amount exceeds it); retrying will not help.
    #[error("billing rejected: {reason}")]
    Rejected {
        /// Why.
        reason: String,
    },
    /// Billing could not be reached; the call may be retried with the same key.
    #[error("billing unavailable: {reason}")]
    Unavailable {
        /// Why.
        reason: String,
    },
}

/// How a job's hold ended, as the ledger records it: the one truth the job's final state follows.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Settlement {
    /// The hold was captured: the user paid, so the job ends `Succeeded`.
    Captured,
    /// The hold was released or expired: the money is back, so the job ends `Failed`.
    GaveBack,
}

/// The narrow view of billing the job service needs; implemented by the billing service.
///
/// Every call answers with how the hold ended, whoever ended it: a job whose hold was already captured (by an
/// earlier run of the same call, or a slow worker) learns [`Settlement::Captured`] from a release, and one
/// whose hold was released or expired learns [`Settlement::GaveBack`] from a capture. The job service stores
/// that outcome, so the job store always follows the ledger.
#[async_trait]
pub trait JobBilling: Send + Sync {
    /// Captures `amount` of `hold` (the rest is released). A hold whose TTL passed cannot be captured: it MUST
    /// be expired (the money goes back) and the answer is [`Settlement::GaveBack`].
    ///
    /// A repeated `key` MUST return the first outcome and MUST NOT move money again.
    ///
    /// # Errors
    /// [`JobBillingError::Rejected`] when the hold is unknown or holds less than `amount`;
    /// [`JobBillingError::Unavailable`].
    async fn capture(&self, hold: HoldId, amount: Money, key: &IdempotencyKey) -> Result<Settlement, JobBillingError>;

    /// Releases `hold` in full.
    ///
    /// A repeated `key` MUST return the first outcome and MUST NOT move money again.
    ///
    /// # Errors
    /// [`JobBillingError::Rejected`] when the hold is unknown; [`JobBillingError::Unavailable`].
    async fn release(&self, hold: HoldId, key: &IdempotencyKey) -> Result<Settlement, JobBillingError>;

    /// How `hold` ended, or `None` while it is still active. Moves no money.
    ///
    /// # Errors
    /// [`JobBillingError::Rejected`] when the hold is unknown; [`JobBillingError::Unavailable`].
    async fn settlement(&self, hold: HoldId) -> Result<Option<Settlement>, JobBillingError>;
}

/// What a user is told about a job.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum JobNotice {
    /// The result is ready and was paid for.
    Succeeded {
        /// The job.
        job: JobId,
        /// The result in the asset store, when the job has one ([`super::Job::result`]).
        result: Option<AssetKey>,
    },
    /// The job failed for good; the money was returned.
    Failed {
        /// The job.
        job: JobId,
        /// Why.
        reason: ErrorText,
    },
    /// The job was cancelled; the money was returned.
    Cancelled {
        /// The job.
        job: JobId,
    },
    /// Every attempt failed; the job is parked for an operator and the money was returned.
    DeadLettered {
        /// The job.
        job: JobId,
    },
}

impl JobNotice {
    /// The job the notice is about.
    #[must_use]
    pub fn job(&self) -> JobId {
        match self {
            JobNotice::Succeeded { job, .. }
            | JobNotice::Failed { job, .. }
            | JobNotice::Cancelled { job }
            | JobNotice::DeadLettered { job } => *job,
        }
    }
}

/// Why a notice was not handed over.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum JobNotifyError {
    /// The channel to the user could not be reached; the call may be repeated.
    #[error("notifier unavailable: {reason}")]
    Unavailable {
        /// Why.
        reason: String,
    },
}

/// Tells users what happened to their jobs.
#[async_trait]
pub trait JobNotifier: Send + Sync {
    /// Tells `user` about a job.
    ///
    /// A repeated notice of the same kind for the same job MUST NOT be delivered twice: the job service
    /// repeats notices when an operation is replayed, so that a notice lost to a crash is still delivered.
    ///
    /// # Errors
    /// [`JobNotifyError::Unavailable`].
    async fn notify(&self, user: UserId, notice: JobNotice) -> Result<(), JobNotifyError>;
}
