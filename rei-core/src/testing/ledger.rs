//! The in-memory ledger store, the ledger conformance suite and the ledger model test.

mod conformance;
mod memory;
mod model;
mod repeats;

pub(crate) use repeats::join_all;

pub use conformance::ledger_conformance;
pub use memory::MemoryLedger;
pub use model::{LedgerHarness, MemoryHarness, run_ledger_model};

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::ids::UserId;
    use crate::ledger::LedgerStore;
    use crate::money::Money;

    #[tokio::test]
    async fn memory_ledger_passes_the_conformance_suite() {
        // Proves the in-memory store keeps every MUST of the ledger port.
        ledger_conformance(|| async { Arc::new(MemoryLedger::new()) as Arc<dyn LedgerStore> }).await;
    }

    #[test]
    fn memory_ledger_agrees_with_the_model() {
        // Proves the in-memory store agrees with the oracle and keeps I1-I6 over random sequences.
        run_ledger_model::<MemoryHarness>(256, 60);
    }

    #[tokio::test]
    async fn verify_reports_a_drifted_balance() {
        // Proves verify is not blind: a cached balance changed without a posting is reported.
        let store = MemoryLedger::new();
        store.corrupt_available_for_test(UserId(5), Money::from_kopecks(1));
        let report = store.verify().await.expect("verify");
        assert!(!report.is_clean());
        assert_eq!(report.drifts.len(), 1);
        assert_eq!(report.drifts[0].cached, Money::from_kopecks(1));
    }
}
