//! `rei serve`: the HTTP surface (the payment webhooks, the `/v1` API, `/openapi.json`, health and metrics) on one
//! listener, with the periodic verify whose drift `/metrics` reports. Payment credentials are optional: without
//! them the payment routes answer a clear 503. On SIGTERM or Ctrl-C it stops accepting and lets requests in flight
//! finish.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use rei::core::topups::{SourceAllowlist, TopUpsConfig};
use rei_adapters::yookassa::{YooKassa, YooKassaConfig};
use rei_http::webhooks::WebhookSources;
use rei_http::{HttpConfig, HttpState};

/// What `rei serve` was asked to do.
#[derive(clap::Args, Clone, Debug)]
pub(crate) struct ServeArgs {
    /// The address to listen on (`0.0.0.0:8080` for every interface).
    #[arg(long, env = "REI_LISTEN", default_value = "127.0.0.1:8080")]
    pub(crate) listen: SocketAddr,
    /// The database, Redis, the bot, payments and assets.
    #[command(flatten)]
    pub(crate) run: super::bot::BotRunArgs,
    /// Where payment notices may come from, as networks (default: YooKassa's published ranges).
    #[arg(long, env = "REI_WEBHOOK_ALLOWLIST", value_delimiter = ',')]
    pub(crate) webhook_allowlist: Vec<String>,
    /// Reverse proxies whose X-Forwarded-For is believed, as networks (default: none).
    #[arg(long, env = "REI_TRUSTED_PROXIES", value_delimiter = ',')]
    pub(crate) trusted_proxies: Vec<String>,
    /// The secret token given to setWebhook (1 to 256 of A-Za-z0-9 _ -): Telegram's updates must carry it.
    #[arg(long, env = "TELEGRAM_WEBHOOK_SECRET", hide_env_values = true)]
    pub(crate) telegram_webhook_secret: Option<String>,
    /// The bot's public webhook URL (https://…/webhooks/telegram): registered with setWebhook at start.
    #[arg(long, env = "TELEGRAM_WEBHOOK_URL")]
    pub(crate) telegram_webhook_url: Option<String>,
    /// Seconds between two passes of the reconciler over pending payments (one server leads it).
    #[arg(long, env = "REI_RECONCILE_INTERVAL_SECONDS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=3_600))]
    pub(crate) reconcile_interval_seconds: u64,
    /// Seconds between two runs of verify (its drift is in /metrics).
    #[arg(long, env = "REI_VERIFY_INTERVAL_SECONDS", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(10..=86_400))]
    pub(crate) verify_interval_seconds: u64,
    /// The largest request body, in KiB.
    #[arg(long, env = "REI_BODY_LIMIT_KB", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=10_240))]
    pub(crate) body_limit_kb: u64,
    /// How long a request may take, in seconds.
    #[arg(long, env = "REI_REQUEST_TIMEOUT_SECONDS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=600))]
    pub(crate) request_timeout_seconds: u64,
    /// The operator console's sign-in.
    #[command(flatten)]
    pub(crate) console: ConsoleArgs,
}

/// The operator console under /admin: who signs in and how sessions are signed.
#[derive(clap::Args, Clone, Debug)]
pub(crate) struct ConsoleArgs {
    /// Signs the console's sessions (at least 32 characters); every server of a deployment needs the same one.
    /// Unset: a random secret, and sessions end when the process does.
    #[arg(long, env = "CONSOLE_SECRET", hide_env_values = true)]
    pub(crate) console_secret: Option<String>,
    /// The oldest Telegram Login Widget answer accepted, in seconds.
    #[arg(long, env = "CONSOLE_AUTH_MAX_AGE_SECONDS", default_value_t = 3_600,
          value_parser = clap::value_parser!(u64).range(10..=86_400 * 7))]
    pub(crate) console_auth_max_age_seconds: u64,
    /// How long a console session lasts, in hours.
    #[arg(long, env = "CONSOLE_SESSION_HOURS", default_value_t = 12,
          value_parser = clap::value_parser!(u64).range(1..=24 * 30))]
    pub(crate) console_session_hours: u64,
}

/// The console's configuration: the Login Widget for the bot's `ADMIN_IDS` when a bot is configured, API keys
/// always.
pub(crate) fn console(args: &ConsoleArgs, bot: &super::bot::BotArgs) -> Result<rei_http::console::ConsoleConfig> {
    use rei_http::console::session::Signer;
    let signer = match &args.console_secret {
        Some(secret) if secret.len() < 32 => bail!("CONSOLE_SECRET must be at least 32 characters"),
        Some(secret) => Signer::new(secret.as_bytes()),
        None => Signer::random().context("no randomness for the console's sessions: set CONSOLE_SECRET")?,
    };
    let mut config = rei_http::console::ConsoleConfig::new(signer);
    config.bot_token.clone_from(&bot.bot_token);
    config.bot_username.clone_from(&bot.bot_username);
    config.admins.clone_from(&bot.admin_ids);
    config.auth_max_age = Duration::from_secs(args.console_auth_max_age_seconds);
    config.session_ttl = Duration::from_secs(args.console_session_hours * 3_600);
    config.models = crate::providers::known_models();
    Ok(config)
}

/// How top-ups are taken: YooKassa (with 54-FZ receipts) and Telegram Stars.
#[derive(clap::Args, Clone, Debug)]
pub(crate) struct PaymentArgs {
    /// YooKassa's shop id; with the secret key it turns top-ups on.
    #[arg(long, env = "YOOKASSA_SHOP_ID")]
    pub(crate) yookassa_shop_id: Option<String>,
    /// YooKassa's secret key.
    #[arg(long, env = "YOOKASSA_SECRET_KEY", hide_env_values = true)]
    pub(crate) yookassa_secret_key: Option<String>,
    /// YooKassa's API (a fake's URL in tests and the sandbox).
    #[arg(long, env = "YOOKASSA_BASE_URL", default_value = "https://api.yookassa.ru")]
    pub(crate) yookassa_base_url: String,
    /// The VAT code of the shop's register: turns on 54-FZ receipts sent with every payment.
    #[arg(long, env = "YOOKASSA_RECEIPT_VAT_CODE", value_parser = clap::value_parser!(u8).range(1..=12))]
    pub(crate) yookassa_receipt_vat_code: Option<u8>,
    /// Where receipts go: an e-mail (or set the phone).
    #[arg(long, env = "YOOKASSA_RECEIPT_EMAIL")]
    pub(crate) yookassa_receipt_email: Option<String>,
    /// Where receipts go: a phone, +7….
    #[arg(long, env = "YOOKASSA_RECEIPT_PHONE")]
    pub(crate) yookassa_receipt_phone: Option<String>,
    /// The receipt's item.
    #[arg(long, env = "YOOKASSA_RECEIPT_ITEM", default_value = "Пополнение баланса")]
    pub(crate) yookassa_receipt_item: String,
    /// The receipt's payment mode.
    #[arg(long, env = "YOOKASSA_RECEIPT_PAYMENT_MODE", default_value = "full_prepayment")]
    pub(crate) yookassa_receipt_payment_mode: String,
    /// The receipt's payment subject.
    #[arg(long, env = "YOOKASSA_RECEIPT_PAYMENT_SUBJECT", default_value = "service")]
    pub(crate) yookassa_receipt_payment_subject: String,
    /// The shop's tax system code, when its register needs one.
    #[arg(long, env = "YOOKASSA_RECEIPT_TAX_SYSTEM", value_parser = clap::value_parser!(u8).range(1..=6))]
    pub(crate) yookassa_receipt_tax_system: Option<u8>,
    /// A secret the shop's notification URL carries as `?secret=…`, checked besides the source address.
    #[arg(long, env = "YOOKASSA_WEBHOOK_SECRET", hide_env_values = true)]
    pub(crate) yookassa_webhook_secret: Option<String>,
    /// Roubles credited per Star (default: the settings file's `stars.rub_per_star`).
    #[arg(long, env = "STARS_RUB_PER_STAR")]
    pub(crate) stars_rub_per_star: Option<String>,
}

fn networks(list: &[String], what: &str) -> Result<Option<SourceAllowlist>> {
    if list.is_empty() {
        return Ok(None);
    }
    let refs: Vec<&str> = list.iter().map(String::as_str).collect();
    SourceAllowlist::parse(&refs).map(Some).with_context(|| format!("failed to read {what}"))
}

/// The card top-ups and the Stars hook, each when configured.
pub(crate) type Payments = (Option<Arc<rei::core::topups::TopUps>>, Option<Arc<rei_http::stars::StarsHook>>);

/// The card and Stars top-ups, each when configured, telling `observer` of every credit.
pub(crate) fn payments(
    engine: &Arc<rei::Engine>,
    args: &PaymentArgs,
    settings: &crate::settings::Settings,
    api: Option<&Arc<rei_adapters::telegram::BotApi>>,
    observer: Option<Arc<dyn rei::core::topups::TopUpObserver>>,
) -> Result<Payments> {
    let topups = match (&args.yookassa_shop_id, &args.yookassa_secret_key) {
        (Some(shop), Some(secret)) => {
            let gateway = YooKassa::new(YooKassaConfig {
                base_url: args.yookassa_base_url.trim_end_matches('/').to_owned(),
                ..YooKassaConfig::new(shop, secret)
            })
            .context("failed to set up the YooKassa client")?;
            let config = TopUpsConfig { receipt: receipt(args)?, ..TopUpsConfig::default() };
            let mut topups = engine.top_ups(Arc::new(gateway), config);
            if let Some(o) = &observer {
                topups = topups.with_observer(o.clone());
            }
            Some(Arc::new(topups))
        }
        (None, None) => None,
        _ => bail!("YOOKASSA_SHOP_ID and YOOKASSA_SECRET_KEY go together: set both or neither"),
    };
    let stars = match api {
        Some(api) => {
            let mut config = settings.stars.clone();
            if let Some(rate) = &args.stars_rub_per_star {
                config.rub_per_star = rei::core::money::Money::parse(rate)
                    .map_err(anyhow::Error::msg)
                    .context("failed to read STARS_RUB_PER_STAR")?;
            }
            let mut payments = rei::core::stars::StarsPayments::new(engine.billing().clone(), config)
                .map_err(anyhow::Error::msg)
                .context("the Stars configuration")?;
            if let Some(o) = observer {
                payments = payments.with_observer(o);
            }
            Some(Arc::new(rei_http::stars::StarsHook {
                payments: Arc::new(payments),
                api: api.clone(),
                records: engine.payments(),
                clock: engine.clock().clone(),
            }))
        }
        None => None,
    };
    Ok((topups, stars))
}

/// Checks a webhook secret token as Telegram does.
pub(crate) fn check_secret(secret: &str) -> Result<()> {
    let ok = !secret.is_empty()
        && secret.len() <= 256
        && secret.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !ok {
        bail!("TELEGRAM_WEBHOOK_SECRET must be 1 to 256 characters of A-Za-z0-9 _ -");
    }
    Ok(())
}

/// Runs until Ctrl-C or SIGTERM.
pub(crate) async fn run(args: ServeArgs) -> Result<()> {
    let stop = super::gc::shutdown();
    let _ = rei_http::ops::recorder();
    let settings = args.run.bot.settings()?;
    let api = args.run.bot.api()?;
    if api.is_some() && args.telegram_webhook_secret.is_none() {
        bail!("BOT_TOKEN needs TELEGRAM_WEBHOOK_SECRET: the secret token Telegram's updates carry");
    }
    if let Some(secret) = &args.telegram_webhook_secret {
        check_secret(secret)?;
    }
    let (engine, limiter, redis_url) =
        crate::wiring::open_for_bot(&args.run.database_url, args.run.redis_url.as_deref(), &settings).await?;
    let config = HttpConfig {
        body_limit: usize::try_from(args.body_limit_kb * 1024).unwrap_or(usize::MAX),
        request_timeout: Duration::from_secs(args.request_timeout_seconds),
        ..HttpConfig::default()
    };
    let mut state = HttpState::with_limiter(engine.clone(), config, limiter.clone());
    state.console = console(&args.console, &args.run.bot)?;
    let assets: Arc<dyn rei::core::generation::AssetStore> =
        Arc::new(crate::assets::open(&args.run.assets_dir, &args.run.s3, 64 * 1024 * 1024).await?);
    state.assets = Some(assets.clone());
    let growth = super::bot::growth(&engine, &settings);
    let observer: Arc<dyn rei::core::topups::TopUpObserver> = match &api {
        Some(api) => super::bot::observer(&engine, &growth, api),
        None => growth.clone(),
    };
    let (topups, stars) = payments(&engine, &args.run.payments, &settings, api.as_ref(), Some(observer))?;
    state.topups.clone_from(&topups);
    state.stars.clone_from(&stars);
    let payments =
        if topups.is_some() { "YooKassa" } else { "not configured (set YOOKASSA_SHOP_ID and YOOKASSA_SECRET_KEY)" };
    let bot = match (&api, &args.telegram_webhook_secret) {
        (Some(api), Some(secret)) => {
            let wiring = super::bot::Wiring {
                api: api.clone(),
                growth: growth.clone(),
                topups: topups.clone(),
                stars: stars.clone(),
                limiter,
                assets,
            };
            let bot = super::bot::build(&engine, &args.run.bot, &settings, wiring).await?;
            if let Some(url) = &args.telegram_webhook_url {
                api.set_webhook(url, secret).await.map_err(anyhow::Error::msg).context("setWebhook failed")?;
            }
            state.telegram = Some(rei_http::webhooks::TelegramHook { secret: secret.clone(), handler: bot.clone() });
            "on"
        }
        _ => "off (set BOT_TOKEN and TELEGRAM_WEBHOOK_SECRET)",
    };
    let defaults = WebhookSources::default();
    state.webhooks = WebhookSources {
        allowlist: networks(&args.webhook_allowlist, "REI_WEBHOOK_ALLOWLIST")?.unwrap_or(defaults.allowlist),
        trusted_proxies: networks(&args.trusted_proxies, "REI_TRUSTED_PROXIES")?.unwrap_or(defaults.trusted_proxies),
        yookassa_secret: match &args.run.payments.yookassa_webhook_secret {
            Some(s) if s.len() < 16 || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') => {
                bail!("YOOKASSA_WEBHOOK_SECRET must be at least 16 characters of A-Za-z0-9 _ - (it goes in a URL)")
            }
            other => other.clone(),
        },
    };
    let state = Arc::new(state);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("failed to listen on {}", args.listen))?;
    let addr = listener.local_addr().context("failed to read the bound address")?;
    let verify = rei_http::ops::spawn_verify(state.clone(), Duration::from_secs(args.verify_interval_seconds));
    let reconciler = match &state.topups {
        Some(topups) => {
            let reconciler = engine
                .reconciler(topups.clone(), rei::core::topups::ReconcilerConfig::default())
                .map_err(anyhow::Error::msg)?;
            Some(tokio::spawn(reconcile(
                engine.clone(),
                reconciler,
                Duration::from_secs(args.reconcile_interval_seconds),
            )))
        }
        None => None,
    };
    println!(
        "rei serve: listening on http://{addr} ({}, queue: {}; payments: {payments}; bot: {bot}; console: http://{addr}/admin)",
        engine.database().engine(),
        if redis_url.is_some() { "redis" } else { "database" },
    );
    tracing::info!(%addr, "serving");
    let served = rei_http::serve(listener, rei_http::router(state), stop).await;
    verify.abort();
    if let Some(r) = reconciler {
        r.abort();
    }
    println!("rei serve: stopped");
    engine.close().await;
    served.context("the server failed")
}

/// Runs the reconciler every `interval` while this process leads it among the servers on the database.
pub(crate) async fn reconcile(engine: Arc<rei::Engine>, reconciler: rei::core::topups::Reconciler, interval: Duration) {
    let mut lead = None;
    loop {
        if lead.is_none() {
            lead = match engine.database().try_lead("reconciler").await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "could not ask to lead the reconciler");
                    None
                }
            };
        }
        if let Some(l) = &mut lead {
            if l.still_held().await {
                let report = reconciler.run_once().await;
                if report.looked > 0 || report.errors > 0 {
                    tracing::info!(?report, "reconciled pending payments");
                }
            } else {
                lead = None;
            }
        }
        tokio::time::sleep(interval).await;
    }
}

/// The 54-FZ receipt from the configuration, when `YOOKASSA_RECEIPT_VAT_CODE` turns receipts on.
fn receipt(args: &PaymentArgs) -> Result<Option<rei::core::payments::Receipt>> {
    let Some(vat_code) = args.yookassa_receipt_vat_code else { return Ok(None) };
    if args.yookassa_receipt_email.is_none() && args.yookassa_receipt_phone.is_none() {
        bail!("YOOKASSA_RECEIPT_VAT_CODE needs YOOKASSA_RECEIPT_EMAIL or YOOKASSA_RECEIPT_PHONE: where receipts go");
    }
    let item = args.yookassa_receipt_item.trim();
    if item.is_empty() || item.chars().count() > 128 {
        bail!("YOOKASSA_RECEIPT_ITEM must be 1 to 128 characters");
    }
    Ok(Some(rei::core::payments::Receipt {
        customer_email: args.yookassa_receipt_email.clone(),
        customer_phone: args.yookassa_receipt_phone.clone(),
        item_description: item.to_owned(),
        vat_code,
        payment_mode: args.yookassa_receipt_payment_mode.clone(),
        payment_subject: args.yookassa_receipt_payment_subject.clone(),
        tax_system_code: args.yookassa_receipt_tax_system,
    }))
}
