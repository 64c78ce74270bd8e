//! The operator console over HTTP: a stage with members, money, payments and jobs in every state, and the
//! refusals (a forged or expired Login Widget answer, a non-admin, a missing CSRF token, no session), each of
//! which changes nothing. The browser tests (`browser.rs`) walk the same stage through every page and action.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rei_adapters::assets::ObjectAssetStore;
use rei_adapters::fakes::yookassa::FakeYooKassa;
use rei_adapters::yookassa::{YooKassa, YooKassaConfig};
use rei_core::generation::{AssetKey, AssetStore, GenerationRequest};
use rei_core::guards::AuditFilter;
use rei_core::ids::{JobId, ProductId, ProviderId, UserId};
use rei_core::jobs::{ErrorText, Job, Priority, WorkerId};
use rei_core::members::{GrowthConfig, Profile};
use rei_core::money::Money;
use rei_core::pricing::Tier;
use rei_core::routing::Capability;
use rei_core::topups::{SourceAllowlist, TopUpsConfig};
use rei_http::HttpConfig;
use rei_http::console::session::{Signer, sign_login};
use rei_http::webhooks::WebhookSources;
use reqwest::redirect::Policy;
use serde_json::json;

use crate::support::{Server, json, start_pg_with, start_with};

/// The bot token the stage's Login Widget answers are signed with.
pub(crate) const BOT_TOKEN: &str = "424242:console-test-token";
/// The admin in `ADMIN_IDS`.
pub(crate) const ADMIN: i64 = 1000;
/// Members.
pub(crate) const ANN: i64 = 101;
pub(crate) const BOB: i64 = 102;

/// A server with the console on, a fake YooKassa, local assets, and a seeded store.
pub(crate) struct Stage {
    pub(crate) server: Server,
    pub(crate) fake: FakeYooKassa,
    /// Jobs by what happened to them.
    pub(crate) succeeded: Job,
    pub(crate) failed: Job,
    pub(crate) unknown: Job,
    pub(crate) queued: Job,
    /// Ann's credited card payment.
    pub(crate) payment: String,
    _assets: tempfile::TempDir,
}

/// A one-pixel PNG.
const PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4, 0x89, 0x00, 0x00, 0x00, 0x0d, 0x49,
    0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0x60, 0x60, 0xf8, 0x0f, 0x00, 0x01, 0x04, 0x01, 0x00, 0x5f, 0xe5, 0xc3, 0x4b,
    0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
];

pub(crate) async fn stage() -> Stage {
    stage_on(false).await
}

/// The stage on SQLite, or with `postgres` on PostgreSQL.
pub(crate) async fn stage_on(postgres: bool) -> Stage {
    let fake = FakeYooKassa::start("100500", "test_secret").await.expect("fake");
    let config = YooKassaConfig {
        base_url: fake.base_url(),
        retry_pause: Duration::from_millis(10),
        ..YooKassaConfig::new("100500", "test_secret")
    };
    let assets_dir = tempfile::tempdir().expect("assets dir");
    let assets: Arc<dyn AssetStore> =
        Arc::new(ObjectAssetStore::local(assets_dir.path(), 1 << 20).await.expect("local assets"));
    let store = assets.clone();
    let setup: crate::support::Setup = Box::new(move |state| {
        let gateway = Arc::new(YooKassa::new(config).expect("adapter"));
        state.topups = Some(Arc::new(state.engine.top_ups(gateway, TopUpsConfig::default())));
        state.webhooks = WebhookSources {
            allowlist: SourceAllowlist::parse(&["127.0.0.1"]).expect("allowlist"),
            ..WebhookSources::default()
        };
        let mut console = rei_http::console::ConsoleConfig::new(Signer::new(b"console test secret"));
        console.bot_token = Some(BOT_TOKEN.to_owned());
        console.bot_username = Some("rei_test_bot".to_owned());
        console.admins = vec![ADMIN];
        console.refresh_seconds = 0;
        console.models = vec![(ProviderId::parse("gemini").expect("id"), "gemini-2.5-flash-image".to_owned())];
        state.console = console;
        state.assets = Some(store);
    });
    let server = if postgres { start_pg_with(setup).await } else { start_with(setup, HttpConfig::default()).await };
    let engine = &server.engine;
    // No trial and no join bonus: every kopeck on the stage comes from a payment named here.
    let growth =
        engine.growth(GrowthConfig { trial: Money::ZERO, referral_join_bonus: Money::ZERO, ..GrowthConfig::default() });
    let ann = Profile {
        user: UserId(ANN),
        username: Some("ann".to_owned()),
        first_name: "Ann".to_owned(),
        language: Some("en".to_owned()),
    };
    let started = growth.start(&ann, None).await.expect("ann starts");
    let bob =
        Profile { user: UserId(BOB), username: Some("bob".to_owned()), first_name: "Bob".to_owned(), language: None };
    growth.start(&bob, Some(&started.member.referral_code)).await.expect("bob starts");
    // Ann pays 500 ₽ by card: created through the API, paid at the fake, notified to the webhook.
    let body =
        json!({"user_id": ANN, "amount": "500.00", "topup_id": "console-1", "return_url": "https://t.me/rei_bot"});
    let (status, created) = json(server.post("/v1/topups", &body).await).await;
    assert_eq!(status, 201, "{created}");
    let payment = created["payment_id"].as_str().expect("payment id").to_owned();
    assert!(fake.set_status(&payment, "succeeded"));
    let notice = json!({"type": "notification", "event": "payment.succeeded",
        "object": {"id": payment, "status": "succeeded", "amount": {"value": "500.00", "currency": "RUB"}}});
    let r = server.client.post(format!("{}/webhooks/yookassa", server.base)).json(&notice).send().await.expect("send");
    assert_eq!(r.status(), 200);
    assert_eq!(server.available(ANN).await, Money::parse("500.00").expect("money"));
    server.top_up(BOB, "100.00", "console-bob-1").await;
    // Ann's jobs, one after another (a user holds for at most two jobs at once): one delivered with a picture,
    // one failed, one with an unknown outcome, one waiting.
    let worker = WorkerId::parse("console-test").expect("worker");
    let jobs = engine.jobs();
    let provider = ProviderId::parse("gemini").expect("provider");
    let mut made = Vec::new();
    for (prompt, fate) in [("a red fox", 0), ("a blue fox", 1), ("a green fox", 2), ("a gold fox", 3)] {
        let job = order(&server, ANN, prompt).await;
        made.push(job.id);
        if fate == 3 {
            break;
        }
        let leased = jobs.lease(&worker).await.expect("lease").expect("a job");
        assert_eq!(leased.job.id, job.id, "the job just ordered is leased");
        match fate {
            0 => {
                let key = AssetKey::for_result(job.id, "image/png");
                assets.put(&key, PNG.to_vec()).await.expect("put");
                let leased = jobs.record_result(&leased, key).await.expect("result");
                jobs.complete(&leased, provider.clone()).await.expect("complete");
            }
            1 => {
                jobs.fail(&leased, ErrorText::new("the model refused the prompt"), false).await.expect("fail");
            }
            _ => {
                jobs.mark_unknown(&leased, ErrorText::new("timed out waiting for the provider"))
                    .await
                    .expect("unknown");
            }
        }
    }
    let get = |id: JobId| async move { engine.jobs().get(id).await.expect("get").expect("job") };
    let (succeeded, failed, unknown, queued) =
        (get(made[0]).await, get(made[1]).await, get(made[2]).await, get(made[3]).await);
    Stage { server, fake, succeeded, failed, unknown, queued, payment, _assets: assets_dir }
}

/// Quotes and orders an image for `user`.
async fn order(server: &Server, user: i64, prompt: &str) -> Job {
    let product = ProductId::parse("image.nano-banana").expect("product");
    let engine = &server.engine;
    let quote = engine.billing().quote(UserId(user), &product, 1, Tier::Basic).await.expect("quote");
    let request = GenerationRequest::text(Capability::TextToImage, prompt);
    engine.order(UserId(user), quote.id, request, Priority::Normal).await.expect("order")
}

const FORM: &str = "application/x-www-form-urlencoded";

fn encode(fields: &[(&str, &str)]) -> String {
    serde_urlencoded::to_string(fields).expect("form")
}

/// Posts a form with the session `cookie`.
async fn post(cookie: &str, url: &str, fields: &[(&str, &str)]) -> reqwest::Response {
    let request = client().post(url).header("cookie", cookie).header("content-type", FORM);
    request.body(encode(fields)).send().await.expect("send")
}

/// A client that keeps redirects and cookies to itself.
fn client() -> reqwest::Client {
    reqwest::Client::builder().redirect(Policy::none()).build().expect("client")
}

/// A Login Widget answer for `user`, signed with `token`, `age` old.
pub(crate) fn widget(user: i64, token: &str, age: Duration) -> BTreeMap<String, String> {
    let auth_date = (std::time::SystemTime::now() - age).duration_since(std::time::UNIX_EPOCH).expect("time").as_secs();
    let fields = [
        ("id", user.to_string()),
        ("first_name", "Admin".to_owned()),
        ("username", "boss".to_owned()),
        ("auth_date", auth_date.to_string()),
    ];
    sign_login(fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(), token)
}

/// The query string of a widget answer.
pub(crate) fn query(fields: &BTreeMap<String, String>) -> String {
    serde_urlencoded::to_string(fields).expect("query")
}

/// Signs in through the widget; returns the session cookie (`name=value`).
async fn sign_in(s: &Stage) -> String {
    let url = format!("{}/admin/auth/telegram?{}", s.server.base, query(&widget(ADMIN, BOT_TOKEN, Duration::ZERO)));
    let r = client().get(url).send().await.expect("send");
    assert_eq!(r.status(), 303, "a signed answer of an admin signs in");
    let cookie = r.headers().get("set-cookie").and_then(|v| v.to_str().ok()).expect("a session cookie").to_owned();
    for attribute in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/admin"] {
        assert!(cookie.contains(attribute), "{attribute} in {cookie}");
    }
    cookie.split(';').next().expect("name=value").to_owned()
}

/// What the store holds that an action could change: Ann's balance, the audit log's length, the jobs' states.
async fn snapshot(s: &Stage) -> (Money, Money, usize, Vec<String>) {
    let engine = &s.server.engine;
    let balance = engine.billing().balance(UserId(ANN)).await.expect("balance");
    let audit = engine.audit().list(&AuditFilter::latest(1_000)).await.expect("audit").len();
    let mut states = Vec::new();
    for j in [&s.succeeded, &s.failed, &s.unknown, &s.queued] {
        states.push(engine.jobs().get(j.id).await.expect("get").expect("job").state.to_string());
    }
    (balance.available, balance.held, audit, states)
}

#[tokio::test]
async fn the_widget_signs_in_admins_only_and_refuses_forged_or_old_answers() {
    // Proves the Login Widget check: a signed fresh answer of an ADMIN_IDS user opens a session; a wrong hash, a
    // field changed after signing, another bot's token, an expired auth_date and a non-admin are 403 and set no
    // cookie.
    let s = stage().await;
    let base = &s.server.base;
    sign_in(&s).await;
    let mut forged = widget(ADMIN, BOT_TOKEN, Duration::ZERO);
    forged.insert("hash".to_owned(), "0".repeat(64));
    let mut changed = widget(BOB, BOT_TOKEN, Duration::ZERO);
    changed.insert("id".to_owned(), ADMIN.to_string());
    let refusals = [
        ("a wrong hash", forged),
        ("an id changed after signing", changed),
        ("another bot's token", widget(ADMIN, "1:other", Duration::ZERO)),
        ("an expired auth_date", widget(ADMIN, BOT_TOKEN, Duration::from_secs(2 * 3_600))),
        ("a user who is not an admin", widget(BOB, BOT_TOKEN, Duration::ZERO)),
    ];
    for (what, fields) in refusals {
        let r = client().get(format!("{base}/admin/auth/telegram?{}", query(&fields))).send().await.expect("send");
        assert_eq!(r.status(), 403, "{what} is refused");
        assert!(r.headers().get("set-cookie").is_none(), "{what} sets no cookie");
    }
}

#[tokio::test]
async fn without_a_session_or_a_csrf_token_nothing_changes() {
    // Proves that every action needs a session and the session's CSRF token: a POST without a cookie, with a
    // forged cookie, without the token, or with another session's token is refused and changes no money, no job
    // and no audit record; and that pages without a session go to the sign-in page.
    let s = stage().await;
    let base = &s.server.base;
    let before = snapshot(&s).await;
    let r = client().get(format!("{base}/admin/dashboard")).send().await.expect("send");
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers().get("location").and_then(|v| v.to_str().ok()), Some("/admin/login"));
    let cookie = sign_in(&s).await;
    let other = sign_in(&s).await;
    let page = client().get(format!("{base}/admin/users/{ANN}")).header("cookie", &other).send().await.expect("send");
    let html = page.text().await.expect("page");
    let token = html.split("name=\"csrf\" value=\"").nth(1).and_then(|t| t.split('"').next()).expect("a csrf token");
    let adjust = format!("{base}/admin/users/{ANN}/adjust");
    let form = [("amount", "1000.00"), ("reason", "forged"), ("key", "k1")];
    let forged_cookie = format!("{}x", cookie);
    let attempts: [(&str, Option<&str>, Option<&str>); 4] = [
        ("no session", None, Some(token)),
        ("a forged session", Some(&forged_cookie), Some(token)),
        ("no token", Some(&cookie), None),
        ("another session's token", Some(&cookie), Some(token)),
    ];
    for (what, cookie, csrf) in attempts {
        let mut fields: Vec<(&str, &str)> = form.to_vec();
        if let Some(t) = csrf {
            fields.push(("csrf", t));
        }
        let mut request = client().post(&adjust).header("content-type", FORM).body(encode(&fields));
        if let Some(c) = cookie {
            request = request.header("cookie", c);
        }
        let r = request.send().await.expect("send");
        assert_eq!(r.status(), 403, "{what} is refused");
    }
    // The same form with the right session and token goes through: the refusals above were not a broken form.
    let mut fields: Vec<(&str, &str)> = form.to_vec();
    fields.push(("csrf", token));
    let r = client()
        .post(&adjust)
        .header("cookie", &other)
        .header("content-type", FORM)
        .body(encode(&fields))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    let after = snapshot(&s).await;
    assert_eq!(after.0, before.0.checked_add(Money::parse("1000.00").expect("money")).expect("sum"));
    assert_eq!((after.1, after.2, &after.3), (before.1, before.2 + 1, &before.3), "only the one good form acted");
    // The same form again (same request key) acts once.
    let r = client()
        .post(&adjust)
        .header("cookie", &other)
        .header("content-type", FORM)
        .body(encode(&fields))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    assert_eq!(snapshot(&s).await.0, after.0, "a repeated form moves no more money");
}

#[tokio::test]
async fn every_answer_carries_the_security_headers() {
    // Proves the CSP, X-Frame-Options, nosniff and no-store on the sign-in page, a signed-in page and a refusal.
    let s = stage().await;
    let base = &s.server.base;
    let cookie = sign_in(&s).await;
    for (path, cookie) in [("/admin/login", None), ("/admin/ledger", Some(&cookie)), ("/admin/nowhere", Some(&cookie))]
    {
        let mut r = client().get(format!("{base}{path}"));
        if let Some(c) = cookie {
            r = r.header("cookie", c.as_str());
        }
        let r = r.send().await.expect("send");
        let h = |n: &str| r.headers().get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        assert!(h("content-security-policy").contains("default-src 'none'"), "{path}");
        assert!(h("content-security-policy").contains("frame-ancestors 'none'"), "{path}");
        assert_eq!(h("x-frame-options"), "DENY", "{path}");
        assert_eq!(h("x-content-type-options"), "nosniff", "{path}");
    }
}

#[tokio::test]
async fn an_admin_key_signs_in_and_other_keys_do_not() {
    // Proves the API key sign-in: a key with the admin scope opens a session; a key without it, an unknown key
    // and a form without the sign-in cookie's token are refused.
    let s = stage().await;
    let base = &s.server.base;
    let login = client().get(format!("{base}/admin/login")).send().await.expect("send");
    let cookie = login.headers().get("set-cookie").and_then(|v| v.to_str().ok()).expect("login cookie").to_owned();
    let cookie = cookie.split(';').next().expect("pair").to_owned();
    let html = login.text().await.expect("page");
    assert!(html.contains("data-auth-url=\"/admin/auth/telegram\""), "the widget points at the auth URL");
    let token =
        html.split("name=\"csrf\" value=\"").nth(1).and_then(|t| t.split('"').next()).expect("token").to_owned();
    let weak = s.server.key(&[rei_core::access::Scope::UsersRead], 100).await;
    let cases = [
        (s.server.admin.clone(), Some(token.as_str()), 303),
        (weak, Some(token.as_str()), 403),
        ("rei_00_00".to_owned(), Some(token.as_str()), 401),
        (s.server.admin.clone(), None, 403),
    ];
    for (key, csrf, status) in cases {
        let mut fields = vec![("api_key", key.as_str())];
        if let Some(t) = csrf {
            fields.push(("csrf", t));
        }
        let r = client()
            .post(format!("{base}/admin/login"))
            .header("cookie", &cookie)
            .header("content-type", FORM)
            .body(encode(&fields))
            .send()
            .await;
        assert_eq!(r.expect("send").status(), status, "{fields:?}");
    }
}

#[tokio::test]
async fn on_postgres_every_page_shows_and_an_action_moves_money_once() {
    // Proves the console on PostgreSQL: every page answers 200 with its content for a signed-in admin, and an
    // adjustment sent twice with one request key moves the money once.
    let s = stage_on(true).await;
    let base = &s.server.base;
    let cookie = sign_in(&s).await;
    let get = |path: String| {
        let cookie = cookie.clone();
        async move {
            let r = client().get(format!("{base}{path}")).header("cookie", cookie).send().await.expect("send");
            (r.status().as_u16(), r.text().await.expect("page"))
        }
    };
    let pages = [
        ("/admin/dashboard", "kpi-users"),
        ("/admin/dashboard?range=30d", "chart-latency"),
        ("/admin/users?q=bob", "Bob"),
        (&*format!("/admin/users/{ANN}"), "i-am-not-here"),
        ("/admin/jobs", "queue-dead"),
        ("/admin/payments?provider=yookassa", &*s.payment),
        ("/admin/providers", "gemini-2.5-flash-image"),
        ("/admin/ledger", "ledger-sum"),
        ("/admin/slo", "slo-payment_success"),
    ];
    for (path, shows) in pages {
        let (status, html) = get(path.to_owned()).await;
        if shows == "i-am-not-here" {
            assert_eq!(status, 200, "{path}");
            assert!(html.contains(&s.succeeded.id.to_string()), "{path} lists Ann's jobs");
            continue;
        }
        assert!(status == 200 || status == 303, "{path}: {status}");
        if status == 200 {
            assert!(html.contains(shows), "{path} shows {shows}");
        }
    }
    let (_, html) = get(format!("/admin/users/{ANN}")).await;
    let token = html.split("name=\"csrf\" value=\"").nth(1).and_then(|t| t.split('"').next()).expect("token");
    let fields = [("amount", "25.00"), ("reason", "pg check"), ("key", "pg-1"), ("csrf", token)];
    let before = s.server.available(ANN).await;
    for _ in 0..2 {
        let r = post(&cookie, &format!("{base}/admin/users/{ANN}/adjust"), &fields).await;
        assert_eq!(r.status(), 200);
    }
    assert_eq!(s.server.available(ANN).await, before.checked_add(Money::parse("25.00").expect("money")).expect("sum"));
    // Retry the unknown outcome: the provider did not do the work, so the job waits in the queue again, its money
    // still held; the audit log has the retry.
    let held = s.server.engine.billing().balance(UserId(ANN)).await.expect("balance").held;
    let fields = [("key", "pg-2"), ("csrf", token)];
    let r = post(&cookie, &format!("{base}/admin/jobs/{}/retry", s.unknown.id), &fields).await;
    assert_eq!(r.status(), 200);
    let job = s.server.engine.jobs().get(s.unknown.id).await.expect("get").expect("job");
    assert_eq!(job.state, rei_core::jobs::JobState::Queued, "retried");
    assert_eq!(s.server.engine.billing().balance(UserId(ANN)).await.expect("balance").held, held, "still held");
    let audit = s.server.engine.audit().list(&AuditFilter::latest(10)).await.expect("audit");
    assert!(
        audit.iter().any(|a| a.action == rei_core::guards::AuditAction::RetryJob
            && a.outcome == rei_core::guards::AuditOutcome::Done)
    );
    // A failed job is not retried: its money was released; the refusal is audited and nothing moves.
    let fields = [("key", "pg-3"), ("csrf", token)];
    let r = post(&cookie, &format!("{base}/admin/jobs/{}/retry", s.failed.id), &fields).await;
    assert!(r.text().await.expect("page").contains("does not run again"));
    let job = s.server.engine.jobs().get(s.failed.id).await.expect("get").expect("job");
    assert_eq!(job.state, rei_core::jobs::JobState::Failed);
}
