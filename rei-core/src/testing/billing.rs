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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::billing::{BillingConfig, BillingError, BillingService};
    use crate::caps::SpendCaps;
    use crate::ids::{HoldId, IdempotencyKey, PaymentId, ProviderId};
    use crate::ledger::{LedgerError, SystemAccount};
    use crate::pricing::{Pricer, PricingConfig};
    use crate::testing::clock::{ManualClock, SeqIds};
    use crate::testing::ledger::MemoryLedger;

    const ALICE: UserId = UserId(1);
    const BOB: UserId = UserId(2);

    fn product() -> ProductId {
        ProductId::parse("image.nano-banana").expect("id")
    }

    fn service(config: BillingConfig) -> (BillingService, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::new(Timestamp::from_millis(1_800_000_000_000)));
        let svc = BillingService::new(
            Arc::new(MemoryLedger::new()),
            Arc::new(MemoryQuotes::new()),
            clock.clone(),
            Arc::new(SeqIds::new(1)),
            Pricer::new(PricingConfig::example()),
            config,
        );
        (svc, clock)
    }

    #[tokio::test]
    async fn memory_quotes_pass_the_conformance_suite() {
        // Proves the in-memory quote store keeps every MUST of its port.
        quote_store_conformance(|| async { Arc::new(MemoryQuotes::new()) as Arc<dyn QuoteStore> }).await;
    }

    #[tokio::test]
    async fn quote_confirm_capture_charges_exactly_once() {
        // Proves the money flow of one generation: a confirmed quote holds its price, a retried confirm holds
        // nothing more, a retried capture charges nothing more.
        let (svc, _) = service(BillingConfig::default());
        let first = svc.top_up(ALICE, Money::from_kopecks(100_000), PaymentId::parse("pay-1").expect("id"));
        assert!(!first.await.expect("top-up").replayed);
        let again = svc.top_up(ALICE, Money::from_kopecks(100_000), PaymentId::parse("pay-1").expect("id"));
        let again = again.await.expect("replay");
        assert!(again.replayed, "the same payment twice is a replay");
        assert_eq!(again.receipt.amount, Money::from_kopecks(100_000));
        let quote = svc.quote(ALICE, &product(), 2, crate::pricing::Tier::Basic).await.expect("quote");
        assert!(quote.price.is_positive());
        let c = svc.confirm(ALICE, quote.id, None).await.expect("confirm");
        assert!(!c.replayed);
        let again = svc.confirm(ALICE, quote.id, None).await.expect("confirm again");
        assert!(again.replayed, "a second confirm is a replay");
        let b = svc.balance(ALICE).await.expect("balance");
        assert_eq!(b.held, quote.price, "held once");
        let key = IdempotencyKey::derived("capture", c.hold).expect("test key");
        assert!(!svc.capture(c.hold, quote.price, key.clone()).await.expect("capture").replayed);
        assert!(svc.capture(c.hold, quote.price, key).await.expect("capture replay").replayed);
        let b = svc.balance(ALICE).await.expect("balance");
        let expected = Money::from_kopecks(100_000).checked_sub(quote.price).expect("fits");
        assert_eq!((b.available, b.held), (expected, Money::ZERO));
        let revenue = svc.ledger().system_balance(SystemAccount::Revenue).await.expect("revenue");
        assert_eq!(revenue, quote.price, "charged exactly once");
        assert!(svc.verify().await.expect("verify").is_clean());
    }

    #[tokio::test]
    async fn capture_hold_derives_the_key_the_job_service_captures_with() {
        // Proves `capture_hold` charges once however often it is called, and that a job's capture of the same
        // hold (key `capture:<job>`, the job numbered as its hold) is a replay of it, not a second charge.
        let (svc, _) = service(BillingConfig::default());
        svc.top_up(ALICE, Money::from_kopecks(100_000), PaymentId::parse("pay-1").expect("id")).await.expect("top-up");
        let quote = svc.quote(ALICE, &product(), 1, crate::pricing::Tier::Basic).await.expect("quote");
        let c = svc.confirm(ALICE, quote.id, None).await.expect("confirm");
        let first = svc.capture_hold(c.hold, quote.price).await.expect("capture");
        assert!(!first.replayed);
        assert_eq!(first.receipt.amount, quote.price);
        assert!(svc.capture_hold(c.hold, quote.price).await.expect("again").replayed);
        let job = crate::ids::JobId::from(c.hold.as_u128());
        let by_job = svc.capture(c.hold, quote.price, IdempotencyKey::derived("capture", job).expect("test key")).await;
        assert!(by_job.expect("the job's capture").replayed, "the job service's key is the same key");
        let revenue = svc.ledger().system_balance(SystemAccount::Revenue).await.expect("revenue");
        assert_eq!(revenue, quote.price, "charged exactly once");
    }

    #[tokio::test]
    async fn concurrent_confirms_hold_once() {
        // Proves that confirms racing on one quote build the same operation, so all but one are replays.
        let (svc, _) = service(BillingConfig::default());
        let svc = Arc::new(svc);
        svc.top_up(ALICE, Money::from_kopecks(100_000), PaymentId::parse("pay-1").expect("id")).await.expect("top-up");
        let quote = svc.quote(ALICE, &product(), 1, crate::pricing::Tier::Pro).await.expect("quote");
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let svc = svc.clone();
                tokio::spawn(async move { svc.confirm(ALICE, quote.id, None).await })
            })
            .collect();
        let mut fresh = 0;
        for t in tasks {
            let c = t.await.expect("join").expect("confirm");
            fresh += usize::from(!c.replayed);
        }
        assert_eq!(fresh, 1);
        assert_eq!(svc.balance(ALICE).await.expect("balance").held, quote.price);
    }

    #[tokio::test]
    async fn confirm_refuses_expired_foreign_and_unknown_quotes() {
        // Proves a quote is confirmable only by its user, only before it expires, and not at all if unknown.
        let (svc, clock) = service(BillingConfig::default());
        svc.top_up(ALICE, Money::from_kopecks(100_000), PaymentId::parse("pay-1").expect("id")).await.expect("top-up");
        let quote = svc.quote(ALICE, &product(), 1, crate::pricing::Tier::Basic).await.expect("quote");
        let e = svc.confirm(BOB, quote.id, None).await;
        assert!(matches!(e, Err(BillingError::QuoteOwner { .. })), "{e:?}");
        let e = svc.confirm(ALICE, QuoteId::from(12_345), None).await;
        assert!(matches!(e, Err(BillingError::QuoteNotFound { .. })), "{e:?}");
        clock.set(quote.expires_at);
        let e = svc.confirm(ALICE, quote.id, None).await;
        assert!(matches!(e, Err(BillingError::QuoteExpired { .. })), "{e:?}");
        assert_eq!(svc.balance(ALICE).await.expect("balance").held, Money::ZERO);
    }

    #[tokio::test]
    async fn provider_budgets_and_user_caps_come_from_configuration() {
        // Proves configured caps reach the ledger: a provider's daily budget refuses a hold that would pass it.
        let kling = ProviderId::parse("kling").expect("id");
        let config = BillingConfig {
            provider_budgets: BTreeMap::from([(kling.clone(), Money::from_kopecks(100))]),
            user_caps: SpendCaps { user_daily: Some(Money::from_kopecks(50_000)), ..SpendCaps::NONE },
            ..BillingConfig::default()
        };
        let (svc, _) = service(config);
        svc.top_up(ALICE, Money::from_kopecks(100_000), PaymentId::parse("pay-1").expect("id")).await.expect("top-up");
        let quote = svc.quote(ALICE, &product(), 1, crate::pricing::Tier::Basic).await.expect("quote");
        assert!(quote.price > Money::from_kopecks(100), "the example image costs more than the budget");
        let e = svc.confirm(ALICE, quote.id, Some(&kling)).await;
        assert!(matches!(e, Err(BillingError::Ledger(LedgerError::SpendCap(_)))), "{e:?}");
        svc.confirm(ALICE, quote.id, None).await.expect("no provider, no budget");
    }

    #[tokio::test]
    async fn the_reaper_expires_lapsed_holds_once() {
        // Proves the reaper gives back holds past their TTL and leaves live ones alone.
        let (svc, clock) = service(BillingConfig { hold_ttl: Duration::from_secs(60), ..BillingConfig::default() });
        svc.top_up(ALICE, Money::from_kopecks(10_000), PaymentId::parse("pay-1").expect("id")).await.expect("top-up");
        let k = |s: &str| IdempotencyKey::parse(s).expect("key");
        svc.hold(ALICE, HoldId::from(1), Money::from_kopecks(1_000), None, k("h1")).await.expect("hold");
        clock.advance(Duration::from_secs(30));
        svc.hold(ALICE, HoldId::from(2), Money::from_kopecks(1_000), None, k("h2")).await.expect("hold");
        clock.advance(Duration::from_secs(31));
        let report = svc.reap_expired().await.expect("reap");
        assert_eq!(report.expired, vec![HoldId::from(1)]);
        assert!(svc.reap_expired().await.expect("reap").expired.is_empty(), "nothing twice");
        let b = svc.balance(ALICE).await.expect("balance");
        assert_eq!((b.available, b.held), (Money::from_kopecks(9_000), Money::from_kopecks(1_000)));
    }
}
