//! [`MemoryUpdateLog`] and [`MemoryConversations`], and the conformance suites every [`UpdateLog`] and
//! [`ConversationStore`] must pass.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::PoisonError;

use async_trait::async_trait;

use crate::chat::{ChatStoreError, Conversation, ConversationStore, STATE_BYTES_MAX, UpdateLog};
use crate::ids::UserId;
use crate::time::Timestamp;

/// Update ids in a map.
#[derive(Debug, Default)]
pub struct MemoryUpdateLog {
    taken: Mutex<BTreeMap<i64, Timestamp>>,
}

#[async_trait]
impl UpdateLog for MemoryUpdateLog {
    async fn claim(&self, id: i64, now: Timestamp) -> Result<bool, ChatStoreError> {
        let mut taken = self.taken.lock().unwrap_or_else(PoisonError::into_inner);
        if taken.contains_key(&id) {
            return Ok(false);
        }
        taken.insert(id, now);
        Ok(true)
    }

    async fn release(&self, id: i64) -> Result<(), ChatStoreError> {
        self.taken.lock().unwrap_or_else(PoisonError::into_inner).remove(&id);
        Ok(())
    }

    async fn purge(&self, before: Timestamp, limit: usize) -> Result<usize, ChatStoreError> {
        let mut taken = self.taken.lock().unwrap_or_else(PoisonError::into_inner);
        let old: Vec<i64> = taken.iter().filter(|(_, at)| **at < before).map(|(id, _)| *id).take(limit).collect();
        for id in &old {
            taken.remove(id);
        }
        Ok(old.len())
    }
}

/// Conversations in a map.
#[derive(Debug, Default)]
pub struct MemoryConversations {
    states: Mutex<BTreeMap<i64, Conversation>>,
}

#[async_trait]
impl ConversationStore for MemoryConversations {
    async fn get(&self, user: UserId) -> Result<Option<Conversation>, ChatStoreError> {
        Ok(self.states.lock().unwrap_or_else(PoisonError::into_inner).get(&user.0).cloned())
    }

    async fn put(&self, user: UserId, state: &str, now: Timestamp) -> Result<(), ChatStoreError> {
        if state.len() > STATE_BYTES_MAX {
            return Err(ChatStoreError::TooLarge(state.len()));
        }
        let conversation = Conversation { state: state.to_owned(), updated_at: now };
        self.states.lock().unwrap_or_else(PoisonError::into_inner).insert(user.0, conversation);
        Ok(())
    }

    async fn clear(&self, user: UserId) -> Result<(), ChatStoreError> {
        self.states.lock().unwrap_or_else(PoisonError::into_inner).remove(&user.0);
        Ok(())
    }
}

fn at(ms: i64) -> Timestamp {
    Timestamp::from_millis(ms)
}

/// Checks an [`UpdateLog`]: one claim wins among concurrent claims of an id, released ids are claimable again,
/// purge by age.
///
/// # Panics
/// On the first broken promise.
pub async fn update_log_conformance(log: &dyn UpdateLog) {
    let claims = super::ledger::join_all((0..16).map(|_| log.claim(10_001, at(1_000))).collect()).await;
    let won = claims.into_iter().map(|c| c.unwrap_or_else(|e| panic!("claim: {e}"))).filter(|w| *w).count();
    assert_eq!(won, 1, "one of 16 concurrent claims of one update wins");
    assert!(!log.claim(10_001, at(2_000)).await.unwrap_or_else(|e| panic!("{e}")), "taken before");
    assert!(log.claim(10_002, at(2_000)).await.unwrap_or_else(|e| panic!("{e}")), "another update is new");
    log.release(10_002).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(log.claim(10_002, at(3_000)).await.unwrap_or_else(|e| panic!("{e}")), "released: taken again");
    assert_eq!(log.purge(at(2_500), 100).await.unwrap_or_else(|e| panic!("{e}")), 1, "only 10 001 is older");
    assert!(log.claim(10_001, at(4_000)).await.unwrap_or_else(|e| panic!("{e}")), "purged: new again");
}

/// Checks a [`ConversationStore`]: a state reads back, the last write wins, a state over the limit is refused
/// and changes nothing, clear ends it, users are apart.
///
/// # Panics
/// On the first broken promise.
pub async fn conversation_store_conformance(store: &dyn ConversationStore) {
    let (alice, bob) = (UserId(1), UserId(2));
    assert_eq!(store.get(alice).await.unwrap_or_else(|e| panic!("{e}")), None);
    store.put(alice, "video:model=kling-2.6", at(1_000)).await.unwrap_or_else(|e| panic!("{e}"));
    store.put(alice, "video:model=kling-2.6;duration=5", at(2_000)).await.unwrap_or_else(|e| panic!("{e}"));
    store.put(bob, "lang:en", at(2_500)).await.unwrap_or_else(|e| panic!("{e}"));
    let got = store.get(alice).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(got, Some(Conversation { state: "video:model=kling-2.6;duration=5".into(), updated_at: at(2_000) }));
    let huge = "x".repeat(STATE_BYTES_MAX + 1);
    assert_eq!(store.put(alice, &huge, at(3_000)).await, Err(ChatStoreError::TooLarge(STATE_BYTES_MAX + 1)));
    assert_eq!(store.get(alice).await.unwrap_or_else(|e| panic!("{e}")).map(|c| c.updated_at), Some(at(2_000)));
    store.clear(alice).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(store.get(alice).await.unwrap_or_else(|e| panic!("{e}")), None);
    assert_eq!(store.get(bob).await.unwrap_or_else(|e| panic!("{e}")).map(|c| c.state), Some("lang:en".into()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_chat_stores_conform() {
        update_log_conformance(&MemoryUpdateLog::default()).await;
        conversation_store_conformance(&MemoryConversations::default()).await;
    }
}
