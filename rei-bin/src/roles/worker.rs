//! `rei worker`: leases generation jobs and runs them through the providers, charging each exactly once. Any
//! number may run on one database (and one Redis queue); a worker killed anywhere is recovered by lease expiry.
//! On SIGTERM or Ctrl-C it stops leasing, lets jobs in flight finish within the grace, and leaves the rest to
//! lease expiry.
//!
//! Crash drills: `REI_FAULT_AT=leased|submitted|provider_succeeded|captured` makes the worker announce
//! `rei worker: fault point <name> reached` on stderr when a job passes that point and then freeze, so that a
//! test can SIGKILL it there. Nothing else changes.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use async_trait::async_trait;
use rei::core::generation::{
    FaultPoint, FaultPoints, Messenger, MessengerError, PipelineConfig, PipelineError, RunOutcome, UserMessage,
};
use rei::core::ids::UserId;
use rei::core::jobs::WorkerId;
use rei::core::routing::{Router, RouterConfig};
use rei::{Engine, PipelineParts, WorkerOptions};

use crate::providers::{self, ProviderArgs};

/// What `rei worker` was asked to do.
#[derive(clap::Args, Clone, Debug)]
pub(crate) struct WorkerArgs {
    /// postgres://… or sqlite://path.
    #[arg(long, env = "DATABASE_URL")]
    pub(crate) database_url: String,
    /// redis://host:port[/db]: the job queue in Redis (default: the database's own queue).
    #[arg(long, env = "REDIS_URL")]
    pub(crate) redis_url: Option<String>,
    /// The name its leases carry (default: worker-<pid>).
    #[arg(long, env = "REI_WORKER_NAME")]
    pub(crate) name: Option<String>,
    /// Jobs run at once by this process.
    #[arg(long, env = "REI_WORKER_CONCURRENCY", default_value_t = 16,
          value_parser = clap::value_parser!(u32).range(1..=1_024))]
    pub(crate) concurrency: u32,
    /// Where inputs and results are kept (a local directory).
    #[arg(long, env = "REI_ASSETS_DIR", default_value = "rei-assets")]
    pub(crate) assets_dir: PathBuf,
    /// Or an S3-compatible bucket.
    #[command(flatten)]
    pub(crate) s3: crate::assets::S3Args,
    /// Most calls in flight per provider from this process, as `provider=N` (repeat or comma-separate).
    #[arg(long, env = "REI_PROVIDER_CONCURRENCY", value_delimiter = ',', value_parser = provider_limit)]
    pub(crate) provider_concurrency: Vec<(rei::core::ids::ProviderId, usize)>,
    /// The largest result kept, in MiB.
    #[arg(long, env = "REI_ASSET_MAX_MB", default_value_t = 200)]
    pub(crate) asset_max_mb: u64,
    /// Milliseconds between two queries of a running video.
    #[arg(long, env = "REI_POLL_INTERVAL_MS", default_value_t = 2_000,
          value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub(crate) poll_interval_ms: u64,
    /// The longest one attempt may take before its outcome counts as unknown, in seconds.
    #[arg(long, env = "REI_ATTEMPT_TIMEOUT_SECONDS", default_value_t = 900,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub(crate) attempt_timeout_seconds: u64,
    /// How long a lease on a job lasts, in seconds: a worker that dies holds its jobs this long at most. The
    /// worker extends the lease while it waits on a provider.
    #[arg(long, env = "REI_LEASE_SECONDS", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(1..=3_600))]
    pub(crate) lease_seconds: u64,
    /// Serve this worker's /metrics (and /health/live) on this address, for Prometheus.
    #[arg(long, env = "REI_METRICS_LISTEN")]
    pub(crate) metrics_listen: Option<std::net::SocketAddr>,
    /// After a stop, how long jobs in flight may take to finish, in seconds.
    #[arg(long, default_value_t = 30)]
    pub(crate) grace_seconds: u64,
    /// The longest wait between two looks at an empty queue, in milliseconds (the wait doubles from 10 ms up to
    /// this): lower finds new jobs sooner, higher asks the queue less often when idle.
    #[arg(long, env = "REI_WORKER_IDLE_POLL_MS", default_value_t = 500,
          value_parser = clap::value_parser!(u64).range(10..=60_000))]
    pub(crate) idle_poll_ms: u64,
    /// The providers.
    #[command(flatten)]
    pub(crate) providers: ProviderArgs,
    /// The bot's token: results and failures are sent to users through it (without it they are logged).
    #[arg(long, env = "BOT_TOKEN", hide_env_values = true)]
    pub(crate) bot_token: Option<String>,
    /// The Bot API (a fake's URL in tests and the sandbox).
    #[arg(long, env = "TELEGRAM_API_URL", default_value = rei_adapters::telegram::DEFAULT_BASE_URL)]
    pub(crate) telegram_api_url: String,
    /// How fast results are sent.
    #[command(flatten)]
    pub(crate) pacing: super::bot::PacingArgs,
}

/// Runs until Ctrl-C or SIGTERM.
pub(crate) async fn run(args: WorkerArgs) -> Result<()> {
    // First of all, so that a SIGTERM during start-up stops the worker cleanly rather than killing it.
    let stop = super::gc::shutdown();
    let name = args.name.clone().unwrap_or_else(|| format!("worker-{}", std::process::id()));
    let name = WorkerId::parse(&name).context("failed to read --name")?;
    let faults = EnvFaults::from_env()?;
    let relay = rei_bot::delivery::Relay::new();
    let api = match &args.bot_token {
        Some(token) => Some(Arc::new(args.pacing.api(&args.telegram_api_url, token)?)),
        None => None,
    };
    let messenger: Arc<dyn Messenger> = if api.is_some() { relay.clone() } else { Arc::new(LogMessenger) };
    let mut builder = Engine::builder()
        .database_url(&args.database_url)
        .config(rei::EngineConfig { lease: Duration::from_secs(args.lease_seconds), ..crate::wiring::config() })
        .messenger(messenger);
    if let Some(url) = args.redis_url.clone().or_else(crate::wiring::redis_from_host_port) {
        builder = builder.redis_url(&url);
    }
    // The providers first: a missing key is told before anything touches the database.
    let clock: Arc<dyn rei::core::time::Clock> = Arc::new(rei::adapters::system::SystemClock::new());
    let (providers, catalogue) = providers::build(&args.providers, clock.clone())?;
    let engine = builder.clock(clock).open().await.context("failed to open the database")?;
    let router = Router::new(catalogue, RouterConfig::default()).context("the router configuration is invalid")?;
    let assets: Arc<dyn rei::core::generation::AssetStore> =
        Arc::new(crate::assets::open(&args.assets_dir, &args.s3, args.asset_max_mb.saturating_mul(1024 * 1024)).await?);
    if let Some(api) = api {
        relay.set(Arc::new(rei_bot::delivery::TelegramMessenger {
            api,
            assets: assets.clone(),
            members: engine.members().clone(),
            once: engine.updates().clone(),
            conversations: engine.conversations().clone(),
            clock: engine.clock().clone(),
        }));
    }
    let config = PipelineConfig {
        poll_interval: Duration::from_millis(args.poll_interval_ms),
        attempt_timeout: Duration::from_secs(args.attempt_timeout_seconds),
        // Extend a lease once less than half of it is left.
        heartbeat_margin: Duration::from_secs(args.lease_seconds) / 2,
        provider_concurrency: args.provider_concurrency.iter().cloned().collect(),
        ..PipelineConfig::default()
    };
    let pipeline = Arc::new(engine.pipeline(PipelineParts {
        providers,
        router,
        assets,
        config,
        faults: faults.map(|f| Arc::new(f) as Arc<dyn FaultPoints>),
    }));
    let metrics = match args.metrics_listen {
        Some(addr) => {
            let _ = rei_http::ops::recorder();
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("failed to listen on {addr} for /metrics"))?;
            println!("rei worker {name}: metrics on http://{}/metrics", listener.local_addr().context("address")?);
            let router = rei_http::ops::metrics_router();
            Some(tokio::spawn(async move { axum_serve(listener, router).await }))
        }
        None => None,
    };
    let mut options = WorkerOptions::named(name.clone());
    options.concurrency = usize::try_from(args.concurrency).unwrap_or(16);
    options.idle_poll_max = Duration::from_millis(args.idle_poll_ms);
    options.grace = Duration::from_secs(args.grace_seconds);
    println!("rei worker {name}: running on {}, {} at once", engine.database().engine(), options.concurrency);
    let report = rei::run_worker(pipeline, options, stop, log_outcome).await;
    println!(
        "rei worker {name}: stopped: {} succeeded, {} retried, {} failed, {} unknown, {} late results, {} lost leases, \
         {} errors, {} resolved, {} left to lease expiry",
        report.succeeded,
        report.retried,
        report.failed,
        report.unknown,
        report.late_results,
        report.lease_lost,
        report.errors,
        report.resolved,
        report.abandoned
    );
    if let Some(m) = metrics {
        m.abort();
    }
    engine.close().await;
    Ok(())
}

async fn axum_serve(listener: tokio::net::TcpListener, router: rei_http::Router) {
    if let Err(e) = rei_http::serve(listener, router, std::future::pending()).await {
        eprintln!("rei worker: the metrics listener failed: {e}");
    }
}

/// Reads `provider=N`.
fn provider_limit(text: &str) -> Result<(rei::core::ids::ProviderId, usize), String> {
    let (name, n) = text.split_once('=').ok_or_else(|| format!("{text:?}: expected provider=N"))?;
    let provider = rei::core::ids::ProviderId::parse(name).map_err(|e| format!("{name:?}: {e}"))?;
    let n: usize = n.parse().map_err(|_| format!("{n:?}: expected a number"))?;
    if n == 0 {
        return Err(format!("{text:?}: a provider needs room for at least one call"));
    }
    Ok((provider, n))
}

/// One line per finished run.
fn log_outcome(outcome: &Result<RunOutcome, PipelineError>) {
    match outcome {
        Ok(RunOutcome::Succeeded { job, charged }) => println!("job {} succeeded, charged {charged}", job.id),
        Ok(RunOutcome::Retrying { job, error }) => println!("job {} will retry: {error}", job.id),
        Ok(RunOutcome::Failed { job }) => {
            println!("job {} failed, money back: {}", job.id, job.last_error.as_ref().map_or("", |e| e.as_str()));
        }
        Ok(RunOutcome::Unknown { job }) => println!("job {} outcome unknown, money held until resolved", job.id),
        Ok(RunOutcome::LateResult { job }) => println!("job {} result came after its hold ended: not charged", job.id),
        Ok(RunOutcome::LeaseLost { job }) => println!("job {job}: lease lost, dropped"),
        Err(e) => eprintln!("run stopped on an error (recovered by lease expiry): {e}"),
    }
}

/// Until the bot's messenger is wired, messages are logged, one line each.
struct LogMessenger;

#[async_trait]
impl Messenger for LogMessenger {
    async fn send(&self, user: UserId, message: UserMessage) -> Result<(), MessengerError> {
        println!("to user {}: {message:?}", user.0);
        Ok(())
    }
}

/// The crash drill's fault point, from `REI_FAULT_AT`.
struct EnvFaults {
    point: FaultPoint,
}

impl EnvFaults {
    fn from_env() -> Result<Option<EnvFaults>> {
        let Ok(name) = std::env::var("REI_FAULT_AT") else { return Ok(None) };
        let point = match name.as_str() {
            "leased" => FaultPoint::Leased,
            "submitted" => FaultPoint::Submitted,
            "provider_succeeded" => FaultPoint::ProviderSucceeded,
            "captured" => FaultPoint::Captured,
            other => bail!("REI_FAULT_AT={other}: expected leased, submitted, provider_succeeded or captured"),
        };
        Ok(Some(EnvFaults { point }))
    }
}

impl FaultPoints for EnvFaults {
    fn armed(&self, point: FaultPoint) -> bool {
        point == self.point
    }

    fn reached(&self, point: FaultPoint) {
        if point != self.point {
            return;
        }
        let name = match point {
            FaultPoint::Leased => "leased",
            FaultPoint::Submitted => "submitted",
            FaultPoint::ProviderSucceeded => "provider_succeeded",
            FaultPoint::Captured => "captured",
        };
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "rei worker: fault point {name} reached");
        let _ = err.flush();
        // Freeze here until the drill kills the process.
        loop {
            std::thread::sleep(Duration::from_secs(3_600));
        }
    }
}
