//! The [`ReportStore`] port and its error.

use std::time::Duration;

use async_trait::async_trait;

use super::model::{JobCounts, LedgerTotals, MoneyFlow, Point, ProviderUsage, Series, SloWindows};
use crate::time::Timestamp;

/// The most points one [`ReportStore::series`] call returns.
pub const SERIES_POINTS_MAX: usize = 1_000;

/// The most providers one [`ReportStore::providers`] call returns (the first by name).
pub const PROVIDERS_MAX: usize = 1_000;

/// Why a report could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    /// The question cannot be answered as asked (a range that ends before it starts, a bucket of zero or of a
    /// fraction of a millisecond, more than [`SERIES_POINTS_MAX`] buckets). Nothing was read.
    #[error("invalid report request: {0}")]
    Invalid(String),
    /// The store could not be reached or failed; asking again is safe.
    #[error("report store unavailable: {reason}")]
    Unavailable {
        /// What went wrong.
        reason: String,
    },
}

/// Aggregate, read-only figures over the ledger, the jobs, the attempts and the payment records, for the bot's
/// `/admin_stats` and `/admin_slo`, the sandbox summary and the operator console.
///
/// Contract, for every implementation (checked by `rei_core::testing::reports::report_store_conformance`):
/// - Every method MUST only read: it moves no money and changes no record.
/// - A range `[since, until)` MUST include what happened at `since` and exclude what happened at `until`; a
///   range with `since == until` is empty (all zeros), and one with `since > until` MUST fail with
///   [`ReportError::Invalid`].
/// - Every figure MUST be exact: integer kopecks and counts, no floating point, no sampling.
/// - Every query MUST be bounded: by an index on the range it reads, and by a limit on the rows it returns
///   (aggregated rows, never one per event).
/// - One call's figures SHOULD come from one snapshot of the store (one statement per figure set), so that a
///   report taken while money moves still adds up.
#[async_trait]
pub trait ReportStore: Send + Sync {
    /// Jobs created in `[since, until)`, by the state they are in now.
    ///
    /// # Errors
    /// [`ReportError::Invalid`] for a range that ends before it starts; [`ReportError::Unavailable`].
    async fn jobs(&self, since: Timestamp, until: Timestamp) -> Result<JobCounts, ReportError>;

    /// Money moved in `[since, until)` by kind: the ledger's transactions by their time, and the cost of the
    /// attempts started in the range (see [`MoneyFlow`]).
    ///
    /// # Errors
    /// [`ReportError::Invalid`] for a range that ends before it starts; [`ReportError::Unavailable`].
    async fn money(&self, since: Timestamp, until: Timestamp) -> Result<MoneyFlow, ReportError>;

    /// Per provider, the attempts started in `[since, until)`, by provider name, at most [`PROVIDERS_MAX`]
    /// providers. A provider without attempts in the range is not listed. The costs MUST add up to
    /// [`ReportStore::money`]'s `provider_cost` over the same range.
    ///
    /// # Errors
    /// [`ReportError::Invalid`] for a range that ends before it starts; [`ReportError::Unavailable`].
    async fn providers(&self, since: Timestamp, until: Timestamp) -> Result<Vec<ProviderUsage>, ReportError>;

    /// The ledger now: the users' balances summed, the active holds, every system account. In a quiet ledger the
    /// figures MUST agree with [`LedgerStore::verify`](crate::ledger::LedgerStore::verify): they sum to its
    /// `total`, zero. The one figure set that is not a range: it reads every balance row (one narrow row per user
    /// and the system accounts' rows), never the transactions.
    ///
    /// # Errors
    /// [`ReportError::Unavailable`].
    async fn ledger_totals(&self) -> Result<LedgerTotals, ReportError>;

    /// Good and total counts of the three shipped SLOs ([`Slo::defaults`](crate::slo::Slo::defaults)) over each
    /// [`Window`](crate::slo::Window) ending at `now`: the window of length `d` is `[now - d, now)`, like every
    /// range of this port.
    ///
    /// - Job success: the jobs that finished `Succeeded` (good) or `Failed` in the window. Cancelled jobs never
    ///   ran and are not counted. The jobs table keeps no separate finish time: a job's `updated_at` is its
    ///   finish time once it is in a final state (a final state accepts no further change).
    /// - Payment success: the payment records that reached a final status in the window, by their
    ///   `updated_at`: `Succeeded` (good), `Canceled` or `Expired` (bad). A record keeps only its latest status,
    ///   so an expired payment whose late success came after counts once, as a success when it came.
    /// - Job latency: the jobs that succeeded in the window (as for job success); good when they took at most
    ///   [`JOB_LATENCY_TARGET_MS`](crate::slo::JOB_LATENCY_TARGET_MS) from creation to success (inclusive).
    ///
    /// # Errors
    /// [`ReportError::Unavailable`].
    async fn slo_windows(&self, now: Timestamp) -> Result<SloWindows, ReportError>;

    /// `series` in buckets of `bucket` from `since` to `until`: one point per bucket, bucket `i` starting at
    /// `since + i * bucket`, the last one cut at `until`; a bucket without events is a zero point. Money series
    /// sum the ledger's transactions by their time; new users count members by their join time; job series count jobs by the time they finished (their
    /// `updated_at` in a final state).
    ///
    /// # Errors
    /// [`ReportError::Invalid`] for a range that ends before it starts, a bucket that is not a positive whole
    /// number of milliseconds, or more than [`SERIES_POINTS_MAX`] buckets; [`ReportError::Unavailable`].
    async fn series(
        &self,
        series: Series,
        since: Timestamp,
        until: Timestamp,
        bucket: Duration,
    ) -> Result<Vec<Point>, ReportError>;
}
