//! [`JobService`]: runs jobs through their life using only the ports.
//!
//! The store is the truth and the queue only dispatches: every move of a job is a compare-and-set in the
//! store, and a queue ticket whose job the store does not hold as `Queued` is dropped. Money moves only
//! through [`JobBilling`] with keys derived from the job id (`capture:<job>`, `release:<job>`), so a replayed
//! operation can repeat the call without moving money twice. Every operation can be replayed after a crash
//! or an error: it looks at the stored state first and finishes what is left.

use std::sync::Arc;
use std::time::Duration;

use super::model::{ErrorText, InvalidTransition, Job, JobEvent, JobState, WorkerId};
use super::ports::{
    Enqueued, JobBilling, JobBillingError, JobNotice, JobNotifier, JobNotifyError, JobQueue, JobQueueError, JobStore,
    JobStoreError, JobTicket, LIST_LIMIT_MAX, Lease, Settlement,
};
use super::retry::RetryPolicy;
use crate::generation::AssetKey;
use crate::ids::{IdempotencyKey, JobId, ProviderId};
use crate::money::Money;
use crate::time::{Clock, Timestamp};

/// The shortest lease a service may hand out.
pub const LEASE_MIN: Duration = Duration::from_secs(1);
/// The longest lease a service may hand out.
pub const LEASE_MAX: Duration = Duration::from_secs(60 * 60);
/// How many stale tickets one [`JobService::lease`] call drops before it gives up for this round.
pub const LEASE_SKIP_MAX: usize = 32;

/// The ports a [`JobService`] uses.
#[derive(Clone)]
pub struct JobPorts {
    /// The record of truth.
    pub store: Arc<dyn JobStore>,
    /// Dispatch.
    pub queue: Arc<dyn JobQueue>,
    /// Captures and releases.
    pub billing: Arc<dyn JobBilling>,
    /// Tells users.
    pub notifier: Arc<dyn JobNotifier>,
    /// The time.
    pub clock: Arc<dyn Clock>,
}

/// A job leased to a worker: the stored record as the lease left it, and the queue lease.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct LeasedJob {
    /// The job, `Running`; `job.attempts` fences this run.
    pub job: Job,
    /// The queue lease.
    pub lease: Lease,
}

/// What became of a failed attempt.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum FailOutcome {
    /// The job waits for another attempt, not before `job.not_before`.
    Retrying {
        /// The job, `Queued`.
        job: Job,
    },
    /// The job failed for good and its hold was released.
    GaveUp {
        /// The job, `Failed`.
        job: Job,
        /// `false` when the queue refused the dead letter (full, or the lease was already lost); the store
        /// still says `Failed`, so nothing is lost but the operator's list entry.
        dead_lettered: bool,
    },
}

/// How an `Unknown` job turned out, once the provider was asked.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Resolution {
    /// The provider did produce the result: capture.
    Succeeded {
        /// The provider that produced it.
        provider: ProviderId,
        /// Where the result was stored, when it was.
        result: Option<AssetKey>,
        /// What to charge: `None` for the job's price; otherwise at most it.
        amount: Option<Money>,
    },
    /// The provider never did the work: retry if attempts are left, else fail and release.
    NotDone,
    /// The provider did the work and it failed: fail and release.
    Failed {
        /// Why.
        reason: ErrorText,
    },
}

impl Resolution {
    fn event(&self) -> JobEvent {
        match self {
            Resolution::Succeeded { .. } => JobEvent::Succeed,
            Resolution::NotDone => JobEvent::Retry,
            Resolution::Failed { .. } => JobEvent::Fail,
        }
    }
}

/// What [`JobService::recover_expired_leases`] did.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct RecoveryReport {
    /// Queue leases put back to waiting.
    pub reclaimed_tickets: usize,
    /// Jobs moved to `Unknown` because their attempt had been dispatched to a provider.
    pub unknown: usize,
    /// Jobs put back to `Queued` because their attempt never reached a provider.
    pub requeued: usize,
    /// Jobs failed (hold released) because they had no attempts left.
    pub failed: usize,
    /// Jobs someone else moved first.
    pub skipped: usize,
    /// Jobs (`Running` past their lease, or `Unknown`) ended as the ledger had already settled their hold:
    /// `Succeeded` after a capture, `Failed` after a release or expiry.
    pub settled: usize,
}

/// What [`JobService::reconcile_queue`] did.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct ReconcileReport {
    /// `Queued` jobs looked at.
    pub examined: usize,
    /// Of those, jobs the queue did not have and now has.
    pub enqueued: usize,
}

/// Why a [`JobService`] cannot be built.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum JobConfigError {
    /// The lease duration is outside [`LEASE_MIN`]..=[`LEASE_MAX`].
    #[error("lease {lease:?} is outside {LEASE_MIN:?}..={LEASE_MAX:?}")]
    Lease {
        /// The refused duration.
        lease: Duration,
    },
}

/// Why a job operation failed. Grouped by what the caller can do: fix the call (`NotFound`, `Transition`,
/// `NotCancellable`), drop its stale work (`LeaseLost`), or retry later with the same arguments (the port
/// errors: every operation is safe to replay).
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum JobError {
    /// No job has this id.
    #[error("job {id} not found")]
    NotFound {
        /// The job.
        id: JobId,
    },
    /// The job's state does not allow the operation.
    #[error("job {id}: {source}")]
    Transition {
        /// The job.
        id: JobId,
        /// The refused move.
        source: InvalidTransition,
    },
    /// Only jobs that have not started can be cancelled.
    #[error("job {id} is {state} and can no longer be cancelled")]
    NotCancellable {
        /// The job.
        id: JobId,
        /// Its state.
        state: JobState,
    },
    /// The worker's run is over: its lease expired and the job moved on. The worker MUST drop its result.
    #[error("lease on job {id} attempt {attempt} was lost")]
    LeaseLost {
        /// The job.
        id: JobId,
        /// The worker's attempt.
        attempt: u32,
    },
    /// The store failed (a `Conflict` means someone else moved the job first).
    #[error(transparent)]
    Store(#[from] JobStoreError),
    /// The queue failed.
    #[error(transparent)]
    Queue(#[from] JobQueueError),
    /// Billing failed; the job state says how far the operation got, and a replay finishes it.
    #[error("billing for job {id}: {source}")]
    Billing {
        /// The job.
        id: JobId,
        /// What billing said.
        source: JobBillingError,
    },
    /// The user was not told; state and money are final, and a replay repeats the notice.
    #[error("notice for job {id}: {source}")]
    Notify {
        /// The job.
        id: JobId,
        /// What the notifier said.
        source: JobNotifyError,
    },
}

/// The application service of generation jobs.
pub struct JobService {
    ports: JobPorts,
    retry: RetryPolicy,
    lease: Duration,
}

impl JobService {
    /// A service over `ports`, retrying by `retry` and leasing jobs for `lease` at a time.
    ///
    /// # Errors
    /// [`JobConfigError::Lease`] when `lease` is outside [`LEASE_MIN`]..=[`LEASE_MAX`].
    pub fn new(ports: JobPorts, retry: RetryPolicy, lease: Duration) -> Result<JobService, JobConfigError> {
        if !(LEASE_MIN..=LEASE_MAX).contains(&lease) {
            return Err(JobConfigError::Lease { lease });
        }
        Ok(JobService { ports, retry, lease })
    }

    /// The stored job, or `None`.
    ///
    /// # Errors
    /// Store errors.
    pub async fn get(&self, id: JobId) -> Result<Option<Job>, JobError> {
        Ok(self.ports.store.get(id).await?)
    }

    /// Up to `limit` (at most [`LIST_LIMIT_MAX`]) jobs in `state` with ids above `after`, in id order.
    ///
    /// # Errors
    /// Store errors.
    pub async fn list(&self, state: JobState, after: Option<JobId>, limit: usize) -> Result<Vec<Job>, JobError> {
        Ok(self.ports.store.list_by_state(state, after, limit).await?)
    }

    /// Up to `limit` of `user`'s jobs below `before`, newest first ([`JobStore::list_for_user`]).
    ///
    /// # Errors
    /// Store errors.
    pub async fn list_for_user(
        &self,
        user: crate::ids::UserId,
        before: Option<JobId>,
        limit: usize,
    ) -> Result<Vec<Job>, JobError> {
        Ok(self.ports.store.list_for_user(user, before, limit).await?)
    }

    /// Persists a confirmed job as `Queued` and dispatches it. Idempotent: a repeated submit returns the stored
    /// job, and re-dispatches it only if it is still `Queued` (the queue ignores a duplicate).
    ///
    /// # Errors
    /// [`JobError::Transition`] unless the job is `Confirmed` (or already `Queued`); store and queue errors.
    pub async fn submit(&self, mut job: Job) -> Result<Job, JobError> {
        let now = self.now();
        if job.state != JobState::Queued {
            apply(&mut job, JobEvent::Enqueue, now)?;
        }
        let stored = self.ports.store.insert(&job).await?;
        if stored.state == JobState::Queued {
            self.ports.queue.enqueue(ticket(&stored)).await?;
        }
        Ok(stored)
    }

    /// Leases the next runnable job to `worker`: moves it `Queued -> Running` with one more attempt and the
    /// lease deadline. Tickets whose job the store does not hold as `Queued` are acked and skipped; a ticket
    /// that arrived before its job's retry delay is put back until then.
    ///
    /// # Errors
    /// Store and queue errors; the ticket then stays leased and comes back when the lease expires.
    pub async fn lease(&self, worker: &WorkerId) -> Result<Option<LeasedJob>, JobError> {
        for _ in 0..LEASE_SKIP_MAX {
            let now = self.now();
            let Some(lease) = self.ports.queue.dequeue(worker, now, self.lease).await? else {
                return Ok(None);
            };
            let Some(stored) = self.ports.store.get(lease.ticket.job).await? else {
                tolerate_lost(self.ports.queue.ack(&lease).await)?;
                continue;
            };
            if stored.state != JobState::Queued {
                tolerate_lost(self.ports.queue.ack(&lease).await)?;
                continue;
            }
            if stored.not_before > now {
                let why = ErrorText::new("retry delay not over");
                tolerate_lost(self.ports.queue.nack(&lease, now, Some(stored.not_before), &why).await)?;
                continue;
            }
            let mut running = stored;
            apply(&mut running, JobEvent::Start, now)?;
            running.attempts = running.attempts.saturating_add(1);
            running.provider = None;
            running.lease_deadline = Some(lease.deadline);
            running.lease_owner = Some(worker.clone());
            match self.ports.store.update(&running, JobState::Queued).await {
                Ok(()) => return Ok(Some(LeasedJob { job: running, lease })),
                Err(JobStoreError::Conflict { .. }) => tolerate_lost(self.ports.queue.ack(&lease).await)?,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(None)
    }

    /// Extends the lease in the queue and in the store.
    ///
    /// # Errors
    /// [`JobError::LeaseLost`] when the queue lease is gone or the job moved on; store and queue errors.
    pub async fn heartbeat(&self, leased: &LeasedJob) -> Result<LeasedJob, JobError> {
        let now = self.now();
        let lease = match self.ports.queue.heartbeat(&leased.lease, now, self.lease).await {
            Ok(lease) => lease,
            Err(JobQueueError::LeaseLost { .. }) => return Err(lease_lost(leased)),
            Err(e) => return Err(e.into()),
        };
        let mut job = self.load_running(leased).await?;
        job.lease_deadline = Some(lease.deadline);
        job.updated_at = now;
        self.ports.store.update(&job, JobState::Running).await?;
        Ok(LeasedJob { job, lease })
    }

    /// Records that this attempt is about to be sent to `provider`. Workers MUST call it before calling the
    /// provider: it is how [`JobService::recover_expired_leases`] knows an attempt may have reached one.
    ///
    /// # Errors
    /// [`JobError::LeaseLost`] when the job moved on; store errors.
    pub async fn record_dispatch(&self, leased: &LeasedJob, provider: ProviderId) -> Result<LeasedJob, JobError> {
        let mut job = leased.job.clone();
        job.provider = Some(provider);
        job.updated_at = self.now();
        self.update_running(leased, job).await
    }

    /// Stores `job`, the worker's copy of its running job with a change, if the store still holds the job
    /// running in the worker's attempt (the compare-and-set fences the attempt, so no read is needed first).
    async fn update_running(&self, leased: &LeasedJob, job: Job) -> Result<LeasedJob, JobError> {
        if leased.job.state != JobState::Running {
            return Err(lease_lost(leased));
        }
        match self.ports.store.update(&job, JobState::Running).await {
            Ok(()) => Ok(LeasedJob { job, lease: leased.lease.clone() }),
            Err(JobStoreError::Conflict { .. }) => Err(lease_lost(leased)),
            Err(e) => Err(e.into()),
        }
    }

    /// Records where this attempt's result was stored ([`Job::result`]), before it is charged: a job that ends
    /// `Succeeded` through recovery, after a crash between the capture and the job update, still names it.
    ///
    /// # Errors
    /// [`JobError::LeaseLost`] when the job moved on; store errors.
    pub async fn record_result(&self, leased: &LeasedJob, result: AssetKey) -> Result<LeasedJob, JobError> {
        let mut job = leased.job.clone();
        job.result = Some(result);
        job.updated_at = self.now();
        self.update_running(leased, job).await
    }

    /// The attempt produced the result: captures the job's price from its hold (key `capture:<job>`), marks
    /// it `Succeeded`, acks the ticket and tells the user. A repeated call never captures twice: the capture
    /// key is the same, and a job already `Succeeded` is not captured again.
    ///
    /// # Errors
    /// [`JobError::LeaseLost`] when another attempt owns the job; [`JobError::Transition`] when it is neither
    /// running nor unknown; billing, store, queue and notifier errors (replay to finish).
    pub async fn complete(&self, leased: &LeasedJob, provider: ProviderId) -> Result<Job, JobError> {
        self.complete_charging(leased, provider, leased.job.price).await
    }

    /// [`JobService::complete`] charging `amount` (at most the job's price; the rest of the hold goes back): a
    /// video priced per second is charged for the seconds produced. A replay MUST pass the same amount (the
    /// capture key is the job's).
    ///
    /// # Errors
    /// As [`JobService::complete`]; [`JobError::Billing`] (rejected) for an amount above the price or negative.
    pub async fn complete_charging(
        &self,
        leased: &LeasedJob,
        provider: ProviderId,
        amount: Money,
    ) -> Result<Job, JobError> {
        let stored = self.load_attempt(leased).await?;
        check_charge(&stored, amount)?;
        match stored.state {
            JobState::Succeeded => self.finish_success(stored, Some(&leased.lease)).await,
            JobState::Running | JobState::Unknown => {
                // The capture comes first, and the job follows what the ledger says: a stored `Succeeded`
                // proves the money was taken, and a hold that lapsed first makes the job `Failed`.
                let settlement = self.capture(&stored, amount).await?;
                self.settle(&stored, settlement, Some(provider), Some(&leased.lease)).await
            }
            other => Err(refused(stored.id, other, JobEvent::Succeed)),
        }
    }

    /// The attempt failed. If `retryable` and attempts are left, the job waits `backoff` and goes back to
    /// `Queued`; otherwise it is `Failed`, its hold released (key `release:<job>`), its ticket dead-lettered
    /// and the user told (`DeadLettered` when retries ran out, `Failed` when the error was final).
    ///
    /// # Errors
    /// As [`JobService::complete`]; replaying with the same arguments finishes a half-done call.
    pub async fn fail(&self, leased: &LeasedJob, error: ErrorText, retryable: bool) -> Result<FailOutcome, JobError> {
        self.fail_after(leased, error, retryable, None).await
    }

    /// [`JobService::fail`], waiting at least `at_least` before the next attempt when the provider asked for a
    /// pause (Gemini's `RetryInfo`), or the backoff when that is longer.
    ///
    /// # Errors
    /// As [`JobService::fail`].
    pub async fn fail_after(
        &self,
        leased: &LeasedJob,
        error: ErrorText,
        retryable: bool,
        at_least: Option<Duration>,
    ) -> Result<FailOutcome, JobError> {
        let now = self.now();
        let stored = self.load_attempt(leased).await?;
        let notice = if retryable {
            JobNotice::DeadLettered { job: stored.id }
        } else {
            JobNotice::Failed { job: stored.id, reason: error.clone() }
        };
        let job = match stored.state {
            JobState::Queued => {
                // A replay after the retry was stored: make sure the ticket went back.
                self.hand_back(&leased.lease, &stored, now, &error).await?;
                return Ok(FailOutcome::Retrying { job: stored });
            }
            JobState::Failed => self.finish_failure(stored, notice).await?,
            JobState::Running | JobState::Unknown => {
                if retryable && stored.attempts < self.retry.attempts_allowed(stored.max_attempts) {
                    let job = self.requeue_after(&stored, error.clone(), now, at_least).await?;
                    self.hand_back(&leased.lease, &job, now, &error).await?;
                    return Ok(FailOutcome::Retrying { job });
                }
                self.give_up(&stored, error.clone(), notice).await?
            }
            other => return Err(refused(stored.id, other, JobEvent::Fail)),
        };
        let dead_lettered = match self.ports.queue.nack(&leased.lease, now, None, &error).await {
            Ok(()) => true,
            Err(JobQueueError::LeaseLost { .. } | JobQueueError::QueueFull { .. }) => false,
            Err(e) => return Err(e.into()),
        };
        Ok(FailOutcome::GaveUp { job, dead_lettered })
    }

    /// The provider call ended without a known outcome: `Running -> Unknown`, and the ticket is acked. No money
    /// moves until [`JobService::resolve_unknown`].
    ///
    /// # Errors
    /// [`JobError::LeaseLost`], [`JobError::Transition`]; store and queue errors.
    pub async fn mark_unknown(&self, leased: &LeasedJob, note: ErrorText) -> Result<Job, JobError> {
        let stored = self.load_attempt(leased).await?;
        let job = if stored.state == JobState::Unknown {
            stored
        } else {
            let mut job = moved(&stored, JobEvent::OutcomeUnknown, self.now())?;
            job.last_error = Some(note);
            job.clear_lease();
            self.ports.store.update(&job, JobState::Running).await?;
            job
        };
        tolerate_lost(self.ports.queue.ack(&leased.lease).await)?;
        Ok(job)
    }

    /// Settles an `Unknown` job once the provider has been asked (by the job id, its provider-side key).
    /// `Succeeded` captures; `NotDone` retries (or fails and releases when no attempts are left); `Failed`
    /// fails and releases. Replaying the same resolution finishes a half-done call.
    ///
    /// # Errors
    /// [`JobError::NotFound`]; [`JobError::Transition`] when the job is not `Unknown` (nor already settled
    /// the same way); billing, store, queue and notifier errors.
    pub async fn resolve_unknown(&self, id: JobId, resolution: Resolution) -> Result<Job, JobError> {
        let now = self.now();
        let stored = self.load(id).await?;
        let notice = match &resolution {
            Resolution::Failed { reason } => JobNotice::Failed { job: id, reason: reason.clone() },
            _ => JobNotice::DeadLettered { job: id },
        };
        match (stored.state, &resolution) {
            (JobState::Unknown, _) => {}
            (JobState::Succeeded, Resolution::Succeeded { .. }) => return self.finish_success(stored, None).await,
            (JobState::Failed, Resolution::NotDone | Resolution::Failed { .. }) => {
                return self.finish_failure(stored, notice).await;
            }
            (JobState::Queued, Resolution::NotDone) => {
                self.ports.queue.enqueue(ticket(&stored)).await?;
                return Ok(stored);
            }
            (state, r) => return Err(refused(id, state, r.event())),
        }
        match resolution {
            Resolution::Succeeded { provider, result, amount } => {
                let amount = amount.unwrap_or(stored.price);
                check_charge(&stored, amount)?;
                let mut stored = stored;
                if result.is_some() && stored.result != result {
                    // Stored before the capture, as `record_result` does for a running attempt.
                    let mut with_result = stored.clone();
                    with_result.result = result;
                    with_result.updated_at = now;
                    self.ports.store.update(&with_result, JobState::Unknown).await?;
                    stored = with_result;
                }
                let settlement = self.capture(&stored, amount).await?;
                self.settle(&stored, settlement, Some(provider), None).await
            }
            Resolution::NotDone if stored.attempts < self.retry.attempts_allowed(stored.max_attempts) => {
                let error = stored.last_error.clone().unwrap_or_default();
                let job = self.requeue(&stored, error, now).await?;
                self.ports.queue.enqueue(ticket(&job)).await?;
                Ok(job)
            }
            Resolution::NotDone => {
                let error = ErrorText::new("outcome unknown, provider did not do it, no attempts left");
                self.give_up(&stored, error, notice).await
            }
            Resolution::Failed { reason } => self.give_up(&stored, reason, notice).await,
        }
    }

    /// Cancels a job that has not started, releases its hold (key `release:<job>`) and tells the user. A stale
    /// ticket left in the queue is dropped when leased. Replaying returns the cancelled job.
    ///
    /// A `Quoted` job holds no money, so its cancellation releases nothing; the service never stores one.
    ///
    /// # Errors
    /// [`JobError::NotFound`]; [`JobError::NotCancellable`] once the job is running or later; billing, store
    /// and notifier errors.
    pub async fn cancel(&self, id: JobId) -> Result<Job, JobError> {
        let stored = self.load(id).await?;
        let (job, held) = match stored.state {
            JobState::Cancelled => (stored, true),
            JobState::Quoted | JobState::Confirmed | JobState::Queued => {
                let mut job = moved(&stored, JobEvent::Cancel, self.now())?;
                job.clear_lease();
                self.ports.store.update(&job, stored.state).await?;
                (job, stored.state != JobState::Quoted)
            }
            state => return Err(JobError::NotCancellable { id, state }),
        };
        if held {
            self.release(&job).await?;
        }
        self.notify(&job, JobNotice::Cancelled { job: id }).await?;
        Ok(job)
    }

    /// Recovers up to `limit` jobs whose worker vanished: puts expired queue leases back, then for every
    /// `Running` job past its lease deadline applies **the rule**: an attempt with a recorded dispatch
    /// ([`JobService::record_dispatch`]) may have reached the provider, so it becomes `Unknown` and no money
    /// moves until it is resolved; an attempt without one never reached a provider, so it is retried after
    /// its backoff, or failed and released when no attempts are left.
    ///
    /// # Errors
    /// Store, queue, billing and notifier errors; jobs handled before the error stay handled.
    pub async fn recover_expired_leases(&self, limit: usize) -> Result<RecoveryReport, JobError> {
        let now = self.now();
        let mut report =
            RecoveryReport { reclaimed_tickets: self.ports.queue.reclaim_expired(now).await?, ..Default::default() };
        for stored in self.ports.store.expired_leases(now, limit).await? {
            match self.recover_one(&stored, now).await {
                Ok(Recovered::Unknown) => report.unknown += 1,
                Ok(Recovered::Requeued) => report.requeued += 1,
                Ok(Recovered::Failed) => report.failed += 1,
                Ok(Recovered::Settled) => report.settled += 1,
                Err(JobError::Store(JobStoreError::Conflict { .. })) => report.skipped += 1,
                Err(e) => return Err(e),
            }
        }
        let page = limit.clamp(1, LIST_LIMIT_MAX);
        for stored in self.ports.store.list_by_state(JobState::Unknown, None, page).await? {
            match self.settle_from_ledger(&stored).await {
                Ok(true) => report.settled += 1,
                Ok(false) => {}
                Err(JobError::Store(JobStoreError::Conflict { .. })) => report.skipped += 1,
                Err(e) => return Err(e),
            }
        }
        Ok(report)
    }

    /// Ends a job whose hold the ledger already settled (a crash fell between the ledger and the job store, or
    /// the reaper expired the hold of a job whose outcome stayed unknown): `Succeeded` after a capture,
    /// `Failed` once the money went back. Returns `false`, moving nothing, while the hold is still active.
    async fn settle_from_ledger(&self, stored: &Job) -> Result<bool, JobError> {
        let settled = self.ports.billing.settlement(stored.hold).await;
        match settled.map_err(|source| JobError::Billing { id: stored.id, source })? {
            Some(settlement) => {
                self.settle(stored, settlement, stored.provider.clone(), None).await?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Re-enqueues every `Queued` job the store has that the queue does not, walking the store in pages of
    /// `page_size` (at most [`LIST_LIMIT_MAX`]), each page's tickets in one [`JobQueue::enqueue_many`]: the queue
    /// can always be rebuilt from the store.
    ///
    /// # Errors
    /// Store and queue errors ([`JobQueueError::QueueFull`] when the queue cannot take them all); the first
    /// failed ticket of a page fails the call after the page's other tickets were offered.
    pub async fn reconcile_queue(&self, page_size: usize) -> Result<ReconcileReport, JobError> {
        let page = page_size.clamp(1, LIST_LIMIT_MAX);
        let mut report = ReconcileReport::default();
        let mut after = None;
        loop {
            let jobs = self.ports.store.list_by_state(JobState::Queued, after, page).await?;
            let tickets: Vec<JobTicket> = jobs.iter().map(ticket).collect();
            for outcome in self.ports.queue.enqueue_many(&tickets).await {
                report.examined += 1;
                if outcome? == Enqueued::Added {
                    report.enqueued += 1;
                }
            }
            match jobs.last() {
                Some(last) if jobs.len() >= page => after = Some(last.id),
                _ => return Ok(report),
            }
        }
    }

    /// Applies the recovery rule of [`JobService::recover_expired_leases`] to one expired job.
    async fn recover_one(&self, stored: &Job, now: Timestamp) -> Result<Recovered, JobError> {
        if self.settle_from_ledger(stored).await? {
            return Ok(Recovered::Settled);
        }
        if stored.provider.is_some() {
            let mut job = moved(stored, JobEvent::OutcomeUnknown, now)?;
            job.last_error = Some(ErrorText::new("lease expired after dispatch; outcome unknown"));
            job.clear_lease();
            self.ports.store.update(&job, JobState::Running).await?;
            Ok(Recovered::Unknown)
        } else if stored.attempts < self.retry.attempts_allowed(stored.max_attempts) {
            let job = self.requeue(stored, ErrorText::new("lease expired before dispatch"), now).await?;
            self.ports.queue.enqueue(ticket(&job)).await?;
            Ok(Recovered::Requeued)
        } else {
            let error = ErrorText::new("lease expired before dispatch; no attempts left");
            self.give_up(stored, error, JobNotice::DeadLettered { job: stored.id }).await?;
            Ok(Recovered::Failed)
        }
    }

    fn now(&self) -> Timestamp {
        self.ports.clock.now()
    }

    async fn load(&self, id: JobId) -> Result<Job, JobError> {
        self.ports.store.get(id).await?.ok_or(JobError::NotFound { id })
    }

    /// The stored job, if it is still in the worker's attempt.
    async fn load_attempt(&self, leased: &LeasedJob) -> Result<Job, JobError> {
        let stored = self.load(leased.job.id).await?;
        if stored.attempts != leased.job.attempts {
            return Err(lease_lost(leased));
        }
        Ok(stored)
    }

    /// The stored job, if it is still running the worker's attempt.
    async fn load_running(&self, leased: &LeasedJob) -> Result<Job, JobError> {
        let stored = self.load_attempt(leased).await?;
        if stored.state != JobState::Running {
            return Err(lease_lost(leased));
        }
        Ok(stored)
    }

    /// Stores `stored` back as `Queued`, waiting for its backoff.
    async fn requeue(&self, stored: &Job, error: ErrorText, now: Timestamp) -> Result<Job, JobError> {
        self.requeue_after(stored, error, now, None).await
    }

    /// [`Self::requeue`] waiting at least `at_least` (capped at the longest backoff the policy allows).
    async fn requeue_after(
        &self,
        stored: &Job,
        error: ErrorText,
        now: Timestamp,
        at_least: Option<Duration>,
    ) -> Result<Job, JobError> {
        let mut job = moved(stored, JobEvent::Retry, now)?;
        let backoff = self.retry.backoff(stored.id, stored.attempts);
        let wait = at_least.map_or(backoff, |asked| backoff.max(asked.min(crate::jobs::BACKOFF_CAP_MAX)));
        job.not_before = now.plus(wait);
        job.last_error = Some(error);
        job.clear_lease();
        self.ports.store.update(&job, stored.state).await?;
        Ok(job)
    }

    /// Gives a retried job's ticket back to the queue, due at `job.not_before`. When the lease is already gone
    /// (acked by `mark_unknown`, or reclaimed) the ticket is enqueued afresh; the queue ignores a duplicate.
    async fn hand_back(&self, lease: &Lease, job: &Job, now: Timestamp, error: &ErrorText) -> Result<(), JobError> {
        match self.ports.queue.nack(lease, now, Some(job.not_before), error).await {
            Ok(()) => Ok(()),
            Err(JobQueueError::LeaseLost { .. }) => {
                self.ports.queue.enqueue(ticket(job)).await.map(|_| ()).map_err(Into::into)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Releases the hold, then stores what the ledger says: `Failed` with the money back, or `Succeeded` when
    /// a slow attempt captured the hold first. The ledger moves first so that the job store always follows
    /// it: a crash in between leaves the job unsettled, and recovery ends it as the ledger says.
    async fn give_up(&self, stored: &Job, error: ErrorText, notice: JobNotice) -> Result<Job, JobError> {
        match self.release(stored).await? {
            Settlement::GaveBack => {
                let mut job = moved(stored, JobEvent::Fail, self.now())?;
                job.last_error = Some(error);
                job.clear_lease();
                self.ports.store.update(&job, stored.state).await?;
                self.notify(&job, notice).await?;
                Ok(job)
            }
            Settlement::Captured => self.settle(stored, Settlement::Captured, stored.provider.clone(), None).await,
        }
    }

    /// The money and notice after `Failed` is stored; safe to repeat.
    async fn finish_failure(&self, job: Job, notice: JobNotice) -> Result<Job, JobError> {
        if self.release(&job).await? == Settlement::Captured {
            // Every path moves the ledger before the store, so a stored failure with a captured hold is damage.
            let source =
                JobBillingError::Rejected { reason: "the hold was captured, yet the job is stored failed".into() };
            return Err(JobError::Billing { id: job.id, source });
        }
        self.notify(&job, notice).await?;
        Ok(job)
    }

    /// Stores the final state the ledger's settlement calls for, acks the ticket and tells the user: after a
    /// capture `Succeeded`, once the money went back `Failed` (nothing was charged). Safe to repeat.
    async fn settle(
        &self,
        stored: &Job,
        settlement: Settlement,
        provider: Option<ProviderId>,
        lease: Option<&Lease>,
    ) -> Result<Job, JobError> {
        let now = self.now();
        match settlement {
            Settlement::Captured => {
                let mut done = moved(stored, JobEvent::Succeed, now)?;
                done.provider = provider.or_else(|| stored.provider.clone());
                done.clear_lease();
                self.ports.store.update(&done, stored.state).await?;
                self.finish_success(done, lease).await
            }
            Settlement::GaveBack => {
                let reason = ErrorText::new("the hold ended before the result was charged; nothing was charged");
                let mut failed = moved(stored, JobEvent::Fail, now)?;
                failed.last_error = Some(reason.clone());
                failed.clear_lease();
                self.ports.store.update(&failed, stored.state).await?;
                if let Some(lease) = lease {
                    tolerate_lost(self.ports.queue.ack(lease).await)?;
                }
                self.notify(&failed, JobNotice::Failed { job: failed.id, reason }).await?;
                Ok(failed)
            }
        }
    }

    /// The queue and notice after `Succeeded` is stored; safe to repeat.
    async fn finish_success(&self, job: Job, lease: Option<&Lease>) -> Result<Job, JobError> {
        if let Some(lease) = lease {
            tolerate_lost(self.ports.queue.ack(lease).await)?;
        }
        self.notify(&job, JobNotice::Succeeded { job: job.id, result: job.result.clone() }).await?;
        Ok(job)
    }

    async fn capture(&self, job: &Job, amount: Money) -> Result<Settlement, JobError> {
        let key = IdempotencyKey::derived("capture", job.id).map_err(|e| key_error(job, &e))?;
        let result = self.ports.billing.capture(job.hold, amount, &key).await;
        result.map_err(|source| JobError::Billing { id: job.id, source })
    }

    async fn release(&self, job: &Job) -> Result<Settlement, JobError> {
        let key = IdempotencyKey::derived("release", job.id).map_err(|e| key_error(job, &e))?;
        let result = self.ports.billing.release(job.hold, &key).await;
        result.map_err(|source| JobError::Billing { id: job.id, source })
    }

    async fn notify(&self, job: &Job, notice: JobNotice) -> Result<(), JobError> {
        let result = self.ports.notifier.notify(job.user, notice).await;
        result.map_err(|source| JobError::Notify { id: job.id, source })
    }
}

/// Refuses a charge above the job's price (what the user confirmed) or below zero, before billing sees it.
fn check_charge(job: &Job, amount: Money) -> Result<(), JobError> {
    if amount.is_negative() || amount > job.price {
        let reason = format!("charge {amount} is outside 0..={} (the confirmed price)", job.price);
        return Err(JobError::Billing { id: job.id, source: JobBillingError::Rejected { reason } });
    }
    Ok(())
}

/// A key that could not be made: billing never saw the call.
fn key_error(job: &Job, e: &crate::ids::IdError) -> JobError {
    JobError::Billing { id: job.id, source: JobBillingError::Rejected { reason: format!("idempotency key: {e}") } }
}

/// What recovery did with one job.
enum Recovered {
    Unknown,
    Requeued,
    Failed,
    Settled,
}

/// The queue ticket of a `Queued` job. `enqueued_at` is when it became `Queued`, so a ticket rebuilt by
/// [`JobService::reconcile_queue`] keeps its place.
fn ticket(job: &Job) -> JobTicket {
    JobTicket { job: job.id, priority: job.priority, enqueued_at: job.updated_at, not_before: job.not_before }
}

fn apply(job: &mut Job, event: JobEvent, now: Timestamp) -> Result<(), JobError> {
    job.apply(event, now).map_err(|source| JobError::Transition { id: job.id, source })
}

fn moved(job: &Job, event: JobEvent, now: Timestamp) -> Result<Job, JobError> {
    let mut next = job.clone();
    apply(&mut next, event, now)?;
    Ok(next)
}

fn refused(id: JobId, from: JobState, event: JobEvent) -> JobError {
    JobError::Transition { id, source: InvalidTransition { from, event } }
}

fn lease_lost(leased: &LeasedJob) -> JobError {
    JobError::LeaseLost { id: leased.job.id, attempt: leased.job.attempts }
}

/// Treats a lost queue lease as done. The store has already moved the job, so a ticket that went back to
/// waiting is acked and skipped by the next [`JobService::lease`]; nothing is lost by ignoring it here.
fn tolerate_lost(result: Result<(), JobQueueError>) -> Result<(), JobError> {
    match result {
        Ok(()) | Err(JobQueueError::LeaseLost { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(all(test, feature = "testing"))]
mod tests;
