//! [`RedisJobQueue`]: the job queue shared by every worker process, one Lua script per step; a worker with room
//! for several jobs acks and takes a batch of them in one step, and concurrent enqueues on one queue go together
//! in one step (see [`batcher`]).
//!
//! Layout (all under the namespace's prefix; `lua/queue_prelude.lua` is the reference):
//! - `ready:<rank>`: one sorted set per priority of tickets that may be handed out, scored by `enqueued_at`;
//!   members are the job id in 32 hex digits, so that Redis's order of equal scores is the order of ids.
//! - `waiting:<rank>`: tickets not yet promoted to ready, scored by `not_before`. A ticket not due when it is
//!   enqueued enters here (a due one goes straight to its ready set); `dequeue` first promotes the ones whose
//!   `not_before` has come, then picks the best head of the four ready sets, honouring aging; a batch merges the
//!   heads of the four sets in that same order.
//! - `in_flight`: leased tickets scored by lease deadline; `leases`: job -> lease id and worker.
//! - `tickets`: job -> priority, `enqueued_at`, `not_before` of every waiting or in-flight ticket, which makes
//!   the dedup check and the capacity check one command each.
//! - `dead`, `dead_info`: dead letters in the order they were given up, with the ticket, time and error.
//!
//! Times are Unix milliseconds clamped to ±2^53 (about 285 000 years), the range Lua's numbers hold exactly;
//! no real time is clamped.
//!
//! Two choices differ from the in-memory queue, both invisible to a single caller with one clock:
//! - A ticket becomes ready when some `dequeue`'s `now` reaches its `not_before`; a worker whose clock runs
//!   behind the one that promoted it may then receive it up to that skew early.
//! - A job has at most one dead letter: a job given up again replaces its earlier letter (keeping the latest
//!   error), so that does not count against the dead-letter capacity twice.

mod batcher;

use std::sync::LazyLock;
use std::time::Duration;

use ::redis::aio::ConnectionManager;
use ::redis::{FromRedisValue, Script, ScriptInvocation};
use async_trait::async_trait;
use rei_core::ids::JobId;
use rei_core::jobs::{
    AckedAndTaken, BATCH_MAX, DeadLetter, Enqueued, ErrorText, JobQueue, JobQueueError, JobTicket, LIST_LIMIT_MAX,
    Lease, Priority, QueueLengths, WorkerId,
};
use rei_core::time::Timestamp;

use self::batcher::{Batcher, ENQUEUE_BATCH_MAX};
use super::{CallError, RedisSetupError, prefix};

/// The largest capacity (of tickets or of dead letters) a queue accepts.
pub const CAPACITY_MAX: usize = 10_000_000;

/// Waiting tickets one `dequeue` promotes per priority; more due tickets are promoted by the next calls.
const PROMOTE_BATCH: usize = 1_000;

/// Expired leases one script call of `reclaim_expired` puts back.
const RECLAIM_BATCH: usize = 1_000;

/// The largest magnitude of a time handed to a script: Lua's numbers are exact below 2^53.
const TIME_ABS_MAX_MS: i64 = (1 << 53) - 1;

/// The largest lease-id seed, leaving 2^52 lease ids before the counter leaves Lua's exact range.
const LEASE_SEED_MAX: u64 = 1 << 52;

/// Lease ids a fresh counter leaves room for per millisecond of its seed time (see `take_many.lua`).
const LEASE_SEED_PER_MS: u64 = 1_000;

/// The keys of the ready and waiting sets: the first 8 of the key list.
const SET_KEYS: usize = 8;

/// The position of the `tickets` hash in the key list.
const TICKETS_KEY: usize = 9;

/// Keys a script that acks or heartbeats gets: the first 11 of `lua/queue_prelude.lua`'s list.
const KEYS_TO_ACK: usize = 11;

/// Keys a script that leases gets: the first 12.
const KEYS_TO_LEASE: usize = 12;

/// The queue's limits: the port's own type (capacities at most [`CAPACITY_MAX`]).
pub type RedisQueueLimits = rei_core::jobs::QueueLimits;

fn script(body: &str) -> Script {
    Script::new(&format!("{}\n{body}", include_str!("lua/queue_prelude.lua")))
}

static ENQUEUE_MANY: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/enqueue_many.lua")));
static DEQUEUE: LazyLock<Script> =
    LazyLock::new(|| script(concat!(include_str!("lua/take_many.lua"), include_str!("lua/dequeue.lua"))));
static HEARTBEAT: LazyLock<Script> = LazyLock::new(|| script(include_str!("lua/heartbeat.lua")));
static ACK: LazyLock<Script> = LazyLock::new(|| script(include_str!("lua/ack.lua")));
static ACK_DEQUEUE: LazyLock<Script> =
    LazyLock::new(|| script(concat!(include_str!("lua/take_many.lua"), include_str!("lua/ack_dequeue.lua"))));
static ACK_DEQUEUE_MANY: LazyLock<Script> = LazyLock::new(|| {
    script(concat!(
        include_str!("lua/take_many.lua"),
        include_str!("lua/ack_many.lua"),
        include_str!("lua/ack_dequeue_many.lua")
    ))
});
static NACK: LazyLock<Script> = LazyLock::new(|| script(include_str!("lua/nack.lua")));
static RECLAIM: LazyLock<Script> = LazyLock::new(|| script(include_str!("lua/reclaim.lua")));
static DEAD_LETTERS: LazyLock<Script> = LazyLock::new(|| script(include_str!("lua/dead_letters.lua")));
static REPLAY: LazyLock<Script> = LazyLock::new(|| script(include_str!("lua/replay.lua")));
static LENGTHS: LazyLock<Script> = LazyLock::new(|| script(include_str!("lua/lengths.lua")));

/// A bounded, at-least-once [`JobQueue`] in Redis, shared by every process using the same namespace.
///
/// Invariant: a job has a `tickets` entry exactly when it is in one ready or waiting set or in flight, and a
/// `leases` entry exactly when it is in flight; every script keeps both true.
#[derive(Clone)]
pub struct RedisJobQueue {
    conn: ConnectionManager,
    /// The keys of the scripts that share the prelude, in the order of `lua/queue_prelude.lua`.
    keys: Vec<String>,
    /// The `tickets` hash, for the one-command `contains`.
    tickets_key: String,
    capacity: usize,
    dead_letter_capacity: usize,
    /// Aging step in milliseconds; 0 turns aging off.
    aging_step_ms: u64,
    /// Runs every `enqueue` of this queue and its clones.
    batcher: Batcher,
}

impl std::fmt::Debug for RedisJobQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisJobQueue").field("tickets_key", &self.tickets_key).finish_non_exhaustive()
    }
}

impl RedisJobQueue {
    /// A queue under `namespace` on `conn`. Queues built with the same namespace on the same server are one
    /// queue, and must be built with the same limits.
    ///
    /// # Errors
    /// [`RedisSetupError::Namespace`] for a bad namespace, [`RedisSetupError::Limit`] for a capacity above
    /// [`CAPACITY_MAX`].
    pub fn new(
        conn: ConnectionManager,
        namespace: &str,
        limits: RedisQueueLimits,
    ) -> Result<RedisJobQueue, RedisSetupError> {
        let prefix = prefix("q", namespace)?;
        for (what, value) in [("capacity", limits.capacity), ("dead letter capacity", limits.dead_letter_capacity)] {
            if value > CAPACITY_MAX {
                return Err(RedisSetupError::Limit { what, value });
            }
        }
        let mut keys: Vec<String> = Vec::with_capacity(15);
        keys.extend((0..4).map(|rank| format!("{prefix}ready:{rank}")));
        keys.extend((0..4).map(|rank| format!("{prefix}waiting:{rank}")));
        for name in ["in_flight", "tickets", "leases", "lease_seq", "dead", "dead_info", "dead_seq"] {
            keys.push(format!("{prefix}{name}"));
        }
        let aging_step_ms = limits.aging_step.map_or(0, |s| u64::try_from(s.as_millis()).unwrap_or(u64::MAX));
        // The keys of `lua/enqueue_many.lua`: the tickets hash, then the ready and the waiting sets.
        let enqueue_keys = std::iter::once(&keys[TICKETS_KEY]).chain(&keys[..SET_KEYS]).cloned().collect();
        Ok(RedisJobQueue {
            batcher: Batcher::new(conn.clone(), enqueue_keys, limits.capacity),
            conn,
            tickets_key: format!("{prefix}tickets"),
            keys,
            capacity: limits.capacity,
            dead_letter_capacity: limits.dead_letter_capacity,
            aging_step_ms,
        })
    }

    /// Connects to `url` with [`super::connect`] (waiting at most `timeout`) and builds the queue.
    ///
    /// # Errors
    /// The errors of [`super::connect`] and [`RedisJobQueue::new`].
    pub async fn connect(
        url: &str,
        namespace: &str,
        limits: RedisQueueLimits,
        timeout: Duration,
    ) -> Result<RedisJobQueue, RedisSetupError> {
        let conn = super::connect(url, timeout).await?;
        RedisJobQueue::new(conn, namespace, limits)
    }

    /// An invocation of `script` with all of this queue's keys.
    fn call<'a>(&self, script: &'a Script) -> ScriptInvocation<'a> {
        self.call_with_keys(script, self.keys.len())
    }

    /// An invocation of `script` with the first `count` of this queue's keys.
    fn call_with_keys<'a>(&self, script: &'a Script, count: usize) -> ScriptInvocation<'a> {
        let mut invocation = script.prepare_invoke();
        for key in self.keys.iter().take(count) {
            invocation.key(key);
        }
        invocation
    }

    /// The dequeue arguments of the take scripts: now, lease deadline, worker, aging step, lease id seed,
    /// promotion batch.
    fn take_args(&self, call: &mut ScriptInvocation<'_>, worker: &WorkerId, now: Timestamp, deadline: Timestamp) {
        call.arg(ms(now))
            .arg(ms(deadline))
            .arg(worker.as_str())
            .arg(self.aging_step_ms)
            .arg(lease_seed(now))
            .arg(PROMOTE_BATCH);
    }

    /// Acks `done` (at most [`BATCH_MAX`] leases) and takes up to `max` tickets for `worker`, in one script call.
    async fn ack_and_take(
        &self,
        done: &[Lease],
        worker: &WorkerId,
        now: Timestamp,
        lease: Duration,
        max: usize,
    ) -> Result<AckedAndTaken, JobQueueError> {
        let deadline = now.plus(lease);
        let mut call = self.call_with_keys(&ACK_DEQUEUE_MANY, KEYS_TO_LEASE);
        call.arg(done.len());
        for d in done {
            call.arg(member(d.ticket.job)).arg(d.lease_id);
        }
        self.take_args(&mut call, worker, now, deadline);
        call.arg(max.min(BATCH_MAX));
        let (lost, taken) = self.run::<(Vec<usize>, Vec<String>)>(&call).await.map_err(unavailable)?;
        let lost = lost
            .into_iter()
            .map(|position| {
                let lease = position.checked_sub(1).and_then(|i| done.get(i));
                lease.cloned().ok_or_else(|| CallError::Corrupt(format!("lost lease position {position}")))
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(unavailable)?;
        let taken = leases(&taken, worker, deadline).map_err(unavailable)?;
        Ok(AckedAndTaken { lost, taken })
    }

    async fn run<T: FromRedisValue>(&self, invocation: &ScriptInvocation<'_>) -> Result<T, CallError> {
        let mut conn = self.conn.clone();
        Ok(invocation.invoke_async(&mut conn).await?)
    }
}

fn unavailable(e: CallError) -> JobQueueError {
    JobQueueError::Unavailable { reason: e.to_string() }
}

fn lease_lost(lease: &Lease) -> JobQueueError {
    JobQueueError::LeaseLost { job: lease.ticket.job, lease_id: lease.lease_id }
}

/// A time as scripts take it: Unix milliseconds within Lua's exact range.
fn ms(t: Timestamp) -> i64 {
    t.as_millis().clamp(-TIME_ABS_MAX_MS, TIME_ABS_MAX_MS)
}

/// The member of a job in the sorted sets: 32 lowercase hex digits, so that text order is id order.
fn member(job: JobId) -> String {
    format!("{:032x}", job.as_u128())
}

fn parse_member(text: &str) -> Result<JobId, CallError> {
    if text.len() != 32 {
        return Err(CallError::Corrupt(format!("job member {text:?}")));
    }
    u128::from_str_radix(text, 16).map(JobId::from).map_err(|_| CallError::Corrupt(format!("job member {text:?}")))
}

fn parse_i64(text: &str, what: &str) -> Result<i64, CallError> {
    text.parse().map_err(|_| CallError::Corrupt(format!("{what} {text:?}")))
}

fn priority(rank: &str) -> Result<Priority, CallError> {
    let index: usize = rank.parse().map_err(|_| CallError::Corrupt(format!("priority rank {rank:?}")))?;
    Priority::ALL.get(index).copied().ok_or_else(|| CallError::Corrupt(format!("priority rank {rank:?}")))
}

/// The ticket of `job` from its stored fields: rank, `enqueued_at`, `not_before`.
fn ticket(job: JobId, rank: &str, enqueued_at: &str, not_before: &str) -> Result<JobTicket, CallError> {
    Ok(JobTicket {
        job,
        priority: priority(rank)?,
        enqueued_at: Timestamp::from_millis(parse_i64(enqueued_at, "enqueued_at")?),
        not_before: Timestamp::from_millis(parse_i64(not_before, "not_before")?),
    })
}

/// A stored ticket, `"rank enqueued_at not_before"`.
fn parse_ticket(job: JobId, text: &str) -> Result<JobTicket, CallError> {
    let mut parts = text.split(' ');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(rank), Some(enqueued_at), Some(not_before), None) => ticket(job, rank, enqueued_at, not_before),
        _ => Err(CallError::Corrupt(format!("ticket {text:?}"))),
    }
}

/// A stored dead letter, `"rank enqueued_at not_before at error"`.
fn parse_dead_letter(job: JobId, text: &str) -> Result<DeadLetter, CallError> {
    let mut parts = text.splitn(5, ' ');
    match (parts.next(), parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(rank), Some(enqueued_at), Some(not_before), Some(at), Some(error)) => Ok(DeadLetter {
            ticket: ticket(job, rank, enqueued_at, not_before)?,
            error: ErrorText::new(error),
            at: Timestamp::from_millis(parse_i64(at, "dead letter time")?),
        }),
        _ => Err(CallError::Corrupt(format!("dead letter {text:?}"))),
    }
}

/// The leases in a take script's answer, `job, ticket, lease_id` for each, leased to `worker` until `deadline`.
fn leases(flat: &[String], worker: &WorkerId, deadline: Timestamp) -> Result<Vec<Lease>, CallError> {
    if !flat.len().is_multiple_of(3) {
        return Err(CallError::Corrupt(format!("take answer of {} fields", flat.len())));
    }
    flat.chunks_exact(3)
        .map(|fields| {
            let [job, stored, lease_id] = fields else {
                return Err(CallError::Corrupt("take answer".to_owned()));
            };
            let job = parse_member(job)?;
            let lease_id = lease_id.parse().map_err(|_| CallError::Corrupt(format!("lease id {lease_id:?}")))?;
            Ok(Lease { ticket: parse_ticket(job, stored)?, worker: worker.clone(), lease_id, deadline })
        })
        .collect()
}

/// The seed of a fresh lease-id counter: the time in ms times [`LEASE_SEED_PER_MS`], bounded.
fn lease_seed(now: Timestamp) -> u64 {
    u64::try_from(now.as_millis()).unwrap_or(0).saturating_mul(LEASE_SEED_PER_MS).min(LEASE_SEED_MAX)
}

#[async_trait]
impl JobQueue for RedisJobQueue {
    async fn enqueue(&self, ticket: JobTicket) -> Result<Enqueued, JobQueueError> {
        self.batcher.enqueue(ticket).await
    }

    async fn enqueue_many(&self, tickets: &[JobTicket]) -> Vec<Result<Enqueued, JobQueueError>> {
        // Straight to the script, one call per ENQUEUE_BATCH_MAX tickets; the batcher's calls are atomic scripts
        // too, so concurrent enqueues interleave between chunks, never inside one.
        let mut outcomes = Vec::with_capacity(tickets.len());
        for chunk in tickets.chunks(ENQUEUE_BATCH_MAX) {
            match self.batcher.add_now(chunk).await {
                Ok(each) => outcomes.extend(each),
                Err(e) => outcomes.extend(chunk.iter().map(|_| Err(e.clone()))),
            }
        }
        outcomes
    }

    async fn dequeue(
        &self,
        worker: &WorkerId,
        now: Timestamp,
        lease: Duration,
    ) -> Result<Option<Lease>, JobQueueError> {
        let mut taken = self.dequeue_many(worker, now, lease, 1).await?;
        if taken.len() > 1 {
            return Err(unavailable(CallError::Corrupt(format!("dequeue took {} tickets", taken.len()))));
        }
        Ok(taken.pop())
    }

    async fn dequeue_many(
        &self,
        worker: &WorkerId,
        now: Timestamp,
        lease: Duration,
        max: usize,
    ) -> Result<Vec<Lease>, JobQueueError> {
        let deadline = now.plus(lease);
        let mut call = self.call_with_keys(&DEQUEUE, KEYS_TO_LEASE);
        self.take_args(&mut call, worker, now, deadline);
        call.arg(max.min(BATCH_MAX));
        let taken = self.run::<Vec<String>>(&call).await.map_err(unavailable)?;
        leases(&taken, worker, deadline).map_err(unavailable)
    }

    async fn heartbeat(&self, lease: &Lease, now: Timestamp, extend: Duration) -> Result<Lease, JobQueueError> {
        let deadline = now.plus(extend);
        let mut call = self.call_with_keys(&HEARTBEAT, KEYS_TO_ACK);
        call.arg(member(lease.ticket.job)).arg(lease.lease_id).arg(ms(now)).arg(ms(deadline));
        match self.run::<i64>(&call).await.map_err(unavailable)? {
            1 => Ok(Lease { deadline, ..lease.clone() }),
            _ => Err(lease_lost(lease)),
        }
    }

    async fn ack(&self, lease: &Lease) -> Result<(), JobQueueError> {
        let mut call = self.call_with_keys(&ACK, KEYS_TO_ACK);
        call.arg(member(lease.ticket.job)).arg(lease.lease_id);
        match self.run::<i64>(&call).await.map_err(unavailable)? {
            1 => Ok(()),
            _ => Err(lease_lost(lease)),
        }
    }

    async fn ack_and_dequeue(
        &self,
        done: &Lease,
        now: Timestamp,
        lease: Duration,
    ) -> Result<Option<Lease>, JobQueueError> {
        let deadline = now.plus(lease);
        let mut call = self.call_with_keys(&ACK_DEQUEUE, KEYS_TO_LEASE);
        call.arg(member(done.ticket.job)).arg(done.lease_id);
        self.take_args(&mut call, &done.worker, now, deadline);
        let taken = match self.run::<::redis::Value>(&call).await.map_err(unavailable)? {
            ::redis::Value::Int(1) => return Ok(None),
            ::redis::Value::Int(0) => return Err(lease_lost(done)),
            taken => Vec::<String>::from_redis_value(taken)
                .map_err(|e| unavailable(CallError::Corrupt(format!("ack-and-dequeue answer: {e}"))))?,
        };
        match leases(&taken, &done.worker, deadline).map_err(unavailable)?.as_slice() {
            [next] => Ok(Some(next.clone())),
            other => Err(unavailable(CallError::Corrupt(format!("ack-and-dequeue took {} tickets", other.len())))),
        }
    }

    async fn ack_many(&self, leases: &[Lease]) -> Result<Vec<Lease>, JobQueueError> {
        let mut lost = Vec::new();
        for chunk in leases.chunks(BATCH_MAX) {
            let Some(any) = chunk.first() else { continue };
            // Taking nothing, the script needs no real worker, time or lease.
            lost.extend(
                self.ack_and_take(chunk, &any.worker, Timestamp::from_millis(0), Duration::ZERO, 0).await?.lost,
            );
        }
        Ok(lost)
    }

    async fn ack_and_dequeue_many(
        &self,
        done: &[Lease],
        worker: &WorkerId,
        now: Timestamp,
        lease: Duration,
        max: usize,
    ) -> Result<AckedAndTaken, JobQueueError> {
        // All but the last BATCH_MAX leases are acked first, so that one script call stays bounded.
        let (first, last) = done.split_at(done.len().saturating_sub(BATCH_MAX));
        let mut lost = self.ack_many(first).await?;
        let both = self.ack_and_take(last, worker, now, lease, max).await?;
        lost.extend(both.lost);
        Ok(AckedAndTaken { lost, taken: both.taken })
    }

    async fn nack(
        &self,
        lease: &Lease,
        now: Timestamp,
        retry_at: Option<Timestamp>,
        error: &ErrorText,
    ) -> Result<(), JobQueueError> {
        let mut call = self.call(&NACK);
        call.arg(member(lease.ticket.job))
            .arg(lease.lease_id)
            .arg(retry_at.map_or(String::new(), |t| ms(t).to_string()))
            .arg(ms(now))
            .arg(error.as_str())
            .arg(self.dead_letter_capacity);
        match self.run::<i64>(&call).await.map_err(unavailable)? {
            1 => Ok(()),
            0 => Err(lease_lost(lease)),
            -1 => Err(JobQueueError::QueueFull { capacity: self.dead_letter_capacity }),
            other => Err(unavailable(CallError::Corrupt(format!("nack returned {other}")))),
        }
    }

    async fn reclaim_expired(&self, now: Timestamp) -> Result<usize, JobQueueError> {
        // Each batch is atomic; the rounds are bounded because in-flight tickets are bounded by the capacity.
        let mut reclaimed = 0;
        for _ in 0..=self.capacity / RECLAIM_BATCH {
            let mut call = self.call(&RECLAIM);
            call.arg(ms(now)).arg(RECLAIM_BATCH);
            let batch = self.run::<usize>(&call).await.map_err(unavailable)?;
            reclaimed += batch;
            if batch < RECLAIM_BATCH {
                break;
            }
        }
        Ok(reclaimed)
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, JobQueueError> {
        let limit = limit.min(LIST_LIMIT_MAX);
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut call = self.call(&DEAD_LETTERS);
        call.arg(limit);
        let flat = self.run::<Vec<String>>(&call).await.map_err(unavailable)?;
        flat.chunks(2)
            .map(|pair| match pair {
                [job, data] => parse_dead_letter(parse_member(job)?, data),
                _ => Err(CallError::Corrupt("odd dead-letter listing".to_owned())),
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(unavailable)
    }

    async fn replay_dead_letter(&self, job: JobId, now: Timestamp) -> Result<(), JobQueueError> {
        let mut call = self.call(&REPLAY);
        call.arg(member(job)).arg(ms(now)).arg(self.capacity);
        match self.run::<i64>(&call).await.map_err(unavailable)? {
            1 => Ok(()),
            -1 => Err(JobQueueError::QueueFull { capacity: self.capacity }),
            -2 => Err(JobQueueError::NotDeadLettered { job }),
            other => Err(unavailable(CallError::Corrupt(format!("replay returned {other}")))),
        }
    }

    async fn len_by_priority(&self) -> Result<QueueLengths, JobQueueError> {
        let call = self.call(&LENGTHS);
        match self.run::<Vec<usize>>(&call).await.map_err(unavailable)?.as_slice() {
            &[critical, high, normal, low, in_flight, dead_letters] => {
                Ok(QueueLengths { waiting: [critical, high, normal, low], in_flight, dead_letters })
            }
            other => Err(unavailable(CallError::Corrupt(format!("lengths {other:?}")))),
        }
    }

    async fn contains(&self, job: JobId) -> Result<bool, JobQueueError> {
        let mut conn = self.conn.clone();
        let present = ::redis::cmd("HEXISTS").arg(&self.tickets_key).arg(member(job)).query_async(&mut conn).await;
        present.map_err(|e| unavailable(CallError::Redis(e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_records_round_trip_and_junk_is_refused() {
        // Proves the text forms scripts store parse back into the same tickets and dead letters, and that
        // anything else is reported as corrupt instead of guessed at.
        let job = JobId::from(0xabc);
        assert_eq!(parse_member(&member(job)).ok(), Some(job));
        let t = parse_ticket(job, "3 -5 1800000000000").expect("valid ticket");
        assert_eq!(
            (t.priority, t.enqueued_at.as_millis(), t.not_before.as_millis()),
            (Priority::Low, -5, 1_800_000_000_000)
        );
        let d = parse_dead_letter(job, "0 1 2 3 provider said: no  way").expect("valid dead letter");
        assert_eq!(
            (d.ticket.priority, d.at.as_millis(), d.error.as_str()),
            (Priority::Critical, 3, "provider said: no  way")
        );
        assert!(parse_ticket(job, "4 1 2").is_err());
        assert!(parse_ticket(job, "1 1").is_err());
        assert!(parse_member("xyz").is_err());
        assert_eq!(ms(Timestamp::from_millis(i64::MAX)), TIME_ABS_MAX_MS);
        assert_eq!(lease_seed(Timestamp::from_millis(-1)), 0);
        assert_eq!(lease_seed(Timestamp::from_millis(i64::MAX)), LEASE_SEED_MAX);
    }
}
