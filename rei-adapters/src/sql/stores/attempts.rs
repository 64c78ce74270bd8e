//! [`AttemptLog`](rei_core::generation::AttemptLog) over either engine: one row per attempt in `job_attempts`.

use rei_core::generation::{AttemptLogError, AttemptOutcome, AttemptRecord};
use rei_core::ids::{JobId, ProviderId};
use rei_core::jobs::ErrorText;
use rei_core::time::Timestamp;

use super::engine::Engine;
use super::fields::{Fields, RowError, SqlRow, stored_error_text};
use super::values::Value;

const TABLE: &str = "job_attempts";

/// The columns of `job_attempts`, in the order [`attempt_values`] lists them.
const COLUMNS: &str = "job_id, attempt, provider, model, outcome, cost, charged, started_ms, ended_ms, error";

/// The statements of the attempt log in one engine's dialect.
pub(crate) struct AttemptSql {
    /// Inserts a row from [`attempt_values`], replacing the one of the same job and attempt.
    pub(crate) upsert: &'static str,
    /// After `SELECT {columns} FROM job_attempts`: the attempts of the job whose id is the 1st value, in order.
    pub(crate) by_job: &'static str,
}

fn unavailable(e: impl ToString) -> AttemptLogError {
    AttemptLogError::Unavailable { reason: e.to_string() }
}

fn attempt_from_row<R: SqlRow>(row: &R) -> Result<AttemptRecord, RowError> {
    let f = Fields::new(TABLE, row);
    let error = f.parsed_or_null("error", stored_error_text)?;
    Ok(AttemptRecord {
        job: JobId::from(f.id("job_id")?),
        attempt: f.unsigned("attempt")?,
        provider: f.parsed("provider", ProviderId::parse)?,
        model: f.text("model")?,
        outcome: f.parsed("outcome", |t| AttemptOutcome::parse(t).ok_or("unknown outcome"))?,
        cost: f.money("cost")?,
        charged: f.money("charged")?,
        started_at: f.time("started_ms")?,
        ended_at: f.int_or_null("ended_ms")?.map(Timestamp::from_millis),
        error,
    })
}

fn attempt_values(r: &AttemptRecord) -> [Value<'_>; 10] {
    [
        Value::id(r.job.as_u128()),
        i64::from(r.attempt).into(),
        r.provider.as_str().into(),
        r.model.as_str().into(),
        r.outcome.as_str().into(),
        r.cost.kopecks().into(),
        r.charged.kopecks().into(),
        r.started_at.as_millis().into(),
        r.ended_at.map(Timestamp::as_millis).into(),
        r.error.as_ref().map(ErrorText::as_str).into(),
    ]
}

/// [`AttemptLog::record`](rei_core::generation::AttemptLog::record).
pub(crate) async fn record<E: Engine>(db: &E, sql: &AttemptSql, r: &AttemptRecord) -> Result<(), AttemptLogError> {
    db.execute(sql.upsert, attempt_values(r).into()).await.map_err(unavailable)?;
    Ok(())
}

/// [`AttemptLog::for_job`](rei_core::generation::AttemptLog::for_job).
pub(crate) async fn for_job<E: Engine>(
    db: &E,
    sql: &AttemptSql,
    job: JobId,
) -> Result<Vec<AttemptRecord>, AttemptLogError> {
    let select = format!("SELECT {COLUMNS} FROM job_attempts {}", sql.by_job);
    let rows = db.fetch_all(&select, vec![Value::id(job.as_u128())]).await.map_err(unavailable)?;
    rows.iter().map(|r| attempt_from_row(r).map_err(unavailable)).collect()
}

/// Defines an engine's [`rei_core::generation::AttemptLog`] as a struct `$store` over a `$pool`.
macro_rules! attempt_log {
    ($store:ident, $pool:ty, $sql:expr, $engine:literal) => {
        $crate::sql::stores::engine::pool_store!(
            $store,
            $pool,
            concat!(
                "An [`AttemptLog`](rei_core::generation::AttemptLog) over a ",
                $engine,
                " pool; the schema comes from [`super::migrate`]."
            )
        );

        #[async_trait::async_trait]
        impl rei_core::generation::AttemptLog for $store {
            async fn record(
                &self,
                record: &rei_core::generation::AttemptRecord,
            ) -> Result<(), rei_core::generation::AttemptLogError> {
                $crate::sql::stores::attempts::record(&self.pool, &$sql, record).await
            }

            async fn for_job(
                &self,
                job: rei_core::ids::JobId,
            ) -> Result<Vec<rei_core::generation::AttemptRecord>, rei_core::generation::AttemptLogError> {
                $crate::sql::stores::attempts::for_job(&self.pool, &$sql, job).await
            }
        }
    };
}
pub(crate) use attempt_log;
