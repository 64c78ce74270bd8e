//! The system clock and a time-ordered random id generator.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use rei_core::ids::IdGen;
use rei_core::time::{Clock, Timestamp};

/// Wall-clock time, never going backwards within the process (a clock step back holds at the last value).
#[derive(Debug, Default)]
pub struct SystemClock {
    last_ms: AtomicI64,
}

impl SystemClock {
    /// A clock reading the system time.
    #[must_use]
    pub fn new() -> SystemClock {
        SystemClock::default()
    }
}

fn wall_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let now = wall_ms();
        let prev = self.last_ms.fetch_max(now, Ordering::SeqCst);
        Timestamp::from_millis(now.max(prev))
    }
}

/// Ids laid out like UUIDv7: 48 bits of Unix milliseconds, then 80 bits that are unique within the process
/// (a per-process random base plus a counter) and random across processes. Time-ordered, so database indexes
/// stay append-mostly.
#[derive(Debug)]
pub struct TimeOrderedIds {
    base: u64,
    tag: u16,
    counter: AtomicU64,
}

impl TimeOrderedIds {
    /// A generator seeded from the operating system's randomness (through std's hasher keys).
    #[must_use]
    pub fn new() -> TimeOrderedIds {
        let state = RandomState::new();
        let base = state.hash_one(0x5eed_u64);
        let tag = u16::try_from(state.hash_one(0x7a9_u64) & 0xffff).unwrap_or(0);
        TimeOrderedIds { base, tag, counter: AtomicU64::new(0) }
    }
}

impl Default for TimeOrderedIds {
    fn default() -> Self {
        TimeOrderedIds::new()
    }
}

impl IdGen for TimeOrderedIds {
    fn next_u128(&self) -> u128 {
        let ms = u128::from(u64::try_from(wall_ms()).unwrap_or(0) & 0xffff_ffff_ffff);
        let n = self.counter.fetch_add(1, Ordering::Relaxed).wrapping_add(self.base);
        (ms << 80) | (u128::from(self.tag) << 64) | u128::from(n)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn ids_are_unique_and_time_ordered_across_milliseconds() {
        // Proves a generator never repeats and that ids of a later millisecond sort after earlier ones.
        let ids = TimeOrderedIds::new();
        let mut seen = HashSet::new();
        for _ in 0..100_000 {
            assert!(seen.insert(ids.next_u128()), "an id repeated");
        }
        let a = ids.next_u128();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = ids.next_u128();
        assert!(b >> 80 > a >> 80 && b > a, "later ids sort later");
    }

    #[test]
    fn two_generators_do_not_collide() {
        // Proves two processes' generators (two random seeds) give disjoint ids.
        let (x, y) = (TimeOrderedIds::new(), TimeOrderedIds::new());
        let xs: HashSet<u128> = (0..10_000).map(|_| x.next_u128()).collect();
        assert!((0..10_000).all(|_| !xs.contains(&y.next_u128())));
    }

    #[test]
    fn the_clock_never_goes_backwards() {
        // Proves successive readings are monotone.
        let c = SystemClock::new();
        let mut last = c.now();
        for _ in 0..1000 {
            let t = c.now();
            assert!(t >= last);
            last = t;
        }
    }
}
