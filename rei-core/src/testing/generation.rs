//! In-memory adapters of the generation ports: the attempt log, a provider whose every call a test scripts, a
//! messenger that records what users were told, and a sleep that moves a manual clock.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;

use super::clock::ManualClock;
use crate::generation::{
    AttemptLog, AttemptLogError, AttemptRecord, AttemptRef, DownloadLimits, GenerationProvider, GenerationTask, Media,
    Messenger, MessengerError, Output, OutputMedia, ProviderError, RemoteMedia, Submission, TaskStatus, UserMessage,
};
use crate::ids::{JobId, ProviderId, UserId};
use crate::jobs::ErrorText;
use crate::money::Money;
use crate::time::Sleep;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Attempt records in a mutex.
#[derive(Debug, Default)]
pub struct MemoryAttemptLog {
    records: Mutex<BTreeMap<(JobId, u32), AttemptRecord>>,
}

impl MemoryAttemptLog {
    /// An empty log.
    #[must_use]
    pub fn new() -> MemoryAttemptLog {
        MemoryAttemptLog::default()
    }
}

#[async_trait]
impl AttemptLog for MemoryAttemptLog {
    async fn record(&self, record: &AttemptRecord) -> Result<(), AttemptLogError> {
        lock(&self.records).insert((record.job, record.attempt), record.clone());
        Ok(())
    }

    async fn for_job(&self, job: JobId) -> Result<Vec<AttemptRecord>, AttemptLogError> {
        Ok(lock(&self.records).range((job, 0)..=(job, u32::MAX)).map(|(_, r)| r.clone()).collect())
    }
}

/// What a [`ScriptedProvider`] does with one submit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scripted {
    /// Answers the submit with the result.
    Done,
    /// Accepts, then reports pending for `polls` queries, then done.
    DoneAfterPolls(u32),
    /// Fails the submit with this error.
    Fail(ProviderError),
    /// The submit times out, but the provider did the work: a query finds it done.
    TimeoutButDone,
    /// The submit times out and the provider never got it: a query finds nothing.
    TimeoutNotReceived,
    /// Accepts, then never finishes.
    NeverFinishes,
    /// Accepts, then the task fails with this error.
    TaskFails(ProviderError),
}

/// A provider whose submits follow a script (one entry per submit; `Done` once it runs out). Its results are a
/// small PNG, or `video/mp4` bytes for video, costing `cost` each.
#[derive(Debug)]
pub struct ScriptedProvider {
    id: ProviderId,
    queryable: bool,
    cost: Money,
    script: Mutex<VecDeque<Scripted>>,
    tasks: Mutex<BTreeMap<AttemptRef, (Scripted, u32)>>,
    submits: Mutex<Vec<AttemptRef>>,
}

impl ScriptedProvider {
    /// A provider `id`; `queryable` says whether it can be asked about an attempt (Kling yes, Gemini no).
    ///
    /// # Panics
    /// When `id` is not a valid provider id.
    #[must_use]
    pub fn new(id: &str, queryable: bool, cost: Money) -> Arc<ScriptedProvider> {
        let id = ProviderId::parse(id).unwrap_or_else(|e| panic!("provider id {id}: {e}"));
        Arc::new(ScriptedProvider {
            id,
            queryable,
            cost,
            script: Mutex::new(VecDeque::new()),
            tasks: Mutex::new(BTreeMap::new()),
            submits: Mutex::new(Vec::new()),
        })
    }

    /// Queues what the next submit does.
    pub fn push(&self, step: Scripted) {
        lock(&self.script).push_back(step);
    }

    /// Every attempt submitted, in order.
    #[must_use]
    pub fn submits(&self) -> Vec<AttemptRef> {
        lock(&self.submits).clone()
    }

    fn output(&self, task: &GenerationTask) -> Output {
        let video = task.duration_s.is_some();
        let media = if video {
            Media { mime: "video/mp4".to_owned(), bytes: b"\0\0\0\x18ftypmp42 fake video".to_vec() }
        } else {
            Media { mime: "image/png".to_owned(), bytes: b"\x89PNG\r\n\x1a\n fake image".to_vec() }
        };
        Output {
            media: OutputMedia::Inline(media),
            cost: self.cost,
            duration_ms: task.duration_s.map(|s| u64::from(s) * 1_000 + 100),
            provider_ref: None,
        }
    }
}

fn timeout() -> ProviderError {
    ProviderError::Timeout { reason: ErrorText::new("scripted timeout") }
}

#[async_trait]
impl GenerationProvider for ScriptedProvider {
    fn id(&self) -> &ProviderId {
        &self.id
    }

    fn can_query(&self) -> bool {
        self.queryable
    }

    async fn submit(&self, attempt: &AttemptRef, task: &GenerationTask) -> Result<Submission, ProviderError> {
        lock(&self.submits).push(*attempt);
        let step = lock(&self.script).pop_front().unwrap_or(Scripted::Done);
        match &step {
            Scripted::Done => return Ok(Submission::Done(self.output(task))),
            Scripted::Fail(e) => return Err(e.clone()),
            Scripted::TimeoutNotReceived => return Err(timeout()),
            _ => {}
        }
        let timed_out = step == Scripted::TimeoutButDone;
        lock(&self.tasks).insert(*attempt, (step, 0));
        if timed_out { Err(timeout()) } else { Ok(Submission::Accepted) }
    }

    async fn query(&self, attempt: &AttemptRef, task: &GenerationTask) -> Result<TaskStatus, ProviderError> {
        if !self.queryable {
            return Err(ProviderError::Unsupported { what: "query" });
        }
        let mut tasks = lock(&self.tasks);
        let Some((step, polls)) = tasks.get_mut(attempt) else { return Ok(TaskStatus::NotFound) };
        *polls += 1;
        Ok(match step {
            Scripted::DoneAfterPolls(n) if *polls <= *n => TaskStatus::Pending { progress_percent: Some(50) },
            Scripted::NeverFinishes => TaskStatus::Pending { progress_percent: None },
            Scripted::TaskFails(e) => TaskStatus::Failed(e.clone()),
            _ => TaskStatus::Done(self.output(task)),
        })
    }

    async fn download(&self, media: &RemoteMedia, _limits: &DownloadLimits) -> Result<Media, ProviderError> {
        Err(ProviderError::Garbage { reason: ErrorText::new(&format!("no download of {}", media.url)) })
    }
}

/// Records every message, delivering each final message of a job once, as the port's contract asks.
#[derive(Debug, Default)]
pub struct RecordingMessenger {
    sent: Mutex<Vec<(UserId, UserMessage)>>,
}

impl RecordingMessenger {
    /// Nothing sent yet.
    #[must_use]
    pub fn new() -> Arc<RecordingMessenger> {
        Arc::new(RecordingMessenger::default())
    }

    /// What was sent, in order.
    #[must_use]
    pub fn sent(&self) -> Vec<(UserId, UserMessage)> {
        lock(&self.sent).clone()
    }

    /// The messages about `job`, in order.
    #[must_use]
    pub fn about(&self, job: JobId) -> Vec<UserMessage> {
        lock(&self.sent).iter().filter(|(_, m)| m.job() == job).map(|(_, m)| m.clone()).collect()
    }
}

#[async_trait]
impl Messenger for RecordingMessenger {
    async fn send(&self, user: UserId, message: UserMessage) -> Result<(), MessengerError> {
        let mut sent = lock(&self.sent);
        let is_final = matches!(
            message,
            UserMessage::Delivered { .. } | UserMessage::Failed { .. } | UserMessage::Cancelled { .. }
        );
        let repeated = is_final && sent.iter().any(|(u, m)| *u == user && *m == message);
        if !repeated {
            sent.push((user, message));
        }
        Ok(())
    }
}

/// A sleep that moves a [`ManualClock`] instead of waiting, and lets other futures of the task run once (as a
/// real sleep would), so that concurrent runs interleave at their waits.
#[derive(Debug, Clone)]
pub struct ClockSleep(pub Arc<ManualClock>);

#[async_trait]
impl Sleep for ClockSleep {
    async fn sleep(&self, d: Duration) {
        self.0.advance(d);
        YieldOnce(false).await;
    }
}

/// Pending once, then ready.
struct YieldOnce(bool);

impl std::future::Future for YieldOnce {
    type Output = ();

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        if self.0 {
            std::task::Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    }
}
