//! Rate limits: GCRA (the generic cell rate algorithm) in exact integer milliseconds.
//!
//! GCRA keeps one timestamp per key, the theoretical arrival time (TAT): the moment the key's budget would be
//! fully refilled. A request of `cost` units moves the TAT forward by `cost` emission intervals
//! (`period / rate`) and is admitted when the new TAT is at most `burst` emission intervals ahead of now.
//!
//! The emission interval need not be a whole number of milliseconds (7 per second, 1 000 ₽ per minute), so
//! [`Gcra::check`] compares in *ticks*, where one millisecond is `rate` ticks and one unit costs `period_ms`
//! ticks; every comparison is then exact integer arithmetic. Only the stored TAT is rounded, **up** to a whole
//! millisecond, which can only make the limiter stricter, by less than one millisecond per admitted request.
//! A shared store mirrors it atomically either by running [`Gcra::check`] inside a compare-and-set of the TAT,
//! or as a Lua script doing the same steps relative to now (`tat - now`), which stays within Lua's exact 2^53
//! integers while `burst * period_ms` does.
//!
//! Spend limits are the same algorithm with money as the unit: [`RateLimitPolicy::spend`] turns "₽ per period"
//! into a rate in kopecks, and the cost of a request is its price in kopecks ([`spend_cost`]).

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;

use crate::ids::{ProviderId, UserId};
use crate::money::Money;
use crate::time::Timestamp;

/// The longest period a policy may have: a month is the longest window any REI limit is stated in.
pub const PERIOD_MAX: Duration = Duration::from_secs(31 * 24 * 60 * 60);

/// The largest burst. With [`PERIOD_MAX`] it keeps every TAT within `i64` milliseconds of now.
pub const BURST_MAX: u32 = 1_000_000_000;

/// A rate limit: at most `rate` units per `period` sustained, and up to `burst` units at once.
///
/// Invariant: `rate >= 1`, `1 <= burst <= BURST_MAX`, `1 ms <= period <= PERIOD_MAX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RateLimitPolicy {
    rate: u32,
    period_ms: u32,
    burst: u32,
}

/// Why a rate-limit policy is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// A rate of zero would admit nothing, ever.
    #[error("rate must be at least 1 per period")]
    ZeroRate,
    /// The burst is zero or above [`BURST_MAX`].
    #[error("burst must be 1 to {BURST_MAX}, got {burst}")]
    Burst {
        /// The burst asked for.
        burst: u32,
    },
    /// The period is below one millisecond or above [`PERIOD_MAX`].
    #[error("period must be 1 ms to {} ms, got {period_ms} ms", PERIOD_MAX.as_millis())]
    Period {
        /// The period asked for, in milliseconds.
        period_ms: u128,
    },
    /// A spend limit that is not a positive amount of at most `u32::MAX` kopecks.
    #[error("spend limit must be 0.01 to {} roubles, got {amount}", Money::from_kopecks(i64::from(u32::MAX)))]
    Spend {
        /// The amount asked for.
        amount: Money,
    },
}

impl RateLimitPolicy {
    /// `rate` units per `period`, up to `burst` at once.
    ///
    /// # Errors
    /// [`PolicyError`] when the rate is zero or the burst or period is out of bounds.
    pub fn new(rate: u32, period: Duration, burst: u32) -> Result<RateLimitPolicy, PolicyError> {
        if rate == 0 {
            return Err(PolicyError::ZeroRate);
        }
        if burst == 0 || burst > BURST_MAX {
            return Err(PolicyError::Burst { burst });
        }
        let period_ms = period.as_millis();
        if period_ms == 0 || period > PERIOD_MAX {
            return Err(PolicyError::Period { period_ms });
        }
        let period_ms = u32::try_from(period_ms).map_err(|_| PolicyError::Period { period_ms })?;
        Ok(RateLimitPolicy { rate, period_ms, burst })
    }

    /// A spend limit: at most `limit` per `period` sustained and `burst` at once, counted in kopecks, so that
    /// the cost of a request is its price in kopecks ([`spend_cost`]).
    ///
    /// # Errors
    /// [`PolicyError::Spend`] when an amount is not positive or above `u32::MAX` kopecks, and the errors of
    /// [`RateLimitPolicy::new`].
    pub fn spend(limit: Money, period: Duration, burst: Money) -> Result<RateLimitPolicy, PolicyError> {
        let kopecks = |amount: Money| match u32::try_from(amount.kopecks()) {
            Ok(k) if k > 0 => Ok(k),
            _ => Err(PolicyError::Spend { amount }),
        };
        RateLimitPolicy::new(kopecks(limit)?, period, kopecks(burst)?)
    }

    /// Units per period.
    #[must_use]
    pub const fn rate(&self) -> u32 {
        self.rate
    }

    /// The period.
    #[must_use]
    pub fn period(&self) -> Duration {
        Duration::from_millis(u64::from(self.period_ms))
    }

    /// Units admitted at once from a full budget.
    #[must_use]
    pub const fn burst(&self) -> u32 {
        self.burst
    }
}

/// The cost of a request under a spend policy: its price in kopecks; `None` when negative or above `u32::MAX`.
#[must_use]
pub fn spend_cost(price: Money) -> Option<u32> {
    u32::try_from(price.kopecks()).ok()
}

/// What [`Gcra::check`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Admitted: the caller (or the store) MUST save `new_tat` as the key's TAT.
    Allow {
        /// The key's new theoretical arrival time.
        new_tat: Timestamp,
    },
    /// Refused: the same request is admitted at `now + retry_after` if nothing else is admitted first, and not
    /// a millisecond earlier. The TAT is unchanged.
    Deny {
        /// How long to wait.
        retry_after: Duration,
    },
}

/// A request costs more than the burst, so no amount of waiting would admit it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cost {cost} is above the burst {burst}: no wait would admit it")]
pub struct CostOverBurst {
    /// The request's cost.
    pub cost: u32,
    /// The policy's burst.
    pub burst: u32,
}

/// The GCRA state machine: pure, no storage, no clock.
#[derive(Debug, Clone, Copy)]
pub struct Gcra;

impl Gcra {
    /// Decides a request of `cost` units at `now` for a key whose stored TAT is `tat` (`None`: never seen, which
    /// decides the same as any TAT not after `now`). A cost of zero spends nothing; it asks whether the key is
    /// within its burst.
    ///
    /// Guarantee: over any interval of `elapsed` between two admitted requests, the admitted costs sum to at
    /// most `burst + floor(elapsed * rate / period)`.
    ///
    /// # Errors
    /// [`CostOverBurst`] when `cost > burst`.
    pub fn check(
        policy: &RateLimitPolicy,
        tat: Option<Timestamp>,
        now: Timestamp,
        cost: u32,
    ) -> Result<Decision, CostOverBurst> {
        if cost > policy.burst {
            return Err(CostOverBurst { cost, burst: policy.burst });
        }
        // Ticks: one millisecond is `rate` ticks and one unit is `period_ms` ticks. Bounds: |ms| < 2^63 and
        // rate < 2^32, so every value below stays far inside i128.
        let rate = i128::from(policy.rate);
        let unit = i128::from(policy.period_ms);
        let now_ticks = i128::from(now.as_millis()) * rate;
        let tat_ticks = tat.map_or(now_ticks, |t| i128::from(t.as_millis()) * rate).max(now_ticks);
        let new_tat_ticks = tat_ticks + i128::from(cost) * unit;
        let allow_at_ticks = new_tat_ticks - i128::from(policy.burst) * unit;
        if allow_at_ticks <= now_ticks {
            let new_tat = i64::try_from(ceil_div(new_tat_ticks, rate)).unwrap_or(i64::MAX);
            Ok(Decision::Allow { new_tat: Timestamp::from_millis(new_tat) })
        } else {
            let wait_ms = u64::try_from(ceil_div(allow_at_ticks - now_ticks, rate)).unwrap_or(u64::MAX);
            Ok(Decision::Deny { retry_after: Duration::from_millis(wait_ms) })
        }
    }
}

/// `ceil(a / b)` for `b > 0`.
fn ceil_div(a: i128, b: i128) -> i128 {
    let q = a.div_euclid(b);
    if a.rem_euclid(b) == 0 { q } else { q + 1 }
}

/// The public id of an API key (never the secret itself: keys become store keys and log fields).
///
/// Invariant: 1 to [`ApiKeyId::LEN_MAX`] characters of `A-Za-z0-9 _ -`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ApiKeyId(String);

/// Why a text is not an API key id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("api key id must be 1 to {} characters of A-Za-z0-9 _ -", ApiKeyId::LEN_MAX)]
pub struct ApiKeyIdError;

impl ApiKeyId {
    /// The longest accepted length.
    pub const LEN_MAX: usize = 64;

    /// Parses an API key id.
    ///
    /// # Errors
    /// [`ApiKeyIdError`] for empty, overlong or odd text.
    pub fn parse(text: &str) -> Result<ApiKeyId, ApiKeyIdError> {
        let ok = !text.is_empty()
            && text.len() <= Self::LEN_MAX
            && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if ok { Ok(ApiKeyId(text.to_owned())) } else { Err(ApiKeyIdError) }
    }

    /// The text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Whose budget a request spends.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RateLimitKey {
    /// Requests of one user.
    User(UserId),
    /// Requests made with one API key.
    ApiKey(ApiKeyId),
    /// Calls to one provider (its own quota, shared by every user).
    Provider(ProviderId),
    /// Money one user spends, in kopecks (a spend policy).
    UserSpend(UserId),
}

impl fmt::Display for RateLimitKey {
    /// A stable, unambiguous store key such as `user:42` or `user_spend:42`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RateLimitKey::User(u) => write!(f, "user:{u}"),
            RateLimitKey::ApiKey(k) => write!(f, "api_key:{}", k.as_str()),
            RateLimitKey::Provider(p) => write!(f, "provider:{p}"),
            RateLimitKey::UserSpend(u) => write!(f, "user_spend:{u}"),
        }
    }
}

/// Why a [`RateLimiter`] could not decide.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimiterError {
    /// The request can never be admitted under this policy.
    #[error(transparent)]
    CostOverBurst(#[from] CostOverBurst),
    /// The store is unreachable; the caller decides whether to fail open or closed.
    #[error("rate limiter unavailable: {reason}")]
    Unavailable {
        /// What went wrong, for logs.
        reason: String,
    },
}

/// Checks and spends rate-limit budget, one GCRA state (a TAT) per key, shared by every process using the
/// same store.
#[async_trait]
pub trait RateLimiter: Send + Sync {
    /// Decides a request of `cost` units for `key` at `now`.
    ///
    /// Contract:
    /// - The decision MUST be [`Gcra::check`] on the key's stored TAT (absent when never seen), and the store
    ///   MUST save `new_tat` on [`Decision::Allow`] and MUST NOT change anything on [`Decision::Deny`].
    /// - It MUST be atomic per key: concurrent calls MUST behave as if run one after another. Hence over any
    ///   interval it MUST NOT admit more than `burst + elapsed * rate / period` units for one key and policy.
    /// - It MUST use the `now` given, not its own clock, so that decisions are reproducible.
    /// - It MAY forget a key whose TAT is not after now (that decides exactly as an absent key), which keeps
    ///   memory bounded (a Redis key expires at its TAT).
    ///
    /// # Errors
    /// [`LimiterError::CostOverBurst`] when `cost > burst`, without touching the state;
    /// [`LimiterError::Unavailable`] when the store cannot be reached.
    async fn check(
        &self,
        key: &RateLimitKey,
        policy: &RateLimitPolicy,
        cost: u32,
        now: Timestamp,
    ) -> Result<Decision, LimiterError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn policy(rate: u32, period_ms: u64, burst: u32) -> RateLimitPolicy {
        RateLimitPolicy::new(rate, Duration::from_millis(period_ms), burst).expect("valid policy")
    }

    #[test]
    fn policy_bounds_are_enforced() {
        // Proves zero rates, zero or huge bursts and empty or overlong periods are refused.
        let s = Duration::from_secs(1);
        assert_eq!(RateLimitPolicy::new(0, s, 1), Err(PolicyError::ZeroRate));
        assert_eq!(RateLimitPolicy::new(1, s, 0), Err(PolicyError::Burst { burst: 0 }));
        assert!(RateLimitPolicy::new(1, s, BURST_MAX + 1).is_err());
        assert!(RateLimitPolicy::new(1, Duration::from_micros(999), 1).is_err());
        assert!(RateLimitPolicy::new(1, PERIOD_MAX + Duration::from_millis(1), 1).is_err());
        assert!(RateLimitPolicy::new(u32::MAX, PERIOD_MAX, BURST_MAX).is_ok());
    }

    #[test]
    fn burst_then_one_per_interval() {
        // Proves a fresh key admits exactly `burst` requests at once, then one per emission interval.
        let p = policy(10, 1_000, 3);
        let t0 = Timestamp::from_millis(1_000_000);
        let mut tat = None;
        for _ in 0..3 {
            match Gcra::check(&p, tat, t0, 1) {
                Ok(Decision::Allow { new_tat }) => tat = Some(new_tat),
                other => panic!("expected allow, got {other:?}"),
            }
        }
        assert_eq!(tat, Some(t0.plus(Duration::from_millis(300))));
        assert_eq!(Gcra::check(&p, tat, t0, 1), Ok(Decision::Deny { retry_after: Duration::from_millis(100) }));
        assert!(matches!(Gcra::check(&p, tat, t0.plus(Duration::from_millis(100)), 1), Ok(Decision::Allow { .. })));
        assert_eq!(Gcra::check(&p, tat, t0, 4), Err(CostOverBurst { cost: 4, burst: 3 }));
    }

    #[test]
    fn fractional_intervals_are_exact_in_ticks() {
        // Proves 7 per second is not rounded to a 143 ms interval: a full burst of 7 at 0 ms leaves the TAT at
        // exactly 1 000 ms, so a second full burst is admitted at 1 000 ms, not 1 001 ms.
        let p = policy(7, 1_000, 7);
        let Ok(Decision::Allow { new_tat }) = Gcra::check(&p, None, Timestamp::from_millis(0), 7) else {
            panic!("first burst")
        };
        assert_eq!(new_tat, Timestamp::from_millis(1_000));
        assert!(matches!(Gcra::check(&p, Some(new_tat), Timestamp::from_millis(1_000), 7), Ok(Decision::Allow { .. })));
        assert_eq!(
            Gcra::check(&p, Some(new_tat), Timestamp::from_millis(999), 7),
            Ok(Decision::Deny { retry_after: Duration::from_millis(1) })
        );
    }

    #[test]
    fn spend_policy_counts_kopecks() {
        // Proves a spend limit of 1 000 ₽ per minute admits that much money at once and no more.
        let thousand = Money::from_rubles(1_000).expect("fits");
        let p = RateLimitPolicy::spend(thousand, Duration::from_secs(60), thousand).expect("valid");
        let now = Timestamp::from_millis(0);
        let cost = spend_cost(Money::from_rubles(600).expect("fits")).expect("fits");
        let Ok(Decision::Allow { new_tat }) = Gcra::check(&p, None, now, cost) else { panic!("first spend") };
        assert_eq!(
            Gcra::check(&p, Some(new_tat), now, cost),
            Ok(Decision::Deny { retry_after: Duration::from_secs(12) })
        );
        assert!(RateLimitPolicy::spend(Money::ZERO, Duration::from_secs(60), thousand).is_err());
        assert_eq!(spend_cost(Money::from_kopecks(-1)), None);
    }

    #[test]
    fn keys_print_unambiguously() {
        // Proves every key kind has its own prefix, and API key ids refuse secrets-looking junk.
        assert_eq!(RateLimitKey::UserSpend(UserId(42)).to_string(), "user_spend:42");
        let k = ApiKeyId::parse("bot_7").expect("valid");
        assert_eq!(RateLimitKey::ApiKey(k).to_string(), "api_key:bot_7");
        assert!(ApiKeyId::parse("a:b").is_err());
        assert!(ApiKeyId::parse(&"a".repeat(65)).is_err());
    }

    proptest! {
        #[test]
        fn never_admits_more_than_burst_plus_elapsed(
            rate in 1u32..50,
            period_ms in 1u64..5_000,
            burst in 1u32..20,
            steps in prop::collection::vec((0i64..400, 0u32..25), 1..80),
        ) {
            // Proves the GCRA bound over every window between admitted requests, and that each denial's
            // retry_after is exact: admitted at now + retry_after, refused one millisecond earlier.
            let p = policy(rate, period_ms, burst);
            let (mut now, mut tat, mut admitted) = (1_000_000i64, None, Vec::new());
            for (dt, cost) in steps {
                now += dt;
                let at = Timestamp::from_millis(now);
                match Gcra::check(&p, tat, at, cost) {
                    Ok(Decision::Allow { new_tat }) => { tat = Some(new_tat); admitted.push((now, cost)); }
                    Ok(Decision::Deny { retry_after }) => {
                        let retry = at.plus(retry_after);
                        let later = Gcra::check(&p, tat, retry, cost);
                        prop_assert!(matches!(later, Ok(Decision::Allow { .. })), "retry refused: {:?}", later);
                        let early = retry.minus(Duration::from_millis(1));
                        let sooner = Gcra::check(&p, tat, early, cost);
                        prop_assert!(matches!(sooner, Ok(Decision::Deny { .. })), "early admitted: {:?}", sooner);
                    }
                    Err(e) => prop_assert!(cost > burst, "unexpected {e}"),
                }
            }
            for (i, &(start, _)) in admitted.iter().enumerate() {
                let mut sum = 0u64;
                for &(t, c) in &admitted[i..] {
                    sum += u64::from(c);
                    let elapsed = u64::try_from(t - start).expect("time moves forward");
                    prop_assert!(sum <= u64::from(burst) + elapsed * u64::from(rate) / period_ms);
                }
            }
        }
    }
}
