use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use proptest::prelude::*;

use super::*;
use crate::billing::BillingConfig;
use crate::guards::{AuditFilter, AuditOutcome, AuditRecord, Role};
use crate::members::Redemption;
use crate::payments::{GatewayError, Payment, PaymentGateway, PaymentRequest, PaymentStatus, Refund, RefundRequest};
use crate::pricing::{Pricer, PricingConfig};
use crate::stars::{CURRENCY, StarsConfig, StarsPayments, SuccessfulPayment};
use crate::testing::billing::MemoryQuotes;
use crate::testing::clock::{ManualClock, SeqIds};
use crate::testing::guards::MemoryAuditLog;
use crate::testing::ledger::{MemoryLedger, join_all};
use crate::testing::members::{MemoryMembers, MemoryPromos};
use crate::testing::payments::{MemoryPayments, sample_payment};
use crate::topups::{
    Notice, NoticeEvent, PaymentStore, Reconciler, ReconcilerConfig, TopUpPorts, TopUps, TopUpsConfig,
};

const T0: Timestamp = Timestamp::from_millis(1_800_000_000_000);

fn rub(kopecks: i64) -> Money {
    Money::from_kopecks(kopecks)
}

struct World {
    growth: Arc<Growth>,
    billing: Arc<BillingService>,
    members: Arc<MemoryMembers>,
    promos: Arc<MemoryPromos>,
    audit: Arc<MemoryAuditLog>,
    clock: Arc<ManualClock>,
}

fn world(config: GrowthConfig) -> World {
    let clock = Arc::new(ManualClock::new(T0));
    let ids = Arc::new(SeqIds::new(5));
    let billing = Arc::new(BillingService::new(
        Arc::new(MemoryLedger::new()),
        Arc::new(MemoryQuotes::new()),
        clock.clone(),
        ids.clone(),
        Pricer::new(PricingConfig::example()),
        BillingConfig::default(),
    ));
    let members = Arc::new(MemoryMembers::new());
    let promos = Arc::new(MemoryPromos::new());
    let audit = Arc::new(MemoryAuditLog::new());
    let growth = Arc::new(Growth::new(
        members.clone(),
        promos.clone(),
        billing.clone(),
        audit.clone(),
        clock.clone(),
        ids,
        config,
    ));
    World { growth, billing, members, promos, audit, clock }
}

impl World {
    async fn balance(&self, user: UserId) -> Money {
        self.billing.balance(user).await.expect("balance").available
    }

    async fn verified(&self) {
        let report = self.billing.verify().await.expect("verify");
        assert!(report.is_clean(), "the ledger verifies: {report:?}");
    }

    async fn start(&self, user: i64, referral: Option<&str>) -> Started {
        self.growth.start(&person(user), referral).await.expect("start")
    }

    async fn audit(&self) -> Vec<AuditRecord> {
        self.audit.list(&AuditFilter::latest(100)).await.expect("audit")
    }
}

fn person(user: i64) -> Profile {
    Profile { user: UserId(user), username: Some(format!("user{user}")), first_name: "Имя".into(), language: None }
}

fn request(role: Role, key: &str) -> AdminRequest {
    AdminRequest {
        actor: UserId(900),
        role,
        reason: Reason::parse("spring campaign").expect("reason"),
        key: IdempotencyKey::parse(key).expect("key"),
    }
}

#[test]
fn shares_round_down_to_kopecks_and_codes_have_their_shape() {
    // Proves the referral share is floor(amount × bp / 10 000) in whole kopecks, nothing below a kopeck, capped
    // at the whole amount, and referral codes are 10 distinct characters of a-z0-9 even for sequential ids.
    assert_eq!(referral_share(rub(12_345), 1_000), Some(rub(1_234)), "1 234.5 kopecks round down");
    assert_eq!(referral_share(rub(9), 1_000), None, "0.9 kopeck is nothing");
    assert_eq!(referral_share(rub(10), 1_000), Some(rub(1)));
    assert_eq!(referral_share(rub(10_000), 0), None);
    assert_eq!(referral_share(rub(-10_000), 1_000), None);
    assert_eq!(referral_share(rub(100), 50_000), Some(rub(100)), "capped at the whole top-up");
    assert_eq!(referral_share(Money::from_kopecks(i64::MAX), 10_000), Some(Money::from_kopecks(i64::MAX)));
    let codes: std::collections::BTreeSet<String> = (0..1_000_u128).map(referral_code).collect();
    assert_eq!(codes.len(), 1_000, "distinct");
    assert!(codes.iter().all(|c| check_referral_code(c).is_ok()), "{codes:?}");
}

#[tokio::test]
async fn the_trial_is_granted_once_even_when_started_twice_at_once() {
    // Proves concurrent first starts create the member once, grant the trial once and report it once, and a
    // later start grants nothing; the ledger verifies.
    let w = world(GrowthConfig::default());
    let p = person(42);
    let starts = join_all((0..8).map(|_| w.growth.start(&p, None)).collect()).await;
    let starts: Vec<Started> = starts.into_iter().map(|s| s.expect("start")).collect();
    assert_eq!(starts.iter().filter(|s| s.created).count(), 1, "created once");
    let trials: Vec<Money> = starts.iter().filter_map(|s| s.trial).collect();
    assert_eq!(trials, vec![rub(3_000)], "reported once");
    assert_eq!(w.balance(UserId(42)).await, rub(3_000), "granted once");
    let again = w.start(42, None).await;
    assert_eq!((again.created, again.trial, again.member.trial_granted), (false, None, true));
    assert_eq!(w.balance(UserId(42)).await, rub(3_000));
    assert_eq!(again.member.language, "ru", "no language told: the default");
    w.verified().await;
}

#[tokio::test]
async fn a_crash_between_the_trial_grant_and_its_mark_grants_once() {
    // Proves a start that died after granting the trial but before marking it grants nothing more on the next
    // start (the ledger replays), which marks and reports it.
    let w = world(GrowthConfig::default());
    w.members.fail_trial_marks(true);
    assert!(matches!(w.growth.start(&person(7), None).await, Err(GrowthError::Store(_))));
    assert_eq!(w.balance(UserId(7)).await, rub(3_000), "granted before the crash");
    w.members.fail_trial_marks(false);
    let started = w.start(7, None).await;
    assert_eq!((started.created, started.trial), (false, Some(rub(3_000))));
    assert_eq!(w.balance(UserId(7)).await, rub(3_000), "not twice");
    w.verified().await;
}

#[tokio::test]
async fn a_start_keeps_what_fits_and_never_fails_on_telegram_data() {
    // Proves a long first name is cut on a character boundary, control characters and an unusable username
    // or language are dropped, a configured default language applies, and a chosen language is kept.
    let w = world(GrowthConfig { default_language: "en".into(), ..GrowthConfig::default() });
    let profile = Profile {
        user: UserId(5),
        username: Some("@Has Space".into()),
        first_name: format!("\u{7}{}", "я".repeat(100)),
        language: Some("x-very-long-tag".into()),
    };
    let started = w.growth.start(&profile, None).await.expect("start");
    let m = started.member;
    assert_eq!((m.username, m.language.as_str(), m.first_name.len()), (None, "en", 128));
    assert!(m.first_name.chars().all(|c| c == 'я'));
    let profile = Profile { username: Some("@Real_Name".into()), language: Some("DE".into()), ..profile };
    let m = w.growth.start(&profile, None).await.expect("start").member;
    assert_eq!((m.username.as_deref(), m.language.as_str()), (Some("Real_Name"), "de"));
    w.growth.members().set_language(UserId(5), "uk").await.expect("choose");
    let m = w.growth.start(&profile, None).await.expect("start").member;
    assert_eq!(m.language, "uk", "chosen, not overridden");
}

#[tokio::test]
async fn referrals_pay_the_referrer_once_and_only_for_new_members() {
    // Proves a referral code names the referrer only of a new member, never the user themself, an unknown or
    // malformed code is ignored, a member keeps their first referrer, and the join bonus is paid once per
    // referee even when the referee starts several times at once.
    let w = world(GrowthConfig::default());
    let alice = w.start(1, None).await.member;
    let carol = w.start(3, None).await.member;
    let bob = w.start(2, Some(&alice.referral_code)).await;
    assert_eq!(bob.member.referrer, Some(UserId(1)));
    assert_eq!(bob.referrer_bonus, Some((UserId(1), rub(1_000))));
    assert_eq!(w.balance(UserId(1)).await, rub(4_000), "trial + join bonus");

    let again = w.start(2, Some(&carol.referral_code)).await;
    assert_eq!((again.member.referrer, again.referrer_bonus), (Some(UserId(1)), None), "one referrer, paid once");
    let late = w.start(3, Some(&alice.referral_code)).await;
    assert_eq!(late.member.referrer, None, "carol was a member before: no referrer");
    let own = w.start(1, Some(&alice.referral_code)).await;
    assert_eq!(own.member.referrer, None);
    for (user, code) in (10..).zip(["zzzzzzzzzz", "no!", "", &alice.referral_code.to_uppercase()]) {
        let s = w.growth.start(&person(user), Some(code)).await.expect("start");
        let expected = (code.eq_ignore_ascii_case(&alice.referral_code)).then_some(UserId(1));
        assert_eq!(s.member.referrer, expected, "code {code:?}");
    }
    assert_eq!(w.balance(UserId(1)).await, rub(5_000), "the upper-cased code is alice's too");

    let p = person(6);
    let frank = join_all((0..6).map(|_| w.growth.start(&p, Some(&alice.referral_code))).collect()).await;
    let bonuses = frank.into_iter().filter_map(|s| s.expect("start").referrer_bonus).count();
    assert_eq!(bonuses, 1, "reported once");
    assert_eq!(w.balance(UserId(1)).await, rub(6_000), "paid once");
    assert_eq!(w.growth.members().referee_count(UserId(1)).await.expect("count"), 3);
    w.verified().await;
}

#[tokio::test]
async fn a_zero_trial_and_bonus_grant_nothing() {
    // Proves a configuration without a trial or join bonus grants nothing and moves no money.
    let w = world(GrowthConfig { trial: Money::ZERO, referral_join_bonus: Money::ZERO, ..GrowthConfig::default() });
    let alice = w.start(1, None).await;
    let bob = w.start(2, Some(&alice.member.referral_code)).await;
    assert_eq!((alice.trial, bob.trial, bob.referrer_bonus), (None, None, None));
    assert_eq!((w.balance(UserId(1)).await, w.balance(UserId(2)).await), (Money::ZERO, Money::ZERO));
    assert!(!bob.member.trial_granted);
}

#[tokio::test]
async fn the_referrer_gets_a_share_of_each_top_up_once() {
    // Proves each top-up of a referee pays the referrer 10 % rounded down once however often it is told, a
    // share under a kopeck is skipped, the referee is marked paid at the first top-up, and users without a
    // referrer or membership get nothing.
    let w = world(GrowthConfig::default());
    let alice = w.start(1, None).await.member;
    w.start(2, Some(&alice.referral_code)).await;
    let before = w.balance(UserId(1)).await;
    let pay = |p: &str| PaymentId::parse(p).expect("payment");
    for _ in 0..3 {
        let share = w.growth.on_top_up(UserId(2), &pay("pay-1"), rub(12_345)).await.expect("top-up");
        assert_eq!(share, Some((UserId(1), rub(1_234))), "the same outcome every time");
    }
    assert_eq!(w.balance(UserId(1)).await, before.checked_add(rub(1_234)).expect("sum"));
    assert_eq!(w.growth.on_top_up(UserId(2), &pay("pay-2"), rub(9)).await.expect("tiny"), None);
    let paid_at = w.growth.members().get(UserId(2)).await.expect("get").and_then(|m| m.paid_at);
    assert_eq!(paid_at, Some(T0));
    w.clock.advance(std::time::Duration::from_secs(60));
    w.growth.on_top_up(UserId(2), &pay("pay-3"), rub(100)).await.expect("later");
    let paid_at = w.growth.members().get(UserId(2)).await.expect("get").and_then(|m| m.paid_at);
    assert_eq!(paid_at, Some(T0), "the first payment's time");
    assert_eq!(w.growth.on_top_up(UserId(1), &pay("pay-4"), rub(100_000)).await.expect("no referrer"), None);
    assert_eq!(w.growth.on_top_up(UserId(77), &pay("pay-5"), rub(100_000)).await.expect("no member"), None);
    assert_eq!(w.balance(UserId(1)).await, before.checked_add(rub(1_244)).expect("sum"));
    w.verified().await;
}

/// A gateway that knows some paid payments and nothing else.
#[derive(Default)]
struct PaidGateway(Mutex<BTreeMap<PaymentId, Payment>>);

impl PaidGateway {
    fn paid(&self, id: &PaymentId, user: UserId, amount: Money) {
        let payment = Payment {
            id: id.clone(),
            status: PaymentStatus::Succeeded,
            amount,
            currency: "RUB".into(),
            confirmation_url: None,
            metadata: BTreeMap::from([(crate::topups::USER_KEY.to_owned(), user.0.to_string())]),
            test: true,
            cancellation_reason: None,
        };
        self.0.lock().expect("lock").insert(id.clone(), payment);
    }
}

#[async_trait]
impl PaymentGateway for PaidGateway {
    async fn create_payment(&self, _: &IdempotencyKey, _: &PaymentRequest) -> Result<Payment, GatewayError> {
        Err(GatewayError::NotFound)
    }
    async fn payment(&self, id: &PaymentId) -> Result<Payment, GatewayError> {
        self.0.lock().expect("lock").get(id).cloned().ok_or(GatewayError::NotFound)
    }
    async fn create_refund(&self, _: &IdempotencyKey, _: &RefundRequest) -> Result<Refund, GatewayError> {
        Err(GatewayError::NotFound)
    }
    async fn refund(&self, _: &str) -> Result<Refund, GatewayError> {
        Err(GatewayError::NotFound)
    }
}

#[tokio::test]
async fn card_and_stars_top_ups_tell_growth_once_per_payment() {
    // Proves the observer hears of card top-ups on the webhook's path (a notice delivered twice) and the
    // reconciler's, and of Stars payments (delivered twice), and the referrer's share is paid once per
    // payment.
    let w = world(GrowthConfig::default());
    let alice = w.start(1, None).await.member;
    w.start(2, Some(&alice.referral_code)).await;
    let before = w.balance(UserId(1)).await;

    let gateway = Arc::new(PaidGateway::default());
    let payments = Arc::new(MemoryPayments::new());
    let ports = TopUpPorts {
        gateway: gateway.clone(),
        billing: w.billing.clone(),
        payments: payments.clone(),
        clock: w.clock.clone(),
    };
    let top_ups = Arc::new(TopUps::new(ports, TopUpsConfig::default()).with_observer(w.growth.clone()));
    let hooked = PaymentId::parse("2d000000-000f-5000-8000-0000000000aa").expect("id");
    gateway.paid(&hooked, UserId(2), rub(50_000));
    let notice = Notice { event: NoticeEvent::PaymentSucceeded, object_id: hooked.to_string() };
    top_ups.on_notice(&notice).await.expect("notice");
    top_ups.on_notice(&notice).await.expect("again");
    assert_eq!(w.balance(UserId(1)).await, before.checked_add(rub(5_000)).expect("sum"), "10 % of 500 once");

    let record = sample_payment(1, 2, 20_000, T0.as_millis() - 120_000);
    gateway.paid(&record.id, UserId(2), rub(20_000));
    payments.insert(&record).await.expect("record");
    let reconciler = Reconciler::new(top_ups, w.clock.clone(), ReconcilerConfig::default()).expect("reconciler");
    assert_eq!(reconciler.run_once().await.credited, 1);
    assert_eq!(w.balance(UserId(1)).await, before.checked_add(rub(7_000)).expect("sum"), "and 10 % of 200");

    let stars = StarsPayments::new(w.billing.clone(), StarsConfig::default()).expect("stars");
    let stars = stars.with_observer(w.growth.clone());
    let paid = SuccessfulPayment {
        from: UserId(2),
        currency: CURRENCY.into(),
        total_amount: 100,
        invoice_payload: "rei:2:t1".into(),
        telegram_payment_charge_id: "charge-1".into(),
        provider_payment_charge_id: String::new(),
    };
    assert!(!stars.on_successful_payment(&paid).await.expect("stars").replayed);
    assert!(stars.on_successful_payment(&paid).await.expect("again").replayed);
    assert_eq!(w.balance(UserId(1)).await, before.checked_add(rub(8_500)).expect("sum"), "and 10 % of 150 ₽");
    w.verified().await;
}

#[tokio::test]
async fn a_promo_code_grants_once_per_user_within_its_uses() {
    // Proves an admin's code grants its amount to each user once (a repeat returns the amount and grants
    // nothing), at most uses_max users, case-insensitively; a redemption whose grant was lost is granted by the
    // next call; unknown and expired codes are refused.
    let w = world(GrowthConfig::default());
    let code = w.growth.create_promo(&request(Role::Admin, "p-1"), "spring", rub(5_000), 2, None).await;
    let code = code.expect("create");
    assert_eq!((code.code.as_str(), code.uses, code.created_by), ("SPRING", 0, UserId(900)));
    assert_eq!(
        w.growth.redeem(UserId(1), "Spring").await.expect("redeem"),
        Redemption { amount: rub(5_000), first: true }
    );
    assert_eq!(
        w.growth.redeem(UserId(1), "SPRING").await.expect("again"),
        Redemption { amount: rub(5_000), first: false }
    );
    assert_eq!(w.balance(UserId(1)).await, rub(5_000), "granted once");
    // A redemption recorded but never granted (the process died in between) is granted by the next call.
    let redeemed = w.promos.redeem("SPRING", UserId(2), T0).await.expect("store");
    assert_eq!(redeemed, Redemption { amount: rub(5_000), first: true });
    assert_eq!(w.balance(UserId(2)).await, Money::ZERO);
    assert_eq!(
        w.growth.redeem(UserId(2), "spring").await.expect("repair"),
        Redemption { amount: rub(5_000), first: true }
    );
    assert_eq!(w.balance(UserId(2)).await, rub(5_000));
    let used_up = w.growth.redeem(UserId(3), "spring").await;
    assert_eq!(used_up, Err(GrowthError::Promo(PromoError::Exhausted)));
    assert_eq!(w.growth.redeem(UserId(3), "nope").await, Err(GrowthError::Promo(PromoError::Unknown)));
    assert!(matches!(w.growth.redeem(UserId(3), "a b").await, Err(GrowthError::Promo(PromoError::Invalid(_)))));
    let soon = Some(T0.plus(std::time::Duration::from_secs(60)));
    w.growth.create_promo(&request(Role::Owner, "p-2"), "BRIEF", rub(100), 10, soon).await.expect("create");
    w.clock.advance(std::time::Duration::from_secs(60));
    assert_eq!(w.growth.redeem(UserId(3), "brief").await, Err(GrowthError::Promo(PromoError::Expired)));
    assert_eq!(w.balance(UserId(3)).await, Money::ZERO);
    w.verified().await;
}

#[tokio::test]
async fn admin_actions_are_authorized_audited_and_repeatable() {
    // Proves a user may neither make codes nor ban (refused, audited as forbidden, nothing changed), an admin
    // may (audited as done), a repeated request returns its first outcome, a clash of terms or a ban of a
    // stranger fails audited, and bans lift.
    let w = world(GrowthConfig::default());
    w.start(42, None).await;
    let e = w.growth.create_promo(&request(Role::User, "u-1"), "FREE", rub(100_000), 1_000, None).await;
    assert!(matches!(e, Err(GrowthError::Admin(AdminError::Forbidden(_)))), "{e:?}");
    assert_eq!(w.promos.get("FREE").await.expect("get"), None, "nothing made");
    let e = w.growth.ban(&request(Role::User, "u-2"), UserId(42), None).await;
    assert!(matches!(e, Err(GrowthError::Admin(AdminError::Forbidden(_)))), "{e:?}");
    assert!(!w.members.get(UserId(42)).await.expect("get").expect("member").is_banned(T0), "not banned");

    let made = w.growth.create_promo(&request(Role::Admin, "a-1"), "FREE", rub(100), 5, None).await.expect("made");
    let again = w.growth.create_promo(&request(Role::Admin, "a-1"), "FREE", rub(100), 5, None).await;
    assert_eq!(again.expect("repeat"), made, "a repeat is the first outcome");
    let clash = w.growth.create_promo(&request(Role::Admin, "a-2"), "free", rub(999), 5, None).await;
    assert!(matches!(clash, Err(GrowthError::Promo(PromoError::Invalid(_)))), "{clash:?}");
    let bad = w.growth.create_promo(&request(Role::Admin, "a-3"), "ZERO", Money::ZERO, 5, None).await;
    assert!(matches!(bad, Err(GrowthError::Promo(PromoError::Invalid(_)))), "{bad:?}");

    let until = Some(T0.plus(std::time::Duration::from_secs(3_600)));
    w.growth.ban(&request(Role::Admin, "a-4"), UserId(42), until).await.expect("ban");
    let member = w.members.get(UserId(42)).await.expect("get").expect("member");
    assert!(member.is_banned(T0));
    assert_eq!(member.ban.map(|b| b.reason), Some("spring campaign".to_owned()), "the request's reason");
    let stranger = w.growth.ban(&request(Role::Admin, "a-5"), UserId(77), None).await;
    assert!(matches!(stranger, Err(GrowthError::Store(MemberStoreError::Invalid(_)))), "{stranger:?}");
    w.growth.unban(&request(Role::Admin, "a-6"), UserId(42)).await.expect("unban");
    assert!(!w.members.get(UserId(42)).await.expect("get").expect("member").is_banned(T0));

    let records = w.audit().await;
    let seen: Vec<(AuditAction, &str, AuditOutcome)> =
        records.iter().rev().map(|r| (r.action, r.target.as_str(), r.outcome)).collect();
    assert_eq!(
        seen,
        vec![
            (AuditAction::Adjust, "promo:FREE", AuditOutcome::Forbidden),
            (AuditAction::Ban, "user:42", AuditOutcome::Forbidden),
            (AuditAction::Adjust, "promo:FREE", AuditOutcome::Done),
            (AuditAction::Adjust, "promo:FREE", AuditOutcome::Failed),
            (AuditAction::Adjust, "promo:ZERO", AuditOutcome::Failed),
            (AuditAction::Ban, "user:42", AuditOutcome::Done),
            (AuditAction::Ban, "user:77", AuditOutcome::Failed),
            (AuditAction::Unban, "user:42", AuditOutcome::Done),
        ],
        "the repeat of a-1 is audited once"
    );
    w.verified().await;
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn redeems_never_exceed_the_uses_nor_grant_twice(
        uses_max in 1_u32..5,
        batches in proptest::collection::vec(proptest::collection::vec(0_i64..6, 1..5), 1..8),
    ) {
        // Proves any interleaving of redeems (batches run concurrently, batches in sequence) lets at most
        // uses_max users in, each once, grants each winner exactly the amount, tells every repeat of a winner
        // the same amount, and leaves a ledger that verifies.
        let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        rt.block_on(async {
            let w = world(GrowthConfig::default());
            let admin = request(Role::Admin, "make");
            w.growth.create_promo(&admin, "PROP", rub(250), uses_max, None).await.expect("create");
            let mut winners = std::collections::BTreeSet::new();
            for batch in &batches {
                let redeems = batch.iter().map(|u| w.growth.redeem(UserId(*u), "prop")).collect();
                for (user, outcome) in batch.iter().zip(join_all(redeems).await) {
                    match outcome {
                        Ok(redeemed) => {
                            assert_eq!(redeemed.amount, rub(250));
                            winners.insert(*user);
                        }
                        Err(GrowthError::Promo(PromoError::Exhausted)) => assert!(!winners.contains(user)),
                        Err(e) => panic!("{e}"),
                    }
                }
            }
            let distinct: std::collections::BTreeSet<i64> = batches.iter().flatten().copied().collect();
            let uses = w.promos.get("PROP").await.expect("get").expect("code").uses;
            assert_eq!(winners.len(), distinct.len().min(uses_max as usize), "first come, up to the uses");
            assert_eq!(uses as usize, winners.len());
            for user in distinct {
                let expected = if winners.contains(&user) { rub(250) } else { Money::ZERO };
                assert_eq!(w.balance(UserId(user)).await, expected, "user {user}");
            }
            w.verified().await;
        });
    }
}
