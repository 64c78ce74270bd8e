//! A fixed-bucket latency histogram: bounded memory, mergeable across workers, exact integer quantiles.

use super::objective::Counts;
use crate::money::Ratio;

/// Bucket upper bounds in milliseconds (inclusive), chosen around generation times: images take seconds,
/// videos minutes. [`JOB_LATENCY_TARGET_MS`](super::JOB_LATENCY_TARGET_MS) is a bound, so the latency SLO's
/// counts are exact.
pub const LATENCY_BOUNDS_MS: [u64; 16] = [
    500, 1_000, 2_000, 5_000, 10_000, 15_000, 30_000, 45_000, 60_000, 90_000, 120_000, 180_000, 240_000, 300_000,
    600_000, 1_200_000,
];

/// Most decimal places a quantile may have (0.999999999). Keeps the rank computation inside `u128`.
pub const QUANTILE_SCALE_MAX: u32 = 9;

/// Where a quantile falls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LatencyBound {
    /// At most this many milliseconds (a bucket's upper bound).
    AtMost(u64),
    /// Above the largest bound, this many milliseconds.
    Above(u64),
}

/// A quantile outside `[0, 1]` or with more than [`QUANTILE_SCALE_MAX`] decimals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("quantile {0} must be 0 to 1 with at most {QUANTILE_SCALE_MAX} decimals")]
pub struct BadQuantile(pub Ratio);

/// Counts of latencies per bucket of [`LATENCY_BOUNDS_MS`], plus one bucket above the largest bound.
///
/// Invariant: memory is fixed; counts saturate at `u64::MAX` rather than wrap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LatencyHistogram {
    buckets: [u64; LATENCY_BOUNDS_MS.len() + 1],
}

impl LatencyHistogram {
    /// An empty histogram.
    #[must_use]
    pub fn new() -> LatencyHistogram {
        LatencyHistogram::default()
    }

    /// Records one latency.
    pub fn record(&mut self, latency_ms: u64) {
        self.record_many(latency_ms, 1);
    }

    /// Records `count` latencies of `latency_ms` each (a store that counts latencies per bucket hands its
    /// counts over this way, one bound per bucket).
    pub fn record_many(&mut self, latency_ms: u64, count: u64) {
        let i = LATENCY_BOUNDS_MS.partition_point(|&bound| bound < latency_ms);
        self.buckets[i] = self.buckets[i].saturating_add(count);
    }

    /// Adds another histogram's counts (another worker's, another minute's).
    pub fn merge(&mut self, other: &LatencyHistogram) {
        for (mine, theirs) in self.buckets.iter_mut().zip(other.buckets) {
            *mine = mine.saturating_add(theirs);
        }
    }

    /// Latencies recorded.
    #[must_use]
    pub fn count(&self) -> u64 {
        self.buckets.iter().fold(0, |sum, &n| sum.saturating_add(n))
    }

    /// Good (at most `target_ms`) and total latencies, for a latency SLO; `None` when `target_ms` is not one of
    /// [`LATENCY_BOUNDS_MS`], because a bucket would then mix good and bad latencies.
    #[must_use]
    pub fn within(&self, target_ms: u64) -> Option<Counts> {
        let i = LATENCY_BOUNDS_MS.iter().position(|&bound| bound == target_ms)?;
        let good = self.buckets[..=i].iter().fold(0u64, |sum, &n| sum.saturating_add(n));
        Counts::new(good, self.count()).ok()
    }

    /// The upper bound of the bucket holding the `q` quantile: the smallest bound with at least
    /// `ceil(q * count)` (and at least one) latencies at or below it. `None` when nothing is recorded.
    ///
    /// # Errors
    /// [`BadQuantile`] when `q` is outside `[0, 1]` or too precise.
    pub fn quantile(&self, q: Ratio) -> Result<Option<LatencyBound>, BadQuantile> {
        let v = q.value().normalize();
        let mantissa = u128::try_from(v.mantissa()).map_err(|_| BadQuantile(q))?;
        let one = 10u128.pow(v.scale().min(QUANTILE_SCALE_MAX));
        if v.scale() > QUANTILE_SCALE_MAX || mantissa > one {
            return Err(BadQuantile(q));
        }
        let count = u128::from(self.count());
        if count == 0 {
            return Ok(None);
        }
        // mantissa <= 10^9 and count < 2^64, so the product fits u128.
        let rank = (mantissa * count).div_ceil(one).max(1);
        let mut seen = 0u128;
        for (i, &n) in self.buckets.iter().enumerate() {
            seen += u128::from(n);
            if seen >= rank {
                return Ok(Some(match LATENCY_BOUNDS_MS.get(i) {
                    Some(&bound) => LatencyBound::AtMost(bound),
                    None => LatencyBound::Above(LATENCY_BOUNDS_MS[LATENCY_BOUNDS_MS.len() - 1]),
                }));
            }
        }
        // Unreachable: `seen` ends at `count >= rank`. Answer the top bucket rather than panic in a report.
        Ok(Some(LatencyBound::Above(LATENCY_BOUNDS_MS[LATENCY_BOUNDS_MS.len() - 1])))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slo::JOB_LATENCY_TARGET_MS;
    use proptest::prelude::*;
    use rust_decimal::Decimal;

    fn p(percent: i64) -> Ratio {
        Ratio::percent(percent)
    }

    #[test]
    fn p95_is_the_bucket_bound_of_the_95th_percent() {
        // Proves p95 of 100 jobs, 95 within 60 s and 5 slower, is 60 s; p96 falls in the slower bucket.
        let mut h = LatencyHistogram::new();
        (0..95).for_each(|_| h.record(59_000));
        (0..5).for_each(|_| h.record(200_000));
        assert_eq!(h.quantile(p(95)), Ok(Some(LatencyBound::AtMost(60_000))));
        assert_eq!(h.quantile(p(96)), Ok(Some(LatencyBound::AtMost(240_000))));
        assert_eq!(h.quantile(Ratio::ZERO), Ok(Some(LatencyBound::AtMost(60_000))));
        assert_eq!(h.within(JOB_LATENCY_TARGET_MS), Counts::new(95, 100).ok());
        assert_eq!(h.within(123), None);
        h.record(u64::MAX);
        assert_eq!(h.quantile(Ratio::ONE), Ok(Some(LatencyBound::Above(1_200_000))));
    }

    #[test]
    fn bounds_are_inclusive_and_bad_quantiles_refused() {
        // Proves a latency equal to a bound lands in that bound's bucket, and q outside [0, 1] is refused.
        let mut h = LatencyHistogram::new();
        h.record(180_000);
        assert_eq!(h.within(180_000), Counts::new(1, 1).ok());
        assert_eq!(LatencyHistogram::new().quantile(p(50)), Ok(None));
        for bad in [p(101), p(-1), Ratio::new(Decimal::new(1, 10))] {
            assert_eq!(h.quantile(bad), Err(BadQuantile(bad)));
        }
    }

    proptest! {
        #[test]
        fn quantile_bounds_at_least_q_of_latencies(
            latencies in prop::collection::vec(0u64..2_000_000, 1..200),
            percent in 0i64..=100,
        ) {
            // Proves the answer is a true upper bound for at least q of the recorded latencies, and that
            // merging two halves gives the same histogram as recording everything in one.
            let (mut all, mut left, mut right) = (LatencyHistogram::new(), LatencyHistogram::new(), LatencyHistogram::new());
            for (i, &ms) in latencies.iter().enumerate() {
                all.record(ms);
                if i % 2 == 0 { left.record(ms) } else { right.record(ms) }
            }
            left.merge(&right);
            prop_assert_eq!(left, all);
            let Ok(Some(LatencyBound::AtMost(bound))) = all.quantile(p(percent)) else { return Ok(()) };
            let under = latencies.iter().filter(|&&ms| ms <= bound).count() as u64;
            prop_assert!(under * 100 >= u64::try_from(percent).expect("non-negative") * latencies.len() as u64);
        }
    }
}
