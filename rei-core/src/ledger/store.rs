//! The [`LedgerStore`] port.

use async_trait::async_trait;

use crate::ids::{HoldId, TxId, UserId};
use crate::ledger::model::{Account, Applied, Balance, Hold, LedgerCommand, SystemAccount, Transaction};
use crate::ledger::plan::LedgerError;
use crate::money::Money;
use crate::time::Timestamp;

/// A store failed; the caller cannot tell what applied unless the error says so.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The store could not be reached, or gave up after its bounded retries. Retrying the same command with
    /// the same key is safe.
    #[error("store unavailable: {message}")]
    Unavailable {
        /// What went wrong.
        message: String,
    },
    /// The batch is larger than the store commits in one atomic step; nothing applied. Split it.
    #[error("a batch of {len} commands is more than the {max} one atomic step takes: split it")]
    BatchTooLarge {
        /// Commands given.
        len: usize,
        /// Most commands one batch may hold.
        max: usize,
    },
    /// The store holds data that breaks an invariant (a constraint fired that the plan should have kept).
    #[error("store corrupt: {message}")]
    Corrupt {
        /// What went wrong.
        message: String,
    },
}

/// One cached balance that differs from the sum of its postings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountDrift {
    /// Which account.
    pub account: Account,
    /// The cached balance.
    pub cached: Money,
    /// The sum of its postings.
    pub recomputed: Money,
}

/// Most entries one [`LedgerStore::history`] call returns.
pub const HISTORY_PAGE_MAX: usize = 1_000;

/// One of a user's transactions, with its position in commit order (1 is the first ever committed).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct HistoryEntry {
    /// Its position in commit order: pass it as `before` for the page after this one.
    pub position: u64,
    /// The transaction.
    pub transaction: Transaction,
}

/// The result of [`LedgerStore::verify`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VerifyReport {
    /// Transactions checked.
    pub transactions: u64,
    /// Cached balances that differ from their postings.
    pub drifts: Vec<AccountDrift>,
    /// Transactions whose postings do not sum to zero.
    pub unbalanced: Vec<TxId>,
    /// Users whose available balance is below their overdraft limit, or whose held balance is negative.
    pub below_floor: Vec<UserId>,
    /// The sum of every account's balance (zero in a sound ledger: money is conserved).
    pub total: Money,
}

impl VerifyReport {
    /// `true` when nothing is wrong.
    #[must_use]
    pub fn is_clean(&self) -> bool {
        self.drifts.is_empty() && self.unbalanced.is_empty() && self.below_floor.is_empty() && self.total.is_zero()
    }
}

/// Most commands one [`LedgerStore::apply_batch`] call may hold: every store applies a batch in one atomic
/// step, and a bigger one would hold its locks (or the SQLite writer) for too long.
pub const BATCH_LEN_MAX: usize = 10_000;

/// Where the ledger lives.
///
/// Contract, for every implementation (checked by `rei_core::testing::ledger::conformance` and the ledger
/// model test):
/// - A command applies whole or not at all: its transaction, postings, cached balances, hold, payment and key
///   record are written in one atomic step, using [`crate::ledger::plan`] on rows read inside that step.
/// - `available` MUST NOT go below `-overdraft_limit` and `held` MUST NOT go below zero, under any concurrency;
///   enforcement is the store's (row locks, conditional updates or a single writer), never a read-then-write
///   race in the caller.
/// - A repeated key MUST return the first outcome with `replayed = true` and MUST NOT move money again; a
///   repeated key with a different operation MUST fail with [`LedgerError::KeyConflict`]. A refused command
///   records nothing under its key.
/// - Postings are append-only: nothing committed is ever updated or deleted.
#[async_trait]
pub trait LedgerStore: Send + Sync {
    /// Applies commands in order, each on its own: one refused command does not stop the others, and a later
    /// command sees the effects of the earlier ones. A store SHOULD commit the whole batch at once (group
    /// commit); where the database refuses one command's rows, that command alone fails and the others apply.
    ///
    /// # Errors
    /// The outer [`StoreError`] when the batch could not run at all (for one larger than
    /// [`BATCH_LEN_MAX`], [`StoreError::BatchTooLarge`]); then none of it applied.
    async fn apply_batch(&self, cmds: Vec<LedgerCommand>) -> Result<Vec<Result<Applied, LedgerError>>, StoreError>;

    /// Applies one command.
    ///
    /// # Errors
    /// [`LedgerError`] when refused or when the store failed.
    async fn apply(&self, cmd: LedgerCommand) -> Result<Applied, LedgerError> {
        let mut results = self.apply_batch(vec![cmd]).await?;
        match results.pop() {
            Some(result) if results.is_empty() => result,
            _ => Err(StoreError::Corrupt { message: "a batch of one returned another count".into() }.into()),
        }
    }

    /// A user's balances; zeros for a user the ledger has never seen.
    ///
    /// # Errors
    /// [`StoreError`] when the store failed.
    async fn balance(&self, user: UserId) -> Result<Balance, StoreError>;

    /// A system account's balance.
    ///
    /// # Errors
    /// [`StoreError`] when the store failed.
    async fn system_balance(&self, account: SystemAccount) -> Result<Money, StoreError>;

    /// A hold, if it exists.
    ///
    /// # Errors
    /// [`StoreError`] when the store failed.
    async fn hold(&self, id: HoldId) -> Result<Option<Hold>, StoreError>;

    /// Up to `limit` active holds whose TTL passed at `now`, oldest expiry first, for the reaper.
    ///
    /// # Errors
    /// [`StoreError`] when the store failed.
    async fn holds_due(&self, now: Timestamp, limit: usize) -> Result<Vec<HoldId>, StoreError>;

    /// Sets how far below zero a user's `available` may go. Not a money move, so it takes no key; setting the
    /// same limit twice is harmless. It MUST be atomic with the balance it checks.
    ///
    /// # Errors
    /// [`LedgerError::InvalidAmount`] for a negative limit; [`LedgerError::InsufficientFunds`] when the user is
    /// already further below zero than the new limit allows; [`LedgerError::Store`] when the store failed.
    async fn set_overdraft_limit(&self, user: UserId, limit: Money) -> Result<(), LedgerError>;

    /// Up to `limit` committed transactions in commit order, skipping the first `offset`.
    ///
    /// # Errors
    /// [`StoreError`] when the store failed.
    async fn transactions(&self, offset: u64, limit: usize) -> Result<Vec<Transaction>, StoreError>;

    /// A user's transactions, newest first: up to `limit` (at most [`HISTORY_PAGE_MAX`]) of those committed
    /// before position `before` (exclusive; `None`: from the newest). Each comes with its position in commit
    /// order, the cursor of the next page.
    ///
    /// # Errors
    /// [`StoreError`] when the store failed.
    async fn history(&self, user: UserId, before: Option<u64>, limit: usize) -> Result<Vec<HistoryEntry>, StoreError>;

    /// Recomputes every balance from the postings and reports each difference, every unbalanced transaction
    /// and every balance below its floor.
    ///
    /// # Errors
    /// [`StoreError`] when the store failed.
    async fn verify(&self) -> Result<VerifyReport, StoreError>;
}
