//! The Redis job queue and rate limiter against a real server: both conformance suites, large rate-limit
//! policies, redelivery after a consumer dies, workers in parallel on one queue, producers in parallel on one
//! queue (their enqueues batched), and the queue rebuilt from the job store after the server lost its data.
//!
//! Redis comes from `REI_TEST_REDIS_URL`, which `scripts/test` sets after starting a throwaway server. Each test
//! works under its own namespace, so tests run in parallel on one database; the test that wipes the data has a
//! logical database of its own.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rei_adapters::redis::{RedisJobQueue, RedisQueueLimits, RedisRateLimiter};
use rei_core::guards::{Decision, Gcra, PERIOD_MAX, RateLimitKey, RateLimitPolicy, RateLimiter};
use rei_core::ids::{JobId, UserId};
use rei_core::jobs::{
    BATCH_MAX, Enqueued, JobPorts, JobQueue, JobQueueError, JobService, JobState, JobStore, JobTicket, Priority,
    QueueLengths, RetryPolicy, WorkerId,
};
use rei_core::money::Ratio;
use rei_core::testing::clock::ManualClock;
use rei_core::testing::guards::rate_limiter_conformance;
use rei_core::testing::jobs::{
    BatchOp, MemoryJobStore, QueueSpec, RecordingBilling, RecordingNotifier, batch_dequeue_property,
    check_batch_matches_singles, job_queue_conformance, sample_job,
};
use rei_core::time::{Clock, Timestamp};

static NEXT: AtomicU64 = AtomicU64::new(1);

/// Connection and response timeout of every test connection.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The logical database of the test that flushes its data, away from the other tests' database 0.
const FLUSH_DB: u8 = 5;

/// The URL of the test Redis server. Fails loudly without it: the suite is run by `scripts/test`, which starts
/// Redis.
fn redis_url() -> String {
    std::env::var("REI_TEST_REDIS_URL").unwrap_or_else(|_| {
        panic!("REI_TEST_REDIS_URL is not set: run the suite with scripts/test, which starts Redis")
    })
}

/// The test server's URL pointing at logical database `db`.
fn redis_db_url(db: u8) -> String {
    let url = redis_url();
    let (scheme, rest) = url.split_once("://").expect("a redis:// URL");
    let authority = rest.split('/').next().expect("a host");
    format!("{scheme}://{authority}/{db}")
}

/// A namespace no other test uses.
fn namespace(what: &str) -> String {
    format!("t{}-{what}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

fn limits(spec: QueueSpec) -> RedisQueueLimits {
    RedisQueueLimits {
        capacity: spec.capacity,
        dead_letter_capacity: spec.dead_letter_capacity,
        aging_step: spec.aging_step,
    }
}

async fn queue_in(url: &str, namespace: &str, spec: QueueSpec) -> RedisJobQueue {
    RedisJobQueue::connect(url, namespace, limits(spec), TIMEOUT).await.expect("redis queue")
}

fn spec(capacity: usize) -> QueueSpec {
    QueueSpec { capacity, dead_letter_capacity: 16, aging_step: None }
}

fn at(ms: i64) -> Timestamp {
    Timestamp::from_millis(ms)
}

fn ticket(id: u128, priority: Priority, enqueued_ms: i64) -> JobTicket {
    JobTicket { job: JobId::from(id), priority, enqueued_at: at(enqueued_ms), not_before: at(enqueued_ms) }
}

/// What one enqueue call answered.
type Outcome = Result<Enqueued, JobQueueError>;

fn worker(name: &str) -> WorkerId {
    WorkerId::parse(name).expect("worker id")
}

#[tokio::test]
async fn redis_queue_passes_the_conformance_suite() {
    // Proves the Redis queue keeps every MUST of JobQueue.
    job_queue_conformance(|spec| async move {
        Arc::new(queue_in(&redis_url(), &namespace("conformance"), spec).await) as Arc<dyn JobQueue>
    })
    .await;
}

async fn conformance_queue(spec: QueueSpec) -> Arc<dyn JobQueue> {
    Arc::new(queue_in(&redis_url(), &namespace("batch"), spec).await)
}

#[tokio::test]
async fn redis_batch_calls_hand_out_what_single_calls_do() {
    // Proves, over many random workloads (delays, retries, expired leases, aging), that the one-script batch
    // calls of the Redis queue hand out the tickets single calls would, in order, and lose the same leases.
    batch_dequeue_property(&conformance_queue, 64).await;
}

#[tokio::test]
async fn a_batch_promotes_again_when_more_waiting_tickets_are_due_than_one_promotion_moves() {
    // Proves a batch equals single takes when more tickets of one priority are due than one promotion moves
    // (1,000): single takes promote again before each pick, the batch must too. Tickets come due in the
    // reverse of their enqueue order, so that each promotion changes which ticket is the oldest ready one.
    let mut ops = Vec::new();
    for step in 0..2_500 {
        ops.push(BatchOp::Enqueue { priority: Priority::Normal, delay_ms: 6_000 - 2 * step });
        ops.push(BatchOp::Tick { ms: 1 });
    }
    ops.push(BatchOp::Enqueue { priority: Priority::High, delay_ms: 0 });
    ops.extend([
        BatchOp::Tick { ms: 10_000 },
        BatchOp::Take { max: 700 },
        BatchOp::Take { max: 1_000 },
        BatchOp::AckAndTake { acks: 1_000, max: 1_000 },
    ]);
    check_batch_matches_singles(&conformance_queue, false, &ops).await;
}

#[tokio::test]
async fn a_corrupt_ticket_is_an_error_not_a_lease() {
    // Proves a take that finds a ready ticket without its stored record fails with a clear error and leases
    // nothing, instead of handing out a half-read lease.
    let ns = namespace("corrupt");
    let queue = queue_in(&redis_url(), &ns, spec(8)).await;
    queue.enqueue(ticket(1, Priority::Normal, 0)).await.expect("enqueue");
    let mut admin = rei_adapters::redis::connect(&redis_url(), TIMEOUT).await.expect("admin connection");
    let tickets = format!("rei:q:{{{ns}}}:tickets");
    redis::cmd("HDEL").arg(&tickets).arg(format!("{:032x}", 1)).query_async::<()>(&mut admin).await.expect("hdel");
    let taken = queue.dequeue_many(&worker("w"), at(1), Duration::from_secs(1), 4).await;
    assert!(
        matches!(&taken, Err(JobQueueError::Unavailable { reason }) if reason.contains("no ticket for job")),
        "{taken:?}"
    );
    assert_eq!(queue.len_by_priority().await.expect("lengths").in_flight, 0, "nothing leased");
}

#[tokio::test]
async fn redis_rate_limiter_passes_the_conformance_suite() {
    // Proves the Redis limiter keeps every MUST of RateLimiter, each decision equal to the pure GCRA.
    rate_limiter_conformance(|| async {
        Arc::new(RedisRateLimiter::connect(&redis_url(), &namespace("limiter"), TIMEOUT).await.expect("limiter"))
            as Arc<dyn RateLimiter>
    })
    .await;
}

#[tokio::test]
async fn redis_rate_limiter_is_exact_for_policies_beyond_the_script_range() {
    // Proves policies too large for the script's exact arithmetic (and TATs too far ahead for it) are still
    // decided exactly as the pure GCRA decides, on one key shared by every policy.
    let limiter = RedisRateLimiter::connect(&redis_url(), &namespace("large"), TIMEOUT).await.expect("limiter");
    let monthly = RateLimitPolicy::new(1, PERIOD_MAX, 1_000_000_000).expect("policy");
    let per_second = RateLimitPolicy::new(10, Duration::from_secs(1), 5).expect("policy");
    let fast = RateLimitPolicy::new(1_000_000, Duration::from_secs(1), 5).expect("policy");
    let key = RateLimitKey::UserSpend(UserId(7));
    let mut tat = None;
    let mut now = at(1_800_000_000_000);
    for step in 0u32..60 {
        now = now.plus(Duration::from_millis(u64::from(step % 7) * 50));
        let policy = [&monthly, &per_second, &fast][usize::try_from(step % 3).expect("small")];
        let cost = 1 + step % 2;
        let expected = Gcra::check(policy, tat, now, cost).expect("cost within burst");
        if let Decision::Allow { new_tat } = expected {
            tat = Some(new_tat);
        }
        assert_eq!(limiter.check(&key, policy, cost, now).await, Ok(expected), "step {step}");
    }
}

#[tokio::test]
async fn a_ticket_whose_consumer_died_is_delivered_again_after_its_deadline() {
    // Proves at-least-once across processes: a consumer that leases a ticket and dies without ack holds it
    // only until its lease deadline; then reclaim_expired gives it to another process, whose lease the dead
    // consumer's can no longer touch.
    let ns = namespace("crash");
    let t0 = 1_800_000_000_000;
    let lease = Duration::from_secs(30);
    let doomed = queue_in(&redis_url(), &ns, spec(8)).await;
    let survivor = queue_in(&redis_url(), &ns, spec(8)).await;
    doomed.enqueue(ticket(7, Priority::Normal, t0)).await.expect("enqueue");
    let first = doomed.dequeue(&worker("doomed"), at(t0), lease).await.expect("dequeue").expect("a ticket");
    drop(doomed);

    let w = worker("survivor");
    assert_eq!(survivor.dequeue(&w, at(t0 + 1_000), lease).await.expect("dequeue"), None, "still leased");
    assert_eq!(survivor.reclaim_expired(at(t0 + 30_000)).await.expect("reclaim"), 0, "deadline not yet passed");
    assert_eq!(survivor.reclaim_expired(at(t0 + 30_001)).await.expect("reclaim"), 1);
    let second = survivor.dequeue(&w, at(t0 + 30_001), lease).await.expect("dequeue").expect("redelivered");
    assert_eq!(second.ticket, first.ticket, "the same ticket, keeping its place");
    assert_ne!(second.lease_id, first.lease_id);
    assert!(matches!(survivor.ack(&first).await, Err(JobQueueError::LeaseLost { .. })), "dead lease is void");
    survivor.ack(&second).await.expect("ack");
    assert_eq!(survivor.len_by_priority().await.expect("lengths"), QueueLengths::default());
}

#[tokio::test]
async fn workers_in_parallel_receive_every_ticket_exactly_once() {
    // Proves concurrent workers, each on its own connection, never receive the same ticket twice and together
    // drain the queue.
    let ns = namespace("parallel");
    let tickets: u128 = 400;
    let producer = queue_in(&redis_url(), &ns, spec(1_000)).await;
    for id in 1..=tickets {
        let priority = Priority::ALL[usize::try_from(id % 4).expect("small")];
        producer.enqueue(ticket(id, priority, 0)).await.expect("enqueue");
    }
    let mut handles = Vec::new();
    for n in 0..4 {
        let queue = queue_in(&redis_url(), &ns, spec(1_000)).await;
        handles.push(tokio::spawn(async move {
            let w = worker(&format!("w{n}"));
            let mut got = Vec::new();
            while let Some(lease) = queue.dequeue(&w, at(1), Duration::from_secs(60)).await.expect("dequeue") {
                queue.ack(&lease).await.expect("ack");
                got.push(lease.ticket.job);
            }
            got
        }));
    }
    let mut all = Vec::new();
    for handle in handles {
        all.extend(handle.await.expect("worker"));
    }
    let unique: BTreeSet<JobId> = all.iter().copied().collect();
    assert_eq!((all.len(), unique.len()), (400, 400), "every ticket once");
    assert_eq!(producer.len_by_priority().await.expect("lengths"), QueueLengths::default());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_enqueues_keep_the_sequential_semantics() {
    // Proves enqueues made at once from many tasks, on clones of one queue and on a second queue of the same
    // namespace, end as some sequential order of lone enqueues would: per job exactly one Added (the stored
    // ticket being that call's, whatever its priority and due time) and AlreadyPresent for its other calls, or
    // QueueFull for all of them; exactly `capacity` tickets stored; due ones ready, the others waiting.
    let ns = namespace("producers");
    let (capacity, jobs, copies) = (40usize, 60u128, 3u128);
    let one = queue_in(&redis_url(), &ns, spec(capacity)).await;
    let two = queue_in(&redis_url(), &ns, spec(capacity)).await;
    let t0 = 1_800_000_000_000;
    let start = Arc::new(tokio::sync::Barrier::new(usize::try_from(jobs * copies).expect("small")));
    let mut calls = Vec::new();
    for copy in 0..copies {
        for id in 1..=jobs {
            // Each copy of a job differs (priority, and whether it is due at once), so the stored ticket shows
            // which call was the one Added.
            let priority = Priority::ALL[usize::try_from((id + copy) % 4).expect("small")];
            let delay_ms = if (id + copy) % 3 == 0 { 60_000 } else { 0 };
            let t = JobTicket { not_before: at(t0 + delay_ms), ..ticket(id, priority, t0) };
            let queue = if id % 4 == 0 { two.clone() } else { one.clone() };
            let start = start.clone();
            calls.push(tokio::spawn(async move {
                start.wait().await;
                let outcome = queue.enqueue(t.clone()).await;
                (t, outcome)
            }));
        }
    }
    let mut by_job: BTreeMap<JobId, Vec<(JobTicket, Outcome)>> = BTreeMap::new();
    for call in calls {
        let (t, outcome) = call.await.expect("producer");
        by_job.entry(t.job).or_default().push((t, outcome));
    }

    let mut added: BTreeMap<JobId, JobTicket> = BTreeMap::new();
    for (job, outcomes) in &by_job {
        let count = |want: &dyn Fn(&Outcome) -> bool| outcomes.iter().filter(|(_, o)| want(o)).count();
        let adds = count(&|o| *o == Ok(Enqueued::Added));
        let present = count(&|o| *o == Ok(Enqueued::AlreadyPresent));
        let full = count(&|o| *o == Err(JobQueueError::QueueFull { capacity }));
        let n = outcomes.len();
        assert!(
            (adds, present, full) == (1, n - 1, 0) || (adds, present, full) == (0, 0, n),
            "job {job}: {outcomes:?}"
        );
        if let Some((t, _)) = outcomes.iter().find(|(_, o)| *o == Ok(Enqueued::Added)) {
            added.insert(*job, t.clone());
        }
        assert_eq!(one.contains(*job).await.expect("contains"), adds == 1, "job {job} stored exactly when added");
    }
    assert_eq!(added.len(), capacity, "exactly capacity tickets stored");

    let lengths = one.len_by_priority().await.expect("lengths");
    for priority in Priority::ALL {
        let want = added.values().filter(|t| t.priority == priority).count();
        assert_eq!(lengths.waiting(priority), want, "{priority:?} waiting");
    }
    assert_eq!((lengths.in_flight, lengths.dead_letters), (0, 0));

    // Due tickets are ready at t0, each the very ticket of the call that was Added; the others only later.
    let lease = Duration::from_secs(60);
    let w = worker("w");
    let ready = one.dequeue_many(&w, at(t0), lease, BATCH_MAX).await.expect("dequeue ready");
    let later = one.dequeue_many(&w, at(t0 + 60_000), lease, BATCH_MAX).await.expect("dequeue waiting");
    let due: BTreeMap<JobId, JobTicket> =
        added.iter().filter(|(_, t)| t.not_before == t.enqueued_at).map(|(j, t)| (*j, t.clone())).collect();
    assert!(!due.is_empty() && due.len() < capacity, "the workload mixes due and delayed tickets");
    assert_eq!(ready.iter().map(|l| (l.ticket.job, l.ticket.clone())).collect::<BTreeMap<_, _>>(), due, "ready");
    let all: BTreeMap<JobId, JobTicket> =
        ready.iter().chain(&later).map(|l| (l.ticket.job, l.ticket.clone())).collect();
    assert_eq!((ready.len() + later.len(), all), (capacity, added), "every stored ticket once, as Added");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_batch_fails_each_of_its_calls_and_the_next_batch_goes_on() {
    // Proves a script error fails every concurrent enqueue with Unavailable (none is answered as added), and
    // the batcher keeps serving: once the cause is gone, the same tickets go in.
    let ns = namespace("failing");
    let queue = queue_in(&redis_url(), &ns, spec(64)).await;
    let mut admin = rei_adapters::redis::connect(&redis_url(), TIMEOUT).await.expect("admin connection");
    let tickets = format!("rei:q:{{{ns}}}:tickets");
    // A string where the tickets hash belongs: every command of the script on it fails with WRONGTYPE.
    redis::cmd("SET").arg(&tickets).arg("not a hash").query_async::<()>(&mut admin).await.expect("set");
    let enqueue_all = |queue: &RedisJobQueue| {
        let calls: Vec<_> = (1..=32u128)
            .map(|id| {
                let queue = queue.clone();
                tokio::spawn(async move { queue.enqueue(ticket(id, Priority::Normal, 0)).await })
            })
            .collect();
        async move {
            let mut outcomes = Vec::new();
            for call in calls {
                outcomes.push(call.await.expect("producer"));
            }
            outcomes
        }
    };
    for outcome in enqueue_all(&queue).await {
        assert!(
            matches!(&outcome, Err(JobQueueError::Unavailable { reason }) if reason.contains("WRONGTYPE")),
            "{outcome:?}"
        );
    }
    redis::cmd("DEL").arg(&tickets).query_async::<()>(&mut admin).await.expect("del");
    assert!(enqueue_all(&queue).await.iter().all(|o| *o == Ok(Enqueued::Added)), "every ticket goes in");
    assert_eq!(queue.len_by_priority().await.expect("lengths").waiting(Priority::Normal), 32);
}

#[test]
fn enqueue_fails_clearly_once_its_batcher_is_gone() {
    // Proves an enqueue on a queue whose batcher task died with its runtime fails with Unavailable, naming
    // the batcher, instead of hanging or panicking.
    let runtime = |what: &str| tokio::runtime::Builder::new_current_thread().enable_all().build().expect(what);
    let first = runtime("first runtime");
    let queue = first.block_on(async {
        let queue = queue_in(&redis_url(), &namespace("stopped"), spec(8)).await;
        assert_eq!(queue.enqueue(ticket(1, Priority::Normal, 0)).await, Ok(Enqueued::Added));
        queue
    });
    drop(first);
    let outcome = runtime("second runtime").block_on(queue.enqueue(ticket(2, Priority::Normal, 0)));
    assert!(
        matches!(&outcome, Err(JobQueueError::Unavailable { reason }) if reason.contains("batcher stopped")),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn reconcile_rebuilds_the_queue_from_the_store_after_the_data_is_lost() {
    // Proves the queue is only a cache of the store: after the Redis data is flushed, reconcile_queue puts every
    // Queued job back, once, and the workers then lease all of them, most urgent first.
    let url = redis_db_url(FLUSH_DB);
    let clock = Arc::new(ManualClock::new(at(1_800_000_000_000)));
    let store = Arc::new(MemoryJobStore::new());
    let queue = Arc::new(queue_in(&url, &namespace("flush"), spec(100)).await);
    let ports = JobPorts {
        store: store.clone(),
        queue: queue.clone(),
        billing: Arc::new(RecordingBilling::new()),
        notifier: Arc::new(RecordingNotifier::new()),
        clock: clock.clone(),
    };
    let retry = RetryPolicy::new(3, Duration::from_secs(1), Duration::from_secs(60), Ratio::ZERO).expect("retry");
    let service = JobService::new(ports, retry, Duration::from_secs(30)).expect("service");
    let w = worker("w1");
    for id in 1..=25u128 {
        let priority = Priority::ALL[usize::try_from(id % 4).expect("small")];
        service.submit(sample_job(id, priority, clock.now())).await.expect("submit");
    }
    // One job is running when the data is lost: it is not Queued, so lease recovery owns it, not reconcile.
    let running = service.lease(&w).await.expect("lease").expect("a job");

    // FLUSHDB loses this database as FLUSHALL would; FLUSHALL itself would also wipe every other database
    // of the server, so the tests running in parallel in database 0. The script cache goes too, as in a
    // restart: every script then comes back through the NOSCRIPT fallback.
    let mut admin = rei_adapters::redis::connect(&url, TIMEOUT).await.expect("admin connection");
    redis::cmd("FLUSHDB").query_async::<()>(&mut admin).await.expect("flushdb");
    redis::cmd("SCRIPT").arg("FLUSH").query_async::<()>(&mut admin).await.expect("script flush");
    assert_eq!(queue.len_by_priority().await.expect("lengths"), QueueLengths::default(), "the queue is gone");

    clock.advance(Duration::from_secs(1));
    let queued: BTreeSet<JobId> =
        store.list_by_state(JobState::Queued, None, 100).await.expect("list").iter().map(|j| j.id).collect();
    assert_eq!(queued.len(), 24);
    let report = service.reconcile_queue(10).await.expect("reconcile");
    assert_eq!((report.examined, report.enqueued), (24, 24));
    assert_eq!(service.reconcile_queue(10).await.expect("reconcile again").enqueued, 0, "nothing left to add");

    let mut leased = Vec::new();
    while let Some(job) = service.lease(&w).await.expect("lease") {
        leased.push(job);
    }
    assert_eq!(leased.iter().map(|l| l.job.id).collect::<BTreeSet<_>>(), queued, "every Queued job came back");
    let ranks: Vec<usize> = leased.iter().map(|l| l.job.priority.rank()).collect();
    assert!(ranks.is_sorted(), "most urgent first: {ranks:?}");
    assert!(matches!(queue.ack(&running.lease).await, Err(JobQueueError::LeaseLost { .. })), "old lease is void");
}
