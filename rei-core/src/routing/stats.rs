//! Live health of one provider: a latency EWMA and the success rate over the last outcomes.

use std::collections::VecDeque;

use rust_decimal::{Decimal, RoundingStrategy};

use crate::money::Ratio;
use crate::time::Timestamp;

/// Longest outcome window ([`StatsConfig::window_len`], and the breaker's failure-rate window).
pub const WINDOW_LEN_MAX: usize = 1024;
/// Latency samples are clamped to this (one day), so that one absurd sample cannot dominate forever and the
/// EWMA arithmetic can never overflow.
pub const LATENCY_MS_MAX: u64 = 24 * 60 * 60 * 1000;

/// The last `cap` outcomes (`true` = success), oldest dropped first, with the success count kept current.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Window {
    outcomes: VecDeque<bool>,
    cap: usize,
    successes: usize,
}

impl Window {
    pub(super) fn new(cap: usize) -> Window {
        Window { outcomes: VecDeque::with_capacity(cap), cap, successes: 0 }
    }

    pub(super) fn push(&mut self, success: bool) {
        if self.outcomes.len() == self.cap
            && let Some(true) = self.outcomes.pop_front()
        {
            self.successes -= 1;
        }
        self.outcomes.push_back(success);
        self.successes += usize::from(success);
    }

    pub(super) fn clear(&mut self) {
        self.outcomes.clear();
        self.successes = 0;
    }

    pub(super) fn len(&self) -> usize {
        self.outcomes.len()
    }

    pub(super) fn successes(&self) -> usize {
        self.successes
    }

    pub(super) fn failures(&self) -> usize {
        self.outcomes.len() - self.successes
    }
}

/// How [`ProviderStats`] weighs new samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatsConfig {
    /// Weight of a new latency sample in the EWMA, in (0, 1]: `ewma' = ewma + alpha * (sample - ewma)`.
    pub alpha: Ratio,
    /// How many recent outcomes the success rate covers, 1..=[`WINDOW_LEN_MAX`].
    pub window_len: usize,
}

/// Why a [`StatsConfig`] is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatsConfigError {
    /// Alpha outside (0, 1] would make the average ignore samples or diverge.
    #[error("latency alpha {alpha} must be above 0 and at most 1")]
    Alpha {
        /// The rejected alpha.
        alpha: Ratio,
    },
    /// The window must hold at least one outcome and at most [`WINDOW_LEN_MAX`].
    #[error("outcome window of {len} must be 1 to {WINDOW_LEN_MAX}")]
    WindowLen {
        /// The rejected length.
        len: usize,
    },
}

/// Live health of one provider. Invariants: the EWMA lies between the smallest and largest (clamped) latency
/// recorded; the success rate is in [0, 1] and covers at most `window_len` outcomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderStats {
    alpha: Ratio,
    latency_ewma_ms: Option<u64>,
    window: Window,
    last_outcome_at: Option<Timestamp>,
}

impl ProviderStats {
    /// Empty stats: no latency yet, no outcomes.
    ///
    /// # Errors
    /// [`StatsConfigError`] for an alpha outside (0, 1] or a window length outside 1..=[`WINDOW_LEN_MAX`].
    pub fn new(config: StatsConfig) -> Result<ProviderStats, StatsConfigError> {
        let a = config.alpha.value();
        if a <= Decimal::ZERO || a > Decimal::ONE {
            return Err(StatsConfigError::Alpha { alpha: config.alpha });
        }
        if config.window_len == 0 || config.window_len > WINDOW_LEN_MAX {
            return Err(StatsConfigError::WindowLen { len: config.window_len });
        }
        Ok(ProviderStats {
            alpha: config.alpha,
            latency_ewma_ms: None,
            window: Window::new(config.window_len),
            last_outcome_at: None,
        })
    }

    /// Records a successful call that took `latency_ms` (clamped to [`LATENCY_MS_MAX`]).
    ///
    /// The first sample seeds the EWMA; later ones move it by `alpha` of the difference, rounded half away from
    /// zero to whole milliseconds. Rounding a convex combination of two whole numbers keeps it between them, so
    /// the EWMA never leaves the range of samples seen; the price is that a gap smaller than `0.5 / alpha` ms
    /// does not move it, which is far below what routing cares about.
    pub fn record_success(&mut self, latency_ms: u64, at: Timestamp) {
        let sample = latency_ms.min(LATENCY_MS_MAX);
        let next = match self.latency_ewma_ms {
            None => sample,
            Some(old) => {
                // Both values are at most LATENCY_MS_MAX and alpha is at most 1: no Decimal overflow possible.
                let old_d = Decimal::from(old);
                let moved = old_d + self.alpha.value() * (Decimal::from(sample) - old_d);
                let rounded = moved.round_dp_with_strategy(0, RoundingStrategy::MidpointAwayFromZero);
                u64::try_from(rounded).unwrap_or(sample)
            }
        };
        self.latency_ewma_ms = Some(next);
        self.window.push(true);
        self.last_outcome_at = Some(at);
    }

    /// Records a failed call. Failures carry no latency: a timeout says nothing about a healthy call's speed.
    pub fn record_failure(&mut self, at: Timestamp) {
        self.window.push(false);
        self.last_outcome_at = Some(at);
    }

    /// The latency EWMA in whole milliseconds, `None` before the first success.
    #[must_use]
    pub fn latency_ewma_ms(&self) -> Option<u64> {
        self.latency_ewma_ms
    }

    /// Successes over outcomes in the window, `None` before the first outcome. Always in [0, 1].
    #[must_use]
    pub fn success_rate(&self) -> Option<Ratio> {
        let n = self.window.len();
        (n > 0).then(|| Ratio::new(Decimal::from(self.window.successes()) / Decimal::from(n)))
    }

    /// How many outcomes the window holds now.
    #[must_use]
    pub fn outcomes(&self) -> usize {
        self.window.len()
    }

    /// When the last outcome was recorded.
    #[must_use]
    pub fn last_outcome_at(&self) -> Option<Timestamp> {
        self.last_outcome_at
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn stats(alpha_percent: i64, window_len: usize) -> ProviderStats {
        ProviderStats::new(StatsConfig { alpha: Ratio::percent(alpha_percent), window_len }).expect("config")
    }

    #[test]
    fn ewma_and_window_follow_the_formula() {
        // Proves the EWMA moves by alpha of the gap and the success rate only counts the last window_len outcomes.
        let mut s = stats(50, 2);
        let t = Timestamp::EPOCH;
        assert_eq!((s.latency_ewma_ms(), s.success_rate()), (None, None));
        s.record_success(100, t);
        s.record_success(201, t);
        assert_eq!(s.latency_ewma_ms(), Some(151)); // 150.5 rounds away from zero
        s.record_failure(t);
        assert_eq!(s.success_rate(), Some(Ratio::percent(50)));
        s.record_failure(t);
        assert_eq!(s.success_rate(), Some(Ratio::ZERO));
        assert_eq!(s.outcomes(), 2);
        assert!(ProviderStats::new(StatsConfig { alpha: Ratio::ZERO, window_len: 1 }).is_err());
        assert!(ProviderStats::new(StatsConfig { alpha: Ratio::ONE, window_len: WINDOW_LEN_MAX + 1 }).is_err());
    }

    proptest! {
        #[test]
        fn ewma_stays_within_samples_and_rate_within_unit(
            alpha in 1i64..=100,
            window_len in 1usize..16,
            events in prop::collection::vec(prop::option::of(0u64..10_000), 1..100),
        ) {
            // Proves the EWMA never leaves [min, max] of the latencies seen and the success rate stays in [0, 1].
            let mut s = stats(alpha, window_len);
            let (mut lo, mut hi) = (u64::MAX, 0);
            for (i, e) in events.into_iter().enumerate() {
                let at = Timestamp::from_millis(i64::try_from(i).expect("small"));
                match e {
                    Some(ms) => { s.record_success(ms, at); lo = lo.min(ms); hi = hi.max(ms); }
                    None => s.record_failure(at),
                }
                if let Some(ewma) = s.latency_ewma_ms() {
                    prop_assert!(lo <= ewma && ewma <= hi, "ewma {} outside [{}, {}]", ewma, lo, hi);
                }
                let rate = s.success_rate().expect("at least one outcome").value();
                prop_assert!(Decimal::ZERO <= rate && rate <= Decimal::ONE);
                prop_assert!(s.outcomes() <= window_len);
            }
        }
    }
}
