//! [`Pipeline`]: one leased job through route -> submit -> poll -> download -> store -> charge -> tell, with the
//! money right on every path.
//!
//! The rules it keeps:
//! - Money moves only through [`JobService`]: the capture key is the job's, so no path charges twice, and a
//!   capture after the hold was released or expired charges nothing (the job ends `Failed`, the result is
//!   recorded as [`AttemptOutcome::LateResult`] and reported).
//! - Before the provider is called the dispatch is recorded, so a worker that dies past that point leaves an
//!   attempt that recovery treats as unknown, never as not sent.
//! - A call whose answer is lost (a timeout) is an unknown outcome: the provider is asked about the attempt by
//!   its id before anything else happens; a provider that cannot be asked is given up on for this attempt.
//! - The router only offers providers whose cost for the job fits what the user confirmed (no job runs at a
//!   loss, and the user is never charged past the hold), and a job does not go back to a provider it already
//!   tried while another is available.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rust_decimal::Decimal;

use super::assets::{AssetError, AssetKey, AssetStore};
use super::attempts::{AttemptLog, AttemptOutcome, AttemptRecord};
use super::messenger::{Messenger, UserMessage};
use super::provider::{
    AttemptRef, DownloadLimits, GenerationProvider, GenerationTask, InputImage, Output, OutputMedia, ProviderError,
    Submission, TaskStatus,
};
use super::request::GenerationRequest;
use crate::ids::{JobId, ProviderId};
use crate::jobs::{
    ErrorText, FailOutcome, Job, JobBilling, JobError, JobService, JobState, JobStoreError, LeasedJob, Resolution,
};
use crate::money::{Money, UnitPrice, round_to_kopeck};
use crate::routing::{Offer, Outcome, Router};
use crate::time::{Clock, Sleep, Timestamp};

/// How the pipeline waits and what it accepts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PipelineConfig {
    /// Between two queries of a running attempt. Default: 2 s.
    pub poll_interval: Duration,
    /// The longest one attempt may take from submit to result before its outcome counts as unknown. Default:
    /// 15 minutes (Kling's 10 s pro videos take minutes).
    pub attempt_timeout: Duration,
    /// Bounds on downloading a result.
    pub download: DownloadLimits,
    /// Most calls in flight per provider from this pipeline; a provider at its limit is passed over. Absent: no
    /// limit.
    pub provider_concurrency: BTreeMap<ProviderId, usize>,
    /// A lease with less than this left is extended while the attempt waits. Default: 60 s.
    pub heartbeat_margin: Duration,
    /// How long a job waits for a provider at its concurrency limit before the attempt counts as failed.
    /// Default: 60 s.
    pub slot_wait_max: Duration,
}

impl Default for PipelineConfig {
    fn default() -> PipelineConfig {
        PipelineConfig {
            poll_interval: Duration::from_secs(2),
            attempt_timeout: Duration::from_secs(15 * 60),
            download: DownloadLimits::default(),
            provider_concurrency: BTreeMap::new(),
            heartbeat_margin: Duration::from_secs(60),
            slot_wait_max: Duration::from_secs(60),
        }
    }
}

/// Points a crash drill can stop a worker at (see [`FaultPoints`]).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum FaultPoint {
    /// The job is leased and running; its money is held; nothing was sent.
    Leased,
    /// The provider accepted the attempt (or answered it).
    Submitted,
    /// The provider's result is stored; nothing was charged.
    ProviderSucceeded,
    /// The hold was captured; the job record does not say so yet.
    Captured,
}

/// Hooks a crash drill arms; production runs [`NoFaults`]. `reached` may end the process.
pub trait FaultPoints: Send + Sync {
    /// `true` when `point` is armed (the pipeline then does the extra step that makes the point observable).
    fn armed(&self, point: FaultPoint) -> bool;
    /// Called when the pipeline passes `point`.
    fn reached(&self, point: FaultPoint);
}

/// No fault points armed.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoFaults;

impl FaultPoints for NoFaults {
    fn armed(&self, _: FaultPoint) -> bool {
        false
    }

    fn reached(&self, _: FaultPoint) {}
}

/// The ports a [`Pipeline`] runs through.
#[derive(Clone)]
pub struct PipelinePorts {
    /// The job life cycle (and, through it, the money).
    pub jobs: Arc<JobService>,
    /// The same billing the job service charges through; used directly only by an armed crash drill.
    pub billing: Arc<dyn JobBilling>,
    /// Ranking, health and breakers, shared by every task of the process.
    pub router: Arc<Mutex<Router>>,
    /// Every provider the catalogue names.
    pub providers: Vec<Arc<dyn GenerationProvider>>,
    /// Inputs and results.
    pub assets: Arc<dyn AssetStore>,
    /// One record per attempt.
    pub attempts: Arc<dyn AttemptLog>,
    /// Progress messages (the final ones go through the job service's notifier).
    pub messenger: Arc<dyn Messenger>,
    /// The time.
    pub clock: Arc<dyn Clock>,
    /// Waiting.
    pub sleep: Arc<dyn Sleep>,
    /// Crash drill hooks.
    pub faults: Arc<dyn FaultPoints>,
    /// Where the router's view of each provider is reported and the operators' model switches are read;
    /// `None`: neither. A board that cannot be read keeps the switches last read; a report that cannot be
    /// written is dropped (the next one replaces it). Neither fails a job.
    pub board: Option<Arc<dyn crate::routing::ProviderBoard>>,
}

/// How often the switches are read back from the board, at most.
const SWITCHES_EVERY: Duration = Duration::from_secs(2);
/// How often the router's view is reported to the board, at most.
const REPORT_EVERY: Duration = Duration::from_secs(5);

/// The models switched off, and when they were read.
#[derive(Default)]
struct Switches {
    read_at: Option<Timestamp>,
    off: std::collections::BTreeSet<(String, String)>,
}

/// How one run of a leased job ended.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum RunOutcome {
    /// Delivered and charged `charged`.
    Succeeded {
        /// The job, `Succeeded`.
        job: Job,
        /// What the user paid.
        charged: Money,
    },
    /// This attempt failed; the job waits for another.
    Retrying {
        /// The job, `Queued`.
        job: Job,
        /// Why.
        error: ErrorText,
    },
    /// The job failed for good; the money went back.
    Failed {
        /// The job, `Failed`.
        job: Job,
    },
    /// The attempt's outcome is unknown; the job waits, money held, until the provider is asked again.
    Unknown {
        /// The job, `Unknown`.
        job: Job,
    },
    /// The result came after the hold had ended: recorded, reported, not charged.
    LateResult {
        /// The job, `Failed`.
        job: Job,
    },
    /// Another run owns the job now (this lease expired); this run's work was dropped.
    LeaseLost {
        /// The job.
        job: JobId,
    },
}

/// Why a run stopped before the job reached a resting state. Every such run is safe to drop: the lease expires
/// and recovery finishes the job.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum PipelineError {
    /// A job operation failed.
    #[error(transparent)]
    Job(#[from] JobError),
    /// The attempt log failed.
    #[error("attempt log: {0}")]
    Attempts(String),
}

/// What became of an attempt that ended without a usable result.
enum Ended {
    /// A result: charge it.
    Output(Output),
    /// The provider failed or refused.
    Failed(ProviderError),
    /// No answer within the attempt's time: unknown.
    Unknown(ErrorText),
}

/// Runs leased jobs through the providers. Cheap to share.
pub struct Pipeline {
    ports: PipelinePorts,
    config: PipelineConfig,
    in_flight: Mutex<BTreeMap<ProviderId, usize>>,
    switches: Mutex<Switches>,
    reported_at: Mutex<Option<Timestamp>>,
}

/// Between two looks for a free provider slot.
const SLOT_POLL: Duration = Duration::from_millis(100);

/// What [`Pipeline::choose`] found.
enum Choice<'a> {
    /// This offer, its provider, and a slot in its in-flight count.
    Chosen(Offer, Arc<dyn GenerationProvider>, Slot<'a>),
    /// Every provider that could take the job is at its concurrency limit.
    Busy,
    /// No provider can take the job (none offered, open breakers, too dear).
    Nothing,
}

/// A slot in a provider's in-flight count, given back on drop.
struct Slot<'a> {
    pipeline: &'a Pipeline,
    provider: ProviderId,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut counts = self.pipeline.in_flight.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = counts.get_mut(&self.provider) {
            *n = n.saturating_sub(1);
        }
    }
}

impl Pipeline {
    /// A pipeline over `ports`.
    #[must_use]
    pub fn new(ports: PipelinePorts, config: PipelineConfig) -> Pipeline {
        Pipeline {
            ports,
            config,
            in_flight: Mutex::new(BTreeMap::new()),
            switches: Mutex::new(Switches::default()),
            reported_at: Mutex::new(None),
        }
    }

    /// The ports.
    #[must_use]
    pub fn ports(&self) -> &PipelinePorts {
        &self.ports
    }

    /// Runs one leased job to a resting state: succeeded, retrying, failed, or unknown.
    ///
    /// # Errors
    /// [`PipelineError`] when a store failed midway; the job's lease then expires and recovery finishes it.
    pub async fn run(&self, leased: LeasedJob) -> Result<RunOutcome, PipelineError> {
        let job_id = leased.job.id;
        let worker = leased.job.lease_owner.as_ref().map_or_else(|| "worker".to_owned(), |w| w.as_str().to_owned());
        let outcome = self.run_inner(leased).await;
        self.report(&worker).await;
        match outcome {
            Err(PipelineError::Job(JobError::LeaseLost { .. } | JobError::Store(JobStoreError::Conflict { .. }))) => {
                Ok(RunOutcome::LeaseLost { job: job_id })
            }
            other => other,
        }
    }

    async fn run_inner(&self, leased: LeasedJob) -> Result<RunOutcome, PipelineError> {
        self.ports.faults.reached(FaultPoint::Leased);
        let Some(request) = leased.job.request.clone() else {
            let error = ErrorText::new("the job has no generation request");
            return self.give_up_or_retry(&leased, error, false).await;
        };
        if leased.job.attempts == 1 {
            // Best effort: a lost progress message is not worth failing the job over.
            let _ = self.ports.messenger.send(leased.job.user, UserMessage::Working { job: leased.job.id }).await;
        }
        let images = match self.load_inputs(&request).await {
            Ok(images) => images,
            Err((error, retryable)) => return self.give_up_or_retry(&leased, error, retryable).await,
        };
        let tried = self.tried_providers(&leased.job).await?;
        self.read_switches().await;
        // Providers at their concurrency limit free up as their calls end: wait for a slot (keeping the lease)
        // rather than spend one of the job's attempts.
        let waited_until = self.now().plus(self.config.slot_wait_max);
        let mut leased = leased;
        let (offer, provider, slot) = loop {
            match self.choose(&leased.job, &request, &tried) {
                Choice::Chosen(offer, provider, slot) => break (offer, provider, slot),
                Choice::Busy if self.now() < waited_until => {
                    self.ports.sleep.sleep(SLOT_POLL).await;
                    leased = self.keep_lease(leased).await?;
                }
                Choice::Busy | Choice::Nothing => {
                    let error = ErrorText::new("no provider can take this job now (all unavailable, busy or too dear)");
                    return self.give_up_or_retry(&leased, error, true).await;
                }
            }
        };
        let attempt = AttemptRef { job: leased.job.id, attempt: leased.job.attempts };
        let leased = self.ports.jobs.record_dispatch(&leased, provider.id().clone()).await?;
        let started = self.now();
        // Recorded once the attempt ends (the job's dispatch record says it may have reached the provider).
        let mut record = AttemptRecord {
            job: attempt.job,
            attempt: attempt.attempt,
            provider: provider.id().clone(),
            model: offer.model().to_owned(),
            outcome: AttemptOutcome::Dispatched,
            cost: Money::ZERO,
            charged: Money::ZERO,
            started_at: started,
            ended_at: None,
            error: None,
        };
        let task = task_of(&request, offer.model(), images);
        let (leased, ended) = self.attempt(leased, provider.as_ref(), &attempt, &task).await?;
        drop(slot);
        let latency_ms = u64::try_from(self.now().since(started).as_millis()).unwrap_or(u64::MAX);
        match ended {
            Ended::Output(output) => {
                self.health(provider.id(), Outcome::Success { latency_ms });
                self.deliver(leased, provider.as_ref(), &request, output, record).await
            }
            Ended::Failed(error) => {
                // A refusal is the user's doing: the provider worked as it should.
                let outcome = if error.is_users_fault() { Outcome::Success { latency_ms } } else { Outcome::Failure };
                self.health(provider.id(), outcome);
                record.outcome = if error.is_users_fault() { AttemptOutcome::Rejected } else { AttemptOutcome::Failed };
                record.ended_at = Some(self.now());
                record.error = Some(error.text());
                self.record(&record).await?;
                let retry_after = match &error {
                    ProviderError::Retryable { retry_after, .. } => *retry_after,
                    _ => None,
                };
                self.fail(&leased, error.text(), !error.is_users_fault(), retry_after).await
            }
            Ended::Unknown(note) => {
                self.health(provider.id(), Outcome::Failure);
                record.error = Some(note.clone());
                self.record(&record).await?;
                let job = self.ports.jobs.mark_unknown(&leased, note).await?;
                Ok(RunOutcome::Unknown { job })
            }
        }
    }

    /// Submits and waits for the attempt's result, within the attempt's time.
    async fn attempt(
        &self,
        mut leased: LeasedJob,
        provider: &dyn GenerationProvider,
        attempt: &AttemptRef,
        task: &GenerationTask,
    ) -> Result<(LeasedJob, Ended), PipelineError> {
        let deadline = self.now().plus(self.config.attempt_timeout);
        match provider.submit(attempt, task).await {
            Ok(Submission::Done(output)) => {
                self.ports.faults.reached(FaultPoint::Submitted);
                return Ok((leased, Ended::Output(output)));
            }
            Ok(Submission::Accepted) => self.ports.faults.reached(FaultPoint::Submitted),
            Err(ProviderError::Timeout { reason }) if provider.can_query() => {
                // The provider may have it: ask before anything else.
                match provider.query(attempt, task).await {
                    Ok(TaskStatus::NotFound) => {
                        let error = ProviderError::Retryable { reason, retry_after: None };
                        return Ok((leased, Ended::Failed(error)));
                    }
                    Ok(status) => {
                        if let Some(ended) = self.settled(status) {
                            return Ok((leased, ended));
                        }
                    }
                    // Still unknown; the polls below keep asking.
                    Err(_) => {}
                }
            }
            Err(ProviderError::Timeout { reason }) => {
                // A synchronous provider cannot be asked: this attempt is over. The user pays at most once
                // whatever it did; what it may have charged us is a cost of the attempt.
                let error = ProviderError::Retryable { reason, retry_after: None };
                return Ok((leased, Ended::Failed(error)));
            }
            Err(e) => return Ok((leased, Ended::Failed(e))),
        }
        let mut last_progress = None;
        loop {
            if self.now() >= deadline {
                let note =
                    ErrorText::new(&format!("no result within {:?}; outcome unknown", self.config.attempt_timeout));
                return Ok((leased, Ended::Unknown(note)));
            }
            self.ports.sleep.sleep(self.config.poll_interval).await;
            leased = self.keep_lease(leased).await?;
            match provider.query(attempt, task).await {
                Ok(TaskStatus::Pending { progress_percent: Some(p) }) if last_progress != Some(p) => {
                    last_progress = Some(p);
                    let message = UserMessage::Progress { job: attempt.job, percent: p.min(100) };
                    let _ = self.ports.messenger.send(leased.job.user, message).await;
                }
                Ok(TaskStatus::NotFound) => {
                    let reason = ErrorText::new("the provider no longer knows the attempt it accepted");
                    return Ok((leased, Ended::Failed(ProviderError::Garbage { reason })));
                }
                Ok(status) => {
                    if let Some(ended) = self.settled(status) {
                        return Ok((leased, ended));
                    }
                }
                // A failed query says nothing about the attempt: keep asking until the deadline.
                Err(_) => {}
            }
        }
    }

    /// The end an attempt's status means, or `None` while it runs.
    fn settled(&self, status: TaskStatus) -> Option<Ended> {
        match status {
            TaskStatus::Pending { .. } => None,
            TaskStatus::Done(output) => Some(Ended::Output(output)),
            TaskStatus::Failed(e) => Some(Ended::Failed(e)),
            TaskStatus::NotFound => Some(Ended::Failed(ProviderError::Garbage {
                reason: ErrorText::new("the provider has no such attempt"),
            })),
        }
    }

    /// Downloads and stores the result, then charges and tells the user (through the job service's notifier).
    async fn deliver(
        &self,
        leased: LeasedJob,
        provider: &dyn GenerationProvider,
        request: &GenerationRequest,
        output: Output,
        mut record: AttemptRecord,
    ) -> Result<RunOutcome, PipelineError> {
        record.cost = output.cost;
        let stored = match self.store_result(leased.job.id, provider, &output).await {
            Ok(key) => key,
            Err(error) => {
                record.outcome = AttemptOutcome::Failed;
                record.ended_at = Some(self.now());
                record.error = Some(error.text());
                self.record(&record).await?;
                let retryable = true;
                return self.fail(&leased, error.text(), retryable, None).await;
            }
        };
        let leased = self.ports.jobs.record_result(&leased, stored).await?;
        self.ports.faults.reached(FaultPoint::ProviderSucceeded);
        let charge = charge_for(&leased.job, request, &output);
        if self.ports.faults.armed(FaultPoint::Captured) {
            // The drill's extra step: the capture the job service is about to make, made first under the same
            // key, so the process can stop between the ledger and the job record.
            if let Ok(key) = crate::ids::IdempotencyKey::derived("capture", leased.job.id) {
                let _ = self.ports.billing.capture(leased.job.hold, charge, &key).await;
                self.ports.faults.reached(FaultPoint::Captured);
            }
        }
        let job = self.ports.jobs.complete_charging(&leased, provider.id().clone(), charge).await?;
        record.ended_at = Some(self.now());
        if job.state == JobState::Succeeded {
            record.outcome = AttemptOutcome::Succeeded;
            record.charged = charge;
            self.record(&record).await?;
            Ok(RunOutcome::Succeeded { job, charged: charge })
        } else {
            record.outcome = AttemptOutcome::LateResult;
            record.error = Some(ErrorText::new("result arrived after the hold ended; not charged"));
            self.record(&record).await?;
            Ok(RunOutcome::LateResult { job })
        }
    }

    /// Puts the result in the asset store under the job's result key.
    async fn store_result(
        &self,
        job: JobId,
        provider: &dyn GenerationProvider,
        output: &Output,
    ) -> Result<AssetKey, ProviderError> {
        let media = match &output.media {
            OutputMedia::Inline(media) => media.clone(),
            OutputMedia::Remote(remote) => provider.download(remote, &self.config.download).await?,
        };
        let key = AssetKey::for_result(job, &media.mime);
        match self.ports.assets.put(&key, media.bytes).await {
            Ok(_) => {
                // The provider's id of the result, for a later continuation of it (best effort: the result
                // stands without it).
                if let Some(reference) = &output.provider_ref {
                    let _ = self.ports.assets.put(&key.provider_ref(), reference.as_bytes().to_vec()).await;
                }
                Ok(key)
            }
            Err(AssetError::TooLarge { size, max }) => Err(ProviderError::Garbage {
                reason: ErrorText::new(&format!("result of {size} bytes is over the store's limit of {max}")),
            }),
            Err(AssetError::Unavailable { reason }) => Err(ProviderError::Retryable {
                reason: ErrorText::new(&format!("asset store: {reason}")),
                retry_after: None,
            }),
        }
    }

    /// Settles an `Unknown` job: asks its provider about the attempt, and charges, retries or fails as the
    /// answer says. A provider that cannot be asked means the attempt did not happen as far as money goes
    /// (the user pays at most once, for an attempt that delivered). Returns `None` while the provider says
    /// the attempt is still running.
    ///
    /// # Errors
    /// Job, store and attempt log errors; a replay finishes the work.
    pub async fn resolve(&self, job: &Job) -> Result<Option<Job>, PipelineError> {
        if job.state != JobState::Unknown {
            return Ok(None);
        }
        let provider = job.provider.as_ref().and_then(|p| self.provider(p));
        let mut done = None;
        let resolution = match (provider, &job.request) {
            (Some(provider), Some(request)) if provider.can_query() => {
                let attempt = AttemptRef { job: job.id, attempt: job.attempts };
                let model = self.model_of(provider.id(), request).unwrap_or_default();
                let task = task_of(request, &model, Vec::new());
                match provider.query(&attempt, &task).await {
                    Ok(TaskStatus::Pending { .. }) | Err(_) => return Ok(None),
                    Ok(TaskStatus::NotFound) => Resolution::NotDone,
                    Ok(TaskStatus::Failed(e)) if e.is_users_fault() => Resolution::Failed { reason: e.text() },
                    Ok(TaskStatus::Failed(_)) => Resolution::NotDone,
                    Ok(TaskStatus::Done(output)) => match self.store_result(job.id, provider.as_ref(), &output).await {
                        Ok(key) => {
                            let amount = charge_for(job, request, &output);
                            done = Some((provider.id().clone(), model, output.cost, amount));
                            Resolution::Succeeded {
                                provider: provider.id().clone(),
                                result: Some(key),
                                amount: Some(amount),
                            }
                        }
                        Err(_) => return Ok(None),
                    },
                }
            }
            _ => Resolution::NotDone,
        };
        let resolved = self.ports.jobs.resolve_unknown(job.id, resolution).await?;
        if let Some((provider, model, cost, amount)) = done {
            let succeeded = resolved.state == JobState::Succeeded;
            self.record(&AttemptRecord {
                job: job.id,
                attempt: job.attempts,
                provider,
                model,
                outcome: if succeeded { AttemptOutcome::Succeeded } else { AttemptOutcome::LateResult },
                cost,
                charged: if succeeded { amount } else { Money::ZERO },
                started_at: job.updated_at,
                ended_at: Some(self.now()),
                error: None,
            })
            .await?;
        }
        Ok(Some(resolved))
    }

    /// The model of `provider`'s offer for the request, from the catalogue.
    fn model_of(&self, provider: &ProviderId, request: &GenerationRequest) -> Option<String> {
        let router = self.ports.router.lock().unwrap_or_else(PoisonError::into_inner);
        let offers = router.catalogue().offers_for(request.capability);
        let mut mine = offers.filter(|o| o.provider() == provider);
        let wanted = |o: &&Offer| request.model.as_deref().is_none_or(|m| m == o.model());
        mine.find(wanted).map(|o| o.model().to_owned())
    }

    /// Fails the attempt through the job service (retry after backoff, or give up and release).
    async fn fail(
        &self,
        leased: &LeasedJob,
        error: ErrorText,
        retryable: bool,
        retry_after: Option<Duration>,
    ) -> Result<RunOutcome, PipelineError> {
        let outcome = self.ports.jobs.fail_after(leased, error.clone(), retryable, retry_after).await?;
        Ok(match outcome {
            FailOutcome::Retrying { job } => RunOutcome::Retrying { job, error },
            FailOutcome::GaveUp { job, .. } => RunOutcome::Failed { job },
        })
    }

    async fn give_up_or_retry(
        &self,
        leased: &LeasedJob,
        error: ErrorText,
        retryable: bool,
    ) -> Result<RunOutcome, PipelineError> {
        self.fail(leased, error, retryable, None).await
    }

    /// Loads the request's input images; `(why, retryable)` when one cannot be had.
    async fn load_inputs(&self, request: &GenerationRequest) -> Result<Vec<InputImage>, (ErrorText, bool)> {
        let mut images = Vec::with_capacity(request.images.len());
        for key in &request.images {
            match self.ports.assets.get(key).await {
                Ok(Some(bytes)) => images.push(InputImage { mime: key.mime().to_owned(), bytes }),
                Ok(None) => return Err((ErrorText::new(&format!("input image {key} is gone")), false)),
                Err(e) => return Err((ErrorText::new(&format!("input image {key}: {e}")), true)),
            }
        }
        Ok(images)
    }

    /// Providers this job already tried (from its attempt records), so that a retry goes elsewhere first.
    async fn tried_providers(&self, job: &Job) -> Result<Vec<ProviderId>, PipelineError> {
        if job.attempts <= 1 {
            return Ok(Vec::new());
        }
        let records = self.ports.attempts.for_job(job.id).await.map_err(|e| PipelineError::Attempts(e.to_string()))?;
        Ok(records.into_iter().filter(|r| r.attempt < job.attempts).map(|r| r.provider).collect())
    }

    /// The best offer for the job whose provider is wired, admits a call, has room and whose cost fits what
    /// the user confirmed; providers tried before come last.
    fn choose(&self, job: &Job, request: &GenerationRequest, tried: &[ProviderId]) -> Choice<'_> {
        let now = self.now();
        let units = u64::from(request.duration_s.unwrap_or(1).max(1));
        let off = self.switches.lock().unwrap_or_else(PoisonError::into_inner).off.clone();
        let mut router = self.ports.router.lock().unwrap_or_else(PoisonError::into_inner);
        let plan = router.failover_plan(request.capability, now, job.price, None, |offer| {
            let wanted = request.model.as_deref().is_none_or(|m| m == offer.model());
            if !wanted || off.contains(&(offer.provider().as_str().to_owned(), offer.model().to_owned())) {
                return None;
            }
            offer.unit_cost().times(units).and_then(|cost| round_to_kopeck(cost).ok())
        });
        let (fresh, again): (Vec<_>, Vec<_>) =
            plan.steps.into_iter().partition(|step| !tried.contains(step.candidate.offer.provider()));
        let mut busy = false;
        for step in fresh.into_iter().chain(again) {
            let offer = step.candidate.offer;
            let Some(provider) = self.provider(offer.provider()) else { continue };
            let Some(slot) = self.take_slot(offer.provider()) else {
                busy = true;
                continue;
            };
            match router.acquire(offer.provider(), now) {
                Ok(permit) if permit.is_allowed() => return Choice::Chosen(offer, provider, slot),
                _ => drop(slot),
            }
        }
        if busy { Choice::Busy } else { Choice::Nothing }
    }

    /// Reads the model switches from the board when the last read is older than [`SWITCHES_EVERY`].
    async fn read_switches(&self) {
        let Some(board) = &self.ports.board else { return };
        let now = self.now();
        let due = self
            .switches
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .read_at
            .is_none_or(|at| now.since(at) >= SWITCHES_EVERY);
        if !due {
            return;
        }
        if let Ok(models) = board.models().await {
            let off = models.into_iter().filter(|m| !m.enabled).map(|m| (m.provider.as_str().to_owned(), m.model));
            let mut switches = self.switches.lock().unwrap_or_else(PoisonError::into_inner);
            switches.off = off.collect();
            switches.read_at = Some(now);
        }
    }

    /// Reports the router's view of every provider to the board when the last report is older than
    /// [`REPORT_EVERY`]: breaker, best score, latency average, and the recent window's successes.
    async fn report(&self, worker: &str) {
        let Some(board) = &self.ports.board else { return };
        let now = self.now();
        {
            let mut at = self.reported_at.lock().unwrap_or_else(PoisonError::into_inner);
            if at.is_some_and(|at| now.since(at) < REPORT_EVERY) {
                return;
            }
            *at = Some(now);
        }
        let statuses = self.statuses(now, worker);
        // A report that cannot be written is dropped: the next one replaces it.
        let _ = board.publish(&statuses).await;
    }

    /// The router's view of every provider of the catalogue at `now`.
    fn statuses(&self, now: Timestamp, worker: &str) -> Vec<crate::routing::ProviderStatus> {
        use crate::routing::{BreakerView, Capability, ProviderStatus};
        let router = self.ports.router.lock().unwrap_or_else(PoisonError::into_inner);
        let mut best: BTreeMap<ProviderId, rust_decimal::Decimal> = BTreeMap::new();
        for capability in [
            Capability::TextToImage,
            Capability::ImageEdit,
            Capability::TextToVideo,
            Capability::ImageToVideo,
            Capability::VideoToVideo,
        ] {
            for c in router.rank(capability, now) {
                let score = best.entry(c.offer.provider().clone()).or_insert(c.score);
                *score = (*score).max(c.score);
            }
        }
        let reporter: String = worker.chars().take(crate::routing::REPORTER_LEN_MAX / 4).collect();
        router
            .catalogue()
            .providers()
            .into_iter()
            .map(|provider| {
                let stats = router.stats(provider);
                let outcomes = stats.map_or(0, |s| u32::try_from(s.outcomes()).unwrap_or(u32::MAX));
                let successes = stats
                    .and_then(|s| s.success_rate())
                    .map(|r| (r.value() * rust_decimal::Decimal::from(outcomes)).round())
                    .and_then(|d| u32::try_from(d.mantissa()).ok())
                    .unwrap_or(0)
                    .min(outcomes);
                ProviderStatus {
                    provider: provider.clone(),
                    breaker: router.breaker(provider).map_or(BreakerView::Closed, |b| BreakerView::of(b.state_at(now))),
                    score: best.get(provider).copied(),
                    latency_ewma_ms: stats.and_then(|s| s.latency_ewma_ms()),
                    successes,
                    outcomes,
                    reported_by: reporter.clone(),
                    at: now,
                }
            })
            .collect()
    }

    fn take_slot(&self, provider: &ProviderId) -> Option<Slot<'_>> {
        let mut counts = self.in_flight.lock().unwrap_or_else(PoisonError::into_inner);
        let n = counts.entry(provider.clone()).or_insert(0);
        if self.config.provider_concurrency.get(provider).is_some_and(|max| *n >= *max) {
            return None;
        }
        *n += 1;
        Some(Slot { pipeline: self, provider: provider.clone() })
    }

    fn provider(&self, id: &ProviderId) -> Option<Arc<dyn GenerationProvider>> {
        self.ports.providers.iter().find(|p| p.id() == id).cloned()
    }

    fn health(&self, provider: &ProviderId, outcome: Outcome) {
        let now = self.now();
        let mut router = self.ports.router.lock().unwrap_or_else(PoisonError::into_inner);
        // A provider missing from the catalogue was never chosen; nothing to record.
        let _ = router.record_outcome(provider, outcome, now);
    }

    /// Extends the lease when it runs low.
    async fn keep_lease(&self, leased: LeasedJob) -> Result<LeasedJob, PipelineError> {
        if leased.lease.deadline > self.now().plus(self.config.heartbeat_margin) {
            return Ok(leased);
        }
        Ok(self.ports.jobs.heartbeat(&leased).await?)
    }

    async fn record(&self, record: &AttemptRecord) -> Result<(), PipelineError> {
        self.ports.attempts.record(record).await.map_err(|e| PipelineError::Attempts(e.to_string()))
    }

    fn now(&self) -> Timestamp {
        self.ports.clock.now()
    }
}

/// The provider call for `request` on `model`, with its inputs loaded.
fn task_of(request: &GenerationRequest, model: &str, images: Vec<InputImage>) -> GenerationTask {
    GenerationTask {
        capability: request.capability,
        model: model.to_owned(),
        prompt: request.prompt.clone(),
        images,
        source_video: request.source_video.clone(),
        aspect_ratio: request.aspect_ratio.clone(),
        image_size: request.image_size,
        duration_s: request.duration_s,
        mode: request.mode,
    }
}

/// What the user pays for `output`: the job's price for an image; for a video priced per second, the price per
/// second of the quote times the whole seconds produced (rounded up to the second, then to the kopeck, half
/// away from zero), never above the price confirmed.
#[must_use]
pub fn charge_for(job: &Job, request: &GenerationRequest, output: &Output) -> Money {
    let (Some(seconds), Some(produced_ms)) = (request.duration_s, output.duration_ms) else { return job.price };
    if seconds == 0 {
        return job.price;
    }
    let produced_s = produced_ms.div_ceil(1_000);
    let per_second = UnitPrice::from_kopecks(job.price.to_kopecks_decimal() / Decimal::from(seconds));
    let charged = per_second.and_then(|rate| crate::usage::metered_amount(rate, produced_s).ok());
    charged.map_or(job.price, |c| c.min(job.price))
}

#[cfg(all(test, feature = "testing"))]
mod tests;
