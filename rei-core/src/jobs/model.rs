//! The job record, its priorities and states, and the one transition table.

use std::fmt;

use crate::generation::{AssetKey, GenerationRequest};
use crate::ids::{HoldId, IdError, JobId, ProductId, ProviderId, UserId};
use crate::money::Money;
use crate::time::Timestamp;

/// The most attempts any job may have: retries are bounded even when a caller asks for more.
pub const ATTEMPTS_MAX: u32 = 16;

/// How urgent a job is. Ordered with `Critical` first: `Priority::Critical < Priority::Low`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize), serde(rename_all = "snake_case"))]
pub enum Priority {
    /// Served before everything else (operator and paid-express work).
    Critical,
    /// Served before normal work.
    High,
    /// The default.
    Normal,
    /// Background work; aging in the queue keeps it from starving.
    Low,
}

impl Priority {
    /// Every priority, most urgent first.
    pub const ALL: [Priority; 4] = [Priority::Critical, Priority::High, Priority::Normal, Priority::Low];

    /// Position in [`Priority::ALL`]: 0 for `Critical`, 3 for `Low`.
    #[must_use]
    pub const fn rank(self) -> usize {
        match self {
            Priority::Critical => 0,
            Priority::High => 1,
            Priority::Normal => 2,
            Priority::Low => 3,
        }
    }

    /// The priority `steps` levels more urgent, stopping at `Critical`.
    #[must_use]
    pub fn raised(self, steps: u64) -> Priority {
        let steps = usize::try_from(steps).unwrap_or(usize::MAX);
        Priority::ALL[self.rank().saturating_sub(steps)]
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Priority::Critical => "critical",
            Priority::High => "high",
            Priority::Normal => "normal",
            Priority::Low => "low",
        })
    }
}

/// Where a job is in its life. `Succeeded`, `Failed` and `Cancelled` are terminal.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize), serde(rename_all = "snake_case"))]
pub enum JobState {
    /// A price was shown; nothing is held yet.
    Quoted,
    /// The user confirmed; the price is locked and the hold placed.
    Confirmed,
    /// Persisted and waiting for a worker.
    Queued,
    /// Leased by a worker, which may be talking to a provider.
    Running,
    /// A provider call whose outcome is not known (a timeout, a lost lease after dispatch). It MUST be
    /// reconciled with the provider before any money moves.
    Unknown,
    /// Done; the hold was captured.
    Succeeded,
    /// Given up; the hold was released.
    Failed,
    /// Withdrawn before it ran; the hold was released.
    Cancelled,
}

impl JobState {
    /// Every state, in life order.
    pub const ALL: [JobState; 8] = [
        JobState::Quoted,
        JobState::Confirmed,
        JobState::Queued,
        JobState::Running,
        JobState::Unknown,
        JobState::Succeeded,
        JobState::Failed,
        JobState::Cancelled,
    ];

    /// `true` for the states that accept no event.
    #[must_use]
    pub const fn is_terminal(self) -> bool {
        matches!(self, JobState::Succeeded | JobState::Failed | JobState::Cancelled)
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JobState::Quoted => "quoted",
            JobState::Confirmed => "confirmed",
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Unknown => "unknown",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        })
    }
}

/// Something that happens to a job.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize), serde(rename_all = "snake_case"))]
pub enum JobEvent {
    /// The user accepted the quote and the hold was placed.
    Confirm,
    /// The job was handed to the queue.
    Enqueue,
    /// A worker leased it.
    Start,
    /// The provider produced the result.
    Succeed,
    /// The job is given up.
    Fail,
    /// The job is withdrawn.
    Cancel,
    /// A provider call ended without a known outcome.
    OutcomeUnknown,
    /// The attempt did not produce a result and another one is allowed.
    Retry,
}

impl JobEvent {
    /// Every event.
    pub const ALL: [JobEvent; 8] = [
        JobEvent::Confirm,
        JobEvent::Enqueue,
        JobEvent::Start,
        JobEvent::Succeed,
        JobEvent::Fail,
        JobEvent::Cancel,
        JobEvent::OutcomeUnknown,
        JobEvent::Retry,
    ];
}

/// An event the state does not accept.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
#[error("a {from} job does not accept {event:?}")]
pub struct InvalidTransition {
    /// The state the job was in.
    pub from: JobState,
    /// The refused event.
    pub event: JobEvent,
}

/// The job state machine: the state after `event`, from one explicit table.
///
/// `Running -> Cancelled` is in the table for a worker that abandons an attempt before it reached a provider;
/// `JobService::cancel` itself only cancels jobs that have not started.
///
/// # Errors
/// [`InvalidTransition`] for every pair not in the table; terminal states accept nothing.
pub fn transition(state: JobState, event: JobEvent) -> Result<JobState, InvalidTransition> {
    use JobEvent as E;
    use JobState as S;
    let next = match (state, event) {
        (S::Quoted, E::Confirm) => S::Confirmed,
        (S::Confirmed, E::Enqueue) => S::Queued,
        (S::Queued, E::Start) => S::Running,
        (S::Running, E::Succeed) => S::Succeeded,
        (S::Running, E::Fail) => S::Failed,
        (S::Running, E::Cancel) => S::Cancelled,
        (S::Running, E::OutcomeUnknown) => S::Unknown,
        (S::Running, E::Retry) => S::Queued,
        (S::Unknown, E::Succeed) => S::Succeeded,
        (S::Unknown, E::Retry) => S::Queued,
        (S::Unknown, E::Fail) => S::Failed,
        (S::Quoted | S::Confirmed | S::Queued, E::Cancel) => S::Cancelled,
        _ => return Err(InvalidTransition { from: state, event }),
    };
    Ok(next)
}

/// Error text kept on a job or a dead letter, cut to [`ErrorText::LEN_MAX`] bytes.
///
/// Truncated rather than refused: the text comes from providers and must be recorded whatever its size.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Default)]
pub struct ErrorText(String);

impl ErrorText {
    /// The longest kept text, in bytes.
    pub const LEN_MAX: usize = 512;

    /// `text`, cut at the last character boundary within [`ErrorText::LEN_MAX`] bytes.
    #[must_use]
    pub fn new(text: &str) -> ErrorText {
        let mut end = text.len().min(Self::LEN_MAX);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        ErrorText(text[..end].to_owned())
    }

    /// The text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(feature = "serde")]
crate::serde_text::via_text!(ErrorText, |text: &str| Ok::<_, std::convert::Infallible>(ErrorText::new(text)));

impl fmt::Display for ErrorText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The name of a worker process that holds a lease (`worker-3`, `host-a:42`).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct WorkerId(String);

impl WorkerId {
    /// The longest accepted name.
    pub const LEN_MAX: usize = 64;

    /// Parses 1 to [`WorkerId::LEN_MAX`] characters of `A-Za-z0-9 _ - : .`.
    ///
    /// # Errors
    /// [`IdError::Key`] for anything else.
    pub fn parse(text: &str) -> Result<WorkerId, IdError> {
        let ok = !text.is_empty()
            && text.len() <= Self::LEN_MAX
            && text.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b':' | b'.'));
        if ok { Ok(WorkerId(text.to_owned())) } else { Err(IdError::Key { max: Self::LEN_MAX }) }
    }

    /// The name.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(feature = "serde")]
crate::serde_text::via_text!(WorkerId, WorkerId::parse);

impl fmt::Display for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a caller knows when it creates a job.
#[derive(Clone, PartialEq, Eq, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct NewJob {
    /// The job's id; also the provider-side idempotency key.
    pub id: JobId,
    /// Who pays.
    pub user: UserId,
    /// What is generated.
    pub product: ProductId,
    /// How urgent it is.
    pub priority: Priority,
    /// The locked price: what a success captures.
    pub price: Money,
    /// The hold that reserves `price`.
    pub hold: HoldId,
    /// How many attempts the job may have, 1 to [`ATTEMPTS_MAX`].
    pub max_attempts: u32,
    /// What to generate; `None` for a job an embedder runs with its own providers.
    pub request: Option<GenerationRequest>,
}

/// Why a [`NewJob`] cannot become a [`Job`].
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum JobSpecError {
    /// `max_attempts` is zero or above [`ATTEMPTS_MAX`].
    #[error("max attempts {max_attempts} is outside 1..={ATTEMPTS_MAX}")]
    AttemptsOutOfRange {
        /// The refused value.
        max_attempts: u32,
    },
    /// A job never pays the user.
    #[error("price {price} is negative")]
    NegativePrice {
        /// The refused price.
        price: Money,
    },
}

/// One generation job: the record of truth a [`JobStore`](super::JobStore) keeps.
///
/// Fields are public because stores rebuild records from rows; [`Job::new`] is the checked way in, and every
/// text field is a bounded type.
#[derive(Clone, PartialEq, Eq, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Job {
    /// The job's id.
    pub id: JobId,
    /// Who pays.
    pub user: UserId,
    /// What is generated.
    pub product: ProductId,
    /// How urgent it is.
    pub priority: Priority,
    /// The locked price.
    pub price: Money,
    /// The hold that reserves `price`.
    pub hold: HoldId,
    /// Where the job is.
    pub state: JobState,
    /// Attempts started so far; also the fencing token of the current run.
    pub attempts: u32,
    /// Attempts allowed, 1 to [`ATTEMPTS_MAX`].
    pub max_attempts: u32,
    /// Why the last attempt did not succeed.
    pub last_error: Option<ErrorText>,
    /// The provider the current attempt was sent to, once known.
    pub provider: Option<ProviderId>,
    /// When the job was created.
    pub created_at: Timestamp,
    /// When the record last changed.
    pub updated_at: Timestamp,
    /// No worker may start the job before this time (the retry delay).
    pub not_before: Timestamp,
    /// When the current lease ends, while `Running`.
    pub lease_deadline: Option<Timestamp>,
    /// The worker holding the current lease, while `Running`.
    pub lease_owner: Option<WorkerId>,
    /// What to generate; `None` for a job an embedder runs with its own providers.
    pub request: Option<GenerationRequest>,
    /// The result in the asset store, once an attempt produced it.
    pub result: Option<AssetKey>,
}

impl Job {
    /// A `Quoted` job with no attempts.
    ///
    /// # Errors
    /// [`JobSpecError`] for attempts outside 1..=[`ATTEMPTS_MAX`] or a negative price.
    pub fn new(spec: NewJob, now: Timestamp) -> Result<Job, JobSpecError> {
        if spec.max_attempts == 0 || spec.max_attempts > ATTEMPTS_MAX {
            return Err(JobSpecError::AttemptsOutOfRange { max_attempts: spec.max_attempts });
        }
        if spec.price.is_negative() {
            return Err(JobSpecError::NegativePrice { price: spec.price });
        }
        Ok(Job {
            id: spec.id,
            user: spec.user,
            product: spec.product,
            priority: spec.priority,
            price: spec.price,
            hold: spec.hold,
            state: JobState::Quoted,
            attempts: 0,
            max_attempts: spec.max_attempts,
            last_error: None,
            provider: None,
            created_at: now,
            updated_at: now,
            not_before: now,
            lease_deadline: None,
            lease_owner: None,
            request: spec.request,
            result: None,
        })
    }

    /// Moves the job through [`transition`] and stamps `updated_at`.
    ///
    /// # Errors
    /// [`InvalidTransition`] when the current state refuses `event`; the job is then unchanged.
    pub fn apply(&mut self, event: JobEvent, now: Timestamp) -> Result<(), InvalidTransition> {
        self.state = transition(self.state, event)?;
        self.updated_at = now;
        Ok(())
    }

    /// Forgets the lease: called whenever the job leaves `Running`.
    pub fn clear_lease(&mut self) {
        self.lease_deadline = None;
        self.lease_owner = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_exactly_the_documented_edges() {
        // Proves the transition function accepts the documented edges and nothing else.
        use JobEvent as E;
        use JobState as S;
        let allowed = [
            (S::Quoted, E::Confirm, S::Confirmed),
            (S::Confirmed, E::Enqueue, S::Queued),
            (S::Queued, E::Start, S::Running),
            (S::Running, E::Succeed, S::Succeeded),
            (S::Running, E::Fail, S::Failed),
            (S::Running, E::Cancel, S::Cancelled),
            (S::Running, E::OutcomeUnknown, S::Unknown),
            (S::Running, E::Retry, S::Queued),
            (S::Unknown, E::Succeed, S::Succeeded),
            (S::Unknown, E::Retry, S::Queued),
            (S::Unknown, E::Fail, S::Failed),
            (S::Quoted, E::Cancel, S::Cancelled),
            (S::Confirmed, E::Cancel, S::Cancelled),
            (S::Queued, E::Cancel, S::Cancelled),
        ];
        for state in JobState::ALL {
            for event in JobEvent::ALL {
                let expected = allowed.iter().find(|(s, e, _)| *s == state && *e == event).map(|(_, _, to)| *to);
                match expected {
                    Some(to) => assert_eq!(transition(state, event), Ok(to)),
                    None => assert_eq!(transition(state, event), Err(InvalidTransition { from: state, event })),
                }
            }
        }
    }

    #[test]
    fn terminal_states_refuse_every_event() {
        // Proves a finished job can never move again, whatever happens to it.
        for state in JobState::ALL.into_iter().filter(|s| s.is_terminal()) {
            for event in JobEvent::ALL {
                assert!(transition(state, event).is_err(), "{state} accepted {event:?}");
            }
        }
    }

    #[test]
    fn unknown_cannot_be_cancelled_or_restarted_directly() {
        // Proves an unknown outcome only leaves through reconciliation (succeed, retry, fail).
        for event in [JobEvent::Cancel, JobEvent::Start, JobEvent::OutcomeUnknown, JobEvent::Confirm] {
            assert!(transition(JobState::Unknown, event).is_err());
        }
    }

    #[test]
    fn priorities_order_critical_first_and_raise_saturates() {
        // Proves the ordering used by the queue and that aging never goes past Critical.
        assert!(Priority::Critical < Priority::High && Priority::Normal < Priority::Low);
        assert_eq!(Priority::Low.raised(1), Priority::Normal);
        assert_eq!(Priority::Low.raised(u64::MAX), Priority::Critical);
        assert_eq!(Priority::High.raised(0), Priority::High);
    }

    #[test]
    fn bounded_texts_stay_bounded() {
        // Proves error text is cut on a character boundary and worker names are validated.
        let long = "я".repeat(ErrorText::LEN_MAX);
        let cut = ErrorText::new(&long);
        assert!(cut.as_str().len() <= ErrorText::LEN_MAX);
        assert!(cut.as_str().chars().all(|c| c == 'я'));
        assert!(WorkerId::parse("worker-1").is_ok());
        assert!(WorkerId::parse("").is_err());
        assert!(WorkerId::parse(&"w".repeat(65)).is_err());
    }

    #[test]
    fn new_job_checks_attempts_and_price() {
        // Proves a job cannot be created with unbounded retries or a negative price.
        let spec = |max_attempts, kopecks| NewJob {
            id: JobId::from(1),
            user: UserId(1),
            product: ProductId::parse("image").expect("literal"),
            priority: Priority::Normal,
            price: Money::from_kopecks(kopecks),
            hold: HoldId::from(1),
            max_attempts,
            request: None,
        };
        let now = Timestamp::from_millis(5);
        assert!(Job::new(spec(0, 1), now).is_err());
        assert!(Job::new(spec(ATTEMPTS_MAX + 1, 1), now).is_err());
        assert!(Job::new(spec(3, -1), now).is_err());
        let job = Job::new(spec(3, 100), now).expect("valid");
        assert_eq!((job.state, job.attempts, job.not_before), (JobState::Quoted, 0, now));
    }
}
