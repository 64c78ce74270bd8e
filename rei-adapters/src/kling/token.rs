//! The HS256 JWT that Kling's API takes, signed by hand and cached until it nears its end.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use rei_core::generation::ProviderError;
use rei_core::jobs::ErrorText;
use rei_core::time::Clock;
use sha2::Sha256;

/// A cached token is signed anew once less than this much of its life remains, so that a token never expires
/// between being taken and being checked.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);
/// How far before now `nbf` is set, so that a server whose clock is slightly behind ours takes a fresh token.
const NOT_BEFORE_SLACK_S: i64 = 5;

/// Signs Kling's tokens from one access and secret key pair, with time from the clock, and keeps the last one.
pub(super) struct Signer {
    access_key: String,
    secret_key: String,
    lifetime_s: i64,
    clock: Arc<dyn Clock>,
    cached: Mutex<Option<Token>>,
}

#[derive(Clone)]
struct Token {
    jwt: String,
    exp_s: i64,
}

impl Signer {
    pub(super) fn new(access_key: &str, secret_key: &str, lifetime: Duration, clock: Arc<dyn Clock>) -> Signer {
        Signer {
            access_key: access_key.to_owned(),
            secret_key: secret_key.to_owned(),
            lifetime_s: i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX),
            clock,
            cached: Mutex::new(None),
        }
    }

    /// The token to send: the cached one while at least [`REFRESH_MARGIN`] of its life remains, else a new one.
    pub(super) fn token(&self) -> Result<String, ProviderError> {
        let now_s = self.now_s();
        let margin_s = i64::try_from(REFRESH_MARGIN.as_secs()).unwrap_or(i64::MAX);
        let mut cached = self.cached.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(token) = cached.as_ref()
            && token.exp_s.saturating_sub(now_s) >= margin_s
        {
            return Ok(token.jwt.clone());
        }
        let token = self.sign(now_s)?;
        *cached = Some(token.clone());
        Ok(token.jwt)
    }

    /// A new token in place of the cached one, which Kling refused as not yet valid or expired.
    pub(super) fn resign(&self) -> Result<String, ProviderError> {
        let token = self.sign(self.now_s())?;
        *self.cached.lock().unwrap_or_else(PoisonError::into_inner) = Some(token.clone());
        Ok(token.jwt)
    }

    fn now_s(&self) -> i64 {
        self.clock.now().as_millis().div_euclid(1000)
    }

    fn sign(&self, now_s: i64) -> Result<Token, ProviderError> {
        let exp_s = now_s.saturating_add(self.lifetime_s);
        let claims = serde_json::json!({
            "iss": self.access_key,
            "exp": exp_s,
            "nbf": now_s.saturating_sub(NOT_BEFORE_SLACK_S),
        });
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
        let signed = format!("{header}.{claims}");
        let mut mac = Hmac::<Sha256>::new_from_slice(self.secret_key.as_bytes()).map_err(|_| {
            ProviderError::Unavailable { reason: ErrorText::new("kling secret key refused by HMAC-SHA256") }
        })?;
        mac.update(signed.as_bytes());
        let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        Ok(Token { jwt: format!("{signed}.{signature}"), exp_s })
    }
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("access_key", &self.access_key)
            .field("secret_key", &"<redacted>")
            .field("lifetime_s", &self.lifetime_s)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rei_core::testing::clock::ManualClock;
    use rei_core::time::Timestamp;

    #[test]
    fn tokens_are_reused_until_the_refresh_margin() {
        // Proves the cached token is sent until less than five minutes of its life remain, then replaced.
        let clock = Arc::new(ManualClock::new(Timestamp::from_millis(1_000_000_000_000)));
        let signer = Signer::new("ak", "sk", Duration::from_secs(1800), clock.clone());
        let first = signer.token().expect("signed");
        clock.advance(Duration::from_secs(1500));
        assert_eq!(signer.token().expect("signed"), first);
        clock.advance(Duration::from_secs(1));
        let second = signer.token().expect("signed");
        assert_ne!(second, first);
        assert_ne!(signer.resign().expect("signed"), first);
    }
}
