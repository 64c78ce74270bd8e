//! The hold storm and the bank, run the same way on every engine, from tasks or from several processes: each
//! caller counts every outcome by operation and kind, and the test asserts on the counts.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use rei_core::caps::SpendCaps;
use rei_core::ids::{HoldId, IdempotencyKey, PaymentId, TxId, UserId};
use rei_core::ledger::{Applied, LedgerCommand, LedgerError, LedgerOp, LedgerStore};
use rei_core::money::Money;
use rei_core::time::Timestamp;

const T0: Timestamp = Timestamp::from_millis(1_800_000_000_000);

/// The user the storm holds on; the test tops up 100.00 for them first.
pub(crate) const STORM_USER: i64 = 1;

/// How many outcomes of each kind each operation had: `(operation, outcome) -> count`, the outcome being
/// `applied`, `replayed` or the refusal's variant name.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Outcomes(BTreeMap<(String, String), u64>);

impl Outcomes {
    fn record(&mut self, op: &LedgerOp, result: &Result<Applied, LedgerError>) {
        let outcome = match result {
            Ok(a) if a.replayed => "replayed".to_owned(),
            Ok(_) => "applied".to_owned(),
            Err(e) => {
                let name = format!("{e:?}");
                name.split([' ', '(', '{']).next().unwrap_or_default().to_owned()
            }
        };
        *self.0.entry((op.kind().as_str().to_owned(), outcome)).or_insert(0) += 1;
    }

    /// Adds another caller's counts.
    pub(crate) fn merge(&mut self, other: &Outcomes) {
        for (k, n) in &other.0 {
            *self.0.entry(k.clone()).or_insert(0) += n;
        }
    }

    /// The count of one operation's outcome.
    pub(crate) fn count(&self, op: &str, outcome: &str) -> u64 {
        self.0.get(&(op.to_owned(), outcome.to_owned())).copied().unwrap_or(0)
    }

    /// Every `(operation, outcome)` that is not in `allowed`, with its count.
    pub(crate) fn unexpected(&self, allowed: &[(&str, &str)]) -> Vec<((String, String), u64)> {
        self.0
            .iter()
            .filter(|((op, outcome), _)| !allowed.iter().any(|(a, b)| a == op && b == outcome))
            .map(|(k, n)| (k.clone(), *n))
            .collect()
    }

    /// The counts as one line (`op/outcome=n ...`), for a child process to print.
    pub(crate) fn to_line(&self) -> String {
        self.0.iter().map(|((op, outcome), n)| format!("{op}/{outcome}={n}")).collect::<Vec<_>>().join(" ")
    }

    /// Reads [`Outcomes::to_line`].
    pub(crate) fn from_line(line: &str) -> Outcomes {
        let mut out = Outcomes::default();
        for part in line.split_whitespace() {
            let (key, n) = part.split_once('=').expect("op/outcome=n");
            let (op, outcome) = key.split_once('/').expect("op/outcome");
            out.0.insert((op.to_owned(), outcome.to_owned()), n.parse().expect("a count"));
        }
        out
    }
}

impl fmt::Display for Outcomes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_line())
    }
}

fn cmd(key: &str, tx: u128, op: LedgerOp) -> LedgerCommand {
    LedgerCommand { key: IdempotencyKey::derived("w", key).expect("test key"), tx: TxId::from(tx), at: T0, op }
}

fn hold(user: i64, id: u128, amount: Money) -> LedgerOp {
    LedgerOp::Hold {
        user: UserId(user),
        hold: HoldId::from(id),
        amount,
        provider: None,
        expires_at: T0.plus(Duration::from_secs(3_600)),
        caps: SpendCaps::NONE,
    }
}

/// Tops up the storm user with 100.00.
pub(crate) async fn fund_storm(store: &dyn LedgerStore) {
    let payment = PaymentId::parse("storm-funds").expect("id");
    let op = LedgerOp::TopUp { user: UserId(STORM_USER), amount: Money::from_kopecks(10_000), payment };
    store.apply(cmd("storm-funds", 1, op)).await.expect("fund the storm");
}

/// Holds 1.00 for each id of `holds`, all at once from tasks.
pub(crate) async fn storm(store: Arc<dyn LedgerStore>, holds: std::ops::Range<u128>) -> Outcomes {
    let tasks: Vec<_> = holds
        .map(|id| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let op = hold(STORM_USER, id, Money::from_kopecks(100));
                let result = store.apply(cmd(&format!("storm-{id}"), 1_000_000 + id, op.clone())).await;
                (op, result)
            })
        })
        .collect();
    let mut out = Outcomes::default();
    for t in tasks {
        let (op, result) = t.await.expect("storm task");
        out.record(&op, &result);
    }
    out
}

/// Checks a storm of `n` holds of 1.00 on 100.00: exactly 100 placed, the rest refused for funds, nothing else.
pub(crate) fn assert_storm(outcomes: &Outcomes, n: u64) {
    assert_eq!(outcomes.count("hold", "applied"), 100, "{outcomes}");
    assert_eq!(outcomes.count("hold", "InsufficientFunds"), n - 100, "{outcomes}");
    assert!(outcomes.unexpected(&[("hold", "applied"), ("hold", "InsufficientFunds")]).is_empty(), "{outcomes}");
}

/// A tiny deterministic generator (xorshift64), so the bank needs no randomness crate and replays alike.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }

    fn kopecks(&mut self, n: u64) -> Money {
        Money::from_kopecks(i64::try_from(self.below(n)).unwrap_or(0) + 1)
    }
}

/// One writer of the bank: top-ups, holds, captures, releases and refunds over `users` shared users (shared
/// with every other writer, in this process and in others). `writer` must be unique across them all.
pub(crate) async fn bank_writer(store: Arc<dyn LedgerStore>, writer: u128, ops: u64, users: u64) -> Outcomes {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (u64::try_from(writer).unwrap_or(0) + 1));
    let mut active: Vec<(u128, Money)> = Vec::new();
    let mut captured: Vec<(u128, Money)> = Vec::new();
    let mut out = Outcomes::default();
    for i in 0..ops {
        let id = (writer << 32) | u128::from(i);
        let key = format!("bank-{writer}-{i}");
        let user = i64::try_from(rng.below(users)).unwrap_or(0) + 100;
        let pick = |rng: &mut Rng, len: usize| usize::try_from(rng.below(len as u64)).unwrap_or(0);
        let op = match rng.below(6) {
            1 | 2 => hold(user, id, rng.kopecks(5_000)),
            3 if !active.is_empty() => {
                let (h, amount) = active.swap_remove(pick(&mut rng, active.len()));
                let part = Money::from_kopecks(
                    i64::try_from(rng.below(u64::try_from(amount.kopecks()).unwrap_or(0) + 1)).unwrap_or(0),
                );
                captured.push((h, part));
                LedgerOp::Capture { hold: HoldId::from(h), amount: part }
            }
            4 if !active.is_empty() => {
                let (h, _) = active.swap_remove(pick(&mut rng, active.len()));
                LedgerOp::Release { hold: HoldId::from(h) }
            }
            5 if captured.iter().any(|(_, left)| left.is_positive()) => {
                let (h, left) = captured.iter_mut().find(|(_, left)| left.is_positive()).expect("a refundable hold");
                let part = Money::from_kopecks(
                    i64::try_from(rng.below(u64::try_from(left.kopecks()).unwrap_or(0))).unwrap_or(0) + 1,
                );
                *left = left.checked_sub(part).expect("refundable");
                LedgerOp::Refund { hold: HoldId::from(*h), amount: part }
            }
            _ => LedgerOp::TopUp {
                user: UserId(user),
                amount: rng.kopecks(50_000),
                payment: PaymentId::parse(&key).expect("payment id"),
            },
        };
        let result = store.apply(cmd(&key, id, op.clone())).await;
        if let (LedgerOp::Hold { amount, .. }, Ok(_)) = (&op, &result) {
            active.push((id, *amount));
        }
        out.record(&op, &result);
    }
    out
}

/// Checks the bank's counts: every kind of move happened, and the only refusal is a hold short of funds.
pub(crate) fn assert_bank(outcomes: &Outcomes) {
    for op in ["top_up", "hold", "capture", "release", "refund"] {
        assert!(outcomes.count(op, "applied") > 0, "no {op} applied: {outcomes}");
    }
    let allowed = [
        ("top_up", "applied"),
        ("hold", "applied"),
        ("hold", "InsufficientFunds"),
        ("capture", "applied"),
        ("release", "applied"),
        ("refund", "applied"),
    ];
    assert!(outcomes.unexpected(&allowed).is_empty(), "unexpected outcomes: {:?}", outcomes.unexpected(&allowed));
}

/// Every move the bank applied, from its counts.
pub(crate) fn applied(outcomes: &Outcomes) -> u64 {
    ["top_up", "hold", "capture", "release", "refund"].iter().map(|op| outcomes.count(op, "applied")).sum()
}

/// The user of [`repeats`]; the sequence starts from an empty wallet.
pub(crate) const REPEATS_USER: i64 = 2;

/// One caller's run of the same command sequence as every other caller's (same keys, so all but one of each
/// command must replay): a top-up of 10.00, a hold of all of it, a capture of 8.00, a refund of the 8.00, a
/// second hold of all of it and its release, an adjustment in and back out. Each command goes out `copies`
/// times at once, each copy with its own transaction id from `tx_base`.
pub(crate) async fn repeats(store: Arc<dyn LedgerStore>, copies: u128, tx_base: u128) -> Outcomes {
    let user = UserId(REPEATS_USER);
    let reason = rei_core::guards::Reason::parse("repeats").expect("reason");
    let ops = [
        LedgerOp::TopUp { user, amount: Money::from_kopecks(1_000), payment: PaymentId::parse("rep-pay").expect("id") },
        hold(REPEATS_USER, 7_001, Money::from_kopecks(1_000)),
        LedgerOp::Capture { hold: HoldId::from(7_001), amount: Money::from_kopecks(800) },
        LedgerOp::Refund { hold: HoldId::from(7_001), amount: Money::from_kopecks(800) },
        hold(REPEATS_USER, 7_002, Money::from_kopecks(1_000)),
        LedgerOp::Release { hold: HoldId::from(7_002) },
        LedgerOp::Adjust { user, amount: Money::from_kopecks(500), actor: UserId(1), reason: reason.clone() },
        LedgerOp::Adjust { user, amount: Money::from_kopecks(-1_500), actor: UserId(1), reason },
    ];
    let mut out = Outcomes::default();
    for (n, op) in ops.iter().enumerate() {
        let step = u128::try_from(n).unwrap_or(0);
        let tasks: Vec<_> = (0..copies)
            .map(|c| {
                let (store, op) = (Arc::clone(&store), op.clone());
                let tx = tx_base + step * 1_000 + c;
                tokio::spawn(async move { store.apply(cmd(&format!("rep-{n}"), tx, op)).await })
            })
            .collect();
        for t in tasks {
            let result = t.await.expect("repeat task");
            out.record(op, &result);
        }
    }
    out
}

/// Checks the sum of every caller's [`repeats`]: each command applied once, every other copy replayed.
pub(crate) fn assert_repeats(outcomes: &Outcomes, callers: u64) {
    for (op, times) in [("top_up", 1), ("hold", 2), ("capture", 1), ("refund", 1), ("release", 1), ("adjust", 2)] {
        assert_eq!(outcomes.count(op, "applied"), times, "{op} must apply once per command: {outcomes}");
        assert_eq!(outcomes.count(op, "replayed"), times * (callers - 1), "every other {op} replays: {outcomes}");
    }
    let allowed: Vec<(&str, &str)> = ["top_up", "hold", "capture", "refund", "release", "adjust"]
        .iter()
        .flat_map(|op| [(*op, "applied"), (*op, "replayed")])
        .collect();
    assert!(outcomes.unexpected(&allowed).is_empty(), "a repeat must never fail: {outcomes}");
}
