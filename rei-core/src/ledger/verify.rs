//! [`VerifyTally`]: the rules of [`crate::ledger::LedgerStore::verify`], shared by every store.
//!
//! A store reads its figures however its engine does it best (aggregated in SQL, or streamed and summed here)
//! and hands them to the tally; the tally decides what is a drift, which transaction is unbalanced, which user
//! is below the floor and whether money is conserved. Every sum is an `i128`, which no ledger of `i64`
//! amounts can overflow, so a legal ledger near the bounds of [`Money`] verifies on every engine.

use std::collections::HashMap;

use crate::ids::TxId;
use crate::ledger::model::{Account, Balance, OpKind};
use crate::ledger::store::{AccountDrift, VerifyReport};
use crate::money::Money;

/// An exact sum as [`Money`], saturating: only a corrupt ledger has one that does not fit, and the report is
/// unclean then anyway.
fn saturate(sum: i128) -> Money {
    Money::from_kopecks(i64::try_from(sum).unwrap_or(if sum < 0 { i64::MIN } else { i64::MAX }))
}

/// Collects a store's figures and applies the verify rules to them.
#[derive(Debug, Default)]
pub struct VerifyTally {
    report: VerifyReport,
    total: i128,
    /// Sums of postings per account, for stores that stream postings rather than aggregate them.
    sums: HashMap<Account, i128>,
}

impl VerifyTally {
    /// An empty tally.
    #[must_use]
    pub fn new() -> VerifyTally {
        VerifyTally::default()
    }

    /// One transaction: it is unbalanced when its postings do not sum to zero, or when it has none and is not a
    /// raise of zero (which only moves an expiry, so it has nothing to post).
    pub fn transaction(&mut self, id: TxId, kind: OpKind, amount: Money, postings: u64, sum: i128) {
        self.report.transactions = self.report.transactions.saturating_add(1);
        let empty_allowed = kind == OpKind::Raise && amount.is_zero();
        if sum != 0 || (postings == 0 && !empty_allowed) {
            self.report.unbalanced.push(id);
        }
    }

    /// Counts `n` transactions that a store checked itself and found balanced (a store that reads only the
    /// suspect transactions reports the rest this way).
    pub fn balanced_transactions(&mut self, n: u64) {
        self.report.transactions = self.report.transactions.saturating_add(n);
    }

    /// One posting, for stores that stream postings: adds it to its account's sum.
    pub fn posting(&mut self, account: Account, amount: Money) {
        *self.sums.entry(account).or_insert(0) += i128::from(amount.kopecks());
    }

    /// One account's cached balance and the sum of its postings, as a store that aggregates them reads them: a
    /// drift when they differ. Such a store adds every cached balance with [`VerifyTally::add_to_total`].
    pub fn account(&mut self, account: Account, cached: i128, recomputed: i128) {
        if cached != recomputed {
            self.report.drifts.push(AccountDrift {
                account,
                cached: saturate(cached),
                recomputed: saturate(recomputed),
            });
        }
    }

    /// Adds cached balances to the total, which is zero in a sound ledger (money is conserved).
    pub fn add_to_total(&mut self, cached: i128) {
        self.total += cached;
    }

    /// One account's cached balance, for a store that streams postings: compared with the postings streamed
    /// through [`VerifyTally::posting`] and added to the total.
    pub fn cached(&mut self, account: Account, cached: Money) {
        let recomputed = self.sums.remove(&account).unwrap_or(0);
        self.add_to_total(i128::from(cached.kopecks()));
        self.account(account, i128::from(cached.kopecks()), recomputed);
    }

    /// One user's cached balances: below the floor when `available < -overdraft_limit` or `held < 0`.
    pub fn user(&mut self, balance: &Balance) {
        let floor = -i128::from(balance.overdraft_limit.kopecks());
        if i128::from(balance.available.kopecks()) < floor || balance.held.is_negative() {
            self.report.below_floor.push(balance.user);
        }
    }

    /// The report: postings streamed for accounts that have no cached balance are drifts too; lists are sorted.
    #[must_use]
    pub fn finish(mut self) -> VerifyReport {
        let orphans: Vec<(Account, i128)> = self.sums.drain().filter(|(_, sum)| *sum != 0).collect();
        for (account, sum) in orphans {
            self.account(account, 0, sum);
        }
        self.report.total = saturate(self.total);
        self.report.drifts.sort_by_key(|d| d.account);
        self.report.below_floor.sort();
        self.report.below_floor.dedup();
        self.report
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::UserId;
    use crate::ledger::SystemAccount;

    #[test]
    fn the_rules_flag_what_is_wrong_and_nothing_else() {
        // Proves a tally reports drifts, unbalanced and empty transactions (but not a zero raise), users below
        // the floor and a non-zero total, and sums past i64 without overflow.
        let mut t = VerifyTally::new();
        t.transaction(TxId::from(1), OpKind::TopUp, Money::from_kopecks(5), 2, 0);
        t.transaction(TxId::from(2), OpKind::Raise, Money::ZERO, 0, 0);
        t.transaction(TxId::from(3), OpKind::Hold, Money::from_kopecks(5), 0, 0);
        t.transaction(TxId::from(4), OpKind::Capture, Money::from_kopecks(5), 3, 1);
        let big = i128::from(i64::MAX);
        t.account(Account::Available(UserId(1)), big, big);
        t.account(Account::Available(UserId(2)), big, big);
        t.account(Account::System(SystemAccount::Payments), -2 * big, -2 * big);
        t.account(Account::Held(UserId(3)), 1, 0);
        t.add_to_total(big + big - 2 * big + 1);
        t.posting(Account::Held(UserId(6)), Money::from_kopecks(7));
        t.cached(Account::Held(UserId(6)), Money::from_kopecks(7));
        t.user(&Balance { user: UserId(4), available: Money::from_kopecks(-1), ..Balance::empty(UserId(4)) });
        t.user(&Balance::empty(UserId(5)));
        let r = t.finish();
        assert_eq!(r.transactions, 4);
        assert_eq!(r.unbalanced, vec![TxId::from(3), TxId::from(4)]);
        assert_eq!(r.drifts.len(), 1);
        assert_eq!(r.below_floor, vec![UserId(4)]);
        assert_eq!(r.total, Money::from_kopecks(8), "sums past i64::MAX come out exact");
    }
}
