//! The one place that names concrete adapter types: opening databases and building stores from a URL.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use rei_adapters::postgres::ledger::{PgLedger, PgLedgerConfig};
use rei_adapters::redis::RedisJobQueue;
use rei_adapters::sql::{DatabaseUrl, redact};
use rei_adapters::sqlite::ledger::{SqliteLedger, SqliteLedgerConfig};
use rei_adapters::sqlx_pools::{PgPool, SqlitePool};
use rei_core::jobs::{JobQueue, QueueLimits};
use rei_core::ledger::LedgerStore;

/// How long to wait for a connection before giving up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What a command does at start when the database lacks some of the embedded migrations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum MigrateOnStart {
    /// Apply them (under the engine's migration lock, so concurrent starts migrate once). The default: the
    /// embedded SQLite database needs no separate step.
    Apply,
    /// Refuse to start, naming them: for deployments that migrate in a step of their own.
    Check,
}

/// An open database of either engine.
#[derive(Clone, Debug)]
pub(crate) enum Database {
    /// PostgreSQL.
    Postgres(PgPool),
    /// SQLite.
    Sqlite(SqlitePool),
}

impl Database {
    /// Opens the database a URL names; `connections_max` bounds a PostgreSQL pool.
    pub(crate) async fn open(url: &str, connections_max: u32) -> Result<Database> {
        let parsed = DatabaseUrl::parse(url).context("failed to read --database-url")?;
        match parsed {
            DatabaseUrl::Postgres(u) => Ok(Database::Postgres(
                rei_adapters::postgres::connect(&u, connections_max, CONNECT_TIMEOUT)
                    .await
                    .with_context(|| format!("failed to connect to {}", redact(&u)))?,
            )),
            DatabaseUrl::Sqlite(u) => Ok(Database::Sqlite(
                rei_adapters::sqlite::connect(&u, CONNECT_TIMEOUT)
                    .await
                    .with_context(|| format!("failed to open {u}"))?,
            )),
        }
    }

    /// The engine's name.
    pub(crate) fn engine(&self) -> &'static str {
        match self {
            Database::Postgres(_) => "postgres",
            Database::Sqlite(_) => "sqlite",
        }
    }

    /// Applies the embedded migrations; returns the versions applied now.
    pub(crate) async fn migrate(&self) -> Result<Vec<i64>> {
        match self {
            Database::Postgres(p) => rei_adapters::postgres::migrate(p).await,
            Database::Sqlite(p) => rei_adapters::sqlite::migrate(p).await,
        }
        .context("failed to migrate")
    }

    /// The versions of the embedded migrations this database has not applied yet.
    pub(crate) async fn pending_migrations(&self) -> Result<Vec<i64>> {
        match self {
            Database::Postgres(p) => rei_adapters::postgres::pending_migrations(p).await,
            Database::Sqlite(p) => rei_adapters::sqlite::pending_migrations(p).await,
        }
        .context("failed to read the applied migrations")
    }

    /// Readies the schema before a command uses it, as configured: applies what is missing, or refuses to go
    /// on when anything is.
    pub(crate) async fn ready_schema(&self, on_start: MigrateOnStart) -> Result<()> {
        match on_start {
            MigrateOnStart::Apply => {
                let applied = self.migrate().await?;
                if !applied.is_empty() {
                    eprintln!("{}: applied migrations {applied:?}", self.engine());
                }
                Ok(())
            }
            MigrateOnStart::Check => {
                let pending = self.pending_migrations().await?;
                if pending.is_empty() {
                    Ok(())
                } else {
                    anyhow::bail!(
                        "the database lacks migrations {pending:?}: run `rei migrate --database-url URL` first, \
                         or start with --migrate-on-start apply"
                    )
                }
            }
        }
    }

    /// The ledger store on this database, group-committing with `batch_max` commands a batch; PostgreSQL runs
    /// `writers` concurrent batches (SQLite always one).
    pub(crate) fn ledger(&self, batch_max: usize, writers: usize) -> Result<Arc<dyn LedgerStore>> {
        match self {
            Database::Postgres(p) => {
                let config = PgLedgerConfig { batch_max, writers, ..PgLedgerConfig::default() };
                Ok(Arc::new(PgLedger::new(p.clone(), config)))
            }
            Database::Sqlite(p) => {
                let config = SqliteLedgerConfig { batch_max, ..SqliteLedgerConfig::default() };
                Ok(Arc::new(SqliteLedger::new(p.clone(), config)))
            }
        }
    }

    /// The PostgreSQL pool, if this is PostgreSQL.
    pub(crate) fn postgres(&self) -> Option<&PgPool> {
        match self {
            Database::Postgres(p) => Some(p),
            Database::Sqlite(_) => None,
        }
    }
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
