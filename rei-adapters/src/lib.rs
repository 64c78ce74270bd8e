//! Driven adapters of REI's ports.
