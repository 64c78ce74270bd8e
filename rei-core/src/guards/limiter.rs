//! [`InProcessRateLimiter`]: the [`RateLimiter`] of a single process.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;

use super::rate::{Decision, Gcra, LimiterError, RateLimitKey, RateLimitPolicy, RateLimiter};
use crate::time::Timestamp;

/// Keys the in-memory limiter keeps before it sweeps the ones whose TAT has passed.
const LIMITER_KEYS_SWEEP_AT: usize = 100_000;

/// GCRA state per key in a mutex: the limiter of the embedded default (one process). Several processes
/// sharing limits use a shared store (Redis) instead.
#[derive(Debug, Default)]
pub struct InProcessRateLimiter {
    tats: Mutex<HashMap<String, Timestamp>>,
}

impl InProcessRateLimiter {
    /// An empty limiter.
    #[must_use]
    pub fn new() -> InProcessRateLimiter {
        InProcessRateLimiter::default()
    }

    /// Keys currently remembered.
    #[must_use]
    pub fn len(&self) -> usize {
        self.tats.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// `true` when no key is remembered.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl RateLimiter for InProcessRateLimiter {
    async fn check(
        &self,
        key: &RateLimitKey,
        policy: &RateLimitPolicy,
        cost: u32,
        now: Timestamp,
    ) -> Result<Decision, LimiterError> {
        let mut tats = self.tats.lock().unwrap_or_else(PoisonError::into_inner);
        let name = key.to_string();
        let decision = Gcra::check(policy, tats.get(&name).copied(), now, cost)?;
        if let Decision::Allow { new_tat } = decision {
            if tats.len() >= LIMITER_KEYS_SWEEP_AT {
                // A key whose TAT has passed decides exactly as an absent key, so forgetting it is safe.
                tats.retain(|_, tat| *tat > now);
            }
            tats.insert(name, new_tat);
        }
        Ok(decision)
    }
}
