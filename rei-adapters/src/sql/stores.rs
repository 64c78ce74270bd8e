//! The job, job-queue, quote, usage-session, attempt, payment, audit, chat and member store logic that the
//! PostgreSQL and SQLite adapters share: reading columns into domain types, the parameters a domain value binds
//! as, the stored names of enums, the steps of each port operation, and the mapping of errors into each port's
//! error type. The engine modules keep only what differs: SQL text (placeholders `$1` against `?1`, locking
//! clauses), driver types, and how they make a write durable.

// Without an engine there is nothing to share.
#![cfg(any(feature = "postgres", feature = "sqlite"))]

pub(crate) mod access;
pub(crate) mod attempts;
pub(crate) mod audit;
pub(crate) mod board;
pub(crate) mod chat;
pub(crate) mod engine;
pub(crate) mod fields;
pub(crate) mod jobs;
pub(crate) mod members;
pub(crate) mod payments;
pub(crate) mod queue;
pub(crate) mod quotes;
pub(crate) mod reports;
pub(crate) mod usage;
pub(crate) mod values;
