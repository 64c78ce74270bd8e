//! [`AuditLog`] in SQLite: one row per admin request key in `audit_log`, which the database itself keeps
//! append-only (triggers refuse UPDATE, DELETE and an insert over an existing row, which REPLACE would turn into
//! a delete).

use async_trait::async_trait;
use rei_core::guards::{Appended, AuditFilter, AuditLog, AuditLogError, AuditRecord};
use sqlx::Sqlite;
use sqlx::sqlite::{SqliteConnection, SqlitePool};

use crate::sql::stores::audit::{duplicate, list_query, record_from_row, record_values, unavailable};
use crate::sql::stores::values::BindValues;

/// An [`AuditLog`] over a SQLite pool; the schema comes from [`super::migrate`].
#[derive(Debug, Clone)]
pub struct SqliteAuditLog {
    pool: SqlitePool,
}

impl SqliteAuditLog {
    /// A log over `pool`, which must be migrated.
    #[must_use]
    pub fn new(pool: SqlitePool) -> SqliteAuditLog {
        SqliteAuditLog { pool }
    }
}

/// SQLite's number for `PRAGMA synchronous = FULL`.
const SYNCHRONOUS_FULL: i64 = 2;

/// Inserts the record unless its request key is already audited; `true` when a row was added. Only the request
/// key is a duplicate: a clash on the id is an error (nothing is written), not a silent success for a record
/// that was never stored.
async fn insert(conn: &mut SqliteConnection, record: &AuditRecord) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO audit_log (id, at_ms, actor, actor_role, action, target, reason, request_key, outcome) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT (request_key) DO NOTHING",
    )
    .bind_values(record_values(record))
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

#[async_trait]
impl AuditLog for SqliteAuditLog {
    async fn append(&self, record: AuditRecord) -> Result<Appended, AuditLogError> {
        let mut conn = self.pool.acquire().await.map_err(unavailable)?;
        // The pool runs WAL with synchronous = NORMAL, under which a commit can be lost to a power cut. The port
        // promises a durable record on Ok, so this commit runs with FULL (the WAL is synced before it returns)
        // and the connection goes back to the pool as it came.
        let level: i64 = sqlx::query_scalar("PRAGMA synchronous").fetch_one(&mut *conn).await.map_err(unavailable)?;
        let raise = level < SYNCHRONOUS_FULL;
        if raise {
            sqlx::query("PRAGMA synchronous = FULL").execute(&mut *conn).await.map_err(unavailable)?;
        }
        let inserted = insert(&mut conn, &record).await;
        if raise {
            let restore = format!("PRAGMA synchronous = {level}");
            if sqlx::query(&restore).execute(&mut *conn).await.is_err() {
                // A connection left at FULL is only slower, but one that failed a pragma is not worth keeping.
                conn.close_on_drop();
            }
        }
        if inserted.map_err(unavailable)? {
            return Ok(Appended::New(record.id));
        }
        let first = sqlx::query("SELECT id FROM audit_log WHERE request_key = ?1")
            .bind(record.request_key.as_str())
            .fetch_optional(&mut *conn)
            .await
            .map_err(unavailable)?;
        duplicate(&record, first.as_ref())
    }

    async fn list(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>, AuditLogError> {
        let rows = list_query::<Sqlite>(filter).build().fetch_all(&self.pool).await.map_err(unavailable)?;
        rows.iter().map(|r| record_from_row(r).map_err(AuditLogError::from)).collect()
    }
}
