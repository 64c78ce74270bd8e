//! [`parse_update`]: the webhook's (and a poller's) reader of one Bot API `Update`.
//!
//! Strict and bounded: a body of at most [`UPDATE_BYTES_MAX`] bytes, one JSON object with an integer
//! `update_id` and exactly one payload field (as Telegram documents), every field this reader takes of the
//! expected JSON type and within Telegram's own limits, and every other field ignored. It never panics: serde's
//! recursion limit bounds nesting, numbers that are not integers in range are refused, and nothing is indexed
//! without a check.
//!
//! What the bot acts on has a variant: messages (with their sender, chat kind and [`Content`]), button presses,
//! the bot blocked or unblocked in a private chat, and the two Stars payment updates. Every other kind
//! (`edited_message`, `channel_post`, …) stays [`Update::Other`], to be acknowledged.
//!
//! A few fields Telegram always sends are read leniently when absent and strictly when present: a sender
//! without `is_bot` is not a bot, one without `first_name` has an empty one (bodies written by hand and older
//! local Bot API servers omit them; a wrong type is still refused).

use rei_core::ids::UserId;
use rei_core::stars::{PreCheckout, SuccessfulPayment};
use serde_json::{Map, Value};

/// The most bytes of an update read.
pub const UPDATE_BYTES_MAX: usize = 1024 * 1024;
/// The longest message text Telegram sends (and accepts), in characters.
pub const MESSAGE_TEXT_CHARS_MAX: usize = 4096;
/// The longest caption of a photo, video or document Telegram sends (and accepts), in characters.
pub const CAPTION_CHARS_MAX: usize = 1024;
/// The longest of the other strings read (ids, currencies, payloads, names), in bytes.
pub const TEXT_BYTES_MAX: usize = 256;
/// The longest `callback_query.data` Telegram sends (and accepts on a button), in bytes.
pub const CALLBACK_DATA_BYTES_MAX: usize = 64;
/// The longest `invoice_payload` Telegram sends, in bytes.
const INVOICE_PAYLOAD_BYTES_MAX: usize = 128;
/// The longest currency code kept.
const CURRENCY_BYTES_MAX: usize = 16;
/// The longest update kind kept in [`Update::Other`].
const KIND_CHARS_MAX: usize = 64;
/// The longest `language_code` kept (an IETF tag; RFC 5646 asks for room for 35 characters).
const LANGUAGE_CODE_BYTES_MAX: usize = 35;
/// The longest chat member status kept (`administrator` is the longest Telegram has).
const STATUS_BYTES_MAX: usize = 32;
/// The most sizes of one photo read (Telegram sends up to four or five).
const PHOTO_SIZES_MAX: usize = 32;
/// The longest MIME type kept.
const MIME_BYTES_MAX: usize = 128;
/// The longest file name kept, in bytes.
const FILE_NAME_BYTES_MAX: usize = 1024;

/// Who sent a message or pressed a button (Telegram's `User`, the part REI uses).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Sender {
    /// The user's id (also the id of the private chat with them).
    pub id: UserId,
    /// Whether the sender is a bot.
    pub is_bot: bool,
    /// The first name, at most 256 bytes (empty when Telegram did not send one).
    pub first_name: String,
    /// The username without `@`, at most 256 bytes.
    pub username: Option<String>,
    /// The IETF language tag of the user's client (`ru`, `en`, `pt-br`), at most 35 bytes.
    pub language_code: Option<String>,
}

/// The kind of chat a message is in.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum ChatKind {
    /// A one-to-one chat with a user: its id is the user's.
    Private,
    /// A basic group.
    Group,
    /// A supergroup.
    Supergroup,
    /// A channel.
    Channel,
}

/// A file Telegram keeps, as a message names it: `file_id` to send it again or to download it (`getFile`),
/// `file_unique_id` to recognise it across bots and time.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct FileRef {
    /// The id to send or download the file by (valid for this bot only), at most 256 bytes.
    pub file_id: String,
    /// The id that is the same for the same file everywhere, at most 256 bytes; not usable to download.
    pub file_unique_id: String,
    /// The size in bytes, when Telegram knows it.
    pub file_size: Option<u64>,
}

/// What a message carries.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Content {
    /// A text (a command such as `/start` is a text), at most [`MESSAGE_TEXT_CHARS_MAX`] characters.
    Text(String),
    /// A photo: the largest of the sizes Telegram sent.
    Photo {
        /// The largest size (by width × height, then file size; the later one on a tie).
        file: FileRef,
        /// The caption, at most [`CAPTION_CHARS_MAX`] characters.
        caption: Option<String>,
    },
    /// A file sent as a document (an uncompressed image, a PDF; a GIF animation also comes as one).
    Document {
        /// The file.
        file: FileRef,
        /// Its original name, as the sender's client gave it.
        file_name: Option<String>,
        /// Its MIME type, as the sender's client gave it.
        mime_type: Option<String>,
        /// The caption, at most [`CAPTION_CHARS_MAX`] characters.
        caption: Option<String>,
    },
    /// A video.
    Video {
        /// The file.
        file: FileRef,
        /// Its duration in seconds.
        duration: u32,
        /// Its MIME type.
        mime_type: Option<String>,
        /// The caption, at most [`CAPTION_CHARS_MAX`] characters.
        caption: Option<String>,
    },
    /// A sticker.
    Sticker,
    /// A voice message, an audio file or a round video note.
    Voice,
    /// Anything else: a location, a contact, a poll, a service message, …
    Other,
}

/// One update, as far as REI acts on it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Update {
    /// `pre_checkout_query`: answer it at once (within 10 s).
    PreCheckout {
        /// The update's id.
        update_id: i64,
        /// The query.
        query: PreCheckout,
    },
    /// A `message` carrying `successful_payment`: the only thing that credits a Stars top-up.
    SuccessfulPayment {
        /// The update's id.
        update_id: i64,
        /// The chat the payment was made in.
        chat_id: i64,
        /// The payment (`from` is the message's sender).
        payment: SuccessfulPayment,
    },
    /// Any other `message`.
    Message {
        /// The update's id.
        update_id: i64,
        /// The message's id in its chat.
        message_id: i64,
        /// The sender (absent for messages sent on behalf of a channel).
        from: Option<Sender>,
        /// The chat.
        chat_id: i64,
        /// The chat's kind.
        chat_kind: ChatKind,
        /// What it carries.
        content: Content,
    },
    /// `callback_query`: an inline keyboard button was pressed.
    CallbackQuery {
        /// The update's id.
        update_id: i64,
        /// The query's id, to answer it by.
        id: String,
        /// Who pressed.
        from: Sender,
        /// The button's data, at most [`CALLBACK_DATA_BYTES_MAX`] bytes.
        data: Option<String>,
        /// The chat of the message with the button, when Telegram sends it.
        chat_id: Option<i64>,
        /// The message with the button, when Telegram sends it.
        message_id: Option<i64>,
    },
    /// `my_chat_member` in a private chat: the user blocked the bot (new status `kicked`) or unblocked it
    /// (new status `member`). Other status changes, and those in groups and channels, are [`Update::Other`].
    MemberStatus {
        /// The update's id.
        update_id: i64,
        /// The user.
        from: UserId,
        /// `true` when the bot was blocked, `false` when it was unblocked.
        blocked: bool,
    },
    /// An update kind REI does not act on (yet): acknowledge it.
    Other {
        /// The update's id.
        update_id: i64,
        /// Its payload field's name (`edited_message`, `channel_post`, …), at most 64 characters.
        kind: String,
    },
}

impl Update {
    /// The update's id (Telegram's order of updates; the dedup key of a webhook delivery).
    #[must_use]
    pub fn update_id(&self) -> i64 {
        match self {
            Update::PreCheckout { update_id, .. }
            | Update::SuccessfulPayment { update_id, .. }
            | Update::Message { update_id, .. }
            | Update::CallbackQuery { update_id, .. }
            | Update::MemberStatus { update_id, .. }
            | Update::Other { update_id, .. } => *update_id,
        }
    }
}

/// Why a body is not an update this reader takes.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum UpdateError {
    /// Over [`UPDATE_BYTES_MAX`] bytes.
    #[error("the update is over {UPDATE_BYTES_MAX} bytes")]
    TooLarge,
    /// Not JSON (or nested past serde's limit).
    #[error("the update is not JSON: {reason}")]
    Json {
        /// serde's message (a position, never the input).
        reason: String,
    },
    /// JSON, but not an update of the documented shape.
    #[error("the update is malformed: {what}")]
    Shape {
        /// What is wrong.
        what: String,
    },
}

fn shape(what: impl Into<String>) -> UpdateError {
    UpdateError::Shape { what: what.into() }
}

/// Reads one `Update` body.
///
/// # Errors
/// [`UpdateError`] for a body that is too large, not JSON, or not an update of the documented shape.
pub fn parse_update(body: &[u8]) -> Result<Update, UpdateError> {
    if body.len() > UPDATE_BYTES_MAX {
        return Err(UpdateError::TooLarge);
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| UpdateError::Json { reason: e.to_string() })?;
    let update = value.as_object().ok_or_else(|| shape("not an object"))?;
    let update_id = int(update, "update_id", "update")?;
    let mut payloads = update.iter().filter(|(key, _)| key.as_str() != "update_id");
    let (kind, payload) = payloads.next().ok_or_else(|| shape("no payload field"))?;
    if payloads.next().is_some() {
        return Err(shape("more than one payload field"));
    }
    match kind.as_str() {
        "pre_checkout_query" => Ok(Update::PreCheckout { update_id, query: pre_checkout(object(payload, kind)?)? }),
        "message" => message(update_id, object(payload, kind)?),
        "callback_query" => callback_query(update_id, object(payload, kind)?),
        "my_chat_member" => my_chat_member(update_id, object(payload, kind)?),
        other => Ok(Update::Other { update_id, kind: other.chars().take(KIND_CHARS_MAX).collect() }),
    }
}

fn object<'a>(value: &'a Value, what: &str) -> Result<&'a Map<String, Value>, UpdateError> {
    value.as_object().ok_or_else(|| shape(format!("{what} is not an object")))
}

/// `map[key]` as an object; absent is refused.
fn field_object<'a>(map: &'a Map<String, Value>, key: &str, what: &str) -> Result<&'a Map<String, Value>, UpdateError> {
    object(map.get(key).unwrap_or(&Value::Null), &format!("{what}.{key}"))
}

/// Whether `key` is there and not `null`.
fn present(map: &Map<String, Value>, key: &str) -> bool {
    !matches!(map.get(key), None | Some(Value::Null))
}

/// A required integer that fits `i64` (a float, a string or a bigger number is refused).
fn int(map: &Map<String, Value>, key: &str, what: &str) -> Result<i64, UpdateError> {
    map.get(key).and_then(Value::as_i64).ok_or_else(|| shape(format!("{what}.{key} is not an integer")))
}

/// An optional integer; present but not an integer is refused.
fn opt_int(map: &Map<String, Value>, key: &str, what: &str) -> Result<Option<i64>, UpdateError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_i64().map(Some).ok_or_else(|| shape(format!("{what}.{key} is not an integer"))),
    }
}

/// An optional non-negative integer; present but negative or not an integer is refused.
fn opt_u64(map: &Map<String, Value>, key: &str, what: &str) -> Result<Option<u64>, UpdateError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| shape(format!("{what}.{key} is not a non-negative integer"))),
    }
}

/// A required integer in `0..=u32::MAX`.
fn u32_field(map: &Map<String, Value>, key: &str, what: &str) -> Result<u32, UpdateError> {
    let n = int(map, key, what)?;
    u32::try_from(n).map_err(|_| shape(format!("{what}.{key} is out of range")))
}

/// An optional boolean; present but not a boolean is refused.
fn opt_bool(map: &Map<String, Value>, key: &str, what: &str) -> Result<Option<bool>, UpdateError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(shape(format!("{what}.{key} is not a boolean"))),
    }
}

/// A required string of at most `max` bytes.
fn string(map: &Map<String, Value>, key: &str, what: &str, max: usize) -> Result<String, UpdateError> {
    opt_string(map, key, what, max)?.ok_or_else(|| shape(format!("{what}.{key} is missing")))
}

/// A required, non-empty string of at most `max` bytes.
fn non_empty(map: &Map<String, Value>, key: &str, what: &str, max: usize) -> Result<String, UpdateError> {
    let s = string(map, key, what, max)?;
    if s.is_empty() {
        return Err(shape(format!("{what}.{key} is empty")));
    }
    Ok(s)
}

/// An optional string of at most `max` bytes; present but not a string, or longer, is refused.
fn opt_string(map: &Map<String, Value>, key: &str, what: &str, max: usize) -> Result<Option<String>, UpdateError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.len() <= max => Ok(Some(s.clone())),
        Some(Value::String(_)) => Err(shape(format!("{what}.{key} is over {max} bytes"))),
        Some(_) => Err(shape(format!("{what}.{key} is not a string"))),
    }
}

/// An optional string of at most `max` characters (a character is at most 4 bytes, so the bytes are bounded
/// before the characters are counted).
fn opt_chars(map: &Map<String, Value>, key: &str, what: &str, max: usize) -> Result<Option<String>, UpdateError> {
    let s = opt_string(map, key, what, max * 4)?;
    if s.as_ref().is_some_and(|s| s.chars().count() > max) {
        return Err(shape(format!("{what}.{key} is over {max} characters")));
    }
    Ok(s)
}

/// `from.id` of a payload.
fn user(map: &Map<String, Value>, what: &str) -> Result<UserId, UpdateError> {
    let from = map.get("from").ok_or_else(|| shape(format!("{what}.from is missing")))?;
    Ok(UserId(int(object(from, "from")?, "id", "from")?))
}

/// A `User` object.
fn sender(from: &Value, what: &str) -> Result<Sender, UpdateError> {
    let f = object(from, what)?;
    Ok(Sender {
        id: UserId(int(f, "id", what)?),
        is_bot: opt_bool(f, "is_bot", what)?.unwrap_or(false),
        first_name: opt_string(f, "first_name", what, TEXT_BYTES_MAX)?.unwrap_or_default(),
        username: opt_string(f, "username", what, TEXT_BYTES_MAX)?,
        language_code: opt_string(f, "language_code", what, LANGUAGE_CODE_BYTES_MAX)?,
    })
}

/// `chat.type`.
fn chat_kind(chat: &Map<String, Value>, what: &str) -> Result<ChatKind, UpdateError> {
    match string(chat, "type", what, TEXT_BYTES_MAX)?.as_str() {
        "private" => Ok(ChatKind::Private),
        "group" => Ok(ChatKind::Group),
        "supergroup" => Ok(ChatKind::Supergroup),
        "channel" => Ok(ChatKind::Channel),
        _ => Err(shape(format!("{what}.type is not a known chat type"))),
    }
}

fn stars(map: &Map<String, Value>, what: &str) -> Result<u32, UpdateError> {
    let amount = int(map, "total_amount", what)?;
    u32::try_from(amount).map_err(|_| shape(format!("{what}.total_amount is out of range")))
}

fn pre_checkout(q: &Map<String, Value>) -> Result<PreCheckout, UpdateError> {
    let what = "pre_checkout_query";
    Ok(PreCheckout {
        id: string(q, "id", what, TEXT_BYTES_MAX)?,
        from: user(q, what)?,
        currency: string(q, "currency", what, CURRENCY_BYTES_MAX)?,
        total_amount: stars(q, what)?,
        invoice_payload: string(q, "invoice_payload", what, INVOICE_PAYLOAD_BYTES_MAX)?,
    })
}

fn message(update_id: i64, m: &Map<String, Value>) -> Result<Update, UpdateError> {
    let what = "message";
    let message_id = int(m, "message_id", what)?;
    let chat = field_object(m, "chat", what)?;
    let chat_id = int(chat, "id", "message.chat")?;
    let from = match m.get("from") {
        None | Some(Value::Null) => None,
        Some(f) => Some(sender(f, "message.from")?),
    };
    if let Some(paid) = m.get("successful_payment") {
        let p = object(paid, "successful_payment")?;
        let what = "successful_payment";
        let from = from.ok_or_else(|| shape("a successful payment without a sender"))?.id;
        let payment = SuccessfulPayment {
            from,
            currency: string(p, "currency", what, CURRENCY_BYTES_MAX)?,
            total_amount: stars(p, what)?,
            invoice_payload: string(p, "invoice_payload", what, INVOICE_PAYLOAD_BYTES_MAX)?,
            telegram_payment_charge_id: string(p, "telegram_payment_charge_id", what, TEXT_BYTES_MAX)?,
            provider_payment_charge_id: opt_string(p, "provider_payment_charge_id", what, TEXT_BYTES_MAX)?
                .unwrap_or_default(),
        };
        return Ok(Update::SuccessfulPayment { update_id, chat_id, payment });
    }
    let chat_kind = chat_kind(chat, "message.chat")?;
    let content = content(m)?;
    Ok(Update::Message { update_id, message_id, from, chat_id, chat_kind, content })
}

/// What a (non-payment) message carries. Telegram sends at most one of these fields; they are looked at in a
/// fixed order, so an animation (which also carries `document`) reads as its document.
fn content(m: &Map<String, Value>) -> Result<Content, UpdateError> {
    let what = "message";
    let caption = || opt_chars(m, "caption", what, CAPTION_CHARS_MAX);
    if present(m, "text") {
        let text = opt_chars(m, "text", what, MESSAGE_TEXT_CHARS_MAX)?.unwrap_or_default();
        return Ok(Content::Text(text));
    }
    if let Some(sizes) = m.get("photo").filter(|v| !v.is_null()) {
        return Ok(Content::Photo { file: largest_photo(sizes)?, caption: caption()? });
    }
    if present(m, "video") {
        let v = field_object(m, "video", what)?;
        let what = "message.video";
        return Ok(Content::Video {
            file: file_ref(v, what)?,
            duration: u32_field(v, "duration", what)?,
            mime_type: opt_string(v, "mime_type", what, MIME_BYTES_MAX)?,
            caption: caption()?,
        });
    }
    if present(m, "document") {
        let d = field_object(m, "document", what)?;
        let what = "message.document";
        return Ok(Content::Document {
            file: file_ref(d, what)?,
            file_name: opt_string(d, "file_name", what, FILE_NAME_BYTES_MAX)?,
            mime_type: opt_string(d, "mime_type", what, MIME_BYTES_MAX)?,
            caption: caption()?,
        });
    }
    if present(m, "sticker") {
        field_object(m, "sticker", what)?;
        return Ok(Content::Sticker);
    }
    for key in ["voice", "audio", "video_note"] {
        if present(m, key) {
            field_object(m, key, what)?;
            return Ok(Content::Voice);
        }
    }
    Ok(Content::Other)
}

/// The `file_id`, `file_unique_id` and `file_size` of a file object.
fn file_ref(f: &Map<String, Value>, what: &str) -> Result<FileRef, UpdateError> {
    Ok(FileRef {
        file_id: non_empty(f, "file_id", what, TEXT_BYTES_MAX)?,
        file_unique_id: non_empty(f, "file_unique_id", what, TEXT_BYTES_MAX)?,
        file_size: opt_u64(f, "file_size", what)?,
    })
}

/// The largest of a photo's sizes: every size is checked, the one with the most pixels wins (then the larger
/// file, then the later one, Telegram putting the largest last).
fn largest_photo(sizes: &Value) -> Result<FileRef, UpdateError> {
    let what = "message.photo";
    let sizes = sizes.as_array().ok_or_else(|| shape(format!("{what} is not an array")))?;
    if sizes.is_empty() || sizes.len() > PHOTO_SIZES_MAX {
        return Err(shape(format!("{what} has {} sizes, not 1 to {PHOTO_SIZES_MAX}", sizes.len())));
    }
    let mut best: Option<((u64, u64), FileRef)> = None;
    for size in sizes {
        let s = object(size, "message.photo[]")?;
        let file = file_ref(s, "message.photo[]")?;
        let pixels = u64::from(u32_field(s, "width", "message.photo[]")?)
            * u64::from(u32_field(s, "height", "message.photo[]")?);
        let key = (pixels, file.file_size.unwrap_or(0));
        if best.as_ref().is_none_or(|(b, _)| key >= *b) {
            best = Some((key, file));
        }
    }
    best.map(|(_, file)| file).ok_or_else(|| shape(format!("{what} is empty")))
}

fn callback_query(update_id: i64, q: &Map<String, Value>) -> Result<Update, UpdateError> {
    let what = "callback_query";
    let (chat_id, message_id) = match q.get("message") {
        None | Some(Value::Null) => (None, None),
        Some(m) => {
            let m = object(m, "callback_query.message")?;
            let chat = match m.get("chat") {
                None | Some(Value::Null) => None,
                Some(c) => Some(int(object(c, "callback_query.message.chat")?, "id", "callback_query.message.chat")?),
            };
            (chat, opt_int(m, "message_id", "callback_query.message")?)
        }
    };
    let from = q.get("from").ok_or_else(|| shape("callback_query.from is missing"))?;
    Ok(Update::CallbackQuery {
        update_id,
        id: string(q, "id", what, TEXT_BYTES_MAX)?,
        from: sender(from, "callback_query.from")?,
        data: opt_string(q, "data", what, CALLBACK_DATA_BYTES_MAX)?,
        chat_id,
        message_id,
    })
}

fn my_chat_member(update_id: i64, u: &Map<String, Value>) -> Result<Update, UpdateError> {
    let what = "my_chat_member";
    let chat = field_object(u, "chat", what)?;
    int(chat, "id", "my_chat_member.chat")?;
    let kind = chat_kind(chat, "my_chat_member.chat")?;
    let from = user(u, what)?;
    let new = field_object(u, "new_chat_member", what)?;
    let status = string(new, "status", "my_chat_member.new_chat_member", STATUS_BYTES_MAX)?;
    match (kind, status.as_str()) {
        (ChatKind::Private, "kicked") => Ok(Update::MemberStatus { update_id, from, blocked: true }),
        (ChatKind::Private, "member") => Ok(Update::MemberStatus { update_id, from, blocked: false }),
        _ => Ok(Update::Other { update_id, kind: what.to_owned() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sender(id: i64) -> Sender {
        Sender { id: UserId(id), is_bot: false, first_name: String::new(), username: None, language_code: None }
    }

    /// A private-chat message from 7 with these extra fields.
    fn message_with(fields: &str) -> Vec<u8> {
        format!(
            r#"{{"update_id":1,"message":{{"message_id":5,"from":{{"id":7}},"chat":{{"id":7,"type":"private"}},{fields}}}}}"#
        )
        .into_bytes()
    }

    fn content_of(fields: &str) -> Result<Content, UpdateError> {
        match parse_update(&message_with(fields))? {
            Update::Message { content, .. } => Ok(content),
            other => panic!("not a message: {other:?}"),
        }
    }

    #[test]
    fn the_updates_of_a_stars_purchase_are_read() {
        // Proves the two payment updates in Telegram's wire shape become their domain types.
        let q = br#"{"update_id":10,"pre_checkout_query":{"id":"4382","from":{"id":42,"is_bot":false,
            "first_name":"A"},"currency":"XTR","total_amount":100,"invoice_payload":"rei:42:t1"}}"#;
        let Ok(Update::PreCheckout { update_id: 10, query }) = parse_update(q) else { panic!("{:?}", parse_update(q)) };
        assert_eq!((query.id.as_str(), query.from, query.total_amount), ("4382", UserId(42), 100));
        let p = br#"{"update_id":11,"message":{"message_id":5,"from":{"id":42},"chat":{"id":42,"type":"private"},
            "date":1,"successful_payment":{"currency":"XTR","total_amount":100,"invoice_payload":"rei:42:t1",
            "telegram_payment_charge_id":"stx1","provider_payment_charge_id":""}}}"#;
        let Ok(Update::SuccessfulPayment { chat_id: 42, payment, .. }) = parse_update(p) else { panic!() };
        assert_eq!((payment.from, payment.telegram_payment_charge_id.as_str()), (UserId(42), "stx1"));
    }

    #[test]
    fn a_text_message_carries_its_sender_and_chat_kind() {
        // Proves a text message in each chat kind, with every field of the sender, and a minimal sender.
        let m = r#"{"update_id":1,"message":{"message_id":5,"from":{"id":7,"is_bot":false,"first_name":"Анна",
            "username":"anna","language_code":"ru"},"chat":{"id":-100,"type":"supergroup"},"text":"/start"}}"#;
        let from = Sender {
            id: UserId(7),
            is_bot: false,
            first_name: "Анна".into(),
            username: Some("anna".into()),
            language_code: Some("ru".into()),
        };
        assert_eq!(
            parse_update(m.as_bytes()),
            Ok(Update::Message {
                update_id: 1,
                message_id: 5,
                from: Some(from),
                chat_id: -100,
                chat_kind: ChatKind::Supergroup,
                content: Content::Text("/start".into()),
            })
        );
        for (kind, expected) in [
            ("private", ChatKind::Private),
            ("group", ChatKind::Group),
            ("supergroup", ChatKind::Supergroup),
            ("channel", ChatKind::Channel),
        ] {
            let body = format!(
                r#"{{"update_id":2,"message":{{"message_id":1,"from":{{"id":3,"is_bot":true}},"chat":{{"id":3,"type":"{kind}"}},"text":"x"}}}}"#
            );
            let Ok(Update::Message { chat_kind, from: Some(from), .. }) = parse_update(body.as_bytes()) else {
                panic!("{kind}")
            };
            assert_eq!((chat_kind, from.is_bot, from.first_name.as_str()), (expected, true, ""));
        }
    }

    #[test]
    fn a_message_without_a_sender_keeps_none() {
        // Proves a message on behalf of a chat (no `from`) is read with `from: None`.
        let m = br#"{"update_id":4,"message":{"message_id":9,"sender_chat":{"id":-100,"type":"channel"},
            "chat":{"id":-100,"type":"supergroup"},"text":"hi"}}"#;
        let Ok(Update::Message { from, chat_id: -100, .. }) = parse_update(m) else { panic!("{:?}", parse_update(m)) };
        assert_eq!(from, None);
    }

    #[test]
    fn the_largest_photo_size_is_picked_whatever_its_place() {
        // Proves the photo's largest size by pixels (not by its place in the array), ties to the larger file and
        // then the later size, and its caption.
        let size = |id: &str, w: u32, h: u32, bytes: u64| {
            format!(r#"{{"file_id":"{id}","file_unique_id":"u{id}","width":{w},"height":{h},"file_size":{bytes}}}"#)
        };
        let photo = format!(
            r#""photo":[{},{},{}],"caption":"a cat""#,
            size("small", 90, 90, 1_000),
            size("big", 1280, 960, 90_000),
            size("medium", 320, 240, 9_000),
        );
        assert_eq!(
            content_of(&photo),
            Ok(Content::Photo {
                file: FileRef { file_id: "big".into(), file_unique_id: "ubig".into(), file_size: Some(90_000) },
                caption: Some("a cat".into()),
            })
        );
        let tie = format!(r#""photo":[{},{},{}]"#, size("a", 10, 10, 5), size("b", 10, 10, 7), size("c", 10, 10, 7));
        let Ok(Content::Photo { file, caption: None }) = content_of(&tie) else { panic!() };
        assert_eq!(file.file_id, "c");
        let no_size = r#""photo":[{"file_id":"x","file_unique_id":"ux","width":1,"height":1}]"#;
        let Ok(Content::Photo { file, .. }) = content_of(no_size) else { panic!() };
        assert_eq!(file.file_size, None);
    }

    #[test]
    fn documents_videos_stickers_voices_and_the_rest_are_read() {
        // Proves each content kind from Telegram's wire shape: a document with its name and type, a video with
        // its duration, a sticker, voice/audio/video notes as Voice, and a location as Other.
        let doc = r#""document":{"file_id":"d1","file_unique_id":"ud1","file_name":"a.png","mime_type":"image/png",
            "file_size":2048},"caption":"edit this""#;
        assert_eq!(
            content_of(doc),
            Ok(Content::Document {
                file: FileRef { file_id: "d1".into(), file_unique_id: "ud1".into(), file_size: Some(2048) },
                file_name: Some("a.png".into()),
                mime_type: Some("image/png".into()),
                caption: Some("edit this".into()),
            })
        );
        let video = r#""video":{"file_id":"v1","file_unique_id":"uv1","width":1280,"height":720,"duration":5,
            "mime_type":"video/mp4"}"#;
        assert_eq!(
            content_of(video),
            Ok(Content::Video {
                file: FileRef { file_id: "v1".into(), file_unique_id: "uv1".into(), file_size: None },
                duration: 5,
                mime_type: Some("video/mp4".into()),
                caption: None,
            })
        );
        assert_eq!(
            content_of(r#""sticker":{"file_id":"s","file_unique_id":"us","type":"regular"}"#),
            Ok(Content::Sticker)
        );
        for key in ["voice", "audio", "video_note"] {
            assert_eq!(content_of(&format!(r#""{key}":{{"file_id":"f","duration":3}}"#)), Ok(Content::Voice), "{key}");
        }
        assert_eq!(content_of(r#""location":{"latitude":55.75,"longitude":37.61}"#), Ok(Content::Other));
        assert_eq!(content_of(r#""date":1"#), Ok(Content::Other));
    }

    #[test]
    fn captions_and_texts_are_held_to_telegrams_limits() {
        // Proves 1024 characters of caption and 4096 of text are read (in multi-byte characters too), one more
        // is refused.
        let photo = r#""photo":[{"file_id":"p","file_unique_id":"up","width":1,"height":1}]"#;
        for (n, ok) in [(CAPTION_CHARS_MAX, true), (CAPTION_CHARS_MAX + 1, false)] {
            let caption = "я".repeat(n);
            let got = content_of(&format!(r#"{photo},"caption":"{caption}""#));
            assert_eq!(got.is_ok(), ok, "{n} characters of caption");
            let doc = format!(r#""document":{{"file_id":"d","file_unique_id":"ud"}},"caption":"{caption}""#);
            assert_eq!(content_of(&doc).is_ok(), ok, "{n} characters of document caption");
        }
        for (n, ok) in [(MESSAGE_TEXT_CHARS_MAX, true), (MESSAGE_TEXT_CHARS_MAX + 1, false)] {
            let got = content_of(&format!(r#""text":"{}""#, "я".repeat(n)));
            assert_eq!(got.is_ok(), ok, "{n} characters of text");
        }
    }

    #[test]
    fn button_presses_carry_the_full_sender() {
        // Proves a callback query with its sender, data and the message it came from; and one without a message.
        let c = br#"{"update_id":2,"callback_query":{"id":"9","from":{"id":7,"is_bot":false,"first_name":"A",
            "username":"a_user","language_code":"en"},"data":"d5","message":{"message_id":3,"chat":{"id":7}},
            "chat_instance":"x"}}"#;
        let from = Sender {
            id: UserId(7),
            is_bot: false,
            first_name: "A".into(),
            username: Some("a_user".into()),
            language_code: Some("en".into()),
        };
        assert_eq!(
            parse_update(c),
            Ok(Update::CallbackQuery {
                update_id: 2,
                id: "9".into(),
                from,
                data: Some("d5".into()),
                chat_id: Some(7),
                message_id: Some(3)
            })
        );
        let inline = br#"{"update_id":3,"callback_query":{"id":"10","from":{"id":8},"inline_message_id":"i"}}"#;
        assert_eq!(
            parse_update(inline),
            Ok(Update::CallbackQuery {
                update_id: 3,
                id: "10".into(),
                from: sender(8),
                data: None,
                chat_id: None,
                message_id: None
            })
        );
    }

    #[test]
    fn the_bot_blocked_and_unblocked_in_a_private_chat_is_a_member_status() {
        // Proves my_chat_member: kicked in a private chat is blocked, member is unblocked; another status or a
        // group's change is Other; and other kinds stay Other.
        let change = |chat_type: &str, status: &str| {
            format!(
                r#"{{"update_id":5,"my_chat_member":{{"chat":{{"id":7,"type":"{chat_type}"}},"from":{{"id":7}},"date":1,
                "old_chat_member":{{"status":"member","user":{{"id":1,"is_bot":true}}}},
                "new_chat_member":{{"status":"{status}","user":{{"id":1,"is_bot":true}}}}}}}}"#
            )
            .into_bytes()
        };
        assert_eq!(
            parse_update(&change("private", "kicked")),
            Ok(Update::MemberStatus { update_id: 5, from: UserId(7), blocked: true })
        );
        assert_eq!(
            parse_update(&change("private", "member")),
            Ok(Update::MemberStatus { update_id: 5, from: UserId(7), blocked: false })
        );
        let other = Ok(Update::Other { update_id: 5, kind: "my_chat_member".into() });
        assert_eq!(parse_update(&change("group", "kicked")), other);
        assert_eq!(parse_update(&change("private", "administrator")), other);
        for kind in ["edited_message", "channel_post", "edited_channel_post", "chat_member", "poll"] {
            let body = format!(r#"{{"update_id":6,"{kind}":{{"message_id":1}}}}"#);
            assert_eq!(parse_update(body.as_bytes()), Ok(Update::Other { update_id: 6, kind: kind.into() }));
            assert_eq!(parse_update(body.as_bytes()).map(|u| u.update_id()), Ok(6));
        }
    }

    /// Bodies of each kind that must each be read.
    const SAMPLES: &[&[u8]] = &[
        br#"{"update_id":1,"message":{"message_id":5,"from":{"id":7,"is_bot":false,"first_name":"A","username":"a","language_code":"ru"},"chat":{"id":7,"type":"private"},"text":"/start"}}"#,
        br#"{"update_id":2,"message":{"message_id":5,"from":{"id":7},"chat":{"id":7,"type":"private"},"photo":[{"file_id":"a","file_unique_id":"ua","width":90,"height":90,"file_size":1},{"file_id":"b","file_unique_id":"ub","width":900,"height":900}],"caption":"c"}}"#,
        br#"{"update_id":3,"message":{"message_id":5,"from":{"id":7},"chat":{"id":7,"type":"private"},"document":{"file_id":"d","file_unique_id":"ud","file_name":"a.png","mime_type":"image/png","file_size":3}}}"#,
        br#"{"update_id":4,"message":{"message_id":5,"from":{"id":7},"chat":{"id":7,"type":"private"},"video":{"file_id":"v","file_unique_id":"uv","width":1,"height":1,"duration":5,"mime_type":"video/mp4"}}}"#,
        br#"{"update_id":5,"callback_query":{"id":"q","from":{"id":7,"first_name":"A"},"data":"d5","message":{"message_id":3,"chat":{"id":7,"type":"private"}}}}"#,
        br#"{"update_id":6,"my_chat_member":{"chat":{"id":7,"type":"private"},"from":{"id":7},"new_chat_member":{"status":"kicked"}}}"#,
        br#"{"update_id":7,"pre_checkout_query":{"id":"q","from":{"id":1},"currency":"XTR","total_amount":1,"invoice_payload":"p"}}"#,
        br#"{"update_id":8,"message":{"message_id":1,"from":{"id":1},"chat":{"id":1,"type":"private"},"successful_payment":{"currency":"XTR","total_amount":1,"invoice_payload":"p","telegram_payment_charge_id":"c"}}}"#,
    ];

    #[test]
    fn the_samples_of_each_kind_are_read() {
        // Proves the bodies the mutation test starts from are valid updates, each of the kind it stands for.
        let kinds: Vec<_> = SAMPLES.iter().map(|b| parse_update(b).map(|u| std::mem::discriminant(&u))).collect();
        assert!(kinds.iter().all(Result::is_ok), "{kinds:?}");
    }

    /// Bodies that must each be refused.
    const MALFORMED: &[&[u8]] = &[
        b"",
        b"null",
        b"[]",
        b"{\"update_id\":1}",
        b"{\"update_id\":\"1\",\"message\":{}}",
        b"{\"update_id\":1.5,\"edited_message\":{}}",
        b"{\"update_id\":99999999999999999999,\"edited_message\":{}}",
        b"{\"update_id\":1,\"message\":{},\"callback_query\":{}}",
        b"{\"update_id\":1,\"message\":[]}",
        br#"{"update_id":1,"pre_checkout_query":{"id":"q","from":{"id":1},"currency":"XTR","total_amount":-1,"invoice_payload":"p"}}"#,
        br#"{"update_id":1,"pre_checkout_query":{"id":"q","from":{"id":1},"currency":"XTR","total_amount":4294967296,"invoice_payload":"p"}}"#,
        br#"{"update_id":1,"pre_checkout_query":{"id":"q","from":{"id":"1"},"currency":"XTR","total_amount":1,"invoice_payload":"p"}}"#,
        br#"{"update_id":1,"message":{"message_id":1,"chat":{"id":1},"successful_payment":{"currency":"XTR","total_amount":1,"invoice_payload":"p","telegram_payment_charge_id":"c"}}}"#,
        br#"{"update_id":1,"callback_query":{"id":"q","from":{"id":1},"data":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}}"#,
        // Messages: no chat, no chat type, an unknown chat type, a sender of the wrong shape.
        br#"{"update_id":1,"message":{"message_id":1,"text":"x"}}"#,
        br#"{"update_id":1,"message":{"message_id":1,"chat":{"id":1},"text":"x"}}"#,
        br#"{"update_id":1,"message":{"message_id":1,"chat":{"id":1,"type":"forum"},"text":"x"}}"#,
        br#"{"update_id":1,"message":{"message_id":1,"chat":{"id":1,"type":7},"text":"x"}}"#,
        br#"{"update_id":1,"message":{"message_id":1,"chat":{"id":1,"type":"private"},"from":7,"text":"x"}}"#,
        br#"{"update_id":1,"message":{"message_id":1,"chat":{"id":1,"type":"private"},"from":{"id":1,"is_bot":"no"},"text":"x"}}"#,
        br#"{"update_id":1,"message":{"message_id":1,"chat":{"id":1,"type":"private"},"from":{"id":1,"first_name":5},"text":"x"}}"#,
        br#"{"update_id":1,"message":{"message_id":1,"chat":{"id":1,"type":"private"},"text":5}}"#,
        // Photos: not an array, empty, a size without an id, a negative width, a fractional height, a size as a
        // string, a caption of the wrong type.
        br#"{"update_id":1,"message":{"message_id":1,"chat":{"id":1,"type":"private"},"photo":{}}}"#,
        br#"{"update_id":1,"message":{"message_id":1,"chat":{"id":1,"type":"private"},"photo":[]}}"#,
        br#"{"update_id":1,"message":{"message_id":1,"chat":{"id":1,"type":"private"},"photo":[{"file_unique_id":"u","width":1,"height":1}]}}"#,
        br#"{"update_id":1,"message":{"message_id":1,"chat":{"id":1,"type":"private"},"photo":[{"file_id":"","file_unique_id":"u","width":1,"height":1}]}}"#,
        br#"{"update_id":1,"message":{"message_id":1,"chat":{"id":1,"type":"private"},"photo":[{"file_id":"f","file_unique_id":"u","width":-1,"height":1}]}}"#,
        br#"{"update_id":1,"message":{"message_id":1,"chat":{"id":1,"type":"private"},"photo":[{"file_id":"f","file_unique_id":"u","width":1,"height":1.5}]}}"#,
        br#"{"update_id":1,"message":{"message_id":1,"chat":{"id":1,"type":"private"},"photo":["f"]}}"#,
        br#"{"update_id":1,"message":{"message_id":1,"chat":{"id":1,"type":"private"},"photo":[{"file_id":"f","file_unique_id":"u","width":1,"height":1}],"caption":[]}}"#,
        br#"{"update_id":1,"message":{"message_id":1,"chat":{"id":1,"type":"private"},"photo":[{"file_id":"f","file_unique_id":"u","width":1,"height":1,"file_size":-5}]}}"#,
        // Documents and videos: not objects, no ids, a video without a duration or with a huge one.
        br#"{"update_id":1,"message":{"message_id":1,"chat":{"id":1,"type":"private"},"document":"d"}}"#,
        br#"{"update_id":1,"message":{"message_id":1,"chat":{"id":1,"type":"private"},"document":{"file_name":"a.png"}}}"#,
        br#"{"update_id":1,"message":{"message_id":1,"chat":{"id":1,"type":"private"},"document":{"file_id":"d","file_unique_id":"u","mime_type":1}}}"#,
        br#"{"update_id":1,"message":{"message_id":1,"chat":{"id":1,"type":"private"},"video":{"file_id":"v","file_unique_id":"u"}}}"#,
        br#"{"update_id":1,"message":{"message_id":1,"chat":{"id":1,"type":"private"},"video":{"file_id":"v","file_unique_id":"u","duration":4294967296}}}"#,
        br#"{"update_id":1,"message":{"message_id":1,"chat":{"id":1,"type":"private"},"sticker":"s"}}"#,
        br#"{"update_id":1,"message":{"message_id":1,"chat":{"id":1,"type":"private"},"voice":[]}}"#,
        // Button presses: no sender, a sender without an id, data of the wrong type.
        br#"{"update_id":1,"callback_query":{"id":"q","data":"d"}}"#,
        br#"{"update_id":1,"callback_query":{"id":"q","from":{"first_name":"A"}}}"#,
        br#"{"update_id":1,"callback_query":{"id":"q","from":{"id":1},"data":5}}"#,
        // my_chat_member: not an object, no chat, no new status, no sender.
        br#"{"update_id":1,"my_chat_member":[]}"#,
        br#"{"update_id":1,"my_chat_member":{}}"#,
        br#"{"update_id":1,"my_chat_member":{"chat":{"id":1,"type":"private"},"from":{"id":1}}}"#,
        br#"{"update_id":1,"my_chat_member":{"chat":{"id":1,"type":"private"},"from":{"id":1},"new_chat_member":{"status":1}}}"#,
        br#"{"update_id":1,"my_chat_member":{"chat":{"id":1,"type":"private"},"new_chat_member":{"status":"kicked"}}}"#,
    ];

    #[test]
    fn malformed_updates_are_refused_without_panicking() {
        // Proves strictness: wrong types, huge or fractional numbers, two payloads, overlong fields, deep nesting,
        // and each new kind's broken shapes.
        for body in MALFORMED {
            assert!(parse_update(body).is_err(), "{}", String::from_utf8_lossy(body));
        }
        let deep = format!("{{\"update_id\":1,\"x\":{}{}}}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(parse_update(deep.as_bytes()).is_err());
        assert_eq!(parse_update(&vec![b' '; UPDATE_BYTES_MAX + 1]), Err(UpdateError::TooLarge));
        let long = format!(
            "{{\"update_id\":1,\"message\":{{\"message_id\":1,\"chat\":{{\"id\":1,\"type\":\"private\"}},\"text\":\"{}\"}}}}",
            "я".repeat(MESSAGE_TEXT_CHARS_MAX + 1)
        );
        assert!(parse_update(long.as_bytes()).is_err());
        let sizes = vec![r#"{"file_id":"f","file_unique_id":"u","width":1,"height":1}"#; PHOTO_SIZES_MAX + 1];
        let many = message_with(&format!(r#""photo":[{}]"#, sizes.join(",")));
        assert!(parse_update(&many).is_err(), "too many photo sizes");
    }

    mod never_panics {
        use proptest::prelude::*;
        use serde_json::{Map, Value};

        use super::super::parse_update;

        /// Field names the reader looks at, so that random objects reach deep into it.
        const KEYS: &[&str] = &[
            "update_id",
            "message",
            "callback_query",
            "my_chat_member",
            "pre_checkout_query",
            "chat",
            "id",
            "type",
            "from",
            "is_bot",
            "first_name",
            "username",
            "language_code",
            "text",
            "caption",
            "photo",
            "file_id",
            "file_unique_id",
            "file_size",
            "width",
            "height",
            "document",
            "video",
            "duration",
            "mime_type",
            "file_name",
            "sticker",
            "voice",
            "audio",
            "video_note",
            "data",
            "message_id",
            "new_chat_member",
            "status",
            "successful_payment",
            "currency",
            "total_amount",
            "invoice_payload",
            "telegram_payment_charge_id",
            "private",
            "kicked",
        ];

        fn json() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<i64>().prop_map(Value::from),
                any::<u64>().prop_map(Value::from),
                (-1e20f64..1e20).prop_map(Value::from),
                prop::sample::select(KEYS).prop_map(Value::from),
                "\\PC{0,8}".prop_map(Value::from),
            ];
            leaf.prop_recursive(5, 64, 6, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                    prop::collection::vec((prop::sample::select(KEYS), inner), 0..6).prop_map(|fields| {
                        Value::Object(fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect::<Map<_, _>>())
                    }),
                ]
            })
        }

        proptest! {
            #[test]
            fn random_json_shaped_like_updates_never_panics(
                id in any::<i64>(),
                kind in prop::sample::select(KEYS),
                payload in json(),
            ) {
                // Proves the reader returns (an update or an error) for any JSON with the fields it reads, at any
                // depth and of any type.
                let mut update = Map::new();
                update.insert("update_id".into(), Value::from(id));
                update.insert(kind.to_owned(), payload);
                let _ = parse_update(Value::Object(update).to_string().as_bytes());
            }

            #[test]
            fn cut_and_flipped_bytes_never_panic(
                which in 0..super::SAMPLES.len() + super::MALFORMED.len(),
                cut in any::<prop::sample::Index>(),
                flip in any::<prop::sample::Index>(),
                byte in any::<u8>(),
            ) {
                // Proves a body cut short or with one byte changed, including in its UTF-8, is only refused or read.
                let all: Vec<&[u8]> = super::SAMPLES.iter().chain(super::MALFORMED).copied().collect();
                let mut body = all[which].to_vec();
                if !body.is_empty() {
                    let at = flip.index(body.len());
                    body[at] = byte;
                    body.truncate(cut.index(body.len()) + 1);
                }
                let _ = parse_update(&body);
            }
        }
    }
}
