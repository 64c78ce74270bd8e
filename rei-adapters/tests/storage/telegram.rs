//! Telegram Stars top-ups end to end, short of the HTTP route: the Bot API adapter against the fake Bot API,
//! webhook bodies in the real wire shape read by `parse_update`, and `StarsPayments` crediting and refunding on
//! a real SQLite ledger (and PostgreSQL for the storm of deliveries). Local only.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rei_adapters::fakes::telegram::{FakeTelegram, TelegramOutcome, updates};
use rei_adapters::postgres::ledger::{PgLedger, PgLedgerConfig};
use rei_adapters::sqlite::ledger::{SqliteLedger, SqliteLedgerConfig};
use rei_adapters::telegram::{BotApi, BotApiError, Update, parse_update};
use rei_core::billing::{BillingConfig, BillingService};
use rei_core::ids::UserId;
use rei_core::ledger::{LedgerStore, SystemAccount};
use rei_core::money::Money;
use rei_core::stars::{
    PreCheckoutAnswer, Refusal, StarsApi, StarsApiError, StarsConfig, StarsError, StarsPayments, StarsRefund,
    SuccessfulPayment,
};
use serde_json::json;

use crate::support;

const TOKEN: &str = "7012345678:AAFake-Secret_Token";
const ALICE: UserId = UserId(42);
const BOB: UserId = UserId(43);

fn billing_on(ledger: Arc<dyn LedgerStore>) -> Arc<BillingService> {
    Arc::new(BillingService::new(
        ledger,
        Arc::new(rei_core::testing::billing::MemoryQuotes::new()),
        Arc::new(rei_adapters::system::SystemClock::new()),
        Arc::new(rei_adapters::system::TimeOrderedIds::new()),
        rei_core::pricing::Pricer::new(rei_core::pricing::PricingConfig::example()),
        BillingConfig::default(),
    ))
}

async fn sqlite_billing() -> Arc<BillingService> {
    let config = SqliteLedgerConfig { batch_max: 256, queue_max: 1_024 };
    billing_on(Arc::new(SqliteLedger::new(support::sqlite_pool().await, config)))
}

/// The fake, the adapter on it, and Stars top-ups at 1.50 ₽ per Star over `billing`.
async fn rig(billing: Arc<BillingService>) -> (FakeTelegram, BotApi, Arc<StarsPayments>) {
    let fake = FakeTelegram::start(TOKEN).await.expect("fake");
    let api = BotApi::new(&fake.base_url(), TOKEN).expect("adapter");
    let stars = StarsPayments::new(billing, StarsConfig::default()).expect("config");
    (fake, api, Arc::new(stars))
}

/// What the webhook would hand on: the payment of a `successful_payment` body.
fn payment_of(body: &[u8]) -> SuccessfulPayment {
    match parse_update(body) {
        Ok(Update::SuccessfulPayment { payment, .. }) => payment,
        other => panic!("not a successful payment: {other:?}"),
    }
}

async fn available(billing: &BillingService, user: UserId) -> Money {
    billing.balance(user).await.expect("balance").available
}

#[tokio::test]
async fn an_invoice_goes_to_telegram_in_stars_with_one_price_and_our_payload() {
    // Proves the invoice on the wire: XTR, an empty provider token, exactly one price of the Stars asked, our
    // payload, the configured title; and the link form answers a t.me link.
    let (fake, api, stars) = rig(sqlite_billing().await).await;
    let invoice = stars.invoice(ALICE, 250, "t-1").expect("invoice");
    api.send_invoice(42, &invoice).await.expect("sendInvoice");
    let link = api.create_invoice_link(&invoice).await.expect("createInvoiceLink");
    assert!(link.starts_with("https://t.me/$"), "{link}");
    let sent = fake.calls_of("sendInvoice");
    assert_eq!(sent.len(), 1);
    let p = &sent[0].params;
    assert_eq!(p["chat_id"], 42);
    assert_eq!(p["currency"], "XTR");
    assert_eq!(p["provider_token"], "");
    assert_eq!(p["payload"], "rei:42:t-1");
    assert_eq!(p["title"], StarsConfig::default().title.as_str());
    assert_eq!(p["prices"].as_array().map(Vec::len), Some(1));
    assert_eq!(p["prices"][0]["amount"], 250);
    let linked = fake.calls_of("createInvoiceLink");
    assert_eq!(linked.len(), 1);
    assert!(linked[0].params.get("chat_id").is_none());
    assert_eq!(linked[0].params["prices"], p["prices"]);
}

#[tokio::test]
async fn pre_checkout_is_answered_within_ten_seconds_accepting_ours_and_refusing_the_rest() {
    // Proves the pre-checkout path from the webhook body to Telegram's answer: ours is accepted, another
    // currency and another user's invoice are refused with a message, each answered well within 10 s.
    let (fake, api, stars) = rig(sqlite_billing().await).await;
    let cases = [
        (updates::pre_checkout_query(1, "q-ok", 42, "XTR", 100, "rei:42:t-1"), true),
        (updates::pre_checkout_query(2, "q-usd", 42, "USD", 100, "rei:42:t-1"), false),
        (updates::pre_checkout_query(3, "q-bob", 43, "XTR", 100, "rei:42:t-1"), false),
        (updates::pre_checkout_query(4, "q-big", 42, "XTR", 100_001, "rei:42:t-1"), false),
    ];
    for (body, accept) in &cases {
        let received = Instant::now();
        let Ok(Update::PreCheckout { query, .. }) = parse_update(body) else { panic!("not a pre-checkout") };
        let answer = stars.pre_checkout(&query);
        assert_eq!(matches!(answer, PreCheckoutAnswer::Accept), *accept, "{answer:?}");
        api.answer_pre_checkout(&query.id, &answer).await.expect("answered");
        let call = fake.calls_of("answerPreCheckoutQuery").pop().expect("recorded");
        assert!(call.at.duration_since(received) < Duration::from_secs(10));
        assert_eq!(call.params["pre_checkout_query_id"], query.id.as_str());
        assert_eq!(call.params["ok"], *accept);
        if *accept {
            assert!(call.params.get("error_message").is_none());
        } else {
            assert!(call.params["error_message"].as_str().is_some_and(|m| !m.is_empty()), "{:?}", call.params);
        }
    }
    assert_eq!(fake.calls_of("answerPreCheckoutQuery").len(), 4);
}

/// Delivers one payment 100 times at once and 100 times in sequence; returns how many deliveries credited.
async fn storm(stars: &Arc<StarsPayments>, body: &[u8]) -> usize {
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let (stars, payment) = (stars.clone(), payment_of(body));
        tasks.push(tokio::spawn(async move { stars.on_successful_payment(&payment).await }));
    }
    let mut fresh = 0;
    for task in tasks {
        let credit = task.await.expect("task").expect("credit");
        assert_eq!(credit.amount, Money::from_kopecks(15_000), "every replay returns the first credit");
        fresh += usize::from(!credit.replayed);
    }
    for _ in 0..100 {
        let credit = stars.on_successful_payment(&payment_of(body)).await.expect("credit");
        assert!(credit.replayed, "a later delivery is a replay");
        fresh += usize::from(!credit.replayed);
    }
    fresh
}

async fn one_payment_delivered_200_times_credits_once_on(billing: Arc<BillingService>) {
    let (_fake, _api, stars) = rig(billing.clone()).await;
    let body = updates::successful_payment(10, 42, "XTR", 100, "rei:42:t-1", "stxStorm_1");
    assert_eq!(storm(&stars, &body).await, 1, "exactly one delivery credits");
    assert_eq!(available(&billing, ALICE).await, Money::from_kopecks(15_000), "100 Stars × 1.50");
    let payments = billing.ledger().system_balance(SystemAccount::Payments).await.expect("payments");
    assert_eq!(payments, Money::from_kopecks(-15_000));
    assert!(billing.verify().await.expect("verify").is_clean());
}

#[tokio::test]
async fn one_payment_delivered_100_times_at_once_and_100_in_sequence_credits_once_on_sqlite() {
    // Proves the credit is keyed by the charge id on SQLite: one top-up of stars × rate, 199 replays.
    one_payment_delivered_200_times_credits_once_on(sqlite_billing().await).await;
}

#[tokio::test]
async fn one_payment_delivered_100_times_at_once_and_100_in_sequence_credits_once_on_postgres() {
    // Proves the same on PostgreSQL, where concurrent deliveries race across connections.
    let ledger = PgLedger::new(support::pg_pool(8).await, PgLedgerConfig::default());
    one_payment_delivered_200_times_credits_once_on(billing_on(Arc::new(ledger))).await;
}

#[tokio::test]
async fn a_payment_in_another_currency_or_for_another_user_is_refused_and_changes_nothing() {
    // Proves fail-closed credits: a wrong currency, another user's payload, a foreign payload and an unusable
    // charge id are refused, and no balance or system account moves.
    let billing = sqlite_billing().await;
    let (_fake, _api, stars) = rig(billing.clone()).await;
    let refused = [
        updates::successful_payment(1, 42, "RUB", 100, "rei:42:t-1", "stx1"),
        updates::successful_payment(2, 43, "XTR", 100, "rei:42:t-1", "stx2"),
        updates::successful_payment(3, 42, "XTR", 100, "order-17", "stx3"),
        updates::successful_payment(4, 42, "XTR", 100, "rei:42:t-1", "stx 4"),
    ];
    for body in &refused {
        let e = stars.on_successful_payment(&payment_of(body)).await.expect_err("refused");
        assert!(matches!(e, StarsError::Refused(_)), "{e:?}");
    }
    let e = stars.on_successful_payment(&payment_of(&refused[1])).await.expect_err("refused");
    assert!(matches!(e, StarsError::Refused(Refusal::OtherUser { payer: BOB, invoiced: ALICE })), "{e:?}");
    assert_eq!(available(&billing, ALICE).await, Money::ZERO);
    assert_eq!(available(&billing, BOB).await, Money::ZERO);
    assert_eq!(billing.ledger().system_balance(SystemAccount::Payments).await.expect("payments"), Money::ZERO);
    assert!(billing.ledger().transactions(0, 10).await.expect("transactions").is_empty());
}

#[tokio::test]
async fn a_refund_moves_the_money_once_and_a_repeat_is_reconciled() {
    // Proves refunds through the fake: the wallet is debited once, Telegram refunds the charge, the repeat
    // moves nothing and Telegram's CHARGE_ALREADY_REFUNDED counts as done.
    let billing = sqlite_billing().await;
    let (fake, api, stars) = rig(billing.clone()).await;
    let body = updates::successful_payment(1, 42, "XTR", 100, "rei:42:t-1", "stxRefund_1");
    let credit = stars.on_successful_payment(&payment_of(&body)).await.expect("credit");
    let first = stars.refund(ALICE, "stxRefund_1", credit.amount, &api).await.expect("refund");
    assert_eq!((first.replayed, first.telegram, first.amount), (false, StarsRefund::Refunded, credit.amount));
    let again = stars.refund(ALICE, "stxRefund_1", credit.amount, &api).await.expect("repeat");
    assert_eq!((again.replayed, again.telegram), (true, StarsRefund::AlreadyRefunded));
    assert_eq!(available(&billing, ALICE).await, Money::ZERO);
    let out = billing.ledger().system_balance(SystemAccount::RefundsOut).await.expect("refunds_out");
    assert_eq!(out, credit.amount, "taken once");
    let calls = fake.calls_of("refundStarPayment");
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].params, json!({"user_id": 42, "telegram_payment_charge_id": "stxRefund_1"}));
    assert!(fake.refunded().contains("stxRefund_1"));
    assert!(billing.verify().await.expect("verify").is_clean());
}

#[tokio::test]
async fn a_refund_telegram_refuses_keeps_the_money_taken_and_can_be_repeated() {
    // Proves the refusal decision on a real ledger: Telegram's refusal leaves the wallet money taken (once), a
    // rate limit is an unconfirmed refund, and the repeat once Telegram agrees moves nothing more.
    let billing = sqlite_billing().await;
    let (fake, api, stars) = rig(billing.clone()).await;
    let body = updates::successful_payment(1, 42, "XTR", 10, "rei:42:t-2", "stxRefused_1");
    let credit = stars.on_successful_payment(&payment_of(&body)).await.expect("credit");
    fake.script().push(TelegramOutcome::BadRequest("Bad Request: CHARGE_NOT_FOUND".into()));
    fake.script().push(TelegramOutcome::RateLimited { retry_after: 1 });
    let e = stars.refund(ALICE, "stxRefused_1", credit.amount, &api).await.expect_err("refused");
    assert!(
        matches!(&e, StarsError::RefundRejected { reason, amount, .. } if reason.contains("CHARGE_NOT_FOUND") && *amount == credit.amount),
        "{e:?}"
    );
    let e = stars.refund(ALICE, "stxRefused_1", credit.amount, &api).await.expect_err("rate limited");
    assert!(
        matches!(&e, StarsError::RefundPending { source: StarsApiError::RateLimited { retry_after }, .. } if *retry_after == Duration::from_secs(1)),
        "{e:?}"
    );
    assert_eq!(available(&billing, ALICE).await, Money::ZERO, "the money stays taken meanwhile");
    let done = stars.refund(ALICE, "stxRefused_1", credit.amount, &api).await.expect("done");
    assert_eq!((done.replayed, done.telegram), (true, StarsRefund::Refunded));
    let out = billing.ledger().system_balance(SystemAccount::RefundsOut).await.expect("refunds_out");
    assert_eq!(out, credit.amount);
    let partial = stars.refund(ALICE, "stxRefused_1", Money::from_kopecks(1), &api).await;
    assert!(partial.is_err(), "another amount under the same charge is not a second refund: {partial:?}");
}

#[tokio::test]
async fn the_token_never_appears_in_errors_or_debug_output() {
    // Proves the token stays secret: a wrong token is Unauthorized, and neither that error, a transport error
    // on a dead port, nor the client's Debug output carries the token.
    let fake = FakeTelegram::start(TOKEN).await.expect("fake");
    let wrong = BotApi::new(&fake.base_url(), "999:WrongSecret").expect("adapter");
    let e = wrong.call("getMe", &json!({})).await.expect_err("unauthorized");
    assert!(matches!(&e, BotApiError::Api { code: 401, .. }), "{e:?}");
    assert_eq!(fake.unauthorized(), 1);
    let invoice = StarsPayments::new(sqlite_billing().await, StarsConfig::default())
        .expect("config")
        .invoice(ALICE, 5, "t-1")
        .expect("invoice");
    assert_eq!(wrong.send_invoice(42, &invoice).await, Err(StarsApiError::Unauthorized));
    let dead = BotApi::new("http://127.0.0.1:1", TOKEN).expect("adapter");
    let e = dead.call("getMe", &json!({})).await.expect_err("no server");
    assert!(matches!(&e, BotApiError::Transport { sent: false, .. }), "{e:?}");
    let port_error = StarsApiError::from(e.clone());
    for text in [format!("{e}"), format!("{e:?}"), format!("{port_error}"), format!("{dead:?}"), format!("{wrong:?}")] {
        assert!(!text.contains("AAFake-Secret_Token") && !text.contains("WrongSecret"), "{text}");
    }
    assert!(fake.calls().is_empty(), "nothing reached the fake with a wrong token");
}

#[tokio::test]
async fn rate_limits_server_errors_and_garbage_map_to_their_errors() {
    // Proves each failure of the Bot API is its error: 429 with retry_after, 500 unavailable, a body that is
    // not JSON garbage, an unknown method refused, and none of them panics.
    let (fake, api, stars) = rig(sqlite_billing().await).await;
    let invoice = stars.invoice(ALICE, 5, "t-1").expect("invoice");
    fake.script().push(TelegramOutcome::RateLimited { retry_after: 35 });
    fake.script().push(TelegramOutcome::RateLimited { retry_after: 7 });
    fake.script().push(TelegramOutcome::ServerError);
    fake.script().push(TelegramOutcome::Garbage);
    let e = api.call("sendInvoice", &json!({})).await.expect_err("429");
    assert_eq!(
        e,
        BotApiError::Api {
            code: 429,
            description: "Too Many Requests: retry after 35".into(),
            retry_after: Some(Duration::from_secs(35))
        }
    );
    // A 429 freezes the client until its retry_after: the rest of the checks go through a fresh one.
    let api = BotApi::new(&fake.base_url(), TOKEN).expect("adapter");
    assert_eq!(
        api.send_invoice(42, &invoice).await,
        Err(StarsApiError::RateLimited { retry_after: Duration::from_secs(7) })
    );
    let api = BotApi::new(&fake.base_url(), TOKEN).expect("adapter");
    let e = api.create_invoice_link(&invoice).await.expect_err("500");
    assert!(matches!(e, StarsApiError::Unavailable { .. }), "{e:?}");
    let e = api.answer_pre_checkout("q", &PreCheckoutAnswer::Accept).await.expect_err("garbage");
    assert!(matches!(e, StarsApiError::Garbage { .. }), "{e:?}");
    let e = api.call("noSuchMethod", &json!({})).await.expect_err("404");
    assert!(matches!(e, BotApiError::Api { code: 404, .. }), "{e:?}");
    let e = api.call("../getMe", &json!({})).await.expect_err("not a method");
    assert!(matches!(e, BotApiError::Garbage { .. }), "{e:?}");
    assert_eq!(fake.script().pending(), 0);
    api.send_invoice(42, &invoice).await.expect("normal again");
}

#[tokio::test]
async fn a_429_holds_every_call_back_until_its_retry_after() {
    // Proves retry_after honoured: after a 429 asking for 1 s, the client's next call (any method) reaches
    // Telegram only once that second has passed.
    let (fake, api, _stars) = rig(sqlite_billing().await).await;
    fake.script().push(TelegramOutcome::RateLimited { retry_after: 1 });
    let e = api.call("sendMessage", &json!({"chat_id": 1, "text": "a"})).await.expect_err("429");
    assert!(matches!(e, BotApiError::Api { code: 429, .. }), "{e:?}");
    let frozen_at = std::time::Instant::now();
    api.call("sendMessage", &json!({"chat_id": 2, "text": "b"})).await.expect("after the wait");
    let calls = fake.calls();
    let last = calls.last().expect("a call");
    assert_eq!(last.params["chat_id"], 2);
    assert!(last.at.duration_since(frozen_at) >= Duration::from_millis(900), "sent before retry_after passed");
}
