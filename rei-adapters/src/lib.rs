//! Driven adapters of REI's ports: one module per technology, each behind its cargo feature.
//!
//! - [`system`]: the system clock and time-ordered ids (always on).
//! - `sql`: what the database adapters share: database URLs, id encoding, the migration list, error mapping.
//! - `postgres` (feature `postgres`): the ledger and the other stores in PostgreSQL, for scale.
//! - `sqlite` (feature `sqlite`): the same stores in one SQLite file, the embedded default.

pub mod system;

#[cfg(feature = "sql")]
pub mod sql;

#[cfg(feature = "postgres")]
pub mod postgres;

#[cfg(feature = "sqlite")]
pub mod sqlite;
