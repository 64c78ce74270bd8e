//! [`UsageSessionStore`](rei_core::usage::UsageSessionStore) in SQLite: one row per session in `usage_sessions`; the steps are shared with
//! PostgreSQL (`sql::stores::usage`), the statements are SQLite's.

use sqlx::sqlite::SqlitePool;

use crate::sql::stores::usage::{self, UsageSql};

/// The most sessions one [`open_sessions`](rei_core::usage::UsageSessionStore::open_sessions) call returns, whatever its `limit`.
pub const OPEN_SESSIONS_MAX: usize = 1_000;

const SQL: UsageSql = UsageSql {
    insert: "INSERT INTO usage_sessions (id, user_id, hold_id, rate_kopecks, chunk_units, chunks, used_units, held, \
             captured, state, opened_ms, expires_ms, hold_ttl_ms) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13) ON CONFLICT (id) DO NOTHING",
    update: "UPDATE usage_sessions SET user_id = ?2, hold_id = ?3, rate_kopecks = ?4, chunk_units = ?5, \
             chunks = ?6, used_units = ?7, held = ?8, captured = ?9, state = ?10, opened_ms = ?11, \
             expires_ms = ?12, hold_ttl_ms = ?13 \
             WHERE id = ?1 AND state = ?14 AND chunks = ?15 AND used_units = ?16",
    exists: "SELECT 1 FROM usage_sessions WHERE id = ?1",
    by_id: "WHERE id = ?1",
    // The literal state matches the partial index usage_sessions_open.
    open: "WHERE state = 'open' ORDER BY opened_ms, id LIMIT ?1",
};

usage::usage_store!(SqliteUsageSessionStore, SqlitePool, SQL, OPEN_SESSIONS_MAX, "SQLite");
