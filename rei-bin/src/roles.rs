//! The binary's long-running roles.

pub(crate) mod all;
pub(crate) mod bot;
pub(crate) mod gc;
pub(crate) mod poll;
pub(crate) mod sandbox;
pub(crate) mod serve;
pub(crate) mod worker;
