//! The one retry and split policy of the database ledgers: what a writer does after a batch failed.
//!
//! A failure that may pass (a serialization failure, a lock, a lost connection, a busy database) is retried
//! a bounded number of times with a doubling wait. After that, or for any other failure, a batch of several
//! commands is applied command by command, so that a command whose rows the database refuses fails alone; a
//! server that cannot be reached fails the batch whole, since splitting it cannot help.

use std::time::Duration;

/// The longest wait between two tries.
const WAIT_MAX: Duration = Duration::from_millis(250);

/// What a failed batch's failure is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Failure {
    /// Running the same batch again may succeed.
    pub(crate) retryable: bool,
    /// The database cannot be reached (or is held by another process): nothing can apply now.
    pub(crate) unreachable: bool,
}

/// What to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// Wait this long, then run the batch again.
    Retry(Duration),
    /// Apply each command on its own.
    Split,
    /// Fail every command of the batch with this failure.
    Fail,
}

/// The policy: after the `attempt`-th retry (0 for the first run) of a batch of `len` commands failed.
pub(crate) fn after_failure(
    failure: Failure,
    attempt: u32,
    retries_max: u32,
    len: usize,
    wait_first: Duration,
) -> Next {
    if failure.retryable && attempt < retries_max {
        let wait = wait_first.saturating_mul(1 << attempt.min(16)).min(WAIT_MAX);
        return Next::Retry(wait);
    }
    if len > 1 && !failure.unreachable { Next::Split } else { Next::Fail }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_are_bounded_and_only_a_reachable_batch_splits() {
        // Proves a passing failure is retried with doubling, bounded waits, then a batch splits unless the
        // database is unreachable, and a single command fails.
        let passing = Failure { retryable: true, unreachable: false };
        let ms = Duration::from_millis;
        assert_eq!(after_failure(passing, 0, 3, 5, ms(2)), Next::Retry(ms(2)));
        assert_eq!(after_failure(passing, 2, 3, 5, ms(2)), Next::Retry(ms(8)));
        assert_eq!(after_failure(passing, 9, 30, 5, ms(2)), Next::Retry(WAIT_MAX));
        assert_eq!(after_failure(passing, 3, 3, 5, ms(2)), Next::Split);
        assert_eq!(after_failure(passing, 3, 3, 1, ms(2)), Next::Fail);
        let down = Failure { retryable: true, unreachable: true };
        assert_eq!(after_failure(down, 3, 3, 5, ms(2)), Next::Fail);
        let refused = Failure { retryable: false, unreachable: false };
        assert_eq!(after_failure(refused, 0, 3, 5, ms(2)), Next::Split);
        assert_eq!(after_failure(refused, 0, 3, 1, ms(2)), Next::Fail);
    }
}
