//! [`WorkingSet`]: the rows a batch of commands touches, held in memory while the batch is applied.
//!
//! A store loads the rows (balances, holds, payments, key records) inside its atomic step, runs every command
//! through [`WorkingSet::apply`] — key check, [`plan`], constraint check, bookkeeping — and writes back what
//! [`WorkingSet::take_changes`] returns. The in-memory store is a working set that holds everything; the
//! database stores load only what a batch needs. Either way the same code decides every command.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use crate::caps::{CapUsage, DAY, HOUR, SpendCaps, Tranche, bucket_of, day_floor, released_by_bucket, spend_since};
use crate::ids::{HoldId, IdempotencyKey, PaymentId, ProviderId, TxId, UserId};
use crate::ledger::model::{
    Account, Applied, Balance, Hold, LedgerCommand, LedgerOp, PaymentRecord, Receipt, SystemAccount, Transaction,
};
use crate::ledger::plan::{LedgerError, LedgerView, plan};
use crate::ledger::store::StoreError;
use crate::money::Money;
use crate::time::Timestamp;

/// What a key stands for: the operation it was first used with (as [`crate::ledger::LedgerOp::fingerprint`])
/// and the receipt to return on every replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    /// The first operation's fingerprint.
    pub fingerprint: String,
    /// The first outcome.
    pub receipt: Receipt,
}

/// A transaction applied in the working set, with what its key row needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTransaction {
    /// The transaction and its postings.
    pub tx: Transaction,
    /// The key record it creates.
    pub key: KeyRecord,
}

/// Everything to write after a batch, in application order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// New transactions, in the order they applied.
    pub transactions: Vec<NewTransaction>,
    /// Balances as they now stand, one per changed user.
    pub balances: Vec<Balance>,
    /// Holds as they now stand, one per new or changed hold, with `true` for a new one.
    pub holds: Vec<(Hold, bool)>,
    /// Payments as they now stand, one per new or changed payment, with `true` for a new one.
    pub payments: Vec<(PaymentRecord, bool)>,
    /// The change of each system account's balance.
    pub system_deltas: BTreeMap<SystemAccount, Money>,
    /// The change of each provider budget counter, by provider and bucket start (ms); see [`crate::caps`].
    pub provider_spend: BTreeMap<(ProviderId, i64), Money>,
}

impl Changes {
    /// `true` when nothing is to be written.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.transactions.is_empty() && self.balances.is_empty() && self.holds.is_empty() && self.payments.is_empty()
    }
}

/// What a store must load for a batch's caps, after it loaded the holds the batch names (see
/// [`WorkingSet::load_hold`]); the same for every store, so that they all count the same spend.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CapLoads {
    /// Users whose tranches held after `floor` are to be loaded, each with its hold.
    pub users: BTreeSet<UserId>,
    /// Providers whose budget a command checks or raises: lock them (in this order) and load their buckets
    /// after `floor`.
    pub providers: BTreeSet<ProviderId>,
    /// Budgeted holds the batch ends: load their tranches held after `floor`.
    pub ending: BTreeSet<HoldId>,
    /// The earliest [`crate::caps::day_floor`] of the batch's commands.
    pub floor: Timestamp,
}

impl CapLoads {
    /// `true` when the batch needs none of it.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.users.is_empty() && self.providers.is_empty() && self.ending.is_empty()
    }
}

/// A command's effect on spend, decided by [`WorkingSet::spend_of`].
#[derive(Debug)]
struct Spend {
    hold: HoldId,
    tranche: Option<Tranche>,
    counters: Vec<(ProviderId, i64, Money)>,
}

/// The rows a batch works on, and what changed.
#[derive(Debug, Default)]
pub struct WorkingSet {
    balances: HashMap<UserId, Balance>,
    holds: HashMap<HoldId, Hold>,
    user_holds: HashMap<UserId, Vec<HoldId>>,
    tranches: HashMap<HoldId, Vec<Tranche>>,
    buckets: HashMap<ProviderId, BTreeMap<i64, Money>>,
    payments: HashMap<PaymentId, PaymentRecord>,
    keys: HashMap<IdempotencyKey, KeyRecord>,
    txs: HashSet<TxId>,
    system: HashMap<SystemAccount, Money>,
    changes: Changes,
    dirty_users: BTreeSet<UserId>,
    dirty_holds: BTreeMap<HoldId, bool>,
    dirty_payments: BTreeMap<PaymentId, bool>,
}

impl WorkingSet {
    /// An empty working set.
    #[must_use]
    pub fn new() -> WorkingSet {
        WorkingSet::default()
    }

    /// Loads a user's balance row.
    pub fn load_balance(&mut self, balance: Balance) {
        self.balances.insert(balance.user, balance);
    }

    /// Loads a hold row.
    ///
    /// For caps to be right, a store loads, for every command that carries caps at time `at`: each tranche of
    /// the command's user held after [`crate::caps::day_floor`]`(at)` ([`WorkingSet::load_tranche`]) with its
    /// hold, and the buckets of the command's provider after it ([`WorkingSet::load_provider_bucket`]); and
    /// for every command that ends a budgeted hold (capture, release, expire), that hold's tranches after
    /// the same floor.
    pub fn load_hold(&mut self, hold: Hold) {
        if !self.holds.contains_key(&hold.id) {
            self.user_holds.entry(hold.user).or_default().push(hold.id);
        }
        self.holds.insert(hold.id, hold);
    }

    /// Loads one tranche of a hold (its first amount or a raise). Loading the same transaction twice is
    /// harmless.
    pub fn load_tranche(&mut self, hold: HoldId, tranche: Tranche) {
        let list = self.tranches.entry(hold).or_default();
        if !list.iter().any(|t| t.tx == tranche.tx) {
            list.push(tranche);
        }
    }

    /// Loads one counter of a provider's budget: what budgeted holds of the provider spend in the bucket that
    /// starts at `bucket` (ms).
    pub fn load_provider_bucket(&mut self, provider: ProviderId, bucket: i64, spent: Money) {
        self.buckets.entry(provider).or_default().insert(bucket, spent);
    }

    /// What the batch `cmds` needs loaded for its caps, given the holds loaded so far. A hold placed by an
    /// earlier command of the same batch is known from that command.
    #[must_use]
    pub fn cap_loads<'a>(&self, cmds: impl IntoIterator<Item = &'a LedgerCommand>) -> CapLoads {
        let mut loads = CapLoads { floor: Timestamp::from_millis(i64::MAX), ..CapLoads::default() };
        // (user, provider, budgeted) of each hold placed in this batch.
        let mut placed: HashMap<HoldId, (UserId, Option<ProviderId>, bool)> = HashMap::new();
        for cmd in cmds {
            let known = cmd.op.hold().and_then(|id| {
                self.holds
                    .get(&id)
                    .map(|h| (h.user, h.provider.clone(), h.budgeted))
                    .or_else(|| placed.get(&id).cloned())
            });
            let touches = match &cmd.op {
                LedgerOp::Hold { user, hold, provider, caps, .. } => {
                    let budgeted = provider.is_some() && caps.provider_daily.is_some();
                    placed.insert(*hold, (*user, provider.clone(), budgeted));
                    Some((*user, provider.clone(), budgeted, caps.provider_daily.is_some()))
                }
                LedgerOp::Raise { caps, .. } => {
                    known.map(|(u, p, budgeted)| (u, p, budgeted, budgeted || caps.provider_daily.is_some()))
                }
                LedgerOp::Capture { .. } | LedgerOp::Release { .. } | LedgerOp::Expire { .. } => {
                    if let (Some(id), Some((_, Some(_), true))) = (cmd.op.hold(), &known) {
                        loads.ending.insert(id);
                        loads.floor = loads.floor.min(day_floor(cmd.at));
                    }
                    None
                }
                _ => None,
            };
            let Some((user, provider, _, budget)) = touches else { continue };
            if cmd.op.caps().is_some_and(SpendCaps::has_user_windows) {
                loads.users.insert(user);
            }
            if let Some(p) = provider.filter(|_| budget) {
                loads.providers.insert(p);
            }
            if cmd.op.caps().is_some() || budget {
                loads.floor = loads.floor.min(day_floor(cmd.at));
            }
        }
        loads
    }

    /// Loads a payment row.
    pub fn load_payment(&mut self, payment: PaymentRecord) {
        self.payments.insert(payment.id.clone(), payment);
    }

    /// Loads a key record.
    pub fn load_key(&mut self, key: IdempotencyKey, record: KeyRecord) {
        self.keys.insert(key, record);
    }

    /// Loads a transaction id that is taken, so that a command reusing it is refused.
    pub fn load_tx(&mut self, tx: TxId) {
        self.txs.insert(tx);
    }

    /// Loads a system account's whole balance, so that a command that would take it past the bounds of
    /// [`Money`] is refused with [`LedgerError::Overflow`]. A store that cannot read the whole balance (the
    /// PostgreSQL shards) checks its own bound when it writes.
    pub fn load_system_balance(&mut self, account: SystemAccount, balance: Money) {
        self.system.insert(account, balance);
    }

    /// A user's balance: the loaded row, or zeros.
    #[must_use]
    pub fn balance(&self, user: UserId) -> Balance {
        self.balances.get(&user).copied().unwrap_or_else(|| Balance::empty(user))
    }

    /// A loaded hold.
    #[must_use]
    pub fn hold(&self, id: HoldId) -> Option<&Hold> {
        self.holds.get(&id)
    }

    /// Every loaded hold.
    pub fn holds(&self) -> impl Iterator<Item = &Hold> {
        self.holds.values()
    }

    /// Every loaded balance.
    pub fn balances(&self) -> impl Iterator<Item = &Balance> {
        self.balances.values()
    }

    /// Sets a user's overdraft limit (not a money move).
    ///
    /// # Errors
    /// [`LedgerError::InvalidAmount`] for a negative limit, [`LedgerError::InsufficientFunds`] when the balance
    /// is already below the new floor.
    pub fn set_overdraft_limit(&mut self, user: UserId, limit: Money) -> Result<Balance, LedgerError> {
        if limit.is_negative() {
            return Err(LedgerError::InvalidAmount { amount: limit });
        }
        let mut b = self.balance(user);
        let floor = limit.checked_neg().ok_or(LedgerError::Overflow)?;
        if b.available < floor {
            let required = b.available.checked_neg().ok_or(LedgerError::Overflow)?;
            return Err(LedgerError::InsufficientFunds { available: limit, required });
        }
        b.overdraft_limit = limit;
        self.balances.insert(user, b);
        self.dirty_users.insert(user);
        Ok(b)
    }

    fn usage(&self, user: UserId, provider: Option<&ProviderId>, at: Timestamp) -> CapUsage {
        let user_since = |since: Timestamp| {
            let spends = self.user_holds.get(&user).into_iter().flatten().filter_map(|id| {
                let hold = self.holds.get(id)?;
                Some(spend_since(hold, self.tranches.get(id).map_or(&[][..], Vec::as_slice), since))
            });
            Money::checked_sum(spends).unwrap_or(Money::from_kopecks(i64::MAX))
        };
        let provider_day = provider.and_then(|p| self.buckets.get(p)).map_or(Money::ZERO, |buckets| {
            let floor = day_floor(at).as_millis();
            let spent = buckets.range(floor.saturating_add(1)..).map(|(_, m)| *m);
            Money::checked_sum(spent).unwrap_or(Money::from_kopecks(i64::MAX))
        });
        CapUsage { user_hour: user_since(at.minus(HOUR)), user_day: user_since(at.minus(DAY)), provider_day }
    }

    /// What a planned command holds or gives back, decided before anything changes: a new tranche for a hold
    /// or a positive raise, and the changes of a budgeted hold's provider counters (up for a tranche, down for
    /// what its end gave back). Every sum is checked here, so applying it cannot fail.
    fn spend_of(&self, cmd: &LedgerCommand, hold: &Hold, receipt: &Receipt) -> Result<Spend, LedgerError> {
        let grew = matches!(cmd.op, LedgerOp::Hold { .. } | LedgerOp::Raise { .. }) && receipt.amount.is_positive();
        let tranche = grew.then_some(Tranche { tx: cmd.tx, at: cmd.at, amount: receipt.amount });
        let mut counters = Vec::new();
        if let Some(provider) = hold.provider.as_ref().filter(|_| hold.budgeted) {
            if grew {
                counters.push((provider.clone(), bucket_of(cmd.at), receipt.amount));
            } else if receipt.released.is_positive() {
                let tranches = self.tranches.get(&hold.id).map_or(&[][..], Vec::as_slice);
                for (bucket, back) in released_by_bucket(tranches, receipt.released) {
                    counters.push((provider.clone(), bucket, back.checked_neg().ok_or(LedgerError::Overflow)?));
                }
            }
        }
        for (provider, bucket, delta) in &counters {
            let now = self.buckets.get(provider).and_then(|b| b.get(bucket)).copied().unwrap_or(Money::ZERO);
            now.checked_add(*delta).ok_or(LedgerError::Overflow)?;
            let change = self.changes.provider_spend.get(&(provider.clone(), *bucket)).copied().unwrap_or(Money::ZERO);
            change.checked_add(*delta).ok_or(LedgerError::Overflow)?;
        }
        Ok(Spend { hold: hold.id, tranche, counters })
    }

    /// Applies what [`WorkingSet::spend_of`] decided.
    fn record_spend(&mut self, spend: Spend) {
        if let Some(t) = spend.tranche {
            self.load_tranche(spend.hold, t);
        }
        for (provider, bucket, delta) in spend.counters {
            let counter = self.buckets.entry(provider.clone()).or_default().entry(bucket).or_insert(Money::ZERO);
            *counter = counter.checked_add(delta).unwrap_or(*counter);
            let change = self.changes.provider_spend.entry((provider, bucket)).or_insert(Money::ZERO);
            *change = change.checked_add(delta).unwrap_or(*change);
        }
    }

    /// Applies one command: a replay returns the first receipt, a conflicting key is refused, otherwise the
    /// command is planned and, if allowed, recorded as a change.
    ///
    /// # Errors
    /// [`LedgerError`] for a refusal; nothing changed then.
    pub fn apply(&mut self, cmd: &LedgerCommand) -> Result<Applied, LedgerError> {
        if let Some(record) = self.keys.get(&cmd.key) {
            if !cmd.op.matches_fingerprint(&record.fingerprint) {
                return Err(LedgerError::KeyConflict { key: cmd.key.clone() });
            }
            return Ok(Applied { receipt: record.receipt.clone(), replayed: true });
        }
        if self.txs.contains(&cmd.tx) {
            return Err(LedgerError::TransactionExists { tx: cmd.tx });
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
        let balance = self.balance(user);
        let payment = cmd.op.payment().and_then(|p| self.payments.get(p).cloned());
        let cap_usage = match cmd.op.caps() {
            Some(_) => {
                let provider = cmd.op.provider().or(hold.as_ref().and_then(|h| h.provider.as_ref()));
                self.usage(user, provider, cmd.at)
            }
            None => CapUsage::default(),
        };
        let plan = plan(cmd, &LedgerView { balance, hold, payment, cap_usage })?;

        // The last line of defence, as the database constraints are.
        let floor = plan.balance.overdraft_limit.checked_neg().ok_or(LedgerError::Overflow)?;
        if plan.balance.held.is_negative() || plan.balance.available < floor {
            return Err(StoreError::Corrupt { message: format!("balance constraint on user {user}") }.into());
        }
        let spend = match &plan.hold {
            Some(h) => Some(self.spend_of(cmd, h, &plan.receipt)?),
            None => None,
        };
        let mut system = self.changes.system_deltas.clone();
        for p in &plan.tx.postings {
            if let Account::System(acc) = p.account {
                let e = system.entry(acc).or_insert(Money::ZERO);
                *e = e.checked_add(p.amount).ok_or(LedgerError::Overflow)?;
                if let Some(before) = self.system.get(&acc) {
                    before.checked_add(*e).ok_or(LedgerError::Overflow)?;
                }
            }
        }

        self.changes.system_deltas = system;
        self.balances.insert(user, plan.balance);
        self.dirty_users.insert(user);
        if let Some(spend) = spend {
            self.record_spend(spend);
        }
        if let Some(h) = plan.hold {
            let is_new = !self.holds.contains_key(&h.id) || self.dirty_holds.get(&h.id).copied().unwrap_or(false);
            self.dirty_holds.insert(h.id, is_new);
            self.load_hold(h);
        }
        if let Some(p) = plan.payment {
            let is_new = !self.payments.contains_key(&p.id) || self.dirty_payments.get(&p.id).copied().unwrap_or(false);
            self.dirty_payments.insert(p.id.clone(), is_new);
            self.payments.insert(p.id.clone(), p);
        }
        let record = KeyRecord { fingerprint: cmd.op.fingerprint(), receipt: plan.receipt.clone() };
        self.keys.insert(cmd.key.clone(), record.clone());
        self.txs.insert(cmd.tx);
        self.changes.transactions.push(NewTransaction { tx: plan.tx, key: record });
        Ok(Applied { receipt: plan.receipt, replayed: false })
    }

    /// Takes what changed since the last call; the working set keeps its rows.
    pub fn take_changes(&mut self) -> Changes {
        let mut changes = std::mem::take(&mut self.changes);
        changes.balances = std::mem::take(&mut self.dirty_users).into_iter().map(|u| self.balance(u)).collect();
        changes.holds = std::mem::take(&mut self.dirty_holds)
            .into_iter()
            .filter_map(|(id, is_new)| self.holds.get(&id).map(|h| (h.clone(), is_new)))
            .collect();
        changes.payments = std::mem::take(&mut self.dirty_payments)
            .into_iter()
            .filter_map(|(id, is_new)| self.payments.get(&id).map(|p| (p.clone(), is_new)))
            .collect();
        changes
    }
}
