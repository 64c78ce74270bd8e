//! Ledger records: accounts, postings, transactions, holds, operations and their receipts.

use crate::caps::SpendCaps;
use crate::guards::Reason;
use crate::ids::{HoldId, IdempotencyKey, PaymentId, ProviderId, TxId, UserId};
use crate::money::Money;
use crate::time::Timestamp;

/// The house's accounts, which mirror the outside world and have no balance constraint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SystemAccount {
    /// Money received from a payment gateway.
    Payments,
    /// Money earned by captures.
    Revenue,
    /// Grants and admin adjustments.
    Promo,
    /// Money paid back to a card.
    RefundsOut,
}

impl SystemAccount {
    /// Every system account.
    pub const ALL: [SystemAccount; 4] =
        [SystemAccount::Payments, SystemAccount::Revenue, SystemAccount::Promo, SystemAccount::RefundsOut];

    /// A stable lowercase name, for storage and logs.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            SystemAccount::Payments => "payments",
            SystemAccount::Revenue => "revenue",
            SystemAccount::Promo => "promo",
            SystemAccount::RefundsOut => "refunds_out",
        }
    }

    /// Parses [`SystemAccount::as_str`].
    #[must_use]
    pub fn parse(s: &str) -> Option<SystemAccount> {
        SystemAccount::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

/// An account a posting lands on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Account {
    /// What a user can spend.
    Available(UserId),
    /// What is reserved for a user's running jobs.
    Held(UserId),
    /// A house account.
    System(SystemAccount),
}

/// One signed entry of a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Posting {
    /// Where.
    pub account: Account,
    /// How much, signed.
    pub amount: Money,
}

/// The kind of a ledger operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize), serde(rename_all = "snake_case"))]
pub enum OpKind {
    /// Money in from a gateway.
    TopUp,
    /// A reservation.
    Hold,
    /// A reservation made larger or longer.
    Raise,
    /// A reservation charged (fully or partly, the rest released).
    Capture,
    /// A reservation given back.
    Release,
    /// A reservation given back by the reaper after its TTL.
    Expire,
    /// Captured money given back to the wallet.
    Refund,
    /// Wallet money paid back to the card.
    RefundToCard,
    /// A signed admin correction.
    Adjust,
}

impl OpKind {
    /// A stable lowercase name, for storage and logs.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            OpKind::TopUp => "top_up",
            OpKind::Hold => "hold",
            OpKind::Raise => "raise",
            OpKind::Capture => "capture",
            OpKind::Release => "release",
            OpKind::Expire => "expire",
            OpKind::Refund => "refund",
            OpKind::RefundToCard => "refund_to_card",
            OpKind::Adjust => "adjust",
        }
    }

    /// Parses [`OpKind::as_str`].
    #[must_use]
    pub fn parse(s: &str) -> Option<OpKind> {
        [
            OpKind::TopUp,
            OpKind::Hold,
            OpKind::Raise,
            OpKind::Capture,
            OpKind::Release,
            OpKind::Expire,
            OpKind::Refund,
            OpKind::RefundToCard,
            OpKind::Adjust,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// A committed, immutable ledger transaction. Invariant: its postings sum to zero.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    /// Its id.
    pub id: TxId,
    /// The idempotency key that made it.
    pub key: IdempotencyKey,
    /// What kind of operation.
    pub kind: OpKind,
    /// The user whose accounts it touches.
    pub user: UserId,
    /// The hold it concerns, if any.
    pub hold: Option<HoldId>,
    /// The gateway payment it concerns, if any.
    pub payment: Option<PaymentId>,
    /// Who asked for an adjustment.
    pub actor: Option<UserId>,
    /// Why (adjustments).
    pub reason: Option<Reason>,
    /// When.
    pub at: Timestamp,
    /// The entries; they sum to zero.
    pub postings: Vec<Posting>,
}

impl Transaction {
    /// The sum of the postings, `None` on overflow. Zero for every valid transaction.
    #[must_use]
    pub fn sum(&self) -> Option<Money> {
        Money::checked_sum(self.postings.iter().map(|p| p.amount))
    }
}

/// A user's balances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Balance {
    /// Whose.
    pub user: UserId,
    /// Spendable. Invariant: `available >= -overdraft_limit`.
    pub available: Money,
    /// Reserved for running jobs. Invariant: `held >= 0`.
    pub held: Money,
    /// How far below zero `available` may go; zero by default.
    pub overdraft_limit: Money,
    /// How many of the user's holds are active (kept with the balance, so a limit on holds at once is
    /// checked on the row the store locks anyway). Invariant: the count of the user's active holds.
    pub active_holds: u32,
}

impl Balance {
    /// The balances of a user the ledger has never seen.
    #[must_use]
    pub const fn empty(user: UserId) -> Balance {
        Balance { user, available: Money::ZERO, held: Money::ZERO, overdraft_limit: Money::ZERO, active_holds: 0 }
    }
}

/// Where a hold is in its life. A hold ends exactly once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HoldState {
    /// Money reserved.
    Active,
    /// Charged (fully or partly); the rest went back.
    Captured,
    /// Given back.
    Released,
    /// Given back by the reaper after its TTL.
    Expired,
}

impl HoldState {
    /// A stable lowercase name, for storage and logs.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            HoldState::Active => "active",
            HoldState::Captured => "captured",
            HoldState::Released => "released",
            HoldState::Expired => "expired",
        }
    }

    /// Parses [`HoldState::as_str`].
    #[must_use]
    pub fn from_str_opt(s: &str) -> Option<HoldState> {
        [HoldState::Active, HoldState::Captured, HoldState::Released, HoldState::Expired]
            .into_iter()
            .find(|h| h.as_str() == s)
    }
}

/// A reservation of a user's money for one job or usage session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    /// Its id.
    pub id: HoldId,
    /// Whose money.
    pub user: UserId,
    /// The provider it pays for (provider budgets count it).
    pub provider: Option<ProviderId>,
    /// How much is (or was) reserved. Invariant: positive.
    pub amount: Money,
    /// How much was charged. Invariant: `captured <= amount`, zero unless captured.
    pub captured: Money,
    /// How much of the capture went back to the wallet. Invariant: `refunded <= captured`.
    pub refunded: Money,
    /// Where it is.
    pub state: HoldState,
    /// When it was placed.
    pub created_at: Timestamp,
    /// After this the hold can no longer be captured and the reaper may expire it.
    pub expires_at: Timestamp,
    /// `true` when it was placed under its provider's daily budget: then it, and every raise of it, counts
    /// against that budget.
    pub budgeted: bool,
}

/// A top-up's gateway payment, kept so a card refund cannot pay back more than came in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentRecord {
    /// The gateway's id.
    pub id: PaymentId,
    /// Whose.
    pub user: UserId,
    /// How much came in.
    pub amount: Money,
    /// How much went back to the card. Invariant: `refunded <= amount`.
    pub refunded: Money,
}

/// A money-moving operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LedgerOp {
    /// Credit a user with a gateway payment. The payment id is unique across top-ups.
    TopUp {
        /// Whose.
        user: UserId,
        /// How much; positive.
        amount: Money,
        /// The gateway's payment.
        payment: PaymentId,
    },
    /// Reserve money, within the caps.
    Hold {
        /// Whose.
        user: UserId,
        /// The new hold's id; unique.
        hold: HoldId,
        /// How much; positive.
        amount: Money,
        /// The provider it pays for.
        provider: Option<ProviderId>,
        /// When it lapses; after `at`.
        expires_at: Timestamp,
        /// Caps checked atomically with the hold.
        caps: SpendCaps,
    },
    /// Reserve more on an active hold and/or push back its expiry (a usage session's next chunk, a dearer
    /// failover).
    Raise {
        /// Which hold.
        hold: HoldId,
        /// How much more; zero only moves the expiry.
        amount: Money,
        /// The expiry asked for; after the command's time. The hold keeps the later of this and its current
        /// expiry, so a raise never moves an expiry back and concurrent raises compose.
        expires_at: Timestamp,
        /// Caps checked atomically with the raise.
        caps: SpendCaps,
    },
    /// Charge `amount` of an active hold and release the rest in the same transaction.
    Capture {
        /// Which hold.
        hold: HoldId,
        /// How much to charge; `0 <= amount <= hold amount`.
        amount: Money,
    },
    /// Give an active hold back.
    Release {
        /// Which hold.
        hold: HoldId,
    },
    /// Give back an active hold whose TTL has passed (the reaper).
    Expire {
        /// Which hold.
        hold: HoldId,
    },
    /// Give captured money back to the wallet, up to what was captured and not yet refunded.
    Refund {
        /// Which captured hold.
        hold: HoldId,
        /// How much; positive.
        amount: Money,
    },
    /// Pay wallet money back to the card of a top-up, up to what that payment brought in.
    RefundToCard {
        /// Whose.
        user: UserId,
        /// The top-up's payment.
        payment: PaymentId,
        /// How much; positive.
        amount: Money,
    },
    /// A signed admin correction, with who and why.
    Adjust {
        /// Whose balance.
        user: UserId,
        /// Signed, non-zero.
        amount: Money,
        /// The admin.
        actor: UserId,
        /// Why.
        reason: Reason,
    },
}

impl LedgerOp {
    /// The kind.
    #[must_use]
    pub fn kind(&self) -> OpKind {
        match self {
            LedgerOp::TopUp { .. } => OpKind::TopUp,
            LedgerOp::Hold { .. } => OpKind::Hold,
            LedgerOp::Raise { .. } => OpKind::Raise,
            LedgerOp::Capture { .. } => OpKind::Capture,
            LedgerOp::Release { .. } => OpKind::Release,
            LedgerOp::Expire { .. } => OpKind::Expire,
            LedgerOp::Refund { .. } => OpKind::Refund,
            LedgerOp::RefundToCard { .. } => OpKind::RefundToCard,
            LedgerOp::Adjust { .. } => OpKind::Adjust,
        }
    }

    /// The user named by the operation itself (hold-based operations name theirs through the hold).
    #[must_use]
    pub fn user(&self) -> Option<UserId> {
        match self {
            LedgerOp::TopUp { user, .. }
            | LedgerOp::Hold { user, .. }
            | LedgerOp::RefundToCard { user, .. }
            | LedgerOp::Adjust { user, .. } => Some(*user),
            _ => None,
        }
    }

    /// The hold the operation works on, if any (for [`LedgerOp::Hold`], the one it creates).
    #[must_use]
    pub fn hold(&self) -> Option<HoldId> {
        match self {
            LedgerOp::Hold { hold, .. }
            | LedgerOp::Raise { hold, .. }
            | LedgerOp::Capture { hold, .. }
            | LedgerOp::Release { hold }
            | LedgerOp::Expire { hold }
            | LedgerOp::Refund { hold, .. } => Some(*hold),
            _ => None,
        }
    }

    /// The payment the operation works on, if any.
    #[must_use]
    pub fn payment(&self) -> Option<&PaymentId> {
        match self {
            LedgerOp::TopUp { payment, .. } | LedgerOp::RefundToCard { payment, .. } => Some(payment),
            _ => None,
        }
    }

    /// The caps the store must check, if any.
    #[must_use]
    pub fn caps(&self) -> Option<&SpendCaps> {
        match self {
            LedgerOp::Hold { caps, .. } | LedgerOp::Raise { caps, .. } if !caps.is_empty() => Some(caps),
            _ => None,
        }
    }

    /// The provider named by the operation itself ([`LedgerOp::Hold`]); raises use the hold's.
    #[must_use]
    pub fn provider(&self) -> Option<&ProviderId> {
        match self {
            LedgerOp::Hold { provider, .. } => provider.as_ref(),
            _ => None,
        }
    }

    /// A canonical text of the operation, stored with its key: a replay with the same key and a different
    /// operation is a conflict, not a replay.
    ///
    /// Expiries are left out: a caller retrying a hold or a raise computes its expiry from a later clock, and it
    /// is still the same request (same user, hold, amount, provider, caps); the replay returns the first
    /// outcome. Nothing else derived from the clock goes in.
    #[must_use]
    pub fn fingerprint(&self) -> String {
        let caps = |c: &SpendCaps| {
            let o = |m: Option<Money>| m.map_or_else(|| "-".to_owned(), |m| m.kopecks().to_string());
            let active = c.active_holds_max.map_or_else(String::new, |n| format!("/{n}"));
            format!("{}/{}/{}{active}", o(c.user_hourly), o(c.user_daily), o(c.provider_daily))
        };
        match self {
            LedgerOp::TopUp { user, amount, payment } => {
                format!("top_up|{user}|{}|{payment}", amount.kopecks())
            }
            LedgerOp::Hold { user, hold, amount, provider, caps: c, .. } => format!(
                "hold|{user}|{hold}|{}|{}|{}",
                amount.kopecks(),
                provider.as_ref().map_or("-", ProviderId::as_str),
                caps(c)
            ),
            LedgerOp::Raise { hold, amount, caps: c, .. } => format!("raise|{hold}|{}|{}", amount.kopecks(), caps(c)),
            LedgerOp::Capture { hold, amount } => format!("capture|{hold}|{}", amount.kopecks()),
            LedgerOp::Release { hold } => format!("release|{hold}"),
            LedgerOp::Expire { hold } => format!("expire|{hold}"),
            LedgerOp::Refund { hold, amount } => format!("refund|{hold}|{}", amount.kopecks()),
            LedgerOp::RefundToCard { user, payment, amount } => {
                format!("refund_to_card|{user}|{payment}|{}", amount.kopecks())
            }
            LedgerOp::Adjust { user, amount, actor, reason } => {
                format!("adjust|{user}|{}|{actor}|{}", amount.kopecks(), reason.as_str())
            }
        }
    }
}

impl LedgerOp {
    /// Whether a stored fingerprint stands for this operation: today's [`LedgerOp::fingerprint`], or the one
    /// ledgers written before hold fingerprints left out the expiry recorded (`hold|…|<expiry ms>|<caps>`), so
    /// that a replay of such a hold still replays.
    #[must_use]
    pub fn matches_fingerprint(&self, stored: &str) -> bool {
        if stored == self.fingerprint() {
            return true;
        }
        match self {
            LedgerOp::Hold { expires_at, .. } => {
                let now = self.fingerprint();
                let Some((head, caps)) = now.rsplit_once('|') else { return false };
                stored == format!("{head}|{}|{caps}", expires_at.as_millis())
            }
            _ => false,
        }
    }
}

/// An operation with its idempotency key, the id its transaction will get, and the time it happens at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerCommand {
    /// A replay with this key returns the first outcome and moves no money.
    pub key: IdempotencyKey,
    /// The id the transaction gets if the command applies.
    pub tx: TxId,
    /// When it happens (holds expire against it; caps count windows back from it).
    pub at: Timestamp,
    /// What.
    pub op: LedgerOp,
}

/// What an applied operation did: stored with its key and returned again on every replay.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Receipt {
    /// The transaction.
    pub tx: TxId,
    /// What kind.
    pub kind: OpKind,
    /// Whose.
    pub user: UserId,
    /// Which hold, if any.
    pub hold: Option<HoldId>,
    /// The operation's main amount: credited, reserved, charged, given back or adjusted (signed).
    pub amount: Money,
    /// What went back from `held` to `available` (a capture's rest, a release, an expiry).
    pub released: Money,
    /// When.
    pub at: Timestamp,
}

/// The outcome of [`crate::ledger::LedgerStore::apply`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Applied {
    /// What the first application did.
    pub receipt: Receipt,
    /// `true` when this call was a replay of an earlier one with the same key.
    pub replayed: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::caps::SpendCaps;

    #[test]
    fn a_hold_matches_its_fingerprint_whatever_its_expiry_and_the_older_form() {
        // Proves a retried hold with a later expiry matches the first one's fingerprint, the form stored before
        // expiries were left out still matches, and another amount does not.
        let hold = |amount, expires_ms| LedgerOp::Hold {
            user: UserId(1),
            hold: HoldId::from(2),
            amount: Money::from_kopecks(amount),
            provider: None,
            expires_at: Timestamp::from_millis(expires_ms),
            caps: SpendCaps::NONE,
        };
        let first = hold(100, 1_000).fingerprint();
        assert!(hold(100, 9_000).matches_fingerprint(&first));
        let older = format!("hold|{}|{}|100|-|1000|-/-/-", UserId(1), HoldId::from(2));
        assert!(hold(100, 1_000).matches_fingerprint(&older), "the older form");
        assert!(!hold(100, 2_000).matches_fingerprint(&older), "older form, other expiry");
        assert!(!hold(101, 1_000).matches_fingerprint(&first));
    }
}
