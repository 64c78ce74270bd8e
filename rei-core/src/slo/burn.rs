//! Multi-window, multi-burn-rate alerts (Google SRE workbook, chapter "Alerting on SLOs").
//!
//! A rule fires when the burn rate is at or above its threshold over both a long window (the budget is
//! really being spent) and a short window of a twelfth of it (it is still being spent now, so the alert
//! resets soon after the problem stops). The default rules are the workbook's, for a 30-day SLO period:
//!
//! | severity | long | short | burn | budget spent when it fires |
//! |---|---|---|---|---|
//! | page   | 1 h | 5 min  | 14.4 | 2 % |
//! | page   | 6 h | 30 min | 6    | 5 % |
//! | ticket | 3 d | 6 h    | 1    | 10 % |
//!
//! The ticket rule uses 3 days rather than 24 hours: at burn 1 a day spends only 3.3 % of the budget, too
//! little to act on, while 3 days (10 %) is the workbook's ticket row and still leaves 27 days to fix it.

use std::time::Duration;

use rust_decimal::Decimal;

use super::objective::{Counts, Slo, SloError, burn_rate, burns_at_least};
use crate::money::Ratio;

/// A window that counts are kept over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Window {
    /// The last 5 minutes.
    M5,
    /// The last 30 minutes.
    M30,
    /// The last hour.
    H1,
    /// The last 6 hours.
    H6,
    /// The last 24 hours.
    D1,
    /// The last 3 days.
    D3,
}

impl Window {
    /// Every window, shortest first.
    pub const ALL: [Window; 6] = [Window::M5, Window::M30, Window::H1, Window::H6, Window::D1, Window::D3];

    /// The window's length.
    #[must_use]
    pub const fn duration(self) -> Duration {
        const MINUTE: u64 = 60;
        Duration::from_secs(match self {
            Window::M5 => 5 * MINUTE,
            Window::M30 => 30 * MINUTE,
            Window::H1 => 60 * MINUTE,
            Window::H6 => 6 * 60 * MINUTE,
            Window::D1 => 24 * 60 * MINUTE,
            Window::D3 => 3 * 24 * 60 * MINUTE,
        })
    }

    const fn index(self) -> usize {
        self as usize
    }
}

/// The counts of one SLO over every [`Window`]; a window never set has no events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WindowCounts([Counts; Window::ALL.len()]);

impl WindowCounts {
    /// No events in any window.
    #[must_use]
    pub fn new() -> WindowCounts {
        WindowCounts::default()
    }

    /// Sets the counts of one window.
    pub fn set(&mut self, window: Window, counts: Counts) {
        self.0[window.index()] = counts;
    }

    /// `self` with one window set, for building in one expression.
    #[must_use]
    pub fn with(mut self, window: Window, counts: Counts) -> WindowCounts {
        self.set(window, counts);
        self
    }

    /// The counts of one window.
    #[must_use]
    pub fn get(&self, window: Window) -> Counts {
        self.0[window.index()]
    }
}

/// How urgent an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// Someone should look within a working day.
    Ticket,
    /// Wake someone up.
    Page,
}

/// One alerting rule: fire when both windows burn at `threshold` or faster.
///
/// Invariant: `short < long`, `0 < threshold <= 1000` with at most two decimals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BurnRule {
    severity: Severity,
    long: Window,
    short: Window,
    threshold: Ratio,
}

impl BurnRule {
    /// A rule.
    ///
    /// # Errors
    /// [`SloError::Windows`] when `short` is not shorter than `long`; [`SloError::Threshold`] when the
    /// threshold is out of bounds.
    pub fn new(severity: Severity, long: Window, short: Window, threshold: Ratio) -> Result<BurnRule, SloError> {
        if short >= long {
            return Err(SloError::Windows);
        }
        let t = threshold.value().normalize();
        if t <= Decimal::ZERO || t > Decimal::from(1_000) || t.scale() > 2 {
            return Err(SloError::Threshold(threshold));
        }
        Ok(BurnRule { severity, long, short, threshold: Ratio::new(t) })
    }

    /// The workbook's three rules; see the module docs for why the ticket rule uses 3 days.
    #[must_use]
    pub fn defaults() -> [BurnRule; 3] {
        let rule = |severity, long, short, threshold| BurnRule { severity, long, short, threshold };
        [
            rule(Severity::Page, Window::H1, Window::M5, Ratio::new(Decimal::new(144, 1))),
            rule(Severity::Page, Window::H6, Window::M30, Ratio::new(Decimal::from(6))),
            rule(Severity::Ticket, Window::D3, Window::H6, Ratio::ONE),
        ]
    }

    /// How urgent a firing is.
    #[must_use]
    pub fn severity(&self) -> Severity {
        self.severity
    }

    /// The window that shows the budget is being spent.
    #[must_use]
    pub fn long(&self) -> Window {
        self.long
    }

    /// The window that shows it is still being spent now.
    #[must_use]
    pub fn short(&self) -> Window {
        self.short
    }

    /// The burn rate both windows must reach.
    #[must_use]
    pub fn threshold(&self) -> Ratio {
        self.threshold
    }
}

/// A firing rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    /// The SLO's name.
    pub slo: String,
    /// The rule that fired.
    pub rule: BurnRule,
    /// The burn rate over the long window.
    pub long_burn: Ratio,
    /// The burn rate over the short window.
    pub short_burn: Ratio,
}

/// The alerts of `slo` under the default rules ([`BurnRule::defaults`]).
#[must_use]
pub fn evaluate(slo: &Slo, windows: &WindowCounts) -> Vec<Alert> {
    evaluate_rules(slo, windows, &BurnRule::defaults())
}

/// The alerts of `slo` under `rules`: one per rule whose long and short windows both burn at or above its
/// threshold, compared exactly. Windows without events never fire.
#[must_use]
pub fn evaluate_rules(slo: &Slo, windows: &WindowCounts, rules: &[BurnRule]) -> Vec<Alert> {
    rules
        .iter()
        .filter(|r| {
            burns_at_least(slo, windows.get(r.long), r.threshold)
                && burns_at_least(slo, windows.get(r.short), r.threshold)
        })
        .map(|r| Alert {
            slo: slo.name().to_owned(),
            rule: *r,
            long_burn: burn_rate(slo, windows.get(r.long)),
            short_burn: burn_rate(slo, windows.get(r.short)),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn counts(good: u64, total: u64) -> Counts {
        Counts::new(good, total).expect("good <= total")
    }

    #[test]
    fn fast_burn_pages_only_when_both_windows_agree() {
        // Proves the 1 h / 5 min page fires at 14.4 in both windows, and not when the short one has recovered.
        let slo = Slo::payment_success();
        let burning = WindowCounts::new().with(Window::H1, counts(9_856, 10_000)).with(Window::M5, counts(856, 1_000));
        let alerts = evaluate(&slo, &burning);
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].rule, BurnRule::defaults()[0]);
        assert_eq!(alerts[0].long_burn, Ratio::new(Decimal::new(144, 1)));
        let recovered = burning.with(Window::M5, counts(1_000, 1_000));
        assert!(evaluate(&slo, &recovered).is_empty());
    }

    #[test]
    fn slow_burn_opens_a_ticket() {
        // Proves a steady burn of 1 over 3 days and 6 hours opens a ticket and pages nobody.
        let slo = Slo::job_success();
        let w = WindowCounts::new()
            .with(Window::D3, counts(99_500, 100_000))
            .with(Window::H6, counts(9_950, 10_000))
            .with(Window::H1, counts(1_990, 2_000));
        let alerts = evaluate(&slo, &w);
        assert_eq!(alerts.iter().map(|a| a.rule.severity()).collect::<Vec<_>>(), [Severity::Ticket]);
    }

    #[test]
    fn no_traffic_never_alerts() {
        // Proves empty windows burn nothing, and rules with bad shapes are refused.
        assert!(evaluate(&Slo::job_latency(), &WindowCounts::new()).is_empty());
        assert_eq!(BurnRule::new(Severity::Page, Window::M5, Window::H1, Ratio::ONE), Err(SloError::Windows));
        let t = Ratio::parse("0.001").expect("literal");
        assert_eq!(BurnRule::new(Severity::Page, Window::H1, Window::M5, t), Err(SloError::Threshold(t)));
    }

    fn window_counts() -> impl Strategy<Value = WindowCounts> {
        prop::collection::vec((0u64..2_000, 0u64..2_000), Window::ALL.len()).prop_map(|pairs| {
            let mut w = WindowCounts::new();
            for (window, (good, extra)) in Window::ALL.into_iter().zip(pairs) {
                w.set(window, counts(good, good + extra / 40));
            }
            w
        })
    }

    proptest! {
        #[test]
        fn alerts_need_both_windows_and_some_bad(w in window_counts()) {
            // Proves an alert fires exactly when both of its rule's windows reach the threshold, and never
            // when there are no bad events.
            for slo in Slo::defaults() {
                let alerts = evaluate(&slo, &w);
                for rule in BurnRule::defaults() {
                    let both = burn_rate(&slo, w.get(rule.long())) >= rule.threshold()
                        && burn_rate(&slo, w.get(rule.short())) >= rule.threshold();
                    prop_assert_eq!(alerts.iter().any(|a| a.rule == rule), both);
                }
                let mut clean = WindowCounts::new();
                for window in Window::ALL {
                    clean.set(window, counts(w.get(window).total(), w.get(window).total()));
                }
                prop_assert!(evaluate(&slo, &clean).is_empty());
            }
        }
    }
}
