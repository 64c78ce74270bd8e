//! What webhooks deliver from outside: Telegram `Update`s and YooKassa notices. Neither parser may panic, and
//! what they accept stays within their documented bounds; a Stars payload that parses prints back the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rei_adapters::telegram::{self, Content, Update};
use rei_adapters::yookassa;
use rei_core::stars::StarsPayload;

fuzz_target!(|data: &[u8]| {
    if let Ok(update) = telegram::parse_update(data) {
        match &update {
            Update::PreCheckout { query, .. } => {
                assert!(query.invoice_payload.len() <= 128);
                if let Ok(payload) = StarsPayload::parse(&query.invoice_payload) {
                    assert_eq!(payload.to_string(), query.invoice_payload, "payload round trip");
                }
            }
            Update::SuccessfulPayment { payment, .. } => {
                assert!(payment.telegram_payment_charge_id.len() <= telegram::TEXT_BYTES_MAX);
                let _ = rei_core::stars::payment_id(&payment.telegram_payment_charge_id);
            }
            Update::Message { content, .. } => match content {
                Content::Text(t) => assert!(t.chars().count() <= telegram::MESSAGE_TEXT_CHARS_MAX),
                Content::Photo { file, caption }
                | Content::Document { file, caption, .. }
                | Content::Video { file, caption, .. } => {
                    assert!(!file.file_id.is_empty() && file.file_id.len() <= telegram::TEXT_BYTES_MAX);
                    assert!(caption.as_ref().is_none_or(|c| c.chars().count() <= telegram::CAPTION_CHARS_MAX));
                }
                Content::Sticker | Content::Voice | Content::Other => {}
            },
            Update::CallbackQuery { data, .. } => assert!(data.as_ref().is_none_or(|d| d.len() <= 64)),
            Update::MemberStatus { .. } => {}
            Update::Other { kind, .. } => assert!(kind.chars().count() <= 64),
        }
        let _ = update.update_id();
    }
    if let Ok(notice) = yookassa::parse_notice(data) {
        assert!(!notice.object_id.is_empty() && notice.object_id.len() <= 64);
    }
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(payload) = StarsPayload::parse(text)
    {
        assert_eq!(payload.to_string(), text, "payload round trip");
    }
});
