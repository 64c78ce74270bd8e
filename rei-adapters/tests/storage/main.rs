//! The adapters against real servers: the ledger conformance suite, the ledger model test, the hold storm and
//! the bank test on PostgreSQL and SQLite (from tasks and from several processes), the conformance suites of
//! the other stores (members and promo codes among them), the asset store on a real directory, the Kling,
//! Gemini, YooKassa and Telegram adapters against their local fake servers, and top-ups reconciled end to end.
//!
//! PostgreSQL comes from `REI_TEST_POSTGRES_URL`, which `scripts/test` sets after starting a throwaway server;
//! each test gets its own schema. SQLite tests each get their own file.

#[cfg(feature = "assets")]
mod assets;
#[cfg(all(feature = "gemini", feature = "fakes"))]
mod gemini;
#[cfg(all(feature = "kling", feature = "fakes"))]
mod kling;
mod members;
mod pg_ledger;
mod processes;
#[cfg(all(feature = "yookassa", feature = "fakes"))]
mod reconciler;
mod redis_queue;
mod reports;
mod sql_queue;
mod sqlite_ledger;
mod stores;
mod support;
#[cfg(all(feature = "telegram", feature = "fakes"))]
mod telegram;
#[cfg(all(feature = "telegram", feature = "fakes"))]
mod telegram_bot;
mod workloads;
#[cfg(all(feature = "yookassa", feature = "fakes"))]
mod yookassa;
