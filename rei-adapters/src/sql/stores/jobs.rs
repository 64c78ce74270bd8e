//! [`JobStore`](rei_core::jobs::JobStore) over either engine: one row per job in `jobs`.
//!
//! Every compare-and-set is one conditional `UPDATE … WHERE id = … AND state = … [AND attempts = …]` whose row
//! count decides; the row is read afterwards only to say why the update missed.

use rei_core::generation::{AssetKey, GenerationRequest};
use rei_core::ids::{HoldId, JobId, ProductId, ProviderId, UserId};
use rei_core::jobs::{ErrorText, Job, JobState, JobStoreError, LIST_LIMIT_MAX, Priority, WorkerId};
use rei_core::time::Timestamp;

use super::engine::Engine;
use super::fields::{Fields, RowError, SqlRow, stored_error_text};
use super::values::{self, Value};

const TABLE: &str = "jobs";

/// The columns of `jobs`, in the order [`job_values`] lists them.
const COLUMNS: &str = "id, user_id, product, priority, price, hold_id, state, attempts, max_attempts, \
                       last_error, provider, created_ms, updated_ms, not_before_ms, lease_deadline_ms, \
                       lease_owner, result, request";

/// The statements of the job store in one engine's dialect. Values are bound in the order each field says.
pub(crate) struct JobSql {
    /// Inserts a row from [`job_values`] and the request (the 18th value) unless its id exists.
    pub(crate) insert: &'static str,
    /// Replaces every column but the id and the request (written once) from [`job_values`], where the id is the
    /// 1st value and the expected state the 18th.
    pub(crate) update: &'static str,
    /// [`JobSql::update`] that also requires the stored attempts to be the 8th value.
    pub(crate) update_fenced: &'static str,
    /// Reads `state, attempts` of the job whose id is the 1st value.
    pub(crate) state_of: &'static str,
    /// After `SELECT {columns} FROM jobs`: the job whose id is the 1st value.
    pub(crate) by_id: &'static str,
    /// After `SELECT {columns} FROM jobs`: jobs in the state of the 1st value by id, at most the 2nd value.
    pub(crate) by_state: &'static str,
    /// After `SELECT {columns} FROM jobs`: [`JobSql::by_state`] with ids above the 2nd value, at most the 3rd.
    pub(crate) by_state_after: &'static str,
    /// After `SELECT {columns} FROM jobs`: the jobs of the user of the 1st value, newest first, at most the 2nd.
    pub(crate) by_user: &'static str,
    /// After `SELECT {columns} FROM jobs`: [`JobSql::by_user`] with ids below the 2nd value, at most the 3rd.
    pub(crate) by_user_before: &'static str,
    /// After `SELECT {columns} FROM jobs`: running jobs whose lease deadline is before the 1st value, earliest
    /// first, at most the 2nd value.
    pub(crate) expired_leases: &'static str,
}

/// A corrupt row is reported as unavailable: the port has no other failure, and the message names the column.
fn corrupt(e: RowError) -> JobStoreError {
    JobStoreError::Unavailable { reason: format!("corrupt job row: {e}") }
}

/// The port's error for a failed statement.
fn unavailable(e: sqlx::Error) -> JobStoreError {
    JobStoreError::Unavailable { reason: e.to_string() }
}

/// The stored name of a priority. Pinned here, not taken from `Display`, because the CHECK constraints of the
/// migrations name these exact words.
const fn priority_name(p: Priority) -> &'static str {
    match p {
        Priority::Critical => "critical",
        Priority::High => "high",
        Priority::Normal => "normal",
        Priority::Low => "low",
    }
}

/// The stored name of a state, pinned for the same reason as [`priority_name`].
pub(crate) const fn state_name(s: JobState) -> &'static str {
    match s {
        JobState::Quoted => "quoted",
        JobState::Confirmed => "confirmed",
        JobState::Queued => "queued",
        JobState::Running => "running",
        JobState::Unknown => "unknown",
        JobState::Succeeded => "succeeded",
        JobState::Failed => "failed",
        JobState::Cancelled => "cancelled",
    }
}

/// `true` when a compare-and-set from `expected` must also find the caller's attempt: a `Running` or `Unknown`
/// job belongs to the attempt that leased it.
const fn fenced(expected: JobState) -> bool {
    matches!(expected, JobState::Running | JobState::Unknown)
}

/// Rebuilds a job from its row, checking every column.
fn job_from_row<R: SqlRow>(row: &R) -> Result<Job, RowError> {
    let f = Fields::new(TABLE, row);
    let last_error = f.parsed_or_null("last_error", stored_error_text)?;
    Ok(Job {
        id: JobId::from(f.id("id")?),
        user: UserId(f.int("user_id")?),
        product: f.parsed("product", ProductId::parse)?,
        priority: f.named("priority", Priority::ALL, priority_name)?,
        price: f.money("price")?,
        hold: HoldId::from(f.id("hold_id")?),
        state: f.named("state", JobState::ALL, state_name)?,
        attempts: f.unsigned("attempts")?,
        max_attempts: f.unsigned("max_attempts")?,
        last_error,
        provider: f.parsed_or_null("provider", ProviderId::parse)?,
        created_at: f.time("created_ms")?,
        updated_at: f.time("updated_ms")?,
        not_before: f.time("not_before_ms")?,
        lease_deadline: f.int_or_null("lease_deadline_ms")?.map(Timestamp::from_millis),
        lease_owner: f.parsed_or_null("lease_owner", WorkerId::parse)?,
        result: f.parsed_or_null("result", AssetKey::parse)?,
        request: f.parsed_or_null("request", GenerationRequest::decode)?,
    })
}

/// Why a compare-and-set of `job` from `expected` missed, from the job's `state` and `attempts` as read after
/// the miss (`None`: no such job).
fn missed<R: SqlRow>(job: &Job, expected: JobState, row: Option<&R>) -> JobStoreError {
    let Some(row) = row else { return JobStoreError::NotFound { id: job.id } };
    let f = Fields::new(TABLE, row);
    let conflict = || -> Result<JobStoreError, RowError> {
        let actual = f.named("state", JobState::ALL, state_name)?;
        Ok(JobStoreError::Conflict { id: job.id, expected, actual, actual_attempts: f.unsigned("attempts")? })
    };
    conflict().unwrap_or_else(corrupt)
}

/// Every column of `job` but the request, in [`COLUMNS`] order.
fn job_values(job: &Job) -> [Value<'_>; 17] {
    [
        Value::id(job.id.as_u128()),
        job.user.0.into(),
        job.product.as_str().into(),
        priority_name(job.priority).into(),
        job.price.kopecks().into(),
        Value::id(job.hold.as_u128()),
        state_name(job.state).into(),
        i64::from(job.attempts).into(),
        i64::from(job.max_attempts).into(),
        job.last_error.as_ref().map(ErrorText::as_str).into(),
        job.provider.as_ref().map(ProviderId::as_str).into(),
        job.created_at.as_millis().into(),
        job.updated_at.as_millis().into(),
        job.not_before.as_millis().into(),
        job.lease_deadline.map(Timestamp::as_millis).into(),
        job.lease_owner.as_ref().map(WorkerId::as_str).into(),
        job.result.as_ref().map(AssetKey::as_str).into(),
    ]
}

/// `limit` clamped to the port's maximum, as a SQL `LIMIT`.
fn sql_limit(limit: usize) -> i64 {
    values::sql_limit(limit, LIST_LIMIT_MAX)
}

async fn select<E: Engine>(db: &E, tail: &str, values: Vec<Value<'_>>) -> Result<Vec<Job>, JobStoreError> {
    let rows = db.fetch_all(&format!("SELECT {COLUMNS} FROM jobs {tail}"), values).await.map_err(unavailable)?;
    rows.iter().map(|r| job_from_row(r).map_err(corrupt)).collect()
}

/// [`JobStore::insert`](rei_core::jobs::JobStore::insert).
pub(crate) async fn insert<E: Engine>(db: &E, sql: &JobSql, job: &Job) -> Result<Job, JobStoreError> {
    let mut values = Vec::from(job_values(job));
    values.push(job.request.as_ref().map(GenerationRequest::encode).into());
    if db.execute(sql.insert, values).await.map_err(unavailable)? == 1 {
        // This insert wrote the row: what is stored is `job`.
        return Ok(job.clone());
    }
    // The id existed. Read it in a new statement (a new snapshot), so that losing a race to a concurrent insert of
    // the same id still returns the winner's row.
    get(db, sql, job.id)
        .await?
        .ok_or_else(|| JobStoreError::Unavailable { reason: format!("job {} missing right after its insert", job.id) })
}

/// [`JobStore::get`](rei_core::jobs::JobStore::get).
pub(crate) async fn get<E: Engine>(db: &E, sql: &JobSql, id: JobId) -> Result<Option<Job>, JobStoreError> {
    let select = format!("SELECT {COLUMNS} FROM jobs {}", sql.by_id);
    let row = db.fetch_optional(&select, vec![Value::id(id.as_u128())]).await.map_err(unavailable)?;
    row.as_ref().map(job_from_row).transpose().map_err(corrupt)
}

/// [`JobStore::update`](rei_core::jobs::JobStore::update).
pub(crate) async fn update<E: Engine>(
    db: &E,
    sql: &JobSql,
    job: &Job,
    expected: JobState,
) -> Result<(), JobStoreError> {
    let update = if fenced(expected) { sql.update_fenced } else { sql.update };
    let mut values = Vec::from(job_values(job));
    values.push(state_name(expected).into());
    if db.execute(update, values).await.map_err(unavailable)? == 1 {
        return Ok(());
    }
    // The update missed; this read only explains why (it decides nothing, so it cannot race).
    let row = db.fetch_optional(sql.state_of, vec![Value::id(job.id.as_u128())]).await.map_err(unavailable)?;
    Err(missed(job, expected, row.as_ref()))
}

/// [`JobStore::list_by_state`](rei_core::jobs::JobStore::list_by_state).
pub(crate) async fn list_by_state<E: Engine>(
    db: &E,
    sql: &JobSql,
    state: JobState,
    after: Option<JobId>,
    limit: usize,
) -> Result<Vec<Job>, JobStoreError> {
    let limit = sql_limit(limit);
    if limit == 0 {
        return Ok(Vec::new());
    }
    match after {
        Some(after) => {
            let values = vec![state_name(state).into(), Value::id(after.as_u128()), limit.into()];
            select(db, sql.by_state_after, values).await
        }
        None => select(db, sql.by_state, vec![state_name(state).into(), limit.into()]).await,
    }
}

/// [`JobStore::list_for_user`](rei_core::jobs::JobStore::list_for_user).
pub(crate) async fn list_for_user<E: Engine>(
    db: &E,
    sql: &JobSql,
    user: UserId,
    before: Option<JobId>,
    limit: usize,
) -> Result<Vec<Job>, JobStoreError> {
    let limit = sql_limit(limit);
    if limit == 0 {
        return Ok(Vec::new());
    }
    match before {
        Some(before) => {
            select(db, sql.by_user_before, vec![user.0.into(), Value::id(before.as_u128()), limit.into()]).await
        }
        None => select(db, sql.by_user, vec![user.0.into(), limit.into()]).await,
    }
}

/// [`JobStore::expired_leases`](rei_core::jobs::JobStore::expired_leases).
pub(crate) async fn expired_leases<E: Engine>(
    db: &E,
    sql: &JobSql,
    now: Timestamp,
    limit: usize,
) -> Result<Vec<Job>, JobStoreError> {
    let limit = sql_limit(limit);
    if limit == 0 {
        return Ok(Vec::new());
    }
    select(db, sql.expired_leases, vec![now.as_millis().into(), limit.into()]).await
}

/// Defines an engine's [`rei_core::jobs::JobStore`]: a struct `$store` over a `$pool`, whose every call runs the
/// shared step above with the engine's statements `$sql`. Only the SQL text differs between engines.
macro_rules! job_store {
    ($store:ident, $pool:ty, $sql:expr, $engine:literal) => {
        $crate::sql::stores::engine::pool_store!(
            $store,
            $pool,
            concat!(
                "A [`JobStore`](rei_core::jobs::JobStore) over a ",
                $engine,
                " pool; the schema comes from [`super::migrate`]."
            )
        );

        #[async_trait::async_trait]
        impl rei_core::jobs::JobStore for $store {
            async fn insert(
                &self,
                job: &rei_core::jobs::Job,
            ) -> Result<rei_core::jobs::Job, rei_core::jobs::JobStoreError> {
                $crate::sql::stores::jobs::insert(&self.pool, &$sql, job).await
            }

            async fn get(
                &self,
                id: rei_core::ids::JobId,
            ) -> Result<Option<rei_core::jobs::Job>, rei_core::jobs::JobStoreError> {
                $crate::sql::stores::jobs::get(&self.pool, &$sql, id).await
            }

            async fn update(
                &self,
                job: &rei_core::jobs::Job,
                expected: rei_core::jobs::JobState,
            ) -> Result<(), rei_core::jobs::JobStoreError> {
                $crate::sql::stores::jobs::update(&self.pool, &$sql, job, expected).await
            }

            async fn list_by_state(
                &self,
                state: rei_core::jobs::JobState,
                after: Option<rei_core::ids::JobId>,
                limit: usize,
            ) -> Result<Vec<rei_core::jobs::Job>, rei_core::jobs::JobStoreError> {
                $crate::sql::stores::jobs::list_by_state(&self.pool, &$sql, state, after, limit).await
            }

            async fn list_for_user(
                &self,
                user: rei_core::ids::UserId,
                before: Option<rei_core::ids::JobId>,
                limit: usize,
            ) -> Result<Vec<rei_core::jobs::Job>, rei_core::jobs::JobStoreError> {
                $crate::sql::stores::jobs::list_for_user(&self.pool, &$sql, user, before, limit).await
            }

            async fn expired_leases(
                &self,
                now: rei_core::time::Timestamp,
                limit: usize,
            ) -> Result<Vec<rei_core::jobs::Job>, rei_core::jobs::JobStoreError> {
                $crate::sql::stores::jobs::expired_leases(&self.pool, &$sql, now, limit).await
            }
        }
    };
}
pub(crate) use job_store;
