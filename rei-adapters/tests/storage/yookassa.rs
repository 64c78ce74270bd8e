//! The YooKassa adapter against the fake YooKassa: payments created once per key, the fake's and the adapter's
//! idempotence agreeing, 500 and 202 repeated with the same key, every error mapped, refunds. Local only.

use std::collections::BTreeMap;
use std::time::Duration;

use rei_adapters::fakes::yookassa::{FakeYooKassa, YooKassaOutcome};
use rei_adapters::yookassa::{YooKassa, YooKassaConfig};
use rei_core::ids::{IdempotencyKey, PaymentId};
use rei_core::money::Money;
use rei_core::payments::{
    GatewayError, PaymentGateway, PaymentRequest, PaymentStatus, Receipt, RefundRequest, RefundStatus,
};

const SHOP: &str = "100500";
const SECRET: &str = "test_secret";

async fn rig(secret: &str) -> (FakeYooKassa, YooKassa) {
    let fake = FakeYooKassa::start(SHOP, SECRET).await.expect("fake");
    let config = YooKassaConfig {
        base_url: fake.base_url(),
        retry_pause: Duration::from_millis(10),
        ..YooKassaConfig::new(SHOP, secret)
    };
    (fake, YooKassa::new(config).expect("adapter"))
}

fn request(rubles: &str) -> PaymentRequest {
    PaymentRequest {
        amount: Money::parse(rubles).expect("money"),
        description: "Пополнение баланса".into(),
        return_url: "https://t.me/rei_bot".into(),
        metadata: BTreeMap::from([("user_id".into(), "42".into()), ("topup_id".into(), "t-1".into())]),
        receipt: None,
    }
}

fn key(k: &str) -> IdempotencyKey {
    IdempotencyKey::parse(k).expect("key")
}

#[tokio::test]
async fn a_payment_is_created_once_per_key_with_the_wire_format_yookassa_takes() {
    // Proves the create: amount as a two-decimal string in RUB, capture at once, a redirect back, our metadata;
    // the same key again returns the same payment, and the payment reads back pending with its link.
    let (fake, gateway) = rig(SECRET).await;
    let first = gateway.create_payment(&key("topup-1"), &request("100.00")).await.expect("create");
    let again = gateway.create_payment(&key("topup-1"), &request("100.00")).await.expect("repeat");
    assert_eq!(first.id, again.id);
    assert_eq!(fake.payments(), 1);
    assert_eq!(
        (first.status, first.amount, first.currency.as_str()),
        (PaymentStatus::Pending, Money::from_kopecks(10_000), "RUB")
    );
    assert!(first.confirmation_url.as_deref().is_some_and(|u| u.contains(first.id.as_str())));
    assert_eq!(first.metadata.get("user_id").map(String::as_str), Some("42"));
    let body = fake.created_with(first.id.as_str()).expect("body");
    assert_eq!(body["amount"]["value"], "100.00");
    assert_eq!(body["capture"], true);
    assert_eq!(body["confirmation"]["type"], "redirect");
    assert_eq!(body["confirmation"]["return_url"], "https://t.me/rei_bot");
    assert!(body.get("receipt").is_none());
}

#[tokio::test]
async fn the_same_key_with_another_body_is_refused() {
    // Proves a reused idempotence key with a different amount is the gateway's refusal, not a second payment.
    let (fake, gateway) = rig(SECRET).await;
    gateway.create_payment(&key("topup-2"), &request("100.00")).await.expect("create");
    let err = gateway.create_payment(&key("topup-2"), &request("200.00")).await.expect_err("refused");
    assert!(matches!(&err, GatewayError::Rejected { reason } if reason.contains("Idempotence")), "{err:?}");
    assert_eq!(fake.payments(), 1);
}

#[tokio::test]
async fn a_500_or_a_202_is_repeated_with_the_same_key_and_creates_one_payment() {
    // Proves the unknown outcomes: the adapter repeats with the same key and the payment exists once.
    let (fake, gateway) = rig(SECRET).await;
    fake.script().push(YooKassaOutcome::ServerError);
    fake.script().push(YooKassaOutcome::Processing);
    let payment = gateway.create_payment(&key("topup-3"), &request("50.00")).await.expect("create");
    assert_eq!(fake.posts(), 3);
    assert_eq!(fake.payments(), 1);
    assert_eq!(payment.amount, Money::from_kopecks(5_000));
}

#[tokio::test]
async fn a_gateway_that_never_decides_is_unavailable_after_the_repeats() {
    // Proves the repeats are bounded: four 500s (one try and three repeats) end as Unavailable.
    let (fake, gateway) = rig(SECRET).await;
    for _ in 0..4 {
        fake.script().push(YooKassaOutcome::ServerError);
    }
    let err = gateway.create_payment(&key("topup-4"), &request("10.00")).await.expect_err("undecided");
    assert!(matches!(err, GatewayError::Unavailable { .. }), "{err:?}");
    assert_eq!((fake.posts(), fake.payments()), (4, 0));
}

#[tokio::test]
async fn garbage_wrong_credentials_and_unknown_ids_are_clear_errors() {
    // Proves each failure maps to its error, none panics.
    let (fake, gateway) = rig(SECRET).await;
    fake.script().push(YooKassaOutcome::Garbage);
    let err = gateway.create_payment(&key("topup-5"), &request("10.00")).await.expect_err("garbage");
    assert!(matches!(err, GatewayError::Garbage { .. }), "{err:?}");
    let missing = PaymentId::parse("2d000000-000f-5000-8000-00000000ffff").expect("id");
    assert_eq!(gateway.payment(&missing).await, Err(GatewayError::NotFound));
    let bad = PaymentId::parse("../../v3/refunds").err();
    assert!(bad.is_some(), "a path cannot be a payment id");
    let (_fake, wrong) = rig("not-the-secret").await;
    let err = wrong.create_payment(&key("topup-6"), &request("10.00")).await.expect_err("unauthorized");
    assert!(matches!(err, GatewayError::Unauthorized { .. }), "{err:?}");
}

#[tokio::test]
async fn the_gateways_word_on_a_payment_is_read_back_and_refunds_follow_it() {
    // Proves the read a webhook must be checked against, and refunds: only a paid payment is refunded, once per
    // key, and the refund reads back.
    let (fake, gateway) = rig(SECRET).await;
    let payment = gateway.create_payment(&key("topup-7"), &request("300.00")).await.expect("create");
    let refund = RefundRequest { payment: payment.id.clone(), amount: Money::from_kopecks(10_000), description: None };
    let err = gateway.create_refund(&key("refund-1"), &refund).await.expect_err("not paid yet");
    assert!(matches!(err, GatewayError::Rejected { .. }), "{err:?}");
    assert!(fake.set_status(payment.id.as_str(), "succeeded"));
    assert_eq!(gateway.payment(&payment.id).await.expect("read").status, PaymentStatus::Succeeded);
    let done = gateway.create_refund(&key("refund-2"), &refund).await.expect("refund");
    let again = gateway.create_refund(&key("refund-2"), &refund).await.expect("repeat");
    assert_eq!(done, again);
    assert_eq!((done.status, done.amount), (RefundStatus::Succeeded, Money::from_kopecks(10_000)));
    assert_eq!(gateway.refund(&done.id).await.expect("read"), done);
    let other = gateway.create_payment(&key("topup-8"), &request("1.00")).await.expect("create");
    assert!(fake.set_status(other.id.as_str(), "canceled"));
    let canceled = gateway.payment(&other.id).await.expect("read");
    assert_eq!(
        (canceled.status, canceled.cancellation_reason.as_deref()),
        (PaymentStatus::Canceled, Some("expired_on_confirm"))
    );
}

#[tokio::test]
async fn a_receipt_is_sent_when_the_shop_issues_them() {
    // Proves the 54-FZ receipt: the buyer's contact and one item of the payment's amount.
    let (fake, gateway) = rig(SECRET).await;
    let mut with_receipt = request("299.00");
    with_receipt.receipt = Some(Receipt {
        customer_email: Some("u@example.ru".into()),
        customer_phone: None,
        item_description: "Пополнение баланса".into(),
        vat_code: 1,
        payment_mode: "full_payment".into(),
        payment_subject: "service".into(),
        tax_system_code: Some(1),
    });
    let payment = gateway.create_payment(&key("topup-9"), &with_receipt).await.expect("create");
    let body = fake.created_with(payment.id.as_str()).expect("body");
    assert_eq!(body["receipt"]["customer"]["email"], "u@example.ru");
    assert_eq!(body["receipt"]["items"][0]["amount"]["value"], "299.00");
    assert_eq!(body["receipt"]["items"][0]["vat_code"], 1);
    assert_eq!(body["receipt"]["tax_system_code"], 1);
}

/// Top-ups through the adapter and the fake, credited by billing on the in-memory ledger.
fn top_ups(gateway: YooKassa) -> (rei_core::topups::TopUps, std::sync::Arc<rei_core::billing::BillingService>) {
    use std::sync::Arc;
    let clock =
        Arc::new(rei_core::testing::clock::ManualClock::new(rei_core::time::Timestamp::from_millis(1_800_000_000_000)));
    let billing = Arc::new(rei_core::billing::BillingService::new(
        Arc::new(rei_core::testing::ledger::MemoryLedger::new()),
        Arc::new(rei_core::testing::billing::MemoryQuotes::new()),
        clock.clone(),
        Arc::new(rei_core::testing::clock::SeqIds::new(3)),
        rei_core::pricing::Pricer::new(rei_core::pricing::PricingConfig::example()),
        rei_core::billing::BillingConfig::default(),
    ));
    let ports = rei_core::topups::TopUpPorts {
        gateway: Arc::new(gateway),
        billing: billing.clone(),
        payments: Arc::new(rei_core::testing::payments::MemoryPayments::new()),
        clock,
    };
    (rei_core::topups::TopUps::new(ports, rei_core::topups::TopUpsConfig::default()), billing)
}

fn notice(event: &str, id: &str) -> Vec<u8> {
    serde_json::json!({"type": "notification", "event": event, "object": {"id": id, "status": "succeeded",
        "amount": {"value": "1000000.00", "currency": "RUB"}, "metadata": {"user_id": "666"}}})
    .to_string()
    .into_bytes()
}

#[tokio::test]
async fn a_notice_credits_once_and_only_what_the_gateway_confirms() {
    // Proves the fail-closed path: a notice is believed only as far as the gateway's answer goes (its amount and
    // user, not the notice's), a notice before the payment is paid credits nothing and is refused, a repeated
    // notice replays, and a notice about a payment the gateway does not know changes nothing.
    use rei_adapters::yookassa::parse_notice;
    use rei_core::ids::UserId;
    use rei_core::topups::{NoticeError, NoticeOutcome};
    let (fake, gateway) = rig(SECRET).await;
    let (top_ups, billing) = top_ups(gateway);
    let payment = top_ups
        .create(UserId(42), "t-100", Money::from_kopecks(50_000), "Пополнение", "https://t.me/rei_bot")
        .await
        .expect("create");
    let early =
        top_ups.on_notice(&parse_notice(&notice("payment.succeeded", payment.id.as_str())).expect("parse")).await;
    assert!(matches!(early, Err(NoticeError::Refused { .. })), "{early:?}");
    assert_eq!(billing.balance(UserId(42)).await.expect("balance").available, Money::ZERO);
    assert!(fake.set_status(payment.id.as_str(), "succeeded"));
    let body = notice("payment.succeeded", payment.id.as_str());
    let first = top_ups.on_notice(&parse_notice(&body).expect("parse")).await.expect("credit");
    let again = top_ups.on_notice(&parse_notice(&body).expect("parse")).await.expect("repeat");
    assert!(matches!(first, NoticeOutcome::Credited { user: UserId(42), replayed: false, .. }), "{first:?}");
    assert!(matches!(again, NoticeOutcome::Credited { replayed: true, .. }), "{again:?}");
    assert_eq!(billing.balance(UserId(42)).await.expect("balance").available, Money::from_kopecks(50_000));
    assert_eq!(
        billing.balance(UserId(666)).await.expect("balance").available,
        Money::ZERO,
        "the notice's own user is not believed"
    );
    let forged = top_ups
        .on_notice(&parse_notice(&notice("payment.succeeded", "2d000000-000f-5000-8000-0000000000aa")).expect("parse"))
        .await;
    assert!(matches!(forged, Err(NoticeError::Refused { .. })), "{forged:?}");
    let unknown =
        top_ups.on_notice(&parse_notice(&notice("payout.succeeded", "x1")).expect("parse")).await.expect("ack");
    assert!(matches!(unknown, NoticeOutcome::Ignored { .. }));
    assert!(billing.verify().await.expect("verify").is_clean());
    for bad in [
        &b"not json"[..],
        br#"{"type":"other"}"#,
        br#"{"type":"notification","event":"payment.succeeded","object":{"id":"../x"}}"#,
    ] {
        assert!(parse_notice(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
    }
}

#[tokio::test]
async fn the_reconciler_and_the_webhook_racing_credit_once() {
    // Proves a payment settled by the poller and by notices at the same time is credited exactly once.
    use rei_core::ids::UserId;
    use rei_core::topups::NoticeOutcome;
    let (fake, gateway) = rig(SECRET).await;
    let (top_ups, billing) = top_ups(gateway);
    let payment = top_ups
        .create(UserId(7), "t-200", Money::from_kopecks(20_000), "Пополнение", "https://t.me/rei_bot")
        .await
        .expect("create");
    assert_eq!(
        top_ups.settle(&payment.id).await.expect("look"),
        NoticeOutcome::NotPaid { status: PaymentStatus::Pending }
    );
    assert!(fake.set_status(payment.id.as_str(), "succeeded"));
    let top_ups = std::sync::Arc::new(top_ups);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (top_ups, id) = (top_ups.clone(), payment.id.clone());
        tasks.push(tokio::spawn(async move { top_ups.settle(&id).await }));
    }
    let mut fresh = 0;
    for task in tasks {
        if let Ok(NoticeOutcome::Credited { replayed: false, .. }) = task.await.expect("task") {
            fresh += 1;
        }
    }
    assert_eq!(fresh, 1, "one credit, the rest replays");
    assert_eq!(billing.balance(UserId(7)).await.expect("balance").available, Money::from_kopecks(20_000));
}
