//! Top-ups: money in through a payment gateway, fail-closed, and the records that keep every payment in view.
//!
//! - [`TopUps`]: create a payment (recorded pending), settle it on a notice or a look (credited once, keyed by
//!   the payment id, then recorded succeeded or cancelled).
//! - [`PaymentStore`]: one [`PaymentRecord`] per payment: its status, when to look next, a user's list.
//! - [`Reconciler`]: looks at pending payments whose notice never came, with backoff, and expires the ones
//!   pending too long after a last look.
//! - [`SourceAllowlist`]: the networks notices may come from.
//! - [`TopUpObserver`]: told of every credit (and replay of one), e.g. to pay a referrer their share.

mod allowlist;
mod observer;
mod reconciler;
mod service;
mod store;

pub use allowlist::{NetworkError, SourceAllowlist};
pub use observer::TopUpObserver;
pub use reconciler::{ReconcileReport, Reconciler, ReconcilerConfig, ReconcilerConfigError};
pub use service::{
    Notice, NoticeError, NoticeEvent, NoticeOutcome, TOPUP_KEY, TopUpPorts, TopUps, TopUpsConfig, USER_KEY,
};
pub use store::{
    BATCH_LIMIT_MAX, CONFIRMATION_URL_LEN_MAX, CursorError, FinalStatus, LIST_LIMIT_MAX, Marked, PaymentCursor,
    PaymentPage, PaymentProvider, PaymentRecord, PaymentRecordStatus, PaymentStore, PaymentStoreError, TOPUP_LEN_MAX,
    check_record, effective_limit,
};
