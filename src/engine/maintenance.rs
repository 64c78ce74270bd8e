//! The maintenance task: the hold reaper and the quote purge, one bounded pass at a time.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rei_core::billing::{BillingService, QuoteStore};
use rei_core::generation::AssetStore;
use rei_core::jobs::JobService;
use rei_core::time::{Clock, Timestamp};
use rei_core::usage::UsageService;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::EngineError;

/// The shortest interval between maintenance passes; a shorter one is raised to it.
pub const MAINTENANCE_INTERVAL_MIN: Duration = Duration::from_millis(100);

/// What one maintenance pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MaintenanceReport {
    /// Holds the reaper expired (their money is back in `available`).
    pub holds_expired: usize,
    /// Holds found due that a concurrent capture or release ended first.
    pub holds_skipped: usize,
    /// Quotes purged, long past their expiry.
    pub quotes_purged: usize,
    /// Usage sessions ended that nobody would close: their hold lapsed (the money went back), was never
    /// placed, or was already settled by a close that crashed.
    pub sessions_ended: usize,
    /// Jobs whose worker vanished, moved on by [`JobService::recover_expired_leases`]: retried, marked unknown,
    /// failed, or ended as the ledger had settled their hold.
    pub jobs_recovered: usize,
    /// Assets past their retention deleted ([`sweep_assets`]; zero when the pass had no asset store).
    pub assets_deleted: usize,
    /// HTTP replay slots older than [`REPLAY_RETENTION`] removed.
    pub replays_purged: usize,
    /// Bot updates taken longer ago than [`UPDATE_RETENTION`] forgotten.
    pub updates_purged: usize,
    /// Queued jobs the queue had lost (a Redis flushed or restarted without its data) put back in it
    /// ([`JobService::reconcile_queue`]).
    pub tickets_restored: usize,
}

/// How long a POST's stored response is replayed for its `Idempotency-Key`: a day, as payment APIs keep theirs.
pub const REPLAY_RETENTION: Duration = Duration::from_secs(24 * 60 * 60);

/// How long a bot update id is remembered: Telegram keeps redelivering an update for at most a day.
pub const UPDATE_RETENTION: Duration = Duration::from_secs(48 * 60 * 60);

/// Deletes up to `limit` assets last written more than `retention` before `now`; returns how many went.
///
/// # Errors
/// [`EngineError::Assets`] when the store failed; assets deleted before the failure stay deleted.
pub async fn sweep_assets(
    assets: &dyn AssetStore,
    now: Timestamp,
    retention: Duration,
    limit: usize,
) -> Result<usize, EngineError> {
    let old = assets.list_older_than(now.minus(retention), limit).await?;
    let mut deleted = 0;
    for asset in old {
        if assets.delete(&asset.key).await? {
            deleted += 1;
        }
    }
    Ok(deleted)
}

/// What a maintenance task did since it started.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MaintenanceTotals {
    /// Passes run, failed ones included.
    pub passes: u64,
    /// Holds expired.
    pub holds_expired: u64,
    /// Quotes purged.
    pub quotes_purged: u64,
    /// Passes that failed (the store was unavailable); each next pass tries again.
    pub failures: u64,
    /// The last failure's message.
    pub last_error: Option<String>,
}

impl MaintenanceTotals {
    fn add(&mut self, pass: &Result<MaintenanceReport, EngineError>) {
        self.passes = self.passes.saturating_add(1);
        match pass {
            Ok(r) => {
                self.holds_expired = self.holds_expired.saturating_add(r.holds_expired as u64);
                self.quotes_purged = self.quotes_purged.saturating_add(r.quotes_purged as u64);
            }
            Err(e) => {
                self.failures = self.failures.saturating_add(1);
                self.last_error = Some(e.to_string());
            }
        }
    }
}

/// What a pass needs: the services and settings it shares with the engine.
#[derive(Clone)]
pub(super) struct Maintenance {
    pub(super) billing: Arc<BillingService>,
    pub(super) usage: Arc<UsageService>,
    pub(super) jobs: Arc<JobService>,
    pub(super) quotes: Arc<dyn QuoteStore>,
    pub(super) replays: Arc<dyn rei_core::access::ReplayStore>,
    pub(super) updates: Arc<dyn rei_core::chat::UpdateLog>,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) quote_retention: Duration,
    pub(super) maintenance_batch_max: usize,
}

impl Maintenance {
    /// One pass: ends up to a batch of abandoned usage sessions, expires up to the reaper's batch of lapsed
    /// holds, recovers up to a batch of jobs whose worker vanished (so that a job whose hold the ledger
    /// settled ends as the ledger says), puts back in the queue every queued job it lost, then purges up to a batch of quotes that expired more than the
    /// retention ago.
    pub(super) async fn run_once(&self) -> Result<MaintenanceReport, EngineError> {
        let sessions = self.usage.reap(self.maintenance_batch_max).await?;
        let reaped = self.billing.reap_expired().await?;
        let jobs = self.jobs.recover_expired_leases(self.maintenance_batch_max).await?;
        // The queue holds tickets only; the store is the truth. Whatever the queue lost comes back here.
        let restored = self.jobs.reconcile_queue(self.maintenance_batch_max).await?;
        let before = self.clock.now().minus(self.quote_retention);
        let quotes_purged = self.quotes.purge_expired(before, self.maintenance_batch_max).await?;
        let now = self.clock.now();
        let purge_failed = |e: &dyn std::fmt::Display| EngineError::Purge { reason: e.to_string() };
        let replays_purged = self
            .replays
            .purge(now.minus(REPLAY_RETENTION), self.maintenance_batch_max)
            .await
            .map_err(|e| purge_failed(&e))?;
        let updates_purged = self
            .updates
            .purge(now.minus(UPDATE_RETENTION), self.maintenance_batch_max)
            .await
            .map_err(|e| purge_failed(&e))?;
        Ok(MaintenanceReport {
            holds_expired: reaped.expired.len(),
            holds_skipped: reaped.skipped.len(),
            quotes_purged,
            sessions_ended: sessions.lapsed.len() + sessions.settled.len(),
            jobs_recovered: jobs.unknown + jobs.requeued + jobs.failed + jobs.settled,
            assets_deleted: 0,
            replays_purged,
            updates_purged,
            tickets_restored: restored.enqueued,
        })
    }

    pub(super) fn spawn(self, interval: Duration) -> MaintenanceHandle {
        let (stop, mut stopped) = oneshot::channel::<()>();
        let totals = Arc::new(Mutex::new(MaintenanceTotals::default()));
        let shared = totals.clone();
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval.max(MAINTENANCE_INTERVAL_MIN));
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    // A stop request, or the handle dropped.
                    _ = &mut stopped => break,
                    _ = ticks.tick() => {
                        let pass = self.run_once().await;
                        shared.lock().unwrap_or_else(PoisonError::into_inner).add(&pass);
                    }
                }
            }
        });
        MaintenanceHandle { stop: Some(stop), task: Some(task), totals }
    }
}

/// A running maintenance task (see [`Engine::spawn_maintenance`](super::Engine::spawn_maintenance)). Dropping
/// the handle stops the task after its current pass; [`MaintenanceHandle::stop`] also waits for it.
#[derive(Debug)]
pub struct MaintenanceHandle {
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    totals: Arc<Mutex<MaintenanceTotals>>,
}

impl MaintenanceHandle {
    /// What the task did so far.
    #[must_use]
    pub fn totals(&self) -> MaintenanceTotals {
        self.totals.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Stops the task, waiting for a pass under way to finish, and returns what it did.
    ///
    /// # Errors
    /// [`EngineError::MaintenancePanicked`] when the task panicked.
    pub async fn stop(mut self) -> Result<MaintenanceTotals, EngineError> {
        if let Some(stop) = self.stop.take() {
            // The task may have ended already; then there is nobody to tell.
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.map_err(|e| EngineError::MaintenancePanicked { reason: e.to_string() })?;
        }
        Ok(self.totals())
    }
}
