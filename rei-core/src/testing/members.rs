//! [`MemoryMembers`] and [`MemoryPromos`], and the conformance suites every [`MemberStore`] and [`PromoStore`]
//! must pass.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;

use crate::ids::UserId;
use crate::members::{
    Audience, DEFAULT_LANGUAGE, Member, MemberBan, MemberStats, MemberStore, MemberStoreError, PROMO_LIST_LIMIT_MAX,
    Profile, PromoCode, PromoError, PromoStore, Redemption, check_ban, check_language, check_profile, check_promo,
    check_referral_code, normalize_code, page_limit, stats_windows, username_key,
};
use crate::money::Money;
use crate::time::Timestamp;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn not_a_member(user: UserId) -> MemberStoreError {
    MemberStoreError::Invalid(format!("user {user} is not a member"))
}

/// Members in a mutex; every call is one critical section, so each is atomic.
#[derive(Debug, Default)]
pub struct MemoryMembers {
    members: Mutex<BTreeMap<UserId, Member>>,
    trial_marks_fail: AtomicBool,
}

impl MemoryMembers {
    /// No members.
    #[must_use]
    pub fn new() -> MemoryMembers {
        MemoryMembers::default()
    }

    /// While `on`, [`MemberStore::mark_trial`] fails as an unreachable store would: a crash between a trial's
    /// grant and its mark.
    pub fn fail_trial_marks(&self, on: bool) {
        self.trial_marks_fail.store(on, Ordering::SeqCst);
    }

    fn update<T>(&self, user: UserId, change: impl FnOnce(&mut Member) -> T) -> Option<T> {
        lock(&self.members).get_mut(&user).map(change)
    }
}

#[async_trait]
impl MemberStore for MemoryMembers {
    async fn join(
        &self,
        profile: &Profile,
        referral_code: &str,
        referrer: Option<UserId>,
        now: Timestamp,
    ) -> Result<(Member, bool), MemberStoreError> {
        check_profile(profile)?;
        check_referral_code(referral_code)?;
        let mut members = lock(&self.members);
        if let Some(member) = members.get_mut(&profile.user) {
            member.username.clone_from(&profile.username);
            member.first_name.clone_from(&profile.first_name);
            member.last_seen_at = member.last_seen_at.max(now);
            member.blocked_at = None;
            if let Some(language) = profile.language.as_ref().filter(|_| !member.language_chosen) {
                member.language.clone_from(language);
            }
            return Ok((member.clone(), false));
        }
        if referrer.is_some_and(|r| r == profile.user || !members.contains_key(&r)) {
            return Err(MemberStoreError::Invalid("the referrer is not another member".to_owned()));
        }
        if members.values().any(|m| m.referral_code == referral_code) {
            return Err(MemberStoreError::Conflict);
        }
        let member = Member {
            user: profile.user,
            username: profile.username.clone(),
            first_name: profile.first_name.clone(),
            language: profile.language.clone().unwrap_or_else(|| DEFAULT_LANGUAGE.to_owned()),
            language_chosen: false,
            referral_code: referral_code.to_owned(),
            referrer,
            joined_at: now,
            last_seen_at: now,
            trial_granted: false,
            paid_at: None,
            ban: None,
            blocked_at: None,
        };
        members.insert(profile.user, member.clone());
        Ok((member, true))
    }

    async fn get(&self, user: UserId) -> Result<Option<Member>, MemberStoreError> {
        Ok(lock(&self.members).get(&user).cloned())
    }

    async fn by_referral_code(&self, code: &str) -> Result<Option<Member>, MemberStoreError> {
        Ok(lock(&self.members).values().find(|m| m.referral_code == code).cloned())
    }

    async fn by_username(&self, username: &str) -> Result<Option<Member>, MemberStoreError> {
        let key = username_key(username);
        let members = lock(&self.members);
        let named = members.values().filter(|m| m.username.as_deref().is_some_and(|u| username_key(u) == key));
        Ok(named.max_by_key(|m| (m.last_seen_at, m.user)).cloned())
    }

    async fn seen(&self, user: UserId, now: Timestamp) -> Result<(), MemberStoreError> {
        self.update(user, |m| {
            m.last_seen_at = m.last_seen_at.max(now);
            m.blocked_at = None;
        });
        Ok(())
    }

    async fn set_language(&self, user: UserId, language: &str) -> Result<(), MemberStoreError> {
        check_language(language)?;
        self.update(user, |m| {
            m.language = language.to_owned();
            m.language_chosen = true;
        })
        .ok_or_else(|| not_a_member(user))
    }

    async fn mark_trial(&self, user: UserId) -> Result<bool, MemberStoreError> {
        if self.trial_marks_fail.load(Ordering::SeqCst) {
            return Err(MemberStoreError::Unavailable { reason: "told to fail trial marks".to_owned() });
        }
        Ok(self.update(user, |m| !std::mem::replace(&mut m.trial_granted, true)).unwrap_or(false))
    }

    async fn mark_paid(&self, user: UserId, now: Timestamp) -> Result<(), MemberStoreError> {
        self.update(user, |m| m.paid_at = m.paid_at.or(Some(now)));
        Ok(())
    }

    async fn set_ban(&self, user: UserId, ban: Option<&MemberBan>) -> Result<(), MemberStoreError> {
        ban.map_or(Ok(()), check_ban)?;
        self.update(user, |m| m.ban = ban.cloned()).ok_or_else(|| not_a_member(user))
    }

    async fn mark_blocked(&self, user: UserId, now: Timestamp) -> Result<(), MemberStoreError> {
        self.update(user, |m| m.blocked_at = m.blocked_at.or(Some(now)));
        Ok(())
    }

    async fn audience(
        &self,
        audience: &Audience,
        after: Option<UserId>,
        limit: u32,
        now: Timestamp,
    ) -> Result<Vec<UserId>, MemberStoreError> {
        let members = lock(&self.members);
        let page = members
            .values()
            .filter(|m| after.is_none_or(|a| m.user > a))
            .filter(|m| !m.is_banned(now) && m.blocked_at.is_none())
            .filter(|m| match audience {
                Audience::All => true,
                Audience::ActiveSince(since) => m.last_seen_at >= *since,
                Audience::Paid => m.paid_at.is_some(),
            })
            .map(|m| m.user)
            .take(page_limit(limit) as usize);
        Ok(page.collect())
    }

    async fn stats(&self, now: Timestamp) -> Result<MemberStats, MemberStoreError> {
        let [day, week, month] = stats_windows(now);
        let members = lock(&self.members);
        let count = |f: &dyn Fn(&Member) -> bool| members.values().filter(|m| f(m)).count() as u64;
        Ok(MemberStats {
            total: count(&|_| true),
            joined_since_1d: count(&|m| m.joined_at >= day),
            active_1d: count(&|m| m.last_seen_at >= day),
            active_7d: count(&|m| m.last_seen_at >= week),
            active_30d: count(&|m| m.last_seen_at >= month),
            paid: count(&|m| m.paid_at.is_some()),
            banned: count(&|m| m.is_banned(now)),
            blocked: count(&|m| m.blocked_at.is_some()),
        })
    }

    async fn referees(&self, referrer: UserId, limit: u32) -> Result<Vec<Member>, MemberStoreError> {
        let members = lock(&self.members);
        let mut referees: Vec<Member> = members.values().filter(|m| m.referrer == Some(referrer)).cloned().collect();
        referees.sort_by_key(|m| std::cmp::Reverse((m.joined_at, m.user)));
        referees.truncate(page_limit(limit) as usize);
        Ok(referees)
    }

    async fn referee_count(&self, referrer: UserId) -> Result<u64, MemberStoreError> {
        Ok(lock(&self.members).values().filter(|m| m.referrer == Some(referrer)).count() as u64)
    }
}

/// Promo codes and their redemptions in one mutex, so a redemption and its use are one critical section.
#[derive(Debug, Default)]
pub struct MemoryPromos {
    state: Mutex<Promos>,
}

#[derive(Debug, Default)]
struct Promos {
    codes: BTreeMap<String, PromoCode>,
    redemptions: BTreeMap<(String, UserId), Money>,
}

impl MemoryPromos {
    /// No codes.
    #[must_use]
    pub fn new() -> MemoryPromos {
        MemoryPromos::default()
    }
}

#[async_trait]
impl PromoStore for MemoryPromos {
    async fn create(&self, code: &PromoCode) -> Result<bool, PromoError> {
        check_promo(code)?;
        let mut state = lock(&self.state);
        if state.codes.contains_key(&code.code) {
            return Ok(false);
        }
        state.codes.insert(code.code.clone(), code.clone());
        Ok(true)
    }

    async fn get(&self, code: &str) -> Result<Option<PromoCode>, PromoError> {
        let Ok(code) = normalize_code(code) else { return Ok(None) };
        Ok(lock(&self.state).codes.get(&code).cloned())
    }

    async fn list(&self, limit: u32) -> Result<Vec<PromoCode>, PromoError> {
        let state = lock(&self.state);
        let mut codes: Vec<PromoCode> = state.codes.values().cloned().collect();
        codes.sort_by(|a, b| (b.created_at, &b.code).cmp(&(a.created_at, &a.code)));
        codes.truncate(limit.min(PROMO_LIST_LIMIT_MAX) as usize);
        Ok(codes)
    }

    async fn redeem(&self, code: &str, user: UserId, now: Timestamp) -> Result<Redemption, PromoError> {
        let code = normalize_code(code)?;
        let mut state = lock(&self.state);
        let key = (code, user);
        if let Some(amount) = state.redemptions.get(&key) {
            return Ok(Redemption { amount: *amount, first: false });
        }
        let promo = state.codes.get_mut(&key.0).ok_or(PromoError::Unknown)?;
        if promo.is_expired(now) {
            return Err(PromoError::Expired);
        }
        if promo.uses >= promo.uses_max {
            return Err(PromoError::Exhausted);
        }
        promo.uses += 1;
        let amount = promo.amount;
        state.redemptions.insert(key, amount);
        Ok(Redemption { amount, first: true })
    }
}

fn at(ms: i64) -> Timestamp {
    Timestamp::from_millis(ms)
}

fn ok<T, E: std::fmt::Display>(r: Result<T, E>) -> T {
    r.unwrap_or_else(|e| panic!("{e}"))
}

const DAY_MS: i64 = 24 * 60 * 60 * 1_000;
/// The suites' "now": far from the epoch, so every window of [`stats_windows`] fits.
const T0: i64 = 1_800_000_000_000;

fn profile(user: i64, username: Option<&str>, language: Option<&str>) -> Profile {
    Profile {
        user: UserId(user),
        username: username.map(str::to_owned),
        first_name: format!("user {user}"),
        language: language.map(str::to_owned),
    }
}

/// A referral code of the right shape, distinct for each `n`.
fn code(n: u32) -> String {
    format!("code{n:06}")
}

/// Checks a [`MemberStore`] (which must be empty): concurrent joins create once, a refresh keeps the referral
/// code, the referrer and a chosen language, refusals change nothing, lookups by code and username, the marks,
/// bans, audiences (paged, without banned or blocked members), counts and referees.
///
/// # Panics
/// On the first broken promise.
pub async fn member_store_conformance(store: &dyn MemberStore) {
    let alice = UserId(1);
    // Nothing to change for a user who is not a member: facts are dropped, commands refused.
    assert_eq!(ok(store.get(alice).await), None);
    assert!(!ok(store.mark_trial(alice).await));
    ok(store.seen(alice, at(T0)).await);
    ok(store.mark_paid(alice, at(T0)).await);
    ok(store.mark_blocked(alice, at(T0)).await);
    assert!(matches!(store.set_language(alice, "en").await, Err(MemberStoreError::Invalid(_))));
    let ban = MemberBan { until: None, reason: "spam".into() };
    assert!(matches!(store.set_ban(alice, Some(&ban)).await, Err(MemberStoreError::Invalid(_))));
    assert_eq!(ok(store.get(alice).await), None, "still no member");

    // Of 16 concurrent joins of one user, one creates; all see the winner's code.
    let joins = (0..16).map(|n| {
        let p = profile(1, Some("Alice_W"), None);
        async move { store.join(&p, &code(n), None, at(T0 - 40 * DAY_MS)).await }
    });
    let joined: Vec<(Member, bool)> = super::ledger::join_all(joins.collect()).await.into_iter().map(ok).collect();
    assert_eq!(joined.iter().filter(|(_, created)| *created).count(), 1, "exactly one join creates");
    let first = joined.iter().find(|(_, c)| *c).map(|(m, _)| m.clone()).unwrap_or_else(|| panic!("a winner"));
    assert!(joined.iter().all(|(m, _)| m.referral_code == first.referral_code));
    assert_eq!(first.language, DEFAULT_LANGUAGE, "no language told: the default");
    assert_eq!((first.joined_at, first.last_seen_at), (at(T0 - 40 * DAY_MS), at(T0 - 40 * DAY_MS)));
    assert!(!first.trial_granted && first.paid_at.is_none() && first.ban.is_none() && first.referrer.is_none());
    assert_eq!(ok(store.get(alice).await), Some(first.clone()));

    // A referee; the referrer must be another member, and the code must be free.
    let bob = UserId(2);
    let refused = store.join(&profile(2, Some("bob"), Some("en")), &first.referral_code, Some(alice), at(T0)).await;
    assert_eq!(refused.err(), Some(MemberStoreError::Conflict), "alice's code is taken");
    let refused = store.join(&profile(2, None, None), &code(100), Some(UserId(99)), at(T0)).await;
    assert!(matches!(refused, Err(MemberStoreError::Invalid(_))), "an unknown referrer: {refused:?}");
    let refused = store.join(&profile(2, None, None), &code(100), Some(bob), at(T0)).await;
    assert!(matches!(refused, Err(MemberStoreError::Invalid(_))), "a self-referral: {refused:?}");
    for bad in [
        Profile { username: Some("u".repeat(65)), ..profile(2, None, None) },
        Profile { username: Some("@bob".into()), ..profile(2, None, None) },
        Profile { first_name: "я".repeat(65), ..profile(2, None, None) },
        Profile { first_name: "bob\u{1b}[2J".into(), ..profile(2, None, None) },
        profile(2, None, Some("en-GB-oxendict")),
    ] {
        let refused = store.join(&bad, &code(100), None, at(T0)).await;
        assert!(matches!(refused, Err(MemberStoreError::Invalid(_))), "{bad:?}: {refused:?}");
    }
    let refused = store.join(&profile(2, None, None), "ABCDEFGHIJ", None, at(T0)).await;
    assert!(matches!(refused, Err(MemberStoreError::Invalid(_))), "an upper-case code: {refused:?}");
    assert_eq!(ok(store.get(bob).await), None, "nothing was created by a refused join");
    let (b, created) = ok(store.join(&profile(2, Some("Bob_B"), Some("en")), &code(101), Some(alice), at(T0)).await);
    assert!(created);
    assert_eq!((b.referrer, b.language.as_str(), b.referral_code.as_str()), (Some(alice), "en", "code000101"));
    assert_eq!(ok(store.by_referral_code(&code(101)).await).map(|m| m.user), Some(bob));
    assert_eq!(ok(store.by_referral_code(&code(999)).await), None);

    // A refresh: the profile's name and language, the referral code and referrer untouched.
    let refresh = Profile { first_name: "Bobby".into(), ..profile(2, Some("bobby_b"), Some("uk")) };
    let (b, created) = ok(store.join(&refresh, &code(102), Some(UserId(1)), at(T0 + 5)).await);
    assert!(!created);
    assert_eq!((b.username.as_deref(), b.first_name.as_str(), b.language.as_str()), (Some("bobby_b"), "Bobby", "uk"));
    assert_eq!(
        (b.referral_code.as_str(), b.referrer, b.joined_at, b.last_seen_at),
        ("code000101", Some(alice), at(T0), at(T0 + 5))
    );
    let (b, _) = ok(store.join(&profile(2, None, None), &code(103), None, at(T0 + 1)).await);
    assert_eq!(
        (b.username, b.language.as_str(), b.last_seen_at),
        (None, "uk", at(T0 + 5)),
        "no language: kept; time never back"
    );
    assert_eq!(ok(store.by_referral_code(&code(102)).await), None, "a refresh's code is not kept");

    // A chosen language is not overridden by Telegram's.
    ok(store.set_language(bob, "de").await);
    assert!(matches!(store.set_language(bob, "not a language").await, Err(MemberStoreError::Invalid(_))));
    let (b, _) = ok(store.join(&profile(2, Some("bob"), Some("en")), &code(104), None, at(T0 + 6)).await);
    assert_eq!((b.language.as_str(), b.language_chosen), ("de", true));

    // Usernames: case-insensitive, '@' ignored; a name that changed hands finds whoever was seen with it last.
    assert_eq!(ok(store.by_username("@ALICE_w").await).map(|m| m.user), Some(alice));
    assert_eq!(ok(store.by_username("bob").await).map(|m| m.user), Some(bob));
    let carol = UserId(3);
    ok(store.join(&profile(3, Some("BOB"), None), &code(105), None, at(T0 + 7)).await);
    assert_eq!(ok(store.by_username("Bob").await).map(|m| m.user), Some(carol));
    assert_eq!(ok(store.by_username("nobody").await), None);

    // The trial mark: once, also among concurrent marks.
    let marks = super::ledger::join_all((0..8).map(|_| store.mark_trial(carol)).collect()).await;
    assert_eq!(marks.into_iter().map(ok).filter(|m| *m).count(), 1, "one of 8 concurrent marks");
    assert!(!ok(store.mark_trial(carol).await));
    assert!(ok(store.get(carol).await).is_some_and(|m| m.trial_granted));

    // The first payment's time stays.
    ok(store.mark_paid(bob, at(T0 + 10)).await);
    ok(store.mark_paid(bob, at(T0 + 20)).await);
    assert_eq!(ok(store.get(bob).await).and_then(|m| m.paid_at), Some(at(T0 + 10)));

    // Bans: timed, permanent, lifted; a reason over the limit is refused and changes nothing.
    let timed = MemberBan { until: Some(at(T0 + 1_000)), reason: "флуд".into() };
    ok(store.set_ban(carol, Some(&timed)).await);
    let c = ok(store.get(carol).await).unwrap_or_else(|| panic!("carol"));
    assert_eq!(c.ban.as_ref(), Some(&timed));
    assert!(c.is_banned(at(T0 + 999)) && !c.is_banned(at(T0 + 1_000)));
    let long = MemberBan { until: None, reason: "x".repeat(crate::members::BAN_REASON_BYTES_MAX + 1) };
    assert!(matches!(store.set_ban(carol, Some(&long)).await, Err(MemberStoreError::Invalid(_))));
    assert_eq!(ok(store.get(carol).await).and_then(|m| m.ban), Some(timed));
    ok(store.set_ban(carol, None).await);
    assert_eq!(ok(store.get(carol).await).and_then(|m| m.ban), None);

    // Blocking: the first time stays; an update from the user clears it, a join too.
    ok(store.mark_blocked(carol, at(T0 + 30)).await);
    ok(store.mark_blocked(carol, at(T0 + 40)).await);
    assert_eq!(ok(store.get(carol).await).and_then(|m| m.blocked_at), Some(at(T0 + 30)));
    ok(store.seen(carol, at(T0 + 50)).await);
    let c = ok(store.get(carol).await).unwrap_or_else(|| panic!("carol"));
    assert_eq!((c.blocked_at, c.last_seen_at), (None, at(T0 + 50)));
    ok(store.seen(carol, at(T0 + 45)).await);
    assert_eq!(ok(store.get(carol).await).map(|m| m.last_seen_at), Some(at(T0 + 50)), "never back");
    ok(store.mark_blocked(carol, at(T0 + 60)).await);
    ok(store.join(&profile(3, Some("BOB"), None), &code(106), None, at(T0 + 70)).await);
    assert_eq!(ok(store.get(carol).await).and_then(|m| m.blocked_at), None);

    audiences_and_counts(store).await;
}

/// The audience, stats and referee checks of [`member_store_conformance`], on its members 1 to 3.
async fn audiences_and_counts(store: &dyn MemberStore) {
    let (alice, bob, carol) = (UserId(1), UserId(2), UserId(3));
    // 4: banned for ever; 5: blocked; 6: banned until before now (counts as not banned); 7: long gone.
    for (user, seen_ms) in [(4, T0 - DAY_MS), (5, T0 - 2 * DAY_MS), (6, T0 - 8 * DAY_MS), (7, T0 - 31 * DAY_MS)] {
        let p = profile(i64::from(user), None, None);
        let (_, created) = ok(store.join(&p, &code(200 + user), Some(alice), at(seen_ms)).await);
        assert!(created);
    }
    ok(store.set_ban(UserId(4), Some(&MemberBan { until: None, reason: "abuse".into() })).await);
    ok(store.mark_blocked(UserId(5), at(T0)).await);
    ok(store.set_ban(UserId(6), Some(&MemberBan { until: Some(at(T0 - 1)), reason: "cooled off".into() })).await);
    ok(store.mark_paid(UserId(6), at(T0)).await);

    let now = at(T0);
    let all = ok(store.audience(&Audience::All, None, 100, now).await);
    assert_eq!(all, vec![alice, bob, carol, UserId(6), UserId(7)], "banned and blocked members left out");
    let mut paged = Vec::new();
    let mut after = None;
    loop {
        let page = ok(store.audience(&Audience::All, after, 2, now).await);
        assert!(page.len() <= 2);
        let Some(last) = page.last().copied() else { break };
        paged.extend(page);
        after = Some(last);
    }
    assert_eq!(paged, all, "paging visits each once, ascending");
    let active = ok(store.audience(&Audience::ActiveSince(at(T0 - 7 * DAY_MS)), None, 100, now).await);
    assert_eq!(active, vec![bob, carol], "alice was seen 40 days ago, 6 eight days ago");
    assert_eq!(ok(store.audience(&Audience::Paid, None, 100, now).await), vec![bob, UserId(6)]);
    assert_eq!(ok(store.audience(&Audience::All, Some(carol), 1, now).await), vec![UserId(6)]);
    assert!(ok(store.audience(&Audience::All, None, 0, now).await).is_empty(), "a zero limit asks for nothing");
    let while_6_was_banned = ok(store.audience(&Audience::All, None, 100, at(T0 - 2)).await);
    assert!(!while_6_was_banned.contains(&UserId(6)), "6 was banned then");

    let stats = ok(store.stats(now).await);
    let expected = MemberStats {
        total: 7,
        joined_since_1d: 3, // bob, carol, 4 (joined exactly a day ago: windows include their start)
        active_1d: 3,       // bob, carol, 4
        active_7d: 4,       // and 5
        active_30d: 5,      // and 6
        paid: 2,
        banned: 1,
        blocked: 1,
    };
    assert_eq!(stats, expected);

    let referees = ok(store.referees(alice, 100).await);
    let order: Vec<UserId> = referees.iter().map(|m| m.user).collect();
    assert_eq!(order, vec![bob, UserId(4), UserId(5), UserId(6), UserId(7)], "newest first");
    assert_eq!(ok(store.referees(alice, 2).await).len(), 2);
    assert_eq!(ok(store.referee_count(alice).await), 5);
    assert_eq!(ok(store.referee_count(carol).await), 0);
    assert!(ok(store.referees(carol, 10).await).is_empty());
}

fn promo(code: &str, kopecks: i64, uses_max: u32, expires_at: Option<Timestamp>, created_ms: i64) -> PromoCode {
    PromoCode {
        code: code.to_owned(),
        amount: Money::from_kopecks(kopecks),
        uses_max,
        uses: 0,
        expires_at,
        created_by: UserId(900),
        created_at: at(created_ms),
    }
}

/// Checks a [`PromoStore`] (which must be empty): a code is made once and never changed, lookups ignore case,
/// malformed codes are refused, redeeming is once per user (also concurrently), an earlier redemption comes
/// back however the code stands, expiry, and of concurrent redeems of the last uses exactly as many win.
///
/// # Panics
/// On the first broken promise.
pub async fn promo_store_conformance(store: &dyn PromoStore) {
    let welcome = promo("WELCOME", 5_000, 2, Some(at(T0)), 1_000);
    assert!(ok(store.create(&welcome).await));
    assert!(!ok(store.create(&promo("WELCOME", 1, 100, None, 2_000)).await), "exists");
    assert_eq!(ok(store.get("welcome").await), Some(welcome.clone()), "unchanged, found whatever the case");
    assert_eq!(ok(store.get(" Welcome ").await), Some(welcome.clone()));
    assert_eq!(ok(store.get("no such code!").await), None);
    assert_eq!(ok(store.get("OTHER").await), None);
    for bad in [
        promo("lower", 100, 1, None, 0),
        promo("BAD CODE", 100, 1, None, 0),
        promo("", 100, 1, None, 0),
        promo(&"X".repeat(33), 100, 1, None, 0),
        promo("ZERO", 0, 1, None, 0),
        promo("NOUSES", 100, 0, None, 0),
        PromoCode { uses: 1, ..promo("USED", 100, 2, None, 0) },
    ] {
        assert!(matches!(store.create(&bad).await, Err(PromoError::Invalid(_))), "{bad:?}");
    }
    assert_eq!(ok(store.get("ZERO").await), None, "a refused code is not stored");

    // Redeeming: once per user; a repeat is the first redemption; expiry and exhaustion refuse newcomers only.
    let (ann, ben, cid) = (UserId(11), UserId(12), UserId(13));
    assert_eq!(store.redeem("NOPE", ann, at(0)).await, Err(PromoError::Unknown));
    assert!(matches!(store.redeem("no way!", ann, at(0)).await, Err(PromoError::Invalid(_))));
    let first = Redemption { amount: Money::from_kopecks(5_000), first: true };
    let again = Redemption { first: false, ..first };
    assert_eq!(ok(store.redeem("welcome", ann, at(T0 - 1)).await), first);
    assert_eq!(ok(store.redeem("WELCOME", ann, at(T0 - 1)).await), again);
    assert_eq!(store.redeem("WELCOME", ben, at(T0)).await, Err(PromoError::Expired), "expired at its end");
    assert_eq!(ok(store.redeem("WELCOME", ann, at(T0 + 1)).await), again, "expired, but ann redeemed it before");
    assert_eq!(ok(store.redeem("WELCOME", ben, at(T0 - 1)).await), first);
    assert_eq!(store.redeem("WELCOME", cid, at(T0 - 1)).await, Err(PromoError::Exhausted));
    assert_eq!(ok(store.get("WELCOME").await).map(|c| c.uses), Some(2));

    // Ten users race for three uses: exactly three win, the others find it used up.
    ok(store.create(&promo("RACE", 700, 3, None, 3_000)).await);
    let racers = (100..110).map(|u| store.redeem("RACE", UserId(u), at(T0)));
    let results = super::ledger::join_all(racers.collect()).await;
    let won = results.iter().filter(|r| matches!(r, Ok(Redemption { first: true, .. }))).count();
    let lost = results.iter().filter(|r| matches!(r, Err(PromoError::Exhausted))).count();
    assert_eq!((won, lost), (3, 7), "{results:?}");
    assert_eq!(ok(store.get("RACE").await).map(|c| c.uses), Some(3));
    let winner = (100..110).map(UserId).zip(&results).find(|(_, r)| r.is_ok()).map(|(u, _)| u);
    let winner = winner.unwrap_or_else(|| panic!("a winner"));
    assert!(!ok(store.redeem("RACE", winner, at(T0)).await).first, "used up, but the winner's stays");

    // One user redeeming eight times at once: one redemption, one use.
    ok(store.create(&promo("SOLO", 300, 5, None, 4_000)).await);
    let repeats = super::ledger::join_all((0..8).map(|_| store.redeem("SOLO", ann, at(T0))).collect()).await;
    let firsts = repeats.into_iter().map(ok).filter(|r| r.first).count();
    assert_eq!(firsts, 1, "one of 8 concurrent redeems by one user");
    assert_eq!(ok(store.get("SOLO").await).map(|c| c.uses), Some(1));

    // Newest first, bounded.
    let listed: Vec<String> = ok(store.list(10).await).into_iter().map(|c| c.code).collect();
    assert_eq!(listed, ["SOLO", "RACE", "WELCOME"]);
    assert_eq!(ok(store.list(1).await).len(), 1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_member_store_conforms() {
        // Proves the in-memory member store keeps every MUST of MemberStore.
        member_store_conformance(&MemoryMembers::new()).await;
    }

    #[tokio::test]
    async fn memory_promo_store_conforms() {
        // Proves the in-memory promo store keeps every MUST of PromoStore.
        promo_store_conformance(&MemoryPromos::new()).await;
    }
}
