//! The whole bot on one machine with no account anywhere (feature `sandbox`): a SQLite file and an asset
//! directory, the in-process queue, and local fakes of the Telegram Bot API, YooKassa, Gemini (two: a main one
//! and a reserve) and Kling that speak their real wire formats. [`Stack`] wires the real bot, worker and HTTP
//! server over them; [`scenario::play`] drives users through it over HTTP as Telegram and YooKassa would.

pub mod scenario;

pub use scenario::{Driver, ScenarioOptions, Summary, play};

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use rei::{Engine, PipelineParts, WorkerOptions, WorkerReport};
use rei_adapters::assets::ObjectAssetStore;
use rei_adapters::fakes::gemini::{FakeGemini, FakeGeminiConfig};
use rei_adapters::fakes::kling::{FakeKling, FakeKlingConfig};
use rei_adapters::fakes::telegram::FakeTelegram;
use rei_adapters::fakes::yookassa::FakeYooKassa;
use rei_adapters::gemini::{GeminiConfig, GeminiProvider};
use rei_adapters::kling::{DEFAULT_MODELS, KlingConfig, KlingProvider};
use rei_adapters::telegram::{BotApi, Pacing};
use rei_adapters::yookassa::{YooKassa, YooKassaConfig};
use rei_core::generation::{AssetStore, GenerationProvider, PipelineConfig};
use rei_core::guards::{InProcessRateLimiter, RateLimiter};
use rei_core::ids::{ProviderId, UserId};
use rei_core::jobs::WorkerId;
use rei_core::members::GrowthConfig;
use rei_core::money::{Money, UnitPrice};
use rei_core::routing::{Capability, Catalogue, Offer, Router, RouterConfig};
use rei_core::stars::{StarsConfig, StarsPayments};
use rei_core::topups::{SourceAllowlist, TopUpsConfig};
use rei_http::webhooks::{TelegramHook, WebhookSources};
use rei_http::{HttpConfig, HttpState};
use tokio::sync::watch;

use crate::delivery::{Relay, TelegramMessenger};
use crate::growth::BotObserver;
use crate::{Bot, BotConfig, BotParts};

/// The sandbox bot's token (the fake accepts only it).
pub const TOKEN: &str = "123456:sandbox-token";
/// The webhook's secret token.
pub const WEBHOOK_SECRET: &str = "sandbox-webhook-secret";
/// The sandbox's admin (and owner).
pub const ADMIN: i64 = 1_000;
/// The reserve image provider's id.
pub const RESERVE: &str = "gemini-reserve";
const SHOP: &str = "sandbox-shop";
const SHOP_SECRET: &str = "sandbox-shop-secret";
const KLING_ACCESS: &str = "sandbox-kling-access";
const KLING_SECRET: &str = "sandbox-kling-secret";
const GEMINI_KEY: &str = "sandbox-gemini-key";
const IMAGE_MODEL: &str = "gemini-2.5-flash-image";
/// Our cost per second of each Kling model, kopecks (as the worker's defaults).
const KLING_COSTS: [(&str, i64); 3] = [("kling-v3", 900), ("kling-v2-6", 580), ("kling-v1-5", 400)];

/// Why the stack did not start.
#[derive(Debug, thiserror::Error)]
#[error("the sandbox: {0}")]
pub struct StackError(pub String);

fn err(what: &str) -> impl Fn(&dyn std::fmt::Display) -> StackError + '_ {
    move |e| StackError(format!("{what}: {e}"))
}

/// How the stack runs.
#[derive(Clone)]
pub struct StackOptions {
    /// Where the database and the assets go.
    pub dir: PathBuf,
    /// How the bot paces its sends: Telegram's limits (the default), or faster for tests.
    pub pacing: Pacing,
    /// How often the worker asks Kling about a video.
    pub poll_interval: Duration,
    /// The engine's clock (default: the system's).
    pub clock: Option<Arc<dyn rei_core::time::Clock>>,
    /// How many updates a user may send (default: the bot's).
    pub user_rate: Option<rei_core::guards::RateLimitPolicy>,
    /// Holds, spend caps and the jobs a user may run at once (default: the engine's).
    pub billing: Option<rei_core::billing::BillingConfig>,
}

impl StackOptions {
    /// The stack in `dir` under Telegram's published send limits.
    #[must_use]
    pub fn new(dir: &Path) -> StackOptions {
        StackOptions {
            dir: dir.to_owned(),
            pacing: Pacing::default(),
            poll_interval: Duration::from_millis(100),
            clock: None,
            user_rate: None,
            billing: None,
        }
    }
}

fn provider_id(name: &str) -> Result<rei_core::ids::ProviderId, StackError> {
    rei_core::ids::ProviderId::parse(name).map_err(|e| StackError(format!("provider id {name}: {e}")))
}

/// The running sandbox.
pub struct Stack {
    /// The engine.
    pub engine: Arc<Engine>,
    /// The bot.
    pub bot: Arc<Bot>,
    /// The fake Bot API.
    pub telegram: FakeTelegram,
    /// The fake YooKassa.
    pub yookassa: FakeYooKassa,
    /// The main image provider.
    pub gemini: FakeGemini,
    /// The reserve image provider.
    pub reserve: FakeGemini,
    /// The video provider.
    pub kling: FakeKling,
    /// The HTTP server's address.
    pub addr: SocketAddr,
    http: reqwest::Client,
    next_update: AtomicI64,
    stop: watch::Sender<bool>,
    worker: tokio::task::JoinHandle<WorkerReport>,
    server: tokio::task::JoinHandle<()>,
}

fn offer(
    provider: &ProviderId,
    model: &str,
    capability: Capability,
    cost: Money,
    quality: u8,
) -> Result<Offer, StackError> {
    Offer::new(provider.clone(), model, capability, UnitPrice::from_money(cost), quality)
        .map_err(|e| err("an offer")(&e))
}

impl Stack {
    /// A sign-in link to the operator console for the sandbox's admin: the Login Widget's redirect with an
    /// answer signed by the fake bot's token, good for a day.
    #[must_use]
    pub fn console_link(&self) -> String {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let fields = [("id", ADMIN.to_string()), ("first_name", "Admin".to_owned()), ("auth_date", now.to_string())];
        let signed =
            rei_http::console::session::sign_login(fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(), TOKEN);
        let query: Vec<String> = signed.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!("http://{}/admin/auth/telegram?{}", self.addr, query.join("&"))
    }

    /// Starts the fakes, the engine on `dir/rei.db`, the worker, the bot and the HTTP server.
    ///
    /// # Errors
    /// [`StackError`] naming what did not start.
    pub async fn start(options: StackOptions) -> Result<Stack, StackError> {
        std::fs::create_dir_all(&options.dir).map_err(|e| err("the sandbox directory")(&e))?;
        let telegram = FakeTelegram::start(TOKEN).await.map_err(|e| err("the fake Telegram")(&e))?;
        let yookassa = FakeYooKassa::start(SHOP, SHOP_SECRET).await.map_err(|e| err("the fake YooKassa")(&e))?;
        let gemini_config = || FakeGeminiConfig { api_key: GEMINI_KEY.to_owned(), thoughts: false };
        let gemini = FakeGemini::start(gemini_config()).await.map_err(|e| err("the fake Gemini")(&e))?;
        let reserve = FakeGemini::start(gemini_config()).await.map_err(|e| err("the reserve fake Gemini")(&e))?;
        let mut kling_config = FakeKlingConfig::new(KLING_ACCESS, KLING_SECRET);
        if let Some(clock) = &options.clock {
            kling_config.clock = clock.clone();
        }
        let kling = FakeKling::start(kling_config).await.map_err(|e| err("the fake Kling")(&e))?;

        let relay = Relay::new();
        let url = format!("sqlite://{}", options.dir.join("rei.db").display());
        let mut builder = Engine::builder().database_url(&url).messenger(relay.clone());
        if let Some(billing) = &options.billing {
            builder = builder.config(rei::EngineConfig { billing: billing.clone(), ..rei::EngineConfig::default() });
        }
        if let Some(clock) = &options.clock {
            builder = builder.clock(clock.clone());
        }
        let engine = Arc::new(builder.open().await.map_err(|e| err("the database")(&e))?);
        let clock = engine.clock().clone();

        // Providers: two Gemini accounts (the reserve ranked lower) and Kling.
        let main_id = GeminiConfig::new(GEMINI_KEY).provider_id;
        let reserve_id = ProviderId::parse(RESERVE).map_err(|e| err("the reserve's id")(&e))?;
        let mut providers: Vec<Arc<dyn GenerationProvider>> = Vec::new();
        let mut offers = Vec::new();
        for (fake, id, quality) in [(&gemini, &main_id, 90), (&reserve, &reserve_id, 70)] {
            let config =
                GeminiConfig { base_url: fake.base_url(), provider_id: id.clone(), ..GeminiConfig::new(GEMINI_KEY) };
            let cost = config.price(IMAGE_MODEL, None).ok_or_else(|| StackError("no Gemini price".to_owned()))?;
            for capability in [Capability::TextToImage, Capability::ImageEdit] {
                offers.push(offer(id, IMAGE_MODEL, capability, cost, quality)?);
            }
            providers.push(Arc::new(GeminiProvider::new(config).map_err(|e| err("Gemini")(&e))?));
        }
        let kling_config = KlingConfig {
            base_url: kling.base_url(),
            ..KlingConfig::new(KLING_ACCESS, KLING_SECRET, UnitPrice::from_money(Money::from_kopecks(1_150)))
        };
        for model in DEFAULT_MODELS {
            let per_second = KLING_COSTS.iter().find(|(m, _)| *m == model.model_name).map_or(580, |(_, c)| *c);
            for capability in [Capability::TextToVideo, Capability::ImageToVideo, Capability::VideoToVideo] {
                offers.push(offer(
                    &kling_config.provider_id,
                    model.model_name,
                    capability,
                    Money::from_kopecks(per_second),
                    85,
                )?);
            }
        }
        providers.push(Arc::new(KlingProvider::new(kling_config, clock.clone()).map_err(|e| err("Kling")(&e))?));
        let catalogue = Catalogue::new(offers).map_err(|e| err("the catalogue")(&e))?;
        // A breaker quick to open and to probe again, so that a failover shows within the scenario.
        let defaults = RouterConfig::default();
        let router_config = RouterConfig {
            breaker: rei_core::routing::BreakerConfig {
                trip: rei_core::routing::Trip::ConsecutiveFailures { failures_min: 2 },
                open_for: Duration::from_secs(5),
                ..defaults.breaker
            },
            ..defaults
        };
        let router = Router::new(catalogue, router_config).map_err(|e| err("the router")(&e))?;
        let assets: Arc<dyn AssetStore> = Arc::new(
            ObjectAssetStore::local(&options.dir.join("assets"), 64 * 1024 * 1024)
                .await
                .map_err(|e| err("the asset directory")(&e))?,
        );
        let pipeline = Arc::new(engine.pipeline(PipelineParts {
            providers,
            router,
            assets: assets.clone(),
            config: PipelineConfig { poll_interval: options.poll_interval, ..PipelineConfig::default() },
            faults: None,
        }));

        // The bot and its payments.
        let api = Arc::new(
            BotApi::new(&telegram.base_url(), TOKEN)
                .map_err(|e| err("the Bot API client")(&e))?
                .with_pacing(options.pacing),
        );
        let growth = Arc::new(engine.growth(GrowthConfig::default()));
        let observer = Arc::new(BotObserver {
            growth: growth.clone(),
            api: api.clone(),
            once: engine.updates().clone(),
            clock: clock.clone(),
        });
        let gateway =
            YooKassa::new(YooKassaConfig { base_url: yookassa.base_url(), ..YooKassaConfig::new(SHOP, SHOP_SECRET) })
                .map_err(|e| err("the YooKassa client")(&e))?;
        let topups =
            Arc::new(engine.top_ups(Arc::new(gateway), TopUpsConfig::default()).with_observer(observer.clone()));
        let stars = StarsPayments::new(engine.billing().clone(), StarsConfig::default())
            .map_err(|e| err("Stars")(&e))?
            .with_observer(observer);
        let stars = Arc::new(rei_http::stars::StarsHook {
            payments: Arc::new(stars),
            api: api.clone(),
            records: engine.payments(),
            clock: clock.clone(),
        });
        let limiter: Arc<dyn RateLimiter> = Arc::new(InProcessRateLimiter::new());
        let mut config = BotConfig::new("rei_sandbox_bot");
        config.admins = vec![UserId(ADMIN)];
        config.progress_every = Duration::from_millis(200);
        if let Some(rate) = options.user_rate {
            config.user_rate = rate;
        }
        let parts = BotParts {
            engine: engine.clone(),
            api: api.clone(),
            growth: growth.clone(),
            topups: Some(topups.clone()),
            stars: Some(stars.clone()),
            limiter: limiter.clone(),
            assets: assets.clone(),
        };
        let bot = Bot::new(parts, config).map_err(|e| err("the bot")(&e))?;
        let console_assets = assets.clone();
        relay.set(Arc::new(TelegramMessenger {
            api,
            assets,
            members: growth.members().clone(),
            once: engine.updates().clone(),
            conversations: engine.conversations().clone(),
            clock,
        }));

        // The worker and the HTTP server.
        let (stop, stopped) = watch::channel(false);
        let wait = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let mut worker_options =
            WorkerOptions::named(WorkerId::parse("sandbox-worker").map_err(|e| err("the worker's name")(&e))?);
        worker_options.concurrency = 8;
        worker_options.idle_poll_max = Duration::from_millis(50);
        worker_options.grace = Duration::from_secs(10);
        let worker = tokio::spawn(rei::run_worker(pipeline, worker_options, wait(stopped.clone()), |_| {}));
        let mut state = HttpState::with_limiter(engine.clone(), HttpConfig::default(), limiter);
        state.topups = Some(topups);
        state.stars = Some(stars);
        state.telegram = Some(TelegramHook { secret: WEBHOOK_SECRET.to_owned(), handler: bot.clone() });
        // The console signs in the sandbox's admin through the Login Widget, with the fake bot's token.
        let mut console = rei_http::console::ConsoleConfig::new(
            rei_http::console::session::Signer::random().map_err(|e| err("the console's secret")(&e))?,
        );
        console.bot_token = Some(TOKEN.to_owned());
        console.bot_username = Some("rei_sandbox_bot".to_owned());
        console.admins = vec![ADMIN];
        console.auth_max_age = Duration::from_secs(24 * 3_600);
        console.models =
            vec![(provider_id("gemini")?, IMAGE_MODEL.to_owned()), (provider_id(RESERVE)?, IMAGE_MODEL.to_owned())];
        state.console = console;
        state.assets = Some(console_assets);
        state.webhooks = WebhookSources {
            allowlist: SourceAllowlist::parse(&["127.0.0.1/32"]).map_err(|e| err("the allowlist")(&e))?,
            ..WebhookSources::default()
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| err("the listener")(&e))?;
        let addr = listener.local_addr().map_err(|e| err("the listener")(&e))?;
        let router = rei_http::router(Arc::new(state));
        let server = tokio::spawn(async move {
            if let Err(e) = rei_http::serve(listener, router, wait(stopped)).await {
                tracing::error!(error = %e, "the sandbox server failed");
            }
        });
        let http = reqwest::Client::builder().build().map_err(|e| err("the HTTP client")(&e))?;
        Ok(Stack {
            engine,
            bot,
            telegram,
            yookassa,
            gemini,
            reserve,
            kling,
            addr,
            http,
            next_update: AtomicI64::new(1),
            stop,
            worker,
            server,
        })
    }

    /// A fresh update id.
    pub fn update_id(&self) -> i64 {
        self.next_update.fetch_add(1, Ordering::Relaxed)
    }

    /// Delivers an update body to the webhook as Telegram does; returns the HTTP status.
    ///
    /// # Errors
    /// [`StackError`] when the server did not answer.
    pub async fn deliver(&self, body: Vec<u8>) -> Result<u16, StackError> {
        let response = self
            .http
            .post(format!("http://{}/webhooks/telegram", self.addr))
            .header("content-type", "application/json")
            .header("x-telegram-bot-api-secret-token", WEBHOOK_SECRET)
            .body(body)
            .send()
            .await
            .map_err(|e| err("the webhook")(&e))?;
        Ok(response.status().as_u16())
    }

    /// Pays YooKassa payment `id` (as the payer would on the payment page) and posts its notice to the server.
    ///
    /// # Errors
    /// [`StackError`] when the payment is unknown to the fake or the server did not answer.
    pub async fn pay_card(&self, id: &str) -> Result<u16, StackError> {
        if !self.yookassa.set_status(id, "succeeded") {
            return Err(StackError(format!("no payment {id} at the fake YooKassa")));
        }
        let notice = serde_json::json!({"type": "notification", "event": "payment.succeeded", "object": {"id": id}});
        let response = self
            .http
            .post(format!("http://{}/webhooks/yookassa", self.addr))
            .json(&notice)
            .send()
            .await
            .map_err(|e| err("the YooKassa webhook")(&e))?;
        Ok(response.status().as_u16())
    }

    /// Stops the worker (finishing what it has in flight) and the server.
    pub async fn stop(self) -> WorkerReport {
        let _ = self.stop.send(true);
        let report = self.worker.await.unwrap_or_default();
        let _ = self.server.await;
        self.engine.close().await;
        report
    }
}
