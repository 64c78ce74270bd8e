//! The SQL job queues on PostgreSQL and SQLite: the `JobQueue` conformance suite, redelivery after a consumer
//! dies holding a lease, exclusive delivery to concurrent workers, and dequeue order against a model.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use rei_adapters::postgres::queue::PgJobQueue;
use rei_adapters::sqlite::queue::SqliteJobQueue;
use rei_core::ids::JobId;
use rei_core::jobs::{Enqueued, JobQueue, JobQueueError, JobTicket, Priority, QueueLengths, WorkerId};
use rei_core::testing::jobs::{QueueSpec, job_queue_conformance};
use rei_core::time::Timestamp;

use crate::support::{pg_pool, sqlite_pool};

fn at(ms: i64) -> Timestamp {
    Timestamp::from_millis(ms)
}

fn ticket(id: u128, priority: Priority, enqueued_ms: i64) -> JobTicket {
    JobTicket { job: JobId::from(id), priority, enqueued_at: at(enqueued_ms), not_before: at(enqueued_ms) }
}

fn worker(name: &str) -> WorkerId {
    WorkerId::parse(name).expect("worker id")
}

async fn pg_queue(spec: QueueSpec) -> Arc<dyn JobQueue> {
    Arc::new(PgJobQueue::new(pg_pool(4).await, spec.capacity, spec.dead_letter_capacity, spec.aging_step))
}

async fn sqlite_queue(spec: QueueSpec) -> Arc<dyn JobQueue> {
    Arc::new(SqliteJobQueue::new(sqlite_pool().await, spec.capacity, spec.dead_letter_capacity, spec.aging_step))
}

const SPEC: QueueSpec = QueueSpec { capacity: 1_000, dead_letter_capacity: 10, aging_step: None };

#[tokio::test]
async fn pg_job_queue_passes_the_conformance_suite() {
    // Proves the PostgreSQL queue keeps every MUST of JobQueue.
    job_queue_conformance(pg_queue).await;
}

#[tokio::test]
async fn sqlite_job_queue_passes_the_conformance_suite() {
    // Proves the SQLite queue keeps every MUST of JobQueue.
    job_queue_conformance(sqlite_queue).await;
}

/// A consumer (`dying`) leases the ticket and is never heard from again; a second queue over the same database
/// (another process) reclaims the ticket only after the lease deadline and delivers it to a live worker.
async fn check_redelivery_after_a_dead_consumer(dying: Arc<dyn JobQueue>, survivor: Arc<dyn JobQueue>) {
    assert_eq!(dying.enqueue(ticket(7, Priority::Normal, 0)).await.expect("enqueue"), Enqueued::Added);
    let lost = dying
        .dequeue(&worker("dies"), at(10), Duration::from_millis(100))
        .await
        .expect("dequeue")
        .expect("a ticket waits");
    assert_eq!(lost.deadline, at(110));
    drop(dying);

    // Until the deadline the lease stands: nothing is reclaimed or delivered twice.
    assert_eq!(survivor.reclaim_expired(at(110)).await.expect("reclaim"), 0, "the deadline itself is not past");
    assert!(survivor.dequeue(&worker("lives"), at(110), Duration::from_secs(60)).await.expect("dequeue").is_none());

    assert_eq!(survivor.reclaim_expired(at(111)).await.expect("reclaim"), 1);
    let again = survivor
        .dequeue(&worker("lives"), at(111), Duration::from_secs(60))
        .await
        .expect("dequeue")
        .expect("the ticket comes back");
    assert_eq!(again.ticket, lost.ticket, "the same ticket, enqueued_at kept");
    assert_ne!(again.lease_id, lost.lease_id);
    assert!(matches!(survivor.ack(&lost).await, Err(JobQueueError::LeaseLost { .. })), "the dead lease is void");
    survivor.ack(&again).await.expect("ack by the live worker");
    assert_eq!(survivor.len_by_priority().await.expect("lengths"), QueueLengths::default());
}

#[tokio::test]
async fn pg_ticket_of_a_dead_consumer_is_redelivered_after_its_deadline() {
    // Proves a lease that is never acked comes back to another worker once its deadline passed, and only then.
    let pool = pg_pool(4).await;
    let queue = |pool| Arc::new(PgJobQueue::new(pool, SPEC.capacity, SPEC.dead_letter_capacity, None));
    check_redelivery_after_a_dead_consumer(queue(pool.clone()), queue(pool)).await;
}

#[tokio::test]
async fn sqlite_ticket_of_a_dead_consumer_is_redelivered_after_its_deadline() {
    // Proves a lease that is never acked comes back to another worker once its deadline passed, and only then.
    let pool = sqlite_pool().await;
    let queue = |pool| Arc::new(SqliteJobQueue::new(pool, SPEC.capacity, SPEC.dead_letter_capacity, None));
    check_redelivery_after_a_dead_consumer(queue(pool.clone()), queue(pool)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pg_concurrent_workers_each_take_a_ticket_exactly_once() {
    // Proves 8 workers dequeuing at once from PostgreSQL take all 200 tickets between them and no ticket twice.
    const TICKETS: u128 = 200;
    const WORKERS: usize = 8;
    let queue = Arc::new(PgJobQueue::new(pg_pool(10).await, 1_000, 10, None));
    for id in 1..=TICKETS {
        let priority = Priority::ALL[usize::try_from(id % 4).expect("small")];
        let enqueued = i64::try_from(id % 17).expect("small");
        assert_eq!(queue.enqueue(ticket(id, priority, enqueued)).await.expect("enqueue"), Enqueued::Added);
    }
    let mut tasks = Vec::new();
    for n in 0..WORKERS {
        let queue = Arc::clone(&queue);
        tasks.push(tokio::spawn(async move {
            let me = worker(&format!("w{n}"));
            let mut taken = Vec::new();
            while let Some(lease) = queue.dequeue(&me, at(1_000), Duration::from_secs(60)).await.expect("dequeue") {
                taken.push(lease.ticket.job.as_u128());
                queue.ack(&lease).await.expect("ack of a lease nobody else holds");
            }
            taken
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("worker task"));
    }
    let distinct: BTreeSet<u128> = all.iter().copied().collect();
    assert_eq!(all.len(), distinct.len(), "a ticket was delivered twice");
    assert_eq!(distinct, (1..=TICKETS).collect::<BTreeSet<_>>(), "every ticket is delivered");
    assert_eq!(queue.len_by_priority().await.expect("lengths"), QueueLengths::default());
}

/// A small seeded generator (xorshift64*), so that the random walk below is the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[tokio::test]
async fn sqlite_dequeue_order_is_priority_then_fifo() {
    // Proves, over seeded random interleavings of enqueues and dequeues without aging, each SQLite dequeue returns
    // the most urgent waiting ticket, the earliest enqueued (then smallest id) among equals.
    for seed in [1_u64, 7, 42, 2_024, 0x5eed] {
        let queue = SqliteJobQueue::new(sqlite_pool().await, 1_000, 1, None);
        let me = worker("w");
        let mut rng = Rng(seed);
        let mut model: Vec<JobTicket> = Vec::new();
        let mut now = 0_i64;
        for n in 0..150_u128 {
            now += i64::try_from(rng.below(3)).expect("small");
            if rng.below(5) < 3 {
                // Ids run against time so that ties on enqueued_at are broken by id, not by arrival.
                let priority = Priority::ALL[usize::try_from(rng.below(4)).expect("small")];
                let t = ticket(1_000 - n, priority, now);
                assert_eq!(queue.enqueue(t.clone()).await.expect("enqueue"), Enqueued::Added);
                model.push(t);
            } else {
                let got = queue.dequeue(&me, at(now), Duration::from_secs(1)).await.expect("dequeue");
                let want = model.iter().min_by_key(|t| (t.priority, t.enqueued_at, t.job)).cloned();
                assert_eq!(got.as_ref().map(|l| &l.ticket), want.as_ref(), "seed {seed}, step {n}");
                if let Some(lease) = got {
                    model.retain(|t| t.job != lease.ticket.job);
                    queue.ack(&lease).await.expect("ack");
                }
            }
        }
    }
}
