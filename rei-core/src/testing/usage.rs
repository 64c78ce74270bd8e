//! The in-memory usage-session store and its conformance suite.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;

use crate::ids::{HoldId, SessionId, UserId};
use crate::money::{Money, UnitPrice};
use crate::time::Timestamp;
use crate::usage::{SessionState, UsageError, UsageSession, UsageSessionStore};

/// Sessions in a mutex.
#[derive(Debug, Default)]
pub struct MemoryUsageSessions {
    sessions: Mutex<BTreeMap<SessionId, UsageSession>>,
}

impl MemoryUsageSessions {
    /// An empty store.
    #[must_use]
    pub fn new() -> MemoryUsageSessions {
        MemoryUsageSessions::default()
    }
}

fn same_version(a: &UsageSession, b: &UsageSession) -> bool {
    (a.state, a.chunks, a.used_units) == (b.state, b.chunks, b.used_units)
}

#[async_trait]
impl UsageSessionStore for MemoryUsageSessions {
    async fn insert(&self, session: UsageSession) -> Result<UsageSession, UsageError> {
        let mut m = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(m.entry(session.id).or_insert(session).clone())
    }

    async fn get(&self, id: SessionId) -> Result<Option<UsageSession>, UsageError> {
        Ok(self.sessions.lock().unwrap_or_else(PoisonError::into_inner).get(&id).cloned())
    }

    async fn update(&self, expected: &UsageSession, next: UsageSession) -> Result<(), UsageError> {
        let mut m = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        match m.get_mut(&expected.id) {
            Some(stored) if same_version(stored, expected) => {
                *stored = next;
                Ok(())
            }
            Some(_) => Err(UsageError::Conflict { session: expected.id }),
            None => Err(UsageError::NotFound { session: expected.id }),
        }
    }

    async fn open_sessions(&self, limit: usize) -> Result<Vec<UsageSession>, UsageError> {
        let m = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        let mut open: Vec<UsageSession> = m.values().filter(|s| s.state == SessionState::Open).cloned().collect();
        open.sort_by_key(|s| (s.opened_at, s.id));
        open.truncate(limit);
        Ok(open)
    }
}

fn sample(id: u128, opened_ms: i64) -> UsageSession {
    UsageSession {
        id: SessionId::from(id),
        user: UserId(1),
        hold: HoldId::from(id),
        rate: UnitPrice::from_money(Money::from_kopecks(150)),
        chunk_units: 10,
        chunks: 1,
        used_units: 0,
        held: Money::from_kopecks(1_500),
        captured: Money::ZERO,
        state: SessionState::Open,
        opened_at: Timestamp::from_millis(opened_ms),
        expires_at: Timestamp::from_millis(opened_ms + 60_000),
        hold_ttl: Duration::from_secs(60),
    }
}

/// Checks every MUST of [`UsageSessionStore`] on fresh stores from `make`. Panics on the first broken one.
pub async fn usage_store_conformance<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn UsageSessionStore>>,
{
    // Inserting the same id twice keeps the first session.
    let s = make().await;
    let first = sample(1, 1_000);
    let mut other = sample(1, 1_000);
    other.chunks = 7;
    assert_eq!(s.insert(first.clone()).await.ok(), Some(first.clone()));
    assert_eq!(s.insert(other).await.ok(), Some(first.clone()), "a repeated insert returns the stored session");
    assert_eq!(s.get(SessionId::from(1)).await.ok().flatten(), Some(first.clone()));
    assert_eq!(s.get(SessionId::from(2)).await.ok().flatten(), None);

    // Update is a compare-and-set: a stale expectation is a conflict and changes nothing.
    let mut next = first.clone();
    next.chunks = 2;
    next.used_units = 5;
    assert!(s.update(&first, next.clone()).await.is_ok());
    let mut stale_next = first.clone();
    stale_next.chunks = 9;
    let stale = s.update(&first, stale_next).await;
    assert!(matches!(stale, Err(UsageError::Conflict { .. })), "{stale:?}");
    assert_eq!(s.get(SessionId::from(1)).await.ok().flatten(), Some(next.clone()));
    let missing = s.update(&sample(3, 0), sample(3, 0)).await;
    assert!(matches!(missing, Err(UsageError::NotFound { .. })), "{missing:?}");

    // Open sessions come oldest first, closed ones never, bounded by the limit.
    s.insert(sample(4, 500)).await.ok();
    let mut closed = sample(5, 100);
    closed.state = SessionState::Closed;
    s.insert(closed).await.ok();
    let open: Vec<u128> = s.open_sessions(10).await.unwrap_or_default().iter().map(|x| x.id.as_u128()).collect();
    assert_eq!(open, vec![4, 1]);
    assert_eq!(s.open_sessions(1).await.map(|v| v.len()).ok(), Some(1));
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::caps::{CapsConfig, SpendCaps};
    use crate::ids::{IdempotencyKey, PaymentId, TxId};
    use crate::ledger::{LedgerCommand, LedgerError, LedgerOp, LedgerStore};
    use crate::testing::clock::{ManualClock, SeqIds};
    use crate::testing::ledger::MemoryLedger;
    use crate::usage::{Metered, SessionSpec, UsageService};

    const ALICE: UserId = UserId(1);

    struct World {
        ledger: Arc<MemoryLedger>,
        clock: Arc<ManualClock>,
        svc: UsageService,
    }

    async fn world(funds_kop: i64, caps: SpendCaps) -> World {
        let ledger = Arc::new(MemoryLedger::new());
        let clock = Arc::new(ManualClock::new(Timestamp::from_millis(1_800_000_000_000)));
        let top_up = LedgerCommand {
            key: IdempotencyKey::derived("t", 1).expect("test key"),
            tx: TxId::from(u128::MAX),
            at: Timestamp::from_millis(1_800_000_000_000),
            op: LedgerOp::TopUp {
                user: ALICE,
                amount: Money::from_kopecks(funds_kop),
                payment: PaymentId::parse("p1").expect("id"),
            },
        };
        ledger.apply(top_up).await.expect("top-up");
        let svc = UsageService::new(
            ledger.clone(),
            Arc::new(MemoryUsageSessions::new()),
            clock.clone(),
            Arc::new(SeqIds::new(9)),
            CapsConfig { user: caps, provider_budgets: std::collections::BTreeMap::new() },
        );
        World { ledger, clock, svc }
    }

    fn spec() -> SessionSpec {
        // 1.50 per second, 10 seconds a chunk.
        SessionSpec {
            user: ALICE,
            rate: UnitPrice::parse("1.5").expect("rate"),
            chunk_units: 10,
            hold_ttl: Duration::from_secs(60),
            provider: None,
        }
    }

    #[tokio::test]
    async fn memory_store_passes_the_conformance_suite() {
        // Proves the in-memory session store keeps every MUST of its port.
        usage_store_conformance(|| async { Arc::new(MemoryUsageSessions::new()) as Arc<dyn UsageSessionStore> }).await;
    }

    #[tokio::test]
    async fn a_session_holds_ahead_and_captures_exactly_the_metered_amount() {
        // Proves chunked holds, extension while running, and an exact capture with the rest released.
        let w = world(10_000, SpendCaps::NONE).await;
        let id = SessionId::from(42);
        let s = w.svc.open(id, spec()).await.expect("open");
        assert_eq!(s.held, Money::from_kopecks(15_00));
        assert_eq!(w.svc.open(id, spec()).await.expect("reopen").held, s.held, "opening twice holds once");
        assert_eq!(w.ledger.balance(ALICE).await.expect("b").held, Money::from_kopecks(15_00));
        w.clock.advance(Duration::from_secs(5));
        let Metered::Running(s) = w.svc.meter(id, 5).await.expect("meter") else { panic!("must run") };
        assert_eq!((s.chunks, s.held), (2, Money::from_kopecks(30_00)), "a chunk ahead of use");
        let closed = w.svc.close(id, 13).await.expect("close");
        assert_eq!((closed.unbilled_units, &closed.shortfall), (0, &None), "everything metered was charged");
        let done = closed.session;
        assert_eq!(done.captured, Money::from_kopecks(19_50), "13 s at 1.50");
        let b = w.ledger.balance(ALICE).await.expect("b");
        assert_eq!((b.available, b.held), (Money::from_kopecks(80_50), Money::ZERO));
        assert!(matches!(w.svc.close(id, 13).await, Err(crate::usage::UsageError::NotOpen { .. })));
        assert!(w.ledger.verify().await.expect("verify").is_clean());
    }

    #[tokio::test]
    async fn a_session_stops_itself_when_the_next_chunk_cannot_be_held() {
        // Proves the auto-stop: funds for two chunks only, so the third raise fails and the session closes,
        // charging what the hold covered and no more.
        let w = world(30_00, SpendCaps::NONE).await;
        let id = SessionId::from(7);
        w.svc.open(id, spec()).await.expect("open");
        assert!(matches!(w.svc.meter(id, 3).await.expect("meter"), Metered::Running(_)));
        let stopped = w.svc.meter(id, 25).await.expect("meter");
        let Metered::Stopped { session, reason, unbilled_units } = stopped else {
            panic!("must stop, got {stopped:?}")
        };
        assert!(matches!(reason, LedgerError::InsufficientFunds { .. }), "{reason:?}");
        assert_eq!(session.state, SessionState::Stopped);
        assert_eq!(session.used_units, 20, "metering is capped at what the hold covered");
        assert_eq!(unbilled_units, 5, "the five seconds past the hold are told, not dropped");
        assert_eq!(session.captured, Money::from_kopecks(30_00));
        let b = w.ledger.balance(ALICE).await.expect("b");
        assert_eq!((b.available, b.held), (Money::ZERO, Money::ZERO));
    }

    #[tokio::test]
    async fn caps_stop_a_session_too() {
        // Proves the spend caps apply to every chunk, not only the first.
        let caps = SpendCaps { user_hourly: Some(Money::from_kopecks(20_00)), ..SpendCaps::NONE };
        let w = world(10_000, caps).await;
        let id = SessionId::from(8);
        w.svc.open(id, spec()).await.expect("open");
        let out = w.svc.meter(id, 1).await.expect("meter");
        assert!(matches!(out, Metered::Stopped { reason: LedgerError::SpendCap(_), .. }), "{out:?}");
        let b = w.ledger.balance(ALICE).await.expect("b");
        assert_eq!((b.available, b.held), (Money::from_kopecks(98_50), Money::ZERO), "1 s charged");
    }

    #[tokio::test]
    async fn a_session_survives_a_crash_between_the_ledger_and_its_own_record() {
        // Proves the ledger is the truth after a crash: a raise applied but not recorded is replayed (not a
        // conflict) on the next meter, and a close captured but not recorded ends the session with what was
        // captured, never charging twice.
        let w = world(10_000, SpendCaps::NONE).await;
        let id = SessionId::from(11);
        let s = w.svc.open(id, spec()).await.expect("open");
        // The next chunk's raise lands in the ledger, then the process dies before saving the session.
        let raise = LedgerOp::Raise {
            hold: s.hold,
            amount: Money::from_kopecks(1_500),
            expires_at: s.expires_at,
            caps: SpendCaps::NONE,
        };
        let key = IdempotencyKey::derived("session-raise", format!("{id}.2")).expect("test key");
        w.ledger.apply(LedgerCommand { key, tx: TxId::from(77), at: s.opened_at, op: raise }).await.expect("raise");
        w.clock.advance(Duration::from_secs(3));
        let Metered::Running(s) = w.svc.meter(id, 5).await.expect("meter after the crash") else { panic!("runs") };
        assert_eq!((s.chunks, s.held), (2, Money::from_kopecks(3_000)));
        assert_eq!(w.ledger.balance(ALICE).await.expect("b").held, Money::from_kopecks(3_000), "raised once");
        // A close captures, then the process dies before marking the session; the retry reports more units.
        let capture = LedgerOp::Capture { hold: s.hold, amount: Money::from_kopecks(900) };
        let key = IdempotencyKey::derived("session-close", id).expect("test key");
        w.ledger
            .apply(LedgerCommand { key, tx: TxId::from(78), at: crate::time::Clock::now(&*w.clock), op: capture })
            .await
            .expect("cap");
        let done = w.svc.close(id, 9).await.expect("close after the crash").session;
        assert_eq!((done.state, done.captured), (SessionState::Closed, Money::from_kopecks(900)));
        let b = w.ledger.balance(ALICE).await.expect("b");
        assert_eq!((b.available, b.held), (Money::from_kopecks(9_100), Money::ZERO), "charged once");
    }

    #[tokio::test]
    async fn units_never_go_backwards() {
        // Proves a meter reading below the last one is refused.
        let w = world(10_000, SpendCaps::NONE).await;
        let id = SessionId::from(9);
        w.svc.open(id, spec()).await.expect("open");
        w.svc.meter(id, 4).await.expect("meter");
        assert!(matches!(w.svc.meter(id, 3).await, Err(crate::usage::UsageError::UnitsBackwards { .. })));
    }

    #[tokio::test]
    async fn a_retried_open_replays_even_after_the_clock_moved() {
        // Proves opening the same session again a moment later holds once: the hold's fingerprint does not
        // cover its expiry, which comes from the clock.
        let w = world(10_000, SpendCaps::NONE).await;
        let id = SessionId::from(21);
        let first = w.svc.open(id, spec()).await.expect("open");
        w.clock.advance(Duration::from_secs(2));
        let again = w.svc.open(id, spec()).await.expect("retried open");
        assert_eq!(first, again);
        assert_eq!(w.ledger.balance(ALICE).await.expect("b").held, Money::from_kopecks(15_00), "held once");
    }

    #[tokio::test]
    async fn a_crash_between_the_session_row_and_its_hold_is_recovered() {
        // Proves the session row comes before the money: a session whose open died before the hold gets its
        // hold (once) when opened again, and one that is never opened again is ended by the reaper with
        // nothing held.
        let w = world(10_000, SpendCaps::NONE).await;
        let sessions = Arc::new(MemoryUsageSessions::new());
        let svc = UsageService::new(
            w.ledger.clone(),
            sessions.clone(),
            w.clock.clone(),
            Arc::new(SeqIds::new(50)),
            CapsConfig::default(),
        );
        let row = |id: u128| UsageSession {
            id: SessionId::from(id),
            user: ALICE,
            hold: HoldId::from(id),
            rate: spec().rate,
            chunk_units: 10,
            chunks: 1,
            used_units: 0,
            held: Money::from_kopecks(15_00),
            captured: Money::ZERO,
            state: SessionState::Open,
            opened_at: crate::time::Clock::now(&*w.clock),
            expires_at: crate::time::Clock::now(&*w.clock).plus(Duration::from_secs(60)),
            hold_ttl: Duration::from_secs(60),
        };
        sessions.insert(row(31)).await.expect("row of a crashed open");
        sessions.insert(row(32)).await.expect("row of another crashed open");
        svc.open(SessionId::from(31), spec()).await.expect("open again");
        svc.open(SessionId::from(31), spec()).await.expect("and again");
        assert_eq!(w.ledger.balance(ALICE).await.expect("b").held, Money::from_kopecks(15_00), "one hold");
        w.clock.advance(Duration::from_secs(61));
        let report = svc.reap(10).await.expect("reap");
        assert!(report.lapsed.contains(&SessionId::from(32)), "{report:?}");
        assert!(report.lapsed.contains(&SessionId::from(31)), "its hold lapsed too: {report:?}");
        let b = w.ledger.balance(ALICE).await.expect("b");
        assert_eq!((b.available, b.held), (Money::from_kopecks(10_000), Money::ZERO), "nothing stays locked");
        let s32 = sessions.get(SessionId::from(32)).await.expect("get").expect("row");
        assert_eq!((s32.state, s32.held), (SessionState::Stopped, Money::ZERO));
        assert!(w.ledger.verify().await.expect("verify").is_clean());
    }

    #[tokio::test]
    async fn metering_past_the_hold_raises_enough_or_says_what_went_unbilled() {
        // Proves a meter reading far past the hold raises it by every chunk needed at once, and a close past
        // what the funds can cover charges what they cover and reports the rest.
        let w = world(60_00, SpendCaps::NONE).await;
        let id = SessionId::from(41);
        w.svc.open(id, spec()).await.expect("open");
        let Metered::Running(s) = w.svc.meter(id, 25).await.expect("meter") else { panic!("must run") };
        assert_eq!((s.chunks, s.used_units, s.held), (4, 25, Money::from_kopecks(60_00)), "a chunk past 25 s");
        let closed = w.svc.close(id, 55).await.expect("close");
        assert_eq!(closed.session.captured, Money::from_kopecks(60_00), "the 40 s the funds covered");
        assert_eq!(closed.unbilled_units, 15);
        assert!(matches!(closed.shortfall, Some(LedgerError::InsufficientFunds { .. })), "{:?}", closed.shortfall);
        assert!(w.ledger.verify().await.expect("verify").is_clean());
    }

    #[tokio::test]
    async fn closing_after_the_hold_lapsed_charges_nothing_and_gives_the_money_back() {
        // Proves a close after the hold's TTL is an explicit outcome: nothing charged, every unit reported
        // unbilled, and the hold expired at once so the money is back without waiting for the reaper.
        let w = world(10_000, SpendCaps::NONE).await;
        let id = SessionId::from(51);
        w.svc.open(id, spec()).await.expect("open");
        w.clock.advance(Duration::from_secs(61));
        let closed = w.svc.close(id, 7).await.expect("close");
        assert_eq!((closed.session.captured, closed.unbilled_units), (Money::ZERO, 7));
        assert!(matches!(closed.shortfall, Some(LedgerError::HoldExpired { .. })), "{:?}", closed.shortfall);
        let b = w.ledger.balance(ALICE).await.expect("b");
        assert_eq!((b.available, b.held), (Money::from_kopecks(10_000), Money::ZERO));
    }

    #[tokio::test]
    async fn an_open_refused_for_funds_leaves_a_stopped_session_and_nothing_held() {
        // Proves a session whose first chunk cannot be held is stored stopped with nothing held, says why, and
        // is not reopened under the same id.
        let w = world(10_00, SpendCaps::NONE).await;
        let id = SessionId::from(61);
        let e = w.svc.open(id, spec()).await;
        assert!(matches!(e, Err(crate::usage::UsageError::Ledger(LedgerError::InsufficientFunds { .. }))), "{e:?}");
        let again = w.svc.open(id, spec()).await;
        assert!(
            matches!(again, Err(crate::usage::UsageError::NotOpen { state: SessionState::Stopped, .. })),
            "{again:?}"
        );
        let b = w.ledger.balance(ALICE).await.expect("b");
        assert_eq!((b.available, b.held), (Money::from_kopecks(10_00), Money::ZERO));
    }
}
