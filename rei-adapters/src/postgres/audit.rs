//! [`AuditLog`] in PostgreSQL: one row per admin request key in `audit_log`, which the database itself keeps
//! append-only (triggers refuse UPDATE, DELETE and TRUNCATE).

use async_trait::async_trait;
use rei_core::guards::{
    Appended, AuditAction, AuditFilter, AuditLog, AuditLogError, AuditOutcome, AuditRecord, AuditTarget, Reason, Role,
};
use rei_core::ids::{AuditId, IdempotencyKey, UserId};
use rei_core::time::Timestamp;
use sqlx::postgres::{PgPool, PgRow};
use sqlx::{Postgres, QueryBuilder, Row};

use crate::sql::{id_bytes, id_from_bytes};

const COLUMNS: &str = "id, at_ms, actor, actor_role, action, target, reason, request_key, outcome";

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

/// Why a stored row is not an audit record.
#[derive(Debug, thiserror::Error)]
enum RowError {
    /// The driver could not read the column as the expected type.
    #[error("audit_log.{column} cannot be read: {source}")]
    Decode {
        /// Which column.
        column: &'static str,
        /// What the driver said.
        #[source]
        source: sqlx::Error,
    },
    /// The column holds a value the domain type refuses.
    #[error("audit_log.{column} is invalid: {problem}")]
    Invalid {
        /// Which column.
        column: &'static str,
        /// What is wrong with it.
        problem: String,
    },
}

/// A corrupt row is reported as unavailable: the port has no other failure, and the message names the column.
impl From<RowError> for AuditLogError {
    fn from(e: RowError) -> AuditLogError {
        AuditLogError::Unavailable { reason: format!("corrupt audit row: {e}") }
    }
}

fn unavailable(e: sqlx::Error) -> AuditLogError {
    AuditLogError::Unavailable { reason: e.to_string() }
}

/// Stored names, pinned here because the CHECK constraints of the migration name these exact words.
const fn role_name(r: Role) -> &'static str {
    match r {
        Role::User => "user",
        Role::Admin => "admin",
        Role::Owner => "owner",
    }
}

const ACTIONS: [AuditAction; 6] = [
    AuditAction::Adjust,
    AuditAction::Refund,
    AuditAction::CancelJob,
    AuditAction::Ban,
    AuditAction::Unban,
    AuditAction::RoleChange,
];

const fn action_name(a: AuditAction) -> &'static str {
    match a {
        AuditAction::Adjust => "adjust",
        AuditAction::Refund => "refund",
        AuditAction::CancelJob => "cancel_job",
        AuditAction::Ban => "ban",
        AuditAction::Unban => "unban",
        AuditAction::RoleChange => "role_change",
    }
}

const OUTCOMES: [AuditOutcome; 3] = [AuditOutcome::Done, AuditOutcome::Forbidden, AuditOutcome::Failed];

const fn outcome_name(o: AuditOutcome) -> &'static str {
    match o {
        AuditOutcome::Done => "done",
        AuditOutcome::Forbidden => "forbidden",
        AuditOutcome::Failed => "failed",
    }
}

fn column<'r, T>(row: &'r PgRow, column: &'static str) -> Result<T, RowError>
where
    T: sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres>,
{
    row.try_get(column).map_err(|source| RowError::Decode { column, source })
}

fn invalid(column: &'static str, problem: impl ToString) -> RowError {
    RowError::Invalid { column, problem: problem.to_string() }
}

fn id_column(row: &PgRow) -> Result<AuditId, RowError> {
    let bytes: Vec<u8> = column(row, "id")?;
    id_from_bytes(&bytes).map(AuditId::from).map_err(|e| invalid("id", e))
}

/// Rebuilds a record from its row, checking every column.
fn record_from_row(row: &PgRow) -> Result<AuditRecord, RowError> {
    let role: String = column(row, "actor_role")?;
    let action: String = column(row, "action")?;
    let outcome: String = column(row, "outcome")?;
    let target: String = column(row, "target")?;
    let reason: String = column(row, "reason")?;
    let key: String = column(row, "request_key")?;
    Ok(AuditRecord {
        id: id_column(row)?,
        at: Timestamp::from_millis(column(row, "at_ms")?),
        actor: UserId(column(row, "actor")?),
        actor_role: Role::ALL
            .into_iter()
            .find(|r| role_name(*r) == role)
            .ok_or_else(|| invalid("actor_role", &role))?,
        action: ACTIONS.into_iter().find(|a| action_name(*a) == action).ok_or_else(|| invalid("action", &action))?,
        target: AuditTarget::parse(&target).map_err(|e| invalid("target", e))?,
        reason: Reason::parse(&reason).map_err(|e| invalid("reason", e))?,
        request_key: IdempotencyKey::parse(&key).map_err(|e| invalid("request_key", e))?,
        outcome: OUTCOMES
            .into_iter()
            .find(|o| outcome_name(*o) == outcome)
            .ok_or_else(|| invalid("outcome", &outcome))?,
    })
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
        .bind(id_bytes(record.id.as_u128()))
        .bind(record.at.as_millis())
        .bind(record.actor.0)
        .bind(role_name(record.actor_role))
        .bind(action_name(record.action))
        .bind(record.target.as_str())
        .bind(record.reason.as_str())
        .bind(record.request_key.as_str())
        .bind(outcome_name(record.outcome))
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
        match first {
            Some(row) => Ok(Appended::Duplicate(id_column(&row)?)),
            None => Err(AuditLogError::Unavailable {
                reason: format!("audit key {} neither inserted nor found", record.request_key),
            }),
        }
    }

    async fn list(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>, AuditLogError> {
        // Fixed SQL fragments per filter field and bound values only, so each combination can use its index.
        let mut query: QueryBuilder<'_, Postgres> = QueryBuilder::new(format!("SELECT {COLUMNS} FROM audit_log"));
        let mut glue = " WHERE ";
        if let Some(actor) = filter.actor {
            query.push(glue).push("actor = ").push_bind(actor.0);
            glue = " AND ";
        }
        if let Some(action) = filter.action {
            query.push(glue).push("action = ").push_bind(action_name(action));
            glue = " AND ";
        }
        if let Some(before) = filter.before {
            query.push(glue).push("at_ms < ").push_bind(before.as_millis());
        }
        query.push(" ORDER BY at_ms DESC, id DESC LIMIT ").push_bind(i64::from(filter.effective_limit()));
        let rows = query.build().fetch_all(&self.pool).await.map_err(unavailable)?;
        rows.iter().map(|r| record_from_row(r).map_err(AuditLogError::from)).collect()
    }
}
