//! [`Reconciler`]: looks at pending payments whose notice never came, so that no payment is lost.
//!
//! Each run takes a bounded batch of due pending records and settles each through [`TopUps::settle`], the same
//! keyed path as the webhook: a payment the reconciler and a notice settle at once is credited once. A payment
//! still pending is asked about again later, each wait longer than the last (exponential backoff up to a cap); one
//! still pending past `max_age` gets one last look and is marked expired. A failure (gateway or store) is
//! counted, and the record stays pending and is retried when next due: nothing is dropped.

use std::sync::Arc;
use std::time::Duration;

use super::service::{NoticeOutcome, TopUps};
use super::store::{BATCH_LIMIT_MAX, FinalStatus, PaymentRecord, PaymentStore};
use crate::time::{Clock, Timestamp};

/// How the [`Reconciler`] paces its looks.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ReconcilerConfig {
    /// The first wait, and the unit of the backoff: after its `n`-th look finds a payment still pending, the
    /// next look is `first_check_after × backoff_base^n` later, at most `backoff_cap`. Default: 1 minute (keep
    /// [`TopUpsConfig::first_check_after`](super::TopUpsConfig::first_check_after), the wait before the first
    /// look, equal to it).
    pub first_check_after: Duration,
    /// The factor each wait grows by, at least 1. Default: 2.
    pub backoff_base: u32,
    /// The longest wait between two looks. Default: 30 minutes.
    pub backoff_cap: Duration,
    /// How long after creation a pending payment is looked at; after that it gets one last look and is marked
    /// expired. Default: 48 hours (YooKassa cancels an unpaid payment well before).
    pub max_age: Duration,
    /// The most records one run looks at, in each of its two passes (due, and due a last look), 1 to
    /// [`BATCH_LIMIT_MAX`]. Default: 100.
    pub batch: u32,
}

impl Default for ReconcilerConfig {
    fn default() -> ReconcilerConfig {
        ReconcilerConfig {
            first_check_after: Duration::from_secs(60),
            backoff_base: 2,
            backoff_cap: Duration::from_secs(30 * 60),
            max_age: Duration::from_secs(48 * 60 * 60),
            batch: 100,
        }
    }
}

impl ReconcilerConfig {
    /// The wait after the `checks`-th look that found the payment still pending:
    /// `min(first_check_after × backoff_base^checks, backoff_cap)`, saturating.
    #[must_use]
    pub fn delay_after(&self, checks: u32) -> Duration {
        self.backoff_base
            .checked_pow(checks)
            .and_then(|factor| self.first_check_after.checked_mul(factor))
            .map_or(self.backoff_cap, |d| d.min(self.backoff_cap))
    }
}

/// A [`ReconcilerConfig`] that cannot work.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
#[error("reconciler configuration: {why}")]
pub struct ReconcilerConfigError {
    /// What is wrong.
    pub why: String,
}

/// What one [`Reconciler::run_once`] did. Every record it looked at is counted in exactly one of `credited`,
/// `canceled`, `still_pending`, `expired` or `errors`; `errors` also counts a failed read of the due records (at
/// most one per pass), which looked at nothing.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct ReconcileReport {
    /// Records asked about.
    pub looked: u32,
    /// Found paid and credited (now, or earlier by a notice; the ledger's key makes it once).
    pub credited: u32,
    /// Found cancelled at the gateway.
    pub canceled: u32,
    /// Still pending: asked about again later.
    pub still_pending: u32,
    /// Still pending at their last look: marked expired.
    pub expired: u32,
    /// Looks that failed (gateway, ledger or store), plus a failed read of the due records; each such record
    /// stays pending and is retried when next due.
    pub errors: u32,
}

/// Which pass a record was taken in.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Pass {
    /// Younger than `max_age`: rescheduled while pending.
    Due,
    /// At or past `max_age`: expired when still pending.
    LastLook,
}

/// Settles pending payments by asking the gateway, on a schedule the caller drives (`rei serve` runs
/// [`Reconciler::run_once`] on a timer; tests call it step by step with a manual clock).
pub struct Reconciler {
    top_ups: Arc<TopUps>,
    clock: Arc<dyn Clock>,
    config: ReconcilerConfig,
}

impl Reconciler {
    /// A reconciler settling through `top_ups` (and its payment store), timed by `clock`.
    ///
    /// # Errors
    /// [`ReconcilerConfigError`] for a zero first wait, a base of zero, a cap below the first wait, a zero
    /// `max_age`, or a batch outside `1..=`[`BATCH_LIMIT_MAX`].
    pub fn new(
        top_ups: Arc<TopUps>,
        clock: Arc<dyn Clock>,
        config: ReconcilerConfig,
    ) -> Result<Reconciler, ReconcilerConfigError> {
        check(&config)?;
        Ok(Reconciler { top_ups, clock, config })
    }

    /// Its configuration.
    #[must_use]
    pub fn config(&self) -> &ReconcilerConfig {
        &self.config
    }

    /// One run: the due records younger than `max_age` (rescheduled while pending), then the due records at or
    /// past it (a last look, then expired while pending), each pass at most `batch` records.
    pub async fn run_once(&self) -> ReconcileReport {
        let mut report = ReconcileReport::default();
        let store = self.top_ups.payments().clone();
        let now = self.clock.now();
        for pass in [Pass::Due, Pass::LastLook] {
            let taken = match pass {
                Pass::Due => store.due(now, self.config.max_age, self.config.batch).await,
                Pass::LastLook => store.overdue(now, self.config.max_age, self.config.batch).await,
            };
            match taken {
                Ok(records) => {
                    for record in records {
                        self.look(store.as_ref(), &record, pass, now, &mut report).await;
                    }
                }
                Err(_) => report.errors += 1,
            }
        }
        report
    }

    async fn look(
        &self,
        store: &dyn PaymentStore,
        record: &PaymentRecord,
        pass: Pass,
        now: Timestamp,
        report: &mut ReconcileReport,
    ) {
        // Another provider's payment (a Stars payment recorded while it was credited) is not this gateway's to
        // ask about: it is looked at again later, uncounted.
        if record.provider != self.top_ups.provider() {
            let _ = self.reschedule(store, record, now).await;
            return;
        }
        report.looked += 1;
        let outcome = self.top_ups.settle(&record.id).await;
        match (outcome, pass) {
            (Ok(NoticeOutcome::Credited { .. }), _) => report.credited += 1,
            (Ok(NoticeOutcome::Canceled { .. }), _) => report.canceled += 1,
            (Ok(NoticeOutcome::NotPaid { .. }), Pass::Due) => match self.reschedule(store, record, now).await {
                true => report.still_pending += 1,
                false => report.errors += 1,
            },
            (Ok(NoticeOutcome::NotPaid { .. }), Pass::LastLook) => {
                match store.mark(&record.id, FinalStatus::Expired, self.clock.now()).await {
                    Ok(_) => report.expired += 1,
                    Err(_) => report.errors += 1,
                }
            }
            // Any other answer or a failure: counted, and asked again when next due. The wait grows as for a
            // pending payment, so that records that keep failing do not crowd out the rest of the batch.
            (Ok(NoticeOutcome::RefundConfirmed | NoticeOutcome::Ignored { .. }) | Err(_), _) => {
                report.errors += 1;
                let _ = self.reschedule(store, record, now).await;
            }
        }
    }

    /// Pushes the record's next look back by the backoff after one more check; `false` when the store failed.
    async fn reschedule(&self, store: &dyn PaymentStore, record: &PaymentRecord, now: Timestamp) -> bool {
        let delay = self.config.delay_after(record.checks.saturating_add(1));
        store.reschedule(&record.id, now.plus(delay), self.clock.now()).await.is_ok()
    }
}

/// Refuses a configuration that cannot work, naming the field first.
fn check(config: &ReconcilerConfig) -> Result<(), ReconcilerConfigError> {
    let why = if config.first_check_after.is_zero() {
        Some("first_check_after must be more than zero".to_owned())
    } else if config.backoff_base == 0 {
        Some("backoff_base must be at least 1".to_owned())
    } else if config.backoff_cap < config.first_check_after {
        Some("backoff_cap must be at least first_check_after".to_owned())
    } else if config.max_age.is_zero() {
        Some("max_age must be more than zero".to_owned())
    } else if !(1..=BATCH_LIMIT_MAX).contains(&config.batch) {
        Some(format!("batch must be 1 to {BATCH_LIMIT_MAX}"))
    } else {
        None
    };
    match why {
        Some(why) => Err(ReconcilerConfigError { why }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_doubles_from_a_minute_up_to_half_an_hour() {
        // Proves the default backoff: 2, 4, 8, 16 minutes, then the 30-minute cap, also where the power overflows.
        let config = ReconcilerConfig::default();
        let minutes = |checks| config.delay_after(checks).as_secs() / 60;
        assert_eq!([1, 2, 3, 4, 5, 6].map(minutes), [2, 4, 8, 16, 30, 30]);
        assert_eq!(minutes(u32::MAX), 30);
        let flat = ReconcilerConfig { backoff_base: 1, ..config };
        assert_eq!(flat.delay_after(40), Duration::from_secs(60), "a base of 1 waits the same each time");
    }

    #[test]
    fn a_config_that_cannot_work_is_refused() {
        // Proves each bound of the configuration is checked, naming the field.
        let ok = ReconcilerConfig::default();
        for (bad, field) in [
            (ReconcilerConfig { first_check_after: Duration::ZERO, ..ok }, "first_check_after"),
            (ReconcilerConfig { backoff_base: 0, ..ok }, "backoff_base"),
            (ReconcilerConfig { backoff_cap: Duration::from_secs(1), ..ok }, "backoff_cap"),
            (ReconcilerConfig { max_age: Duration::ZERO, ..ok }, "max_age"),
            (ReconcilerConfig { batch: 0, ..ok }, "batch"),
            (ReconcilerConfig { batch: BATCH_LIMIT_MAX + 1, ..ok }, "batch"),
        ] {
            assert!(check(&bad).is_err_and(|e| e.why.starts_with(field)), "{bad:?}");
        }
        assert!(check(&ok).is_ok());
    }
}
