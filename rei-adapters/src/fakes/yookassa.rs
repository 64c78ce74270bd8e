//! A fake YooKassa API v3: payments and refunds in memory, Basic auth and `Idempotence-Key` checked as YooKassa
//! does (a repeat with the same body returns the first result; the same key with another body is refused), and
//! each POST's outcome scripted ([`YooKassaOutcome`]), and each GET's too ([`FakeYooKassa::read_script`]). A test moves a payment on with
//! [`FakeYooKassa::set_status`], as a payer paying or walking away would.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use serde_json::{Value, json};

use super::{FakeServer, Script};

/// What the fake does with one POST.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum YooKassaOutcome {
    /// As YooKassa would.
    Normal,
    /// HTTP 500 (the outcome unknown), doing nothing.
    ServerError,
    /// HTTP 202 with `retry_after` of 10 ms, doing nothing.
    Processing,
    /// HTTP 200 with a body that is not JSON.
    Garbage,
}

#[derive(Default)]
struct Books {
    payments: HashMap<String, Value>,
    refunds: HashMap<String, Value>,
    /// Idempotence key -> (request body, answer).
    keys: HashMap<String, (Value, Value)>,
    next: u64,
    posts: u64,
}

struct Shared {
    auth: String,
    script: Arc<Script<YooKassaOutcome>>,
    reads: Arc<Script<YooKassaOutcome>>,
    books: Mutex<Books>,
}

/// A running fake YooKassa.
pub struct FakeYooKassa {
    server: FakeServer,
    shared: Arc<Shared>,
}

impl FakeYooKassa {
    /// Starts a fake for the shop `shop_id` with `secret_key`.
    ///
    /// # Errors
    /// The bind's I/O error.
    pub async fn start(shop_id: &str, secret_key: &str) -> std::io::Result<FakeYooKassa> {
        let credentials = base64::engine::general_purpose::STANDARD.encode(format!("{shop_id}:{secret_key}"));
        let shared = Arc::new(Shared {
            auth: format!("Basic {credentials}"),
            script: Script::new(YooKassaOutcome::Normal),
            reads: Script::new(YooKassaOutcome::Normal),
            books: Mutex::new(Books::default()),
        });
        let app = Router::new()
            .route("/v3/payments", post(create_payment))
            .route("/v3/payments/{id}", get(payment))
            .route("/v3/refunds", post(create_refund))
            .route("/v3/refunds/{id}", get(refund))
            .with_state(shared.clone());
        Ok(FakeYooKassa { server: FakeServer::start(app).await?, shared })
    }

    /// The base URL to give the adapter.
    #[must_use]
    pub fn base_url(&self) -> String {
        self.server.base_url()
    }

    /// One outcome per POST, in order.
    #[must_use]
    pub fn script(&self) -> Arc<Script<YooKassaOutcome>> {
        self.shared.script.clone()
    }

    /// One outcome per GET (of a payment or a refund), in order: a gateway that cannot be asked.
    #[must_use]
    pub fn read_script(&self) -> Arc<Script<YooKassaOutcome>> {
        self.shared.reads.clone()
    }

    /// Moves a payment to `status` (`succeeded`, `canceled`, `waiting_for_capture`); `false` when unknown.
    pub fn set_status(&self, id: &str, status: &str) -> bool {
        let mut books = self.shared.books.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(payment) = books.payments.get_mut(id) else { return false };
        payment["status"] = json!(status);
        payment["paid"] = json!(status == "succeeded" || status == "waiting_for_capture");
        if status == "canceled" {
            payment["cancellation_details"] = json!({"party": "yoo_money", "reason": "expired_on_confirm"});
        }
        true
    }

    /// Payments created.
    #[must_use]
    pub fn payments(&self) -> usize {
        self.shared.books.lock().unwrap_or_else(PoisonError::into_inner).payments.len()
    }

    /// Numbers the payments made from now on from `base + 1` (the ids' last 12 hex digits), so that fakes
    /// started at different times against one database do not hand out the same ids.
    pub fn set_id_base(&self, base: u64) {
        let mut books = self.shared.books.lock().unwrap_or_else(PoisonError::into_inner);
        books.next = books.next.max(base & 0xffff_ffff_ffff);
    }

    /// POSTs received, whatever their outcome.
    #[must_use]
    pub fn posts(&self) -> u64 {
        self.shared.books.lock().unwrap_or_else(PoisonError::into_inner).posts
    }

    /// The body the payment `id` was created with.
    #[must_use]
    pub fn created_with(&self, id: &str) -> Option<Value> {
        let books = self.shared.books.lock().unwrap_or_else(PoisonError::into_inner);
        books.keys.values().find(|(_, answer)| answer["id"] == json!(id)).map(|(body, _)| body.clone())
    }

    /// Stops serving.
    pub async fn stop(self) {
        self.server.stop().await;
    }
}

fn error(status: StatusCode, code: &str, description: &str) -> Response {
    let body = json!({"type": "error", "id": "fake", "code": code, "description": description});
    (status, axum::Json(body)).into_response()
}

/// Auth, the script and the idempotence key of a POST: `Err` is the answer to send as it is.
fn admit(shared: &Shared, headers: &HeaderMap, body: &Bytes) -> Result<(String, Value), Box<Response>> {
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(shared.auth.as_str()) {
        return Err(Box::new(error(StatusCode::UNAUTHORIZED, "invalid_credentials", "Authentication error")));
    }
    shared.books.lock().unwrap_or_else(PoisonError::into_inner).posts += 1;
    match shared.script.next() {
        YooKassaOutcome::Normal => {}
        YooKassaOutcome::ServerError => {
            return Err(Box::new(error(StatusCode::INTERNAL_SERVER_ERROR, "internal_server_error", "Internal error")));
        }
        YooKassaOutcome::Processing => {
            let body = json!({"type": "processing", "retry_after": 10});
            return Err(Box::new((StatusCode::ACCEPTED, axum::Json(body)).into_response()));
        }
        YooKassaOutcome::Garbage => return Err(Box::new((StatusCode::OK, "<html>not json</html>").into_response())),
    }
    let Some(key) = headers.get("idempotence-key").and_then(|v| v.to_str().ok()).map(str::to_owned) else {
        return Err(Box::new(error(StatusCode::BAD_REQUEST, "invalid_request", "Idempotence-Key is required")));
    };
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return Err(Box::new(error(StatusCode::BAD_REQUEST, "invalid_request", "the body is not JSON")));
    };
    Ok((key, value))
}

/// The stored answer of a repeated key, or the refusal of a key reused with another body.
fn repeated(books: &Books, key: &str, body: &Value) -> Option<Response> {
    let (first, answer) = books.keys.get(key)?;
    if first == body {
        let current = books.payments.get(answer["id"].as_str().unwrap_or_default()).unwrap_or(answer);
        Some((StatusCode::OK, axum::Json(current.clone())).into_response())
    } else {
        Some(error(StatusCode::BAD_REQUEST, "invalid_request", "Idempotence key duplicated"))
    }
}

async fn create_payment(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let (key, body) = match admit(&shared, &headers, &body) {
        Ok(admitted) => admitted,
        Err(answer) => return *answer,
    };
    let mut books = shared.books.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(answer) = repeated(&books, &key, &body) {
        return answer;
    }
    let value = body.pointer("/amount/value").and_then(Value::as_str).unwrap_or("");
    let two_decimals = value.split_once('.').is_some_and(|(_, f)| f.len() == 2);
    if !two_decimals || body.pointer("/amount/currency") != Some(&json!("RUB")) {
        return error(StatusCode::BAD_REQUEST, "invalid_request", "amount.value must have two decimals, in RUB");
    }
    books.next += 1;
    let id = format!("2d000000-000f-5000-8000-{:012x}", books.next);
    let payment = json!({
        "id": id, "status": "pending", "paid": false,
        "amount": body["amount"], "description": body["description"],
        "metadata": body.get("metadata").cloned().unwrap_or_else(|| json!({})),
        "confirmation": {"type": "redirect", "confirmation_url": format!("https://yoomoney.example/confirm/{id}")},
        "created_at": "2026-12-01T00:00:00.000Z", "test": true, "refundable": false,
        "recipient": {"account_id": "100500", "gateway_id": "100700"},
    });
    books.payments.insert(id, payment.clone());
    books.keys.insert(key, (body, payment.clone()));
    (StatusCode::OK, axum::Json(payment)).into_response()
}

async fn payment(State(shared): State<Arc<Shared>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    read(&shared, &headers, |books| books.payments.get(&id).cloned(), "Payment not found")
}

/// A GET: the auth check, the read script, then the object `find` finds, or 404.
fn read(shared: &Shared, headers: &HeaderMap, find: impl FnOnce(&Books) -> Option<Value>, missing: &str) -> Response {
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(shared.auth.as_str()) {
        return error(StatusCode::UNAUTHORIZED, "invalid_credentials", "Authentication error");
    }
    match shared.reads.next() {
        YooKassaOutcome::Normal => {}
        YooKassaOutcome::ServerError => {
            return error(StatusCode::INTERNAL_SERVER_ERROR, "internal_server_error", "Internal error");
        }
        YooKassaOutcome::Processing => {
            let body = json!({"type": "processing", "retry_after": 10});
            return (StatusCode::ACCEPTED, axum::Json(body)).into_response();
        }
        YooKassaOutcome::Garbage => return (StatusCode::OK, "<html>not json</html>").into_response(),
    }
    let found = find(&shared.books.lock().unwrap_or_else(PoisonError::into_inner));
    match found {
        Some(object) => (StatusCode::OK, axum::Json(object)).into_response(),
        None => error(StatusCode::NOT_FOUND, "not_found", missing),
    }
}

async fn create_refund(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let (key, body) = match admit(&shared, &headers, &body) {
        Ok(admitted) => admitted,
        Err(answer) => return *answer,
    };
    let mut books = shared.books.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((first, answer)) = books.keys.get(&key) {
        return if *first == body {
            (StatusCode::OK, axum::Json(answer.clone())).into_response()
        } else {
            error(StatusCode::BAD_REQUEST, "invalid_request", "Idempotence key duplicated")
        };
    }
    let payment_id = body["payment_id"].as_str().unwrap_or_default().to_owned();
    let Some(payment) = books.payments.get(&payment_id) else {
        return error(StatusCode::BAD_REQUEST, "invalid_request", "payment_id is unknown");
    };
    if payment["status"] != json!("succeeded") {
        return error(StatusCode::BAD_REQUEST, "invalid_request", "only succeeded payments can be refunded");
    }
    books.next += 1;
    let id = format!("2e000000-0015-5000-9000-{:012x}", books.next);
    let refund = json!({"id": id, "payment_id": payment_id, "status": "succeeded", "amount": body["amount"],
                        "created_at": "2026-12-01T00:00:00.000Z"});
    books.refunds.insert(id, refund.clone());
    books.keys.insert(key, (body, refund.clone()));
    (StatusCode::OK, axum::Json(refund)).into_response()
}

async fn refund(State(shared): State<Arc<Shared>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    read(&shared, &headers, |books| books.refunds.get(&id).cloned(), "Refund not found")
}
