//! The rules every [`ReportStore`](super::ReportStore) shares, so that stores only aggregate: which ranges and
//! buckets are valid, where each bucket starts, how nested SLO windows add up, and how per-bucket latency
//! counts become a [`LatencyHistogram`].

use std::time::Duration;

use super::model::{JobCounts, MoneyFlow, Point};
use super::port::{ReportError, SERIES_POINTS_MAX};
use crate::jobs::JobState;
use crate::ledger::OpKind;
use crate::money::Money;
use crate::slo::{Counts, LATENCY_BOUNDS_MS, LatencyHistogram, Window, WindowCounts};
use crate::time::Timestamp;

/// The ledger kinds a [`MoneyFlow`] sums; the others (holds, raises, releases, expiries) move money only between
/// a user's own accounts.
pub const FLOW_KINDS: [OpKind; 5] =
    [OpKind::TopUp, OpKind::Capture, OpKind::Refund, OpKind::RefundToCard, OpKind::Adjust];

/// How many latency buckets a store counts: one per [`LATENCY_BOUNDS_MS`] bound, and one above them all.
pub const LATENCY_BUCKETS: usize = LATENCY_BOUNDS_MS.len() + 1;

fn invalid(why: impl Into<String>) -> ReportError {
    ReportError::Invalid(why.into())
}

fn corrupt(why: impl Into<String>) -> ReportError {
    ReportError::Unavailable { reason: why.into() }
}

/// Checks a range `[since, until)`: it may be empty, never reversed, and it spans at most `i64::MAX`
/// milliseconds (so that a store's `time - since` cannot overflow).
///
/// # Errors
/// [`ReportError::Invalid`].
pub fn check_range(since: Timestamp, until: Timestamp) -> Result<(), ReportError> {
    if since > until {
        return Err(invalid(format!("the range ends ({until:?}) before it starts ({since:?})")));
    }
    if until.as_millis().checked_sub(since.as_millis()).is_none() {
        return Err(invalid("the range is longer than the store can count in milliseconds"));
    }
    Ok(())
}

/// The buckets of one series request: valid by construction.
///
/// Invariant: `bucket_ms >= 1`, `len <= SERIES_POINTS_MAX`, and the buckets tile `[since, until)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeriesPlan {
    since: Timestamp,
    until: Timestamp,
    bucket_ms: i64,
    len: usize,
}

impl SeriesPlan {
    /// The buckets of `bucket` from `since` to `until` (the last one cut at `until`).
    ///
    /// # Errors
    /// [`ReportError::Invalid`] for a bad range ([`check_range`]), a bucket that is not a positive whole number
    /// of milliseconds, or more than [`SERIES_POINTS_MAX`] buckets.
    pub fn new(since: Timestamp, until: Timestamp, bucket: Duration) -> Result<SeriesPlan, ReportError> {
        check_range(since, until)?;
        if bucket.is_zero() || !bucket.subsec_nanos().is_multiple_of(1_000_000) {
            return Err(invalid(format!("a bucket must be a positive whole number of milliseconds, not {bucket:?}")));
        }
        let bucket_ms = i64::try_from(bucket.as_millis()).unwrap_or(i64::MAX);
        let span = i128::from(until.as_millis()) - i128::from(since.as_millis());
        let len = span.div_euclid(i128::from(bucket_ms)) + i128::from(span.rem_euclid(i128::from(bucket_ms)) != 0);
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if len > SERIES_POINTS_MAX {
            return Err(invalid(format!("{len} buckets asked for; at most {SERIES_POINTS_MAX}")));
        }
        Ok(SeriesPlan { since, until, bucket_ms, len })
    }

    /// Where the first bucket starts.
    #[must_use]
    pub fn since(&self) -> Timestamp {
        self.since
    }

    /// Where the last bucket ends (exclusive).
    #[must_use]
    pub fn until(&self) -> Timestamp {
        self.until
    }

    /// The length of a bucket in milliseconds: a store's bucket index of a time `t` is
    /// `(t - since) / bucket_ms`, in integers.
    #[must_use]
    pub fn bucket_ms(&self) -> i64 {
        self.bucket_ms
    }

    /// How many buckets (and points).
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    /// `true` for an empty range.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The start of bucket `i`.
    fn start(&self, i: usize) -> Timestamp {
        // i < len <= 1000 and since + i * bucket_ms < until, so the sum fits.
        let at = i128::from(self.since.as_millis()) + i128::try_from(i).unwrap_or(0) * i128::from(self.bucket_ms);
        Timestamp::from_millis(i64::try_from(at).unwrap_or(i64::MAX))
    }

    /// One point per bucket: the value a store summed for each bucket index, zero for a bucket it did not name.
    ///
    /// # Errors
    /// [`ReportError::Unavailable`] when the store named a bucket outside the plan or one bucket twice (its
    /// answer cannot be trusted).
    pub fn points(&self, values: impl IntoIterator<Item = (i64, i64)>) -> Result<Vec<Point>, ReportError> {
        let mut out: Vec<Point> = (0..self.len).map(|i| Point { at: self.start(i), value: 0 }).collect();
        let mut seen = vec![false; self.len];
        for (index, value) in values {
            let i = usize::try_from(index)
                .ok()
                .filter(|i| *i < self.len)
                .ok_or_else(|| corrupt(format!("the store answered bucket {index} of {}", self.len)))?;
            if std::mem::replace(&mut seen[i], true) {
                return Err(corrupt(format!("the store answered bucket {index} twice")));
            }
            out[i].value = value;
        }
        Ok(out)
    }
}

/// Where each [`Window`] ending at `now` starts, in the order of [`Window::ALL`] (shortest first, so each
/// window holds the ones before it).
#[must_use]
pub fn window_starts(now: Timestamp) -> [Timestamp; Window::ALL.len()] {
    Window::ALL.map(|w| now.minus(w.duration()))
}

/// Folds counts per window index into [`WindowCounts`]: a store counts each event once, under the index of the
/// shortest window that holds it (0 for [`Window::M5`]), and every longer window holds it too.
///
/// # Errors
/// [`ReportError::Unavailable`] for an index outside [`Window::ALL`] or more good events than events.
pub fn window_counts(rows: impl IntoIterator<Item = (i64, u64, u64)>) -> Result<WindowCounts, ReportError> {
    let mut good = [0u64; Window::ALL.len()];
    let mut total = [0u64; Window::ALL.len()];
    for (index, g, t) in rows {
        let i = usize::try_from(index)
            .ok()
            .filter(|i| *i < Window::ALL.len())
            .ok_or_else(|| corrupt(format!("the store answered window {index}")))?;
        good[i] = good[i].saturating_add(g);
        total[i] = total[i].saturating_add(t);
    }
    let mut counts = WindowCounts::new();
    let (mut g, mut t) = (0u64, 0u64);
    for (i, window) in Window::ALL.into_iter().enumerate() {
        g = g.saturating_add(good[i]);
        t = t.saturating_add(total[i]);
        counts.set(window, Counts::new(g, t).map_err(|e| corrupt(e.to_string()))?);
    }
    Ok(counts)
}

/// The histogram of latencies a store counted per bucket: bucket `i < 16` holds latencies at most
/// `LATENCY_BOUNDS_MS[i]` (and above the bound before), bucket 16 those above the largest bound.
///
/// # Errors
/// [`ReportError::Unavailable`] for a bucket outside `0..`[`LATENCY_BUCKETS`] or a negative count.
pub fn latency_histogram(buckets: impl IntoIterator<Item = (i64, i64)>) -> Result<LatencyHistogram, ReportError> {
    let above = LATENCY_BOUNDS_MS[LATENCY_BOUNDS_MS.len() - 1].saturating_add(1);
    let mut h = LatencyHistogram::new();
    for (index, count) in buckets {
        let count = u64::try_from(count).map_err(|_| corrupt(format!("latency bucket {index} counts {count}")))?;
        let latency_ms = usize::try_from(index)
            .ok()
            .and_then(|i| LATENCY_BOUNDS_MS.get(i).copied().or((i == LATENCY_BOUNDS_MS.len()).then_some(above)))
            .ok_or_else(|| corrupt(format!("the store answered latency bucket {index}")))?;
        h.record_many(latency_ms, count);
    }
    Ok(h)
}

/// A count a store read, which must not be negative.
///
/// # Errors
/// [`ReportError::Unavailable`] for a negative count.
pub fn count(what: &str, n: i64) -> Result<u64, ReportError> {
    u64::try_from(n).map_err(|_| corrupt(format!("{what} counts {n}")))
}

impl JobCounts {
    /// Adds `n` jobs in `state` (quoted and confirmed jobs wait to run, as queued ones do).
    pub fn add(&mut self, state: JobState, n: u64) {
        let field = match state {
            JobState::Quoted | JobState::Confirmed | JobState::Queued => &mut self.queued,
            JobState::Running => &mut self.running,
            JobState::Unknown => &mut self.unknown,
            JobState::Succeeded => &mut self.succeeded,
            JobState::Failed => &mut self.failed,
            JobState::Cancelled => &mut self.cancelled,
        };
        *field = field.saturating_add(n);
    }
}

impl MoneyFlow {
    /// Adds `n` ledger transactions of `kind` that sum to `sum`; kinds outside [`FLOW_KINDS`] change nothing.
    ///
    /// # Errors
    /// [`ReportError::Unavailable`] when a figure overflows [`Money`] (only a corrupt ledger gets there).
    pub fn add_transactions(&mut self, kind: OpKind, sum: Money, n: u64) -> Result<(), ReportError> {
        let field = match kind {
            OpKind::TopUp => {
                self.top_up_count = self.top_up_count.saturating_add(n);
                &mut self.top_ups
            }
            OpKind::Capture => &mut self.revenue,
            OpKind::Refund => &mut self.refunds,
            OpKind::RefundToCard => &mut self.card_refunds,
            OpKind::Adjust => &mut self.grants,
            OpKind::Hold | OpKind::Raise | OpKind::Release | OpKind::Expire => return Ok(()),
        };
        *field = field.checked_add(sum).ok_or_else(|| corrupt(format!("{} overflows", kind.as_str())))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    #[test]
    fn series_plans_tile_the_range_and_refuse_what_they_cannot_answer() {
        // Proves bucket counts (exact and cut last buckets), the 1,000-bucket limit, empty and reversed ranges,
        // and buckets of zero or of fractions of a millisecond.
        let ms = Duration::from_millis;
        let plan = SeriesPlan::new(at(1_000), at(1_250), ms(100)).expect("valid");
        assert_eq!((plan.len(), plan.bucket_ms()), (3, 100));
        let points = plan.points([(2, 7)]).expect("points");
        let starts: Vec<i64> = points.iter().map(|p| p.at.as_millis()).collect();
        assert_eq!(starts, [1_000, 1_100, 1_200]);
        assert_eq!(points.iter().map(|p| p.value).collect::<Vec<_>>(), [0, 0, 7]);
        assert_eq!(SeriesPlan::new(at(0), at(100_000), ms(100)).map(|p| p.len()), Ok(1_000));
        assert!(matches!(SeriesPlan::new(at(0), at(100_001), ms(100)), Err(ReportError::Invalid(_))));
        assert_eq!(SeriesPlan::new(at(5), at(5), ms(1)).map(|p| p.is_empty()), Ok(true));
        assert!(matches!(SeriesPlan::new(at(6), at(5), ms(1)), Err(ReportError::Invalid(_))));
        assert!(matches!(SeriesPlan::new(at(0), at(5), Duration::ZERO), Err(ReportError::Invalid(_))));
        assert!(matches!(SeriesPlan::new(at(0), at(5), Duration::from_micros(1_500)), Err(ReportError::Invalid(_))));
        let huge = SeriesPlan::new(at(0), at(10), Duration::from_secs(u64::MAX)).expect("one bucket");
        assert_eq!(huge.len(), 1);
        assert!(matches!(check_range(at(i64::MIN), at(i64::MAX)), Err(ReportError::Invalid(_))));
        assert!(matches!(plan.points([(3, 1)]), Err(ReportError::Unavailable { .. })));
        assert!(matches!(plan.points([(1, 1), (1, 2)]), Err(ReportError::Unavailable { .. })));
        assert!(matches!(plan.points([(-1, 1)]), Err(ReportError::Unavailable { .. })));
    }

    #[test]
    fn nested_windows_add_up_from_the_shortest() {
        // Proves each window holds the events of the shorter ones, and a bad answer is refused.
        let w = window_counts([(0, 1, 1), (2, 1, 3), (5, 0, 1)]).expect("counts");
        let got: Vec<(u64, u64)> = Window::ALL.iter().map(|x| (w.get(*x).good(), w.get(*x).total())).collect();
        assert_eq!(got, [(1, 1), (1, 1), (2, 4), (2, 4), (2, 4), (2, 5)]);
        assert!(window_counts([(6, 0, 0)]).is_err());
        assert!(window_counts([(0, 2, 1)]).is_err());
        let starts = window_starts(at(10_000_000_000));
        assert_eq!(starts[0], at(10_000_000_000 - 300_000));
        assert_eq!(starts[5], at(10_000_000_000 - 3 * 86_400_000));
    }

    #[test]
    fn latency_buckets_become_the_same_histogram_as_recording() {
        // Proves per-bucket counts give exactly the histogram that recording each latency gives.
        let latencies = [0u64, 500, 501, 60_000, 180_000, 1_200_000, 1_200_001, 9_999_999];
        let mut recorded = LatencyHistogram::new();
        let mut counted = [0i64; LATENCY_BUCKETS];
        for ms in latencies {
            recorded.record(ms);
            counted[LATENCY_BOUNDS_MS.partition_point(|b| *b < ms)] += 1;
        }
        let rows = counted.iter().enumerate().map(|(i, n)| (i64::try_from(i).expect("small"), *n));
        assert_eq!(latency_histogram(rows), Ok(recorded));
        assert!(latency_histogram([(17, 1)]).is_err());
        assert!(latency_histogram([(0, -1)]).is_err());
    }

    #[test]
    fn kinds_land_in_their_figures() {
        // Proves each ledger kind adds to its own figure, the others to none, and overflow is an error.
        let mut flow = MoneyFlow::default();
        let m = Money::from_kopecks;
        for (kind, sum, n) in [
            (OpKind::TopUp, m(1_000), 2),
            (OpKind::Capture, m(300), 3),
            (OpKind::Refund, m(20), 1),
            (OpKind::RefundToCard, m(50), 1),
            (OpKind::Adjust, m(-5), 2),
            (OpKind::Hold, m(999), 9),
            (OpKind::Release, m(999), 9),
        ] {
            flow.add_transactions(kind, sum, n).expect("fits");
        }
        let want = MoneyFlow {
            top_ups: m(1_000),
            top_up_count: 2,
            revenue: m(300),
            refunds: m(20),
            card_refunds: m(50),
            grants: m(-5),
            provider_cost: Money::ZERO,
        };
        assert_eq!(flow, want);
        assert!(flow.add_transactions(OpKind::TopUp, m(i64::MAX), 1).is_err());
        let mut jobs = JobCounts::default();
        for state in JobState::ALL {
            jobs.add(state, 1);
        }
        assert_eq!((jobs.queued, jobs.total()), (3, 8));
        assert_eq!(count("jobs", -1), Err(ReportError::Unavailable { reason: "jobs counts -1".into() }));
    }
}
