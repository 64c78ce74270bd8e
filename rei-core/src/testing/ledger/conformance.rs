//! The ledger conformance suite: every MUST of [`LedgerStore`], checked against any implementation.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::caps::{CapScope, SpendCaps};
use crate::guards::Reason;
use crate::ids::{HoldId, IdempotencyKey, PaymentId, ProviderId, TxId, UserId};
use crate::ledger::{Applied, HoldState, LedgerCommand, LedgerError, LedgerOp, LedgerStore, OpKind, SystemAccount};
use crate::money::Money;
use crate::time::Timestamp;

use super::repeats;

const ALICE: UserId = UserId(1);
const BOB: UserId = UserId(2);
const T0: Timestamp = Timestamp::from_millis(1_800_000_000_000);
const TTL: Duration = Duration::from_secs(600);

fn rub(r: i64) -> Money {
    Money::from_kopecks(r * 100)
}

fn key(k: &str) -> IdempotencyKey {
    IdempotencyKey::derived("c", k).expect("test key")
}

fn pay(p: &str) -> PaymentId {
    match PaymentId::parse(p) {
        Ok(p) => p,
        Err(e) => panic!("test payment id {p:?}: {e}"),
    }
}

/// Builds commands with fresh transaction ids.
struct Cmds {
    next_tx: u128,
}

impl Cmds {
    fn new() -> Cmds {
        Cmds { next_tx: 1 }
    }

    fn at(&mut self, k: &str, at: Timestamp, op: LedgerOp) -> LedgerCommand {
        self.next_tx += 1;
        LedgerCommand { key: key(k), tx: TxId::from(self.next_tx), at, op }
    }

    fn cmd(&mut self, k: &str, op: LedgerOp) -> LedgerCommand {
        self.at(k, T0, op)
    }
}

fn top_up(user: UserId, amount: Money, payment: &str) -> LedgerOp {
    LedgerOp::TopUp { user, amount, payment: pay(payment) }
}

fn hold(user: UserId, id: u128, amount: Money) -> LedgerOp {
    LedgerOp::Hold {
        user,
        hold: HoldId::from(id),
        amount,
        provider: None,
        expires_at: T0.plus(TTL),
        caps: SpendCaps::NONE,
    }
}

async fn ok(store: &dyn LedgerStore, cmd: LedgerCommand) -> Applied {
    let what = format!("{:?}", cmd.op);
    match store.apply(cmd).await {
        Ok(a) => a,
        Err(e) => panic!("{what} must apply, got {e}"),
    }
}

async fn refused(store: &dyn LedgerStore, cmd: LedgerCommand) -> LedgerError {
    let what = format!("{:?}", cmd.op);
    match store.apply(cmd).await {
        Ok(a) => panic!("{what} must be refused, got {a:?}"),
        Err(e) => e,
    }
}

async fn available(store: &dyn LedgerStore, user: UserId) -> Money {
    store.balance(user).await.map(|b| b.available).unwrap_or_else(|e| panic!("balance: {e}"))
}

async fn held(store: &dyn LedgerStore, user: UserId) -> Money {
    store.balance(user).await.map(|b| b.held).unwrap_or_else(|e| panic!("balance: {e}"))
}

async fn assert_clean(store: &dyn LedgerStore) {
    let report = store.verify().await.unwrap_or_else(|e| panic!("verify: {e}"));
    assert!(report.is_clean(), "verify must be clean: {report:?}");
}

/// Runs every check of the suite, each on a fresh store from `make`. Panics on the first broken MUST.
pub async fn ledger_conformance<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn LedgerStore>>,
{
    top_up_is_idempotent(&*make().await).await;
    refused_commands_record_nothing(&*make().await).await;
    capture_charges_part_and_releases_the_rest(&*make().await).await;
    release_and_expiry_end_a_hold_once(&*make().await).await;
    refunds_stay_within_what_was_captured(&*make().await).await;
    card_refunds_stay_within_the_payment_and_the_wallet(&*make().await).await;
    adjustments_and_overdraft(&*make().await).await;
    caps_are_checked_with_the_hold(&*make().await).await;
    raise_grows_a_live_hold(&*make().await).await;
    batch_results_are_independent_and_ordered(&*make().await).await;
    reaper_lists_only_due_active_holds(&*make().await).await;
    transactions_are_listed_in_order(&*make().await).await;
    history_pages_a_users_transactions_newest_first(&*make().await).await;
    caps_count_each_amount_when_it_was_held(&*make().await).await;
    provider_budgets_count_what_budgeted_holds_spend(&*make().await).await;
    holds_active_at_once_are_limited(&*make().await).await;
    repeats::concurrent_repeats_replay(&*make().await).await;
    repeats::concurrent_raises_compose(&*make().await).await;
    repeats::a_zero_raise_verifies_clean(&*make().await).await;
    repeats::bounds_are_errors(&*make().await).await;
    repeats::a_reused_transaction_id_fails_one_command(&*make().await).await;
}

async fn top_up_is_idempotent(s: &dyn LedgerStore) {
    // A replayed top-up returns the first receipt and credits once; a reused key or payment id is refused.
    let mut c = Cmds::new();
    let first = ok(s, c.cmd("pay1", top_up(ALICE, rub(100), "p1"))).await;
    assert!(!first.replayed);
    let again = ok(s, c.cmd("pay1", top_up(ALICE, rub(100), "p1"))).await;
    assert!(again.replayed, "a replay must say so");
    assert_eq!(again.receipt, first.receipt, "a replay must return the first receipt");
    assert_eq!(available(s, ALICE).await, rub(100), "a replay must not credit again");
    let e = refused(s, c.cmd("pay1", top_up(ALICE, rub(5), "p1"))).await;
    assert!(matches!(e, LedgerError::KeyConflict { .. }), "same key, other operation: {e:?}");
    let e = refused(s, c.cmd("pay1-again", top_up(ALICE, rub(100), "p1"))).await;
    assert!(matches!(e, LedgerError::PaymentExists { .. }), "same payment, other key: {e:?}");
    let e = refused(s, c.cmd("zero", top_up(ALICE, Money::ZERO, "p2"))).await;
    assert!(matches!(e, LedgerError::InvalidAmount { .. }), "{e:?}");
    assert_eq!(s.system_balance(SystemAccount::Payments).await.ok(), Some(rub(-100)));
    assert_clean(s).await;
}

async fn refused_commands_record_nothing(s: &dyn LedgerStore) {
    // A refused hold leaves no trace under its key, so the same key applies once the funds are there.
    let mut c = Cmds::new();
    let e = refused(s, c.cmd("h1", hold(ALICE, 1, rub(10)))).await;
    assert_eq!(e, LedgerError::InsufficientFunds { available: Money::ZERO, required: rub(10) });
    assert_eq!(s.transactions(0, 10).await.map(|t| t.len()).ok(), Some(0));
    ok(s, c.cmd("pay", top_up(ALICE, rub(10), "p1"))).await;
    let a = ok(s, c.cmd("h1", hold(ALICE, 1, rub(10)))).await;
    assert!(!a.replayed);
    assert_eq!((available(s, ALICE).await, held(s, ALICE).await), (Money::ZERO, rub(10)));
    let e = refused(s, c.cmd("h1-other", hold(ALICE, 1, rub(1)))).await;
    assert!(matches!(e, LedgerError::HoldExists { .. } | LedgerError::InsufficientFunds { .. }), "{e:?}");
    assert_clean(s).await;
}

async fn capture_charges_part_and_releases_the_rest(s: &dyn LedgerStore) {
    // Capturing 8 of a hold of 10 charges 8 and returns 2 in one transaction; the hold then ends.
    let mut c = Cmds::new();
    ok(s, c.cmd("pay", top_up(ALICE, rub(100), "p1"))).await;
    ok(s, c.cmd("h", hold(ALICE, 7, rub(10)))).await;
    let e = refused(s, c.cmd("cap-big", LedgerOp::Capture { hold: HoldId::from(7), amount: rub(11) })).await;
    assert_eq!(e, LedgerError::CaptureExceedsHold { held: rub(10), requested: rub(11) });
    let cap = ok(s, c.cmd("cap", LedgerOp::Capture { hold: HoldId::from(7), amount: rub(8) })).await;
    assert_eq!((cap.receipt.amount, cap.receipt.released), (rub(8), rub(2)));
    assert_eq!((available(s, ALICE).await, held(s, ALICE).await), (rub(92), Money::ZERO));
    assert_eq!(s.system_balance(SystemAccount::Revenue).await.ok(), Some(rub(8)));
    let h = s.hold(HoldId::from(7)).await.ok().flatten().unwrap_or_else(|| panic!("hold 7 must exist"));
    assert_eq!((h.state, h.captured), (HoldState::Captured, rub(8)));
    let e = refused(s, c.cmd("cap2", LedgerOp::Capture { hold: HoldId::from(7), amount: rub(1) })).await;
    assert!(matches!(e, LedgerError::HoldNotActive { state: HoldState::Captured, .. }), "{e:?}");
    let e = refused(s, c.cmd("rel", LedgerOp::Release { hold: HoldId::from(7) })).await;
    assert!(matches!(e, LedgerError::HoldNotActive { .. }), "{e:?}");
    let e = refused(s, c.cmd("nohold", LedgerOp::Capture { hold: HoldId::from(99), amount: rub(1) })).await;
    assert_eq!(e, LedgerError::HoldNotFound { hold: HoldId::from(99) });
    assert_clean(s).await;
}

async fn release_and_expiry_end_a_hold_once(s: &dyn LedgerStore) {
    // Release gives a hold back; the reaper may expire only after the TTL; an expired hold cannot be captured.
    let mut c = Cmds::new();
    ok(s, c.cmd("pay", top_up(ALICE, rub(100), "p1"))).await;
    ok(s, c.cmd("h1", hold(ALICE, 1, rub(30)))).await;
    ok(s, c.cmd("h2", hold(ALICE, 2, rub(30)))).await;
    ok(s, c.cmd("rel", LedgerOp::Release { hold: HoldId::from(1) })).await;
    assert_eq!(available(s, ALICE).await, rub(70));
    let e = refused(s, c.cmd("exp-early", LedgerOp::Expire { hold: HoldId::from(2) })).await;
    assert!(matches!(e, LedgerError::HoldNotExpired { .. }), "{e:?}");
    let late = T0.plus(TTL);
    let e = refused(s, c.at("cap-late", late, LedgerOp::Capture { hold: HoldId::from(2), amount: rub(1) })).await;
    assert!(matches!(e, LedgerError::HoldExpired { .. }), "{e:?}");
    let exp = ok(s, c.at("exp", late, LedgerOp::Expire { hold: HoldId::from(2) })).await;
    assert_eq!(exp.receipt.released, rub(30));
    let e = refused(s, c.at("exp2", late, LedgerOp::Expire { hold: HoldId::from(2) })).await;
    assert!(matches!(e, LedgerError::HoldNotActive { state: HoldState::Expired, .. }), "{e:?}");
    let e = refused(s, c.at("rel2", late, LedgerOp::Release { hold: HoldId::from(1) })).await;
    assert!(matches!(e, LedgerError::HoldNotActive { state: HoldState::Released, .. }), "{e:?}");
    assert_eq!((available(s, ALICE).await, held(s, ALICE).await), (rub(100), Money::ZERO));
    let bad = LedgerOp::Hold {
        user: ALICE,
        hold: HoldId::from(3),
        amount: rub(1),
        provider: None,
        expires_at: T0,
        caps: SpendCaps::NONE,
    };
    let e = refused(s, c.cmd("past", bad)).await;
    assert!(matches!(e, LedgerError::InvalidExpiry { .. }), "{e:?}");
    assert_clean(s).await;
}

async fn refunds_stay_within_what_was_captured(s: &dyn LedgerStore) {
    // Refunds to the wallet are bounded by the capture, across several refunds.
    let mut c = Cmds::new();
    ok(s, c.cmd("pay", top_up(ALICE, rub(100), "p1"))).await;
    ok(s, c.cmd("h", hold(ALICE, 1, rub(10)))).await;
    let e = refused(s, c.cmd("r0", LedgerOp::Refund { hold: HoldId::from(1), amount: rub(1) })).await;
    assert!(matches!(e, LedgerError::HoldNotActive { state: HoldState::Active, .. }), "{e:?}");
    ok(s, c.cmd("cap", LedgerOp::Capture { hold: HoldId::from(1), amount: rub(8) })).await;
    ok(s, c.cmd("r1", LedgerOp::Refund { hold: HoldId::from(1), amount: rub(5) })).await;
    let e = refused(s, c.cmd("r2", LedgerOp::Refund { hold: HoldId::from(1), amount: rub(4) })).await;
    assert_eq!(e, LedgerError::RefundExceedsCaptured { refundable: rub(3), requested: rub(4) });
    ok(s, c.cmd("r3", LedgerOp::Refund { hold: HoldId::from(1), amount: rub(3) })).await;
    assert_eq!(available(s, ALICE).await, rub(100));
    assert_eq!(s.system_balance(SystemAccount::Revenue).await.ok(), Some(Money::ZERO));
    assert_clean(s).await;
}

async fn card_refunds_stay_within_the_payment_and_the_wallet(s: &dyn LedgerStore) {
    // Paying back to a card needs the money in the wallet and never exceeds what the payment brought in.
    let mut c = Cmds::new();
    ok(s, c.cmd("pay", top_up(ALICE, rub(50), "p1"))).await;
    ok(s, c.cmd("pay2", top_up(ALICE, rub(50), "p2"))).await;
    let card = |amount| LedgerOp::RefundToCard { user: ALICE, payment: pay("p1"), amount };
    let e = refused(s, c.cmd("c1", card(rub(60)))).await;
    assert_eq!(e, LedgerError::RefundExceedsPayment { refundable: rub(50), requested: rub(60) });
    ok(s, c.cmd("c2", card(rub(50)))).await;
    let e = refused(s, c.cmd("c3", card(rub(1)))).await;
    assert!(matches!(e, LedgerError::RefundExceedsPayment { .. }), "{e:?}");
    let other = LedgerOp::RefundToCard { user: BOB, payment: pay("p2"), amount: rub(1) };
    let e = refused(s, c.cmd("c4", other)).await;
    assert!(matches!(e, LedgerError::PaymentOwner { .. }), "{e:?}");
    ok(s, c.cmd("h", hold(ALICE, 1, rub(45)))).await;
    let e = refused(s, c.cmd("c5", LedgerOp::RefundToCard { user: ALICE, payment: pay("p2"), amount: rub(10) })).await;
    assert!(matches!(e, LedgerError::InsufficientFunds { .. }), "{e:?}");
    assert_eq!(s.system_balance(SystemAccount::RefundsOut).await.ok(), Some(rub(50)));
    assert_clean(s).await;
}

async fn adjustments_and_overdraft(s: &dyn LedgerStore) {
    // Adjustments are signed and bounded by the overdraft limit, which defaults to zero.
    let mut c = Cmds::new();
    let reason = Reason::parse("goodwill").unwrap_or_else(|e| panic!("{e}"));
    let adjust = |amount| LedgerOp::Adjust { user: BOB, amount, actor: ALICE, reason: reason.clone() };
    ok(s, c.cmd("a1", adjust(rub(5)))).await;
    let e = refused(s, c.cmd("a2", adjust(rub(-6)))).await;
    assert_eq!(e, LedgerError::InsufficientFunds { available: rub(5), required: rub(6) });
    let e = refused(s, c.cmd("a0", adjust(Money::ZERO))).await;
    assert!(matches!(e, LedgerError::InvalidAmount { .. }), "{e:?}");
    let limit_err = s.set_overdraft_limit(BOB, rub(-1)).await;
    assert!(matches!(limit_err, Err(LedgerError::InvalidAmount { .. })), "{limit_err:?}");
    s.set_overdraft_limit(BOB, rub(3)).await.unwrap_or_else(|e| panic!("{e}"));
    ok(s, c.cmd("a3", adjust(rub(-8)))).await;
    assert_eq!(available(s, BOB).await, rub(-3));
    let e = refused(s, c.cmd("h", hold(BOB, 1, Money::from_kopecks(1)))).await;
    assert!(matches!(e, LedgerError::InsufficientFunds { .. }), "{e:?}");
    let lower = s.set_overdraft_limit(BOB, rub(2)).await;
    assert!(matches!(lower, Err(LedgerError::InsufficientFunds { .. })), "{lower:?}");
    assert_eq!(s.system_balance(SystemAccount::Promo).await.ok(), Some(rub(3)));
    let txs = s.transactions(0, 10).await.unwrap_or_default();
    let adj = txs.iter().find(|t| t.kind == OpKind::Adjust).unwrap_or_else(|| panic!("an adjust transaction"));
    assert_eq!((adj.actor, adj.reason.as_ref().map(Reason::as_str)), (Some(ALICE), Some("goodwill")));
    assert_clean(s).await;
}

async fn caps_are_checked_with_the_hold(s: &dyn LedgerStore) {
    // Hourly caps count active and captured holds of the last hour; provider budgets count every user.
    let mut c = Cmds::new();
    ok(s, c.cmd("pa", top_up(ALICE, rub(1000), "pa"))).await;
    ok(s, c.cmd("pb", top_up(BOB, rub(1000), "pb"))).await;
    let caps = SpendCaps {
        user_hourly: Some(rub(50)),
        user_daily: Some(rub(120)),
        provider_daily: Some(rub(200)),
        active_holds_max: None,
    };
    let kling = ProviderId::parse("kling").unwrap_or_else(|e| panic!("{e}"));
    let capped = |user, id: u128, amount, at: Timestamp| LedgerOp::Hold {
        user,
        hold: HoldId::from(id),
        amount,
        provider: Some(kling.clone()),
        expires_at: at.plus(TTL),
        caps,
    };
    ok(s, c.cmd("h1", capped(ALICE, 1, rub(30), T0))).await;
    ok(s, c.cmd("c1", LedgerOp::Capture { hold: HoldId::from(1), amount: rub(20) })).await;
    ok(s, c.cmd("h2", capped(ALICE, 2, rub(30), T0))).await;
    let e = refused(s, c.cmd("h3", capped(ALICE, 3, Money::from_kopecks(1), T0))).await;
    assert!(matches!(e, LedgerError::SpendCap(x) if x.scope == CapScope::UserHourly), "{e:?}");
    ok(s, c.cmd("r2", LedgerOp::Release { hold: HoldId::from(2) })).await;
    ok(s, c.cmd("h4", capped(ALICE, 4, rub(30), T0))).await;
    let later = T0.plus(Duration::from_secs(3601));
    ok(s, c.at("h5", later, capped(ALICE, 5, rub(50), later))).await;
    let e = refused(s, c.at("h6", later, capped(ALICE, 6, rub(30), later))).await;
    assert!(matches!(e, LedgerError::SpendCap(x) if x.scope == CapScope::UserHourly), "{e:?}");
    let much_later = T0.plus(Duration::from_secs(2 * 3601));
    let e = refused(s, c.at("h7", much_later, capped(ALICE, 7, rub(30), much_later))).await;
    assert!(matches!(e, LedgerError::SpendCap(x) if x.scope == CapScope::UserDaily), "{e:?}");
    ok(s, c.at("h8", much_later, capped(BOB, 8, rub(50), much_later))).await;
    let budget_only = SpendCaps { provider_daily: Some(rub(200)), ..SpendCaps::NONE };
    let h9 = LedgerOp::Hold {
        user: BOB,
        hold: HoldId::from(9),
        amount: rub(51),
        provider: Some(kling.clone()),
        expires_at: much_later.plus(TTL),
        caps: budget_only,
    };
    let e = refused(s, c.at("h9", much_later, h9)).await;
    assert!(matches!(e, LedgerError::SpendCap(x) if x.scope == CapScope::ProviderDaily), "{e:?}");
    assert_clean(s).await;
}

async fn raise_grows_a_live_hold(s: &dyn LedgerStore) {
    // A raise reserves more and moves the expiry forward, never back, and only on a live hold.
    let mut c = Cmds::new();
    ok(s, c.cmd("pay", top_up(ALICE, rub(20), "p1"))).await;
    ok(s, c.cmd("h", hold(ALICE, 1, rub(10)))).await;
    let raise =
        |amount, expires_at| LedgerOp::Raise { hold: HoldId::from(1), amount, expires_at, caps: SpendCaps::NONE };
    let e = refused(s, c.cmd("r-back", raise(rub(1), T0))).await;
    assert!(matches!(e, LedgerError::InvalidExpiry { .. }), "{e:?}");
    let e = refused(s, c.cmd("r-big", raise(rub(11), T0.plus(TTL)))).await;
    assert!(matches!(e, LedgerError::InsufficientFunds { .. }), "{e:?}");
    ok(s, c.cmd("r", raise(rub(10), T0.plus(TTL * 2)))).await;
    assert_eq!((available(s, ALICE).await, held(s, ALICE).await), (Money::ZERO, rub(20)));
    let h = s.hold(HoldId::from(1)).await.ok().flatten().unwrap_or_else(|| panic!("hold 1"));
    assert_eq!((h.amount, h.expires_at), (rub(20), T0.plus(TTL * 2)));
    ok(s, c.at("cap", T0.plus(TTL), LedgerOp::Capture { hold: HoldId::from(1), amount: rub(15) })).await;
    let e = refused(s, c.cmd("r-dead", raise(Money::ZERO, T0.plus(TTL * 3)))).await;
    assert!(matches!(e, LedgerError::HoldNotActive { .. }), "{e:?}");
    assert_clean(s).await;
}

async fn batch_results_are_independent_and_ordered(s: &dyn LedgerStore) {
    // In a batch each command stands alone, in order, and later commands see earlier effects.
    let mut c = Cmds::new();
    let batch = vec![
        c.cmd("h-first", hold(ALICE, 1, rub(5))),
        c.cmd("pay", top_up(ALICE, rub(10), "p1")),
        c.cmd("h", hold(ALICE, 2, rub(6))),
        c.cmd("h-over", hold(ALICE, 3, rub(6))),
        c.cmd("pay", top_up(ALICE, rub(10), "p1")),
    ];
    let results = s.apply_batch(batch).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(results.len(), 5);
    assert!(matches!(results[0], Err(LedgerError::InsufficientFunds { .. })), "{:?}", results[0]);
    assert!(matches!(&results[1], Ok(a) if !a.replayed));
    assert!(results[2].is_ok());
    assert!(matches!(results[3], Err(LedgerError::InsufficientFunds { .. })), "{:?}", results[3]);
    assert!(matches!(&results[4], Ok(a) if a.replayed), "a key repeated inside a batch is a replay");
    assert_eq!((available(s, ALICE).await, held(s, ALICE).await), (rub(4), rub(6)));
    assert_eq!(s.apply_batch(Vec::new()).await.map(|r| r.len()).ok(), Some(0));
    assert_clean(s).await;
}

async fn reaper_lists_only_due_active_holds(s: &dyn LedgerStore) {
    // The reaper sees active holds whose TTL passed, oldest first, bounded by the limit.
    let mut c = Cmds::new();
    ok(s, c.cmd("pay", top_up(ALICE, rub(100), "p1"))).await;
    for (id, ttl_s) in [(1u128, 30u64), (2, 10), (3, 20), (4, 5000)] {
        let op = LedgerOp::Hold {
            user: ALICE,
            hold: HoldId::from(id),
            amount: rub(1),
            provider: None,
            expires_at: T0.plus(Duration::from_secs(ttl_s)),
            caps: SpendCaps::NONE,
        };
        ok(s, c.cmd(&format!("h{id}"), op)).await;
    }
    ok(s, c.cmd("rel3", LedgerOp::Release { hold: HoldId::from(3) })).await;
    let now = T0.plus(Duration::from_secs(60));
    let due = s.holds_due(now, 10).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(due, vec![HoldId::from(2), HoldId::from(1)]);
    assert_eq!(s.holds_due(now, 1).await.unwrap_or_default(), vec![HoldId::from(2)]);
    assert!(s.holds_due(T0, 10).await.unwrap_or_default().is_empty());
    assert_clean(s).await;
}

async fn transactions_are_listed_in_order(s: &dyn LedgerStore) {
    // Transactions come back in commit order, each balanced, pageable by offset.
    let mut c = Cmds::new();
    ok(s, c.cmd("pay", top_up(ALICE, rub(10), "p1"))).await;
    ok(s, c.cmd("h", hold(ALICE, 1, rub(4)))).await;
    ok(s, c.cmd("cap", LedgerOp::Capture { hold: HoldId::from(1), amount: rub(4) })).await;
    let all = s.transactions(0, 100).await.unwrap_or_else(|e| panic!("{e}"));
    let kinds: Vec<OpKind> = all.iter().map(|t| t.kind).collect();
    assert_eq!(kinds, vec![OpKind::TopUp, OpKind::Hold, OpKind::Capture]);
    assert!(all.iter().all(|t| t.sum() == Some(Money::ZERO)));
    let page = s.transactions(1, 1).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].kind, OpKind::Hold);
    let report = s.verify().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.transactions, 3);
    assert_clean(s).await;
}

async fn history_pages_a_users_transactions_newest_first(s: &dyn LedgerStore) {
    // A user's history holds their transactions only, newest first, each with its postings, and the cursor
    // pages through all of them once.
    let mut c = Cmds::new();
    ok(s, c.cmd("pay-a", top_up(ALICE, rub(10), "p1"))).await;
    ok(s, c.cmd("pay-b", top_up(BOB, rub(7), "p2"))).await;
    ok(s, c.cmd("h", hold(ALICE, 1, rub(4)))).await;
    ok(s, c.cmd("cap", LedgerOp::Capture { hold: HoldId::from(1), amount: rub(3) })).await;
    ok(s, c.cmd("pay-a2", top_up(ALICE, rub(1), "p3"))).await;
    let all = s.history(ALICE, None, 100).await.unwrap_or_else(|e| panic!("{e}"));
    let kinds: Vec<OpKind> = all.iter().map(|e| e.transaction.kind).collect();
    assert_eq!(kinds, vec![OpKind::TopUp, OpKind::Capture, OpKind::Hold, OpKind::TopUp]);
    assert!(all.iter().all(|e| e.transaction.user == ALICE && !e.transaction.postings.is_empty()));
    assert!(all.windows(2).all(|w| w[0].position > w[1].position), "newest first: {all:?}");
    assert_eq!(all[0].transaction.payment, Some(pay("p3")));
    let mut paged = Vec::new();
    let mut before = None;
    loop {
        let page = s.history(ALICE, before, 3).await.unwrap_or_else(|e| panic!("{e}"));
        assert!(page.len() <= 3);
        let Some(last) = page.last() else { break };
        before = Some(last.position);
        paged.extend(page);
    }
    assert_eq!(paged, all, "pages of 3 give the same history, each entry once");
    let bob = s.history(BOB, None, 100).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(bob.len(), 1);
    assert!(s.history(UserId(999), None, 100).await.unwrap_or_else(|e| panic!("{e}")).is_empty());
    assert!(s.history(ALICE, None, 0).await.unwrap_or_else(|e| panic!("{e}")).is_empty());
}

async fn caps_count_each_amount_when_it_was_held(s: &dyn LedgerStore) {
    // A hold that lives for hours is counted in each window by when each amount was held: raises of an old
    // hold bind the hourly cap, and a capture counts what was captured, from the earliest amounts on.
    let mut c = Cmds::new();
    ok(s, c.cmd("pay", top_up(ALICE, rub(1000), "p1"))).await;
    let caps = SpendCaps {
        user_hourly: Some(rub(100)),
        user_daily: Some(rub(150)),
        provider_daily: None,
        active_holds_max: None,
    };
    let hour = Duration::from_secs(3600);
    let long = LedgerOp::Hold {
        user: ALICE,
        hold: HoldId::from(1),
        amount: rub(10),
        provider: None,
        expires_at: T0.plus(hour * 10),
        caps,
    };
    ok(s, c.cmd("long", long)).await;
    let raise = |amount| LedgerOp::Raise { hold: HoldId::from(1), amount, expires_at: T0.plus(hour * 10), caps };
    let t1 = T0.plus(hour * 2);
    ok(s, c.at("r1", t1, raise(rub(60)))).await;
    let t2 = t1.plus(Duration::from_secs(600));
    let e = refused(s, c.at("r2", t2, raise(rub(60)))).await;
    assert!(matches!(e, LedgerError::SpendCap(x) if x.scope == CapScope::UserHourly && x.used == rub(60)), "{e:?}");
    ok(s, c.at("r3", t2, raise(rub(40)))).await;
    // The day so far: 10 + 60 + 40 held. A new hold of 41 passes the daily cap of 150, one of 40 fits.
    let fresh = |id: u128, amount| LedgerOp::Hold {
        user: ALICE,
        hold: HoldId::from(id),
        amount,
        provider: None,
        expires_at: T0.plus(hour * 10),
        caps: SpendCaps { user_hourly: None, ..caps },
    };
    let e = refused(s, c.at("h2", t2, fresh(2, rub(41)))).await;
    assert!(matches!(e, LedgerError::SpendCap(x) if x.scope == CapScope::UserDaily && x.used == rub(110)), "{e:?}");
    // Capturing 50 of the long hold's 110 counts the 10 and 40 of the first 60: 50 spent today, none of it
    // within the last hour (the 60 at t1 is more than an hour before t3).
    ok(s, c.at("cap", t2, LedgerOp::Capture { hold: HoldId::from(1), amount: rub(50) })).await;
    let t3 = t1.plus(hour + Duration::from_secs(1));
    ok(s, c.at("h3", t3, fresh(3, rub(100)))).await;
    let e = refused(s, c.at("h4", t3, fresh(4, Money::from_kopecks(1)))).await;
    assert!(matches!(e, LedgerError::SpendCap(x) if x.scope == CapScope::UserDaily && x.used == rub(150)), "{e:?}");
    assert_clean(s).await;
}

async fn provider_budgets_count_what_budgeted_holds_spend(s: &dyn LedgerStore) {
    // A provider's daily budget counts every user's budgeted holds and their raises, gives back what a release
    // or a partial capture returned, and forgets a day-old minute.
    let mut c = Cmds::new();
    ok(s, c.cmd("pa", top_up(ALICE, rub(1000), "pa"))).await;
    ok(s, c.cmd("pb", top_up(BOB, rub(1000), "pb"))).await;
    let kling = ProviderId::parse("kling").unwrap_or_else(|e| panic!("{e}"));
    let budget = SpendCaps { provider_daily: Some(rub(100)), ..SpendCaps::NONE };
    let on_kling = |user, id: u128, amount, at: Timestamp, caps| LedgerOp::Hold {
        user,
        hold: HoldId::from(id),
        amount,
        provider: Some(kling.clone()),
        expires_at: at.plus(TTL * 1000),
        caps,
    };
    ok(s, c.cmd("a1", on_kling(ALICE, 1, rub(60), T0, budget))).await;
    ok(s, c.cmd("a2", on_kling(ALICE, 2, rub(500), T0, SpendCaps::NONE))).await;
    let e = refused(s, c.cmd("b1", on_kling(BOB, 3, rub(41), T0, budget))).await;
    assert!(matches!(e, LedgerError::SpendCap(x) if x.scope == CapScope::ProviderDaily && x.used == rub(60)), "{e:?}");
    let raise =
        LedgerOp::Raise { hold: HoldId::from(1), amount: rub(20), expires_at: T0.plus(TTL), caps: SpendCaps::NONE };
    ok(s, c.cmd("a1-raise", raise)).await;
    let e = refused(s, c.cmd("b2", on_kling(BOB, 4, rub(21), T0, budget))).await;
    assert!(matches!(e, LedgerError::SpendCap(x) if x.used == rub(80)), "a raise of a budgeted hold counts: {e:?}");
    ok(s, c.cmd("a1-cap", LedgerOp::Capture { hold: HoldId::from(1), amount: rub(30) })).await;
    ok(s, c.cmd("b3", on_kling(BOB, 5, rub(70), T0, budget))).await;
    let e = refused(s, c.cmd("b4", on_kling(BOB, 6, Money::from_kopecks(1), T0, budget))).await;
    assert!(matches!(e, LedgerError::SpendCap(x) if x.used == rub(100)), "{e:?}");
    ok(s, c.cmd("b3-rel", LedgerOp::Release { hold: HoldId::from(5) })).await;
    ok(s, c.cmd("b5", on_kling(BOB, 7, rub(70), T0, budget))).await;
    let next_day = T0.plus(Duration::from_secs(24 * 3600 + 60));
    ok(s, c.at("b6", next_day, on_kling(BOB, 8, rub(100), next_day, budget))).await;
    assert_clean(s).await;
}

async fn holds_active_at_once_are_limited(s: &dyn LedgerStore) {
    // A hold that limits how many may be active at once counts every active hold of its user, however old,
    // and none that ended; the limit binds only the holds that carry it.
    let mut c = Cmds::new();
    ok(s, c.cmd("pay", top_up(ALICE, rub(100), "p1"))).await;
    let limited = |id: u128, at: Timestamp| LedgerOp::Hold {
        user: ALICE,
        hold: HoldId::from(id),
        amount: rub(1),
        provider: None,
        expires_at: at.plus(Duration::from_secs(3 * 24 * 3600)),
        caps: SpendCaps { active_holds_max: Some(2), ..SpendCaps::NONE },
    };
    ok(s, c.cmd("h1", limited(1, T0))).await;
    let later = T0.plus(Duration::from_secs(2 * 24 * 3600));
    ok(s, c.at("h2", later, limited(2, later))).await;
    let e = refused(s, c.at("h3", later, limited(3, later))).await;
    assert_eq!(e, LedgerError::TooManyActiveHolds { active: 2, max: 2 }, "a two-day-old hold still counts");
    let unlimited = LedgerOp::Hold {
        user: ALICE,
        hold: HoldId::from(4),
        amount: rub(1),
        provider: None,
        expires_at: later.plus(TTL),
        caps: SpendCaps::NONE,
    };
    ok(s, c.at("free", later, unlimited)).await;
    ok(s, c.at("rel1", later, LedgerOp::Release { hold: HoldId::from(1) })).await;
    let e = refused(s, c.at("h5", later, limited(5, later))).await;
    assert_eq!(e, LedgerError::TooManyActiveHolds { active: 2, max: 2 }, "an unlimited hold counts too");
    ok(s, c.at("cap2", later, LedgerOp::Capture { hold: HoldId::from(2), amount: rub(1) })).await;
    ok(s, c.at("h6", later, limited(6, later))).await;
    assert_clean(s).await;
}
