//! The database adapters against real servers: the ledger conformance suite, the ledger model test, the hold
//! storm and the bank test on PostgreSQL and SQLite (from tasks and from several processes), and the
//! conformance suites of the other stores.
//!
//! PostgreSQL comes from `REI_TEST_POSTGRES_URL`, which `scripts/test` sets after starting a throwaway server;
//! each test gets its own schema. SQLite tests each get their own file.

mod pg_ledger;
mod processes;
mod redis_queue;
mod sql_queue;
mod sqlite_ledger;
mod stores;
mod support;
mod workloads;
