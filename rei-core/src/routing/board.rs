//! The provider board: what the workers' routers last saw of each provider (breaker, score, latency, recent
//! successes), shared through the store so that the operator console shows it, and the models an operator
//! switched off, which every worker reads back and stops offering.

use async_trait::async_trait;
use rust_decimal::Decimal;

use crate::ids::ProviderId;
use crate::time::Timestamp;

use super::BreakerState;

/// The longest worker name a status keeps, in bytes.
pub const REPORTER_LEN_MAX: usize = 128;

/// A breaker's state as the board keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerView {
    /// Calls go through.
    Closed,
    /// Calls are refused until `until`.
    Open {
        /// When the breaker lets a probe through.
        until: Timestamp,
    },
    /// A few probes go through; their outcome closes or reopens it.
    HalfOpen,
}

impl BreakerView {
    /// The stored name: `closed`, `open`, `half_open`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            BreakerView::Closed => "closed",
            BreakerView::Open { .. } => "open",
            BreakerView::HalfOpen => "half_open",
        }
    }

    /// The view of a router's breaker state.
    #[must_use]
    pub fn of(state: BreakerState) -> BreakerView {
        match state {
            BreakerState::Closed => BreakerView::Closed,
            BreakerState::Open { until } => BreakerView::Open { until },
            BreakerState::HalfOpen { .. } => BreakerView::HalfOpen,
        }
    }
}

/// A provider's health as a worker's router last saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderStatus {
    /// The provider.
    pub provider: ProviderId,
    /// Its breaker.
    pub breaker: BreakerView,
    /// Its best offer's routing score, when the router ranked it.
    pub score: Option<Decimal>,
    /// Its latency's moving average, in milliseconds, once it answered.
    pub latency_ewma_ms: Option<u64>,
    /// Successes in the router's recent window.
    pub successes: u32,
    /// Outcomes in the router's recent window (`successes <= outcomes`).
    pub outcomes: u32,
    /// The worker that reported it.
    pub reported_by: String,
    /// When.
    pub at: Timestamp,
}

/// A model an operator switched on or off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSwitch {
    /// The provider.
    pub provider: ProviderId,
    /// The model.
    pub model: String,
    /// `false`: no worker offers it to new jobs.
    pub enabled: bool,
    /// When it was switched.
    pub at: Timestamp,
}

/// Why the board failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BoardError {
    /// A value the board cannot keep.
    #[error("invalid: {0}")]
    Invalid(String),
    /// The store failed.
    #[error("the provider board is unavailable: {0}")]
    Unavailable(String),
}

/// The provider board's store.
#[async_trait]
pub trait ProviderBoard: Send + Sync {
    /// Writes `statuses`, each replacing its provider's (the last writer wins: each worker reports what its own
    /// router saw).
    ///
    /// # Errors
    /// [`BoardError::Invalid`] for a status with more successes than outcomes or a reporter name too long;
    /// [`BoardError::Unavailable`].
    async fn publish(&self, statuses: &[ProviderStatus]) -> Result<(), BoardError>;

    /// Every provider's last status, by provider name.
    ///
    /// # Errors
    /// [`BoardError::Unavailable`].
    async fn statuses(&self) -> Result<Vec<ProviderStatus>, BoardError>;

    /// Switches `model` of `provider` on or off at `now`.
    ///
    /// # Errors
    /// [`BoardError::Invalid`] for an empty model name or one over 128 bytes; [`BoardError::Unavailable`].
    async fn set_model(
        &self,
        provider: &ProviderId,
        model: &str,
        enabled: bool,
        now: Timestamp,
    ) -> Result<(), BoardError>;

    /// Every switch ever set, by provider and model; a model without one is on.
    ///
    /// # Errors
    /// [`BoardError::Unavailable`].
    async fn models(&self) -> Result<Vec<ModelSwitch>, BoardError>;
}

/// Checks a status before it is written.
///
/// # Errors
/// [`BoardError::Invalid`].
pub fn check_status(status: &ProviderStatus) -> Result<(), BoardError> {
    if status.successes > status.outcomes {
        return Err(BoardError::Invalid(format!("{}: more successes than outcomes", status.provider)));
    }
    if status.reported_by.is_empty() || status.reported_by.len() > REPORTER_LEN_MAX {
        return Err(BoardError::Invalid(format!("a reporter's name is 1 to {REPORTER_LEN_MAX} bytes")));
    }
    Ok(())
}

/// Checks a model name before it is switched.
///
/// # Errors
/// [`BoardError::Invalid`].
pub fn check_model(model: &str) -> Result<(), BoardError> {
    if model.is_empty() || model.len() > super::MODEL_LEN_MAX {
        return Err(BoardError::Invalid(format!("a model's name is 1 to {} bytes", super::MODEL_LEN_MAX)));
    }
    Ok(())
}
