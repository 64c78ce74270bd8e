//! The [`GenerationProvider`] port: one provider's API, as the worker sees it.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;

use super::request::{AspectRatio, ImageSize, VideoMode};
use crate::ids::{JobId, ProviderId};
use crate::jobs::ErrorText;
use crate::money::Money;
use crate::routing::Capability;

/// One attempt of one job: the id the provider knows it by (Kling's `external_task_id`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct AttemptRef {
    /// The job.
    pub job: JobId,
    /// The attempt, from 1 ([`crate::jobs::Job::attempts`] while it runs).
    pub attempt: u32,
}

impl AttemptRef {
    /// The provider-side id: `rei-<32 hex digits of the job>-<attempt>`, at most 48 characters of
    /// `a-z0-9-`, unique per attempt, so that a provider that deduplicates by it never merges two attempts and a
    /// retry of the same attempt is recognised.
    #[must_use]
    pub fn external_id(&self) -> String {
        format!("rei-{:032x}-{}", self.job.as_u128(), self.attempt)
    }

    /// Reads [`AttemptRef::external_id`] back (a callback names the attempt only by it).
    #[must_use]
    pub fn parse_external_id(text: &str) -> Option<AttemptRef> {
        let rest = text.strip_prefix("rei-")?;
        let (job, attempt) = rest.split_once('-')?;
        if job.len() != 32 || !job.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let job = u128::from_str_radix(job, 16).ok()?;
        let attempt = attempt.parse().ok()?;
        Some(AttemptRef { job: JobId::from(job), attempt })
    }
}

impl fmt::Display for AttemptRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.external_id())
    }
}

/// An input image, loaded from the asset store for the call.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct InputImage {
    /// Its media type (`image/png`, `image/jpeg`).
    pub mime: String,
    /// Its bytes.
    pub bytes: Vec<u8>,
}

/// Everything one provider call needs, resolved: the offer's model and the request's inputs loaded.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct GenerationTask {
    /// What is generated; it also picks the provider's endpoint (Kling's text2video, image2video, video-extend).
    pub capability: Capability,
    /// The provider's model id (`kling-v2-6`, `gemini-2.5-flash-image`), from the routed offer.
    pub model: String,
    /// The prompt.
    pub prompt: String,
    /// Input images: present for an edit or image-to-video.
    pub images: Vec<InputImage>,
    /// The provider's id of a video to continue, for video-to-video.
    pub source_video: Option<String>,
    /// The aspect ratio, when chosen.
    pub aspect_ratio: Option<AspectRatio>,
    /// The image size, when chosen (sent only to models that take one).
    pub image_size: Option<ImageSize>,
    /// Seconds of video.
    pub duration_s: Option<u32>,
    /// Kling's mode.
    pub mode: Option<VideoMode>,
}

/// Generated media, in memory.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Media {
    /// Its media type, as the provider said (`image/png`, `video/mp4`).
    pub mime: String,
    /// Its bytes.
    pub bytes: Vec<u8>,
}

/// Generated media the provider serves at a URL (Kling's result URLs live 30 days): the worker downloads it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct RemoteMedia {
    /// Where.
    pub url: String,
    /// Its media type, when the provider said.
    pub mime: Option<String>,
}

/// Where a result is.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum OutputMedia {
    /// In the answer (Gemini's `inlineData`).
    Inline(Media),
    /// At a URL, to download with [`GenerationProvider::download`].
    Remote(RemoteMedia),
}

/// A finished generation.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Output {
    /// The result.
    pub media: OutputMedia,
    /// What the provider charged us for it (Kling's `final_unit_deduction` at the configured unit cost; Gemini's
    /// configured price per image): the cost side of the job's margin.
    pub cost: Money,
    /// Milliseconds of video produced, when the provider said (`"5.1"` s is 5,100).
    pub duration_ms: Option<u64>,
    /// The provider's id of the result (Kling's video id, which video-extend takes), when it has one.
    pub provider_ref: Option<String>,
}

/// How far an attempt got, as the provider says.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum TaskStatus {
    /// Accepted and not finished; `progress_percent` when the provider reports one.
    Pending {
        /// 0 to 100.
        progress_percent: Option<u8>,
    },
    /// Finished with a result.
    Done(Output),
    /// Finished without one, for this reason.
    Failed(ProviderError),
    /// The provider has no task under this attempt's id: it never received the submit.
    NotFound,
}

/// What [`GenerationProvider::submit`] achieved.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Submission {
    /// Accepted; the result comes later through [`GenerationProvider::query`] (or a callback).
    Accepted,
    /// Done within the call (Gemini's `generateContent` answers with the image).
    Done(Output),
}

/// Bounds on downloading a result.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct DownloadLimits {
    /// The most bytes accepted; a larger body is refused as soon as it passes this.
    pub max_bytes: u64,
    /// The longest the whole download may take.
    pub timeout: Duration,
}

impl Default for DownloadLimits {
    /// 200 MiB in 120 s: above Kling's 10 s 1080p videos, under what a worker can keep in memory.
    fn default() -> DownloadLimits {
        DownloadLimits { max_bytes: 200 * 1024 * 1024, timeout: Duration::from_secs(120) }
    }
}

/// Why a provider call failed, grouped by what the worker does about it.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum ProviderError {
    /// The provider refused what the user asked (content blocked: Kling 1301, Gemini's `blockReason` or
    /// safety finish reasons; a prompt it will not take). The user's doing: no retry, no failover, the money
    /// goes back, and the provider's health is not marked down.
    #[error("refused: {reason}")]
    Rejected {
        /// What the provider said, for the user.
        reason: ErrorText,
    },
    /// The provider cannot serve anyone now (out of balance: Kling 1102; bad credentials; region refused; no
    /// permission for the model). Not the user's fault: fail over, and the breaker counts it.
    #[error("provider unavailable: {reason}")]
    Unavailable {
        /// What the provider said.
        reason: ErrorText,
    },
    /// A transient failure (HTTP 5xx, rate limited: Kling 1302/1303/5000-5002, Gemini 429/500/503): retry with
    /// backoff, here after `retry_after` when the provider said (Gemini's `RetryInfo`), or elsewhere.
    #[error("transient failure: {reason}")]
    Retryable {
        /// What the provider said.
        reason: ErrorText,
        /// When the provider asked to be called again.
        retry_after: Option<Duration>,
    },
    /// No answer in time, or the connection broke after the request was sent: the provider may have done the
    /// work. The outcome is unknown until the attempt is queried.
    #[error("no answer in time: {reason}")]
    Timeout {
        /// What was seen.
        reason: ErrorText,
    },
    /// The answer could not be understood (not JSON, fields missing, HTTP 200 without an image, a result file
    /// that is truncated or too large). Counts against the provider; fail over.
    #[error("unusable answer: {reason}")]
    Garbage {
        /// What was wrong.
        reason: ErrorText,
    },
    /// The provider does not offer the call (cancel on Gemini; query by our id on a synchronous API).
    #[error("{what} is not supported by this provider")]
    Unsupported {
        /// The call.
        what: &'static str,
    },
}

impl ProviderError {
    /// `true` when the user's request is at fault: no retry, no failover.
    #[must_use]
    pub fn is_users_fault(&self) -> bool {
        matches!(self, ProviderError::Rejected { .. })
    }

    /// The text kept on the job.
    #[must_use]
    pub fn text(&self) -> ErrorText {
        ErrorText::new(&self.to_string())
    }
}

/// One provider's API. Adapters map every wire error into a [`ProviderError`]; none panics on any answer.
///
/// Contract: `submit` MUST send `attempt.external_id()` where the API takes a client id (Kling's
/// `external_task_id`), and `query` MUST find the attempt by it, so that a worker that lost the answer to a
/// submit can learn whether the provider received it. A provider that cannot be asked says so through
/// [`GenerationProvider::can_query`].
#[async_trait]
pub trait GenerationProvider: Send + Sync {
    /// The provider's id, as the catalogue names it.
    fn id(&self) -> &ProviderId;

    /// `true` when [`GenerationProvider::query`] can find an attempt by our id (Kling). `false` for a
    /// synchronous API (Gemini): an attempt whose answer was lost cannot be recovered, only repeated.
    fn can_query(&self) -> bool;

    /// Starts the attempt.
    ///
    /// # Errors
    /// A [`ProviderError`]; [`ProviderError::Timeout`] when the outcome is unknown.
    async fn submit(&self, attempt: &AttemptRef, task: &GenerationTask) -> Result<Submission, ProviderError>;

    /// How the attempt stands, found by our attempt id.
    ///
    /// # Errors
    /// A [`ProviderError`] for the query itself ([`ProviderError::Unsupported`] when `can_query` is `false`);
    /// the attempt's own failure is [`TaskStatus::Failed`].
    async fn query(&self, attempt: &AttemptRef, task: &GenerationTask) -> Result<TaskStatus, ProviderError>;

    /// Asks the provider to stop the attempt, where it can.
    ///
    /// # Errors
    /// [`ProviderError::Unsupported`] by default.
    async fn cancel(&self, attempt: &AttemptRef, task: &GenerationTask) -> Result<(), ProviderError> {
        let _ = (attempt, task);
        Err(ProviderError::Unsupported { what: "cancel" })
    }

    /// Downloads a result the provider serves at a URL, within `limits`.
    ///
    /// # Errors
    /// [`ProviderError::Garbage`] for a body over `limits.max_bytes`, cut short or not the promised media;
    /// [`ProviderError::Timeout`] past `limits.timeout`; [`ProviderError::Retryable`] for an HTTP error.
    async fn download(&self, media: &RemoteMedia, limits: &DownloadLimits) -> Result<Media, ProviderError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn external_ids_round_trip_and_fit_kling() {
        // Proves the provider-side id names exactly one attempt and can be read back from a callback.
        let a = AttemptRef { job: JobId::from(u128::MAX), attempt: 16 };
        let id = a.external_id();
        assert!(id.len() <= 48 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'), "{id}");
        assert_eq!(AttemptRef::parse_external_id(&id), Some(a));
        assert_ne!(AttemptRef { attempt: 1, ..a }.external_id(), AttemptRef { attempt: 2, ..a }.external_id());
        for bad in ["", "rei-", "rei-zz-1", "job-00000000000000000000000000000001-1", "rei-1-1"] {
            assert_eq!(AttemptRef::parse_external_id(bad), None, "{bad}");
        }
    }
}
