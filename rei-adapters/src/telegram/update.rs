//! [`parse_update`]: the webhook's (and a poller's) reader of one Bot API `Update`.
//!
//! Strict and bounded: a body of at most [`UPDATE_BYTES_MAX`] bytes, one JSON object with an integer
//! `update_id` and exactly one payload field (as Telegram documents), every field this reader takes of the
//! expected JSON type and within Telegram's own limits, and every other field ignored. It never panics: serde's
//! recursion limit bounds nesting, numbers that are not integers in range are refused, and nothing is indexed
//! without a check. This is the seed of the full bot adapter: each update kind the bot learns to act on becomes
//! a variant here, the rest stay [`Update::Other`].

use rei_core::ids::UserId;
use rei_core::stars::{PreCheckout, SuccessfulPayment};
use serde_json::{Map, Value};

/// The most bytes of an update read.
pub const UPDATE_BYTES_MAX: usize = 1024 * 1024;
/// The longest message text Telegram sends, in characters.
pub const MESSAGE_TEXT_CHARS_MAX: usize = 4096;
/// The longest of the other strings read (ids, currencies, payloads), in bytes.
pub const TEXT_BYTES_MAX: usize = 256;
/// The longest `callback_query.data` Telegram sends, in bytes.
const CALLBACK_DATA_BYTES_MAX: usize = 64;
/// The longest `invoice_payload` Telegram sends, in bytes.
const INVOICE_PAYLOAD_BYTES_MAX: usize = 128;
/// The longest currency code kept.
const CURRENCY_BYTES_MAX: usize = 16;
/// The longest update kind kept in [`Update::Other`].
const KIND_CHARS_MAX: usize = 64;

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
        from: Option<UserId>,
        /// The chat.
        chat_id: i64,
        /// Its text, at most [`MESSAGE_TEXT_CHARS_MAX`] characters.
        text: Option<String>,
    },
    /// `callback_query`: an inline keyboard button was pressed.
    CallbackQuery {
        /// The update's id.
        update_id: i64,
        /// The query's id, to answer it by.
        id: String,
        /// Who pressed.
        from: UserId,
        /// The button's data, at most 64 bytes.
        data: Option<String>,
        /// The chat of the message with the button, when Telegram sends it.
        chat_id: Option<i64>,
        /// The message with the button, when Telegram sends it.
        message_id: Option<i64>,
    },
    /// An update kind REI does not act on (yet): acknowledge it.
    Other {
        /// The update's id.
        update_id: i64,
        /// Its payload field's name (`edited_message`, `my_chat_member`, …), at most 64 characters.
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
        other => Ok(Update::Other { update_id, kind: other.chars().take(KIND_CHARS_MAX).collect() }),
    }
}

fn object<'a>(value: &'a Value, what: &str) -> Result<&'a Map<String, Value>, UpdateError> {
    value.as_object().ok_or_else(|| shape(format!("{what} is not an object")))
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

/// A required string of at most `max` bytes.
fn string(map: &Map<String, Value>, key: &str, what: &str, max: usize) -> Result<String, UpdateError> {
    opt_string(map, key, what, max)?.ok_or_else(|| shape(format!("{what}.{key} is missing")))
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

/// `from.id` of a payload.
fn user(map: &Map<String, Value>, what: &str) -> Result<UserId, UpdateError> {
    let from = map.get("from").ok_or_else(|| shape(format!("{what}.from is missing")))?;
    Ok(UserId(int(object(from, "from")?, "id", "from")?))
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
    let chat_id = int(object(m.get("chat").unwrap_or(&Value::Null), "message.chat")?, "id", "message.chat")?;
    let from = match m.get("from") {
        None | Some(Value::Null) => None,
        Some(_) => Some(user(m, what)?),
    };
    if let Some(paid) = m.get("successful_payment") {
        let p = object(paid, "successful_payment")?;
        let what = "successful_payment";
        let from = from.ok_or_else(|| shape("a successful payment without a sender"))?;
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
    let text = opt_string(m, "text", what, MESSAGE_TEXT_CHARS_MAX * 4)?;
    if text.as_ref().is_some_and(|t| t.chars().count() > MESSAGE_TEXT_CHARS_MAX) {
        return Err(shape(format!("message.text is over {MESSAGE_TEXT_CHARS_MAX} characters")));
    }
    Ok(Update::Message { update_id, message_id, from, chat_id, text })
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
    Ok(Update::CallbackQuery {
        update_id,
        id: string(q, "id", what, TEXT_BYTES_MAX)?,
        from: user(q, what)?,
        data: opt_string(q, "data", what, CALLBACK_DATA_BYTES_MAX)?,
        chat_id,
        message_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn messages_callbacks_and_other_kinds_are_read_minimally() {
        // Proves the other kinds: a text message, a button press, and anything else as Other.
        let m = br#"{"update_id":1,"message":{"message_id":5,"from":{"id":7},"chat":{"id":-100},"text":"/start"}}"#;
        assert_eq!(
            parse_update(m),
            Ok(Update::Message {
                update_id: 1,
                message_id: 5,
                from: Some(UserId(7)),
                chat_id: -100,
                text: Some("/start".into())
            })
        );
        let c = br#"{"update_id":2,"callback_query":{"id":"9","from":{"id":7},"data":"d5",
            "message":{"message_id":3,"chat":{"id":7}},"chat_instance":"x"}}"#;
        assert_eq!(
            parse_update(c),
            Ok(Update::CallbackQuery {
                update_id: 2,
                id: "9".into(),
                from: UserId(7),
                data: Some("d5".into()),
                chat_id: Some(7),
                message_id: Some(3)
            })
        );
        let o = br#"{"update_id":3,"my_chat_member":{}}"#;
        assert_eq!(parse_update(o), Ok(Update::Other { update_id: 3, kind: "my_chat_member".into() }));
        assert_eq!(parse_update(o).map(|u| u.update_id()), Ok(3));
    }

    #[test]
    fn malformed_updates_are_refused_without_panicking() {
        // Proves strictness: wrong types, huge or fractional numbers, two payloads, overlong fields, deep nesting.
        let bad: &[&[u8]] = &[
            b"",
            b"null",
            b"[]",
            b"{\"update_id\":1}",
            b"{\"update_id\":\"1\",\"message\":{}}",
            b"{\"update_id\":1.5,\"my_chat_member\":{}}",
            b"{\"update_id\":99999999999999999999,\"my_chat_member\":{}}",
            b"{\"update_id\":1,\"message\":{},\"callback_query\":{}}",
            b"{\"update_id\":1,\"message\":[]}",
            br#"{"update_id":1,"pre_checkout_query":{"id":"q","from":{"id":1},"currency":"XTR","total_amount":-1,"invoice_payload":"p"}}"#,
            br#"{"update_id":1,"pre_checkout_query":{"id":"q","from":{"id":1},"currency":"XTR","total_amount":4294967296,"invoice_payload":"p"}}"#,
            br#"{"update_id":1,"pre_checkout_query":{"id":"q","from":{"id":"1"},"currency":"XTR","total_amount":1,"invoice_payload":"p"}}"#,
            br#"{"update_id":1,"message":{"message_id":1,"chat":{"id":1},"successful_payment":{"currency":"XTR","total_amount":1,"invoice_payload":"p","telegram_payment_charge_id":"c"}}}"#,
            br#"{"update_id":1,"callback_query":{"id":"q","from":{"id":1},"data":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}}"#,
        ];
        for body in bad {
            assert!(parse_update(body).is_err(), "{}", String::from_utf8_lossy(body));
        }
        let deep = format!("{{\"update_id\":1,\"x\":{}{}}}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(parse_update(deep.as_bytes()).is_err());
        assert_eq!(parse_update(&vec![b' '; UPDATE_BYTES_MAX + 1]), Err(UpdateError::TooLarge));
        let long = format!(
            "{{\"update_id\":1,\"message\":{{\"message_id\":1,\"chat\":{{\"id\":1}},\"text\":\"{}\"}}}}",
            "я".repeat(MESSAGE_TEXT_CHARS_MAX + 1)
        );
        assert!(parse_update(long.as_bytes()).is_err());
    }
}
