//! Payments through `rei::Engine` on the embedded default: the payment store is on the engine's database, top-ups
//! made through the engine are recorded there, and its reconciler credits a payment whose notice never came.

use std::sync::Arc;
use std::time::Duration;

use rei::Engine;
use rei::core::ids::UserId;
use rei::core::money::Money;
use rei::core::testing::clock::ManualClock;
use rei::core::time::Timestamp;
use rei::core::topups::{PaymentRecordStatus, ReconcileReport, ReconcilerConfig, TopUpsConfig};
use rei_adapters::fakes::yookassa::FakeYooKassa;
use rei_adapters::yookassa::{YooKassa, YooKassaConfig};

#[tokio::test]
async fn the_engine_records_top_ups_and_reconciles_them_on_its_database() {
    // Proves the facade's wiring: migration 8 is applied, `Engine::payments` is the store top-ups record into,
    // and the engine's reconciler, on the engine's clock, credits a paid payment that had no notice.
    let dir = tempfile::Builder::new().prefix("rei-payments-").tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("rei.db").display());
    let clock = Arc::new(ManualClock::new(Timestamp::from_millis(1_800_000_000_000)));
    let engine = Engine::builder().database_url(url).clock(clock.clone()).open().await.expect("engine");
    assert!(engine.migrations_applied().contains(&8), "{:?}", engine.migrations_applied());
    let fake = FakeYooKassa::start("100500", "secret").await.expect("fake");
    let gateway =
        YooKassa::new(YooKassaConfig { base_url: fake.base_url(), ..YooKassaConfig::new("100500", "secret") })
            .expect("adapter");
    let top_ups = Arc::new(engine.top_ups(Arc::new(gateway), TopUpsConfig::default()));
    let reconciler = engine.reconciler(top_ups.clone(), ReconcilerConfig::default()).expect("reconciler");
    let payment = top_ups
        .create(UserId(5), "engine-1", Money::from_kopecks(25_000), "Пополнение", "https://t.me/rei_bot")
        .await
        .expect("create");
    let listed = engine.payments().list_for_user(UserId(5), None, 10).await.expect("list");
    assert_eq!(listed.records.len(), 1);
    assert_eq!(listed.records[0].status, PaymentRecordStatus::Pending);
    assert!(fake.set_status(payment.id.as_str(), "succeeded"));
    clock.advance(Duration::from_secs(60));
    let report = reconciler.run_once().await;
    assert_eq!(report, ReconcileReport { looked: 1, credited: 1, ..ReconcileReport::default() });
    let record = engine.payments().get(&payment.id).await.expect("get").expect("recorded");
    assert_eq!(record.status, PaymentRecordStatus::Succeeded);
    assert_eq!(engine.billing().balance(UserId(5)).await.expect("balance").available, Money::from_kopecks(25_000));
    assert!(engine.billing().verify().await.expect("verify").is_clean());
    engine.close().await;
}
