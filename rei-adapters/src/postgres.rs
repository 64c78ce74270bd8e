//! PostgreSQL adapters: the ledger (row locks taken in one order, group-committed batches), and the job,
//! quote, usage-session and audit stores. Migrations are embedded ([`crate::sql::POSTGRES_MIGRATIONS`]).

pub mod access;
pub mod attempts;
pub mod audit;
pub mod board;
pub mod chat;
pub mod jobs;
pub mod ledger;
pub mod members;
pub mod payments;
pub mod queue;
pub mod quotes;
pub mod replays;
pub mod reports;
pub mod usage;

use std::time::Duration;

use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use crate::sql::{MigrateError, POSTGRES_MIGRATIONS, pending};

/// How long a pooled connection lives before it is replaced.
const CONNECTION_LIFETIME_MAX: Duration = Duration::from_secs(10 * 60);

/// Connects a pool of at most `connections_max` connections, waiting at most `connect_timeout` for each.
///
/// # Errors
/// The driver's error when the URL is malformed or the server cannot be reached; see [`connect_with`].
pub async fn connect(url: &str, connections_max: u32, connect_timeout: Duration) -> Result<PgPool, sqlx::Error> {
    let options: PgConnectOptions = url.parse()?;
    connect_with(options, connections_max, connect_timeout).await
}

/// How long one statement, and one wait for a lock, may take on REI's connections before the server cancels
/// it. A cancelled ledger batch is retried (a lock timeout) or fails as unavailable; it never hangs a writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionTimeouts {
    /// `statement_timeout`.
    pub statement: Duration,
    /// `lock_timeout`.
    pub lock: Duration,
}

impl Default for SessionTimeouts {
    /// 30 s a statement, 10 s a lock wait.
    fn default() -> Self {
        SessionTimeouts { statement: Duration::from_secs(30), lock: Duration::from_secs(10) }
    }
}

/// Connects a pool with explicit options (for a search path, say), with the default [`SessionTimeouts`].
///
/// # Errors
/// As [`connect_with_timeouts`].
pub async fn connect_with(
    options: PgConnectOptions,
    connections_max: u32,
    connect_timeout: Duration,
) -> Result<PgPool, sqlx::Error> {
    connect_with_timeouts(options, connections_max, connect_timeout, SessionTimeouts::default()).await
}

/// Connects a pool with explicit options and session timeouts.
///
/// One connection is tried first, on its own, so that a server that is not there is reported at once: the
/// pool retries a refused connection until its acquire timeout and then says only that it timed out.
///
/// # Errors
/// The driver's error when the server cannot be reached: [`sqlx::Error::Io`] of kind
/// [`ConnectionRefused`](std::io::ErrorKind::ConnectionRefused) when nothing listens, of kind
/// [`TimedOut`](std::io::ErrorKind::TimedOut) when no connection was made within `connect_timeout`.
pub async fn connect_with_timeouts(
    options: PgConnectOptions,
    connections_max: u32,
    connect_timeout: Duration,
    timeouts: SessionTimeouts,
) -> Result<PgPool, sqlx::Error> {
    let ms = |d: Duration| d.as_millis().max(1).to_string();
    let options = options.options([("statement_timeout", ms(timeouts.statement)), ("lock_timeout", ms(timeouts.lock))]);
    match tokio::time::timeout(connect_timeout, sqlx::PgConnection::connect_with(&options)).await {
        Ok(Ok(probe)) => probe.close().await?,
        Ok(Err(e)) => return Err(e),
        Err(_) => {
            let message = format!("no connection within {} ms", connect_timeout.as_millis());
            return Err(sqlx::Error::Io(std::io::Error::new(std::io::ErrorKind::TimedOut, message)));
        }
    }
    // Connections are recycled so that cached statement plans are remade as tables grow and gain statistics.
    PgPoolOptions::new()
        .max_connections(connections_max.max(1))
        .max_lifetime(CONNECTION_LIFETIME_MAX)
        .acquire_timeout(connect_timeout)
        .connect_with(options)
        .await
}

/// A pool of `pool`'s server, schema and timeouts whose commits do not wait for the WAL flush
/// (`synchronous_commit = off`), connecting on first use: for the records that are not money and that a crash
/// may lose without harm (a quote, which is asked for again; an HTTP replay slot, after which a repeat runs
/// again and the keyed ledger replays it). A commit on it is visible at once; only its durability lags, by at
/// most three WAL writer delays. Never for the ledger.
#[must_use]
pub fn relaxed_pool(pool: &PgPool, connections_max: u32) -> PgPool {
    let options = (*pool.connect_options()).clone().options([("synchronous_commit", "off")]);
    PgPoolOptions::new()
        .max_connections(connections_max.max(1))
        .max_lifetime(CONNECTION_LIFETIME_MAX)
        .acquire_timeout(pool.options().get_acquire_timeout())
        .connect_lazy_with(options)
}

/// Connects as [`connect`], with `schema` (a plain identifier, see [`is_plain_identifier`]) alone on the search
/// path when given: REI's tables then live in that schema, beside an embedder's own.
///
/// # Errors
/// As [`connect_with`]; a protocol error for a schema name that is not plain.
pub async fn connect_in_schema(
    url: &str,
    schema: Option<&str>,
    connections_max: u32,
    connect_timeout: Duration,
) -> Result<PgPool, sqlx::Error> {
    let mut options: PgConnectOptions = url.parse()?;
    if let Some(schema) = schema {
        plain(schema)?;
        options = options.options([("search_path", schema)]);
    }
    connect_with(options, connections_max, connect_timeout).await
}

/// `true` for a name PostgreSQL takes unquoted and unchanged: `[a-z_][a-z0-9_]*`, at most 63 bytes.
#[must_use]
pub fn is_plain_identifier(name: &str) -> bool {
    name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn plain(name: &str) -> Result<(), sqlx::Error> {
    if is_plain_identifier(name) {
        Ok(())
    } else {
        Err(sqlx::Error::Protocol(format!("{name:?} is not a plain identifier ([a-z_][a-z0-9_]*)")))
    }
}

/// Creates schema `name` (a plain identifier) unless it exists.
///
/// # Errors
/// The driver's error, or a protocol error for a name that is not plain.
pub async fn create_schema(pool: &PgPool, name: &str) -> Result<(), sqlx::Error> {
    plain(name)?;
    sqlx::raw_sql(&format!("CREATE SCHEMA IF NOT EXISTS {name}")).execute(pool).await.map(|_| ())
}

/// Drops schema `name` (a plain identifier) and everything in it, if it exists.
///
/// # Errors
/// The driver's error, or a protocol error for a name that is not plain.
pub async fn drop_schema(pool: &PgPool, name: &str) -> Result<(), sqlx::Error> {
    plain(name)?;
    sqlx::raw_sql(&format!("DROP SCHEMA IF EXISTS {name} CASCADE")).execute(pool).await.map(|_| ())
}

/// Applies every embedded migration not yet applied, each in its own transaction, under an advisory lock so
/// that two processes starting at once migrate once. Returns the versions applied now.
///
/// # Errors
/// [`MigrateError`] when a migration fails, was edited after being applied, or is unknown to this build.
pub async fn migrate(pool: &PgPool) -> Result<Vec<i64>, MigrateError> {
    let mut conn = pool.acquire().await?;
    // A migration may wait for another process's migration and may build indexes for a while: the session
    // timeouts meant for ledger statements do not apply to it. RESET gives the connection its own back.
    sqlx::raw_sql("SET lock_timeout = 0; SET statement_timeout = 0").execute(&mut *conn).await?;
    sqlx::query("SELECT pg_advisory_lock(7262001)").execute(&mut *conn).await?;
    let result = migrate_locked(&mut conn).await;
    sqlx::query("SELECT pg_advisory_unlock(7262001)").execute(&mut *conn).await?;
    sqlx::raw_sql("RESET lock_timeout; RESET statement_timeout").execute(&mut *conn).await?;
    result
}

async fn migrate_locked(conn: &mut sqlx::PgConnection) -> Result<Vec<i64>, MigrateError> {
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS rei_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, \
         checksum BIGINT NOT NULL, applied_ms BIGINT NOT NULL)",
    )
    .execute(&mut *conn)
    .await?;
    let applied: Vec<(i64, i64)> =
        sqlx::query_as("SELECT version, checksum FROM rei_migrations ORDER BY version").fetch_all(&mut *conn).await?;
    let mut done = Vec::new();
    for m in pending(POSTGRES_MIGRATIONS, &applied)? {
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        sqlx::raw_sql(m.sql).execute(&mut *tx).await?;
        sqlx::query(
            "INSERT INTO rei_migrations (version, name, checksum, applied_ms) \
             VALUES ($1, $2, $3, (extract(epoch from clock_timestamp()) * 1000)::BIGINT)",
        )
        .bind(m.version)
        .bind(m.name)
        .bind(m.checksum())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        done.push(m.version);
    }
    Ok(done)
}

/// The embedded migrations this database has not applied yet (their versions), without changing anything:
/// for a process configured to refuse to start on an old schema rather than migrate it.
///
/// # Errors
/// [`MigrateError`] when an applied migration was edited or is unknown to this build, or the database fails.
pub async fn pending_migrations(pool: &PgPool) -> Result<Vec<i64>, MigrateError> {
    let exists: Option<String> =
        sqlx::query_scalar("SELECT to_regclass('rei_migrations')::TEXT").fetch_one(pool).await?;
    let applied: Vec<(i64, i64)> = if exists.is_some() {
        sqlx::query_as("SELECT version, checksum FROM rei_migrations ORDER BY version").fetch_all(pool).await?
    } else {
        Vec::new()
    };
    Ok(pending(POSTGRES_MIGRATIONS, &applied)?.iter().map(|m| m.version).collect())
}

/// Drops (if it exists) and creates database `name` on the server of `pool`, for tools that need a scratch
/// database beside REI's (the benchmark's pgbench run). `name` must be a plain identifier.
///
/// # Errors
/// The driver's error, or a protocol error for a name that is not `[a-z_][a-z0-9_]*`.
pub async fn recreate_database(pool: &PgPool, name: &str) -> Result<(), sqlx::Error> {
    drop_database(pool, name).await?;
    sqlx::raw_sql(&format!("CREATE DATABASE {name}")).execute(pool).await?;
    Ok(())
}

/// Drops database `name` (a plain identifier) if it exists, closing its sessions.
///
/// # Errors
/// The driver's error, or a protocol error for a name that is not `[a-z_][a-z0-9_]*`.
pub async fn drop_database(pool: &PgPool, name: &str) -> Result<(), sqlx::Error> {
    plain(name)?;
    sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(pool).await.map(|_| ())
}

/// Refreshes the planner's statistics of the ledger tables (what autovacuum does on its own schedule), so that
/// a benchmark measures a ledger with statistics, as every long-running database has.
///
/// # Errors
/// The driver's error.
pub async fn analyze_ledger(pool: &PgPool) -> Result<(), sqlx::Error> {
    sqlx::raw_sql(
        "ANALYZE ledger_accounts, ledger_system_accounts, ledger_transactions, ledger_postings, ledger_holds, \
         ledger_payments",
    )
    .execute(pool)
    .await
    .map(|_| ())
}

/// Leadership of a role among processes on one PostgreSQL database: a session advisory lock held on a
/// connection of its own, outside the pool. Dropping it closes the connection, which releases the lock; so does
/// the process dying.
#[derive(Debug)]
pub struct PgLeader {
    conn: sqlx::PgConnection,
}

impl PgLeader {
    /// `true` while the lock's connection is alive (the server holds a session lock as long as its session):
    /// a leader checks before each round of work, so that after a lost connection it stops leading.
    pub async fn still_held(&mut self) -> bool {
        sqlx::Connection::ping(&mut self.conn).await.is_ok()
    }
}

/// The advisory lock key of a role: a 64-bit FNV-1a hash of `rei-lead:<role>` (`pg_locks` shows it as
/// `classid` and `objid`, its high and low 32 bits).
#[must_use]
pub fn lead_key(role: &str) -> i64 {
    let hash = format!("rei-lead:{role}")
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    i64::from_ne_bytes(hash.to_ne_bytes())
}

/// Takes the lead of `role` if no other process holds it, without waiting.
///
/// # Errors
/// The driver's error when the server cannot be reached.
pub async fn try_lead(pool: &PgPool, role: &str) -> Result<Option<PgLeader>, sqlx::Error> {
    let mut conn = pool.acquire().await?.detach();
    let led: bool =
        sqlx::query_scalar("SELECT pg_try_advisory_lock($1)").bind(lead_key(role)).fetch_one(&mut conn).await?;
    if led { Ok(Some(PgLeader { conn })) } else { Ok(None) }
}
