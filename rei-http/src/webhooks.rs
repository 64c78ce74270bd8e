//! The webhooks: YooKassa's payment notices (fail-closed: the source address, then the gateway's own answer)
//! and Telegram's updates (the secret token, compared in constant time).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use async_trait::async_trait;
use axum::body::to_bytes;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use rei_core::topups::{NoticeError, NoticeEvent, NoticeOutcome, SourceAllowlist};
use subtle::ConstantTimeEq;

use crate::HttpState;
use crate::problem::{Problem, ProblemBody};
use crate::replay::too_large;

/// The header Telegram sends the webhook's secret token in.
pub const TELEGRAM_SECRET: HeaderName = HeaderName::from_static("x-telegram-bot-api-secret-token");

/// Who may send payment notices.
#[derive(Clone, Debug)]
pub struct WebhookSources {
    /// The addresses notices may come from (default: YooKassa's published ranges).
    pub allowlist: SourceAllowlist,
    /// Reverse proxies whose `X-Forwarded-For` is believed (default: none: the peer address is the source).
    pub trusted_proxies: SourceAllowlist,
    /// A secret the notice URL carries as `?secret=…` (set in the shop's notification URL), checked besides
    /// the source address: `YOOKASSA_WEBHOOK_SECRET` (default: none).
    pub yookassa_secret: Option<String>,
}

impl Default for WebhookSources {
    fn default() -> WebhookSources {
        WebhookSources {
            allowlist: SourceAllowlist::yookassa(),
            trusted_proxies: SourceAllowlist::none(),
            yookassa_secret: None,
        }
    }
}

/// `true` when the request's query carries `secret=<expected>` (compared in constant time).
fn query_secret_matches(query: Option<&str>, expected: &str) -> bool {
    let given = query.unwrap_or("").split('&').find_map(|pair| pair.strip_prefix("secret=")).unwrap_or("");
    given.len() == expected.len() && bool::from(given.as_bytes().ct_eq(expected.as_bytes()))
}

impl WebhookSources {
    /// The address a request came from: the peer, or, when the peer is a trusted proxy, the last address of
    /// `X-Forwarded-For` that is not one (each proxy appends the address it saw, so the addresses to the left
    /// of the last untrusted one are the client's word and not believed).
    #[must_use]
    pub fn source(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.trusted_proxies.contains(peer) {
            return peer;
        }
        let forwarded: Vec<IpAddr> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .map(|a| a.parse::<IpAddr>())
            .collect::<Result<_, _>>()
            .unwrap_or_default();
        let mut source = peer;
        for addr in forwarded.into_iter().rev() {
            source = addr;
            if !self.trusted_proxies.contains(addr) {
                break;
            }
        }
        source
    }
}

fn notice_error(reason: &'static str) {
    metrics::counter!("payment_webhook_errors", "provider" => "yookassa", "reason" => reason).increment(1);
}

/// A payment REI could not process: `payments_total{gateway, outcome="failed"}`. Succeeded and canceled
/// payments are counted once each where their record takes its final status (the engine's payment store).
pub(crate) fn payment_failed(gateway: &'static str) {
    metrics::counter!("payments_total", "gateway" => gateway, "outcome" => "failed").increment(1);
}

/// YooKassa's notice.
#[utoipa::path(post, path = "/webhooks/yookassa", tag = "webhooks",
    request_body(content = String, description = "A YooKassa notification: {\"type\":\"notification\",\"event\":…,\"object\":{…}}", content_type = "application/json"),
    responses(
        (status = 200, description = "Handled (or a duplicate, or an event REI does not act on)"),
        (status = 400, description = "Malformed, or refused: the gateway does not bear it out; nothing changed", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "From outside the allowlist; nothing changed", body = ProblemBody, content_type = "application/problem+json"),
        (status = 413, description = "The body is over the limit", body = ProblemBody, content_type = "application/problem+json"),
        (status = 503, description = "Payments are not configured, or the gateway or the ledger failed: deliver again", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub(crate) async fn yookassa(
    State(state): State<Arc<HttpState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let source = state.webhooks.source(peer.ip(), request.headers());
    if !state.webhooks.allowlist.contains(source) {
        notice_error("source");
        tracing::warn!(%source, %peer, "payment notice refused: the source is not in the allowlist");
        return Problem::new(
            StatusCode::FORBIDDEN,
            "source-not-allowed",
            "Not from the payment gateway",
            format!("notices are accepted from the gateway's addresses only, not {source}"),
        )
        .into_response();
    }
    if let Some(secret) = &state.webhooks.yookassa_secret
        && !query_secret_matches(request.uri().query(), secret)
    {
        notice_error("secret");
        tracing::warn!(%source, "payment notice refused: the URL's secret is missing or wrong");
        return Problem::new(
            StatusCode::FORBIDDEN,
            "wrong-webhook-secret",
            "A wrong webhook secret",
            "the notice URL must carry the shop's secret as ?secret=…",
        )
        .into_response();
    }
    let limit = state.config.webhook_body_limit;
    let Ok(body) = to_bytes(request.into_body(), limit).await else {
        notice_error("too_large");
        tracing::warn!(%source, "payment notice refused: over {limit} bytes");
        return too_large(limit).into_response();
    };
    let notice = match rei_adapters::yookassa::parse_notice(&body) {
        Ok(n) => n,
        Err(e) => {
            notice_error("malformed");
            tracing::warn!(%source, error = %e, "payment notice refused: malformed");
            return Problem::bad_request(e.to_string()).with_code("malformed-notice").into_response();
        }
    };
    let Some(topups) = &state.topups else {
        notice_error("not_configured");
        return Problem::unavailable("payments-not-configured", "no payment gateway is configured").into_response();
    };
    match topups.on_notice(&notice).await {
        Ok(outcome) => {
            match &outcome {
                NoticeOutcome::Credited { payment, user, amount, replayed } => {
                    tracing::info!(event = ?notice.event, %payment, %user, %amount, replayed, "payment notice: credited");
                }
                NoticeOutcome::Ignored { event } => {
                    tracing::info!(event, object = notice.object_id, "payment notice: an event REI does not act on");
                }
                other => {
                    tracing::info!(event = ?notice.event, object = notice.object_id, outcome = ?other, "payment notice")
                }
            }
            StatusCode::OK.into_response()
        }
        Err(NoticeError::Refused { why }) => {
            notice_error("refused");
            tracing::warn!(event = ?notice.event, object = notice.object_id, why, "payment notice refused");
            Problem::bad_request(why).with_code("notice-refused").into_response()
        }
        Err(e) => {
            notice_error("unavailable");
            // A notice the gateway's checks let through, about a payment, that the gateway, the ledger or the
            // records failed to settle: a failed payment until a redelivery settles it (each failed delivery
            // counts). A refund notice is not a payment.
            if matches!(
                notice.event,
                NoticeEvent::PaymentSucceeded | NoticeEvent::PaymentCanceled | NoticeEvent::PaymentWaitingForCapture
            ) {
                payment_failed(topups.provider().as_str());
            }
            tracing::error!(event = ?notice.event, object = notice.object_id, error = %e, "payment notice not handled");
            Problem::unavailable("notice-not-handled", format!("{e}: deliver the notice again")).into_response()
        }
    }
}

/// Why an update was not handled.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum UpdateError {
    /// Malformed: answered 400 (Telegram does not resend a 4xx for long).
    #[error("malformed update: {0}")]
    Malformed(String),
    /// Could not be handled now: answered 503 so that Telegram delivers it again.
    #[error("update not handled: {0}")]
    Unavailable(String),
}

/// What handles Telegram's updates (the payments of Stars, the bot's conversations).
#[async_trait]
pub trait UpdateHandler: Send + Sync {
    /// Handles one update's body.
    ///
    /// # Errors
    /// [`UpdateError`].
    async fn handle(&self, body: &[u8]) -> Result<(), UpdateError>;
}

/// Telegram's update.
#[utoipa::path(post, path = "/webhooks/telegram", tag = "webhooks",
    params(("X-Telegram-Bot-Api-Secret-Token" = String, Header, description = "The secret token given to setWebhook")),
    request_body(content = String, description = "A Telegram Update", content_type = "application/json"),
    responses(
        (status = 200, description = "Handled"),
        (status = 400, description = "Malformed", body = ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "No secret token; nothing processed", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "A wrong secret token; nothing processed", body = ProblemBody, content_type = "application/problem+json"),
        (status = 413, description = "The body is over the limit", body = ProblemBody, content_type = "application/problem+json"),
        (status = 503, description = "The bot is not configured, or the update could not be handled now", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub(crate) async fn telegram(State(state): State<Arc<HttpState>>, request: Request) -> Response {
    let Some(telegram) = &state.telegram else {
        return Problem::unavailable("bot-not-configured", "no Telegram bot is configured: set BOT_TOKEN")
            .into_response();
    };
    let given = request.headers().get(&TELEGRAM_SECRET).map(|v| v.as_bytes().to_vec());
    let Some(given) = given else {
        tracing::warn!("telegram update refused: no secret token");
        return Problem::new(
            StatusCode::UNAUTHORIZED,
            "no-secret-token",
            "No secret token",
            "send X-Telegram-Bot-Api-Secret-Token",
        )
        .into_response();
    };
    if !bool::from(given.ct_eq(telegram.secret.as_bytes())) {
        tracing::warn!("telegram update refused: a wrong secret token");
        return Problem::new(
            StatusCode::FORBIDDEN,
            "wrong-secret-token",
            "A wrong secret token",
            "the secret token does not match",
        )
        .into_response();
    }
    let limit = state.config.webhook_body_limit;
    let Ok(body) = to_bytes(request.into_body(), limit).await else {
        return too_large(limit).into_response();
    };
    // Each update once, whichever instance got it first (Telegram redelivers until it gets a 2xx).
    #[derive(serde::Deserialize)]
    struct Id {
        update_id: i64,
    }
    let id = serde_json::from_slice::<Id>(&body).ok().map(|i| i.update_id);
    if let Some(id) = id {
        match state.engine.updates().claim(id, state.engine.clock().now()).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::debug!(update_id = id, "telegram update seen before: acknowledged, not handled again");
                return StatusCode::OK.into_response();
            }
            Err(e) => return Problem::unavailable("update-log", e.to_string()).into_response(),
        }
    }
    match telegram.handler.handle(&body).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(UpdateError::Malformed(why)) => {
            tracing::warn!(why, "telegram update refused: malformed");
            Problem::bad_request(why).with_code("malformed-update").into_response()
        }
        Err(UpdateError::Unavailable(why)) => {
            // Given back, so that the redelivery is handled.
            if let Some(id) = id
                && let Err(e) = state.engine.updates().release(id).await
            {
                tracing::error!(update_id = id, error = %e, "could not give a telegram update back");
            }
            tracing::error!(why, "telegram update not handled");
            Problem::unavailable("update-not-handled", why).into_response()
        }
    }
}

/// The Telegram side of the server: the webhook's secret and who handles the updates.
pub struct TelegramHook {
    /// The `secret_token` given to `setWebhook`.
    pub secret: String,
    /// Who handles the updates.
    pub handler: Arc<dyn UpdateHandler>,
}

#[cfg(test)]
mod secret_tests {
    use super::query_secret_matches;

    #[test]
    fn the_notice_urls_secret_must_match_exactly() {
        // Proves the query check: only the exact secret passes; missing, empty, longer or shorter values fail.
        assert!(query_secret_matches(Some("secret=s3cr3t"), "s3cr3t"));
        assert!(query_secret_matches(Some("a=1&secret=s3cr3t&b=2"), "s3cr3t"));
        for query in [None, Some(""), Some("secret="), Some("secret=s3cr3"), Some("secret=s3cr3tt"), Some("x=s3cr3t")] {
            assert!(!query_secret_matches(query, "s3cr3t"), "{query:?}");
        }
    }
}
