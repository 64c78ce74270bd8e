//! [`UsageSessionStore`] in PostgreSQL: one row per session in `usage_sessions`.
//!
//! An update is one conditional `UPDATE … WHERE id = $1 AND state = $14 AND chunks = $15 AND used_units = $16`
//! whose row count decides, so two meters cannot both extend a session.

use std::time::Duration;

use async_trait::async_trait;
use rei_core::ids::{HoldId, SessionId, UserId};
use rei_core::money::{Money, UnitPrice};
use rei_core::time::Timestamp;
use rei_core::usage::{SessionState, UsageError, UsageSession, UsageSessionStore};
use sqlx::postgres::{PgArguments, PgPool, PgRow};
use sqlx::query::Query;
use sqlx::{Postgres, Row};

use crate::sql::{id_bytes, id_from_bytes, store_error};

/// The most sessions one [`UsageSessionStore::open_sessions`] call returns, whatever its `limit`.
pub const OPEN_SESSIONS_MAX: usize = 1_000;

const COLUMNS: &str = "id, user_id, hold_id, rate_kopecks, chunk_units, chunks, used_units, held, captured, state, \
                       opened_ms, expires_ms, hold_ttl_ms";

/// A [`UsageSessionStore`] over a PostgreSQL pool; the schema comes from [`super::migrate`].
#[derive(Debug, Clone)]
pub struct PgUsageSessionStore {
    pool: PgPool,
}

impl PgUsageSessionStore {
    /// A store over `pool`, which must be migrated.
    #[must_use]
    pub fn new(pool: PgPool) -> PgUsageSessionStore {
        PgUsageSessionStore { pool }
    }
}

/// Why a stored row is not a session.
#[derive(Debug, thiserror::Error)]
enum RowError {
    /// The driver could not read the column as the expected type.
    #[error("usage_sessions.{column} cannot be read: {source}")]
    Decode {
        /// Which column.
        column: &'static str,
        /// What the driver said.
        #[source]
        source: sqlx::Error,
    },
    /// The column holds a value the domain type refuses.
    #[error("usage_sessions.{column} is invalid: {problem}")]
    Invalid {
        /// Which column.
        column: &'static str,
        /// What is wrong with it.
        problem: String,
    },
}

impl From<RowError> for UsageError {
    fn from(e: RowError) -> UsageError {
        UsageError::Store(rei_core::ledger::StoreError::Corrupt { message: e.to_string() })
    }
}

fn db(e: sqlx::Error) -> UsageError {
    UsageError::Store(store_error(&e))
}

/// The stored name of a state: the core's stable name, which the CHECK constraint of the migration lists.
const STATES: [SessionState; 3] = [SessionState::Open, SessionState::Closed, SessionState::Stopped];

fn column<'r, T>(row: &'r PgRow, column: &'static str) -> Result<T, RowError>
where
    T: sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres>,
{
    row.try_get(column).map_err(|source| RowError::Decode { column, source })
}

fn invalid(column: &'static str, problem: impl ToString) -> RowError {
    RowError::Invalid { column, problem: problem.to_string() }
}

fn id_column(row: &PgRow, name: &'static str) -> Result<u128, RowError> {
    let bytes: Vec<u8> = column(row, name)?;
    id_from_bytes(&bytes).map_err(|e| invalid(name, e))
}

fn count_column(row: &PgRow, name: &'static str) -> Result<u64, RowError> {
    let n: i64 = column(row, name)?;
    u64::try_from(n).map_err(|_| invalid(name, format!("{n} is negative")))
}

/// Rebuilds a session from its row, checking every column.
fn session_from_row(row: &PgRow) -> Result<UsageSession, RowError> {
    let rate: String = column(row, "rate_kopecks")?;
    // The decimal type is inferred from UnitPrice::from_kopecks, so the text is parsed exactly, never as a float.
    let rate = rate.parse().map_err(|e| invalid("rate_kopecks", format!("{rate:?}: {e}")))?;
    let rate = UnitPrice::from_kopecks(rate).ok_or_else(|| invalid("rate_kopecks", "negative"))?;
    let state: String = column(row, "state")?;
    let state = STATES.into_iter().find(|s| s.as_str() == state).ok_or_else(|| invalid("state", &state))?;
    let hold_ttl = count_column(row, "hold_ttl_ms")?;
    Ok(UsageSession {
        id: SessionId::from(id_column(row, "id")?),
        user: UserId(column(row, "user_id")?),
        hold: HoldId::from(id_column(row, "hold_id")?),
        rate,
        chunk_units: count_column(row, "chunk_units")?,
        chunks: count_column(row, "chunks")?,
        used_units: count_column(row, "used_units")?,
        held: Money::from_kopecks(column(row, "held")?),
        captured: Money::from_kopecks(column(row, "captured")?),
        state,
        opened_at: Timestamp::from_millis(column(row, "opened_ms")?),
        expires_at: Timestamp::from_millis(column(row, "expires_ms")?),
        hold_ttl: Duration::from_millis(hold_ttl),
    })
}

/// A session's counters and TTL in the column types, refused (not wrapped) when they do not fit.
struct Numbers {
    chunk_units: i64,
    chunks: i64,
    used_units: i64,
    hold_ttl_ms: i64,
}

fn numbers(s: &UsageSession) -> Result<Numbers, UsageError> {
    let fit = |n: u64| i64::try_from(n).map_err(|_| UsageError::Invalid { reason: "a count does not fit the store" });
    let ttl_ms = s.hold_ttl.as_millis();
    // Durations are stored in whole milliseconds; a finer TTL would come back different from what was put.
    if s.hold_ttl.subsec_nanos() % 1_000_000 != 0 {
        return Err(UsageError::Invalid { reason: "hold_ttl must be whole milliseconds" });
    }
    Ok(Numbers {
        chunk_units: fit(s.chunk_units)?,
        chunks: fit(s.chunks)?,
        used_units: fit(s.used_units)?,
        hold_ttl_ms: i64::try_from(ttl_ms).map_err(|_| UsageError::Invalid { reason: "hold_ttl is too long" })?,
    })
}

/// Binds every column but the id as $2 to $13, in [`COLUMNS`] order.
fn bind_fields<'q>(
    query: Query<'q, Postgres, PgArguments>,
    s: &'q UsageSession,
    n: &Numbers,
) -> Query<'q, Postgres, PgArguments> {
    query
        .bind(s.user.0)
        .bind(id_bytes(s.hold.as_u128()))
        .bind(s.rate.kopecks().to_string())
        .bind(n.chunk_units)
        .bind(n.chunks)
        .bind(n.used_units)
        .bind(s.held.kopecks())
        .bind(s.captured.kopecks())
        .bind(s.state.as_str())
        .bind(s.opened_at.as_millis())
        .bind(s.expires_at.as_millis())
        .bind(n.hold_ttl_ms)
}

#[async_trait]
impl UsageSessionStore for PgUsageSessionStore {
    async fn insert(&self, session: UsageSession) -> Result<UsageSession, UsageError> {
        let n = numbers(&session)?;
        let insert = sqlx::query(
            "INSERT INTO usage_sessions (id, user_id, hold_id, rate_kopecks, chunk_units, chunks, used_units, held, \
             captured, state, opened_ms, expires_ms, hold_ttl_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) ON CONFLICT (id) DO NOTHING",
        )
        .bind(id_bytes(session.id.as_u128()));
        bind_fields(insert, &session, &n).execute(&self.pool).await.map_err(db)?;
        // A new statement sees the row whichever insert won; the first session is what stays.
        self.get(session.id).await?.ok_or_else(|| {
            UsageError::Store(rei_core::ledger::StoreError::Unavailable {
                message: format!("session {} missing right after its insert", session.id),
            })
        })
    }

    async fn get(&self, id: SessionId) -> Result<Option<UsageSession>, UsageError> {
        let sql = format!("SELECT {COLUMNS} FROM usage_sessions WHERE id = $1");
        let row = sqlx::query(&sql).bind(id_bytes(id.as_u128())).fetch_optional(&self.pool).await.map_err(db)?;
        Ok(row.as_ref().map(session_from_row).transpose()?)
    }

    async fn update(&self, expected: &UsageSession, next: UsageSession) -> Result<(), UsageError> {
        if next.id != expected.id {
            return Err(UsageError::Invalid { reason: "an update cannot change a session's id" });
        }
        let n = numbers(&next)?;
        let e = numbers(expected)?;
        let update = sqlx::query(
            "UPDATE usage_sessions SET user_id = $2, hold_id = $3, rate_kopecks = $4, chunk_units = $5, \
             chunks = $6, used_units = $7, held = $8, captured = $9, state = $10, opened_ms = $11, \
             expires_ms = $12, hold_ttl_ms = $13 \
             WHERE id = $1 AND state = $14 AND chunks = $15 AND used_units = $16",
        )
        .bind(id_bytes(expected.id.as_u128()));
        let done = bind_fields(update, &next, &n)
            .bind(expected.state.as_str())
            .bind(e.chunks)
            .bind(e.used_units)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        if done.rows_affected() == 1 {
            return Ok(());
        }
        // The update missed; this read only tells a missing session from a changed one.
        let exists = sqlx::query("SELECT 1 FROM usage_sessions WHERE id = $1")
            .bind(id_bytes(expected.id.as_u128()))
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        match exists {
            Some(_) => Err(UsageError::Conflict { session: expected.id }),
            None => Err(UsageError::NotFound { session: expected.id }),
        }
    }

    async fn open_sessions(&self, limit: usize) -> Result<Vec<UsageSession>, UsageError> {
        let limit = i64::try_from(limit.min(OPEN_SESSIONS_MAX)).unwrap_or(0);
        if limit == 0 {
            return Ok(Vec::new());
        }
        // The literal state matches the partial index usage_sessions_open.
        let sql = format!("SELECT {COLUMNS} FROM usage_sessions WHERE state = 'open' ORDER BY opened_ms, id LIMIT $1");
        let rows = sqlx::query(&sql).bind(limit).fetch_all(&self.pool).await.map_err(db)?;
        rows.iter().map(|r| session_from_row(r).map_err(UsageError::from)).collect()
    }
}
