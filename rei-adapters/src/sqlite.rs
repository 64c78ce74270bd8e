//! SQLite adapters, the embedded default (one file, no server): the ledger (one writer, group-committed
//! batches), and the job, quote, usage-session and audit stores. Migrations are embedded
//! ([`crate::sql::SQLITE_MIGRATIONS`]).

pub mod audit;
pub mod jobs;
pub mod ledger;
pub mod quotes;
pub mod usage;
