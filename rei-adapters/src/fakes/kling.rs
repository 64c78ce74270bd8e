//! A fake of Kling's official video API: the three create endpoints, the query by task id or by
//! `external_task_id`, the JWT check, the `{code, message, request_id, data}` envelope, and the result files.
//!
//! Each submit takes one [`KlingOutcome`] from [`FakeKling::script`] (a request refused for its token or its
//! body takes none). An accepted task answers `submitted` on its first query, `processing` until
//! [`FakeKlingConfig::polls_until_done`] queries have been answered, and its final state after that. Its result
//! is served at `{base}/files/{task_id}.mp4`.

use std::collections::HashMap;
use std::future::Future as _;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use rei_core::time::Clock;
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::watch;

use super::{FakeServer, Script};
use crate::system::SystemClock;

/// A small file with an MP4 `ftyp` box, a `free` box and an empty `mdat` box: what every result file serves.
pub const SAMPLE_MP4: &[u8] = &[
    0x00, 0x00, 0x00, 0x18, b'f', b't', b'y', b'p', b'i', b's', b'o', b'm', 0x00, 0x00, 0x02, 0x00, b'i', b's', b'o',
    b'm', b'i', b's', b'o', b'2', 0x00, 0x00, 0x00, 0x08, b'f', b'r', b'e', b'e', 0x00, 0x00, 0x00, 0x08, b'm', b'd',
    b'a', b't',
];
/// What a [`KlingOutcome::TruncatedResult`] file declares as its length; it sends [`SAMPLE_MP4`] and closes.
pub const TRUNCATED_DECLARED_BYTES: u64 = 4096;
/// How long [`KlingOutcome::Timeout`] leaves a submit unanswered (or until the fake stops).
pub const NEVER: Duration = Duration::from_secs(600);
/// The largest request body taken (image2video carries a base64 image of up to 10 MB).
const BODY_BYTES_MAX: usize = 16 * 1024 * 1024;
/// The first task id handed out: Kling's are 18 digits.
const FIRST_TASK_ID: u64 = 867_283_741_759_111_000;

/// What the fake does with one submit.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum KlingOutcome {
    /// Accepted; the task succeeds.
    Success,
    /// Answered after the delay, then as [`KlingOutcome::Success`] (the task is created after the delay).
    Slow(Duration),
    /// HTTP 500 with code 5000; no task.
    ServerError,
    /// No answer within any sane client timeout ([`NEVER`]); no task.
    Timeout,
    /// The task is created at once and succeeds, but the answer comes only after the delay: past the client's
    /// timeout, a later query by `external_task_id` finds it.
    SucceedAfterTimeout(Duration),
    /// HTTP 400 with code 1301 (content-safety block); no task.
    ContentBlocked,
    /// HTTP 429 with code 1102 (resource pack used up); no task.
    OutOfBalance,
    /// HTTP 429 with code 1302 (request rate too high) and `Retry-After: 1`; no task.
    RateLimited,
    /// HTTP 200 with a body that is not JSON; no task.
    Garbage,
    /// Accepted; the task fails with this `task_status_msg`.
    TaskFails(String),
    /// Accepted; the task succeeds with a result of this many bytes, streamed (not held in memory) with an
    /// honest `Content-Length`.
    HugeResult(u64),
    /// Accepted; the task succeeds with a result that declares [`TRUNCATED_DECLARED_BYTES`] and sends fewer.
    TruncatedResult,
}

/// How the fake behaves.
#[derive(Clone)]
pub struct FakeKlingConfig {
    /// The access key tokens must name as `iss`.
    pub access_key: String,
    /// The secret key tokens must be signed with.
    pub secret_key: String,
    /// How many queries of a task answer before its final state (`submitted`, then `processing`).
    pub polls_until_done: u32,
    /// `final_unit_deduction` of a succeeded task; `None` leaves the field out.
    pub units_per_task: Option<String>,
    /// The `duration` of each result video, in seconds as Kling writes it (`"5.1"`).
    pub video_duration: String,
    /// The time tokens are checked against (`exp`, `nbf`) and timestamps are taken from.
    pub clock: Arc<dyn Clock>,
}

impl FakeKlingConfig {
    /// A fake of one account: tasks done on their second query, 1.5 units and 5.1 s each, the system clock.
    #[must_use]
    pub fn new(access_key: &str, secret_key: &str) -> FakeKlingConfig {
        FakeKlingConfig {
            access_key: access_key.to_owned(),
            secret_key: secret_key.to_owned(),
            polls_until_done: 1,
            units_per_task: Some("1.5".to_owned()),
            video_duration: "5.1".to_owned(),
            clock: Arc::new(SystemClock::new()),
        }
    }
}

/// What the fake has received, for assertions.
#[derive(Clone, PartialEq, Debug, Default)]
pub struct KlingRecords {
    /// POSTs to the create endpoints, whatever their token or body.
    pub submits: u64,
    /// GETs of one task, whatever their token.
    pub queries: u64,
    /// GETs of result files.
    pub downloads: u64,
    /// Requests refused for their token (HTTP 401).
    pub auth_rejections: u64,
    /// Every bearer token received, in order.
    pub tokens: Vec<String>,
    /// The path of the last submit.
    pub last_submit_path: Option<String>,
    /// The body of the last submit, when it was JSON.
    pub last_submit_body: Option<Value>,
    /// The path of the last query.
    pub last_query_path: Option<String>,
}

/// A running fake Kling; it stops when dropped.
pub struct FakeKling {
    server: Option<FakeServer>,
    state: Arc<Fake>,
}

impl FakeKling {
    /// Starts a fake on 127.0.0.1 on a free port.
    ///
    /// # Errors
    /// The bind's I/O error.
    pub async fn start(config: FakeKlingConfig) -> std::io::Result<FakeKling> {
        let state = Arc::new(Fake {
            config,
            script: Script::new(KlingOutcome::Success),
            base_url: OnceLock::new(),
            tasks: Mutex::new(Tasks::default()),
            records: Mutex::new(KlingRecords::default()),
            next_request: AtomicU64::new(1),
            closing: watch::Sender::new(false),
        });
        let app = Router::new()
            .route("/v1/videos/{kind}", post(submit))
            .route("/v1/videos/{kind}/{id}", get(query))
            .route("/files/{file}", get(file))
            .layer(DefaultBodyLimit::max(BODY_BYTES_MAX))
            .with_state(state.clone());
        let server = FakeServer::start(app).await?;
        let _ = state.base_url.set(server.base_url());
        Ok(FakeKling { server: Some(server), state })
    }

    /// `http://127.0.0.1:PORT`, the base URL to give the adapter.
    #[must_use]
    pub fn base_url(&self) -> String {
        self.state.base_url.get().cloned().unwrap_or_default()
    }

    /// The outcomes of the coming submits; [`KlingOutcome::Success`] once it is empty.
    #[must_use]
    pub fn script(&self) -> Arc<Script<KlingOutcome>> {
        self.state.script.clone()
    }

    /// What the fake has received so far.
    #[must_use]
    pub fn records(&self) -> KlingRecords {
        self.state.records.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// How many tasks the fake holds.
    #[must_use]
    pub fn tasks(&self) -> usize {
        self.state.tasks.lock().unwrap_or_else(PoisonError::into_inner).by_id.len()
    }

    /// Stops serving: answers still delayed are cut short, and the server task is waited for.
    pub async fn stop(mut self) {
        self.state.closing.send_replace(true);
        if let Some(server) = self.server.take() {
            server.stop().await;
        }
    }
}

impl Drop for FakeKling {
    fn drop(&mut self) {
        self.state.closing.send_replace(true);
    }
}

struct Fake {
    config: FakeKlingConfig,
    script: Arc<Script<KlingOutcome>>,
    base_url: OnceLock<String>,
    tasks: Mutex<Tasks>,
    records: Mutex<KlingRecords>,
    next_request: AtomicU64,
    closing: watch::Sender<bool>,
}

#[derive(Default)]
struct Tasks {
    by_id: HashMap<String, FakeTask>,
    by_external: HashMap<String, String>,
    next: u64,
}

struct FakeTask {
    kind: String,
    task_id: String,
    external_id: Option<String>,
    parent_video: Option<String>,
    queries: u32,
    end: End,
    created_at: i64,
}

#[derive(Clone)]
enum End {
    Video(ResultFile),
    Fails(String),
}

#[derive(Clone, Copy)]
enum ResultFile {
    Sample,
    Huge(u64),
    Truncated,
}

impl Fake {
    fn record(&self, f: impl FnOnce(&mut KlingRecords)) {
        f(&mut self.records.lock().unwrap_or_else(PoisonError::into_inner));
    }

    fn now_ms(&self) -> i64 {
        self.config.clock.now().as_millis()
    }

    /// Waits `d`, or less when the fake stops.
    async fn sleep(&self, d: Duration) {
        let mut closing = self.closing.subscribe();
        tokio::select! {
            () = tokio::time::sleep(d) => {}
            _ = closing.wait_for(|closing| *closing) => {}
        }
    }

    /// An answer in Kling's envelope.
    fn envelope(&self, status: StatusCode, code: i64, message: &str, data: Option<Value>) -> Response {
        let n = self.next_request.fetch_add(1, Ordering::Relaxed);
        let mut body = json!({"code": code, "message": message, "request_id": format!("fake-{n:012x}")});
        if let Some(data) = data {
            body["data"] = data;
        }
        (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
    }

    fn refuse(&self, status: StatusCode, code: i64, message: &str) -> Response {
        self.envelope(status, code, message, None)
    }

    fn refused(&self, refusal: Refusal) -> Response {
        self.refuse(refusal.status, refusal.code, refusal.message)
    }

    /// Checks the bearer token as Kling does: signature (1002), issuer (1002), `nbf` (1003), `exp` (1004).
    fn authenticate(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_owned);
        if let Some(token) = &token {
            self.record(|r| r.tokens.push(token.clone()));
        }
        let verdict = match token {
            None => Err((1001, "Authorization header is empty")),
            Some(token) => check_jwt(&token, &self.config, self.now_ms().div_euclid(1000)),
        };
        verdict.map_err(|(code, message)| {
            self.record(|r| r.auth_rejections += 1);
            Refusal { status: StatusCode::UNAUTHORIZED, code, message }
        })
    }

    /// Creates a task for a submit on `kind` with `body`, or says why the body is refused.
    fn create(&self, kind: &str, body: &Value, end: End) -> Result<Value, Refusal> {
        let external_id = body.get("external_task_id").and_then(Value::as_str).map(str::to_owned);
        let mut tasks = self.tasks.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(external) = &external_id
            && tasks.by_external.contains_key(external)
        {
            return Err(Refusal {
                status: StatusCode::BAD_REQUEST,
                code: 1201,
                message: "external_task_id already exists",
            });
        }
        let task_id = (FIRST_TASK_ID + tasks.next).to_string();
        tasks.next += 1;
        let task = FakeTask {
            kind: kind.to_owned(),
            task_id: task_id.clone(),
            external_id: external_id.clone(),
            parent_video: body.get("video_id").and_then(Value::as_str).map(str::to_owned),
            queries: 0,
            end,
            created_at: self.now_ms(),
        };
        let data = json!({
            "task_id": task_id,
            "task_status": "submitted",
            "task_info": task_info(&task),
            "created_at": task.created_at,
            "updated_at": task.created_at,
        });
        if let Some(external) = external_id {
            tasks.by_external.insert(external, task_id.clone());
        }
        tasks.by_id.insert(task_id, task);
        Ok(data)
    }

    /// The task object of a query, counting the query.
    fn queried(&self, kind: &str, id: &str) -> Option<Value> {
        let mut tasks = self.tasks.lock().unwrap_or_else(PoisonError::into_inner);
        let task_id = tasks.by_external.get(id).cloned().unwrap_or_else(|| id.to_owned());
        let task = tasks.by_id.get_mut(&task_id).filter(|task| task.kind == kind)?;
        task.queries = task.queries.saturating_add(1);
        let now = self.now_ms();
        let mut data = json!({
            "task_id": task.task_id,
            "task_info": task_info(task),
            "task_result": {},
            "created_at": task.created_at,
            "updated_at": now,
        });
        let (status, message) = if task.queries == 1 && self.config.polls_until_done >= 1 {
            ("submitted", String::new())
        } else if task.queries <= self.config.polls_until_done {
            ("processing", String::new())
        } else {
            match &task.end {
                End::Fails(message) => ("failed", message.clone()),
                End::Video(_) => {
                    let base = self.base_url.get().map_or("", String::as_str);
                    data["task_result"] = json!({"videos": [{
                        "id": format!("vid-{}", task.task_id),
                        "url": format!("{base}/files/{}.mp4", task.task_id),
                        "watermark_url": format!("{base}/files/{}.mp4", task.task_id),
                        "duration": self.config.video_duration,
                    }]});
                    data["watermark_info"] = json!({"enabled": false});
                    if let Some(units) = &self.config.units_per_task {
                        data["final_unit_deduction"] = json!(units);
                    }
                    ("succeed", String::new())
                }
            }
        };
        data["task_status"] = json!(status);
        data["task_status_msg"] = json!(message);
        Some(data)
    }
}

/// An error answer, before it is put in the envelope.
struct Refusal {
    status: StatusCode,
    code: i64,
    message: &'static str,
}

fn task_info(task: &FakeTask) -> Value {
    let mut info = json!({});
    if let Some(external) = &task.external_id {
        info["external_task_id"] = json!(external);
    }
    if let Some(parent) = &task.parent_video {
        info["parent_video"] = json!({"id": parent, "url": "", "duration": "5.0"});
    }
    info
}

/// Verifies an HS256 JWT as Kling does; the error is Kling's code and message.
fn check_jwt(token: &str, config: &FakeKlingConfig, now_s: i64) -> Result<(), (i64, &'static str)> {
    let invalid = (1002, "Authorization is invalid");
    let (signed, signature) = token.rsplit_once('.').ok_or(invalid)?;
    let (header, claims) = signed.split_once('.').filter(|(_, c)| !c.contains('.')).ok_or(invalid)?;
    let decode = |part: &str| URL_SAFE_NO_PAD.decode(part).ok();
    let json = |part: &str| decode(part).and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok());
    let header = json(header).ok_or(invalid)?;
    if header.get("alg").and_then(Value::as_str) != Some("HS256") {
        return Err(invalid);
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(config.secret_key.as_bytes()).map_err(|_| invalid)?;
    mac.update(signed.as_bytes());
    mac.verify_slice(&decode(signature).ok_or(invalid)?).map_err(|_| invalid)?;
    let claims = json(claims).ok_or(invalid)?;
    if claims.get("iss").and_then(Value::as_str) != Some(config.access_key.as_str()) {
        return Err(invalid);
    }
    let nbf = claims.get("nbf").and_then(Value::as_i64).ok_or(invalid)?;
    let exp = claims.get("exp").and_then(Value::as_i64).ok_or(invalid)?;
    if now_s < nbf {
        return Err((1003, "token is not yet valid"));
    }
    if now_s >= exp {
        return Err((1004, "token has expired"));
    }
    Ok(())
}

/// Why a submit body is refused (Kling's 1200/1201 and message), when it is.
fn check_body(kind: &str, body: &Value) -> Result<(), &'static str> {
    let text = |name: &str| body.get(name).and_then(Value::as_str).filter(|s| !s.is_empty());
    if !body.is_object() {
        return Err("body must be a JSON object");
    }
    if body.get("duration").is_some_and(|d| !d.is_string()) {
        return Err("duration must be a string");
    }
    match kind {
        "text2video" if text("prompt").is_none() => Err("prompt is required"),
        "image2video" => match text("image") {
            None => Err("image is required"),
            Some(image) if image.starts_with("data:") || STANDARD.decode(image).is_err() => {
                Err("image must be a URL or raw base64")
            }
            Some(_) => Ok(()),
        },
        "video-extend" if text("video_id").is_none() => Err("video_id is required"),
        "video-extend" if ["model_name", "mode", "duration", "aspect_ratio"].iter().any(|f| body.get(f).is_some()) => {
            Err("video-extend inherits model, mode, duration and aspect ratio")
        }
        _ => Ok(()),
    }
}

fn is_kind(kind: &str) -> bool {
    matches!(kind, "text2video" | "image2video" | "video-extend")
}

async fn submit(State(fake): State<Arc<Fake>>, Path(kind): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    let parsed = serde_json::from_slice::<Value>(&body).ok();
    fake.record(|r| {
        r.submits += 1;
        r.last_submit_path = Some(format!("/v1/videos/{kind}"));
        r.last_submit_body.clone_from(&parsed);
    });
    if !is_kind(&kind) {
        return fake.refuse(StatusCode::NOT_FOUND, 1202, "no such method");
    }
    if let Err(refusal) = fake.authenticate(&headers) {
        return fake.refused(refusal);
    }
    let Some(body) = parsed else {
        return fake.refuse(StatusCode::BAD_REQUEST, 1200, "body is not JSON");
    };
    if let Err(why) = check_body(&kind, &body) {
        return fake.refuse(StatusCode::BAD_REQUEST, 1201, why);
    }
    let accept = |end: End| match fake.create(&kind, &body, end) {
        Ok(data) => fake.envelope(StatusCode::OK, 0, "SUCCEED", Some(data)),
        Err(refusal) => fake.refused(refusal),
    };
    match fake.script.next() {
        KlingOutcome::Success => accept(End::Video(ResultFile::Sample)),
        KlingOutcome::Slow(delay) => {
            fake.sleep(delay).await;
            accept(End::Video(ResultFile::Sample))
        }
        KlingOutcome::ServerError => fake.refuse(StatusCode::INTERNAL_SERVER_ERROR, 5000, "internal error"),
        KlingOutcome::Timeout => {
            fake.sleep(NEVER).await;
            fake.refuse(StatusCode::GATEWAY_TIMEOUT, 5002, "server timeout")
        }
        KlingOutcome::SucceedAfterTimeout(delay) => {
            let answer = accept(End::Video(ResultFile::Sample));
            fake.sleep(delay).await;
            answer
        }
        KlingOutcome::ContentBlocked => {
            fake.refuse(StatusCode::BAD_REQUEST, 1301, "content security policy: the prompt is blocked")
        }
        KlingOutcome::OutOfBalance => {
            fake.refuse(StatusCode::TOO_MANY_REQUESTS, 1102, "resource pack is used up or expired")
        }
        KlingOutcome::RateLimited => {
            let mut answer = fake.refuse(StatusCode::TOO_MANY_REQUESTS, 1302, "request rate is too high");
            answer.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            answer
        }
        KlingOutcome::Garbage => {
            (StatusCode::OK, [(header::CONTENT_TYPE, "text/html")], "<html><body>gateway says hi</body></html>")
                .into_response()
        }
        KlingOutcome::TaskFails(message) => accept(End::Fails(message)),
        KlingOutcome::HugeResult(bytes) => accept(End::Video(ResultFile::Huge(bytes))),
        KlingOutcome::TruncatedResult => accept(End::Video(ResultFile::Truncated)),
    }
}

async fn query(
    State(fake): State<Arc<Fake>>,
    Path((kind, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    fake.record(|r| {
        r.queries += 1;
        r.last_query_path = Some(format!("/v1/videos/{kind}/{id}"));
    });
    if !is_kind(&kind) {
        return fake.refuse(StatusCode::NOT_FOUND, 1202, "no such method");
    }
    if let Err(refusal) = fake.authenticate(&headers) {
        return fake.refused(refusal);
    }
    match fake.queried(&kind, &id) {
        Some(data) => fake.envelope(StatusCode::OK, 0, "SUCCEED", Some(data)),
        None => fake.refuse(StatusCode::NOT_FOUND, 1203, "task not found"),
    }
}

async fn file(State(fake): State<Arc<Fake>>, Path(file): Path<String>) -> Response {
    fake.record(|r| r.downloads += 1);
    let result = file.strip_suffix(".mp4").and_then(|task_id| {
        let tasks = fake.tasks.lock().unwrap_or_else(PoisonError::into_inner);
        match tasks.by_id.get(task_id).map(|task| task.end.clone()) {
            Some(End::Video(result)) => Some(result),
            _ => None,
        }
    });
    let mp4 = [(header::CONTENT_TYPE, "video/mp4")];
    match result {
        None => (StatusCode::NOT_FOUND, "no such file").into_response(),
        Some(ResultFile::Sample) => (StatusCode::OK, mp4, Bytes::from_static(SAMPLE_MP4)).into_response(),
        Some(ResultFile::Huge(len)) => (StatusCode::OK, mp4, Body::new(FileBody::new(len, None))).into_response(),
        Some(ResultFile::Truncated) => {
            let body = FileBody::new(TRUNCATED_DECLARED_BYTES, Some(SAMPLE_MP4.len() as u64));
            (StatusCode::OK, mp4, Body::new(body)).into_response()
        }
    }
}

/// A result file streamed without being held in memory: `len` bytes, [`SAMPLE_MP4`] then zeros, declared as
/// the exact length (so hyper sends `Content-Length: len`). With `cut_at`, the body fails after that many bytes
/// and hyper closes the connection: a truncated download.
struct FileBody {
    len: u64,
    sent: u64,
    cut_at: Option<u64>,
    pause: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl FileBody {
    fn new(len: u64, cut_at: Option<u64>) -> FileBody {
        FileBody { len, sent: 0, cut_at, pause: None }
    }
}

/// How long a truncated file waits, after its last byte, before its connection is dropped.
const CUT_PAUSE: Duration = Duration::from_millis(50);

/// The zeros the file bodies are made of, one chunk at most.
static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

impl http_body::Body for FileBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, std::io::Error>>> {
        let end = self.cut_at.unwrap_or(self.len).min(self.len);
        if self.sent >= end {
            if self.cut_at.is_none() {
                return Poll::Ready(None);
            }
            // A pause first, so that hyper sends the headers and the bytes so far before the connection drops.
            let pause = self.pause.get_or_insert_with(|| Box::pin(tokio::time::sleep(CUT_PAUSE)));
            if pause.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            let cut = std::io::Error::new(std::io::ErrorKind::ConnectionAborted, "result cut short on purpose");
            return Poll::Ready(Some(Err(cut)));
        }
        let left = usize::try_from(end - self.sent).unwrap_or(usize::MAX);
        let chunk = if self.sent == 0 {
            Bytes::from_static(&SAMPLE_MP4[..SAMPLE_MP4.len().min(left)])
        } else {
            Bytes::from_static(&ZEROS[..ZEROS.len().min(left)])
        };
        self.sent += chunk.len() as u64;
        Poll::Ready(Some(Ok(http_body::Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.cut_at.is_none() && self.sent >= self.len
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.len - self.sent.min(self.len))
    }
}
