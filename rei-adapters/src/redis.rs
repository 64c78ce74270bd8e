//! Redis adapters: the distributed job queue ([`RedisJobQueue`]) and the shared rate limiter
//! ([`RedisRateLimiter`]).
//!
//! Every step that reads and writes more than one key is one Lua script, run with EVALSHA (the script is
//! loaded on NOSCRIPT), so that each step is atomic whatever the number of processes. Time always comes from
//! the callers' `now` arguments, never from the Redis server's clock; the only use of the server's clock is
//! the expiry of rate-limit keys, which is a memory bound and never changes a decision.
//!
//! Each adapter lives under a namespace, so that several queues (or test runs) share one server. The keys of
//! one namespace carry one hash tag (`{namespace}`), so that they would stay in one slot of a cluster.

mod queue;
mod rate;

use std::time::Duration;

pub use ::redis::aio::ConnectionManager;
pub use queue::{CAPACITY_MAX, RedisJobQueue, RedisQueueLimits};
pub use rate::RedisRateLimiter;

/// The longest namespace, in bytes.
pub const NAMESPACE_LEN_MAX: usize = 64;

/// How many times a connection manager tries to reconnect before a call fails.
const RECONNECT_ATTEMPTS_MAX: usize = 3;

/// The longest wait between two reconnection attempts.
const RECONNECT_DELAY_MAX: Duration = Duration::from_secs(2);

/// Why a Redis adapter could not be set up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedisSetupError {
    /// The namespace is empty, too long, or has characters outside `A-Za-z0-9 _ - : .`.
    #[error("namespace must be 1 to {NAMESPACE_LEN_MAX} characters of A-Za-z0-9 _ - : .")]
    Namespace,
    /// A queue limit is above [`CAPACITY_MAX`].
    #[error("{what} {value} is above {CAPACITY_MAX}")]
    Limit {
        /// Which limit.
        what: &'static str,
        /// The refused value.
        value: usize,
    },
    /// The URL is malformed or the server could not be reached in time.
    #[error("cannot connect to redis: {reason}")]
    Connect {
        /// What the driver said.
        reason: String,
    },
}

/// Connects to the server at `url` (`redis://host:port/db`), waiting at most `timeout` for the connection and
/// for each response. The manager reconnects by itself, a bounded number of times, after a broken connection;
/// it is cheap to clone and every clone shares the one multiplexed connection.
///
/// # Errors
/// [`RedisSetupError::Connect`] when the URL is malformed or the server cannot be reached in time.
pub async fn connect(url: &str, timeout: Duration) -> Result<ConnectionManager, RedisSetupError> {
    let connect_error = |e: ::redis::RedisError| RedisSetupError::Connect { reason: e.to_string() };
    let client = ::redis::Client::open(url).map_err(connect_error)?;
    let config = ::redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout))
        .set_number_of_retries(RECONNECT_ATTEMPTS_MAX)
        .set_max_delay(RECONNECT_DELAY_MAX);
    ConnectionManager::new_with_config(client, config).await.map_err(connect_error)
}

/// The key prefix of `namespace` under `kind` (`rei:q:{name}:`), once the namespace is checked.
fn prefix(kind: &str, namespace: &str) -> Result<String, RedisSetupError> {
    let ok = !namespace.is_empty()
        && namespace.len() <= NAMESPACE_LEN_MAX
        && namespace.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b':' | b'.'));
    if ok { Ok(format!("rei:{kind}:{{{namespace}}}:")) } else { Err(RedisSetupError::Namespace) }
}

/// What went wrong inside an adapter call, before it is mapped into the port's error.
#[derive(Debug, thiserror::Error)]
enum CallError {
    /// The driver or the server failed (a script error included).
    #[error("redis: {0}")]
    Redis(#[from] ::redis::RedisError),
    /// The server answered something these adapters never write.
    #[error("unexpected reply: {0}")]
    Corrupt(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_are_checked_and_hash_tagged() {
        // Proves a namespace becomes one hash-tagged prefix and odd names are refused.
        assert_eq!(prefix("q", "bot-1").as_deref(), Ok("rei:q:{bot-1}:"));
        assert_eq!(prefix("q", ""), Err(RedisSetupError::Namespace));
        assert_eq!(prefix("q", "a{b}"), Err(RedisSetupError::Namespace));
        assert_eq!(prefix("q", &"a".repeat(NAMESPACE_LEN_MAX + 1)), Err(RedisSetupError::Namespace));
    }
}
