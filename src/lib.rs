//! REI: the billing and routing engine for AI-generation chat bots.
//!
//! A bot that sells generations (images, videos) uses REI to show a price and take confirmation, hold the
//! money, run the job, charge exactly once on success and give the money back on failure, on an append-only,
//! double-entry ledger where every money move is idempotent.
//!
//! # The engine
//!
//! [`Engine`] is the one entry point: [`Engine::open`] takes a database URL (`sqlite://rei.db`, the embedded
//! default, or `postgres://…` with the `postgres` feature), applies the embedded migrations (or, with
//! [`MigrateMode::Check`], refuses to open a database that lacks them) and hands out the services, all sharing
//! one clock, one id source and one caps configuration. [`Engine::builder`] sets everything else by name
//! ([`EngineConfig`], each field with its default), and swaps the price list, the clock, the ids, the job
//! queue or the notifier.
//!
//! - [`Engine::billing`] — [`BillingService`](core::billing::BillingService): top-ups, quotes, confirms (a
//!   hold, with spend caps checked in the same atomic step), captures, releases, refunds, adjustments,
//!   balances and `verify`.
//! - [`Engine::usage`] — [`UsageService`](core::usage::UsageService): metered sessions, held a chunk ahead and
//!   captured exactly at close.
//! - [`Engine::jobs`] — [`JobService`](core::jobs::JobService): the life of a generation job, with retries,
//!   leases and crash recovery; it captures or releases the job's hold.
//! - [`Engine::admin`] — [`AdminService`](core::billing::AdminService): adjustments and refunds by role,
//!   each written to the audit log.
//! - [`Engine::growth`] — [`Growth`](core::members::Growth) over [`Engine::members`] and [`Engine::promos`]:
//!   the trial on a member's first start, referral bonuses (on join, and a share of each top-up, as a
//!   [`TopUpObserver`](core::topups::TopUpObserver)), promo codes, and bans by role; every grant keyed.
//! - [`Engine::spawn_maintenance`] — one background task that expires lapsed holds and purges old quotes, in
//!   bounded passes, printing nothing.
//!
//! Every money move returns [`Applied`](core::ledger::Applied): the receipt, and whether the call was a
//! replay of an earlier one with the same idempotency key.
//!
//! ```
//! use rei::Engine;
//! use rei::core::ids::{PaymentId, ProductId, UserId};
//! use rei::core::money::Money;
//! use rei::core::pricing::Tier;
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     // A SQLite file in a fresh directory; a bot opens "sqlite://rei.db" or a postgres:// URL.
//!     let dir = std::env::temp_dir().join(format!("rei-doc-{}", std::process::id()));
//!     std::fs::create_dir_all(&dir)?;
//!     let engine = Engine::open(&format!("sqlite://{}", dir.join("rei.db").display())).await?;
//!     let billing = engine.billing();
//!     let user = UserId(42);
//!
//!     // A payment the gateway confirmed: credited once, however often the notice arrives.
//!     let paid = billing.top_up(user, Money::parse("500.00")?, PaymentId::parse("pay-1")?).await?;
//!     let again = billing.top_up(user, Money::parse("500.00")?, PaymentId::parse("pay-1")?).await?;
//!     assert!(!paid.replayed && again.replayed);
//!
//!     // A price with its breakdown and expiry; the user confirms and the price is held.
//!     let quote = billing.quote(user, &ProductId::parse("image.nano-banana")?, 1, Tier::Basic).await?;
//!     let held = billing.confirm(user, quote.id, None).await?;
//!
//!     // The generation succeeded: charge the hold, once (the key derives from the hold).
//!     let charged = billing.capture_hold(held.hold, quote.price).await?;
//!     assert_eq!(charged.receipt.amount, quote.price);
//!     assert!(billing.verify().await?.is_clean()); // every balance recomputed from the postings
//!
//!     engine.close().await;
//!     std::fs::remove_dir_all(&dir)?;
//!     Ok(())
//! }
//! ```
//!
//! # The money rules
//!
//! - No floating point: amounts are integer kopecks ([`Money`](core::money::Money)), rates are exact
//!   decimals ([`UnitPrice`](core::money::UnitPrice), [`Ratio`](core::money::Ratio)), and
//!   [`round_to_kopeck`](core::money::round_to_kopeck) (half away from zero) is the only way back to money.
//! - The ledger is append-only and double-entry: every transaction's postings sum to zero, and the database
//!   itself refuses to change or delete a posted row.
//! - A balance never goes below its overdraft limit (zero by default), enforced atomically by the store.
//! - Every money move carries an idempotency key derived from something stable (a payment id, a quote, a
//!   hold, a job, an admin request); a replay returns the first receipt and moves nothing.
//! - A hold ends exactly once: captured (the rest released in the same transaction), released, or expired.
//!
//! # Crates and features
//!
//! This facade re-exports [`core`] (the pure domain, its ports and services) and [`adapters`] (their
//! implementations). Features: `sqlite` (default), `postgres`, `redis` (the job queue in Redis, see
//! [`EngineBuilder::redis_url`](EngineBuilder)), `serde` (money as decimal strings, receipts, quotes and jobs),
//! `testing` (in-memory adapters and the conformance suites in `core::testing`). See `ARCHITECTURE.md` for
//! the map and the invariants.

pub use rei_adapters as adapters;
pub use rei_core as core;

#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub mod engine;

#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub use engine::{
    Database, Engine, EngineBuilder, EngineConfig, EngineError, Leadership, MaintenanceHandle, MaintenanceReport,
    MaintenanceTotals, MigrateMode, PipelineParts, REPLAY_RETENTION, UPDATE_RETENTION, WorkerOptions, WorkerReport,
    run_worker, sweep_assets,
};

/// The README's code, compiled and run as doctests.
#[cfg(all(doctest, feature = "sqlite"))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
