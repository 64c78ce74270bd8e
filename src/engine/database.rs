//! [`Database`]: an open database of either engine, and the stores on it. The one place in the library that
//! names concrete adapter types.

use std::sync::Arc;

use rei_adapters::sql::{ConnectFailure, DatabaseUrl, redact};
use rei_core::access::{ApiKeyStore, ReplayStore};
use rei_core::billing::QuoteStore;
use rei_core::chat::{ConversationStore, UpdateLog};
use rei_core::generation::AttemptLog;
use rei_core::guards::AuditLog;
use rei_core::jobs::{JobQueue, JobStore};
use rei_core::ledger::LedgerStore;
use rei_core::members::{MemberStore, PromoStore};
use rei_core::reports::ReportStore;
use rei_core::topups::PaymentStore;
use rei_core::usage::UsageSessionStore;

use super::{EngineConfig, EngineError, MigrateMode};

/// An open database: a pool of the engine the URL named.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Database {
    /// PostgreSQL.
    #[cfg(feature = "postgres")]
    Postgres(rei_adapters::sqlx_pools::PgPool),
    /// SQLite.
    #[cfg(feature = "sqlite")]
    Sqlite(rei_adapters::sqlx_pools::SqlitePool),
}

/// The lead of a role among the processes on one database (see [`Database::try_lead`]); released when dropped,
/// or when the process dies.
#[derive(Debug)]
pub struct Leadership {
    held: Held,
}

impl Leadership {
    /// `true` while the lead is still held: on PostgreSQL, while the lock's connection is alive (a server
    /// restart ends it, and another process may lead since); a lock file stays held while the process lives.
    pub async fn still_held(&mut self) -> bool {
        match &mut self.held {
            #[cfg(feature = "postgres")]
            Held::Postgres(l) => l.still_held().await,
            #[cfg(feature = "sqlite")]
            Held::Sqlite(l) => l.still_held(),
        }
    }
}

#[derive(Debug)]
enum Held {
    #[cfg(feature = "postgres")]
    Postgres(rei_adapters::postgres::PgLeader),
    #[cfg(feature = "sqlite")]
    Sqlite(rei_adapters::sqlite::SqliteLeader),
}

/// The stores an engine runs on, all on one database.
pub(super) struct Stores {
    pub(super) ledger: Arc<dyn LedgerStore>,
    pub(super) quotes: Arc<dyn QuoteStore>,
    pub(super) sessions: Arc<dyn UsageSessionStore>,
    pub(super) jobs: Arc<dyn JobStore>,
    pub(super) queue: Arc<dyn JobQueue>,
    pub(super) audit: Arc<dyn AuditLog>,
    pub(super) attempts: Arc<dyn AttemptLog>,
    pub(super) api_keys: Arc<dyn ApiKeyStore>,
    pub(super) replays: Arc<dyn ReplayStore>,
    pub(super) updates: Arc<dyn UpdateLog>,
    pub(super) conversations: Arc<dyn ConversationStore>,
    pub(super) payments: Arc<dyn PaymentStore>,
    pub(super) members: Arc<dyn MemberStore>,
    pub(super) promos: Arc<dyn PromoStore>,
    pub(super) reports: Arc<dyn ReportStore>,
    pub(super) board: Arc<dyn rei_core::routing::ProviderBoard>,
}

impl Database {
    /// Opens the database `url` names, as `config` says (pool size, timeouts, schema, whether a missing SQLite
    /// file may be created). Migrates nothing.
    ///
    /// # Errors
    /// [`EngineError::Url`], [`EngineError::EngineNotBuilt`], [`EngineError::DatabaseMissing`],
    /// [`EngineError::ConnectionRefused`], [`EngineError::ConnectTimeout`], [`EngineError::Connect`],
    /// [`EngineError::Config`] for a schema name that is not a plain identifier.
    pub async fn open(url: &str, config: &EngineConfig) -> Result<Database, EngineError> {
        match DatabaseUrl::parse(url)? {
            DatabaseUrl::Postgres(url) => open_postgres(&url, config).await,
            DatabaseUrl::Sqlite(url) => open_sqlite(&url, config).await,
        }
    }

    /// The engine's name: `"postgres"` or `"sqlite"`.
    #[must_use]
    pub fn engine(&self) -> &'static str {
        match self {
            #[cfg(feature = "postgres")]
            Database::Postgres(_) => "postgres",
            #[cfg(feature = "sqlite")]
            Database::Sqlite(_) => "sqlite",
        }
    }

    /// The PostgreSQL pool, if this is PostgreSQL.
    #[cfg(feature = "postgres")]
    #[must_use]
    pub fn postgres(&self) -> Option<&rei_adapters::sqlx_pools::PgPool> {
        match self {
            Database::Postgres(p) => Some(p),
            #[cfg(feature = "sqlite")]
            Database::Sqlite(_) => None,
        }
    }

    /// Takes the lead of `role` (say `"gc"`) among the processes on this database if none holds it, without
    /// waiting: on PostgreSQL a session advisory lock, on SQLite an exclusive lock on a file beside the
    /// database. `None` while another process leads.
    ///
    /// # Errors
    /// [`EngineError::Leadership`] when the lock cannot be taken or asked for.
    pub async fn try_lead(&self, role: &str) -> Result<Option<Leadership>, EngineError> {
        let failed =
            |e: &dyn std::fmt::Display| EngineError::Leadership { role: role.to_owned(), reason: e.to_string() };
        match self {
            #[cfg(feature = "postgres")]
            Database::Postgres(p) => Ok(rei_adapters::postgres::try_lead(p, role)
                .await
                .map_err(|e| failed(&e))?
                .map(|l| Leadership { held: Held::Postgres(l) })),
            #[cfg(feature = "sqlite")]
            Database::Sqlite(p) => Ok(rei_adapters::sqlite::try_lead(p, role)
                .map_err(|e| failed(&e))?
                .map(|l| Leadership { held: Held::Sqlite(l) })),
        }
    }

    /// The versions of the embedded migrations this database has not applied yet.
    ///
    /// # Errors
    /// [`EngineError::Migrate`] when the database fails or its migrations do not match this build's.
    pub async fn pending_migrations(&self) -> Result<Vec<i64>, EngineError> {
        Ok(match self {
            #[cfg(feature = "postgres")]
            Database::Postgres(p) => rei_adapters::postgres::pending_migrations(p).await?,
            #[cfg(feature = "sqlite")]
            Database::Sqlite(p) => rei_adapters::sqlite::pending_migrations(p).await?,
        })
    }

    /// Readies the schema as `mode` says: applies what is missing (creating the PostgreSQL schema first if
    /// one is configured) and returns the versions applied now, or refuses when anything is missing.
    ///
    /// # Errors
    /// [`EngineError::MigrationsPending`] under [`MigrateMode::Check`]; [`EngineError::Migrate`] when migrating
    /// fails.
    pub async fn ready_schema(&self, mode: MigrateMode, config: &EngineConfig) -> Result<Vec<i64>, EngineError> {
        match mode {
            MigrateMode::Check => {
                let pending = self.pending_migrations().await?;
                if pending.is_empty() { Ok(Vec::new()) } else { Err(EngineError::MigrationsPending { pending }) }
            }
            MigrateMode::Apply => Ok(match self {
                #[cfg(feature = "postgres")]
                Database::Postgres(p) => {
                    if let Some(schema) = &config.postgres_schema {
                        rei_adapters::postgres::create_schema(p, schema)
                            .await
                            .map_err(rei_adapters::sql::MigrateError::from)?;
                    }
                    rei_adapters::postgres::migrate(p).await?
                }
                #[cfg(feature = "sqlite")]
                Database::Sqlite(p) => {
                    let _ = config;
                    rei_adapters::sqlite::migrate(p).await?
                }
            }),
        }
    }

    /// Closes the pool: waits for connections in use to come back, then closes them all.
    pub async fn close(&self) {
        match self {
            #[cfg(feature = "postgres")]
            Database::Postgres(p) => p.close().await,
            #[cfg(feature = "sqlite")]
            Database::Sqlite(p) => p.close().await,
        }
    }

    /// Every store on this database. PostgreSQL's ledger starts its writer tasks here.
    pub(super) fn stores(&self, config: &EngineConfig) -> Stores {
        let q = config.queue;
        match self {
            #[cfg(feature = "postgres")]
            Database::Postgres(p) => {
                use rei_adapters::postgres::{
                    access, attempts, audit, board, chat, jobs, ledger, members, payments, queue, quotes, reports,
                    usage,
                };
                // Quotes and HTTP replay slots are not money: their commits need not wait for the disk.
                let relaxed = rei_adapters::postgres::relaxed_pool(p, config.connections_max.div_ceil(2));
                let ledger_config = ledger::PgLedgerConfig {
                    batch_max: config.ledger_batch_max,
                    writers: config.ledger_writers,
                    ..ledger::PgLedgerConfig::default()
                };
                Stores {
                    ledger: Arc::new(ledger::PgLedger::new(p.clone(), ledger_config)),
                    quotes: Arc::new(quotes::PgQuoteStore::new(relaxed.clone())),
                    sessions: Arc::new(usage::PgUsageSessionStore::new(p.clone())),
                    jobs: Arc::new(jobs::PgJobStore::new(p.clone())),
                    queue: Arc::new(queue::PgJobQueue::new(
                        p.clone(),
                        q.capacity,
                        q.dead_letter_capacity,
                        q.aging_step,
                    )),
                    audit: Arc::new(audit::PgAuditLog::new(p.clone())),
                    attempts: Arc::new(attempts::PgAttemptLog::new(p.clone())),
                    api_keys: Arc::new(access::PgApiKeys::new(p.clone())),
                    replays: Arc::new(access::PgReplays::new(relaxed)),
                    updates: Arc::new(chat::PgUpdateLog::new(p.clone())),
                    conversations: Arc::new(chat::PgConversations::new(p.clone())),
                    payments: Arc::new(payments::PgPaymentStore::new(p.clone())),
                    members: Arc::new(members::PgMembers::new(p.clone())),
                    promos: Arc::new(members::PgPromos::new(p.clone())),
                    reports: Arc::new(reports::PgReportStore::new(p.clone())),
                    board: Arc::new(board::PgBoard::new(p.clone())),
                }
            }
            #[cfg(feature = "sqlite")]
            Database::Sqlite(p) => {
                use rei_adapters::sqlite::{
                    access, attempts, audit, board, chat, jobs, ledger, members, payments, queue, quotes, reports,
                    usage,
                };
                // The stores written on every request queue for one connection rather than for the write lock.
                let serial = rei_adapters::sqlite::serial_pool(p);
                let ledger_config =
                    ledger::SqliteLedgerConfig { batch_max: config.ledger_batch_max, ..Default::default() };
                Stores {
                    ledger: Arc::new(ledger::SqliteLedger::new(p.clone(), ledger_config)),
                    quotes: Arc::new(quotes::SqliteQuoteStore::new(serial.clone())),
                    sessions: Arc::new(usage::SqliteUsageSessionStore::new(p.clone())),
                    jobs: Arc::new(jobs::SqliteJobStore::new(p.clone())),
                    queue: Arc::new(queue::SqliteJobQueue::new(
                        p.clone(),
                        q.capacity,
                        q.dead_letter_capacity,
                        q.aging_step,
                    )),
                    audit: Arc::new(audit::SqliteAuditLog::new(p.clone())),
                    attempts: Arc::new(attempts::SqliteAttemptLog::new(p.clone())),
                    api_keys: Arc::new(access::SqliteApiKeys::new(p.clone())),
                    replays: Arc::new(access::SqliteReplays::new(serial.clone())),
                    updates: Arc::new(chat::SqliteUpdateLog::new(p.clone())),
                    conversations: Arc::new(chat::SqliteConversations::new(p.clone())),
                    payments: Arc::new(payments::SqlitePaymentStore::new(p.clone())),
                    // Seen on every update, like the quotes and replay slots.
                    members: Arc::new(members::SqliteMembers::new(serial)),
                    promos: Arc::new(members::SqlitePromos::new(p.clone())),
                    reports: Arc::new(reports::SqliteReportStore::new(p.clone())),
                    board: Arc::new(board::SqliteBoard::new(p.clone())),
                }
            }
        }
    }
}

/// The error for a failed connection to `url`, saying what happened in words a person can act on.
fn connect_error(url: &str, config: &EngineConfig, e: rei_adapters::sqlx_pools::Error) -> EngineError {
    let url = redact(url);
    match ConnectFailure::of(&e) {
        ConnectFailure::Refused => EngineError::ConnectionRefused { url },
        ConnectFailure::TimedOut => EngineError::ConnectTimeout { url, timeout: config.connect_timeout },
        ConnectFailure::Other => EngineError::Connect { url, source: Box::new(e) },
    }
}

impl Database {
    /// A ledger that reads from the streaming replica at `url` (PostgreSQL only), in the same schema.
    pub(super) async fn replica_ledger(
        &self,
        url: &str,
        config: &EngineConfig,
    ) -> Result<Arc<dyn LedgerStore>, EngineError> {
        #[cfg(not(feature = "postgres"))]
        let _ = (url, config);
        match self {
            #[cfg(feature = "postgres")]
            Database::Postgres(_) => {
                if !url.starts_with("postgres") {
                    return Err(EngineError::Config { reason: "replica_url must be postgres://…".to_owned() });
                }
                let schema = config.postgres_schema.as_deref();
                let pool = rei_adapters::postgres::connect_in_schema(
                    url,
                    schema,
                    config.connections_max.div_ceil(2),
                    config.connect_timeout,
                )
                .await
                .map_err(|e| connect_error(url, config, e))?;
                Ok(Arc::new(rei_adapters::postgres::ledger::PgLedger::reader(pool)))
            }
            #[allow(unreachable_patterns, reason = "only one arm exists without the postgres feature")]
            _ => Err(EngineError::Config { reason: "a read replica is for PostgreSQL only".to_owned() }),
        }
    }
}

#[cfg(feature = "postgres")]
async fn open_postgres(url: &str, config: &EngineConfig) -> Result<Database, EngineError> {
    if let Some(schema) = config.postgres_schema.as_deref().filter(|s| !rei_adapters::postgres::is_plain_identifier(s))
    {
        return Err(EngineError::Config {
            reason: format!("postgres_schema {schema:?} is not a plain identifier ([a-z_][a-z0-9_]*)"),
        });
    }
    let schema = config.postgres_schema.as_deref();
    rei_adapters::postgres::connect_in_schema(url, schema, config.connections_max, config.connect_timeout)
        .await
        .map(Database::Postgres)
        .map_err(|e| connect_error(url, config, e))
}

#[cfg(not(feature = "postgres"))]
async fn open_postgres(_url: &str, _config: &EngineConfig) -> Result<Database, EngineError> {
    Err(EngineError::EngineNotBuilt { engine: "postgres" })
}

#[cfg(feature = "sqlite")]
async fn open_sqlite(url: &str, config: &EngineConfig) -> Result<Database, EngineError> {
    if !config.create_if_missing {
        let path = rei_adapters::sqlite::database_path(url).map_err(|e| connect_error(url, config, e))?;
        if let Some(path) = path.filter(|p| !p.exists()) {
            return Err(EngineError::DatabaseMissing { path });
        }
    }
    rei_adapters::sqlite::open(url, config.busy_timeout, config.create_if_missing)
        .await
        .map(Database::Sqlite)
        .map_err(|e| connect_error(url, config, e))
}

#[cfg(not(feature = "sqlite"))]
async fn open_sqlite(_url: &str, _config: &EngineConfig) -> Result<Database, EngineError> {
    Err(EngineError::EngineNotBuilt { engine: "sqlite" })
}
