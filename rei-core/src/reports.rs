//! Reports: aggregate, read-only figures for the bot's `/admin_stats` and `/admin_slo`, the sandbox summary and
//! the operator console.
//!
//! A [`ReportStore`] answers from the same database the ledger, the jobs, the attempts and the payment records
//! live in: jobs by state ([`JobCounts`]), money by kind ([`MoneyFlow`]), usage per provider
//! ([`ProviderUsage`]), the ledger's totals ([`LedgerTotals`]), the counts of the shipped SLOs over every
//! window ([`SloWindows`], ready for [`slo::evaluate`](crate::slo::evaluate)) and time series ([`Series`]).
//! Every figure is exact (integer kopecks and counts), every range is `[since, until)`, and every query is
//! bounded by an index and a limit. The rules the stores share (ranges, buckets, nested windows, latency
//! buckets) live in [`plan`], so that a store only aggregates.

mod model;
pub mod plan;
mod port;

pub use model::{JobCounts, LedgerTotals, MoneyFlow, Point, ProviderUsage, Series, SloWindows, latency_p95_ms};
pub use port::{PROVIDERS_MAX, ReportError, ReportStore, SERIES_POINTS_MAX};
