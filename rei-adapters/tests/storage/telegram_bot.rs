//! The bot's Bot API methods against the fake Bot API: messages with keyboards and their edits, photos,
//! documents and videos by file_id and uploaded as multipart, file downloads within a limit, long polling, the
//! webhook, blocked users, 429s, and the token kept out of every error. Also every update builder read back by
//! the parser. Local only.

use std::time::{Duration, Instant};

use rei_adapters::fakes::telegram::{FakeTelegram, TelegramOutcome, updates};
use rei_adapters::telegram::{
    BotApi, BotApiError, BotIdentity, Button, ChatKind, Content, FILE_UPLOAD_BYTES_MAX, Keyboard, Media,
    PHOTO_UPLOAD_BYTES_MAX, Pacing, Update, parse_update,
};
use rei_core::guards::RateLimitPolicy;
use rei_core::ids::UserId;
use serde_json::json;

const TOKEN: &str = "7012345678:AAFake-Bot_Token";
const SECRET_PART: &str = "AAFake-Bot_Token";
const CHAT: i64 = 42;

/// Pacing loose enough that a test's sends to one chat go at once (the pacing has its own tests).
fn loose() -> Pacing {
    let policy = RateLimitPolicy::new(1_000, Duration::from_secs(1), 1_000).expect("policy");
    Pacing { per_chat: policy, global: policy }
}

async fn rig() -> (FakeTelegram, BotApi) {
    let fake = FakeTelegram::start(TOKEN).await.expect("fake");
    let api = BotApi::new(&fake.base_url(), TOKEN).expect("adapter").with_pacing(loose());
    (fake, api)
}

fn keyboard() -> Keyboard {
    Keyboard::new(vec![
        vec![Button::callback("5 сек", "gen:kling:5s"), Button::callback("10 сек", "gen:kling:10s")],
        vec![Button::url("Оплатить", "https://t.me/$invoice")],
    ])
}

/// Bytes that are not all alike, so that a reordered or truncated transfer shows.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| u8::try_from((i * 7 + i / 251) % 256).unwrap_or(0)).collect()
}

fn api_error(code: u16, contains: &str) -> impl Fn(&BotApiError) -> bool + '_ {
    move |e| matches!(e, BotApiError::Api { code: c, description, .. } if *c == code && description.contains(contains))
}

#[tokio::test]
async fn a_message_with_a_keyboard_is_sent_edited_and_deleted() {
    // Proves sendMessage, editMessageText, editMessageReplyMarkup, deleteMessage and answerCallbackQuery round
    // trip: the wire parameters, the message as the fake keeps it after each edit, an unchanged edit being Ok,
    // and an edit of a deleted message refused.
    let (fake, api) = rig().await;
    let sent = api.send_message(CHAT, "Выберите длину видео", Some(&keyboard())).await.expect("sendMessage");
    let call = fake.calls_of("sendMessage").pop().expect("recorded");
    assert_eq!(call.params["chat_id"], CHAT);
    assert_eq!(call.params["text"], "Выберите длину видео");
    assert!(call.params.get("parse_mode").is_none(), "texts are plain");
    assert_eq!(call.params["reply_markup"], keyboard().reply_markup());
    assert_eq!(call.params["reply_markup"]["inline_keyboard"][0][1]["callback_data"], "gen:kling:10s");
    let kept = fake.sent_to(CHAT);
    assert_eq!(kept.len(), 1);
    assert_eq!((kept[0].message_id, kept[0].method.as_str()), (sent.message_id, "sendMessage"));
    assert_eq!(kept[0].reply_markup, Some(keyboard().reply_markup()));

    api.edit_message_text(CHAT, sent.message_id, "Готовим видео…", None).await.expect("edit");
    api.edit_message_text(CHAT, sent.message_id, "Готовим видео…", None).await.expect("not modified is Ok");
    let edits = fake.calls_of("editMessageText");
    assert_eq!(edits.len(), 2, "the second edit reached Telegram and was answered 400 not modified");
    let kept = &fake.sent_to(CHAT)[0];
    assert_eq!(kept.text.as_deref(), Some("Выберите длину видео"));
    assert_eq!(kept.current_text.as_deref(), Some("Готовим видео…"));
    assert_eq!((kept.reply_markup.as_ref(), kept.edits), (None, 1), "an edit without a keyboard removes it");

    let again = Keyboard::new(vec![vec![Button::callback("Повторить", "again")]]);
    api.edit_message_reply_markup(CHAT, sent.message_id, Some(&again)).await.expect("markup");
    assert_eq!(fake.sent_to(CHAT)[0].reply_markup, Some(again.reply_markup()));
    api.answer_callback_query("4382", Some("Списано 50 ₽"), true).await.expect("answer");
    let answer = fake.calls_of("answerCallbackQuery").pop().expect("recorded");
    assert_eq!(answer.params, json!({"callback_query_id": "4382", "text": "Списано 50 ₽", "show_alert": true}));
    api.answer_callback_query("4383", None, false).await.expect("a bare answer");

    api.delete_message(CHAT, sent.message_id).await.expect("delete");
    assert!(fake.sent_to(CHAT)[0].deleted);
    let e = api.edit_message_text(CHAT, sent.message_id, "x", None).await.expect_err("gone");
    assert!(api_error(400, "message to edit not found")(&e), "{e:?}");
    let e = api.delete_message(CHAT, sent.message_id).await.expect_err("gone");
    assert!(api_error(400, "message to delete not found")(&e), "{e:?}");
}

#[tokio::test]
async fn uploads_go_as_multipart_and_arrive_byte_for_byte() {
    // Proves sendPhoto, sendDocument and sendVideo with an upload: multipart text fields and one file part with
    // its name and type, the bytes the fake stored equal to those sent, the keyboard as reply_markup JSON.
    let (fake, api) = rig().await;
    let png = pattern(300_001);
    let photo = Media::Upload { bytes: png.clone(), file_name: "result.png".into(), mime: "image/png".into() };
    let sent = api.send_photo(CHAT, &photo, Some("Готово"), Some(&keyboard())).await.expect("sendPhoto");
    let call = fake.calls_of("sendPhoto").pop().expect("recorded");
    assert_eq!(call.params["chat_id"], CHAT.to_string(), "multipart text fields are strings");
    assert_eq!(call.params["caption"], "Готово");
    assert_eq!(call.params["photo"], json!({"upload": "result.png", "bytes": 300_001, "mime": "image/png"}));
    let markup: serde_json::Value =
        serde_json::from_str(call.params["reply_markup"].as_str().expect("a JSON text")).expect("JSON");
    assert_eq!(markup, keyboard().reply_markup());
    let kept = fake.sent_to(CHAT).pop().expect("kept");
    assert_eq!(
        (kept.message_id, kept.method.as_str(), kept.text.as_deref()),
        (sent.message_id, "sendPhoto", Some("Готово"))
    );
    let file_id = kept.file_id.expect("a file");
    assert_eq!(fake.file(&file_id), Some((png, "image/png".to_owned())), "the bytes arrived intact");

    let mp4 = pattern(2 * 1024 * 1024 + 3);
    let video = Media::Upload { bytes: mp4.clone(), file_name: "clip.mp4".into(), mime: "video/mp4".into() };
    api.send_video(CHAT, &video, None).await.expect("sendVideo");
    let file_id = fake.sent_to(CHAT).pop().and_then(|m| m.file_id).expect("a file");
    assert_eq!(fake.file(&file_id).map(|(b, _)| b), Some(mp4));
    let call = fake.calls_of("sendVideo").pop().expect("recorded");
    assert!(call.params.get("caption").is_none());

    let pdf = Media::Upload { bytes: b"%PDF-1.7".to_vec(), file_name: "a.pdf".into(), mime: "application/pdf".into() };
    api.send_document(CHAT, &pdf, Some("счёт")).await.expect("sendDocument");
    let doc = fake.calls_of("sendDocument").pop().expect("recorded");
    assert_eq!(doc.params["document"]["upload"], "a.pdf");
}

#[tokio::test]
async fn files_the_fake_holds_are_sent_again_by_file_id_as_json() {
    // Proves the file_id form: JSON parameters naming the file, the fake's message carrying that same file, and
    // an unknown file_id refused as Telegram refuses it.
    let (fake, api) = rig().await;
    let (file_id, _) = fake.add_file(pattern(1_000), "image/jpeg");
    api.send_photo(CHAT, &Media::FileId(file_id.clone()), None, None).await.expect("sendPhoto");
    let call = fake.calls_of("sendPhoto").pop().expect("recorded");
    assert_eq!(call.params, json!({"chat_id": CHAT, "photo": file_id}));
    assert_eq!(fake.sent_to(CHAT).pop().and_then(|m| m.file_id), Some(file_id.clone()));
    api.send_document(CHAT, &Media::FileId(file_id.clone()), Some("исходник")).await.expect("sendDocument");
    api.send_video(CHAT, &Media::FileId(file_id), None).await.expect("sendVideo");
    let e = api.send_photo(CHAT, &Media::FileId("nope".into()), None, None).await.expect_err("unknown");
    assert!(api_error(400, "wrong file identifier")(&e), "{e:?}");
}

#[tokio::test]
async fn what_breaks_telegrams_limits_is_refused_before_sending() {
    // Proves the client-side checks: an upload over 10 MB (photo) or 50 MB (others), an empty one, a text over
    // 4096 characters or empty, a caption over 1024, callback data over 64 bytes, a callback answer over 200
    // characters; none reaches Telegram. A photo of exactly 10 MB goes.
    let (fake, api) = rig().await;
    let upload =
        |len: usize, mime: &str| Media::Upload { bytes: vec![1; len], file_name: "f".into(), mime: mime.into() };
    let photo_max = usize::try_from(PHOTO_UPLOAD_BYTES_MAX).expect("fits");
    let file_max = usize::try_from(FILE_UPLOAD_BYTES_MAX).expect("fits");
    let e = api.send_photo(CHAT, &upload(photo_max + 1, "image/png"), None, None).await.expect_err("10 MB");
    assert_eq!(e, BotApiError::TooLarge { limit: PHOTO_UPLOAD_BYTES_MAX });
    let e = api.send_document(CHAT, &upload(file_max + 1, "application/zip"), None).await.expect_err("50 MB");
    assert_eq!(e, BotApiError::TooLarge { limit: FILE_UPLOAD_BYTES_MAX });
    let e = api.send_video(CHAT, &upload(file_max + 1, "video/mp4"), None).await.expect_err("50 MB");
    assert_eq!(e, BotApiError::TooLarge { limit: FILE_UPLOAD_BYTES_MAX });
    fn invalid<T>(r: Result<T, BotApiError>) -> bool {
        matches!(r, Err(BotApiError::Invalid { .. }))
    }
    assert!(invalid(api.send_photo(CHAT, &upload(0, "image/png"), None, None).await));
    assert!(invalid(api.send_photo(CHAT, &upload(1, "not a mime"), None, None).await));
    assert!(invalid(api.send_message(CHAT, "", None).await));
    assert!(invalid(api.send_message(CHAT, &"я".repeat(4097), None).await));
    assert!(invalid(api.edit_message_text(CHAT, 1, &"я".repeat(4097), None).await));
    let caption = "я".repeat(1025);
    assert!(invalid(api.send_photo(CHAT, &Media::FileId("f".into()), Some(&caption), None).await));
    let long_data = Keyboard::new(vec![vec![Button::callback("b", "x".repeat(65))]]);
    assert!(invalid(api.send_message(CHAT, "hi", Some(&long_data)).await));
    assert!(invalid(api.answer_callback_query("q", Some(&"я".repeat(201)), false).await));
    assert!(fake.calls().is_empty(), "nothing was sent: {:?}", fake.calls().first().map(|c| c.method.clone()));
    api.send_photo(CHAT, &upload(photo_max, "image/png"), None, None).await.expect("exactly 10 MB goes");
    assert_eq!(api.send_message(CHAT, &"я".repeat(4096), None).await.map(|_| ()), Ok(()));
}

#[tokio::test]
async fn the_fake_refuses_what_telegram_refuses() {
    // Proves the fake's own checks, through raw calls: no chat_id, empty and over-long texts and captions,
    // callback data over 64 bytes, malformed keyboards, editing a message that is not there or not changing it.
    let (_fake, api) = rig().await;
    let refused = [
        ("sendMessage", json!({"text": "hi"}), "chat_id is empty"),
        ("sendMessage", json!({"chat_id": CHAT, "text": ""}), "message text is empty"),
        ("sendMessage", json!({"chat_id": CHAT, "text": "я".repeat(4097)}), "message is too long"),
        ("sendPhoto", json!({"chat_id": CHAT}), "there is no photo in the request"),
        ("sendPhoto", json!({"photo": "x"}), "chat_id is empty"),
        (
            "sendMessage",
            json!({"chat_id": CHAT, "text": "hi", "reply_markup": {"inline_keyboard": [[{"text": "b", "callback_data": "x".repeat(65)}]]}}),
            "BUTTON_DATA_INVALID",
        ),
        ("sendMessage", json!({"chat_id": CHAT, "text": "hi", "reply_markup": {"inline_keyboard": {}}}), "keyboard"),
        (
            "sendMessage",
            json!({"chat_id": CHAT, "text": "hi", "reply_markup": {"inline_keyboard": [{}]}}),
            "Array of Arrays",
        ),
        (
            "sendMessage",
            json!({"chat_id": CHAT, "text": "hi", "reply_markup": {"inline_keyboard": [[{"text": "b"}]]}}),
            "Text buttons",
        ),
        ("sendMessage", json!({"chat_id": CHAT, "text": "hi", "reply_markup": "{not json"}), "can't parse"),
        ("editMessageText", json!({"chat_id": CHAT, "message_id": 999, "text": "x"}), "message to edit not found"),
        ("editMessageText", json!({"chat_id": CHAT, "text": "x"}), "message identifier is not specified"),
        ("editMessageReplyMarkup", json!({"chat_id": CHAT, "message_id": 999}), "message to edit not found"),
        ("answerCallbackQuery", json!({"text": "x"}), "QUERY_ID_INVALID"),
        ("getFile", json!({"file_id": "nope"}), "invalid file_id"),
    ];
    for (method, params, description) in refused {
        let e = api.call(method, &params).await.expect_err(method);
        assert!(api_error(400, description)(&e), "{method} {params}: {e:?}");
    }
    let caption = json!({"chat_id": CHAT, "photo": "https://example.invalid/a.png", "caption": "я".repeat(1025)});
    let e = api.call("sendPhoto", &caption).await.expect_err("caption");
    assert!(api_error(400, "message caption is too long")(&e), "{e:?}");
    let sent = api.call("sendMessage", &json!({"chat_id": CHAT, "text": "same"})).await.expect("sent");
    let same = json!({"chat_id": CHAT, "message_id": sent["message_id"], "text": "same"});
    let e = api.call("editMessageText", &same).await.expect_err("unchanged");
    assert!(api_error(400, "message is not modified")(&e), "{e:?}");
    let photo = api.send_photo(CHAT, &Media::FileId("https://example.invalid/a.png".into()), None, None).await;
    let photo = photo.expect("a URL is taken");
    let e = api.call("editMessageText", &json!({"chat_id": CHAT, "message_id": photo.message_id, "text": "x"})).await;
    assert!(e.as_ref().is_err_and(api_error(400, "there is no text in the message to edit")), "{e:?}");
}

#[tokio::test]
async fn a_file_is_found_and_downloaded_within_the_callers_limit() {
    // Proves getFile then the download: the bytes come back intact; a file over the limit is refused by its
    // Content-Length and, served in chunks without one, while it streams; an unknown path is a 404.
    let (fake, api) = rig().await;
    let bytes = pattern(100_000);
    let (file_id, _) = fake.add_file(bytes.clone(), "image/png");
    let info = api.get_file(&file_id).await.expect("getFile");
    assert_eq!((info.file_id.as_str(), info.file_size), (file_id.as_str(), Some(100_000)));
    let path = info.file_path.expect("a path");
    assert!(path.starts_with("photos/") && path.ends_with(".png"), "{path}");
    assert_eq!(api.download_file(&path, 100_000).await.as_ref(), Ok(&bytes));
    assert_eq!(api.download_file(&path, 99_999).await, Err(BotApiError::TooLarge { limit: 99_999 }));
    fake.serve_files_chunked(true);
    assert_eq!(api.download_file(&path, 99_999).await, Err(BotApiError::TooLarge { limit: 99_999 }));
    assert_eq!(api.download_file(&path, 1_000_000).await.as_ref(), Ok(&bytes), "chunked, within the limit");
    assert_eq!(fake.downloads().len(), 4);
    let e = api.download_file("photos/file_999.png", 1_000).await.expect_err("404");
    assert!(api_error(404, "Not Found")(&e), "{e:?}");
    let e = api.download_file("../bot1/getMe", 1_000).await.expect_err("not a path");
    assert!(matches!(e, BotApiError::Invalid { .. }), "{e:?}");
    let e = api.get_file("nope").await.expect_err("unknown");
    assert!(api_error(400, "invalid file_id")(&e), "{e:?}");
}

#[tokio::test]
async fn a_long_poll_returns_pushed_updates_and_honours_the_offset() {
    // Proves getUpdates: queued updates come back as bytes the parser reads, with their ids; an offset past
    // them confirms them; a poll waiting on an empty queue returns as soon as an update is pushed, past the
    // client's own 1 s bound; a poll with nothing to return ends empty after its timeout; a newer poll ends an
    // older one with 409.
    let fake = FakeTelegram::start(TOKEN).await.expect("fake");
    let api = BotApi::with_timeout(&fake.base_url(), TOKEN, Duration::from_secs(1)).expect("adapter");
    fake.push_update(updates::text_message(10, 7, "/start"));
    fake.push_update(updates::callback_query(11, "q1", &updates::TestUser::new(7), "d5", 7, 3));
    let got = api.get_updates(0, Duration::ZERO, 100).await.expect("poll");
    assert_eq!(got.iter().map(|(id, _)| *id).collect::<Vec<_>>(), vec![10, 11]);
    assert!(matches!(parse_update(&got[0].1), Ok(Update::Message { update_id: 10, .. })));
    assert!(matches!(parse_update(&got[1].1), Ok(Update::CallbackQuery { update_id: 11, .. })));
    let one = api.get_updates(0, Duration::ZERO, 1).await.expect("limit");
    assert_eq!(one.len(), 1, "limit honoured; nothing confirmed yet");
    assert_eq!(fake.pending_updates(), 2);
    let params = fake.calls_of("getUpdates").pop().expect("recorded").params;
    assert_eq!(params, json!({"offset": 0, "timeout": 0, "limit": 1}));

    let poller = {
        let api = BotApi::with_timeout(&fake.base_url(), TOKEN, Duration::from_secs(1)).expect("adapter");
        tokio::spawn(async move {
            let started = Instant::now();
            (api.get_updates(12, Duration::from_secs(5), 100).await, started.elapsed())
        })
    };
    while fake.calls_of("getUpdates").len() < 3 {
        tokio::task::yield_now().await;
    }
    // Past the client's own bound before the update comes.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert_eq!(fake.pending_updates(), 0, "offset 12 confirmed 10 and 11");
    fake.push_update(updates::text_message(12, 7, "ещё"));
    let (got, took) = poller.await.expect("task");
    let got = got.expect("the long poll outlived the client's 1 s bound");
    assert_eq!(got.iter().map(|(id, _)| *id).collect::<Vec<_>>(), vec![12]);
    assert!(took >= Duration::from_millis(1_200) && took < Duration::from_secs(4), "{took:?}");

    let started = Instant::now();
    assert_eq!(api.get_updates(13, Duration::from_secs(1), 100).await, Ok(vec![]));
    assert!(started.elapsed() >= Duration::from_millis(900), "the poll waited its timeout");

    let older = {
        let api = BotApi::new(&fake.base_url(), TOKEN).expect("adapter");
        tokio::spawn(async move { api.get_updates(13, Duration::from_secs(5), 100).await })
    };
    let polls = fake.calls_of("getUpdates").len();
    while fake.calls_of("getUpdates").len() == polls {
        tokio::task::yield_now().await;
    }
    let newer = api.get_updates(13, Duration::ZERO, 100).await;
    assert_eq!(newer, Ok(vec![]));
    let e = older.await.expect("task").expect_err("overtaken");
    assert!(api_error(409, "terminated by other getUpdates request")(&e), "{e:?}");
    let e = api.get_updates(0, Duration::from_secs(301), 100).await.expect_err("too long");
    assert!(matches!(e, BotApiError::Invalid { .. }), "{e:?}");
    assert!(matches!(api.get_updates(0, Duration::ZERO, 0).await, Err(BotApiError::Invalid { .. })));
}

#[tokio::test]
async fn a_webhook_is_set_and_deleted_and_polling_conflicts_meanwhile() {
    // Proves setWebhook and deleteWebhook: the URL and secret arrive, getUpdates is a 409 meanwhile, deleting
    // with drop_pending_updates drops the queue; a secret Telegram would refuse is refused before sending; and
    // getMe names the bot.
    let (fake, api) = rig().await;
    fake.push_update(updates::text_message(1, 7, "hi"));
    api.set_webhook("https://bot.example.org/webhooks/telegram", "s3cr3t_-X").await.expect("setWebhook");
    assert_eq!(
        fake.webhook(),
        Some(("https://bot.example.org/webhooks/telegram".to_owned(), Some("s3cr3t_-X".to_owned())))
    );
    let e = api.get_updates(0, Duration::ZERO, 100).await.expect_err("webhook set");
    assert!(api_error(409, "webhook is active")(&e), "{e:?}");
    let e = api.set_webhook("http://bot.example.org/", "s").await.expect_err("not https");
    assert!(api_error(400, "HTTPS URL")(&e), "{e:?}");
    for secret in ["", "has space", "ключ", &"x".repeat(257)] {
        let e = api.set_webhook("https://bot.example.org/", secret).await.expect_err("bad secret");
        assert!(matches!(e, BotApiError::Invalid { .. }), "{secret:?}: {e:?}");
    }
    api.delete_webhook(true).await.expect("deleteWebhook");
    assert_eq!((fake.webhook(), fake.pending_updates()), (None, 0));
    assert_eq!(api.get_updates(0, Duration::ZERO, 100).await, Ok(vec![]));
    assert_eq!(api.get_me().await, Ok(BotIdentity { id: 7_012_345_678, username: "rei_fake_bot".into() }));
}

#[tokio::test]
async fn a_user_who_blocked_the_bot_is_a_403_the_caller_can_recognise() {
    // Proves blocked chats: every send to one is 403 "bot was blocked by the user" and is_blocked; other chats
    // and other refusals are not; unblocking lets sends through again.
    let (fake, api) = rig().await;
    fake.block_chat(CHAT);
    let e = api.send_message(CHAT, "hi", None).await.expect_err("blocked");
    assert!(e.is_blocked() && api_error(403, "bot was blocked by the user")(&e), "{e:?}");
    let photo = Media::Upload { bytes: vec![1; 10], file_name: "a.png".into(), mime: "image/png".into() };
    assert!(api.send_photo(CHAT, &photo, None, None).await.is_err_and(|e| e.is_blocked()));
    assert!(api.send_video(CHAT, &Media::FileId("x".into()), None).await.is_err_and(|e| e.is_blocked()));
    api.send_message(CHAT + 1, "hi", None).await.expect("another chat");
    let e = api.send_message(CHAT + 1, "hi", Some(&Keyboard::default())).await.map(|_| ());
    assert_eq!(e, Ok(()));
    let not_blocked = api.call("sendMessage", &json!({"chat_id": CHAT + 1, "text": ""})).await.expect_err("400");
    assert!(!not_blocked.is_blocked());
    fake.unblock_chat(CHAT);
    api.send_message(CHAT, "hi", None).await.expect("unblocked");
}

#[tokio::test]
async fn a_429_on_the_new_methods_holds_every_later_call_back() {
    // Proves retry_after honoured on the typed methods: a 429 on an upload freezes the client, so the next call
    // (a getFile) reaches Telegram only after the retry_after; the same for a 429 on a long poll.
    let (fake, api) = rig().await;
    fake.script().push(TelegramOutcome::RateLimited { retry_after: 1 });
    let photo = Media::Upload { bytes: vec![1; 10], file_name: "a.png".into(), mime: "image/png".into() };
    let e = api.send_photo(CHAT, &photo, None, None).await.expect_err("429");
    assert_eq!(
        e,
        BotApiError::Api {
            code: 429,
            description: "Too Many Requests: retry after 1".into(),
            retry_after: Some(Duration::from_secs(1))
        }
    );
    let frozen_at = Instant::now();
    let (file_id, _) = fake.add_file(vec![1; 10], "image/png");
    api.get_file(&file_id).await.expect("after the wait");
    let last = fake.calls().pop().expect("a call");
    assert_eq!(last.method, "getFile");
    assert!(last.at.duration_since(frozen_at) >= Duration::from_millis(900), "sent before retry_after passed");

    fake.script().push(TelegramOutcome::RateLimited { retry_after: 1 });
    let e = api.get_updates(0, Duration::ZERO, 100).await.expect_err("429");
    assert!(matches!(e, BotApiError::Api { code: 429, .. }), "{e:?}");
    let frozen_at = Instant::now();
    api.send_message(CHAT, "hi", None).await.expect("after the wait");
    assert!(fake.calls().pop().expect("a call").at.duration_since(frozen_at) >= Duration::from_millis(900));
}

#[tokio::test]
async fn the_token_appears_in_no_error_of_any_method() {
    // Proves no error carries the token, in Display or Debug: 401s from a wrong token on methods, uploads and
    // downloads, transport errors to a dead port (method, upload, download, long poll), refusals before sending.
    let fake = FakeTelegram::start(TOKEN).await.expect("fake");
    let wrong = BotApi::new(&fake.base_url(), "7012345678:AAWrong-Token").expect("adapter");
    let dead = BotApi::new("http://127.0.0.1:1", TOKEN).expect("adapter");
    let photo = Media::Upload { bytes: vec![1; 10], file_name: "a.png".into(), mime: "image/png".into() };
    let mut errors = Vec::new();
    for api in [&wrong, &dead] {
        errors.push(api.get_me().await.expect_err("get_me"));
        errors.push(api.send_message(CHAT, "hi", None).await.expect_err("send"));
        errors.push(api.send_photo(CHAT, &photo, None, None).await.expect_err("upload"));
        errors.push(api.download_file("photos/file_1.png", 100).await.expect_err("download"));
        errors.push(api.get_updates(0, Duration::ZERO, 100).await.expect_err("poll"));
        errors.push(api.get_file("f").await.expect_err("getFile"));
    }
    errors.push(dead.send_message(CHAT, "", None).await.expect_err("invalid"));
    let big = Media::Upload { bytes: vec![0; 10_000_001], file_name: "a.png".into(), mime: "image/png".into() };
    errors.push(dead.send_photo(CHAT, &big, None, None).await.expect_err("big"));
    assert!(errors[..6].iter().all(|e| matches!(e, BotApiError::Api { code: 401, .. })), "{errors:?}");
    assert!(errors[6..12].iter().all(|e| matches!(e, BotApiError::Transport { sent: false, .. })), "{errors:?}");
    for e in &errors {
        for text in [e.to_string(), format!("{e:?}")] {
            assert!(!text.contains(SECRET_PART) && !text.contains("AAWrong-Token"), "{text}");
        }
    }
    for text in [format!("{wrong:?}"), format!("{dead:?}")] {
        assert!(!text.contains(SECRET_PART) && !text.contains("AAWrong-Token"), "{text}");
    }
    assert_eq!(fake.unauthorized(), 6);
}

#[tokio::test]
async fn every_update_builder_reads_as_its_kind() {
    // Proves the fake's update bodies and the parser agree: each builder's body is read as the variant, sender,
    // chat kind and content it stands for.
    use updates::TestUser;
    let anna = TestUser::new(7).username("anna").first_name("Анна").language_code(Some("en"));
    let Ok(Update::Message { from: Some(from), chat_kind: ChatKind::Private, content, .. }) =
        parse_update(&updates::text_message_from(1, &anna, "/start"))
    else {
        panic!("not a message")
    };
    assert_eq!((from.id, from.first_name.as_str(), from.username.as_deref()), (UserId(7), "Анна", Some("anna")));
    assert_eq!(
        (from.language_code.as_deref(), from.is_bot, content),
        (Some("en"), false, Content::Text("/start".into()))
    );

    let sizes = [("s", "us", 90, 90), ("l", "ul", 1280, 1280), ("m", "um", 320, 320)];
    let Ok(Update::Message { content: Content::Photo { file, caption }, .. }) =
        parse_update(&updates::photo_message(2, &anna, &sizes, Some("в стиле аниме")))
    else {
        panic!("not a photo")
    };
    assert_eq!((file.file_id.as_str(), file.file_unique_id.as_str()), ("l", "ul"));
    assert_eq!((file.file_size, caption.as_deref()), (Some(204_800), Some("в стиле аниме")));

    let doc = updates::document_message(3, &anna, ("d", "ud"), "a.png", "image/png", 2048, None);
    let Ok(Update::Message { content: Content::Document { file, file_name, mime_type, caption: None }, .. }) =
        parse_update(&doc)
    else {
        panic!("not a document")
    };
    assert_eq!(
        (file.file_id.as_str(), file_name.as_deref(), mime_type.as_deref()),
        ("d", Some("a.png"), Some("image/png"))
    );
    let video = updates::video_message(4, &anna, ("v", "uv"), 5, Some("оживи"));
    assert!(matches!(
        parse_update(&video),
        Ok(Update::Message { content: Content::Video { duration: 5, caption: Some(_), .. }, .. })
    ));
    assert!(matches!(
        parse_update(&updates::sticker_message(5, &anna)),
        Ok(Update::Message { content: Content::Sticker, .. })
    ));
    assert!(matches!(
        parse_update(&updates::voice_message(6, &anna)),
        Ok(Update::Message { content: Content::Voice, .. })
    ));

    let press = updates::callback_query(7, "q7", &anna, "gen:5s", 7, 3);
    let Ok(Update::CallbackQuery { id, from, data, chat_id, message_id, .. }) = parse_update(&press) else {
        panic!("not a press")
    };
    assert_eq!((id.as_str(), from.username.as_deref(), data.as_deref()), ("q7", Some("anna"), Some("gen:5s")));
    assert_eq!((chat_id, message_id), (Some(7), Some(3)));

    assert_eq!(
        parse_update(&updates::channel_post(8, -1001, "news")),
        Ok(Update::Other { update_id: 8, kind: "channel_post".into() })
    );
    let group = parse_update(&updates::group_message(9, -42, &anna, "hi"));
    assert!(
        matches!(group, Ok(Update::Message { chat_id: -42, chat_kind: ChatKind::Group, from: Some(_), .. })),
        "{group:?}"
    );
    let anonymous = parse_update(&updates::message_without_from(10, -1002, "hi"));
    assert!(
        matches!(anonymous, Ok(Update::Message { from: None, chat_kind: ChatKind::Supergroup, .. })),
        "{anonymous:?}"
    );
    assert_eq!(
        parse_update(&updates::bot_blocked(11, 7)),
        Ok(Update::MemberStatus { update_id: 11, from: UserId(7), blocked: true })
    );
    assert_eq!(
        parse_update(&updates::bot_unblocked(12, 7)),
        Ok(Update::MemberStatus { update_id: 12, from: UserId(7), blocked: false })
    );
    let Ok(Update::Message { content, .. }) = parse_update(&updates::text_message(13, 7, "old builder")) else {
        panic!("not a message")
    };
    assert_eq!(content, Content::Text("old builder".into()));
}
