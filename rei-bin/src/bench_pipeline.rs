//! `rei bench pipeline`: confirmed image jobs through the real worker (lease, route, submit to the fake Gemini
//! server answering at once, store the image, capture, tell the user), so that what is measured is REI's own
//! cost. Producers confirm jobs while fewer than twice the workers' room are confirmed and not yet told, so the
//! run measures the work rather than a backlog. It reports jobs/s from confirm to the user's message, p50/p99 of
//! that time per job (half of the jobs in flight wait in the queue for a free slot), and the CPU this
//! process spent per job (the in-process fake server included; a PostgreSQL or Redis server's own CPU is not).
//! In the same run, when Redis is given, Python RQ's no-op dispatch on that Redis is the baseline. A benchmark:
//! it asserts only that every job succeeded, was charged its price once, and that the ledger verifies.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use async_trait::async_trait;
use rei::adapters::assets::ObjectAssetStore;
use rei::adapters::fakes::gemini::{FakeGemini, FakeGeminiConfig};
use rei::adapters::gemini::{GeminiConfig, GeminiProvider};
use rei::core::generation::{AssetStore, GenerationRequest, Messenger, MessengerError, PipelineConfig, UserMessage};
use rei::core::ids::{JobId, PaymentId, ProductId, QuoteId, UserId};
use rei::core::jobs::{JobState, Priority, QueueLimits, WorkerId};
use rei::core::money::{Money, UnitPrice};
use rei::core::pricing::Tier;
use rei::core::routing::{Capability, Catalogue, Offer, Router, RouterConfig};
use rei::{Engine, EngineConfig, MigrateMode, PipelineParts, WorkerOptions};
use tokio::sync::Notify;

use crate::bench_queue::{ms, ratio, rq};

/// What to run.
#[derive(clap::Args)]
pub(crate) struct PipelineBench {
    /// postgres://… (runs in a scratch schema, dropped afterwards); without it a scratch SQLite file.
    #[arg(long)]
    pub(crate) database_url: Option<String>,
    /// redis://host:port[/db]: the job queue in Redis, and the RQ baseline on it.
    #[arg(long)]
    pub(crate) redis_url: Option<String>,
    /// Jobs to run through.
    #[arg(long, default_value_t = 20_000)]
    pub(crate) jobs: u64,
    /// Worker loops in this process (as `rei worker` processes would be).
    #[arg(long, default_value_t = 2)]
    pub(crate) workers: u32,
    /// Jobs each worker runs at once.
    #[arg(long, default_value_t = 64)]
    pub(crate) concurrency: u32,
    /// Concurrent producers confirming jobs, one at a time each (as bot requests do).
    #[arg(long, default_value_t = 64)]
    pub(crate) producers: u32,
    /// Keep results in memory instead of files in a scratch directory: REI's cost without the file system's.
    #[arg(long)]
    pub(crate) assets_in_memory: bool,
    /// Print one JSON object as the last line.
    #[arg(long)]
    pub(crate) json: bool,
}

const MODEL: &str = "gemini-2.5-flash-image";
const PRODUCT: &str = "image.nano-banana";
const API_KEY: &str = "bench-key";

/// When each job was confirmed and when its user was told it was delivered.
struct Timing {
    started: Mutex<HashMap<JobId, Instant>>,
    latencies_us: Mutex<Vec<u64>>,
    delivered: AtomicU64,
    others: AtomicU64,
    done: Notify,
    expected: AtomicU64,
    /// Jobs confirmed and not yet told: producers wait for room, so the run measures REI's time per job rather
    /// than a backlog's wait.
    room: tokio::sync::Semaphore,
}

impl Timing {
    fn start(&self, job: JobId, at: Instant) {
        self.started.lock().unwrap_or_else(PoisonError::into_inner).insert(job, at);
    }
}

/// The bench's messenger: stamps each delivery against its job's confirm.
struct TimingMessenger(Arc<Timing>);

#[async_trait]
impl Messenger for TimingMessenger {
    async fn send(&self, _user: UserId, message: UserMessage) -> Result<(), MessengerError> {
        let t = &self.0;
        match message {
            UserMessage::Delivered { job, .. } => {
                let now = Instant::now();
                let started = t.started.lock().unwrap_or_else(PoisonError::into_inner).get(&job).copied();
                if let Some(started) = started {
                    let us = u64::try_from(now.duration_since(started).as_micros()).unwrap_or(u64::MAX);
                    t.latencies_us.lock().unwrap_or_else(PoisonError::into_inner).push(us);
                }
                t.room.add_permits(1);
                let n = t.delivered.fetch_add(1, Ordering::Relaxed) + 1;
                if n + t.others.load(Ordering::Relaxed) >= t.expected.load(Ordering::Relaxed) {
                    t.done.notify_one();
                }
            }
            UserMessage::Failed { .. } | UserMessage::Cancelled { .. } => {
                t.room.add_permits(1);
                let n = t.others.fetch_add(1, Ordering::Relaxed) + 1;
                if n + t.delivered.load(Ordering::Relaxed) >= t.expected.load(Ordering::Relaxed) {
                    t.done.notify_one();
                }
            }
            UserMessage::Working { .. } | UserMessage::Progress { .. } => {}
        }
        Ok(())
    }
}

pub(crate) async fn run(b: PipelineBench) -> Result<()> {
    if b.jobs == 0 || b.jobs > 1_000_000 {
        bail!("--jobs must be 1 to 1,000,000");
    }
    if b.workers == 0 || b.workers > 64 || b.concurrency == 0 || b.concurrency > 1_024 {
        bail!("--workers must be 1 to 64 and --concurrency 1 to 1,024");
    }
    let scratch = tempfile::Builder::new().prefix("rei-bench-pipeline-").tempdir().context("scratch directory")?;
    let run_id = std::process::id();
    // Room for every worker's slots to be full, and as many again waiting in the queue.
    let in_flight = usize::try_from(b.workers.saturating_mul(b.concurrency).saturating_mul(2)).unwrap_or(1);
    let timing = Arc::new(Timing {
        started: Mutex::default(),
        latencies_us: Mutex::default(),
        delivered: AtomicU64::new(0),
        others: AtomicU64::new(0),
        done: Notify::new(),
        expected: AtomicU64::new(0),
        room: tokio::sync::Semaphore::new(in_flight),
    });
    timing.expected.store(b.jobs, Ordering::Relaxed);
    let mut config = EngineConfig {
        migrate: MigrateMode::Apply,
        connections_max: 32,
        queue: QueueLimits {
            capacity: usize::try_from(b.jobs).unwrap_or(usize::MAX).saturating_add(1_024),
            dead_letter_capacity: 1_024,
            aging_step: None,
        },
        redis_namespace: format!("rei-bench-pipeline-{run_id}"),
        ..crate::wiring::config()
    };
    let url = match &b.database_url {
        None => format!("sqlite://{}", scratch.path().join("bench.db").display()),
        Some(url) if url.starts_with("postgres") => {
            config.postgres_schema = Some(format!("rei_bench_pipeline_{run_id}"));
            url.clone()
        }
        Some(_) => bail!("--database-url must be postgres://… (without it the run uses a scratch SQLite file)"),
    };
    let mut builder = Engine::builder()
        .database_url(&url)
        .config(config.clone())
        .messenger(Arc::new(TimingMessenger(timing.clone())));
    if let Some(redis) = &b.redis_url {
        builder = builder.redis_url(redis);
    }
    let engine = Arc::new(builder.open().await.context("failed to open the database")?);
    let result = measure(&engine, &b, &timing, scratch.path()).await;
    if let (Some(schema), Some(pool)) = (&config.postgres_schema, engine.database().postgres()) {
        rei::adapters::postgres::drop_schema(pool, schema).await.context("failed to drop the scratch schema")?;
    }
    engine.close().await;
    drop(engine);
    let report = result?;
    let rq_per_sec = match &b.redis_url {
        Some(redis) => {
            eprintln!("RQ: {} no-op jobs, one SimpleWorker ...", b.jobs);
            Some(rq(redis, b.jobs)?)
        }
        None => None,
    };
    report.print(&b, rq_per_sec);
    Ok(())
}

struct Report {
    engine: &'static str,
    queue: &'static str,
    elapsed: Duration,
    latencies_us: Vec<u64>,
    cpu_us: u64,
    verify_clean: bool,
}

impl Report {
    fn jobs_per_sec(&self) -> u64 {
        let us = u64::try_from(self.elapsed.as_micros()).unwrap_or(u64::MAX).max(1);
        (self.latencies_us.len() as u64).saturating_mul(1_000_000) / us
    }

    fn quantile_us(&self, per_mille: usize) -> u64 {
        if self.latencies_us.is_empty() {
            return 0;
        }
        let rank = (self.latencies_us.len() * per_mille).div_ceil(1000).max(1);
        self.latencies_us[rank - 1]
    }

    fn print(&self, b: &PipelineBench, rq_per_sec: Option<u64>) {
        let jobs = self.latencies_us.len() as u64;
        let per_sec = self.jobs_per_sec();
        let cpu_per_job = self.cpu_us / jobs.max(1);
        println!("engine       {} (queue: {})", self.engine, self.queue);
        println!("jobs         {jobs} in {:?}, {} workers x {} at once", self.elapsed, b.workers, b.concurrency);
        println!("jobs/s       {per_sec} (confirm -> stored, captured, user told)");
        println!("p50          {} ms", ms(self.quantile_us(500)));
        println!("p99          {} ms", ms(self.quantile_us(990)));
        println!("cpu/job      {cpu_per_job} µs (this process, the fake Gemini included)");
        match rq_per_sec {
            Some(rq) => {
                println!("rq           {rq} no-op jobs/s on the same Redis");
                println!("ratio        {}x", ratio(per_sec, rq));
            }
            None => println!("rq           not run (give --redis-url for the baseline)"),
        }
        println!("verify       {}", if self.verify_clean { "clean" } else { "DRIFT" });
        if b.json {
            let rq = rq_per_sec.map_or_else(|| "null".to_owned(), |r| r.to_string());
            let ratio = rq_per_sec.map_or_else(|| "null".to_owned(), |r| ratio(per_sec, r));
            println!(
                "{{\"engine\":\"{}\",\"queue\":\"{}\",\"jobs\":{jobs},\"workers\":{},\"concurrency\":{},\"jobs_per_sec\":{per_sec},\"p50_ms\":{},\"p99_ms\":{},\"cpu_us_per_job\":{cpu_per_job},\"rq_jobs_per_sec\":{rq},\"ratio\":{ratio},\"verify_clean\":{}}}",
                self.engine,
                self.queue,
                b.workers,
                b.concurrency,
                ms(self.quantile_us(500)),
                ms(self.quantile_us(990)),
                self.verify_clean
            );
        }
    }
}

async fn measure(
    engine: &Arc<Engine>,
    b: &PipelineBench,
    timing: &Arc<Timing>,
    dir: &std::path::Path,
) -> Result<Report> {
    let fake = FakeGemini::start(FakeGeminiConfig { api_key: API_KEY.to_owned(), thoughts: false })
        .await
        .context("failed to start the fake Gemini server")?;
    let gemini = GeminiConfig { base_url: fake.base_url(), ..GeminiConfig::new(API_KEY) };
    let cost = gemini.price(MODEL, None).context("no price for the model")?;
    let offer = Offer::new(gemini.provider_id.clone(), MODEL, Capability::TextToImage, UnitPrice::from_money(cost), 80)
        .context("offer")?;
    let router = Router::new(Catalogue::new(vec![offer]).context("catalogue")?, RouterConfig::default())?;
    let provider = Arc::new(GeminiProvider::new(gemini).context("Gemini adapter")?);
    let assets: Arc<dyn AssetStore> = if b.assets_in_memory {
        Arc::new(ObjectAssetStore::new(Arc::new(object_store::memory::InMemory::new()), 16 * 1024 * 1024))
    } else {
        Arc::new(ObjectAssetStore::local(&dir.join("assets"), 16 * 1024 * 1024).await.context("asset directory")?)
    };
    let pipeline = Arc::new(engine.pipeline(PipelineParts {
        providers: vec![provider],
        router,
        assets,
        config: PipelineConfig::default(),
        faults: None,
    }));

    // Users, money and quotes come first: the run measures from confirm on.
    eprintln!("rei bench pipeline: {} jobs on {}; funding users and quoting ...", b.jobs, engine.database().engine());
    let product = ProductId::parse(PRODUCT).context("product")?;
    let mut quotes: Vec<(UserId, QuoteId, Money)> = Vec::with_capacity(usize::try_from(b.jobs).unwrap_or(0));
    let base = i64::from(std::process::id()) * 10_000_000;
    let mut tasks = tokio::task::JoinSet::new();
    for chunk in 0..b.producers.max(1) {
        let billing = engine.billing().clone();
        let product = product.clone();
        let (producers, jobs) = (u64::from(b.producers.max(1)), b.jobs);
        tasks.spawn(async move {
            let mut mine = Vec::new();
            let mut n = u64::from(chunk);
            while n < jobs {
                let user = UserId(base + i64::try_from(n).unwrap_or(0));
                let payment = PaymentId::parse(&format!("bench-{base}-{n}")).context("payment id")?;
                billing.top_up(user, Money::from_kopecks(100_000), payment).await.context("top up")?;
                let quote = billing.quote(user, &product, 1, Tier::Basic).await.context("quote")?;
                mine.push((user, quote.id, quote.price));
                n += producers;
            }
            anyhow::Ok(mine)
        });
    }
    while let Some(done) = tasks.join_next().await {
        quotes.extend(done.context("setup task")??);
    }

    eprintln!("rei bench pipeline: running {} workers x {} at once ...", b.workers, b.concurrency);
    let cpu_before = process_cpu_us();
    let started = Instant::now();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..b.workers {
        let mut options = WorkerOptions::named(WorkerId::parse(&format!("bench-{w}")).context("worker name")?);
        options.concurrency = usize::try_from(b.concurrency).unwrap_or(1);
        options.idle_poll_max = Duration::from_millis(2);
        let mut stopped = stopped.clone();
        let stop_signal = async move {
            let _ = stopped.wait_for(|s| *s).await;
        };
        workers.spawn(rei::run_worker(pipeline.clone(), options, stop_signal, |_| {}));
    }
    let shared = Arc::new(Mutex::new(quotes));
    let mut producers = tokio::task::JoinSet::new();
    for _ in 0..b.producers.max(1) {
        let (shared, timing, engine) = (shared.clone(), timing.clone(), engine.clone());
        producers.spawn(async move {
            loop {
                let next = shared.lock().unwrap_or_else(PoisonError::into_inner).pop();
                let Some((user, quote, _)) = next else { return anyhow::Ok(()) };
                let request = GenerationRequest::text(Capability::TextToImage, "a red panda in the snow");
                // A permit is given back when the job's user is told.
                timing.room.acquire().await.context("room")?.forget();
                timing.start(JobId::from(quote.as_u128()), Instant::now());
                engine.order(user, quote, request, Priority::Normal).await.context("order")?;
            }
        });
    }
    while let Some(done) = producers.join_next().await {
        done.context("producer")??;
    }
    let all_told = timing.done.notified();
    if timing.delivered.load(Ordering::Relaxed) + timing.others.load(Ordering::Relaxed) < b.jobs {
        tokio::time::timeout(Duration::from_secs(600), all_told).await.context("jobs not all done in 10 minutes")?;
    }
    let elapsed = started.elapsed();
    let cpu_us = process_cpu_us().saturating_sub(cpu_before);
    let _ = stop.send(true);
    while workers.join_next().await.is_some() {}
    fake.stop().await;

    let failed = timing.others.load(Ordering::Relaxed);
    if failed > 0 {
        bail!("{failed} jobs did not succeed");
    }
    let verify = engine.billing().verify().await.context("verify")?;
    let mut latencies_us = std::mem::take(&mut *timing.latencies_us.lock().unwrap_or_else(PoisonError::into_inner));
    latencies_us.sort_unstable();
    // Every job succeeded: spot-check the money of the first ones.
    let checked =
        timing.started.lock().unwrap_or_else(PoisonError::into_inner).keys().take(16).copied().collect::<Vec<_>>();
    for job in checked {
        let stored = engine.jobs().get(job).await?.context("job missing")?;
        if stored.state != JobState::Succeeded {
            bail!("job {job} is {}", stored.state);
        }
        let balance = engine.billing().balance(stored.user).await?;
        if balance.available != Money::from_kopecks(100_000 - stored.price.kopecks()) || !balance.held.is_zero() {
            bail!("user {} has {balance:?} after one job of {}", stored.user.0, stored.price);
        }
    }
    Ok(Report {
        engine: engine.database().engine(),
        queue: if b.redis_url.is_some() { "redis" } else { "database" },
        elapsed,
        latencies_us,
        cpu_us,
        verify_clean: verify.is_clean(),
    })
}

/// User plus system CPU time of this process, in microseconds, from /proc (0 where there is none).
fn process_cpu_us() -> u64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return 0 };
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { return 0 };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12th and 13th after the name.
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    (ticks(11) + ticks(12)).saturating_mul(1_000_000 / TICKS_PER_SEC)
}

/// Linux's USER_HZ on every architecture REI runs on.
const TICKS_PER_SEC: u64 = 100;
