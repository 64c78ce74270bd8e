//! The Telegram Bot API (feature `telegram`): [`BotApi`], a client of `{base}/bot{token}/{method}`, which
//! implements the Stars payments port [`StarsApi`] and has a typed method for each call the bot makes (messages
//! with inline keyboards, photos, videos and documents by `file_id` or uploaded, file downloads, long polling,
//! the webhook); and [`parse_update`], the strict reader of the `Update`s Telegram delivers.
//!
//! Every method goes through [`BotApi::call`]'s pacing (Telegram's send limits, and a 429's `retry_after`
//! holding back every later call) and its reading of the Bot API's envelope. Parameters that break one of
//! Telegram's documented limits are refused before anything is sent ([`BotApiError::Invalid`],
//! [`BotApiError::TooLarge`]).
//!
//! The bot token is part of every method URL, so it is kept out of everything printable: [`BotApi`]'s `Debug`
//! shows `<redacted>`, transport errors are stripped of their URL and any text that could still carry the token
//! is scrubbed before it becomes an error.

mod methods;
mod pace;
mod update;

pub use methods::{
    BUTTON_TEXT_BYTES_MAX, BUTTON_URL_BYTES_MAX, BotIdentity, Button, CALLBACK_ANSWER_CHARS_MAX,
    FILE_DOWNLOAD_BYTES_MAX, FILE_UPLOAD_BYTES_MAX, FileInfo, KEYBOARD_BUTTONS_MAX, Keyboard, Media,
    PHOTO_UPLOAD_BYTES_MAX, POLL_TIMEOUT_MAX, ROW_BUTTONS_MAX, Sent, TRANSFER_TIMEOUT, UPDATES_LIMIT_MAX,
};
pub use pace::{Pacing, SendPacer};
pub use update::{
    CALLBACK_DATA_BYTES_MAX, CAPTION_CHARS_MAX, ChatKind, Content, FileRef, MESSAGE_TEXT_CHARS_MAX, Sender,
    TEXT_BYTES_MAX, UPDATE_BYTES_MAX, Update, UpdateError, parse_update,
};

use std::time::Duration;

use async_trait::async_trait;
use rei_core::ids::UserId;
use rei_core::stars::{CURRENCY, PreCheckoutAnswer, StarsApi, StarsApiError, StarsInvoice, StarsRefund};
use serde_json::{Value, json};

/// Telegram's Bot API server.
pub const DEFAULT_BASE_URL: &str = "https://api.telegram.org";
/// The bound on each call when none is given. Telegram cancels a purchase whose pre-checkout query is not
/// answered within 10 s of being sent, so a bot answering through a client with this bound answers in time only
/// if it answers at once (see [`BotApi::with_timeout`] for a tighter one). Uploads, downloads and long polls
/// have their own bounds ([`TRANSFER_TIMEOUT`], the poll's timeout plus [`POLL_GRACE`]).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// How much longer than its `timeout` a long poll (`getUpdates`) may take before it is given up.
pub const POLL_GRACE: Duration = Duration::from_secs(10);
/// The most bytes of an answer read.
const ANSWER_BYTES_MAX: usize = 1024 * 1024;
/// The most bytes of a `getUpdates` answer read (up to 100 updates).
const UPDATES_ANSWER_BYTES_MAX: usize = 32 * 1024 * 1024;
/// The longest `retry_after` believed (Telegram's are seconds to minutes).
const RETRY_AFTER_MAX: Duration = Duration::from_secs(3_600);
/// The longest piece of Telegram's text kept in an error.
const DESCRIPTION_CHARS_MAX: usize = 512;
/// The most characters of a method name (Telegram's longest are about 35).
const METHOD_CHARS_MAX: usize = 64;

/// Why a Bot API call failed. No variant carries the token.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum BotApiError {
    /// Telegram answered `{"ok":false,…}` (or an HTTP error without a Bot API body): `code` is its
    /// `error_code` (the HTTP status), `retry_after` its `parameters.retry_after`.
    #[error("telegram error {code}: {description}")]
    Api {
        /// `error_code`.
        code: u16,
        /// `description`, at most 512 characters.
        description: String,
        /// How long Telegram asks to wait (429).
        retry_after: Option<Duration>,
    },
    /// The call did not complete: no connection, a timeout, a broken answer. `sent` is `false` only when the
    /// request surely never left (a failed connect); otherwise its outcome is unknown.
    #[error("no answer from telegram: {reason}")]
    Transport {
        /// What happened, without the URL.
        reason: String,
        /// Whether the request may have reached Telegram.
        sent: bool,
    },
    /// An answer that is not a Bot API answer, or a result of the wrong shape.
    #[error("unusable answer from telegram: {reason}")]
    Garbage {
        /// What was wrong.
        reason: String,
    },
    /// Not sent: a parameter breaks one of the Bot API's limits (an empty or over-long text, callback data over
    /// 64 bytes, a bad keyboard, an empty file). Telegram would refuse it with a 400.
    #[error("not sent to telegram: {reason}")]
    Invalid {
        /// Which limit, without the offending value.
        reason: String,
    },
    /// A file over `limit` bytes: an upload refused before it was sent (Telegram's own limits), or a download
    /// refused once its declared or received length went past the caller's limit.
    #[error("the file is over the limit of {limit} bytes")]
    TooLarge {
        /// The limit, in bytes.
        limit: u64,
    },
}

impl BotApiError {
    /// `true` when Telegram refused with 403 Forbidden: the user blocked the bot or was deactivated, the bot was
    /// removed from the chat or may not start it. Sending to that chat again will fail the same way until the
    /// user comes back (an unblock arrives as `my_chat_member` with status `member`).
    #[must_use]
    pub fn is_blocked(&self) -> bool {
        matches!(self, BotApiError::Api { code: 403, .. })
    }
}

impl From<BotApiError> for StarsApiError {
    fn from(e: BotApiError) -> StarsApiError {
        match e {
            BotApiError::Api { code: 401, .. } => StarsApiError::Unauthorized,
            BotApiError::Api { code: 429, retry_after, .. } => {
                StarsApiError::RateLimited { retry_after: retry_after.unwrap_or(Duration::from_secs(1)) }
            }
            BotApiError::Api { code, description, .. } if code >= 500 => {
                StarsApiError::Unavailable { reason: format!("telegram error {code}: {description}") }
            }
            BotApiError::Api { code, description, .. } => {
                StarsApiError::Rejected { reason: format!("telegram error {code}: {description}") }
            }
            BotApiError::Transport { reason, .. } => StarsApiError::Unavailable { reason },
            BotApiError::Garbage { reason } => StarsApiError::Garbage { reason },
            e @ (BotApiError::Invalid { .. } | BotApiError::TooLarge { .. }) => {
                StarsApiError::Rejected { reason: e.to_string() }
            }
        }
    }
}

/// A client of one bot's Bot API.
pub struct BotApi {
    base_url: String,
    token: String,
    client: reqwest::Client,
    pacer: SendPacer,
    clock: crate::system::SystemClock,
    transfer_timeout: Duration,
}

impl std::fmt::Debug for BotApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BotApi").field("base_url", &self.base_url).field("token", &"<redacted>").finish()
    }
}

impl BotApi {
    /// A client of the bot `token` at `base_url` (`https://api.telegram.org`, a local Bot API server or a
    /// fake), each call bounded by [`DEFAULT_TIMEOUT`].
    ///
    /// # Errors
    /// [`BotApiError::Transport`] when the HTTP client cannot start (its TLS backend).
    pub fn new(base_url: &str, token: &str) -> Result<BotApi, BotApiError> {
        BotApi::with_timeout(base_url, token, DEFAULT_TIMEOUT)
    }

    /// [`BotApi::new`] with each call bounded by `timeout`.
    ///
    /// # Errors
    /// [`BotApiError::Transport`] when the HTTP client cannot start.
    pub fn with_timeout(base_url: &str, token: &str, timeout: Duration) -> Result<BotApi, BotApiError> {
        let client = crate::http::client(timeout).map_err(|e| BotApiError::Transport {
            reason: scrub(&crate::http::error_chain(&e.without_url()), token),
            sent: false,
        })?;
        Ok(BotApi {
            base_url: base_url.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            client,
            pacer: SendPacer::new(Pacing::default()),
            clock: crate::system::SystemClock::new(),
            transfer_timeout: TRANSFER_TIMEOUT,
        })
    }

    /// The same client bounding each upload (a `send…` with a file part) and each file download by `timeout`
    /// instead of [`TRANSFER_TIMEOUT`].
    #[must_use]
    pub fn with_transfer_timeout(mut self, timeout: Duration) -> BotApi {
        self.transfer_timeout = timeout;
        self
    }

    /// The same client keeping `pacing` instead of Telegram's published limits.
    #[must_use]
    pub fn with_pacing(mut self, pacing: Pacing) -> BotApi {
        self.pacer = SendPacer::new(pacing);
        self
    }

    /// Waits until the call may go: after a 429's `retry_after`, and for a send to `chat`, until its chat's and
    /// the bot's budget have room.
    async fn paced(&self, chat: Option<i64>) {
        use rei_core::time::Clock;
        loop {
            let wait = self.pacer.reserve(chat, self.clock.now());
            if wait.is_zero() {
                return;
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// Calls `method` with `params` (a JSON object) and returns its `result`. A send (a method named `send…`,
    /// `copyMessage`, `forwardMessage`) is paced by its `chat_id`.
    ///
    /// # Errors
    /// [`BotApiError::Api`] for Telegram's refusals, [`BotApiError::Transport`] when there was no answer,
    /// [`BotApiError::Garbage`] for an answer that is not the Bot API's (or a method name that is not one).
    pub async fn call(&self, method: &str, params: &Value) -> Result<Value, BotApiError> {
        let chat = if sends(method) { params.get("chat_id").and_then(Value::as_i64) } else { None };
        self.exchange(method, chat, Payload::Json(params), None, ANSWER_BYTES_MAX).await
    }

    /// One method call: paced for `chat` (a send) or only by a freeze, sent as JSON or multipart, bounded by
    /// `timeout` (else the client's), its answer read up to `answer_max` bytes. A 429 with `retry_after` freezes
    /// every later call.
    async fn exchange(
        &self,
        method: &str,
        chat: Option<i64>,
        payload: Payload<'_>,
        timeout: Option<Duration>,
        answer_max: usize,
    ) -> Result<Value, BotApiError> {
        let method_ok =
            !method.is_empty() && method.len() <= METHOD_CHARS_MAX && method.bytes().all(|b| b.is_ascii_alphanumeric());
        if !method_ok {
            return Err(BotApiError::Garbage { reason: "the method name is not a Bot API method".to_owned() });
        }
        self.paced(chat).await;
        let url = format!("{}/bot{}/{method}", self.base_url, self.token);
        let request = self.client.post(&url);
        let request = match payload {
            Payload::Json(params) => request.json(params),
            Payload::Form(form) => request.multipart(form),
        };
        let request = match timeout {
            Some(timeout) => request.timeout(timeout),
            None => request,
        };
        let response = request.send().await.map_err(|e| self.transport(e))?;
        let status = response.status().as_u16();
        let body = self.read_body(response, answer_max).await?;
        let answer = read_answer(status, &body).map_err(|e| self.scrubbed(e));
        if let Err(BotApiError::Api { code: 429, retry_after: Some(wait), .. }) = &answer {
            use rei_core::time::Clock;
            self.pacer.freeze(self.clock.now().plus(*wait));
        }
        answer
    }

    fn transport(&self, e: reqwest::Error) -> BotApiError {
        let sent = !e.is_connect();
        BotApiError::Transport { reason: scrub(&crate::http::error_chain(&e.without_url()), &self.token), sent }
    }

    /// Telegram's own texts are not expected to hold the token, but an error must never show it.
    fn scrubbed(&self, e: BotApiError) -> BotApiError {
        match e {
            BotApiError::Api { code, description, retry_after } => {
                BotApiError::Api { code, description: scrub(&description, &self.token), retry_after }
            }
            BotApiError::Transport { reason, sent } => {
                BotApiError::Transport { reason: scrub(&reason, &self.token), sent }
            }
            BotApiError::Garbage { reason } => BotApiError::Garbage { reason: scrub(&reason, &self.token) },
            BotApiError::Invalid { reason } => BotApiError::Invalid { reason: scrub(&reason, &self.token) },
            e @ BotApiError::TooLarge { .. } => e,
        }
    }

    /// The answer's body, at most `max` bytes.
    async fn read_body(&self, mut response: reqwest::Response, max: usize) -> Result<Vec<u8>, BotApiError> {
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > max {
                        return Err(BotApiError::Garbage { reason: format!("the answer is over {max} bytes") });
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => return Ok(body),
                Err(e) => return Err(self.transport(e)),
            }
        }
    }

    /// `sendInvoice`/`createInvoiceLink`'s parameters of a Stars invoice: `XTR`, an empty provider token and
    /// exactly one price.
    fn invoice_params(invoice: &StarsInvoice) -> Value {
        json!({
            "title": invoice.title,
            "description": invoice.description,
            "payload": invoice.payload.to_string(),
            "provider_token": "",
            "currency": CURRENCY,
            "prices": [{"label": invoice.title, "amount": invoice.stars}],
        })
    }
}

/// What a method call sends.
enum Payload<'a> {
    /// JSON parameters.
    Json(&'a Value),
    /// A multipart form: text fields and file parts (uploads).
    Form(reqwest::multipart::Form),
}

/// Whether `method` sends a message into a chat (and so is paced per chat).
fn sends(method: &str) -> bool {
    method.starts_with("send") || method == "copyMessage" || method == "forwardMessage"
}

/// `text` with every occurrence of the token replaced.
fn scrub(text: &str, token: &str) -> String {
    if token.is_empty() { text.to_owned() } else { text.replace(token, "<token>") }
}

fn garbage(why: impl Into<String>) -> BotApiError {
    BotApiError::Garbage { reason: why.into() }
}

/// Reads a Bot API answer: `{"ok":true,"result":…}` is the result, `{"ok":false,…}` the error it names.
fn read_answer(status: u16, body: &[u8]) -> Result<Value, BotApiError> {
    let Ok(Value::Object(answer)) = serde_json::from_slice::<Value>(body) else {
        if (200..300).contains(&status) {
            return Err(garbage(format!("HTTP {status} with a body that is not a JSON object")));
        }
        return Err(BotApiError::Api {
            code: status,
            description: format!("HTTP {status} without a Bot API answer"),
            retry_after: None,
        });
    };
    match answer.get("ok") {
        Some(Value::Bool(true)) => answer.get("result").cloned().ok_or_else(|| garbage("\"ok\":true without a result")),
        Some(Value::Bool(false)) => {
            let code = answer
                .get("error_code")
                .and_then(Value::as_u64)
                .and_then(|c| u16::try_from(c).ok())
                .filter(|c| (400..600).contains(c))
                .unwrap_or(if status >= 400 { status } else { 400 });
            let description = answer
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or("")
                .chars()
                .take(DESCRIPTION_CHARS_MAX)
                .collect();
            let retry_after = answer
                .get("parameters")
                .and_then(|p| p.get("retry_after"))
                .and_then(Value::as_u64)
                .map(|s| Duration::from_secs(s).min(RETRY_AFTER_MAX));
            Err(BotApiError::Api { code, description, retry_after })
        }
        _ => Err(garbage(format!("HTTP {status} with an answer without a boolean \"ok\""))),
    }
}

/// `true` when `e` is Telegram's answer that the charge was refunded before.
fn already_refunded(e: &BotApiError) -> bool {
    matches!(e, BotApiError::Api { code: 400, description, .. } if description.contains("CHARGE_ALREADY_REFUNDED"))
}

#[async_trait]
impl StarsApi for BotApi {
    async fn send_invoice(&self, chat_id: i64, invoice: &StarsInvoice) -> Result<(), StarsApiError> {
        let mut params = BotApi::invoice_params(invoice);
        if let Some(map) = params.as_object_mut() {
            map.insert("chat_id".into(), json!(chat_id));
        }
        let message = self.call("sendInvoice", &params).await?;
        if message.get("message_id").and_then(Value::as_i64).is_none() {
            return Err(StarsApiError::Garbage { reason: "sendInvoice did not return a message".to_owned() });
        }
        Ok(())
    }

    async fn create_invoice_link(&self, invoice: &StarsInvoice) -> Result<String, StarsApiError> {
        let link = self.call("createInvoiceLink", &BotApi::invoice_params(invoice)).await?;
        match link.as_str() {
            Some(link) if link.starts_with("https://") && link.len() <= 2048 => Ok(link.to_owned()),
            _ => Err(StarsApiError::Garbage { reason: "createInvoiceLink did not return an https link".to_owned() }),
        }
    }

    async fn answer_pre_checkout(&self, query_id: &str, answer: &PreCheckoutAnswer) -> Result<(), StarsApiError> {
        let params = match answer {
            PreCheckoutAnswer::Accept => json!({"pre_checkout_query_id": query_id, "ok": true}),
            PreCheckoutAnswer::Refuse(refusal) => {
                json!({"pre_checkout_query_id": query_id, "ok": false, "error_message": refusal.message()})
            }
        };
        match self.call("answerPreCheckoutQuery", &params).await? {
            Value::Bool(true) => Ok(()),
            _ => Err(StarsApiError::Garbage { reason: "answerPreCheckoutQuery did not return true".to_owned() }),
        }
    }

    async fn refund_star_payment(&self, user: UserId, charge_id: &str) -> Result<StarsRefund, StarsApiError> {
        let params = json!({"user_id": user.0, "telegram_payment_charge_id": charge_id});
        match self.call("refundStarPayment", &params).await {
            Ok(Value::Bool(true)) => Ok(StarsRefund::Refunded),
            Ok(_) => Err(StarsApiError::Garbage { reason: "refundStarPayment did not return true".to_owned() }),
            Err(e) if already_refunded(&e) => Ok(StarsRefund::AlreadyRefunded),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_map_to_results_and_errors() {
        // Proves the Bot API envelope: a result, Telegram's error with its code and retry_after, HTTP errors
        // without a body, and garbage.
        assert_eq!(read_answer(200, br#"{"ok":true,"result":true}"#), Ok(Value::Bool(true)));
        let e = read_answer(
            429,
            br#"{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 35","parameters":{"retry_after":35}}"#,
        );
        assert_eq!(
            e,
            Err(BotApiError::Api {
                code: 429,
                description: "Too Many Requests: retry after 35".into(),
                retry_after: Some(Duration::from_secs(35)),
            })
        );
        assert!(matches!(read_answer(502, b"<html>"), Err(BotApiError::Api { code: 502, .. })));
        assert!(matches!(read_answer(200, b"<html>"), Err(BotApiError::Garbage { .. })));
        assert!(matches!(read_answer(200, br#"{"ok":"yes"}"#), Err(BotApiError::Garbage { .. })));
        assert!(matches!(read_answer(200, br#"{"ok":true}"#), Err(BotApiError::Garbage { .. })));
        let odd = read_answer(400, br#"{"ok":false,"error_code":99999999999,"description":7}"#);
        assert!(matches!(odd, Err(BotApiError::Api { code: 400, .. })), "{odd:?}");
    }

    #[test]
    fn errors_map_to_the_port_by_what_the_caller_can_do() {
        // Proves the grouping: 401 unauthorized, 429 rate limited, 5xx and no answer unavailable, other 4xx and
        // calls refused before sending rejected, garbage garbage; and only a 403 is a blocked user.
        let api = |code, retry_after| BotApiError::Api { code, description: "d".into(), retry_after };
        assert_eq!(StarsApiError::from(api(401, None)), StarsApiError::Unauthorized);
        assert_eq!(
            StarsApiError::from(api(429, Some(Duration::from_secs(3)))),
            StarsApiError::RateLimited { retry_after: Duration::from_secs(3) }
        );
        assert!(matches!(StarsApiError::from(api(500, None)), StarsApiError::Unavailable { .. }));
        assert!(matches!(StarsApiError::from(api(400, None)), StarsApiError::Rejected { .. }));
        let t = BotApiError::Transport { reason: "r".into(), sent: true };
        assert!(matches!(StarsApiError::from(t), StarsApiError::Unavailable { .. }));
        let invalid = BotApiError::Invalid { reason: "a message text must be 1 to 4096 characters".into() };
        assert!(matches!(StarsApiError::from(invalid), StarsApiError::Rejected { .. }));
        let big = StarsApiError::from(BotApiError::TooLarge { limit: 10 });
        assert!(matches!(&big, StarsApiError::Rejected { reason } if reason.contains("10 bytes")), "{big:?}");
        assert!(api(403, None).is_blocked());
        assert!(!api(400, None).is_blocked() && !api(429, None).is_blocked());
        assert!(already_refunded(&BotApiError::Api {
            code: 400,
            description: "Bad Request: CHARGE_ALREADY_REFUNDED".into(),
            retry_after: None,
        }));
    }

    #[test]
    fn the_token_is_never_printed() {
        // Proves Debug output and scrubbed texts do not carry the token.
        let api = BotApi::new("http://127.0.0.1:1/", "123:SECRET").expect("client");
        assert!(!format!("{api:?}").contains("SECRET"));
        assert_eq!(scrub("http://x/bot123:SECRET/getMe failed", "123:SECRET"), "http://x/bot<token>/getMe failed");
    }
}
