//! A fake Telegram Bot API: `POST /bot<token>/<method>` with JSON parameters, answered in the Bot API's
//! envelope (`{"ok":true,"result":…}` or `{"ok":false,"error_code":…,"description":…}`). A wrong token is 401
//! `Unauthorized`, as Telegram answers. Every call with the right token is recorded (method, parameters, when it
//! arrived) for tests to inspect, and each call's outcome is scripted ([`TelegramOutcome`]).
//!
//! Methods: `sendInvoice` and `createInvoiceLink` (checked as Telegram checks a Stars invoice: `XTR`, an empty
//! provider token, exactly one price, title, description and payload within their limits), `answerPreCheckoutQuery`,
//! `refundStarPayment` (true the first time per charge, then 400 `CHARGE_ALREADY_REFUNDED`), `sendMessage`.
//! Anything else is 404 `Not Found`.
//!
//! [`updates`] builds webhook bodies in the real wire shape for the tests of the parser and of the payment path.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use serde_json::{Value, json};

use super::{FakeServer, Script};

/// What the fake does with one call (with the right token).
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum TelegramOutcome {
    /// As Telegram would.
    Normal,
    /// 429 `Too Many Requests: retry after N` with `parameters.retry_after` = N, doing nothing.
    RateLimited {
        /// Seconds.
        retry_after: u64,
    },
    /// 500 `Internal Server Error`, doing nothing.
    ServerError,
    /// 400 with this description (`Bad Request: …`), doing nothing.
    BadRequest(String),
    /// HTTP 200 with a body that is not JSON.
    Garbage,
}

/// One call the fake received with the right token.
#[derive(Clone, PartialEq, Debug)]
pub struct Call {
    /// The method, as in the URL.
    pub method: String,
    /// Its JSON parameters (`{}` for an empty body).
    pub params: Value,
    /// When it arrived.
    pub at: Instant,
}

#[derive(Default)]
struct Books {
    calls: Vec<Call>,
    unauthorized: u64,
    refunded: HashSet<String>,
    next_message: i64,
}

struct Shared {
    token_segment: String,
    script: Arc<Script<TelegramOutcome>>,
    books: Mutex<Books>,
}

/// A running fake Bot API for one bot.
pub struct FakeTelegram {
    server: FakeServer,
    shared: Arc<Shared>,
}

impl FakeTelegram {
    /// Starts a fake for the bot `token`.
    ///
    /// # Errors
    /// The bind's I/O error.
    pub async fn start(token: &str) -> std::io::Result<FakeTelegram> {
        let shared = Arc::new(Shared {
            token_segment: format!("bot{token}"),
            script: Script::new(TelegramOutcome::Normal),
            books: Mutex::new(Books::default()),
        });
        let app = Router::new().route("/{bot}/{method}", any(call)).with_state(shared.clone());
        Ok(FakeTelegram { server: FakeServer::start(app).await?, shared })
    }

    /// The base URL to give the adapter (`http://127.0.0.1:PORT`).
    #[must_use]
    pub fn base_url(&self) -> String {
        self.server.base_url()
    }

    /// One outcome per call, in order.
    #[must_use]
    pub fn script(&self) -> Arc<Script<TelegramOutcome>> {
        self.shared.script.clone()
    }

    /// Every call received with the right token, in arrival order.
    #[must_use]
    pub fn calls(&self) -> Vec<Call> {
        self.shared.books.lock().unwrap_or_else(PoisonError::into_inner).calls.clone()
    }

    /// The calls of `method`.
    #[must_use]
    pub fn calls_of(&self, method: &str) -> Vec<Call> {
        self.calls().into_iter().filter(|c| c.method == method).collect()
    }

    /// Calls refused for a wrong token.
    #[must_use]
    pub fn unauthorized(&self) -> u64 {
        self.shared.books.lock().unwrap_or_else(PoisonError::into_inner).unauthorized
    }

    /// The charges refunded so far.
    #[must_use]
    pub fn refunded(&self) -> HashSet<String> {
        self.shared.books.lock().unwrap_or_else(PoisonError::into_inner).refunded.clone()
    }

    /// Stops serving.
    pub async fn stop(self) {
        self.server.stop().await;
    }
}

fn error(status: StatusCode, description: &str, retry_after: Option<u64>) -> Response {
    let mut body = json!({"ok": false, "error_code": status.as_u16(), "description": description});
    if let (Some(seconds), Some(map)) = (retry_after, body.as_object_mut()) {
        map.insert("parameters".into(), json!({"retry_after": seconds}));
    }
    (status, axum::Json(body)).into_response()
}

fn bad_request(what: &str) -> Response {
    error(StatusCode::BAD_REQUEST, &format!("Bad Request: {what}"), None)
}

fn ok(result: Value) -> Response {
    (StatusCode::OK, axum::Json(json!({"ok": true, "result": result}))).into_response()
}

async fn call(State(shared): State<Arc<Shared>>, Path((bot, method)): Path<(String, String)>, body: Bytes) -> Response {
    if bot != shared.token_segment {
        shared.books.lock().unwrap_or_else(PoisonError::into_inner).unauthorized += 1;
        return error(StatusCode::UNAUTHORIZED, "Unauthorized", None);
    }
    let params = if body.is_empty() { Ok(json!({})) } else { serde_json::from_slice::<Value>(&body) };
    let Ok(params) = params.map_err(drop).and_then(|p| if p.is_object() { Ok(p) } else { Err(()) }) else {
        return bad_request("the parameters are not a JSON object");
    };
    let mut books = shared.books.lock().unwrap_or_else(PoisonError::into_inner);
    books.calls.push(Call { method: method.clone(), params: params.clone(), at: Instant::now() });
    match shared.script.next() {
        TelegramOutcome::Normal => {}
        TelegramOutcome::RateLimited { retry_after } => {
            let description = format!("Too Many Requests: retry after {retry_after}");
            return error(StatusCode::TOO_MANY_REQUESTS, &description, Some(retry_after));
        }
        TelegramOutcome::ServerError => return error(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error", None),
        TelegramOutcome::BadRequest(description) => return error(StatusCode::BAD_REQUEST, &description, None),
        TelegramOutcome::Garbage => return (StatusCode::OK, "<html>not json</html>").into_response(),
    }
    match method.as_str() {
        "sendInvoice" => match (invoice_problem(&params), params.get("chat_id").and_then(Value::as_i64)) {
            (Some(problem), _) => bad_request(&problem),
            (None, None) => bad_request("chat_id is required"),
            (None, Some(chat_id)) => {
                let mut message = message(&mut books, chat_id);
                message["invoice"] = json!({
                    "title": params["title"], "description": params["description"], "start_parameter": "",
                    "currency": params["currency"], "total_amount": params["prices"][0]["amount"],
                });
                ok(message)
            }
        },
        "createInvoiceLink" => match invoice_problem(&params) {
            Some(problem) => bad_request(&problem),
            None => {
                books.next_message += 1;
                ok(json!(format!("https://t.me/$fakeInvoice{}", books.next_message)))
            }
        },
        "answerPreCheckoutQuery" => {
            let id_ok = params.get("pre_checkout_query_id").and_then(Value::as_str).is_some_and(|s| !s.is_empty());
            match params.get("ok").and_then(Value::as_bool) {
                _ if !id_ok => bad_request("pre_checkout_query_id is required"),
                None => bad_request("ok is required"),
                Some(false) if params.get("error_message").and_then(Value::as_str).is_none_or(str::is_empty) => {
                    bad_request("error_message is required when ok is false")
                }
                Some(_) => ok(json!(true)),
            }
        }
        "refundStarPayment" => {
            let user = params.get("user_id").and_then(Value::as_i64);
            let charge = params.get("telegram_payment_charge_id").and_then(Value::as_str).filter(|c| !c.is_empty());
            match (user, charge) {
                (Some(_), Some(charge)) => {
                    if books.refunded.insert(charge.to_owned()) {
                        ok(json!(true))
                    } else {
                        bad_request("CHARGE_ALREADY_REFUNDED")
                    }
                }
                _ => bad_request("user_id and telegram_payment_charge_id are required"),
            }
        }
        "sendMessage" => {
            let text = params.get("text").and_then(Value::as_str).unwrap_or_default();
            match params.get("chat_id").and_then(Value::as_i64) {
                Some(_) if text.is_empty() => bad_request("message text is empty"),
                Some(_) if text.chars().count() > 4096 => bad_request("message is too long"),
                Some(chat_id) => {
                    let mut message = message(&mut books, chat_id);
                    message["text"] = json!(text);
                    ok(message)
                }
                None => bad_request("chat_id is required"),
            }
        }
        _ => error(StatusCode::NOT_FOUND, "Not Found", None),
    }
}

/// A message the bot sent into `chat_id`.
fn message(books: &mut Books, chat_id: i64) -> Value {
    books.next_message += 1;
    json!({
        "message_id": books.next_message,
        "from": {"id": 1, "is_bot": true, "first_name": "REI", "username": "rei_fake_bot"},
        "chat": {"id": chat_id, "type": "private"},
        "date": 1_800_000_000,
    })
}

/// What is wrong with a Stars invoice's parameters, as Telegram would refuse it.
fn invoice_problem(params: &Value) -> Option<String> {
    let text = |key: &str| params.get(key).and_then(Value::as_str);
    let chars = |key: &str| text(key).map(|s| s.chars().count());
    if !chars("title").is_some_and(|n| (1..=32).contains(&n)) {
        return Some("title must be 1-32 characters".into());
    }
    if !chars("description").is_some_and(|n| (1..=255).contains(&n)) {
        return Some("description must be 1-255 characters".into());
    }
    if !text("payload").is_some_and(|p| (1..=128).contains(&p.len())) {
        return Some("payload must be 1-128 bytes".into());
    }
    if text("currency") != Some("XTR") {
        return Some("CURRENCY_INVALID".into());
    }
    if !text("provider_token").is_none_or(str::is_empty) {
        return Some("provider_token must be empty for payments in Telegram Stars".into());
    }
    let prices = params.get("prices").and_then(Value::as_array);
    let one = prices.filter(|p| p.len() == 1).and_then(|p| p.first());
    let amount = one.and_then(|p| p.get("amount")).and_then(Value::as_u64);
    let label = one.and_then(|p| p.get("label")).and_then(Value::as_str);
    if amount.is_none_or(|a| a == 0) || label.is_none_or(str::is_empty) {
        return Some("exactly one price with a label and a positive amount is required in Telegram Stars".into());
    }
    None
}

/// Webhook bodies in the Bot API's wire shape.
pub mod updates {
    use serde_json::json;

    /// A `pre_checkout_query` update.
    #[must_use]
    pub fn pre_checkout_query(
        update_id: i64,
        query_id: &str,
        from: i64,
        currency: &str,
        total_amount: u64,
        invoice_payload: &str,
    ) -> Vec<u8> {
        json!({
            "update_id": update_id,
            "pre_checkout_query": {
                "id": query_id,
                "from": {"id": from, "is_bot": false, "first_name": "Test", "language_code": "ru"},
                "currency": currency,
                "total_amount": total_amount,
                "invoice_payload": invoice_payload,
            },
        })
        .to_string()
        .into_bytes()
    }

    /// A `message` update carrying a `successful_payment`, in the payer's private chat.
    #[must_use]
    pub fn successful_payment(
        update_id: i64,
        from: i64,
        currency: &str,
        total_amount: u64,
        invoice_payload: &str,
        telegram_payment_charge_id: &str,
    ) -> Vec<u8> {
        json!({
            "update_id": update_id,
            "message": {
                "message_id": update_id,
                "from": {"id": from, "is_bot": false, "first_name": "Test", "language_code": "ru"},
                "chat": {"id": from, "first_name": "Test", "type": "private"},
                "date": 1_800_000_000,
                "successful_payment": {
                    "currency": currency,
                    "total_amount": total_amount,
                    "invoice_payload": invoice_payload,
                    "telegram_payment_charge_id": telegram_payment_charge_id,
                    "provider_payment_charge_id": "",
                },
            },
        })
        .to_string()
        .into_bytes()
    }

    /// A text `message` update in the sender's private chat.
    #[must_use]
    pub fn text_message(update_id: i64, from: i64, text: &str) -> Vec<u8> {
        json!({
            "update_id": update_id,
            "message": {
                "message_id": update_id,
                "from": {"id": from, "is_bot": false, "first_name": "Test"},
                "chat": {"id": from, "type": "private"},
                "date": 1_800_000_000,
                "text": text,
            },
        })
        .to_string()
        .into_bytes()
    }
}
