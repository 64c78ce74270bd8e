//! [`AuditLog`] in PostgreSQL: one row per admin request key in `audit_log`, which the database itself keeps
//! append-only (triggers refuse UPDATE, DELETE and TRUNCATE).

use async_trait::async_trait;
use rei_core::guards::{Appended, AuditFilter, AuditLog, AuditLogError, AuditRecord};
use sqlx::Postgres;
use sqlx::postgres::PgPool;

use crate::sql::stores::audit::{duplicate, list_query, record_from_row, record_values, unavailable};
use crate::sql::stores::values::BindValues;

/// An [`AuditLog`] over a PostgreSQL pool; the schema comes from [`super::migrate`].
#[derive(Debug, Clone)]
pub struct PgAuditLog {
    pool: PgPool,
}

impl PgAuditLog {
    /// A log over `pool`, which must be migrated.
    #[must_use]
    pub fn new(pool: PgPool) -> PgAuditLog {
        PgAuditLog { pool }
    }
}

#[async_trait]
impl AuditLog for PgAuditLog {
    async fn append(&self, record: AuditRecord) -> Result<Appended, AuditLogError> {
        // Only the request key is a duplicate; a clash on the id is an error (nothing is written), not a
        // silent success for a record that was never stored.
        let done = sqlx::query(
            "INSERT INTO audit_log (id, at_ms, actor, actor_role, action, target, reason, request_key, outcome) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (request_key) DO NOTHING",
        )
        .bind_values(record_values(&record))
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        if done.rows_affected() == 1 {
            // Committed on return: the pool's connections run with PostgreSQL's default synchronous commit.
            return Ok(Appended::New(record.id));
        }
        let first = sqlx::query("SELECT id FROM audit_log WHERE request_key = $1")
            .bind(record.request_key.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?;
        duplicate(&record, first.as_ref())
    }

    async fn list(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>, AuditLogError> {
        let rows = list_query::<Postgres>(filter).build().fetch_all(&self.pool).await.map_err(unavailable)?;
        rows.iter().map(|r| record_from_row(r).map_err(AuditLogError::from)).collect()
    }
}
