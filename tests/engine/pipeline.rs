//! The worker end to end with the real adapters against their fake servers: every scripted outcome of the fake
//! Gemini and the fake Kling, on SQLite and on PostgreSQL with the queue in Redis. Each test asserts the ledger
//! effect (exactly one capture or exactly one release), the job's final state, the attempts recorded, and the
//! one final message the user gets.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rei::adapters::assets::ObjectAssetStore;
use rei::adapters::fakes::gemini::{FakeGemini, FakeGeminiConfig, GeminiOutcome};
use rei::adapters::fakes::kling::{FakeKling, FakeKlingConfig, KlingOutcome};
use rei::adapters::gemini::{GeminiConfig, GeminiProvider};
use rei::adapters::kling::{KlingConfig, KlingProvider};
use rei::core::generation::{
    AssetStore, DownloadLimits, GenerationProvider, GenerationRequest, PipelineConfig, UserMessage, VideoMode,
};
use rei::core::ids::{PaymentId, ProductId, UserId};
use rei::core::jobs::{Job, JobState, Priority, RetryPolicy, WorkerId};
use rei::core::money::{Money, Ratio, UnitPrice};
use rei::core::pricing::Tier;
use rei::core::routing::{Capability, Catalogue, Offer, Router, RouterConfig};
use rei::core::testing::generation::RecordingMessenger;
use rei::{Engine, EngineConfig, PipelineParts};

static NEXT: AtomicU64 = AtomicU64::new(1);
const START: Money = Money::from_kopecks(100_000);
const ACCESS: &str = "ak-test";
const SECRET: &str = "sk-test";
const KEY: &str = "gemini-test";
/// The fake's answers past this are lost to the client: long enough that a loaded CI machine answers an ordinary
/// call in time, short enough that the timeout cases stay quick.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone, Copy, Debug)]
enum Store {
    Sqlite,
    PgRedis,
}

/// One scripted run: what the fakes answer, what must come of it.
struct Case {
    video: bool,
    gemini: Vec<GeminiOutcome>,
    kling: Vec<KlingOutcome>,
    /// `true`: the job succeeds and its price is captured once; `false`: it fails and the hold is released.
    charged: bool,
    /// Attempts the job must have made.
    attempts: usize,
    /// Submits the fake Kling must have received (a timeout asked about rather than resubmitted).
    kling_submits: Option<u64>,
}

impl Case {
    fn image(gemini: Vec<GeminiOutcome>, charged: bool, attempts: usize) -> Case {
        Case { video: false, gemini, kling: Vec::new(), charged, attempts, kling_submits: None }
    }

    fn video(kling: Vec<KlingOutcome>, charged: bool, attempts: usize) -> Case {
        Case { video: true, gemini: Vec::new(), kling, charged, attempts, kling_submits: None }
    }
}

struct Rig {
    engine: Engine,
    schema: Option<String>,
    _dir: tempfile::TempDir,
    gemini: FakeGemini,
    kling: FakeKling,
    messenger: Arc<RecordingMessenger>,
    assets: Arc<ObjectAssetStore>,
    providers: Vec<Arc<dyn GenerationProvider>>,
    catalogue: Catalogue,
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run the suite with scripts/test"))
}

async fn rig(store: Store) -> Rig {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = tempfile::Builder::new().prefix("rei-pipeline-").tempdir().expect("temp dir");
    let retry = RetryPolicy {
        max_attempts: 3,
        base: Duration::from_millis(10),
        cap: Duration::from_millis(40),
        jitter: Ratio::ZERO,
    };
    let mut config = EngineConfig { retry, ..EngineConfig::default() };
    let messenger = RecordingMessenger::new();
    let (url, schema) = match store {
        Store::Sqlite => (format!("sqlite://{}", dir.path().join("rei.db").display()), None),
        Store::PgRedis => {
            let schema = format!("rei_pipeline_{}_{n}", std::process::id());
            config.postgres_schema = Some(schema.clone());
            config.redis_namespace = format!("rei-pipeline-{}-{n}", std::process::id());
            (env("REI_TEST_POSTGRES_URL"), Some(schema))
        }
    };
    let mut builder = Engine::builder().database_url(url).config(config).messenger(messenger.clone());
    if matches!(store, Store::PgRedis) {
        builder = builder.redis_url(env("REI_TEST_REDIS_URL"));
    }
    let engine = builder.open().await.expect("engine");

    let gemini = FakeGemini::start(FakeGeminiConfig { api_key: KEY.into(), thoughts: true }).await.expect("gemini");
    let kling = FakeKling::start(FakeKlingConfig::new(ACCESS, SECRET)).await.expect("kling");
    let gemini_config = GeminiConfig { base_url: gemini.base_url(), timeout: CLIENT_TIMEOUT, ..GeminiConfig::new(KEY) };
    let image_cost = gemini_config.price("gemini-2.5-flash-image", None).expect("price");
    let kling_config = KlingConfig {
        base_url: kling.base_url(),
        request_timeout: CLIENT_TIMEOUT,
        ..KlingConfig::new(ACCESS, SECRET, UnitPrice::from_money(Money::from_kopecks(1_150)))
    };
    let offer = |p: &rei::core::ids::ProviderId, model: &str, c, cost| {
        Offer::new(p.clone(), model, c, UnitPrice::from_money(cost), 80).expect("offer")
    };
    let catalogue = Catalogue::new(vec![
        offer(&gemini_config.provider_id, "gemini-2.5-flash-image", Capability::TextToImage, image_cost),
        offer(&kling_config.provider_id, "kling-v2-6", Capability::TextToVideo, Money::from_kopecks(580)),
    ])
    .expect("catalogue");
    let providers: Vec<Arc<dyn GenerationProvider>> = vec![
        Arc::new(GeminiProvider::new(gemini_config).expect("gemini adapter")),
        Arc::new(KlingProvider::new(kling_config, engine.clock().clone()).expect("kling adapter")),
    ];
    let assets = Arc::new(ObjectAssetStore::local(&dir.path().join("assets"), 1024 * 1024).await.expect("assets"));
    Rig { engine, schema, _dir: dir, gemini, kling, messenger, assets, providers, catalogue }
}

impl Rig {
    /// Orders one job and runs it through the pipeline until it rests (retries included).
    async fn run(&self, case: &Case) -> Job {
        let config = PipelineConfig {
            poll_interval: Duration::from_millis(20),
            attempt_timeout: Duration::from_secs(10),
            download: DownloadLimits { max_bytes: 512 * 1024, timeout: Duration::from_secs(5) },
            heartbeat_margin: Duration::from_secs(1),
            ..PipelineConfig::default()
        };
        let router = Router::new(self.catalogue.clone(), RouterConfig::default()).expect("router");
        let pipeline = self.engine.pipeline(PipelineParts {
            providers: self.providers.clone(),
            router,
            assets: self.assets.clone(),
            config,
            faults: None,
        });
        let user = UserId(1);
        let billing = self.engine.billing();
        billing.top_up(user, START, PaymentId::parse("pay-1").expect("id")).await.expect("top up");
        let (product, request) = if case.video {
            let mut request = GenerationRequest::text(Capability::TextToVideo, "waves at dawn");
            request.duration_s = Some(5);
            request.mode = Some(VideoMode::Std);
            ("video.kling-2.6.5s", request)
        } else {
            ("image.nano-banana", GenerationRequest::text(Capability::TextToImage, "a red panda"))
        };
        let quote = billing.quote(user, &ProductId::parse(product).expect("id"), 1, Tier::Basic).await.expect("quote");
        let job = self.engine.order(user, quote.id, request, Priority::Normal).await.expect("order");
        let worker = WorkerId::parse("w1").expect("name");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let stored = self.engine.jobs().get(job.id).await.expect("get").expect("job");
            if stored.state.is_terminal() {
                return stored;
            }
            assert!(tokio::time::Instant::now() < deadline, "job still {} after 30 s", stored.state);
            match self.engine.jobs().lease(&worker).await.expect("lease") {
                Some(leased) => {
                    pipeline.run(leased).await.expect("run");
                }
                None => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    }

    async fn close(self) {
        if let (Some(schema), Some(pool)) = (&self.schema, self.engine.database().postgres()) {
            rei::adapters::postgres::drop_schema(pool, schema).await.expect("drop schema");
        }
        self.engine.close().await;
        self.gemini.stop().await;
        self.kling.stop().await;
    }
}

async fn check(store: Store, case: Case) {
    let rig = rig(store).await;
    for outcome in &case.gemini {
        rig.gemini.script().push(outcome.clone());
    }
    for outcome in &case.kling {
        rig.kling.script().push(outcome.clone());
    }
    let job = rig.run(&case).await;
    let balance = rig.engine.billing().balance(job.user).await.expect("balance");
    assert_eq!(balance.held, Money::ZERO, "nothing stays held");
    let finals: Vec<UserMessage> = rig
        .messenger
        .about(job.id)
        .into_iter()
        .filter(|m| !matches!(m, UserMessage::Working { .. } | UserMessage::Progress { .. }))
        .collect();
    assert_eq!(finals.len(), 1, "one final message: {finals:?}");
    if case.charged {
        assert_eq!(job.state, JobState::Succeeded, "{job:?}");
        assert_eq!(balance.available, Money::from_kopecks(START.kopecks() - job.price.kopecks()), "one capture");
        let key = job.result.clone().expect("a result");
        let stored = rig.assets.get(&key).await.expect("asset").expect("the result is stored");
        assert!(!stored.is_empty());
        assert!(matches!(&finals[0], UserMessage::Delivered { asset: Some(k), .. } if *k == key), "{finals:?}");
    } else {
        assert_eq!(job.state, JobState::Failed, "{job:?}");
        assert_eq!(balance.available, START, "the hold released once");
        assert!(matches!(&finals[0], UserMessage::Failed { .. }), "{finals:?}");
    }
    let attempts = rig.engine.attempts().for_job(job.id).await.expect("attempts");
    assert_eq!(attempts.len(), case.attempts, "{attempts:?}");
    if let Some(submits) = case.kling_submits {
        assert_eq!(rig.kling.records().submits, submits, "submits to Kling");
    }
    assert!(rig.engine.billing().verify().await.expect("verify").is_clean());
    rig.close().await;
}

fn thrice<T: Clone>(t: T) -> Vec<T> {
    vec![t.clone(), t.clone(), t]
}

macro_rules! cases {
    ($($name:ident => $case:expr;)*) => {
        mod sqlite {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test]
                async fn $name() {
                    super::check(super::Store::Sqlite, $case).await;
                }
            )*
        }
        mod pg_redis {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test]
                async fn $name() {
                    super::check(super::Store::PgRedis, $case).await;
                }
            )*
        }
    };
}

cases! {
    image_success => Case::image(vec![GeminiOutcome::Success], true, 1);
    image_slow => Case::image(vec![GeminiOutcome::Slow(Duration::from_millis(150))], true, 1);
    image_5xx_then_success => Case::image(vec![GeminiOutcome::ServerError], true, 2);
    image_5xx_every_attempt => Case::image(thrice(GeminiOutcome::Overloaded), false, 3);
    image_timeout_every_attempt => Case::image(thrice(GeminiOutcome::Timeout), false, 3);
    image_success_after_our_timeout => Case::image(vec![GeminiOutcome::SucceedAfterTimeout(Duration::from_secs(3))], true, 2);
    image_content_block => Case::image(vec![GeminiOutcome::Blocked], false, 1);
    image_safety_refusal => Case::image(vec![GeminiOutcome::ImageSafety], false, 1);
    image_region_refused_every_attempt => Case::image(thrice(GeminiOutcome::RegionRefused), false, 3);
    image_garbage_then_success => Case::image(vec![GeminiOutcome::Garbage], true, 2);
    image_huge_then_success => Case::image(vec![GeminiOutcome::HugeImage(2 * 1024 * 1024)], true, 2);
    video_success => Case::video(vec![KlingOutcome::Success], true, 1);
    video_out_of_balance_every_attempt => Case::video(thrice(KlingOutcome::OutOfBalance), false, 3);
    video_content_block => Case::video(vec![KlingOutcome::ContentBlocked], false, 1);
    video_garbage_then_success => Case::video(vec![KlingOutcome::Garbage], true, 2);
    video_huge_result_then_success => Case::video(vec![KlingOutcome::HugeResult(2 * 1024 * 1024)], true, 2);
    video_truncated_result_then_success => Case::video(vec![KlingOutcome::TruncatedResult], true, 2);
    video_task_fails_then_success => Case::video(vec![KlingOutcome::TaskFails("internal error".into())], true, 2);
    video_success_after_our_timeout => Case {
        kling_submits: Some(1),
        ..Case::video(vec![KlingOutcome::SucceedAfterTimeout(Duration::from_secs(3))], true, 1)
    };
    video_timeout_then_success => Case {
        kling_submits: Some(2),
        ..Case::video(vec![KlingOutcome::Timeout], true, 2)
    };
}
