//! The in-memory quote store and its conformance suite.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;

use crate::billing::{QuoteRecord, QuoteStore};
use crate::ids::{ProductId, QuoteId, UserId};
use crate::ledger::StoreError;
use crate::money::Money;
use crate::pricing::Tier;
use crate::time::Timestamp;

/// Quotes in a mutex.
#[derive(Debug, Default)]
pub struct MemoryQuotes {
    quotes: Mutex<BTreeMap<QuoteId, QuoteRecord>>,
}

impl MemoryQuotes {
    /// An empty store.
    #[must_use]
    pub fn new() -> MemoryQuotes {
        MemoryQuotes::default()
    }
}

#[async_trait]
impl QuoteStore for MemoryQuotes {
    async fn put(&self, quote: QuoteRecord) -> Result<QuoteRecord, StoreError> {
        let mut m = self.quotes.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(m.entry(quote.id).or_insert(quote).clone())
    }

    async fn get(&self, id: QuoteId) -> Result<Option<QuoteRecord>, StoreError> {
        Ok(self.quotes.lock().unwrap_or_else(PoisonError::into_inner).get(&id).cloned())
    }

    async fn purge_expired(&self, before: Timestamp, limit: usize) -> Result<usize, StoreError> {
        let mut m = self.quotes.lock().unwrap_or_else(PoisonError::into_inner);
        let gone: Vec<QuoteId> = m.values().filter(|q| q.expires_at <= before).map(|q| q.id).take(limit).collect();
        for id in &gone {
            m.remove(id);
        }
        Ok(gone.len())
    }
}

fn record(id: u128, price: i64, expires_ms: i64) -> QuoteRecord {
    QuoteRecord {
        id: QuoteId::from(id),
        user: UserId(1),
        product: ProductId::parse("image.nano-banana").unwrap_or_else(|e| panic!("{e}")),
        units: 1,
        tier: Tier::Basic,
        price: Money::from_kopecks(price),
        created_at: Timestamp::from_millis(0),
        expires_at: Timestamp::from_millis(expires_ms),
    }
}

/// Checks every MUST of [`QuoteStore`] on fresh stores from `make`. Panics on the first broken one.
pub async fn quote_store_conformance<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn QuoteStore>>,
{
    let s = make().await;
    // A shown price never changes: a second put under the same id keeps the first.
    let first = record(1, 1_000, 5_000);
    assert_eq!(s.put(first.clone()).await.ok(), Some(first.clone()));
    assert_eq!(s.put(record(1, 1, 5_000)).await.ok(), Some(first.clone()));
    assert_eq!(s.get(QuoteId::from(1)).await.ok().flatten(), Some(first));
    assert_eq!(s.get(QuoteId::from(2)).await.ok().flatten(), None);
    // Purging takes only what expired at or before the instant, bounded by the limit.
    s.put(record(2, 1, 1_000)).await.ok();
    s.put(record(3, 1, 2_000)).await.ok();
    s.put(record(4, 1, 2_000)).await.ok();
    assert_eq!(s.purge_expired(Timestamp::from_millis(999), 10).await.ok(), Some(0));
    assert_eq!(s.purge_expired(Timestamp::from_millis(2_000), 2).await.ok(), Some(2));
    assert_eq!(s.purge_expired(Timestamp::from_millis(2_000), 10).await.ok(), Some(1));
    assert!(s.get(QuoteId::from(1)).await.ok().flatten().is_some(), "an unexpired quote stays");
}
