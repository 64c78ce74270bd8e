//! `rei all`: every role in one process, for a small bot on one machine: the HTTP server (webhooks, the API,
//! metrics), a worker, the maintenance singleton, and the bot — on the server's webhook when
//! `TELEGRAM_WEBHOOK_SECRET` is set, by long polling otherwise. Each role is the same code as its own command,
//! on the same database; SIGTERM stops them all gracefully.

use std::time::Duration;

use anyhow::{Context, Result};

use super::serve::ServeArgs;
use crate::providers::ProviderArgs;

/// What `rei all` was asked to do.
#[derive(clap::Args, Clone, Debug)]
pub(crate) struct AllArgs {
    /// The server, the bot and the payments.
    #[command(flatten)]
    pub(crate) serve: ServeArgs,
    /// Jobs the worker runs at once.
    #[arg(long, env = "REI_WORKER_CONCURRENCY", default_value_t = 8,
          value_parser = clap::value_parser!(u32).range(1..=1_024))]
    pub(crate) concurrency: u32,
    /// The providers.
    #[command(flatten)]
    pub(crate) providers: ProviderArgs,
}

/// Runs until Ctrl-C or SIGTERM.
pub(crate) async fn run(args: AllArgs) -> Result<()> {
    let serve = args.serve;
    let polling = serve.run.bot.bot_token.is_some() && serve.telegram_webhook_secret.is_none();
    let worker = super::worker::WorkerArgs {
        database_url: serve.run.database_url.clone(),
        redis_url: serve.run.redis_url.clone(),
        name: None,
        concurrency: args.concurrency,
        assets_dir: serve.run.assets_dir.clone(),
        s3: serve.run.s3.clone(),
        provider_concurrency: Vec::new(),
        asset_max_mb: 200,
        poll_interval_ms: 2_000,
        attempt_timeout_seconds: 900,
        lease_seconds: 300,
        metrics_listen: None,
        grace_seconds: 30,
        idle_poll_ms: 500,
        providers: args.providers,
        bot_token: serve.run.bot.bot_token.clone(),
        telegram_api_url: serve.run.bot.telegram_api_url.clone(),
        pacing: serve.run.bot.pacing.clone(),
    };
    let gc = super::gc::Gc {
        database_url: serve.run.database_url.clone(),
        redis_url: serve.run.redis_url.clone(),
        interval: Duration::from_secs(60),
        once: false,
        assets_dir: Some(serve.run.assets_dir.clone()),
        s3: serve.run.s3.clone(),
        asset_retention: Duration::from_secs(30 * 86_400),
    };
    // The database (and its migrations) once, before the roles open it together.
    crate::wiring::open(&serve.run.database_url, crate::wiring::config()).await?.close().await;
    let poll = polling.then(|| super::poll::BotRoleArgs {
        run: serve.run.clone(),
        reconcile_interval_seconds: serve.reconcile_interval_seconds,
    });
    let mut server = serve;
    if polling {
        // The bot polls; the server takes the payment notices and the API without it.
        server.run.bot.bot_token = None;
    }
    // The roles run side by side in this task (each on the runtime's threads through its own spawned work).
    let bot = async move {
        match poll {
            Some(poll) => super::poll::run(poll).await.context("bot"),
            None => Ok(()),
        }
    };
    let (served, worked, collected, polled) = tokio::join!(
        async { super::serve::run(server).await.context("serve") },
        async { super::worker::run(worker).await.context("worker") },
        async { super::gc::run(gc).await.context("gc") },
        bot,
    );
    let mut first_error = None;
    for done in [served, worked, collected, polled] {
        if let Err(e) = done {
            eprintln!("rei all: {e:#}");
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}
