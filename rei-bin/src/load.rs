//! `rei load`: simulated Telegram users against `rei serve`, `rei gc` and `rei worker` processes it starts, through
//! the real webhook, the real queue and fake providers ([`harness`]); each user tops up, orders, double-taps and
//! cancels ([`user`]). It reports updates/s, generations/s and REI's own time, then audits the money
//! ([`audit`]): every acknowledged top-up credited, every job ended exactly once and charged at most once, every
//! balance equal to top-ups minus captures plus grants, and `verify` clean. `rei chaos` runs the same load under
//! faults.

pub(crate) mod audit;
pub(crate) mod harness;
pub(crate) mod user;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::json;
use tokio::sync::mpsc;

use crate::bench::ms;
use harness::{Harness, HarnessOptions};
use user::{Record, Seen, Shared, User};

/// What `rei load` was asked to do.
#[derive(clap::Args, Clone, Debug)]
pub(crate) struct LoadArgs {
    /// Simulated users.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub(crate) users: u32,
    /// How long users start new orders, in seconds (their last jobs are then waited for).
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub(crate) seconds: u64,
    /// postgres://… (default: a new SQLite file in the run's directory). Not read from DATABASE_URL, so that a
    /// load never lands on a production database by accident. The run's users and payments are new ids, so a
    /// database may be loaded more than once.
    #[arg(long)]
    pub(crate) database_url: Option<String>,
    /// redis://… for the job queue (default: the database's own queue).
    #[arg(long)]
    pub(crate) redis_url: Option<String>,
    /// `rei worker` processes.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub(crate) workers: u32,
    /// Jobs each worker runs at once.
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..=1_024))]
    pub(crate) worker_concurrency: u32,
    /// How long the fake image provider takes per image, in milliseconds (each call ±50 %).
    #[arg(long, default_value_t = 300)]
    pub(crate) provider_latency_ms: u64,
    /// How often the fake provider answers 500, per mille.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=1_000))]
    pub(crate) provider_failure_per_mille: u64,
    /// The mean pause of a user between two updates, in milliseconds (each pause ±50 %).
    #[arg(long, default_value_t = 400)]
    pub(crate) think_ms: u64,
    /// Quotes cancelled instead of confirmed, per mille.
    #[arg(long, default_value_t = 80, value_parser = clap::value_parser!(u64).range(0..=1_000))]
    pub(crate) cancel_per_mille: u64,
    /// Confirms tapped twice at once, per mille.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(0..=1_000))]
    pub(crate) double_tap_per_mille: u64,
    /// Where the database, assets and the processes' logs go (default: a new temporary directory, removed
    /// afterwards unless the run fails).
    #[arg(long)]
    pub(crate) dir: Option<PathBuf>,
    /// Print one JSON object as the last line.
    #[arg(long)]
    pub(crate) json: bool,
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// What happens to the harness while the users play (`rei chaos`'s faults); the plain load does nothing.
pub(crate) trait Schedule {
    /// Runs until `deadline`; returns one line per thing it did.
    async fn run(&mut self, harness: &mut Harness, started: Instant, deadline: Instant) -> Vec<String>;
}

impl<S: Schedule> Schedule for &mut S {
    async fn run(&mut self, harness: &mut Harness, started: Instant, deadline: Instant) -> Vec<String> {
        (**self).run(harness, started, deadline).await
    }
}

/// No faults.
pub(crate) struct Quiet;

impl Schedule for Quiet {
    async fn run(&mut self, _: &mut Harness, _: Instant, deadline: Instant) -> Vec<String> {
        tokio::time::sleep_until(deadline.into()).await;
        Vec::new()
    }
}

/// What a run measured and found.
pub(crate) struct Outcome {
    pub(crate) engine: String,
    pub(crate) queue: &'static str,
    pub(crate) elapsed: Duration,
    pub(crate) records: Vec<Record>,
    pub(crate) audit: audit::Audit,
    pub(crate) actions: Vec<String>,
    pub(crate) crashed: Vec<String>,
    /// CPU time by process over the run.
    pub(crate) cpu: Vec<(String, Duration)>,
    pub(crate) dir: PathBuf,
}

impl Outcome {
    fn updates(&self) -> u64 {
        self.records.iter().map(|r| r.webhook_us.len() as u64).sum()
    }

    fn webhook_us(&self) -> Vec<u64> {
        let mut all: Vec<u64> = self.records.iter().flat_map(|r| r.webhook_us.iter().copied()).collect();
        all.sort_unstable();
        all
    }

    fn errors(&self) -> BTreeMap<&'static str, u64> {
        let mut all = BTreeMap::new();
        for r in &self.records {
            for (k, n) in &r.errors {
                *all.entry(*k).or_default() += n;
            }
        }
        all
    }

    /// Whether the run passes: no money error, every job ended, verify clean, no process died by itself.
    pub(crate) fn passed(&self) -> bool {
        self.audit.money_errors() == 0 && self.audit.jobs_not_ended == 0 && self.crashed.is_empty()
    }

    fn per_sec(&self, n: u64) -> u64 {
        n.saturating_mul(1_000) / u64::try_from(self.elapsed.as_millis()).unwrap_or(u64::MAX).max(1)
    }

    /// The human report.
    pub(crate) fn print(&self, users: u32) {
        let webhook = self.webhook_us();
        let own = &self.audit.own_us;
        let updates = self.updates();
        let a = &self.audit;
        println!();
        println!("engine        {} (queue: {}), {users} users, {} s", self.engine, self.queue, self.elapsed.as_secs());
        println!(
            "updates       {updates} ({}/s)   webhook answered p50 {} ms  p99 {} ms",
            self.per_sec(updates),
            ms(quantile(&webhook, 500)),
            ms(quantile(&webhook, 990))
        );
        println!(
            "generations   {} ({}/s)   REI's own time to delivery p50 {} ms  p99 {} ms (provider time taken out)",
            a.jobs,
            self.per_sec(a.jobs),
            ms(quantile(own, 500)),
            ms(quantile(own, 990))
        );
        println!(
            "jobs          {} succeeded, {} failed (money back), {} cancelled, {} not ended",
            a.succeeded, a.failed, a.cancelled, a.jobs_not_ended
        );
        println!(
            "users did     {} top-ups acknowledged, {} double taps, {} quotes cancelled",
            a.topups,
            self.records.iter().map(|r| r.double_taps).sum::<u64>(),
            self.records.iter().map(|r| r.cancels).sum::<u64>()
        );
        println!("deliveries    {} missing, {} doubled", a.deliveries_missing, a.deliveries_doubled);
        let errors = self.errors();
        if errors.is_empty() {
            println!("errors        none");
        } else {
            let list: Vec<String> = errors.iter().map(|(k, n)| format!("{k} {n}")).collect();
            println!("errors        {}", list.join(", "));
        }
        println!("money audit   {} users, {} money errors", a.users, a.money_errors());
        for problem in a.problems.iter().take(20) {
            println!("  ✗ {problem}");
        }
        if a.problems.len() > 20 {
            println!("  … and {} more", a.problems.len() - 20);
        }
        println!("verify        {}", if a.verify_clean { "clean" } else { "DRIFT" });
        let cpu: Vec<String> =
            self.cpu.iter().map(|(name, t)| format!("{name} {} s", ms(t.as_micros() as u64 / 1_000))).collect();
        println!("CPU           {}", cpu.join(", "));
        if !self.crashed.is_empty() {
            println!("exited        {} (see {}/logs)", self.crashed.join(", "), self.dir.display());
        }
    }

    /// The JSON line.
    pub(crate) fn json(&self, users: u32) -> serde_json::Value {
        let webhook = self.webhook_us();
        let own = &self.audit.own_us;
        let p99 = quantile(&webhook, 990).max(quantile(own, 990));
        let updates = self.updates();
        let a = &self.audit;
        json!({
            "engine": self.engine,
            "queue": self.queue,
            "users": users,
            "seconds": self.elapsed.as_secs(),
            "updates": updates,
            "updates_per_sec": self.per_sec(updates),
            "generations": a.jobs,
            "generations_per_sec": self.per_sec(a.jobs),
            "p99_ms": ms(p99).parse::<serde_json::Number>().ok(),
            "webhook_p50_ms": ms(quantile(&webhook, 500)).parse::<serde_json::Number>().ok(),
            "webhook_p99_ms": ms(quantile(&webhook, 990)).parse::<serde_json::Number>().ok(),
            "delivery_p50_ms": ms(quantile(own, 500)).parse::<serde_json::Number>().ok(),
            "delivery_p99_ms": ms(quantile(own, 990)).parse::<serde_json::Number>().ok(),
            "succeeded": a.succeeded,
            "failed": a.failed,
            "jobs_not_ended": a.jobs_not_ended,
            "topups": a.topups,
            "errors": self.errors(),
            "money_errors": a.money_errors(),
            "deliveries_missing": a.deliveries_missing,
            "deliveries_doubled": a.deliveries_doubled,
            "verify_clean": a.verify_clean,
            "actions": self.actions,
            "exited": self.crashed,
        })
    }
}

/// The sample at quantile `per_mille`/1000 of sorted `values` (nearest rank); 0 for none.
pub(crate) fn quantile(sorted: &[u64], per_mille: usize) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (sorted.len() * per_mille).div_ceil(1_000).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Starts the harness, plays the users while `schedule` runs, waits for the last jobs, stops the processes and
/// audits.
pub(crate) async fn execute(args: &LoadArgs, options: HarnessOptions, mut schedule: impl Schedule) -> Result<Outcome> {
    let mut harness = Harness::start(&options, (args.provider_latency_ms, args.provider_failure_per_mille)).await?;
    let engine = if harness.database_url.starts_with("postgres") { "postgres" } else { "sqlite" }.to_owned();
    let queue = if harness.redis_url.is_some() { "redis" } else { "sql" };
    println!(
        "rei load: {} users for {} s on {engine} (queue: {queue}), {} workers × {}, provider {} ms ±50 %, {}‰ failing",
        args.users,
        args.seconds,
        args.workers,
        args.worker_concurrency,
        args.provider_latency_ms,
        args.provider_failure_per_mille
    );
    println!("rei load: serving on http://{}; logs in {}/logs", harness.addr, harness.dir.display());

    // Users are new ids: far above real Telegram ids in use today, different for every run.
    let run = now_ms();
    let base_user = 1_000_000_000_000 + i64::try_from((run / 1_000) % 10_000_000).unwrap_or(0) * 100_000;
    let mut senders = HashMap::new();
    let mut receivers = Vec::new();
    for n in 0..i64::from(args.users) {
        let (tx, rx) = mpsc::unbounded_channel::<Seen>();
        senders.insert(base_user + n, tx);
        receivers.push((base_user + n, rx));
    }
    let senders = Arc::new(senders);
    harness.telegram.on_send({
        let senders = senders.clone();
        move |chat, message| {
            if let Some(tx) = senders.get(&chat) {
                let _ = tx.send(Seen::of(message));
            }
        }
    });
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(usize::try_from(args.users).unwrap_or(1_000))
        .build()
        .context("the HTTP client")?;
    let shared = Arc::new(Shared {
        http,
        webhook: format!("http://{}/webhooks/telegram", harness.addr),
        yookassa_webhook: format!("http://{}/webhooks/yookassa", harness.addr),
        next_update: AtomicI64::new(i64::try_from(run).unwrap_or(0).saturating_mul(1_000)),
        updates: AtomicU64::new(0),
        generations: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        playing: AtomicU64::new(0),
        think: Duration::from_millis(args.think_ms),
        cancel_per_mille: args.cancel_per_mille,
        double_tap_per_mille: args.double_tap_per_mille,
    });

    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.seconds);
    let mut tasks = tokio::task::JoinSet::new();
    for (id, rx) in receivers {
        let user = User::new(id, rx, shared.clone());
        let yookassa = harness.yookassa.clone();
        tasks.spawn(async move { user.play(deadline, yookassa).await });
    }
    let progress = {
        let shared = shared.clone();
        tokio::spawn(async move {
            let mut last = (0, Instant::now());
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                let updates = shared.updates.load(Ordering::Relaxed);
                let rate = (updates - last.0) * 1_000 / u64::try_from(last.1.elapsed().as_millis()).unwrap_or(1).max(1);
                last = (updates, Instant::now());
                println!(
                    "  {:>4} s  updates {updates} ({rate}/s)  generations {}  errors {}  users playing {}",
                    started.elapsed().as_secs(),
                    shared.generations.load(Ordering::Relaxed),
                    shared.errors.load(Ordering::Relaxed),
                    shared.playing.load(Ordering::Relaxed)
                );
            }
        })
    };
    let actions = schedule.run(&mut harness, started, deadline).await;
    let mut played = Vec::new();
    while let Some(done) = tasks.join_next().await {
        played.push(done.context("a simulated user panicked")?);
    }
    let elapsed = started.elapsed();
    progress.abort();
    let crashed = harness.exited();
    let cpu = harness.cpu();
    // Late or repeated deliveries show up in the users' chats until the workers have stopped.
    let dir = harness.dir.clone();
    let database_url = harness.database_url.clone();
    harness.stop().await;
    let mut records = Vec::new();
    for (mut record, mut rx) in played {
        User::drain_strays(&mut rx, &mut record);
        records.push(record);
    }
    records.sort_by_key(|r| r.id);
    println!("rei load: the users stopped after {} s; auditing the money", elapsed.as_secs());
    let audit = audit::audit(&database_url, &records).await?;
    Ok(Outcome { engine, queue, elapsed, records, audit, actions, crashed, cpu, dir })
}

/// A run's directory: the one asked for, or a new temporary one (kept when the run fails).
pub(crate) fn run_dir(dir: Option<&PathBuf>) -> Result<(PathBuf, Option<tempfile::TempDir>)> {
    match dir {
        Some(d) => Ok((d.clone(), None)),
        None => {
            let temp = tempfile::Builder::new().prefix("rei-load-").tempdir().context("a temporary directory")?;
            Ok((temp.path().to_owned(), Some(temp)))
        }
    }
}

pub(crate) async fn run(args: LoadArgs) -> Result<ExitCode> {
    let (dir, temp) = run_dir(args.dir.as_ref())?;
    let options = HarnessOptions {
        dir,
        database_url: args.database_url.clone(),
        redis_url: args.redis_url.clone(),
        workers: args.workers,
        worker_concurrency: args.worker_concurrency,
        lease_seconds: 30,
        gc_interval_seconds: 5,
    };
    let outcome = execute(&args, options, Quiet).await?;
    outcome.print(args.users);
    let passed = outcome.passed();
    if !passed && let Some(temp) = temp {
        println!("rei load: FAILED; the run's files are kept in {}", temp.keep().display());
    }
    if args.json {
        println!("{}", outcome.json(args.users));
    }
    Ok(if passed { ExitCode::SUCCESS } else { ExitCode::from(2) })
}
