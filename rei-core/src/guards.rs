//! Guards: who may do what, and how often.
//!
//! - Rate limits ([`RateLimitPolicy`]): per-key rate and spend limits as a pure GCRA state machine ([`Gcra::check`])
//!   behind the [`RateLimiter`] port, so that one in-process map or one Redis script decides identically.
//! - Roles: [`Role`] and [`Permission`] in a deny-by-default table, checked by [`authorize`].
//! - Bans ([`Ban`]) and the append-only [`AuditLog`] of every admin action ([`AuditRecord`]).
//!
//! Everything here is pure: time comes in as [`Timestamp`](crate::time::Timestamp) arguments.

mod audit;
mod limiter;
mod rate;
mod roles;

pub use audit::{
    Appended, AuditAction, AuditFilter, AuditLog, AuditLogError, AuditOutcome, AuditRecord, AuditTarget, Ban, Reason,
    TextError,
};
pub use limiter::InProcessRateLimiter;
pub use rate::{
    ApiKeyId, ApiKeyIdError, BURST_MAX, CostOverBurst, Decision, Gcra, LimiterError, PERIOD_MAX, PolicyError,
    RateLimitKey, RateLimitPolicy, RateLimiter, spend_cost,
};
pub use roles::{Forbidden, Permission, Role, authorize};
