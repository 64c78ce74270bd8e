//! The webhooks: YooKassa's fail-closed notices against the fake YooKassa, and Telegram's secret token.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use rei_adapters::fakes::yookassa::FakeYooKassa;
use rei_adapters::yookassa::{YooKassa, YooKassaConfig};
use rei_core::money::Money;
use rei_core::topups::{SourceAllowlist, TopUpsConfig};
use rei_http::HttpConfig;
use rei_http::webhooks::{TelegramHook, UpdateError, UpdateHandler, WebhookSources};
use serde_json::{Value, json};

use crate::support::{Server, json, own_recorder, problem, sample, start_with};

const SHOP: &str = "100500";
const SECRET: &str = "test_secret";

/// A server whose payments go to a fake YooKassa and whose notices are accepted from `allow`.
async fn with_gateway(allow: &[&str], proxies: &[&str]) -> (Server, FakeYooKassa) {
    with_gateway_secret(allow, proxies, None).await
}

/// [`with_gateway`] whose notice URL must carry `secret`.
async fn with_gateway_secret(allow: &[&str], proxies: &[&str], secret: Option<&str>) -> (Server, FakeYooKassa) {
    let fake = FakeYooKassa::start(SHOP, SECRET).await.expect("fake");
    let config = YooKassaConfig {
        base_url: fake.base_url(),
        retry_pause: Duration::from_millis(10),
        ..YooKassaConfig::new(SHOP, SECRET)
    };
    let sources = WebhookSources {
        allowlist: SourceAllowlist::parse(allow).expect("allowlist"),
        trusted_proxies: SourceAllowlist::parse(proxies).expect("proxies"),
        yookassa_secret: secret.map(str::to_owned),
    };
    let server = start_with(
        Box::new(move |state| {
            let gateway = Arc::new(YooKassa::new(config).expect("adapter"));
            state.topups = Some(Arc::new(state.engine.top_ups(gateway, TopUpsConfig::default())));
            state.webhooks = sources;
        }),
        HttpConfig::default(),
    )
    .await;
    (server, fake)
}

/// Creates a top-up through the API; returns the payment id.
async fn top_up(s: &Server, user: i64, rubles: &str, topup: &str) -> String {
    let body = json!({"user_id": user, "amount": rubles, "topup_id": topup, "return_url": "https://t.me/rei_bot"});
    let (status, payment) = json(s.post("/v1/topups", &body).await).await;
    assert_eq!(status, 201, "{payment}");
    assert_eq!(payment["status"], "pending");
    assert!(payment["confirmation_url"].as_str().is_some_and(|u| u.starts_with("http")));
    payment["payment_id"].as_str().expect("id").to_owned()
}

fn notice(event: &str, id: &str, rubles: &str) -> Value {
    json!({"type": "notification", "event": event,
           "object": {"id": id, "status": "succeeded", "amount": {"value": rubles, "currency": "RUB"},
                      "metadata": {"user_id": "1", "topup_id": "forged"}}})
}

async fn deliver(s: &Server, body: &Value) -> reqwest::Response {
    s.client.post(format!("{}/webhooks/yookassa", s.base)).json(body).send().await.expect("send")
}

#[tokio::test]
async fn with_a_webhook_secret_a_notice_without_it_is_refused_and_changes_nothing() {
    // Proves YOOKASSA_WEBHOOK_SECRET: a notice from the gateway's address without the URL's secret (or with a
    // wrong one) is 403 and credits nothing; with it, the payment is credited.
    let (s, fake) = with_gateway_secret(&["127.0.0.1"], &[], Some("hook-secret-0123456789")).await;
    let id = top_up(&s, 23, "150.00", "t-23").await;
    assert!(fake.set_status(&id, "succeeded"));
    let body = notice("payment.succeeded", &id, "150.00");
    for query in ["", "?secret=wrong", "?secret="] {
        let url = format!("{}/webhooks/yookassa{query}", s.base);
        let response = s.client.post(url).json(&body).send().await.expect("send");
        assert_eq!(response.status().as_u16(), 403, "{query}");
    }
    assert_eq!(s.available(23).await, Money::from_kopecks(0));
    let url = format!("{}/webhooks/yookassa?secret=hook-secret-0123456789", s.base);
    assert_eq!(s.client.post(url).json(&body).send().await.expect("send").status().as_u16(), 200);
    assert_eq!(s.available(23).await, Money::from_kopecks(15_000));
}

#[tokio::test]
async fn the_same_notice_100_times_at_once_and_100_in_turn_credits_once() {
    // Proves the keyed credit: 100 concurrent and 100 sequential deliveries of one payment.succeeded all answer
    // 200 and the balance grows by the payment once; the ledger verifies.
    let (s, fake) = with_gateway(&["127.0.0.1"], &[]).await;
    let s = Arc::new(s);
    let id = top_up(&s, 21, "250.00", "t-21").await;
    assert!(fake.set_status(&id, "succeeded"));
    let body = notice("payment.succeeded", &id, "250.00");
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let (s, body) = (s.clone(), body.clone());
            tokio::spawn(async move { deliver(&s, &body).await.status().as_u16() })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.expect("join"), 200);
    }
    for _ in 0..100 {
        assert_eq!(deliver(&s, &body).await.status(), 200);
    }
    assert_eq!(s.available(21).await, Money::parse("250.00").expect("money"));
    let top_ups = s.engine.ledger().history(rei_core::ids::UserId(21), None, 1000).await.expect("history");
    assert_eq!(top_ups.len(), 1, "one transaction");
    assert!(s.engine.billing().verify().await.expect("verify").is_clean());
}

#[tokio::test]
async fn only_the_gateways_word_is_believed() {
    // Proves the re-read: a notice claiming 99 999 ₽ credits what the gateway says (100 ₽); a notice about a
    // payment the gateway does not have, or one still pending, is refused (4xx) and changes nothing;
    // `canceled` after `succeeded` changes nothing.
    let (s, fake) = with_gateway(&["127.0.0.1"], &[]).await;
    let id = top_up(&s, 22, "100.00", "t-22").await;
    problem(deliver(&s, &notice("payment.succeeded", &id, "99999.00")).await, 400, "notice-refused").await;
    assert_eq!(s.available(22).await, Money::ZERO, "pending: nothing credited");
    fake.set_status(&id, "succeeded");
    assert_eq!(deliver(&s, &notice("payment.succeeded", &id, "99999.00")).await.status(), 200);
    assert_eq!(s.available(22).await, Money::parse("100.00").expect("money"), "the gateway's amount");
    assert_eq!(deliver(&s, &notice("payment.canceled", &id, "100.00")).await.status(), 200);
    assert_eq!(s.available(22).await, Money::parse("100.00").expect("money"), "canceled after succeeded: no change");
    let forged = notice("payment.succeeded", "2f000000-000f-5000-9000-000000000000", "500.00");
    problem(deliver(&s, &forged).await, 400, "notice-refused").await;
    assert_eq!(s.available(1).await, Money::ZERO);
    assert!(s.engine.billing().verify().await.expect("verify").is_clean());
}

#[tokio::test]
async fn a_canceled_or_waiting_payment_credits_nothing_and_other_events_are_acknowledged() {
    // Proves payment.canceled and payment.waiting_for_capture handled with no money moved, and an unknown event
    // acknowledged with 200.
    let (s, fake) = with_gateway(&["127.0.0.1"], &[]).await;
    let id = top_up(&s, 23, "50.00", "t-23").await;
    assert_eq!(deliver(&s, &notice("payment.waiting_for_capture", &id, "50.00")).await.status(), 200);
    fake.set_status(&id, "canceled");
    assert_eq!(deliver(&s, &notice("payment.canceled", &id, "50.00")).await.status(), 200);
    assert_eq!(deliver(&s, &notice("payment.succeeded", &id, "50.00")).await.status(), 400);
    assert_eq!(deliver(&s, &notice("deal.closed", &id, "50.00")).await.status(), 200);
    assert_eq!(s.available(23).await, Money::ZERO);
}

#[tokio::test]
async fn each_payment_counts_once_by_its_outcome() {
    // Proves payments_total from the notices: a payment whose notice comes 5 times counts succeeded once, a
    // canceled one (told twice) canceled once, a notice the gateway could not be asked about failed once per
    // failed delivery (and succeeded once redelivered), and a forged notice is no payment, only a webhook error.
    let recorder = own_recorder();
    let _local = metrics::set_default_local_recorder(&recorder);
    let (s, fake) = with_gateway(&["127.0.0.1"], &[]).await;
    let paid = top_up(&s, 40, "120.00", "t-40").await;
    assert!(fake.set_status(&paid, "succeeded"));
    for _ in 0..5 {
        assert_eq!(deliver(&s, &notice("payment.succeeded", &paid, "120.00")).await.status(), 200);
    }
    let canceled = top_up(&s, 41, "30.00", "t-41").await;
    assert!(fake.set_status(&canceled, "canceled"));
    for _ in 0..2 {
        assert_eq!(deliver(&s, &notice("payment.canceled", &canceled, "30.00")).await.status(), 200);
    }
    let late = top_up(&s, 42, "80.00", "t-42").await;
    assert!(fake.set_status(&late, "succeeded"));
    fake.read_script().set_default(rei_adapters::fakes::yookassa::YooKassaOutcome::ServerError);
    problem(deliver(&s, &notice("payment.succeeded", &late, "80.00")).await, 503, "notice-not-handled").await;
    fake.read_script().set_default(rei_adapters::fakes::yookassa::YooKassaOutcome::Normal);
    assert_eq!(deliver(&s, &notice("payment.succeeded", &late, "80.00")).await.status(), 200);
    let forged = notice("payment.succeeded", "2f000000-000f-5000-9000-00000000004f", "500.00");
    problem(deliver(&s, &forged).await, 400, "notice-refused").await;

    let text = recorder.handle().render();
    for (series, value) in [
        ("payments_total{gateway=\"yookassa\",outcome=\"succeeded\"}", "2"),
        ("payments_total{gateway=\"yookassa\",outcome=\"canceled\"}", "1"),
        ("payments_total{gateway=\"yookassa\",outcome=\"failed\"}", "1"),
        ("payment_webhook_errors{provider=\"yookassa\",reason=\"refused\"}", "1"),
        ("payment_webhook_errors{provider=\"yookassa\",reason=\"unavailable\"}", "1"),
        ("topups_kopecks_total", "20000"),
    ] {
        assert_eq!(sample(&text, series), Some(value), "{series} in:\n{text}");
    }
}

#[tokio::test]
async fn a_notice_from_outside_the_allowlist_is_403_and_changes_nothing() {
    // Proves the first check: with YooKassa's published ranges, a notice from 127.0.0.1 is refused before the
    // gateway is asked, and a forwarded-for header is believed only from a trusted proxy.
    let (s, fake) = with_gateway(&["185.71.76.0/27"], &[]).await;
    let id = top_up(&s, 24, "10.00", "t-24").await;
    fake.set_status(&id, "succeeded");
    problem(deliver(&s, &notice("payment.succeeded", &id, "10.00")).await, 403, "source-not-allowed").await;
    let spoofed = s
        .client
        .post(format!("{}/webhooks/yookassa", s.base))
        .header("x-forwarded-for", "185.71.76.1")
        .json(&notice("payment.succeeded", &id, "10.00"))
        .send()
        .await
        .expect("send");
    problem(spoofed, 403, "source-not-allowed").await;
    assert_eq!(s.available(24).await, Money::ZERO);

    // Behind a trusted proxy (127.0.0.1), the last untrusted forwarded address is the source.
    let (s, fake) = with_gateway(&["185.71.76.0/27"], &["127.0.0.1"]).await;
    let id = top_up(&s, 25, "10.00", "t-25").await;
    fake.set_status(&id, "succeeded");
    let via_proxy = |forwarded: &'static str| {
        s.client
            .post(format!("{}/webhooks/yookassa", s.base))
            .header("x-forwarded-for", forwarded)
            .json(&notice("payment.succeeded", &id, "10.00"))
            .send()
    };
    problem(via_proxy("185.71.76.1, 10.0.0.9").await.expect("send"), 403, "source-not-allowed").await;
    assert_eq!(via_proxy("10.0.0.9, 185.71.76.1").await.expect("send").status(), 200);
    assert_eq!(s.available(25).await, Money::parse("10.00").expect("money"));
}

#[tokio::test]
async fn malformed_and_oversized_notices_are_refused() {
    // Proves malformed JSON 400, a body over the limit 413, and a notice with no object id 400.
    let (s, _fake) = with_gateway(&["127.0.0.1"], &[]).await;
    let url = format!("{}/webhooks/yookassa", s.base);
    let r = s.client.post(&url).body("{not json").send().await.expect("send");
    problem(r, 400, "malformed-notice").await;
    let r = s.client.post(&url).body(vec![b' '; 65 * 1024]).send().await.expect("send");
    problem(r, 413, "body-too-large").await;
    let r =
        s.client.post(&url).json(&json!({"type": "notification", "event": "payment.succeeded", "object": {}})).send();
    problem(r.await.expect("send"), 400, "malformed-notice").await;
}

#[tokio::test]
async fn a_refund_notice_is_checked_with_the_gateway() {
    // Proves refund.succeeded: confirmed when the gateway has the refund, refused when it does not.
    use rei_core::ids::{IdempotencyKey, PaymentId};
    use rei_core::payments::{PaymentGateway, RefundRequest};
    let (s, fake) = with_gateway(&["127.0.0.1"], &[]).await;
    let id = top_up(&s, 26, "30.00", "t-26").await;
    fake.set_status(&id, "succeeded");
    let gateway = YooKassa::new(YooKassaConfig { base_url: fake.base_url(), ..YooKassaConfig::new(SHOP, SECRET) })
        .expect("adapter");
    let refund = gateway
        .create_refund(
            &IdempotencyKey::parse("refund-26").expect("key"),
            &RefundRequest {
                payment: PaymentId::parse(&id).expect("id"),
                amount: Money::parse("30.00").expect("money"),
                description: None,
            },
        )
        .await
        .expect("refund");
    let body = json!({"type": "notification", "event": "refund.succeeded", "object": {"id": refund.id, "status": "succeeded"}});
    assert_eq!(deliver(&s, &body).await.status(), 200);
    let unknown = json!({"type": "notification", "event": "refund.succeeded", "object": {"id": "2f000000-0015-5000-8000-000000000000"}});
    problem(deliver(&s, &unknown).await, 400, "notice-refused").await;
}

/// Counts the updates it handles; fails the first `fail` of them as unavailable.
#[derive(Default)]
struct Counting(AtomicUsize, AtomicUsize);

#[async_trait]
impl UpdateHandler for Counting {
    async fn handle(&self, body: &[u8]) -> Result<(), UpdateError> {
        serde_json::from_slice::<Value>(body).map_err(|e| UpdateError::Malformed(e.to_string()))?;
        if self.1.load(Ordering::SeqCst) > 0 {
            self.1.fetch_sub(1, Ordering::SeqCst);
            return Err(UpdateError::Unavailable("the store is down".into()));
        }
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

#[tokio::test]
async fn a_telegram_update_is_handled_once_and_a_failed_one_again() {
    // Proves the update log on the webhook: one update delivered 20 times at once and 5 more in turn is handled
    // once; an update whose handling failed (503) is handled when Telegram delivers it again.
    let handler = Arc::new(Counting::default());
    let h = handler.clone();
    let s = Arc::new(
        start_with(
            Box::new(move |state| state.telegram = Some(TelegramHook { secret: "tok".into(), handler: h })),
            HttpConfig::default(),
        )
        .await,
    );
    let send = |s: Arc<Server>, update: Value| async move {
        let r = s.client.post(format!("{}/webhooks/telegram", s.base)).header("x-telegram-bot-api-secret-token", "tok");
        r.json(&update).send().await.expect("send").status().as_u16()
    };
    let update =
        json!({"update_id": 777, "message": {"message_id": 1, "chat": {"id": 1, "type": "private"}, "date": 0}});
    let tasks: Vec<_> = (0..20).map(|_| tokio::spawn(send(s.clone(), update.clone()))).collect();
    for t in tasks {
        assert_eq!(t.await.expect("join"), 200);
    }
    for _ in 0..5 {
        assert_eq!(send(s.clone(), update.clone()).await, 200);
    }
    assert_eq!(handler.0.load(Ordering::SeqCst), 1, "handled once");
    handler.1.store(1, Ordering::SeqCst);
    let other =
        json!({"update_id": 778, "message": {"message_id": 2, "chat": {"id": 1, "type": "private"}, "date": 0}});
    assert_eq!(send(s.clone(), other.clone()).await, 503);
    assert_eq!(send(s.clone(), other).await, 200);
    assert_eq!(handler.0.load(Ordering::SeqCst), 2, "the failed update handled on its redelivery");
}

#[tokio::test]
async fn telegram_updates_need_the_secret_token() {
    // Proves the Telegram webhook: no token 401, a wrong token 403, nothing processed by either; the right one
    // reaches the handler; no bot configured 503.
    let handler = Arc::new(Counting::default());
    let h = handler.clone();
    let s = start_with(
        Box::new(move |state| state.telegram = Some(TelegramHook { secret: "s3cr3t-token".into(), handler: h })),
        HttpConfig::default(),
    )
    .await;
    let url = format!("{}/webhooks/telegram", s.base);
    let update = json!({"update_id": 1, "message": {"message_id": 1, "chat": {"id": 1, "type": "private"}, "date": 0}});
    problem(s.client.post(&url).json(&update).send().await.expect("send"), 401, "no-secret-token").await;
    let wrong = s.client.post(&url).header("x-telegram-bot-api-secret-token", "s3cr3t-tokem").json(&update);
    problem(wrong.send().await.expect("send"), 403, "wrong-secret-token").await;
    assert_eq!(handler.0.load(Ordering::SeqCst), 0, "nothing processed");
    let right = s.client.post(&url).header("x-telegram-bot-api-secret-token", "s3cr3t-token");
    assert_eq!(right.json(&update).send().await.expect("send").status(), 200);
    assert_eq!(handler.0.load(Ordering::SeqCst), 1);
    let garbage = s.client.post(&url).header("x-telegram-bot-api-secret-token", "s3cr3t-token").body("{");
    problem(garbage.send().await.expect("send"), 400, "malformed-update").await;

    let bare = crate::support::start().await;
    let r = bare.client.post(format!("{}/webhooks/telegram", bare.base)).json(&update).send().await.expect("send");
    problem(r, 503, "bot-not-configured").await;
}

#[tokio::test]
async fn a_card_refund_takes_the_wallet_money_once_and_reaches_the_gateway() {
    // Proves POST /v1/refunds for YooKassa: the wallet gives the money back once per refund id (a repeat with
    // the same refund id is the same refund), never more than the payment brought in, and the gateway has it.
    let (s, fake) = with_gateway(&["127.0.0.1"], &[]).await;
    let id = top_up(&s, 27, "100.00", "t-27").await;
    fake.set_status(&id, "succeeded");
    assert_eq!(deliver(&s, &notice("payment.succeeded", &id, "100.00")).await.status(), 200);
    let refund = json!({"user_id": 27, "payment_id": id, "amount": "40.00", "refund_id": "r-27-1"});
    let (status, first) = json(s.post("/v1/refunds", &refund).await).await;
    assert_eq!(status, 201, "{first}");
    assert_eq!((first["provider"].as_str(), first["amount"].as_str()), (Some("yookassa"), Some("40.00")));
    let (status, again) = json(s.post("/v1/refunds", &refund).await).await;
    assert_eq!((status, &again["refund_id"]), (201, &first["refund_id"]), "one refund per refund id");
    assert_eq!(s.available(27).await, Money::parse("60.00").expect("money"));
    let too_much = json!({"user_id": 27, "payment_id": id, "amount": "70.00", "refund_id": "r-27-2"});
    problem(s.post("/v1/refunds", &too_much).await, 409, "ledger-refused").await;
    assert_eq!(s.available(27).await, Money::parse("60.00").expect("money"), "a refused refund takes nothing");
    let narrow = s.key(&[rei_core::access::Scope::TopUpsWrite], 100).await;
    let r = s.request(reqwest::Method::POST, "/v1/refunds", &narrow).header("Idempotency-Key", "x").json(&refund);
    problem(r.send().await.expect("send"), 403, "scope").await;
    assert!(s.engine.billing().verify().await.expect("verify").is_clean());
}

#[tokio::test]
async fn a_configured_receipt_goes_with_every_payment() {
    // Proves the 54-FZ receipt from configuration: the payment YooKassa gets carries it, with the payment's
    // amount, the configured item, VAT code and the buyer's contact.
    let fake = FakeYooKassa::start(SHOP, SECRET).await.expect("fake");
    let config = YooKassaConfig { base_url: fake.base_url(), ..YooKassaConfig::new(SHOP, SECRET) };
    let receipt = rei_core::payments::Receipt {
        customer_email: Some("shop@example.com".into()),
        customer_phone: None,
        item_description: "Пополнение баланса".into(),
        vat_code: 1,
        payment_mode: "full_prepayment".into(),
        payment_subject: "service".into(),
        tax_system_code: Some(2),
    };
    let s = start_with(
        Box::new(move |state| {
            let gateway = Arc::new(YooKassa::new(config).expect("adapter"));
            let topups = TopUpsConfig { receipt: Some(receipt), ..TopUpsConfig::default() };
            state.topups = Some(Arc::new(state.engine.top_ups(gateway, topups)));
        }),
        HttpConfig::default(),
    )
    .await;
    let id = top_up(&s, 28, "250.00", "t-28").await;
    let sent = fake.created_with(&id).expect("the payment's body");
    assert_eq!(sent["receipt"]["customer"]["email"], "shop@example.com", "{sent}");
    assert_eq!(sent["receipt"]["items"][0]["amount"]["value"], "250.00");
    assert_eq!(sent["receipt"]["items"][0]["vat_code"], 1);
    assert_eq!(sent["receipt"]["tax_system_code"], 2);
}

#[tokio::test]
async fn a_gateway_refusal_is_502_and_an_unconfigured_webhook_503() {
    // Proves POST /v1/topups answers 502 when YooKassa refuses (the same top-up id asked again with another
    // amount reuses its idempotence key), and the YooKassa webhook of a server without a gateway answers 503 so
    // that YooKassa delivers again once it is configured.
    let (s, _fake) = with_gateway(&["127.0.0.1"], &[]).await;
    top_up(&s, 29, "10.00", "t-29").await;
    let other = json!({"user_id": 29, "amount": "20.00", "topup_id": "t-29", "return_url": "https://t.me/rei_bot"});
    problem(s.post("/v1/topups", &other).await, 502, "gateway-refused").await;

    let bare = start_with(
        Box::new(|state| {
            state.webhooks = WebhookSources {
                allowlist: SourceAllowlist::parse(&["127.0.0.1"]).expect("list"),
                ..WebhookSources::default()
            };
        }),
        HttpConfig::default(),
    )
    .await;
    let r = deliver(&bare, &notice("payment.succeeded", "2f000000-000f-5000-9000-000000000001", "1.00")).await;
    problem(r, 503, "payments-not-configured").await;
}
