//! /start with the trial and referrals, /balance, /help, /lang, top-ups by card and Stars, /history, promo codes,
//! and what the bot does with content it does not take.

use rei_adapters::fakes::telegram::updates;
use rei_core::ids::UserId;
use rei_core::money::Money;
use serde_json::Value;

use crate::support::{Rig, admin, en, ru, snapshot};

#[tokio::test]
async fn start_balance_help_and_language_in_both_languages() {
    // Proves the first screens as users read them, in Russian and English: the trial, the menu, the balance
    // with the referral link, the help, and switching language.
    let rig = Rig::start().await;
    for (name, user) in [("start.ru", ru(20_001)), ("start.en", en(20_002))] {
        rig.text(&user, "/start").await;
        rig.text(&user, "/balance").await;
        rig.text(&user, "/help").await;
        rig.text(&user, "/lang").await;
        rig.press(&user, if name.ends_with("ru") { "l:en" } else { "l:ru" }).await;
        rig.wait_messages(&user, 6).await;
        snapshot(name, &rig.transcript(&user));
        // The trial is on the balance, once.
        rig.text(&user, "/start").await;
        assert_eq!(rig.balance(&user).await.0, Money::from_kopecks(30_00));
    }
    rig.stop().await;
}

#[tokio::test]
async fn a_referral_link_records_one_referrer_and_pays_the_join_bonus_once() {
    // Proves referrals: the referrer is told and paid once; no self-referral; a second link changes nothing.
    let rig = Rig::start().await;
    let (a, b, c) = (ru(20_011), en(20_012), ru(20_013));
    rig.text(&a, "/start").await;
    let code = rig.stack.bot.parts().growth.members().get(UserId(a.id)).await.unwrap().unwrap().referral_code;
    rig.text(&a, &format!("/start ref_{code}")).await; // self
    rig.text(&b, &format!("/start ref_{code}")).await;
    rig.text(&b, &format!("/start ref_{code}")).await; // again
    let b_code = rig.stack.bot.parts().growth.members().get(UserId(b.id)).await.unwrap().unwrap().referral_code;
    rig.text(&c, "/start").await;
    rig.text(&c, &format!("/start ref_{b_code}")).await; // c existed before: no referrer now
    let members = rig.stack.bot.parts().growth.members();
    assert_eq!(members.get(UserId(a.id)).await.unwrap().unwrap().referrer, None);
    assert_eq!(members.get(UserId(b.id)).await.unwrap().unwrap().referrer, Some(UserId(a.id)));
    assert_eq!(members.get(UserId(c.id)).await.unwrap().unwrap().referrer, None);
    assert_eq!(members.referee_count(UserId(a.id)).await.unwrap(), 1);
    // A's trial plus one join bonus.
    assert_eq!(rig.balance(&a).await.0, Money::from_kopecks(30_00 + 10_00));
    let told =
        rig.stack.telegram.sent_to(a.id).iter().filter(|m| m.text.as_deref().is_some_and(|t| t.contains("🎉"))).count();
    assert_eq!(told, 1);
    rig.stop().await;
}

#[tokio::test]
async fn a_card_top_up_credits_once_and_pays_the_referrer_a_share() {
    // Proves the card path: the link, the notice, the credit told once, 10 % to the referrer, a repeated notice
    // crediting nothing more.
    let rig = Rig::start().await;
    let (a, b) = (ru(20_021), en(20_022));
    let c = ru(20_023);
    rig.text(&c, "/topup").await;
    rig.press(&c, "tc:50000").await;
    let id = rig.driver().last_payment(&c).await.unwrap();
    rig.stack.pay_card(&id).await.unwrap();
    rig.wait_messages(&c, 4).await;
    snapshot("topup_card.ru", &rig.transcript(&c));
    rig.text(&a, "/start").await;
    let code = rig.stack.bot.parts().growth.members().get(UserId(a.id)).await.unwrap().unwrap().referral_code;
    rig.text(&b, &format!("/start ref_{code}")).await;
    rig.text(&b, "/topup").await;
    rig.press(&b, "tc:50000").await;
    let id = rig.driver().last_payment(&b).await.unwrap();
    assert_eq!(rig.stack.pay_card(&id).await.unwrap(), 200);
    assert_eq!(rig.stack.pay_card(&id).await.unwrap(), 200);
    assert_eq!(rig.balance(&b).await.0, Money::from_kopecks(30_00 + 500_00));
    assert_eq!(rig.balance(&a).await.0, Money::from_kopecks(30_00 + 10_00 + 50_00));
    rig.wait_messages(&b, 5).await;
    snapshot("topup_card.en", &rig.transcript(&b));
    rig.stop().await;
}

#[tokio::test]
async fn a_stars_payment_is_answered_credited_once_and_told_in_the_payers_language() {
    // Proves Stars: the invoice, the pre-checkout answered, one credit for a payment delivered twice.
    let rig = Rig::start().await;
    let user = en(20_031);
    rig.text(&user, "/topup").await;
    rig.press(&user, "ts:100").await;
    rig.driver().pay_stars(&user, 100).await.unwrap();
    let answers = rig.stack.telegram.calls_of("answerPreCheckoutQuery");
    assert_eq!(answers.last().unwrap().params.get("ok").and_then(Value::as_bool), Some(true));
    let payment =
        rig.stack.telegram.calls_of("sendInvoice").last().unwrap().params["payload"].as_str().unwrap().to_owned();
    let again = updates::successful_payment(rig.stack.update_id(), user.id, "XTR", 100, &payment, "stx-again");
    rig.driver().deliver(again.clone()).await.unwrap();
    rig.driver().deliver(again).await.unwrap();
    // 30.00 trial + 2 × 150.00 (the second charge id is a second payment; its redelivery is not).
    assert_eq!(rig.balance(&user).await.0, Money::from_kopecks(30_00 + 2 * 150_00));
    let credited = rig
        .stack
        .telegram
        .sent_to(user.id)
        .iter()
        .filter(|m| m.text.as_deref().is_some_and(|t| t.contains("topped up")))
        .count();
    assert_eq!(credited, 2);
    rig.stop().await;
}

#[tokio::test]
async fn history_pages_newest_first() {
    // Proves /history: the trial and grants, newest first, in pages with an "older" button.
    let rig = Rig::start().await;
    let user = ru(20_041);
    let boss = admin();
    rig.text(&boss, "/start").await;
    rig.text(&user, "/start").await;
    for n in 1..=11 {
        rig.text(&boss, &format!("/add {} {n} gift {n}", user.id)).await;
    }
    rig.text(&user, "/history").await;
    rig.press(&user, "h:*").await;
    let sent = rig.stack.telegram.sent_to(user.id);
    let pages: Vec<&str> = sent.iter().filter_map(|m| m.text.as_deref()).filter(|t| t.starts_with("📜")).collect();
    assert_eq!(pages.len(), 2);
    assert_eq!(pages[0].lines().count(), 11, "{}", pages[0]);
    assert!(pages[0].lines().nth(1).unwrap().ends_with("+11.00 ₽"), "{}", pages[0]);
    assert!(pages[1].contains("+30.00 ₽"), "{}", pages[1]);
    rig.stop().await;
}

#[tokio::test]
async fn promo_codes_grant_once_per_user_within_their_uses() {
    // Proves promo codes: admin-made, once per user, exhausted after its uses, unknown refused.
    let rig = Rig::start().await;
    let boss = admin();
    let (a, b, c) = (en(20_051), en(20_052), en(20_053));
    rig.text(&boss, "/admin_promo WINTER 25 2").await;
    for u in [&a, &b, &c] {
        rig.text(u, "/start").await;
        rig.text(u, "/promo winter").await;
    }
    rig.text(&a, "/promo WINTER").await;
    rig.text(&a, "/promo NOPE").await;
    assert_eq!(rig.balance(&a).await.0, Money::from_kopecks(55_00));
    assert_eq!(rig.balance(&b).await.0, Money::from_kopecks(55_00));
    assert_eq!(rig.balance(&c).await.0, Money::from_kopecks(30_00));
    let last = |u| rig.stack.telegram.sent_to(u).last().and_then(|m| m.text.clone()).unwrap();
    assert!(last(c.id).contains("used up"), "{}", last(c.id));
    assert!(last(a.id).contains("no such"), "{}", last(a.id));
    rig.stop().await;
}

#[tokio::test]
async fn content_the_bot_does_not_take_gets_short_help_and_foreign_chats_nothing() {
    // Proves the limits in both languages: stickers, voice, unknown commands, over-long text, non-image files,
    // huge photos; and that channel posts, groups, messages without a sender and other bots' commands get no
    // answer.
    let rig = Rig::start().await;
    for (name, user) in [("limits.ru", ru(20_061)), ("limits.en", en(20_062))] {
        let d = rig.driver();
        d.deliver(updates::sticker_message(rig.stack.update_id(), &user)).await.unwrap();
        d.deliver(updates::voice_message(rig.stack.update_id(), &user)).await.unwrap();
        rig.text(&user, "/frobnicate").await;
        rig.text(&user, &"x".repeat(1_001)).await;
        let doc = updates::document_message(
            rig.stack.update_id(),
            &user,
            ("f1", "u1"),
            "notes.pdf",
            "application/pdf",
            10,
            Some("x"),
        );
        d.deliver(doc).await.unwrap();
        let big = updates::document_message(
            rig.stack.update_id(),
            &user,
            ("f2", "u2"),
            "big.png",
            "image/png",
            21 * 1024 * 1024,
            Some("x"),
        );
        d.deliver(big).await.unwrap();
        rig.text(&user, "/start@another_bot").await;
        rig.wait_messages(&user, 7).await;
        snapshot(name, &rig.transcript(&user));
    }
    let d = rig.driver();
    let user = en(20_063);
    d.deliver(updates::channel_post(rig.stack.update_id(), -100_500, "/start")).await.unwrap();
    d.deliver(updates::group_message(rig.stack.update_id(), -100_600, &user, "/start")).await.unwrap();
    d.deliver(updates::message_without_from(rig.stack.update_id(), -100_700, "hi")).await.unwrap();
    assert!(rig.stack.telegram.sent_to(-100_500).is_empty());
    assert!(rig.stack.telegram.sent_to(-100_600).is_empty());
    assert!(rig.stack.telegram.sent_to(-100_700).is_empty());
    assert!(rig.stack.telegram.sent_to(user.id).is_empty());
    rig.stop().await;
}

#[tokio::test]
async fn a_flood_of_messages_is_asked_to_wait() {
    // Proves the per-user rate limit: past the burst (30 here) the user is asked to wait.
    let rig = Rig::start().await;
    let user = en(20_071);
    for _ in 0..40 {
        rig.text(&user, "/balance").await;
    }
    let sent = rig.stack.telegram.sent_to(user.id);
    assert!(sent.iter().any(|m| m.text.as_deref().is_some_and(|t| t.starts_with("Too fast"))));
    rig.stop().await;
}

#[tokio::test]
async fn one_update_delivered_twice_has_one_effect() {
    // Proves the update log: Telegram's redelivery of one update (same update_id) is acknowledged and ignored.
    let rig = Rig::start().await;
    let user = en(20_081);
    let body = updates::text_message_from(rig.stack.update_id(), &user, "a cat in a hat");
    rig.driver().deliver(body.clone()).await.unwrap();
    rig.driver().deliver(body).await.unwrap();
    let quotes = rig
        .stack
        .telegram
        .sent_to(user.id)
        .iter()
        .filter(|m| m.text.as_deref().is_some_and(|t| t.starts_with("🧾")))
        .count();
    assert_eq!(quotes, 1);
    rig.stop().await;
}
