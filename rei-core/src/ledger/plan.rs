//! The pure semantics of every ledger operation: from the rows an operation touches to the transaction and the
//! new rows. Every store calls [`plan`] inside its atomic step, so the rules live in one place.

use crate::caps::{CapExceeded, CapUsage, SpendCaps};
use crate::ids::{HoldId, IdError, IdempotencyKey, PaymentId, ProviderId, TxId};
use crate::ledger::StoreError;
use crate::ledger::model::{
    Account, Balance, Hold, HoldState, LedgerCommand, LedgerOp, PaymentRecord, Posting, Receipt, SystemAccount,
    Transaction,
};
use crate::money::Money;
use crate::time::Timestamp;

/// Why an operation was refused. A refused operation moves no money and records nothing under its key, so
/// it may be retried with the same key once the cause is gone.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    /// The amount is zero or negative where a positive one is needed (or zero for an adjustment).
    #[error("invalid amount {amount}")]
    InvalidAmount {
        /// The amount given.
        amount: Money,
    },
    /// `available` would fall below the overdraft limit.
    #[error("insufficient funds: {available} available, {required} required")]
    InsufficientFunds {
        /// Spendable now (including overdraft headroom).
        available: Money,
        /// Asked for.
        required: Money,
    },
    /// A spend cap would be passed.
    #[error(transparent)]
    SpendCap(#[from] CapExceeded),
    /// No such hold.
    #[error("hold {hold} not found")]
    HoldNotFound {
        /// Which.
        hold: HoldId,
    },
    /// A hold with this id exists already (made under another key).
    #[error("hold {hold} exists already")]
    HoldExists {
        /// Which.
        hold: HoldId,
    },
    /// The hold is not in the state the operation needs.
    #[error("hold {hold} is {state:?}")]
    HoldNotActive {
        /// Which.
        hold: HoldId,
        /// Where it is.
        state: HoldState,
    },
    /// The hold's TTL has passed: it can no longer be captured or raised, only expired.
    #[error("hold {hold} expired at {expires_at}")]
    HoldExpired {
        /// Which.
        hold: HoldId,
        /// When.
        expires_at: Timestamp,
    },
    /// The hold's TTL has not passed yet, so the reaper may not expire it.
    #[error("hold {hold} does not expire until {expires_at}")]
    HoldNotExpired {
        /// Which.
        hold: HoldId,
        /// When.
        expires_at: Timestamp,
    },
    /// An expiry in the past, or earlier than the current one.
    #[error("expiry {expires_at} is not after {not_before}")]
    InvalidExpiry {
        /// The expiry given.
        expires_at: Timestamp,
        /// The earliest allowed.
        not_before: Timestamp,
    },
    /// Capturing more than is held.
    #[error("capture of {requested} exceeds the hold of {held}")]
    CaptureExceedsHold {
        /// Held.
        held: Money,
        /// Asked for.
        requested: Money,
    },
    /// Refunding more than was captured and not yet refunded.
    #[error("refund of {requested} exceeds the refundable {refundable}")]
    RefundExceedsCaptured {
        /// Still refundable.
        refundable: Money,
        /// Asked for.
        requested: Money,
    },
    /// No top-up with this payment id.
    #[error("payment {payment} not found")]
    PaymentNotFound {
        /// Which.
        payment: PaymentId,
    },
    /// A top-up with this payment id exists already (under another key).
    #[error("payment {payment} was credited already")]
    PaymentExists {
        /// Which.
        payment: PaymentId,
    },
    /// The payment belongs to another user.
    #[error("payment {payment} belongs to another user")]
    PaymentOwner {
        /// Which.
        payment: PaymentId,
    },
    /// Paying back to the card more than the payment brought in.
    #[error("card refund of {requested} exceeds the refundable {refundable}")]
    RefundExceedsPayment {
        /// Still refundable.
        refundable: Money,
        /// Asked for.
        requested: Money,
    },
    /// The key was used before for a different operation.
    #[error("idempotency key {key} was used for a different operation")]
    KeyConflict {
        /// Which.
        key: IdempotencyKey,
    },
    /// The command's transaction id is taken by another transaction: the caller's clash (each command needs a
    /// fresh id from its `IdGen`). Only this command is refused.
    #[error("transaction id {tx} is taken by another transaction")]
    TransactionExists {
        /// Which.
        tx: TxId,
    },
    /// An idempotency key could not be made (its parts are not key syntax).
    #[error("invalid idempotency key: {0}")]
    Key(#[from] IdError),
    /// The user has as many holds active as the limit allows (jobs running at once); wait for one to end.
    #[error("{active} holds are active, the most allowed at once is {max}")]
    TooManyActiveHolds {
        /// Active now.
        active: u32,
        /// The limit.
        max: u32,
    },
    /// An amount overflowed.
    #[error("amount overflow")]
    Overflow,
    /// The store could not be reached or failed; nothing is known to have applied.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The rows an operation touches, read by the store inside its atomic step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerView {
    /// The user's balances (the user of the operation, or of its hold).
    pub balance: Balance,
    /// The hold the operation names, if it exists.
    pub hold: Option<Hold>,
    /// The payment the operation names, if it exists.
    pub payment: Option<PaymentRecord>,
    /// Spend within the cap windows, when the operation carries caps.
    pub cap_usage: CapUsage,
}

/// What the store writes when an operation applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The transaction to append; its postings sum to zero.
    pub tx: Transaction,
    /// The user's balances after the transaction.
    pub balance: Balance,
    /// The hold to insert or overwrite.
    pub hold: Option<Hold>,
    /// The payment to insert or overwrite.
    pub payment: Option<PaymentRecord>,
    /// The receipt to store under the key and return.
    pub receipt: Receipt,
}

fn positive(amount: Money) -> Result<Money, LedgerError> {
    if amount.is_positive() { Ok(amount) } else { Err(LedgerError::InvalidAmount { amount }) }
}

fn add(a: Money, b: Money) -> Result<Money, LedgerError> {
    a.checked_add(b).ok_or(LedgerError::Overflow)
}

fn sub(a: Money, b: Money) -> Result<Money, LedgerError> {
    a.checked_sub(b).ok_or(LedgerError::Overflow)
}

fn neg(a: Money) -> Result<Money, LedgerError> {
    a.checked_neg().ok_or(LedgerError::Overflow)
}

/// The active hold named by an operation, not yet past its TTL.
fn live_hold(view: &LedgerView, id: HoldId, at: Timestamp) -> Result<Hold, LedgerError> {
    let hold = view.hold.clone().ok_or(LedgerError::HoldNotFound { hold: id })?;
    if hold.state != HoldState::Active {
        return Err(LedgerError::HoldNotActive { hold: id, state: hold.state });
    }
    if at >= hold.expires_at {
        return Err(LedgerError::HoldExpired { hold: id, expires_at: hold.expires_at });
    }
    Ok(hold)
}

/// Checks that `available` may drop by `amount`.
fn spendable(balance: &Balance, amount: Money) -> Result<(), LedgerError> {
    let headroom = add(balance.available, balance.overdraft_limit)?;
    if headroom < amount {
        return Err(LedgerError::InsufficientFunds { available: headroom, required: amount });
    }
    Ok(())
}

/// What one operation does to the user's balance, before the transaction and receipt are put together.
struct Step {
    balance: Balance,
    postings: Vec<Posting>,
    hold: Option<Hold>,
    payment: Option<PaymentRecord>,
    /// The hold the receipt names.
    receipt_hold: Option<HoldId>,
    /// What went back from `held` to `available`.
    released: Money,
    /// The receipt's main amount.
    amount: Money,
}

impl Step {
    fn new(view: &LedgerView) -> Step {
        Step {
            balance: view.balance,
            postings: Vec::with_capacity(3),
            hold: None,
            payment: None,
            receipt_hold: None,
            released: Money::ZERO,
            amount: Money::ZERO,
        }
    }

    fn post(&mut self, account: Account, amount: Money) {
        self.postings.push(Posting { account, amount });
    }

    /// Moves `amount` from the user's `available` to `held`.
    fn reserve(&mut self, amount: Money) -> Result<(), LedgerError> {
        let user = self.balance.user;
        self.balance.available = sub(self.balance.available, amount)?;
        self.balance.held = add(self.balance.held, amount)?;
        self.post(Account::Available(user), neg(amount)?);
        self.post(Account::Held(user), amount);
        Ok(())
    }

    /// Counts one active hold of the user less.
    fn hold_ended(&mut self) -> Result<(), LedgerError> {
        let left = self.balance.active_holds.checked_sub(1);
        let message = "an active hold ended, yet the user's count of active holds was zero";
        self.balance.active_holds = left.ok_or_else(|| StoreError::Corrupt { message: message.into() })?;
        Ok(())
    }

    /// Credits `amount` to the user's `available` from system account `from`.
    fn credit(&mut self, from: SystemAccount, amount: Money) -> Result<(), LedgerError> {
        self.balance.available = add(self.balance.available, amount)?;
        self.post(Account::System(from), neg(amount)?);
        self.post(Account::Available(self.balance.user), amount);
        Ok(())
    }
}

/// Plans one operation.
///
/// Invariants of every returned plan: the postings sum to zero; the new balance keeps
/// `available >= -overdraft_limit` and `held >= 0`; a hold ends at most once; `captured <= amount`;
/// `refunded <= captured`.
///
/// # Errors
/// [`LedgerError`] naming the rule the operation would break; nothing is to be written then.
pub fn plan(cmd: &LedgerCommand, view: &LedgerView) -> Result<Plan, LedgerError> {
    let mut step = Step::new(view);
    let (mut actor, mut reason) = (None, None);
    match &cmd.op {
        LedgerOp::TopUp { amount, payment, .. } => top_up(&mut step, view, *amount, payment)?,
        LedgerOp::Hold { hold, amount, provider, expires_at, caps, .. } => {
            let new = NewHold { id: *hold, amount: *amount, provider, expires_at: *expires_at, caps };
            place(&mut step, cmd, view, &new)?;
        }
        LedgerOp::Raise { hold, amount, expires_at, caps } => {
            raise(&mut step, cmd, view, *hold, *amount, *expires_at, caps)?
        }
        LedgerOp::Capture { hold, amount } => capture(&mut step, cmd, view, *hold, *amount)?,
        LedgerOp::Release { hold } | LedgerOp::Expire { hold } => give_back(&mut step, cmd, view, *hold)?,
        LedgerOp::Refund { hold, amount } => refund(&mut step, view, *hold, *amount)?,
        LedgerOp::RefundToCard { payment, amount, .. } => refund_to_card(&mut step, view, payment, *amount)?,
        LedgerOp::Adjust { amount, actor: who, reason: why, .. } => {
            adjust(&mut step, *amount)?;
            actor = Some(*who);
            reason = Some(why.clone());
        }
    }
    let tx = Transaction {
        id: cmd.tx,
        key: cmd.key.clone(),
        kind: cmd.op.kind(),
        user: view.balance.user,
        hold: step.receipt_hold,
        payment: cmd.op.payment().cloned(),
        actor,
        reason,
        at: cmd.at,
        postings: step.postings,
    };
    assert!(tx.sum() == Some(Money::ZERO), "invariant broken: postings of {:?} do not sum to zero", tx.kind);
    let receipt = Receipt {
        tx: cmd.tx,
        kind: cmd.op.kind(),
        user: view.balance.user,
        hold: step.receipt_hold,
        amount: step.amount,
        released: step.released,
        at: cmd.at,
    };
    Ok(Plan { tx, balance: step.balance, hold: step.hold, payment: step.payment, receipt })
}

fn top_up(step: &mut Step, view: &LedgerView, amount: Money, payment: &PaymentId) -> Result<(), LedgerError> {
    let amount = positive(amount)?;
    if view.payment.is_some() {
        return Err(LedgerError::PaymentExists { payment: payment.clone() });
    }
    step.credit(SystemAccount::Payments, amount)?;
    step.payment = Some(PaymentRecord { id: payment.clone(), user: view.balance.user, amount, refunded: Money::ZERO });
    step.amount = amount;
    Ok(())
}

/// The parts of a [`LedgerOp::Hold`].
struct NewHold<'a> {
    id: HoldId,
    amount: Money,
    provider: &'a Option<ProviderId>,
    expires_at: Timestamp,
    caps: &'a SpendCaps,
}

fn place(step: &mut Step, cmd: &LedgerCommand, view: &LedgerView, new: &NewHold<'_>) -> Result<(), LedgerError> {
    let amount = positive(new.amount)?;
    if view.hold.is_some() {
        return Err(LedgerError::HoldExists { hold: new.id });
    }
    if new.expires_at <= cmd.at {
        return Err(LedgerError::InvalidExpiry { expires_at: new.expires_at, not_before: cmd.at });
    }
    spendable(&step.balance, amount)?;
    new.caps.check(&view.cap_usage, amount)?;
    if let Some(max) = new.caps.active_holds_max {
        let active = step.balance.active_holds;
        if active >= max {
            return Err(LedgerError::TooManyActiveHolds { active, max });
        }
    }
    step.reserve(amount)?;
    step.balance.active_holds = step.balance.active_holds.checked_add(1).ok_or(LedgerError::Overflow)?;
    step.hold = Some(Hold {
        id: new.id,
        user: view.balance.user,
        provider: new.provider.clone(),
        amount,
        captured: Money::ZERO,
        refunded: Money::ZERO,
        state: HoldState::Active,
        created_at: cmd.at,
        expires_at: new.expires_at,
        budgeted: new.provider.is_some() && new.caps.provider_daily.is_some(),
    });
    step.receipt_hold = Some(new.id);
    step.amount = amount;
    Ok(())
}

fn raise(
    step: &mut Step,
    cmd: &LedgerCommand,
    view: &LedgerView,
    id: HoldId,
    amount: Money,
    expires_at: Timestamp,
    caps: &SpendCaps,
) -> Result<(), LedgerError> {
    let mut h = live_hold(view, id, cmd.at)?;
    if amount.is_negative() {
        return Err(LedgerError::InvalidAmount { amount });
    }
    if expires_at <= cmd.at {
        return Err(LedgerError::InvalidExpiry { expires_at, not_before: cmd.at });
    }
    if amount.is_positive() {
        spendable(&step.balance, amount)?;
        caps.check(&view.cap_usage, amount)?;
        step.reserve(amount)?;
    }
    h.amount = add(h.amount, amount)?;
    // The expiry composes with the hold as it stands now, so concurrent raises that read the hold at different
    // moments all apply: the latest expiry asked for wins, and none moves it back.
    h.expires_at = h.expires_at.max(expires_at);
    step.hold = Some(h);
    step.receipt_hold = Some(id);
    step.amount = amount;
    Ok(())
}

fn capture(
    step: &mut Step,
    cmd: &LedgerCommand,
    view: &LedgerView,
    id: HoldId,
    amount: Money,
) -> Result<(), LedgerError> {
    let mut h = live_hold(view, id, cmd.at)?;
    if amount.is_negative() {
        return Err(LedgerError::InvalidAmount { amount });
    }
    if amount > h.amount {
        return Err(LedgerError::CaptureExceedsHold { held: h.amount, requested: amount });
    }
    let user = view.balance.user;
    let rest = sub(h.amount, amount)?;
    step.balance.held = sub(step.balance.held, h.amount)?;
    step.balance.available = add(step.balance.available, rest)?;
    step.post(Account::Held(user), neg(h.amount)?);
    if amount.is_positive() {
        step.post(Account::System(SystemAccount::Revenue), amount);
    }
    if rest.is_positive() {
        step.post(Account::Available(user), rest);
    }
    h.captured = amount;
    h.state = HoldState::Captured;
    step.hold_ended()?;
    step.hold = Some(h);
    step.receipt_hold = Some(id);
    step.released = rest;
    step.amount = amount;
    Ok(())
}

/// A release, or the reaper's expiry once the TTL passed: the whole hold goes back.
fn give_back(step: &mut Step, cmd: &LedgerCommand, view: &LedgerView, id: HoldId) -> Result<(), LedgerError> {
    let is_expire = matches!(cmd.op, LedgerOp::Expire { .. });
    let mut h = view.hold.clone().ok_or(LedgerError::HoldNotFound { hold: id })?;
    if h.state != HoldState::Active {
        return Err(LedgerError::HoldNotActive { hold: id, state: h.state });
    }
    if is_expire && cmd.at < h.expires_at {
        return Err(LedgerError::HoldNotExpired { hold: id, expires_at: h.expires_at });
    }
    let user = view.balance.user;
    step.balance.held = sub(step.balance.held, h.amount)?;
    step.balance.available = add(step.balance.available, h.amount)?;
    step.post(Account::Held(user), neg(h.amount)?);
    step.post(Account::Available(user), h.amount);
    h.state = if is_expire { HoldState::Expired } else { HoldState::Released };
    step.hold_ended()?;
    step.released = h.amount;
    step.amount = h.amount;
    step.hold = Some(h);
    step.receipt_hold = Some(id);
    Ok(())
}

fn refund(step: &mut Step, view: &LedgerView, id: HoldId, amount: Money) -> Result<(), LedgerError> {
    let amount = positive(amount)?;
    let mut h = view.hold.clone().ok_or(LedgerError::HoldNotFound { hold: id })?;
    if h.state != HoldState::Captured {
        return Err(LedgerError::HoldNotActive { hold: id, state: h.state });
    }
    let refundable = sub(h.captured, h.refunded)?;
    if amount > refundable {
        return Err(LedgerError::RefundExceedsCaptured { refundable, requested: amount });
    }
    step.credit(SystemAccount::Revenue, amount)?;
    h.refunded = add(h.refunded, amount)?;
    step.hold = Some(h);
    step.receipt_hold = Some(id);
    step.amount = amount;
    Ok(())
}

fn refund_to_card(step: &mut Step, view: &LedgerView, payment: &PaymentId, amount: Money) -> Result<(), LedgerError> {
    let amount = positive(amount)?;
    let mut p = view.payment.clone().ok_or_else(|| LedgerError::PaymentNotFound { payment: payment.clone() })?;
    if p.user != view.balance.user {
        return Err(LedgerError::PaymentOwner { payment: payment.clone() });
    }
    let refundable = sub(p.amount, p.refunded)?;
    if amount > refundable {
        return Err(LedgerError::RefundExceedsPayment { refundable, requested: amount });
    }
    spendable(&step.balance, amount)?;
    step.balance.available = sub(step.balance.available, amount)?;
    step.post(Account::Available(view.balance.user), neg(amount)?);
    step.post(Account::System(SystemAccount::RefundsOut), amount);
    p.refunded = add(p.refunded, amount)?;
    step.payment = Some(p);
    step.amount = amount;
    Ok(())
}

fn adjust(step: &mut Step, amount: Money) -> Result<(), LedgerError> {
    if amount.is_zero() {
        return Err(LedgerError::InvalidAmount { amount });
    }
    if amount.is_negative() {
        spendable(&step.balance, neg(amount)?)?;
    }
    step.balance.available = add(step.balance.available, amount)?;
    step.post(Account::System(SystemAccount::Promo), neg(amount)?);
    step.post(Account::Available(step.balance.user), amount);
    step.amount = amount;
    Ok(())
}
