//! The [`QuoteStore`] port: quotes shown to users, kept until confirmed or expired.

use async_trait::async_trait;

use crate::ids::{ProductId, QuoteId, UserId};
use crate::ledger::StoreError;
use crate::money::Money;
use crate::pricing::Tier;
use crate::time::Timestamp;

/// What confirming a quote needs: who it was shown to, what, and at what price until when. The breakdown is
/// for showing, not for keeping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuoteRecord {
    /// Its id.
    pub id: QuoteId,
    /// Who it was shown to; only they may confirm it.
    pub user: UserId,
    /// What is sold.
    pub product: ProductId,
    /// How many units.
    pub units: u64,
    /// The buyer's tier when quoted.
    pub tier: Tier,
    /// The locked price.
    pub price: Money,
    /// When it was made.
    pub created_at: Timestamp,
    /// The first instant it can no longer be confirmed.
    pub expires_at: Timestamp,
}

/// Where quotes live.
///
/// Contract: `put` of an id that exists MUST keep the first record and return it (a quote's price never
/// changes once shown); `get` MUST return exactly what was put; `purge_expired` MUST delete only quotes whose
/// `expires_at` is at or before `before`.
#[async_trait]
pub trait QuoteStore: Send + Sync {
    /// Stores a quote, or returns the one stored under its id.
    ///
    /// # Errors
    /// [`StoreError`] when the store failed.
    async fn put(&self, quote: QuoteRecord) -> Result<QuoteRecord, StoreError>;

    /// A quote, if it exists.
    ///
    /// # Errors
    /// [`StoreError`] when the store failed.
    async fn get(&self, id: QuoteId) -> Result<Option<QuoteRecord>, StoreError>;

    /// Deletes up to `limit` quotes that expired at or before `before`; returns how many went.
    ///
    /// # Errors
    /// [`StoreError`] when the store failed.
    async fn purge_expired(&self, before: Timestamp, limit: usize) -> Result<usize, StoreError>;
}
