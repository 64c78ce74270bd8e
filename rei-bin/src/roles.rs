//! The binary's long-running roles.

pub(crate) mod gc;
