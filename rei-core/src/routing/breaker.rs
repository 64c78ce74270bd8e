//! A circuit breaker per provider: closed (calls flow), open until a time (calls refused), half-open (a few
//! probe calls decide whether to close again).

use std::time::Duration;

use rust_decimal::Decimal;

use super::stats::{WINDOW_LEN_MAX, Window};
use crate::money::Ratio;
use crate::time::Timestamp;

/// Longest time a breaker may stay open ([`BreakerConfig::open_for`]): one day.
pub const OPEN_FOR_MAX: Duration = Duration::from_secs(24 * 60 * 60);
/// Most half-open probes in flight and most successes needed to close.
pub const PROBES_MAX: u32 = 100;

/// When a closed breaker opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trip {
    /// After `failures_min` failures in a row (a success resets the count).
    ConsecutiveFailures {
        /// Failures in a row that open the breaker, 1..=[`PROBES_MAX`].
        failures_min: u32,
    },
    /// When a failure brings the share of failures over the last `window_len` outcomes (at least `calls_min`
    /// of them) to `rate_min`. Only a failure can open the breaker: a success never makes things worse.
    FailureRate {
        /// The failure share that opens the breaker, in (0, 1].
        rate_min: Ratio,
        /// Outcomes considered, 1..=[`WINDOW_LEN_MAX`].
        window_len: usize,
        /// Outcomes needed before the rate counts, 1..=`window_len`, so one early failure cannot trip it.
        calls_min: usize,
    },
}

/// A breaker's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// When to open.
    pub trip: Trip,
    /// How long to stay open before allowing probes, 1 ms..=[`OPEN_FOR_MAX`].
    pub open_for: Duration,
    /// Most probe calls in flight while half-open, 1..=[`PROBES_MAX`].
    pub probes_max: u32,
    /// Probe successes (without a failure between) that close the breaker, 1..=[`PROBES_MAX`].
    pub successes_to_close: u32,
}

/// Why a [`BreakerConfig`] is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BreakerConfigError {
    /// `failures_min` outside 1..=[`PROBES_MAX`].
    #[error("consecutive failures to open must be 1 to {PROBES_MAX}, got {failures_min}")]
    FailuresMin {
        /// The rejected count.
        failures_min: u32,
    },
    /// A failure rate outside (0, 1], or a window or minimum outside their bounds.
    #[error("failure rate {rate_min} over {window_len} calls (at least {calls_min}) is out of range")]
    FailureRate {
        /// The rejected rate.
        rate_min: Ratio,
        /// The rejected window.
        window_len: usize,
        /// The rejected minimum.
        calls_min: usize,
    },
    /// `open_for` is zero or longer than [`OPEN_FOR_MAX`].
    #[error("open duration {open_for:?} must be above zero and at most {OPEN_FOR_MAX:?}")]
    OpenFor {
        /// The rejected duration.
        open_for: Duration,
    },
    /// `probes_max` or `successes_to_close` outside 1..=[`PROBES_MAX`].
    #[error("probe limit {probes_max} and successes to close {successes_to_close} must be 1 to {PROBES_MAX}")]
    Probes {
        /// The rejected probe limit.
        probes_max: u32,
        /// The rejected success count.
        successes_to_close: u32,
    },
}

impl BreakerConfig {
    fn validate(&self) -> Result<(), BreakerConfigError> {
        let in_range = |n: u32| (1..=PROBES_MAX).contains(&n);
        match self.trip {
            Trip::ConsecutiveFailures { failures_min } if !in_range(failures_min) => {
                return Err(BreakerConfigError::FailuresMin { failures_min });
            }
            Trip::FailureRate { rate_min, window_len, calls_min }
                if rate_min.value() <= Decimal::ZERO
                    || rate_min.value() > Decimal::ONE
                    || !(1..=WINDOW_LEN_MAX).contains(&window_len)
                    || !(1..=window_len).contains(&calls_min) =>
            {
                return Err(BreakerConfigError::FailureRate { rate_min, window_len, calls_min });
            }
            _ => {}
        }
        if self.open_for < Duration::from_millis(1) || self.open_for > OPEN_FOR_MAX {
            return Err(BreakerConfigError::OpenFor { open_for: self.open_for });
        }
        if !in_range(self.probes_max) || !in_range(self.successes_to_close) {
            return Err(BreakerConfigError::Probes {
                probes_max: self.probes_max,
                successes_to_close: self.successes_to_close,
            });
        }
        Ok(())
    }
}

/// Where a breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls flow; outcomes are counted against the trip rule.
    Closed,
    /// Calls are refused until `until` (on the caller's clock), then the breaker turns half-open.
    Open {
        /// The first instant at which probes are allowed.
        until: Timestamp,
    },
    /// Up to `probes_max` probes may be in flight; enough successes close, any failure re-opens.
    HalfOpen {
        /// Probes admitted and not yet reported.
        probes_in_flight: u32,
        /// Probe successes since turning half-open.
        successes: u32,
    },
}

/// The answer of [`Breaker::allow`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    /// Closed: call as usual.
    Call,
    /// Half-open: this call is a probe and MUST be reported with `on_success` or `on_failure`, or the probe
    /// slot stays taken.
    Probe,
    /// Refused: open, or half-open with every probe slot taken.
    Refused,
}

impl Permit {
    /// `true` for [`Permit::Call`] and [`Permit::Probe`].
    #[must_use]
    pub fn is_allowed(self) -> bool {
        !matches!(self, Permit::Refused)
    }
}

/// A circuit breaker. Invariants: an open breaker admits nothing before `until`; a half-open one never has more
/// than `probes_max` probes in flight, closes only after `successes_to_close` probe successes and re-opens on
/// any failure; a closed one opens only when its [`Trip`] rule is met.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Breaker {
    config: BreakerConfig,
    state: BreakerState,
    consecutive_failures: u32,
    window: Window,
}

impl Breaker {
    /// A closed breaker.
    ///
    /// # Errors
    /// [`BreakerConfigError`] when a setting is outside its documented range.
    pub fn new(config: BreakerConfig) -> Result<Breaker, BreakerConfigError> {
        config.validate()?;
        let window_len = match config.trip {
            Trip::FailureRate { window_len, .. } => window_len,
            Trip::ConsecutiveFailures { .. } => 1,
        };
        Ok(Breaker { config, state: BreakerState::Closed, consecutive_failures: 0, window: Window::new(window_len) })
    }

    /// The state as of the last call, without applying the clock (see [`Breaker::state_at`]).
    #[must_use]
    pub fn state(&self) -> BreakerState {
        self.state
    }

    /// The state at `at`: an open breaker whose time is up reads as half-open with nothing in flight.
    #[must_use]
    pub fn state_at(&self, at: Timestamp) -> BreakerState {
        match self.state {
            BreakerState::Open { until } if at >= until => BreakerState::HalfOpen { probes_in_flight: 0, successes: 0 },
            s => s,
        }
    }

    /// Whether [`Breaker::allow`] would admit a call at `at`, without taking a probe slot. Used for ranking.
    #[must_use]
    pub fn is_available(&self, at: Timestamp) -> bool {
        match self.state_at(at) {
            BreakerState::Closed => true,
            BreakerState::Open { .. } => false,
            BreakerState::HalfOpen { probes_in_flight, .. } => probes_in_flight < self.config.probes_max,
        }
    }

    /// Asks to make a call at `at`; a granted probe takes a slot until its outcome is reported.
    pub fn allow(&mut self, at: Timestamp) -> Permit {
        self.state = self.state_at(at);
        match &mut self.state {
            BreakerState::Closed => Permit::Call,
            BreakerState::Open { .. } => Permit::Refused,
            BreakerState::HalfOpen { probes_in_flight, .. } if *probes_in_flight < self.config.probes_max => {
                *probes_in_flight += 1;
                Permit::Probe
            }
            BreakerState::HalfOpen { .. } => Permit::Refused,
        }
    }

    /// Reports a successful call.
    ///
    /// While open, and while half-open with no probe in flight, a success is a straggler from a call admitted
    /// before the breaker opened; it says nothing about recovery and is ignored.
    pub fn on_success(&mut self, at: Timestamp) {
        self.state = self.state_at(at);
        match &mut self.state {
            BreakerState::Closed => {
                self.consecutive_failures = 0;
                self.window.push(true);
            }
            BreakerState::Open { .. } | BreakerState::HalfOpen { probes_in_flight: 0, .. } => {}
            BreakerState::HalfOpen { probes_in_flight, successes } => {
                *probes_in_flight -= 1;
                *successes += 1;
                if *successes >= self.config.successes_to_close {
                    self.reset(BreakerState::Closed);
                }
            }
        }
    }

    /// Reports a failed call. Closed: counts towards the trip rule. Half-open: any failure re-opens (a straggler
    /// failure too: the provider has just failed again). Open: already refusing, nothing changes.
    pub fn on_failure(&mut self, at: Timestamp) {
        self.state = self.state_at(at);
        match self.state {
            BreakerState::Closed => {
                self.consecutive_failures = self.consecutive_failures.saturating_add(1);
                self.window.push(false);
                if self.tripped() {
                    self.reset(BreakerState::Open { until: at.plus(self.config.open_for) });
                }
            }
            BreakerState::HalfOpen { .. } => self.reset(BreakerState::Open { until: at.plus(self.config.open_for) }),
            BreakerState::Open { .. } => {}
        }
    }

    fn tripped(&self) -> bool {
        match self.config.trip {
            Trip::ConsecutiveFailures { failures_min } => self.consecutive_failures >= failures_min,
            Trip::FailureRate { rate_min, calls_min, .. } => {
                let calls = self.window.len();
                // failures / calls >= rate, multiplied out so no division (and no rounding) happens.
                calls >= calls_min && Decimal::from(self.window.failures()) >= rate_min.value() * Decimal::from(calls)
            }
        }
    }

    /// Enters `state` with fresh counters: each state judges the provider on what happened in it alone.
    fn reset(&mut self, state: BreakerState) {
        self.state = state;
        self.consecutive_failures = 0;
        self.window.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The plainest reading of the rules: full outcome history since entering Closed, recomputed each time.
    #[derive(Debug)]
    struct Model {
        cfg: BreakerConfig,
        state: BreakerState,
        since_closed: Vec<bool>,
    }

    impl Model {
        fn tick(&mut self, now: Timestamp) {
            if let BreakerState::Open { until } = self.state
                && now >= until
            {
                self.state = BreakerState::HalfOpen { probes_in_flight: 0, successes: 0 };
            }
        }

        fn trips(cfg: &BreakerConfig, since_closed: &[bool]) -> bool {
            match cfg.trip {
                Trip::ConsecutiveFailures { failures_min } => {
                    let run = since_closed.iter().rev().take_while(|s| !**s).count();
                    run >= usize::try_from(failures_min).expect("small")
                }
                Trip::FailureRate { rate_min, window_len, calls_min } => {
                    let recent: Vec<_> = since_closed.iter().rev().take(window_len).collect();
                    let failures = recent.iter().filter(|s| !***s).count();
                    recent.len() >= calls_min
                        && Decimal::from(failures) / Decimal::from(recent.len()) >= rate_min.value()
                }
            }
        }

        fn step(&mut self, op: Op, now: Timestamp) -> Option<Permit> {
            self.tick(now);
            let reopen = BreakerState::Open { until: now.plus(self.cfg.open_for) };
            match (op, self.state) {
                (Op::Allow, BreakerState::Closed) => return Some(Permit::Call),
                (Op::Allow, BreakerState::HalfOpen { probes_in_flight: p, successes }) if p < self.cfg.probes_max => {
                    self.state = BreakerState::HalfOpen { probes_in_flight: p + 1, successes };
                    return Some(Permit::Probe);
                }
                (Op::Allow, _) => return Some(Permit::Refused),
                (Op::Success | Op::Failure, BreakerState::Closed) => {
                    self.since_closed.push(op == Op::Success);
                    if op == Op::Failure && Model::trips(&self.cfg, &self.since_closed) {
                        self.state = reopen;
                    }
                }
                (Op::Success, BreakerState::HalfOpen { probes_in_flight: p, successes }) if p > 0 => {
                    self.state = if successes + 1 >= self.cfg.successes_to_close {
                        BreakerState::Closed
                    } else {
                        BreakerState::HalfOpen { probes_in_flight: p - 1, successes: successes + 1 }
                    };
                }
                (Op::Failure, BreakerState::HalfOpen { .. }) => self.state = reopen,
                _ => {}
            }
            if self.state != BreakerState::Closed {
                self.since_closed.clear();
            }
            None
        }
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Op {
        Advance(u64),
        Allow,
        Success,
        Failure,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![(0u64..40).prop_map(Op::Advance), Just(Op::Allow), Just(Op::Success), Just(Op::Failure)]
    }

    fn config() -> impl Strategy<Value = BreakerConfig> {
        let consecutive = (1u32..5).prop_map(|failures_min| Trip::ConsecutiveFailures { failures_min });
        let rate = (10i64..=100, 1usize..8).prop_flat_map(|(p, w)| (Just(p), Just(w), 1..=w)).prop_map(
            |(p, window_len, calls_min)| Trip::FailureRate { rate_min: Ratio::percent(p), window_len, calls_min },
        );
        (prop_oneof![consecutive, rate], 1u64..50, 1u32..4, 1u32..4).prop_map(|(trip, ms, probes, successes)| {
            BreakerConfig {
                trip,
                open_for: Duration::from_millis(ms),
                probes_max: probes,
                successes_to_close: successes,
            }
        })
    }

    proptest! {
        #[test]
        fn breaker_follows_the_reference_model(cfg in config(), ops in prop::collection::vec(op(), 1..200)) {
            // Proves the breaker matches the plain model step by step and keeps every documented invariant.
            let mut breaker = Breaker::new(cfg).expect("generated config is valid");
            let mut model = Model { cfg, state: BreakerState::Closed, since_closed: Vec::new() };
            let mut now = Timestamp::from_millis(1_000);
            let mut open_until = None;
            for op in ops {
                if let Op::Advance(ms) = op {
                    now = now.plus(Duration::from_millis(ms));
                    continue;
                }
                let before = breaker.state_at(now);
                let mut closed_history = model.since_closed.clone();
                closed_history.push(op == Op::Success);
                let permit = match op {
                    Op::Allow => Some(breaker.allow(now)),
                    Op::Success => { breaker.on_success(now); None }
                    _ => { breaker.on_failure(now); None }
                };
                prop_assert_eq!(permit, model.step(op, now));
                let after = breaker.state();
                prop_assert_eq!(after, model.state);
                if permit.is_some_and(Permit::is_allowed) {
                    prop_assert!(open_until.is_none_or(|until| now >= until), "admitted before {:?}", open_until);
                }
                match after {
                    BreakerState::Open { until } => open_until = Some(until),
                    BreakerState::HalfOpen { probes_in_flight, .. } => {
                        prop_assert!(probes_in_flight <= cfg.probes_max);
                    }
                    BreakerState::Closed => {}
                }
                match (before, after) {
                    (BreakerState::HalfOpen { successes, .. }, BreakerState::Closed) => {
                        prop_assert_eq!(op, Op::Success);
                        prop_assert_eq!(successes + 1, cfg.successes_to_close);
                    }
                    (BreakerState::HalfOpen { .. }, _) if op == Op::Failure => {
                        prop_assert_eq!(after, BreakerState::Open { until: now.plus(cfg.open_for) });
                    }
                    (BreakerState::Closed, BreakerState::Open { .. }) => {
                        prop_assert_eq!(op, Op::Failure);
                        prop_assert!(Model::trips(&cfg, &closed_history), "opened below the threshold");
                    }
                    (BreakerState::Closed, BreakerState::HalfOpen { .. }) => {
                        prop_assert!(false, "closed never turns half-open directly");
                    }
                    _ => {}
                }
            }
        }
    }

    #[test]
    fn consecutive_failures_open_then_probes_close() {
        // Proves the whole cycle on a fixed clock: trip at the threshold, refuse until `until`, probe, close.
        let cfg = BreakerConfig {
            trip: Trip::ConsecutiveFailures { failures_min: 2 },
            open_for: Duration::from_millis(100),
            probes_max: 1,
            successes_to_close: 2,
        };
        let mut b = Breaker::new(cfg).expect("valid");
        let t = Timestamp::from_millis;
        b.on_failure(t(0));
        assert_eq!(b.state(), BreakerState::Closed);
        b.on_failure(t(1));
        assert_eq!(b.state(), BreakerState::Open { until: t(101) });
        assert_eq!(b.allow(t(100)), Permit::Refused);
        assert_eq!(b.allow(t(101)), Permit::Probe);
        assert_eq!(b.allow(t(101)), Permit::Refused, "one probe at a time");
        b.on_success(t(102));
        assert_eq!(b.allow(t(102)), Permit::Probe);
        b.on_success(t(103));
        assert_eq!(b.state(), BreakerState::Closed);
        let bad = BreakerConfig { probes_max: 0, ..cfg };
        assert!(matches!(Breaker::new(bad), Err(BreakerConfigError::Probes { probes_max: 0, .. })));
    }
}
