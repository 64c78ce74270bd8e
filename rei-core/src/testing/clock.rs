//! A manual clock and a sequential id generator, so tests control time and ids.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use crate::ids::IdGen;
use crate::time::{Clock, Timestamp};

/// A clock that moves only when told.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    /// A clock showing `start`.
    #[must_use]
    pub fn new(start: Timestamp) -> ManualClock {
        ManualClock(AtomicI64::new(start.as_millis()))
    }

    /// Moves the clock forward by `d`.
    pub fn advance(&self, d: Duration) {
        let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        self.0.fetch_add(ms, Ordering::SeqCst);
    }

    /// Sets the clock; it never goes backwards.
    pub fn set(&self, t: Timestamp) {
        self.0.fetch_max(t.as_millis(), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_millis(self.0.load(Ordering::SeqCst))
    }
}

/// Ids 1, 2, 3, … (offset by a prefix in the high bits so two generators can be told apart).
#[derive(Debug, Default)]
pub struct SeqIds {
    prefix: u64,
    next: AtomicU64,
}

impl SeqIds {
    /// A generator whose ids carry `prefix` in their high 64 bits.
    #[must_use]
    pub fn new(prefix: u64) -> SeqIds {
        SeqIds { prefix, next: AtomicU64::new(1) }
    }
}

impl IdGen for SeqIds {
    fn next_u128(&self) -> u128 {
        let n = self.next.fetch_add(1, Ordering::SeqCst);
        (u128::from(self.prefix) << 64) | u128::from(n)
    }
}
