//! The [`Messenger`] port: what the worker tells the user, and the bridge from job notices to it.

use async_trait::async_trait;

use super::assets::AssetKey;
use crate::ids::{JobId, UserId};
use crate::jobs::{ErrorText, JobNotice, JobNotifier, JobNotifyError};

/// What kind of media a result is, so that a messenger sends a photo, a video or a file.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum MediaKind {
    /// `image/*`.
    Image,
    /// `video/*`.
    Video,
    /// Anything else.
    File,
}

impl MediaKind {
    /// The kind of a media type.
    #[must_use]
    pub fn of(mime: &str) -> MediaKind {
        if mime.starts_with("image/") {
            MediaKind::Image
        } else if mime.starts_with("video/") {
            MediaKind::Video
        } else {
            MediaKind::File
        }
    }
}

/// One message to a user about a job.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum UserMessage {
    /// A worker took the job and is generating.
    Working {
        /// The job.
        job: JobId,
    },
    /// The provider reported progress.
    Progress {
        /// The job.
        job: JobId,
        /// 0 to 100.
        percent: u8,
    },
    /// The result is ready and paid for.
    Delivered {
        /// The job.
        job: JobId,
        /// The result in the asset store; `None` for a job run outside the generation pipeline.
        asset: Option<AssetKey>,
        /// What to send it as.
        kind: MediaKind,
    },
    /// The job failed for good; the money is back on the balance.
    Failed {
        /// The job.
        job: JobId,
        /// Why, for the user.
        reason: ErrorText,
    },
    /// The job was cancelled; the money is back on the balance.
    Cancelled {
        /// The job.
        job: JobId,
    },
}

impl UserMessage {
    /// The job the message is about.
    #[must_use]
    pub fn job(&self) -> JobId {
        match self {
            UserMessage::Working { job }
            | UserMessage::Progress { job, .. }
            | UserMessage::Delivered { job, .. }
            | UserMessage::Failed { job, .. }
            | UserMessage::Cancelled { job } => *job,
        }
    }
}

/// Why a message was not handed over.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum MessengerError {
    /// The channel could not be reached; the call may be repeated.
    #[error("messenger unavailable: {reason}")]
    Unavailable {
        /// Why.
        reason: String,
    },
    /// The user cannot be reached (blocked the bot, deleted the chat); repeating will not help.
    #[error("user unreachable: {reason}")]
    Unreachable {
        /// Why.
        reason: String,
    },
}

/// Tells users about their jobs.
///
/// Contract: the final messages (`Delivered`, `Failed`, `Cancelled`) of one job MUST reach the user at most once
/// each, even when repeated: the job service repeats them when an operation is replayed after a crash.
/// `Working` and `Progress` are best effort.
#[async_trait]
pub trait Messenger: Send + Sync {
    /// Sends `message` to `user`.
    ///
    /// # Errors
    /// [`MessengerError`].
    async fn send(&self, user: UserId, message: UserMessage) -> Result<(), MessengerError>;
}

/// The job service's [`JobNotifier`] over a [`Messenger`]: each final notice becomes the message a user reads.
pub struct MessengerNotifier<M: ?Sized> {
    messenger: std::sync::Arc<M>,
}

impl<M: Messenger + ?Sized> MessengerNotifier<M> {
    /// A notifier sending through `messenger`.
    pub fn new(messenger: std::sync::Arc<M>) -> MessengerNotifier<M> {
        MessengerNotifier { messenger }
    }
}

#[async_trait]
impl<M: Messenger + ?Sized> JobNotifier for MessengerNotifier<M> {
    async fn notify(&self, user: UserId, notice: JobNotice) -> Result<(), JobNotifyError> {
        let message = match notice {
            JobNotice::Succeeded { job, result } => {
                let kind = result.as_ref().map_or(MediaKind::File, |key| MediaKind::of(key.mime()));
                UserMessage::Delivered { job, asset: result, kind }
            }
            JobNotice::Failed { job, reason } => UserMessage::Failed { job, reason },
            JobNotice::DeadLettered { job } => {
                UserMessage::Failed { job, reason: ErrorText::new("every attempt failed") }
            }
            JobNotice::Cancelled { job } => UserMessage::Cancelled { job },
        };
        match self.messenger.send(user, message).await {
            // A user who blocked the bot will never read it: the notice is done, not retried forever.
            Ok(()) | Err(MessengerError::Unreachable { .. }) => Ok(()),
            Err(MessengerError::Unavailable { reason }) => Err(JobNotifyError::Unavailable { reason }),
        }
    }
}
