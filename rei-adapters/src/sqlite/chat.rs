//! The bot's update log and conversations in SQLite (`bot_updates`, `bot_conversations`); the steps are shared
//! (`sql::stores::chat`), the statements are SQLite's.

use sqlx::sqlite::SqlitePool;

use crate::sql::stores::chat::{self, ChatSql};

const SQL: ChatSql = ChatSql {
    claim: "INSERT INTO bot_updates (update_id, taken_ms) VALUES (?1, ?2) ON CONFLICT (update_id) DO NOTHING",
    release: "DELETE FROM bot_updates WHERE update_id = ?1",
    purge: "DELETE FROM bot_updates WHERE update_id IN \
            (SELECT update_id FROM bot_updates WHERE taken_ms < ?1 ORDER BY taken_ms LIMIT ?2)",
    get: "SELECT state, updated_ms FROM bot_conversations WHERE user_id = ?1",
    put: "INSERT INTO bot_conversations (user_id, state, updated_ms) VALUES (?1, ?2, ?3) \
          ON CONFLICT (user_id) DO UPDATE SET state = excluded.state, updated_ms = excluded.updated_ms",
    clear: "DELETE FROM bot_conversations WHERE user_id = ?1",
};

chat::chat_stores!(SqliteUpdateLog, SqliteConversations, SqlitePool, SQL, "SQLite");
