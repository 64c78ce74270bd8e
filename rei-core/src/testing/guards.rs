//! The in-memory rate limiter and audit log, and their conformance suites.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;

use crate::guards::{
    Appended, AuditAction, AuditFilter, AuditLog, AuditLogError, AuditOutcome, AuditRecord, AuditTarget, Decision,
    Gcra, LimiterError, RateLimitKey, RateLimitPolicy, RateLimiter, Reason, Role,
};
use crate::ids::{AuditId, IdempotencyKey, UserId};
use crate::time::Timestamp;

/// The in-process limiter is the in-memory adapter of [`RateLimiter`].
pub use crate::guards::InProcessRateLimiter as MemoryRateLimiter;

/// The audit log in a mutex.
#[derive(Debug, Default)]
pub struct MemoryAuditLog {
    records: Mutex<Vec<AuditRecord>>,
}

impl MemoryAuditLog {
    /// An empty log.
    #[must_use]
    pub fn new() -> MemoryAuditLog {
        MemoryAuditLog::default()
    }
}

#[async_trait]
impl AuditLog for MemoryAuditLog {
    async fn append(&self, record: AuditRecord) -> Result<Appended, AuditLogError> {
        let mut records = self.records.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(first) = records.iter().find(|r| r.request_key == record.request_key) {
            return Ok(Appended::Duplicate(first.id));
        }
        let id = record.id;
        records.push(record);
        Ok(Appended::New(id))
    }

    async fn list(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>, AuditLogError> {
        let records = self.records.lock().unwrap_or_else(PoisonError::into_inner);
        let mut hits: Vec<AuditRecord> = records.iter().filter(|r| filter.matches(r)).cloned().collect();
        hits.sort_by_key(|r| std::cmp::Reverse((r.at, r.id)));
        hits.truncate(usize::try_from(filter.effective_limit()).unwrap_or(usize::MAX));
        Ok(hits)
    }
}

fn policy(rate: u32, period_ms: u64, burst: u32) -> RateLimitPolicy {
    RateLimitPolicy::new(rate, Duration::from_millis(period_ms), burst).unwrap_or_else(|e| panic!("policy: {e}"))
}

/// Checks every MUST of [`RateLimiter`] on fresh limiters from `make`. Panics on the first broken one.
pub async fn rate_limiter_conformance<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn RateLimiter>>,
{
    let t0 = Timestamp::from_millis(1_800_000_000_000);
    let alice = RateLimitKey::User(UserId(1));
    let bob = RateLimitKey::User(UserId(2));
    let p = policy(10, 1_000, 5);

    // A burst is admitted at once, then one request per emission interval (100 ms here).
    let l = make().await;
    for i in 0..5 {
        let d = l.check(&alice, &p, 1, t0).await;
        assert!(matches!(d, Ok(Decision::Allow { .. })), "burst request {i}: {d:?}");
    }
    let denied = l.check(&alice, &p, 1, t0).await;
    let Ok(Decision::Deny { retry_after }) = denied else { panic!("the sixth request must be denied: {denied:?}") };
    assert_eq!(retry_after, Duration::from_millis(100));
    // A denial changes nothing: asking again gives the same answer.
    assert_eq!(l.check(&alice, &p, 1, t0).await, Ok(Decision::Deny { retry_after }));
    // Keys are independent.
    assert!(matches!(l.check(&bob, &p, 1, t0).await, Ok(Decision::Allow { .. })));
    // Retrying at now + retry_after is admitted, not a millisecond earlier.
    let early = t0.plus(retry_after).minus(Duration::from_millis(1));
    assert!(matches!(l.check(&alice, &p, 1, early).await, Ok(Decision::Deny { .. })));
    assert!(matches!(l.check(&alice, &p, 1, t0.plus(retry_after)).await, Ok(Decision::Allow { .. })));
    // A cost above the burst can never pass and touches nothing.
    assert!(matches!(l.check(&bob, &p, 6, t0).await, Err(LimiterError::CostOverBurst(_))));

    // Every decision equals the pure GCRA on the same history.
    let l = make().await;
    let p = policy(7, 1_000, 3);
    let mut tat = None;
    let mut now = t0;
    for step in 0u64..200 {
        now = now.plus(Duration::from_millis((step * 37) % 190));
        let cost = u32::try_from(1 + step % 3).unwrap_or(1);
        let expected = Gcra::check(&p, tat, now, cost).unwrap_or_else(|e| panic!("{e}"));
        if let Decision::Allow { new_tat } = expected {
            tat = Some(new_tat);
        }
        assert_eq!(l.check(&alice, &p, cost, now).await, Ok(expected), "step {step}");
    }
}

fn record(id: u128, at_ms: i64, actor: i64, action: AuditAction, key: &str) -> AuditRecord {
    AuditRecord {
        id: AuditId::from(id),
        at: Timestamp::from_millis(at_ms),
        actor: UserId(actor),
        actor_role: Role::Admin,
        action,
        target: AuditTarget::parse("user:42").unwrap_or_else(|e| panic!("{e}")),
        reason: Reason::parse("support ticket").unwrap_or_else(|e| panic!("{e}")),
        request_key: IdempotencyKey::parse(key).unwrap_or_else(|e| panic!("{e}")),
        outcome: AuditOutcome::Done,
    }
}

/// Checks every MUST of [`AuditLog`] on fresh logs from `make`. Panics on the first broken one.
pub async fn audit_log_conformance<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn AuditLog>>,
{
    let log = make().await;
    // One request key, one row: the first record wins.
    assert_eq!(log.append(record(1, 10, 7, AuditAction::Adjust, "r1")).await, Ok(Appended::New(AuditId::from(1))));
    assert_eq!(log.append(record(2, 11, 8, AuditAction::Ban, "r1")).await, Ok(Appended::Duplicate(AuditId::from(1))));
    log.append(record(3, 20, 7, AuditAction::Refund, "r2")).await.ok();
    log.append(record(4, 30, 8, AuditAction::Adjust, "r3")).await.ok();
    log.append(record(5, 30, 7, AuditAction::Adjust, "r4")).await.ok();
    let ids = |v: Vec<AuditRecord>| v.iter().map(|r| r.id.as_u128()).collect::<Vec<_>>();
    // Newest first, by time then id.
    assert_eq!(ids(log.list(&AuditFilter::latest(10)).await.unwrap_or_default()), vec![5, 4, 3, 1]);
    assert_eq!(ids(log.list(&AuditFilter::latest(2)).await.unwrap_or_default()), vec![5, 4]);
    let by_actor = AuditFilter { actor: Some(UserId(7)), ..AuditFilter::latest(10) };
    assert_eq!(ids(log.list(&by_actor).await.unwrap_or_default()), vec![5, 3, 1]);
    let adjusts_before = AuditFilter {
        action: Some(AuditAction::Adjust),
        before: Some(Timestamp::from_millis(30)),
        ..AuditFilter::latest(10)
    };
    assert_eq!(ids(log.list(&adjusts_before).await.unwrap_or_default()), vec![1]);
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::billing::{AdminError, AdminRequest, AdminService, BillingConfig, BillingService};
    use crate::ids::{HoldId, PaymentId};
    use crate::money::Money;
    use crate::pricing::{Pricer, PricingConfig};
    use crate::testing::billing::MemoryQuotes;
    use crate::testing::clock::{ManualClock, SeqIds};
    use crate::testing::ledger::MemoryLedger;

    #[tokio::test]
    async fn memory_limiter_passes_the_conformance_suite() {
        // Proves the in-memory limiter keeps every MUST of its port.
        rate_limiter_conformance(|| async { Arc::new(MemoryRateLimiter::new()) as Arc<dyn RateLimiter> }).await;
    }

    #[tokio::test]
    async fn memory_audit_log_passes_the_conformance_suite() {
        // Proves the in-memory audit log keeps every MUST of its port.
        audit_log_conformance(|| async { Arc::new(MemoryAuditLog::new()) as Arc<dyn AuditLog> }).await;
    }

    fn admin() -> (AdminService, Arc<BillingService>, Arc<MemoryAuditLog>) {
        let clock = Arc::new(ManualClock::new(Timestamp::from_millis(1_800_000_000_000)));
        let ids = Arc::new(SeqIds::new(3));
        let billing = Arc::new(BillingService::new(
            Arc::new(MemoryLedger::new()),
            Arc::new(MemoryQuotes::new()),
            clock.clone(),
            ids.clone(),
            Pricer::new(PricingConfig::example()),
            BillingConfig::default(),
        ));
        let audit = Arc::new(MemoryAuditLog::new());
        (AdminService::new(billing.clone(), audit.clone(), clock, ids), billing, audit)
    }

    fn request(role: Role, key: &str) -> AdminRequest {
        AdminRequest {
            actor: UserId(900),
            role,
            reason: Reason::parse("goodwill after an outage").expect("reason"),
            key: IdempotencyKey::parse(key).expect("key"),
        }
    }

    #[tokio::test]
    async fn admin_adjustments_are_authorized_idempotent_and_audited_once() {
        // Proves a user cannot adjust, an admin can, a retried request moves money once and audits once, and
        // a refused debit is audited as failed.
        let (admin, billing, audit) = admin();
        let user = UserId(42);
        let e = admin.adjust(&request(Role::User, "req-1"), user, Money::from_kopecks(500)).await;
        assert!(matches!(e, Err(AdminError::Forbidden(_))), "{e:?}");
        assert_eq!(billing.balance(user).await.expect("b").available, Money::ZERO);

        admin.adjust(&request(Role::Admin, "req-2"), user, Money::from_kopecks(500)).await.expect("adjust");
        admin.adjust(&request(Role::Admin, "req-2"), user, Money::from_kopecks(500)).await.expect("retry");
        assert_eq!(billing.balance(user).await.expect("b").available, Money::from_kopecks(500));

        let e = admin.adjust(&request(Role::Owner, "req-3"), user, Money::from_kopecks(-501)).await;
        assert!(matches!(e, Err(AdminError::Billing(_))), "{e:?}");

        let records = audit.list(&AuditFilter::latest(10)).await.expect("list");
        let outcomes: Vec<(bool, bool, AuditOutcome)> = records
            .iter()
            .rev()
            .map(|r| {
                let key = r.request_key.as_str();
                (
                    key.starts_with("attempt:"),
                    key.ends_with("req-1") || key.ends_with("req-2") || key.ends_with("req-3"),
                    r.outcome,
                )
            })
            .collect();
        assert_eq!(
            outcomes,
            vec![
                (true, true, AuditOutcome::Forbidden),
                (false, true, AuditOutcome::Done),
                (true, true, AuditOutcome::Failed),
            ],
            "attempts that did nothing are recorded under keys of their own"
        );
        assert_eq!(records[1].request_key.as_str(), "req-2", "the request key stands for what the ledger did");
        assert!(records.iter().all(|r| r.actor == UserId(900) && r.action == AuditAction::Adjust));
    }

    #[tokio::test]
    async fn admin_refunds_stay_within_the_capture() {
        // Proves an admin refund goes through the ledger's bound and is audited.
        let (admin, billing, audit) = admin();
        let user = UserId(5);
        billing.top_up(user, Money::from_kopecks(1_000), PaymentId::parse("p").expect("id")).await.expect("top-up");
        let k = |s: &str| IdempotencyKey::parse(s).expect("key");
        billing.hold(user, HoldId::from(1), Money::from_kopecks(400), None, k("h")).await.expect("hold");
        billing.capture(HoldId::from(1), Money::from_kopecks(300), k("c")).await.expect("capture");
        admin.refund(&request(Role::Admin, "r-1"), HoldId::from(1), Money::from_kopecks(300)).await.expect("refund");
        let e = admin.refund(&request(Role::Admin, "r-2"), HoldId::from(1), Money::from_kopecks(1)).await;
        assert!(matches!(e, Err(AdminError::Billing(_))), "{e:?}");
        assert_eq!(billing.balance(user).await.expect("b").available, Money::from_kopecks(1_000));
        assert_eq!(audit.list(&AuditFilter::latest(10)).await.expect("list").len(), 2);
    }

    /// An audit log that fails every append while told to.
    struct FlakyAudit {
        inner: MemoryAuditLog,
        down: std::sync::atomic::AtomicBool,
    }

    #[async_trait::async_trait]
    impl AuditLog for FlakyAudit {
        async fn append(&self, record: AuditRecord) -> Result<Appended, AuditLogError> {
            if self.down.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(AuditLogError::Unavailable { reason: "down".into() });
            }
            self.inner.append(record).await
        }

        async fn list(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>, AuditLogError> {
            self.inner.list(filter).await
        }
    }

    #[tokio::test]
    async fn the_record_under_a_request_key_is_what_the_ledger_did() {
        // Proves a debit refused for want of funds and retried successfully with the same key is recorded as
        // done, and an audit log down after the ledger moved gets the done record when the request is retried,
        // with the money moved once.
        let (_, billing, _) = admin();
        let clock = Arc::new(ManualClock::new(Timestamp::from_millis(1_800_000_000_000)));
        let audit = Arc::new(FlakyAudit { inner: MemoryAuditLog::new(), down: false.into() });
        let admin = AdminService::new(billing.clone(), audit.clone(), clock, Arc::new(SeqIds::new(70)));
        let user = UserId(43);
        let debit = request(Role::Admin, "debit-1");
        let e = admin.adjust(&debit, user, Money::from_kopecks(-300)).await;
        assert!(matches!(e, Err(AdminError::Billing(_))), "no funds yet: {e:?}");
        billing.top_up(user, Money::from_kopecks(300), PaymentId::parse("p43").expect("id")).await.expect("top-up");
        admin.adjust(&debit, user, Money::from_kopecks(-300)).await.expect("the retry applies");
        let done = audit.list(&AuditFilter::latest(10)).await.expect("list");
        let under_key: Vec<AuditOutcome> =
            done.iter().filter(|r| r.request_key.as_str() == "debit-1").map(|r| r.outcome).collect();
        assert_eq!(under_key, vec![AuditOutcome::Done], "recorded as the success");

        let credit = request(Role::Admin, "credit-1");
        audit.down.store(true, std::sync::atomic::Ordering::SeqCst);
        let e = admin.adjust(&credit, user, Money::from_kopecks(200)).await;
        assert!(matches!(e, Err(AdminError::Audit(_))), "{e:?}");
        audit.down.store(false, std::sync::atomic::Ordering::SeqCst);
        admin.adjust(&credit, user, Money::from_kopecks(200)).await.expect("retry writes the record");
        assert_eq!(billing.balance(user).await.expect("b").available, Money::from_kopecks(200), "moved once");
        let records = audit.list(&AuditFilter::latest(10)).await.expect("list");
        assert!(records.iter().any(|r| r.request_key.as_str() == "credit-1" && r.outcome == AuditOutcome::Done));
    }
}
