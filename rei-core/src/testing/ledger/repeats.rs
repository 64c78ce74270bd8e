//! The ledger conformance checks for concurrency and bounds: concurrent repeats replay, concurrent raises
//! compose, legal edge operations verify clean, and amounts at the bounds are refused with an error.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use crate::caps::SpendCaps;
use crate::guards::Reason;
use crate::ids::{HoldId, IdempotencyKey, PaymentId, TxId, UserId};
use crate::ledger::{Applied, LedgerCommand, LedgerError, LedgerOp, LedgerStore, SystemAccount};
use crate::money::Money;
use crate::time::Timestamp;

const ALICE: UserId = UserId(11);
const BOB: UserId = UserId(12);
const T0: Timestamp = Timestamp::from_millis(1_800_000_000_000);
const TTL: Duration = Duration::from_secs(600);
/// How many callers send the same command at once.
const REPEATS: usize = 50;

fn rub(r: i64) -> Money {
    Money::from_kopecks(r * 100)
}

fn key(k: &str) -> IdempotencyKey {
    match IdempotencyKey::parse(&format!("r:{k}")) {
        Ok(k) => k,
        Err(e) => panic!("test key {k:?}: {e}"),
    }
}

fn pay(p: &str) -> PaymentId {
    match PaymentId::parse(p) {
        Ok(p) => p,
        Err(e) => panic!("test payment id {p:?}: {e}"),
    }
}

/// Polls every future in turn until all are done, so that their store calls are in flight together.
pub(crate) async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, out) in futures.iter_mut().zip(outputs.iter_mut()) {
            if out.is_none() {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => *out = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending { Poll::Pending } else { Poll::Ready(()) }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

/// Fresh transaction ids, as a caller retrying a command gets from its id source each time.
struct Txs(u128);

impl Txs {
    fn cmd(&mut self, k: &str, at: Timestamp, op: LedgerOp) -> LedgerCommand {
        self.0 += 1;
        LedgerCommand { key: key(k), tx: TxId::from(self.0), at, op }
    }
}

async fn ok(s: &dyn LedgerStore, cmd: LedgerCommand) -> Applied {
    let what = format!("{:?}", cmd.op);
    s.apply(cmd).await.unwrap_or_else(|e| panic!("{what} must apply, got {e}"))
}

async fn assert_clean(s: &dyn LedgerStore, what: &str) {
    let report = s.verify().await.unwrap_or_else(|e| panic!("verify after {what}: {e}"));
    assert!(report.is_clean(), "verify must be clean after {what}: {report:?}");
}

/// Sends `REPEATS` copies of one command at once, half through `apply` and half as batches of one, each with
/// its own transaction id, and checks that exactly one applied and every other caller got its receipt.
async fn storm(s: &dyn LedgerStore, txs: &mut Txs, k: &str, op: &LedgerOp) -> Applied {
    let cmds: Vec<LedgerCommand> = (0..REPEATS).map(|_| txs.cmd(k, T0, op.clone())).collect();
    let calls = cmds.into_iter().enumerate().map(|(i, cmd)| async move {
        if i % 2 == 0 {
            s.apply(cmd).await
        } else {
            match s.apply_batch(vec![cmd]).await {
                Ok(mut r) if r.len() == 1 => r.remove(0),
                Ok(r) => panic!("a batch of one returned {} results", r.len()),
                Err(e) => Err(e.into()),
            }
        }
    });
    let results = join_all(calls.collect()).await;
    let mut firsts = Vec::new();
    let mut replays = Vec::new();
    for r in results {
        match r {
            Ok(a) if a.replayed => replays.push(a.receipt),
            Ok(a) => firsts.push(a.receipt),
            Err(e) => panic!("{REPEATS} concurrent {k}: a repeat must replay, got {e}"),
        }
    }
    assert_eq!(firsts.len(), 1, "{REPEATS} concurrent {k}: exactly one must apply");
    assert!(replays.iter().all(|r| *r == firsts[0]), "{k}: every replay must return the first receipt");
    Applied { receipt: firsts.remove(0), replayed: false }
}

/// Concurrent repeats of top-up, hold, capture, refund, release, card refund and adjust, each on a balance
/// that covers exactly one: one effect, and every other caller gets the first receipt with `replayed`.
pub(crate) async fn concurrent_repeats_replay(s: &dyn LedgerStore) {
    let mut txs = Txs(1_000);
    let h1 = HoldId::from(101);
    let h2 = HoldId::from(102);

    storm(s, &mut txs, "topup", &LedgerOp::TopUp { user: ALICE, amount: rub(10), payment: pay("rp1") }).await;
    let hold = |hold, amount| LedgerOp::Hold {
        user: ALICE,
        hold,
        amount,
        provider: None,
        expires_at: T0.plus(TTL),
        caps: SpendCaps::NONE,
    };
    storm(s, &mut txs, "hold1", &hold(h1, rub(10))).await;
    let b = s.balance(ALICE).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((b.available, b.held), (Money::ZERO, rub(10)), "one hold of the whole balance");

    let cap = storm(s, &mut txs, "cap1", &LedgerOp::Capture { hold: h1, amount: rub(8) }).await;
    assert_eq!((cap.receipt.amount, cap.receipt.released), (rub(8), rub(2)));
    storm(s, &mut txs, "refund1", &LedgerOp::Refund { hold: h1, amount: rub(8) }).await;
    let b = s.balance(ALICE).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((b.available, b.held), (rub(10), Money::ZERO), "captured once, refunded once");

    storm(s, &mut txs, "hold2", &hold(h2, rub(10))).await;
    storm(s, &mut txs, "rel2", &LedgerOp::Release { hold: h2 }).await;
    storm(s, &mut txs, "card", &LedgerOp::RefundToCard { user: ALICE, payment: pay("rp1"), amount: rub(10) }).await;
    assert_eq!(s.balance(ALICE).await.map(|b| b.available).ok(), Some(Money::ZERO), "paid back to the card once");

    let reason = Reason::parse("repeat").unwrap_or_else(|e| panic!("{e}"));
    let adjust = |amount| LedgerOp::Adjust { user: BOB, amount, actor: ALICE, reason: reason.clone() };
    storm(s, &mut txs, "adj-in", &adjust(rub(10))).await;
    storm(s, &mut txs, "adj-out", &adjust(rub(-10))).await;
    assert_eq!(s.balance(BOB).await.map(|b| b.available).ok(), Some(Money::ZERO), "each adjust once");
    assert_eq!(s.system_balance(SystemAccount::Payments).await.ok(), Some(rub(-10)));
    assert_eq!(s.system_balance(SystemAccount::RefundsOut).await.ok(), Some(rub(10)));
    assert_eq!(s.transactions(0, 100).await.map(|t| t.len()).ok(), Some(9), "nine commands, nine transactions");
    assert_clean(s, "concurrent repeats").await;
}

/// Twenty concurrent raises of one live hold, each with its own key and ample funds, all apply: each one's
/// expiry is composed with the hold as it stands when the raise applies, never refused against a stale read.
pub(crate) async fn concurrent_raises_compose(s: &dyn LedgerStore) {
    let mut txs = Txs(2_000);
    let h = HoldId::from(201);
    ok(s, txs.cmd("raise-pay", T0, LedgerOp::TopUp { user: ALICE, amount: rub(100), payment: pay("rp2") })).await;
    let first = LedgerOp::Hold {
        user: ALICE,
        hold: h,
        amount: rub(1),
        provider: None,
        expires_at: T0.plus(TTL),
        caps: SpendCaps::NONE,
    };
    ok(s, txs.cmd("raise-hold", T0, first)).await;
    let raises: Vec<LedgerCommand> = (1..=20u32)
        .map(|i| {
            // Each caller read the hold at a different moment, so their expiries disagree.
            let expires_at = T0.plus(TTL + Duration::from_secs(u64::from(i)));
            txs.cmd(
                &format!("raise-{i}"),
                T0,
                LedgerOp::Raise { hold: h, amount: rub(1), expires_at, caps: SpendCaps::NONE },
            )
        })
        .collect();
    let results = join_all(raises.into_iter().map(|cmd| s.apply(cmd)).collect()).await;
    for r in &results {
        assert!(matches!(r, Ok(a) if !a.replayed), "every concurrent raise must apply: {r:?}");
    }
    let hold = s.hold(h).await.ok().flatten().unwrap_or_else(|| panic!("the raised hold"));
    assert_eq!(hold.amount, rub(21), "twenty raises of 1.00 on a hold of 1.00");
    assert_eq!(hold.expires_at, T0.plus(TTL + Duration::from_secs(20)), "the latest expiry asked for wins");
    assert_eq!(s.balance(ALICE).await.map(|b| (b.available, b.held)).ok(), Some((rub(79), rub(21))));
    assert_clean(s, "concurrent raises").await;
}

/// A raise of zero only moves the expiry: a transaction with no postings, which verifies clean.
pub(crate) async fn a_zero_raise_verifies_clean(s: &dyn LedgerStore) {
    let mut txs = Txs(3_000);
    let h = HoldId::from(301);
    ok(s, txs.cmd("z-pay", T0, LedgerOp::TopUp { user: ALICE, amount: rub(5), payment: pay("rp3") })).await;
    let first = LedgerOp::Hold {
        user: ALICE,
        hold: h,
        amount: rub(5),
        provider: None,
        expires_at: T0.plus(TTL),
        caps: SpendCaps::NONE,
    };
    ok(s, txs.cmd("z-hold", T0, first)).await;
    let later = T0.plus(TTL * 2);
    let raise = LedgerOp::Raise { hold: h, amount: Money::ZERO, expires_at: later, caps: SpendCaps::NONE };
    let a = ok(s, txs.cmd("z-raise", T0, raise)).await;
    assert_eq!(a.receipt.amount, Money::ZERO);
    assert_eq!(s.hold(h).await.ok().flatten().map(|h| h.expires_at), Some(later));
    assert_clean(s, "a raise of zero").await;
}

/// Amounts at the bounds: a top-up that would overflow an account is refused with [`LedgerError::Overflow`]
/// (never "corrupt" or "unavailable"), the refusal records nothing, and a ledger near the bounds verifies.
pub(crate) async fn bounds_are_errors(s: &dyn LedgerStore) {
    let mut txs = Txs(4_000);
    let quarter = Money::from_kopecks(i64::MAX / 4);
    let mut applied = 0;
    let mut refusal = None;
    for i in 0..6i64 {
        let op = LedgerOp::TopUp { user: UserId(100 + i), amount: quarter, payment: pay(&format!("big{i}")) };
        match s.apply(txs.cmd(&format!("big{i}"), T0, op)).await {
            Ok(_) => applied += 1,
            Err(e) => {
                refusal = Some(e);
                break;
            }
        }
    }
    assert!(matches!(refusal, Some(LedgerError::Overflow)), "payments cannot pass the bound: {refusal:?}");
    assert!(applied <= 4, "five quarters of i64::MAX cannot all fit: {applied} applied");
    let payments = s.system_balance(SystemAccount::Payments).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(payments.kopecks(), -(i64::MAX / 4) * applied, "a refused top-up records nothing");
    if applied > 0 {
        // A user at a quarter of the bound: one more quarter fits, a credit past the bound does not.
        let max = LedgerOp::TopUp { user: UserId(100), amount: Money::from_kopecks(i64::MAX), payment: pay("max") };
        let e = s.apply(txs.cmd("max", T0, max)).await;
        assert!(matches!(e, Err(LedgerError::Overflow)), "a balance cannot pass i64::MAX: {e:?}");
    }
    for bad in [Money::ZERO, Money::from_kopecks(-1), Money::from_kopecks(i64::MIN)] {
        let op = LedgerOp::TopUp { user: ALICE, amount: bad, payment: pay("bad") };
        let e = s.apply(txs.cmd(&format!("bad{}", bad.kopecks()), T0, op)).await;
        assert!(matches!(e, Err(LedgerError::InvalidAmount { .. })), "{bad}: {e:?}");
    }
    let h = LedgerOp::Hold {
        user: ALICE,
        hold: HoldId::from(401),
        amount: Money::from_kopecks(i64::MAX),
        provider: None,
        expires_at: T0.plus(TTL),
        caps: SpendCaps::NONE,
    };
    let e = s.apply(txs.cmd("hold-max", T0, h)).await;
    assert!(matches!(e, Err(LedgerError::InsufficientFunds { .. })), "{e:?}");
    assert_clean(s, "amounts at the bounds").await;
}

/// A transaction id used twice is the caller's clash: that command fails with a clear error and the other
/// commands of its batch apply.
pub(crate) async fn a_reused_transaction_id_fails_one_command(s: &dyn LedgerStore) {
    let cmd = |k: &str, tx: u128, payment: &str| LedgerCommand {
        key: key(k),
        tx: TxId::from(tx),
        at: T0,
        op: LedgerOp::TopUp { user: ALICE, amount: rub(1), payment: pay(payment) },
    };
    ok(s, cmd("tx-a", 5_000, "tx-a")).await;
    let results = s
        .apply_batch(vec![cmd("tx-b", 5_001, "tx-b"), cmd("tx-c", 5_000, "tx-c"), cmd("tx-d", 5_002, "tx-d")])
        .await
        .unwrap_or_else(|e| panic!("a batch with one clash must run: {e}"));
    assert!(results[0].is_ok() && results[2].is_ok(), "batch-mates of a clash apply: {results:?}");
    assert!(
        matches!(results[1], Err(LedgerError::TransactionExists { tx }) if tx == TxId::from(5_000)),
        "the clash is named: {:?}",
        results[1]
    );
    assert_eq!(s.balance(ALICE).await.map(|b| b.available).ok(), Some(rub(3)));
    assert_clean(s, "a reused transaction id").await;
}
