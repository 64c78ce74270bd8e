//! Metrics through the `metrics` facade, taken where the engine's ports are crossed, so every process (the
//! server, each worker) exports what it did; with no recorder installed each call is a no-op.
//!
//! - `ledger_ops_total{kind, outcome}` (`applied`, `replayed`, `refused`) and `ledger_negative_attempts` (a move
//!   refused because it would take a balance below its floor) from the ledger.
//! - `jobs_total{status}`, `jobs_failed`, `jobs_cancelled` from the jobs' final notices.
//! - `provider_attempts_total{provider, outcome}`, `provider_errors{provider}` and the histogram
//!   `provider_latency_seconds{provider, outcome}` (dispatch to the attempt's end) from the attempt log.

use std::sync::Arc;

use async_trait::async_trait;
use rei_core::generation::{AttemptLog, AttemptLogError, AttemptOutcome, AttemptRecord};
use rei_core::ids::{HoldId, JobId, UserId};
use rei_core::jobs::{JobNotice, JobNotifier, JobNotifyError};
use rei_core::ledger::{
    Applied, Balance, HistoryEntry, Hold, LedgerCommand, LedgerError, LedgerStore, OpKind, StoreError, SystemAccount,
    Transaction, VerifyReport,
};
use rei_core::money::Money;
use rei_core::time::Timestamp;

/// A ledger that counts what it applies.
pub(super) struct MeteredLedger(pub(super) Arc<dyn LedgerStore>);

fn count_outcome(kind: OpKind, outcome: &Result<Applied, LedgerError>) {
    let kind = kind.as_str();
    let label = match outcome {
        Ok(a) if a.replayed => "replayed",
        Ok(_) => "applied",
        Err(LedgerError::InsufficientFunds { .. }) => {
            metrics::counter!("ledger_negative_attempts").increment(1);
            "refused"
        }
        Err(_) => "refused",
    };
    metrics::counter!("ledger_ops_total", "kind" => kind, "outcome" => label).increment(1);
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
