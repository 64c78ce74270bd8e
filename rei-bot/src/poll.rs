//! Long polling: the bot takes its updates with `getUpdates` instead of a webhook (a bot on a machine without a
//! public address, the sandbox). Each update is claimed in the update log as the webhook does, so polling and a
//! webhook, or a restart in the middle of a batch, never handle one update twice; an update whose handling failed
//! for now is given back and taken again from Telegram after a pause.

use std::sync::Arc;
use std::time::Duration;

use rei_http::webhooks::UpdateError;

use crate::Bot;

/// How long one `getUpdates` waits for an update.
pub const POLL_TIMEOUT: Duration = Duration::from_secs(25);
/// The most updates taken per call.
const BATCH: u32 = 100;

/// Polls until `stop` completes. Deletes any webhook first (Telegram serves one or the other).
pub async fn run(bot: Arc<Bot>, stop: impl Future<Output = ()>, timeout: Duration) {
    let api = bot.parts.api.clone();
    if let Err(e) = api.delete_webhook(false).await {
        tracing::warn!(error = %e, "could not delete the webhook before polling");
    }
    tokio::pin!(stop);
    let mut offset = 0_i64;
    let mut backoff = Duration::from_millis(500);
    loop {
        let updates = tokio::select! {
            () = &mut stop => return,
            got = api.get_updates(offset, timeout, BATCH) => got,
        };
        let updates = match updates {
            Ok(u) => {
                backoff = Duration::from_millis(500);
                u
            }
            Err(e) => {
                tracing::warn!(error = %e, wait_ms = backoff.as_millis(), "getUpdates failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
                continue;
            }
        };
        for (id, body) in updates {
            if !take(&bot, id, &body).await {
                // Not handled now: asked again from this update on, after a pause.
                tokio::time::sleep(Duration::from_secs(1)).await;
                break;
            }
            offset = id + 1;
        }
    }
}

/// Handles update `id` once; `false` when it should be taken again later.
async fn take(bot: &Bot, id: i64, body: &[u8]) -> bool {
    let engine = &bot.parts.engine;
    match engine.updates().claim(id, engine.clock().now()).await {
        Ok(true) => {}
        Ok(false) => return true,
        Err(e) => {
            tracing::error!(update_id = id, error = %e, "the update log is unavailable");
            return false;
        }
    }
    match bot.handle_update(body).await {
        Ok(()) => true,
        Err(UpdateError::Malformed(why)) => {
            tracing::warn!(update_id = id, why, "a malformed update: skipped");
            true
        }
        Err(UpdateError::Unavailable(why)) => {
            tracing::error!(update_id = id, why, "an update not handled now: taken again later");
            if let Err(e) = engine.updates().release(id).await {
                tracing::error!(update_id = id, error = %e, "could not give an update back");
            }
            false
        }
    }
}
