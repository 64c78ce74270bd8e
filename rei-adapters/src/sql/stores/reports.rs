//! [`ReportStore`](rei_core::reports::ReportStore) over either engine: aggregates over `ledger_transactions`,
//! `ledger_accounts`, `ledger_system_accounts`, `jobs`, `job_attempts` and `payment_records`.
//!
//! Each figure set is one statement (one snapshot), each reads its range through an index (migration 0012),
//! and each returns a bounded number of rows, already aggregated: at most 8 job states, 6 money kinds, 6 SLO
//! windows, 1,000 series buckets, or 18 rows per provider. The rules (ranges, buckets, windows, latency
//! buckets) are the core's ([`rei_core::reports::plan`]); this module binds them and reads the rows back.

use std::time::Duration;

use rei_core::ids::ProviderId;
use rei_core::jobs::JobState;
use rei_core::ledger::{OpKind, SystemAccount};
use rei_core::money::Money;
use rei_core::reports::plan::{self, LATENCY_BUCKETS, SeriesPlan};
use rei_core::reports::{
    JobCounts, LedgerTotals, MoneyFlow, PROVIDERS_MAX, Point, ProviderUsage, ReportError, Series, SloWindows,
    latency_p95_ms,
};
use rei_core::slo::{JOB_LATENCY_TARGET_MS, WindowCounts};
use rei_core::time::Timestamp;

use super::engine::Engine;
use super::fields::{Fields, RowError, SqlRow};
use super::values::Value;

/// The latency bucket of a job attempt (`ended_ms - started_ms`) as a SQL expression: bucket `i` holds latencies
/// at most `LATENCY_BOUNDS_MS[i]`, bucket 16 those above every bound, exactly as
/// [`LatencyHistogram::record`](rei_core::slo::LatencyHistogram::record) places them (a test checks the text
/// against the bounds). A macro, so that each dialect's statement can `concat!` it.
macro_rules! latency_bucket {
    () => {
        "CASE WHEN ended_ms - started_ms <= 500 THEN 0 WHEN ended_ms - started_ms <= 1000 THEN 1 \
         WHEN ended_ms - started_ms <= 2000 THEN 2 WHEN ended_ms - started_ms <= 5000 THEN 3 \
         WHEN ended_ms - started_ms <= 10000 THEN 4 WHEN ended_ms - started_ms <= 15000 THEN 5 \
         WHEN ended_ms - started_ms <= 30000 THEN 6 WHEN ended_ms - started_ms <= 45000 THEN 7 \
         WHEN ended_ms - started_ms <= 60000 THEN 8 WHEN ended_ms - started_ms <= 90000 THEN 9 \
         WHEN ended_ms - started_ms <= 120000 THEN 10 WHEN ended_ms - started_ms <= 180000 THEN 11 \
         WHEN ended_ms - started_ms <= 240000 THEN 12 WHEN ended_ms - started_ms <= 300000 THEN 13 \
         WHEN ended_ms - started_ms <= 600000 THEN 14 WHEN ended_ms - started_ms <= 1200000 THEN 15 ELSE 16 END"
    };
}
pub(crate) use latency_bucket;

/// The pseudo-kind under which [`ReportSql::money`] returns the attempts' cost.
pub(crate) const ATTEMPT_COST: &str = "attempt_cost";

/// The statements of the report store in one engine's dialect (placeholders numbered from 1). Ranges are the 1st
/// (since, inclusive) and 2nd (until, exclusive) values unless said otherwise.
pub(crate) struct ReportSql {
    /// Jobs created in the range by state: `state`, `n`.
    pub(crate) jobs: &'static str,
    /// The ledger's top-ups, captures, refunds, card refunds and adjustments in the range by kind, and the cost
    /// of the attempts started in the range under the kind [`ATTEMPT_COST`]: `kind`, `total`, `n`.
    pub(crate) money: &'static str,
    /// The attempts started in the range by provider and latency bucket ([`latency_bucket!`] for the successes
    /// that ended, −1 for the rest), by provider (byte order) then bucket, at most the 3rd value of rows:
    /// `provider`, `bucket`, `attempts`, `successes`, `failures`, `cost`.
    pub(crate) providers: &'static str,
    /// One row: `available`, `held`, `active_holds`, `users_with_money`, and each system account's balance
    /// (`payments`, `revenue`, `promo`, `refunds_out`).
    pub(crate) ledger_totals: &'static str,
    /// Jobs that finished succeeded or failed in `[7th, 1st)`, by the index of the shortest window holding them
    /// (window starts 2nd to 6th, shortest first): `w`, `good` (succeeded), `total`.
    pub(crate) job_success: &'static str,
    /// As `job_success`, for payment records that reached a final status: good are the succeeded ones.
    pub(crate) payment_success: &'static str,
    /// As `job_success`, for jobs that succeeded: good are those that took at most the 8th value (ms).
    pub(crate) job_latency: &'static str,
    /// Series: the bucket index (`(time - 1st) / 3rd`) and value of each bucket with events in the range, by
    /// bucket, at most the 4th value of rows: `bucket`, `value`. Captures' amounts.
    pub(crate) revenue: &'static str,
    /// As `revenue`: top-ups' amounts.
    pub(crate) top_ups: &'static str,
    /// As `revenue`: jobs that succeeded, counted by finish time.
    pub(crate) jobs_succeeded: &'static str,
    /// As `revenue`: jobs that failed, counted by finish time.
    pub(crate) jobs_failed: &'static str,
    /// [`Series::NewUsers`]: the same columns and values, from the members' join times.
    pub(crate) new_users: &'static str,
}

impl ReportSql {
    /// Every statement with its name (the field's), for a test or an operator to `EXPLAIN`.
    pub(crate) fn named(&self) -> Vec<(&'static str, &'static str)> {
        vec![
            ("jobs", self.jobs),
            ("money", self.money),
            ("providers", self.providers),
            ("ledger_totals", self.ledger_totals),
            ("job_success", self.job_success),
            ("payment_success", self.payment_success),
            ("job_latency", self.job_latency),
            ("revenue", self.revenue),
            ("top_ups", self.top_ups),
            ("jobs_succeeded", self.jobs_succeeded),
            ("jobs_failed", self.jobs_failed),
            ("new_users", self.new_users),
        ]
    }
}

fn unavailable(e: impl ToString) -> ReportError {
    ReportError::Unavailable { reason: e.to_string() }
}

fn corrupt(e: RowError) -> ReportError {
    ReportError::Unavailable { reason: format!("corrupt row: {e}") }
}

fn range(since: Timestamp, until: Timestamp) -> Result<Vec<Value<'static>>, ReportError> {
    plan::check_range(since, until)?;
    Ok(vec![since.as_millis().into(), until.as_millis().into()])
}

fn count<R: SqlRow>(f: &Fields<'_, R>, column: &'static str) -> Result<u64, ReportError> {
    f.unsigned(column).map_err(corrupt)
}

/// [`ReportStore::jobs`](rei_core::reports::ReportStore::jobs).
pub(crate) async fn jobs<E: Engine>(
    db: &E,
    sql: &ReportSql,
    since: Timestamp,
    until: Timestamp,
) -> Result<JobCounts, ReportError> {
    let rows = db.fetch_all(sql.jobs, range(since, until)?).await.map_err(unavailable)?;
    let mut counts = JobCounts::default();
    for row in &rows {
        let f = Fields::new("jobs", row);
        let state = f.named("state", JobState::ALL, super::jobs::state_name).map_err(corrupt)?;
        counts.add(state, count(&f, "n")?);
    }
    Ok(counts)
}

/// [`ReportStore::money`](rei_core::reports::ReportStore::money).
pub(crate) async fn money<E: Engine>(
    db: &E,
    sql: &ReportSql,
    since: Timestamp,
    until: Timestamp,
) -> Result<MoneyFlow, ReportError> {
    let rows = db.fetch_all(sql.money, range(since, until)?).await.map_err(unavailable)?;
    let mut flow = MoneyFlow::default();
    for row in &rows {
        let f = Fields::new("ledger_transactions", row);
        let kind = f.text("kind").map_err(corrupt)?;
        let total = f.money("total").map_err(corrupt)?;
        if kind == ATTEMPT_COST {
            flow.provider_cost = total;
            continue;
        }
        let kind = OpKind::parse(&kind).ok_or_else(|| corrupt(f.invalid("kind", format!("{kind:?}"))))?;
        flow.add_transactions(kind, total, count(&f, "n")?)?;
    }
    Ok(flow)
}

/// One provider's figures while its rows are read.
struct Usage {
    provider: ProviderId,
    attempts: u64,
    successes: u64,
    failures: u64,
    cost: i128,
    charged: i128,
    latency: Vec<(i64, i64)>,
}

impl Usage {
    fn finish(self) -> Result<ProviderUsage, ReportError> {
        let latency = plan::latency_histogram(self.latency)?;
        let cost = i64::try_from(self.cost).map_err(|_| unavailable(format!("{}'s cost overflows", self.provider)))?;
        let charged =
            i64::try_from(self.charged).map_err(|_| unavailable(format!("{}'s charges overflow", self.provider)))?;
        Ok(ProviderUsage {
            provider: self.provider,
            attempts: self.attempts,
            successes: self.successes,
            failures: self.failures,
            cost: Money::from_kopecks(cost),
            charged: Money::from_kopecks(charged),
            latency_p95_ms: latency_p95_ms(&latency),
            latency,
        })
    }
}

/// [`ReportStore::providers`](rei_core::reports::ReportStore::providers).
pub(crate) async fn providers<E: Engine>(
    db: &E,
    sql: &ReportSql,
    since: Timestamp,
    until: Timestamp,
) -> Result<Vec<ProviderUsage>, ReportError> {
    // Each provider has at most one row per latency bucket and one for the rest, so this many rows hold the
    // first PROVIDERS_MAX providers whole.
    let rows_max = i64::try_from(PROVIDERS_MAX * (LATENCY_BUCKETS + 1)).unwrap_or(i64::MAX);
    let mut values = range(since, until)?;
    values.push(rows_max.into());
    let rows = db.fetch_all(sql.providers, values).await.map_err(unavailable)?;
    let mut done: Vec<ProviderUsage> = Vec::new();
    let mut current: Option<Usage> = None;
    for row in &rows {
        let f = Fields::new("job_attempts", row);
        let provider = f.parsed("provider", ProviderId::parse).map_err(corrupt)?;
        if current.as_ref().is_none_or(|u| u.provider != provider) {
            if let Some(u) = current.take() {
                done.push(u.finish()?);
            }
            if done.len() == PROVIDERS_MAX {
                return Ok(done);
            }
            current = Some(Usage {
                provider,
                attempts: 0,
                successes: 0,
                failures: 0,
                cost: 0,
                charged: 0,
                latency: Vec::new(),
            });
        }
        let Some(u) = current.as_mut() else { continue };
        let attempts = count(&f, "attempts")?;
        u.attempts = u.attempts.saturating_add(attempts);
        u.successes = u.successes.saturating_add(count(&f, "successes")?);
        u.failures = u.failures.saturating_add(count(&f, "failures")?);
        u.cost += i128::from(f.int("cost").map_err(corrupt)?);
        u.charged += i128::from(f.int("charged").map_err(corrupt)?);
        let bucket = f.int("bucket").map_err(corrupt)?;
        if bucket >= 0 {
            u.latency.push((bucket, f.int("attempts").map_err(corrupt)?));
        }
    }
    if let Some(u) = current {
        done.push(u.finish()?);
    }
    Ok(done)
}

/// [`ReportStore::ledger_totals`](rei_core::reports::ReportStore::ledger_totals).
pub(crate) async fn ledger_totals<E: Engine>(db: &E, sql: &ReportSql) -> Result<LedgerTotals, ReportError> {
    let row = db.fetch_optional(sql.ledger_totals, Vec::new()).await.map_err(unavailable)?;
    let row = row.ok_or_else(|| unavailable("the ledger totals came back without a row"))?;
    let f = Fields::new("ledger_accounts", &row);
    let system = SystemAccount::ALL
        .into_iter()
        .map(|account| {
            let column = match account {
                SystemAccount::Payments => "payments",
                SystemAccount::Revenue => "revenue",
                SystemAccount::Promo => "promo",
                SystemAccount::RefundsOut => "refunds_out",
            };
            f.money(column).map(|m| (account, m))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(corrupt)?;
    Ok(LedgerTotals {
        available: f.money("available").map_err(corrupt)?,
        held: f.money("held").map_err(corrupt)?,
        active_holds: count(&f, "active_holds")?,
        system,
        users_with_money: count(&f, "users_with_money")?,
    })
}

async fn windows<E: Engine>(
    db: &E,
    statement: &str,
    now: Timestamp,
    extra: Option<i64>,
) -> Result<WindowCounts, ReportError> {
    let mut values: Vec<Value<'_>> = vec![now.as_millis().into()];
    values.extend(plan::window_starts(now).map(|t| Value::from(t.as_millis())));
    values.extend(extra.map(Value::from));
    let rows = db.fetch_all(statement, values).await.map_err(unavailable)?;
    let counts = rows
        .iter()
        .map(|row| {
            let f = Fields::new("slo", row);
            Ok((f.int("w").map_err(corrupt)?, count(&f, "good")?, count(&f, "total")?))
        })
        .collect::<Result<Vec<_>, ReportError>>()?;
    plan::window_counts(counts)
}

/// [`ReportStore::slo_windows`](rei_core::reports::ReportStore::slo_windows).
pub(crate) async fn slo_windows<E: Engine>(db: &E, sql: &ReportSql, now: Timestamp) -> Result<SloWindows, ReportError> {
    let target = i64::try_from(JOB_LATENCY_TARGET_MS).unwrap_or(i64::MAX);
    Ok(SloWindows {
        job_success: windows(db, sql.job_success, now, None).await?,
        payment_success: windows(db, sql.payment_success, now, None).await?,
        job_latency: windows(db, sql.job_latency, now, Some(target)).await?,
    })
}

/// [`ReportStore::series`](rei_core::reports::ReportStore::series).
pub(crate) async fn series<E: Engine>(
    db: &E,
    sql: &ReportSql,
    series: Series,
    since: Timestamp,
    until: Timestamp,
    bucket: Duration,
) -> Result<Vec<Point>, ReportError> {
    let plan = SeriesPlan::new(since, until, bucket)?;
    if plan.is_empty() {
        return Ok(Vec::new());
    }
    let statement = match series {
        Series::Revenue => sql.revenue,
        Series::TopUps => sql.top_ups,
        Series::JobsSucceeded => sql.jobs_succeeded,
        Series::JobsFailed => sql.jobs_failed,
        Series::NewUsers => sql.new_users,
    };
    let rows_max = i64::try_from(plan.len()).unwrap_or(i64::MAX);
    let values = vec![since.as_millis().into(), until.as_millis().into(), plan.bucket_ms().into(), rows_max.into()];
    let rows = db.fetch_all(statement, values).await.map_err(unavailable)?;
    let values = rows
        .iter()
        .map(|row| {
            let f = Fields::new(series.as_str(), row);
            Ok((f.int("bucket").map_err(corrupt)?, f.int("value").map_err(corrupt)?))
        })
        .collect::<Result<Vec<_>, ReportError>>()?;
    plan.points(values)
}

/// Defines an engine's report store `$store` over a `$pool`.
macro_rules! report_store {
    ($store:ident, $pool:ty, $sql:expr, $engine:literal) => {
        $crate::sql::stores::engine::pool_store!(
            $store,
            $pool,
            concat!(
                "A [`ReportStore`](rei_core::reports::ReportStore) over a ",
                $engine,
                " pool (read only); the schema comes from [`super::migrate`]."
            )
        );

        #[async_trait::async_trait]
        impl rei_core::reports::ReportStore for $store {
            async fn jobs(
                &self,
                since: rei_core::time::Timestamp,
                until: rei_core::time::Timestamp,
            ) -> Result<rei_core::reports::JobCounts, rei_core::reports::ReportError> {
                $crate::sql::stores::reports::jobs(&self.pool, &$sql, since, until).await
            }

            async fn money(
                &self,
                since: rei_core::time::Timestamp,
                until: rei_core::time::Timestamp,
            ) -> Result<rei_core::reports::MoneyFlow, rei_core::reports::ReportError> {
                $crate::sql::stores::reports::money(&self.pool, &$sql, since, until).await
            }

            async fn providers(
                &self,
                since: rei_core::time::Timestamp,
                until: rei_core::time::Timestamp,
            ) -> Result<Vec<rei_core::reports::ProviderUsage>, rei_core::reports::ReportError> {
                $crate::sql::stores::reports::providers(&self.pool, &$sql, since, until).await
            }

            async fn ledger_totals(&self) -> Result<rei_core::reports::LedgerTotals, rei_core::reports::ReportError> {
                $crate::sql::stores::reports::ledger_totals(&self.pool, &$sql).await
            }

            async fn slo_windows(
                &self,
                now: rei_core::time::Timestamp,
            ) -> Result<rei_core::reports::SloWindows, rei_core::reports::ReportError> {
                $crate::sql::stores::reports::slo_windows(&self.pool, &$sql, now).await
            }

            async fn series(
                &self,
                series: rei_core::reports::Series,
                since: rei_core::time::Timestamp,
                until: rei_core::time::Timestamp,
                bucket: std::time::Duration,
            ) -> Result<Vec<rei_core::reports::Point>, rei_core::reports::ReportError> {
                $crate::sql::stores::reports::series(&self.pool, &$sql, series, since, until, bucket).await
            }
        }
    };
}
pub(crate) use report_store;

#[cfg(test)]
mod tests {
    use rei_core::slo::LATENCY_BOUNDS_MS;

    #[test]
    fn the_latency_bucket_expression_follows_the_histogram_bounds() {
        // Proves the SQL bucket expression names every bound of the histogram, in order, with its index, so that
        // a store's per-bucket counts are exactly the histogram's.
        let mut expected: String = LATENCY_BOUNDS_MS
            .iter()
            .enumerate()
            .map(|(i, bound)| format!("WHEN ended_ms - started_ms <= {bound} THEN {i} "))
            .collect();
        expected = format!("CASE {expected}ELSE {} END", LATENCY_BOUNDS_MS.len());
        let normalized = latency_bucket!().split_whitespace().collect::<Vec<_>>().join(" ");
        assert_eq!(normalized, expected.trim_end());
    }
}
