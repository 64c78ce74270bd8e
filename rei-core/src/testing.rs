//! In-memory adapters of every port, conformance suites that any implementation must pass, and the ledger
//! model test. Behind the `testing` feature; later adapters run the same suites against real servers.

pub mod access;
pub mod assets;
pub mod billing;
pub mod board;
pub mod chat;
pub mod clock;
pub mod generation;
pub mod guards;
pub mod jobs;
pub mod ledger;
pub mod members;
pub mod payments;
pub mod reports;
pub mod usage;
