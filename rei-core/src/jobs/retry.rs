//! Retry with exponential backoff and deterministic jitter.
//!
//! The jitter comes from a small integer hash of (job id, attempt), not from a random number generator: the
//! delay of a given attempt is then the same in every run and every test, while different jobs that failed
//! together still spread out instead of retrying in lockstep. Everything is integer milliseconds.

use std::time::Duration;

use rust_decimal::Decimal;

use super::model::ATTEMPTS_MAX;
use crate::ids::JobId;
use crate::money::Ratio;

/// The longest delay a policy may have between attempts.
pub const BACKOFF_CAP_MAX: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// Parts per million: the integer scale jitter is computed in.
const PPM: u128 = 1_000_000;

/// How attempts are retried: at most `max_attempts`, waiting `base * 2^(n-1)` after the n-th failed attempt,
/// never more than `cap`, shortened by up to `jitter` of itself.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct RetryPolicy {
    /// Attempts allowed per job, whatever the job itself asks for (1 to [`ATTEMPTS_MAX`]).
    pub max_attempts: u32,
    /// The delay after the first failed attempt.
    pub base: Duration,
    /// The longest delay (at most [`BACKOFF_CAP_MAX`]).
    pub cap: Duration,
    /// The largest share of a delay taken off by jitter, from 0 to 1.
    pub jitter: Ratio,
}

/// Why a [`RetryPolicy`] is refused.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum RetryPolicyError {
    /// `max_attempts` is zero or above [`ATTEMPTS_MAX`].
    #[error("max attempts {max_attempts} is outside 1..={ATTEMPTS_MAX}")]
    Attempts {
        /// The refused value.
        max_attempts: u32,
    },
    /// `base` is zero, above `cap`, or `cap` is above [`BACKOFF_CAP_MAX`].
    #[error("backoff base {base:?} and cap {cap:?} must satisfy 0 < base <= cap <= {BACKOFF_CAP_MAX:?}")]
    Delays {
        /// The refused base.
        base: Duration,
        /// The refused cap.
        cap: Duration,
    },
    /// `jitter` is outside 0..=1.
    #[error("jitter {jitter} is outside 0..=1")]
    Jitter {
        /// The refused jitter.
        jitter: Ratio,
    },
}

impl RetryPolicy {
    /// A checked policy.
    ///
    /// # Errors
    /// [`RetryPolicyError`] for attempts outside 1..=[`ATTEMPTS_MAX`], a zero base, a base above the cap, a cap
    /// above [`BACKOFF_CAP_MAX`], or jitter outside 0..=1.
    pub fn new(max_attempts: u32, base: Duration, cap: Duration, jitter: Ratio) -> Result<Self, RetryPolicyError> {
        if max_attempts == 0 || max_attempts > ATTEMPTS_MAX {
            return Err(RetryPolicyError::Attempts { max_attempts });
        }
        if base.is_zero() || base > cap || cap > BACKOFF_CAP_MAX {
            return Err(RetryPolicyError::Delays { base, cap });
        }
        if jitter.value() < Decimal::ZERO || jitter.value() > Decimal::ONE {
            return Err(RetryPolicyError::Jitter { jitter });
        }
        Ok(RetryPolicy { max_attempts, base, cap, jitter })
    }

    /// The attempts a job really gets: the smaller of its own limit and the policy's.
    #[must_use]
    pub fn attempts_allowed(&self, job_max_attempts: u32) -> u32 {
        job_max_attempts.min(self.max_attempts).min(ATTEMPTS_MAX)
    }

    /// The delay before the next attempt after `attempt` (1-based) failed: `min(cap, base * 2^(attempt-1))`,
    /// minus a deterministic share of up to `jitter` of it. Never above `cap`; the same inputs always give the
    /// same delay.
    #[must_use]
    pub fn backoff(&self, job: JobId, attempt: u32) -> Duration {
        let raw = self.undelayed(attempt);
        // The fraction of the jitter range to take off, in 1/2^32 steps, from the hash.
        let fraction = u128::from(mix(job.as_u128(), attempt) >> 32);
        let cut = raw.saturating_mul(self.jitter_ppm()).saturating_mul(fraction) / (PPM << 32);
        Duration::from_millis(u64::try_from(raw.saturating_sub(cut)).unwrap_or(u64::MAX))
    }

    /// `min(cap, base * 2^(attempt-1))` in milliseconds, before jitter.
    fn undelayed(&self, attempt: u32) -> u128 {
        let cap = self.cap.as_millis();
        let doublings = attempt.saturating_sub(1);
        if doublings >= 64 {
            return cap;
        }
        self.base.as_millis().saturating_mul(1u128 << doublings).min(cap)
    }

    /// The jitter as an integer number of parts per million, clamped to 0..=1 000 000.
    fn jitter_ppm(&self) -> u128 {
        let ppm = self.jitter.value().saturating_mul(Decimal::from(1_000_000)).trunc();
        u128::try_from(ppm).unwrap_or(0).min(PPM)
    }
}

/// SplitMix64's finaliser over the folded job id and the attempt: cheap, well spread, no state.
fn mix(job: u128, attempt: u32) -> u64 {
    // Folding keeps every bit of the id; truncation to u64 is the point of the fold.
    let mut z = ((job >> 64) as u64) ^ (job as u64) ^ u64::from(attempt).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn policy(jitter_percent: i64) -> RetryPolicy {
        RetryPolicy::new(5, Duration::from_millis(100), Duration::from_secs(10), Ratio::percent(jitter_percent))
            .expect("valid policy")
    }

    #[test]
    fn without_jitter_delays_double_until_the_cap() {
        // Proves the exponential shape: 100, 200, 400 ... ms, flat at the cap.
        let p = policy(0);
        let delays: Vec<u128> = (1..=9).map(|n| p.backoff(JobId::from(7), n).as_millis()).collect();
        assert_eq!(delays, vec![100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000]);
        assert_eq!(p.backoff(JobId::from(7), u32::MAX), Duration::from_secs(10));
    }

    #[test]
    fn policy_refuses_unbounded_or_odd_settings() {
        // Proves the constructor keeps attempts, delays and jitter inside their bounds.
        let ok = Duration::from_secs(1);
        assert!(RetryPolicy::new(0, ok, ok, Ratio::ZERO).is_err());
        assert!(RetryPolicy::new(ATTEMPTS_MAX + 1, ok, ok, Ratio::ZERO).is_err());
        assert!(RetryPolicy::new(3, Duration::ZERO, ok, Ratio::ZERO).is_err());
        assert!(RetryPolicy::new(3, ok * 2, ok, Ratio::ZERO).is_err());
        assert!(RetryPolicy::new(3, ok, BACKOFF_CAP_MAX * 2, Ratio::ZERO).is_err());
        assert!(RetryPolicy::new(3, ok, ok, Ratio::percent(101)).is_err());
        assert!(RetryPolicy::new(3, ok, ok, Ratio::percent(-1)).is_err());
        assert_eq!(policy(0).attempts_allowed(9), 5);
    }

    proptest! {
        #[test]
        fn backoff_is_bounded_growing_and_deterministic(job in any::<u128>(), attempt in 1u32..40, jitter in 0i64..=100) {
            // Proves every delay lies in [raw*(1-jitter), raw] with raw = min(cap, base*2^(n-1)), so it never
            // exceeds the cap, its floor grows with attempts, and it is a pure function of its inputs.
            let p = policy(jitter);
            let d = p.backoff(JobId::from(job), attempt).as_millis();
            let raw = p.undelayed(attempt);
            prop_assert!(d <= raw && raw <= p.cap.as_millis());
            prop_assert!(d * 100 >= raw * (100 - jitter.unsigned_abs() as u128));
            prop_assert!(p.undelayed(attempt + 1) >= raw);
            prop_assert_eq!(p.backoff(JobId::from(job), attempt), p.backoff(JobId::from(job), attempt));
        }
    }
}
