//! [`Engine`]: the embedding entry point. It opens the stores from a database URL, migrates as configured, and
//! hands out the billing, usage, job and admin services, all sharing one clock, one id source and one caps
//! configuration. The `rei` binary builds its commands on it too.

mod config;
mod database;
mod error;
mod maintenance;
mod metered;
mod replica;
mod worker;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rei_adapters::system::{SystemClock, TimeOrderedIds};
use rei_core::access::{ApiKeyStore, ReplayStore};
use rei_core::billing::AuditedError;
use rei_core::billing::{AdminService, BillingService, QuoteStore};
use rei_core::chat::{ConversationStore, UpdateLog};
use rei_core::generation::GenerationRequest;
use rei_core::generation::{
    AssetStore, AttemptLog, FaultPoints, GenerationProvider, Messenger, MessengerNotifier, NoFaults, Pipeline,
    PipelineConfig, PipelinePorts,
};
use rei_core::generation::{MessengerError, UserMessage};
use rei_core::guards::{AuditAction, AuditLog};
use rei_core::ids::{IdGen, UserId};
use rei_core::ids::{JobId, QuoteId};
use rei_core::jobs::{Job, JobEvent, JobNotifier, JobPorts, JobQueue, JobService, NewJob, Priority, RetryPolicy};
use rei_core::ledger::LedgerStore;
use rei_core::members::{Growth, GrowthConfig, MemberStore, PromoStore};
use rei_core::payments::PaymentGateway;
use rei_core::pricing::{Pricer, PricingConfig};
use rei_core::reports::ReportStore;
use rei_core::routing::Router;
use rei_core::time::{Clock, Sleep};
use rei_core::topups::{
    PaymentStore, Reconciler, ReconcilerConfig, ReconcilerConfigError, TopUpPorts, TopUps, TopUpsConfig,
};
use rei_core::usage::UsageService;

pub use config::{EngineConfig, MigrateMode};
pub use database::{Database, Leadership};
pub use error::EngineError;
pub use maintenance::{
    MAINTENANCE_INTERVAL_MIN, MaintenanceHandle, MaintenanceReport, MaintenanceTotals, REPLAY_RETENTION,
    UPDATE_RETENTION, sweep_assets,
};
pub use worker::{WorkerOptions, WorkerReport, run_worker};

/// The engine: one database, the services over it, and the maintenance that keeps it tidy.
///
/// Open it from a URL with the defaults, or build it with [`Engine::builder`]:
///
/// ```no_run
/// # async fn run() -> Result<(), rei::EngineError> {
/// use rei::{Engine, EngineConfig, MigrateMode};
///
/// let engine = Engine::open("sqlite://rei.db").await?; // or postgres://user@host/db
/// let checked = Engine::builder()
///     .database_url("postgres://rei@db.internal/rei")
///     .config(EngineConfig { migrate: MigrateMode::Check, ..EngineConfig::default() })
///     .open()
///     .await?;
/// # Ok(()) }
/// ```
///
/// Every service is an `Arc` that may outlive the engine value; [`Engine::close`] closes the pool, after which
/// the services' store calls fail.
pub struct Engine {
    database: Database,
    migrations_applied: Vec<i64>,
    config: EngineConfig,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn IdGen>,
    ledger: Arc<dyn LedgerStore>,
    quotes: Arc<dyn QuoteStore>,
    queue: Arc<dyn JobQueue>,
    billing: Arc<BillingService>,
    usage: Arc<UsageService>,
    jobs: Arc<JobService>,
    admin: Arc<AdminService>,
    attempts: Arc<dyn AttemptLog>,
    api_keys: Arc<dyn ApiKeyStore>,
    replays: Arc<dyn ReplayStore>,
    updates: Arc<dyn UpdateLog>,
    conversations: Arc<dyn ConversationStore>,
    payments: Arc<dyn PaymentStore>,
    audit: Arc<dyn AuditLog>,
    members: Arc<dyn MemberStore>,
    promos: Arc<dyn PromoStore>,
    reports: Arc<dyn ReportStore>,
    board: Arc<dyn rei_core::routing::ProviderBoard>,
    messenger: Arc<dyn Messenger>,
}

/// What a generation pipeline needs beyond the engine: the providers, the router over their catalogue, the
/// asset store, and how to wait.
pub struct PipelineParts {
    /// Every provider the router's catalogue names.
    pub providers: Vec<Arc<dyn GenerationProvider>>,
    /// The catalogue with its health and breakers.
    pub router: Router,
    /// Inputs and results.
    pub assets: Arc<dyn AssetStore>,
    /// Polling, timeouts, download limits, per-provider concurrency.
    pub config: PipelineConfig,
    /// Crash drill hooks; `None` in production.
    pub faults: Option<Arc<dyn FaultPoints>>,
}

/// Sleeps on the tokio timer.
struct TokioSleep;

#[async_trait]
impl Sleep for TokioSleep {
    async fn sleep(&self, d: Duration) {
        tokio::time::sleep(d).await;
    }
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("database", &self.database.engine()).field("config", &self.config).finish()
    }
}

impl Engine {
    /// Opens the database `url` names (`sqlite://path`, `postgres://…`) with [`EngineConfig::default`]:
    /// missing migrations are applied, a missing SQLite file is created, prices come from
    /// [`PricingConfig::example`].
    ///
    /// # Errors
    /// See [`EngineBuilder::open`].
    pub async fn open(url: &str) -> Result<Engine, EngineError> {
        Engine::builder().database_url(url).open().await
    }

    /// A builder with every setting at its default.
    pub fn builder() -> EngineBuilder {
        EngineBuilder::default()
    }

    /// The money side: top-ups, quotes, confirms, holds, captures, releases, refunds, adjustments, balances,
    /// `verify` and the reaper.
    #[must_use]
    pub fn billing(&self) -> &Arc<BillingService> {
        &self.billing
    }

    /// Metered sessions (₽ per second), under the same caps as billing.
    #[must_use]
    pub fn usage(&self) -> &Arc<UsageService> {
        &self.usage
    }

    /// Generation jobs: submit, lease, complete, fail, recover, reconcile.
    #[must_use]
    pub fn jobs(&self) -> &Arc<JobService> {
        &self.jobs
    }

    /// Admin adjustments and refunds, authorized by role and audited.
    #[must_use]
    pub fn admin(&self) -> &Arc<AdminService> {
        &self.admin
    }

    /// Orders a generation: confirms `quote` for `user` (the money is held under the caps and the limit on jobs
    /// running at once) and queues a job for `request`, whose id and hold number are the quote's. Ordering the
    /// same quote again holds nothing more and returns the job already queued.
    ///
    /// # Errors
    /// [`EngineError::Request`] for a request that does not fit its capability; [`EngineError::Confirm`] when
    /// billing refuses; [`EngineError::Submit`] when the job could not be stored or queued (ordering again
    /// finishes it).
    pub async fn order(
        &self,
        user: UserId,
        quote: QuoteId,
        request: GenerationRequest,
        priority: Priority,
    ) -> Result<Job, EngineError> {
        request.validate()?;
        let confirmation = self.billing.confirm(user, quote, None).await.map_err(EngineError::Confirm)?;
        let spec = NewJob {
            id: JobId::from(quote.as_u128()),
            user,
            product: confirmation.product,
            priority,
            price: confirmation.amount,
            hold: confirmation.hold,
            max_attempts: self.config.retry.max_attempts,
            request: Some(request),
        };
        let now = self.clock.now();
        let mut job = Job::new(spec, now).map_err(|e| EngineError::Config { reason: e.to_string() })?;
        job.apply(JobEvent::Confirm, now).map_err(|e| EngineError::Config { reason: e.to_string() })?;
        self.jobs.submit(job).await.map_err(EngineError::Submit)
    }

    /// One record per generation attempt, with the provider's cost.
    #[must_use]
    pub fn attempts(&self) -> &Arc<dyn AttemptLog> {
        &self.attempts
    }

    /// One record per payment created at a gateway: its status, when the reconciler looks next, a user's list.
    #[must_use]
    pub fn payments(&self) -> Arc<dyn PaymentStore> {
        self.payments.clone()
    }

    /// Top-ups through `gateway`, credited by this engine's billing and recorded in [`Engine::payments`], on
    /// its clock.
    #[must_use]
    pub fn top_ups(&self, gateway: Arc<dyn PaymentGateway>, config: TopUpsConfig) -> TopUps {
        let ports = TopUpPorts {
            gateway,
            billing: self.billing.clone(),
            payments: self.payments.clone(),
            clock: self.clock.clone(),
        };
        TopUps::new(ports, config)
    }

    /// A reconciler of `top_ups`' pending payments on this engine's clock; the caller runs
    /// [`Reconciler::run_once`] on a timer.
    ///
    /// # Errors
    /// [`ReconcilerConfigError`] for a configuration that cannot work.
    pub fn reconciler(
        &self,
        top_ups: Arc<TopUps>,
        config: ReconcilerConfig,
    ) -> Result<Reconciler, ReconcilerConfigError> {
        Reconciler::new(top_ups, self.clock.clone(), config)
    }

    /// A generation pipeline over this engine's services (see [`run_worker`] for the loop that feeds it).
    #[must_use]
    pub fn pipeline(&self, parts: PipelineParts) -> Pipeline {
        let ports = PipelinePorts {
            jobs: self.jobs.clone(),
            billing: self.billing.clone(),
            router: Arc::new(std::sync::Mutex::new(parts.router)),
            providers: parts.providers,
            assets: parts.assets,
            attempts: self.attempts.clone(),
            messenger: self.messenger.clone(),
            clock: self.clock.clone(),
            sleep: Arc::new(TokioSleep),
            faults: parts.faults.unwrap_or_else(|| Arc::new(NoFaults)),
            board: Some(self.board.clone()),
        };
        Pipeline::new(ports, parts.config)
    }

    /// The API keys of the HTTP API (hashed).
    #[must_use]
    pub fn api_keys(&self) -> &Arc<dyn ApiKeyStore> {
        &self.api_keys
    }

    /// The stored responses of the HTTP API's POSTs, replayed for a repeated `Idempotency-Key`.
    #[must_use]
    pub fn replays(&self) -> &Arc<dyn ReplayStore> {
        &self.replays
    }

    /// The bot's updates already taken: each is handled once, by whichever process took it first.
    #[must_use]
    pub fn updates(&self) -> &Arc<dyn UpdateLog> {
        &self.updates
    }

    /// Each bot user's conversation state, in the store.
    #[must_use]
    pub fn conversations(&self) -> &Arc<dyn ConversationStore> {
        &self.conversations
    }

    /// The bot's members: profiles, languages, referral codes and referrers, trials, first payments, bans.
    #[must_use]
    pub fn members(&self) -> &Arc<dyn MemberStore> {
        &self.members
    }

    /// The promo codes and who redeemed them.
    #[must_use]
    pub fn promos(&self) -> &Arc<dyn PromoStore> {
        &self.promos
    }

    /// Trials, referral bonuses, promo codes and bans over [`Engine::members`] and [`Engine::promos`], granting
    /// through this engine's billing and auditing to its audit log, on its clock and ids. Give it to
    /// [`TopUps::with_observer`] and [`StarsPayments::with_observer`](rei_core::stars::StarsPayments::with_observer)
    /// (in an `Arc`) so that referrers get their share of every top-up.
    #[must_use]
    pub fn growth(&self, config: GrowthConfig) -> Growth {
        Growth::new(
            self.members.clone(),
            self.promos.clone(),
            self.billing.clone(),
            self.audit.clone(),
            self.clock.clone(),
            self.ids.clone(),
            config,
        )
    }

    /// Cancels a job that has not started, releasing its hold, as an audited admin action
    /// ([`AdminService::cancel_job`]).
    ///
    /// # Errors
    /// [`AdminError`](rei_core::billing::AdminError).
    pub async fn cancel_job(
        &self,
        req: &rei_core::billing::AdminRequest,
        job: JobId,
    ) -> Result<Job, rei_core::billing::AdminError> {
        self.admin.cancel_job(req, &self.jobs, job).await
    }

    /// Gives a job another try, as an audited admin action ([`AuditAction::RetryJob`] on `job:<id>`): a job whose
    /// provider call has an unknown outcome is found not done (retried if attempts are left, else failed with its
    /// money released); a job with a dead letter is put back in the queue. A job that ended is refused: its money
    /// was settled.
    ///
    /// # Errors
    /// [`AdminError`](rei_core::billing::AdminError): forbidden, refused (with why) or not audited.
    pub async fn retry_job(
        &self,
        req: &rei_core::billing::AdminRequest,
        job: JobId,
    ) -> Result<Job, rei_core::billing::AdminError> {
        use rei_core::jobs::{JobState, Resolution};
        let now = self.clock.now();
        let act = async {
            let stored = self.jobs.get(job).await.map_err(|e| e.to_string())?;
            let stored = stored.ok_or_else(|| format!("job {job} not found"))?;
            match stored.state {
                JobState::Unknown => {
                    self.jobs.resolve_unknown(job, Resolution::NotDone).await.map_err(|e| e.to_string())
                }
                state if state.is_terminal() => {
                    Err(format!("job {job} is {state}: its money was settled and it does not run again"))
                }
                _ => {
                    self.queue.replay_dead_letter(job, now).await.map_err(|e| e.to_string())?;
                    Ok(stored)
                }
            }
        };
        audited(self.admin.run_audited(req, AuditAction::RetryJob, &format!("job:{job}"), act).await)
    }

    /// Ends a job whose provider call has an unknown outcome as failed, releasing its money (the operator found
    /// that the provider did not deliver), as an audited admin action ([`AuditAction::CancelJob`] on `job:<id>`).
    /// A job that has not started is cancelled instead ([`Engine::cancel_job`]).
    ///
    /// # Errors
    /// [`AdminError`](rei_core::billing::AdminError): forbidden, refused (with why) or not audited.
    pub async fn release_job(
        &self,
        req: &rei_core::billing::AdminRequest,
        job: JobId,
    ) -> Result<Job, rei_core::billing::AdminError> {
        use rei_core::jobs::{ErrorText, JobState, Resolution};
        let stored = self.jobs.get(job).await.map_err(rei_core::billing::AdminError::Job)?;
        if stored.as_ref().is_some_and(|j| j.state != JobState::Unknown) {
            return self.cancel_job(req, job).await;
        }
        let act = async {
            let reason = ErrorText::new("released by an admin: the provider did not deliver");
            self.jobs.resolve_unknown(job, Resolution::Failed { reason }).await.map_err(|e| e.to_string())
        };
        audited(self.admin.run_audited(req, AuditAction::CancelJob, &format!("job:{job}"), act).await)
    }

    /// The provider board: what the workers' routers saw of each provider, and the models switched off.
    #[must_use]
    pub fn provider_board(&self) -> &Arc<dyn rei_core::routing::ProviderBoard> {
        &self.board
    }

    /// Switches `model` of `provider` on or off for every worker (they read the switches every few seconds),
    /// as an audited admin action ([`AuditAction::SetModel`] on `model:<provider>/<model>`).
    ///
    /// # Errors
    /// [`AdminError`](rei_core::billing::AdminError): forbidden, refused (with why) or not audited.
    pub async fn set_model(
        &self,
        req: &rei_core::billing::AdminRequest,
        provider: &rei_core::ids::ProviderId,
        model: &str,
        enabled: bool,
    ) -> Result<(), rei_core::billing::AdminError> {
        let now = self.clock.now();
        let act = async { self.board.set_model(provider, model, enabled, now).await.map_err(|e| e.to_string()) };
        let target = format!("model:{provider}/{model}");
        audited(self.admin.run_audited(req, AuditAction::SetModel, &target, act).await)
    }

    /// The audit log of admin actions (each with its outcome, refusals too).
    #[must_use]
    pub fn audit(&self) -> &Arc<dyn AuditLog> {
        &self.audit
    }

    /// Read-only reports over this database: jobs by state, money by kind, usage per provider, the ledger's
    /// totals, the SLOs' counts per window and time series.
    #[must_use]
    pub fn reports(&self) -> &Arc<dyn ReportStore> {
        &self.reports
    }

    /// The ledger every service writes to.
    #[must_use]
    pub fn ledger(&self) -> &Arc<dyn LedgerStore> {
        &self.ledger
    }

    /// The job queue (the database's, Redis's, or the one given to the builder).
    #[must_use]
    pub fn job_queue(&self) -> &Arc<dyn JobQueue> {
        &self.queue
    }

    /// The clock every service reads.
    #[must_use]
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The id source every service draws from.
    #[must_use]
    pub fn ids(&self) -> &Arc<dyn IdGen> {
        &self.ids
    }

    /// The open database.
    #[must_use]
    pub fn database(&self) -> &Database {
        &self.database
    }

    /// The configuration the engine was opened with.
    #[must_use]
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// The migrations applied when the engine opened (empty when the schema was up to date or checked).
    #[must_use]
    pub fn migrations_applied(&self) -> &[i64] {
        &self.migrations_applied
    }

    fn maintenance(&self) -> maintenance::Maintenance {
        maintenance::Maintenance {
            billing: self.billing.clone(),
            usage: self.usage.clone(),
            jobs: self.jobs.clone(),
            quotes: self.quotes.clone(),
            replays: self.replays.clone(),
            updates: self.updates.clone(),
            clock: self.clock.clone(),
            quote_retention: self.config.quote_retention,
            maintenance_batch_max: self.config.maintenance_batch_max,
        }
    }

    /// One maintenance pass, now: ends up to [`EngineConfig::maintenance_batch_max`] usage sessions nobody
    /// will close, expires up to [`BillingConfig::reap_batch_max`] lapsed holds (each with the key
    /// `expire:<hold>`, so concurrent reapers expire a hold once), recovers up to as many jobs whose worker
    /// vanished (a job whose hold the ledger settled ends as the ledger says), then purges up to as many
    /// quotes that expired more than [`EngineConfig::quote_retention`] ago.
    ///
    /// [`BillingConfig::reap_batch_max`]: rei_core::billing::BillingConfig::reap_batch_max
    ///
    /// # Errors
    /// [`EngineError::SessionReap`], [`EngineError::Maintenance`], [`EngineError::JobRecovery`] or
    /// [`EngineError::QuotePurge`] when a store failed.
    pub async fn run_maintenance(&self) -> Result<MaintenanceReport, EngineError> {
        self.maintenance().run_once().await
    }

    /// Runs [`Engine::run_maintenance`] every `interval` (at least [`MAINTENANCE_INTERVAL_MIN`]) on the
    /// current tokio runtime until the handle is stopped or dropped. It prints nothing; failures are counted in
    /// [`MaintenanceHandle::totals`] and the next pass tries again. Run one per deployment, or several: the
    /// reaper's keys make racing passes harmless.
    #[must_use = "dropping the handle stops the task"]
    pub fn spawn_maintenance(&self, interval: Duration) -> MaintenanceHandle {
        self.maintenance().spawn(interval)
    }

    /// Closes the database pool (waiting for connections in use to come back).
    pub async fn close(&self) {
        self.database.close().await;
    }
}

/// Builds an [`Engine`]: a database URL, an [`EngineConfig`], and the parts an embedder may swap.
#[must_use]
#[derive(Default)]
pub struct EngineBuilder {
    url: Option<String>,
    config: EngineConfig,
    pricer: Option<Pricer>,
    clock: Option<Arc<dyn Clock>>,
    ids: Option<Arc<dyn IdGen>>,
    notifier: Option<Arc<dyn JobNotifier>>,
    messenger: Option<Arc<dyn Messenger>>,
    queue: Option<Arc<dyn JobQueue>>,
    #[cfg(feature = "redis")]
    redis_url: Option<String>,
}

impl EngineBuilder {
    /// The database: `sqlite://path` (`sqlite://rei.db`) or `postgres://…`. Required.
    pub fn database_url(mut self, url: impl Into<String>) -> EngineBuilder {
        self.url = Some(url.into());
        self
    }

    /// Every setting at once. Default: [`EngineConfig::default`].
    pub fn config(mut self, config: EngineConfig) -> EngineBuilder {
        self.config = config;
        self
    }

    /// The price list. Default: `Pricer::new(PricingConfig::example())`, the example list of the shared docs.
    pub fn pricer(mut self, pricer: Pricer) -> EngineBuilder {
        self.pricer = Some(pricer);
        self
    }

    /// The clock every service reads (a manual clock in tests). Default: the system clock.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> EngineBuilder {
        self.clock = Some(clock);
        self
    }

    /// The id source every service draws from. Default: time-ordered random ids.
    pub fn ids(mut self, ids: Arc<dyn IdGen>) -> EngineBuilder {
        self.ids = Some(ids);
        self
    }

    /// Who tells users what became of their jobs (the bot's messenger). Default: nobody — notices are
    /// dropped, so set one before running jobs for real users.
    pub fn notifier(mut self, notifier: Arc<dyn JobNotifier>) -> EngineBuilder {
        self.notifier = Some(notifier);
        self
    }

    /// Who tells users about their jobs: progress from the pipeline, and every final notice (delivered, failed
    /// with the money back, cancelled) through [`MessengerNotifier`] unless [`EngineBuilder::notifier`] is set.
    /// Default: nobody.
    pub fn messenger(mut self, messenger: Arc<dyn Messenger>) -> EngineBuilder {
        self.messenger = Some(messenger);
        self
    }

    /// The job queue. Default: a queue in the same database, sized by [`EngineConfig::queue`].
    pub fn job_queue(mut self, queue: Arc<dyn JobQueue>) -> EngineBuilder {
        self.queue = Some(queue);
        self
    }

    /// Puts the job queue in Redis at `url` (`redis://host:port/db`), under
    /// [`EngineConfig::redis_namespace`], sized by [`EngineConfig::queue`]. A queue given to
    /// [`EngineBuilder::job_queue`] wins over this.
    #[cfg(feature = "redis")]
    pub fn redis_url(mut self, url: impl Into<String>) -> EngineBuilder {
        self.redis_url = Some(url.into());
        self
    }

    /// Opens the database, readies its schema as [`EngineConfig::migrate`] says, and wires the services.
    ///
    /// # Errors
    /// [`EngineError::NoDatabaseUrl`]; the database's refusal ([`EngineError::ConnectionRefused`],
    /// [`EngineError::ConnectTimeout`], [`EngineError::DatabaseMissing`], [`EngineError::Connect`]);
    /// [`EngineError::MigrationsPending`] under [`MigrateMode::Check`]; [`EngineError::Migrate`];
    /// [`EngineError::Config`] for a retry policy or lease out of range.
    pub async fn open(self) -> Result<Engine, EngineError> {
        let url = self.url.clone().ok_or(EngineError::NoDatabaseUrl)?;
        let config = self.config.clone();
        let r = config.retry;
        let retry = RetryPolicy::new(r.max_attempts, r.base, r.cap, r.jitter)
            .map_err(|e| EngineError::Config { reason: format!("retry: {e}") })?;
        let database = Database::open(&url, &config).await?;
        let migrations_applied = database.ready_schema(config.migrate, &config).await?;
        let mut stores = database.stores(&config);
        if let Some(replica) = &config.replica_url {
            stores.ledger = Arc::new(replica::ReplicaReads {
                primary: stores.ledger,
                replica: database.replica_ledger(replica, &config).await?,
            });
        }
        let queue = match self.queue.clone() {
            Some(queue) => queue,
            None => self.redis_queue(&config).await?.unwrap_or_else(|| stores.queue.clone()),
        };

        let clock: Arc<dyn Clock> = self.clock.unwrap_or_else(|| Arc::new(SystemClock::new()));
        let ids: Arc<dyn IdGen> = self.ids.unwrap_or_else(|| Arc::new(TimeOrderedIds::new()));
        let pricer = self.pricer.unwrap_or_else(|| Pricer::new(PricingConfig::example()));
        let messenger: Arc<dyn Messenger> = self.messenger.unwrap_or_else(|| Arc::new(NoNotifier));
        let notifier: Arc<dyn JobNotifier> = Arc::new(metered::MeteredNotifier(
            self.notifier.unwrap_or_else(|| Arc::new(MessengerNotifier::new(messenger.clone()))),
        ));
        let stores = database::Stores {
            ledger: Arc::new(metered::MeteredLedger(stores.ledger)),
            attempts: Arc::new(metered::MeteredAttempts(stores.attempts)),
            jobs: Arc::new(metered::MeteredJobs(stores.jobs)),
            payments: Arc::new(metered::MeteredPayments(stores.payments)),
            board: Arc::new(metered::MeteredBoard(stores.board)),
            ..stores
        };

        let billing = Arc::new(BillingService::new(
            stores.ledger.clone(),
            stores.quotes.clone(),
            clock.clone(),
            ids.clone(),
            pricer,
            config.billing.clone(),
        ));
        // One caps configuration for every service that holds money: users' caps and provider budgets.
        let usage = Arc::new(UsageService::new(
            stores.ledger.clone(),
            stores.sessions.clone(),
            clock.clone(),
            ids.clone(),
            config.billing.caps(),
        ));
        let ports = JobPorts {
            store: stores.jobs.clone(),
            queue: queue.clone(),
            billing: billing.clone(),
            notifier,
            clock: clock.clone(),
        };
        let jobs = Arc::new(
            JobService::new(ports, retry, config.lease).map_err(|e| EngineError::Config { reason: e.to_string() })?,
        );
        let admin = Arc::new(AdminService::new(billing.clone(), stores.audit.clone(), clock.clone(), ids.clone()));
        Ok(Engine {
            database,
            migrations_applied,
            config,
            clock,
            ids,
            ledger: stores.ledger,
            quotes: stores.quotes,
            queue,
            billing,
            usage,
            jobs,
            admin,
            attempts: stores.attempts,
            api_keys: stores.api_keys,
            replays: stores.replays,
            updates: stores.updates,
            conversations: stores.conversations,
            payments: stores.payments,
            audit: stores.audit,
            members: stores.members,
            promos: stores.promos,
            reports: stores.reports,
            board: stores.board,
            messenger,
        })
    }

    #[cfg(feature = "redis")]
    async fn redis_queue(&self, config: &EngineConfig) -> Result<Option<Arc<dyn JobQueue>>, EngineError> {
        let Some(url) = &self.redis_url else { return Ok(None) };
        let queue = rei_adapters::redis::RedisJobQueue::connect(
            url,
            &config.redis_namespace,
            config.queue,
            config.connect_timeout,
        )
        .await?;
        Ok(Some(Arc::new(queue)))
    }

    #[cfg(not(feature = "redis"))]
    async fn redis_queue(&self, _config: &EngineConfig) -> Result<Option<Arc<dyn JobQueue>>, EngineError> {
        Ok(None)
    }
}

/// The default messenger: drops every message.
struct NoNotifier;

#[async_trait]
impl Messenger for NoNotifier {
    async fn send(&self, _user: UserId, _message: UserMessage) -> Result<(), MessengerError> {
        Ok(())
    }
}

/// An audited action's outcome as an admin error.
fn audited<T>(outcome: Result<T, AuditedError<String>>) -> Result<T, rei_core::billing::AdminError> {
    outcome.map_err(|e| match e {
        AuditedError::Admin(e) => e,
        AuditedError::Action(why) => rei_core::billing::AdminError::Refused(why),
    })
}
