//! YooKassa API v3 (feature `yookassa`): payments and refunds, as [`PaymentGateway`].
//!
//! HTTP Basic auth with the shop id and secret key; every POST carries the caller's idempotency key as
//! `Idempotence-Key`, so a repeat returns the first result. HTTP 500 (the outcome is unknown) and 202 (still
//! processing) are repeated with the same key, a bounded number of times, after the `retry_after` the body names
//! or the configured pause. Amounts travel as two-decimal strings; unknown fields are ignored.

use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use rei_core::ids::{IdempotencyKey, PaymentId};
use rei_core::money::Money;
use rei_core::payments::{
    GatewayError, Payment, PaymentGateway, PaymentRequest, PaymentStatus, Receipt, Refund, RefundRequest, RefundStatus,
};
use serde::Deserialize;
use serde_json::{Value, json};

/// YooKassa's API.
pub const DEFAULT_BASE_URL: &str = "https://api.yookassa.ru";
/// The most bytes of an answer read.
const ANSWER_BYTES_MAX: usize = 1024 * 1024;
/// The longest pause a 202's `retry_after` may ask for.
const RETRY_AFTER_MAX: Duration = Duration::from_secs(60);

/// How to reach one shop's account.
#[derive(Clone)]
pub struct YooKassaConfig {
    /// `https://api.yookassa.ru` (or a fake's URL), without a trailing slash.
    pub base_url: String,
    /// The shop id (Basic auth's user).
    pub shop_id: String,
    /// The secret key (Basic auth's password); never printed.
    pub secret_key: String,
    /// The bound on each call.
    pub timeout: Duration,
    /// How many times a 500 or 202 is repeated with the same key before the call is given up as unavailable.
    pub retries_max: u32,
    /// The pause before a repeat when the answer names none (YooKassa suggests about a minute for a 500; its
    /// SDK waits 1.8 s on a 202).
    pub retry_pause: Duration,
}

impl YooKassaConfig {
    /// A shop's configuration with the defaults: YooKassa's URL, 30 s calls, 3 repeats 2 s apart.
    #[must_use]
    pub fn new(shop_id: &str, secret_key: &str) -> YooKassaConfig {
        YooKassaConfig {
            base_url: DEFAULT_BASE_URL.to_owned(),
            shop_id: shop_id.to_owned(),
            secret_key: secret_key.to_owned(),
            timeout: Duration::from_secs(30),
            retries_max: 3,
            retry_pause: Duration::from_secs(2),
        }
    }
}

impl std::fmt::Debug for YooKassaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("YooKassaConfig")
            .field("base_url", &self.base_url)
            .field("shop_id", &self.shop_id)
            .field("secret_key", &"<redacted>")
            .field("timeout", &self.timeout)
            .field("retries_max", &self.retries_max)
            .field("retry_pause", &self.retry_pause)
            .finish()
    }
}

/// The YooKassa gateway.
#[derive(Debug)]
pub struct YooKassa {
    config: YooKassaConfig,
    client: reqwest::Client,
    auth: String,
}

impl YooKassa {
    /// A gateway for `config`.
    ///
    /// # Errors
    /// The HTTP client's error when its TLS backend cannot start.
    pub fn new(config: YooKassaConfig) -> Result<YooKassa, reqwest::Error> {
        let client = crate::http::client(config.timeout)?;
        let credentials = format!("{}:{}", config.shop_id, config.secret_key);
        let auth = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(credentials));
        Ok(YooKassa { config: YooKassa::trimmed(config), client, auth })
    }

    fn trimmed(mut config: YooKassaConfig) -> YooKassaConfig {
        config.base_url = config.base_url.trim_end_matches('/').to_owned();
        config
    }

    /// One call, repeated with the same key on 500 and 202.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        key: Option<&IdempotencyKey>,
        body: Option<&Value>,
    ) -> Result<Value, GatewayError> {
        let url = format!("{}/v3/{path}", self.config.base_url);
        let mut tries = 0;
        loop {
            let mut request = self.client.request(method.clone(), &url).header("Authorization", &self.auth);
            if let Some(key) = key {
                request = request.header("Idempotence-Key", key.as_str());
            }
            if let Some(body) = body {
                request = request.json(body);
            }
            let (status, answer) = match request.send().await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    (status, read_body(response).await?)
                }
                Err(e) => {
                    return Err(GatewayError::Unavailable { reason: format!("no answer from YooKassa: {e}") });
                }
            };
            match read_answer(status, &answer) {
                Answer::Done(value) => return Ok(value),
                Answer::Failed(e) => return Err(e),
                Answer::Repeat { after } if tries < self.config.retries_max => {
                    tries += 1;
                    tokio::time::sleep(after.unwrap_or(self.config.retry_pause).min(RETRY_AFTER_MAX)).await;
                }
                Answer::Repeat { .. } => {
                    return Err(GatewayError::Unavailable {
                        reason: format!("YooKassa did not decide after {} repeats (HTTP {status})", tries + 1),
                    });
                }
            }
        }
    }
}

/// Reads a body up to [`ANSWER_BYTES_MAX`].
async fn read_body(mut response: reqwest::Response) -> Result<Vec<u8>, GatewayError> {
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > ANSWER_BYTES_MAX {
                    return Err(GatewayError::Garbage { reason: "the answer is over 1 MiB".to_owned() });
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(e) => return Err(GatewayError::Unavailable { reason: format!("the answer was cut short: {e}") }),
        }
    }
}

/// What an answer means.
enum Answer {
    Done(Value),
    Failed(GatewayError),
    /// 500 (outcome unknown) or 202 (still processing): ask again with the same key.
    Repeat {
        after: Option<Duration>,
    },
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    parameter: Option<String>,
}

fn read_answer(status: u16, body: &[u8]) -> Answer {
    if status == 202 || status == 500 {
        let after = serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v.get("retry_after").and_then(Value::as_u64))
            .map(Duration::from_millis);
        return Answer::Repeat { after };
    }
    if (200..300).contains(&status) {
        return match serde_json::from_slice::<Value>(body) {
            Ok(value) if value.is_object() => Answer::Done(value),
            _ => Answer::Failed(GatewayError::Garbage {
                reason: format!("HTTP {status} with a body that is not a JSON object"),
            }),
        };
    }
    let error = serde_json::from_slice::<ErrorBody>(body).ok();
    let reason = match &error {
        Some(e) => format!(
            "HTTP {status} {}: {}{}",
            e.code.as_deref().unwrap_or("?"),
            e.description.as_deref().unwrap_or(""),
            e.parameter.as_deref().map(|p| format!(" ({p})")).unwrap_or_default()
        ),
        None => format!("HTTP {status}"),
    };
    let reason: String = reason.chars().take(512).collect();
    Answer::Failed(match status {
        401 => GatewayError::Unauthorized { reason },
        404 => GatewayError::NotFound,
        429 | 502..=504 => GatewayError::Unavailable { reason },
        _ if status >= 500 => GatewayError::Unavailable { reason },
        _ => GatewayError::Rejected { reason },
    })
}

fn garbage(why: &str) -> GatewayError {
    GatewayError::Garbage { reason: why.to_owned() }
}

fn amount_json(amount: Money) -> Value {
    json!({"value": amount.to_string(), "currency": "RUB"})
}

fn money_of(value: &Value) -> Result<(Money, String), GatewayError> {
    let text = value.get("value").and_then(Value::as_str).ok_or_else(|| garbage("amount.value is missing"))?;
    let money = Money::parse(text).map_err(|e| garbage(&format!("amount.value {text:?}: {e}")))?;
    let currency = value.get("currency").and_then(Value::as_str).unwrap_or("").to_owned();
    Ok((money, currency))
}

fn receipt_json(r: &Receipt, amount: Money) -> Value {
    let mut customer = serde_json::Map::new();
    if let Some(email) = &r.customer_email {
        customer.insert("email".into(), json!(email));
    }
    if let Some(phone) = &r.customer_phone {
        customer.insert("phone".into(), json!(phone));
    }
    let mut receipt = json!({
        "customer": customer,
        "items": [{
            "description": r.item_description,
            "quantity": "1.00",
            "amount": amount_json(amount),
            "vat_code": r.vat_code,
            "payment_mode": r.payment_mode,
            "payment_subject": r.payment_subject,
            "measure": "piece",
        }],
    });
    if let (Some(code), Some(map)) = (r.tax_system_code, receipt.as_object_mut()) {
        map.insert("tax_system_code".into(), json!(code));
    }
    receipt
}

/// Reads a payment object (ignoring unknown fields).
///
/// # Errors
/// [`GatewayError::Garbage`] for a missing id, status or amount.
pub fn read_payment(value: &Value) -> Result<Payment, GatewayError> {
    let id = value.get("id").and_then(Value::as_str).ok_or_else(|| garbage("the payment has no id"))?;
    let id = PaymentId::parse(id).map_err(|e| garbage(&format!("payment id {id:?}: {e}")))?;
    let status = match value.get("status").and_then(Value::as_str) {
        Some("pending") => PaymentStatus::Pending,
        Some("waiting_for_capture") => PaymentStatus::WaitingForCapture,
        Some("succeeded") => PaymentStatus::Succeeded,
        Some("canceled") => PaymentStatus::Canceled,
        other => return Err(garbage(&format!("unknown payment status {other:?}"))),
    };
    let (amount, currency) = money_of(value.get("amount").ok_or_else(|| garbage("the payment has no amount"))?)?;
    let metadata = value
        .get("metadata")
        .and_then(Value::as_object)
        .map(|m| m.iter().filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned()))).collect())
        .unwrap_or_default();
    Ok(Payment {
        id,
        status,
        amount,
        currency,
        confirmation_url: value.pointer("/confirmation/confirmation_url").and_then(Value::as_str).map(str::to_owned),
        metadata,
        test: value.get("test").and_then(Value::as_bool).unwrap_or(false),
        cancellation_reason: value.pointer("/cancellation_details/reason").and_then(Value::as_str).map(str::to_owned),
    })
}

/// Reads a refund object.
///
/// # Errors
/// [`GatewayError::Garbage`] for a missing id, payment, status or amount.
pub fn read_refund(value: &Value) -> Result<Refund, GatewayError> {
    let id = value.get("id").and_then(Value::as_str).ok_or_else(|| garbage("the refund has no id"))?.to_owned();
    let payment =
        value.get("payment_id").and_then(Value::as_str).ok_or_else(|| garbage("the refund has no payment_id"))?;
    let payment = PaymentId::parse(payment).map_err(|e| garbage(&format!("payment id {payment:?}: {e}")))?;
    let status = match value.get("status").and_then(Value::as_str) {
        Some("pending") => RefundStatus::Pending,
        Some("succeeded") => RefundStatus::Succeeded,
        Some("canceled") => RefundStatus::Canceled,
        other => return Err(garbage(&format!("unknown refund status {other:?}"))),
    };
    let (amount, _) = money_of(value.get("amount").ok_or_else(|| garbage("the refund has no amount"))?)?;
    Ok(Refund { id, payment, status, amount })
}

/// The most bytes of a notice read.
pub const NOTICE_BYTES_MAX: usize = 64 * 1024;

/// Reads a notice YooKassa POSTs (`{"type":"notification","event":…,"object":{"id":…}}`) into what
/// [`rei_core::topups::TopUps::on_notice`] acts on. Only the event and the object's id are taken: the rest is the
/// sender's word, which is not believed.
///
/// # Errors
/// [`GatewayError::Garbage`] for a body that is too large, not JSON, not a notification, or without an object id.
pub fn parse_notice(body: &[u8]) -> Result<rei_core::topups::Notice, GatewayError> {
    use rei_core::topups::{Notice, NoticeEvent};
    if body.len() > NOTICE_BYTES_MAX {
        return Err(garbage("the notice is over 64 KiB"));
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| garbage(&format!("the notice is not JSON: {e}")))?;
    if value.get("type").and_then(Value::as_str) != Some("notification") {
        return Err(garbage("the body is not a notification"));
    }
    let event = value.get("event").and_then(Value::as_str).ok_or_else(|| garbage("the notice names no event"))?;
    let object_id = value
        .pointer("/object/id")
        .and_then(Value::as_str)
        .filter(|id| path_id(id).is_ok())
        .ok_or_else(|| garbage("the notice's object has no usable id"))?;
    let event = match event {
        "payment.succeeded" => NoticeEvent::PaymentSucceeded,
        "payment.canceled" => NoticeEvent::PaymentCanceled,
        "payment.waiting_for_capture" => NoticeEvent::PaymentWaitingForCapture,
        "refund.succeeded" => NoticeEvent::RefundSucceeded,
        other => NoticeEvent::Other(other.chars().take(64).collect()),
    };
    Ok(Notice { event, object_id: object_id.to_owned() })
}

/// Ids travel in URL paths: only YooKassa's own id characters are sent.
fn path_id(id: &str) -> Result<&str, GatewayError> {
    if !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        Ok(id)
    } else {
        Err(GatewayError::Rejected { reason: format!("{id:?} is not a YooKassa id") })
    }
}

#[async_trait]
impl PaymentGateway for YooKassa {
    async fn create_payment(&self, key: &IdempotencyKey, request: &PaymentRequest) -> Result<Payment, GatewayError> {
        let mut body = json!({
            "amount": amount_json(request.amount),
            "capture": true,
            "confirmation": {"type": "redirect", "return_url": request.return_url},
            "description": request.description.chars().take(128).collect::<String>(),
            "metadata": request.metadata,
        });
        if let (Some(receipt), Some(map)) = (&request.receipt, body.as_object_mut()) {
            map.insert("receipt".into(), receipt_json(receipt, request.amount));
        }
        let answer = self.call(reqwest::Method::POST, "payments", Some(key), Some(&body)).await?;
        read_payment(&answer)
    }

    async fn payment(&self, id: &PaymentId) -> Result<Payment, GatewayError> {
        let path = format!("payments/{}", path_id(id.as_str())?);
        read_payment(&self.call(reqwest::Method::GET, &path, None, None).await?)
    }

    async fn create_refund(&self, key: &IdempotencyKey, request: &RefundRequest) -> Result<Refund, GatewayError> {
        let mut body = json!({"payment_id": request.payment.as_str(), "amount": amount_json(request.amount)});
        if let (Some(description), Some(map)) = (&request.description, body.as_object_mut()) {
            map.insert("description".into(), json!(description));
        }
        read_refund(&self.call(reqwest::Method::POST, "refunds", Some(key), Some(&body)).await?)
    }

    async fn refund(&self, id: &str) -> Result<Refund, GatewayError> {
        let path = format!("refunds/{}", path_id(id)?);
        read_refund(&self.call(reqwest::Method::GET, &path, None, None).await?)
    }
}
