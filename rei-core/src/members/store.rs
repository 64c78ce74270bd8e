//! The [`MemberStore`] port: one [`Member`] per bot user, created on the first update and refreshed on later
//! ones, with what growth and moderation need (referral code and referrer, trial, first payment, ban, whether
//! the user blocked the bot).

use std::time::Duration;

use async_trait::async_trait;

use crate::ids::UserId;
use crate::time::Timestamp;

/// The longest username kept, in characters of `A-Za-z0-9_` (Telegram's are 5 to 32 of them).
pub const USERNAME_BYTES_MAX: usize = 64;
/// The longest first name kept, in bytes.
pub const FIRST_NAME_BYTES_MAX: usize = 128;
/// The longest language code kept, in bytes (an IETF tag such as `ru`, `en`, `pt-br`).
pub const LANGUAGE_BYTES_MAX: usize = 8;
/// The longest ban reason kept, in bytes (an admin's [`Reason`](crate::guards::Reason) of 500 characters fits).
pub const BAN_REASON_BYTES_MAX: usize = 2_000;
/// The length of a referral code: exactly this many characters of `a-z0-9`.
pub const REFERRAL_CODE_LEN: usize = 10;
/// The language a member gets when Telegram tells none and nobody configured another.
pub const DEFAULT_LANGUAGE: &str = "ru";
/// The most user ids one [`MemberStore::audience`] page, and the most members one [`MemberStore::referees`]
/// call, returns (a larger limit is cut to it).
pub const PAGE_LIMIT_MAX: u32 = 1_000;

/// What Telegram tells about a user on each update.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Profile {
    /// Who.
    pub user: UserId,
    /// The `@username`, without the `@`, if the user has one.
    pub username: Option<String>,
    /// The first name (Telegram always sends one).
    pub first_name: String,
    /// Telegram's `language_code`, if it sent one.
    pub language: Option<String>,
}

/// A ban of a member.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct MemberBan {
    /// When it ends (exclusive); `None`: for ever.
    pub until: Option<Timestamp>,
    /// Why, in the admin's words (at most [`BAN_REASON_BYTES_MAX`] bytes).
    pub reason: String,
}

impl MemberBan {
    /// Whether the ban bars the member at `now`: strictly before `until`, or always when it has none.
    #[must_use]
    pub fn is_active(&self, now: Timestamp) -> bool {
        self.until.is_none_or(|until| now < until)
    }
}

/// A bot user as the store keeps them.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Member {
    /// Who.
    pub user: UserId,
    /// The username last seen, without the `@`.
    pub username: Option<String>,
    /// The first name last seen.
    pub first_name: String,
    /// The language code in use (`ru`, `en`, …); [`DEFAULT_LANGUAGE`] or the configured default when Telegram
    /// sent none.
    pub language: String,
    /// Set by [`MemberStore::set_language`]: Telegram's `language_code` no longer overrides `language`.
    pub language_chosen: bool,
    /// The member's own referral code: unique, [`REFERRAL_CODE_LEN`] characters of `a-z0-9`.
    pub referral_code: String,
    /// Who brought the member: set only when the member is created, never changed.
    pub referrer: Option<UserId>,
    /// When the member was created.
    pub joined_at: Timestamp,
    /// The last update seen from the member.
    pub last_seen_at: Timestamp,
    /// Whether the trial credit was granted.
    pub trial_granted: bool,
    /// The first credited top-up.
    pub paid_at: Option<Timestamp>,
    /// The ban, if any (it may have ended: see [`Member::is_banned`]).
    pub ban: Option<MemberBan>,
    /// When the user was found to have blocked the bot (Telegram answered 403); cleared when they write again.
    pub blocked_at: Option<Timestamp>,
}

impl Member {
    /// Whether a ban bars the member at `now`.
    #[must_use]
    pub fn is_banned(&self, now: Timestamp) -> bool {
        self.ban.as_ref().is_some_and(|ban| ban.is_active(now))
    }
}

/// Whom a broadcast goes to. Banned (at the time asked) and blocked members are never part of it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Audience {
    /// Every member.
    All,
    /// Members seen at or after this time.
    ActiveSince(Timestamp),
    /// Members with a credited top-up.
    Paid,
}

/// Counts of members at one instant `now` (a day is 24 hours back from `now`).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct MemberStats {
    /// Every member.
    pub total: u64,
    /// Members who joined in the last day.
    pub joined_since_1d: u64,
    /// Members seen in the last day.
    pub active_1d: u64,
    /// Members seen in the last 7 days.
    pub active_7d: u64,
    /// Members seen in the last 30 days.
    pub active_30d: u64,
    /// Members with a credited top-up.
    pub paid: u64,
    /// Members a ban bars now.
    pub banned: u64,
    /// Members who blocked the bot.
    pub blocked: u64,
}

/// The windows [`MemberStats`] counts over: a day, a week and 30 days back from `now`.
#[must_use]
pub fn stats_windows(now: Timestamp) -> [Timestamp; 3] {
    const DAY: Duration = Duration::from_secs(24 * 60 * 60);
    [now.minus(DAY), now.minus(DAY * 7), now.minus(DAY * 30)]
}

/// A member store failed.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum MemberStoreError {
    /// What was asked cannot be kept: a text over its limit or with control characters, a malformed referral
    /// or language code, a change to a user who is not a member. Nothing changed.
    #[error("invalid member data: {0}")]
    Invalid(String),
    /// The referral code is another member's: make another and join again. Nothing changed.
    #[error("the referral code is taken")]
    Conflict,
    /// The store could not be reached.
    #[error("member store unavailable: {reason}")]
    Unavailable {
        /// What went wrong.
        reason: String,
    },
}

fn invalid(what: impl Into<String>) -> MemberStoreError {
    MemberStoreError::Invalid(what.into())
}

/// Checks a text of at most `max` bytes without control characters.
fn check_text(what: &str, text: &str, max: usize) -> Result<(), MemberStoreError> {
    if text.len() > max {
        return Err(invalid(format!("{what} is {} bytes, at most {max}", text.len())));
    }
    if text.chars().any(char::is_control) {
        return Err(invalid(format!("{what} has a control character")));
    }
    Ok(())
}

/// Checks what every store keeps of a profile: a username of 1 to [`USERNAME_BYTES_MAX`] characters of
/// `A-Za-z0-9_` (Telegram's alphabet; no `@`), a first name of at most [`FIRST_NAME_BYTES_MAX`] bytes without
/// control characters, and a language as [`check_language`]. Every store MUST refuse what this refuses.
///
/// # Errors
/// [`MemberStoreError::Invalid`] naming the first field that is wrong.
pub fn check_profile(profile: &Profile) -> Result<(), MemberStoreError> {
    if let Some(username) = &profile.username {
        let ok = !username.is_empty()
            && username.len() <= USERNAME_BYTES_MAX
            && username.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !ok {
            return Err(invalid(format!("a username is 1 to {USERNAME_BYTES_MAX} characters of A-Za-z0-9_")));
        }
    }
    check_text("the first name", &profile.first_name, FIRST_NAME_BYTES_MAX)?;
    profile.language.as_deref().map_or(Ok(()), check_language)
}

/// Checks a language code: 1 to [`LANGUAGE_BYTES_MAX`] bytes of `A-Za-z0-9-`.
///
/// # Errors
/// [`MemberStoreError::Invalid`].
pub fn check_language(language: &str) -> Result<(), MemberStoreError> {
    let ok = !language.is_empty()
        && language.len() <= LANGUAGE_BYTES_MAX
        && language.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if ok { Ok(()) } else { Err(invalid(format!("a language code is 1 to {LANGUAGE_BYTES_MAX} bytes of A-Za-z0-9-"))) }
}

/// Checks a referral code: exactly [`REFERRAL_CODE_LEN`] characters of `a-z0-9`.
///
/// # Errors
/// [`MemberStoreError::Invalid`].
pub fn check_referral_code(code: &str) -> Result<(), MemberStoreError> {
    let ok = code.len() == REFERRAL_CODE_LEN && code.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if ok { Ok(()) } else { Err(invalid(format!("a referral code is {REFERRAL_CODE_LEN} characters of a-z0-9"))) }
}

/// Checks a ban's reason: at most [`BAN_REASON_BYTES_MAX`] bytes, no control characters.
///
/// # Errors
/// [`MemberStoreError::Invalid`].
pub fn check_ban(ban: &MemberBan) -> Result<(), MemberStoreError> {
    check_text("the ban reason", &ban.reason, BAN_REASON_BYTES_MAX)
}

/// A username as looked up: without a leading `@`, lower-cased (usernames are case-insensitive ASCII).
#[must_use]
pub fn username_key(username: &str) -> String {
    username.strip_prefix('@').unwrap_or(username).to_ascii_lowercase()
}

/// `limit` cut to [`PAGE_LIMIT_MAX`].
#[must_use]
pub fn page_limit(limit: u32) -> u32 {
    limit.min(PAGE_LIMIT_MAX)
}

/// The bot's members.
///
/// Contract: every write is atomic on its own; none moves money (grants are the ledger's, through
/// [`Growth`](super::Growth)).
#[async_trait]
pub trait MemberStore: Send + Sync {
    /// Creates the member if absent, else refreshes them; returns the member as stored and whether this call
    /// created them.
    ///
    /// Contract:
    /// - Creation MUST be atomic: of any number of concurrent joins of one user exactly one gets `true`.
    /// - A new member gets `referral_code`, `referrer`, `joined_at = last_seen_at = now`, the profile's
    ///   language or [`DEFAULT_LANGUAGE`], and nothing else set.
    /// - An existing member gets the profile's username (`None` clears it) and first name, `last_seen_at` moved
    ///   to `now` (never back), `blocked_at` cleared, and the profile's language when it has one and the member
    ///   has not chosen theirs; `referral_code` and `referrer` MUST NOT change.
    ///
    /// # Errors
    /// [`MemberStoreError::Invalid`] for a profile [`check_profile`] refuses, a referral code
    /// [`check_referral_code`] refuses, or, when creating, a referrer who is not a member or is the user;
    /// [`MemberStoreError::Conflict`] when creating with another member's referral code;
    /// [`MemberStoreError::Unavailable`]. Nothing changed on any error.
    async fn join(
        &self,
        profile: &Profile,
        referral_code: &str,
        referrer: Option<UserId>,
        now: Timestamp,
    ) -> Result<(Member, bool), MemberStoreError>;

    /// The member, if any.
    ///
    /// # Errors
    /// [`MemberStoreError::Unavailable`].
    async fn get(&self, user: UserId) -> Result<Option<Member>, MemberStoreError>;

    /// The member whose referral code is `code` (exactly; codes are lower-case), if any.
    ///
    /// # Errors
    /// [`MemberStoreError::Unavailable`].
    async fn by_referral_code(&self, code: &str) -> Result<Option<Member>, MemberStoreError>;

    /// The member with this username, compared as [`username_key`] (case-insensitive, a leading `@` ignored);
    /// when several members were last seen with it (a username changed hands), the one seen last.
    ///
    /// # Errors
    /// [`MemberStoreError::Unavailable`].
    async fn by_username(&self, username: &str) -> Result<Option<Member>, MemberStoreError>;

    /// Records an update from the user at `now`: `last_seen_at` moves to `now` (never back) and `blocked_at` is
    /// cleared. Nothing happens for a user who is not a member.
    ///
    /// # Errors
    /// [`MemberStoreError::Unavailable`].
    async fn seen(&self, user: UserId, now: Timestamp) -> Result<(), MemberStoreError>;

    /// Sets the member's language and `language_chosen`, so that Telegram's language no longer overrides it.
    ///
    /// # Errors
    /// [`MemberStoreError::Invalid`] for a code [`check_language`] refuses or a user who is not a member;
    /// [`MemberStoreError::Unavailable`].
    async fn set_language(&self, user: UserId, language: &str) -> Result<(), MemberStoreError>;

    /// Marks the trial granted: `true` for the one call that marked it (of any number, also concurrent), `false`
    /// when it was marked before or the user is not a member.
    ///
    /// # Errors
    /// [`MemberStoreError::Unavailable`].
    async fn mark_trial(&self, user: UserId) -> Result<bool, MemberStoreError>;

    /// Sets `paid_at` to `now` unless it is set (the first payment's time stays). Nothing happens for a user
    /// who is not a member.
    ///
    /// # Errors
    /// [`MemberStoreError::Unavailable`].
    async fn mark_paid(&self, user: UserId, now: Timestamp) -> Result<(), MemberStoreError>;

    /// Bans the member (`Some`, replacing any earlier ban) or lifts the ban (`None`).
    ///
    /// # Errors
    /// [`MemberStoreError::Invalid`] for a reason [`check_ban`] refuses or a user who is not a member;
    /// [`MemberStoreError::Unavailable`].
    async fn set_ban(&self, user: UserId, ban: Option<&MemberBan>) -> Result<(), MemberStoreError>;

    /// Records that the user blocked the bot (a send was answered 403): `blocked_at` is set to `now` unless it
    /// is set. Nothing happens for a user who is not a member.
    ///
    /// # Errors
    /// [`MemberStoreError::Unavailable`].
    async fn mark_blocked(&self, user: UserId, now: Timestamp) -> Result<(), MemberStoreError>;

    /// Up to `limit` (at most [`PAGE_LIMIT_MAX`]) user ids of `audience` greater than `after`, ascending. A
    /// member banned at `now` or blocked MUST NOT be among them. Paging with the last id returned as `after`
    /// visits every member of the audience once.
    ///
    /// # Errors
    /// [`MemberStoreError::Unavailable`].
    async fn audience(
        &self,
        audience: &Audience,
        after: Option<UserId>,
        limit: u32,
        now: Timestamp,
    ) -> Result<Vec<UserId>, MemberStoreError>;

    /// The counts at `now`, over the windows of [`stats_windows`] (a window includes its start).
    ///
    /// # Errors
    /// [`MemberStoreError::Unavailable`].
    async fn stats(&self, now: Timestamp) -> Result<MemberStats, MemberStoreError>;

    /// Up to `limit` (at most [`PAGE_LIMIT_MAX`]) members `referrer` brought, newest first (by `joined_at`,
    /// then by user id, both descending).
    ///
    /// # Errors
    /// [`MemberStoreError::Unavailable`].
    async fn referees(&self, referrer: UserId, limit: u32) -> Result<Vec<Member>, MemberStoreError>;

    /// How many members `referrer` brought.
    ///
    /// # Errors
    /// [`MemberStoreError::Unavailable`].
    async fn referee_count(&self, referrer: UserId) -> Result<u64, MemberStoreError>;
}
