//! A fake Telegram Bot API: `POST /bot<token>/<method>` with JSON or multipart/form-data parameters, answered
//! in the Bot API's envelope (`{"ok":true,"result":…}` or `{"ok":false,"error_code":…,"description":…}`), and
//! `GET /file/bot<token>/<file_path>` serving the files it holds. A wrong token is 401 `Unauthorized`, as
//! Telegram answers. Every call with the right token is recorded (method, parameters, when it arrived; for
//! multipart the text fields as strings and each file part as `{"upload": name, "bytes": n, "mime": m}`) for
//! tests to inspect, and each call's outcome is scripted ([`TelegramOutcome`]).
//!
//! Methods, each checked as Telegram checks it (a 400 with Telegram's description otherwise: a missing
//! `chat_id`, an empty or over-long text or caption, callback data over 64 bytes, a malformed keyboard):
//! - Stars: `sendInvoice` and `createInvoiceLink` (`XTR`, an empty provider token, exactly one price, title,
//!   description and payload within their limits), `answerPreCheckoutQuery`, `refundStarPayment` (true the
//!   first time per charge, then 400 `CHARGE_ALREADY_REFUNDED`).
//! - Messages: `sendMessage`, `sendPhoto`, `sendDocument`, `sendVideo` (a `file_id` the fake holds, a URL, or
//!   an uploaded part; uploads over Telegram's limits are 413), `editMessageText` (400 "message is not
//!   modified" when nothing changes, "message to edit not found"), `editMessageReplyMarkup`, `deleteMessage`,
//!   `answerCallbackQuery`.
//! - Files: `getFile` (400 for an unknown id, "file is too big" over 20 MB) and the download route.
//! - Updates: `getUpdates` (long-polls the queue a test fills with [`FakeTelegram::push_update`]: waits up to
//!   `timeout` seconds for an update with id >= `offset`, confirming the earlier ones as Telegram does; 409
//!   while a webhook is set, and 409 for a poll overtaken by a newer one), `setWebhook` (https only, Telegram's
//!   secret token rules), `deleteWebhook`, `getMe`.
//!
//! A chat can be marked blocked ([`FakeTelegram::block_chat`]): every call naming it as `chat_id` is then 403
//! `Forbidden: bot was blocked by the user`. Anything else is 404 `Not Found`.
//!
//! [`updates`] builds update bodies in the real wire shape, for the webhook, the poller and the parser's tests.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use serde_json::{Map, Value, json};
use tokio::sync::Notify;

use super::{FakeServer, Script};

/// The longest text of a message Telegram takes, in characters.
const TEXT_CHARS_MAX: usize = 4096;
/// The longest caption Telegram takes, in characters.
const CAPTION_CHARS_MAX: usize = 1024;
/// The longest callback data Telegram takes, in bytes.
const CALLBACK_DATA_BYTES_MAX: usize = 64;
/// The longest text of a callback query's answer, in characters.
const CALLBACK_ANSWER_CHARS_MAX: usize = 200;
/// The most buttons of one inline keyboard.
const KEYBOARD_BUTTONS_MAX: usize = 100;
/// The largest photo upload Telegram takes.
const PHOTO_UPLOAD_BYTES_MAX: usize = 10_000_000;
/// The largest other upload Telegram takes.
const FILE_UPLOAD_BYTES_MAX: usize = 50_000_000;
/// The largest file `getFile` gives a path to.
const FILE_DOWNLOAD_BYTES_MAX: usize = 20_000_000;
/// The largest request body read (a 50 MB upload and its form around it).
const REQUEST_BYTES_MAX: usize = 64 * 1024 * 1024;
/// The longest long poll the fake waits, whatever `timeout` asks for.
const POLL_SECONDS_MAX: i64 = 300;
/// The most updates one `getUpdates` returns.
const UPDATES_LIMIT_MAX: i64 = 100;
/// The longest webhook secret token.
const SECRET_TOKEN_BYTES_MAX: usize = 256;
/// The size of each chunk of a file served in chunks.
const FILE_CHUNK_BYTES: usize = 16 * 1024;
/// The bot's id when the token does not start with one.
const DEFAULT_BOT_ID: i64 = 1;

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
    /// Its parameters: the JSON object sent (`{}` for an empty body), or for multipart/form-data each text field
    /// as a string and each file part as `{"upload": file name, "bytes": length, "mime": type}`.
    pub params: Value,
    /// When it arrived.
    pub at: Instant,
}

/// One message the bot sent into a chat, as the fake keeps it ([`FakeTelegram::sent_to`]).
#[derive(Clone, PartialEq, Debug)]
pub struct SentMessage {
    /// Its id in the chat.
    pub message_id: i64,
    /// The method that sent it (`sendMessage`, `sendPhoto`, `sendDocument`, `sendVideo`, `sendInvoice`).
    pub method: String,
    /// The text (`sendMessage`) or caption (the file sends) it was sent with.
    pub text: Option<String>,
    /// Its text or caption now, after every `editMessageText`.
    pub current_text: Option<String>,
    /// Its `reply_markup` now (as sent, then as edits left it); `None` without a keyboard.
    pub reply_markup: Option<Value>,
    /// The fake's `file_id` of the photo, document or video it carries.
    pub file_id: Option<String>,
    /// How many edits changed it.
    pub edits: u32,
    /// Whether `deleteMessage` removed it.
    pub deleted: bool,
}

/// A file the fake holds: added by a test or uploaded by the bot.
#[derive(Clone)]
struct StoredFile {
    file_unique_id: String,
    bytes: Bytes,
    mime: String,
    path: String,
}

/// One file part of a multipart call.
struct Upload {
    field: String,
    file_name: String,
    mime: String,
    bytes: Bytes,
}

#[derive(Default)]
struct Books {
    calls: Vec<Call>,
    unauthorized: u64,
    refunded: HashSet<String>,
    next_message: i64,
    next_file: u64,
    sent: BTreeMap<i64, Vec<SentMessage>>,
    files: HashMap<String, StoredFile>,
    paths: HashMap<String, String>,
    downloads: Vec<String>,
    blocked: HashSet<i64>,
    updates: VecDeque<(i64, Value)>,
    next_update: i64,
    polls: u64,
    webhook: Option<(String, Option<String>)>,
    tap: Option<SendTap>,
}

/// Called with each message the bot sends, under the fake's lock (see [`FakeTelegram::on_send`]).
type SendTap = Arc<dyn Fn(i64, &SentMessage) + Send + Sync>;

struct Shared {
    token_segment: String,
    bot_id: i64,
    script: Arc<Script<TelegramOutcome>>,
    books: Mutex<Books>,
    /// Woken when an update is queued, a webhook set, or a newer poll arrives.
    changed: Notify,
    chunked_files: AtomicBool,
}

impl Shared {
    fn books(&self) -> std::sync::MutexGuard<'_, Books> {
        self.books.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A running fake Bot API for one bot.
pub struct FakeTelegram {
    server: FakeServer,
    shared: Arc<Shared>,
}

impl FakeTelegram {
    /// Starts a fake for the bot `token` (the bot's id is the token's number before `:`, as Telegram's are).
    ///
    /// # Errors
    /// The bind's I/O error.
    pub async fn start(token: &str) -> std::io::Result<FakeTelegram> {
        let bot_id = token.split(':').next().and_then(|id| id.parse().ok()).unwrap_or(DEFAULT_BOT_ID);
        let shared = Arc::new(Shared {
            token_segment: format!("bot{token}"),
            bot_id,
            script: Script::new(TelegramOutcome::Normal),
            books: Mutex::new(Books { next_update: 1, ..Books::default() }),
            changed: Notify::new(),
            chunked_files: AtomicBool::new(false),
        });
        let app = Router::new()
            .route("/file/{bot}/{*path}", get(download))
            .route("/{bot}/{method}", any(call))
            .layer(DefaultBodyLimit::max(REQUEST_BYTES_MAX))
            .with_state(shared.clone());
        Ok(FakeTelegram { server: FakeServer::start(app).await?, shared })
    }

    /// The base URL to give the adapter (`http://127.0.0.1:PORT`).
    #[must_use]
    pub fn base_url(&self) -> String {
        self.server.base_url()
    }

    /// The bot's id, as `getMe` and the bot's messages give it.
    #[must_use]
    pub fn bot_id(&self) -> i64 {
        self.shared.bot_id
    }

    /// One outcome per call, in order.
    #[must_use]
    pub fn script(&self) -> Arc<Script<TelegramOutcome>> {
        self.shared.script.clone()
    }

    /// Every call received with the right token, in arrival order.
    #[must_use]
    pub fn calls(&self) -> Vec<Call> {
        self.shared.books().calls.clone()
    }

    /// The calls of `method`.
    #[must_use]
    pub fn calls_of(&self, method: &str) -> Vec<Call> {
        self.calls().into_iter().filter(|c| c.method == method).collect()
    }

    /// Calls (and downloads) refused for a wrong token.
    #[must_use]
    pub fn unauthorized(&self) -> u64 {
        self.shared.books().unauthorized
    }

    /// The charges refunded so far.
    #[must_use]
    pub fn refunded(&self) -> HashSet<String> {
        self.shared.books().refunded.clone()
    }

    /// The messages the bot sent into `chat_id`, oldest first, each as edits left it.
    #[must_use]
    pub fn sent_to(&self, chat_id: i64) -> Vec<SentMessage> {
        self.shared.books().sent.get(&chat_id).cloned().unwrap_or_default()
    }

    /// Marks `chat_id` as a user who blocked the bot: every call naming it is 403 from now on.
    pub fn block_chat(&self, chat_id: i64) {
        self.shared.books().blocked.insert(chat_id);
    }

    /// The user of `chat_id` unblocked the bot.
    pub fn unblock_chat(&self, chat_id: i64) {
        self.shared.books().blocked.remove(&chat_id);
    }

    /// Holds a file, served by `getFile` and the download route: returns its `(file_id, file_unique_id)`.
    pub fn add_file(&self, bytes: Vec<u8>, mime: &str) -> (String, String) {
        let mut books = self.shared.books();
        let (file_id, file) = store_file(&mut books, Bytes::from(bytes), mime);
        (file_id, file.file_unique_id)
    }

    /// The content and MIME type of a file the fake holds (one a test added or the bot uploaded).
    #[must_use]
    pub fn file(&self, file_id: &str) -> Option<(Vec<u8>, String)> {
        self.shared.books().files.get(file_id).map(|f| (f.bytes.to_vec(), f.mime.clone()))
    }

    /// The file paths downloaded so far, in order.
    #[must_use]
    pub fn downloads(&self) -> Vec<String> {
        self.shared.books().downloads.clone()
    }

    /// With `true`, files are served in chunks without a `Content-Length` (as a proxy may), so that a client's
    /// size limit must hold while the body streams.
    pub fn serve_files_chunked(&self, chunked: bool) {
        self.shared.chunked_files.store(chunked, Ordering::Relaxed);
    }

    /// Queues an update body for `getUpdates` and wakes a waiting poll. The body keeps its `update_id`; one
    /// without an integer `update_id` is given the next id. Returns the update's id, or `None` (nothing queued)
    /// for a body that is not a JSON object.
    pub fn push_update(&self, body: Vec<u8>) -> Option<i64> {
        let Ok(Value::Object(mut update)) = serde_json::from_slice::<Value>(&body) else { return None };
        let mut books = self.shared.books();
        let id = match update.get("update_id").and_then(Value::as_i64) {
            Some(id) => id,
            None => {
                let id = books.next_update;
                update.insert("update_id".into(), json!(id));
                id
            }
        };
        books.next_update = books.next_update.max(id.saturating_add(1));
        let at = books.updates.iter().position(|(queued, _)| *queued > id).unwrap_or(books.updates.len());
        books.updates.insert(at, (id, Value::Object(update)));
        drop(books);
        self.shared.changed.notify_waiters();
        Some(id)
    }

    /// The updates queued and not yet confirmed by a `getUpdates` offset past them.
    #[must_use]
    pub fn pending_updates(&self) -> usize {
        self.shared.books().updates.len()
    }

    /// The webhook set, as `(url, secret_token)`.
    #[must_use]
    pub fn webhook(&self) -> Option<(String, Option<String>)> {
        self.shared.books().webhook.clone()
    }

    /// Calls `tap` with the chat and the message each time the bot sends a message (not an edit), before the
    /// bot's call is answered: a driver that sees its webhook answered has seen every reply sent on the way.
    /// `tap` runs under the fake's lock, so it must be quick and must not call the fake.
    pub fn on_send(&self, tap: impl Fn(i64, &SentMessage) + Send + Sync + 'static) {
        self.shared.books().tap = Some(Arc::new(tap));
    }

    /// Stops serving.
    pub async fn stop(self) {
        self.server.stop().await;
    }
}

/// Keeps `bytes` as a new file; its path's folder and extension follow its MIME type, as Telegram's do.
fn store_file(books: &mut Books, bytes: Bytes, mime: &str) -> (String, StoredFile) {
    books.next_file += 1;
    let n = books.next_file;
    let folder = match mime.split('/').next() {
        Some("image") => "photos",
        Some("video") => "videos",
        _ => "documents",
    };
    let extension: String =
        mime.split('/').nth(1).unwrap_or("bin").chars().filter(char::is_ascii_alphanumeric).take(8).collect();
    let extension = if extension.is_empty() { "bin".to_owned() } else { extension };
    let file_id = format!("FAKEFILE{n}AgACAgIAAxk");
    let file = StoredFile {
        file_unique_id: format!("FAKEUNIQ{n}"),
        bytes,
        mime: mime.to_owned(),
        path: format!("{folder}/file_{n}.{extension}"),
    };
    books.paths.insert(file.path.clone(), file_id.clone());
    books.files.insert(file_id.clone(), file.clone());
    (file_id, file)
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

/// An integer parameter: a JSON integer, or a string of one (as multipart sends every field).
fn int_param(params: &Value, key: &str) -> Option<i64> {
    match params.get(key)? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn str_param<'a>(params: &'a Value, key: &str) -> Option<&'a str> {
    params.get(key).and_then(Value::as_str)
}

/// A boolean parameter: a JSON boolean, or `"true"`/`"false"`.
fn bool_param(params: &Value, key: &str) -> Option<bool> {
    match params.get(key)? {
        Value::Bool(b) => Some(*b),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// The `reply_markup` parameter (an object, or its JSON text as multipart sends it), checked as Telegram checks
/// an inline keyboard. `Err` is the 400's description.
fn markup_param(params: &Value) -> Result<Option<Value>, String> {
    let markup = match params.get("reply_markup") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(text)) => serde_json::from_str::<Value>(text)
            .map_err(|_| "can't parse reply keyboard markup JSON object".to_owned())?,
        Some(markup) => markup.clone(),
    };
    let rows = markup
        .get("inline_keyboard")
        .and_then(Value::as_array)
        .ok_or_else(|| "can't parse reply keyboard markup JSON object".to_owned())?;
    let mut buttons = 0;
    for row in rows {
        let row = row.as_array().ok_or_else(|| {
            "field \"inline_keyboard\" of the InlineKeyboardMarkup must be an Array of Arrays".to_owned()
        })?;
        for button in row {
            buttons += 1;
            let text = button.get("text").and_then(Value::as_str);
            if text.is_none_or(str::is_empty) {
                return Err("can't parse inline keyboard button: Text must be non-empty".to_owned());
            }
            match (button.get("callback_data"), button.get("url")) {
                (Some(Value::String(data)), None) => {
                    if data.is_empty() || data.len() > CALLBACK_DATA_BYTES_MAX {
                        return Err("BUTTON_DATA_INVALID".to_owned());
                    }
                }
                (None, Some(Value::String(url))) => {
                    let ok = ["https://", "http://", "tg://"].iter().any(|s| url.len() > s.len() && url.starts_with(s));
                    if !ok {
                        return Err("BUTTON_URL_INVALID".to_owned());
                    }
                }
                _ => {
                    return Err(
                        "can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard"
                            .to_owned(),
                    );
                }
            }
        }
    }
    if buttons > KEYBOARD_BUTTONS_MAX {
        return Err("reply markup is too long".to_owned());
    }
    Ok(Some(markup))
}

/// Reads a call's parameters: JSON, or multipart/form-data (text fields as strings, file parts kept aside and
/// described in the parameters). `Err` is the answer to give.
async fn read_params(request: Request) -> Result<(Value, Vec<Upload>), Response> {
    let content_type = request.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if content_type.starts_with("multipart/form-data") {
        let cannot = || bad_request("can't parse multipart/form-data");
        let mut form = Multipart::from_request(request, &()).await.map_err(|_| cannot())?;
        let mut params = Map::new();
        let mut uploads = Vec::new();
        while let Some(field) = form.next_field().await.map_err(|_| cannot())? {
            let name = field.name().unwrap_or_default().to_owned();
            match field.file_name().map(str::to_owned) {
                Some(file_name) => {
                    let mime = field.content_type().unwrap_or("application/octet-stream").to_owned();
                    let bytes = field.bytes().await.map_err(|_| cannot())?;
                    params.insert(name.clone(), json!({"upload": file_name, "bytes": bytes.len(), "mime": mime}));
                    uploads.push(Upload { field: name, file_name, mime, bytes });
                }
                None => {
                    let text = field.text().await.map_err(|_| cannot())?;
                    params.insert(name, Value::String(text));
                }
            }
        }
        return Ok((Value::Object(params), uploads));
    }
    let body = axum::body::to_bytes(request.into_body(), REQUEST_BYTES_MAX)
        .await
        .map_err(|_| error(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large", None))?;
    let params = if body.is_empty() { Ok(json!({})) } else { serde_json::from_slice::<Value>(&body) };
    match params {
        Ok(params @ Value::Object(_)) => Ok((params, Vec::new())),
        _ => Err(bad_request("the parameters are not a JSON object")),
    }
}

async fn call(
    State(shared): State<Arc<Shared>>,
    Path((bot, method)): Path<(String, String)>,
    request: Request,
) -> Response {
    if bot != shared.token_segment {
        shared.books().unauthorized += 1;
        return error(StatusCode::UNAUTHORIZED, "Unauthorized", None);
    }
    let (params, uploads) = match read_params(request).await {
        Ok(read) => read,
        Err(answer) => return answer,
    };
    let poll = {
        let mut books = shared.books();
        books.calls.push(Call { method: method.clone(), params: params.clone(), at: Instant::now() });
        // A poll overtakes the earlier ones from the moment it is recorded.
        if method == "getUpdates" {
            books.polls += 1;
        }
        books.polls
    };
    if method == "getUpdates" {
        shared.changed.notify_waiters();
    }
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
    if method == "getUpdates" {
        return get_updates(&shared, &params, poll).await;
    }
    let mut books = shared.books();
    if int_param(&params, "chat_id").is_some_and(|chat| books.blocked.contains(&chat)) {
        return error(StatusCode::FORBIDDEN, "Forbidden: bot was blocked by the user", None);
    }
    let bot_id = shared.bot_id;
    match method.as_str() {
        "sendInvoice" => match (invoice_problem(&params), int_param(&params, "chat_id")) {
            (Some(problem), _) => bad_request(&problem),
            (None, None) => bad_request("chat_id is empty"),
            (None, Some(chat_id)) => {
                let mut message = message(&mut books, bot_id, chat_id, "sendInvoice", None, None, None);
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
            let id_ok = str_param(&params, "pre_checkout_query_id").is_some_and(|s| !s.is_empty());
            match bool_param(&params, "ok") {
                _ if !id_ok => bad_request("pre_checkout_query_id is required"),
                None => bad_request("ok is required"),
                Some(false) if str_param(&params, "error_message").is_none_or(str::is_empty) => {
                    bad_request("error_message is required when ok is false")
                }
                Some(_) => ok(json!(true)),
            }
        }
        "refundStarPayment" => {
            let user = int_param(&params, "user_id");
            let charge = str_param(&params, "telegram_payment_charge_id").filter(|c| !c.is_empty());
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
        "sendMessage" => send_message(&mut books, bot_id, &params),
        "sendPhoto" => send_file(&mut books, bot_id, &params, uploads, FileField::Photo),
        "sendDocument" => send_file(&mut books, bot_id, &params, uploads, FileField::Document),
        "sendVideo" => send_file(&mut books, bot_id, &params, uploads, FileField::Video),
        "editMessageText" => edit_message(&mut books, bot_id, &params, true),
        "editMessageReplyMarkup" => edit_message(&mut books, bot_id, &params, false),
        "deleteMessage" => match find_message(&mut books, &params) {
            Err(why) => bad_request(why),
            Ok(None) => bad_request("message to delete not found"),
            Ok(Some(m)) => {
                m.deleted = true;
                ok(json!(true))
            }
        },
        "answerCallbackQuery" => {
            let text_chars = str_param(&params, "text").map_or(0, |t| t.chars().count());
            if str_param(&params, "callback_query_id").is_none_or(str::is_empty) {
                bad_request("QUERY_ID_INVALID")
            } else if text_chars > CALLBACK_ANSWER_CHARS_MAX {
                bad_request("MESSAGE_TOO_LONG")
            } else {
                ok(json!(true))
            }
        }
        "getFile" => {
            let file = str_param(&params, "file_id").and_then(|id| books.files.get(id).map(|f| (id, f)));
            match file {
                None => bad_request("invalid file_id"),
                Some((_, f)) if f.bytes.len() > FILE_DOWNLOAD_BYTES_MAX => bad_request("file is too big"),
                Some((id, f)) => ok(json!({
                    "file_id": id, "file_unique_id": f.file_unique_id, "file_size": f.bytes.len(), "file_path": f.path,
                })),
            }
        }
        "setWebhook" => {
            let secret = str_param(&params, "secret_token").filter(|s| !s.is_empty());
            let secret_ok = secret.is_none_or(|s| {
                s.len() <= SECRET_TOKEN_BYTES_MAX
                    && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            });
            match str_param(&params, "url") {
                Some(url) if url.starts_with("https://") && url.len() > "https://".len() => {
                    if !secret_ok {
                        return bad_request("bad webhook: secret token contains unallowed characters");
                    }
                    if bool_param(&params, "drop_pending_updates") == Some(true) {
                        books.updates.clear();
                    }
                    books.webhook = Some((url.to_owned(), secret.map(str::to_owned)));
                    drop(books);
                    shared.changed.notify_waiters();
                    ok(json!(true))
                }
                _ => bad_request("bad webhook: An HTTPS URL must be provided for webhook"),
            }
        }
        "deleteWebhook" => {
            if bool_param(&params, "drop_pending_updates") == Some(true) {
                books.updates.clear();
            }
            books.webhook = None;
            ok(json!(true))
        }
        "getMe" => ok(json!({
            "id": bot_id, "is_bot": true, "first_name": "REI", "username": "rei_fake_bot",
            "can_join_groups": true, "can_read_all_group_messages": false, "supports_inline_queries": false,
        })),
        _ => error(StatusCode::NOT_FOUND, "Not Found", None),
    }
}

/// A text of 1 to `max` characters, or the 400 for it.
fn text_problem(text: Option<&str>, max: usize) -> Option<Response> {
    match text {
        None | Some("") => Some(bad_request("message text is empty")),
        Some(t) if t.chars().count() > max => Some(bad_request("message is too long")),
        Some(_) => None,
    }
}

fn send_message(books: &mut Books, bot_id: i64, params: &Value) -> Response {
    let Some(chat_id) = int_param(params, "chat_id") else { return bad_request("chat_id is empty") };
    let text = str_param(params, "text");
    if let Some(problem) = text_problem(text, TEXT_CHARS_MAX) {
        return problem;
    }
    let markup = match markup_param(params) {
        Ok(markup) => markup,
        Err(why) => return bad_request(&why),
    };
    let text = text.map(str::to_owned);
    let mut message = message(books, bot_id, chat_id, "sendMessage", text.clone(), markup, None);
    message["text"] = json!(text);
    ok(message)
}

/// The file field of a `send…` method.
#[derive(Clone, Copy)]
enum FileField {
    Photo,
    Document,
    Video,
}

impl FileField {
    fn name(self) -> &'static str {
        match self {
            FileField::Photo => "photo",
            FileField::Document => "document",
            FileField::Video => "video",
        }
    }

    fn method(self) -> &'static str {
        match self {
            FileField::Photo => "sendPhoto",
            FileField::Document => "sendDocument",
            FileField::Video => "sendVideo",
        }
    }
}

fn send_file(books: &mut Books, bot_id: i64, params: &Value, uploads: Vec<Upload>, field: FileField) -> Response {
    let Some(chat_id) = int_param(params, "chat_id") else { return bad_request("chat_id is empty") };
    let caption = str_param(params, "caption").map(str::to_owned);
    if caption.as_ref().is_some_and(|c| c.chars().count() > CAPTION_CHARS_MAX) {
        return bad_request("message caption is too long");
    }
    let markup = match markup_param(params) {
        Ok(markup) => markup,
        Err(why) => return bad_request(&why),
    };
    let name = field.name();
    // The file: an uploaded part (named by the field itself or by `attach://<part>`), a file_id the fake holds,
    // or a URL (Telegram would fetch it; the fake keeps an empty file in its place).
    let attached = match params.get(name) {
        Some(Value::String(s)) => s.strip_prefix("attach://").map(str::to_owned),
        Some(Value::Object(_)) => Some(name.to_owned()),
        _ => None,
    };
    let mut uploaded_name = None;
    let (file_id, file) = if let Some(part) = attached {
        let Some(upload) = uploads.into_iter().find(|u| u.field == part) else {
            return bad_request(&format!("there is no {name} in the request"));
        };
        let limit = if matches!(field, FileField::Photo) { PHOTO_UPLOAD_BYTES_MAX } else { FILE_UPLOAD_BYTES_MAX };
        if upload.bytes.len() > limit {
            return error(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large", None);
        }
        if upload.bytes.is_empty() {
            return bad_request("file must be non-empty");
        }
        uploaded_name = Some(upload.file_name);
        store_file(books, upload.bytes, &upload.mime)
    } else {
        match str_param(params, name) {
            None | Some("") => return bad_request(&format!("there is no {name} in the request")),
            Some(url) if url.starts_with("https://") || url.starts_with("http://") => {
                store_file(books, Bytes::new(), "application/octet-stream")
            }
            Some(id) => match books.files.get(id) {
                Some(file) => (id.to_owned(), file.clone()),
                None => return bad_request("wrong file identifier/HTTP URL specified"),
            },
        }
    };
    let described = json!({
        "file_id": file_id, "file_unique_id": file.file_unique_id, "file_size": file.bytes.len(),
    });
    let method = field.method();
    let mut message = message(books, bot_id, chat_id, method, caption.clone(), markup, Some(file_id));
    match field {
        FileField::Photo => {
            let mut size = described;
            size["width"] = json!(1280);
            size["height"] = json!(1280);
            message["photo"] = json!([size]);
        }
        FileField::Document => {
            let mut document = described;
            document["file_name"] = json!(uploaded_name.unwrap_or_else(|| "file".to_owned()));
            document["mime_type"] = json!(file.mime);
            message["document"] = document;
        }
        FileField::Video => {
            let mut video = described;
            video["width"] = json!(1280);
            video["height"] = json!(720);
            video["duration"] = json!(int_param(params, "duration").unwrap_or(5));
            video["mime_type"] = json!(file.mime);
            message["video"] = video;
        }
    }
    if let Some(caption) = caption {
        message["caption"] = json!(caption);
    }
    ok(message)
}

/// The message `chat_id` + `message_id` name (not deleted); `Err` is the 400's description for parameters that
/// name none.
fn find_message<'a>(books: &'a mut Books, params: &Value) -> Result<Option<&'a mut SentMessage>, &'static str> {
    let Some(chat_id) = int_param(params, "chat_id") else {
        return Err(if params.get("inline_message_id").is_some() {
            "inline messages are not supported by the fake"
        } else {
            "chat_id is empty"
        });
    };
    let Some(message_id) = int_param(params, "message_id") else {
        return Err("message identifier is not specified");
    };
    let messages = books.sent.get_mut(&chat_id);
    Ok(messages.and_then(|ms| ms.iter_mut().find(|m| m.message_id == message_id && !m.deleted)))
}

/// `editMessageText` (`text`) or `editMessageReplyMarkup`.
fn edit_message(books: &mut Books, bot_id: i64, params: &Value, text: bool) -> Response {
    let new_text = str_param(params, "text");
    if text && let Some(problem) = text_problem(new_text, TEXT_CHARS_MAX) {
        return problem;
    }
    let markup = match markup_param(params) {
        Ok(markup) => markup,
        Err(why) => return bad_request(&why),
    };
    let chat_id = int_param(params, "chat_id").unwrap_or_default();
    let message = match find_message(books, params) {
        Err(why) => return bad_request(why),
        Ok(None) => return bad_request("message to edit not found"),
        Ok(Some(m)) => m,
    };
    if text && message.method != "sendMessage" {
        return bad_request("there is no text in the message to edit");
    }
    let next_text = if text { new_text.map(str::to_owned) } else { message.current_text.clone() };
    if next_text == message.current_text && markup == message.reply_markup {
        return bad_request(
            "message is not modified: specified new message content and reply markup are exactly the same as a \
             current content and reply markup of the message",
        );
    }
    message.current_text = next_text;
    message.reply_markup = markup;
    message.edits += 1;
    let edited = message.clone();
    let mut answer = message_json(bot_id, chat_id, edited.message_id);
    if let Some(text) = &edited.current_text {
        answer[if edited.method == "sendMessage" { "text" } else { "caption" }] = json!(text);
    }
    if let Some(markup) = &edited.reply_markup {
        answer["reply_markup"] = markup.clone();
    }
    answer["edit_date"] = json!(1_800_000_001);
    ok(answer)
}

/// A message the bot sent into `chat_id`, recorded for [`FakeTelegram::sent_to`].
fn message(
    books: &mut Books,
    bot_id: i64,
    chat_id: i64,
    method: &str,
    text: Option<String>,
    reply_markup: Option<Value>,
    file_id: Option<String>,
) -> Value {
    books.next_message += 1;
    let message_id = books.next_message;
    let mut answer = message_json(bot_id, chat_id, message_id);
    if let Some(markup) = &reply_markup {
        answer["reply_markup"] = markup.clone();
    }
    let sent = SentMessage {
        message_id,
        method: method.to_owned(),
        current_text: text.clone(),
        text,
        reply_markup,
        file_id,
        edits: 0,
        deleted: false,
    };
    if let Some(tap) = &books.tap {
        tap(chat_id, &sent);
    }
    books.sent.entry(chat_id).or_default().push(sent);
    answer
}

fn message_json(bot_id: i64, chat_id: i64, message_id: i64) -> Value {
    json!({
        "message_id": message_id,
        "from": {"id": bot_id, "is_bot": true, "first_name": "REI", "username": "rei_fake_bot"},
        "chat": {"id": chat_id, "type": if chat_id > 0 { "private" } else { "supergroup" }},
        "date": 1_800_000_000,
    })
}

/// `getUpdates`: confirms the updates before `offset`, then answers those from it on (at most `limit`), waiting
/// up to `timeout` seconds for one to come. A newer poll (`poll` is this one's number), or a webhook set
/// meanwhile, ends the wait with 409.
async fn get_updates(shared: &Arc<Shared>, params: &Value, poll: u64) -> Response {
    let offset = int_param(params, "offset").unwrap_or(0);
    let limit = usize::try_from(int_param(params, "limit").unwrap_or(UPDATES_LIMIT_MAX).clamp(1, UPDATES_LIMIT_MAX))
        .unwrap_or(1);
    let seconds = int_param(params, "timeout").unwrap_or(0).clamp(0, POLL_SECONDS_MAX);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds.unsigned_abs());
    loop {
        let changed = shared.changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        {
            let mut books = shared.books();
            if books.webhook.is_some() {
                return error(
                    StatusCode::CONFLICT,
                    "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the \
                     webhook first",
                    None,
                );
            }
            if books.polls != poll {
                return error(
                    StatusCode::CONFLICT,
                    "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running",
                    None,
                );
            }
            if offset > 0 {
                books.updates.retain(|(id, _)| *id >= offset);
            } else if offset < 0 {
                let keep = usize::try_from(offset.unsigned_abs()).unwrap_or(usize::MAX);
                while books.updates.len() > keep {
                    books.updates.pop_front();
                }
            }
            let ready: Vec<Value> = books.updates.iter().take(limit).map(|(_, update)| update.clone()).collect();
            if !ready.is_empty() || tokio::time::Instant::now() >= deadline {
                return ok(Value::Array(ready));
            }
        }
        let _ = tokio::time::timeout_at(deadline, changed).await;
    }
}

/// `GET /file/bot<token>/<file_path>`: the file's bytes with its type (404 in the Bot API's envelope for an
/// unknown path), with a `Content-Length` unless files are served in chunks.
async fn download(State(shared): State<Arc<Shared>>, Path((bot, path)): Path<(String, String)>) -> Response {
    let mut books = shared.books();
    if bot != shared.token_segment {
        books.unauthorized += 1;
        return error(StatusCode::UNAUTHORIZED, "Unauthorized", None);
    }
    let Some(file) = books.paths.get(&path).and_then(|id| books.files.get(id)).cloned() else {
        return error(StatusCode::NOT_FOUND, "Not Found", None);
    };
    books.downloads.push(path);
    drop(books);
    let content_type = [(header::CONTENT_TYPE, file.mime)];
    if shared.chunked_files.load(Ordering::Relaxed) {
        (StatusCode::OK, content_type, Body::new(Chunked { bytes: file.bytes })).into_response()
    } else {
        (StatusCode::OK, content_type, file.bytes).into_response()
    }
}

/// A body sent in chunks of [`FILE_CHUNK_BYTES`] with no length declared.
struct Chunked {
    bytes: Bytes,
}

impl http_body::Body for Chunked {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        if self.bytes.is_empty() {
            return Poll::Ready(None);
        }
        let n = self.bytes.len().min(FILE_CHUNK_BYTES);
        let chunk = self.bytes.split_to(n);
        Poll::Ready(Some(Ok(http_body::Frame::data(chunk))))
    }
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

/// Update bodies in the Bot API's wire shape, for the webhook, the poller ([`FakeTelegram::push_update`]) and
/// the parser's tests.
pub mod updates {
    use serde_json::{Value, json};

    /// The date every built message carries.
    const DATE: i64 = 1_800_000_000;

    /// A user as Telegram describes one in `from`.
    #[derive(Clone, PartialEq, Eq, Debug)]
    pub struct TestUser {
        /// The user's id (and their private chat's).
        pub id: i64,
        /// Their first name.
        pub first_name: String,
        /// Their username, without `@`.
        pub username: Option<String>,
        /// Their client's language.
        pub language_code: Option<String>,
    }

    impl TestUser {
        /// A user `id` named "Test", without a username, with a Russian client.
        #[must_use]
        pub fn new(id: i64) -> TestUser {
            TestUser { id, first_name: "Test".into(), username: None, language_code: Some("ru".into()) }
        }

        /// The same user with this username.
        #[must_use]
        pub fn username(mut self, username: &str) -> TestUser {
            self.username = Some(username.to_owned());
            self
        }

        /// The same user with this first name.
        #[must_use]
        pub fn first_name(mut self, first_name: &str) -> TestUser {
            self.first_name = first_name.to_owned();
            self
        }

        /// The same user with this client language (`None`: Telegram sent none).
        #[must_use]
        pub fn language_code(mut self, language_code: Option<&str>) -> TestUser {
            self.language_code = language_code.map(str::to_owned);
            self
        }

        fn to_json(&self) -> Value {
            let mut user = json!({"id": self.id, "is_bot": false, "first_name": self.first_name});
            if let Some(username) = &self.username {
                user["username"] = json!(username);
            }
            if let Some(language_code) = &self.language_code {
                user["language_code"] = json!(language_code);
            }
            user
        }
    }

    fn bytes(update: &Value) -> Vec<u8> {
        update.to_string().into_bytes()
    }

    /// A message update from `from` in their private chat, carrying `fields` (text, photo, …).
    fn private_message(update_id: i64, from: &TestUser, fields: Value) -> Vec<u8> {
        let mut message = json!({
            "message_id": update_id,
            "from": from.to_json(),
            "chat": {"id": from.id, "first_name": from.first_name, "type": "private"},
            "date": DATE,
        });
        if let (Some(message), Value::Object(fields)) = (message.as_object_mut(), fields) {
            message.extend(fields);
        }
        bytes(&json!({"update_id": update_id, "message": message}))
    }

    /// Adds `caption` to `fields` when there is one.
    fn with_caption(mut fields: Value, caption: Option<&str>) -> Value {
        if let Some(caption) = caption {
            fields["caption"] = json!(caption);
        }
        fields
    }

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
        let paid = json!({
            "successful_payment": {
                "currency": currency,
                "total_amount": total_amount,
                "invoice_payload": invoice_payload,
                "telegram_payment_charge_id": telegram_payment_charge_id,
                "provider_payment_charge_id": "",
            },
        });
        private_message(update_id, &TestUser::new(from), paid)
    }

    /// A text `message` update in the sender's private chat (a user "Test" with a Russian client).
    #[must_use]
    pub fn text_message(update_id: i64, from: i64, text: &str) -> Vec<u8> {
        text_message_from(update_id, &TestUser::new(from), text)
    }

    /// A text `message` update from `from` in their private chat.
    #[must_use]
    pub fn text_message_from(update_id: i64, from: &TestUser, text: &str) -> Vec<u8> {
        private_message(update_id, from, json!({"text": text}))
    }

    /// A photo `message` in the sender's private chat: one `PhotoSize` per `(file_id, file_unique_id, width,
    /// height)` in the order given (Telegram puts the largest last), each with a `file_size` of width × height
    /// / 8.
    #[must_use]
    pub fn photo_message(
        update_id: i64,
        from: &TestUser,
        sizes: &[(&str, &str, u32, u32)],
        caption: Option<&str>,
    ) -> Vec<u8> {
        let sizes: Vec<Value> = sizes
            .iter()
            .map(|(file_id, file_unique_id, width, height)| {
                json!({
                    "file_id": file_id, "file_unique_id": file_unique_id, "width": width, "height": height,
                    "file_size": u64::from(*width) * u64::from(*height) / 8,
                })
            })
            .collect();
        private_message(update_id, from, with_caption(json!({"photo": sizes}), caption))
    }

    /// A `document` message in the sender's private chat (an image sent uncompressed: `image/png`, …).
    #[must_use]
    pub fn document_message(
        update_id: i64,
        from: &TestUser,
        (file_id, file_unique_id): (&str, &str),
        file_name: &str,
        mime_type: &str,
        file_size: u64,
        caption: Option<&str>,
    ) -> Vec<u8> {
        let document = json!({"document": {
            "file_id": file_id, "file_unique_id": file_unique_id, "file_name": file_name, "mime_type": mime_type,
            "file_size": file_size,
        }});
        private_message(update_id, from, with_caption(document, caption))
    }

    /// A `video` message (1280×720, `video/mp4`) in the sender's private chat.
    #[must_use]
    pub fn video_message(
        update_id: i64,
        from: &TestUser,
        (file_id, file_unique_id): (&str, &str),
        duration: u32,
        caption: Option<&str>,
    ) -> Vec<u8> {
        let video = json!({"video": {
            "file_id": file_id, "file_unique_id": file_unique_id, "width": 1280, "height": 720,
            "duration": duration, "mime_type": "video/mp4", "file_size": 1_000_000,
        }});
        private_message(update_id, from, with_caption(video, caption))
    }

    /// A `sticker` message in the sender's private chat.
    #[must_use]
    pub fn sticker_message(update_id: i64, from: &TestUser) -> Vec<u8> {
        let sticker = json!({"sticker": {
            "file_id": "CAACAgIAAxkBAAE", "file_unique_id": "AgADsticker", "type": "regular", "width": 512,
            "height": 512, "is_animated": false, "is_video": false, "emoji": "🙂",
        }});
        private_message(update_id, from, sticker)
    }

    /// A `voice` message in the sender's private chat.
    #[must_use]
    pub fn voice_message(update_id: i64, from: &TestUser) -> Vec<u8> {
        let voice = json!({"voice": {
            "file_id": "AwACAgIAAxkBAAE", "file_unique_id": "AgADvoice", "duration": 3, "mime_type": "audio/ogg",
            "file_size": 9_000,
        }});
        private_message(update_id, from, voice)
    }

    /// A `callback_query`: `from` pressed a button carrying `data` under the bot's message `message_id` in
    /// `chat_id`.
    #[must_use]
    pub fn callback_query(
        update_id: i64,
        query_id: &str,
        from: &TestUser,
        data: &str,
        chat_id: i64,
        message_id: i64,
    ) -> Vec<u8> {
        bytes(&json!({
            "update_id": update_id,
            "callback_query": {
                "id": query_id,
                "from": from.to_json(),
                "message": {
                    "message_id": message_id,
                    "from": {"id": 1, "is_bot": true, "first_name": "REI", "username": "rei_fake_bot"},
                    "chat": {"id": chat_id, "type": if chat_id > 0 { "private" } else { "supergroup" }},
                    "date": DATE,
                    "text": "…",
                },
                "chat_instance": "-4242424242",
                "data": data,
            },
        }))
    }

    /// A `channel_post` in the channel `chat_id`.
    #[must_use]
    pub fn channel_post(update_id: i64, chat_id: i64, text: &str) -> Vec<u8> {
        bytes(&json!({
            "update_id": update_id,
            "channel_post": {
                "message_id": update_id,
                "sender_chat": {"id": chat_id, "title": "Channel", "type": "channel"},
                "chat": {"id": chat_id, "title": "Channel", "type": "channel"},
                "date": DATE,
                "text": text,
            },
        }))
    }

    /// A text `message` from `from` in the group `chat_id` (a basic group).
    #[must_use]
    pub fn group_message(update_id: i64, chat_id: i64, from: &TestUser, text: &str) -> Vec<u8> {
        bytes(&json!({
            "update_id": update_id,
            "message": {
                "message_id": update_id,
                "from": from.to_json(),
                "chat": {"id": chat_id, "title": "Group", "type": "group"},
                "date": DATE,
                "text": text,
            },
        }))
    }

    /// A text `message` without `from`: sent on behalf of the supergroup `chat_id` itself (`sender_chat`).
    #[must_use]
    pub fn message_without_from(update_id: i64, chat_id: i64, text: &str) -> Vec<u8> {
        bytes(&json!({
            "update_id": update_id,
            "message": {
                "message_id": update_id,
                "sender_chat": {"id": chat_id, "title": "Group", "type": "supergroup"},
                "chat": {"id": chat_id, "title": "Group", "type": "supergroup"},
                "date": DATE,
                "text": text,
            },
        }))
    }

    /// `my_chat_member` in `user`'s private chat: the bot's status went from `old_status` to `new_status`.
    #[must_use]
    pub fn my_chat_member(update_id: i64, user: i64, old_status: &str, new_status: &str) -> Vec<u8> {
        let bot = json!({"id": 1, "is_bot": true, "first_name": "REI", "username": "rei_fake_bot"});
        let mut old = json!({"status": old_status, "user": bot});
        let mut new = json!({"status": new_status, "user": bot});
        if new_status == "kicked" {
            new["until_date"] = json!(0);
        }
        if old_status == "kicked" {
            old["until_date"] = json!(0);
        }
        bytes(&json!({
            "update_id": update_id,
            "my_chat_member": {
                "chat": {"id": user, "first_name": "Test", "type": "private"},
                "from": TestUser::new(user).to_json(),
                "date": DATE,
                "old_chat_member": old,
                "new_chat_member": new,
            },
        }))
    }

    /// The user blocked the bot (`my_chat_member`, `member` → `kicked`).
    #[must_use]
    pub fn bot_blocked(update_id: i64, user: i64) -> Vec<u8> {
        my_chat_member(update_id, user, "member", "kicked")
    }

    /// The user unblocked the bot (`my_chat_member`, `kicked` → `member`).
    #[must_use]
    pub fn bot_unblocked(update_id: i64, user: i64) -> Vec<u8> {
        my_chat_member(update_id, user, "kicked", "member")
    }
}
