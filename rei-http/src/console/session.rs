//! The console's sign-in and sessions: the Telegram Login Widget's check, signed session cookies and the CSRF
//! token of each session.
//!
//! A session is a cookie the server signs and keeps nothing of:
//! `v1.<actor>.<via>.<expires_ms>.<nonce>.<mac>`, where `mac` is the hex HMAC-SHA-256 under the console's
//! secret of everything before it. Every server that shares the secret (`CONSOLE_SECRET`) accepts every other
//! server's sessions; a session ends when it expires or the secret changes. The CSRF token of a session is the
//! HMAC of its nonce under the same secret: a form carries it, and a request whose token does not match the
//! cookie's is refused.

use std::collections::BTreeMap;
use std::time::Duration;

use hmac::{Hmac, Mac};
use rei_core::ids::UserId;
use rei_core::time::Timestamp;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::auth::hex;

type HmacSha256 = Hmac<Sha256>;

/// How an operator signed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// The Telegram Login Widget, as a user in `ADMIN_IDS`.
    Telegram,
    /// An API key with the `admin` scope.
    ApiKey,
}

impl Via {
    const fn as_str(self) -> &'static str {
        match self {
            Via::Telegram => "t",
            Via::ApiKey => "k",
        }
    }

    fn parse(text: &str) -> Option<Via> {
        match text {
            "t" => Some(Via::Telegram),
            "k" => Some(Via::ApiKey),
            _ => None,
        }
    }
}

/// A signed-in operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Who: the Telegram user id, or for an API key the actor it acts as ([`API_KEY_ACTOR`]).
    pub actor: UserId,
    /// How they signed in.
    pub via: Via,
    /// When the session ends.
    pub expires: Timestamp,
    /// 16 random bytes in hex: what the CSRF token is made from.
    pub nonce: String,
}

/// The actor of the audit records of an operator signed in with an API key (no Telegram user): user id 0,
/// which Telegram never gives.
pub const API_KEY_ACTOR: UserId = UserId(0);

/// Signs and checks sessions and CSRF tokens.
#[derive(Clone)]
pub struct Signer {
    secret: [u8; 32],
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer(..)")
    }
}

impl Signer {
    /// A signer under `secret` (any length; it is hashed to 32 bytes).
    #[must_use]
    pub fn new(secret: &[u8]) -> Signer {
        Signer { secret: Sha256::digest(secret).into() }
    }

    /// A signer under 32 random bytes: sessions last as long as the process.
    ///
    /// # Errors
    /// The operating system gave no randomness.
    pub fn random() -> Result<Signer, getrandom::Error> {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret)?;
        Ok(Signer { secret })
    }

    fn mac(&self, what: &str) -> String {
        // HMAC takes a key of any length.
        let mut mac = HmacSha256::new_from_slice(&self.secret).unwrap_or_else(|_| unreachable!());
        mac.update(what.as_bytes());
        hex(&mac.finalize().into_bytes())
    }

    /// A new session for `actor`, ending `ttl` after `now`.
    ///
    /// # Errors
    /// The operating system gave no randomness.
    pub fn open(&self, actor: UserId, via: Via, now: Timestamp, ttl: Duration) -> Result<Session, getrandom::Error> {
        let mut nonce = [0u8; 16];
        getrandom::fill(&mut nonce)?;
        Ok(Session { actor, via, expires: now.plus(ttl), nonce: hex(&nonce) })
    }

    /// The cookie value of `session`.
    #[must_use]
    pub fn seal(&self, session: &Session) -> String {
        let body = format!(
            "v1.{}.{}.{}.{}",
            session.actor.0,
            session.via.as_str(),
            session.expires.as_millis(),
            session.nonce
        );
        let mac = self.mac(&body);
        format!("{body}.{mac}")
    }

    /// The session of a cookie value, if it is one this signer sealed and it has not expired at `now`.
    #[must_use]
    pub fn unseal(&self, cookie: &str, now: Timestamp) -> Option<Session> {
        let (body, mac) = cookie.rsplit_once('.')?;
        if !bool::from(self.mac(body).as_bytes().ct_eq(mac.as_bytes())) {
            return None;
        }
        let mut parts = body.split('.');
        let (Some("v1"), Some(actor), Some(via), Some(expires), Some(nonce), None) =
            (parts.next(), parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        let expires = Timestamp::from_millis(expires.parse().ok()?);
        if expires <= now {
            return None;
        }
        Some(Session { actor: UserId(actor.parse().ok()?), via: Via::parse(via)?, expires, nonce: nonce.to_owned() })
    }

    /// The CSRF token of `session`, which its forms carry.
    #[must_use]
    pub fn csrf(&self, session: &Session) -> String {
        self.mac(&format!("csrf.{}", session.nonce))
    }

    /// `true` when `token` is `session`'s CSRF token.
    #[must_use]
    pub fn csrf_ok(&self, session: &Session, token: &str) -> bool {
        bool::from(self.csrf(session).as_bytes().ct_eq(token.as_bytes()))
    }
}

/// Why a Login Widget sign-in was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoginError {
    /// No bot token is configured: the widget cannot be checked.
    #[error("the Telegram sign-in is off: set BOT_TOKEN (and BOT_USERNAME) for the console")]
    Off,
    /// A field is missing or malformed.
    #[error("the sign-in data is malformed: {0}")]
    Malformed(&'static str),
    /// The hash does not match: the data was not signed by Telegram for this bot.
    #[error("the sign-in data is not signed by Telegram for this bot")]
    BadHash,
    /// `auth_date` is older than allowed (or in the future).
    #[error("the sign-in is too old: sign in again")]
    Expired,
}

/// The largest number of fields a widget answer carries (it sends seven).
const FIELDS_MAX: usize = 16;

/// Checks a Login Widget answer (its query parameters) against `bot_token` at `now`: the hash over the
/// data-check-string and an `auth_date` at most `max_age` old (and at most a minute ahead of `now`). Returns the
/// Telegram user id.
///
/// # Errors
/// [`LoginError`].
pub fn check_login(
    fields: &BTreeMap<String, String>,
    bot_token: &str,
    now: Timestamp,
    max_age: Duration,
) -> Result<UserId, LoginError> {
    if fields.len() > FIELDS_MAX {
        return Err(LoginError::Malformed("too many fields"));
    }
    let hash = fields.get("hash").ok_or(LoginError::Malformed("no hash"))?;
    let check: Vec<String> =
        fields.iter().filter(|(k, _)| k.as_str() != "hash").map(|(k, v)| format!("{k}={v}")).collect();
    let secret = Sha256::digest(bot_token.as_bytes());
    let mut mac = HmacSha256::new_from_slice(&secret).unwrap_or_else(|_| unreachable!());
    mac.update(check.join("\n").as_bytes());
    let expected = hex(&mac.finalize().into_bytes());
    if !bool::from(expected.as_bytes().ct_eq(hash.to_ascii_lowercase().as_bytes())) {
        return Err(LoginError::BadHash);
    }
    let id: i64 = fields.get("id").and_then(|v| v.parse().ok()).ok_or(LoginError::Malformed("no user id"))?;
    let auth_date: i64 =
        fields.get("auth_date").and_then(|v| v.parse().ok()).ok_or(LoginError::Malformed("no auth_date"))?;
    let age_ms = now.as_millis().saturating_sub(auth_date.saturating_mul(1_000));
    let max_ms = i64::try_from(max_age.as_millis()).unwrap_or(i64::MAX);
    if age_ms > max_ms || age_ms < -60_000 {
        return Err(LoginError::Expired);
    }
    Ok(UserId(id))
}

/// Signs `fields` as Telegram would for `bot_token`: returns them with `hash` added. For tests and the sandbox's
/// sign-in link.
#[must_use]
pub fn sign_login(mut fields: BTreeMap<String, String>, bot_token: &str) -> BTreeMap<String, String> {
    fields.remove("hash");
    let check: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let secret = Sha256::digest(bot_token.as_bytes());
    let mut mac = HmacSha256::new_from_slice(&secret).unwrap_or_else(|_| unreachable!());
    mac.update(check.join("\n").as_bytes());
    fields.insert("hash".to_owned(), hex(&mac.finalize().into_bytes()));
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "123456:ABCdef";

    fn answer(id: i64, auth_date: i64) -> BTreeMap<String, String> {
        let fields = [("id", id.to_string()), ("first_name", "Ann".to_owned()), ("auth_date", auth_date.to_string())];
        sign_login(fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(), TOKEN)
    }

    #[test]
    fn a_signed_fresh_answer_signs_in_and_anything_else_is_refused() {
        let now = Timestamp::from_millis(1_800_000_000_000);
        let day = Duration::from_secs(86_400);
        assert_eq!(check_login(&answer(42, 1_800_000_000 - 60), TOKEN, now, day), Ok(UserId(42)));
        assert_eq!(check_login(&answer(42, 1_800_000_000 - 60), "123456:other", now, day), Err(LoginError::BadHash));
        let mut forged = answer(42, 1_800_000_000 - 60);
        forged.insert("id".to_owned(), "43".to_owned());
        assert_eq!(check_login(&forged, TOKEN, now, day), Err(LoginError::BadHash));
        assert_eq!(check_login(&answer(42, 1_800_000_000 - 86_401), TOKEN, now, day), Err(LoginError::Expired));
        assert_eq!(check_login(&answer(42, 1_800_000_000 + 3_600), TOKEN, now, day), Err(LoginError::Expired));
        let mut bare = answer(42, 1_800_000_000);
        bare.remove("hash");
        assert_eq!(check_login(&bare, TOKEN, now, day), Err(LoginError::Malformed("no hash")));
    }

    #[test]
    fn sessions_round_trip_until_they_expire_and_refuse_any_change() {
        let signer = Signer::new(b"secret");
        let now = Timestamp::from_millis(1_000_000);
        let session = signer.open(UserId(7), Via::Telegram, now, Duration::from_secs(60)).expect("random");
        let cookie = signer.seal(&session);
        assert_eq!(signer.unseal(&cookie, now), Some(session.clone()));
        assert_eq!(signer.unseal(&cookie, now.plus(Duration::from_secs(60))), None);
        assert_eq!(Signer::new(b"other").unseal(&cookie, now), None);
        let forged = cookie.replacen("v1.7.", "v1.8.", 1);
        assert_eq!(signer.unseal(&forged, now), None);
        let token = signer.csrf(&session);
        assert!(signer.csrf_ok(&session, &token));
        assert!(!signer.csrf_ok(&session, "00"));
        let other = signer.open(UserId(7), Via::Telegram, now, Duration::from_secs(60)).expect("random");
        assert!(!signer.csrf_ok(&other, &token));
    }
}
