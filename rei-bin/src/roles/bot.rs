//! The bot's wiring, shared by `rei bot` (long polling), `rei serve` (the webhook), `rei worker` (delivering
//! results) and `rei all`: the Bot API client, the members and growth, the payments told to the bot, and the bot
//! itself from the settings file.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use rei::Engine;
use rei::core::generation::AssetStore;
use rei::core::guards::{RateLimitPolicy, RateLimiter};
use rei::core::ids::UserId;
use rei::core::members::{Growth, GrowthConfig};
use rei::core::topups::TopUps;
use rei_adapters::telegram::{BotApi, Pacing};
use rei_bot::growth::BotObserver;
use rei_bot::{Bot, BotConfig, BotParts, Catalog};
use rei_http::stars::StarsHook;

use crate::settings::Settings;

/// Who the bot is and who runs it.
#[derive(clap::Args, Clone, Debug, Default)]
pub(crate) struct BotArgs {
    /// The bot's token from @BotFather: turns on the bot, Telegram Stars and the Telegram webhook.
    #[arg(long, env = "BOT_TOKEN", hide_env_values = true)]
    pub(crate) bot_token: Option<String>,
    /// The bot's admins, comma-separated Telegram ids; the first is the owner.
    #[arg(long, env = "ADMIN_IDS", value_delimiter = ',')]
    pub(crate) admin_ids: Vec<i64>,
    /// The bot's username, for referral links (default: asked of Telegram with getMe).
    #[arg(long, env = "BOT_USERNAME")]
    pub(crate) bot_username: Option<String>,
    /// The Bot API (a fake's URL in tests and the sandbox).
    #[arg(long, env = "TELEGRAM_API_URL", default_value = rei_adapters::telegram::DEFAULT_BASE_URL)]
    pub(crate) telegram_api_url: String,
    /// The settings file: prices, models, limits (default: the shipped one).
    #[arg(long = "config", env = "REI_CONFIG")]
    pub(crate) config: Option<PathBuf>,
    /// How fast the bot may send.
    #[command(flatten)]
    pub(crate) pacing: PacingArgs,
}

/// How fast this process's Bot API client sends, per chat and in all (each process paces its own sends).
#[derive(clap::Args, Clone, Debug)]
pub(crate) struct PacingArgs {
    /// Messages a second into all chats together: Telegram's limit is about 30 (paid broadcasts raise it).
    #[arg(long, env = "TELEGRAM_SENDS_PER_SECOND", default_value_t = 30,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub(crate) telegram_sends_per_second: u32,
    /// Messages a second into one chat, in bursts of twice that: Telegram's limit is about 1.
    #[arg(long, env = "TELEGRAM_CHAT_SENDS_PER_SECOND", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=1_000))]
    pub(crate) telegram_chat_sends_per_second: u32,
}

impl Default for PacingArgs {
    fn default() -> PacingArgs {
        PacingArgs { telegram_sends_per_second: 30, telegram_chat_sends_per_second: 1 }
    }
}

impl PacingArgs {
    /// The pacing these limits make.
    pub(crate) fn pacing(&self) -> Result<Pacing> {
        let second = Duration::from_secs(1);
        let global = self.telegram_sends_per_second;
        let chat = self.telegram_chat_sends_per_second;
        Ok(Pacing {
            per_chat: RateLimitPolicy::new(chat, second, chat.saturating_mul(2))
                .map_err(anyhow::Error::msg)
                .context("TELEGRAM_CHAT_SENDS_PER_SECOND")?,
            global: RateLimitPolicy::new(global, second, global)
                .map_err(anyhow::Error::msg)
                .context("TELEGRAM_SENDS_PER_SECOND")?,
        })
    }

    /// A Bot API client for `token` at `base_url`, paced by these limits.
    pub(crate) fn api(&self, base_url: &str, token: &str) -> Result<BotApi> {
        Ok(BotApi::new(base_url.trim_end_matches('/'), token)
            .map_err(anyhow::Error::msg)
            .context("failed to set up the Bot API client")?
            .with_pacing(self.pacing()?))
    }
}

impl BotArgs {
    /// The settings file, read.
    pub(crate) fn settings(&self) -> Result<Settings> {
        Settings::load(self.config.as_deref())
    }

    /// The Bot API client, when a token is set.
    pub(crate) fn api(&self) -> Result<Option<Arc<BotApi>>> {
        let Some(token) = &self.bot_token else { return Ok(None) };
        if token.trim().is_empty() || !token.contains(':') {
            bail!("BOT_TOKEN is not a bot token: it looks like 123456:ABC… (from @BotFather)");
        }
        Ok(Some(Arc::new(self.pacing.api(&self.telegram_api_url, token)?)))
    }
}

/// What every role that runs the bot opens: the database, Redis, the bot, the payments, and where the workers'
/// input photos go (`rei bot`, `rei serve`, `rei all`).
#[derive(clap::Args, Clone, Debug)]
pub(crate) struct BotRunArgs {
    /// postgres://… or sqlite://path.
    #[arg(long, env = "DATABASE_URL")]
    pub(crate) database_url: String,
    /// redis://host:port[/db] (or REDIS_HOST and REDIS_PORT): the job queue and the rate limits in Redis, shared
    /// by every process (default: the database's own queue and limits kept in this process).
    #[arg(long, env = "REDIS_URL")]
    pub(crate) redis_url: Option<String>,
    /// The bot.
    #[command(flatten)]
    pub(crate) bot: BotArgs,
    /// Payments.
    #[command(flatten)]
    pub(crate) payments: super::serve::PaymentArgs,
    /// Where input photos are put for the workers (the workers' directory).
    #[arg(long, env = "REI_ASSETS_DIR", default_value = "rei-assets")]
    pub(crate) assets_dir: PathBuf,
    /// Or the workers' bucket.
    #[command(flatten)]
    pub(crate) s3: crate::assets::S3Args,
}

/// Growth from the settings.
pub(crate) fn growth(engine: &Engine, settings: &Settings) -> Arc<Growth> {
    let g = &settings.growth;
    let config = GrowthConfig {
        trial: g.trial,
        referral_join_bonus: g.referral_join_bonus,
        referral_percent_bp: g.referral_percent_bp,
        ..GrowthConfig::default()
    };
    Arc::new(engine.growth(config))
}

/// The observer of credited top-ups: the referral share and the messages.
pub(crate) fn observer(engine: &Engine, growth: &Arc<Growth>, api: &Arc<BotApi>) -> Arc<BotObserver> {
    Arc::new(BotObserver {
        growth: growth.clone(),
        api: api.clone(),
        once: engine.updates().clone(),
        clock: engine.clock().clone(),
    })
}

/// The bot's behaviour from the settings and the arguments.
fn config(settings: &Settings, username: &str, admins: &[i64]) -> Result<BotConfig> {
    let b = &settings.bot;
    let mut config = BotConfig::new(username);
    config.admins = admins.iter().map(|id| UserId(*id)).collect();
    config.catalog = Catalog {
        images: b
            .images
            .iter()
            .map(|i| rei_bot::catalog::ImageModel {
                key: i.key.clone(),
                label: i.label.clone(),
                product: i.product.clone(),
                model: i.model.clone(),
            })
            .collect(),
        videos: b
            .videos
            .iter()
            .map(|v| rei_bot::catalog::VideoModel {
                key: v.key.clone(),
                label: v.label.clone(),
                model: v.model.clone(),
                durations: v.durations.clone(),
            })
            .collect(),
    };
    config.card_amounts.clone_from(&b.card_amounts);
    config.star_amounts.clone_from(&b.star_amounts);
    config.prompt_chars_max = b.prompt_chars_max;
    config.download_bytes_max = b.download_mb_max.saturating_mul(1024 * 1024);
    config.user_rate = RateLimitPolicy::new(b.updates_per_minute, Duration::from_secs(60), b.update_burst)
        .map_err(anyhow::Error::msg)
        .context("bot.updates_per_minute and bot.update_burst")?;
    config.history_page = b.history_page;
    config.time_zone.clone_from(&b.time_zone);
    Ok(config)
}

/// What a bot runs on besides the engine.
pub(crate) struct Wiring {
    pub(crate) api: Arc<BotApi>,
    pub(crate) growth: Arc<Growth>,
    pub(crate) topups: Option<Arc<TopUps>>,
    pub(crate) stars: Option<Arc<StarsHook>>,
    pub(crate) limiter: Arc<dyn RateLimiter>,
    pub(crate) assets: Arc<dyn AssetStore>,
}

/// The bot.
pub(crate) async fn build(engine: &Arc<Engine>, args: &BotArgs, settings: &Settings, w: Wiring) -> Result<Arc<Bot>> {
    let username = match &args.bot_username {
        Some(name) => name.clone(),
        None => {
            w.api
                .get_me()
                .await
                .map_err(anyhow::Error::msg)
                .context("failed to ask Telegram who the bot is (getMe): check BOT_TOKEN, or set BOT_USERNAME")?
                .username
        }
    };
    let config = config(settings, &username, &args.admin_ids)?;
    let parts = BotParts {
        engine: engine.clone(),
        api: w.api,
        growth: w.growth,
        topups: w.topups,
        stars: w.stars,
        limiter: w.limiter,
        assets: w.assets,
    };
    Bot::new(parts, config).map_err(anyhow::Error::msg).context("the bot's configuration")
}
