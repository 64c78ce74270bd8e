//! What the database adapters share: database URLs, id and money encoding, the embedded migrations, and the
//! mapping of driver errors to port errors.

use std::fmt;

use rei_core::ledger::StoreError;

/// The job, quote, usage-session and audit store logic that the PostgreSQL and SQLite adapters share.
pub(crate) mod retry;
pub(crate) mod stores;

/// Which engine a database URL names, picked from its scheme.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// `postgres://…` or `postgresql://…`.
    Postgres(String),
    /// `sqlite://path`, `sqlite:path` or `sqlite::memory:`.
    Sqlite(String),
}

/// Why a text is not a database URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("database URL must start with postgres://, postgresql:// or sqlite: (got {scheme:?})")]
pub struct UrlError {
    /// What came before the first `:`.
    pub scheme: String,
}

impl DatabaseUrl {
    /// Picks the engine from the scheme.
    ///
    /// # Errors
    /// [`UrlError`] for any other scheme.
    pub fn parse(url: &str) -> Result<DatabaseUrl, UrlError> {
        let scheme = url.split(':').next().unwrap_or_default().to_ascii_lowercase();
        match scheme.as_str() {
            "postgres" | "postgresql" => Ok(DatabaseUrl::Postgres(url.to_owned())),
            "sqlite" => Ok(DatabaseUrl::Sqlite(url.to_owned())),
            _ => Err(UrlError { scheme: scheme.chars().take(32).collect() }),
        }
    }

    /// The URL.
    #[must_use]
    pub fn as_str(&self) -> &str {
        match self {
            DatabaseUrl::Postgres(u) | DatabaseUrl::Sqlite(u) => u,
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    /// Hides any password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact(self.as_str()))
    }
}

/// The URL with any password replaced by `***`, for logs.
#[must_use]
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let Some((auth, host)) = rest.split_once('@') else { return url.to_owned() };
    match auth.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

/// What kind of failure met an attempt to connect, so that callers can say what to do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectFailure {
    /// Nothing listens at the address.
    Refused,
    /// No connection was made in time.
    TimedOut,
    /// Anything else (authentication, a file that cannot be opened, TLS, a malformed URL).
    Other,
}

impl ConnectFailure {
    /// Classifies a driver error from [`crate::postgres::connect`] or [`crate::sqlite::connect`].
    #[must_use]
    pub fn of(e: &sqlx::Error) -> ConnectFailure {
        match e {
            sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => ConnectFailure::Refused,
            sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => ConnectFailure::TimedOut,
            sqlx::Error::PoolTimedOut => ConnectFailure::TimedOut,
            _ => ConnectFailure::Other,
        }
    }
}

/// A u128 id as 16 big-endian bytes (so byte order is numeric order).
#[must_use]
pub fn id_bytes(id: u128) -> Vec<u8> {
    id.to_be_bytes().to_vec()
}

/// Reads 16 big-endian bytes back into an id.
///
/// # Errors
/// [`StoreError::Corrupt`] when the column does not hold exactly 16 bytes.
pub fn id_from_bytes(bytes: &[u8]) -> Result<u128, StoreError> {
    let arr: [u8; 16] = bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt { message: format!("id column holds {} bytes, not 16", bytes.len()) })?;
    Ok(u128::from_be_bytes(arr))
}

/// One embedded migration. Applied in `version` order, each in its own transaction, recorded with a checksum:
/// an applied migration whose text changed is refused.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Its number.
    pub version: i64,
    /// Its file name.
    pub name: &'static str,
    /// Its SQL.
    pub sql: &'static str,
}

impl Migration {
    /// A stable 64-bit FNV-1a checksum of the SQL, as a signed integer for storage.
    #[must_use]
    pub fn checksum(&self) -> i64 {
        let h =
            self.sql.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
        i64::from_be_bytes(h.to_be_bytes())
    }
}

/// Why migrating failed.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// An applied migration's text differs from the embedded one.
    #[error("migration {version} ({name}) was applied with other text: migrations are never edited once applied")]
    Changed {
        /// Which.
        version: i64,
        /// Its name.
        name: String,
    },
    /// The database knows a migration this build does not: it was migrated by a newer REI.
    #[error("the database has migration {version}, newer than this build knows")]
    Newer {
        /// Which.
        version: i64,
    },
    /// The database failed.
    #[error("migration failed: {0}")]
    Database(#[from] sqlx::Error),
}

/// The PostgreSQL migrations, in order.
#[cfg(feature = "postgres")]
pub const POSTGRES_MIGRATIONS: &[Migration] = &[
    Migration { version: 1, name: "0001_ledger.sql", sql: include_str!("../../migrations/postgres/0001_ledger.sql") },
    Migration {
        version: 2,
        name: "0002_jobs_quotes_sessions_audit.sql",
        sql: include_str!("../../migrations/postgres/0002_jobs_quotes_sessions_audit.sql"),
    },
    Migration {
        version: 3,
        name: "0003_job_queue.sql",
        sql: include_str!("../../migrations/postgres/0003_job_queue.sql"),
    },
    Migration {
        version: 4,
        name: "0004_ledger_postings_checked_per_statement.sql",
        sql: include_str!("../../migrations/postgres/0004_ledger_postings_checked_per_statement.sql"),
    },
    Migration {
        version: 5,
        name: "0005_ledger_verify_exact_sums.sql",
        sql: include_str!("../../migrations/postgres/0005_ledger_verify_exact_sums.sql"),
    },
    Migration {
        version: 6,
        name: "0006_spend_by_tranche.sql",
        sql: include_str!("../../migrations/postgres/0006_spend_by_tranche.sql"),
    },
    Migration {
        version: 7,
        name: "0007_generation.sql",
        sql: include_str!("../../migrations/postgres/0007_generation.sql"),
    },
    Migration {
        version: 8,
        name: "0008_payments.sql",
        sql: include_str!("../../migrations/postgres/0008_payments.sql"),
    },
    Migration {
        version: 9,
        name: "0009_http_api.sql",
        sql: include_str!("../../migrations/postgres/0009_http_api.sql"),
    },
    Migration { version: 10, name: "0010_bot.sql", sql: include_str!("../../migrations/postgres/0010_bot.sql") },
    Migration {
        version: 11,
        name: "0011_members.sql",
        sql: include_str!("../../migrations/postgres/0011_members.sql"),
    },
    Migration {
        version: 12,
        name: "0012_reports.sql",
        sql: include_str!("../../migrations/postgres/0012_reports.sql"),
    },
    Migration {
        version: 13,
        name: "0013_console.sql",
        sql: include_str!("../../migrations/postgres/0013_console.sql"),
    },
    Migration {
        version: 14,
        name: "0014_console_audit.sql",
        sql: include_str!("../../migrations/postgres/0014_console_audit.sql"),
    },
];

/// The SQLite migrations, in order.
#[cfg(feature = "sqlite")]
pub const SQLITE_MIGRATIONS: &[Migration] = &[
    Migration { version: 1, name: "0001_ledger.sql", sql: include_str!("../../migrations/sqlite/0001_ledger.sql") },
    Migration {
        version: 2,
        name: "0002_jobs_quotes_sessions_audit.sql",
        sql: include_str!("../../migrations/sqlite/0002_jobs_quotes_sessions_audit.sql"),
    },
    Migration {
        version: 3,
        name: "0003_job_queue.sql",
        sql: include_str!("../../migrations/sqlite/0003_job_queue.sql"),
    },
    Migration {
        version: 4,
        name: "0004_ledger_postings_no_account_index.sql",
        sql: include_str!("../../migrations/sqlite/0004_ledger_postings_no_account_index.sql"),
    },
    Migration {
        version: 5,
        name: "0005_ledger_verify_exact_sums.sql",
        sql: include_str!("../../migrations/sqlite/0005_ledger_verify_exact_sums.sql"),
    },
    Migration {
        version: 6,
        name: "0006_spend_by_tranche.sql",
        sql: include_str!("../../migrations/sqlite/0006_spend_by_tranche.sql"),
    },
    Migration {
        version: 7,
        name: "0007_generation.sql",
        sql: include_str!("../../migrations/sqlite/0007_generation.sql"),
    },
    Migration { version: 8, name: "0008_payments.sql", sql: include_str!("../../migrations/sqlite/0008_payments.sql") },
    Migration { version: 9, name: "0009_http_api.sql", sql: include_str!("../../migrations/sqlite/0009_http_api.sql") },
    Migration { version: 10, name: "0010_bot.sql", sql: include_str!("../../migrations/sqlite/0010_bot.sql") },
    Migration { version: 11, name: "0011_members.sql", sql: include_str!("../../migrations/sqlite/0011_members.sql") },
    Migration { version: 12, name: "0012_reports.sql", sql: include_str!("../../migrations/sqlite/0012_reports.sql") },
    Migration { version: 13, name: "0013_console.sql", sql: include_str!("../../migrations/sqlite/0013_console.sql") },
    Migration {
        version: 14,
        name: "0014_console_audit.sql",
        sql: include_str!("../../migrations/sqlite/0014_console_audit.sql"),
    },
];

/// Checks applied migrations against the embedded list and returns the ones still to apply.
///
/// # Errors
/// [`MigrateError::Changed`] or [`MigrateError::Newer`].
pub fn pending<'a>(list: &'a [Migration], applied: &[(i64, i64)]) -> Result<Vec<&'a Migration>, MigrateError> {
    for (version, checksum) in applied {
        match list.iter().find(|m| m.version == *version) {
            None => return Err(MigrateError::Newer { version: *version }),
            Some(m) if m.checksum() != *checksum => {
                return Err(MigrateError::Changed { version: m.version, name: m.name.to_owned() });
            }
            Some(_) => {}
        }
    }
    Ok(list.iter().filter(|m| applied.iter().all(|(v, _)| *v != m.version)).collect())
}

/// Maps a driver error to the port's store error. A constraint or trigger the database fired means data the
/// plan should have kept out: corruption. Everything else is a failure to reach or use the store.
#[must_use]
pub fn store_error(e: &sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::Database(db) if is_constraint(db.as_ref()) => {
            StoreError::Corrupt { message: db.message().to_owned() }
        }
        other => StoreError::Unavailable { message: other.to_string() },
    }
}

/// `true` for a constraint violation or an aborting trigger, in either engine: PostgreSQL's SQLSTATE class 23
/// and `P0001` (RAISE EXCEPTION), SQLite's primary result code 19 (`SQLITE_CONSTRAINT`, trigger aborts included).
fn is_constraint(db: &dyn sqlx::error::DatabaseError) -> bool {
    if !matches!(db.kind(), sqlx::error::ErrorKind::Other) {
        return true;
    }
    let Some(code) = db.code() else { return false };
    if code.starts_with("23") || code == "P0001" {
        return true;
    }
    code.parse::<i64>().is_ok_and(|n| n & 0xff == 19)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_pick_their_engine_and_hide_passwords() {
        // Proves the scheme picks the engine, other schemes are refused, and passwords never print.
        assert!(matches!(DatabaseUrl::parse("postgres://u:p@h/db"), Ok(DatabaseUrl::Postgres(_))));
        assert!(matches!(DatabaseUrl::parse("postgresql://h/db"), Ok(DatabaseUrl::Postgres(_))));
        assert!(matches!(DatabaseUrl::parse("sqlite://rei.db"), Ok(DatabaseUrl::Sqlite(_))));
        assert!(matches!(DatabaseUrl::parse("sqlite::memory:"), Ok(DatabaseUrl::Sqlite(_))));
        assert!(DatabaseUrl::parse("mysql://h/db").is_err());
        assert!(DatabaseUrl::parse("").is_err());
        let url = DatabaseUrl::parse("postgres://rei:secret@127.0.0.1/db").expect("url");
        assert_eq!(format!("{url:?}"), "postgres://rei:***@127.0.0.1/db");
    }

    #[test]
    fn ids_round_trip_through_bytes() {
        // Proves ids survive the column encoding and a wrong width is refused.
        let id = 0x0123_4567_89ab_cdef_0011_2233_4455_6677_u128;
        assert_eq!(id_from_bytes(&id_bytes(id)), Ok(id));
        assert!(id_from_bytes(&[1, 2, 3]).is_err());
    }

    #[test]
    fn edited_or_unknown_migrations_are_refused() {
        // Proves a changed checksum or a migration from a newer build stops migration.
        let list = [Migration { version: 1, name: "a", sql: "x" }, Migration { version: 2, name: "b", sql: "y" }];
        assert_eq!(pending(&list, &[]).map(|v| v.len()).ok(), Some(2));
        assert_eq!(pending(&list, &[(1, list[0].checksum())]).map(|v| v[0].version).ok(), Some(2));
        assert!(matches!(pending(&list, &[(1, 7)]), Err(MigrateError::Changed { .. })));
        assert!(matches!(pending(&list, &[(3, 7)]), Err(MigrateError::Newer { .. })));
    }
}
