//! [`UpdateLog`](rei_core::chat::UpdateLog) and [`ConversationStore`](rei_core::chat::ConversationStore) over
//! either engine: `bot_updates` and `bot_conversations`.

use rei_core::chat::{ChatStoreError, Conversation, STATE_BYTES_MAX};
use rei_core::ids::UserId;
use rei_core::time::Timestamp;

use super::engine::Engine;
use super::fields::Fields;

/// The statements of the chat stores in one engine's dialect (placeholders numbered from 1).
pub(crate) struct ChatSql {
    /// Inserts update id (1st) taken at (2nd); a clash inserts nothing.
    pub(crate) claim: &'static str,
    /// Deletes update id (1st).
    pub(crate) release: &'static str,
    /// Deletes up to the 2nd value of the updates taken before the 1st.
    pub(crate) purge: &'static str,
    /// The state and time of user (1st).
    pub(crate) get: &'static str,
    /// Writes user (1st), state (2nd), time (3rd), replacing the user's row.
    pub(crate) put: &'static str,
    /// Deletes user (1st)'s row.
    pub(crate) clear: &'static str,
}

fn unavailable(e: impl ToString) -> ChatStoreError {
    ChatStoreError::Unavailable { reason: e.to_string() }
}

/// [`UpdateLog::claim`](rei_core::chat::UpdateLog::claim).
pub(crate) async fn claim<E: Engine>(db: &E, sql: &ChatSql, id: i64, now: Timestamp) -> Result<bool, ChatStoreError> {
    Ok(db.execute(sql.claim, vec![id.into(), now.as_millis().into()]).await.map_err(unavailable)? > 0)
}

/// [`UpdateLog::release`](rei_core::chat::UpdateLog::release).
pub(crate) async fn release<E: Engine>(db: &E, sql: &ChatSql, id: i64) -> Result<(), ChatStoreError> {
    db.execute(sql.release, vec![id.into()]).await.map_err(unavailable)?;
    Ok(())
}

/// [`UpdateLog::purge`](rei_core::chat::UpdateLog::purge).
pub(crate) async fn purge<E: Engine>(
    db: &E,
    sql: &ChatSql,
    before: Timestamp,
    limit: usize,
) -> Result<usize, ChatStoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let n = db.execute(sql.purge, vec![before.as_millis().into(), limit.into()]).await.map_err(unavailable)?;
    Ok(usize::try_from(n).unwrap_or(usize::MAX))
}

/// [`ConversationStore::get`](rei_core::chat::ConversationStore::get).
pub(crate) async fn get<E: Engine>(
    db: &E,
    sql: &ChatSql,
    user: UserId,
) -> Result<Option<Conversation>, ChatStoreError> {
    let Some(row) = db.fetch_optional(sql.get, vec![user.0.into()]).await.map_err(unavailable)? else {
        return Ok(None);
    };
    let f = Fields::new("bot_conversations", &row);
    Ok(Some(Conversation {
        state: f.text("state").map_err(unavailable)?,
        updated_at: f.time("updated_ms").map_err(unavailable)?,
    }))
}

/// [`ConversationStore::put`](rei_core::chat::ConversationStore::put).
pub(crate) async fn put<E: Engine>(
    db: &E,
    sql: &ChatSql,
    user: UserId,
    state: &str,
    now: Timestamp,
) -> Result<(), ChatStoreError> {
    if state.len() > STATE_BYTES_MAX {
        return Err(ChatStoreError::TooLarge(state.len()));
    }
    db.execute(sql.put, vec![user.0.into(), state.into(), now.as_millis().into()]).await.map_err(unavailable)?;
    Ok(())
}

/// [`ConversationStore::clear`](rei_core::chat::ConversationStore::clear).
pub(crate) async fn clear<E: Engine>(db: &E, sql: &ChatSql, user: UserId) -> Result<(), ChatStoreError> {
    db.execute(sql.clear, vec![user.0.into()]).await.map_err(unavailable)?;
    Ok(())
}

/// Defines an engine's update log `$log` and conversation store `$conversations` over a `$pool`.
macro_rules! chat_stores {
    ($log:ident, $conversations:ident, $pool:ty, $sql:expr, $engine:literal) => {
        $crate::sql::stores::engine::pool_store!(
            $log,
            $pool,
            concat!(
                "An [`UpdateLog`](rei_core::chat::UpdateLog) over a ",
                $engine,
                " pool; the schema comes from [`super::migrate`]."
            )
        );
        $crate::sql::stores::engine::pool_store!(
            $conversations,
            $pool,
            concat!(
                "A [`ConversationStore`](rei_core::chat::ConversationStore) over a ",
                $engine,
                " pool; the schema comes from [`super::migrate`]."
            )
        );

        #[async_trait::async_trait]
        impl rei_core::chat::UpdateLog for $log {
            async fn claim(
                &self,
                id: i64,
                now: rei_core::time::Timestamp,
            ) -> Result<bool, rei_core::chat::ChatStoreError> {
                $crate::sql::stores::chat::claim(&self.pool, &$sql, id, now).await
            }

            async fn release(&self, id: i64) -> Result<(), rei_core::chat::ChatStoreError> {
                $crate::sql::stores::chat::release(&self.pool, &$sql, id).await
            }

            async fn purge(
                &self,
                before: rei_core::time::Timestamp,
                limit: usize,
            ) -> Result<usize, rei_core::chat::ChatStoreError> {
                $crate::sql::stores::chat::purge(&self.pool, &$sql, before, limit).await
            }
        }

        #[async_trait::async_trait]
        impl rei_core::chat::ConversationStore for $conversations {
            async fn get(
                &self,
                user: rei_core::ids::UserId,
            ) -> Result<Option<rei_core::chat::Conversation>, rei_core::chat::ChatStoreError> {
                $crate::sql::stores::chat::get(&self.pool, &$sql, user).await
            }

            async fn put(
                &self,
                user: rei_core::ids::UserId,
                state: &str,
                now: rei_core::time::Timestamp,
            ) -> Result<(), rei_core::chat::ChatStoreError> {
                $crate::sql::stores::chat::put(&self.pool, &$sql, user, state, now).await
            }

            async fn clear(&self, user: rei_core::ids::UserId) -> Result<(), rei_core::chat::ChatStoreError> {
                $crate::sql::stores::chat::clear(&self.pool, &$sql, user).await
            }
        }
    };
}
pub(crate) use chat_stores;
