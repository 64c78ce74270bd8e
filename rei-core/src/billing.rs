//! The billing service: the money side of the engine, using only ports.
//!
//! quote → confirm (price locked, caps checked, hold placed) → capture on success / release on failure;
//! top-ups from payment notifications, refunds, admin adjustments, balances, the reaper and `verify`.
//! Every money move derives its idempotency key from something stable (a payment id, a quote id, a job id,
//! an admin request id), so a retried call never moves money twice.

mod admin;
mod quotes;
mod service;

pub(crate) use admin::Auditor;
pub use admin::{AdminError, AdminRequest, AdminService, AuditedError};
pub use quotes::{QuoteRecord, QuoteStore};
pub use service::{BillingConfig, BillingError, BillingService, Confirmation, ReapReport};
