//! The `audit_log` row of either engine: columns, stored names, decoding, parameters, the list query and error
//! mapping.

use rei_core::guards::{
    Appended, AuditAction, AuditFilter, AuditLogError, AuditOutcome, AuditRecord, AuditTarget, Reason, Role,
};
use rei_core::ids::{AuditId, IdempotencyKey, UserId};
use sqlx::{Database, Encode, QueryBuilder, Type};

use super::fields::{Fields, RowError, SqlRow};
use super::values::Value;

const TABLE: &str = "audit_log";

/// The columns of `audit_log`, in the order [`record_values`] lists them.
const COLUMNS: &str = "id, at_ms, actor, actor_role, action, target, reason, request_key, outcome";

/// A corrupt row is reported as unavailable: the port has no other failure, and the message names the column.
impl From<RowError> for AuditLogError {
    fn from(e: RowError) -> AuditLogError {
        AuditLogError::Unavailable { reason: format!("corrupt audit row: {e}") }
    }
}

/// The port's error for a failed statement.
pub(crate) fn unavailable(e: sqlx::Error) -> AuditLogError {
    AuditLogError::Unavailable { reason: e.to_string() }
}

/// Stored names, pinned here because the CHECK constraints of the migrations name these exact words.
const fn role_name(r: Role) -> &'static str {
    match r {
        Role::User => "user",
        Role::Admin => "admin",
        Role::Owner => "owner",
    }
}

const ACTIONS: [AuditAction; 8] = [
    AuditAction::Adjust,
    AuditAction::Refund,
    AuditAction::CancelJob,
    AuditAction::Ban,
    AuditAction::Unban,
    AuditAction::RoleChange,
    AuditAction::RetryJob,
    AuditAction::SetModel,
];

const fn action_name(a: AuditAction) -> &'static str {
    match a {
        AuditAction::Adjust => "adjust",
        AuditAction::Refund => "refund",
        AuditAction::CancelJob => "cancel_job",
        AuditAction::Ban => "ban",
        AuditAction::Unban => "unban",
        AuditAction::RoleChange => "role_change",
        AuditAction::RetryJob => "retry_job",
        AuditAction::SetModel => "set_model",
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

/// The `id` column of a row.
fn audit_id<R: SqlRow>(row: &R) -> Result<AuditId, RowError> {
    Fields::new(TABLE, row).id("id").map(AuditId::from)
}

/// Rebuilds a record from its row, checking every column.
pub(crate) fn record_from_row<R: SqlRow>(row: &R) -> Result<AuditRecord, RowError> {
    let f = Fields::new(TABLE, row);
    Ok(AuditRecord {
        id: audit_id(row)?,
        at: f.time("at_ms")?,
        actor: UserId(f.int("actor")?),
        actor_role: f.named("actor_role", Role::ALL, role_name)?,
        action: f.named("action", ACTIONS, action_name)?,
        target: f.parsed("target", AuditTarget::parse)?,
        reason: f.parsed("reason", Reason::parse)?,
        request_key: f.parsed("request_key", IdempotencyKey::parse)?,
        outcome: f.named("outcome", OUTCOMES, outcome_name)?,
    })
}

/// Every column of `record`, in [`COLUMNS`] order.
pub(crate) fn record_values(record: &AuditRecord) -> [Value<'_>; 9] {
    [
        Value::id(record.id.as_u128()),
        record.at.as_millis().into(),
        record.actor.0.into(),
        role_name(record.actor_role).into(),
        action_name(record.action).into(),
        record.target.as_str().into(),
        record.reason.as_str().into(),
        record.request_key.as_str().into(),
        outcome_name(record.outcome).into(),
    ]
}

/// The outcome of an append of `record` whose insert added nothing, from the row its request key found
/// (`None`: none, which only a broken store explains).
pub(crate) fn duplicate<R: SqlRow>(record: &AuditRecord, first: Option<&R>) -> Result<Appended, AuditLogError> {
    match first {
        Some(row) => Ok(Appended::Duplicate(audit_id(row)?)),
        None => Err(AuditLogError::Unavailable {
            reason: format!("audit key {} neither inserted nor found", record.request_key),
        }),
    }
}

/// The query of [`rei_core::guards::AuditLog::list`] for `filter`, newest first. Fixed SQL fragments per filter
/// field and bound values only, so each combination can use its index.
pub(crate) fn list_query<'a, DB>(filter: &AuditFilter) -> QueryBuilder<'a, DB>
where
    DB: Database,
    DB::Arguments<'a>: Default,
    i64: Encode<'a, DB> + Type<DB>,
    &'a str: Encode<'a, DB> + Type<DB>,
{
    let mut query = QueryBuilder::new(format!("SELECT {COLUMNS} FROM audit_log"));
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
    query
}
