//! [`QuoteStore`] in PostgreSQL: one row per quote in `quotes`, written once and never changed; the steps are
//! shared with SQLite (`sql::stores::quotes`), the statements are PostgreSQL's.

use async_trait::async_trait;
use rei_core::billing::{QuoteRecord, QuoteStore};
use rei_core::ids::QuoteId;
use rei_core::ledger::StoreError;
use rei_core::time::Timestamp;
use sqlx::postgres::PgPool;

use crate::sql::stores::quotes::{self, QuoteSql};

/// The most quotes one [`QuoteStore::purge_expired`] call deletes, whatever its `limit`: one statement stays
/// short and a caller loops until a call deletes fewer than it asked for.
pub const PURGE_BATCH_MAX: usize = 10_000;

const SQL: QuoteSql = QuoteSql {
    insert: "INSERT INTO quotes (id, user_id, product, units, tier, price, created_ms, expires_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING \
             RETURNING id, user_id, product, units, tier, price, created_ms, expires_ms",
    by_id: "WHERE id = $1",
    // SKIP LOCKED lets two collectors purge side by side without waiting on each other's rows.
    purge: "DELETE FROM quotes WHERE id IN (SELECT id FROM quotes WHERE expires_ms <= $1 \
            ORDER BY expires_ms, id LIMIT $2 FOR UPDATE SKIP LOCKED)",
};

/// A [`QuoteStore`] over a PostgreSQL pool; the schema comes from [`super::migrate`].
#[derive(Debug, Clone)]
pub struct PgQuoteStore {
    pool: PgPool,
}

impl PgQuoteStore {
    /// A store over `pool`, which must be migrated.
    #[must_use]
    pub fn new(pool: PgPool) -> PgQuoteStore {
        PgQuoteStore { pool }
    }
}

#[async_trait]
impl QuoteStore for PgQuoteStore {
    async fn put(&self, quote: QuoteRecord) -> Result<QuoteRecord, StoreError> {
        quotes::put(&self.pool, &SQL, quote).await
    }

    async fn get(&self, id: QuoteId) -> Result<Option<QuoteRecord>, StoreError> {
        quotes::get(&self.pool, &SQL, id).await
    }

    async fn purge_expired(&self, before: Timestamp, limit: usize) -> Result<usize, StoreError> {
        quotes::purge_expired(&self.pool, &SQL, before, limit, PURGE_BATCH_MAX).await
    }
}
