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
    DeadLetter, Enqueued, ErrorText, JobQueue, JobQueueError, JobTicket, Lease, QueueLengths, WorkerId,
};
use rei_core::time::Timestamp;
use sqlx::sqlite::{SqlitePool, SqliteRow};
use sqlx::{Sqlite, SqliteConnection};

use crate::sql::stores::queue::{self, DequeueSql, corrupt, lost, sql_count, unavailable};
use crate::sql::stores::values::{BindValues, Value};

/// Marks the best ready ticket in flight under the next lease id. ?1 now, ?2 worker, ?3 lease deadline.
const DEQUEUE: DequeueSql = DequeueSql {
    // Without aging: the order the index `job_queue_waiting` holds.
    plain: "UPDATE job_queue SET state = 'in_flight', \
            lease_id = (SELECT last_lease_id + 1 FROM job_queue_counts WHERE id = 1), \
            lease_owner = ?2, lease_deadline_ms = ?3 \
            WHERE state = 'waiting' AND job = (SELECT job FROM job_queue \
            WHERE state = 'waiting' AND not_before_ms <= ?1 \
            ORDER BY priority_rank, enqueued_ms, job LIMIT 1) \
            RETURNING job, priority, enqueued_ms, not_before_ms, lease_id, lease_owner, lease_deadline_ms",
    // With aging: the rank drops by one per whole `aging_step` (?4, in ms) waited, never below 0 (`critical`).
    // No index holds this order, so the ready tickets are sorted on every call.
    aged: "UPDATE job_queue SET state = 'in_flight', \
           lease_id = (SELECT last_lease_id + 1 FROM job_queue_counts WHERE id = 1), \
           lease_owner = ?2, lease_deadline_ms = ?3 \
           WHERE state = 'waiting' AND job = (SELECT job FROM job_queue \
           WHERE state = 'waiting' AND not_before_ms <= ?1 \
           ORDER BY max(priority_rank - max(?1 - enqueued_ms, 0) / ?4, 0), enqueued_ms, job LIMIT 1) \
           RETURNING job, priority, enqueued_ms, not_before_ms, lease_id, lease_owner, lease_deadline_ms",
};

/// Adds a ticket unless the job has one. ?1 job, ?2 priority, ?3 enqueued, ?4 not before.
const ENQUEUE: &str = "INSERT INTO job_queue (job, priority, state, enqueued_ms, not_before_ms) \
                       VALUES (?1, ?2, 'waiting', ?3, ?4) ON CONFLICT (job) DO NOTHING";

/// Extends a held, unexpired lease. ?1 job, ?2 lease id, ?3 now, ?4 new deadline.
const HEARTBEAT: &str = "UPDATE job_queue SET lease_deadline_ms = ?4 \
                         WHERE job = ?1 AND state = 'in_flight' AND lease_id = ?2 AND lease_deadline_ms >= ?3 \
                         RETURNING job, priority, enqueued_ms, not_before_ms, lease_id, lease_owner, \
                         lease_deadline_ms";

/// Removes a held ticket. ?1 job, ?2 lease id.
const ACK: &str = "DELETE FROM job_queue WHERE job = ?1 AND state = 'in_flight' AND lease_id = ?2";

/// Puts a held ticket back to waiting until ?3. ?1 job, ?2 lease id.
const RETRY: &str = "UPDATE job_queue SET state = 'waiting', not_before_ms = ?3, lease_id = NULL, lease_owner = NULL, \
                     lease_deadline_ms = NULL WHERE job = ?1 AND state = 'in_flight' AND lease_id = ?2";

/// Removes a held ticket and returns it, on its way to the dead letters. ?1 job, ?2 lease id.
const BURY: &str = "DELETE FROM job_queue WHERE job = ?1 AND state = 'in_flight' AND lease_id = ?2 \
                    RETURNING job, priority, enqueued_ms, not_before_ms";

/// Adds a dead letter. ?1 job, ?2 priority, ?3 enqueued, ?4 not before, ?5 error, ?6 now.
const DEAD_LETTER: &str = "INSERT INTO job_dead_letters (job, priority, enqueued_ms, not_before_ms, error, dead_ms) \
                           VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

/// Puts every expired lease back to waiting. ?1 now.
const RECLAIM: &str = "UPDATE job_queue SET state = 'waiting', lease_id = NULL, lease_owner = NULL, \
                       lease_deadline_ms = NULL WHERE state = 'in_flight' AND lease_deadline_ms < ?1";

/// The dead letters oldest first, at most ?1.
const DEAD_LETTERS: &str = "SELECT job, priority, enqueued_ms, not_before_ms, error, dead_ms FROM job_dead_letters \
                            ORDER BY seq LIMIT ?1";

/// Removes the oldest dead letter of ?1 and returns its priority.
const UNBURY: &str = "DELETE FROM job_dead_letters WHERE seq = \
                      (SELECT seq FROM job_dead_letters WHERE job = ?1 ORDER BY seq LIMIT 1) RETURNING priority";

/// Puts a replayed job back to waiting at ?3 unless it has a ticket. ?1 job, ?2 priority.
const REPLAY: &str = "INSERT INTO job_queue (job, priority, state, enqueued_ms, not_before_ms) \
                      VALUES (?1, ?2, 'waiting', ?3, ?3) ON CONFLICT (job) DO NOTHING";

/// The tickets per rank and state, and the dead letters.
const LENGTHS: &str = "SELECT priority_rank AS rank, state, count(*) AS n FROM job_queue GROUP BY priority_rank, state \
                       UNION ALL SELECT -1, 'dead', dead_letters FROM job_queue_counts WHERE id = 1";

/// A row if the job ?1 has a ticket.
const CONTAINS: &str = "SELECT 1 FROM job_queue WHERE job = ?1";

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
        SqliteJobQueue { pool, capacity, dead_letter_capacity, aging_step_ms: queue::aging_step_ms(aging_step) }
    }
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

/// Runs `sql` with `values` bound and returns how many rows it changed.
async fn execute(conn: &mut SqliteConnection, sql: &str, values: Vec<Value<'_>>) -> Result<u64, JobQueueError> {
    let done = sqlx::query(sql).bind_values(values).execute(conn).await.map_err(unavailable)?;
    Ok(done.rows_affected())
}

/// Runs `sql` with `values` bound and returns its row, if any.
async fn fetch_optional(
    conn: &mut SqliteConnection,
    sql: &str,
    values: Vec<Value<'_>>,
) -> Result<Option<SqliteRow>, JobQueueError> {
    sqlx::query(sql).bind_values(values).fetch_optional(conn).await.map_err(unavailable)
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
        if execute(&mut tx, ENQUEUE, queue::ticket_values(&ticket)).await? == 0 {
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
        let (sql, values) = DEQUEUE.statement(self.aging_step_ms, worker, now, lease);
        let mut tx = self.write().await?;
        let Some(row) = fetch_optional(&mut tx, sql, values).await? else {
            tx.rollback().await.map_err(unavailable)?;
            return Ok(None);
        };
        let leased = queue::lease_from_row(&row).map_err(corrupt)?;
        execute(&mut tx, "UPDATE job_queue_counts SET last_lease_id = last_lease_id + 1 WHERE id = 1", Vec::new())
            .await?;
        tx.commit().await.map_err(unavailable)?;
        Ok(Some(leased))
    }

    async fn heartbeat(&self, lease: &Lease, now: Timestamp, extend: Duration) -> Result<Lease, JobQueueError> {
        let values = queue::heartbeat_values(lease, now, extend)?;
        let mut tx = self.write().await?;
        let Some(row) = fetch_optional(&mut tx, HEARTBEAT, values).await? else {
            tx.rollback().await.map_err(unavailable)?;
            return Err(lost(lease));
        };
        let extended = queue::lease_from_row(&row).map_err(corrupt)?;
        tx.commit().await.map_err(unavailable)?;
        Ok(extended)
    }

    async fn ack(&self, lease: &Lease) -> Result<(), JobQueueError> {
        let values = queue::lease_values(lease)?;
        let mut tx = self.write().await?;
        if execute(&mut tx, ACK, values).await? == 0 {
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
        let mut values = queue::lease_values(lease)?;
        let mut tx = self.write().await?;
        if let Some(at) = retry_at {
            values.push(at.as_millis().into());
            if execute(&mut tx, RETRY, values).await? == 0 {
                tx.rollback().await.map_err(unavailable)?;
                return Err(lost(lease));
            }
            return tx.commit().await.map_err(unavailable);
        }
        let Some(gone) = fetch_optional(&mut tx, BURY, values).await? else {
            tx.rollback().await.map_err(unavailable)?;
            return Err(lost(lease));
        };
        if !take_slot(&mut tx, Slot::DeadLetter, self.dead_letter_capacity).await? {
            // No dead-letter slot: the rollback puts the ticket back, lease and all.
            tx.rollback().await.map_err(unavailable)?;
            return Err(JobQueueError::QueueFull { capacity: self.dead_letter_capacity });
        }
        free_slot(&mut tx, Slot::Ticket).await?;
        let mut dead = queue::ticket_values(&queue::ticket_from_row(&gone).map_err(corrupt)?);
        dead.extend([error.as_str().into(), now.as_millis().into()]);
        execute(&mut tx, DEAD_LETTER, dead).await?;
        tx.commit().await.map_err(unavailable)
    }

    async fn reclaim_expired(&self, now: Timestamp) -> Result<usize, JobQueueError> {
        let mut tx = self.write().await?;
        let reclaimed = execute(&mut tx, RECLAIM, vec![now.as_millis().into()]).await?;
        tx.commit().await.map_err(unavailable)?;
        Ok(queue::row_count(reclaimed))
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, JobQueueError> {
        queue::dead_letters(&self.pool, DEAD_LETTERS, limit).await
    }

    async fn replay_dead_letter(&self, job: JobId, now: Timestamp) -> Result<(), JobQueueError> {
        let mut tx = self.write().await?;
        let Some(gone) = fetch_optional(&mut tx, UNBURY, vec![Value::id(job.as_u128())]).await? else {
            tx.rollback().await.map_err(unavailable)?;
            return Err(JobQueueError::NotDeadLettered { job });
        };
        free_slot(&mut tx, Slot::DeadLetter).await?;
        let values = vec![Value::id(job.as_u128()), queue::dead_priority(&gone)?.into(), now.as_millis().into()];
        let added = execute(&mut tx, REPLAY, values).await?;
        if added == 1 && !take_slot(&mut tx, Slot::Ticket, self.capacity).await? {
            // The capacity was reached: the rollback keeps the dead letter.
            tx.rollback().await.map_err(unavailable)?;
            return Err(JobQueueError::QueueFull { capacity: self.capacity });
        }
        tx.commit().await.map_err(unavailable)
    }

    async fn len_by_priority(&self) -> Result<QueueLengths, JobQueueError> {
        queue::len_by_priority(&self.pool, LENGTHS).await
    }

    async fn contains(&self, job: JobId) -> Result<bool, JobQueueError> {
        queue::contains(&self.pool, CONTAINS, job).await
    }
}
