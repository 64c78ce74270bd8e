//! The [`PaymentGateway`] port: money coming in from a payment provider (YooKassa), and card refunds going out.
//!
//! A gateway's word is believed only when REI asked for it: a notice about a payment is a hint, and the payment
//! is fetched again ([`PaymentGateway::payment`]) before anything is credited.

use std::collections::BTreeMap;

use async_trait::async_trait;

use crate::ids::{IdempotencyKey, PaymentId};
use crate::money::Money;

/// Most metadata entries a payment carries (YooKassa allows 16).
pub const METADATA_MAX: usize = 16;

/// A 54-FZ receipt line for the one item a top-up sells, as the shop's fiscal settings require.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Receipt {
    /// The buyer's e-mail (one of e-mail or phone is required).
    pub customer_email: Option<String>,
    /// The buyer's phone, `+7…` (one of e-mail or phone is required).
    pub customer_phone: Option<String>,
    /// What is sold, 1 to 128 characters ("Пополнение баланса").
    pub item_description: String,
    /// The VAT code the shop's register uses.
    pub vat_code: u8,
    /// `full_payment`, `full_prepayment`, …
    pub payment_mode: String,
    /// `service`, `commodity`, …
    pub payment_subject: String,
    /// The shop's tax system code, when its register needs one.
    pub tax_system_code: Option<u8>,
}

/// A payment to create: what the user pays and where they come back to.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct PaymentRequest {
    /// In roubles.
    pub amount: Money,
    /// Shown to the payer, at most 128 characters.
    pub description: String,
    /// Where the payer is sent after paying.
    pub return_url: String,
    /// Our references (user id, top-up id), at most [`METADATA_MAX`] entries; read back from the payment.
    pub metadata: BTreeMap<String, String>,
    /// The fiscal receipt, when the shop issues them.
    pub receipt: Option<Receipt>,
}

/// Where a payment is.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum PaymentStatus {
    /// Created; the payer has not paid yet.
    Pending,
    /// Paid and held by the gateway, waiting for a capture (two-stage payments only).
    WaitingForCapture,
    /// Paid: final.
    Succeeded,
    /// Not paid and never will be: final.
    Canceled,
}

/// A payment as the gateway reports it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Payment {
    /// The gateway's id: the key a top-up is credited under.
    pub id: PaymentId,
    /// Its status.
    pub status: PaymentStatus,
    /// The amount.
    pub amount: Money,
    /// Its currency (`RUB`).
    pub currency: String,
    /// Where to send the payer, while it is pending.
    pub confirmation_url: Option<String>,
    /// Our references, as given at creation.
    pub metadata: BTreeMap<String, String>,
    /// A payment of the gateway's test mode.
    pub test: bool,
    /// Why it was cancelled (`expired_on_confirm`, `insufficient_funds`, …).
    pub cancellation_reason: Option<String>,
}

/// A card refund to create.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct RefundRequest {
    /// The paid payment to refund (in full or in part).
    pub payment: PaymentId,
    /// How much.
    pub amount: Money,
    /// Why, shown to the payer.
    pub description: Option<String>,
}

/// Where a refund is.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum RefundStatus {
    /// Accepted, not yet done.
    Pending,
    /// Done: final.
    Succeeded,
    /// Refused: final.
    Canceled,
}

/// A refund as the gateway reports it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Refund {
    /// The gateway's id.
    pub id: String,
    /// The payment refunded.
    pub payment: PaymentId,
    /// Its status.
    pub status: RefundStatus,
    /// How much.
    pub amount: Money,
}

/// Why a gateway call failed.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum GatewayError {
    /// The gateway refused the request (bad parameters, a reused idempotence key, not allowed): repeating it will
    /// not help.
    #[error("the gateway refused: {reason}")]
    Rejected {
        /// What it said.
        reason: String,
    },
    /// The shop's credentials were refused: a configuration problem.
    #[error("the gateway refused the shop's credentials: {reason}")]
    Unauthorized {
        /// What it said.
        reason: String,
    },
    /// No such payment or refund.
    #[error("not found at the gateway")]
    NotFound,
    /// The gateway could not be reached or did not decide in time (5xx after the retries, 429, a timeout): the
    /// outcome is unknown; repeat with the same key.
    #[error("the gateway is unavailable: {reason}")]
    Unavailable {
        /// What was seen.
        reason: String,
    },
    /// The answer could not be understood.
    #[error("unusable answer from the gateway: {reason}")]
    Garbage {
        /// What was wrong.
        reason: String,
    },
}

/// A payment provider.
///
/// Contract: a create with a key already used MUST return the first outcome (the gateway's idempotence); reads
/// MUST return the gateway's current word.
#[async_trait]
pub trait PaymentGateway: Send + Sync {
    /// Creates a payment under `key`.
    ///
    /// # Errors
    /// [`GatewayError`].
    async fn create_payment(&self, key: &IdempotencyKey, request: &PaymentRequest) -> Result<Payment, GatewayError>;

    /// The payment as the gateway has it now.
    ///
    /// # Errors
    /// [`GatewayError::NotFound`] and the others.
    async fn payment(&self, id: &PaymentId) -> Result<Payment, GatewayError>;

    /// Creates a refund under `key`.
    ///
    /// # Errors
    /// [`GatewayError`].
    async fn create_refund(&self, key: &IdempotencyKey, request: &RefundRequest) -> Result<Refund, GatewayError>;

    /// The refund as the gateway has it now.
    ///
    /// # Errors
    /// [`GatewayError::NotFound`] and the others.
    async fn refund(&self, id: &str) -> Result<Refund, GatewayError>;
}
