//! [`UsageSessionStore`](rei_core::usage::UsageSessionStore) over either engine: one row per session in
//! `usage_sessions`.
//!
//! An update is one conditional `UPDATE` guarded by the expected state, chunks and used units, whose row count
//! decides, so two meters cannot both extend a session.

use std::time::Duration;

use rei_core::ids::{HoldId, SessionId, UserId};
use rei_core::ledger::StoreError;
use rei_core::money::UnitPrice;
use rei_core::usage::{SessionState, UsageError, UsageSession};

use super::engine::Engine;
use super::fields::{Fields, RowError, SqlRow};
use super::values::{Value, sql_limit};
use crate::sql::store_error;

const TABLE: &str = "usage_sessions";

/// The columns of `usage_sessions`, in the order [`insert_values`] lists them.
const COLUMNS: &str = "id, user_id, hold_id, rate_kopecks, chunk_units, chunks, used_units, held, \
                       captured, state, opened_ms, expires_ms, hold_ttl_ms";

/// The statements of the usage-session store in one engine's dialect. Values are bound in the order each field
/// says.
pub(crate) struct UsageSql {
    /// Inserts a row from [`insert_values`] unless its id exists.
    pub(crate) insert: &'static str,
    /// Replaces every column but the id from [`update_values`]: the id is the 1st value, the expected state,
    /// chunks and used units the 14th to 16th.
    pub(crate) update: &'static str,
    /// Selects a row (any column) of the session whose id is the 1st value.
    pub(crate) exists: &'static str,
    /// After `SELECT {columns} FROM usage_sessions`: the session whose id is the 1st value.
    pub(crate) by_id: &'static str,
    /// After `SELECT {columns} FROM usage_sessions`: open sessions, oldest first, at most the 1st value.
    pub(crate) open: &'static str,
}

impl From<RowError> for UsageError {
    fn from(e: RowError) -> UsageError {
        UsageError::Store(StoreError::Corrupt { message: e.to_string() })
    }
}

/// The port's error for a failed statement.
fn db_error(e: sqlx::Error) -> UsageError {
    UsageError::Store(store_error(&e))
}

/// The stored name of a state: the core's stable name, which the CHECK constraints of the migrations list.
const STATES: [SessionState; 3] = [SessionState::Open, SessionState::Closed, SessionState::Stopped];

/// Rebuilds a session from its row, checking every column.
fn session_from_row<R: SqlRow>(row: &R) -> Result<UsageSession, RowError> {
    let f = Fields::new(TABLE, row);
    // The decimal type is inferred from UnitPrice::from_kopecks, so the text is parsed exactly, never as a float.
    let rate = f.parsed("rate_kopecks", |text| text.parse().map_err(|e| format!("{text:?}: {e}")))?;
    let rate = UnitPrice::from_kopecks(rate).ok_or_else(|| f.invalid("rate_kopecks", "negative"))?;
    Ok(UsageSession {
        id: SessionId::from(f.id("id")?),
        user: UserId(f.int("user_id")?),
        hold: HoldId::from(f.id("hold_id")?),
        rate,
        chunk_units: f.unsigned("chunk_units")?,
        chunks: f.unsigned("chunks")?,
        used_units: f.unsigned("used_units")?,
        held: f.money("held")?,
        captured: f.money("captured")?,
        state: f.named("state", STATES, SessionState::as_str)?,
        opened_at: f.time("opened_ms")?,
        expires_at: f.time("expires_ms")?,
        hold_ttl: Duration::from_millis(f.unsigned("hold_ttl_ms")?),
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
    if !s.hold_ttl.subsec_nanos().is_multiple_of(1_000_000) {
        return Err(UsageError::Invalid { reason: "hold_ttl must be whole milliseconds" });
    }
    Ok(Numbers {
        chunk_units: fit(s.chunk_units)?,
        chunks: fit(s.chunks)?,
        used_units: fit(s.used_units)?,
        hold_ttl_ms: i64::try_from(ttl_ms).map_err(|_| UsageError::Invalid { reason: "hold_ttl is too long" })?,
    })
}

/// Every column of `s`, in [`COLUMNS`] order.
///
/// # Errors
/// [`UsageError::Invalid`] for a count or TTL the columns cannot hold exactly.
fn insert_values(s: &UsageSession) -> Result<[Value<'_>; 13], UsageError> {
    let n = numbers(s)?;
    Ok([
        Value::id(s.id.as_u128()),
        s.user.0.into(),
        Value::id(s.hold.as_u128()),
        s.rate.kopecks().to_string().into(),
        n.chunk_units.into(),
        n.chunks.into(),
        n.used_units.into(),
        s.held.kopecks().into(),
        s.captured.kopecks().into(),
        s.state.as_str().into(),
        s.opened_at.as_millis().into(),
        s.expires_at.as_millis().into(),
        n.hold_ttl_ms.into(),
    ])
}

/// The values of a compare-and-set from `expected` to `next`: every column of `next` in [`COLUMNS`] order,
/// then the expected state, chunks and used units.
///
/// # Errors
/// [`UsageError::Invalid`] when `next` has another id, or for a count or TTL the columns cannot hold exactly.
fn update_values<'a>(expected: &'a UsageSession, next: &'a UsageSession) -> Result<Vec<Value<'a>>, UsageError> {
    if next.id != expected.id {
        return Err(UsageError::Invalid { reason: "an update cannot change a session's id" });
    }
    let mut values = Vec::from(insert_values(next)?);
    let e = numbers(expected)?;
    values.extend([expected.state.as_str().into(), e.chunks.into(), e.used_units.into()]);
    Ok(values)
}

/// [`UsageSessionStore::insert`](rei_core::usage::UsageSessionStore::insert).
pub(crate) async fn insert<E: Engine>(
    db: &E,
    sql: &UsageSql,
    session: UsageSession,
) -> Result<UsageSession, UsageError> {
    db.execute(sql.insert, insert_values(&session)?.into()).await.map_err(db_error)?;
    // A new statement sees the row whichever insert won; the first session is what stays.
    get(db, sql, session.id).await?.ok_or_else(|| {
        UsageError::Store(StoreError::Unavailable {
            message: format!("session {} missing right after its insert", session.id),
        })
    })
}

/// [`UsageSessionStore::get`](rei_core::usage::UsageSessionStore::get).
pub(crate) async fn get<E: Engine>(db: &E, sql: &UsageSql, id: SessionId) -> Result<Option<UsageSession>, UsageError> {
    let select = format!("SELECT {COLUMNS} FROM usage_sessions {}", sql.by_id);
    let row = db.fetch_optional(&select, vec![Value::id(id.as_u128())]).await.map_err(db_error)?;
    Ok(row.as_ref().map(session_from_row).transpose()?)
}

/// [`UsageSessionStore::update`](rei_core::usage::UsageSessionStore::update).
pub(crate) async fn update<E: Engine>(
    db: &E,
    sql: &UsageSql,
    expected: &UsageSession,
    next: UsageSession,
) -> Result<(), UsageError> {
    if db.execute(sql.update, update_values(expected, &next)?).await.map_err(db_error)? == 1 {
        return Ok(());
    }
    // The update missed; this read only tells a missing session from a changed one.
    let exists = db.fetch_optional(sql.exists, vec![Value::id(expected.id.as_u128())]).await.map_err(db_error)?;
    match exists {
        Some(_) => Err(UsageError::Conflict { session: expected.id }),
        None => Err(UsageError::NotFound { session: expected.id }),
    }
}

/// [`UsageSessionStore::open_sessions`](rei_core::usage::UsageSessionStore::open_sessions), returning at most
/// `max`.
pub(crate) async fn open_sessions<E: Engine>(
    db: &E,
    sql: &UsageSql,
    limit: usize,
    max: usize,
) -> Result<Vec<UsageSession>, UsageError> {
    let limit = sql_limit(limit, max);
    if limit == 0 {
        return Ok(Vec::new());
    }
    let select = format!("SELECT {COLUMNS} FROM usage_sessions {}", sql.open);
    let rows = db.fetch_all(&select, vec![limit.into()]).await.map_err(db_error)?;
    rows.iter().map(|r| session_from_row(r).map_err(UsageError::from)).collect()
}

/// Defines an engine's [`rei_core::usage::UsageSessionStore`]: a struct `$store` over a `$pool`, whose every call
/// runs the shared step above with the engine's statements `$sql`. Only the SQL text differs between engines.
macro_rules! usage_store {
    ($store:ident, $pool:ty, $sql:expr, $open_max:expr, $engine:literal) => {
        $crate::sql::stores::engine::pool_store!(
            $store,
            $pool,
            concat!(
                "A [`UsageSessionStore`](rei_core::usage::UsageSessionStore) over a ",
                $engine,
                " pool; the schema comes from [`super::migrate`]."
            )
        );

        #[async_trait::async_trait]
        impl rei_core::usage::UsageSessionStore for $store {
            async fn insert(
                &self,
                session: rei_core::usage::UsageSession,
            ) -> Result<rei_core::usage::UsageSession, rei_core::usage::UsageError> {
                $crate::sql::stores::usage::insert(&self.pool, &$sql, session).await
            }

            async fn get(
                &self,
                id: rei_core::ids::SessionId,
            ) -> Result<Option<rei_core::usage::UsageSession>, rei_core::usage::UsageError> {
                $crate::sql::stores::usage::get(&self.pool, &$sql, id).await
            }

            async fn update(
                &self,
                expected: &rei_core::usage::UsageSession,
                next: rei_core::usage::UsageSession,
            ) -> Result<(), rei_core::usage::UsageError> {
                $crate::sql::stores::usage::update(&self.pool, &$sql, expected, next).await
            }

            async fn open_sessions(
                &self,
                limit: usize,
            ) -> Result<Vec<rei_core::usage::UsageSession>, rei_core::usage::UsageError> {
                $crate::sql::stores::usage::open_sessions(&self.pool, &$sql, limit, $open_max).await
            }
        }
    };
}
pub(crate) use usage_store;
