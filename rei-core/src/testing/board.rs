//! A [`ProviderBoard`] in memory, and the conformance suite every board store must pass.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use rust_decimal::Decimal;

use crate::ids::ProviderId;
use crate::routing::{BoardError, BreakerView, ModelSwitch, ProviderBoard, ProviderStatus, check_model, check_status};
use crate::time::Timestamp;

/// The board in memory.
#[derive(Default)]
pub struct MemoryBoard {
    statuses: Mutex<BTreeMap<String, ProviderStatus>>,
    switches: Mutex<BTreeMap<(String, String), ModelSwitch>>,
}

impl MemoryBoard {
    /// An empty board.
    #[must_use]
    pub fn new() -> MemoryBoard {
        MemoryBoard::default()
    }
}

#[async_trait]
impl ProviderBoard for MemoryBoard {
    async fn publish(&self, statuses: &[ProviderStatus]) -> Result<(), BoardError> {
        statuses.iter().try_for_each(check_status)?;
        let mut map = self.statuses.lock().unwrap_or_else(PoisonError::into_inner);
        for s in statuses {
            map.insert(s.provider.as_str().to_owned(), s.clone());
        }
        Ok(())
    }

    async fn statuses(&self) -> Result<Vec<ProviderStatus>, BoardError> {
        Ok(self.statuses.lock().unwrap_or_else(PoisonError::into_inner).values().cloned().collect())
    }

    async fn set_model(
        &self,
        provider: &ProviderId,
        model: &str,
        enabled: bool,
        now: Timestamp,
    ) -> Result<(), BoardError> {
        check_model(model)?;
        let switch = ModelSwitch { provider: provider.clone(), model: model.to_owned(), enabled, at: now };
        self.switches
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert((provider.as_str().to_owned(), model.to_owned()), switch);
        Ok(())
    }

    async fn models(&self) -> Result<Vec<ModelSwitch>, BoardError> {
        Ok(self.switches.lock().unwrap_or_else(PoisonError::into_inner).values().cloned().collect())
    }
}

fn must<T>(what: &str, r: Result<T, BoardError>) -> T {
    r.unwrap_or_else(|e| panic!("{what}: {e}"))
}

fn provider(name: &str) -> ProviderId {
    ProviderId::parse(name).unwrap_or_else(|e| panic!("provider {name}: {e}"))
}

fn status(name: &str, breaker: BreakerView, successes: u32, outcomes: u32, at: i64) -> ProviderStatus {
    ProviderStatus {
        provider: provider(name),
        breaker,
        score: Some(Decimal::new(8_125, 4)),
        latency_ewma_ms: Some(1_250),
        successes,
        outcomes,
        reported_by: "worker-1".to_owned(),
        at: Timestamp::from_millis(at),
    }
}

/// Runs every MUST of [`ProviderBoard`] against fresh boards from `make`.
///
/// # Panics
/// On the first broken rule, naming it.
pub async fn board_conformance<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn ProviderBoard>>,
{
    // Statuses read back whole, by provider name; the last write of a provider wins.
    let board = make().await;
    assert_eq!(must("empty", board.statuses().await), Vec::new());
    let open = BreakerView::Open { until: Timestamp::from_millis(9_000) };
    let kling = status("kling", BreakerView::Closed, 9, 10, 1_000);
    let gemini = status("gemini", open, 0, 5, 1_000);
    must("publish", board.publish(&[kling.clone(), gemini.clone()]).await);
    assert_eq!(must("statuses", board.statuses().await), [gemini.clone(), kling.clone()]);
    let mut later = status("gemini", BreakerView::HalfOpen, 1, 6, 2_000);
    later.score = None;
    later.latency_ewma_ms = None;
    later.reported_by = "worker-2".to_owned();
    must("publish again", board.publish(std::slice::from_ref(&later)).await);
    assert_eq!(must("statuses", board.statuses().await), [later, kling], "the last writer wins");
    let bad = status("veo", BreakerView::Closed, 3, 2, 1_000);
    assert!(matches!(board.publish(&[bad]).await, Err(BoardError::Invalid(_))), "more successes than outcomes");

    // Switches: absent means on; the last switch of a model wins.
    let board = make().await;
    assert_eq!(must("no switches", board.models().await), Vec::new());
    let g = provider("gemini");
    must("off", board.set_model(&g, "flash", false, Timestamp::from_millis(10)).await);
    must("other", board.set_model(&g, "pro", false, Timestamp::from_millis(11)).await);
    must("on again", board.set_model(&g, "flash", true, Timestamp::from_millis(12)).await);
    let got: Vec<(String, bool, i64)> =
        must("models", board.models().await).into_iter().map(|m| (m.model, m.enabled, m.at.as_millis())).collect();
    assert_eq!(got, [("flash".to_owned(), true, 12), ("pro".to_owned(), false, 11)]);
    assert!(matches!(board.set_model(&g, "", false, Timestamp::from_millis(1)).await, Err(BoardError::Invalid(_))));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_memory_board_passes_the_conformance_suite() {
        board_conformance(|| async { Arc::new(MemoryBoard::new()) as Arc<dyn ProviderBoard> }).await;
    }
}
