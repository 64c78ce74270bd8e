//! Reads of history from a streaming replica ([`EngineConfig::replica_url`](super::EngineConfig::replica_url)):
//! a user's ledger history and the pages of the ledger's transactions, which may lag by the replica's delay and
//! decide nothing. Balances, holds, verify and every write go to the primary.

use std::sync::Arc;

use async_trait::async_trait;
use rei_core::ids::{HoldId, UserId};
use rei_core::ledger::{
    Applied, Balance, HistoryEntry, Hold, LedgerCommand, LedgerError, LedgerStore, StoreError, SystemAccount,
    Transaction, VerifyReport,
};
use rei_core::money::Money;
use rei_core::time::Timestamp;

/// A ledger whose history is read from a replica.
pub(super) struct ReplicaReads {
    pub(super) primary: Arc<dyn LedgerStore>,
    pub(super) replica: Arc<dyn LedgerStore>,
}

#[async_trait]
impl LedgerStore for ReplicaReads {
    async fn apply_batch(&self, cmds: Vec<LedgerCommand>) -> Result<Vec<Result<Applied, LedgerError>>, StoreError> {
        self.primary.apply_batch(cmds).await
    }

    async fn apply(&self, cmd: LedgerCommand) -> Result<Applied, LedgerError> {
        self.primary.apply(cmd).await
    }

    async fn balance(&self, user: UserId) -> Result<Balance, StoreError> {
        self.primary.balance(user).await
    }

    async fn system_balance(&self, account: SystemAccount) -> Result<Money, StoreError> {
        self.primary.system_balance(account).await
    }

    async fn hold(&self, id: HoldId) -> Result<Option<Hold>, StoreError> {
        self.primary.hold(id).await
    }

    async fn holds_due(&self, now: Timestamp, limit: usize) -> Result<Vec<HoldId>, StoreError> {
        self.primary.holds_due(now, limit).await
    }

    async fn set_overdraft_limit(&self, user: UserId, limit: Money) -> Result<(), LedgerError> {
        self.primary.set_overdraft_limit(user, limit).await
    }

    async fn transactions(&self, offset: u64, limit: usize) -> Result<Vec<Transaction>, StoreError> {
        self.replica.transactions(offset, limit).await
    }

    async fn history(&self, user: UserId, before: Option<u64>, limit: usize) -> Result<Vec<HistoryEntry>, StoreError> {
        self.replica.history(user, before, limit).await
    }

    async fn verify(&self) -> Result<VerifyReport, StoreError> {
        self.primary.verify().await
    }
}
