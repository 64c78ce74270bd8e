//! [`SendPacer`]: Telegram's send limits kept by the client, so that a bot is not answered 429 in the first
//! place: about one message a second per chat (short bursts tolerated), about thirty a second in all, and after a
//! 429 nothing at all until its `retry_after` has passed (a 429 freezes every call of the bot).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use rei_core::guards::{Decision, Gcra, RateLimitPolicy};
use rei_core::time::Timestamp;

/// Chats remembered before the ones whose budget has refilled are forgotten.
const CHATS_SWEEP_AT: usize = 100_000;

/// The limits a [`SendPacer`] keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pacing {
    /// Per chat. Default: 1 a second, bursts of 2.
    pub per_chat: RateLimitPolicy,
    /// For all chats together. Default: 30 a second, bursts of 30.
    pub global: RateLimitPolicy,
}

impl Default for Pacing {
    fn default() -> Pacing {
        let policy = |rate, burst| match RateLimitPolicy::new(rate, Duration::from_secs(1), burst) {
            Ok(p) => p,
            Err(e) => panic!("invariant broken: a shipped send limit is invalid: {e}"),
        };
        Pacing { per_chat: policy(1, 2), global: policy(30, 30) }
    }
}

#[derive(Debug, Default)]
struct State {
    global: Option<Timestamp>,
    chats: HashMap<i64, Timestamp>,
    frozen_until: Option<Timestamp>,
}

/// The send budget of one bot in this process (GCRA per chat and in all, the same algorithm as the rate
/// limiter's).
#[derive(Debug, Default)]
pub struct SendPacer {
    pacing: Pacing,
    state: Mutex<State>,
}

impl SendPacer {
    /// A pacer keeping `pacing`.
    #[must_use]
    pub fn new(pacing: Pacing) -> SendPacer {
        SendPacer { pacing, state: Mutex::new(State::default()) }
    }

    /// How long to wait before a call at `now`: zero when it may go now, in which case the sending budget of
    /// `chat` (a send to one chat; `None` for a call that sends nothing, held back only by a freeze) is spent.
    #[must_use]
    pub fn reserve(&self, chat: Option<i64>, now: Timestamp) -> Duration {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(until) = s.frozen_until.filter(|u| *u > now) {
            return until.since(now);
        }
        let Some(chat) = chat else { return Duration::ZERO };
        let per_chat = Gcra::check(&self.pacing.per_chat, s.chats.get(&chat).copied(), now, 1);
        let global = Gcra::check(&self.pacing.global, s.global, now, 1);
        match (per_chat, global) {
            (Ok(Decision::Allow { new_tat: chat_tat }), Ok(Decision::Allow { new_tat: global_tat })) => {
                if s.chats.len() >= CHATS_SWEEP_AT {
                    s.chats.retain(|_, tat| *tat > now);
                }
                s.chats.insert(chat, chat_tat);
                s.global = Some(global_tat);
                Duration::ZERO
            }
            (a, b) => {
                let wait = |d: &Result<Decision, _>| match d {
                    Ok(Decision::Deny { retry_after }) => *retry_after,
                    _ => Duration::ZERO,
                };
                wait(&a).max(wait(&b)).max(Duration::from_millis(1))
            }
        }
    }

    /// Holds every call back until `until` (Telegram answered 429 with a `retry_after`).
    pub fn freeze(&self, until: Timestamp) {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        s.frozen_until = Some(s.frozen_until.map_or(until, |u| u.max(until)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    #[test]
    fn sends_are_paced_per_chat_and_in_all() {
        // Proves the limits: a chat gets its burst of 2 then one a second; other chats are not held back by it
        // until the bot's 30 at once are spent; a call that sends nothing is never paced.
        let pacer = SendPacer::new(Pacing::default());
        assert_eq!(pacer.reserve(Some(1), at(0)), Duration::ZERO);
        assert_eq!(pacer.reserve(Some(1), at(0)), Duration::ZERO);
        assert_eq!(pacer.reserve(Some(1), at(0)), Duration::from_secs(1), "the chat's third send waits a second");
        // Other chats at once, until the bot's budget of about 30 is spent (each stored TAT rounds up to a whole
        // millisecond, which can only make it stricter); then a new chat waits about a thirtieth of a second.
        let mut chat = 2;
        let wait = loop {
            let wait = pacer.reserve(Some(chat), at(0));
            if !wait.is_zero() {
                break wait;
            }
            chat += 1;
        };
        assert!((28..=31).contains(&chat), "{chat} sends went at once");
        assert!(wait <= Duration::from_millis(34), "{wait:?}");
        assert_eq!(pacer.reserve(Some(chat), at(0).plus(wait)), Duration::ZERO);
        assert_eq!(pacer.reserve(Some(1), at(1_100)), Duration::ZERO, "the chat again after its second");
        assert_eq!(pacer.reserve(None, at(0)), Duration::ZERO);
    }

    #[test]
    fn a_429_freezes_every_call_until_its_retry_after() {
        // Proves the freeze: after a 429 with retry_after, every call waits until then, sends or not.
        let pacer = SendPacer::new(Pacing::default());
        pacer.freeze(at(35_000));
        assert_eq!(pacer.reserve(None, at(1_000)), Duration::from_secs(34));
        assert_eq!(pacer.reserve(Some(5), at(30_000)), Duration::from_secs(5));
        pacer.freeze(at(10_000));
        assert_eq!(pacer.reserve(None, at(30_000)), Duration::from_secs(5), "an earlier freeze does not shorten it");
        assert_eq!(pacer.reserve(Some(5), at(35_000)), Duration::ZERO);
    }
}
