//! [`RedisRateLimiter`]: GCRA with one TAT per key in Redis, shared by every process.
//!
//! The common case is one Lua script (`lua/gcra.lua`) doing the steps of [`Gcra::check`] relative to now,
//! where every value stays below 2^52 and Lua's doubles are exact. A policy whose `burst * period_ms` is too
//! large for that (a monthly spend limit, say), or a stored TAT too far ahead of now, is decided by
//! [`Gcra::check`] itself in Rust on the stored TAT and saved with a compare-and-set script, retried a bounded
//! number of times when another process moved the TAT in between.
//!
//! Keys expire a little after their TAT (measured from the caller's `now`, on the server's clock): a key whose
//! TAT has passed decides exactly as an absent key, so expiry only bounds memory.

use std::sync::LazyLock;
use std::time::Duration;

use ::redis::Script;
use ::redis::aio::ConnectionManager;
use async_trait::async_trait;
use rei_core::guards::{CostOverBurst, Decision, Gcra, LimiterError, RateLimitKey, RateLimitPolicy, RateLimiter};
use rei_core::time::Timestamp;

use super::{CallError, RedisSetupError, prefix};

/// How long a key outlives its TAT, so that callers whose clocks run a little behind the server's still find
/// it. Keeping a key longer never changes a decision.
const EXPIRY_SLACK_MS: i64 = 1_000;

/// The largest `burst * period_ms` the script handles (2^50), so that with a TAT lead of at most 2^51 ticks
/// every sum in the script stays below 2^52.
const SCRIPT_PRODUCT_MAX: u64 = 1 << 50;

/// The largest TAT lead the script handles, in ticks (2^51).
const SCRIPT_LEAD_TICKS_MAX: u64 = 1 << 51;

/// The largest magnitude of `now` the script handles (2^51 ms, about 71 000 years).
const SCRIPT_NOW_ABS_MAX_MS: i64 = 1 << 51;

/// Compare-and-set rounds before a contended key is reported unavailable.
const CAS_ATTEMPTS_MAX: usize = 16;

static GCRA: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/gcra.lua")));
static CAS: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/cas.lua")));

/// A [`RateLimiter`] in Redis: atomic per key, exact to [`Gcra::check`], shared by every process using the
/// same namespace.
#[derive(Clone)]
pub struct RedisRateLimiter {
    conn: ConnectionManager,
    prefix: String,
}

impl std::fmt::Debug for RedisRateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisRateLimiter").field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

/// What the script decided.
enum ScriptDecision {
    Decided(Decision),
    /// The stored TAT is too far ahead for the script's exact range.
    TooFarAhead,
}

impl RedisRateLimiter {
    /// A limiter under `namespace` on `conn`.
    ///
    /// # Errors
    /// [`RedisSetupError::Namespace`] for a bad namespace.
    pub fn new(conn: ConnectionManager, namespace: &str) -> Result<RedisRateLimiter, RedisSetupError> {
        Ok(RedisRateLimiter { conn, prefix: prefix("rl", namespace)? })
    }

    /// Connects to `url` with [`super::connect`] (waiting at most `timeout`) and builds the limiter.
    ///
    /// # Errors
    /// The errors of [`super::connect`] and [`RedisRateLimiter::new`].
    pub async fn connect(url: &str, namespace: &str, timeout: Duration) -> Result<RedisRateLimiter, RedisSetupError> {
        RedisRateLimiter::new(super::connect(url, timeout).await?, namespace)
    }

    async fn by_script(
        &self,
        key: &str,
        policy: &RateLimitPolicy,
        cost: u32,
        now: Timestamp,
    ) -> Result<ScriptDecision, CallError> {
        let period_ms = period_ms(policy);
        let mut call = GCRA.key(key);
        call.arg(now.as_millis())
            .arg(policy.rate())
            .arg(period_ms)
            .arg(policy.burst())
            .arg(cost)
            .arg(EXPIRY_SLACK_MS)
            .arg(SCRIPT_LEAD_TICKS_MAX / u64::from(policy.rate()));
        let mut conn = self.conn.clone();
        let (verdict, value): (i64, i64) = call.invoke_async(&mut conn).await?;
        match verdict {
            1 => Ok(ScriptDecision::Decided(Decision::Allow { new_tat: Timestamp::from_millis(value) })),
            0 => {
                let wait = u64::try_from(value).map_err(|_| CallError::Corrupt(format!("retry after {value}")))?;
                Ok(ScriptDecision::Decided(Decision::Deny { retry_after: Duration::from_millis(wait) }))
            }
            2 => Ok(ScriptDecision::TooFarAhead),
            other => Err(CallError::Corrupt(format!("gcra verdict {other}"))),
        }
    }

    /// [`Gcra::check`] on the stored TAT, saved only if the TAT is still the one read.
    async fn by_compare_and_set(
        &self,
        key: &str,
        policy: &RateLimitPolicy,
        cost: u32,
        now: Timestamp,
    ) -> Result<Decision, LimiterError> {
        for _ in 0..CAS_ATTEMPTS_MAX {
            let mut conn = self.conn.clone();
            let stored: Option<String> =
                ::redis::cmd("GET").arg(key).query_async(&mut conn).await.map_err(|e| unavailable(e.into()))?;
            let tat = match &stored {
                Some(text) => Some(Timestamp::from_millis(
                    text.parse().map_err(|_| unavailable(CallError::Corrupt(format!("TAT {text:?}"))))?,
                )),
                None => None,
            };
            let decision = Gcra::check(policy, tat, now, cost)?;
            let Decision::Allow { new_tat } = decision else {
                // A denial changes nothing, so the read alone is the atomic step.
                return Ok(decision);
            };
            let ttl_ms = if new_tat > now {
                new_tat.as_millis().saturating_sub(now.as_millis()).saturating_add(EXPIRY_SLACK_MS)
            } else {
                0
            };
            let mut call = CAS.key(key);
            call.arg(stored.unwrap_or_default()).arg(new_tat.as_millis()).arg(ttl_ms);
            let swapped: i64 = call.invoke_async(&mut conn).await.map_err(|e| unavailable(e.into()))?;
            if swapped == 1 {
                return Ok(decision);
            }
        }
        Err(LimiterError::Unavailable { reason: format!("key {key} kept changing for {CAS_ATTEMPTS_MAX} rounds") })
    }
}

fn period_ms(policy: &RateLimitPolicy) -> u64 {
    u64::try_from(policy.period().as_millis()).unwrap_or(u64::MAX)
}

fn unavailable(e: CallError) -> LimiterError {
    LimiterError::Unavailable { reason: e.to_string() }
}

/// `true` when the script's arithmetic is exact for this policy and time.
fn script_fits(policy: &RateLimitPolicy, now: Timestamp) -> bool {
    let product = u64::from(policy.burst()).saturating_mul(period_ms(policy));
    product <= SCRIPT_PRODUCT_MAX && now.as_millis().unsigned_abs() <= SCRIPT_NOW_ABS_MAX_MS.unsigned_abs()
}

#[async_trait]
impl RateLimiter for RedisRateLimiter {
    async fn check(
        &self,
        key: &RateLimitKey,
        policy: &RateLimitPolicy,
        cost: u32,
        now: Timestamp,
    ) -> Result<Decision, LimiterError> {
        if cost > policy.burst() {
            return Err(CostOverBurst { cost, burst: policy.burst() }.into());
        }
        let key = format!("{}{key}", self.prefix);
        if script_fits(policy, now) {
            match self.by_script(&key, policy, cost, now).await.map_err(unavailable)? {
                ScriptDecision::Decided(decision) => return Ok(decision),
                ScriptDecision::TooFarAhead => {}
            }
        }
        self.by_compare_and_set(&key, policy, cost, now).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rei_core::guards::PERIOD_MAX;

    #[test]
    fn large_policies_leave_the_script() {
        // Proves the script is used only where its float arithmetic is exact.
        let small = RateLimitPolicy::new(7, Duration::from_secs(1), 3).expect("valid policy");
        let huge = RateLimitPolicy::new(1, PERIOD_MAX, 1_000_000_000).expect("valid policy");
        let now = Timestamp::from_millis(1_800_000_000_000);
        assert!(script_fits(&small, now));
        assert!(!script_fits(&huge, now));
        assert!(!script_fits(&small, Timestamp::from_millis(i64::MAX)));
    }
}
