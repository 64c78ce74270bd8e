//! The typed Bot API methods the bot makes: messages with inline keyboards, photos, documents and videos (by
//! `file_id` as JSON, or uploaded as multipart/form-data), edits, callback answers, file downloads, long
//! polling, the webhook and the bot's own identity. Each one checks Telegram's documented limits before anything
//! is sent and goes through [`BotApi::call`]'s pacing and 429 handling. Texts are sent plain (no `parse_mode`):
//! what the bot says is shown as written.

use std::time::Duration;

use reqwest::multipart::{Form, Part};
use serde_json::{Map, Value, json};

use super::update::{CALLBACK_DATA_BYTES_MAX, CAPTION_CHARS_MAX, MESSAGE_TEXT_CHARS_MAX, TEXT_BYTES_MAX};
use super::{ANSWER_BYTES_MAX, BotApi, BotApiError, POLL_GRACE, Payload, UPDATES_ANSWER_BYTES_MAX, read_answer};

/// The largest photo Telegram takes as an upload (10 MB).
pub const PHOTO_UPLOAD_BYTES_MAX: u64 = 10_000_000;
/// The largest other file (document, video) Telegram takes as an upload (50 MB).
pub const FILE_UPLOAD_BYTES_MAX: u64 = 50_000_000;
/// The largest file Telegram's servers let a bot download (20 MB; a local Bot API server allows more, so
/// [`BotApi::download_file`] takes the caller's limit).
pub const FILE_DOWNLOAD_BYTES_MAX: u64 = 20_000_000;
/// The longest text of a callback query's answer (a notification or an alert), in characters.
pub const CALLBACK_ANSWER_CHARS_MAX: usize = 200;
/// The most buttons of one inline keyboard Telegram takes.
pub const KEYBOARD_BUTTONS_MAX: usize = 100;
/// The most buttons in one row of an inline keyboard Telegram takes.
pub const ROW_BUTTONS_MAX: usize = 8;
/// The longest button label REI sends, in bytes (far past what a phone shows).
pub const BUTTON_TEXT_BYTES_MAX: usize = 256;
/// The longest URL of a button REI sends, in bytes.
pub const BUTTON_URL_BYTES_MAX: usize = 2048;
/// The most updates one `getUpdates` returns (Telegram's own bound).
pub const UPDATES_LIMIT_MAX: u32 = 100;
/// The longest long poll asked for (Telegram suggests 25–50 s).
pub const POLL_TIMEOUT_MAX: Duration = Duration::from_secs(300);
/// The bound on each upload and each file download unless [`BotApi::with_transfer_timeout`] sets another (50 MB
/// at 4 Mbit/s).
pub const TRANSFER_TIMEOUT: Duration = Duration::from_secs(120);
/// The longest `file_id` (or URL, for Telegram to fetch) sent in place of a file, in bytes.
const FILE_REF_BYTES_MAX: usize = 2048;
/// The longest name of an uploaded file, in bytes.
const UPLOAD_NAME_BYTES_MAX: usize = 255;
/// The longest `file_path` of a download, in bytes.
const FILE_PATH_BYTES_MAX: usize = 1024;
/// The longest webhook URL, in bytes.
const WEBHOOK_URL_BYTES_MAX: usize = 2048;
/// The longest webhook secret token Telegram takes (1 to 256 characters of `A-Za-z0-9_-`).
const SECRET_TOKEN_BYTES_MAX: usize = 256;
/// The most bytes set aside before a download's first chunk arrives, whatever length it declares.
const DOWNLOAD_PREALLOCATE_MAX: usize = 1024 * 1024;
/// What Telegram says when an edit changes nothing.
const NOT_MODIFIED: &str = "message is not modified";

/// One button of an inline keyboard.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Button {
    /// Sends a `callback_query` with `data` back to the bot.
    Callback {
        /// The label, non-empty.
        text: String,
        /// What comes back in `callback_query.data`: 1 to 64 bytes (checked before sending).
        data: String,
    },
    /// Opens `url` (`https://`, `http://` or `tg://`).
    Url {
        /// The label, non-empty.
        text: String,
        /// The link.
        url: String,
    },
}

impl Button {
    /// A button sending `data` back.
    #[must_use]
    pub fn callback(text: impl Into<String>, data: impl Into<String>) -> Button {
        Button::Callback { text: text.into(), data: data.into() }
    }

    /// A button opening `url`.
    #[must_use]
    pub fn url(text: impl Into<String>, url: impl Into<String>) -> Button {
        Button::Url { text: text.into(), url: url.into() }
    }

    fn check(&self) -> Result<(), BotApiError> {
        let (Button::Callback { text, .. } | Button::Url { text, .. }) = self;
        if text.is_empty() || text.len() > BUTTON_TEXT_BYTES_MAX {
            return Err(invalid(format!("a button's text must be 1 to {BUTTON_TEXT_BYTES_MAX} bytes")));
        }
        match self {
            Button::Callback { data, .. } if data.is_empty() || data.len() > CALLBACK_DATA_BYTES_MAX => {
                Err(invalid(format!("a button's callback data must be 1 to {CALLBACK_DATA_BYTES_MAX} bytes")))
            }
            Button::Url { url, .. } if url.len() > BUTTON_URL_BYTES_MAX || !button_url_ok(url) => Err(invalid(
                format!("a button's url must be an https, http or tg link of at most {BUTTON_URL_BYTES_MAX} bytes"),
            )),
            _ => Ok(()),
        }
    }

    fn to_json(&self) -> Value {
        match self {
            Button::Callback { text, data } => json!({"text": text, "callback_data": data}),
            Button::Url { text, url } => json!({"text": text, "url": url}),
        }
    }
}

fn button_url_ok(url: &str) -> bool {
    ["https://", "http://", "tg://"].iter().any(|scheme| url.len() > scheme.len() && url.starts_with(scheme))
}

/// An inline keyboard under a message: rows of buttons. No rows removes the keyboard (in an edit).
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Keyboard {
    /// The rows, top to bottom; each at most [`ROW_BUTTONS_MAX`] buttons, at most [`KEYBOARD_BUTTONS_MAX`] in
    /// all, none empty.
    pub rows: Vec<Vec<Button>>,
}

impl Keyboard {
    /// A keyboard of these rows.
    #[must_use]
    pub fn new(rows: Vec<Vec<Button>>) -> Keyboard {
        Keyboard { rows }
    }

    /// `reply_markup` as Telegram takes it: `{"inline_keyboard":[[{"text":…,"callback_data":…}, …], …]}`.
    #[must_use]
    pub fn reply_markup(&self) -> Value {
        let rows: Vec<Value> =
            self.rows.iter().map(|row| Value::Array(row.iter().map(Button::to_json).collect())).collect();
        json!({ "inline_keyboard": rows })
    }

    /// Checks the keyboard against Telegram's limits.
    ///
    /// # Errors
    /// [`BotApiError::Invalid`] naming the limit broken.
    pub fn check(&self) -> Result<(), BotApiError> {
        let buttons: usize = self.rows.iter().map(Vec::len).sum();
        if buttons > KEYBOARD_BUTTONS_MAX {
            return Err(invalid(format!("a keyboard has at most {KEYBOARD_BUTTONS_MAX} buttons")));
        }
        for row in &self.rows {
            if row.is_empty() || row.len() > ROW_BUTTONS_MAX {
                return Err(invalid(format!("a keyboard's row has 1 to {ROW_BUTTONS_MAX} buttons")));
            }
            row.iter().try_for_each(Button::check)?;
        }
        Ok(())
    }
}

/// What a send returns: the new message's id in its chat (to edit it, or to answer a button under it).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Sent {
    /// The message's id.
    pub message_id: i64,
    /// The `file_unique_id` of the video, document or (largest) photo it carries: the same file sent back by
    /// the user has it too.
    pub file_unique_id: Option<String>,
}

/// A photo, video or document to send.
#[derive(Clone, PartialEq, Eq)]
pub enum Media {
    /// A file Telegram already has, by its `file_id` (this bot's: ids are per bot), or an HTTP URL for Telegram
    /// to fetch. Sent as JSON; no size limit applies.
    FileId(String),
    /// A file uploaded with the call, as a multipart/form-data part: at most [`PHOTO_UPLOAD_BYTES_MAX`] bytes for
    /// a photo, [`FILE_UPLOAD_BYTES_MAX`] for the rest, never empty.
    Upload {
        /// The file's content.
        bytes: Vec<u8>,
        /// Its name (shown for documents), 1 to 255 bytes without control characters.
        file_name: String,
        /// Its MIME type (`image/png`, `video/mp4`).
        mime: String,
    },
}

impl std::fmt::Debug for Media {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Media::FileId(id) => f.debug_tuple("FileId").field(id).finish(),
            Media::Upload { bytes, file_name, mime } => f
                .debug_struct("Upload")
                .field("bytes", &bytes.len())
                .field("file_name", file_name)
                .field("mime", mime)
                .finish(),
        }
    }
}

/// What `getFile` tells of a file.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct FileInfo {
    /// The file's id.
    pub file_id: String,
    /// Where to download it from ([`BotApi::download_file`]); absent when Telegram cannot serve it (over
    /// 20 MB). Valid for at least an hour.
    pub file_path: Option<String>,
    /// Its size in bytes, when known.
    pub file_size: Option<u64>,
}

/// Who the bot is (`getMe`).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct BotIdentity {
    /// The bot's user id.
    pub id: i64,
    /// Its username, without `@`.
    pub username: String,
}

fn invalid(reason: impl Into<String>) -> BotApiError {
    BotApiError::Invalid { reason: reason.into() }
}

fn garbage(reason: impl Into<String>) -> BotApiError {
    BotApiError::Garbage { reason: reason.into() }
}

/// A text of 1 to `max` characters.
fn check_text(text: &str, max: usize, what: &str) -> Result<(), BotApiError> {
    if text.is_empty() || text.chars().count() > max {
        return Err(invalid(format!("{what} must be 1 to {max} characters")));
    }
    Ok(())
}

/// A caption of at most [`CAPTION_CHARS_MAX`] characters.
fn check_caption(caption: Option<&str>) -> Result<(), BotApiError> {
    if caption.is_some_and(|c| c.chars().count() > CAPTION_CHARS_MAX) {
        return Err(invalid(format!("a caption must be at most {CAPTION_CHARS_MAX} characters")));
    }
    Ok(())
}

/// The keyboard's `reply_markup`, checked.
fn markup(keyboard: Option<&Keyboard>) -> Result<Option<Value>, BotApiError> {
    keyboard.map(|k| k.check().map(|()| k.reply_markup())).transpose()
}

/// The id of the message a send returned.
fn sent(method: &str, result: &Value) -> Result<Sent, BotApiError> {
    match result.get("message_id").and_then(Value::as_i64) {
        Some(message_id) => {
            let unique = |v: &Value| v.get("file_unique_id").and_then(Value::as_str).map(str::to_owned);
            let file_unique_id = ["video", "document", "animation"]
                .iter()
                .find_map(|k| result.get(*k).and_then(unique))
                .or_else(|| result.get("photo").and_then(Value::as_array).and_then(|p| p.last()).and_then(unique));
            Ok(Sent { message_id, file_unique_id })
        }
        None => Err(garbage(format!("{method} did not return a message"))),
    }
}

fn expect_true(method: &str, result: &Value) -> Result<(), BotApiError> {
    match result {
        Value::Bool(true) => Ok(()),
        _ => Err(garbage(format!("{method} did not return true"))),
    }
}

/// An edit that changed nothing is what the caller wanted.
fn unless_not_modified(result: Result<Value, BotApiError>) -> Result<(), BotApiError> {
    match result {
        Ok(_) => Ok(()),
        Err(BotApiError::Api { code: 400, description, .. }) if description.contains(NOT_MODIFIED) => Ok(()),
        Err(e) => Err(e),
    }
}

/// A file path as `getFile` gives it (`photos/file_0.jpg`): relative, without `..`, a query or control
/// characters, so that it names a file under the bot's file URL and nothing else.
fn file_path_ok(path: &str) -> bool {
    !path.is_empty()
        && path.len() <= FILE_PATH_BYTES_MAX
        && !path.starts_with('/')
        && !path.split('/').any(|segment| segment.is_empty() || segment == "." || segment == "..")
        && !path.chars().any(|c| c.is_control() || matches!(c, '?' | '#' | '\\' | '%'))
}

/// The kinds of file a message can carry, by their field in `send…`.
#[derive(Clone, Copy)]
enum FileKind {
    Photo,
    Document,
    Video,
}

impl FileKind {
    fn field(self) -> &'static str {
        match self {
            FileKind::Photo => "photo",
            FileKind::Document => "document",
            FileKind::Video => "video",
        }
    }

    fn method(self) -> &'static str {
        match self {
            FileKind::Photo => "sendPhoto",
            FileKind::Document => "sendDocument",
            FileKind::Video => "sendVideo",
        }
    }

    fn upload_max(self) -> u64 {
        match self {
            FileKind::Photo => PHOTO_UPLOAD_BYTES_MAX,
            FileKind::Document | FileKind::Video => FILE_UPLOAD_BYTES_MAX,
        }
    }
}

impl BotApi {
    /// `sendMessage`: `text` (1 to 4096 characters, plain) into `chat_id`, with an inline keyboard.
    ///
    /// # Errors
    /// [`BotApiError::Invalid`] for a text or keyboard Telegram would refuse; otherwise [`BotApi::call`]'s (a
    /// blocked user is a 403: [`BotApiError::is_blocked`]).
    pub async fn send_message(
        &self,
        chat_id: i64,
        text: &str,
        keyboard: Option<&Keyboard>,
    ) -> Result<Sent, BotApiError> {
        check_text(text, MESSAGE_TEXT_CHARS_MAX, "a message text")?;
        let mut params = json!({"chat_id": chat_id, "text": text});
        if let (Some(markup), Some(map)) = (markup(keyboard)?, params.as_object_mut()) {
            map.insert("reply_markup".into(), markup);
        }
        sent("sendMessage", &self.call("sendMessage", &params).await?)
    }

    /// `editMessageText`: the message's text (1 to 4096 characters) and keyboard replaced (no keyboard removes
    /// it). An edit that changes nothing (Telegram's 400 "message is not modified") is `Ok`.
    ///
    /// # Errors
    /// [`BotApiError::Invalid`] for a text or keyboard Telegram would refuse; otherwise [`BotApi::call`]'s
    /// (a message that is gone is a 400 "message to edit not found").
    pub async fn edit_message_text(
        &self,
        chat_id: i64,
        message_id: i64,
        text: &str,
        keyboard: Option<&Keyboard>,
    ) -> Result<(), BotApiError> {
        check_text(text, MESSAGE_TEXT_CHARS_MAX, "a message text")?;
        let mut params = json!({"chat_id": chat_id, "message_id": message_id, "text": text});
        if let (Some(markup), Some(map)) = (markup(keyboard)?, params.as_object_mut()) {
            map.insert("reply_markup".into(), markup);
        }
        unless_not_modified(self.call("editMessageText", &params).await)
    }

    /// `editMessageReplyMarkup`: only the keyboard replaced (`None` removes it). Changing nothing is `Ok`.
    ///
    /// # Errors
    /// [`BotApiError::Invalid`] for a keyboard Telegram would refuse; otherwise [`BotApi::call`]'s.
    pub async fn edit_message_reply_markup(
        &self,
        chat_id: i64,
        message_id: i64,
        keyboard: Option<&Keyboard>,
    ) -> Result<(), BotApiError> {
        let mut params = json!({"chat_id": chat_id, "message_id": message_id});
        if let (Some(markup), Some(map)) = (markup(keyboard)?, params.as_object_mut()) {
            map.insert("reply_markup".into(), markup);
        }
        unless_not_modified(self.call("editMessageReplyMarkup", &params).await)
    }

    /// `deleteMessage`.
    ///
    /// # Errors
    /// [`BotApi::call`]'s (a message already gone is a 400 "message to delete not found").
    pub async fn delete_message(&self, chat_id: i64, message_id: i64) -> Result<(), BotApiError> {
        let result = self.call("deleteMessage", &json!({"chat_id": chat_id, "message_id": message_id})).await?;
        expect_true("deleteMessage", &result)
    }

    /// `answerCallbackQuery`: stops the button's spinner, showing `text` (at most 200 characters) as a
    /// notification, or as an alert the user must close when `alert`.
    ///
    /// # Errors
    /// [`BotApiError::Invalid`] for a text over 200 characters; otherwise [`BotApi::call`]'s (a query answered
    /// too late is a 400 "query is too old").
    pub async fn answer_callback_query(&self, id: &str, text: Option<&str>, alert: bool) -> Result<(), BotApiError> {
        if id.is_empty() || id.len() > TEXT_BYTES_MAX {
            return Err(invalid(format!("a callback query id must be 1 to {TEXT_BYTES_MAX} bytes")));
        }
        if text.is_some_and(|t| t.chars().count() > CALLBACK_ANSWER_CHARS_MAX) {
            return Err(invalid(format!("a callback answer must be at most {CALLBACK_ANSWER_CHARS_MAX} characters")));
        }
        let mut params = json!({"callback_query_id": id, "show_alert": alert});
        if let (Some(text), Some(map)) = (text, params.as_object_mut()) {
            map.insert("text".into(), json!(text));
        }
        expect_true("answerCallbackQuery", &self.call("answerCallbackQuery", &params).await?)
    }

    /// `sendPhoto`: a photo (uploaded at most 10 MB) with a caption (at most 1024 characters) and a keyboard.
    ///
    /// # Errors
    /// [`BotApiError::TooLarge`] for an upload over 10 MB, [`BotApiError::Invalid`] for an empty one or a
    /// caption or keyboard Telegram would refuse; otherwise [`BotApi::call`]'s.
    pub async fn send_photo(
        &self,
        chat_id: i64,
        photo: &Media,
        caption: Option<&str>,
        keyboard: Option<&Keyboard>,
    ) -> Result<Sent, BotApiError> {
        self.send_file(FileKind::Photo, chat_id, photo, caption, keyboard).await
    }

    /// `sendDocument`: a file (uploaded at most 50 MB) with a caption (at most 1024 characters).
    ///
    /// # Errors
    /// As [`BotApi::send_photo`], with the 50 MB limit.
    pub async fn send_document(
        &self,
        chat_id: i64,
        document: &Media,
        caption: Option<&str>,
    ) -> Result<Sent, BotApiError> {
        self.send_file(FileKind::Document, chat_id, document, caption, None).await
    }

    /// `sendVideo`: a video (uploaded at most 50 MB) with a caption (at most 1024 characters).
    ///
    /// # Errors
    /// As [`BotApi::send_photo`], with the 50 MB limit.
    pub async fn send_video(&self, chat_id: i64, video: &Media, caption: Option<&str>) -> Result<Sent, BotApiError> {
        self.send_file(FileKind::Video, chat_id, video, caption, None).await
    }

    async fn send_file(
        &self,
        kind: FileKind,
        chat_id: i64,
        media: &Media,
        caption: Option<&str>,
        keyboard: Option<&Keyboard>,
    ) -> Result<Sent, BotApiError> {
        check_caption(caption)?;
        let markup = markup(keyboard)?;
        let method = kind.method();
        match media {
            Media::FileId(id) => {
                if id.is_empty() || id.len() > FILE_REF_BYTES_MAX {
                    return Err(invalid(format!("a file_id must be 1 to {FILE_REF_BYTES_MAX} bytes")));
                }
                let mut params = Map::new();
                params.insert("chat_id".into(), json!(chat_id));
                params.insert(kind.field().into(), json!(id));
                if let Some(caption) = caption {
                    params.insert("caption".into(), json!(caption));
                }
                if let Some(markup) = markup {
                    params.insert("reply_markup".into(), markup);
                }
                sent(method, &self.call(method, &Value::Object(params)).await?)
            }
            Media::Upload { bytes, file_name, mime } => {
                let limit = kind.upload_max();
                if bytes.len() as u64 > limit {
                    return Err(BotApiError::TooLarge { limit });
                }
                if bytes.is_empty() {
                    return Err(invalid("an uploaded file must not be empty"));
                }
                let name_ok = !file_name.is_empty()
                    && file_name.len() <= UPLOAD_NAME_BYTES_MAX
                    && !file_name.chars().any(|c| c.is_control() || c == '"');
                if !name_ok {
                    return Err(invalid(format!(
                        "an uploaded file's name must be 1 to {UPLOAD_NAME_BYTES_MAX} bytes without control characters or quotes"
                    )));
                }
                let part = Part::bytes(bytes.clone())
                    .file_name(file_name.clone())
                    .mime_str(mime)
                    .map_err(|_| invalid("an uploaded file's MIME type is not a MIME type"))?;
                let mut form = Form::new().text("chat_id", chat_id.to_string());
                if let Some(caption) = caption {
                    form = form.text("caption", caption.to_owned());
                }
                if let Some(markup) = markup {
                    form = form.text("reply_markup", markup.to_string());
                }
                let form = form.part(kind.field(), part);
                let timeout = Some(self.transfer_timeout);
                let result =
                    self.exchange(method, Some(chat_id), Payload::Form(form), timeout, ANSWER_BYTES_MAX).await?;
                sent(method, &result)
            }
        }
    }

    /// `getFile`: where to download a file from.
    ///
    /// # Errors
    /// [`BotApi::call`]'s (an unknown `file_id` is a 400), [`BotApiError::Garbage`] for a result without the file.
    pub async fn get_file(&self, file_id: &str) -> Result<FileInfo, BotApiError> {
        if file_id.is_empty() || file_id.len() > TEXT_BYTES_MAX {
            return Err(invalid(format!("a file_id must be 1 to {TEXT_BYTES_MAX} bytes")));
        }
        let file = self.call("getFile", &json!({"file_id": file_id})).await?;
        let file_id =
            file.get("file_id").and_then(Value::as_str).ok_or_else(|| garbage("getFile without a file_id"))?;
        let file_path = match file.get("file_path") {
            None | Some(Value::Null) => None,
            Some(Value::String(p)) if file_path_ok(p) => Some(p.clone()),
            Some(_) => return Err(garbage("getFile returned an unusable file_path")),
        };
        let file_size = match file.get("file_size") {
            None | Some(Value::Null) => None,
            Some(size) => Some(size.as_u64().ok_or_else(|| garbage("getFile returned an unusable file_size"))?),
        };
        Ok(FileInfo { file_id: file_id.to_owned(), file_path, file_size })
    }

    /// GET `{base}/file/bot{token}/{file_path}` (a path from [`BotApi::get_file`]), refusing more than
    /// `max_bytes`: a declared `Content-Length` over it before the body is read, and a body growing past it
    /// while it streams. Bounded in time by [`TRANSFER_TIMEOUT`] (or [`BotApi::with_transfer_timeout`]).
    /// Telegram's servers serve files of at most [`FILE_DOWNLOAD_BYTES_MAX`].
    ///
    /// # Errors
    /// [`BotApiError::TooLarge`] past `max_bytes`; [`BotApiError::Invalid`] for a path that is not a file path;
    /// [`BotApiError::Api`] for an HTTP error (404: the path expired); [`BotApiError::Transport`] when the
    /// download failed or was cut short.
    pub async fn download_file(&self, file_path: &str, max_bytes: u64) -> Result<Vec<u8>, BotApiError> {
        if !file_path_ok(file_path) {
            return Err(invalid("the file path is not a relative path of a file"));
        }
        let url = format!("{}/file/bot{}/{file_path}", self.base_url, self.token);
        let request = self.client.get(&url).timeout(self.transfer_timeout);
        let mut response = request.send().await.map_err(|e| self.transport(e))?;
        let status = response.status().as_u16();
        if !response.status().is_success() {
            let body = self.read_body(response, ANSWER_BYTES_MAX).await?;
            return Err(match read_answer(status, &body) {
                Err(e) => self.scrubbed(e),
                Ok(_) => BotApiError::Api {
                    code: status,
                    description: format!("HTTP {status} for the file"),
                    retry_after: None,
                },
            });
        }
        let declared = response.content_length();
        if declared.is_some_and(|len| len > max_bytes) {
            return Err(BotApiError::TooLarge { limit: max_bytes });
        }
        let preallocate = declared.unwrap_or(0).min(DOWNLOAD_PREALLOCATE_MAX as u64);
        let mut bytes = Vec::with_capacity(usize::try_from(preallocate).unwrap_or(0));
        while let Some(chunk) = response.chunk().await.map_err(|e| self.transport(e))? {
            if bytes.len() as u64 + chunk.len() as u64 > max_bytes {
                return Err(BotApiError::TooLarge { limit: max_bytes });
            }
            bytes.extend_from_slice(&chunk);
        }
        if declared.is_some_and(|len| len != bytes.len() as u64) {
            return Err(BotApiError::Transport { reason: "the file was cut short".to_owned(), sent: true });
        }
        Ok(bytes)
    }

    /// `getUpdates` (long polling): the updates from `offset` on (which confirms every earlier one), at most
    /// `limit` (1 to 100), waiting up to `timeout` (whole seconds, at most [`POLL_TIMEOUT_MAX`]) for one to
    /// come. Each comes as its JSON bytes, for [`super::parse_update`], with its `update_id`: a poller passes the
    /// last id + 1 as the next `offset`, whether or not the update could be read. The HTTP call is bounded by
    /// `timeout` + [`POLL_GRACE`], not the client's bound.
    ///
    /// # Errors
    /// [`BotApiError::Invalid`] for a `limit` or `timeout` out of range; [`BotApi::call`]'s (a 409 Conflict
    /// while a webhook is set or another poller runs); [`BotApiError::Garbage`] for a result that is not a list
    /// of updates.
    pub async fn get_updates(
        &self,
        offset: i64,
        timeout: Duration,
        limit: u32,
    ) -> Result<Vec<(i64, Vec<u8>)>, BotApiError> {
        if !(1..=UPDATES_LIMIT_MAX).contains(&limit) {
            return Err(invalid(format!("getUpdates takes a limit of 1 to {UPDATES_LIMIT_MAX}")));
        }
        if timeout > POLL_TIMEOUT_MAX {
            return Err(invalid(format!("getUpdates takes a timeout of at most {} s", POLL_TIMEOUT_MAX.as_secs())));
        }
        let params = json!({"offset": offset, "timeout": timeout.as_secs(), "limit": limit});
        let bound = Some(timeout + POLL_GRACE);
        let result = self.exchange("getUpdates", None, Payload::Json(&params), bound, UPDATES_ANSWER_BYTES_MAX).await?;
        let Value::Array(updates) = result else { return Err(garbage("getUpdates did not return a list")) };
        if updates.len() > limit as usize {
            return Err(garbage("getUpdates returned more updates than asked for"));
        }
        updates
            .into_iter()
            .map(|update| {
                let id = update.get("update_id").and_then(Value::as_i64);
                let id = id.ok_or_else(|| garbage("getUpdates returned an update without an integer update_id"))?;
                let bytes = serde_json::to_vec(&update).map_err(|_| garbage("an update could not be written back"))?;
                Ok((id, bytes))
            })
            .collect()
    }

    /// `setWebhook`: Telegram delivers every update to `url` (https), with `secret_token` (1 to 256 characters
    /// of `A-Za-z0-9_-`) in the `X-Telegram-Bot-Api-Secret-Token` header. Polling stops working meanwhile.
    ///
    /// # Errors
    /// [`BotApiError::Invalid`] for an empty or over-long URL or a secret Telegram would refuse; otherwise
    /// [`BotApi::call`]'s.
    pub async fn set_webhook(&self, url: &str, secret_token: &str) -> Result<(), BotApiError> {
        if url.is_empty() || url.len() > WEBHOOK_URL_BYTES_MAX {
            return Err(invalid(format!("a webhook url must be 1 to {WEBHOOK_URL_BYTES_MAX} bytes")));
        }
        let secret_ok = !secret_token.is_empty()
            && secret_token.len() <= SECRET_TOKEN_BYTES_MAX
            && secret_token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !secret_ok {
            return Err(invalid(format!(
                "a webhook secret token must be 1 to {SECRET_TOKEN_BYTES_MAX} characters of A-Za-z0-9_-"
            )));
        }
        let result = self.call("setWebhook", &json!({"url": url, "secret_token": secret_token})).await?;
        expect_true("setWebhook", &result)
    }

    /// `deleteWebhook`: back to polling; with `drop_pending_updates`, the updates not yet delivered are dropped.
    ///
    /// # Errors
    /// [`BotApi::call`]'s.
    pub async fn delete_webhook(&self, drop_pending_updates: bool) -> Result<(), BotApiError> {
        let result = self.call("deleteWebhook", &json!({"drop_pending_updates": drop_pending_updates})).await?;
        expect_true("deleteWebhook", &result)
    }

    /// `getMe`: the bot's id and username (also a check of the token: a wrong one is a 401).
    ///
    /// # Errors
    /// [`BotApi::call`]'s; [`BotApiError::Garbage`] for a result without an id or a username.
    pub async fn get_me(&self) -> Result<BotIdentity, BotApiError> {
        let me = self.call("getMe", &json!({})).await?;
        let id = me.get("id").and_then(Value::as_i64).ok_or_else(|| garbage("getMe without an id"))?;
        let username = me
            .get("username")
            .and_then(Value::as_str)
            .filter(|u| !u.is_empty() && u.len() <= TEXT_BYTES_MAX)
            .ok_or_else(|| garbage("getMe without a username"))?;
        Ok(BotIdentity { id, username: username.to_owned() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_keyboard_serialises_to_telegrams_inline_keyboard() {
        // Proves the wire shape of reply_markup: rows of buttons, callback_data or url per button.
        let k = Keyboard::new(vec![
            vec![Button::callback("5 сек", "d5"), Button::callback("10 сек", "d10")],
            vec![Button::url("Оплатить", "https://t.me/$x")],
        ]);
        assert_eq!(k.check(), Ok(()));
        assert_eq!(
            k.reply_markup(),
            json!({"inline_keyboard": [
                [{"text": "5 сек", "callback_data": "d5"}, {"text": "10 сек", "callback_data": "d10"}],
                [{"text": "Оплатить", "url": "https://t.me/$x"}],
            ]})
        );
        assert_eq!(Keyboard::default().reply_markup(), json!({"inline_keyboard": []}));
    }

    #[test]
    fn keyboards_breaking_telegrams_limits_are_refused() {
        // Proves the checks: callback data of 64 bytes is fine and 65 (or none) is not, counted in bytes; empty
        // labels, bad links, empty or over-long rows and too many buttons are refused.
        let one = |b: Button| Keyboard::new(vec![vec![b]]).check();
        assert_eq!(one(Button::callback("ok", "x".repeat(CALLBACK_DATA_BYTES_MAX))), Ok(()));
        assert!(one(Button::callback("ok", "x".repeat(CALLBACK_DATA_BYTES_MAX + 1))).is_err());
        assert!(one(Button::callback("ok", "я".repeat(33))).is_err(), "66 bytes in 33 characters");
        assert!(one(Button::callback("ok", "")).is_err());
        assert!(one(Button::callback("", "d")).is_err());
        assert!(one(Button::url("pay", "javascript:alert(1)")).is_err());
        assert!(one(Button::url("pay", "https://")).is_err());
        assert_eq!(one(Button::url("bot", "tg://resolve?domain=x")), Ok(()));
        assert!(Keyboard::new(vec![vec![]]).check().is_err());
        let row = |n: usize| (0..n).map(|i| Button::callback("b", i.to_string())).collect::<Vec<_>>();
        assert_eq!(Keyboard::new(vec![row(ROW_BUTTONS_MAX)]).check(), Ok(()));
        assert!(Keyboard::new(vec![row(ROW_BUTTONS_MAX + 1)]).check().is_err());
        let rows = (0..KEYBOARD_BUTTONS_MAX / 4 + 1).map(|_| row(4)).collect();
        assert!(matches!(Keyboard::new(rows).check(), Err(BotApiError::Invalid { .. })));
    }

    #[test]
    fn file_paths_name_only_files_under_the_bots_file_url() {
        // Proves the download path check: Telegram's paths pass, escapes from the file URL do not.
        assert!(file_path_ok("photos/file_0.jpg"));
        assert!(file_path_ok("documents/file_12.png"));
        for bad in ["", "/etc/passwd", "../bot1/getMe", "a/../b", "a//b", "a?x=1", "a#b", "a\\b", "a\nb", "a%2e%2e"] {
            assert!(!file_path_ok(bad), "{bad:?}");
        }
    }

    #[test]
    fn an_upload_prints_its_size_not_its_bytes() {
        // Proves Media's Debug stays short for a 50 MB upload.
        let m = Media::Upload { bytes: vec![7; 1000], file_name: "a.png".into(), mime: "image/png".into() };
        assert_eq!(format!("{m:?}"), r#"Upload { bytes: 1000, file_name: "a.png", mime: "image/png" }"#);
    }
}
