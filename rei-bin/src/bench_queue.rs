//! `rei bench queue`: enqueue -> dequeue -> ack of no-op tickets on one Redis, jobs/s and p99 enqueue-to-ack
//! latency per ticket; in the same run, Python RQ (`SimpleWorker`, a no-op job, three queues) on the same Redis,
//! for the ratio. Producers enqueue one ticket per call, as users submit jobs; each worker has room for
//! [`WORKER_CAPACITY`] jobs and acks the ones it finished while taking the next ones, in one call, and polls a
//! drained queue every [`POLL_INTERVAL`]. A benchmark: it reports, and asserts nothing but that every ticket was
//! delivered and acked exactly once.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rei_core::ids::JobId;
use rei_core::jobs::{Enqueued, JobQueue, JobTicket, Priority, QueueLengths, WorkerId};
use rei_core::time::Clock;

/// What to run.
pub(crate) struct QueueBench {
    pub(crate) redis_url: String,
    pub(crate) workers: u32,
    pub(crate) producers: u32,
    pub(crate) jobs: u64,
    pub(crate) json: bool,
}

const PRIORITIES: [Priority; 3] = [Priority::High, Priority::Normal, Priority::Low];

/// Jobs one bench worker holds at once.
const WORKER_CAPACITY: usize = 32;

/// How long a worker that found less than half its capacity waits before asking again.
const POLL_INTERVAL: Duration = Duration::from_millis(1);

/// The enqueue stamp of a ticket once it is acked, so that a second ack is seen.
const ACKED: u64 = u64::MAX;

pub(crate) async fn run(b: QueueBench) -> Result<()> {
    if b.workers == 0 || b.workers > 256 {
        bail!("--workers must be 1 to 256");
    }
    if b.producers == 0 || b.producers > 256 {
        bail!("--producers must be 1 to 256");
    }
    if b.jobs == 0 || b.jobs > 10_000_000 {
        bail!("--jobs must be 1 to 10,000,000");
    }
    let clock = rei_adapters::system::SystemClock::new();
    let run_id = clock.now().as_millis();
    let queue = crate::wiring::redis_queue(&b.redis_url, &format!("rei-bench-{run_id}"), b.jobs).await?;

    eprintln!("rei bench queue: {} jobs, {} workers, {} producers", b.jobs, b.workers, b.producers);
    let (rei_secs, per_sec, p99_us) = drive(queue, b.workers, b.producers, b.jobs, run_id).await?;
    eprintln!("rei: {per_sec} jobs/s, p99 enqueue->ack {} ms", ms(p99_us));

    eprintln!("RQ: {} jobs, one SimpleWorker, three queues ...", b.jobs);
    let rq = rq(&b.redis_url, b.jobs)?;

    println!("jobs         {}", b.jobs);
    println!("workers      {}", b.workers);
    println!("producers    {}", b.producers);
    println!("rei          {per_sec} jobs/s ({rei_secs:?}), p99 enqueue->ack {} ms", ms(p99_us));
    println!("rq           {rq} jobs/s");
    println!("ratio        {}x", ratio(per_sec, rq));
    if b.json {
        println!(
            "{{\"jobs\":{},\"workers\":{},\"producers\":{},\"jobs_per_sec\":{per_sec},\"p99_ms\":{},\"rq_jobs_per_sec\":{rq},\"ratio\":{}}}",
            b.jobs,
            b.workers,
            b.producers,
            ms(p99_us),
            ratio(per_sec, rq)
        );
    }
    Ok(())
}

pub(crate) fn ms(us: u64) -> String {
    format!("{}.{:03}", us / 1000, us % 1000)
}

pub(crate) fn ratio(a: u64, b: u64) -> String {
    if b == 0 {
        return "null".to_owned();
    }
    let hundredths = a.saturating_mul(100) / b;
    format!("{}.{:02}", hundredths / 100, hundredths % 100)
}

/// Enqueues `jobs` tickets from `producers` tasks (each awaiting one enqueue at a time) while `workers` dequeue and
/// ack them; returns the wall time,
/// jobs per second and the p99 enqueue-to-ack latency in microseconds.
async fn drive(
    queue: Arc<dyn JobQueue>,
    workers: u32,
    producers: u32,
    jobs: u64,
    run_id: i64,
) -> Result<(Duration, u64, u64)> {
    let started = Instant::now();
    let stamps: Arc<Vec<AtomicU64>> = Arc::new((0..jobs).map(|_| AtomicU64::new(0)).collect());
    let acked = Arc::new(AtomicU64::new(0));
    let job_id = move |seq: u64| JobId::from((u128::from(run_id.unsigned_abs()) << 64) | u128::from(seq));
    let producers = u64::from(producers).min(jobs);
    let mut tasks = Vec::new();
    for p in 0..producers {
        let (queue, stamps) = (queue.clone(), stamps.clone());
        tasks.push(tokio::spawn(async move {
            let clock = rei_adapters::system::SystemClock::new();
            let mut seq = p;
            while seq < jobs {
                let now = clock.now();
                let priority = PRIORITIES[usize::try_from(seq % 3).unwrap_or(0)];
                stamps[usize::try_from(seq).unwrap_or(0)]
                    .store(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX), Ordering::Relaxed);
                let ticket = JobTicket { job: job_id(seq), priority, enqueued_at: now, not_before: now };
                if queue.enqueue(ticket).await? != Enqueued::Added {
                    bail!("job {} was already in the queue", job_id(seq));
                }
                seq += producers;
            }
            Ok::<_, anyhow::Error>(Vec::new())
        }));
    }
    for w in 0..workers {
        let (queue, stamps, acked) = (queue.clone(), stamps.clone(), acked.clone());
        let worker = WorkerId::parse(&format!("bench-{w}")).context("failed to name a bench worker")?;
        tasks.push(tokio::spawn(async move {
            let clock = rei_adapters::system::SystemClock::new();
            let lease_for = Duration::from_secs(60);
            let mut latencies = Vec::new();
            let mut held: Vec<rei_core::jobs::Lease> = Vec::new();
            // A worker's loop: ack the jobs it holds (done: they are no-ops) and take the next ones in one call.
            while acked.load(Ordering::Relaxed) < jobs || !held.is_empty() {
                let batch = queue.ack_and_dequeue_many(&held, &worker, clock.now(), lease_for, WORKER_CAPACITY).await?;
                if let Some(lost) = batch.lost.first() {
                    bail!("job {} was lost: its lease was no longer held at ack", lost.ticket.job);
                }
                let now = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                for done in &held {
                    let seq = usize::try_from(done.ticket.job.as_u128() & u128::from(u64::MAX)).unwrap_or(usize::MAX);
                    let at = stamps.get(seq).map_or(ACKED, |s| s.swap(ACKED, Ordering::Relaxed));
                    if at == ACKED {
                        bail!("job {} was acked twice", done.ticket.job);
                    }
                    latencies.push(now.saturating_sub(at));
                }
                acked.fetch_add(held.len() as u64, Ordering::Relaxed);
                held = batch.taken;
                // A worker that found the queue (nearly) drained comes back after a poll interval, not at once: a
                // burst of polls finding one ticket each would cost Redis more than the tickets themselves. The
                // wait counts in the latency of the tickets it holds.
                if held.len() < WORKER_CAPACITY / 2 && acked.load(Ordering::Relaxed) < jobs {
                    tokio::time::sleep(POLL_INTERVAL).await;
                }
            }
            Ok(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.context("a bench task panicked")??);
    }
    let elapsed = started.elapsed();
    let left = queue.len_by_priority().await.context("failed to read the queue lengths")?;
    if left != QueueLengths::default() || latencies.len() as u64 != jobs {
        bail!("{} of {jobs} tickets acked, {left:?} left in the queue", latencies.len());
    }
    latencies.sort_unstable();
    let p99 = if latencies.is_empty() {
        0
    } else {
        let n = latencies.len() as u64;
        latencies[usize::try_from((n * 99).div_ceil(100).clamp(1, n) - 1).unwrap_or(0)]
    };
    let ms_total = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX).max(1);
    Ok((elapsed, jobs.saturating_mul(1000) / ms_total, p99))
}

/// Runs the RQ baseline (installing `rq` with pip when it is missing) and returns its jobs per second.
pub(crate) fn rq(redis_url: &str, jobs: u64) -> Result<u64> {
    let has_rq = Command::new("python3").args(["-c", "import rq, redis"]).output().is_ok_and(|o| o.status.success());
    if !has_rq {
        eprintln!("installing rq with pip ...");
        let pip = Command::new("python3").args(["-m", "pip", "install", "-q", "rq"]).status();
        if !pip.is_ok_and(|s| s.success()) {
            bail!("failed to install rq (python3 -m pip install rq)");
        }
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/rq_bench.py");
    let out = Command::new("python3")
        .args([script, redis_url, &jobs.to_string()])
        .output()
        .context("failed to run the RQ baseline")?;
    if !out.status.success() {
        bail!("the RQ baseline failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().context("the RQ baseline printed nothing")?;
    let value = line.split("\"jobs_per_sec\":").nth(1).context("no jobs_per_sec in the RQ output")?;
    value.trim().trim_end_matches('}').trim().parse::<u64>().with_context(|| format!("failed to read {line:?}"))
}
