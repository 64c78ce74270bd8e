//! SLO definitions, good/total counts, error budgets and burn rates, in exact integer and decimal arithmetic.

use rust_decimal::Decimal;

use crate::money::Ratio;

/// Most decimal places an objective may have (99.9999 % is 0.999999). The bound keeps every burn-rate
/// comparison inside `i128` for any `u64` counts.
pub const OBJECTIVE_SCALE_MAX: u32 = 6;

/// The latency target of [`Slo::job_latency`]: a job should finish within 180 s.
pub const JOB_LATENCY_TARGET_MS: u64 = 180_000;

/// A service level objective: the fraction of events that must be good.
///
/// Invariant: a name of 1 to [`Slo::NAME_LEN_MAX`] characters of `a-z0-9_`, and `0 < objective < 1` with at
/// most [`OBJECTIVE_SCALE_MAX`] decimal places (an objective of 1 leaves no error budget to burn).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Slo {
    name: String,
    objective: Ratio,
}

/// Why an SLO or a burn-rate rule is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SloError {
    /// The name is empty, too long, or not `a-z0-9_` (it becomes a metric label).
    #[error("slo name must be 1 to {} characters of a-z 0-9 _", Slo::NAME_LEN_MAX)]
    Name,
    /// The objective is not strictly between 0 and 1, or too precise.
    #[error("objective {0} must be strictly between 0 and 1 with at most {OBJECTIVE_SCALE_MAX} decimals")]
    Objective(Ratio),
    /// A burn-rate threshold that is not positive, above 1000, or has more than two decimals.
    #[error("burn threshold {0} must be above 0 and at most 1000, with at most 2 decimals")]
    Threshold(Ratio),
    /// A rule whose short window is not shorter than its long window.
    #[error("a rule's short window must be shorter than its long window")]
    Windows,
}

impl Slo {
    /// The longest accepted name.
    pub const NAME_LEN_MAX: usize = 64;

    /// An SLO named `name` with `objective`.
    ///
    /// # Errors
    /// [`SloError::Name`] or [`SloError::Objective`] when the invariant does not hold.
    pub fn new(name: &str, objective: Ratio) -> Result<Slo, SloError> {
        let name_ok = !name.is_empty()
            && name.len() <= Self::NAME_LEN_MAX
            && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !name_ok {
            return Err(SloError::Name);
        }
        let v = objective.value().normalize();
        if v <= Decimal::ZERO || v >= Decimal::ONE || v.scale() > OBJECTIVE_SCALE_MAX {
            return Err(SloError::Objective(objective));
        }
        Ok(Slo { name: name.to_owned(), objective: Ratio::new(v) })
    }

    /// Jobs that succeed: 99.5 %.
    #[must_use]
    pub fn job_success() -> Slo {
        Slo { name: "job_success".to_owned(), objective: Ratio::new(Decimal::new(995, 3)) }
    }

    /// Payments that succeed: 99.9 %.
    #[must_use]
    pub fn payment_success() -> Slo {
        Slo { name: "payment_success".to_owned(), objective: Ratio::new(Decimal::new(999, 3)) }
    }

    /// Job latency p95 <= 180 s, stated as "95 % of jobs finish within [`JOB_LATENCY_TARGET_MS`]", which is
    /// the same promise in a form whose good/total counts add up across windows and workers.
    #[must_use]
    pub fn job_latency() -> Slo {
        Slo { name: "job_latency".to_owned(), objective: Ratio::new(Decimal::new(95, 2)) }
    }

    /// The three SLOs REI ships with.
    #[must_use]
    pub fn defaults() -> [Slo; 3] {
        [Slo::job_success(), Slo::payment_success(), Slo::job_latency()]
    }

    /// The name, used as a metric label.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The fraction of events that must be good.
    #[must_use]
    pub fn objective(&self) -> Ratio {
        self.objective
    }

    /// The error budget as a fraction of events: `1 - objective`, exactly `num / den`.
    pub(super) fn budget_fraction(&self) -> (i128, i128) {
        let v = self.objective.value();
        let den = 10i128.pow(v.scale());
        (den - v.mantissa(), den)
    }
}

/// Good and total events in one window.
///
/// Invariant: `good <= total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Counts {
    good: u64,
    total: u64,
}

/// More good events than events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("good count {good} is above total count {total}")]
pub struct GoodOverTotal {
    /// The good count given.
    pub good: u64,
    /// The total count given.
    pub total: u64,
}

impl Counts {
    /// No events.
    pub const ZERO: Counts = Counts { good: 0, total: 0 };

    /// `good` of `total` events.
    ///
    /// # Errors
    /// [`GoodOverTotal`] when `good > total`.
    pub fn new(good: u64, total: u64) -> Result<Counts, GoodOverTotal> {
        if good > total { Err(GoodOverTotal { good, total }) } else { Ok(Counts { good, total }) }
    }

    /// Good events.
    #[must_use]
    pub const fn good(self) -> u64 {
        self.good
    }

    /// All events.
    #[must_use]
    pub const fn total(self) -> u64 {
        self.total
    }

    /// Bad events: `total - good`.
    #[must_use]
    pub const fn bad(self) -> u64 {
        self.total - self.good
    }
}

/// How much of an SLO's error budget one window has used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorBudget {
    /// Bad events the objective allows: `total * (1 - objective)`, exact.
    pub allowed_bad: Decimal,
    /// Bad events that happened.
    pub consumed_bad: u64,
    /// `1 - consumed / allowed`: 1 when nothing is spent, 0 when exactly spent, negative when overspent.
    /// With no events at all nothing is spent, so it is 1.
    pub remaining: Ratio,
}

impl ErrorBudget {
    /// The budget of `slo` over one window's `counts`.
    #[must_use]
    pub fn of(slo: &Slo, counts: Counts) -> ErrorBudget {
        let (num, den) = slo.budget_fraction();
        let total = i128::from(counts.total);
        let bad = i128::from(counts.bad());
        let allowed = total * num;
        let remaining = if allowed == 0 { Ratio::ONE } else { ratio(allowed - bad * den, allowed) };
        // `allowed / den` with `den = 10^scale` is exact as a decimal of that scale (mantissa < 2^64 * 10^6).
        let scale = slo.objective.value().scale();
        let allowed_bad = Decimal::try_from_i128_with_scale(allowed, scale).unwrap_or(Decimal::MAX);
        ErrorBudget { allowed_bad, consumed_bad: counts.bad(), remaining }
    }
}

/// The burn rate of `slo` over `counts`: `(bad / total) / (1 - objective)`, so 1 spends the budget exactly
/// over the SLO period and 14.4 spends a 30-day budget in 50 hours. No events burn nothing (0).
///
/// The value is rounded to 28 significant digits by the decimal division; alerting does not use it but
/// compares exactly, by integer cross-multiplication.
#[must_use]
pub fn burn_rate(slo: &Slo, counts: Counts) -> Ratio {
    let (num, den) = slo.budget_fraction();
    if counts.total == 0 {
        return Ratio::ZERO;
    }
    ratio(i128::from(counts.bad()) * den, i128::from(counts.total) * num)
}

/// Whether the burn rate of `slo` over `counts` is at least `threshold`, decided exactly:
/// `bad * den * 10^t >= threshold_mantissa * total * num`, all in `i128`. No events never burn.
pub(super) fn burns_at_least(slo: &Slo, counts: Counts, threshold: Ratio) -> bool {
    if counts.total == 0 {
        return false;
    }
    // Bounds: counts < 2^64, den <= 10^6, 10^t <= 10^2 and the threshold mantissa <= 10^5 (checked where
    // rules are made), so both sides stay below 2^64 * 10^11 < 2^127.
    let (num, den) = slo.budget_fraction();
    let t = threshold.value();
    let lhs = i128::from(counts.bad()) * den * 10i128.pow(t.scale());
    let rhs = t.mantissa() * i128::from(counts.total) * num;
    lhs >= rhs
}

/// `num / den` for `den > 0`. Under this module's bounds every value fits a [`Decimal`]; should one not, it
/// saturates by sign, which keeps comparisons in the right order rather than failing a health report.
fn ratio(num: i128, den: i128) -> Ratio {
    let value = Decimal::try_from_i128_with_scale(num, 0)
        .ok()
        .zip(Decimal::try_from_i128_with_scale(den, 0).ok())
        .and_then(|(n, d)| n.checked_div(d));
    Ratio::new(value.unwrap_or(if num < 0 { Decimal::MIN } else { Decimal::MAX }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn counts(good: u64, total: u64) -> Counts {
        Counts::new(good, total).expect("good <= total")
    }

    #[test]
    fn slo_bounds_are_enforced() {
        // Proves objectives must be strictly inside (0, 1) and not absurdly precise, and names label-safe.
        let ok = Ratio::parse("0.999999").expect("literal");
        assert!(Slo::new("checkout", ok).is_ok());
        for bad in ["0", "1", "1.5", "-0.1", "0.9999999"] {
            let r = Ratio::parse(bad).expect("literal");
            assert_eq!(Slo::new("x", r), Err(SloError::Objective(r)), "{bad}");
        }
        assert_eq!(Slo::new("Job Success", ok), Err(SloError::Name));
        assert_eq!(Counts::new(3, 2), Err(GoodOverTotal { good: 3, total: 2 }));
    }

    #[test]
    fn budget_and_burn_of_the_defaults() {
        // Proves the arithmetic on the job SLO: 10 000 jobs allow 50 failures; 25 failures burn at 0.5.
        let slo = Slo::job_success();
        let b = ErrorBudget::of(&slo, counts(9_975, 10_000));
        assert_eq!(b.allowed_bad, Decimal::from(50));
        assert_eq!(b.consumed_bad, 25);
        assert_eq!(b.remaining, Ratio::new(Decimal::new(5, 1)));
        assert_eq!(burn_rate(&slo, counts(9_975, 10_000)), Ratio::new(Decimal::new(5, 1)));
        assert_eq!(burn_rate(&Slo::payment_success(), counts(0, 0)), Ratio::ZERO);
        assert_eq!(ErrorBudget::of(&slo, Counts::ZERO).remaining, Ratio::ONE);
        // 144 bad of 10 000 at 99.9 % is exactly 14.4.
        let pay = Slo::payment_success();
        assert!(burns_at_least(&pay, counts(9_856, 10_000), Ratio::new(Decimal::new(144, 1))));
        assert!(!burns_at_least(&pay, counts(9_857, 10_000), Ratio::new(Decimal::new(144, 1))));
    }

    proptest! {
        #[test]
        fn burn_grows_and_budget_shrinks_with_bad(total in 1u64..1_000_000_000, a in any::<u64>(), b in any::<u64>()) {
            // Proves burn rate is monotone in the bad count and the remaining budget is at most 1 and falls as
            // bad grows (at a fixed total), for every default SLO.
            let (lo, hi) = if a % (total + 1) <= b % (total + 1) {
                (a % (total + 1), b % (total + 1))
            } else {
                (b % (total + 1), a % (total + 1))
            };
            for slo in Slo::defaults() {
                let (few, many) = (counts(total - lo, total), counts(total - hi, total));
                prop_assert!(burn_rate(&slo, few) <= burn_rate(&slo, many));
                let (rf, rm) = (ErrorBudget::of(&slo, few).remaining, ErrorBudget::of(&slo, many).remaining);
                prop_assert!(rf <= Ratio::ONE && rm <= rf);
                if lo < hi {
                    prop_assert!(rm < rf);
                }
            }
        }
    }
}
