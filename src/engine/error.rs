//! [`EngineError`]: why an engine could not open, each variant saying what to do.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use rei_core::billing::BillingError;

/// Why an [`Engine`](super::Engine) could not open, or its maintenance failed. Grouped by what the caller can
/// do: fix the configuration, start or reach the server, migrate, or retry.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The builder was opened without a database URL.
    #[error("no database URL: give one to Engine::open or EngineBuilder::database_url")]
    NoDatabaseUrl,
    /// The URL's scheme names no database engine.
    #[error(transparent)]
    Url(#[from] rei_adapters::sql::UrlError),
    /// The URL names an engine this build of `rei` was compiled without.
    #[error("this build has no {engine} support: enable the `{engine}` feature of the rei crate")]
    EngineNotBuilt {
        /// `"postgres"` or `"sqlite"`.
        engine: &'static str,
    },
    /// A setting is out of range (the retry policy, the lease, the schema name, a queue limit).
    #[error("invalid configuration: {reason}")]
    Config {
        /// What is wrong.
        reason: String,
    },
    /// SQLite: the file does not exist and [`EngineConfig::create_if_missing`](super::EngineConfig) is off.
    #[error("the database file {} does not exist (nothing was created)", path.display())]
    DatabaseMissing {
        /// The file.
        path: PathBuf,
    },
    /// Nothing listens at the server's address: start the server or fix the URL.
    #[error("cannot connect to {url}: connection refused (is the server running?)")]
    ConnectionRefused {
        /// The URL, password hidden.
        url: String,
    },
    /// The server did not answer in time.
    #[error("cannot connect to {url}: no connection within {} ms", timeout.as_millis())]
    ConnectTimeout {
        /// The URL, password hidden.
        url: String,
        /// The configured wait.
        timeout: Duration,
    },
    /// Any other failure to connect or open (authentication, a file that cannot be opened, TLS).
    #[error("cannot open {url}: {source}")]
    Connect {
        /// The URL, password hidden.
        url: String,
        /// What the driver said.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The database lacks migrations and [`MigrateMode::Check`](super::MigrateMode::Check) forbids applying
    /// them.
    #[error("the database lacks migrations {}: run `rei migrate`", Versions(pending))]
    MigrationsPending {
        /// Their versions.
        pending: Vec<i64>,
    },
    /// Migrating failed, or the database's migrations do not match this build's.
    #[error(transparent)]
    Migrate(#[from] rei_adapters::sql::MigrateError),
    /// The Redis job queue could not be set up.
    #[cfg(feature = "redis")]
    #[error(transparent)]
    Redis(#[from] rei_adapters::redis::RedisSetupError),
    /// A maintenance pass failed (the store is unavailable); the next pass tries again.
    #[error("maintenance failed: {0}")]
    Maintenance(#[from] BillingError),
    /// The lead of a role could not be taken or asked for.
    #[error("cannot take the lead of {role}: {reason}")]
    Leadership {
        /// Which role.
        role: String,
        /// What failed.
        reason: String,
    },
    /// A maintenance pass failed to recover jobs.
    #[error("maintenance failed to recover jobs: {0}")]
    JobRecovery(#[from] rei_core::jobs::JobError),
    /// A maintenance pass failed to end abandoned usage sessions.
    #[error("maintenance failed to end abandoned sessions: {0}")]
    SessionReap(#[from] rei_core::usage::UsageError),
    /// A maintenance pass failed to purge quotes.
    #[error("maintenance failed to purge quotes: {0}")]
    QuotePurge(#[from] rei_core::ledger::StoreError),
    /// A job could not be ordered: the request is invalid.
    #[error("invalid generation request: {0}")]
    Request(#[from] rei_core::generation::RequestError),
    /// A job could not be ordered: billing refused the confirm (quote unknown or expired, not enough money, a
    /// cap or too many jobs running).
    #[error("confirm refused: {0}")]
    Confirm(BillingError),
    /// A job could not be ordered: the job store or queue failed after the money was held (ordering again with
    /// the same quote finishes it).
    #[error("job not queued: {0}")]
    Submit(rei_core::jobs::JobError),
    /// The asset store failed during a retention sweep.
    #[error("asset sweep failed: {0}")]
    Assets(#[from] rei_core::generation::AssetError),
    /// The maintenance task panicked: a broken invariant, reported as such.
    #[error("the maintenance task panicked: {reason}")]
    MaintenancePanicked {
        /// The panic's message.
        reason: String,
    },
    /// Old HTTP replay slots or bot updates could not be purged.
    #[error("purging old records failed: {reason}")]
    Purge {
        /// What failed.
        reason: String,
    },
}

/// Versions as `1, 2, 3`.
struct Versions<'a>(&'a [i64]);

impl fmt::Display for Versions<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, v) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_migrations_are_listed_with_what_to_run() {
        // Proves the refusal under `MigrateMode::Check` names the versions, comma-separated, and the command.
        let e = EngineError::MigrationsPending { pending: vec![1, 2, 3] };
        assert_eq!(e.to_string(), "the database lacks migrations 1, 2, 3: run `rei migrate`");
    }
}
