//! The ledger model test: random sequences of operations (with replayed keys, conflicting keys, expiries,
//! partial captures, refunds, card refunds, adjustments, overdraft changes and clock moves) run against a
//! [`LedgerStore`] and against an independent oracle written with plain integers. After every step the store
//! must agree with the oracle and keep every invariant:
//!
//! - I1 each transaction's postings sum to zero;
//! - I2 no available balance below its overdraft limit, no negative held balance;
//! - I3 cached balances equal the sums of the postings (`verify` is clean);
//! - I4 each idempotency key has at most one transaction;
//! - I5 a hold ends exactly once, `captured <= amount`, `refunded <= captured`;
//! - I6 money is conserved: the sum over every account is zero.
//!
//! The oracle checks the same rules as [`crate::ledger::plan`] in the same order (documented there), but shares
//! no code with it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Debug;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, RngSeed, TestRunner};
use proptest_state_machine::{ReferenceStateMachine, StateMachineTest};

use crate::caps::{HOUR, SpendCaps};
use crate::guards::Reason;
use crate::ids::{HoldId, IdempotencyKey, PaymentId, ProviderId, TxId, UserId};
use crate::ledger::{Account, HoldState, LedgerCommand, LedgerError, LedgerOp, LedgerStore, OpKind, SystemAccount};
use crate::money::Money;
use crate::testing::ledger::MemoryLedger;
use crate::time::Timestamp;

/// How a model test reaches the store under test.
pub trait LedgerHarness: 'static {
    /// A fresh, empty store.
    fn new_store() -> Arc<dyn LedgerStore>;
    /// Runs a store future to completion.
    fn block_on<F: Future>(fut: F) -> F::Output;
}

/// Runs the model test against [`MemoryLedger`].
#[derive(Debug)]
pub struct MemoryHarness;

impl LedgerHarness for MemoryHarness {
    fn new_store() -> Arc<dyn LedgerStore> {
        Arc::new(MemoryLedger::new())
    }

    fn block_on<F: Future>(fut: F) -> F::Output {
        // The in-memory store never waits, so one poll finishes every future it returns.
        let mut fut = pin!(fut);
        match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(v) => v,
            Poll::Pending => panic!("invariant broken: an in-memory store future was not ready"),
        }
    }
}

/// Runs `cases` random sequences of up to `steps_max` steps against the harness's store and panics, with the
/// seed and the shrunk sequence, on the first broken invariant. The seed comes from `REI_MODEL_SEED` when set,
/// otherwise from the clock, and is printed either way; `REI_MODEL_CASES` overrides `cases` for a deeper run.
pub fn run_ledger_model<H: LedgerHarness>(cases: u32, steps_max: usize) {
    // A deeper run on demand: REI_MODEL_CASES=<n> sets the number of cases of every harness.
    let cases = std::env::var("REI_MODEL_CASES").ok().and_then(|s| s.parse::<u32>().ok()).unwrap_or(cases);
    let seed = std::env::var("REI_MODEL_SEED").ok().and_then(|s| s.parse::<u64>().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(7, |d| u64::try_from(d.as_nanos() % u128::from(u64::MAX)).unwrap_or(7))
    });
    eprintln!("ledger model test: {cases} cases of up to {steps_max} steps, REI_MODEL_SEED={seed}");
    // Failures are kept beside this file (`proptest-regressions/`) and replayed first on every later run.
    let config = Config {
        cases,
        rng_seed: RngSeed::Fixed(seed),
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("proptest-regressions"))),
        source_file: Some(file!()),
        ..Config::default()
    };
    let mut runner = TestRunner::new(config.clone());
    let strategy = Model::sequential_strategy(1..=steps_max);
    let result = runner.run(&strategy, |(init, steps, seen)| {
        ModelTest::<H>::test_sequential(config.clone(), init, steps, seen);
        Ok(())
    });
    if let Err(e) = result {
        panic!("ledger model test failed with REI_MODEL_SEED={seed}: {e}");
    }
}

const USERS: [i64; 3] = [1, 2, 3];
const T0: i64 = 1_800_000_000_000;
const CAPS: SpendCaps = SpendCaps {
    user_hourly: Some(Money::from_kopecks(15_000)),
    user_daily: Some(Money::from_kopecks(40_000)),
    provider_daily: Some(Money::from_kopecks(60_000)),
    active_holds_max: Some(3),
};

/// One step of a sequence.
#[derive(Debug, Clone)]
pub(super) enum Step {
    /// A new command.
    Cmd(LedgerCommand),
    /// An earlier command again, with its key (a replay, or a retry of a refused command).
    Replay(LedgerCommand),
    /// Set a user's overdraft limit.
    SetOverdraft(UserId, Money),
    /// Move the clock forward.
    Advance(Duration),
    /// Run the reaper: expire every due hold.
    Reap,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct MUser {
    available: i64,
    held: i64,
    overdraft: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct MHold {
    user: i64,
    provider: Option<String>,
    amount: i64,
    captured: i64,
    refunded: i64,
    state: HoldState,
    created: i64,
    expires: i64,
    /// Every amount held, with when: the hold's own, then each positive raise, in order.
    tranches: Vec<(i64, i64)>,
    /// Placed under its provider's budget.
    budgeted: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct MPay {
    user: i64,
    amount: i64,
    refunded: i64,
}

/// What the oracle expects of the last step.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Expect {
    Nothing,
    /// Applied (or replayed) with this receipt summary.
    Applied {
        replayed: bool,
        tx: TxId,
        kind: OpKind,
        amount: i64,
        released: i64,
    },
    Refused(&'static str),
    Overdraft(Result<(), &'static str>),
    Reaped(Vec<u128>),
}

/// The oracle: the whole ledger as plain integers.
#[derive(Debug, Clone)]
pub(super) struct Model {
    now: i64,
    next: u64,
    users: BTreeMap<i64, MUser>,
    system: BTreeMap<SystemAccount, i64>,
    holds: BTreeMap<u128, MHold>,
    payments: BTreeMap<String, MPay>,
    keys: HashMap<String, (LedgerOp, Expect)>,
    history: Vec<LedgerCommand>,
    applied: u64,
    last: Expect,
}

fn code(e: &LedgerError) -> &'static str {
    match e {
        LedgerError::InvalidAmount { .. } => "invalid_amount",
        LedgerError::InsufficientFunds { .. } => "insufficient_funds",
        LedgerError::SpendCap(_) => "spend_cap",
        LedgerError::HoldNotFound { .. } => "hold_not_found",
        LedgerError::HoldExists { .. } => "hold_exists",
        LedgerError::HoldNotActive { .. } => "hold_not_active",
        LedgerError::HoldExpired { .. } => "hold_expired",
        LedgerError::HoldNotExpired { .. } => "hold_not_expired",
        LedgerError::InvalidExpiry { .. } => "invalid_expiry",
        LedgerError::CaptureExceedsHold { .. } => "capture_exceeds_hold",
        LedgerError::RefundExceedsCaptured { .. } => "refund_exceeds_captured",
        LedgerError::PaymentNotFound { .. } => "payment_not_found",
        LedgerError::PaymentExists { .. } => "payment_exists",
        LedgerError::PaymentOwner { .. } => "payment_owner",
        LedgerError::RefundExceedsPayment { .. } => "refund_exceeds_payment",
        LedgerError::KeyConflict { .. } => "key_conflict",
        LedgerError::TransactionExists { .. } => "transaction_exists",
        LedgerError::TooManyActiveHolds { .. } => "too_many_active_holds",
        LedgerError::Key(_) => "key",
        LedgerError::Overflow => "overflow",
        LedgerError::Store(_) => "store",
    }
}

fn sys(m: &mut BTreeMap<SystemAccount, i64>, a: SystemAccount, delta: i64) {
    *m.entry(a).or_insert(0) += delta;
}

impl Model {
    fn user(&self, id: i64) -> MUser {
        self.users.get(&id).copied().unwrap_or(MUser { available: 0, held: 0, overdraft: 0 })
    }

    /// What each tranche of a hold counts as spent: all of it while active, the capture spread over the
    /// earliest tranches once captured, nothing once released or expired.
    fn attributed(h: &MHold) -> Vec<(i64, i64)> {
        let mut left = match h.state {
            HoldState::Active => i64::MAX,
            HoldState::Captured => h.captured,
            HoldState::Released | HoldState::Expired => 0,
        };
        h.tranches
            .iter()
            .map(|(at, amount)| {
                let spent = (*amount).min(left);
                left -= spent;
                (*at, spent)
            })
            .collect()
    }

    fn caps_refusal(&self, caps: &SpendCaps, user: i64, provider: Option<&String>, at: i64, amount: i64) -> bool {
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(0);
        let day = Duration::from_secs(86_400);
        // A user's windows are exact: every tranche held after `at - window`.
        let user_sum = |w| {
            let since = at - ms(w);
            self.holds
                .values()
                .filter(|h| h.user == user)
                .flat_map(Self::attributed)
                .filter(|(t, _)| *t > since)
                .map(|(_, spent)| spent)
                .sum::<i64>()
        };
        // A provider's day is whole minutes: tranches of budgeted holds whose minute is one of the last 1,440.
        let minute = |t: i64| t - t.rem_euclid(60_000);
        let prov_sum = || match provider {
            Some(p) => self
                .holds
                .values()
                .filter(|h| h.budgeted && h.provider.as_ref() == Some(p))
                .flat_map(Self::attributed)
                .filter(|(t, _)| minute(*t) > minute(at) - ms(day))
                .map(|(_, spent)| spent)
                .sum::<i64>(),
            None => 0,
        };
        let over = |cap: Option<Money>, used: i64| cap.is_some_and(|c| used + amount > c.kopecks());
        over(caps.user_hourly, user_sum(HOUR))
            || over(caps.user_daily, user_sum(day))
            || over(caps.provider_daily, prov_sum())
    }

    /// Applies a command to the oracle and returns what the store must answer.
    fn run(&mut self, cmd: &LedgerCommand) -> Expect {
        if let Some((op, first)) = self.keys.get(cmd.key.as_str()) {
            if op.fingerprint() != cmd.op.fingerprint() {
                return Expect::Refused("key_conflict");
            }
            if let Expect::Applied { tx, kind, amount, released, .. } = first {
                return Expect::Applied { replayed: true, tx: *tx, kind: *kind, amount: *amount, released: *released };
            }
        }
        let mut next = self.clone();
        match next.plan(cmd) {
            Ok((amount, released)) => {
                let e = Expect::Applied { replayed: false, tx: cmd.tx, kind: cmd.op.kind(), amount, released };
                next.keys.insert(cmd.key.as_str().to_owned(), (cmd.op.clone(), e.clone()));
                next.applied += 1;
                *self = next;
                e
            }
            Err(code) => Expect::Refused(code),
        }
    }

    /// Mutates `self` (a scratch copy) and returns (main amount, released), or the refusal code.
    fn plan(&mut self, cmd: &LedgerCommand) -> Result<(i64, i64), &'static str> {
        let at = cmd.at.as_millis();
        let hold_of = |s: &Self, id: HoldId| s.holds.get(&id.as_u128()).cloned();
        if cmd.op.user().is_none()
            && let Some(id) = cmd.op.hold()
            && hold_of(self, id).is_none()
        {
            return Err("hold_not_found");
        }
        let headroom = |u: &MUser| u.available + u.overdraft;
        match &cmd.op {
            LedgerOp::TopUp { user, amount, payment } => {
                let a = amount.kopecks();
                if a <= 0 {
                    return Err("invalid_amount");
                }
                if self.payments.contains_key(payment.as_str()) {
                    return Err("payment_exists");
                }
                let u = self.user(user.0);
                self.users.entry(user.0).or_insert(u).available += a;
                sys(&mut self.system, SystemAccount::Payments, -a);
                self.payments.insert(payment.as_str().to_owned(), MPay { user: user.0, amount: a, refunded: 0 });
                Ok((a, 0))
            }
            LedgerOp::Hold { user, hold, amount, provider, expires_at, caps } => {
                let a = amount.kopecks();
                if a <= 0 {
                    return Err("invalid_amount");
                }
                if self.holds.contains_key(&hold.as_u128()) {
                    return Err("hold_exists");
                }
                if expires_at.as_millis() <= at {
                    return Err("invalid_expiry");
                }
                let u = self.user(user.0);
                if headroom(&u) < a {
                    return Err("insufficient_funds");
                }
                let prov = provider.as_ref().map(|p| p.as_str().to_owned());
                if self.caps_refusal(caps, user.0, prov.as_ref(), at, a) {
                    return Err("spend_cap");
                }
                let active = self.holds.values().filter(|h| h.user == user.0 && h.state == HoldState::Active).count();
                if caps.active_holds_max.is_some_and(|max| active >= max as usize) {
                    return Err("too_many_active_holds");
                }
                let e = self.users.entry(user.0).or_insert(u);
                e.available -= a;
                e.held += a;
                let h = MHold {
                    user: user.0,
                    provider: prov,
                    amount: a,
                    captured: 0,
                    refunded: 0,
                    state: HoldState::Active,
                    created: at,
                    expires: expires_at.as_millis(),
                    tranches: vec![(at, a)],
                    budgeted: caps.provider_daily.is_some() && provider.is_some(),
                };
                self.holds.insert(hold.as_u128(), h);
                Ok((a, 0))
            }
            LedgerOp::Raise { hold, amount, expires_at, caps } => {
                let h = self.live(*hold, at)?;
                let a = amount.kopecks();
                if a < 0 {
                    return Err("invalid_amount");
                }
                if expires_at.as_millis() <= at {
                    return Err("invalid_expiry");
                }
                if a > 0 {
                    if headroom(&self.user(h.user)) < a {
                        return Err("insufficient_funds");
                    }
                    if self.caps_refusal(caps, h.user, h.provider.as_ref(), at, a) {
                        return Err("spend_cap");
                    }
                }
                let u = self.users.entry(h.user).or_insert(MUser { available: 0, held: 0, overdraft: 0 });
                u.available -= a;
                u.held += a;
                let m = self.holds.entry(hold.as_u128()).or_insert(h);
                m.amount += a;
                if a > 0 {
                    m.tranches.push((at, a));
                }
                m.expires = m.expires.max(expires_at.as_millis());
                Ok((a, 0))
            }
            LedgerOp::Capture { hold, amount } => {
                let h = self.live(*hold, at)?;
                let a = amount.kopecks();
                if a < 0 {
                    return Err("invalid_amount");
                }
                if a > h.amount {
                    return Err("capture_exceeds_hold");
                }
                let u = self.users.entry(h.user).or_insert(MUser { available: 0, held: 0, overdraft: 0 });
                u.held -= h.amount;
                u.available += h.amount - a;
                sys(&mut self.system, SystemAccount::Revenue, a);
                let m = self.holds.entry(hold.as_u128()).or_insert(h.clone());
                m.captured = a;
                m.state = HoldState::Captured;
                Ok((a, h.amount - a))
            }
            LedgerOp::Release { hold } | LedgerOp::Expire { hold } => {
                let expire = matches!(cmd.op, LedgerOp::Expire { .. });
                let h = hold_of(self, *hold).ok_or("hold_not_found")?;
                if h.state != HoldState::Active {
                    return Err("hold_not_active");
                }
                if expire && at < h.expires {
                    return Err("hold_not_expired");
                }
                let u = self.users.entry(h.user).or_insert(MUser { available: 0, held: 0, overdraft: 0 });
                u.held -= h.amount;
                u.available += h.amount;
                let m = self.holds.entry(hold.as_u128()).or_insert(h.clone());
                m.state = if expire { HoldState::Expired } else { HoldState::Released };
                Ok((h.amount, h.amount))
            }
            LedgerOp::Refund { hold, amount } => {
                let a = amount.kopecks();
                if a <= 0 {
                    return Err("invalid_amount");
                }
                let h = hold_of(self, *hold).ok_or("hold_not_found")?;
                if h.state != HoldState::Captured {
                    return Err("hold_not_active");
                }
                if a > h.captured - h.refunded {
                    return Err("refund_exceeds_captured");
                }
                self.users.entry(h.user).or_insert(MUser { available: 0, held: 0, overdraft: 0 }).available += a;
                sys(&mut self.system, SystemAccount::Revenue, -a);
                self.holds.entry(hold.as_u128()).or_insert(h).refunded += a;
                Ok((a, 0))
            }
            LedgerOp::RefundToCard { user, payment, amount } => {
                let a = amount.kopecks();
                if a <= 0 {
                    return Err("invalid_amount");
                }
                let p = self.payments.get(payment.as_str()).cloned().ok_or("payment_not_found")?;
                if p.user != user.0 {
                    return Err("payment_owner");
                }
                if a > p.amount - p.refunded {
                    return Err("refund_exceeds_payment");
                }
                let u = self.user(user.0);
                if headroom(&u) < a {
                    return Err("insufficient_funds");
                }
                self.users.entry(user.0).or_insert(u).available -= a;
                sys(&mut self.system, SystemAccount::RefundsOut, a);
                self.payments.entry(payment.as_str().to_owned()).or_insert(p).refunded += a;
                Ok((a, 0))
            }
            LedgerOp::Adjust { user, amount, .. } => {
                let a = amount.kopecks();
                if a == 0 {
                    return Err("invalid_amount");
                }
                let u = self.user(user.0);
                if a < 0 && headroom(&u) < -a {
                    return Err("insufficient_funds");
                }
                self.users.entry(user.0).or_insert(u).available += a;
                sys(&mut self.system, SystemAccount::Promo, -a);
                Ok((a, 0))
            }
        }
    }

    fn live(&self, hold: HoldId, at: i64) -> Result<MHold, &'static str> {
        let h = self.holds.get(&hold.as_u128()).cloned().ok_or("hold_not_found")?;
        if h.state != HoldState::Active {
            return Err("hold_not_active");
        }
        if at >= h.expires {
            return Err("hold_expired");
        }
        Ok(h)
    }

    fn due(&self) -> Vec<u128> {
        let mut due: Vec<(i64, u128)> = self
            .holds
            .iter()
            .filter(|(_, h)| h.state == HoldState::Active && h.expires <= self.now)
            .map(|(id, h)| (h.expires, *id))
            .collect();
        due.sort_unstable();
        due.into_iter().map(|(_, id)| id).collect()
    }
}

fn reap_cmd(id: u128, now: i64) -> LedgerCommand {
    LedgerCommand {
        key: IdempotencyKey::derived("reap", HoldId::from(id)).expect("test key"),
        tx: TxId::from(id | (1 << 100)),
        at: Timestamp::from_millis(now),
        op: LedgerOp::Expire { hold: HoldId::from(id) },
    }
}

fn op_strategy(m: &Model) -> BoxedStrategy<LedgerOp> {
    let user = prop::sample::select(USERS.to_vec()).prop_map(UserId);
    let new_hold = u128::from(m.next) + 1_000;
    let old_hold = m.holds.keys().next_back().copied().unwrap_or(new_hold);
    let mut hold_ids: Vec<u128> = m.holds.keys().copied().collect();
    hold_ids.push(999_999);
    let some_hold = prop::sample::select(hold_ids.clone()).prop_map(HoldId::from);
    let payments: Vec<String> = m.payments.keys().cloned().chain(std::iter::once("p-none".to_owned())).collect();
    let new_payment = format!("p{}", m.next);
    let now = m.now;
    let reason = Reason::parse("model test").ok();
    let ts = move |offset_s: u64| Timestamp::from_millis(now).plus(Duration::from_secs(offset_s));
    let kop = |lo: i64, hi: i64| (lo..=hi).prop_map(Money::from_kopecks);
    let provider = prop_oneof![Just(None), Just(Some("kling")), Just(Some("gemini"))]
        .prop_map(|p| p.and_then(|p| ProviderId::parse(p).ok()));

    let top_up = (user.clone(), kop(1, 20_000), prop::bool::weighted(0.1), prop::sample::select(payments.clone()))
        .prop_map(move |(user, amount, reuse, old)| LedgerOp::TopUp {
            user,
            amount,
            payment: PaymentId::parse(if reuse { &old } else { &new_payment }).unwrap_or_else(|e| panic!("{e}")),
        });
    // Most holds live minutes; some live hours, raised as they go, so caps see amounts held long after the hold.
    let ttl = || prop_oneof![4 => 1u64..900, 1 => 3_000u64..20_000];
    let hold = (user.clone(), kop(0, 8_000), ttl(), prop::bool::weighted(0.3), provider, prop::bool::weighted(0.05))
        .prop_map(move |(user, amount, ttl, capped, provider, reuse)| LedgerOp::Hold {
            user,
            hold: HoldId::from(if reuse { old_hold } else { new_hold }),
            amount,
            provider,
            expires_at: ts(ttl),
            caps: if capped { CAPS } else { SpendCaps::NONE },
        });
    let raise = (some_hold.clone(), kop(0, 3_000), ttl()).prop_map(move |(hold, amount, ttl)| LedgerOp::Raise {
        hold,
        amount,
        expires_at: ts(ttl),
        caps: CAPS,
    });
    let capture = (some_hold.clone(), kop(0, 10_000)).prop_map(|(hold, amount)| LedgerOp::Capture { hold, amount });
    let release = some_hold.clone().prop_map(|hold| LedgerOp::Release { hold });
    let expire = some_hold.clone().prop_map(|hold| LedgerOp::Expire { hold });
    let refund = (some_hold, kop(0, 5_000)).prop_map(|(hold, amount)| LedgerOp::Refund { hold, amount });
    let card = (user.clone(), prop::sample::select(payments), kop(1, 10_000)).prop_map(|(user, p, amount)| {
        LedgerOp::RefundToCard { user, payment: PaymentId::parse(&p).unwrap_or_else(|e| panic!("{e}")), amount }
    });
    let adjust = (user, kop(-5_000, 5_000)).prop_map(move |(user, amount)| LedgerOp::Adjust {
        user,
        amount,
        actor: UserId(0),
        reason: reason.clone().unwrap_or_else(|| panic!("literal reason")),
    });
    prop_oneof![
        3 => top_up, 5 => hold, 3 => raise, 4 => capture, 2 => release, 1 => expire, 2 => refund, 1 => card,
        2 => adjust
    ]
    .boxed()
}

impl ReferenceStateMachine for Model {
    type State = Model;
    type Transition = Step;

    fn init_state() -> BoxedStrategy<Model> {
        Just(Model {
            now: T0,
            next: 1,
            users: BTreeMap::new(),
            system: BTreeMap::new(),
            holds: BTreeMap::new(),
            payments: BTreeMap::new(),
            keys: HashMap::new(),
            history: Vec::new(),
            applied: 0,
            last: Expect::Nothing,
        })
        .boxed()
    }

    fn transitions(m: &Model) -> BoxedStrategy<Step> {
        let (n, now) = (m.next, m.now);
        let cmd = op_strategy(m).prop_map(move |op| {
            Step::Cmd(LedgerCommand {
                key: IdempotencyKey::derived("k", n).expect("test key"),
                tx: TxId::from(u128::from(n)),
                at: Timestamp::from_millis(now),
                op,
            })
        });
        let overdraft = (prop::sample::select(USERS.to_vec()), -1i64..5_000)
            .prop_map(|(u, l)| Step::SetOverdraft(UserId(u), Money::from_kopecks(l)));
        let advance =
            prop_oneof![1u64..120, 100u64..1_000, Just(3_700)].prop_map(|s| Step::Advance(Duration::from_secs(s)));
        if m.history.is_empty() {
            return prop_oneof![8 => cmd, 1 => overdraft, 1 => advance].boxed();
        }
        let history = m.history.clone();
        let replay = prop::sample::select(history.clone()).prop_map(Step::Replay);
        let conflict = (prop::sample::select(history), op_strategy(m))
            .prop_map(move |(old, op)| Step::Cmd(LedgerCommand { tx: TxId::from(u128::from(n)), op, ..old }));
        prop_oneof![16 => cmd, 3 => replay, 1 => conflict, 1 => overdraft, 2 => advance, 2 => Just(Step::Reap)].boxed()
    }

    fn apply(mut m: Model, step: &Step) -> Model {
        m.last = match step {
            Step::Cmd(cmd) | Step::Replay(cmd) => {
                if matches!(step, Step::Cmd(_)) {
                    m.next += 1;
                    m.history.push(cmd.clone());
                }
                m.run(cmd)
            }
            Step::SetOverdraft(user, limit) => {
                let u = m.user(user.0);
                let l = limit.kopecks();
                Expect::Overdraft(if l < 0 {
                    Err("invalid_amount")
                } else if u.available < -l {
                    Err("insufficient_funds")
                } else {
                    m.users.insert(user.0, MUser { overdraft: l, ..u });
                    Ok(())
                })
            }
            Step::Advance(d) => {
                m.now += i64::try_from(d.as_millis()).unwrap_or(0);
                Expect::Nothing
            }
            Step::Reap => {
                let due = m.due();
                for id in &due {
                    let expect = m.run(&reap_cmd(*id, m.now));
                    assert!(matches!(expect, Expect::Applied { .. }), "oracle: a due hold must expire: {expect:?}");
                }
                Expect::Reaped(due)
            }
        };
        m
    }
}

/// Drives a store through the sequence and checks it against the oracle.
struct ModelTest<H>(PhantomData<H>);

impl<H: LedgerHarness> StateMachineTest for ModelTest<H> {
    type SystemUnderTest = Arc<dyn LedgerStore>;
    type Reference = Model;

    fn init_test(_: &Model) -> Arc<dyn LedgerStore> {
        H::new_store()
    }

    fn apply(store: Arc<dyn LedgerStore>, m: &Model, step: Step) -> Arc<dyn LedgerStore> {
        let got = match &step {
            Step::Cmd(cmd) | Step::Replay(cmd) => match H::block_on(store.apply(cmd.clone())) {
                Ok(a) => Expect::Applied {
                    replayed: a.replayed,
                    tx: a.receipt.tx,
                    kind: a.receipt.kind,
                    amount: a.receipt.amount.kopecks(),
                    released: a.receipt.released.kopecks(),
                },
                Err(e) => Expect::Refused(code(&e)),
            },
            Step::SetOverdraft(user, limit) => {
                Expect::Overdraft(H::block_on(store.set_overdraft_limit(*user, *limit)).map_err(|e| code(&e)))
            }
            Step::Advance(_) => Expect::Nothing,
            Step::Reap => {
                let now = Timestamp::from_millis(m.now);
                let due = H::block_on(store.holds_due(now, 1_000)).unwrap_or_else(|e| panic!("holds_due: {e}"));
                for id in &due {
                    let r = H::block_on(store.apply(reap_cmd(id.as_u128(), m.now)));
                    assert!(r.is_ok(), "the reaper must expire due hold {id}: {r:?}");
                }
                Expect::Reaped(due.iter().map(|h| h.as_u128()).collect())
            }
        };
        assert_eq!(got, m.last, "store and oracle disagree on {step:?}");
        store
    }

    fn check_invariants(store: &Arc<dyn LedgerStore>, m: &Model) {
        let txs = H::block_on(store.transactions(0, 100_000)).unwrap_or_else(|e| panic!("transactions: {e}"));
        assert_eq!(txs.len() as u64, m.applied, "one transaction per applied command");
        let mut keys = BTreeSet::new();
        let mut terminal = BTreeSet::new();
        for tx in &txs {
            assert_eq!(tx.sum(), Some(Money::ZERO), "I1: transaction {} must sum to zero", tx.id);
            assert!(keys.insert(tx.key.clone()), "I4: key {} has two transactions", tx.key);
            if matches!(tx.kind, OpKind::Capture | OpKind::Release | OpKind::Expire) {
                let hold = tx.hold.unwrap_or_else(|| panic!("a {:?} names its hold", tx.kind));
                assert!(terminal.insert(hold), "I5: hold {hold} ended twice");
            }
            for p in &tx.postings {
                if let Account::Available(u) | Account::Held(u) = p.account {
                    assert_eq!(u, tx.user, "a transaction touches only its own user's accounts");
                }
            }
        }
        for id in USERS {
            let b = H::block_on(store.balance(UserId(id))).unwrap_or_else(|e| panic!("balance: {e}"));
            let o = m.user(id);
            assert_eq!(
                (b.available.kopecks(), b.held.kopecks(), b.overdraft_limit.kopecks()),
                (o.available, o.held, o.overdraft),
                "balances of user {id}"
            );
            let active = m.holds.values().filter(|h| h.user == id && h.state == HoldState::Active).count();
            assert_eq!(usize::try_from(b.active_holds).ok(), Some(active), "active holds of user {id}");
            assert!(b.available.kopecks() >= -b.overdraft_limit.kopecks(), "I2: available below the overdraft limit");
            assert!(!b.held.is_negative(), "I2: negative held");
        }
        for acc in SystemAccount::ALL {
            let got = H::block_on(store.system_balance(acc)).unwrap_or_else(|e| panic!("system balance: {e}"));
            assert_eq!(got.kopecks(), m.system.get(&acc).copied().unwrap_or(0), "system account {acc:?}");
        }
        for (id, mh) in &m.holds {
            let h = H::block_on(store.hold(HoldId::from(*id)))
                .unwrap_or_else(|e| panic!("hold: {e}"))
                .unwrap_or_else(|| panic!("hold {id} must exist"));
            assert_eq!(
                (h.state, h.amount.kopecks(), h.captured.kopecks(), h.refunded.kopecks()),
                (mh.state, mh.amount, mh.captured, mh.refunded),
                "hold {id}"
            );
            assert!(h.captured <= h.amount && h.refunded <= h.captured, "I5: hold {id} bounds");
            assert_eq!(h.state != HoldState::Active, terminal.contains(&h.id), "I5: hold {id} ended exactly once");
        }
        let report = H::block_on(store.verify()).unwrap_or_else(|e| panic!("verify: {e}"));
        assert!(report.is_clean(), "I3/I6: verify must be clean: {report:?}");
        assert_eq!(report.transactions, m.applied);
    }
}
