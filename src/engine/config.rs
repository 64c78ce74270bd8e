//! [`EngineConfig`]: every setting of an [`Engine`](super::Engine), with its default.

use std::time::Duration;

use rei_core::billing::BillingConfig;
use rei_core::jobs::{QueueLimits, RetryPolicy};
use rei_core::money::Ratio;

/// What [`Engine`](super::Engine) does when it opens a database that lacks some of the embedded migrations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum MigrateMode {
    /// Apply them (under the database's migration lock, so processes starting together migrate once). The
    /// default: an embedded SQLite file needs no separate step.
    #[default]
    Apply,
    /// Refuse to open, naming them ([`EngineError::MigrationsPending`](super::EngineError::MigrationsPending)):
    /// for deployments that migrate in a step of their own (`rei migrate`).
    Check,
}

/// Every setting of an engine. Build one with struct update syntax over the defaults:
///
/// ```
/// use std::time::Duration;
/// use rei::{EngineConfig, MigrateMode};
///
/// let config = EngineConfig { migrate: MigrateMode::Check, connect_timeout: Duration::from_secs(2), ..EngineConfig::default() };
/// assert_eq!(config.connections_max, 8);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineConfig {
    /// Apply missing migrations at open, or refuse to open. Default: [`MigrateMode::Apply`].
    pub migrate: MigrateMode,
    /// SQLite: create the database file when it does not exist. With `false`, a missing file is
    /// [`EngineError::DatabaseMissing`](super::EngineError::DatabaseMissing) and nothing is created. Default:
    /// `true`.
    pub create_if_missing: bool,
    /// PostgreSQL: the schema REI's tables live in, created when migrations are applied; `None` uses the
    /// server's search path. Default: `None`.
    pub postgres_schema: Option<String>,
    /// PostgreSQL: most connections in the pool. Default: 8.
    pub connections_max: u32,
    /// PostgreSQL: a streaming replica of the database (`postgres://…`). Reads of history (a user's ledger history,
    /// the pages of the ledger's transactions) are served from it, a replica's lag behind; everything that decides
    /// money (balances, holds, every write) stays on the primary. Default: `None` (all on the primary).
    pub replica_url: Option<String>,
    /// The longest wait for a new connection (PostgreSQL) or for a pooled one (both engines). A server that
    /// refuses connections is reported at once, not after this. Default: 5 s.
    pub connect_timeout: Duration,
    /// SQLite: how long a statement waits for another writer's lock before failing. Default: 10 s.
    pub busy_timeout: Duration,
    /// Most ledger commands committed in one database transaction (group commit). Default: 256.
    pub ledger_batch_max: usize,
    /// PostgreSQL: ledger writer tasks, each committing one batch at a time. Default: 2.
    pub ledger_writers: usize,
    /// Hold TTL, spend caps, provider budgets and the reaper's batch: one configuration for the billing and the
    /// usage service. Default: [`BillingConfig::default`] (1 h holds, no caps, 1,000 holds a reaper pass).
    pub billing: BillingConfig,
    /// How big the job queue may grow. Default: 100,000 tickets, 10,000 dead letters, no aging.
    pub queue: QueueLimits,
    /// Retries of failed jobs. Checked at open with [`RetryPolicy::new`]. Default: 3 attempts, 2 s doubling to at
    /// most 60 s, up to 20 % jitter.
    pub retry: RetryPolicy,
    /// How long a worker's lease on a job lasts. Default: 5 minutes.
    pub lease: Duration,
    /// How long a quote is kept past its expiry before maintenance purges it, so that a repeated confirm of a
    /// quote already confirmed still finds it. Default: 24 h.
    pub quote_retention: Duration,
    /// Most rows each step of one maintenance pass handles: abandoned usage sessions ended, jobs recovered,
    /// quotes purged (the hold reaper has its own, `BillingConfig::reap_batch_max`). Default: 1,000.
    pub maintenance_batch_max: usize,
    /// Redis: the key prefix of the job queue, when the queue is in Redis. Default: `"rei"`.
    pub redis_namespace: String,
}

impl Default for EngineConfig {
    fn default() -> EngineConfig {
        EngineConfig {
            migrate: MigrateMode::Apply,
            create_if_missing: true,
            postgres_schema: None,
            connections_max: 8,
            replica_url: None,
            connect_timeout: Duration::from_secs(5),
            busy_timeout: Duration::from_secs(10),
            ledger_batch_max: 256,
            ledger_writers: 2,
            billing: BillingConfig::default(),
            queue: QueueLimits { capacity: 100_000, dead_letter_capacity: 10_000, aging_step: None },
            retry: RetryPolicy {
                max_attempts: 3,
                base: Duration::from_secs(2),
                cap: Duration::from_secs(60),
                jitter: Ratio::percent(20),
            },
            lease: Duration::from_secs(5 * 60),
            quote_retention: Duration::from_secs(24 * 60 * 60),
            maintenance_batch_max: 1_000,
            redis_namespace: "rei".to_owned(),
        }
    }
}
