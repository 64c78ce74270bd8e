//! [`MemoryLedger`]: the ledger in one mutex. The reference implementation of [`LedgerStore`]: every
//! command runs under the lock, so it is trivially atomic and serial.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;

use crate::caps::{CapUsage, DAY, HOUR, hold_spend};
use crate::ids::{HoldId, IdempotencyKey, PaymentId, ProviderId, UserId};
use crate::ledger::{
    Account, AccountDrift, Applied, Balance, Hold, HoldState, LedgerCommand, LedgerError, LedgerOp, LedgerStore,
    LedgerView, PaymentRecord, Receipt, StoreError, SystemAccount, Transaction, VerifyReport, plan,
};
use crate::money::Money;
use crate::time::Timestamp;

/// The ledger in memory.
#[derive(Debug, Default)]
pub struct MemoryLedger {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    balances: HashMap<UserId, Balance>,
    system: BTreeMap<SystemAccount, Money>,
    txs: Vec<Transaction>,
    holds: HashMap<HoldId, Hold>,
    user_holds: HashMap<UserId, Vec<HoldId>>,
    provider_holds: HashMap<ProviderId, Vec<HoldId>>,
    payments: HashMap<PaymentId, PaymentRecord>,
    keys: HashMap<IdempotencyKey, (LedgerOp, Receipt)>,
}

impl MemoryLedger {
    /// An empty ledger.
    #[must_use]
    pub fn new() -> MemoryLedger {
        MemoryLedger::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave a half-applied command: every write happens after
        // `plan` succeeded, with no fallible step in between.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Changes a cached balance without a posting, so that tests can prove `verify` sees drift. Never use it
    /// outside tests.
    pub fn corrupt_available_for_test(&self, user: UserId, delta: Money) {
        let mut s = self.lock();
        let b = s.balances.entry(user).or_insert_with(|| Balance::empty(user));
        b.available = b.available.checked_add(delta).unwrap_or(b.available);
    }
}

impl State {
    fn usage(&self, user: UserId, provider: Option<&ProviderId>, at: Timestamp) -> CapUsage {
        let sum_since = |ids: Option<&Vec<HoldId>>, since: Timestamp| {
            let spends = ids
                .into_iter()
                .flatten()
                .filter_map(|id| self.holds.get(id))
                .filter(|h| h.created_at > since)
                .map(hold_spend);
            Money::checked_sum(spends).unwrap_or(Money::from_kopecks(i64::MAX))
        };
        CapUsage {
            user_hour: sum_since(self.user_holds.get(&user), at.minus(HOUR)),
            user_day: sum_since(self.user_holds.get(&user), at.minus(DAY)),
            provider_day: provider.map_or(Money::ZERO, |p| sum_since(self.provider_holds.get(p), at.minus(DAY))),
        }
    }

    fn apply(&mut self, cmd: &LedgerCommand) -> Result<Applied, LedgerError> {
        if let Some((op, receipt)) = self.keys.get(&cmd.key) {
            if *op != cmd.op {
                return Err(LedgerError::KeyConflict { key: cmd.key.clone() });
            }
            return Ok(Applied { receipt: receipt.clone(), replayed: true });
        }
        let hold = cmd.op.hold().and_then(|id| self.holds.get(&id).cloned());
        let user = match (cmd.op.user(), &hold) {
            (Some(user), _) => user,
            (None, Some(h)) => h.user,
            (None, None) => {
                let hold = cmd.op.hold().ok_or(StoreError::Corrupt { message: "operation names no user".into() })?;
                return Err(LedgerError::HoldNotFound { hold });
            }
        };
        let balance = self.balances.get(&user).copied().unwrap_or_else(|| Balance::empty(user));
        let payment = cmd.op.payment().and_then(|p| self.payments.get(p).cloned());
        let cap_usage = match cmd.op.caps() {
            Some(_) => {
                let provider = cmd.op.provider().or(hold.as_ref().and_then(|h| h.provider.as_ref()));
                self.usage(user, provider, cmd.at)
            }
            None => CapUsage::default(),
        };
        let plan = plan(cmd, &LedgerView { balance, hold, payment, cap_usage })?;

        // The last line of defence, as a database constraint would be.
        let floor = plan.balance.overdraft_limit.checked_neg().unwrap_or(Money::ZERO);
        if plan.balance.held.is_negative() || plan.balance.available < floor {
            return Err(StoreError::Corrupt { message: format!("balance constraint on user {user}") }.into());
        }

        for p in &plan.tx.postings {
            if let Account::System(acc) = p.account {
                let e = self.system.entry(acc).or_insert(Money::ZERO);
                *e = e.checked_add(p.amount).ok_or(LedgerError::Overflow)?;
            }
        }
        self.balances.insert(user, plan.balance);
        if let Some(h) = plan.hold {
            if !self.holds.contains_key(&h.id) {
                self.user_holds.entry(h.user).or_default().push(h.id);
                if let Some(p) = &h.provider {
                    self.provider_holds.entry(p.clone()).or_default().push(h.id);
                }
            }
            self.holds.insert(h.id, h);
        }
        if let Some(p) = plan.payment {
            self.payments.insert(p.id.clone(), p);
        }
        self.txs.push(plan.tx);
        self.keys.insert(cmd.key.clone(), (cmd.op.clone(), plan.receipt.clone()));
        Ok(Applied { receipt: plan.receipt, replayed: false })
    }
}

#[async_trait]
impl LedgerStore for MemoryLedger {
    async fn apply_batch(&self, cmds: Vec<LedgerCommand>) -> Result<Vec<Result<Applied, LedgerError>>, StoreError> {
        let mut s = self.lock();
        Ok(cmds.iter().map(|cmd| s.apply(cmd)).collect())
    }

    async fn balance(&self, user: UserId) -> Result<Balance, StoreError> {
        Ok(self.lock().balances.get(&user).copied().unwrap_or_else(|| Balance::empty(user)))
    }

    async fn system_balance(&self, account: SystemAccount) -> Result<Money, StoreError> {
        Ok(self.lock().system.get(&account).copied().unwrap_or(Money::ZERO))
    }

    async fn hold(&self, id: HoldId) -> Result<Option<Hold>, StoreError> {
        Ok(self.lock().holds.get(&id).cloned())
    }

    async fn holds_due(&self, now: Timestamp, limit: usize) -> Result<Vec<HoldId>, StoreError> {
        let s = self.lock();
        let mut due: Vec<&Hold> =
            s.holds.values().filter(|h| h.state == HoldState::Active && h.expires_at <= now).collect();
        due.sort_by_key(|h| (h.expires_at, h.id));
        Ok(due.into_iter().take(limit).map(|h| h.id).collect())
    }

    async fn set_overdraft_limit(&self, user: UserId, limit: Money) -> Result<(), LedgerError> {
        if limit.is_negative() {
            return Err(LedgerError::InvalidAmount { amount: limit });
        }
        let mut s = self.lock();
        let b = s.balances.entry(user).or_insert_with(|| Balance::empty(user));
        let floor = limit.checked_neg().ok_or(LedgerError::Overflow)?;
        if b.available < floor {
            let required = b.available.checked_neg().ok_or(LedgerError::Overflow)?;
            return Err(LedgerError::InsufficientFunds { available: limit, required });
        }
        b.overdraft_limit = limit;
        Ok(())
    }

    async fn transactions(&self, offset: u64, limit: usize) -> Result<Vec<Transaction>, StoreError> {
        let s = self.lock();
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        Ok(s.txs.iter().skip(start).take(limit).cloned().collect())
    }

    async fn verify(&self) -> Result<VerifyReport, StoreError> {
        let s = self.lock();
        let mut sums: HashMap<Account, Money> = HashMap::new();
        let mut report = VerifyReport { transactions: s.txs.len() as u64, ..VerifyReport::default() };
        let overflow = || StoreError::Corrupt { message: "sum overflow".into() };
        for tx in &s.txs {
            if tx.sum() != Some(Money::ZERO) {
                report.unbalanced.push(tx.id);
            }
            for p in &tx.postings {
                let e = sums.entry(p.account).or_insert(Money::ZERO);
                *e = e.checked_add(p.amount).ok_or_else(overflow)?;
            }
        }
        let mut cached: Vec<(Account, Money)> = Vec::new();
        for b in s.balances.values() {
            cached.push((Account::Available(b.user), b.available));
            cached.push((Account::Held(b.user), b.held));
            let floor = b.overdraft_limit.checked_neg().ok_or_else(overflow)?;
            if b.available < floor || b.held.is_negative() {
                report.below_floor.push(b.user);
            }
        }
        for acc in SystemAccount::ALL {
            cached.push((Account::System(acc), s.system.get(&acc).copied().unwrap_or(Money::ZERO)));
        }
        let mut total = Money::ZERO;
        for (account, value) in &cached {
            let recomputed = sums.remove(account).unwrap_or(Money::ZERO);
            if recomputed != *value {
                report.drifts.push(AccountDrift { account: *account, cached: *value, recomputed });
            }
            total = total.checked_add(*value).ok_or_else(overflow)?;
        }
        for (account, recomputed) in sums {
            report.drifts.push(AccountDrift { account, cached: Money::ZERO, recomputed });
        }
        report.drifts.sort_by_key(|d| d.account);
        report.below_floor.sort();
        report.total = total;
        Ok(report)
    }
}
