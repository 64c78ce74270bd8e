//! The worker loop: leases jobs up to a concurrency, runs each through the [`Pipeline`], settles jobs whose
//! outcome was unknown, and on stop finishes what it has in flight (or leaves it to lease expiry).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rei_core::generation::{Pipeline, PipelineError, RunOutcome};
use rei_core::jobs::{JobService, JobState, WorkerId};
use tokio::task::JoinSet;

/// Most unknown jobs one pass asks about.
const UNKNOWN_PASS_MAX: usize = 100;

/// How a worker runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerOptions {
    /// The name its leases carry.
    pub name: WorkerId,
    /// Jobs run at once by this process. Default: 16.
    pub concurrency: usize,
    /// The longest wait between two looks at an empty queue (the wait doubles from 10 ms up to this). Default:
    /// 500 ms.
    pub idle_poll_max: Duration,
    /// Between two passes over jobs whose outcome is unknown. Default: 30 s.
    pub unknown_every: Duration,
    /// After a stop, how long jobs in flight may take to finish; those still running then are dropped and come
    /// back to another worker when their lease expires. Default: 30 s.
    pub grace: Duration,
}

impl WorkerOptions {
    /// The defaults for a worker called `name`.
    #[must_use]
    pub fn named(name: WorkerId) -> WorkerOptions {
        WorkerOptions {
            name,
            concurrency: 16,
            idle_poll_max: Duration::from_millis(500),
            unknown_every: Duration::from_secs(30),
            grace: Duration::from_secs(30),
        }
    }
}

/// What a worker did, counted by outcome.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WorkerReport {
    /// Jobs delivered and charged.
    pub succeeded: u64,
    /// Attempts that failed and left the job for another attempt.
    pub retried: u64,
    /// Jobs failed for good, money back.
    pub failed: u64,
    /// Attempts whose outcome was unknown at the end of their time.
    pub unknown: u64,
    /// Results that came after the hold ended: recorded, not charged.
    pub late_results: u64,
    /// Runs dropped because another run owned the job.
    pub lease_lost: u64,
    /// Runs that stopped on a store error (their jobs are recovered by lease expiry).
    pub errors: u64,
    /// Unknown jobs settled by asking their provider.
    pub resolved: u64,
    /// Runs still in flight when the grace after a stop ran out.
    pub abandoned: u64,
}

impl WorkerReport {
    fn count(&mut self, outcome: &Result<RunOutcome, PipelineError>) {
        match outcome {
            Ok(RunOutcome::Succeeded { .. }) => self.succeeded += 1,
            Ok(RunOutcome::Retrying { .. }) => self.retried += 1,
            Ok(RunOutcome::Failed { .. }) => self.failed += 1,
            Ok(RunOutcome::Unknown { .. }) => self.unknown += 1,
            Ok(RunOutcome::LateResult { .. }) => self.late_results += 1,
            Ok(RunOutcome::LeaseLost { .. }) => self.lease_lost += 1,
            Err(_) => self.errors += 1,
        }
    }
}

/// Runs the worker loop until `stop` completes, then finishes in-flight jobs within the grace.
///
/// `on_outcome` sees every run's outcome as it ends (the binary logs them).
pub async fn run_worker(
    pipeline: Arc<Pipeline>,
    options: WorkerOptions,
    stop: impl Future<Output = ()>,
    on_outcome: impl Fn(&Result<RunOutcome, PipelineError>) + Send + Sync + 'static,
) -> WorkerReport {
    let jobs: Arc<JobService> = pipeline.ports().jobs.clone();
    let concurrency = options.concurrency.max(1);
    let mut report = WorkerReport::default();
    let mut running: JoinSet<Result<RunOutcome, PipelineError>> = JoinSet::new();
    let mut idle = Duration::from_millis(10);
    let mut next_unknown = tokio::time::Instant::now();
    tokio::pin!(stop);
    loop {
        while let Some(done) = running.try_join_next() {
            let outcome = done.unwrap_or_else(|e| Err(PipelineError::Attempts(format!("run panicked: {e}"))));
            on_outcome(&outcome);
            report.count(&outcome);
        }
        if tokio::time::Instant::now() >= next_unknown {
            report.resolved += resolve_unknowns(&pipeline).await;
            next_unknown = tokio::time::Instant::now() + options.unknown_every;
        }
        let mut took = false;
        while running.len() < concurrency {
            match jobs.lease(&options.name).await {
                Ok(Some(leased)) => {
                    let pipeline = pipeline.clone();
                    running.spawn(async move { pipeline.run(leased).await });
                    took = true;
                }
                Ok(None) => break,
                // The queue or store is down: wait as if idle, then try again.
                Err(_) => break,
            }
        }
        idle = if took { Duration::from_millis(10) } else { (idle * 2).min(options.idle_poll_max) };
        let wait = if running.len() >= concurrency { options.idle_poll_max } else { idle };
        tokio::select! {
            () = &mut stop => break,
            Some(done) = running.join_next(), if !running.is_empty() => {
                let outcome = done.unwrap_or_else(|e| Err(PipelineError::Attempts(format!("run panicked: {e}"))));
                on_outcome(&outcome);
                report.count(&outcome);
            }
            () = tokio::time::sleep(wait), if !took || running.len() >= concurrency => {}
            () = std::future::ready(()), if took && running.len() < concurrency => {}
        }
    }
    let deadline = tokio::time::Instant::now() + options.grace;
    while !running.is_empty() {
        match tokio::time::timeout_at(deadline, running.join_next()).await {
            Ok(Some(done)) => {
                let outcome = done.unwrap_or_else(|e| Err(PipelineError::Attempts(format!("run panicked: {e}"))));
                on_outcome(&outcome);
                report.count(&outcome);
            }
            Ok(None) => break,
            Err(_) => {
                report.abandoned = running.len() as u64;
                running.abort_all();
                break;
            }
        }
    }
    report
}

/// One pass over `Unknown` jobs: each is asked about and settled when its provider knows.
async fn resolve_unknowns(pipeline: &Pipeline) -> u64 {
    let mut resolved = 0;
    let Ok(unknown) = pipeline.ports().jobs.list(JobState::Unknown, None, UNKNOWN_PASS_MAX).await else { return 0 };
    for job in unknown {
        if let Ok(Some(_)) = pipeline.resolve(&job).await {
            resolved += 1;
        }
    }
    resolved
}
