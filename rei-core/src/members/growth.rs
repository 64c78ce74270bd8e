//! [`Growth`]: what brings users in and keeps them: the first `/start` (the member, the trial, the referrer's
//! join bonus), the referrer's share of each top-up, promo codes, and bans.
//!
//! Every grant is an adjustment from the `promo` account by the system actor ([`SYSTEM_ACTOR`]) under a key
//! derived from what it is for, so a repeat or a crash between two steps never grants twice:
//!
//! | Grant | Key | Amount |
//! |---|---|---|
//! | trial | `trial:<user>` | [`GrowthConfig::trial`] |
//! | referrer's join bonus | `referral-join:<referee>` | [`GrowthConfig::referral_join_bonus`] |
//! | referrer's share of a top-up | `referral-topup:<payment>` | [`referral_share`] of the top-up |
//! | promo code | `promo:<CODE>:<user>` | the code's amount |
//!
//! A key the ledger finds used for another amount (the configuration changed between a grant and its repeat)
//! counts as granted before: the first grant stands.

use std::sync::Arc;

use crate::billing::{AdminError, AdminRequest, AuditedError, Auditor, BillingError, BillingService};
use crate::guards::{AuditAction, AuditLog, Permission, Reason};
use crate::ids::{IdGen, IdempotencyKey, PaymentId, UserId};
use crate::ledger::{Applied, LedgerError};
use crate::money::Money;
use crate::time::{Clock, Timestamp};
use crate::topups::TopUpObserver;

use super::promo::{PromoCode, PromoError, PromoStore, Redemption, check_promo, normalize_code};
use super::store::{
    DEFAULT_LANGUAGE, FIRST_NAME_BYTES_MAX, Member, MemberBan, MemberStore, MemberStoreError, Profile,
    REFERRAL_CODE_LEN, check_language, check_profile, check_referral_code,
};

/// The actor of the grants the system makes on its own (no admin asked).
pub const SYSTEM_ACTOR: UserId = UserId(0);
/// The highest referral share: all of the top-up.
pub const REFERRAL_PERCENT_BP_MAX: u32 = 10_000;
/// How many referral codes one join tries before it gives up (each clash is one chance in about 3.6 × 10¹⁵
/// per member).
const CODE_ATTEMPTS_MAX: usize = 8;

/// What growth grants.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct GrowthConfig {
    /// Credited once to every new member on their first start; zero: no trial.
    pub trial: Money,
    /// Credited to the referrer once per member they brought; zero: none.
    pub referral_join_bonus: Money,
    /// The referrer's share of each of their referees' top-ups, in basis points (1 000 = 10 %), at most
    /// [`REFERRAL_PERCENT_BP_MAX`] (a higher value counts as that); zero: none.
    pub referral_percent_bp: u32,
    /// The language of a member Telegram tells none for; a value [`check_language`] refuses counts as
    /// [`DEFAULT_LANGUAGE`].
    pub default_language: String,
}

impl Default for GrowthConfig {
    /// A trial of 30.00 ₽ (enough to try a few images of the example price list, little enough that farming new
    /// accounts does not pay), 10.00 ₽ to the referrer per member brought and 10 % of every top-up of theirs
    /// (a share the referrer earns only on money really paid), and Russian for users whose client tells no
    /// language, as the original bot.
    fn default() -> GrowthConfig {
        GrowthConfig {
            trial: Money::from_kopecks(3_000),
            referral_join_bonus: Money::from_kopecks(1_000),
            referral_percent_bp: 1_000,
            default_language: DEFAULT_LANGUAGE.to_owned(),
        }
    }
}

/// What a `/start` did.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Started {
    /// The member as stored after it.
    pub member: Member,
    /// Whether this start created the member.
    pub created: bool,
    /// The trial, when this start is the one that granted it (of concurrent first starts, exactly one).
    pub trial: Option<Money>,
    /// The referrer and their join bonus, when this start granted it (the ledger did not replay it).
    pub referrer_bonus: Option<(UserId, Money)>,
}

/// Why a growth operation failed.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum GrowthError {
    /// The member store refused or failed.
    #[error(transparent)]
    Store(#[from] MemberStoreError),
    /// The promo code was refused (unknown, expired, used up, malformed) or the promo store failed.
    #[error(transparent)]
    Promo(#[from] PromoError),
    /// The ledger refused or failed; every grant is keyed, so repeating the call is safe.
    #[error(transparent)]
    Billing(#[from] BillingError),
    /// An admin action was forbidden (and audited), or its audit record could not be written.
    #[error(transparent)]
    Admin(#[from] AdminError),
}

impl From<LedgerError> for GrowthError {
    fn from(e: LedgerError) -> GrowthError {
        GrowthError::Billing(e.into())
    }
}

/// `bp` basis points of `amount`, **rounded down** to whole kopecks: `floor(kopecks × bp / 10 000)` in
/// integers, so a share never pays a fraction of a kopeck more than its rate (the one place growth rounds).
/// `bp` above [`REFERRAL_PERCENT_BP_MAX`] counts as that. `None` when it comes to nothing: a zero rate, an
/// amount that is not positive, a share under one kopeck.
#[must_use]
pub fn referral_share(amount: Money, bp: u32) -> Option<Money> {
    if !amount.is_positive() {
        return None;
    }
    let kopecks = i128::from(amount.kopecks()) * i128::from(bp.min(REFERRAL_PERCENT_BP_MAX)) / 10_000;
    i64::try_from(kopecks).ok().filter(|k| *k > 0).map(Money::from_kopecks)
}

/// The referral code made from an id: [`REFERRAL_CODE_LEN`] base-36 digits of the id's hash. Multiplying by
/// an odd constant is a bijection of `u128` whose high half depends on every bit, so time-ordered ids spread
/// over the whole code space.
fn referral_code(id: u128) -> String {
    const ALPHABET: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut n = id.wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835) >> 64;
    let mut code = [0_u8; REFERRAL_CODE_LEN];
    for digit in code.iter_mut().rev() {
        *digit = ALPHABET[usize::try_from(n % 36).unwrap_or(0)];
        n /= 36;
    }
    code.iter().map(|b| char::from(*b)).collect()
}

/// `text` cut to at most `max` bytes on a character boundary.
fn cut(text: &str, max: usize) -> &str {
    let end = (0..=max.min(text.len())).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
    &text[..end]
}

/// A reason the system writes. Every one is short printable ASCII (ids, codes and numbers of bounded length),
/// so parsing cannot fail.
fn reason(text: &str) -> Reason {
    Reason::parse(text).unwrap_or_else(|e| panic!("invariant broken: growth's own reason {text:?} is refused: {e}"))
}

/// Trials, referrals, promo codes and bans over a [`MemberStore`] and a [`PromoStore`], granting through a
/// [`BillingService`] and auditing admin actions like [`AdminService`](crate::billing::AdminService).
pub struct Growth {
    members: Arc<dyn MemberStore>,
    promos: Arc<dyn PromoStore>,
    billing: Arc<BillingService>,
    auditor: Auditor,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn IdGen>,
    config: GrowthConfig,
}

impl Growth {
    /// A service over these ports.
    #[must_use]
    pub fn new(
        members: Arc<dyn MemberStore>,
        promos: Arc<dyn PromoStore>,
        billing: Arc<BillingService>,
        audit: Arc<dyn AuditLog>,
        clock: Arc<dyn Clock>,
        ids: Arc<dyn IdGen>,
        config: GrowthConfig,
    ) -> Growth {
        let auditor = Auditor::new(audit, clock.clone(), ids.clone());
        Growth { members, promos, billing, auditor, clock, ids, config }
    }

    /// The member store.
    #[must_use]
    pub fn members(&self) -> &Arc<dyn MemberStore> {
        &self.members
    }

    /// The promo store.
    #[must_use]
    pub fn promos(&self) -> &Arc<dyn PromoStore> {
        &self.promos
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &GrowthConfig {
        &self.config
    }

    /// Handles a `/start`, optionally with a referral code (the deep-link payload).
    ///
    /// - The member is created or refreshed ([`MemberStore::join`]) with what of the profile fits the store: a
    ///   first name cut to [`FIRST_NAME_BYTES_MAX`] bytes without control characters, a username or language
    ///   that cannot be kept dropped, and for a new member the configured default language when Telegram
    ///   tells none. A referral code clash is retried with a new code.
    /// - `referral` names the referrer only when it is a member's code, not the user's own, and the user was
    ///   not a member yet; otherwise it is ignored. A member keeps the referrer they were created with.
    /// - The referrer's join bonus (key `referral-join:<referee>`) and then the trial (key `trial:<user>`) are
    ///   granted while the member's trial is not marked; the trial is marked after its grant, so a crash in
    ///   between grants again on the next start, which the ledger replays. Concurrent first starts grant each
    ///   once, and exactly one of them reports the trial.
    ///
    /// # Errors
    /// [`GrowthError::Store`]; [`GrowthError::Billing`] when a grant failed (repeat the start: grants are keyed).
    pub async fn start(&self, profile: &Profile, referral: Option<&str>) -> Result<Started, GrowthError> {
        let now = self.clock.now();
        let existing = self.members.get(profile.user).await?;
        let referrer = match (&existing, referral) {
            (None, Some(code)) => self.referrer_of(code, profile.user).await?,
            _ => None,
        };
        let fitted = self.fitted(profile, existing.is_none());
        let (mut member, created) = self.join(&fitted, referrer, now).await?;
        let referrer_bonus = self.join_bonus(&member).await?;
        let trial = self.trial(&mut member).await?;
        Ok(Started { member, created, trial, referrer_bonus })
    }

    /// The referrer a code names for `user`: a member other than `user`.
    async fn referrer_of(&self, code: &str, user: UserId) -> Result<Option<UserId>, GrowthError> {
        let code = code.trim().to_ascii_lowercase();
        if check_referral_code(&code).is_err() {
            return Ok(None);
        }
        let referrer = self.members.by_referral_code(&code).await?;
        Ok(referrer.map(|m| m.user).filter(|r| *r != user))
    }

    /// What of `profile` the store can keep (see [`Self::start`]).
    fn fitted(&self, profile: &Profile, creating: bool) -> Profile {
        let first_name: String = profile.first_name.chars().filter(|c| !c.is_control()).collect();
        let username = profile.username.as_deref().map(|u| u.strip_prefix('@').unwrap_or(u));
        let language = profile.language.as_deref().map(str::to_ascii_lowercase).filter(|l| check_language(l).is_ok());
        let default = match check_language(&self.config.default_language) {
            Ok(()) => self.config.default_language.as_str(),
            Err(_) => DEFAULT_LANGUAGE,
        };
        let mut fitted = Profile {
            user: profile.user,
            username: username.map(str::to_owned),
            first_name: cut(&first_name, FIRST_NAME_BYTES_MAX).to_owned(),
            language: language.or_else(|| creating.then(|| default.to_owned())),
        };
        // The name and language fit by now; what is left to refuse is the username.
        if check_profile(&fitted).is_err() {
            fitted.username = None;
        }
        fitted
    }

    /// Joins with a fresh referral code, again with another on a clash.
    async fn join(
        &self,
        profile: &Profile,
        referrer: Option<UserId>,
        now: Timestamp,
    ) -> Result<(Member, bool), GrowthError> {
        for _ in 0..CODE_ATTEMPTS_MAX {
            let code = referral_code(self.ids.next_u128());
            match self.members.join(profile, &code, referrer, now).await {
                Err(MemberStoreError::Conflict) => {}
                joined => return Ok(joined?),
            }
        }
        Err(MemberStoreError::Conflict.into())
    }

    /// The referrer's join bonus, while the member's trial is not marked (a new member's never is).
    async fn join_bonus(&self, member: &Member) -> Result<Option<(UserId, Money)>, GrowthError> {
        let Some(referrer) = member.referrer else { return Ok(None) };
        let bonus = self.config.referral_join_bonus;
        if !bonus.is_positive() || member.trial_granted {
            return Ok(None);
        }
        let key = IdempotencyKey::derived("referral-join", member.user).map_err(LedgerError::from)?;
        let why = reason(&format!("referral bonus: user {} joined", member.user));
        let granted = self.grant(referrer, bonus, why, key).await?;
        Ok(granted.filter(|a| !a.replayed).map(|a| (referrer, a.receipt.amount)))
    }

    /// The trial, unless marked: granted, then marked; reported by the call that marked it.
    async fn trial(&self, member: &mut Member) -> Result<Option<Money>, GrowthError> {
        let trial = self.config.trial;
        if member.trial_granted || !trial.is_positive() {
            return Ok(None);
        }
        let key = IdempotencyKey::derived("trial", member.user).map_err(LedgerError::from)?;
        let granted = self.grant(member.user, trial, reason("trial credit"), key).await?;
        let first = self.members.mark_trial(member.user).await?;
        member.trial_granted = true;
        Ok(granted.filter(|_| first).map(|a| a.receipt.amount))
    }

    /// A keyed grant from `promo`: what the ledger applied or replayed, or `None` when the key was used for
    /// another amount (granted before, under an older configuration: that grant stands).
    async fn grant(
        &self,
        user: UserId,
        amount: Money,
        why: Reason,
        key: IdempotencyKey,
    ) -> Result<Option<Applied>, GrowthError> {
        match self.billing.adjust(user, amount, SYSTEM_ACTOR, why, key).await {
            Ok(applied) => Ok(Some(applied)),
            Err(BillingError::Ledger(LedgerError::KeyConflict { .. })) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// After a credited top-up of `amount` by `user` (and after every replay of it): marks the member paid,
    /// and grants their referrer [`referral_share`] of it under the key `referral-topup:<payment>`. Returns the
    /// referrer and the share, the same for every repeat; `None` for a user who is not a member or has no
    /// referrer, or a share that comes to nothing.
    ///
    /// # Errors
    /// [`GrowthError::Store`]; [`GrowthError::Billing`] (repeat: the grant is keyed).
    pub async fn on_top_up(
        &self,
        user: UserId,
        payment: &PaymentId,
        amount: Money,
    ) -> Result<Option<(UserId, Money)>, GrowthError> {
        self.members.mark_paid(user, self.clock.now()).await?;
        let Some(referrer) = self.members.get(user).await?.and_then(|m| m.referrer) else { return Ok(None) };
        let bp = self.config.referral_percent_bp;
        let Some(share) = referral_share(amount, bp) else { return Ok(None) };
        let key = IdempotencyKey::derived("referral-topup", payment).map_err(LedgerError::from)?;
        let why = reason(&format!("referral bonus: {bp} bp of payment {payment} by user {user}"));
        let granted = self.grant(referrer, share, why, key).await?;
        Ok(granted.map(|a| (referrer, a.receipt.amount)))
    }

    /// Redeems promo code `code` (as the user typed it) for `user` and grants its amount under the key
    /// `promo:<CODE>:<user>`. A repeat by the same user returns the same amount and grants nothing more; it
    /// grants what a crash after the redemption left ungranted.
    ///
    /// # Errors
    /// [`GrowthError::Promo`] ([`PromoError::Invalid`], [`PromoError::Unknown`], [`PromoError::Expired`],
    /// [`PromoError::Exhausted`], [`PromoError::Unavailable`]); [`GrowthError::Billing`] (repeat: the grant
    /// is keyed).
    pub async fn redeem(&self, user: UserId, code: &str) -> Result<Redemption, GrowthError> {
        let code = normalize_code(code)?;
        let redemption = self.promos.redeem(&code, user, self.clock.now()).await?;
        let key = IdempotencyKey::derived("promo", format!("{code}:{user}")).map_err(LedgerError::from)?;
        let granted = self.grant(user, redemption.amount, reason(&format!("promo code {code}")), key).await?;
        // First for this user when this call's grant moved the money (a repaired redemption counts as first).
        let first = granted.as_ref().map_or(redemption.first, |a| !a.replayed);
        Ok(Redemption { amount: granted.map_or(redemption.amount, |a| a.receipt.amount), first })
    }

    /// Makes a promo code granting `amount` to each of up to `uses_max` users until `expires_at`, authorized
    /// ([`Permission::AdjustBalance`]: a code is a way to credit balances) and audited as
    /// [`AuditAction::Adjust`] on `promo:<CODE>` (the audit log has no action of its own for codes). Repeating
    /// the request returns the code made the first time.
    ///
    /// # Errors
    /// [`GrowthError::Admin`] ([`AdminError::Forbidden`], [`AdminError::Audit`]); [`GrowthError::Promo`] for a
    /// malformed code, an amount or limit out of range, or a code that exists with other terms.
    pub async fn create_promo(
        &self,
        req: &AdminRequest,
        code: &str,
        amount: Money,
        uses_max: u32,
        expires_at: Option<Timestamp>,
    ) -> Result<PromoCode, GrowthError> {
        let target = normalize_code(code).map_or_else(|_| "promo:invalid".to_owned(), |c| format!("promo:{c}"));
        let act = async {
            let promo = PromoCode {
                code: normalize_code(code)?,
                amount,
                uses_max,
                uses: 0,
                expires_at,
                created_by: req.actor,
                created_at: self.clock.now(),
            };
            check_promo(&promo)?;
            if self.promos.create(&promo).await? {
                return Ok(promo);
            }
            match self.promos.get(&promo.code).await? {
                Some(first)
                    if (first.amount, first.uses_max, first.expires_at, first.created_by)
                        == (amount, uses_max, expires_at, req.actor) =>
                {
                    Ok(first)
                }
                _ => Err(PromoError::Invalid(format!("code {} exists with other terms", promo.code)).into()),
            }
        };
        self.audited(req, AuditAction::Adjust, Permission::AdjustBalance, &target, act).await
    }

    /// Bans `user` until `until` (`None`: for ever) for the request's reason, authorized
    /// ([`Permission::BanUser`]) and audited ([`AuditAction::Ban`] on `user:<id>`).
    ///
    /// # Errors
    /// [`GrowthError::Admin`] ([`AdminError::Forbidden`], [`AdminError::Audit`]); [`GrowthError::Store`] (a
    /// user who is not a member is [`MemberStoreError::Invalid`]).
    pub async fn ban(&self, req: &AdminRequest, user: UserId, until: Option<Timestamp>) -> Result<(), GrowthError> {
        let ban = MemberBan { until, reason: req.reason.as_str().to_owned() };
        let act = async { Ok(self.members.set_ban(user, Some(&ban)).await?) };
        self.audited(req, AuditAction::Ban, Permission::BanUser, &format!("user:{user}"), act).await
    }

    /// Lifts `user`'s ban, authorized ([`Permission::BanUser`]) and audited ([`AuditAction::Unban`]).
    ///
    /// # Errors
    /// As [`Self::ban`].
    pub async fn unban(&self, req: &AdminRequest, user: UserId) -> Result<(), GrowthError> {
        let act = async { Ok(self.members.set_ban(user, None).await?) };
        self.audited(req, AuditAction::Unban, Permission::BanUser, &format!("user:{user}"), act).await
    }

    async fn audited<T>(
        &self,
        req: &AdminRequest,
        action: AuditAction,
        permission: Permission,
        target: &str,
        act: impl Future<Output = Result<T, GrowthError>>,
    ) -> Result<T, GrowthError> {
        self.auditor.run(req, action, permission, target, act).await.map_err(|e| match e {
            AuditedError::Admin(e) => GrowthError::Admin(e),
            AuditedError::Action(e) => e,
        })
    }
}

/// Pays referrers their share of every credited top-up. rei-core has no logger, so a failure is dropped here:
/// the credit stands, and a replay of the top-up tells the observer again. An embedder who wants failures
/// logged wraps [`Growth::on_top_up`] in an observer of its own.
#[async_trait::async_trait]
impl TopUpObserver for Growth {
    async fn credited(&self, user: UserId, payment: &PaymentId, amount: Money) {
        let _ = self.on_top_up(user, payment, amount).await;
    }
}

#[cfg(all(test, feature = "testing"))]
mod tests;
