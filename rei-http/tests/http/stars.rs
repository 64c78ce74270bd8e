//! Telegram Stars end to end through the server: an invoice link from `POST /v1/topups`, the pre-checkout
//! answered from the webhook at once, and `successful_payment` credited once and recorded, against the fake Bot
//! API.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rei_adapters::fakes::telegram::{FakeTelegram, updates};
use rei_adapters::telegram::BotApi;
use rei_core::ids::PaymentId;
use rei_core::money::Money;
use rei_core::stars::{StarsConfig, StarsPayments};
use rei_core::topups::{PaymentProvider, PaymentRecordStatus};
use rei_http::HttpConfig;
use rei_http::stars::StarsHook;
use rei_http::webhooks::TelegramHook;
use serde_json::json;

use crate::support::{Server, json, own_recorder, problem, sample, start_with};

const TOKEN: &str = "123456:ABC-test";
const SECRET: &str = "hook-secret";

async fn rig() -> (Arc<Server>, FakeTelegram) {
    let fake = FakeTelegram::start(TOKEN).await.expect("fake");
    let base = fake.base_url();
    let server = start_with(
        Box::new(move |state| {
            let payments = StarsPayments::new(state.engine.billing().clone(), StarsConfig::default()).expect("stars");
            let hook = Arc::new(StarsHook {
                payments: Arc::new(payments),
                api: Arc::new(BotApi::new(&base, TOKEN).expect("bot api")),
                records: state.engine.payments(),
                clock: state.engine.clock().clone(),
            });
            state.telegram = Some(TelegramHook { secret: SECRET.into(), handler: hook.clone() });
            state.stars = Some(hook);
        }),
        HttpConfig::default(),
    )
    .await;
    (Arc::new(server), fake)
}

async fn deliver(s: &Server, body: Vec<u8>) -> u16 {
    let r = s.client.post(format!("{}/webhooks/telegram", s.base)).header("x-telegram-bot-api-secret-token", SECRET);
    r.header("content-type", "application/json").body(body).send().await.expect("send").status().as_u16()
}

#[tokio::test]
async fn a_stars_top_up_is_invoiced_pre_checked_and_credited_once() {
    // Proves the Stars path on the embedded default with no YooKassa: an XTR invoice link; the pre-checkout
    // answered ok within 10 s (and a wrong currency refused); the same successful_payment 100 times at once and
    // 100 in turn credits 100 × 1.50 ₽ once, is recorded succeeded (and counted once), and the user is told once.
    let recorder = own_recorder();
    let _local = metrics::set_default_local_recorder(&recorder);
    let (s, fake) = rig().await;
    let body = json!({"user_id": 42, "provider": "stars", "stars": 100, "topup_id": "t-42"});
    let (status, invoice) = json(s.post("/v1/topups", &body).await).await;
    assert_eq!(status, 201, "{invoice}");
    assert_eq!((invoice["provider"].as_str(), invoice["amount"].as_str()), (Some("stars"), Some("150.00")));
    assert!(invoice["confirmation_url"].as_str().is_some_and(|u| u.starts_with("https://t.me/")));
    let link = fake.calls_of("createInvoiceLink");
    assert_eq!(link.len(), 1);
    assert_eq!(link[0].params["currency"], "XTR");
    assert_eq!(link[0].params["prices"].as_array().map(Vec::len), Some(1));
    let payload = link[0].params["payload"].as_str().expect("payload").to_owned();

    let sent = Instant::now();
    assert_eq!(deliver(&s, updates::pre_checkout_query(1, "q-1", 42, "XTR", 100, &payload)).await, 200);
    let answers = fake.calls_of("answerPreCheckoutQuery");
    assert_eq!(answers.len(), 1);
    assert_eq!(
        (answers[0].params["pre_checkout_query_id"].as_str(), answers[0].params["ok"].as_bool()),
        (Some("q-1"), Some(true))
    );
    assert!(answers[0].at.duration_since(sent) < Duration::from_secs(10));
    assert_eq!(deliver(&s, updates::pre_checkout_query(2, "q-2", 42, "USD", 100, &payload)).await, 200);
    let refused = fake.calls_of("answerPreCheckoutQuery");
    assert_eq!(refused[1].params["ok"], false);
    assert!(refused[1].params["error_message"].as_str().is_some_and(|m| !m.is_empty()));

    let paid = updates::successful_payment(3, 42, "XTR", 100, &payload, "charge-42");
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let (s, paid) = (s.clone(), paid.clone());
            tokio::spawn(async move { deliver(&s, paid).await })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.expect("join"), 200);
    }
    for _ in 0..100 {
        assert_eq!(deliver(&s, paid.clone()).await, 200);
    }
    assert_eq!(s.available(42).await, Money::parse("150.00").expect("money"));
    let record = s.engine.payments().get(&PaymentId::parse("stars:charge-42").expect("id")).await.expect("get");
    let record = record.expect("recorded");
    assert_eq!(
        (record.provider, record.status, record.amount),
        (PaymentProvider::Stars, PaymentRecordStatus::Succeeded, Money::parse("150.00").expect("money"))
    );
    assert_eq!(fake.calls_of("sendMessage").len(), 1, "told once");
    assert!(s.engine.billing().verify().await.expect("verify").is_clean());
    let text = recorder.handle().render();
    assert_eq!(sample(&text, "payments_total{gateway=\"stars\",outcome=\"succeeded\"}"), Some("1"), "{text}");
    assert_eq!(sample(&text, "topups_kopecks_total"), Some("15000"), "{text}");
}

#[tokio::test]
async fn a_payment_for_another_user_is_not_credited() {
    // Proves the fail-closed credit: a successful_payment whose payload names another user moves nothing (and is
    // acknowledged, so that Telegram does not redeliver it for ever, and counted as a refused notice, not a
    // payment); a bad Stars count is a 400.
    let recorder = own_recorder();
    let _local = metrics::set_default_local_recorder(&recorder);
    let (s, _fake) = rig().await;
    let forged = updates::successful_payment(9, 7, "XTR", 100, "rei:8:t-1", "charge-x");
    assert_eq!(deliver(&s, forged).await, 200);
    let text = recorder.handle().render();
    assert_eq!(sample(&text, "payment_webhook_errors{provider=\"stars\",reason=\"refused\"}"), Some("1"), "{text}");
    assert!(!text.contains("payments_total"), "{text}");
    assert_eq!(s.available(7).await, Money::ZERO);
    assert_eq!(s.available(8).await, Money::ZERO);
    let body = json!({"user_id": 42, "provider": "stars", "stars": 0, "topup_id": "t-0"});
    problem(s.post("/v1/topups", &body).await, 400, "topup-refused").await;
    assert_eq!(deliver(&s, b"{".to_vec()).await, 400);
}

#[tokio::test]
async fn a_stars_refund_goes_back_once() {
    // Proves POST /v1/refunds for a Stars charge: the wallet gives the whole credit back once, Telegram refunds
    // the charge, and a repeat is reconciled (already refunded), not a second debit.
    let (s, fake) = rig().await;
    assert_eq!(deliver(&s, updates::successful_payment(1, 43, "XTR", 10, "rei:43:t-43", "charge-43")).await, 200);
    assert_eq!(s.available(43).await, Money::parse("15.00").expect("money"));
    let body = json!({"user_id": 43, "payment_id": "stars:charge-43", "amount": "15.00"});
    let (status, done) = json(s.post("/v1/refunds", &body).await).await;
    assert_eq!((status, done["status"].as_str()), (201, Some("succeeded")), "{done}");
    let (status, again) = json(s.post("/v1/refunds", &body).await).await;
    assert_eq!(status, 201, "{again}");
    assert_eq!(s.available(43).await, Money::ZERO);
    assert_eq!(fake.calls_of("refundStarPayment").len(), 2);
    assert!(fake.refunded().contains("charge-43"));
}
