//! Service level objectives: definitions, error budgets, burn-rate alerts and a latency histogram.
//!
//! REI ships three SLOs ([`Slo::defaults`]): job success 99.5 %, payment success 99.9 %, and job latency
//! p95 <= 180 s, stated as "95 % of jobs finish within 180 s" so that it is counted like the others. Counts come
//! in per window ([`WindowCounts`]); [`evaluate`] applies the SRE workbook's multi-window, multi-burn-rate
//! rules. Everything is exact: integer counts, [`Ratio`](crate::money::Ratio) and decimal results, and alert
//! decisions compared by integer cross-multiplication. No floats.

mod burn;
mod histogram;
mod objective;

pub use burn::{Alert, BurnRule, Severity, Window, WindowCounts, evaluate, evaluate_rules};
pub use histogram::{BadQuantile, LATENCY_BOUNDS_MS, LatencyBound, LatencyHistogram, QUANTILE_SCALE_MAX};
pub use objective::{
    Counts, ErrorBudget, GoodOverTotal, JOB_LATENCY_TARGET_MS, OBJECTIVE_SCALE_MAX, Slo, SloError, burn_rate,
};
