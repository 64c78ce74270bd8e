//! The append-only, double-entry ledger.
//!
//! Users have two accounts, `available` (spendable) and `held` (reserved for running jobs); the system has
//! `payments`, `revenue`, `promo` and `refunds_out`. Every operation ([`LedgerOp`]) becomes one
//! [`Transaction`] whose postings sum to zero, planned by the pure function [`plan`] from a [`LedgerView`] of
//! the rows it touches. A [`LedgerStore`] applies plans atomically, deduplicates idempotency keys and enforces
//! the balance constraints, so that the rules in `DESIGN.md` hold in every store alike.
//!
//! | operation | postings |
//! |---|---|
//! | top-up | payments −x, available +x |
//! | hold / raise | available −x, held +x |
//! | capture c of a hold h | held −h, revenue +c, available +(h−c) |
//! | release / expire | held −h, available +h |
//! | refund to the wallet | revenue −x, available +x |
//! | refund to the card | available −x, refunds_out +x |
//! | adjust ±x | promo ∓x, available ±x |

mod model;
mod plan;
mod store;
mod verify;
mod working;

pub use model::{
    Account, Applied, Balance, Hold, HoldState, LedgerCommand, LedgerOp, OpKind, PaymentRecord, Posting, Receipt,
    SystemAccount, Transaction,
};
pub use plan::{LedgerError, LedgerView, Plan, plan};
pub use store::{AccountDrift, BATCH_LEN_MAX, HISTORY_PAGE_MAX, HistoryEntry, LedgerStore, StoreError, VerifyReport};
pub use verify::VerifyTally;
pub use working::{CapLoads, Changes, KeyRecord, NewTransaction, WorkingSet};
