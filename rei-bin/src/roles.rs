//! The binary's long-running roles.

pub(crate) mod gc;
pub(crate) mod serve;
pub(crate) mod worker;
