//! A fake of Google's Gemini API `generateContent` (feature `fakes`): `POST /v1beta/models/{model}:generateContent`
//! checked for its `x-goog-api-key`, answered as the script says, in Google's wire format.
//!
//! A missing key is answered 403 `PERMISSION_DENIED` and a wrong one 400 `INVALID_ARGUMENT` with `ErrorInfo`
//! reason `API_KEY_INVALID`, as Google does. A body that is not a `generateContent` request is answered 400
//! `INVALID_ARGUMENT`. Neither takes an outcome from the script.
//!
//! The default outcome, [`GeminiOutcome::Success`], answers at once with a body encoded once at start, so that
//! benchmarks can push thousands of requests a second through it.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use tokio::sync::{oneshot, watch};

use super::{FakeServer, Script};

/// The image every success returns: a 1×1 PNG (amber).
pub const IMAGE_PNG: [u8; 69] = [
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x02, 0x00, 0x00, 0x00, 0x90, 0x77, 0x53, 0xde, 0x00, 0x00, 0x00, 0x0c, 0x49,
    0x44, 0x41, 0x54, 0x78, 0xda, 0x63, 0xf8, 0x7f, 0x82, 0x01, 0x00, 0x04, 0x91, 0x01, 0xc8, 0xcc, 0x46, 0xea, 0xda,
    0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
];
/// The interim draft a success sends first as a thought part, when thoughts are on: a 1×1 PNG (grey).
pub const THOUGHT_PNG: [u8; 69] = [
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x02, 0x00, 0x00, 0x00, 0x90, 0x77, 0x53, 0xde, 0x00, 0x00, 0x00, 0x0c, 0x49,
    0x44, 0x41, 0x54, 0x78, 0xda, 0x63, 0x68, 0x68, 0x68, 0x00, 0x00, 0x03, 0x04, 0x01, 0x81, 0x75, 0x2e, 0x01, 0xbc,
    0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
];
/// The media type of [`IMAGE_PNG`] and [`THOUGHT_PNG`].
pub const IMAGE_MIME: &str = "image/png";
/// The prefix of every success's `responseId`; the request's number follows (`fake-gemini-1`).
pub const RESPONSE_ID_PREFIX: &str = "fake-gemini-";

/// The most bytes a request body may have: above Google's 20 MB of inline data.
const REQUEST_MAX_BYTES: usize = 64 * 1024 * 1024;
/// How long [`GeminiOutcome::Timeout`] holds a request.
const HANG: Duration = Duration::from_secs(600);

/// How the fake answers one request.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum GeminiOutcome {
    /// HTTP 200 with [`IMAGE_PNG`], after a thought draft ([`THOUGHT_PNG`]) when thoughts are on.
    Success,
    /// A success after this long; dropped, and not generated, if the client goes first.
    Slow(Duration),
    /// HTTP 500 `INTERNAL`.
    ServerError,
    /// HTTP 503 `UNAVAILABLE` ("The model is overloaded").
    Overloaded,
    /// No answer for ten minutes; dropped when the client goes.
    Timeout,
    /// A success generated after this long whether or not the client is still there: the provider did (and
    /// billed) the work even if the answer is lost. Counted in [`FakeGemini::images_generated`].
    SucceedAfterTimeout(Duration),
    /// HTTP 200 with `promptFeedback.blockReason` `PROHIBITED_CONTENT` and no candidates.
    Blocked,
    /// HTTP 200, `finishReason` `IMAGE_SAFETY`, no image.
    ImageSafety,
    /// HTTP 200, `finishReason` `STOP`, text only: the silent refusal.
    SilentRefusal,
    /// HTTP 429 `RESOURCE_EXHAUSTED` with a `RetryInfo` of this delay.
    RateLimited(Duration),
    /// HTTP 400 `FAILED_PRECONDITION` "User location is not supported for the API use."
    RegionRefused,
    /// HTTP 200 with a body that is not JSON.
    Garbage,
    /// A success whose image is this many bytes ([`IMAGE_PNG`], padded with zeros or cut).
    HugeImage(usize),
    /// This status and body, as they are (`application/json`).
    Raw {
        /// The HTTP status.
        status: u16,
        /// The body.
        body: String,
    },
}

/// How the fake is set up.
#[derive(Clone, Debug)]
pub struct FakeGeminiConfig {
    /// The key it takes in `x-goog-api-key`.
    pub api_key: String,
    /// `true`: a success sends, before its image, a thought text and a thought draft image, as Gemini 3 does.
    pub thoughts: bool,
}

impl Default for FakeGeminiConfig {
    /// Key `fake-gemini-key`, thoughts on.
    fn default() -> FakeGeminiConfig {
        FakeGeminiConfig { api_key: "fake-gemini-key".to_owned(), thoughts: true }
    }
}

/// What the fake saw of the requests it served.
#[derive(Default, Debug)]
struct Records {
    requests: u64,
    last_body: Option<Value>,
    last_model: Option<String>,
    last_inline_data: Option<bool>,
}

struct Shared {
    config: FakeGeminiConfig,
    script: Arc<Script<GeminiOutcome>>,
    records: Mutex<Records>,
    generated: watch::Sender<u64>,
    /// A success's body up to `"modelVersion":`; the model and the response id follow.
    success_head: Bytes,
}

/// A running fake Gemini API.
pub struct FakeGemini {
    server: FakeServer,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for FakeGemini {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeGemini").field("server", &self.server).finish_non_exhaustive()
    }
}

impl FakeGemini {
    /// Starts the fake on 127.0.0.1 on a free port; it answers [`GeminiOutcome::Success`] when nothing is scripted.
    ///
    /// # Errors
    /// The bind's I/O error.
    pub async fn start(config: FakeGeminiConfig) -> std::io::Result<FakeGemini> {
        let success_head = Bytes::from(success_head(config.thoughts, &STANDARD.encode(IMAGE_PNG)));
        let shared = Arc::new(Shared {
            config,
            script: Script::new(GeminiOutcome::Success),
            records: Mutex::new(Records::default()),
            generated: watch::Sender::new(0),
            success_head,
        });
        let app = Router::new()
            .route("/v1beta/models/{call}", post(generate))
            .fallback(not_found)
            .layer(DefaultBodyLimit::max(REQUEST_MAX_BYTES))
            .with_state(Arc::clone(&shared));
        let server = FakeServer::start(app).await?;
        Ok(FakeGemini { server, shared })
    }

    /// `http://127.0.0.1:PORT`, the base URL to give the adapter.
    #[must_use]
    pub fn base_url(&self) -> String {
        self.server.base_url()
    }

    /// The script: one outcome per request that passes the key and body checks.
    #[must_use]
    pub fn script(&self) -> Arc<Script<GeminiOutcome>> {
        Arc::clone(&self.shared.script)
    }

    /// Requests received on the `generateContent` route, refused ones included.
    #[must_use]
    pub fn requests(&self) -> u64 {
        self.records().requests
    }

    /// The last request's body, when it was JSON.
    #[must_use]
    pub fn last_body(&self) -> Option<Value> {
        self.records().last_body.clone()
    }

    /// The model the last request named.
    #[must_use]
    pub fn last_model(&self) -> Option<String> {
        self.records().last_model.clone()
    }

    /// Whether the last request carried an `inlineData` part; `None` when its body was not JSON.
    #[must_use]
    pub fn last_sent_inline_data(&self) -> Option<bool> {
        self.records().last_inline_data
    }

    /// Images generated so far (successes, including those whose client had gone: the work Google bills).
    #[must_use]
    pub fn images_generated(&self) -> u64 {
        *self.shared.generated.borrow()
    }

    /// Waits until at least `count` images were generated.
    pub async fn wait_images_generated(&self, count: u64) {
        let mut seen = self.shared.generated.subscribe();
        // The sender lives as long as `self`, so the wait cannot fail while it is awaited.
        let _ = seen.wait_for(|n| *n >= count).await;
    }

    /// Stops serving.
    pub async fn stop(self) {
        self.server.stop().await;
    }

    fn records(&self) -> std::sync::MutexGuard<'_, Records> {
        self.shared.records.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The `generateContent` route: the segment is `{model}:generateContent`.
async fn generate(
    State(shared): State<Arc<Shared>>,
    Path(call): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some((model, "generateContent")) = call.rsplit_once(':') else {
        return not_found().await;
    };
    let parsed = serde_json::from_slice::<Value>(&body).ok();
    let has_parts =
        parsed.as_ref().and_then(|b| b["contents"][0]["parts"].as_array()).is_some_and(|parts| !parts.is_empty());
    let request_number = {
        let mut records = shared.records.lock().unwrap_or_else(PoisonError::into_inner);
        records.requests += 1;
        records.last_model = Some(model.to_owned());
        records.last_inline_data = parsed.as_ref().map(has_inline_data);
        records.last_body = parsed;
        records.requests
    };
    match headers.get("x-goog-api-key").map(HeaderValue::as_bytes) {
        None => {
            return google_error(403, "PERMISSION_DENIED", "Method doesn't allow unregistered callers.", json!([]));
        }
        Some(key) if key != shared.config.api_key.as_bytes() => {
            let info = json!([{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
                "domain": "googleapis.com"}]);
            return google_error(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.", info);
        }
        Some(_) => {}
    }
    if !has_parts {
        return google_error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.", json!([]));
    }
    let success = |shared: &Shared| {
        shared.generated.send_modify(|n| *n += 1);
        json_response(200, success_body(&shared.success_head, model, request_number))
    };
    match shared.script.next() {
        GeminiOutcome::Success => success(&shared),
        GeminiOutcome::Slow(delay) => {
            tokio::time::sleep(delay).await;
            success(&shared)
        }
        GeminiOutcome::SucceedAfterTimeout(delay) => {
            let (done, answer) = oneshot::channel();
            let body_shared = Arc::clone(&shared);
            let model = model.to_owned();
            // Spawned, so that the image is generated even when the client has gone and this handler is dropped.
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                body_shared.generated.send_modify(|n| *n += 1);
                let _ = done.send(success_body(&body_shared.success_head, &model, request_number));
            });
            match answer.await {
                Ok(body) => json_response(200, body),
                Err(_) => google_error(500, "INTERNAL", "Internal error encountered.", json!([])),
            }
        }
        GeminiOutcome::ServerError => google_error(500, "INTERNAL", "Internal error encountered.", json!([])),
        GeminiOutcome::Overloaded => {
            google_error(503, "UNAVAILABLE", "The model is overloaded. Please try again later.", json!([]))
        }
        GeminiOutcome::Timeout => {
            tokio::time::sleep(HANG).await;
            google_error(504, "DEADLINE_EXCEEDED", "Deadline expired before operation could complete.", json!([]))
        }
        GeminiOutcome::Blocked => json_value(
            200,
            &json!({"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"},
                "usageMetadata": {"promptTokenCount": 12, "totalTokenCount": 12}, "modelVersion": model}),
        ),
        GeminiOutcome::ImageSafety => json_value(
            200,
            &json!({"candidates": [{"content": {"role": "model", "parts": []}, "finishReason": "IMAGE_SAFETY",
                "index": 0}], "modelVersion": model, "responseId": response_id(request_number)}),
        ),
        GeminiOutcome::SilentRefusal => json_value(
            200,
            &json!({"candidates": [{"content": {"role": "model", "parts": [
                {"text": "I can't create that image, but I can describe it instead."}]},
                "finishReason": "STOP", "index": 0}], "modelVersion": model, "responseId": response_id(request_number)}),
        ),
        GeminiOutcome::RateLimited(delay) => {
            let details = json!([
                {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [
                    {"quotaMetric": "generativelanguage.googleapis.com/generate_content_paid_tier_requests",
                     "quotaId": "GenerateRequestsPerMinutePerProjectPerModel"}]},
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": proto_duration(delay)}
            ]);
            google_error(429, "RESOURCE_EXHAUSTED", "You exceeded your current quota, please check your plan.", details)
        }
        GeminiOutcome::RegionRefused => {
            google_error(400, "FAILED_PRECONDITION", "User location is not supported for the API use.", json!([]))
        }
        GeminiOutcome::Garbage => json_response(200, Bytes::from_static(b"<html><body>502 Bad Gateway</body></html>")),
        GeminiOutcome::HugeImage(size) => {
            let mut image = IMAGE_PNG.to_vec();
            image.resize(size, 0);
            let head = success_head(false, &STANDARD.encode(&image));
            shared.generated.send_modify(|n| *n += 1);
            json_response(200, success_body(&Bytes::from(head), model, request_number))
        }
        GeminiOutcome::Raw { status, body } => json_response(status, Bytes::from(body)),
    }
}

/// Any other path: Google's 404.
async fn not_found() -> Response {
    google_error(404, "NOT_FOUND", "Requested entity was not found.", json!([]))
}

/// `true` when any part of any content is an `inlineData` part.
fn has_inline_data(body: &Value) -> bool {
    let contents = body["contents"].as_array().map(Vec::as_slice).unwrap_or_default();
    contents.iter().filter_map(|c| c["parts"].as_array()).flatten().any(|p| p.get("inlineData").is_some())
}

/// A success's body up to and including `"modelVersion":`, with `image` (base64) as its final image.
fn success_head(thoughts: bool, image: &str) -> Vec<u8> {
    let mut parts = Vec::with_capacity(4);
    if thoughts {
        parts.push(json!({"text": "Planning the composition and lighting.", "thought": true}));
        parts.push(
            json!({"inlineData": {"mimeType": IMAGE_MIME, "data": STANDARD.encode(THOUGHT_PNG)}, "thought": true}),
        );
    }
    parts.push(json!({"text": "Here is your image."}));
    parts.push(json!({"inlineData": {"mimeType": IMAGE_MIME, "data": image}, "thoughtSignature": "ZmFrZQ=="}));
    let candidates = json!([{"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}]);
    let usage = json!({"promptTokenCount": 12, "candidatesTokenCount": 1290, "totalTokenCount": 1302,
        "candidatesTokensDetails": [{"modality": "IMAGE", "tokenCount": 1290}]});
    format!(r#"{{"candidates":{candidates},"usageMetadata":{usage},"modelVersion":"#).into_bytes()
}

/// `head` completed with the model and this request's response id.
fn success_body(head: &Bytes, model: &str, request_number: u64) -> Bytes {
    let model = Value::String(model.to_owned()).to_string();
    let mut body = Vec::with_capacity(head.len() + model.len() + 48);
    body.extend_from_slice(head);
    body.extend_from_slice(model.as_bytes());
    body.extend_from_slice(br#","responseId":""#);
    body.extend_from_slice(response_id(request_number).as_bytes());
    body.extend_from_slice(b"\"}");
    Bytes::from(body)
}

fn response_id(request_number: u64) -> String {
    format!("{RESPONSE_ID_PREFIX}{request_number}")
}

/// `delay` as protobuf's JSON writes a duration: `"28s"`, `"1.5s"`.
fn proto_duration(delay: Duration) -> String {
    let mut text = delay.as_secs().to_string();
    let nanos = delay.subsec_nanos();
    if nanos != 0 {
        let _ = write!(text, ".{nanos:09}");
        while text.ends_with('0') {
            text.pop();
        }
    }
    text.push('s');
    text
}

fn google_error(code: u16, status: &str, message: &str, details: Value) -> Response {
    json_value(code, &json!({"error": {"code": code, "message": message, "status": status, "details": details}}))
}

fn json_value(status: u16, value: &Value) -> Response {
    json_response(status, Bytes::from(value.to_string()))
}

fn json_response(status: u16, body: Bytes) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json; charset=UTF-8"))], body)
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_written_as_protobuf_does() {
        // Proves the fake's RetryInfo is what Google sends, so the adapter's parser is tested on the real form.
        assert_eq!(proto_duration(Duration::from_secs(28)), "28s");
        assert_eq!(proto_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(proto_duration(Duration::from_nanos(1)), "0.000000001s");
    }

    #[test]
    fn the_success_body_is_json_with_the_image_last() {
        // Proves the pre-encoded body completes into valid JSON naming the model and the request.
        let body = success_body(&Bytes::from(success_head(true, "QUJD")), "m\"odel", 7);
        let value: Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(value["modelVersion"], "m\"odel");
        assert_eq!(value["responseId"], "fake-gemini-7");
        assert_eq!(value["candidates"][0]["content"]["parts"][3]["inlineData"]["data"], "QUJD");
        assert_eq!(value["candidates"][0]["content"]["parts"][1]["thought"], true);
    }
}
