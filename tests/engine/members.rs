//! Growth through `rei::Engine` on SQLite and PostgreSQL: members and promo codes on the engine's database,
//! first starts, referral bonuses and promo redemptions raced from many tasks, each granted once, and Stars
//! top-ups paying the referrer through the observer; the ledger verifies after each.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rei::core::billing::AdminRequest;
use rei::core::guards::{Reason, Role};
use rei::core::ids::{IdempotencyKey, UserId};
use rei::core::members::{Growth, GrowthConfig, GrowthError, Profile, PromoError};
use rei::core::money::Money;
use rei::core::stars::{CURRENCY, StarsConfig, StarsPayments, SuccessfulPayment};
use rei::{Engine, EngineConfig};

static NEXT: AtomicU64 = AtomicU64::new(1);

fn rub(kopecks: i64) -> Money {
    Money::from_kopecks(kopecks)
}

fn person(user: i64) -> Profile {
    Profile { user: UserId(user), username: None, first_name: format!("user {user}"), language: Some("en".into()) }
}

async fn balance(engine: &Engine, user: i64) -> Money {
    engine.billing().balance(UserId(user)).await.expect("balance").available
}

async fn verified(engine: &Engine) {
    let report = engine.billing().verify().await.expect("verify");
    assert!(report.is_clean(), "the ledger verifies: {report:?}");
}

/// Starts `user` from `tasks` tasks at once (with `referral`), and returns how many reported the trial and
/// how many the referrer's bonus.
async fn race_starts(growth: &Arc<Growth>, user: i64, referral: Option<String>, tasks: usize) -> (usize, usize) {
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let (growth, referral) = (growth.clone(), referral.clone());
            tokio::spawn(async move { growth.start(&person(user), referral.as_deref()).await.expect("start") })
        })
        .collect();
    let mut reported = (0, 0);
    for handle in handles {
        let started = handle.await.expect("join");
        reported.0 += usize::from(started.trial.is_some());
        reported.1 += usize::from(started.referrer_bonus.is_some());
    }
    reported
}

/// The whole growth story on one engine.
async fn growth_on(engine: &Engine) {
    assert!(engine.migrations_applied().contains(&11), "{:?}", engine.migrations_applied());
    let growth = Arc::new(engine.growth(GrowthConfig::default()));
    assert_eq!(race_starts(&growth, 1, None, 8).await, (1, 0), "one trial among 8 first starts");
    assert_eq!(balance(engine, 1).await, rub(3_000));
    let code = engine.members().get(UserId(1)).await.expect("get").expect("member").referral_code;
    assert_eq!(race_starts(&growth, 2, Some(code.clone()), 8).await, (1, 1), "one trial, one bonus");
    assert_eq!(balance(engine, 1).await, rub(4_000), "trial + one join bonus");
    assert_eq!(engine.members().referee_count(UserId(1)).await.expect("count"), 1);
    verified(engine).await;

    // Ten users race for three uses of a code; each winner is granted once, however often they retry.
    let admin = AdminRequest {
        actor: UserId(900),
        role: Role::Admin,
        reason: Reason::parse("launch").expect("reason"),
        key: IdempotencyKey::parse("promo-launch").expect("key"),
    };
    growth.create_promo(&admin, "launch", rub(2_500), 3, None).await.expect("create");
    let handles: Vec<_> = (100..110)
        .flat_map(|user| [user, user])
        .map(|user| {
            let growth = growth.clone();
            tokio::spawn(async move { (user, growth.redeem(UserId(user), "LAUNCH").await) })
        })
        .collect();
    let mut winners = std::collections::BTreeSet::new();
    let mut firsts = std::collections::BTreeSet::new();
    for handle in handles {
        match handle.await.expect("join") {
            (user, Ok(redeemed)) => {
                assert_eq!(redeemed.amount, rub(2_500));
                // Of a winner's two calls, exactly one granted: a second `first` would be a second grant.
                if redeemed.first {
                    assert!(firsts.insert(user), "user {user} was told twice that the grant is theirs");
                }
                winners.insert(user);
            }
            (_, Err(GrowthError::Promo(PromoError::Exhausted))) => {}
            (_, Err(e)) => panic!("{e}"),
        }
    }
    assert_eq!(winners.len(), 3, "{winners:?}");
    assert_eq!(firsts, winners, "each winner told once that the grant is theirs");
    for user in 100..110 {
        let expected = if winners.contains(&user) { rub(2_500) } else { Money::ZERO };
        assert_eq!(balance(engine, user).await, expected, "user {user}");
    }
    assert_eq!(engine.promos().get("launch").await.expect("get").map(|c| c.uses), Some(3));
    verified(engine).await;

    // A Stars top-up of the referee, delivered three times, pays the referrer 10 % once.
    let stars = StarsPayments::new(engine.billing().clone(), StarsConfig::default()).expect("stars");
    let stars = stars.with_observer(growth.clone());
    let paid = SuccessfulPayment {
        from: UserId(2),
        currency: CURRENCY.into(),
        total_amount: 200,
        invoice_payload: "rei:2:first".into(),
        telegram_payment_charge_id: "charge-engine-1".into(),
        provider_payment_charge_id: String::new(),
    };
    for _ in 0..3 {
        stars.on_successful_payment(&paid).await.expect("stars");
    }
    assert_eq!(balance(engine, 1).await, rub(7_000), "and 10 % of 300 ₽, once");
    let referee = engine.members().get(UserId(2)).await.expect("get").expect("member");
    assert!(referee.paid_at.is_some());
    verified(engine).await;
}

#[tokio::test]
async fn growth_grants_once_on_sqlite() {
    // Proves the facade's wiring on the embedded default: migration 11 applied, concurrent first starts and
    // redeems granted once, the Stars observer paying the referrer once, a clean ledger.
    let dir = tempfile::Builder::new().prefix("rei-members-").tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("rei.db").display());
    let engine = Engine::open(&url).await.expect("engine");
    growth_on(&engine).await;
    engine.close().await;
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn growth_grants_once_on_postgresql() {
    // Proves the same on PostgreSQL, where the racing tasks run on connections of their own.
    let url = std::env::var("REI_TEST_POSTGRES_URL").unwrap_or_else(|_| {
        panic!("REI_TEST_POSTGRES_URL is not set: run the suite with scripts/test, which starts PostgreSQL")
    });
    let schema = format!("rei_members_{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
    let config = EngineConfig { postgres_schema: Some(schema.clone()), ..EngineConfig::default() };
    let engine = Engine::builder().database_url(url.clone()).config(config).open().await.expect("engine");
    growth_on(&engine).await;
    engine.close().await;
    let admin = rei::adapters::postgres::connect(&url, 1, Duration::from_secs(5)).await.expect("admin");
    rei::adapters::postgres::drop_schema(&admin, &schema).await.expect("drop the schema");
    admin.close().await;
}
