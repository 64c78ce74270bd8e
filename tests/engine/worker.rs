//! The worker loop on the embedded default: jobs ordered from quotes run through `run_worker` on SQLite, with
//! scripted providers, the in-memory asset store and a recording messenger; the limit on jobs running at once
//! at confirm; and the retention sweep of assets.

use std::sync::Arc;
use std::time::Duration;

use rei::core::billing::BillingError;
use rei::core::generation::{AssetStore, GenerationRequest, UserMessage};
use rei::core::generation::{PipelineConfig, ProviderError};
use rei::core::ids::{PaymentId, ProductId, UserId};
use rei::core::jobs::ErrorText;
use rei::core::jobs::{JobState, Priority, WorkerId};
use rei::core::ledger::LedgerError;
use rei::core::money::{Money, UnitPrice};
use rei::core::pricing::Tier;
use rei::core::routing::{Capability, Catalogue, Offer, Router, RouterConfig};
use rei::core::testing::assets::MemoryAssetStore;
use rei::core::testing::generation::{RecordingMessenger, Scripted, ScriptedProvider};
use rei::core::time::Clock;
use rei::{Engine, EngineError, PipelineParts, WorkerOptions, run_worker, sweep_assets};

async fn engine(messenger: Arc<RecordingMessenger>) -> (tempfile::TempDir, Engine) {
    let dir = tempfile::Builder::new().prefix("rei-worker-").tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("rei.db").display());
    let engine = Engine::builder().database_url(url).messenger(messenger).open().await.expect("engine");
    (dir, engine)
}

fn router() -> Router {
    let offer = |p: &str, kopecks| {
        let id = rei::core::ids::ProviderId::parse(p).expect("id");
        Offer::new(
            id,
            "gemini-2.5-flash-image",
            Capability::TextToImage,
            UnitPrice::from_money(Money::from_kopecks(kopecks)),
            80,
        )
        .expect("offer")
    };
    let catalogue = Catalogue::new(vec![offer("alpha", 300), offer("beta", 320)]).expect("catalogue");
    Router::new(catalogue, RouterConfig::default()).expect("router")
}

#[tokio::test]
async fn the_worker_runs_ordered_jobs_to_the_end_charging_each_once() {
    // Proves the loop: twenty users' jobs, one of them refused by the provider and one failing over, end with
    // exactly one capture or one release each, the results stored and each user told once; verify is clean.
    let messenger = RecordingMessenger::new();
    let (_dir, engine) = engine(messenger.clone()).await;
    let alpha = ScriptedProvider::new("alpha", false, Money::from_kopecks(300));
    let beta = ScriptedProvider::new("beta", true, Money::from_kopecks(320));
    alpha.push(Scripted::Fail(ProviderError::Rejected { reason: ErrorText::new("blocked") }));
    alpha.push(Scripted::Fail(ProviderError::Retryable { reason: ErrorText::new("503"), retry_after: None }));
    let assets = Arc::new(MemoryAssetStore::new(engine.clock().clone()));
    let config = PipelineConfig { poll_interval: Duration::from_millis(5), ..PipelineConfig::default() };
    let pipeline = Arc::new(engine.pipeline(PipelineParts {
        providers: vec![alpha.clone(), beta.clone()],
        router: router(),
        assets: assets.clone(),
        config,
        faults: None,
    }));
    let product = ProductId::parse("image.nano-banana").expect("id");
    let mut jobs = Vec::new();
    for n in 1..=20 {
        let user = UserId(n);
        engine
            .billing()
            .top_up(user, Money::from_kopecks(10_000), PaymentId::parse(&format!("p{n}")).expect("id"))
            .await
            .expect("top up");
        let quote = engine.billing().quote(user, &product, 1, Tier::Basic).await.expect("quote");
        let request = GenerationRequest::text(Capability::TextToImage, &format!("picture {n}"));
        jobs.push((user, quote.price, engine.order(user, quote.id, request, Priority::Normal).await.expect("order")));
    }
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let mut options = WorkerOptions::named(WorkerId::parse("w1").expect("name"));
    options.concurrency = 4;
    let worker = tokio::spawn(run_worker(
        pipeline,
        options,
        async {
            let _ = stopped.await;
        },
        |_| {},
    ));
    // Wait until every job has ended (the failover waits out its retry delay of about two seconds).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut open = 0;
        for (_, _, job) in &jobs {
            let state = engine.jobs().get(job.id).await.expect("get").expect("job").state;
            if !state.is_terminal() {
                open += 1;
            }
        }
        if open == 0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{open} jobs still open");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = stop.send(());
    let report = worker.await.expect("worker");
    assert_eq!((report.succeeded, report.failed, report.errors), (19, 1, 0), "{report:?}");
    for (user, price, job) in &jobs {
        let stored = engine.jobs().get(job.id).await.expect("get").expect("job");
        let balance = engine.billing().balance(*user).await.expect("balance");
        let finals: Vec<_> =
            messenger.about(job.id).into_iter().filter(|m| !matches!(m, UserMessage::Working { .. })).collect();
        assert_eq!(balance.held, Money::ZERO);
        assert_eq!(finals.len(), 1, "{finals:?}");
        match stored.state {
            JobState::Succeeded => {
                assert_eq!(balance.available, Money::from_kopecks(10_000 - price.kopecks()));
                let key = stored.result.clone().expect("result");
                assert!(assets.get(&key).await.expect("get").is_some());
                assert!(matches!(&finals[0], UserMessage::Delivered { asset: Some(k), .. } if *k == key));
            }
            JobState::Failed => {
                assert_eq!(balance.available, Money::from_kopecks(10_000));
                assert!(matches!(&finals[0], UserMessage::Failed { .. }));
            }
            other => panic!("job {} ended {other}", job.id),
        }
    }
    assert!(engine.billing().verify().await.expect("verify").is_clean());
}

#[tokio::test]
async fn a_third_job_at_once_is_refused_at_confirm() {
    // Proves the per-user limit of jobs running at once (default 2) is checked atomically at confirm.
    let (_dir, engine) = engine(RecordingMessenger::new()).await;
    let user = UserId(5);
    engine
        .billing()
        .top_up(user, Money::from_kopecks(50_000), PaymentId::parse("p").expect("id"))
        .await
        .expect("top up");
    let product = ProductId::parse("image.nano-banana").expect("id");
    for n in 0..3 {
        let quote = engine.billing().quote(user, &product, 1, Tier::Basic).await.expect("quote");
        let request = GenerationRequest::text(Capability::TextToImage, "x");
        let ordered = engine.order(user, quote.id, request, Priority::Normal).await;
        if n < 2 {
            assert!(ordered.is_ok(), "{ordered:?}");
        } else {
            assert!(
                matches!(
                    ordered,
                    Err(EngineError::Confirm(BillingError::Ledger(LedgerError::TooManyActiveHolds { .. })))
                ),
                "{ordered:?}"
            );
        }
    }
    assert_eq!(engine.billing().balance(user).await.expect("balance").active_holds, 2);
}

#[tokio::test]
async fn the_sweep_deletes_only_assets_past_retention() {
    // Proves the retention sweep deletes what is older than the retention and keeps the rest.
    let clock =
        Arc::new(rei::core::testing::clock::ManualClock::new(rei::core::time::Timestamp::from_millis(1_000_000)));
    let assets = MemoryAssetStore::new(clock.clone());
    let key = |k: &str| rei::core::generation::AssetKey::parse(k).expect("key");
    assets.put(&key("results/old.png"), vec![1]).await.expect("put");
    clock.advance(Duration::from_secs(3_600));
    assets.put(&key("results/new.png"), vec![2]).await.expect("put");
    let deleted = sweep_assets(&assets, clock.now(), Duration::from_secs(1_800), 100).await.expect("sweep");
    assert_eq!(deleted, 1);
    assert_eq!(assets.keys(), vec![key("results/new.png")]);
}
