//! [`JobQueue`] in SQLite, the embedded default: one row per ticket in `job_queue`, dead letters in
//! `job_dead_letters`, and the sizes the capacities bound (and the last lease id) in the one-row table
//! `job_queue_counts`.
//!
//! SQLite has one writer at a time, so every call that writes runs its statements in one `BEGIN IMMEDIATE`
//! transaction: it takes the write lock first (waiting up to the pool's busy timeout), decides on what it
//! reads, and nobody can change that in between; no row locks or `SKIP LOCKED` are needed. `dequeue` picks the
//! best ready ticket and marks it in flight with a lease deadline and the next lease id (never reused). Every
//! call that names a lease matches on `(job, state = 'in_flight', lease_id)`, so a former holder's heartbeat,
//! ack or nack misses once the ticket was reclaimed or redelivered. Readers use other pool connections and see
//! a consistent snapshot (WAL).

use std::time::Duration;

use async_trait::async_trait;
use rei_core::ids::JobId;
use rei_core::jobs::{
    DeadLetter, Enqueued, ErrorText, JobQueue, JobQueueError, JobTicket, LIST_LIMIT_MAX, Lease, Priority, QueueLengths,
    WorkerId,
};
use rei_core::time::Timestamp;
use sqlx::sqlite::{SqlitePool, SqliteRow};
use sqlx::{Row, Sqlite, SqliteConnection};

use crate::sql::{id_bytes, id_from_bytes};

/// Marks the best ready ticket in flight under the next lease id, without aging: the order the index
/// `job_queue_waiting` holds. ?1 now, ?2 worker, ?3 lease deadline.
const DEQUEUE: &str = "UPDATE job_queue SET state = 'in_flight', \
                       lease_id = (SELECT last_lease_id + 1 FROM job_queue_counts WHERE id = 1), \
                       lease_owner = ?2, lease_deadline_ms = ?3 \
                       WHERE state = 'waiting' AND job = (SELECT job FROM job_queue \
                       WHERE state = 'waiting' AND not_before_ms <= ?1 \
                       ORDER BY priority_rank, enqueued_ms, job LIMIT 1) \
                       RETURNING job, priority, enqueued_ms, not_before_ms, lease_id, lease_owner, lease_deadline_ms";

/// The same with aging: the rank drops by one per whole `aging_step` (?4, in ms) waited, never below 0
/// (`critical`). No index holds this order, so the ready tickets are sorted on every call.
const DEQUEUE_AGED: &str = "UPDATE job_queue SET state = 'in_flight', \
                            lease_id = (SELECT last_lease_id + 1 FROM job_queue_counts WHERE id = 1), \
                            lease_owner = ?2, lease_deadline_ms = ?3 \
                            WHERE state = 'waiting' AND job = (SELECT job FROM job_queue \
                            WHERE state = 'waiting' AND not_before_ms <= ?1 \
                            ORDER BY max(priority_rank - max(?1 - enqueued_ms, 0) / ?4, 0), enqueued_ms, job \
                            LIMIT 1) \
                            RETURNING job, priority, enqueued_ms, not_before_ms, lease_id, lease_owner, \
                            lease_deadline_ms";

/// A bounded [`JobQueue`] over a SQLite pool, with optional aging; the schema comes from
/// [`super::migrate`]. Every write runs in a `BEGIN IMMEDIATE` transaction, so the one writer SQLite allows
/// decides each call whole.
#[derive(Debug, Clone)]
pub struct SqliteJobQueue {
    pool: SqlitePool,
    capacity: usize,
    dead_letter_capacity: usize,
    /// Whole milliseconds that raise a ticket one priority; `None` when aging is off.
    aging_step_ms: Option<i64>,
}

impl SqliteJobQueue {
    /// A queue over `pool`, which must be migrated, holding at most `capacity` waiting plus in-flight tickets
    /// and `dead_letter_capacity` dead letters. With `aging_step`, a ticket that waited `k` whole steps counts
    /// `k` priorities more urgent; `None`, or a step under one millisecond, turns aging off.
    #[must_use]
    pub fn new(
        pool: SqlitePool,
        capacity: usize,
        dead_letter_capacity: usize,
        aging_step: Option<Duration>,
    ) -> SqliteJobQueue {
        let aging_step_ms = aging_step.map(|s| i64::try_from(s.as_millis()).unwrap_or(i64::MAX)).filter(|ms| *ms > 0);
        SqliteJobQueue { pool, capacity, dead_letter_capacity, aging_step_ms }
    }
}

/// Why a stored row is not a ticket, lease or dead letter.
#[derive(Debug, thiserror::Error)]
enum RowError {
    /// The driver could not read the column as the expected type.
    #[error("{column} cannot be read: {source}")]
    Decode {
        /// Which column.
        column: &'static str,
        /// What the driver said.
        #[source]
        source: sqlx::Error,
    },
    /// The column holds a value the domain type refuses.
    #[error("{column} is invalid: {problem}")]
    Invalid {
        /// Which column.
        column: &'static str,
        /// What is wrong with it.
        problem: String,
    },
}

/// A corrupt row is reported as unavailable: the port has no other failure, and the message names the column.
fn corrupt(e: RowError) -> JobQueueError {
    JobQueueError::Unavailable { reason: format!("corrupt job queue row: {e}") }
}

fn unavailable(e: sqlx::Error) -> JobQueueError {
    JobQueueError::Unavailable { reason: e.to_string() }
}

fn lost(lease: &Lease) -> JobQueueError {
    JobQueueError::LeaseLost { job: lease.ticket.job, lease_id: lease.lease_id }
}

/// The stored lease id of `lease`. Stored ids are positive `INTEGER`s, so one that does not fit was never
/// handed out here and is lost.
fn lease_key(lease: &Lease) -> Result<i64, JobQueueError> {
    i64::try_from(lease.lease_id).map_err(|_| lost(lease))
}

/// A size limit as a SQL integer; limits past `i64::MAX` are no limit at all.
fn sql_count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
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

fn column<'r, T>(row: &'r SqliteRow, column: &'static str) -> Result<T, RowError>
where
    T: sqlx::Decode<'r, Sqlite> + sqlx::Type<Sqlite>,
{
    row.try_get(column).map_err(|source| RowError::Decode { column, source })
}

fn invalid(column: &'static str, problem: impl ToString) -> RowError {
    RowError::Invalid { column, problem: problem.to_string() }
}

/// Rebuilds a ticket from the `job, priority, enqueued_ms, not_before_ms` columns.
fn ticket_from_row(row: &SqliteRow) -> Result<JobTicket, RowError> {
    let job: Vec<u8> = column(row, "job")?;
    let priority: String = column(row, "priority")?;
    Ok(JobTicket {
        job: JobId::from(id_from_bytes(&job).map_err(|e| invalid("job", e))?),
        priority: Priority::ALL
            .into_iter()
            .find(|p| priority_name(*p) == priority)
            .ok_or_else(|| invalid("priority", format!("{priority:?}")))?,
        enqueued_at: Timestamp::from_millis(column(row, "enqueued_ms")?),
        not_before: Timestamp::from_millis(column(row, "not_before_ms")?),
    })
}

/// Rebuilds a lease from a ticket row in flight.
fn lease_from_row(row: &SqliteRow) -> Result<Lease, RowError> {
    let lease_id: i64 = column(row, "lease_id")?;
    let owner: String = column(row, "lease_owner")?;
    Ok(Lease {
        ticket: ticket_from_row(row)?,
        worker: WorkerId::parse(&owner).map_err(|e| invalid("lease_owner", e))?,
        lease_id: u64::try_from(lease_id).map_err(|_| invalid("lease_id", format!("{lease_id} is negative")))?,
        deadline: Timestamp::from_millis(column(row, "lease_deadline_ms")?),
    })
}

fn dead_letter_from_row(row: &SqliteRow) -> Result<DeadLetter, RowError> {
    let error: String = column(row, "error")?;
    if error.len() > ErrorText::LEN_MAX {
        // ErrorText::new cuts silently; a stored text it would cut was not written by this adapter.
        return Err(invalid("error", "too long"));
    }
    Ok(DeadLetter {
        ticket: ticket_from_row(row)?,
        error: ErrorText::new(&error),
        at: Timestamp::from_millis(column(row, "dead_ms")?),
    })
}

impl SqliteJobQueue {
    /// Opens a `BEGIN IMMEDIATE` transaction: the write lock is taken before anything is read.
    async fn write(&self) -> Result<sqlx::Transaction<'static, Sqlite>, JobQueueError> {
        self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(unavailable)
    }
}

/// Takes one slot of `column` in `job_queue_counts` unless it already holds `limit`; `false` when full.
async fn take_slot(conn: &mut SqliteConnection, column: Slot, limit: usize) -> Result<bool, JobQueueError> {
    let sql = match column {
        Slot::Ticket => "UPDATE job_queue_counts SET tickets = tickets + 1 WHERE id = 1 AND tickets < ?1",
        Slot::DeadLetter => {
            "UPDATE job_queue_counts SET dead_letters = dead_letters + 1 WHERE id = 1 AND dead_letters < ?1"
        }
    };
    let done = sqlx::query(sql).bind(sql_count(limit)).execute(conn).await.map_err(unavailable)?;
    Ok(done.rows_affected() == 1)
}

/// Gives one slot of `column` in `job_queue_counts` back.
async fn free_slot(conn: &mut SqliteConnection, column: Slot) -> Result<(), JobQueueError> {
    let sql = match column {
        Slot::Ticket => "UPDATE job_queue_counts SET tickets = tickets - 1 WHERE id = 1",
        Slot::DeadLetter => "UPDATE job_queue_counts SET dead_letters = dead_letters - 1 WHERE id = 1",
    };
    sqlx::query(sql).execute(conn).await.map_err(unavailable)?;
    Ok(())
}

/// Which bounded size a slot is of.
#[derive(Clone, Copy)]
enum Slot {
    /// Waiting plus in-flight tickets.
    Ticket,
    /// Dead letters.
    DeadLetter,
}

#[async_trait]
impl JobQueue for SqliteJobQueue {
    async fn enqueue(&self, ticket: JobTicket) -> Result<Enqueued, JobQueueError> {
        let mut tx = self.write().await?;
        let added = sqlx::query(
            "INSERT INTO job_queue (job, priority, state, enqueued_ms, not_before_ms) \
             VALUES (?1, ?2, 'waiting', ?3, ?4) ON CONFLICT (job) DO NOTHING",
        )
        .bind(id_bytes(ticket.job.as_u128()))
        .bind(priority_name(ticket.priority))
        .bind(ticket.enqueued_at.as_millis())
        .bind(ticket.not_before.as_millis())
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        if added.rows_affected() == 0 {
            tx.rollback().await.map_err(unavailable)?;
            return Ok(Enqueued::AlreadyPresent);
        }
        if !take_slot(&mut tx, Slot::Ticket, self.capacity).await? {
            tx.rollback().await.map_err(unavailable)?;
            return Err(JobQueueError::QueueFull { capacity: self.capacity });
        }
        tx.commit().await.map_err(unavailable)?;
        Ok(Enqueued::Added)
    }

    async fn dequeue(
        &self,
        worker: &WorkerId,
        now: Timestamp,
        lease: Duration,
    ) -> Result<Option<Lease>, JobQueueError> {
        let sql = if self.aging_step_ms.is_some() { DEQUEUE_AGED } else { DEQUEUE };
        let query = sqlx::query(sql).bind(now.as_millis()).bind(worker.as_str()).bind(now.plus(lease).as_millis());
        let query = match self.aging_step_ms {
            Some(step) => query.bind(step),
            None => query,
        };
        let mut tx = self.write().await?;
        let Some(row) = query.fetch_optional(&mut *tx).await.map_err(unavailable)? else {
            tx.rollback().await.map_err(unavailable)?;
            return Ok(None);
        };
        let leased = lease_from_row(&row).map_err(corrupt)?;
        sqlx::query("UPDATE job_queue_counts SET last_lease_id = last_lease_id + 1 WHERE id = 1")
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        Ok(Some(leased))
    }

    async fn heartbeat(&self, lease: &Lease, now: Timestamp, extend: Duration) -> Result<Lease, JobQueueError> {
        let lease_id = lease_key(lease)?;
        let mut tx = self.write().await?;
        let row = sqlx::query(
            "UPDATE job_queue SET lease_deadline_ms = ?4 \
             WHERE job = ?1 AND state = 'in_flight' AND lease_id = ?2 AND lease_deadline_ms >= ?3 \
             RETURNING job, priority, enqueued_ms, not_before_ms, lease_id, lease_owner, lease_deadline_ms",
        )
        .bind(id_bytes(lease.ticket.job.as_u128()))
        .bind(lease_id)
        .bind(now.as_millis())
        .bind(now.plus(extend).as_millis())
        .fetch_optional(&mut *tx)
        .await
        .map_err(unavailable)?;
        let Some(row) = row else {
            tx.rollback().await.map_err(unavailable)?;
            return Err(lost(lease));
        };
        let extended = lease_from_row(&row).map_err(corrupt)?;
        tx.commit().await.map_err(unavailable)?;
        Ok(extended)
    }

    async fn ack(&self, lease: &Lease) -> Result<(), JobQueueError> {
        let lease_id = lease_key(lease)?;
        let mut tx = self.write().await?;
        let gone = sqlx::query("DELETE FROM job_queue WHERE job = ?1 AND state = 'in_flight' AND lease_id = ?2")
            .bind(id_bytes(lease.ticket.job.as_u128()))
            .bind(lease_id)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        if gone.rows_affected() == 0 {
            tx.rollback().await.map_err(unavailable)?;
            return Err(lost(lease));
        }
        free_slot(&mut tx, Slot::Ticket).await?;
        tx.commit().await.map_err(unavailable)
    }

    async fn nack(
        &self,
        lease: &Lease,
        now: Timestamp,
        retry_at: Option<Timestamp>,
        error: &ErrorText,
    ) -> Result<(), JobQueueError> {
        let job = id_bytes(lease.ticket.job.as_u128());
        let lease_id = lease_key(lease)?;
        let mut tx = self.write().await?;
        if let Some(at) = retry_at {
            let done = sqlx::query(
                "UPDATE job_queue SET state = 'waiting', not_before_ms = ?3, lease_id = NULL, lease_owner = NULL, \
                 lease_deadline_ms = NULL WHERE job = ?1 AND state = 'in_flight' AND lease_id = ?2",
            )
            .bind(job)
            .bind(lease_id)
            .bind(at.as_millis())
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
            if done.rows_affected() == 0 {
                tx.rollback().await.map_err(unavailable)?;
                return Err(lost(lease));
            }
            return tx.commit().await.map_err(unavailable);
        }
        let gone = sqlx::query(
            "DELETE FROM job_queue WHERE job = ?1 AND state = 'in_flight' AND lease_id = ?2 \
             RETURNING job, priority, enqueued_ms, not_before_ms",
        )
        .bind(job)
        .bind(lease_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(unavailable)?;
        let Some(gone) = gone else {
            tx.rollback().await.map_err(unavailable)?;
            return Err(lost(lease));
        };
        if !take_slot(&mut tx, Slot::DeadLetter, self.dead_letter_capacity).await? {
            // No dead-letter slot: the rollback puts the ticket back, lease and all.
            tx.rollback().await.map_err(unavailable)?;
            return Err(JobQueueError::QueueFull { capacity: self.dead_letter_capacity });
        }
        free_slot(&mut tx, Slot::Ticket).await?;
        let ticket = ticket_from_row(&gone).map_err(corrupt)?;
        sqlx::query(
            "INSERT INTO job_dead_letters (job, priority, enqueued_ms, not_before_ms, error, dead_ms) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .bind(id_bytes(ticket.job.as_u128()))
        .bind(priority_name(ticket.priority))
        .bind(ticket.enqueued_at.as_millis())
        .bind(ticket.not_before.as_millis())
        .bind(error.as_str())
        .bind(now.as_millis())
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)
    }

    async fn reclaim_expired(&self, now: Timestamp) -> Result<usize, JobQueueError> {
        let mut tx = self.write().await?;
        let done = sqlx::query(
            "UPDATE job_queue SET state = 'waiting', lease_id = NULL, lease_owner = NULL, lease_deadline_ms = NULL \
             WHERE state = 'in_flight' AND lease_deadline_ms < ?1",
        )
        .bind(now.as_millis())
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        Ok(usize::try_from(done.rows_affected()).unwrap_or(usize::MAX))
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, JobQueueError> {
        let limit = sql_count(limit.min(LIST_LIMIT_MAX));
        let rows = sqlx::query(
            "SELECT job, priority, enqueued_ms, not_before_ms, error, dead_ms FROM job_dead_letters \
             ORDER BY seq LIMIT ?1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        rows.iter().map(|r| dead_letter_from_row(r).map_err(corrupt)).collect()
    }

    async fn replay_dead_letter(&self, job: JobId, now: Timestamp) -> Result<(), JobQueueError> {
        let mut tx = self.write().await?;
        let gone = sqlx::query(
            "DELETE FROM job_dead_letters WHERE seq = \
             (SELECT seq FROM job_dead_letters WHERE job = ?1 ORDER BY seq LIMIT 1) RETURNING priority",
        )
        .bind(id_bytes(job.as_u128()))
        .fetch_optional(&mut *tx)
        .await
        .map_err(unavailable)?;
        let Some(gone) = gone else {
            tx.rollback().await.map_err(unavailable)?;
            return Err(JobQueueError::NotDeadLettered { job });
        };
        free_slot(&mut tx, Slot::DeadLetter).await?;
        let priority: String = column(&gone, "priority").map_err(corrupt)?;
        // The stored text goes back as it is: the CHECK constraints of both tables name the same words.
        let added = sqlx::query(
            "INSERT INTO job_queue (job, priority, state, enqueued_ms, not_before_ms) \
             VALUES (?1, ?2, 'waiting', ?3, ?3) ON CONFLICT (job) DO NOTHING",
        )
        .bind(id_bytes(job.as_u128()))
        .bind(priority)
        .bind(now.as_millis())
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        if added.rows_affected() == 1 && !take_slot(&mut tx, Slot::Ticket, self.capacity).await? {
            // The capacity was reached: the rollback keeps the dead letter.
            tx.rollback().await.map_err(unavailable)?;
            return Err(JobQueueError::QueueFull { capacity: self.capacity });
        }
        tx.commit().await.map_err(unavailable)
    }

    async fn len_by_priority(&self) -> Result<QueueLengths, JobQueueError> {
        // One statement, so that the three numbers come from one snapshot.
        let rows = sqlx::query(
            "SELECT priority_rank AS rank, state, count(*) AS n FROM job_queue GROUP BY priority_rank, state \
             UNION ALL SELECT -1, 'dead', dead_letters FROM job_queue_counts WHERE id = 1",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        let mut lengths = QueueLengths::default();
        for row in &rows {
            let rank: i64 = column(row, "rank").map_err(corrupt)?;
            let state: String = column(row, "state").map_err(corrupt)?;
            let n: i64 = column(row, "n").map_err(corrupt)?;
            let n = usize::try_from(n).map_err(|_| corrupt(invalid("count", format!("{n} is negative"))))?;
            match (state.as_str(), usize::try_from(rank)) {
                ("waiting", Ok(rank)) if rank < lengths.waiting.len() => lengths.waiting[rank] += n,
                ("in_flight", _) => lengths.in_flight += n,
                ("dead", _) => lengths.dead_letters = n,
                _ => return Err(corrupt(invalid("state", format!("{state:?} at rank {rank}")))),
            }
        }
        Ok(lengths)
    }

    async fn contains(&self, job: JobId) -> Result<bool, JobQueueError> {
        let found: i64 = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM job_queue WHERE job = ?1)")
            .bind(id_bytes(job.as_u128()))
            .fetch_one(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(found != 0)
    }
}
