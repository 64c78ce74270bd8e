//! The [`AttemptLog`] port: one record per attempt of a job, with what the provider charged.

use async_trait::async_trait;

use crate::ids::{JobId, ProviderId};
use crate::jobs::ErrorText;
use crate::money::Money;
use crate::time::Timestamp;

/// How an attempt ended.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum AttemptOutcome {
    /// Sent to the provider; no outcome yet.
    Dispatched,
    /// The provider produced the result and the job was charged.
    Succeeded,
    /// The provider failed (its fault); the job retried elsewhere or gave up.
    Failed,
    /// The provider refused the request (the user's fault).
    Rejected,
    /// The provider produced the result after the job had ended without it (its hold released): recorded,
    /// reported, never charged.
    LateResult,
}

impl AttemptOutcome {
    /// The stable name kept in stores.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Dispatched => "dispatched",
            AttemptOutcome::Succeeded => "succeeded",
            AttemptOutcome::Failed => "failed",
            AttemptOutcome::Rejected => "rejected",
            AttemptOutcome::LateResult => "late_result",
        }
    }

    /// Reads [`AttemptOutcome::as_str`] back.
    #[must_use]
    pub fn parse(text: &str) -> Option<AttemptOutcome> {
        [
            AttemptOutcome::Dispatched,
            AttemptOutcome::Succeeded,
            AttemptOutcome::Failed,
            AttemptOutcome::Rejected,
            AttemptOutcome::LateResult,
        ]
        .into_iter()
        .find(|o| o.as_str() == text)
    }
}

/// One attempt of one job.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct AttemptRecord {
    /// The job.
    pub job: JobId,
    /// The attempt number (the job's `attempts` while it ran).
    pub attempt: u32,
    /// Who it was sent to.
    pub provider: ProviderId,
    /// The provider's model.
    pub model: String,
    /// How it ended.
    pub outcome: AttemptOutcome,
    /// What the provider charged us (zero when nothing was produced).
    pub cost: Money,
    /// What the user was charged for the job through this attempt (zero unless it succeeded).
    pub charged: Money,
    /// When it was sent.
    pub started_at: Timestamp,
    /// When it ended, once it did.
    pub ended_at: Option<Timestamp>,
    /// Why it failed.
    pub error: Option<ErrorText>,
}

/// Why an [`AttemptLog`] call failed.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum AttemptLogError {
    /// The store could not be reached; the call may be retried.
    #[error("attempt log unavailable: {reason}")]
    Unavailable {
        /// What the adapter saw.
        reason: String,
    },
}

/// Where attempts are recorded.
///
/// Contract: `record` replaces the record of the same `(job, attempt)`, so a worker can write it when it
/// dispatches and again when it ends; `for_job` returns a job's records by attempt number.
#[async_trait]
pub trait AttemptLog: Send + Sync {
    /// Stores `record`, replacing the one of the same job and attempt.
    ///
    /// # Errors
    /// [`AttemptLogError`].
    async fn record(&self, record: &AttemptRecord) -> Result<(), AttemptLogError>;

    /// A job's attempts, by attempt number.
    ///
    /// # Errors
    /// [`AttemptLogError`].
    async fn for_job(&self, job: JobId) -> Result<Vec<AttemptRecord>, AttemptLogError>;
}
