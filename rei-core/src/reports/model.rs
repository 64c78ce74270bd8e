//! The figures a [`ReportStore`](super::ReportStore) answers with.

use crate::ids::ProviderId;
use crate::ledger::SystemAccount;
use crate::money::Money;
use crate::slo::{Alert, LatencyBound, LatencyHistogram, Slo, WindowCounts, evaluate};
use crate::time::Timestamp;

/// Jobs by the state they are in now.
///
/// Invariant: every job counted is in exactly one field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct JobCounts {
    /// Waiting to run: queued (and the rare job stored before it was queued, quoted or confirmed).
    pub queued: u64,
    /// Leased by a worker.
    pub running: u64,
    /// Done; their holds were captured.
    pub succeeded: u64,
    /// Given up; their holds were released.
    pub failed: u64,
    /// Withdrawn before they ran.
    pub cancelled: u64,
    /// A provider call whose outcome is not known yet, waiting for reconciliation.
    pub unknown: u64,
}

impl JobCounts {
    /// Every job counted.
    #[must_use]
    pub fn total(&self) -> u64 {
        [self.queued, self.running, self.succeeded, self.failed, self.cancelled, self.unknown]
            .into_iter()
            .fold(0, u64::saturating_add)
    }
}

/// The money that moved over a range of time, by kind. Amounts are exact kopecks.
///
/// Every ledger figure sums the ledger's transactions of one kind whose time is in the range; holds, raises,
/// releases and expiries move money only between a user's own accounts and are not in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MoneyFlow {
    /// Money credited by top-ups (every gateway: YooKassa, Telegram Stars).
    pub top_ups: Money,
    /// How many top-ups were credited.
    pub top_up_count: u64,
    /// Money earned by captures: what the users were charged, before refunds.
    pub revenue: Money,
    /// Captured money given back to the wallets (refunds of captured jobs).
    pub refunds: Money,
    /// Wallet money paid back to the cards.
    pub card_refunds: Money,
    /// Adjustments, net: what grants and admins credited minus what admins debited (negative when the debits are
    /// larger).
    pub grants: Money,
    /// What the providers charged: the cost of every attempt started in the range, whatever its outcome (a failed
    /// attempt or a result that came too late costs what the provider billed for it; most cost nothing).
    pub provider_cost: Money,
}

impl MoneyFlow {
    /// What was earned after refunds and the providers' costs: `revenue - refunds - provider_cost`. Card refunds
    /// are not in it (they pay back money that was never earned), nor are grants. Saturates at the bounds of
    /// [`Money`], which no real ledger reaches.
    #[must_use]
    pub fn margin(&self) -> Money {
        let margin = i128::from(self.revenue.kopecks())
            - i128::from(self.refunds.kopecks())
            - i128::from(self.provider_cost.kopecks());
        Money::from_kopecks(i64::try_from(margin).unwrap_or(if margin < 0 { i64::MIN } else { i64::MAX }))
    }
}

/// One provider's attempts over a range of time.
///
/// Invariant: `successes + failures <= attempts`; `latency` counts exactly the successes that ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderUsage {
    /// The provider.
    pub provider: ProviderId,
    /// Attempts started: every outcome, including those still running, refused by the provider for the user's
    /// request (rejected) and results that came after their job had ended.
    pub attempts: u64,
    /// Attempts that produced their job's result.
    pub successes: u64,
    /// Attempts that failed through the provider's fault (rejected requests are not failures).
    pub failures: u64,
    /// What the provider charged for these attempts, whatever their outcome.
    pub cost: Money,
    /// What the users were charged for the results these attempts produced: `charged - cost` is the
    /// provider's margin.
    pub charged: Money,
    /// The 95th percentile of the successes' latencies (sent to result), as the upper bound of the
    /// [`LATENCY_BOUNDS_MS`](crate::slo::LATENCY_BOUNDS_MS) bucket it falls in: exact integers, no
    /// interpolation. `None` with no success; `u64::MAX` when it falls above the largest bound (see
    /// [`ProviderUsage::latency_p95`]).
    pub latency_p95_ms: Option<u64>,
    /// The successes' latencies, for other quantiles and for merging.
    pub latency: LatencyHistogram,
}

impl ProviderUsage {
    /// The bucket of [`ProviderUsage::latency_p95_ms`], telling a latency at most a bound from one above every
    /// bound. `None` with no success.
    #[must_use]
    pub fn latency_p95(&self) -> Option<LatencyBound> {
        self.latency.quantile(crate::money::Ratio::percent(95)).ok().flatten()
    }
}

/// The 95th percentile of `latency` as [`ProviderUsage::latency_p95_ms`] states it.
#[must_use]
pub fn latency_p95_ms(latency: &LatencyHistogram) -> Option<u64> {
    match latency.quantile(crate::money::Ratio::percent(95)).ok().flatten()? {
        LatencyBound::AtMost(bound) => Some(bound),
        LatencyBound::Above(_) => Some(u64::MAX),
    }
}

/// The ledger as it stands.
///
/// Invariant (in a sound ledger): `available + held + the system balances = 0`, the total
/// [`LedgerStore::verify`](crate::ledger::LedgerStore::verify) reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerTotals {
    /// The sum of every user's available balance: what REI owes its users and they can spend.
    pub available: Money,
    /// The sum of every user's held balance: what running jobs have reserved.
    pub held: Money,
    /// Holds active now.
    pub active_holds: u64,
    /// Every system account with its balance (signed as posted: `payments` is negative by what came in), in the
    /// order of [`SystemAccount::ALL`].
    pub system: Vec<(SystemAccount, Money)>,
    /// Users whose available or held balance is above zero.
    pub users_with_money: u64,
}

impl LedgerTotals {
    /// The balance of one system account (zero when absent).
    #[must_use]
    pub fn system_balance(&self, account: SystemAccount) -> Money {
        self.system.iter().find(|(a, _)| *a == account).map_or(Money::ZERO, |(_, m)| *m)
    }
}

/// One point of a time series: the bucket that starts at `at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Point {
    /// The bucket's start.
    pub at: Timestamp,
    /// The bucket's value: kopecks for money series, a count for job series.
    pub value: i64,
}

/// What a time series counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Series {
    /// Money earned by captures, in kopecks, by the capture's time.
    Revenue,
    /// Money credited by top-ups, in kopecks, by the top-up's time.
    TopUps,
    /// Jobs that succeeded, by the time they finished.
    JobsSucceeded,
    /// Jobs that failed, by the time they finished.
    JobsFailed,
    /// Members who joined, by the time they first started the bot.
    NewUsers,
}

impl Series {
    /// Every series.
    pub const ALL: [Series; 5] =
        [Series::Revenue, Series::TopUps, Series::JobsSucceeded, Series::JobsFailed, Series::NewUsers];

    /// A stable lowercase name, for logs and URLs.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Series::Revenue => "revenue",
            Series::TopUps => "top_ups",
            Series::JobsSucceeded => "jobs_succeeded",
            Series::JobsFailed => "jobs_failed",
            Series::NewUsers => "new_users",
        }
    }

    /// Reads [`Series::as_str`] back.
    #[must_use]
    pub fn parse(text: &str) -> Option<Series> {
        Series::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// The good and total counts of the three shipped SLOs ([`Slo::defaults`]) over every
/// [`Window`](crate::slo::Window), ready for [`evaluate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SloWindows {
    /// [`Slo::job_success`]: of the jobs that finished succeeded or failed, those that succeeded.
    pub job_success: WindowCounts,
    /// [`Slo::payment_success`]: of the payments that reached a final status, those that succeeded.
    pub payment_success: WindowCounts,
    /// [`Slo::job_latency`]: of the jobs that succeeded, those that took at most
    /// [`JOB_LATENCY_TARGET_MS`](crate::slo::JOB_LATENCY_TARGET_MS) from creation to success.
    pub job_latency: WindowCounts,
}

impl SloWindows {
    /// Each shipped SLO with its counts.
    #[must_use]
    pub fn by_slo(&self) -> [(Slo, WindowCounts); 3] {
        [
            (Slo::job_success(), self.job_success),
            (Slo::payment_success(), self.payment_success),
            (Slo::job_latency(), self.job_latency),
        ]
    }

    /// The alerts of the shipped SLOs under the default burn-rate rules.
    #[must_use]
    pub fn alerts(&self) -> Vec<Alert> {
        self.by_slo().iter().flat_map(|(slo, counts)| evaluate(slo, counts)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slo::{Counts, LATENCY_BOUNDS_MS, Window};

    #[test]
    fn margin_is_revenue_less_refunds_and_costs_and_never_wraps() {
        // Proves the margin formula, a negative margin, and saturation instead of overflow.
        let flow = MoneyFlow {
            revenue: Money::from_kopecks(10_000),
            refunds: Money::from_kopecks(1_000),
            provider_cost: Money::from_kopecks(9_500),
            card_refunds: Money::from_kopecks(7),
            grants: Money::from_kopecks(3),
            ..MoneyFlow::default()
        };
        assert_eq!(flow.margin(), Money::from_kopecks(-500));
        let extreme = MoneyFlow {
            revenue: Money::from_kopecks(i64::MIN),
            provider_cost: Money::from_kopecks(i64::MAX),
            ..MoneyFlow::default()
        };
        assert_eq!(extreme.margin(), Money::from_kopecks(i64::MIN));
        assert_eq!(MoneyFlow::default().margin(), Money::ZERO);
    }

    #[test]
    fn p95_is_a_bucket_bound_or_max_above_every_bound() {
        // Proves p95 reads the histogram's bucket bound, None when empty, and u64::MAX above the largest bound.
        let mut h = LatencyHistogram::new();
        assert_eq!(latency_p95_ms(&h), None);
        h.record_many(4_000, 19);
        h.record_many(5_000_000, 1);
        assert_eq!(latency_p95_ms(&h), Some(5_000));
        h.record_many(5_000_000, 1);
        assert_eq!(latency_p95_ms(&h), Some(u64::MAX));
        let usage = ProviderUsage {
            provider: ProviderId::parse("kling").expect("literal"),
            attempts: 21,
            successes: 21,
            failures: 0,
            cost: Money::ZERO,
            charged: Money::ZERO,
            latency_p95_ms: latency_p95_ms(&h),
            latency: h,
        };
        assert_eq!(usage.latency_p95(), Some(LatencyBound::Above(LATENCY_BOUNDS_MS[LATENCY_BOUNDS_MS.len() - 1])));
    }

    #[test]
    fn names_totals_and_alerts() {
        // Proves series names round-trip, job counts add up, and the SLO windows feed the default alerts.
        for s in Series::ALL {
            assert_eq!(Series::parse(s.as_str()), Some(s));
        }
        assert_eq!(Series::parse("new_users"), Some(Series::NewUsers));
        assert_eq!(Series::parse("signups"), None);
        let jobs = JobCounts { queued: 1, running: 2, succeeded: 3, failed: 4, cancelled: 5, unknown: 6 };
        assert_eq!(jobs.total(), 21);
        assert!(SloWindows::default().alerts().is_empty());
        let burning = |good, total| {
            let c = Counts::new(good, total).expect("good <= total");
            WindowCounts::new().with(Window::H1, c).with(Window::M5, c)
        };
        let windows = SloWindows { payment_success: burning(0, 10), ..SloWindows::default() };
        let alerts = windows.alerts();
        assert!(!alerts.is_empty() && alerts.iter().all(|a| a.slo == "payment_success"), "{alerts:?}");
    }
}
