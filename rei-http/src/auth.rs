//! API keys: made here, sent as `Authorization: Bearer rei_<id>_<secret>`, checked against the SHA-256 kept in
//! the store (in constant time), scoped, and rate limited per key.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use rei_core::access::{ApiKeyRecord, ApiKeyStore, Scope};
use rei_core::guards::{ApiKeyId, Decision, RateLimitKey, RateLimitPolicy, RateLimiter};
use rei_core::time::{Clock, Timestamp};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::HttpState;
use crate::problem::Problem;

/// How long a key read from the store is trusted before it is read again: a revocation takes effect within
/// this time on every server.
pub const KEY_CACHE_TTL: Duration = Duration::from_secs(5);

/// A key just made: its record (to store) and its token (to show once; it is not kept).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct NewApiKey {
    /// What the store keeps.
    pub record: ApiKeyRecord,
    /// `rei_<id>_<secret>`: what the caller sends.
    pub token: String,
}

/// The lowercase hex SHA-256 of `token`.
#[must_use]
pub fn hash_token(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Why a key could not be made.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum MakeKeyError {
    /// The operating system gave no randomness.
    #[error("no randomness from the operating system: {0}")]
    Random(String),
    /// A name that is empty or over 100 characters, or a rate of zero.
    #[error("{0}")]
    Invalid(String),
}

/// Makes a key named `name` with `scopes` and `rate_per_minute`, at `now`.
///
/// # Errors
/// [`MakeKeyError`].
pub fn make_key(name: &str, scopes: &[Scope], rate_per_minute: u32, now: Timestamp) -> Result<NewApiKey, MakeKeyError> {
    if name.trim().is_empty() || name.chars().count() > 100 {
        return Err(MakeKeyError::Invalid("a key's name is 1 to 100 characters".to_owned()));
    }
    if rate_per_minute == 0 {
        return Err(MakeKeyError::Invalid("a key's rate is at least 1 request per minute".to_owned()));
    }
    if scopes.is_empty() {
        return Err(MakeKeyError::Invalid("a key needs at least one scope".to_owned()));
    }
    let mut random = [0u8; 40];
    getrandom::fill(&mut random).map_err(|e| MakeKeyError::Random(e.to_string()))?;
    let id = hex(&random[..8]);
    let token = format!("rei_{id}_{}", hex(&random[8..]));
    let id = ApiKeyId::parse(&id).map_err(|e| MakeKeyError::Invalid(e.to_string()))?;
    let record = ApiKeyRecord {
        id,
        name: name.trim().to_owned(),
        secret_hash: hash_token(&token),
        scopes: scopes.to_vec(),
        rate_per_minute,
        created_at: now,
        revoked_at: None,
    };
    Ok(NewApiKey { record, token })
}

/// The caller of a request: the key it authenticated with.
#[derive(Clone, Debug)]
pub struct Caller(pub Arc<ApiKeyRecord>);

impl Caller {
    /// Refuses with 403 unless the key has `scope` (or `admin`).
    ///
    /// # Errors
    /// The 403 problem.
    pub fn require(&self, scope: Scope) -> Result<(), Problem> {
        if self.0.allows(scope) {
            Ok(())
        } else {
            Err(Problem::new(
                StatusCode::FORBIDDEN,
                "scope",
                "The key may not do this",
                format!("this needs the scope {scope}; the key {} has {}", self.0.id.as_str(), scopes(&self.0)),
            ))
        }
    }
}

fn scopes(key: &ApiKeyRecord) -> String {
    key.scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
}

/// Checks keys: the store (behind a short cache) and the rate limiter.
pub struct Authenticator {
    keys: Arc<dyn ApiKeyStore>,
    limiter: Arc<dyn RateLimiter>,
    clock: Arc<dyn Clock>,
    cache: Mutex<HashMap<String, (Arc<ApiKeyRecord>, Instant)>>,
}

impl Authenticator {
    /// Checks keys of `keys`, limits them with `limiter` at `clock`'s time.
    #[must_use]
    pub fn new(keys: Arc<dyn ApiKeyStore>, limiter: Arc<dyn RateLimiter>, clock: Arc<dyn Clock>) -> Authenticator {
        Authenticator { keys, limiter, clock, cache: Mutex::new(HashMap::new()) }
    }

    async fn record(&self, id: &str) -> Result<Option<Arc<ApiKeyRecord>>, Problem> {
        if let Some((key, at)) = self.cache.lock().unwrap_or_else(PoisonError::into_inner).get(id)
            && at.elapsed() < KEY_CACHE_TTL
        {
            return Ok(Some(key.clone()));
        }
        let Ok(parsed) = ApiKeyId::parse(id) else { return Ok(None) };
        let Some(key) = self.keys.get(&parsed).await.map_err(|e| Problem::internal("reading the API key", &e))? else {
            return Ok(None);
        };
        let key = Arc::new(key);
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() > 10_000 {
            cache.clear();
        }
        cache.insert(id.to_owned(), (key.clone(), Instant::now()));
        Ok(Some(key))
    }

    /// The caller of a request with these headers, after the key's rate limit admitted it.
    ///
    /// # Errors
    /// 401 for a missing, malformed, unknown, wrong or revoked key; 429 past the key's rate.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Caller, Problem> {
        let refused = |detail: &str| {
            Problem::new(StatusCode::UNAUTHORIZED, "unauthorized", "No valid API key", detail.to_owned())
        };
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Err(refused("send the key as `Authorization: Bearer rei_…`"));
        };
        let token = value.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")).map(str::trim);
        let Some(token) = token else { return Err(refused("the Authorization header is not `Bearer rei_…`")) };
        let id = token.strip_prefix("rei_").and_then(|rest| rest.split_once('_')).map(|(id, _)| id);
        let Some(id) = id else { return Err(refused("the key is not of the form rei_<id>_<secret>")) };
        let Some(key) = self.record(id).await? else { return Err(refused("no such key")) };
        let given = hash_token(token);
        if !bool::from(given.as_bytes().ct_eq(key.secret_hash.as_bytes())) {
            return Err(refused("no such key"));
        }
        if key.revoked_at.is_some() {
            return Err(refused("the key was revoked"));
        }
        let policy = RateLimitPolicy::new(key.rate_per_minute, Duration::from_secs(60), key.rate_per_minute)
            .map_err(|e| Problem::internal("the key's rate", &e))?;
        let limited = RateLimitKey::ApiKey(key.id.clone());
        match self.limiter.check(&limited, &policy, 1, self.clock.now()).await {
            Ok(Decision::Allow { .. }) => Ok(Caller(key)),
            Ok(Decision::Deny { retry_after }) => {
                let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
                Err(Problem::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate-limited",
                    "Too many requests",
                    format!("the key may make {} requests a minute", key.rate_per_minute),
                )
                .retry_after(seconds.max(1)))
            }
            // Fail closed: a limiter that cannot decide admits nothing.
            Err(e) => Err(Problem::unavailable("rate-limiter", format!("the rate limiter failed: {e}"))),
        }
    }
}

impl FromRequestParts<Arc<HttpState>> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<HttpState>) -> Result<Caller, Problem> {
        // The replay layer authenticated POSTs already (once: the rate limit counts each request once).
        if let Some(caller) = parts.extensions.get::<Caller>() {
            return Ok(caller.clone());
        }
        state.auth.authenticate(&parts.headers).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_keys_are_unique_and_hash_to_their_record() {
        // Proves a key's token hashes to the stored hash, and two keys never share an id or a token.
        let a = make_key("bot", &[Scope::UsersRead], 60, Timestamp::from_millis(0)).expect("key");
        let b = make_key("bot", &[Scope::UsersRead], 60, Timestamp::from_millis(0)).expect("key");
        assert_eq!(hash_token(&a.token), a.record.secret_hash);
        assert!(a.token.starts_with(&format!("rei_{}_", a.record.id.as_str())));
        assert_ne!(a.token, b.token);
        assert_ne!(a.record.id, b.record.id);
        assert!(make_key(" ", &[Scope::UsersRead], 60, Timestamp::from_millis(0)).is_err());
        assert!(make_key("bot", &[], 60, Timestamp::from_millis(0)).is_err());
        assert!(make_key("bot", &[Scope::UsersRead], 0, Timestamp::from_millis(0)).is_err());
    }
}
