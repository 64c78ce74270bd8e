//! The admin commands: refused to non-admins with nothing changed, each money action audited and keyed by its
//! update; bans; the ledger's check; stats; broadcasts with progress.

use rei_adapters::fakes::telegram::updates;
use rei_core::guards::{AuditFilter, AuditOutcome};
use rei_core::ids::UserId;
use rei_core::money::Money;

use crate::support::{Rig, admin, en, ru, snapshot};

#[tokio::test]
async fn a_non_admin_is_refused_every_admin_command_and_nothing_changes() {
    // Proves the refusal: each command answered "admins only", no balance moved, money commands audited as
    // forbidden.
    let rig = Rig::start().await;
    let (user, other) = (en(40_001), en(40_002));
    rig.text(&other, "/start").await;
    for command in [
        format!("/add {} 100", other.id),
        format!("/sub {} 10", other.id),
        format!("/admin_adjust {} 5 why", other.id),
        format!("/ban {}", other.id),
        format!("/unban {}", other.id),
        format!("/admin_user {}", other.id),
        "/admin_verify".to_owned(),
        "/admin_stats".to_owned(),
        "/admin_slo".to_owned(),
        "/admin_jobs".to_owned(),
        "/broadcast all".to_owned(),
        "/admin_promo FREE 100 10".to_owned(),
    ] {
        rig.text(&user, &command).await;
        let last = rig.stack.telegram.sent_to(user.id).last().and_then(|m| m.text.clone()).unwrap();
        assert!(last.contains("admins only"), "{command}: {last}");
    }
    assert_eq!(rig.balance(&other).await.0, Money::from_kopecks(30_00));
    let audit = rig.stack.engine.audit().list(&AuditFilter::latest(50)).await.unwrap();
    assert!(audit.iter().all(|r| r.outcome == AuditOutcome::Forbidden && r.actor == UserId(user.id)));
    assert_eq!(audit.len(), 3);
    assert!(rig.stack.bot.parts().growth.promos().get("FREE").await.unwrap().is_none());
    rig.stop().await;
}

#[tokio::test]
async fn admin_money_commands_are_audited_and_a_redelivered_command_moves_money_once() {
    // Proves /add, /sub, /admin_adjust through the audit path, keyed by the update: the same update twice adds once.
    let rig = Rig::start().await;
    let (boss, user) = (admin(), ru(40_011));
    rig.text(&user, "/start").await;
    let add = updates::text_message_from(rig.stack.update_id(), &boss, &format!("/add {} 100 welcome", user.id));
    rig.driver().deliver(add.clone()).await.unwrap();
    rig.driver().deliver(add).await.unwrap();
    rig.text(&boss, &format!("/sub {} 20.50", user.id)).await;
    rig.text(&boss, &format!("/admin_adjust {} -1 correction", user.id)).await;
    rig.text(&boss, &format!("/sub {} 10000", user.id)).await; // past the balance: refused
    assert_eq!(rig.balance(&user).await.0, Money::from_kopecks(30_00 + 100_00 - 20_50 - 1_00));
    let audit = rig.stack.engine.audit().list(&AuditFilter::latest(50)).await.unwrap();
    assert_eq!(audit.iter().filter(|r| r.outcome == AuditOutcome::Done).count(), 3);
    assert_eq!(audit.iter().filter(|r| r.outcome == AuditOutcome::Failed).count(), 1);
    snapshot("admin_money.en", &rig.transcript(&boss));
    rig.stop().await;
}

#[tokio::test]
async fn a_banned_user_is_ignored_until_unbanned() {
    // Proves bans: the banned user's messages get no answer and order nothing; after /unban they do again.
    let rig = Rig::start().await;
    let (boss, user) = (admin(), en(40_021));
    rig.text(&user, "/start").await;
    rig.text(&boss, &format!("/ban {}", user.id)).await;
    let before = rig.stack.telegram.sent_to(user.id).len();
    rig.text(&user, "a cat").await;
    rig.text(&user, "/balance").await;
    assert_eq!(rig.stack.telegram.sent_to(user.id).len(), before);
    rig.text(&boss, &format!("/unban {}", user.id)).await;
    rig.text(&user, "/balance").await;
    assert_eq!(rig.stack.telegram.sent_to(user.id).len(), before + 1);
    rig.stop().await;
}

#[tokio::test]
async fn refunds_cancels_user_cards_verify_stats_and_jobs_for_admins() {
    // Proves the other admin commands on a real delivered job: refund, cancel of a queued one, the user's card,
    // verify, stats, the SLOs and the job list.
    let rig = Rig::start().await;
    let (boss, user) = (admin(), en(40_031));
    rig.text(&user, "a cat").await;
    rig.press(&user, "c:*").await;
    rig.settle().await;
    let job = rig.stack.engine.jobs().list(rei_core::jobs::JobState::Succeeded, None, 1).await.unwrap().remove(0);
    rig.text(&boss, &format!("/admin_refund {}", job.id)).await;
    assert_eq!(rig.balance(&user).await.0, Money::from_kopecks(30_00));
    for command in [
        format!("/admin_user {}", user.id),
        "/admin_verify".to_owned(),
        "/admin_stats".to_owned(),
        "/admin_slo".to_owned(),
        "/admin_jobs failed".to_owned(),
        format!("/admin_cancel_job {}", job.id),
    ] {
        rig.text(&boss, &command).await;
    }
    let texts: Vec<String> = rig.stack.telegram.sent_to(boss.id).iter().filter_map(|m| m.text.clone()).collect();
    assert!(texts.iter().any(|t| t.starts_with("✅ Refunded 6.40")), "{texts:?}");
    assert!(texts.iter().any(|t| t.starts_with("✅ Ledger check")), "{texts:?}");
    assert!(texts.iter().any(|t| t.starts_with("📊 Users: 2")), "{texts:?}");
    assert!(texts.iter().any(|t| t.starts_with("SLOs")), "{texts:?}");
    assert!(texts.iter().any(|t| t.starts_with("👤 Ann")), "{texts:?}");
    // A delivered job cannot be cancelled: the refusal says why.
    assert!(texts.last().unwrap().starts_with("❌"), "{texts:?}");
    rig.stop().await;
}

#[tokio::test]
async fn a_broadcast_is_previewed_sent_to_its_audience_and_counts_the_blocked() {
    // Proves broadcasts: the preview, Send, delivery to every member but the blocked one (counted and marked).
    let rig = Rig::start().await;
    let boss = admin();
    let users: Vec<_> = (0..5).map(|n| en(40_041 + n)).collect();
    rig.text(&boss, "/start").await;
    for u in &users {
        rig.text(u, "/start").await;
    }
    rig.stack.telegram.block_chat(users[4].id);
    rig.text(&boss, "/broadcast all Open | https://example.org/x").await;
    rig.text(&boss, "Hello everyone").await;
    rig.press(&boss, "bs").await;
    let sent = rig.driver().broadcast_done(&boss, std::time::Duration::from_secs(20)).await.unwrap();
    assert_eq!(sent, 5); // four users and the admin
    for u in &users[..4] {
        assert!(rig.stack.telegram.sent_to(u.id).iter().any(|m| m.text.as_deref() == Some("Hello everyone")));
    }
    let blocked = rig.stack.bot.parts().growth.members().get(UserId(users[4].id)).await.unwrap().unwrap();
    assert!(blocked.blocked_at.is_some());
    snapshot("broadcast.en", &rig.transcript(&boss));
    rig.stop().await;
}

#[tokio::test]
async fn a_photo_broadcast_goes_to_paying_users_only() {
    // Proves the photo broadcast and the paid audience: the preview is the photo with its caption, and only
    // members who paid receive it.
    let rig = Rig::start().await;
    let boss = admin();
    let (payer, other) = (ru(40_061), ru(40_062));
    for u in [&boss, &payer, &other] {
        rig.text(u, "/start").await;
    }
    rig.text(&payer, "/topup").await;
    rig.press(&payer, "tc:10000").await;
    let id = rig.driver().last_payment(&payer).await.unwrap();
    rig.stack.pay_card(&id).await.unwrap();
    rig.text(&boss, "/broadcast paid").await;
    let (file_id, unique) = rig.stack.telegram.add_file(vec![0x89, b'P', b'N', b'G'], "image/png");
    let photo = updates::photo_message(rig.stack.update_id(), &boss, &[(&file_id, &unique, 64, 64)], Some("Sale!"));
    rig.driver().deliver(photo).await.unwrap();
    let preview = rig.stack.telegram.sent_to(boss.id);
    assert!(preview.iter().any(|m| m.method == "sendPhoto" && m.text.as_deref() == Some("Sale!")));
    rig.press(&boss, "bs").await;
    let sent = rig.driver().broadcast_done(&boss, std::time::Duration::from_secs(20)).await.unwrap();
    assert_eq!(sent, 1);
    let got = |u: &rei_adapters::fakes::telegram::updates::TestUser| {
        rig.stack.telegram.sent_to(u.id).iter().any(|m| m.method == "sendPhoto" && m.text.as_deref() == Some("Sale!"))
    };
    assert!(got(&payer));
    assert!(!got(&other));
    rig.stop().await;
}
