//! [`MemoryLedger`]: the ledger in one mutex. The reference implementation of [`LedgerStore`]: a
//! [`WorkingSet`] that holds every row, so every command runs under the lock, atomic and serial.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;

use crate::ids::{HoldId, UserId};
use crate::ledger::{
    Account, Applied, Balance, HISTORY_PAGE_MAX, HistoryEntry, Hold, HoldState, LedgerCommand, LedgerError,
    LedgerStore, StoreError, SystemAccount, Transaction, VerifyReport, VerifyTally, WorkingSet,
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
    rows: WorkingSet,
    system: BTreeMap<SystemAccount, Money>,
    txs: Vec<Transaction>,
    /// Test hook: cached-balance drift added without postings.
    drift: HashMap<UserId, Money>,
}

impl MemoryLedger {
    /// An empty ledger.
    #[must_use]
    pub fn new() -> MemoryLedger {
        MemoryLedger::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave a half-applied command: the working set changes only
        // after a command's plan succeeded, with no fallible step in between.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Changes a cached balance without a posting, so that tests can prove `verify` sees drift. Never use it
    /// outside tests.
    pub fn corrupt_available_for_test(&self, user: UserId, delta: Money) {
        let mut s = self.lock();
        let e = s.drift.entry(user).or_insert(Money::ZERO);
        *e = e.checked_add(delta).unwrap_or(*e);
    }
}

impl State {
    fn commit(&mut self) -> Result<(), StoreError> {
        let changes = self.rows.take_changes();
        for (acc, delta) in changes.system_deltas {
            let e = self.system.entry(acc).or_insert(Money::ZERO);
            *e = e.checked_add(delta).ok_or(StoreError::Corrupt { message: "system balance overflow".into() })?;
        }
        self.txs.extend(changes.transactions.into_iter().map(|t| t.tx));
        Ok(())
    }

    fn cached(&self, user: UserId) -> Balance {
        let mut b = self.rows.balance(user);
        if let Some(d) = self.drift.get(&user) {
            b.available = b.available.checked_add(*d).unwrap_or(b.available);
        }
        b
    }
}

#[async_trait]
impl LedgerStore for MemoryLedger {
    async fn apply_batch(&self, cmds: Vec<LedgerCommand>) -> Result<Vec<Result<Applied, LedgerError>>, StoreError> {
        let mut s = self.lock();
        for acc in SystemAccount::ALL {
            let balance = s.system.get(&acc).copied().unwrap_or(Money::ZERO);
            s.rows.load_system_balance(acc, balance);
        }
        let results = cmds.iter().map(|cmd| s.rows.apply(cmd)).collect();
        s.commit()?;
        Ok(results)
    }

    async fn balance(&self, user: UserId) -> Result<Balance, StoreError> {
        Ok(self.lock().cached(user))
    }

    async fn system_balance(&self, account: SystemAccount) -> Result<Money, StoreError> {
        Ok(self.lock().system.get(&account).copied().unwrap_or(Money::ZERO))
    }

    async fn hold(&self, id: HoldId) -> Result<Option<Hold>, StoreError> {
        Ok(self.lock().rows.hold(id).cloned())
    }

    async fn holds_due(&self, now: Timestamp, limit: usize) -> Result<Vec<HoldId>, StoreError> {
        let s = self.lock();
        let mut due: Vec<&Hold> =
            s.rows.holds().filter(|h| h.state == HoldState::Active && h.expires_at <= now).collect();
        due.sort_by_key(|h| (h.expires_at, h.id));
        Ok(due.into_iter().take(limit).map(|h| h.id).collect())
    }

    async fn set_overdraft_limit(&self, user: UserId, limit: Money) -> Result<(), LedgerError> {
        let mut s = self.lock();
        s.rows.set_overdraft_limit(user, limit)?;
        s.rows.take_changes();
        Ok(())
    }

    async fn transactions(&self, offset: u64, limit: usize) -> Result<Vec<Transaction>, StoreError> {
        let s = self.lock();
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        Ok(s.txs.iter().skip(start).take(limit).cloned().collect())
    }

    async fn history(&self, user: UserId, before: Option<u64>, limit: usize) -> Result<Vec<HistoryEntry>, StoreError> {
        let s = self.lock();
        let end = before.map_or(s.txs.len(), |b| usize::try_from(b.saturating_sub(1)).unwrap_or(usize::MAX));
        Ok(s.txs
            .iter()
            .enumerate()
            .take(end)
            .rev()
            .filter(|(_, t)| t.user == user)
            .take(limit.min(HISTORY_PAGE_MAX))
            .map(|(i, t)| HistoryEntry { position: i as u64 + 1, transaction: t.clone() })
            .collect())
    }

    async fn verify(&self) -> Result<VerifyReport, StoreError> {
        let s = self.lock();
        let cached: Vec<Balance> = s
            .rows
            .balances()
            .map(|b| s.cached(b.user))
            .chain(s.drift.keys().filter(|u| s.rows.balances().all(|b| b.user != **u)).map(|u| s.cached(*u)))
            .collect();
        let system: Vec<(SystemAccount, Money)> =
            SystemAccount::ALL.iter().map(|a| (*a, s.system.get(a).copied().unwrap_or(Money::ZERO))).collect();
        Ok(verify_in_memory(&s.txs, &cached, &system))
    }
}

/// Recomputes every balance from `txs` and compares with the cached rows.
fn verify_in_memory(txs: &[Transaction], balances: &[Balance], system: &[(SystemAccount, Money)]) -> VerifyReport {
    let mut tally = VerifyTally::new();
    for tx in txs {
        let mut sum = 0i128;
        for p in &tx.postings {
            tally.posting(p.account, p.amount);
            sum += i128::from(p.amount.kopecks());
        }
        // A transaction with no postings here can only be a raise of zero: plans post every amount they move.
        let postings = u64::try_from(tx.postings.len()).unwrap_or(u64::MAX);
        tally.transaction(tx.id, tx.kind, Money::ZERO, postings, sum);
    }
    for b in balances {
        tally.user(b);
        tally.cached(Account::Available(b.user), b.available);
        tally.cached(Account::Held(b.user), b.held);
    }
    for (account, balance) in system {
        tally.cached(Account::System(*account), *balance);
    }
    tally.finish()
}
