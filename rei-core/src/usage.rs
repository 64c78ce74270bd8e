//! Usage sessions: metered billing (₽ per second of generated video, per second of a long-running session).
//!
//! A session holds money a chunk ahead, raises the hold chunk by chunk while it runs, stops itself when the
//! next chunk cannot be held (funds or caps), and on close captures exactly the metered amount and releases
//! the rest in one ledger transaction.
//!
//! Rounding: the hold after `k` chunks is `round_to_kopeck(rate × k × chunk)` — the one rounding rule applied
//! to the cumulative amount, never per chunk — and the capture is `round_to_kopeck(rate × used)` with
//! `used <= covered`. Rounding is monotone, so the capture never exceeds the hold and
//! `captured + released = held` exactly.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::caps::CapsConfig;
use crate::ids::IdGen;
use crate::ids::{HoldId, IdempotencyKey, ProviderId, SessionId, TxId, UserId, new_id};
use crate::ledger::{HoldState, LedgerCommand, LedgerError, LedgerOp, LedgerStore, StoreError};
use crate::money::{Money, MoneyError, UnitPrice, round_to_kopeck};
use crate::time::{Clock, Timestamp};

/// Most chunks a session may hold in its life, so a runaway session cannot grow without bound.
pub const CHUNKS_MAX: u64 = 100_000;

/// Where a session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionState {
    /// Running; its hold covers `covered_units`.
    Open,
    /// Closed by its owner: metered amount captured, rest released.
    Closed,
    /// Closed by itself because the next chunk could not be held; metered amount captured.
    Stopped,
}

impl SessionState {
    /// A stable lowercase name, for storage and logs.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            SessionState::Open => "open",
            SessionState::Closed => "closed",
            SessionState::Stopped => "stopped",
        }
    }
}

/// One metered session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageSession {
    /// Its id; its hold has the same number.
    pub id: SessionId,
    /// Whose.
    pub user: UserId,
    /// The hold backing it.
    pub hold: HoldId,
    /// Price per metered unit (per second).
    pub rate: UnitPrice,
    /// Units held ahead per chunk. Invariant: positive.
    pub chunk_units: u64,
    /// Chunks held so far. Invariant: `1 <= chunks <= CHUNKS_MAX`.
    pub chunks: u64,
    /// Units metered so far. Invariant: `used_units <= chunks × chunk_units`.
    pub used_units: u64,
    /// What the hold holds: `round_to_kopeck(rate × chunks × chunk_units)`.
    pub held: Money,
    /// What was captured at close.
    pub captured: Money,
    /// Where it is.
    pub state: SessionState,
    /// When it opened.
    pub opened_at: Timestamp,
    /// When its hold lapses unless extended.
    pub expires_at: Timestamp,
    /// How far past now each extension pushes the expiry.
    pub hold_ttl: Duration,
}

impl UsageSession {
    /// Units the hold covers.
    #[must_use]
    pub fn covered_units(&self) -> u64 {
        self.chunks.saturating_mul(self.chunk_units)
    }
}

/// The cumulative hold for `units` units at `rate`: the one rounding rule on the exact product.
///
/// # Errors
/// [`MoneyError::Overflow`] when it does not fit.
pub fn metered_amount(rate: UnitPrice, units: u64) -> Result<Money, MoneyError> {
    round_to_kopeck(rate.times(units).ok_or(MoneyError::Overflow)?)
}

/// Why a session operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsageError {
    /// Chunk of zero units, a zero rate, or more chunks than [`CHUNKS_MAX`].
    #[error("invalid session parameters: {reason}")]
    Invalid {
        /// What is wrong.
        reason: &'static str,
    },
    /// No such session.
    #[error("session {session} not found")]
    NotFound {
        /// Which.
        session: SessionId,
    },
    /// The session is not open.
    #[error("session {session} is {state:?}")]
    NotOpen {
        /// Which.
        session: SessionId,
        /// Where it is.
        state: SessionState,
    },
    /// Metered units went backwards.
    #[error("metered units went back from {before} to {after}")]
    UnitsBackwards {
        /// Metered before.
        before: u64,
        /// Reported now.
        after: u64,
    },
    /// Someone else changed the session first; reload and retry.
    #[error("session {session} changed concurrently")]
    Conflict {
        /// Which.
        session: SessionId,
    },
    /// The ledger refused (for opening: funds or caps).
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The session store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An amount overflowed.
    #[error(transparent)]
    Money(#[from] MoneyError),
}

/// Where sessions live.
///
/// Contract: `insert` of an id that exists MUST return the stored session unchanged (idempotent open);
/// `update` MUST compare-and-set on `(state, chunks, used_units)` of `expected` and fail with
/// [`UsageError::Conflict`] if the stored session differs, so two meters cannot both extend a session.
#[async_trait]
pub trait UsageSessionStore: Send + Sync {
    /// Stores a new session, or returns the one stored under its id.
    ///
    /// # Errors
    /// [`UsageError::Store`] when the store failed.
    async fn insert(&self, session: UsageSession) -> Result<UsageSession, UsageError>;

    /// A session, if it exists.
    ///
    /// # Errors
    /// [`UsageError::Store`] when the store failed.
    async fn get(&self, id: SessionId) -> Result<Option<UsageSession>, UsageError>;

    /// Replaces `expected` with `next` if the stored session still equals `expected` in state, chunks and
    /// used units.
    ///
    /// # Errors
    /// [`UsageError::Conflict`] when it changed; [`UsageError::Store`] when the store failed.
    async fn update(&self, expected: &UsageSession, next: UsageSession) -> Result<(), UsageError>;

    /// Up to `limit` open sessions, oldest first (for operators and the reaper).
    ///
    /// # Errors
    /// [`UsageError::Store`] when the store failed.
    async fn open_sessions(&self, limit: usize) -> Result<Vec<UsageSession>, UsageError>;
}

/// What a session needs to open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSpec {
    /// Whose money.
    pub user: UserId,
    /// Price per unit.
    pub rate: UnitPrice,
    /// Units held ahead per chunk.
    pub chunk_units: u64,
    /// How long each chunk's hold lives; every extension pushes the expiry this far past now.
    pub hold_ttl: Duration,
    /// The provider it pays for (for provider budgets).
    pub provider: Option<ProviderId>,
}

/// The outcome of metering a running session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Metered {
    /// Still running; the hold covers the session's `covered_units`, at least one chunk past what was used.
    Running(UsageSession),
    /// The hold could not grow to cover what was used (funds, caps, or the hold lapsed); the session closed
    /// itself, charging what the hold covered.
    Stopped {
        /// The closed session.
        session: UsageSession,
        /// Why the hold could not grow.
        reason: LedgerError,
        /// Units used beyond what the hold covered: not charged.
        unbilled_units: u64,
    },
}

/// The outcome of [`UsageService::close`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closed {
    /// The closed session; `captured` is what was charged.
    pub session: UsageSession,
    /// Metered units that were not charged: beyond what the hold could grow to cover, or every unit when the
    /// hold lapsed before the close. Zero when everything metered was charged.
    pub unbilled_units: u64,
    /// Why some units went unbilled: the refusal of the raise that would have covered them, or
    /// [`LedgerError::HoldExpired`] when the hold's TTL passed before the close (then nothing was charged and
    /// the hold was expired at once, so the money is back).
    pub shortfall: Option<LedgerError>,
}

/// What one [`UsageService::reap`] pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionReapReport {
    /// Sessions ended because their hold lapsed (money back) or was never placed.
    pub lapsed: Vec<SessionId>,
    /// Sessions ended as the ledger had already ended their hold (a close that captured, then crashed).
    pub settled: Vec<SessionId>,
}

/// Opens, meters and closes usage sessions, using only ports.
pub struct UsageService {
    ledger: Arc<dyn LedgerStore>,
    sessions: Arc<dyn UsageSessionStore>,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn IdGen>,
    caps: CapsConfig,
}

/// Chunks needed to cover `units`, at most [`CHUNKS_MAX`].
fn chunks_for(units: u64, chunk_units: u64) -> u64 {
    units.div_ceil(chunk_units.max(1)).clamp(1, CHUNKS_MAX)
}

/// A ledger refusal that ends a session's growth (rather than a failure to retry).
fn is_refusal(e: &LedgerError) -> bool {
    matches!(e, LedgerError::InsufficientFunds { .. } | LedgerError::SpendCap(_) | LedgerError::HoldExpired { .. })
}

impl UsageService {
    /// A service over these ports; `caps` are checked with every chunk (the budget of the session's provider
    /// with the users' caps).
    #[must_use]
    pub fn new(
        ledger: Arc<dyn LedgerStore>,
        sessions: Arc<dyn UsageSessionStore>,
        clock: Arc<dyn Clock>,
        ids: Arc<dyn IdGen>,
        caps: CapsConfig,
    ) -> UsageService {
        UsageService { ledger, sessions, clock, ids, caps }
    }

    fn key(prefix: &str, id: SessionId, n: u64) -> Result<IdempotencyKey, LedgerError> {
        Ok(IdempotencyKey::derived(prefix, format!("{id}.{n}"))?)
    }

    async fn ledger(&self, key: IdempotencyKey, at: Timestamp, op: LedgerOp) -> Result<(), LedgerError> {
        let cmd = LedgerCommand { key, tx: new_id::<TxId>(&*self.ids), at, op };
        self.ledger.apply(cmd).await.map(|_| ())
    }

    /// Opens a session holding its first chunk. The session is recorded before any money is held, so a crash
    /// after the hold leaves a session that [`UsageService::close`] and [`UsageService::reap`] can end; opening
    /// the same `id` again places (or replays) the same hold and returns the stored session.
    ///
    /// # Errors
    /// [`UsageError::Invalid`] for a zero chunk; [`UsageError::Ledger`] when the first chunk cannot be held
    /// (the session is then stored `Stopped` with nothing held, and opening it again says
    /// [`UsageError::NotOpen`]: open a new one).
    pub async fn open(&self, id: SessionId, spec: SessionSpec) -> Result<UsageSession, UsageError> {
        if spec.chunk_units == 0 {
            return Err(UsageError::Invalid { reason: "chunk of zero units" });
        }
        let now = self.clock.now();
        let held = metered_amount(spec.rate, spec.chunk_units)?;
        if !held.is_positive() {
            return Err(UsageError::Invalid { reason: "a chunk must cost at least one kopeck" });
        }
        let hold = HoldId::from(id.as_u128());
        let fresh = UsageSession {
            id,
            user: spec.user,
            hold,
            rate: spec.rate,
            chunk_units: spec.chunk_units,
            chunks: 1,
            used_units: 0,
            held,
            captured: Money::ZERO,
            state: SessionState::Open,
            opened_at: now,
            expires_at: now.plus(spec.hold_ttl),
            hold_ttl: spec.hold_ttl,
        };
        let stored = self.sessions.insert(fresh).await?;
        if stored.state != SessionState::Open {
            if stored.held.is_zero() {
                return Err(UsageError::NotOpen { session: id, state: stored.state });
            }
            return Ok(stored);
        }
        let op = LedgerOp::Hold {
            user: stored.user,
            hold,
            amount: stored.held,
            caps: self.caps.for_provider(spec.provider.as_ref()),
            provider: spec.provider,
            expires_at: stored.expires_at,
        };
        match self.ledger(Self::key("session-open", id, 0)?, now, op).await {
            Ok(()) => Ok(stored),
            // Only a refusal that says the money cannot be held ends the session; anything else (a store
            // failure, a key used for another hold) leaves it open for a retry, since its hold may exist.
            Err(
                refusal @ (LedgerError::InsufficientFunds { .. }
                | LedgerError::SpendCap(_)
                | LedgerError::InvalidExpiry { .. }
                | LedgerError::InvalidAmount { .. }),
            ) => {
                let mut refused = stored.clone();
                refused.state = SessionState::Stopped;
                refused.held = Money::ZERO;
                self.sessions.update(&stored, refused).await?;
                Err(refusal.into())
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn load_open(&self, id: SessionId) -> Result<UsageSession, UsageError> {
        let s = self.sessions.get(id).await?.ok_or(UsageError::NotFound { session: id })?;
        if s.state != SessionState::Open {
            return Err(UsageError::NotOpen { session: id, state: s.state });
        }
        Ok(s)
    }

    /// Raises a session's hold to cover `chunks` chunks, pushing its expiry the session's `hold_ttl` past now.
    /// The key names the chunk count, so a raise that landed before a crash replays.
    async fn grow(&self, s: &UsageSession, chunks: u64) -> Result<UsageSession, LedgerError> {
        let now = self.clock.now();
        let target = metered_amount(s.rate, chunks.saturating_mul(s.chunk_units)).map_err(|_| LedgerError::Overflow)?;
        let more = target.checked_sub(s.held).ok_or(LedgerError::Overflow)?;
        let expires_at = now.plus(s.hold_ttl).max(s.expires_at);
        // The session's provider is its hold's; look it up only when a provider has a budget.
        let provider = if self.caps.provider_budgets.is_empty() {
            None
        } else {
            self.ledger.hold(s.hold).await?.and_then(|h| h.provider)
        };
        let caps = self.caps.for_provider(provider.as_ref());
        let op = LedgerOp::Raise { hold: s.hold, amount: more, expires_at, caps };
        self.ledger(Self::key("session-raise", s.id, chunks)?, now, op).await?;
        let mut next = s.clone();
        next.chunks = chunks;
        next.held = target;
        next.expires_at = expires_at;
        Ok(next)
    }

    /// Records `used_units` metered so far and keeps the hold a whole chunk ahead of them: when it is not, the
    /// hold is raised (by as many chunks as it takes, pushing its expiry the session's `hold_ttl` past now).
    /// If the raise is refused, the session closes itself, charging what the hold covered, and says how many
    /// units went unbilled.
    ///
    /// # Errors
    /// [`UsageError`] for an unknown or closed session, units going backwards, a session past
    /// [`CHUNKS_MAX`], a concurrent change, or a store failure.
    pub async fn meter(&self, id: SessionId, used_units: u64) -> Result<Metered, UsageError> {
        let s = self.load_open(id).await?;
        if used_units < s.used_units {
            return Err(UsageError::UnitsBackwards { before: s.used_units, after: used_units });
        }
        let mut next = s.clone();
        let wanted = chunks_for(used_units.saturating_add(s.chunk_units), s.chunk_units);
        if wanted > s.chunks {
            match self.grow(&s, wanted).await {
                Ok(grown) => next = grown,
                Err(reason) if is_refusal(&reason) => {
                    next.used_units = used_units.min(s.covered_units());
                    let unbilled_units = used_units - next.used_units;
                    self.sessions.update(&s, next.clone()).await?;
                    let (session, _) = self.finish(next, SessionState::Stopped).await?;
                    return Ok(Metered::Stopped { session, reason, unbilled_units });
                }
                Err(e) => return Err(e.into()),
            }
        }
        if used_units > next.covered_units() {
            return Err(UsageError::Invalid { reason: "session reached the most chunks a session may hold" });
        }
        next.used_units = used_units;
        self.sessions.update(&s, next.clone()).await?;
        Ok(Metered::Running(next))
    }

    /// Closes a session: raises the hold first if `used_units` passed what it covers, then captures
    /// `round_to_kopeck(rate × used)` and releases the rest in one ledger transaction. What could not be
    /// covered, and a hold that lapsed before the close, are told in [`Closed`], never dropped silently.
    ///
    /// # Errors
    /// [`UsageError`] for an unknown or closed session, units going backwards, or a ledger/store failure.
    pub async fn close(&self, id: SessionId, used_units: u64) -> Result<Closed, UsageError> {
        let s = self.load_open(id).await?;
        if used_units < s.used_units {
            return Err(UsageError::UnitsBackwards { before: s.used_units, after: used_units });
        }
        let mut next = s.clone();
        let mut shortfall = None;
        let wanted = chunks_for(used_units, s.chunk_units);
        if wanted > s.chunks {
            match self.grow(&s, wanted).await {
                Ok(grown) => next = grown,
                Err(reason) if is_refusal(&reason) => shortfall = Some(reason),
                Err(e) => return Err(e.into()),
            }
        }
        next.used_units = used_units.min(next.covered_units());
        self.sessions.update(&s, next.clone()).await?;
        let (session, lapsed) = self.finish(next, SessionState::Closed).await?;
        let charged_units = if lapsed.is_some() { 0 } else { session.used_units };
        Ok(Closed { unbilled_units: used_units - charged_units, shortfall: lapsed.or(shortfall), session })
    }

    /// Ends open sessions that nobody will close, up to `limit`: those whose hold lapsed (it is expired now, so
    /// the money goes back), whose hold was never placed (a crash between the session row and the hold, past
    /// the session's expiry), or whose hold the ledger already ended (a close that captured, then crashed).
    ///
    /// # Errors
    /// [`UsageError`] when a store failed; sessions handled before stay handled.
    pub async fn reap(&self, limit: usize) -> Result<SessionReapReport, UsageError> {
        let now = self.clock.now();
        let mut report = SessionReapReport::default();
        for s in self.sessions.open_sessions(limit).await? {
            match self.ledger.hold(s.hold).await? {
                None if now >= s.expires_at => {
                    let mut ended = s.clone();
                    ended.state = SessionState::Stopped;
                    ended.held = Money::ZERO;
                    self.sessions.update(&s, ended).await?;
                    report.lapsed.push(s.id);
                }
                Some(h) if h.state == HoldState::Active && now >= h.expires_at => {
                    self.finish(s.clone(), SessionState::Stopped).await?;
                    report.lapsed.push(s.id);
                }
                Some(h) if h.state != HoldState::Active => {
                    self.finish(s.clone(), SessionState::Closed).await?;
                    report.settled.push(s.id);
                }
                _ => {}
            }
        }
        Ok(report)
    }

    /// Captures the metered amount of an open session (already saved with its final units) and marks it.
    /// Returns the marked session and, when the hold had lapsed, the refusal that says so (the hold is then
    /// expired at once, with the reaper's key, and nothing is charged).
    async fn finish(
        &self,
        s: UsageSession,
        state: SessionState,
    ) -> Result<(UsageSession, Option<LedgerError>), UsageError> {
        let captured = metered_amount(s.rate, s.used_units)?.min(s.held);
        let op = LedgerOp::Capture { hold: s.hold, amount: captured };
        let key = IdempotencyKey::derived("session-close", s.id).map_err(LedgerError::from)?;
        let cmd = LedgerCommand { key, tx: new_id::<TxId>(&*self.ids), at: self.clock.now(), op };
        match self.ledger.apply(cmd).await {
            Ok(_) => Ok((self.mark(s, state, captured).await?, None)),
            Err(lapsed @ LedgerError::HoldExpired { .. }) => {
                let expire = LedgerOp::Expire { hold: s.hold };
                let key = IdempotencyKey::derived("expire", s.hold).map_err(LedgerError::from)?;
                match self.ledger(key, self.clock.now(), expire).await {
                    Ok(()) | Err(LedgerError::HoldNotActive { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
                Ok((self.mark(s, state, Money::ZERO).await?, Some(lapsed)))
            }
            // An earlier close captured (its process died before marking the session) or the reaper expired the
            // hold: the ledger is the truth, so the session ends with what the hold says was taken.
            Err(e @ (LedgerError::KeyConflict { .. } | LedgerError::HoldNotActive { .. })) => {
                match self.ledger.hold(s.hold).await? {
                    Some(h) if h.state == HoldState::Captured => Ok((self.mark(s, state, h.captured).await?, None)),
                    Some(h) if matches!(h.state, HoldState::Released | HoldState::Expired) => {
                        let lapsed = LedgerError::HoldExpired { hold: s.hold, expires_at: h.expires_at };
                        Ok((self.mark(s, state, Money::ZERO).await?, Some(lapsed)))
                    }
                    _ => Err(e.into()),
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn mark(&self, s: UsageSession, state: SessionState, captured: Money) -> Result<UsageSession, UsageError> {
        let mut done = s.clone();
        done.state = state;
        done.captured = captured;
        self.sessions.update(&s, done.clone()).await?;
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn metered_capture_never_exceeds_the_cumulative_hold(
            rate_milli in 1u64..100_000, chunk in 1u64..600, chunks in 1u64..50, used_frac in 0u64..=1000,
        ) {
            // Proves capture = round(rate × used) <= round(rate × covered) = held, so captured + released = held.
            let rate = UnitPrice::from_kopecks(rust_decimal::Decimal::new(i64::try_from(rate_milli).unwrap_or(1), 3))
                .expect("non-negative");
            let covered = chunk * chunks;
            let used = covered * used_frac / 1000;
            let held = metered_amount(rate, covered).expect("fits");
            let captured = metered_amount(rate, used).expect("fits").min(held);
            prop_assert!(metered_amount(rate, used).expect("fits") <= held);
            let released = held.checked_sub(captured).expect("fits");
            prop_assert_eq!(captured.checked_add(released), Some(held));
            prop_assert!(!released.is_negative());
        }
    }
}
