//! [`JobQueue`] in PostgreSQL: one row per ticket in `job_queue`, dead letters in `job_dead_letters`, and the
//! sizes the capacities bound in the one-row table `job_queue_counts`.
//!
//! `dequeue` is one statement: the best ready ticket is picked with `FOR UPDATE SKIP LOCKED`, so concurrent
//! workers never take the same ticket and never wait for each other, and it is marked in flight with a lease
//! deadline and a lease id drawn from a sequence (new for every delivery). Every call that names a lease
//! matches on `(job, state = 'in_flight', lease_id)`, so a former holder's heartbeat, ack or nack misses once
//! the ticket was reclaimed or redelivered. `reclaim_expired` is one `UPDATE`.
//!
//! The calls that change how many tickets or dead letters there are (enqueue, ack, nack to the dead letters,
//! replay) update `job_queue_counts` in the same statement as the ticket, conditioned on what that statement
//! really changed, so the counts never drift; a capacity check is then one row, not a count of the table. The
//! row lock on the counts serialises those calls for the length of one short transaction; dequeue, reclaim and
//! retry only move tickets between states and never touch it.

use std::time::Duration;

use async_trait::async_trait;
use rei_core::ids::JobId;
use rei_core::jobs::{
    DeadLetter, Enqueued, ErrorText, JobQueue, JobQueueError, JobTicket, LIST_LIMIT_MAX, Lease, Priority, QueueLengths,
    WorkerId,
};
use rei_core::time::Timestamp;
use sqlx::postgres::{PgPool, PgRow};
use sqlx::{Postgres, Row};

use crate::sql::{id_bytes, id_from_bytes};

/// Picks the best ready ticket without aging: the order the partial index `job_queue_waiting` holds.
/// $1 now, $2 worker, $3 lease deadline.
const DEQUEUE: &str = "UPDATE job_queue SET state = 'in_flight', lease_id = nextval('job_queue_lease_ids'), \
                       lease_owner = $2, lease_deadline_ms = $3 \
                       WHERE state = 'waiting' AND job = (SELECT job FROM job_queue \
                       WHERE state = 'waiting' AND not_before_ms <= $1 \
                       ORDER BY priority_rank, enqueued_ms, job LIMIT 1 FOR UPDATE SKIP LOCKED) \
                       RETURNING job, priority, enqueued_ms, not_before_ms, lease_id, lease_owner, lease_deadline_ms";

/// Picks the best ready ticket with aging: the rank drops by one per whole `aging_step` ($4, in ms) waited,
/// never below 0 (`critical`). No index holds this order, so the ready tickets are sorted on every call.
const DEQUEUE_AGED: &str = "UPDATE job_queue SET state = 'in_flight', lease_id = nextval('job_queue_lease_ids'), \
                            lease_owner = $2, lease_deadline_ms = $3 \
                            WHERE state = 'waiting' AND job = (SELECT job FROM job_queue \
                            WHERE state = 'waiting' AND not_before_ms <= $1 \
                            ORDER BY GREATEST(priority_rank - GREATEST($1 - enqueued_ms, 0) / $4, 0), \
                            enqueued_ms, job LIMIT 1 FOR UPDATE SKIP LOCKED) \
                            RETURNING job, priority, enqueued_ms, not_before_ms, lease_id, lease_owner, \
                            lease_deadline_ms";

/// Adds a ticket unless the job has one, and takes a slot of the capacity only if the row went in.
/// $1 job, $2 priority, $3 enqueued, $4 not before, $5 capacity.
const ENQUEUE: &str = "WITH ins AS (INSERT INTO job_queue (job, priority, state, enqueued_ms, not_before_ms) \
                       VALUES ($1, $2, 'waiting', $3, $4) ON CONFLICT (job) DO NOTHING RETURNING job), \
                       slot AS (UPDATE job_queue_counts SET tickets = tickets + 1 \
                       WHERE id = 1 AND tickets < $5 AND EXISTS (SELECT 1 FROM ins) RETURNING tickets) \
                       SELECT (SELECT count(*) FROM ins) AS added, (SELECT count(*) FROM slot) AS slots";

/// Extends a held, unexpired lease. $1 job, $2 lease id, $3 now, $4 new deadline.
const HEARTBEAT: &str = "UPDATE job_queue SET lease_deadline_ms = $4 \
                         WHERE job = $1 AND state = 'in_flight' AND lease_id = $2 AND lease_deadline_ms >= $3 \
                         RETURNING job, priority, enqueued_ms, not_before_ms, lease_id, lease_owner, \
                         lease_deadline_ms";

/// Removes a held ticket and gives its slot back. $1 job, $2 lease id.
const ACK: &str = "WITH gone AS (DELETE FROM job_queue WHERE job = $1 AND state = 'in_flight' AND lease_id = $2 \
                   RETURNING job), \
                   slot AS (UPDATE job_queue_counts SET tickets = tickets - 1 \
                   WHERE id = 1 AND EXISTS (SELECT 1 FROM gone) RETURNING tickets) \
                   SELECT count(*) FROM gone";

/// Puts a held ticket back to waiting until $3. $1 job, $2 lease id.
const RETRY: &str = "UPDATE job_queue SET state = 'waiting', not_before_ms = $3, lease_id = NULL, \
                     lease_owner = NULL, lease_deadline_ms = NULL \
                     WHERE job = $1 AND state = 'in_flight' AND lease_id = $2";

/// Moves a held ticket to the dead letters if one is free. $1 job, $2 lease id, $3 dead-letter capacity,
/// $4 error, $5 now. When the ticket went but no slot was free, the caller rolls the transaction back.
const BURY: &str = "WITH gone AS (DELETE FROM job_queue WHERE job = $1 AND state = 'in_flight' AND lease_id = $2 \
                    RETURNING job, priority, enqueued_ms, not_before_ms), \
                    slot AS (UPDATE job_queue_counts SET tickets = tickets - 1, dead_letters = dead_letters + 1 \
                    WHERE id = 1 AND dead_letters < $3 AND EXISTS (SELECT 1 FROM gone) RETURNING dead_letters), \
                    dead AS (INSERT INTO job_dead_letters (job, priority, enqueued_ms, not_before_ms, error, dead_ms) \
                    SELECT job, priority, enqueued_ms, not_before_ms, $4, $5 FROM gone \
                    WHERE EXISTS (SELECT 1 FROM slot) RETURNING seq) \
                    SELECT (SELECT count(*) FROM gone) AS gone, (SELECT count(*) FROM slot) AS slots";

/// Puts every expired lease back to waiting. $1 now.
const RECLAIM: &str = "UPDATE job_queue SET state = 'waiting', lease_id = NULL, lease_owner = NULL, \
                       lease_deadline_ms = NULL WHERE state = 'in_flight' AND lease_deadline_ms < $1";

/// Moves the oldest dead letter of $1 back to waiting at $2 (dropped if the job has a ticket), taking a slot of
/// the capacity ($3) only for a ticket that went in. When a ticket went in but no slot was free, the caller
/// rolls the transaction back.
const REPLAY: &str = "WITH pick AS (SELECT seq FROM job_dead_letters WHERE job = $1 ORDER BY seq LIMIT 1 FOR UPDATE), \
                      gone AS (DELETE FROM job_dead_letters d USING pick WHERE d.seq = pick.seq \
                      RETURNING d.job, d.priority), \
                      ins AS (INSERT INTO job_queue (job, priority, state, enqueued_ms, not_before_ms) \
                      SELECT job, priority, 'waiting', $2, $2 FROM gone ON CONFLICT (job) DO NOTHING RETURNING job), \
                      slot AS (UPDATE job_queue_counts SET dead_letters = dead_letters - 1, \
                      tickets = tickets + (SELECT count(*) FROM ins) \
                      WHERE id = 1 AND EXISTS (SELECT 1 FROM gone) \
                      AND (tickets < $3 OR NOT EXISTS (SELECT 1 FROM ins)) RETURNING tickets) \
                      SELECT (SELECT count(*) FROM gone) AS gone, (SELECT count(*) FROM ins) AS added, \
                      (SELECT count(*) FROM slot) AS slots";

/// A bounded [`JobQueue`] over a PostgreSQL pool, with optional aging; the schema comes from
/// [`super::migrate`]. Several processes may share one queue: every call is safe under concurrency.
#[derive(Debug, Clone)]
pub struct PgJobQueue {
    pool: PgPool,
    capacity: usize,
    dead_letter_capacity: usize,
    /// Whole milliseconds that raise a ticket one priority; `None` when aging is off.
    aging_step_ms: Option<i64>,
}

impl PgJobQueue {
    /// A queue over `pool`, which must be migrated, holding at most `capacity` waiting plus in-flight tickets
    /// and `dead_letter_capacity` dead letters. With `aging_step`, a ticket that waited `k` whole steps counts
    /// `k` priorities more urgent; `None`, or a step under one millisecond, turns aging off.
    #[must_use]
    pub fn new(pool: PgPool, capacity: usize, dead_letter_capacity: usize, aging_step: Option<Duration>) -> PgJobQueue {
        let aging_step_ms = aging_step.map(|s| i64::try_from(s.as_millis()).unwrap_or(i64::MAX)).filter(|ms| *ms > 0);
        PgJobQueue { pool, capacity, dead_letter_capacity, aging_step_ms }
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

/// The stored lease id of `lease`. Stored ids are positive `BIGINT`s, so one that does not fit was never
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

fn column<'r, T>(row: &'r PgRow, column: &'static str) -> Result<T, RowError>
where
    T: sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres>,
{
    row.try_get(column).map_err(|source| RowError::Decode { column, source })
}

fn invalid(column: &'static str, problem: impl ToString) -> RowError {
    RowError::Invalid { column, problem: problem.to_string() }
}

/// Rebuilds a ticket from the `job, priority, enqueued_ms, not_before_ms` columns.
fn ticket_from_row(row: &PgRow) -> Result<JobTicket, RowError> {
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
fn lease_from_row(row: &PgRow) -> Result<Lease, RowError> {
    let lease_id: i64 = column(row, "lease_id")?;
    let owner: String = column(row, "lease_owner")?;
    Ok(Lease {
        ticket: ticket_from_row(row)?,
        worker: WorkerId::parse(&owner).map_err(|e| invalid("lease_owner", e))?,
        lease_id: u64::try_from(lease_id).map_err(|_| invalid("lease_id", format!("{lease_id} is negative")))?,
        deadline: Timestamp::from_millis(column(row, "lease_deadline_ms")?),
    })
}

fn dead_letter_from_row(row: &PgRow) -> Result<DeadLetter, RowError> {
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

/// Reads the named `count(*)` columns of a one-row result.
fn counts<const N: usize>(row: &PgRow, names: [&'static str; N]) -> Result<[i64; N], JobQueueError> {
    let mut out = [0; N];
    for (slot, name) in out.iter_mut().zip(names) {
        *slot = column(row, name).map_err(corrupt)?;
    }
    Ok(out)
}

#[async_trait]
impl JobQueue for PgJobQueue {
    async fn enqueue(&self, ticket: JobTicket) -> Result<Enqueued, JobQueueError> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        let row = sqlx::query(ENQUEUE)
            .bind(id_bytes(ticket.job.as_u128()))
            .bind(priority_name(ticket.priority))
            .bind(ticket.enqueued_at.as_millis())
            .bind(ticket.not_before.as_millis())
            .bind(sql_count(self.capacity))
            .fetch_one(&mut *tx)
            .await
            .map_err(unavailable)?;
        match counts(&row, ["added", "slots"])? {
            [0, _] => {
                tx.rollback().await.map_err(unavailable)?;
                Ok(Enqueued::AlreadyPresent)
            }
            [_, 0] => {
                // The row went in but the capacity was reached: take the row back out.
                tx.rollback().await.map_err(unavailable)?;
                Err(JobQueueError::QueueFull { capacity: self.capacity })
            }
            _ => {
                tx.commit().await.map_err(unavailable)?;
                Ok(Enqueued::Added)
            }
        }
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
        let row = query.fetch_optional(&self.pool).await.map_err(unavailable)?;
        row.as_ref().map(lease_from_row).transpose().map_err(corrupt)
    }

    async fn heartbeat(&self, lease: &Lease, now: Timestamp, extend: Duration) -> Result<Lease, JobQueueError> {
        let row = sqlx::query(HEARTBEAT)
            .bind(id_bytes(lease.ticket.job.as_u128()))
            .bind(lease_key(lease)?)
            .bind(now.as_millis())
            .bind(now.plus(extend).as_millis())
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?;
        let row = row.ok_or_else(|| lost(lease))?;
        lease_from_row(&row).map_err(corrupt)
    }

    async fn ack(&self, lease: &Lease) -> Result<(), JobQueueError> {
        let row = sqlx::query(ACK)
            .bind(id_bytes(lease.ticket.job.as_u128()))
            .bind(lease_key(lease)?)
            .fetch_one(&self.pool)
            .await
            .map_err(unavailable)?;
        let removed: i64 = row.try_get(0).map_err(unavailable)?;
        if removed == 0 { Err(lost(lease)) } else { Ok(()) }
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
        if let Some(at) = retry_at {
            let done = sqlx::query(RETRY)
                .bind(job)
                .bind(lease_id)
                .bind(at.as_millis())
                .execute(&self.pool)
                .await
                .map_err(unavailable)?;
            return if done.rows_affected() == 0 { Err(lost(lease)) } else { Ok(()) };
        }
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        let row = sqlx::query(BURY)
            .bind(job)
            .bind(lease_id)
            .bind(sql_count(self.dead_letter_capacity))
            .bind(error.as_str())
            .bind(now.as_millis())
            .fetch_one(&mut *tx)
            .await
            .map_err(unavailable)?;
        match counts(&row, ["gone", "slots"])? {
            [0, _] => {
                tx.rollback().await.map_err(unavailable)?;
                Err(lost(lease))
            }
            [_, 0] => {
                // No dead-letter slot: the rollback puts the ticket back, lease and all.
                tx.rollback().await.map_err(unavailable)?;
                Err(JobQueueError::QueueFull { capacity: self.dead_letter_capacity })
            }
            _ => tx.commit().await.map_err(unavailable),
        }
    }

    async fn reclaim_expired(&self, now: Timestamp) -> Result<usize, JobQueueError> {
        let done = sqlx::query(RECLAIM).bind(now.as_millis()).execute(&self.pool).await.map_err(unavailable)?;
        Ok(usize::try_from(done.rows_affected()).unwrap_or(usize::MAX))
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, JobQueueError> {
        let limit = sql_count(limit.min(LIST_LIMIT_MAX));
        let rows = sqlx::query(
            "SELECT job, priority, enqueued_ms, not_before_ms, error, dead_ms FROM job_dead_letters \
             ORDER BY seq LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        rows.iter().map(|r| dead_letter_from_row(r).map_err(corrupt)).collect()
    }

    async fn replay_dead_letter(&self, job: JobId, now: Timestamp) -> Result<(), JobQueueError> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        let row = sqlx::query(REPLAY)
            .bind(id_bytes(job.as_u128()))
            .bind(now.as_millis())
            .bind(sql_count(self.capacity))
            .fetch_one(&mut *tx)
            .await
            .map_err(unavailable)?;
        match counts(&row, ["gone", "added", "slots"])? {
            [0, _, _] => {
                tx.rollback().await.map_err(unavailable)?;
                Err(JobQueueError::NotDeadLettered { job })
            }
            [_, _, 0] => {
                // The ticket went in but the capacity was reached: the rollback keeps the dead letter.
                tx.rollback().await.map_err(unavailable)?;
                Err(JobQueueError::QueueFull { capacity: self.capacity })
            }
            _ => tx.commit().await.map_err(unavailable),
        }
    }

    async fn len_by_priority(&self) -> Result<QueueLengths, JobQueueError> {
        // One statement, so that the three numbers come from one snapshot.
        let rows = sqlx::query(
            "SELECT priority_rank::BIGINT AS rank, state, count(*) AS n FROM job_queue GROUP BY priority_rank, state \
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
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM job_queue WHERE job = $1)")
            .bind(id_bytes(job.as_u128()))
            .fetch_one(&self.pool)
            .await
            .map_err(unavailable)
    }
}
