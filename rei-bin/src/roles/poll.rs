//! `rei bot`: the Telegram bot by long polling, for a machine without a public address (with a public one,
//! `rei serve` takes the updates on its webhook instead). It takes top-ups by card and Stars; card payments are
//! credited by the reconciler it runs (one process leads it), since no YooKassa notice reaches it. On SIGTERM it
//! stops polling; an update in hand is finished or, unfinished, taken again by the next start.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};

use super::bot::BotRunArgs;

/// What `rei bot` was asked to do.
#[derive(clap::Args, Clone, Debug)]
pub(crate) struct BotRoleArgs {
    /// The database, Redis, the bot, payments and assets.
    #[command(flatten)]
    pub(crate) run: BotRunArgs,
    /// Seconds between two passes of the reconciler over pending card payments.
    #[arg(long, env = "REI_RECONCILE_INTERVAL_SECONDS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=3_600))]
    pub(crate) reconcile_interval_seconds: u64,
}

/// Runs until Ctrl-C or SIGTERM.
pub(crate) async fn run(args: BotRoleArgs) -> Result<()> {
    let stop = super::gc::shutdown();
    let settings = args.run.bot.settings()?;
    let api = args.run.bot.api()?.context("rei bot needs BOT_TOKEN (the bot's token from @BotFather)")?;
    let (engine, limiter, _) =
        crate::wiring::open_for_bot(&args.run.database_url, args.run.redis_url.as_deref(), &settings).await?;
    let growth = super::bot::growth(&engine, &settings);
    let observer = super::bot::observer(&engine, &growth, &api);
    let (topups, stars) = super::serve::payments(&engine, &args.run.payments, &settings, Some(&api), Some(observer))?;
    let assets = crate::assets::open(&args.run.assets_dir, &args.run.s3, 64 * 1024 * 1024).await?;
    let wiring = super::bot::Wiring {
        api: api.clone(),
        growth,
        topups: topups.clone(),
        stars,
        limiter,
        assets: Arc::new(assets),
    };
    let bot = super::bot::build(&engine, &args.run.bot, &settings, wiring).await?;
    let reconciler = match &topups {
        Some(topups) => {
            let reconciler = engine
                .reconciler(topups.clone(), rei::core::topups::ReconcilerConfig::default())
                .map_err(anyhow::Error::msg)?;
            let interval = Duration::from_secs(args.reconcile_interval_seconds);
            Some(tokio::spawn(super::serve::reconcile(engine.clone(), reconciler, interval)))
        }
        None => None,
    };
    println!("rei bot: @{} polling on {}", bot.config().username, engine.database().engine());
    rei_bot::poll::run(bot, stop, rei_bot::poll::POLL_TIMEOUT).await;
    if let Some(r) = reconciler {
        r.abort();
    }
    println!("rei bot: stopped");
    engine.close().await;
    Ok(())
}
