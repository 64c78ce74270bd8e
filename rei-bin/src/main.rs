//! The `rei` binary: thin wiring over the library. Subcommands arrive with the parts they run.
//!
//! Exit codes: 0 success, 1 error, 2 the ledger does not verify.
#![expect(clippy::print_stdout, reason = "a command-line tool prints its results")]

mod assets;
mod backup;
mod bench;
mod bench_http;
mod bench_pipeline;
mod bench_queue;
mod chaos;
mod load;
mod providers;
mod roles;
mod settings;
mod wiring;

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use rei::MigrateMode;
use rei_core::ids::{ProductId, QuoteId};
use rei_core::pricing::{Pricer, PricingConfig, Tier};
use rei_core::time::{Clock, Timestamp};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// The binary's allocator. The engine allocates on every request (sqlx and redis encode and decode into buffers,
/// tokio boxes tasks and wakers); glibc's malloc was 8-17 % of the process's CPU in the benchmarks.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "rei", version, about = "Billing and routing engine for AI-generation chat bots")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Applies the database migrations (the engine is picked from the URL scheme).
    Migrate {
        /// postgres://… or sqlite://path.
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
    },
    /// Recomputes every balance from the postings; exits 2 on any drift. Never migrates and never creates a
    /// database: a missing SQLite file or missing migrations are errors.
    Verify {
        /// postgres://… or sqlite://path.
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
    },
    /// The maintenance singleton: ends abandoned usage sessions, expires lapsed holds, recovers jobs whose
    /// worker vanished, purges old quotes. Run as many as you like: one leads, the others stand by.
    Gc {
        /// postgres://… or sqlite://path.
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
        /// redis://…: the job queue the workers lease from, when it is in Redis. Jobs recovered from a vanished
        /// worker, and queued jobs the queue lost, are put back in it.
        #[arg(long, env = "REDIS_URL")]
        redis_url: Option<String>,
        /// Seconds between passes.
        #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
        interval_seconds: u64,
        /// One pass (if this process leads), then exit.
        #[arg(long)]
        once: bool,
        /// The workers' asset directory: inputs and results older than the retention are deleted.
        #[arg(long, env = "REI_ASSETS_DIR")]
        assets_dir: Option<std::path::PathBuf>,
        /// Or their bucket.
        #[command(flatten)]
        s3: assets::S3Args,
        /// How long assets are kept, in days.
        #[arg(long, env = "REI_ASSET_RETENTION_DAYS", default_value_t = 30,
              value_parser = clap::value_parser!(u64).range(1..=3_650))]
        asset_retention_days: u64,
    },
    /// Runs generation jobs: leases them, routes each to the best healthy provider, stores the result, charges
    /// exactly once on success and gives the money back on failure. Run as many as you like.
    Worker(Box<roles::worker::WorkerArgs>),
    /// The HTTP surface: the YooKassa and Telegram webhooks, the /v1 JSON API for bots in any language
    /// (/openapi.json describes it), /health/live, /health/ready and /metrics.
    Serve(Box<roles::serve::ServeArgs>),
    /// The Telegram bot by long polling (for a machine without a public address; with one, `rei serve` takes
    /// the updates on its webhook): every flow of the shipped bot, in Russian and English.
    Bot(Box<roles::poll::BotRoleArgs>),
    /// Every role in one process, for a small bot on one machine: serve, a worker, gc and the bot (on the webhook
    /// with TELEGRAM_WEBHOOK_SECRET, by long polling otherwise).
    All(Box<roles::all::AllArgs>),
    /// The whole bot locally with no account anywhere: fake Telegram, YooKassa, Gemini and Kling, the real bot,
    /// worker and server on a SQLite file; plays users through it and prints what happened. Exits 0 only when the
    /// ledger verifies.
    Sandbox(roles::sandbox::SandboxArgs),
    /// Simulated Telegram users (1,000 by default) against `rei serve`, `rei gc` and `rei worker` processes it
    /// starts, through the real webhook and queue and fake providers: top-ups, quotes, confirms, double taps,
    /// cancels. Prints updates/s, generations/s and REI's own time, then audits every user's money and runs
    /// verify; exits 2 on any money error or a job that did not end.
    Load(Box<load::LoadArgs>),
    /// `rei load` under faults on a schedule: workers SIGKILLed and restarted, Redis restarted and flushed,
    /// PostgreSQL connections terminated, the main provider failing for a while. Prints what it did and found;
    /// passes only with no money error, every job ended, failover and recovery seen.
    Chaos(Box<chaos::ChaosArgs>),
    /// A consistent copy of the database while it runs (SQLite's online backup API, or pg_dump), with a manifest
    /// (size, SHA-256), into a directory or an S3 bucket.
    Backup(Box<backup::BackupArgs>),
    /// A backup into a new SQLite file or an empty PostgreSQL database, checked against its manifest; then
    /// verify (exit 2 unless the ledger is clean).
    Restore(Box<backup::RestoreArgs>),
    /// API keys of the HTTP API: create (the key is shown once), list, revoke.
    #[command(subcommand, name = "api-key")]
    ApiKey(ApiKeyCommand),
    /// Benchmarks.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// The settings file (prices, models, limits): check one, print the shipped default.
    #[command(subcommand)]
    Config(settings::ConfigCommand),
    /// Prices a product with the example price list and prints the breakdown.
    Price {
        /// Product id, e.g. image.nano-banana or video.kling-2.6.5s.
        #[arg(long)]
        product: String,
        /// How many units.
        #[arg(long, default_value_t = 1)]
        units: u64,
        /// The buyer's tier.
        #[arg(long, value_enum, default_value_t = TierArg::Basic)]
        tier: TierArg,
        /// When to price, RFC 3339 (default: now).
        #[arg(long)]
        at: Option<String>,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Quote -> confirm -> capture through the real /v1 API over loopback HTTP/1.1 keep-alive, against the same
    /// server's no-op route (/health/live) in the same run: req/s, p50/p99, and the money rate as a share of the
    /// no-op rate.
    Http(bench_http::HttpBench),
    /// Confirmed image jobs through the real worker against the fake Gemini server answering at once: jobs/s
    /// from confirm to capture and the user's message, p50/p99 per job, CPU per job; with Redis, Python RQ's no-op
    /// dispatch on the same Redis for the ratio.
    Pipeline(bench_pipeline::PipelineBench),
    /// Enqueue -> dequeue -> ack of no-op jobs on one Redis, and Python RQ on the same Redis for the ratio.
    Queue {
        /// redis://host:port[/db].
        #[arg(long, env = "REDIS_URL")]
        redis_url: String,
        /// Concurrent workers.
        #[arg(long, default_value_t = 8)]
        workers: u32,
        /// Concurrent producers, each submitting one job at a time (as bot requests do); enough of them that the
        /// queue, not the producers' round trips, sets the pace (as many as `bench ledger`'s clients).
        #[arg(long, default_value_t = 64)]
        producers: u32,
        /// Jobs to run through.
        #[arg(long, default_value_t = 20_000)]
        jobs: u64,
        /// Print one JSON object as the last line.
        #[arg(long)]
        json: bool,
    },
    /// Hold -> capture cycles from concurrent clients; on PostgreSQL also pgbench TPC-B-like for the ratio.
    ///
    /// Runs in a scratch ledger of its own and never writes into the one the URL names: on PostgreSQL a schema
    /// it creates in that database (and a pgbench database beside it), on SQLite a file in a new directory
    /// beside the named file; both are removed afterwards.
    Ledger {
        /// postgres://… (the server and database to run in) or sqlite://path (the directory to run in).
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
        /// Concurrent clients.
        #[arg(long, default_value_t = 64)]
        clients: u32,
        /// How long each workload runs.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// How long to warm up before measuring.
        #[arg(long, default_value_t = 3)]
        warmup_seconds: u64,
        /// Most commands in one group commit.
        #[arg(long, default_value_t = 256)]
        batch_max: usize,
        /// Concurrent group-commit writers (PostgreSQL).
        #[arg(long, default_value_t = 2)]
        writers: usize,
        /// pgbench's scale factor (branches).
        #[arg(long, default_value_t = 10)]
        pgbench_scale: u32,
        /// Print one JSON object as the last line.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum ApiKeyCommand {
    /// Makes a key and prints it once (only its hash is kept).
    Create {
        /// postgres://… or sqlite://path.
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
        /// A name for people ("telegram-bot-prod").
        #[arg(long)]
        name: String,
        /// What it may do, comma-separated: users:read, ledger:read, topups:write, quotes:write, jobs:read,
        /// holds:write, admin.
        #[arg(long)]
        scopes: String,
        /// Requests per minute it may make.
        #[arg(long, default_value_t = 600, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        rate_per_minute: u32,
    },
    /// Lists the keys (ids, names, scopes; never the keys themselves).
    List {
        /// postgres://… or sqlite://path.
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
    },
    /// Revokes a key: refused everywhere within seconds.
    Revoke {
        /// postgres://… or sqlite://path.
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
        /// The key's id (the part after `rei_`).
        id: String,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum TierArg {
    Basic,
    Pro,
    Enterprise,
}

fn main() -> ExitCode {
    // First: before anything reads the environment (the log filter, the command line) or starts a thread.
    if let Err(e) = settings::load_dotenv() {
        eprintln!("error: {e:#}");
        return ExitCode::from(1);
    }
    let cli = Cli::parse();
    // The sandbox speaks through its progress and summary; its log lines are for when something goes wrong.
    let default = if matches!(cli.command, Command::Sandbox(_) | Command::Load(_) | Command::Chaos(_)) {
        tracing_subscriber::filter::LevelFilter::WARN
    } else {
        tracing_subscriber::filter::LevelFilter::INFO
    };
    logging(default);
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Log lines through `tracing` on stderr: `REI_LOG` filters (`default` when unset: `info`, `warn` for the
/// sandbox; e.g. `warn,rei_http=debug`), `REI_LOG_FORMAT=json` writes one JSON object a line.
fn logging(default: tracing_subscriber::filter::LevelFilter) {
    use tracing_subscriber::filter::Targets;
    let filter = std::env::var("REI_LOG")
        .ok()
        .and_then(|f| f.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(default));
    let json = std::env::var("REI_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt().with_writer(std::io::stderr);
    let installed = if json {
        builder.json().with_max_level(tracing::Level::TRACE).finish().with(filter).try_init()
    } else {
        builder.with_max_level(tracing::Level::TRACE).finish().with(filter).try_init()
    };
    if let Err(e) = installed {
        eprintln!("warning: logging not set up: {e}");
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("failed to start the async runtime")
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Price { product, units, tier, at } => {
            price(&product, units, tier, at.as_deref()).map(|()| ExitCode::SUCCESS)
        }
        Command::Config(command) => settings::run(command),
        Command::Migrate { database_url } => runtime()?.block_on(migrate(&database_url)).map(|()| ExitCode::SUCCESS),
        Command::Verify { database_url } => runtime()?.block_on(verify(&database_url)),
        Command::Gc { database_url, redis_url, interval_seconds, once, assets_dir, s3, asset_retention_days } => {
            let gc = roles::gc::Gc {
                database_url,
                redis_url,
                interval: std::time::Duration::from_secs(interval_seconds),
                once,
                assets_dir,
                s3,
                asset_retention: std::time::Duration::from_secs(asset_retention_days * 24 * 60 * 60),
            };
            runtime()?.block_on(roles::gc::run(gc)).map(|()| ExitCode::SUCCESS)
        }
        Command::Worker(args) => runtime()?.block_on(roles::worker::run(*args)).map(|()| ExitCode::SUCCESS),
        Command::Serve(args) => runtime()?.block_on(roles::serve::run(*args)).map(|()| ExitCode::SUCCESS),
        Command::Bot(args) => runtime()?.block_on(roles::poll::run(*args)).map(|()| ExitCode::SUCCESS),
        Command::All(args) => runtime()?.block_on(roles::all::run(*args)).map(|()| ExitCode::SUCCESS),
        Command::Sandbox(args) => runtime()?.block_on(roles::sandbox::run(args)),
        Command::Load(args) => runtime()?.block_on(load::run(*args)),
        Command::Chaos(args) => runtime()?.block_on(chaos::run(*args)),
        Command::Backup(args) => runtime()?.block_on(backup::backup(*args)),
        Command::Restore(args) => runtime()?.block_on(backup::restore(*args)),
        Command::ApiKey(command) => runtime()?.block_on(api_key(command)).map(|()| ExitCode::SUCCESS),
        Command::Bench(BenchCommand::Ledger {
            database_url,
            clients,
            seconds,
            warmup_seconds,
            batch_max,
            writers,
            pgbench_scale,
            json,
        }) => {
            let b = bench::LedgerBench {
                database_url,
                clients,
                seconds,
                warmup_seconds,
                batch_max,
                writers,
                pgbench_scale,
                json,
            };
            runtime()?.block_on(bench::run(b)).map(|()| ExitCode::SUCCESS)
        }
        Command::Bench(BenchCommand::Http(b)) => runtime()?.block_on(bench_http::run(b)).map(|()| ExitCode::SUCCESS),
        Command::Bench(BenchCommand::Pipeline(b)) => {
            runtime()?.block_on(bench_pipeline::run(b)).map(|()| ExitCode::SUCCESS)
        }
        Command::Bench(BenchCommand::Queue { redis_url, workers, producers, jobs, json }) => {
            let b = bench_queue::QueueBench { redis_url, workers, producers, jobs, json };
            runtime()?.block_on(bench_queue::run(b)).map(|()| ExitCode::SUCCESS)
        }
    }
}

async fn api_key(command: ApiKeyCommand) -> Result<()> {
    use rei::core::access::Scope;
    match command {
        ApiKeyCommand::Create { database_url, name, scopes, rate_per_minute } => {
            let scopes = Scope::parse_list(&scopes).map_err(anyhow::Error::msg).context("failed to read --scopes")?;
            let engine = wiring::open(&database_url, wiring::config()).await?;
            let key = rei_http::auth::make_key(&name, &scopes, rate_per_minute, engine.clock().now())?;
            let stored = engine.api_keys().create(&key.record).await;
            engine.close().await;
            stored.context("failed to store the key")?;
            println!("id      {}", key.record.id.as_str());
            println!("scopes  {}", scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(","));
            println!("key     {}", key.token);
            println!("(shown once: only its SHA-256 is kept)");
        }
        ApiKeyCommand::List { database_url } => {
            let engine = wiring::open(&database_url, wiring::config()).await?;
            let keys = engine.api_keys().list().await;
            engine.close().await;
            for k in keys.context("failed to list the keys")? {
                let scopes: Vec<&str> = k.scopes.iter().map(|s| s.as_str()).collect();
                let state = k.revoked_at.map_or_else(|| "active".to_owned(), |at| format!("revoked {at}"));
                println!(
                    "{}  {:<24} {:>7}/min  {}  {state}",
                    k.id.as_str(),
                    k.name,
                    k.rate_per_minute,
                    scopes.join(",")
                );
            }
        }
        ApiKeyCommand::Revoke { database_url, id } => {
            let id = rei::core::guards::ApiKeyId::parse(&id).context("failed to read the key id")?;
            let engine = wiring::open(&database_url, wiring::config()).await?;
            let revoked = engine.api_keys().revoke(&id, engine.clock().now()).await;
            engine.close().await;
            if revoked.context("failed to revoke")? {
                println!("revoked {}", id.as_str());
            } else {
                anyhow::bail!("no active key {}", id.as_str());
            }
        }
    }
    Ok(())
}

async fn migrate(url: &str) -> Result<()> {
    let engine = wiring::open(url, rei::EngineConfig { migrate: MigrateMode::Apply, ..wiring::config() }).await?;
    let applied = engine.migrations_applied();
    if applied.is_empty() {
        println!("{}: up to date", engine.database().engine());
    } else {
        println!("{}: applied migrations {applied:?}", engine.database().engine());
    }
    engine.close().await;
    Ok(())
}

async fn verify(url: &str) -> Result<ExitCode> {
    let config = rei::EngineConfig { migrate: MigrateMode::Check, create_if_missing: false, ..wiring::config() };
    let engine = wiring::open(url, config).await?;
    let report = engine.ledger().verify().await.context("failed to verify");
    engine.close().await;
    let report = report?;
    println!("transactions {}", report.transactions);
    println!("total        {} (must be 0.00)", report.total);
    for d in &report.drifts {
        println!("DRIFT        {:?}: cached {} recomputed {}", d.account, d.cached, d.recomputed);
    }
    for t in &report.unbalanced {
        println!("UNBALANCED   transaction {t}");
    }
    for u in &report.below_floor {
        println!("BELOW FLOOR  user {u}");
    }
    if report.is_clean() {
        println!("clean");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("the ledger does not verify");
        Ok(ExitCode::from(2))
    }
}

fn price(product: &str, units: u64, tier: TierArg, at: Option<&str>) -> Result<()> {
    let product = ProductId::parse(product).context("failed to read --product")?;
    let tier = match tier {
        TierArg::Basic => Tier::Basic,
        TierArg::Pro => Tier::Pro,
        TierArg::Enterprise => Tier::Enterprise,
    };
    let at = match at {
        Some(text) => {
            let t: jiff::Timestamp = text.parse().context("failed to read --at as RFC 3339")?;
            Timestamp::from_millis(t.as_millisecond())
        }
        None => rei_adapters::system::SystemClock::new().now(),
    };
    let pricer = Pricer::new(PricingConfig::example());
    let quote = pricer.quote(&product, units, tier, at, QuoteId::from(0)).context("failed to price")?;
    let b = &quote.breakdown;
    println!("product      {}", quote.product);
    println!("units        {units} x {}", b.unit);
    println!("price        {} RUB", quote.price);
    println!("cost         {} kop", b.cost_total.normalize());
    println!("margin       +{} kop ({})", b.margin_added.normalize(), b.target_margin);
    println!("time         {:+} kop (x{})", b.time_adjustment.normalize(), b.time_multiplier);
    println!("tier         -{} kop ({})", b.tier_discount_amount.normalize(), b.tier_discount);
    println!("rounding     {:+} kop", b.rounding_adjustment.normalize());
    if let Some(alert) = &quote.margin_alert {
        println!("MARGIN ALERT effective margin {} below floor {}", alert.effective_margin, alert.floor);
    }
    Ok(())
}
