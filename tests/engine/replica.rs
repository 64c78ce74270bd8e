//! Reads of history from a PostgreSQL streaming replica (`EngineConfig::replica_url`): with the replica's replay
//! paused, a new top-up is in the balance (the primary) and not yet in the history (the replica); once replay
//! resumes it is in both. `scripts/servers` starts the replica (`REI_TEST_POSTGRES_REPLICA_URL`).

#![cfg(feature = "postgres")]

use std::time::{Duration, Instant};

use rei::Engine;
use rei::core::ids::{PaymentId, UserId};
use rei::core::money::Money;

fn url(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run the suite with scripts/test"))
}

async fn replay(replica: &sqlx::PgPool, paused: bool) {
    let call = if paused { "SELECT pg_wal_replay_pause()" } else { "SELECT pg_wal_replay_resume()" };
    sqlx::query(call).execute(replica).await.expect("replay control");
}

async fn history_len(engine: &Engine, user: UserId) -> usize {
    engine.ledger().history(user, None, 100).await.expect("history").len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_is_read_from_the_replica_and_money_from_the_primary() {
    let primary = url("REI_TEST_POSTGRES_URL");
    let replica = url("REI_TEST_POSTGRES_REPLICA_URL");
    let schema = format!("rei_replica_{}", std::process::id());
    let config = rei::EngineConfig {
        postgres_schema: Some(schema.clone()),
        replica_url: Some(replica.clone()),
        ..rei::EngineConfig::default()
    };
    // The schema is made on the primary; the replica sees it once replayed.
    let bootstrap = Engine::builder()
        .database_url(primary.clone())
        .config(rei::EngineConfig { postgres_schema: Some(schema.clone()), ..rei::EngineConfig::default() })
        .open()
        .await
        .expect("migrate on the primary");
    bootstrap.close().await;
    let engine = Engine::builder().database_url(primary.clone()).config(config).open().await.expect("engine");
    let standby = sqlx::PgPool::connect(&replica).await.expect("the replica");
    let user = UserId(4_242);
    let pay = |n: u32| PaymentId::parse(&format!("replica-{n}")).expect("id");

    engine.billing().top_up(user, Money::from_kopecks(1_000), pay(1)).await.expect("top-up");
    let until = Instant::now() + Duration::from_secs(20);
    while history_len(&engine, user).await < 1 {
        assert!(Instant::now() < until, "the replica never replayed the first top-up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    replay(&standby, true).await;
    engine.billing().top_up(user, Money::from_kopecks(2_000), pay(2)).await.expect("top-up");
    let balance = engine.billing().balance(user).await.expect("balance");
    assert_eq!(balance.available, Money::from_kopecks(3_000), "the balance is the primary's");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(history_len(&engine, user).await, 1, "the history is the paused replica's");

    replay(&standby, false).await;
    let until = Instant::now() + Duration::from_secs(20);
    while history_len(&engine, user).await < 2 {
        assert!(Instant::now() < until, "the replica never caught up after replay resumed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A write never goes to the replica: a third top-up succeeds through the primary while the replica is read-only.
    engine.billing().top_up(user, Money::from_kopecks(500), pay(3)).await.expect("top-up on the primary");
    assert!(engine.billing().verify().await.expect("verify").is_clean());
    engine.close().await;
    standby.close().await;
    let admin = sqlx::PgPool::connect(&primary).await.expect("primary");
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE")).execute(&admin).await.expect("drop");
    admin.close().await;
}
