//! The console in Debian's headless Chromium: an operator signs in with the Login Widget, opens every page,
//! checks what it shows against the store, does every action and sees the store change (once), with a
//! screenshot of each page in `target/screenshots/` (or `$REI_SCREENSHOTS`).

use std::time::Duration;

use rei_core::guards::{AuditAction, AuditFilter, AuditOutcome};
use rei_core::ids::UserId;
use rei_core::jobs::JobState;
use rei_core::money::Money;

use rei_http::console::rub;

use crate::console::{ADMIN, ANN, BOB, BOT_TOKEN, query, stage, widget};
use crate::webdriver::Browser;

/// Clicks what `css` finds and waits for the page it loads (a link or a form's button).
async fn go(b: &Browser, css: &str) {
    b.execute("window.__reiBefore = true;", Vec::new()).await;
    b.find(css).await.click().await;
    b.wait_for(css, "document.readyState === 'complete' && window.__reiBefore === undefined").await;
}

fn money(text: &str) -> Money {
    Money::parse(text).expect("money")
}

/// Normalises the non-breaking spaces a browser may hand back as plain ones.
fn flat(text: &str) -> String {
    text.replace('\u{a0}', " ")
}

#[tokio::test]
async fn an_operator_walks_every_page_and_action_in_a_real_browser() {
    let s = stage().await;
    let engine = s.server.engine.clone();
    let base = s.server.base.replace("127.0.0.1", "localhost");
    let b = Browser::start().await;
    let before = engine.billing().balance(UserId(ANN)).await.expect("balance");

    // Refused in the browser too: a forged hash, an old answer, a user who is not an admin; no session cookie.
    let mut forged = widget(ADMIN, BOT_TOKEN, Duration::ZERO);
    forged.insert("hash".to_owned(), "ab".repeat(32));
    for (what, fields) in [
        ("a forged hash", forged),
        ("an expired auth_date", widget(ADMIN, BOT_TOKEN, Duration::from_secs(7_200))),
        ("a non-admin", widget(BOB, BOT_TOKEN, Duration::ZERO)),
    ] {
        b.goto(&format!("{base}/admin/auth/telegram?{}", query(&fields))).await;
        assert_eq!(b.text("h1").await, "Refused", "{what}");
        assert!(b.cookies().await.iter().all(|c| c.name != "rei_console"), "{what} opens no session");
    }
    b.screenshot("console-refused").await;

    // Sign in: the widget's redirect with a signed answer.
    b.goto(&format!("{base}/admin/auth/telegram?{}", query(&widget(ADMIN, BOT_TOKEN, Duration::ZERO)))).await;
    assert!(b.current_url().await.ends_with("/admin/dashboard"), "{}", b.current_url().await);
    let session = b.cookies().await.into_iter().find(|c| c.name == "rei_console").expect("the session cookie");
    assert!(session.http_only && session.secure, "{session:?}");
    assert_eq!(session.same_site.as_deref(), Some("Strict"));

    // Dashboard: the KPIs are the store's figures; the charts are drawn.
    let members = engine.members().stats(engine.clock().now()).await.expect("stats");
    assert_eq!(b.text("#kpi-users .value").await, members.total.to_string());
    let totals = engine.reports().ledger_totals().await.expect("totals");
    assert_eq!(flat(&b.text("#kpi-held .value").await), flat(&rub(totals.held)));
    assert_eq!(b.text("#kpi-generations .value").await, "4");
    assert_eq!(flat(&b.text("#kpi-topups .value").await), flat(&rub(money("600.00"))));
    assert_eq!(b.find_all("#chart-revenue rect.bar").await.len(), 24, "one bar per hour of the day");
    let revenue = b.find("#chart-revenue").await.attr("data-total").await.expect("total");
    assert_eq!(revenue, s.succeeded.price.kopecks().to_string(), "the day's revenue is the one capture");
    assert_eq!(b.find_all("#chart-generations polyline").await.len(), 2);
    b.screenshot("console-dashboard").await;
    go(&b, "nav.ranges a[href$='range=7d']").await;
    assert!(b.text("#chart-revenue figcaption").await.contains("7 days"));

    // Users: search by username lands on the user's page, which shows the store's balance and jobs.
    go(&b, "header nav a[href='/admin/users']").await;
    let search = b.find("form.search input[name=q]").await;
    search.send_keys("@ann").await;
    go(&b, "form.search button").await;
    assert!(b.current_url().await.ends_with(&format!("/admin/users/{ANN}")));
    let kopecks = |css: &'static str| {
        let b = &b;
        async move { b.find(css).await.attr("data-kopecks").await.expect("kopecks").parse::<i64>().expect("int") }
    };
    assert_eq!(kopecks("#available").await, before.available.kopecks());
    assert_eq!(kopecks("#held").await, before.held.kopecks());
    assert_eq!(b.find_all("#jobs tbody tr").await.len(), 4);
    let thumb = b.find(&format!("#jobs tr[data-job='{}'] img.thumb", s.succeeded.id)).await;
    let loaded = b.execute("return arguments[0].complete && arguments[0].naturalWidth", vec![thumb.json()]).await;
    assert_eq!(loaded, serde_json::json!(1), "the result's thumbnail loads");
    assert!(b.text("#referees").await.contains("Bob"), "Bob joined with Ann's code");
    b.screenshot("console-user").await;

    // Adjust with a reason: the balance moves once, the audit log has it.
    b.find("#adjust input[name=amount]").await.send_keys("-50.00").await;
    b.find("#adjust input[name=reason]").await.send_keys("goodwill correction").await;
    go(&b, "#adjust button").await;
    assert!(b.text("#notice").await.contains("Adjusted"), "{}", b.text("#notice").await);
    let after = engine.billing().balance(UserId(ANN)).await.expect("balance");
    assert_eq!(after.available, before.available.checked_sub(money("50.00")).expect("sub"));
    assert_eq!(kopecks("#available").await, after.available.kopecks(), "the page shows the new balance");
    let audit = engine.audit().list(&AuditFilter::latest(10)).await.expect("audit");
    assert!(audit.iter().any(|r| r.action == AuditAction::Adjust
        && r.outcome == AuditOutcome::Done
        && r.actor == UserId(ADMIN)
        && r.reason.as_str() == "goodwill correction"));

    // Refund the delivered job to the wallet.
    go(&b, "#refund button").await;
    assert!(b.text("#notice").await.contains("Refunded"), "{}", b.text("#notice").await);
    let refunded = engine.billing().balance(UserId(ANN)).await.expect("balance");
    assert_eq!(refunded.available, after.available.checked_add(s.succeeded.price).expect("add"));

    // Ban and unban.
    b.find("#ban input[name=reason]").await.send_keys("spam").await;
    go(&b, "#ban button").await;
    assert_eq!(b.text("#status").await, "banned");
    let now = engine.clock().now();
    assert!(engine.members().get(UserId(ANN)).await.expect("get").expect("ann").is_banned(now));
    go(&b, "#unban button").await;
    assert_eq!(b.text("#status").await, "active");
    assert!(!engine.members().get(UserId(ANN)).await.expect("get").expect("ann").is_banned(now));

    // Jobs: the queue, the unknown outcome and the queued job, released by the operator.
    go(&b, "header nav a[href='/admin/jobs']").await;
    assert_eq!(b.text("#queue-normal .value").await, "1", "the gold fox waits");
    assert_eq!(b.text("#queue-dead .value").await, "1", "the failed job's ticket is a dead letter");
    assert!(b.text("#dead").await.contains("released"), "the dead letter's money was released");
    b.screenshot("console-jobs").await;
    let held = engine.billing().balance(UserId(ANN)).await.expect("balance").held;
    go(&b, &format!("#unknown tr[data-job='{}'] button[value=release]", s.unknown.id)).await;
    assert!(b.text("#notice").await.contains("failed"), "{}", b.text("#notice").await);
    let job = engine.jobs().get(s.unknown.id).await.expect("get").expect("job");
    assert_eq!(job.state, JobState::Failed);
    go(&b, &format!("#queued tr[data-job='{}'] button[value=cancel]", s.queued.id)).await;
    let job = engine.jobs().get(s.queued.id).await.expect("get").expect("job");
    assert_eq!(job.state, JobState::Cancelled);
    let released = engine.billing().balance(UserId(ANN)).await.expect("balance").held;
    assert_eq!(released, held.checked_sub(s.unknown.price).and_then(|h| h.checked_sub(s.queued.price)).expect("sub"));
    assert_eq!(released, Money::ZERO);

    // Payments: Ann's card payment, refunded in part to the card.
    go(&b, "header nav a[href='/admin/payments']").await;
    let row = format!("#payments tr[data-payment='{}']", s.payment);
    assert_eq!(b.text(&format!("{row} td.status")).await, "succeeded");
    b.screenshot("console-payments").await;
    let wallet = engine.billing().balance(UserId(ANN)).await.expect("balance").available;
    let posts = s.fake.posts();
    let amount = b.find(&format!("{row} input[name=amount]")).await;
    amount.clear().await;
    amount.send_keys("100.00").await;
    go(&b, &format!("{row} button")).await;
    assert!(b.text("#notice").await.contains("Refund"), "{}", b.text("#notice").await);
    let wallet_after = engine.billing().balance(UserId(ANN)).await.expect("balance").available;
    assert_eq!(wallet_after, wallet.checked_sub(money("100.00")).expect("sub"), "the card refund left the wallet");
    assert_eq!(s.fake.posts(), posts + 1, "the refund went to YooKassa once");

    // Providers: usage from the attempts, and a model switched off.
    go(&b, "header nav a[href='/admin/providers']").await;
    b.screenshot("console-providers").await;
    let model = "#models tr[data-model='gemini/gemini-2.5-flash-image']";
    assert_eq!(b.text(&format!("{model} td.state")).await, "on");
    go(&b, &format!("{model} button")).await;
    assert_eq!(b.text(&format!("{model} td.state")).await, "off");
    let switches = engine.provider_board().models().await.expect("models");
    assert!(switches.iter().any(|m| m.model == "gemini-2.5-flash-image" && !m.enabled));

    // Ledger: verify now is clean and the accounts sum to zero; the audit log lists the actions.
    go(&b, "header nav a[href='/admin/ledger']").await;
    assert_eq!(b.find("#ledger-sum").await.attr("data-kopecks").await.as_deref(), Some("0"));
    go(&b, "#verify").await;
    assert_eq!(b.text("#verify-result .status").await, "Clean");
    let logged = b.find_all("#audit tbody tr").await.len();
    let stored = engine.audit().list(&AuditFilter::latest(50)).await.expect("audit").len();
    assert_eq!(logged, stored);
    b.screenshot("console-ledger").await;

    // SLOs: the three objectives with their budgets.
    go(&b, "header nav a[href='/admin/slo']").await;
    assert_eq!(b.find_all("section.slo").await.len(), 3);
    assert!(b.text("#slo-job_success").await.contains("99.5"), "{}", b.text("#slo-job_success").await);
    b.screenshot("console-slo").await;

    // Bob's money was never touched by any of it.
    assert_eq!(engine.billing().balance(UserId(BOB)).await.expect("balance").available, money("100.00"));

    // Sign out: the session is gone.
    go(&b, "form.logout button").await;
    assert!(b.current_url().await.ends_with("/admin/login"));
    b.goto(&format!("{base}/admin/dashboard")).await;
    assert!(b.current_url().await.ends_with("/admin/login"), "signed out, the console asks to sign in");
    b.screenshot("console-login").await;
    b.quit().await;
}
