//! Bans and the audit log of admin actions.

use async_trait::async_trait;

use super::roles::{Permission, Role};
use crate::ids::{AuditId, IdempotencyKey, UserId};
use crate::time::Timestamp;

/// Why a text is not a [`Reason`] or an [`AuditTarget`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    /// Empty or only whitespace.
    #[error("text must not be blank")]
    Blank,
    /// More characters than allowed.
    #[error("text must be at most {max} characters")]
    TooLong {
        /// The longest accepted length, in characters.
        max: usize,
    },
    /// A control character (newline, escape, NUL), which could forge lines in logs and terminals.
    #[error("text must not contain control characters")]
    ControlCharacter,
}

/// Checks 1 to `max` characters, not blank, no control characters.
fn bounded_text(text: &str, max: usize) -> Result<String, TextError> {
    // A char is at most 4 bytes, so the byte test refuses huge inputs before counting anything.
    if text.len() > max * 4 || text.chars().count() > max {
        return Err(TextError::TooLong { max });
    }
    if text.trim().is_empty() {
        return Err(TextError::Blank);
    }
    if text.chars().any(char::is_control) {
        return Err(TextError::ControlCharacter);
    }
    Ok(text.to_owned())
}

/// A bounded, printable text newtype: 1 to `$max` characters, not blank, no control characters.
macro_rules! bounded_text_type {
    ($(#[$doc:meta])* $name:ident, $max:expr) => {
        $(#[$doc])*
        ///
        /// Invariant: 1 to `LEN_MAX` characters, not blank, no control characters.
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub struct $name(String);

        impl $name {
            /// The longest accepted length, in characters.
            pub const LEN_MAX: usize = $max;

            /// Parses the text.
            ///
            /// # Errors
            /// [`TextError`] for blank or overlong text or control characters.
            pub fn parse(text: &str) -> Result<$name, TextError> {
                bounded_text(text, Self::LEN_MAX).map($name)
            }

            /// The text.
            #[must_use]
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
    };
}

bounded_text_type!(
    /// Why an admin did something, in their words.
    Reason,
    500
);
bounded_text_type!(
    /// What an admin action was done to, e.g. `user:42` or `job:<id>`.
    AuditTarget,
    200
);

/// A user barred from the bot, for a while or for good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ban {
    /// Who is banned.
    pub user: UserId,
    /// Why.
    pub reason: Reason,
    /// The admin who banned them.
    pub by: UserId,
    /// When the ban was made.
    pub at: Timestamp,
    /// When it ends (exclusive); `None` for a permanent ban.
    pub until: Option<Timestamp>,
}

impl Ban {
    /// Whether the ban bars the user at `now`: until `until`, or for ever. It applies from the moment it
    /// exists, even if `now` is before `at`, so that clock skew between processes never lets a banned user in.
    #[must_use]
    pub fn is_active(&self, now: Timestamp) -> bool {
        self.until.is_none_or(|until| now < until)
    }
}

/// The kind of an audited admin action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuditAction {
    /// A balance adjusted by hand.
    Adjust,
    /// A refund to the wallet or the card.
    Refund,
    /// A job cancelled by an admin.
    CancelJob,
    /// A user banned.
    Ban,
    /// A ban lifted.
    Unban,
    /// A role granted or revoked.
    RoleChange,
    /// A job given another try by an admin: a dead letter put back in the queue, or an unknown outcome found
    /// not done.
    RetryJob,
    /// A model switched on or off for every worker.
    SetModel,
}

impl AuditAction {
    /// The permission the actor needs for this action.
    #[must_use]
    pub fn permission(self) -> Permission {
        match self {
            AuditAction::Adjust => Permission::AdjustBalance,
            AuditAction::Refund => Permission::Refund,
            // Switching a model off stops work users asked for, as cancelling their jobs does.
            AuditAction::CancelJob | AuditAction::RetryJob | AuditAction::SetModel => Permission::CancelAnyJob,
            AuditAction::Ban | AuditAction::Unban => Permission::BanUser,
            AuditAction::RoleChange => Permission::ManageRoles,
        }
    }
}

/// How an audited action ended. Refusals are audited too: an attempt is worth knowing about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuditOutcome {
    /// Done.
    Done,
    /// Refused by the role table.
    Forbidden,
    /// Tried and failed (insufficient funds, unknown target, store down).
    Failed,
}

/// One admin action, as written to the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// This record.
    pub id: AuditId,
    /// When the action happened.
    pub at: Timestamp,
    /// Who did it.
    pub actor: UserId,
    /// The actor's role at that moment.
    pub actor_role: Role,
    /// What was done.
    pub action: AuditAction,
    /// To what.
    pub target: AuditTarget,
    /// Why, in the actor's words.
    pub reason: Reason,
    /// The admin request's idempotency key: one request is audited once, however often it is retried.
    pub request_key: IdempotencyKey,
    /// How it ended.
    pub outcome: AuditOutcome,
}

/// What [`AuditLog::list`] returns. Newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditFilter {
    /// Only this actor's records.
    pub actor: Option<UserId>,
    /// Only this action.
    pub action: Option<AuditAction>,
    /// Only records strictly before this time (the `at` of the last record of the previous page).
    pub before: Option<Timestamp>,
    /// At most this many records, see [`AuditFilter::effective_limit`].
    pub limit: u32,
}

impl AuditFilter {
    /// The most records one call returns, whatever `limit` says.
    pub const LIMIT_MAX: u32 = 1_000;

    /// The newest `limit` records of everyone.
    #[must_use]
    pub fn latest(limit: u32) -> AuditFilter {
        AuditFilter { actor: None, action: None, before: None, limit }
    }

    /// `limit` clamped to `1..=LIMIT_MAX`, so that no caller can ask for an unbounded read.
    #[must_use]
    pub fn effective_limit(&self) -> u32 {
        self.limit.clamp(1, Self::LIMIT_MAX)
    }

    /// Whether `record` passes the actor, action and time filters (the limit aside).
    #[must_use]
    pub fn matches(&self, record: &AuditRecord) -> bool {
        self.actor.is_none_or(|a| a == record.actor)
            && self.action.is_none_or(|a| a == record.action)
            && self.before.is_none_or(|b| record.at < b)
    }
}

/// What [`AuditLog::append`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// A new row, with this id.
    New(AuditId),
    /// The request key was already audited: nothing was added; the first record's id.
    Duplicate(AuditId),
}

/// Why the audit log could not be read or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuditLogError {
    /// The store is unreachable. An admin action whose audit record cannot be written MUST NOT be reported
    /// as done.
    #[error("audit log unavailable: {reason}")]
    Unavailable {
        /// What went wrong, for logs.
        reason: String,
    },
}

/// The append-only log of admin actions.
#[async_trait]
pub trait AuditLog: Send + Sync {
    /// Writes `record`.
    ///
    /// Contract:
    /// - On `Ok` the record MUST be durable.
    /// - Idempotent on `request_key`: when a record with the same key exists, it MUST NOT add a second row
    ///   and MUST return [`Appended::Duplicate`] with the first record's id, even if other fields differ (the
    ///   first record wins).
    /// - Append-only: it MUST NOT update or delete any row, ever.
    ///
    /// # Errors
    /// [`AuditLogError::Unavailable`] when the store cannot be reached; nothing was written.
    async fn append(&self, record: AuditRecord) -> Result<Appended, AuditLogError>;

    /// Reads records that pass `filter`.
    ///
    /// Contract: it MUST return only records for which [`AuditFilter::matches`] holds, newest first (by `at`,
    /// then by id, both descending), at most [`AuditFilter::effective_limit`] of them.
    ///
    /// # Errors
    /// [`AuditLogError::Unavailable`] when the store cannot be reached.
    async fn list(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>, AuditLogError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_bounded_and_printable() {
        // Proves reasons take 1 to 500 printable characters (any script) and refuse blanks and control codes.
        assert!(Reason::parse("списание по ошибке оператора").is_ok());
        assert!(Reason::parse(&"я".repeat(500)).is_ok());
        assert_eq!(Reason::parse(&"я".repeat(501)), Err(TextError::TooLong { max: 500 }));
        assert_eq!(Reason::parse(""), Err(TextError::Blank));
        assert_eq!(Reason::parse("   "), Err(TextError::Blank));
        assert_eq!(Reason::parse("ok\nFAKE LOG LINE"), Err(TextError::ControlCharacter));
        assert_eq!(AuditTarget::parse(&"x".repeat(201)), Err(TextError::TooLong { max: 200 }));
    }

    #[test]
    fn bans_end_at_until_and_permanent_ones_never() {
        // Proves a timed ban is active strictly before `until`, and a permanent one always.
        let reason = Reason::parse("spam").expect("valid");
        let ban = Ban {
            user: UserId(1),
            reason,
            by: UserId(2),
            at: Timestamp::from_millis(1_000),
            until: Some(Timestamp::from_millis(5_000)),
        };
        assert!(ban.is_active(Timestamp::from_millis(500)));
        assert!(ban.is_active(Timestamp::from_millis(4_999)));
        assert!(!ban.is_active(Timestamp::from_millis(5_000)));
        let forever = Ban { until: None, ..ban };
        assert!(forever.is_active(Timestamp::from_millis(i64::MAX)));
    }

    #[test]
    fn actions_name_the_permission_they_need() {
        // Proves only owners may change roles while admins may lift bans.
        assert!(!Role::Admin.permits(AuditAction::RoleChange.permission()));
        assert!(Role::Admin.permits(AuditAction::Unban.permission()));
    }

    #[test]
    fn filter_limit_is_clamped_and_fields_filter() {
        // Proves no caller can ask for zero or unbounded rows, and each set field narrows the match.
        assert_eq!(AuditFilter::latest(0).effective_limit(), 1);
        assert_eq!(AuditFilter::latest(u32::MAX).effective_limit(), AuditFilter::LIMIT_MAX);
        let record = AuditRecord {
            id: AuditId::from(1),
            at: Timestamp::from_millis(10),
            actor: UserId(7),
            actor_role: Role::Admin,
            action: AuditAction::Refund,
            target: AuditTarget::parse("job:1").expect("valid"),
            reason: Reason::parse("provider failed").expect("valid"),
            request_key: IdempotencyKey::parse("refund:1").expect("valid"),
            outcome: AuditOutcome::Done,
        };
        let f = AuditFilter { actor: Some(UserId(7)), action: Some(AuditAction::Refund), ..AuditFilter::latest(10) };
        assert!(f.matches(&record));
        assert!(!AuditFilter { before: Some(Timestamp::from_millis(10)), ..f.clone() }.matches(&record));
        assert!(!AuditFilter { actor: Some(UserId(8)), ..f }.matches(&record));
    }
}
