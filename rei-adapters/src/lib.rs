//! Driven adapters of REI's ports: one module per technology, each behind its cargo feature.
//!
//! - [`system`]: the system clock and time-ordered ids (always on).
//! - `sql`: what the database adapters share: database URLs, id encoding, the migration list, error mapping.
//! - `postgres` (feature `postgres`): the ledger and the other stores in PostgreSQL, for scale.
//! - `sqlite` (feature `sqlite`): the same stores in one SQLite file, the embedded default.
//! - `redis` (feature `redis`): the job queue and the rate limiter shared by every process, in Redis.
//! - `http` (feature `http`): the HTTP client the provider adapters share, and bounded downloads.
//! - `assets` (feature `assets`): the asset store in a local directory or (feature `s3`) an S3-compatible bucket.
//! - `kling` (feature `kling`): Kling's official video API (text, image and video to video), its JWT and callbacks.
//! - `gemini` (feature `gemini`): Google's Gemini API `generateContent`, the "Nano Banana" image models.
//! - `yookassa` (feature `yookassa`): YooKassa API v3, payments and refunds.
//! - `telegram` (feature `telegram`): the Telegram Bot API: Stars payments and the reader of webhook updates.
//! - `fakes` (feature `fakes`): local fake servers of the external APIs, for tests, the sandbox and benchmarks.

pub mod system;

#[cfg(feature = "sql")]
pub mod sql;

#[cfg(feature = "postgres")]
pub mod postgres;

#[cfg(feature = "sqlite")]
pub mod sqlite;

#[cfg(feature = "redis")]
pub mod redis;

#[cfg(feature = "assets")]
pub mod assets;

#[cfg(feature = "fakes")]
pub mod fakes;

#[cfg(feature = "http")]
pub mod http;

#[cfg(feature = "gemini")]
pub mod gemini;
#[cfg(feature = "kling")]
pub mod kling;
#[cfg(feature = "telegram")]
pub mod telegram;
#[cfg(feature = "yookassa")]
pub mod yookassa;

/// The driver's pool and error types, so that the facade and binaries can hold a pool without depending on the
/// driver.
#[cfg(feature = "sql")]
pub mod sqlx_pools {
    pub use sqlx::Error;
    #[cfg(feature = "postgres")]
    pub use sqlx::postgres::PgPool;
    #[cfg(feature = "sqlite")]
    pub use sqlx::sqlite::SqlitePool;
}
