//! Ordering: a text generates, a photo with a caption edits, /video makes a video; the quote, confirmation,
//! delivery, failure with the money back; not enough money; repeated, concurrent, stale and expired presses.

use std::time::Duration;

use rei_adapters::fakes::gemini::GeminiOutcome;
use rei_adapters::fakes::telegram::updates;
use rei_core::ids::UserId;
use rei_core::money::Money;

use crate::support::{Rig, en, ru, snapshot};

/// The price of a Nano Banana image off-peak.
const IMAGE: i64 = 6_40;

#[tokio::test]
async fn a_text_is_quoted_confirmed_and_delivered_as_a_photo_and_a_file() {
    // Proves the image flow in both languages: quote with breakdown and buttons, "working", the result as a
    // photo and as the original file, the price charged once.
    let rig = Rig::start().await;
    for (name, user) in [("image.ru", ru(30_001)), ("image.en", en(30_002))] {
        rig.text(&user, "a cat in a hat").await;
        rig.press(&user, "c:*").await;
        rig.settle().await;
        rig.wait_messages(&user, 5).await;
        snapshot(name, &rig.transcript(&user));
        assert_eq!(rig.balance(&user).await, (Money::from_kopecks(30_00 - IMAGE), Money::from_kopecks(0)));
        let sent = rig.stack.telegram.sent_to(user.id);
        assert_eq!(sent.iter().filter(|m| m.method == "sendPhoto").count(), 1);
        assert_eq!(sent.iter().filter(|m| m.method == "sendDocument").count(), 1);
    }
    rig.stop().await;
}

#[tokio::test]
async fn a_photo_with_a_caption_is_edited_from_the_downloaded_original() {
    // Proves editing: the photo is downloaded from Telegram on confirmation and sent to the model.
    let rig = Rig::start().await;
    let user = en(30_011);
    let png = vec![0x89, b'P', b'N', b'G', 1, 2, 3];
    let (file_id, unique) = rig.stack.telegram.add_file(png, "image/png");
    let body =
        updates::photo_message(rig.stack.update_id(), &user, &[(&file_id, &unique, 64, 64)], Some("make it blue"));
    rig.driver().deliver(body).await.unwrap();
    let quote = rig.stack.telegram.sent_to(user.id).last().and_then(|m| m.text.clone()).unwrap();
    assert!(quote.contains("photo edit"), "{quote}");
    rig.press(&user, "c:*").await;
    rig.settle().await;
    // The welcome gift, the quote, "working", the photo and the file.
    rig.wait_messages(&user, 5).await;
    assert_eq!(rig.stack.telegram.downloads().len(), 1);
    assert_eq!(rig.stack.gemini.last_sent_inline_data(), Some(true));
    // Without a caption the bot asks for one.
    let body = updates::photo_message(rig.stack.update_id(), &user, &[(&file_id, &unique, 64, 64)], None);
    rig.driver().deliver(body).await.unwrap();
    let last = rig.stack.telegram.sent_to(user.id).last().and_then(|m| m.text.clone()).unwrap();
    assert!(last.contains("caption"), "{last}");
    rig.stop().await;
}

#[tokio::test]
async fn a_video_is_set_up_quoted_and_delivered() {
    // Proves /video in both languages: model, duration, prompt, quote, confirmation and the result as a video.
    let rig = Rig::start().await;
    for (n, (name, user)) in [("video.ru", ru(30_021)), ("video.en", en(30_022))].into_iter().enumerate() {
        rig.text(&user, "/start").await;
        let payment = rei_core::ids::PaymentId::parse(&format!("t-{}", user.id)).unwrap();
        rig.stack.engine.billing().top_up(UserId(user.id), Money::from_kopecks(100_00), payment).await.unwrap();
        rig.text(&user, "/video").await;
        rig.press(&user, "vm:kling-2.6").await;
        rig.press(&user, "vd:5").await;
        rig.text(&user, "a fox in the snow").await;
        rig.press(&user, "c:*").await;
        rig.settle().await;
        rig.wait_messages(&user, 8).await;
        snapshot(name, &rig.transcript(&user));
        assert_eq!(rig.stack.kling.tasks(), n + 1);
        assert_eq!(rig.balance(&user).await.0, Money::from_kopecks(130_00 - 49_30));
    }
    rig.stop().await;
}

#[tokio::test]
async fn a_failed_job_gives_the_money_back_and_says_so() {
    // Proves failure: a content block fails the job for good, the hold is released and the user told.
    let rig = Rig::start().await;
    let user = en(30_031);
    rig.stack.gemini.script().push(GeminiOutcome::Blocked);
    rig.text(&user, "something refused").await;
    rig.press(&user, "c:*").await;
    rig.settle().await;
    rig.wait_messages(&user, 4).await;
    let last = rig.stack.telegram.sent_to(user.id).last().and_then(|m| m.text.clone()).unwrap();
    assert!(last.contains("money is back"), "{last}");
    assert_eq!(rig.balance(&user).await, (Money::from_kopecks(30_00), Money::from_kopecks(0)));
    rig.stop().await;
}

#[tokio::test]
async fn not_enough_money_offers_a_top_up_and_the_quote_can_be_confirmed_after_it() {
    // Proves the refusal for funds: nothing held, a top-up button, and the same quote confirmed once paid.
    let rig = Rig::start().await;
    let user = en(30_041);
    rig.text(&user, "/start").await;
    rig.text(&user, "/video").await;
    rig.press(&user, "vm:kling-3.0").await;
    rig.press(&user, "vd:10").await;
    rig.text(&user, "a long film").await;
    rig.press(&user, "c:*").await;
    let last = rig.stack.telegram.sent_to(user.id).last().cloned().unwrap();
    assert!(last.text.as_deref().unwrap().starts_with("Not enough money"), "{:?}", last.text);
    assert!(last.reply_markup.is_some());
    assert_eq!(rig.balance(&user).await, (Money::from_kopecks(30_00), Money::from_kopecks(0)));
    rig.stack
        .engine
        .billing()
        .top_up(UserId(user.id), Money::from_kopecks(200_00), rei_core::ids::PaymentId::parse("t-30041").unwrap())
        .await
        .unwrap();
    rig.press(&user, "c:*").await;
    rig.settle().await;
    // Video is charged by the seconds delivered: the fake's 5.1 s bill 6 of the 10 s quoted (153.00 × 6/10).
    assert_eq!(rig.balance(&user).await.0, Money::from_kopecks(230_00 - 91_80));
    rig.stop().await;
}

#[tokio::test]
async fn repeated_and_concurrent_presses_hold_once() {
    // Proves the quote's key: a second press says it is confirmed already; two presses at once hold once.
    let rig = Rig::start().await;
    let user = en(30_051);
    rig.text(&user, "one").await;
    let (message, data) = rig.press_keep(&user, "c:").await;
    rig.driver().press_data(&user, message, &data).await.unwrap();
    let answers = rig.stack.telegram.calls_of("answerCallbackQuery");
    assert!(answers.iter().any(|c| c.params["text"].as_str().is_some_and(|t| t.contains("Confirmed already"))));
    rig.text(&user, "two").await;
    let d = rig.driver();
    let (message, data) = d.button(&user, |x| x.starts_with("c:")).unwrap();
    let (a, b) = tokio::join!(d.press_data(&user, message, &data), d.press_data(&user, message, &data));
    a.unwrap();
    b.unwrap();
    rig.settle().await;
    assert_eq!(rig.balance(&user).await, (Money::from_kopecks(30_00 - 2 * IMAGE), Money::from_kopecks(0)));
    assert_eq!(rig.stack.gemini.images_generated(), 2);
    rig.stop().await;
}

#[tokio::test]
async fn stale_forged_expired_and_cancelled_quotes_hold_nothing() {
    // Proves the other presses in both languages: a forged quote id, a cancelled quote, an expired one: each a
    // clear answer, no hold.
    let rig = Rig::start().await;
    for (name, user) in [("stale.ru", ru(30_061)), ("stale.en", en(30_062))] {
        rig.text(&user, "/start").await;
        let d = rig.driver();
        let id = rig.stack.update_id();
        d.deliver(updates::callback_query(id, "q-forged", &user, &format!("c:{:032x}", 7), user.id, 1)).await.unwrap();
        d.deliver(updates::callback_query(rig.stack.update_id(), "q-junk", &user, "zz:9", user.id, 1)).await.unwrap();
        rig.text(&user, "cancel me").await;
        let (message, confirm) = rig.driver().button(&user, |d| d.starts_with("c:")).unwrap();
        rig.press(&user, "x:*").await;
        rig.driver().press_data(&user, message, &confirm).await.unwrap(); // the cancelled quote's confirm
        rig.text(&user, "too late").await;
        rig.clock.advance(Duration::from_secs(11 * 60));
        rig.press(&user, "c:*").await;
        assert_eq!(rig.balance(&user).await, (Money::from_kopecks(30_00), Money::from_kopecks(0)));
        snapshot(name, &rig.transcript(&user));
    }
    let jobs = rig.driver().counts().await.unwrap();
    assert_eq!(jobs.queued + jobs.running + jobs.succeeded, 0);
    rig.stop().await;
}

#[tokio::test]
async fn a_spend_cap_and_the_jobs_at_once_limit_say_what_to_wait_for() {
    // Proves the caps' refusals: past the daily cap the user is told when it frees up; with one job running the
    // second waits; neither holds anything.
    let caps =
        rei_core::caps::SpendCaps { user_daily: Some(Money::from_kopecks(15_00)), ..rei_core::caps::SpendCaps::NONE };
    let billing = rei_core::billing::BillingConfig { user_caps: caps, jobs_running_max: Some(1), ..Default::default() };
    let rig = Rig::start_with(Some(billing)).await;
    let user = en(30_071);
    rig.stack.gemini.script().push(GeminiOutcome::Slow(Duration::from_secs(2)));
    rig.text(&user, "first").await;
    rig.press(&user, "c:*").await;
    rig.text(&user, "second").await;
    rig.press(&user, "c:*").await;
    let last = rig.stack.telegram.sent_to(user.id).last().and_then(|m| m.text.clone()).unwrap();
    assert!(last.contains("of your jobs are running"), "{last}");
    rig.settle().await;
    // Once the first ended, the second (kept pending) goes; a third would pass the 15.00 daily cap.
    rig.press(&user, "c:*").await;
    rig.settle().await;
    rig.text(&user, "third").await;
    rig.press(&user, "c:*").await;
    let sent = rig.stack.telegram.sent_to(user.id);
    let texts: Vec<&str> = sent.iter().filter_map(|m| m.text.as_deref()).collect();
    assert!(texts.iter().any(|t| t.contains("daily spending limit (15.00 ₽)")), "{texts:?}");
    assert_eq!(rig.balance(&user).await, (Money::from_kopecks(30_00 - 2 * IMAGE), Money::from_kopecks(0)));
    rig.stop().await;
}

#[tokio::test]
async fn a_video_the_bot_made_is_continued_when_sent_back_and_others_are_refused() {
    // Proves video input: the bot's own video, sent back after /video's choices, is quoted as a continuation and
    // extended from the provider's id of it; a video the bot did not make is refused and holds nothing.
    let rig = Rig::start().await;
    let user = en(30_081);
    rig.text(&user, "/start").await;
    let payment = rei_core::ids::PaymentId::parse("t-30081").unwrap();
    rig.stack.engine.billing().top_up(UserId(user.id), Money::from_kopecks(200_00), payment).await.unwrap();
    for step in ["/video", "vm:kling-2.6", "vd:5", "a fox", "c:"] {
        if step.starts_with('/') || step == "a fox" {
            rig.text(&user, step).await;
        } else {
            rig.press(&user, &format!("{step}*")).await;
        }
    }
    rig.settle().await;
    rig.wait_messages(&user, 8).await;
    // The video is remembered right after it is sent: wait (bounded) for that write too.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let (stored, made) = loop {
        let stored = rig.stack.engine.conversations().get(UserId(user.id)).await.unwrap();
        let made = stored.as_ref().map(|s| rei_bot::state::State::read(Some(&s.state)).videos).unwrap_or_default();
        if !made.is_empty() || std::time::Instant::now() > until {
            break (stored, made);
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(made.len(), 1, "{stored:?}");
    // Someone else's video: refused.
    let foreign = updates::video_message(rig.stack.update_id(), &user, ("BAACforeign", "AgADforeign"), 5, None);
    rig.driver().deliver(foreign).await.unwrap();
    let last = rig.stack.telegram.sent_to(user.id).last().and_then(|m| m.text.clone()).unwrap();
    assert!(last.contains("only continue a video I made"), "{last}");
    // Its own video, after the choices: a continuation.
    rig.text(&user, "/video").await;
    rig.press(&user, "vm:kling-2.6").await;
    rig.press(&user, "vd:5").await;
    let own = updates::video_message(
        rig.stack.update_id(),
        &user,
        ("BAACown", &made[0].unique),
        5,
        Some("and then it jumps"),
    );
    rig.driver().deliver(own).await.unwrap();
    let quote = rig.stack.telegram.sent_to(user.id).last().and_then(|m| m.text.clone()).unwrap();
    assert!(quote.contains("video continuation"), "{quote}");
    rig.press(&user, "c:*").await;
    rig.settle().await;
    let records = rig.stack.kling.records();
    assert_eq!(records.submits, 2);
    assert!(records.last_submit_path.as_deref().is_some_and(|p| p.ends_with("video-extend")), "{records:?}");
    let body = records.last_submit_body.unwrap();
    assert_eq!(body["video_id"].as_str(), Some(made[0].reference.as_str()), "{body}");
    rig.stop().await;
}
