//! Routing: which provider runs a job, and in which order the others are tried when it fails.
//!
//! - [`Catalogue`]: the [`Offer`]s (provider, model, [`Capability`], unit cost, quality), validated once.
//! - [`ProviderStats`]: live health per provider, a latency EWMA and the success rate over a bounded window.
//! - [`Breaker`]: a circuit breaker per provider (closed / open until a time / half-open with limited probes).
//! - [`Router`]: holds all three; [`Router::rank`] scores the offers whose breaker admits calls with
//!   [`Weights`] and returns them best first; [`Router::failover_plan`] checks each fallback's price against
//!   the money held for the job.
//!
//! Everything here is pure: time only arrives as [`crate::time::Timestamp`] arguments, so tests drive the
//! clock by hand. The [`Router`] is a plain struct with `&mut` methods; an embedding that shares it between
//! workers wraps it in a mutex.

mod board;
mod breaker;
mod catalogue;
mod router;
mod stats;

pub use board::{
    BoardError, BreakerView, ModelSwitch, ProviderBoard, ProviderStatus, REPORTER_LEN_MAX, check_model, check_status,
};
pub use breaker::{Breaker, BreakerConfig, BreakerConfigError, BreakerState, OPEN_FOR_MAX, PROBES_MAX, Permit, Trip};
pub use catalogue::{Capability, Catalogue, CatalogueError, MODEL_LEN_MAX, OFFERS_MAX, Offer, OfferError};
pub use router::{
    Candidate, Cover, FailoverPlan, Outcome, PlanStep, Router, RouterConfig, RouterConfigError, RouterError,
    SkipReason, Skipped, Spread, Weights, WeightsError, plan_failover,
};
pub use stats::{LATENCY_MS_MAX, ProviderStats, StatsConfig, StatsConfigError, WINDOW_LEN_MAX};
