//! REI: the billing and routing engine for AI-generation chat bots.
//!
//! This facade re-exports [`core`] (the pure domain, its ports and application services) and [`adapters`]
//! (the implementations of those ports). See `README.md` for embedding and `ARCHITECTURE.md` for the map.

pub use rei_adapters as adapters;
pub use rei_core as core;
