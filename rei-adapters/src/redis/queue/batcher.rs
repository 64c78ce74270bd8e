//! The enqueue batcher of [`super::RedisJobQueue`], a group commit: concurrent `enqueue` calls on one queue (and
//! its clones) hand their ticket to one task, which takes every call already waiting (at most
//! [`ENQUEUE_BATCH_MAX`]), runs them in one `lua/enqueue_many.lua` call, and answers each caller.
//!
//! What MUST hold:
//! - Each ticket gets the outcome a lone `enqueue` would get at its place in the arrival order: the script checks
//!   dedup and capacity ticket by ticket, in that order, and one script call is atomic.
//! - A call that finds the task idle goes at once: the task waits for calls, never for a timer; it only yields
//!   once to the scheduler before closing a batch, so that callers already runnable (woken by the previous
//!   answers) join it. Calls arriving while a script call runs wait for it and go together in the next one.
//! - A failed script call (or a reply that is not one status per ticket) fails every call of its batch with
//!   [`JobQueueError::Unavailable`], and only those; nothing in a reply can make the batcher panic.
//! - Everything is bounded: [`ENQUEUE_BATCH_MAX`] tickets per script call, [`ENQUEUE_WAITING_MAX`] calls waiting
//!   for the task (a caller beyond that waits for room).
//! - The task ends when the last clone of the queue is dropped. If it stopped first (its runtime shut down), every
//!   call fails with [`JobQueueError::Unavailable`], never hangs.
//! - A caller that gives up after handing over its ticket may still have it enqueued, as with a lost reply; that is
//!   harmless because a repeated enqueue of the same job is [`Enqueued::AlreadyPresent`].

use std::sync::{Arc, OnceLock};

use ::redis::aio::ConnectionManager;
use rei_core::jobs::{Enqueued, JobQueueError, JobTicket};
use tokio::sync::{mpsc, oneshot};

use super::{CallError, ENQUEUE_MANY, member, ms, unavailable};

/// The most tickets one script call adds.
pub(super) const ENQUEUE_BATCH_MAX: usize = 128;

/// The most calls waiting for the batcher task; a caller beyond that waits for room.
const ENQUEUE_WAITING_MAX: usize = 1_024;

/// What one caller gets back.
type Outcome = Result<Enqueued, JobQueueError>;

/// One `enqueue` call waiting for the batcher task.
struct Call {
    ticket: JobTicket,
    reply: oneshot::Sender<Outcome>,
}

/// What the batcher task needs to add tickets; it holds no handle to the batcher, so that dropping the last
/// clone of the queue ends the task.
struct Target {
    conn: ConnectionManager,
    /// The tickets hash, the ready sets of ranks 0-3 and the waiting sets of ranks 0-3.
    keys: Vec<String>,
    capacity: usize,
}

/// The handle every clone of one queue shares; the task starts with the first call, on the runtime running it.
#[derive(Clone)]
pub(super) struct Batcher {
    target: Arc<Target>,
    calls: Arc<OnceLock<mpsc::Sender<Call>>>,
}

impl Batcher {
    /// A batcher adding tickets to the queue whose keys are `keys` (the tickets hash, the ready sets of ranks
    /// 0-3, the waiting sets of ranks 0-3) on `conn`, refusing beyond `capacity` tickets.
    pub(super) fn new(conn: ConnectionManager, keys: Vec<String>, capacity: usize) -> Batcher {
        Batcher { target: Arc::new(Target { conn, keys, capacity }), calls: Arc::new(OnceLock::new()) }
    }

    /// Enqueues `ticket` with whichever other calls are waiting, as [`rei_core::jobs::JobQueue::enqueue`].
    pub(super) async fn enqueue(&self, ticket: JobTicket) -> Outcome {
        let (reply, answer) = oneshot::channel();
        self.calls()?.send(Call { ticket, reply }).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Adds `tickets` (at most [`ENQUEUE_BATCH_MAX`]) in one script call of their own, in order, as
    /// [`rei_core::jobs::JobQueue::enqueue_many`]: one outcome per ticket, or one error for all.
    pub(super) async fn add_now(&self, tickets: &[JobTicket]) -> Result<Vec<Outcome>, JobQueueError> {
        self.target.add(tickets.iter()).await
    }

    /// The sender to the task, starting the task on the current runtime if this is the first call.
    fn calls(&self) -> Result<&mpsc::Sender<Call>, JobQueueError> {
        if let Some(calls) = self.calls.get() {
            return Ok(calls);
        }
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| JobQueueError::Unavailable { reason: "enqueue needs a tokio runtime".to_owned() })?;
        Ok(self.calls.get_or_init(|| {
            let (calls, waiting) = mpsc::channel(ENQUEUE_WAITING_MAX);
            runtime.spawn(run(waiting, self.target.clone()));
            calls
        }))
    }
}

fn stopped() -> JobQueueError {
    JobQueueError::Unavailable { reason: "the enqueue batcher stopped (its runtime shut down)".to_owned() }
}

/// The task: takes every waiting call (at least one, at most [`ENQUEUE_BATCH_MAX`]), adds them in one script
/// call, answers each, and again, until every sender is gone.
async fn run(mut waiting: mpsc::Receiver<Call>, target: Arc<Target>) {
    let mut batch = Vec::with_capacity(ENQUEUE_BATCH_MAX);
    while waiting.recv_many(&mut batch, ENQUEUE_BATCH_MAX).await > 0 {
        // Callers woken by the previous answers are runnable but may not have run yet: one pass of the scheduler
        // lets them hand in their next tickets, which then go in this batch instead of waiting for the next.
        // A yield, not a timer: a lone call waits only for the tasks that are already runnable.
        tokio::task::yield_now().await;
        while batch.len() < ENQUEUE_BATCH_MAX {
            let Ok(call) = waiting.try_recv() else { break };
            batch.push(call);
        }
        // A caller that gave up no longer listens; its ticket's fate is that of a lost reply.
        match target.add(batch.iter().map(|call| &call.ticket)).await {
            Ok(each) => {
                for (call, outcome) in batch.drain(..).zip(each) {
                    let _ = call.reply.send(outcome);
                }
            }
            Err(e) => {
                for call in batch.drain(..) {
                    let _ = call.reply.send(Err(e.clone()));
                }
            }
        }
    }
}

impl Target {
    /// Adds `tickets`, in order, in one script call: one outcome per ticket, or one error for all.
    async fn add<'a>(
        &self,
        tickets: impl ExactSizeIterator<Item = &'a JobTicket>,
    ) -> Result<Vec<Outcome>, JobQueueError> {
        let count = tickets.len();
        let mut invocation = ENQUEUE_MANY.prepare_invoke();
        for key in &self.keys {
            invocation.key(key);
        }
        invocation.arg(self.capacity);
        for ticket in tickets {
            let rank = ticket.priority.rank();
            let (enqueued_at, not_before) = (ms(ticket.enqueued_at), ms(ticket.not_before));
            // Due at once: straight to the ready set of its rank, scored as a promotion would score it.
            let (set, score) = if not_before <= enqueued_at { (2 + rank, enqueued_at) } else { (6 + rank, not_before) };
            invocation.arg(member(ticket.job)).arg(set).arg(score).arg(format!("{rank} {enqueued_at} {not_before}"));
        }
        let mut conn = self.conn.clone();
        let statuses: Vec<i64> =
            invocation.invoke_async(&mut conn).await.map_err(|e| unavailable(CallError::Redis(e)))?;
        outcomes(&statuses, count, self.capacity).map_err(unavailable)
    }
}

/// The outcome of each of `count` tickets from the script's statuses: 1 added, 0 already present, -1 full; any
/// other status is an error for its ticket, and a reply of another length is an error for all.
fn outcomes(statuses: &[i64], count: usize, capacity: usize) -> Result<Vec<Outcome>, CallError> {
    if statuses.len() != count {
        return Err(CallError::Corrupt(format!("{} enqueue statuses for {count} tickets", statuses.len())));
    }
    Ok(statuses
        .iter()
        .map(|status| match status {
            1 => Ok(Enqueued::Added),
            0 => Ok(Enqueued::AlreadyPresent),
            -1 => Err(JobQueueError::QueueFull { capacity }),
            other => Err(unavailable(CallError::Corrupt(format!("enqueue returned {other}")))),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_outcomes_and_junk_is_an_error() {
        // Proves each status becomes its caller's outcome, an unknown status fails only its own caller, and a
        // reply of the wrong length fails the batch instead of answering callers with someone else's status.
        let each = outcomes(&[1, 0, -1, 7], 4, 3).expect("one status per ticket");
        assert_eq!(each[0], Ok(Enqueued::Added));
        assert_eq!(each[1], Ok(Enqueued::AlreadyPresent));
        assert_eq!(each[2], Err(JobQueueError::QueueFull { capacity: 3 }));
        assert!(matches!(&each[3], Err(JobQueueError::Unavailable { reason }) if reason.contains("returned 7")));
        assert!(outcomes(&[1, 1], 3, 3).is_err());
        assert!(outcomes(&[1, 1, 1, 1], 3, 3).is_err());
        assert_eq!(outcomes(&[], 0, 3).map(|o| o.len()).ok(), Some(0));
    }
}
