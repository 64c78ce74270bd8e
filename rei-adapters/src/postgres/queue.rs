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
    DeadLetter, Enqueued, ErrorText, JobQueue, JobQueueError, JobTicket, Lease, QueueLengths, WorkerId,
};
use rei_core::time::Timestamp;
use sqlx::postgres::PgPool;

use crate::sql::stores::engine::Engine;
use crate::sql::stores::queue::{self, DequeueSql, corrupt, lost, sql_count, unavailable};
use crate::sql::stores::values::{BindValues, Value};

/// Marks the best ready ticket in flight under a new lease id from the sequence. $1 now, $2 worker, $3 lease
/// deadline.
const DEQUEUE: DequeueSql = DequeueSql {
    // Without aging: the order the partial index `job_queue_waiting` holds.
    plain: "UPDATE job_queue SET state = 'in_flight', lease_id = nextval('job_queue_lease_ids'), \
            lease_owner = $2, lease_deadline_ms = $3 \
            WHERE state = 'waiting' AND job = (SELECT job FROM job_queue \
            WHERE state = 'waiting' AND not_before_ms <= $1 \
            ORDER BY priority_rank, enqueued_ms, job LIMIT 1 FOR UPDATE SKIP LOCKED) \
            RETURNING job, priority, enqueued_ms, not_before_ms, lease_id, lease_owner, lease_deadline_ms",
    // With aging: the rank drops by one per whole `aging_step` ($4, in ms) waited, never below 0 (`critical`).
    // No index holds this order, so the ready tickets are sorted on every call.
    aged: "UPDATE job_queue SET state = 'in_flight', lease_id = nextval('job_queue_lease_ids'), \
           lease_owner = $2, lease_deadline_ms = $3 \
           WHERE state = 'waiting' AND job = (SELECT job FROM job_queue \
           WHERE state = 'waiting' AND not_before_ms <= $1 \
           ORDER BY GREATEST(priority_rank - GREATEST($1 - enqueued_ms, 0) / $4, 0), \
           enqueued_ms, job LIMIT 1 FOR UPDATE SKIP LOCKED) \
           RETURNING job, priority, enqueued_ms, not_before_ms, lease_id, lease_owner, lease_deadline_ms",
};

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
                   SELECT count(*) AS removed FROM gone";

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

/// The dead letters oldest first, at most $1.
const DEAD_LETTERS: &str = "SELECT job, priority, enqueued_ms, not_before_ms, error, dead_ms FROM job_dead_letters \
                            ORDER BY seq LIMIT $1";

/// The tickets per rank and state, and the dead letters. The rank is a `SMALLINT`, cast to the one integer type
/// the shared code reads.
const LENGTHS: &str = "SELECT priority_rank::BIGINT AS rank, state, count(*) AS n FROM job_queue \
                       GROUP BY priority_rank, state \
                       UNION ALL SELECT -1, 'dead', dead_letters FROM job_queue_counts WHERE id = 1";

/// A row if the job $1 has a ticket.
const CONTAINS: &str = "SELECT 1 FROM job_queue WHERE job = $1";

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
        PgJobQueue { pool, capacity, dead_letter_capacity, aging_step_ms: queue::aging_step_ms(aging_step) }
    }
}

#[async_trait]
impl JobQueue for PgJobQueue {
    async fn enqueue(&self, ticket: JobTicket) -> Result<Enqueued, JobQueueError> {
        let mut values = queue::ticket_values(&ticket);
        values.push(sql_count(self.capacity).into());
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        let row = sqlx::query(ENQUEUE).bind_values(values).fetch_one(&mut *tx).await.map_err(unavailable)?;
        match queue::counts(&row, ["added", "slots"])? {
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
        let (sql, values) = DEQUEUE.statement(self.aging_step_ms, worker, now, lease);
        let row = self.pool.fetch_optional(sql, values).await.map_err(unavailable)?;
        row.as_ref().map(queue::lease_from_row).transpose().map_err(corrupt)
    }

    async fn heartbeat(&self, lease: &Lease, now: Timestamp, extend: Duration) -> Result<Lease, JobQueueError> {
        let values = queue::heartbeat_values(lease, now, extend)?;
        let row = self.pool.fetch_optional(HEARTBEAT, values).await.map_err(unavailable)?;
        let row = row.ok_or_else(|| lost(lease))?;
        queue::lease_from_row(&row).map_err(corrupt)
    }

    async fn ack(&self, lease: &Lease) -> Result<(), JobQueueError> {
        let values = queue::lease_values(lease)?;
        let row = sqlx::query(ACK).bind_values(values).fetch_one(&self.pool).await.map_err(unavailable)?;
        match queue::counts(&row, ["removed"])? {
            [0] => Err(lost(lease)),
            _ => Ok(()),
        }
    }

    async fn nack(
        &self,
        lease: &Lease,
        now: Timestamp,
        retry_at: Option<Timestamp>,
        error: &ErrorText,
    ) -> Result<(), JobQueueError> {
        let mut values = queue::lease_values(lease)?;
        if let Some(at) = retry_at {
            values.push(at.as_millis().into());
            let retried = self.pool.execute(RETRY, values).await.map_err(unavailable)?;
            return if retried == 0 { Err(lost(lease)) } else { Ok(()) };
        }
        values.extend([sql_count(self.dead_letter_capacity).into(), error.as_str().into(), now.as_millis().into()]);
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        let row = sqlx::query(BURY).bind_values(values).fetch_one(&mut *tx).await.map_err(unavailable)?;
        match queue::counts(&row, ["gone", "slots"])? {
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
        let reclaimed = self.pool.execute(RECLAIM, vec![now.as_millis().into()]).await.map_err(unavailable)?;
        Ok(queue::row_count(reclaimed))
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, JobQueueError> {
        queue::dead_letters(&self.pool, DEAD_LETTERS, limit).await
    }

    async fn replay_dead_letter(&self, job: JobId, now: Timestamp) -> Result<(), JobQueueError> {
        let values = vec![Value::id(job.as_u128()), now.as_millis().into(), sql_count(self.capacity).into()];
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        let row = sqlx::query(REPLAY).bind_values(values).fetch_one(&mut *tx).await.map_err(unavailable)?;
        match queue::counts(&row, ["gone", "added", "slots"])? {
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
        queue::len_by_priority(&self.pool, LENGTHS).await
    }

    async fn contains(&self, job: JobId) -> Result<bool, JobQueueError> {
        queue::contains(&self.pool, CONTAINS, job).await
    }
}
