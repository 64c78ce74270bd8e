//! Who may call REI's HTTP API, and the replay of its POSTs.
//!
//! - [`ApiKeyRecord`] and the [`ApiKeyStore`] port: API keys with [`Scope`]s and a per-key rate limit. The store
//!   keeps a hash of each key's secret, never the secret: a key is shown once, when it is made.
//! - [`ReplayStore`]: the stored response of every POST made with an `Idempotency-Key` header, so that a
//!   repeat returns the first response, and the same key with another body is refused.

use std::fmt;

use async_trait::async_trait;

use crate::guards::ApiKeyId;
use crate::time::Timestamp;

/// What an API key may do. Each route of the API names the scope it needs.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub enum Scope {
    /// Read users and their balances (`GET /v1/users/{id}`).
    UsersRead,
    /// Read a user's ledger history.
    LedgerRead,
    /// Create top-ups (payment links).
    TopUpsWrite,
    /// Ask for quotes and confirm them (money is held, a job queued).
    QuotesWrite,
    /// Read jobs.
    JobsRead,
    /// Capture and release holds (embedders that run their own providers).
    HoldsWrite,
    /// Everything, and the operator's routes.
    Admin,
}

impl Scope {
    /// Every scope, in order.
    pub const ALL: [Scope; 7] = [
        Scope::UsersRead,
        Scope::LedgerRead,
        Scope::TopUpsWrite,
        Scope::QuotesWrite,
        Scope::JobsRead,
        Scope::HoldsWrite,
        Scope::Admin,
    ];

    /// Its name: `users:read`, `ledger:read`, `topups:write`, `quotes:write`, `jobs:read`, `holds:write`,
    /// `admin`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::UsersRead => "users:read",
            Scope::LedgerRead => "ledger:read",
            Scope::TopUpsWrite => "topups:write",
            Scope::QuotesWrite => "quotes:write",
            Scope::JobsRead => "jobs:read",
            Scope::HoldsWrite => "holds:write",
            Scope::Admin => "admin",
        }
    }

    /// The scope named `text`.
    #[must_use]
    pub fn parse(text: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Reads a comma-separated list (`users:read,quotes:write`).
    ///
    /// # Errors
    /// The first name that is not a scope.
    pub fn parse_list(text: &str) -> Result<Vec<Scope>, String> {
        let mut scopes = Vec::new();
        for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let scope = Scope::parse(name).ok_or_else(|| {
                let known: Vec<&str> = Scope::ALL.iter().map(|s| s.as_str()).collect();
                format!("{name:?} is not a scope (known: {})", known.join(", "))
            })?;
            if !scopes.contains(&scope) {
                scopes.push(scope);
            }
        }
        scopes.sort();
        Ok(scopes)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An API key as stored: its public id, the hash of its secret, what it may do and how often.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ApiKeyRecord {
    /// The public id (the first part of the key the caller sends).
    pub id: ApiKeyId,
    /// A name for people ("telegram-bot-prod").
    pub name: String,
    /// The SHA-256 of the whole key, in lowercase hex.
    pub secret_hash: String,
    /// What it may do ([`Scope::Admin`] may do everything).
    pub scopes: Vec<Scope>,
    /// Requests per minute it may make (bursts up to the same number).
    pub rate_per_minute: u32,
    /// When it was made.
    pub created_at: Timestamp,
    /// When it was revoked; a revoked key is refused.
    pub revoked_at: Option<Timestamp>,
}

impl ApiKeyRecord {
    /// `true` when the key may act under `scope`.
    #[must_use]
    pub fn allows(&self, scope: Scope) -> bool {
        self.revoked_at.is_none() && (self.scopes.contains(&scope) || self.scopes.contains(&Scope::Admin))
    }
}

/// A store of keys or replays failed.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum AccessStoreError {
    /// A key with this id exists.
    #[error("an API key with id {0} exists")]
    Exists(String),
    /// The store could not be reached.
    #[error("access store unavailable: {reason}")]
    Unavailable {
        /// What went wrong.
        reason: String,
    },
}

/// API keys.
#[async_trait]
pub trait ApiKeyStore: Send + Sync {
    /// Stores a new key.
    ///
    /// # Errors
    /// [`AccessStoreError::Exists`] for an id already used.
    async fn create(&self, key: &ApiKeyRecord) -> Result<(), AccessStoreError>;

    /// The key with this id, revoked or not.
    ///
    /// # Errors
    /// [`AccessStoreError::Unavailable`].
    async fn get(&self, id: &ApiKeyId) -> Result<Option<ApiKeyRecord>, AccessStoreError>;

    /// Every key, oldest first.
    ///
    /// # Errors
    /// [`AccessStoreError::Unavailable`].
    async fn list(&self) -> Result<Vec<ApiKeyRecord>, AccessStoreError>;

    /// Revokes a key at `at`; `false` when there is no such key or it was revoked already (the first
    /// revocation's time stays).
    ///
    /// # Errors
    /// [`AccessStoreError::Unavailable`].
    async fn revoke(&self, id: &ApiKeyId, at: Timestamp) -> Result<bool, AccessStoreError>;
}

/// A response kept for replay.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct StoredResponse {
    /// The HTTP status.
    pub status: u16,
    /// Its content type.
    pub content_type: String,
    /// Its body.
    pub body: Vec<u8>,
}

/// What [`ReplayStore::begin`] found.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum ReplayBegin {
    /// The key is new (or an abandoned attempt's lock ran out): the caller runs the request and then calls
    /// [`ReplayStore::finish`] or [`ReplayStore::abandon`].
    Started,
    /// The request was answered before: send this again.
    Replay(StoredResponse),
    /// The key was used with another request: refuse (409).
    Mismatch,
    /// The same request is running now, under the same key: refuse for now (409), the caller may retry.
    InProgress,
}

/// One replay slot: whose key, which idempotency key, and a digest of the request (method, path, body).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ReplaySlot {
    /// The API key the request came with.
    pub api_key: ApiKeyId,
    /// The `Idempotency-Key` header.
    pub key: String,
    /// A digest of the method, the path and the body, in hex.
    pub fingerprint: String,
}

/// The stored responses of POSTs made with an `Idempotency-Key`.
///
/// Contract: `begin` is atomic per slot: of concurrent `begin`s with one `(api_key, key)`, exactly one gets
/// [`ReplayBegin::Started`] while its lock lasts; once finished, every `begin` with the same fingerprint gets
/// the stored response and every other fingerprint [`ReplayBegin::Mismatch`].
#[async_trait]
pub trait ReplayStore: Send + Sync {
    /// Claims the slot, or says what it holds. A started slot whose lock ran out (`locked_until` passed: its
    /// caller died) may be claimed again.
    ///
    /// # Errors
    /// [`AccessStoreError::Unavailable`].
    async fn begin(
        &self,
        slot: &ReplaySlot,
        now: Timestamp,
        locked_until: Timestamp,
    ) -> Result<ReplayBegin, AccessStoreError>;

    /// Stores the response of a started slot.
    ///
    /// # Errors
    /// [`AccessStoreError::Unavailable`].
    async fn finish(&self, slot: &ReplaySlot, response: &StoredResponse) -> Result<(), AccessStoreError>;

    /// Gives a started slot up (the request failed in a way worth retrying): the next `begin` starts afresh.
    ///
    /// # Errors
    /// [`AccessStoreError::Unavailable`].
    async fn abandon(&self, slot: &ReplaySlot) -> Result<(), AccessStoreError>;

    /// Removes up to `limit` slots made before `before`; returns how many.
    ///
    /// # Errors
    /// [`AccessStoreError::Unavailable`].
    async fn purge(&self, before: Timestamp, limit: usize) -> Result<usize, AccessStoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_read_back_and_admin_allows_all() {
        // Proves the names round-trip, unknown names are refused, and Admin (but not a revoked key) allows all.
        for s in Scope::ALL {
            assert_eq!(Scope::parse(s.as_str()), Some(s));
        }
        assert_eq!(
            Scope::parse_list("quotes:write, users:read,quotes:write"),
            Ok(vec![Scope::UsersRead, Scope::QuotesWrite])
        );
        assert!(Scope::parse_list("users:write").is_err());
        let mut key = ApiKeyRecord {
            id: ApiKeyId::parse("k1").expect("id"),
            name: "bot".into(),
            secret_hash: "00".into(),
            scopes: vec![Scope::Admin],
            rate_per_minute: 60,
            created_at: Timestamp::from_millis(0),
            revoked_at: None,
        };
        assert!(Scope::ALL.iter().all(|s| key.allows(*s)));
        key.scopes = vec![Scope::UsersRead];
        assert!(key.allows(Scope::UsersRead) && !key.allows(Scope::HoldsWrite));
        key.revoked_at = Some(Timestamp::from_millis(1));
        assert!(!key.allows(Scope::UsersRead));
    }
}
