//! [`MemoryApiKeys`] and [`MemoryReplays`], and the conformance suites every [`ApiKeyStore`] and
//! [`ReplayStore`] must pass.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;

use crate::access::{
    AccessStoreError, ApiKeyRecord, ApiKeyStore, ReplayBegin, ReplaySlot, ReplayStore, Scope, StoredResponse,
};
use crate::guards::ApiKeyId;
use crate::time::Timestamp;

/// API keys in a map.
#[derive(Debug, Default)]
pub struct MemoryApiKeys {
    keys: Mutex<Vec<ApiKeyRecord>>,
}

#[async_trait]
impl ApiKeyStore for MemoryApiKeys {
    async fn create(&self, key: &ApiKeyRecord) -> Result<(), AccessStoreError> {
        let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        if keys.iter().any(|k| k.id == key.id) {
            return Err(AccessStoreError::Exists(key.id.as_str().to_owned()));
        }
        keys.push(key.clone());
        Ok(())
    }

    async fn get(&self, id: &ApiKeyId) -> Result<Option<ApiKeyRecord>, AccessStoreError> {
        Ok(self.keys.lock().unwrap_or_else(PoisonError::into_inner).iter().find(|k| k.id == *id).cloned())
    }

    async fn list(&self) -> Result<Vec<ApiKeyRecord>, AccessStoreError> {
        Ok(self.keys.lock().unwrap_or_else(PoisonError::into_inner).clone())
    }

    async fn revoke(&self, id: &ApiKeyId, at: Timestamp) -> Result<bool, AccessStoreError> {
        let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        match keys.iter_mut().find(|k| k.id == *id && k.revoked_at.is_none()) {
            Some(k) => {
                k.revoked_at = Some(at);
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

#[derive(Debug, Clone)]
struct Slot {
    fingerprint: String,
    created_at: Timestamp,
    locked_until: Timestamp,
    response: Option<StoredResponse>,
}

/// Replay slots in a map.
#[derive(Debug, Default)]
pub struct MemoryReplays {
    slots: Mutex<BTreeMap<(String, String), Slot>>,
}

fn slot_key(slot: &ReplaySlot) -> (String, String) {
    (slot.api_key.as_str().to_owned(), slot.key.clone())
}

#[async_trait]
impl ReplayStore for MemoryReplays {
    async fn begin(
        &self,
        slot: &ReplaySlot,
        now: Timestamp,
        locked_until: Timestamp,
    ) -> Result<ReplayBegin, AccessStoreError> {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        let fresh = Slot { fingerprint: slot.fingerprint.clone(), created_at: now, locked_until, response: None };
        match slots.get_mut(&slot_key(slot)) {
            None => {
                slots.insert(slot_key(slot), fresh);
                Ok(ReplayBegin::Started)
            }
            Some(held) if held.fingerprint != slot.fingerprint => Ok(ReplayBegin::Mismatch),
            Some(held) => match &held.response {
                Some(r) => Ok(ReplayBegin::Replay(r.clone())),
                None if held.locked_until <= now => {
                    *held = fresh;
                    Ok(ReplayBegin::Started)
                }
                None => Ok(ReplayBegin::InProgress),
            },
        }
    }

    async fn finish(&self, slot: &ReplaySlot, response: &StoredResponse) -> Result<(), AccessStoreError> {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(held) = slots.get_mut(&slot_key(slot)).filter(|h| h.fingerprint == slot.fingerprint) {
            held.response = Some(response.clone());
        }
        Ok(())
    }

    async fn abandon(&self, slot: &ReplaySlot) -> Result<(), AccessStoreError> {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        let key = slot_key(slot);
        if slots.get(&key).is_some_and(|h| h.response.is_none() && h.fingerprint == slot.fingerprint) {
            slots.remove(&key);
        }
        Ok(())
    }

    async fn purge(&self, before: Timestamp, limit: usize) -> Result<usize, AccessStoreError> {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        let old: Vec<(String, String)> =
            slots.iter().filter(|(_, s)| s.created_at < before).take(limit).map(|(k, _)| k.clone()).collect();
        for k in &old {
            slots.remove(k);
        }
        Ok(old.len())
    }
}

fn id(text: &str) -> ApiKeyId {
    ApiKeyId::parse(text).unwrap_or_else(|e| panic!("{e}"))
}

fn at(ms: i64) -> Timestamp {
    Timestamp::from_millis(ms)
}

/// Checks an [`ApiKeyStore`]: keys read back whole, ids are unique, revocation happens once.
///
/// # Panics
/// On the first broken promise.
pub async fn api_key_store_conformance(store: &dyn ApiKeyStore) {
    let key = ApiKeyRecord {
        id: id("k_alpha"),
        name: "telegram bot".to_owned(),
        secret_hash: "ab".repeat(32),
        scopes: vec![Scope::UsersRead, Scope::QuotesWrite],
        rate_per_minute: 120,
        created_at: at(1_000),
        revoked_at: None,
    };
    store.create(&key).await.unwrap_or_else(|e| panic!("create: {e}"));
    assert_eq!(store.get(&key.id).await.unwrap_or_else(|e| panic!("{e}")), Some(key.clone()));
    assert!(matches!(store.create(&key).await, Err(AccessStoreError::Exists(_))), "a second key with one id");
    let other = ApiKeyRecord { id: id("k_beta"), scopes: vec![Scope::Admin], created_at: at(2_000), ..key.clone() };
    store.create(&other).await.unwrap_or_else(|e| panic!("create: {e}"));
    let all = store.list().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(all.iter().map(|k| k.id.as_str()).collect::<Vec<_>>(), vec!["k_alpha", "k_beta"]);
    assert_eq!(store.get(&id("k_none")).await.unwrap_or_else(|e| panic!("{e}")), None);
    assert!(store.revoke(&key.id, at(5_000)).await.unwrap_or_else(|e| panic!("{e}")));
    assert!(!store.revoke(&key.id, at(6_000)).await.unwrap_or_else(|e| panic!("{e}")), "revoked once");
    assert!(!store.revoke(&id("k_none"), at(6_000)).await.unwrap_or_else(|e| panic!("{e}")));
    let revoked = store.get(&key.id).await.unwrap_or_else(|e| panic!("{e}")).unwrap_or_else(|| panic!("gone"));
    assert_eq!(revoked.revoked_at, Some(at(5_000)), "the first revocation's time stays");
    assert!(!revoked.allows(Scope::UsersRead));
}

/// Checks a [`ReplayStore`]: one claim per slot among concurrent callers, replays of the stored response, a
/// mismatch for another fingerprint, abandoned and expired claims claimable again, purge by age.
///
/// # Panics
/// On the first broken promise.
pub async fn replay_store_conformance(store: Arc<dyn ReplayStore>) {
    let slot = ReplaySlot { api_key: id("k1"), key: "order-1".to_owned(), fingerprint: "f1".to_owned() };
    let begin = |s: ReplaySlot, now: i64| {
        let store = store.clone();
        async move { store.begin(&s, at(now), at(now + 30_000)).await.unwrap_or_else(|e| panic!("begin: {e}")) }
    };
    // 16 concurrent claims: exactly one starts.
    let claims = super::ledger::join_all((0..16).map(|_| begin(slot.clone(), 1_000)).collect()).await;
    let mut started = 0;
    for claim in claims {
        match claim {
            ReplayBegin::Started => started += 1,
            ReplayBegin::InProgress => {}
            other => panic!("a concurrent twin got {other:?}"),
        }
    }
    assert_eq!(started, 1, "exactly one of the concurrent claims starts");
    let response =
        StoredResponse { status: 201, content_type: "application/json".to_owned(), body: b"{\"a\":1}".to_vec() };
    store.finish(&slot, &response).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(begin(slot.clone(), 2_000).await, ReplayBegin::Replay(response.clone()));
    let other_body = ReplaySlot { fingerprint: "f2".to_owned(), ..slot.clone() };
    assert_eq!(begin(other_body, 2_000).await, ReplayBegin::Mismatch);
    // The same idempotency key under another API key is another slot.
    let other_key = ReplaySlot { api_key: id("k2"), ..slot.clone() };
    assert_eq!(begin(other_key, 2_000).await, ReplayBegin::Started);
    // Abandoned: claimable again.
    let s2 = ReplaySlot { key: "order-2".to_owned(), ..slot.clone() };
    assert_eq!(begin(s2.clone(), 3_000).await, ReplayBegin::Started);
    store.abandon(&s2).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(begin(s2.clone(), 3_001).await, ReplayBegin::Started);
    // A claim whose caller died: in progress while locked, claimable after.
    assert_eq!(begin(s2.clone(), 3_002).await, ReplayBegin::InProgress);
    assert_eq!(begin(s2.clone(), 3_001 + 30_000).await, ReplayBegin::Started);
    // Abandon never removes a finished slot.
    store.abandon(&slot).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(begin(slot.clone(), 4_000).await, ReplayBegin::Replay(response));
    // Purge by age: the slots made before 2 500 ms go (the first one and k2's).
    assert_eq!(store.purge(at(2_500), 100).await.unwrap_or_else(|e| panic!("{e}")), 2);
    assert_eq!(begin(slot, 5_000).await, ReplayBegin::Started, "a purged slot is new");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_stores_conform() {
        api_key_store_conformance(&MemoryApiKeys::default()).await;
        replay_store_conformance(Arc::new(MemoryReplays::default())).await;
    }
}
