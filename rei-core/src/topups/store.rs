//! The [`PaymentStore`] port: one [`PaymentRecord`] per payment REI created, so that a payment whose notice never
//! arrives is still looked at (by the [`Reconciler`](super::Reconciler)) and a user's payments can be listed.
//!
//! A record is bookkeeping around the ledger: the money truth is the ledger's top-up, keyed by the payment id. A
//! record says where the payment stands as far as REI knows and when to ask the gateway again.

use std::time::Duration;

use async_trait::async_trait;

use crate::ids::{PaymentId, UserId};
use crate::money::Money;
use crate::time::Timestamp;

/// The longest top-up id a record keeps, in bytes.
pub const TOPUP_LEN_MAX: usize = 255;

/// The longest confirmation URL a record keeps, in bytes.
pub const CONFIRMATION_URL_LEN_MAX: usize = 2048;

/// The most records one [`PaymentStore::list_for_user`] page holds (a larger limit is cut to it).
pub const LIST_LIMIT_MAX: u32 = 100;

/// The most records one [`PaymentStore::due`], [`PaymentStore::overdue`] or [`PaymentStore::expire_older_than`]
/// call handles (a larger limit is cut to it).
pub const BATCH_LIMIT_MAX: u32 = 1_000;

/// Who took the money.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum PaymentProvider {
    /// YooKassa API v3.
    YooKassa,
    /// Telegram Stars, through the bot.
    Stars,
}

impl PaymentProvider {
    /// Every provider.
    pub const ALL: [PaymentProvider; 2] = [PaymentProvider::YooKassa, PaymentProvider::Stars];

    /// The stable name kept in stores.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            PaymentProvider::YooKassa => "yookassa",
            PaymentProvider::Stars => "stars",
        }
    }

    /// Reads [`PaymentProvider::as_str`] back.
    #[must_use]
    pub fn parse(text: &str) -> Option<PaymentProvider> {
        PaymentProvider::ALL.into_iter().find(|p| p.as_str() == text)
    }
}

/// Where a payment stands, as far as REI knows.
///
/// `Succeeded` and `Canceled` are the gateway's final word and never change. `Expired` means REI stopped asking
/// (the payment stayed pending past the reconciler's `max_age`); it is final for polling, but the gateway's own
/// final word still replaces it (a late notice of a payment made after all), because the record must not
/// contradict the ledger. Refunds are separate operations with their own ids and do not change a payment's
/// record.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum PaymentRecordStatus {
    /// Created; not known to be paid or cancelled yet.
    Pending,
    /// Paid and credited: final.
    Succeeded,
    /// Cancelled at the gateway, nothing credited: final.
    Canceled,
    /// Still pending when REI gave up asking; only `Succeeded` or `Canceled` may follow.
    Expired,
}

impl PaymentRecordStatus {
    /// Every status.
    pub const ALL: [PaymentRecordStatus; 4] = [
        PaymentRecordStatus::Pending,
        PaymentRecordStatus::Succeeded,
        PaymentRecordStatus::Canceled,
        PaymentRecordStatus::Expired,
    ];

    /// The stable name kept in stores.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            PaymentRecordStatus::Pending => "pending",
            PaymentRecordStatus::Succeeded => "succeeded",
            PaymentRecordStatus::Canceled => "canceled",
            PaymentRecordStatus::Expired => "expired",
        }
    }

    /// Reads [`PaymentRecordStatus::as_str`] back.
    #[must_use]
    pub fn parse(text: &str) -> Option<PaymentRecordStatus> {
        PaymentRecordStatus::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// `true` when a record in this status may move to `next`: from `Pending` to any final status, from
    /// `Expired` to the gateway's final word. Every store MUST decide by this rule, atomically.
    #[must_use]
    pub const fn may_become(self, next: FinalStatus) -> bool {
        match self {
            PaymentRecordStatus::Pending => true,
            PaymentRecordStatus::Expired => matches!(next, FinalStatus::Succeeded | FinalStatus::Canceled),
            PaymentRecordStatus::Succeeded | PaymentRecordStatus::Canceled => false,
        }
    }
}

/// A status a record can be marked with ([`PaymentStore::mark`]): every status but `Pending`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum FinalStatus {
    /// Paid and credited.
    Succeeded,
    /// Cancelled at the gateway.
    Canceled,
    /// REI gave up asking.
    Expired,
}

impl From<FinalStatus> for PaymentRecordStatus {
    fn from(s: FinalStatus) -> PaymentRecordStatus {
        match s {
            FinalStatus::Succeeded => PaymentRecordStatus::Succeeded,
            FinalStatus::Canceled => PaymentRecordStatus::Canceled,
            FinalStatus::Expired => PaymentRecordStatus::Expired,
        }
    }
}

/// One payment REI created.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct PaymentRecord {
    /// The gateway's payment id: the key the top-up is credited under.
    pub id: PaymentId,
    /// Who took the money.
    pub provider: PaymentProvider,
    /// Whose balance it tops up.
    pub user: UserId,
    /// How much, as the gateway confirmed at creation.
    pub amount: Money,
    /// The caller's top-up id the payment was created under (at most [`TOPUP_LEN_MAX`] bytes).
    pub topup: String,
    /// Where it stands.
    pub status: PaymentRecordStatus,
    /// When REI created it.
    pub created_at: Timestamp,
    /// When the record last changed.
    pub updated_at: Timestamp,
    /// When the reconciler should ask the gateway next (meaningful while `Pending`).
    pub next_check_at: Timestamp,
    /// How many times the reconciler asked and found it still pending (or could not ask).
    pub checks: u32,
    /// Where the payer pays, while pending (at most [`CONFIRMATION_URL_LEN_MAX`] bytes).
    pub confirmation_url: Option<String>,
}

impl PaymentRecord {
    /// `true` when `other` is the same payment: same id, provider, user, amount and top-up. Times, status,
    /// checks and link may differ (a second creation of one top-up is the same payment, made later).
    #[must_use]
    pub fn same_payment(&self, other: &PaymentRecord) -> bool {
        self.id == other.id
            && self.provider == other.provider
            && self.user == other.user
            && self.amount == other.amount
            && self.topup == other.topup
    }
}

/// Where a page of [`PaymentStore::list_for_user`] ended: the next page starts after this record.
///
/// Its text form ([`PaymentCursor::encode`], `<created ms>:<payment id>`) is what an HTTP API hands out.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct PaymentCursor {
    /// The last record's creation time.
    pub created_at: Timestamp,
    /// The last record's id.
    pub id: PaymentId,
}

/// A cursor text that is not `<created ms>:<payment id>`.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
#[error("not a payment cursor: {0:?}")]
pub struct CursorError(pub String);

impl PaymentCursor {
    /// The cursor after `record`.
    #[must_use]
    pub fn after(record: &PaymentRecord) -> PaymentCursor {
        PaymentCursor { created_at: record.created_at, id: record.id.clone() }
    }

    /// `<created ms>:<payment id>`.
    #[must_use]
    pub fn encode(&self) -> String {
        format!("{}:{}", self.created_at.as_millis(), self.id)
    }

    /// Reads [`PaymentCursor::encode`] back.
    ///
    /// # Errors
    /// [`CursorError`] for any other text.
    pub fn decode(text: &str) -> Result<PaymentCursor, CursorError> {
        let bad = || CursorError(text.chars().take(64).collect());
        let (ms, id) = text.split_once(':').ok_or_else(bad)?;
        let ms = ms.parse::<i64>().map_err(|_| bad())?;
        let id = PaymentId::parse(id).map_err(|_| bad())?;
        Ok(PaymentCursor { created_at: Timestamp::from_millis(ms), id })
    }

    /// `true` when `record` comes after this cursor, newest first (by creation time, then id, both descending).
    #[must_use]
    pub fn precedes(&self, record: &PaymentRecord) -> bool {
        (record.created_at, &record.id) < (self.created_at, &self.id)
    }
}

/// One page of a user's payments, newest first.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct PaymentPage {
    /// The records.
    pub records: Vec<PaymentRecord>,
    /// Where the next page starts; `None` when this page is the last.
    pub next: Option<PaymentCursor>,
}

/// What [`PaymentStore::mark`] did.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Marked {
    /// The record as stored after the call.
    pub record: PaymentRecord,
    /// `true` when this call changed the status; `false` when the record already had it or a final status that
    /// may not change.
    pub changed: bool,
}

/// Why a [`PaymentStore`] call failed.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum PaymentStoreError {
    /// No record has this id.
    #[error("no payment record {id}")]
    NotFound {
        /// The id asked for.
        id: PaymentId,
    },
    /// A different payment (another user, amount, provider or top-up) is stored under this id; nothing changed.
    #[error("payment {id} is recorded with other details")]
    Conflict {
        /// The id.
        id: PaymentId,
    },
    /// The record cannot be stored as it is (a top-up id or link too long, a negative amount).
    #[error("payment record refused: {why}")]
    Invalid {
        /// What is wrong.
        why: String,
    },
    /// The store could not be reached or failed; the call may be retried.
    #[error("payment store unavailable: {reason}")]
    Unavailable {
        /// What the adapter saw.
        reason: String,
    },
}

/// Checks the bounds a record MUST keep before any store writes it.
///
/// # Errors
/// [`PaymentStoreError::Invalid`].
pub fn check_record(record: &PaymentRecord) -> Result<(), PaymentStoreError> {
    let invalid = |why: &str| Err(PaymentStoreError::Invalid { why: format!("payment {}: {why}", record.id) });
    if record.topup.is_empty() || record.topup.len() > TOPUP_LEN_MAX {
        return invalid("the top-up id must be 1 to 255 bytes");
    }
    if record.confirmation_url.as_ref().is_some_and(|u| u.is_empty() || u.len() > CONFIRMATION_URL_LEN_MAX) {
        return invalid("the confirmation url must be 1 to 2048 bytes");
    }
    if record.amount.is_negative() {
        return invalid("the amount is negative");
    }
    Ok(())
}

/// A batch or page limit cut to `1..=max`.
#[must_use]
pub fn effective_limit(limit: u32, max: u32) -> u32 {
    limit.clamp(1, max)
}

/// Where payment records are kept.
///
/// Contract, for every implementation:
/// - `insert` of a record whose id is new stores it as given; of a record whose id is stored MUST return the
///   stored record unchanged when it is the same payment ([`PaymentRecord::same_payment`]), and
///   [`PaymentStoreError::Conflict`] (changing nothing) when it is not. Two concurrent inserts of one id MUST
///   leave one record.
/// - `mark` MUST change the status only as [`PaymentRecordStatus::may_become`] allows, decided atomically with
///   the write (a `Canceled` racing a `Succeeded` leaves whichever came first, and a final status never goes
///   back); a refused or repeated mark changes nothing and is not an error.
/// - `due` and `overdue` return only `Pending` records, oldest next check first.
/// - `reschedule` MUST change only a `Pending` record; a record that became final meanwhile is returned as it is.
/// - `list_for_user` pages newest first (creation time, then id, both descending), each record exactly once
///   across the pages of one listing.
#[async_trait]
pub trait PaymentStore: Send + Sync {
    /// Stores `record` unless its id is stored; returns the stored record.
    ///
    /// # Errors
    /// [`PaymentStoreError::Conflict`], [`PaymentStoreError::Invalid`], [`PaymentStoreError::Unavailable`].
    async fn insert(&self, record: &PaymentRecord) -> Result<PaymentRecord, PaymentStoreError>;

    /// The record of payment `id`, if any.
    ///
    /// # Errors
    /// [`PaymentStoreError::Unavailable`].
    async fn get(&self, id: &PaymentId) -> Result<Option<PaymentRecord>, PaymentStoreError>;

    /// Marks payment `id` with `status` at `now`, when its current status allows it.
    ///
    /// # Errors
    /// [`PaymentStoreError::NotFound`], [`PaymentStoreError::Unavailable`].
    async fn mark(&self, id: &PaymentId, status: FinalStatus, now: Timestamp) -> Result<Marked, PaymentStoreError>;

    /// Up to `limit` pending records whose next check is at or before `now` and that were created less than
    /// `max_age` before `now`, oldest next check first.
    ///
    /// # Errors
    /// [`PaymentStoreError::Unavailable`].
    async fn due(&self, now: Timestamp, max_age: Duration, limit: u32)
    -> Result<Vec<PaymentRecord>, PaymentStoreError>;

    /// Up to `limit` pending records whose next check is at or before `now` and that were created `max_age` or
    /// more before `now` (the ones due a last look before they expire), oldest next check first.
    ///
    /// # Errors
    /// [`PaymentStoreError::Unavailable`].
    async fn overdue(
        &self,
        now: Timestamp,
        max_age: Duration,
        limit: u32,
    ) -> Result<Vec<PaymentRecord>, PaymentStoreError>;

    /// After a check that left payment `id` pending: adds one to its checks and sets its next check, at `now`.
    /// Returns the stored record.
    ///
    /// # Errors
    /// [`PaymentStoreError::NotFound`], [`PaymentStoreError::Unavailable`].
    async fn reschedule(
        &self,
        id: &PaymentId,
        next_check_at: Timestamp,
        now: Timestamp,
    ) -> Result<PaymentRecord, PaymentStoreError>;

    /// Marks `Expired`, at `now`, up to `limit` pending records created before `cutoff`, without asking the
    /// gateway (the reconciler expires one record at a time after a last look; this is the blunt sweep, for a
    /// gateway taken out of service). Returns how many it marked.
    ///
    /// # Errors
    /// [`PaymentStoreError::Unavailable`].
    async fn expire_older_than(&self, cutoff: Timestamp, now: Timestamp, limit: u32) -> Result<u64, PaymentStoreError>;

    /// One page of `user`'s records, newest first, starting after `cursor` (from the start when `None`), at most
    /// `limit` (cut to `1..=`[`LIST_LIMIT_MAX`]).
    ///
    /// # Errors
    /// [`PaymentStoreError::Unavailable`].
    async fn list_for_user(
        &self,
        user: UserId,
        cursor: Option<&PaymentCursor>,
        limit: u32,
    ) -> Result<PaymentPage, PaymentStoreError>;

    /// One page of every user's records, newest first, with the cursor and limit of
    /// [`PaymentStore::list_for_user`]: what the operator console lists.
    ///
    /// # Errors
    /// [`PaymentStoreError::Unavailable`].
    async fn list_recent(&self, cursor: Option<&PaymentCursor>, limit: u32) -> Result<PaymentPage, PaymentStoreError>;
}
