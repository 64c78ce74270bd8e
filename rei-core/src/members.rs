//! Members and growth: who uses the bot, and what brings them in.
//!
//! - [`MemberStore`]: one [`Member`] per bot user (profile, language, referral code and referrer, trial, first
//!   payment, ban, whether they blocked the bot), the audiences of broadcasts and the counts of [`MemberStats`].
//! - [`PromoStore`]: [`PromoCode`]s with a use limit and an expiry, each redeemed at most once per user.
//! - [`Growth`]: the first `/start` (trial, referral join bonus), the referrer's share of each top-up (it is a
//!   [`TopUpObserver`](crate::topups::TopUpObserver)), promo redemptions, and audited admin actions (promo
//!   codes, bans). Every grant is a keyed ledger adjustment from `promo`, so a repeat never grants twice.

mod growth;
mod promo;
mod store;

pub use growth::{Growth, GrowthConfig, GrowthError, REFERRAL_PERCENT_BP_MAX, SYSTEM_ACTOR, Started, referral_share};
pub use promo::{
    PROMO_CODE_CHARS_MAX, PROMO_LIST_LIMIT_MAX, PromoCode, PromoError, PromoStore, Redemption, check_promo,
    normalize_code,
};
pub use store::{
    Audience, BAN_REASON_BYTES_MAX, DEFAULT_LANGUAGE, FIRST_NAME_BYTES_MAX, LANGUAGE_BYTES_MAX, Member, MemberBan,
    MemberStats, MemberStore, MemberStoreError, PAGE_LIMIT_MAX, Profile, REFERRAL_CODE_LEN, USERNAME_BYTES_MAX,
    check_ban, check_language, check_profile, check_referral_code, page_limit, stats_windows, username_key,
};
