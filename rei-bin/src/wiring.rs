//! How the commands open what they run on: an [`Engine`] from a database URL (the library's own wiring, so that
//! the binary and an embedder run the same code), and the Redis queue the queue benchmark drives.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use rei::adapters::redis::RedisJobQueue;
use rei::adapters::sql::redact;
use rei::core::jobs::{JobQueue, QueueLimits};
use rei::{Engine, EngineConfig};

/// How long to wait for a connection before giving up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The engine's settings for a command: the library's defaults with the binary's connect timeout,
/// `REI_DB_CONNECTIONS` (1 to 256) as the most PostgreSQL connections the process keeps, and
/// `DATABASE_REPLICA_URL` (a PostgreSQL streaming replica that serves the reads of history), when they are set.
pub(crate) fn config() -> EngineConfig {
    let defaults = EngineConfig::default();
    let connections_max = match std::env::var("REI_DB_CONNECTIONS") {
        Ok(text) => match text.trim().parse::<u32>() {
            Ok(n) if (1..=256).contains(&n) => n,
            _ => {
                eprintln!("warning: REI_DB_CONNECTIONS={text:?} is not 1 to 256; keeping {}", defaults.connections_max);
                defaults.connections_max
            }
        },
        Err(_) => defaults.connections_max,
    };
    let replica_url = std::env::var("DATABASE_REPLICA_URL").ok().filter(|u| !u.trim().is_empty());
    EngineConfig { connect_timeout: CONNECT_TIMEOUT, connections_max, replica_url, ..defaults }
}

/// Opens the engine on `url` with `config`. The engine's errors name the URL (password hidden) where it matters.
pub(crate) async fn open(url: &str, config: EngineConfig) -> Result<Engine> {
    Engine::builder().database_url(url).config(config).open().await.context("failed to open the database")
}

/// A Redis job queue under `namespace`, sized for `jobs` tickets.
pub(crate) async fn redis_queue(url: &str, namespace: &str, jobs: u64) -> Result<Arc<dyn JobQueue>> {
    let limits = QueueLimits {
        capacity: usize::try_from(jobs).unwrap_or(usize::MAX).saturating_add(1_024),
        dead_letter_capacity: 1_024,
        aging_step: None,
    };
    let queue = RedisJobQueue::connect(url, namespace, limits, CONNECT_TIMEOUT)
        .await
        .with_context(|| format!("failed to connect to Redis at {}", redact(url)))?;
    Ok(Arc::new(queue))
}

/// The engine's settings for a command that runs the bot's money: [`config`] with the settings file's billing
/// (hold TTL, spend caps, jobs running at once, provider budgets).
pub(crate) fn config_with(settings: &crate::settings::Settings) -> EngineConfig {
    EngineConfig { billing: settings.billing.config(), ..config() }
}

/// `redis://REDIS_HOST:REDIS_PORT` when the original bot's pair is set instead of `REDIS_URL` (the port defaults
/// to 6379).
pub(crate) fn redis_from_host_port() -> Option<String> {
    let host = std::env::var("REDIS_HOST").ok().filter(|h| !h.trim().is_empty())?;
    let port = std::env::var("REDIS_PORT").ok().filter(|p| !p.trim().is_empty()).unwrap_or_else(|| "6379".to_owned());
    Some(format!("redis://{}:{}", host.trim(), port.trim()))
}

/// What a role that runs the bot's money opens: the engine on the settings' prices and billing (with the queue
/// in Redis when `redis_url`, or `REDIS_HOST`/`REDIS_PORT`, names one), and the rate limiter beside it (in Redis,
/// or in this process).
pub(crate) async fn open_for_bot(
    database_url: &str,
    redis_url: Option<&str>,
    settings: &crate::settings::Settings,
) -> Result<(Arc<Engine>, Arc<dyn rei::core::guards::RateLimiter>, Option<String>)> {
    let mut builder = Engine::builder()
        .database_url(database_url)
        .config(config_with(settings))
        .pricer(rei::core::pricing::Pricer::new(settings.pricing.clone()));
    let redis_url = redis_url.map(str::to_owned).or_else(redis_from_host_port);
    if let Some(url) = &redis_url {
        builder = builder.redis_url(url);
    }
    let engine = Arc::new(builder.open().await.context("failed to open the database")?);
    let limiter: Arc<dyn rei::core::guards::RateLimiter> = match &redis_url {
        Some(url) => Arc::new(
            rei::adapters::redis::RedisRateLimiter::connect(url, &engine.config().redis_namespace, CONNECT_TIMEOUT)
                .await
                .with_context(|| format!("failed to connect the rate limiter to Redis at {}", redact(url)))?,
        ),
        None => Arc::new(rei::core::guards::InProcessRateLimiter::new()),
    };
    Ok((engine, limiter, redis_url))
}
