//! REI's pure domain: money, the double-entry ledger, pricing, spend caps, usage sessions, routing, jobs,
//! guards and SLOs, the ports they talk through, and the application services that use only those ports.
//!
//! No I/O lives here: time comes from [`time::Clock`], ids from [`ids::IdGen`], storage and dispatch from the
//! ports in each module. Adapters live in `rei-adapters`; in-memory adapters and conformance suites live in
//! `testing` behind the `testing` feature.
#![cfg_attr(not(test), deny(clippy::float_arithmetic))]

pub mod access;
pub mod billing;
pub mod caps;
pub mod chat;
pub mod generation;
pub mod guards;
pub mod ids;
pub mod jobs;
pub mod ledger;
pub mod members;
pub mod money;
pub mod payments;
pub mod pricing;
pub mod reports;
pub mod routing;
pub mod slo;
pub mod stars;
pub mod time;
pub mod topups;
pub mod usage;

#[cfg(feature = "serde")]
mod serde_text;

#[cfg(feature = "testing")]
pub mod testing;
