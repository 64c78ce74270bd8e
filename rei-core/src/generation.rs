//! Generation: what a job asks a provider for, and the ports the worker talks through.
//!
//! - [`GenerationRequest`]: what the user asked for, kept on the job ([`crate::jobs::Job::request`]).
//! - [`GenerationProvider`]: one provider's API (Kling, Gemini, an embedder's own): submit, query by our attempt
//!   id, cancel, download a result.
//! - [`AssetStore`]: where inputs and results are kept (a local directory, an S3-compatible bucket).
//! - [`Messenger`]: what the user is told (the Telegram bot, a test's recording messenger).
//! - [`AttemptLog`]: one record per attempt, with the provider's cost, so that margin per job and per provider
//!   is known.

mod assets;
mod attempts;
mod messenger;
mod pipeline;
mod provider;
mod request;

pub use assets::{ASSET_KEY_LEN_MAX, AssetError, AssetInfo, AssetKey, AssetKeyError, AssetStore};
pub use attempts::{AttemptLog, AttemptLogError, AttemptOutcome, AttemptRecord};
pub use messenger::{MediaKind, Messenger, MessengerError, MessengerNotifier, UserMessage};
pub use pipeline::{
    FaultPoint, FaultPoints, NoFaults, Pipeline, PipelineConfig, PipelineError, PipelinePorts, RunOutcome, charge_for,
};
pub use provider::{
    AttemptRef, DownloadLimits, GenerationProvider, GenerationTask, InputImage, Media, Output, OutputMedia,
    ProviderError, RemoteMedia, Submission, TaskStatus,
};
pub use request::{
    AspectRatio, GenerationRequest, INPUT_IMAGES_MAX, ImageSize, PROMPT_LEN_MAX, RequestError, VideoMode,
};
