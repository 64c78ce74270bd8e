//! [`JobStore`] in SQLite: one row per job in `jobs`.
//!
//! Every compare-and-set is one conditional `UPDATE … WHERE id = ?1 AND state = ?17 [AND attempts = ?8]`
//! whose row count decides; the row is read afterwards only to say why the update missed.

use async_trait::async_trait;
use rei_core::ids::{HoldId, JobId, ProductId, ProviderId, UserId};
use rei_core::jobs::{ErrorText, Job, JobState, JobStore, JobStoreError, LIST_LIMIT_MAX, Priority, WorkerId};
use rei_core::money::Money;
use rei_core::time::Timestamp;
use sqlx::query::Query;
use sqlx::sqlite::{SqliteArguments, SqlitePool, SqliteRow};
use sqlx::{Row, Sqlite};

use crate::sql::{id_bytes, id_from_bytes};

/// The columns of `jobs`, in the order [`bind_job`] binds them (?1 to ?16).
const COLUMNS: &str = "id, user_id, product, priority, price, hold_id, state, attempts, max_attempts, last_error, \
                       provider, created_ms, updated_ms, not_before_ms, lease_deadline_ms, lease_owner";

const INSERT: &str = "INSERT INTO jobs (id, user_id, product, priority, price, hold_id, state, attempts, \
                      max_attempts, last_error, provider, created_ms, updated_ms, not_before_ms, lease_deadline_ms, \
                      lease_owner) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16) \
                      ON CONFLICT (id) DO NOTHING";

/// The replacement of every column but the id, guarded by the expected state (?17).
macro_rules! update_sql {
    ($fence:literal) => {
        concat!(
            "UPDATE jobs SET user_id = ?2, product = ?3, priority = ?4, price = ?5, hold_id = ?6, state = ?7, ",
            "attempts = ?8, max_attempts = ?9, last_error = ?10, provider = ?11, created_ms = ?12, ",
            "updated_ms = ?13, not_before_ms = ?14, lease_deadline_ms = ?15, lease_owner = ?16 ",
            "WHERE id = ?1 AND state = ?17",
            $fence
        )
    };
}

/// The update for expected states that do not fence on the attempt.
const UPDATE: &str = update_sql!("");
/// The update for `Running` and `Unknown`: the stored attempt must be the caller's.
const UPDATE_FENCED: &str = update_sql!(" AND attempts = ?8");

/// A [`JobStore`] over a SQLite pool; the schema comes from [`super::migrate`].
#[derive(Debug, Clone)]
pub struct SqliteJobStore {
    pool: SqlitePool,
}

impl SqliteJobStore {
    /// A store over `pool`, which must be migrated.
    #[must_use]
    pub fn new(pool: SqlitePool) -> SqliteJobStore {
        SqliteJobStore { pool }
    }
}

/// Why a stored row is not a job.
#[derive(Debug, thiserror::Error)]
enum RowError {
    /// The driver could not read the column as the expected type.
    #[error("jobs.{column} cannot be read: {source}")]
    Decode {
        /// Which column.
        column: &'static str,
        /// What the driver said.
        #[source]
        source: sqlx::Error,
    },
    /// The column holds a value the domain type refuses.
    #[error("jobs.{column} is invalid: {problem}")]
    Invalid {
        /// Which column.
        column: &'static str,
        /// What is wrong with it.
        problem: String,
    },
}

/// A corrupt row is reported as unavailable: the port has no other failure, and the message names the column.
fn corrupt(e: RowError) -> JobStoreError {
    JobStoreError::Unavailable { reason: format!("corrupt job row: {e}") }
}

fn unavailable(e: sqlx::Error) -> JobStoreError {
    JobStoreError::Unavailable { reason: e.to_string() }
}

/// The stored name of a priority. Pinned here, not taken from `Display`, because the CHECK constraints of the
/// migration name these exact words.
const fn priority_name(p: Priority) -> &'static str {
    match p {
        Priority::Critical => "critical",
        Priority::High => "high",
        Priority::Normal => "normal",
        Priority::Low => "low",
    }
}

/// The stored name of a state, pinned for the same reason as [`priority_name`].
const fn state_name(s: JobState) -> &'static str {
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

fn column<'r, T>(row: &'r SqliteRow, column: &'static str) -> Result<T, RowError>
where
    T: sqlx::Decode<'r, Sqlite> + sqlx::Type<Sqlite>,
{
    row.try_get(column).map_err(|source| RowError::Decode { column, source })
}

fn invalid(column: &'static str, problem: impl ToString) -> RowError {
    RowError::Invalid { column, problem: problem.to_string() }
}

fn id_column(row: &SqliteRow, name: &'static str) -> Result<u128, RowError> {
    let bytes: Vec<u8> = column(row, name)?;
    id_from_bytes(&bytes).map_err(|e| invalid(name, e))
}

fn state_column(row: &SqliteRow, name: &'static str) -> Result<JobState, RowError> {
    let text: String = column(row, name)?;
    JobState::ALL.into_iter().find(|s| state_name(*s) == text).ok_or_else(|| invalid(name, format!("{text:?}")))
}

fn attempts_column(row: &SqliteRow, name: &'static str) -> Result<u32, RowError> {
    let n: i64 = column(row, name)?;
    u32::try_from(n).map_err(|_| invalid(name, format!("{n} is not a u32")))
}

/// Rebuilds a job from its row, checking every column.
fn job_from_row(row: &SqliteRow) -> Result<Job, RowError> {
    let priority: String = column(row, "priority")?;
    let priority = Priority::ALL
        .into_iter()
        .find(|p| priority_name(*p) == priority)
        .ok_or_else(|| invalid("priority", format!("{priority:?}")))?;
    let product: String = column(row, "product")?;
    let last_error: Option<String> = column(row, "last_error")?;
    let provider: Option<String> = column(row, "provider")?;
    let lease_owner: Option<String> = column(row, "lease_owner")?;
    let lease_deadline: Option<i64> = column(row, "lease_deadline_ms")?;
    Ok(Job {
        id: JobId::from(id_column(row, "id")?),
        user: UserId(column(row, "user_id")?),
        product: ProductId::parse(&product).map_err(|e| invalid("product", e))?,
        priority,
        price: Money::from_kopecks(column(row, "price")?),
        hold: HoldId::from(id_column(row, "hold_id")?),
        state: state_column(row, "state")?,
        attempts: attempts_column(row, "attempts")?,
        max_attempts: attempts_column(row, "max_attempts")?,
        last_error: match last_error {
            // ErrorText::new cuts silently; a stored text it would cut was not written by this adapter.
            Some(text) if text.len() > ErrorText::LEN_MAX => return Err(invalid("last_error", "too long")),
            Some(text) => Some(ErrorText::new(&text)),
            None => None,
        },
        provider: provider.map(|p| ProviderId::parse(&p)).transpose().map_err(|e| invalid("provider", e))?,
        created_at: Timestamp::from_millis(column(row, "created_ms")?),
        updated_at: Timestamp::from_millis(column(row, "updated_ms")?),
        not_before: Timestamp::from_millis(column(row, "not_before_ms")?),
        lease_deadline: lease_deadline.map(Timestamp::from_millis),
        lease_owner: lease_owner.map(|w| WorkerId::parse(&w)).transpose().map_err(|e| invalid("lease_owner", e))?,
    })
}

/// Binds every column of `job` as ?1 to ?16, in [`COLUMNS`] order.
fn bind_job<'q>(query: Query<'q, Sqlite, SqliteArguments<'q>>, job: &'q Job) -> Query<'q, Sqlite, SqliteArguments<'q>> {
    query
        .bind(id_bytes(job.id.as_u128()))
        .bind(job.user.0)
        .bind(job.product.as_str())
        .bind(priority_name(job.priority))
        .bind(job.price.kopecks())
        .bind(id_bytes(job.hold.as_u128()))
        .bind(state_name(job.state))
        .bind(i64::from(job.attempts))
        .bind(i64::from(job.max_attempts))
        .bind(job.last_error.as_ref().map(ErrorText::as_str))
        .bind(job.provider.as_ref().map(ProviderId::as_str))
        .bind(job.created_at.as_millis())
        .bind(job.updated_at.as_millis())
        .bind(job.not_before.as_millis())
        .bind(job.lease_deadline.map(Timestamp::as_millis))
        .bind(job.lease_owner.as_ref().map(WorkerId::as_str))
}

/// `limit` clamped to the port's maximum, as a SQL `LIMIT`.
fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit.min(LIST_LIMIT_MAX)).unwrap_or(0)
}

impl SqliteJobStore {
    async fn fetch_jobs<'q>(&self, query: Query<'q, Sqlite, SqliteArguments<'q>>) -> Result<Vec<Job>, JobStoreError> {
        let rows = query.fetch_all(&self.pool).await.map_err(unavailable)?;
        rows.iter().map(|r| job_from_row(r).map_err(corrupt)).collect()
    }
}

#[async_trait]
impl JobStore for SqliteJobStore {
    async fn insert(&self, job: &Job) -> Result<Job, JobStoreError> {
        bind_job(sqlx::query(INSERT), job).execute(&self.pool).await.map_err(unavailable)?;
        // Read back in a new statement (a new snapshot), so that losing a race to a concurrent insert of the
        // same id still returns the winner's row.
        self.get(job.id).await?.ok_or_else(|| JobStoreError::Unavailable {
            reason: format!("job {} missing right after its insert", job.id),
        })
    }

    async fn get(&self, id: JobId) -> Result<Option<Job>, JobStoreError> {
        let sql = format!("SELECT {COLUMNS} FROM jobs WHERE id = ?1");
        let row =
            sqlx::query(&sql).bind(id_bytes(id.as_u128())).fetch_optional(&self.pool).await.map_err(unavailable)?;
        row.as_ref().map(job_from_row).transpose().map_err(corrupt)
    }

    async fn update(&self, job: &Job, expected: JobState) -> Result<(), JobStoreError> {
        let fenced = matches!(expected, JobState::Running | JobState::Unknown);
        let sql = if fenced { UPDATE_FENCED } else { UPDATE };
        let done = bind_job(sqlx::query(sql), job)
            .bind(state_name(expected))
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        if done.rows_affected() == 1 {
            return Ok(());
        }
        // The update missed; this read only explains why (it decides nothing, so it cannot race).
        let row = sqlx::query("SELECT state, attempts FROM jobs WHERE id = ?1")
            .bind(id_bytes(job.id.as_u128()))
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?;
        let Some(row) = row else { return Err(JobStoreError::NotFound { id: job.id }) };
        let actual = state_column(&row, "state").map_err(corrupt)?;
        let actual_attempts = attempts_column(&row, "attempts").map_err(corrupt)?;
        Err(JobStoreError::Conflict { id: job.id, expected, actual, actual_attempts })
    }

    async fn list_by_state(
        &self,
        state: JobState,
        after: Option<JobId>,
        limit: usize,
    ) -> Result<Vec<Job>, JobStoreError> {
        let limit = sql_limit(limit);
        if limit == 0 {
            return Ok(Vec::new());
        }
        let sql = match after {
            Some(_) => format!("SELECT {COLUMNS} FROM jobs WHERE state = ?1 AND id > ?2 ORDER BY id LIMIT ?3"),
            None => format!("SELECT {COLUMNS} FROM jobs WHERE state = ?1 ORDER BY id LIMIT ?2"),
        };
        let query = sqlx::query(&sql).bind(state_name(state));
        let query = match after {
            Some(after) => query.bind(id_bytes(after.as_u128())),
            None => query,
        };
        self.fetch_jobs(query.bind(limit)).await
    }

    async fn expired_leases(&self, now: Timestamp, limit: usize) -> Result<Vec<Job>, JobStoreError> {
        let limit = sql_limit(limit);
        if limit == 0 {
            return Ok(Vec::new());
        }
        // Served by jobs_state_lease: the state, then the deadline range in order.
        let sql = format!(
            "SELECT {COLUMNS} FROM jobs WHERE state = 'running' AND lease_deadline_ms < ?1 \
             ORDER BY lease_deadline_ms, id LIMIT ?2"
        );
        self.fetch_jobs(sqlx::query(&sql).bind(now.as_millis()).bind(limit)).await
    }
}
