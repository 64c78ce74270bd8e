//! The [`JobQueue`](rei_core::jobs::JobQueue) pieces both engines share: reading tickets, leases and dead letters
//! from rows, the parameters a call binds, the stored names of priorities, the port's errors, and the reads that
//! run as one autocommit statement in either engine (dead letters, lengths, membership).
//!
//! The writes stay in the engine modules, because that is where the engines really differ: PostgreSQL decides
//! each call in one statement (`FOR UPDATE SKIP LOCKED`, counts updated in the same statement), SQLite in a
//! `BEGIN IMMEDIATE` transaction of several.

use std::time::Duration;

use rei_core::ids::JobId;
use rei_core::jobs::{
    DeadLetter, ErrorText, JobQueueError, JobTicket, LIST_LIMIT_MAX, Lease, Priority, QueueLengths, WorkerId,
};
use rei_core::time::Timestamp;

use super::engine::Engine;
use super::fields::{Fields, RowError, SqlRow};
use super::values::{self, Value};

/// The table of waiting and in-flight tickets.
const QUEUE_TABLE: &str = "job_queue";

/// The table of dead letters.
const DEAD_TABLE: &str = "job_dead_letters";

/// The whole milliseconds of `aging_step`; `None` when aging is off (no step, or one under a millisecond).
pub(crate) fn aging_step_ms(aging_step: Option<Duration>) -> Option<i64> {
    aging_step.map(|s| i64::try_from(s.as_millis()).unwrap_or(i64::MAX)).filter(|ms| *ms > 0)
}

/// A corrupt row is reported as unavailable: the port has no other failure, and the message names the column.
pub(crate) fn corrupt(e: RowError) -> JobQueueError {
    JobQueueError::Unavailable { reason: format!("corrupt job queue row: {e}") }
}

/// The port's error for a failed statement or transaction.
pub(crate) fn unavailable(e: sqlx::Error) -> JobQueueError {
    JobQueueError::Unavailable { reason: e.to_string() }
}

/// The port's error for a call whose lease is no longer held.
pub(crate) fn lost(lease: &Lease) -> JobQueueError {
    JobQueueError::LeaseLost { job: lease.ticket.job, lease_id: lease.lease_id }
}

/// A size limit as a SQL integer; limits past `i64::MAX` are no limit at all.
pub(crate) fn sql_count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A count of changed rows as the port's `usize`.
pub(crate) fn row_count(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// The stored name of a priority. Pinned here, not taken from `Display`, because the CHECK constraints of the
/// migrations name these exact words.
pub(crate) const fn priority_name(p: Priority) -> &'static str {
    match p {
        Priority::Critical => "critical",
        Priority::High => "high",
        Priority::Normal => "normal",
        Priority::Low => "low",
    }
}

/// Reads the `job, priority, enqueued_ms, not_before_ms` columns, which tickets and dead letters share.
fn ticket<R: SqlRow>(f: &Fields<'_, R>) -> Result<JobTicket, RowError> {
    Ok(JobTicket {
        job: JobId::from(f.id("job")?),
        priority: f.named("priority", Priority::ALL, priority_name)?,
        enqueued_at: f.time("enqueued_ms")?,
        not_before: f.time("not_before_ms")?,
    })
}

/// Rebuilds a ticket from a `job_queue` row.
#[cfg(feature = "sqlite")]
pub(crate) fn ticket_from_row<R: SqlRow>(row: &R) -> Result<JobTicket, RowError> {
    ticket(&Fields::new(QUEUE_TABLE, row))
}

/// Rebuilds a lease from a `job_queue` row in flight.
pub(crate) fn lease_from_row<R: SqlRow>(row: &R) -> Result<Lease, RowError> {
    let f = Fields::new(QUEUE_TABLE, row);
    Ok(Lease {
        ticket: ticket(&f)?,
        worker: f.parsed("lease_owner", WorkerId::parse)?,
        lease_id: f.unsigned("lease_id")?,
        deadline: f.time("lease_deadline_ms")?,
    })
}

/// Rebuilds a dead letter from a `job_dead_letters` row.
fn dead_letter_from_row<R: SqlRow>(row: &R) -> Result<DeadLetter, RowError> {
    let f = Fields::new(DEAD_TABLE, row);
    let error = f.parsed("error", |text| match text.len() {
        // ErrorText::new cuts silently; a stored text it would cut was not written by this adapter.
        n if n > ErrorText::LEN_MAX => Err("too long"),
        _ => Ok(ErrorText::new(text)),
    })?;
    Ok(DeadLetter { ticket: ticket(&f)?, error, at: f.time("dead_ms")? })
}

/// The `priority` column of a `job_dead_letters` row, as stored: it goes back into `job_queue` unchanged, since
/// the CHECK constraints of both tables name the same words.
#[cfg(feature = "sqlite")]
pub(crate) fn dead_priority<R: SqlRow>(row: &R) -> Result<String, JobQueueError> {
    Fields::new(DEAD_TABLE, row).text("priority").map_err(corrupt)
}

/// The named integers (`count(*)` columns) of a one-row `job_queue` result.
#[cfg(feature = "postgres")]
pub(crate) fn counts<R: SqlRow, const N: usize>(row: &R, names: [&'static str; N]) -> Result<[i64; N], JobQueueError> {
    let f = Fields::new(QUEUE_TABLE, row);
    let mut out = [0; N];
    for (slot, name) in out.iter_mut().zip(names) {
        *slot = f.int(name).map_err(corrupt)?;
    }
    Ok(out)
}

/// A ticket's `job, priority, enqueued_ms, not_before_ms`, in that order.
pub(crate) fn ticket_values(ticket: &JobTicket) -> Vec<Value<'static>> {
    vec![
        Value::id(ticket.job.as_u128()),
        priority_name(ticket.priority).into(),
        ticket.enqueued_at.as_millis().into(),
        ticket.not_before.as_millis().into(),
    ]
}

/// The `job, lease_id` a call that names `lease` matches on, in that order. Stored lease ids are positive
/// integers, so one that does not fit was never handed out here and is lost.
///
/// # Errors
/// [`JobQueueError::LeaseLost`] when the lease id does not fit a SQL integer.
pub(crate) fn lease_values(lease: &Lease) -> Result<Vec<Value<'static>>, JobQueueError> {
    let lease_id = i64::try_from(lease.lease_id).map_err(|_| lost(lease))?;
    Ok(vec![Value::id(lease.ticket.job.as_u128()), lease_id.into()])
}

/// The `job, lease_id, now, new deadline` of a heartbeat that extends `lease` at `now` by `extend`.
///
/// # Errors
/// As [`lease_values`].
pub(crate) fn heartbeat_values(
    lease: &Lease,
    now: Timestamp,
    extend: Duration,
) -> Result<Vec<Value<'static>>, JobQueueError> {
    let mut values = lease_values(lease)?;
    values.extend([now.as_millis().into(), now.plus(extend).as_millis().into()]);
    Ok(values)
}

/// The two dequeue statements of one engine: both bind now, worker and lease deadline, and the aged one also the
/// aging step in milliseconds.
pub(crate) struct DequeueSql {
    /// Picks the best ready ticket by priority alone.
    pub(crate) plain: &'static str,
    /// Picks the best ready ticket by priority lowered one rank per whole aging step waited.
    pub(crate) aged: &'static str,
}

impl DequeueSql {
    /// The statement for `aging_step_ms` and its values, for `worker` leasing at `now` for `lease`.
    pub(crate) fn statement<'a>(
        &self,
        aging_step_ms: Option<i64>,
        worker: &'a WorkerId,
        now: Timestamp,
        lease: Duration,
    ) -> (&'static str, Vec<Value<'a>>) {
        let mut values = vec![now.as_millis().into(), worker.as_str().into(), now.plus(lease).as_millis().into()];
        match aging_step_ms {
            Some(step) => {
                values.push(step.into());
                (self.aged, values)
            }
            None => (self.plain, values),
        }
    }
}

/// [`JobQueue::dead_letters`](rei_core::jobs::JobQueue::dead_letters): `sql` selects the dead letters oldest
/// first, at most the 1st value.
pub(crate) async fn dead_letters<E: Engine>(db: &E, sql: &str, limit: usize) -> Result<Vec<DeadLetter>, JobQueueError> {
    let limit = values::sql_limit(limit, LIST_LIMIT_MAX);
    let rows = db.fetch_all(sql, vec![limit.into()]).await.map_err(unavailable)?;
    rows.iter().map(|r| dead_letter_from_row(r).map_err(corrupt)).collect()
}

/// [`JobQueue::len_by_priority`](rei_core::jobs::JobQueue::len_by_priority): `sql` returns `rank, state, n` per
/// priority rank and state of the tickets, plus one row `-1, 'dead', n` of the dead letters. It has no `LIMIT`:
/// the grouping bounds it to one row per rank and state.
pub(crate) async fn len_by_priority<E: Engine>(db: &E, sql: &str) -> Result<QueueLengths, JobQueueError> {
    // One statement, so that the three numbers come from one snapshot.
    let rows = db.fetch_all(sql, Vec::new()).await.map_err(unavailable)?;
    let mut lengths = QueueLengths::default();
    for row in &rows {
        let f = Fields::new(QUEUE_TABLE, row);
        let rank = f.int("rank").map_err(corrupt)?;
        let state = f.text("state").map_err(corrupt)?;
        let n: usize = f.unsigned("n").map_err(corrupt)?;
        match (state.as_str(), usize::try_from(rank)) {
            ("waiting", Ok(rank)) if rank < lengths.waiting.len() => lengths.waiting[rank] += n,
            ("in_flight", _) => lengths.in_flight += n,
            ("dead", _) => lengths.dead_letters = n,
            _ => return Err(corrupt(f.invalid("state", format!("{state:?} at rank {rank}")))),
        }
    }
    Ok(lengths)
}

/// [`JobQueue::contains`](rei_core::jobs::JobQueue::contains): `sql` selects a row for the job of the 1st value
/// if it has a ticket.
pub(crate) async fn contains<E: Engine>(db: &E, sql: &str, job: JobId) -> Result<bool, JobQueueError> {
    let row = db.fetch_optional(sql, vec![Value::id(job.as_u128())]).await.map_err(unavailable)?;
    Ok(row.is_some())
}
