//! Metrics through the `metrics` facade, taken where the engine's ports are crossed, so every process (the
//! server, each worker) exports what it did; with no recorder installed each call is a no-op.
//!
//! - `ledger_ops_total{kind, outcome}` (`applied`, `replayed`, `refused`) and `ledger_negative_attempts` (a move
//!   other than a reservation refused because it would take a balance below its floor) from the ledger; and the money of the moves first
//!   applied (a replay moves nothing, so it adds nothing), in kopecks: `revenue_kopecks_total` (captures),
//!   `revenue_refunded_kopecks_total` (captured money given back to wallets), `topups_kopecks_total` (money in).
//! - `jobs_total{status}`, `jobs_failed`, `jobs_cancelled` from the jobs' final notices.
//! - The histogram `job_duration_seconds{status}` (`succeeded`, `failed`, `cancelled`: the stored final state, so
//!   a dead-lettered job is `failed`), from the job's creation to its final state, from the job store: the
//!   store's compare-and-set lets exactly one write move a job into a final state, so each job is timed once
//!   however often its end is replayed.
//! - `provider_attempts_total{provider, outcome}`, `provider_errors{provider}`,
//!   `provider_cost_kopecks_total{provider}` (what the providers charged us for ended attempts) and the
//!   histogram `provider_latency_seconds{provider, outcome}` (dispatch to the attempt's end) from the attempt log.
//! - `payments_total{gateway, outcome}` for `succeeded` and `canceled` from the payment records: counted by the
//!   one `mark` that changes a record's status, so a payment counts once whichever path settled it (the
//!   webhook, the reconciler, a Stars update) and however often its notice came. A payment REI stopped asking
//!   about (`expired`: never paid) is not counted. `failed` is counted where a notice could not be handled (the
//!   HTTP server's webhooks).
//! - `provider_breaker_state{provider}` (0 closed, 1 half-open, 2 open) from each report of a worker's router
//!   to the provider board: each process exports its own router's view.

use std::sync::Arc;

use async_trait::async_trait;
use rei_core::generation::{AttemptLog, AttemptLogError, AttemptOutcome, AttemptRecord};
use rei_core::ids::{HoldId, JobId, PaymentId, ProviderId, UserId};
use rei_core::jobs::{Job, JobNotice, JobNotifier, JobNotifyError, JobState, JobStore, JobStoreError};
use rei_core::ledger::{
    Applied, Balance, HistoryEntry, Hold, LedgerCommand, LedgerError, LedgerStore, OpKind, StoreError, SystemAccount,
    Transaction, VerifyReport,
};
use rei_core::money::Money;
use rei_core::routing::{BoardError, BreakerView, ModelSwitch, ProviderBoard, ProviderStatus};
use rei_core::time::Timestamp;
use rei_core::topups::{
    FinalStatus, Marked, PaymentCursor, PaymentPage, PaymentRecord, PaymentStore, PaymentStoreError,
};

/// A ledger that counts what it applies.
pub(super) struct MeteredLedger(pub(super) Arc<dyn LedgerStore>);

fn count_outcome(op: OpKind, outcome: &Result<Applied, LedgerError>) {
    let kind = op.as_str();
    let label = match outcome {
        Ok(a) if a.replayed => "replayed",
        Ok(a) => {
            count_money(a);
            "applied"
        }
        Err(LedgerError::InsufficientFunds { .. }) => {
            // A reservation refused for want of money is a user ordering without the balance: ordinary. Any other
            // move that would go below a floor means a caller's arithmetic is wrong.
            if !matches!(op, OpKind::Hold | OpKind::Raise) {
                metrics::counter!("ledger_negative_attempts").increment(1);
            }
            "refused"
        }
        Err(_) => "refused",
    };
    metrics::counter!("ledger_ops_total", "kind" => kind, "outcome" => label).increment(1);
}

/// Adds the money of a move first applied to its counter. Amounts are kopecks, whole and never negative here
/// (a capture, a refund and a top-up move a non-negative amount), so the counters stay integers.
fn count_money(applied: &Applied) {
    let name = match applied.receipt.kind {
        OpKind::Capture => "revenue_kopecks_total",
        OpKind::Refund => "revenue_refunded_kopecks_total",
        OpKind::TopUp => "topups_kopecks_total",
        _ => return,
    };
    metrics::counter!(name).increment(kopecks(applied.receipt.amount));
}

/// `money` in kopecks as a counter's increment; 0 for a negative amount, which no counted move has.
fn kopecks(money: Money) -> u64 {
    u64::try_from(money.kopecks()).unwrap_or(0)
}

#[async_trait]
impl LedgerStore for MeteredLedger {
    async fn apply_batch(&self, cmds: Vec<LedgerCommand>) -> Result<Vec<Result<Applied, LedgerError>>, StoreError> {
        let kinds: Vec<OpKind> = cmds.iter().map(|c| c.op.kind()).collect();
        let results = self.0.apply_batch(cmds).await?;
        for (kind, outcome) in kinds.into_iter().zip(&results) {
            count_outcome(kind, outcome);
        }
        Ok(results)
    }

    async fn apply(&self, cmd: LedgerCommand) -> Result<Applied, LedgerError> {
        let kind = cmd.op.kind();
        let outcome = self.0.apply(cmd).await;
        count_outcome(kind, &outcome);
        outcome
    }

    async fn balance(&self, user: UserId) -> Result<Balance, StoreError> {
        self.0.balance(user).await
    }

    async fn system_balance(&self, account: SystemAccount) -> Result<Money, StoreError> {
        self.0.system_balance(account).await
    }

    async fn hold(&self, id: HoldId) -> Result<Option<Hold>, StoreError> {
        self.0.hold(id).await
    }

    async fn holds_due(&self, now: Timestamp, limit: usize) -> Result<Vec<HoldId>, StoreError> {
        self.0.holds_due(now, limit).await
    }

    async fn set_overdraft_limit(&self, user: UserId, limit: Money) -> Result<(), LedgerError> {
        self.0.set_overdraft_limit(user, limit).await
    }

    async fn transactions(&self, offset: u64, limit: usize) -> Result<Vec<Transaction>, StoreError> {
        self.0.transactions(offset, limit).await
    }

    async fn history(&self, user: UserId, before: Option<u64>, limit: usize) -> Result<Vec<HistoryEntry>, StoreError> {
        self.0.history(user, before, limit).await
    }

    async fn verify(&self) -> Result<VerifyReport, StoreError> {
        self.0.verify().await
    }
}

/// A notifier that counts the jobs' ends before passing the notice on.
pub(super) struct MeteredNotifier(pub(super) Arc<dyn JobNotifier>);

#[async_trait]
impl JobNotifier for MeteredNotifier {
    async fn notify(&self, user: UserId, notice: JobNotice) -> Result<(), JobNotifyError> {
        let status = match &notice {
            JobNotice::Succeeded { .. } => "succeeded",
            JobNotice::Failed { .. } => {
                metrics::counter!("jobs_failed").increment(1);
                "failed"
            }
            JobNotice::Cancelled { .. } => {
                metrics::counter!("jobs_cancelled").increment(1);
                "cancelled"
            }
            JobNotice::DeadLettered { .. } => {
                metrics::counter!("jobs_failed").increment(1);
                "dead_lettered"
            }
        };
        metrics::counter!("jobs_total", "status" => status).increment(1);
        self.0.notify(user, notice).await
    }
}

/// An attempt log that times each ended attempt and counts provider errors.
pub(super) struct MeteredAttempts(pub(super) Arc<dyn AttemptLog>);

#[async_trait]
impl AttemptLog for MeteredAttempts {
    async fn record(&self, record: &AttemptRecord) -> Result<(), AttemptLogError> {
        self.0.record(record).await?;
        if let Some(ended) = record.ended_at {
            let provider = record.provider.to_string();
            let outcome = record.outcome.as_str();
            metrics::counter!("provider_attempts_total", "provider" => provider.clone(), "outcome" => outcome)
                .increment(1);
            if record.outcome == AttemptOutcome::Failed {
                metrics::counter!("provider_errors", "provider" => provider.clone()).increment(1);
            }
            metrics::counter!("provider_cost_kopecks_total", "provider" => provider.clone())
                .increment(kopecks(record.cost));
            let seconds = ended.since(record.started_at).as_secs_f64();
            metrics::histogram!("provider_latency_seconds", "provider" => provider, "outcome" => outcome)
                .record(seconds);
        }
        Ok(())
    }

    async fn for_job(&self, job: JobId) -> Result<Vec<AttemptRecord>, AttemptLogError> {
        self.0.for_job(job).await
    }
}

/// A job store that times each job from its creation to its final state.
pub(super) struct MeteredJobs(pub(super) Arc<dyn JobStore>);

#[async_trait]
impl JobStore for MeteredJobs {
    async fn insert(&self, job: &Job) -> Result<Job, JobStoreError> {
        self.0.insert(job).await
    }

    async fn get(&self, id: JobId) -> Result<Option<Job>, JobStoreError> {
        self.0.get(id).await
    }

    async fn update(&self, job: &Job, expected: JobState) -> Result<(), JobStoreError> {
        self.0.update(job, expected).await?;
        // The update succeeded only if the stored state was `expected`: one write ends a job, once.
        if job.state.is_terminal() && !expected.is_terminal() {
            let seconds = job.updated_at.since(job.created_at).as_secs_f64();
            metrics::histogram!("job_duration_seconds", "status" => job.state.to_string()).record(seconds);
        }
        Ok(())
    }

    async fn list_by_state(
        &self,
        state: JobState,
        after: Option<JobId>,
        limit: usize,
    ) -> Result<Vec<Job>, JobStoreError> {
        self.0.list_by_state(state, after, limit).await
    }

    async fn list_for_user(
        &self,
        user: UserId,
        before: Option<JobId>,
        limit: usize,
    ) -> Result<Vec<Job>, JobStoreError> {
        self.0.list_for_user(user, before, limit).await
    }

    async fn expired_leases(&self, now: Timestamp, limit: usize) -> Result<Vec<Job>, JobStoreError> {
        self.0.expired_leases(now, limit).await
    }
}

/// A payment store that counts each payment once, when its record takes its final status.
pub(super) struct MeteredPayments(pub(super) Arc<dyn PaymentStore>);

#[async_trait]
impl PaymentStore for MeteredPayments {
    async fn insert(&self, record: &PaymentRecord) -> Result<PaymentRecord, PaymentStoreError> {
        self.0.insert(record).await
    }

    async fn get(&self, id: &PaymentId) -> Result<Option<PaymentRecord>, PaymentStoreError> {
        self.0.get(id).await
    }

    async fn mark(&self, id: &PaymentId, status: FinalStatus, now: Timestamp) -> Result<Marked, PaymentStoreError> {
        let marked = self.0.mark(id, status, now).await?;
        let outcome = match status {
            FinalStatus::Succeeded => Some("succeeded"),
            FinalStatus::Canceled => Some("canceled"),
            FinalStatus::Expired => None,
        };
        if let Some(outcome) = outcome
            && marked.changed
        {
            let gateway = marked.record.provider.as_str();
            metrics::counter!("payments_total", "gateway" => gateway, "outcome" => outcome).increment(1);
        }
        Ok(marked)
    }

    async fn due(
        &self,
        now: Timestamp,
        max_age: std::time::Duration,
        limit: u32,
    ) -> Result<Vec<PaymentRecord>, PaymentStoreError> {
        self.0.due(now, max_age, limit).await
    }

    async fn overdue(
        &self,
        now: Timestamp,
        max_age: std::time::Duration,
        limit: u32,
    ) -> Result<Vec<PaymentRecord>, PaymentStoreError> {
        self.0.overdue(now, max_age, limit).await
    }

    async fn reschedule(
        &self,
        id: &PaymentId,
        next_check_at: Timestamp,
        now: Timestamp,
    ) -> Result<PaymentRecord, PaymentStoreError> {
        self.0.reschedule(id, next_check_at, now).await
    }

    async fn expire_older_than(&self, cutoff: Timestamp, now: Timestamp, limit: u32) -> Result<u64, PaymentStoreError> {
        self.0.expire_older_than(cutoff, now, limit).await
    }

    async fn list_for_user(
        &self,
        user: UserId,
        cursor: Option<&PaymentCursor>,
        limit: u32,
    ) -> Result<PaymentPage, PaymentStoreError> {
        self.0.list_for_user(user, cursor, limit).await
    }

    async fn list_recent(&self, cursor: Option<&PaymentCursor>, limit: u32) -> Result<PaymentPage, PaymentStoreError> {
        self.0.list_recent(cursor, limit).await
    }
}

/// A provider board that exports each breaker its router reports: 0 closed, 1 half-open, 2 open.
pub(super) struct MeteredBoard(pub(super) Arc<dyn ProviderBoard>);

/// The gauge value of a breaker's state.
fn breaker_value(view: BreakerView) -> f64 {
    match view {
        BreakerView::Closed => 0.0,
        BreakerView::HalfOpen => 1.0,
        BreakerView::Open { .. } => 2.0,
    }
}

#[async_trait]
impl ProviderBoard for MeteredBoard {
    async fn publish(&self, statuses: &[ProviderStatus]) -> Result<(), BoardError> {
        // The gauges are this process's router's view, whether or not the shared board could be written.
        for status in statuses {
            metrics::gauge!("provider_breaker_state", "provider" => status.provider.to_string())
                .set(breaker_value(status.breaker));
        }
        self.0.publish(statuses).await
    }

    async fn statuses(&self) -> Result<Vec<ProviderStatus>, BoardError> {
        self.0.statuses().await
    }

    async fn set_model(
        &self,
        provider: &ProviderId,
        model: &str,
        enabled: bool,
        now: Timestamp,
    ) -> Result<(), BoardError> {
        self.0.set_model(provider, model, enabled, now).await
    }

    async fn models(&self) -> Result<Vec<ModelSwitch>, BoardError> {
        self.0.models().await
    }
}
