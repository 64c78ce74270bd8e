//! The [`PromoStore`] port: promo codes with a use limit and an expiry, and who redeemed each.
//!
//! The store decides who may redeem; the money is the ledger's: [`Growth::redeem`](super::Growth::redeem)
//! grants the amount under a key derived from the code and the user, so a redemption whose grant was lost is
//! granted by the next call and never twice.

use async_trait::async_trait;

use crate::ids::UserId;
use crate::money::Money;
use crate::time::Timestamp;

/// The longest promo code, in characters.
pub const PROMO_CODE_CHARS_MAX: usize = 32;
/// The most codes one [`PromoStore::list`] call returns (a larger limit is cut to it).
pub const PROMO_LIST_LIMIT_MAX: u32 = 1_000;

/// A promo code.
///
/// Invariant (checked by [`check_promo`]): `code` is canonical (see [`normalize_code`]), `amount > 0`,
/// `1 <= uses_max`, `uses <= uses_max`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct PromoCode {
    /// The code, upper-case: 1 to [`PROMO_CODE_CHARS_MAX`] characters of `A-Z0-9_-`.
    pub code: String,
    /// What one redemption grants.
    pub amount: Money,
    /// How many users may redeem it.
    pub uses_max: u32,
    /// How many did.
    pub uses: u32,
    /// From when it can no longer be redeemed (exclusive end); `None`: never expires.
    pub expires_at: Option<Timestamp>,
    /// The admin who made it.
    pub created_by: UserId,
    /// When.
    pub created_at: Timestamp,
}

impl PromoCode {
    /// Whether the code can no longer be redeemed at `now`.
    #[must_use]
    pub fn is_expired(&self, now: Timestamp) -> bool {
        self.expires_at.is_some_and(|at| now >= at)
    }
}

/// One user's redemption of a code.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Redemption {
    /// What it grants.
    pub amount: Money,
    /// `false`: this user redeemed the code before (the amount is that redemption's).
    pub first: bool,
}

/// Why a promo code could not be made, found or redeemed.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum PromoError {
    /// No such code.
    #[error("no such promo code")]
    Unknown,
    /// The code expired.
    #[error("the promo code expired")]
    Expired,
    /// Every use of the code is taken.
    #[error("the promo code is used up")]
    Exhausted,
    /// A malformed code, an amount or limit out of range, a code that exists with other terms.
    #[error("invalid promo code: {0}")]
    Invalid(String),
    /// The store could not be reached.
    #[error("promo store unavailable: {reason}")]
    Unavailable {
        /// What went wrong.
        reason: String,
    },
}

/// The canonical form of a code as a user types it: surrounding whitespace dropped, upper-cased.
///
/// # Errors
/// [`PromoError::Invalid`] unless the result is 1 to [`PROMO_CODE_CHARS_MAX`] characters of `A-Z0-9_-`.
pub fn normalize_code(text: &str) -> Result<String, PromoError> {
    let code = text.trim().to_ascii_uppercase();
    let ok = !code.is_empty()
        && code.len() <= PROMO_CODE_CHARS_MAX
        && code.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if ok {
        Ok(code)
    } else {
        Err(PromoError::Invalid(format!("a code is 1 to {PROMO_CODE_CHARS_MAX} characters of A-Z 0-9 _ -")))
    }
}

/// Checks [`PromoCode`]'s invariant, and that a new code has no uses yet. Every store MUST refuse what this
/// refuses.
///
/// # Errors
/// [`PromoError::Invalid`] naming what is wrong.
pub fn check_promo(code: &PromoCode) -> Result<(), PromoError> {
    if normalize_code(&code.code)? != code.code {
        return Err(PromoError::Invalid(format!("{:?} is not upper-case", code.code)));
    }
    if !code.amount.is_positive() {
        return Err(PromoError::Invalid(format!("a code grants more than 0, not {}", code.amount)));
    }
    if code.uses_max == 0 {
        return Err(PromoError::Invalid("a code has at least one use".to_owned()));
    }
    if code.uses != 0 {
        return Err(PromoError::Invalid("a new code has no uses yet".to_owned()));
    }
    Ok(())
}

/// The promo codes and their redemptions.
#[async_trait]
pub trait PromoStore: Send + Sync {
    /// Stores a new code: `true` when it was stored, `false` when the code exists (which stays as it was).
    ///
    /// # Errors
    /// [`PromoError::Invalid`] for a code [`check_promo`] refuses; [`PromoError::Unavailable`].
    async fn create(&self, code: &PromoCode) -> Result<bool, PromoError>;

    /// The code, looked up as [`normalize_code`] makes it (a text that cannot be a code finds none).
    ///
    /// # Errors
    /// [`PromoError::Unavailable`].
    async fn get(&self, code: &str) -> Result<Option<PromoCode>, PromoError>;

    /// Up to `limit` (at most [`PROMO_LIST_LIMIT_MAX`]) codes, newest first (by `created_at`, then by code,
    /// both descending).
    ///
    /// # Errors
    /// [`PromoError::Unavailable`].
    async fn list(&self, limit: u32) -> Result<Vec<PromoCode>, PromoError>;

    /// Redeems `code` (looked up as [`normalize_code`] makes it) for `user` at `now`.
    ///
    /// Contract, decided in one transaction:
    /// - The user's earlier redemption of the code MUST come back as `first = false` with its amount, however
    ///   the code stands now (expired or used up), and change nothing.
    /// - Else an unknown code is [`PromoError::Unknown`], one expired at `now` [`PromoError::Expired`], one
    ///   with `uses == uses_max` [`PromoError::Exhausted`], and nothing changes.
    /// - Else the redemption is recorded and `uses` grows by one, together. Of any number of concurrent
    ///   redeems, at most `uses_max - uses` succeed, and at most one per user.
    ///
    /// # Errors
    /// As above; [`PromoError::Invalid`] for a text that cannot be a code; [`PromoError::Unavailable`].
    async fn redeem(&self, code: &str, user: UserId, now: Timestamp) -> Result<Redemption, PromoError>;
}
