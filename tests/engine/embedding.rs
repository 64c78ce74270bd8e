//! `rei::Engine` on real databases: the README's walkthrough, migrations by configuration, errors that say
//! what to do, one caps configuration for billing and usage, jobs that capture with billing's key, and the
//! maintenance task.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rei::core::billing::BillingConfig;
use rei::core::caps::SpendCaps;
use rei::core::ids::{HoldId, IdempotencyKey, JobId, PaymentId, ProductId, ProviderId, SessionId, UserId};
use rei::core::jobs::{Job, JobEvent, JobState, NewJob, Priority, WorkerId};
use rei::core::ledger::{HoldState, LedgerError};
use rei::core::money::{Money, UnitPrice};
use rei::core::pricing::Tier;
use rei::core::testing::clock::{ManualClock, SeqIds};
use rei::core::time::{Clock, Timestamp};
use rei::core::usage::{SessionSpec, UsageError};
use rei::{Engine, EngineConfig, EngineError, MigrateMode};

use crate::walkthrough;

const T0: Timestamp = Timestamp::from_millis(1_800_000_000_000);
static NEXT: AtomicU64 = AtomicU64::new(1);

/// A URL of a SQLite file in a fresh temporary directory, removed when the directory value drops.
fn sqlite_url() -> (tempfile::TempDir, String) {
    let dir = tempfile::Builder::new().prefix("rei-engine-").tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("rei.db").display());
    (dir, url)
}

/// An engine on a fresh SQLite file with a manual clock and sequential ids.
async fn manual_engine(config: EngineConfig) -> (tempfile::TempDir, Engine, Arc<ManualClock>) {
    let (dir, url) = sqlite_url();
    let clock = Arc::new(ManualClock::new(T0));
    let engine = Engine::builder()
        .database_url(url)
        .config(config)
        .clock(clock.clone())
        .ids(Arc::new(SeqIds::new(7)))
        .open()
        .await
        .expect("engine");
    (dir, engine, clock)
}

#[tokio::test]
async fn the_readme_walkthrough_runs_on_a_temporary_sqlite_file() {
    // Proves the `embed` example's walkthrough holds every money rule it checks on SQLite (replays move
    // nothing, the ledger verifies) and removes its temporary directory.
    let lines = walkthrough::run_on_temp_sqlite().await.expect("walkthrough");
    let text = lines.join("\n");
    assert!(text.contains("the same payment again: replayed: true"), "{text}");
    assert!(text.contains("captured again: replayed: true"), "{text}");
    assert!(text.contains("clean: true"), "{text}");
    let opened = lines.first().expect("a first line");
    let path = opened.trim_start_matches("opened sqlite://").split(", applied").next().expect("a path");
    let dir = std::path::Path::new(path).parent().expect("a directory");
    assert!(!dir.exists(), "{} was left behind", dir.display());
}

#[tokio::test]
async fn the_readme_walkthrough_runs_on_postgresql_in_a_schema_of_its_own() {
    // Proves the same walkthrough on PostgreSQL, with REI's tables in the configured schema (created by the
    // migration step), and that a second engine on the schema under `check` opens without migrating.
    let schema = format!("rei_engine_{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
    let config = EngineConfig { postgres_schema: Some(schema.clone()), ..EngineConfig::default() };
    let engine = Engine::builder().database_url(pg_url()).config(config.clone()).open().await.expect("engine");
    assert_eq!(engine.database().engine(), "postgres");
    assert!(!engine.migrations_applied().is_empty());
    let lines = walkthrough::run(&engine).await.expect("walkthrough");
    assert!(lines.iter().any(|l| l == "captured again: replayed: true"), "{lines:?}");
    let checked = EngineConfig { migrate: MigrateMode::Check, ..config };
    let again = Engine::builder().database_url(pg_url()).config(checked).open().await.expect("checked engine");
    assert!(again.migrations_applied().is_empty());
    again.close().await;
    let pool = engine.database().postgres().expect("a pool").clone();
    let tables: i64 = sqlx_count(&pool, &schema).await;
    assert!(tables >= 6, "REI's tables are in {schema}: {tables}");
    engine.close().await;
    let admin = rei::adapters::postgres::connect(&pg_url(), 1, Duration::from_secs(5)).await.expect("admin");
    rei::adapters::postgres::drop_schema(&admin, &schema).await.expect("drop the schema");
    admin.close().await;
}

/// How many tables `schema` holds.
async fn sqlx_count(pool: &rei::adapters::sqlx_pools::PgPool, schema: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM information_schema.tables WHERE table_schema = $1")
        .bind(schema)
        .fetch_one(pool)
        .await
        .expect("count the tables")
}

#[tokio::test]
async fn check_mode_refuses_an_unmigrated_database_naming_what_to_run() {
    // Proves `MigrateMode::Check` opens nothing on a database without the migrations, says which are missing
    // and what to run, and leaves the database unmigrated.
    let (_dir, url) = sqlite_url();
    let config = EngineConfig { migrate: MigrateMode::Check, ..EngineConfig::default() };
    let e = Engine::builder().database_url(&url).config(config.clone()).open().await.expect_err("refused");
    assert!(matches!(&e, EngineError::MigrationsPending { pending } if pending.starts_with(&[1, 2, 3])), "{e:?}");
    let text = e.to_string();
    assert!(text.starts_with("the database lacks migrations 1, 2, 3"), "{text}");
    assert!(text.ends_with(": run `rei migrate`"), "{text}");
    let e = Engine::builder().database_url(&url).config(config.clone()).open().await.expect_err("still refused");
    assert!(matches!(e, EngineError::MigrationsPending { .. }), "check mode migrated nothing: {e:?}");
    let applied = Engine::open(&url).await.expect("apply by default");
    assert!(applied.migrations_applied().starts_with(&[1, 2, 3]));
    applied.close().await;
    let checked = Engine::builder().database_url(&url).config(config).open().await.expect("now it opens");
    checked.close().await;
}

#[tokio::test]
async fn a_refused_postgresql_connection_says_so_at_once() {
    // Proves a PostgreSQL URL where nothing listens fails with "connection refused" well before the connect
    // timeout, instead of a pool timing out.
    let started = Instant::now();
    let config = EngineConfig { connect_timeout: Duration::from_secs(10), ..EngineConfig::default() };
    let e = Engine::builder()
        .database_url("postgres://rei:secret@127.0.0.1:1/rei")
        .config(config)
        .open()
        .await
        .expect_err("nothing listens on port 1");
    assert!(matches!(e, EngineError::ConnectionRefused { .. }), "{e:?}");
    let text = e.to_string();
    assert!(text.contains("connection refused"), "{text}");
    assert!(!text.contains("secret"), "the password is hidden: {text}");
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
}

#[tokio::test]
async fn a_missing_sqlite_file_is_reported_and_not_created_when_creation_is_off() {
    // Proves `create_if_missing: false` turns a missing file into `DatabaseMissing` and creates nothing, and
    // that an unknown scheme is refused by name.
    let (dir, url) = sqlite_url();
    let config = EngineConfig { create_if_missing: false, ..EngineConfig::default() };
    let e = Engine::builder().database_url(&url).config(config).open().await.expect_err("missing");
    assert!(matches!(&e, EngineError::DatabaseMissing { .. }), "{e:?}");
    assert!(e.to_string().contains("does not exist"), "{e}");
    assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 0, "nothing was created");
    let e = Engine::open("mysql://h/db").await.expect_err("unknown scheme");
    assert!(matches!(e, EngineError::Url(_)), "{e:?}");
    assert!(matches!(Engine::builder().open().await, Err(EngineError::NoDatabaseUrl)));
}

#[tokio::test]
async fn billing_and_usage_share_one_caps_configuration() {
    // Proves the user caps of `EngineConfig::billing` refuse both a confirm and a usage session that would
    // pass them, and that a provider budget refuses a confirm paying that provider.
    let kling = ProviderId::parse("kling").expect("id");
    let billing = BillingConfig {
        user_caps: SpendCaps { user_daily: Some(Money::from_kopecks(100)), ..SpendCaps::NONE },
        provider_budgets: [(kling.clone(), Money::from_kopecks(50))].into(),
        ..BillingConfig::default()
    };
    let (_dir, engine, _clock) = manual_engine(EngineConfig { billing, ..EngineConfig::default() }).await;
    let user = UserId(5);
    engine
        .billing()
        .top_up(user, Money::from_kopecks(100_000), PaymentId::parse("p-5").expect("id"))
        .await
        .expect("top-up");
    let quote = engine
        .billing()
        .quote(user, &ProductId::parse("image.nano-banana").expect("id"), 1, Tier::Basic)
        .await
        .expect("quote");
    assert!(quote.price > Money::from_kopecks(100));
    let e = engine.billing().confirm(user, quote.id, None).await.expect_err("over the daily cap");
    assert!(matches!(e, rei::core::billing::BillingError::Ledger(LedgerError::SpendCap(_))), "{e:?}");
    let e = engine
        .billing()
        .hold(
            user,
            HoldId::from(9),
            Money::from_kopecks(60),
            Some(&kling),
            IdempotencyKey::derived("h", 9).expect("test key"),
        )
        .await;
    assert!(matches!(e, Err(rei::core::billing::BillingError::Ledger(LedgerError::SpendCap(_)))), "{e:?}");
    let spec = SessionSpec {
        user,
        rate: UnitPrice::parse("1.00").expect("rate"),
        chunk_units: 10,
        hold_ttl: Duration::from_secs(60),
        provider: None,
    };
    let e = engine.usage().open(SessionId::from(77), spec).await.expect_err("a 10.00 chunk passes the cap");
    assert!(matches!(e, UsageError::Ledger(LedgerError::SpendCap(_))), "{e:?}");
    engine.close().await;
}

/// Tops `user` up, quotes and confirms one image, and submits its job; returns the job and its hold.
async fn submitted_job(engine: &Engine, clock: &ManualClock, user: UserId) -> (Job, HoldId) {
    let billing = engine.billing();
    let payment = PaymentId::parse(&format!("p-{}", user.0)).expect("id");
    billing.top_up(user, Money::from_kopecks(100_000), payment).await.expect("top-up");
    let product = ProductId::parse("image.nano-banana").expect("id");
    let quote = billing.quote(user, &product, 1, Tier::Basic).await.expect("quote");
    let held = billing.confirm(user, quote.id, None).await.expect("confirm");
    let spec = NewJob {
        id: JobId::from(quote.id.as_u128()),
        user,
        product: quote.product.clone(),
        priority: Priority::Normal,
        price: quote.price,
        hold: held.hold,
        max_attempts: 2,
        request: None,
    };
    let mut job = Job::new(spec, clock.now()).expect("job");
    job.apply(JobEvent::Confirm, clock.now()).expect("confirmed");
    (engine.jobs().submit(job).await.expect("submit"), held.hold)
}

#[tokio::test]
async fn a_job_run_by_the_engine_captures_under_billings_key() {
    // Proves the engine's job service runs on the engine's queue and billing: a completed job captures its
    // hold, and `capture_hold` on that hold afterwards is a replay that charges nothing more.
    let (_dir, engine, clock) = manual_engine(EngineConfig::default()).await;
    let user = UserId(6);
    let (job, hold) = submitted_job(&engine, &clock, user).await;
    let worker = WorkerId::parse("w1").expect("worker");
    let leased = engine.jobs().lease(&worker).await.expect("lease").expect("the job");
    let gemini = ProviderId::parse("gemini").expect("id");
    let leased = engine.jobs().record_dispatch(&leased, gemini.clone()).await.expect("dispatch");
    let done = engine.jobs().complete(&leased, gemini).await.expect("complete");
    assert_eq!(done.state, JobState::Succeeded);
    let billing = engine.billing();
    let again = billing.capture_hold(hold, job.price).await.expect("capture_hold");
    assert!(again.replayed, "the job already captured under the same key");
    let balance = billing.balance(user).await.expect("balance");
    assert_eq!(balance.available, Money::from_kopecks(100_000).checked_sub(job.price).expect("fits"));
    assert!(billing.verify().await.expect("verify").is_clean());
    engine.close().await;
}

#[tokio::test]
async fn the_job_queue_lives_in_redis_when_given_a_redis_url() {
    // Proves `redis_url` puts the engine's job queue in Redis under the configured namespace: a submitted job's
    // ticket is in Redis, not in the database's own queue, and a worker leases it from there.
    let (_dir, url) = sqlite_url();
    let namespace = format!("rei-engine-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
    let config = EngineConfig { redis_namespace: namespace.clone(), ..EngineConfig::default() };
    let clock = Arc::new(ManualClock::new(T0));
    let engine = Engine::builder()
        .database_url(&url)
        .config(config.clone())
        .clock(clock.clone())
        .ids(Arc::new(SeqIds::new(9)))
        .redis_url(redis_url())
        .open()
        .await
        .expect("engine");
    let (job, _) = submitted_job(&engine, &clock, UserId(11)).await;
    let redis =
        rei::adapters::redis::RedisJobQueue::connect(&redis_url(), &namespace, config.queue, Duration::from_secs(5))
            .await
            .expect("redis");
    assert!(rei::core::jobs::JobQueue::contains(&redis, job.id).await.expect("contains"), "the ticket is in Redis");
    let on_sql = Engine::open(&url).await.expect("the same database, its own queue");
    assert!(!on_sql.job_queue().contains(job.id).await.expect("contains"), "not in the database's queue");
    on_sql.close().await;
    let leased = engine.jobs().lease(&WorkerId::parse("w1").expect("worker")).await.expect("lease");
    assert_eq!(leased.map(|l| l.job.id), Some(job.id));
    engine.close().await;
}

#[tokio::test]
async fn maintenance_expires_lapsed_holds_and_purges_old_quotes() {
    // Proves one maintenance pass expires a hold past its TTL, ends a usage session nobody closed and purges a
    // quote past its retention, and
    // that the spawned task does the same in the background and stops when asked.
    let config = EngineConfig {
        billing: BillingConfig { hold_ttl: Duration::from_secs(60), ..BillingConfig::default() },
        quote_retention: Duration::from_secs(60),
        ..EngineConfig::default()
    };
    let (_dir, engine, clock) = manual_engine(config).await;
    let user = UserId(8);
    let billing = engine.billing();
    billing.top_up(user, Money::from_kopecks(10_000), PaymentId::parse("p-8").expect("id")).await.expect("top-up");
    billing
        .hold(
            user,
            HoldId::from(1),
            Money::from_kopecks(1_000),
            None,
            IdempotencyKey::derived("h", 1).expect("test key"),
        )
        .await
        .expect("hold");
    let quote =
        billing.quote(user, &ProductId::parse("image.nano-banana").expect("id"), 1, Tier::Basic).await.expect("quote");
    let session = rei::core::usage::SessionSpec {
        user,
        rate: rei::core::money::UnitPrice::parse("1").expect("rate"),
        chunk_units: 10,
        hold_ttl: Duration::from_secs(60),
        provider: None,
    };
    engine.usage().open(rei::core::ids::SessionId::from(50), session).await.expect("a session nobody closes");
    let nothing = engine.run_maintenance().await.expect("pass");
    assert_eq!((nothing.holds_expired, nothing.quotes_purged, nothing.sessions_ended), (0, 0, 0), "nothing is due");
    clock.set(quote.expires_at.plus(Duration::from_secs(61)));
    let pass = engine.run_maintenance().await.expect("pass");
    assert_eq!((pass.holds_expired, pass.quotes_purged, pass.sessions_ended), (1, 1, 1));
    let b = billing.balance(user).await.expect("balance");
    assert_eq!(b.held, Money::ZERO, "the abandoned session's money is back too");
    let hold = engine.ledger().hold(HoldId::from(1)).await.expect("hold").expect("exists");
    assert_eq!(hold.state, HoldState::Expired);

    billing
        .hold(user, HoldId::from(2), Money::from_kopecks(500), None, IdempotencyKey::derived("h", 2).expect("test key"))
        .await
        .expect("hold");
    clock.advance(Duration::from_secs(61));
    let handle = engine.spawn_maintenance(Duration::from_millis(100));
    // The task's first pass starts at once; wait (bounded) for its effect rather than for a set time.
    let expired = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let hold = engine.ledger().hold(HoldId::from(2)).await.expect("hold").expect("exists");
            if hold.state == HoldState::Expired {
                break;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(expired.is_ok(), "the background pass expired the hold");
    let totals = handle.stop().await.expect("stopped");
    assert!(totals.passes >= 1 && totals.holds_expired >= 1 && totals.failures == 0, "{totals:?}");
    assert_eq!(billing.balance(user).await.expect("balance").available, Money::from_kopecks(10_000));
    engine.close().await;
}

/// The URL of the test Redis server, started by `scripts/test`.
fn redis_url() -> String {
    std::env::var("REI_TEST_REDIS_URL").unwrap_or_else(|_| {
        panic!("REI_TEST_REDIS_URL is not set: run the suite with scripts/test, which starts Redis")
    })
}

/// The admin URL of the test PostgreSQL server; the suite is run by `scripts/test`, which starts it.
fn pg_url() -> String {
    std::env::var("REI_TEST_POSTGRES_URL").unwrap_or_else(|_| {
        panic!("REI_TEST_POSTGRES_URL is not set: run the suite with scripts/test, which starts PostgreSQL")
    })
}
