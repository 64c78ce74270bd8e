//! SQLite adapters, the embedded default (one file, no server): the ledger (one writer, group-committed
//! batches), and the job, quote, usage-session and audit stores. Migrations are embedded
//! ([`crate::sql::SQLITE_MIGRATIONS`]).

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
pub mod reports;
pub mod usage;

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

use crate::sql::{MigrateError, SQLITE_MIGRATIONS, pending};

/// Readers the pool keeps besides the writer; SQLite in WAL mode lets them read while one connection writes.
const CONNECTIONS_MAX: u32 = 8;

/// The least time to wait for a pooled connection.
const ACQUIRE_TIMEOUT_MIN: Duration = Duration::from_secs(10);

/// Opens (creating if missing) the database file at `url` in WAL mode with foreign keys on and a busy timeout
/// of `busy_timeout`.
///
/// Every money move MUST survive a power loss once it returned, so the ledger's writer connection runs with
/// `synchronous` FULL: in WAL mode that syncs the WAL on each commit, and group commit shares that sync among a
/// batch's commands. The pool's connections (jobs, queue, quotes, sessions, attempts, payment records, audit)
/// run with NORMAL, which syncs the WAL at checkpoints only. That loses no acknowledged money and breaks no order
/// the design relies on: the WAL is one sequential file, so the ledger's next synced commit makes every commit
/// before it durable too (a usage session's row before its hold, a job before its capture), and what a power
/// loss can undo of the others is re-derived from the ledger on recovery (a job's end, an audit record), from
/// the gateway (a payment record: settling a payment records it again) or repeated by its caller (a quote, a
/// queue ticket, which `reconcile_queue` rebuilds).
///
/// # Errors
/// The driver's error when the URL is malformed or the file cannot be opened.
pub async fn connect(url: &str, busy_timeout: Duration) -> Result<SqlitePool, sqlx::Error> {
    open(url, busy_timeout, true).await
}

/// The file a SQLite URL names; `None` for an in-memory database.
///
/// # Errors
/// The driver's error when the URL is malformed.
pub fn database_path(url: &str) -> Result<Option<PathBuf>, sqlx::Error> {
    let options = SqliteConnectOptions::from_str(url)?;
    let path = options.get_filename();
    let memory = url.contains(":memory:") || url.contains("mode=memory") || path.as_os_str().is_empty();
    Ok((!memory).then(|| path.to_path_buf()))
}

/// As [`connect`], but with `create_if_missing` false a missing file is an error and nothing is created: for
/// commands that only read a database that must already exist (`rei verify`).
///
/// # Errors
/// The driver's error when the URL is malformed or the file cannot be opened (or is missing and may not be
/// created).
pub async fn open(url: &str, busy_timeout: Duration, create_if_missing: bool) -> Result<SqlitePool, sqlx::Error> {
    let options = SqliteConnectOptions::from_str(url)?
        .create_if_missing(create_if_missing)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        .busy_timeout(busy_timeout)
        // Checkpoint the WAL every 20,000 pages (about 80 MB) instead of SQLite's 1,000: a checkpoint stalls the
        // writer that triggers it, and doing it twenty times less often measured ~20 % more ledger throughput.
        .pragma("wal_autocheckpoint", "20000");
    // Waiting for a pooled connection is bounded separately: a short busy timeout (tests use 20 ms) must not
    // make a merely busy pool fail.
    SqlitePoolOptions::new()
        .max_connections(CONNECTIONS_MAX)
        .acquire_timeout(busy_timeout.max(ACQUIRE_TIMEOUT_MIN))
        .connect_with(options)
        .await
}

/// A pool of one connection to `pool`'s file, connecting on first use: the writes of the stores that write on
/// every request (quotes, HTTP replay slots) queue for it in this process instead of contending for SQLite's
/// write lock in its busy handler, which sleeps and retries.
#[must_use]
pub fn serial_pool(pool: &SqlitePool) -> SqlitePool {
    SqlitePoolOptions::new()
        .max_connections(1)
        .acquire_timeout(pool.options().get_acquire_timeout())
        .connect_lazy_with((*pool.connect_options()).clone())
}

/// The embedded migrations this database has not applied yet (their versions), without changing anything:
/// for a process configured to refuse to start on an old schema rather than migrate it.
///
/// # Errors
/// [`MigrateError`] when an applied migration was edited or is unknown to this build, or the database fails.
pub async fn pending_migrations(pool: &SqlitePool) -> Result<Vec<i64>, MigrateError> {
    let exists: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'rei_migrations'")
            .fetch_one(pool)
            .await?;
    let applied: Vec<(i64, i64)> = if exists > 0 {
        sqlx::query_as("SELECT version, checksum FROM rei_migrations ORDER BY version").fetch_all(pool).await?
    } else {
        Vec::new()
    };
    Ok(pending(SQLITE_MIGRATIONS, &applied)?.iter().map(|m| m.version).collect())
}

/// Applies every embedded migration not yet applied, each in its own immediate transaction (SQLite's write
/// lock makes two processes migrate once). Returns the versions applied now.
///
/// # Errors
/// [`MigrateError`] when a migration fails, was edited after being applied, or is unknown to this build.
pub async fn migrate(pool: &SqlitePool) -> Result<Vec<i64>, MigrateError> {
    let mut conn = pool.acquire().await?;
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS rei_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, \
         checksum INTEGER NOT NULL, applied_ms INTEGER NOT NULL)",
    )
    .execute(&mut *conn)
    .await?;
    let mut done = Vec::new();
    loop {
        sqlx::raw_sql("BEGIN IMMEDIATE").execute(&mut *conn).await?;
        let step = async {
            let applied: Vec<(i64, i64)> =
                sqlx::query_as("SELECT version, checksum FROM rei_migrations ORDER BY version")
                    .fetch_all(&mut *conn)
                    .await?;
            let Some(m) = pending(SQLITE_MIGRATIONS, &applied)?.first().copied() else { return Ok(None) };
            sqlx::raw_sql(m.sql).execute(&mut *conn).await?;
            sqlx::query(
                "INSERT INTO rei_migrations (version, name, checksum, applied_ms) \
                 VALUES (?1, ?2, ?3, CAST(unixepoch('subsec') * 1000 AS INTEGER))",
            )
            .bind(m.version)
            .bind(m.name)
            .bind(m.checksum())
            .execute(&mut *conn)
            .await?;
            Ok::<_, MigrateError>(Some(m.version))
        }
        .await;
        match step {
            Ok(Some(v)) => {
                sqlx::raw_sql("COMMIT").execute(&mut *conn).await?;
                done.push(v);
            }
            Ok(None) => {
                sqlx::raw_sql("COMMIT").execute(&mut *conn).await?;
                return Ok(done);
            }
            Err(e) => {
                sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await?;
                return Err(e);
            }
        }
    }
}

/// Leadership of a role among processes on one SQLite file: an exclusive lock on `<file>.<role>.lock` beside
/// it. Dropping it closes the file, which releases the lock; so does the process dying.
#[derive(Debug)]
pub struct SqliteLeader {
    _file: Option<std::fs::File>,
}

impl SqliteLeader {
    /// Always `true`: a lock on an open file lasts until the file is closed, and this value keeps it open.
    #[must_use]
    pub fn still_held(&self) -> bool {
        true
    }
}

/// Takes the lead of `role` if no other process holds it, without waiting. An in-memory database has one
/// process by nature: its caller always leads.
///
/// # Errors
/// The I/O error when the lock file cannot be opened or locked for another reason than another holder.
pub fn try_lead(pool: &SqlitePool, role: &str) -> Result<Option<SqliteLeader>, std::io::Error> {
    let path = pool.connect_options().get_filename().to_path_buf();
    if path.as_os_str().is_empty() || path.as_os_str() == ":memory:" {
        return Ok(Some(SqliteLeader { _file: None }));
    }
    let lock = PathBuf::from(format!("{}.{role}.lock", path.display()));
    let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&lock)?;
    match file.try_lock() {
        Ok(()) => Ok(Some(SqliteLeader { _file: Some(file) })),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}
