//! Kling's official video API (feature `kling`): [`KlingProvider`] implements [`GenerationProvider`] over
//! text2video, image2video and video-extend, with the HS256 JWT Kling takes, and [`parse_callback`] reads the
//! task object Kling POSTs to a `callback_url`.
//!
//! - Auth: a JWT (`iss` = access key, `exp` = now + lifetime, `nbf` = now - 5 s) signed with the secret key,
//!   cached and signed anew when less than five minutes of its life remain; when Kling still answers 401 with
//!   1003 (not yet valid) or 1004 (expired), the call is repeated once with a new token.
//! - Ids: each submit sends `external_task_id` = [`AttemptRef::external_id`], and [`KlingProvider::query`]
//!   asks for `GET /v1/videos/{endpoint}/{external_task_id}`. Kling documents that the external id may stand for
//!   the task id; passing it as the path segment is this adapter's choice, the form Kling's docs leave open.
//! - Cost: Kling bills in units from prepaid packs; a task's `final_unit_deduction` times
//!   [`KlingConfig::unit_cost`], rounded to the kopeck by [`rei_core::money::round_to_kopeck`], is
//!   [`rei_core::generation::Output::cost`].
//! - Errors: every answer maps into a [`ProviderError`] (see [`GenerationProvider`] for what each means to
//!   the worker); nothing in an answer can make the adapter panic, and answers are read up to
//!   [`ANSWER_BYTES_MAX`].

mod token;
mod wire;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rei_core::generation::{
    AttemptRef, DownloadLimits, GenerationProvider, GenerationTask, Media, ProviderError, RemoteMedia, Submission,
    TaskStatus,
};
use rei_core::ids::ProviderId;
use rei_core::jobs::ErrorText;
use rei_core::money::UnitPrice;
use rei_core::time::Clock;
use serde_json::Value;

pub use token::REFRESH_MARGIN;
pub use wire::KlingTaskState;

use crate::http;
use token::Signer;
use wire::{Endpoint, Reply};

/// The global host, the default base URL.
pub const DEFAULT_BASE_URL: &str = "https://api-singapore.klingai.com";
/// The token lifetime Kling's examples use.
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(1800);
/// The default bound on each API call (connect, send, answer).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The most bytes of one API answer read; a longer answer is [`ProviderError::Garbage`].
pub const ANSWER_BYTES_MAX: usize = 1024 * 1024;
/// The most bytes of a callback body [`parse_callback`] reads.
pub const CALLBACK_BYTES_MAX: usize = 1024 * 1024;
/// The longest a result download may take whatever its [`DownloadLimits`] say.
const DOWNLOAD_TIMEOUT_MAX: Duration = Duration::from_secs(30 * 60);

/// A Kling model REI ships a default for: the version users pick and the `model_name` Kling takes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct KlingModel {
    /// The version as users name it (`3.0`).
    pub version: &'static str,
    /// Kling's `model_name` (`kling-v3`).
    pub model_name: &'static str,
}

/// The shipped defaults, newest first: Kling 3.0, 2.6 and 1.5. A task carries its model id already (from the
/// routed offer); this list is for configuration and the bot's menus, and like every model id it is
/// configuration, not a promise about Kling's catalogue.
pub const DEFAULT_MODELS: [KlingModel; 3] = [
    KlingModel { version: "3.0", model_name: "kling-v3" },
    KlingModel { version: "2.6", model_name: "kling-v2-6" },
    KlingModel { version: "1.5", model_name: "kling-v1-5" },
];

/// The shipped `model_name` of a Kling version (`"2.6"` -> `kling-v2-6`), when REI ships one.
#[must_use]
pub fn default_model(version: &str) -> Option<&'static str> {
    DEFAULT_MODELS.iter().find(|m| m.version == version).map(|m| m.model_name)
}

/// How to reach one Kling account.
#[derive(Clone)]
pub struct KlingConfig {
    /// The provider's id in the catalogue; `kling` by default.
    pub provider_id: ProviderId,
    /// Where the API is, without a trailing slash; [`DEFAULT_BASE_URL`] by default.
    pub base_url: String,
    /// The access key: the JWT's `iss`.
    pub access_key: String,
    /// The secret key the JWT is signed with.
    pub secret_key: String,
    /// The bound on each API call; [`DEFAULT_REQUEST_TIMEOUT`] by default.
    pub request_timeout: Duration,
    /// How long each signed token is valid; [`DEFAULT_TOKEN_LIFETIME`] by default. A lifetime under
    /// [`REFRESH_MARGIN`] signs a token for every call.
    pub token_lifetime: Duration,
    /// Sent as `callback_url` on every submit, when set: where Kling POSTs status changes.
    pub callback_url: Option<String>,
    /// Kopecks per Kling unit: turns `final_unit_deduction` into
    /// [`rei_core::generation::Output::cost`].
    pub unit_cost: UnitPrice,
}

impl KlingConfig {
    /// A configuration for one account, with the defaults for everything else.
    #[must_use]
    pub fn new(access_key: &str, secret_key: &str, unit_cost: UnitPrice) -> KlingConfig {
        KlingConfig {
            provider_id: default_provider_id(),
            base_url: DEFAULT_BASE_URL.to_owned(),
            access_key: access_key.to_owned(),
            secret_key: secret_key.to_owned(),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            token_lifetime: DEFAULT_TOKEN_LIFETIME,
            callback_url: None,
            unit_cost,
        }
    }
}

fn default_provider_id() -> ProviderId {
    ProviderId::parse("kling").expect("`kling` is a valid provider id")
}

impl fmt::Debug for KlingConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KlingConfig")
            .field("provider_id", &self.provider_id)
            .field("base_url", &self.base_url)
            .field("access_key", &self.access_key)
            .field("secret_key", &"<redacted>")
            .field("request_timeout", &self.request_timeout)
            .field("token_lifetime", &self.token_lifetime)
            .field("callback_url", &self.callback_url)
            .field("unit_cost", &self.unit_cost)
            .finish()
    }
}

/// What a task query's answer (its HTTP status and body) means, exactly as [`KlingProvider`]'s `query` reads it:
/// a status, or the error the answer maps to. Never panics, whatever the body.
///
/// # Errors
/// The [`ProviderError`] the answer maps to.
pub fn read_query_answer(status: u16, body: &[u8], unit_cost: UnitPrice) -> Result<TaskStatus, ProviderError> {
    wire::queried(Reply::parse(status, None, body), unit_cost)
}

/// What a submit's answer means, exactly as [`KlingProvider`]'s `submit` reads it. Never panics.
///
/// # Errors
/// The [`ProviderError`] the answer maps to.
pub fn read_submit_answer(status: u16, body: &[u8]) -> Result<(), ProviderError> {
    wire::submitted(Reply::parse(status, None, body))
}

/// Why a [`KlingProvider`] could not be made.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum KlingSetupError {
    /// The base URL is not an absolute `http` or `https` URL.
    #[error("kling base url must be an absolute http(s) url, got {0:?}")]
    BaseUrl(String),
    /// The access key or the secret key is empty.
    #[error("kling access key and secret key must both be set")]
    Keys,
    /// The request timeout is zero.
    #[error("kling request timeout must be above zero")]
    Timeout,
    /// The HTTP client could not be built.
    #[error("cannot build the http client: {0}")]
    Client(String),
}

/// Kling's video API as a [`GenerationProvider`].
#[derive(Debug)]
pub struct KlingProvider {
    id: ProviderId,
    base_url: String,
    callback_url: Option<String>,
    unit_cost: UnitPrice,
    signer: Signer,
    client: reqwest::Client,
    download_client: reqwest::Client,
}

impl KlingProvider {
    /// A provider for the account of `config`, telling time by `clock` (for the tokens' `exp` and `nbf`).
    ///
    /// # Errors
    /// [`KlingSetupError`] for a malformed base URL, empty keys, a zero timeout or a client that cannot be built.
    pub fn new(config: KlingConfig, clock: Arc<dyn Clock>) -> Result<KlingProvider, KlingSetupError> {
        let base_url = config.base_url.trim_end_matches('/').to_owned();
        match reqwest::Url::parse(&base_url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {}
            _ => return Err(KlingSetupError::BaseUrl(config.base_url)),
        }
        if config.access_key.is_empty() || config.secret_key.is_empty() {
            return Err(KlingSetupError::Keys);
        }
        if config.request_timeout.is_zero() {
            return Err(KlingSetupError::Timeout);
        }
        let client_error = |e: reqwest::Error| KlingSetupError::Client(e.to_string());
        Ok(KlingProvider {
            id: config.provider_id,
            base_url,
            callback_url: config.callback_url,
            unit_cost: config.unit_cost,
            signer: Signer::new(&config.access_key, &config.secret_key, config.token_lifetime, clock),
            client: http::client(config.request_timeout).map_err(client_error)?,
            download_client: http::client(DOWNLOAD_TIMEOUT_MAX).map_err(client_error)?,
        })
    }

    /// One call, repeated once with a new token when Kling refuses the token as not yet valid or expired.
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> Result<Reply, ProviderError> {
        let reply = self.send(method.clone(), path, body, self.signer.token()?).await?;
        if reply.is_stale_token() {
            return self.send(method, path, body, self.signer.resign()?).await;
        }
        Ok(reply)
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        token: String,
    ) -> Result<Reply, ProviderError> {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base_url))
            .bearer_auth(token)
            .header(reqwest::header::CONTENT_TYPE, "application/json");
        if let Some(body) = body {
            request = request.json(body);
        }
        let mut response = request.send().await.map_err(|e| http::send_error(&e))?;
        let status = response.status().as_u16();
        let retry_after =
            wire::retry_after(response.headers().get(reqwest::header::RETRY_AFTER).and_then(|v| v.to_str().ok()));
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| http::send_error(&e))? {
            if bytes.len().saturating_add(chunk.len()) > ANSWER_BYTES_MAX {
                return Err(wire::garbage(&format!("kling's answer is over {ANSWER_BYTES_MAX} bytes")));
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(Reply::parse(status, retry_after, &bytes))
    }
}

#[async_trait]
impl GenerationProvider for KlingProvider {
    fn id(&self) -> &ProviderId {
        &self.id
    }

    fn can_query(&self) -> bool {
        true
    }

    async fn submit(&self, attempt: &AttemptRef, task: &GenerationTask) -> Result<Submission, ProviderError> {
        let endpoint = Endpoint::of(task.capability)?;
        let body = wire::submit_body(endpoint, attempt, task, self.callback_url.as_deref())?;
        let reply = self.call(reqwest::Method::POST, endpoint.path(), Some(&body)).await?;
        wire::submitted(reply).map(|()| Submission::Accepted)
    }

    async fn query(&self, attempt: &AttemptRef, task: &GenerationTask) -> Result<TaskStatus, ProviderError> {
        let endpoint = Endpoint::of(task.capability)?;
        let path = format!("{}/{}", endpoint.path(), attempt.external_id());
        let reply = self.call(reqwest::Method::GET, &path, None).await?;
        wire::queried(reply, self.unit_cost)
    }

    async fn download(&self, media: &RemoteMedia, limits: &DownloadLimits) -> Result<Media, ProviderError> {
        http::download(&self.download_client, media, limits).await
    }
}

/// What a Kling callback says. Callbacks are not signed (Kling documents no signature or auth header), so
/// anyone can send one: the caller MUST treat it only as a hint to [`GenerationProvider::query`] the attempt,
/// and believe the query.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct KlingCallback {
    /// Kling's task id.
    pub task_id: String,
    /// The state the callback reports.
    pub state: KlingTaskState,
    /// The attempt, from `task_info.external_task_id`.
    pub attempt: AttemptRef,
}

/// Why a callback body was refused.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum CallbackError {
    /// The body is over [`CALLBACK_BYTES_MAX`].
    #[error("callback body is over {CALLBACK_BYTES_MAX} bytes")]
    TooLarge,
    /// The body is not Kling's task object.
    #[error("callback body is not a kling task: {0}")]
    Malformed(ErrorText),
    /// `task_status` is not one of Kling's states.
    #[error("callback task status {0} is unknown")]
    UnknownState(ErrorText),
    /// `task_info.external_task_id` is missing or is not an attempt id of REI's.
    #[error("callback names no attempt of ours")]
    NotOurs,
}

/// Reads the task object Kling POSTs to a `callback_url` (the bare object, without the `code`/`data` envelope).
///
/// # Errors
/// [`CallbackError`] for an oversized or malformed body, an unknown state, or a task that is not one of REI's.
pub fn parse_callback(body: &[u8]) -> Result<KlingCallback, CallbackError> {
    if body.len() > CALLBACK_BYTES_MAX {
        return Err(CallbackError::TooLarge);
    }
    let task: wire::TaskDto =
        serde_json::from_slice(body).map_err(|e| CallbackError::Malformed(ErrorText::new(&e.to_string())))?;
    let task_id = wire::task_id_text(&task.task_id)
        .ok_or_else(|| CallbackError::Malformed(ErrorText::new("task_id is not a 1 to 128 character id")))?;
    let state = KlingTaskState::parse(&task.task_status)
        .ok_or_else(|| CallbackError::UnknownState(ErrorText::new(&format!("{:?}", task.task_status))))?;
    let attempt = task
        .task_info
        .and_then(|info| info.external_task_id)
        .and_then(|id| AttemptRef::parse_external_id(&id))
        .ok_or(CallbackError::NotOurs)?;
    Ok(KlingCallback { task_id, state, attempt })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_models_map_versions_to_kling_ids() {
        // Proves the three shipped defaults and that an unknown version has none.
        assert_eq!(default_model("3.0"), Some("kling-v3"));
        assert_eq!(default_model("2.6"), Some("kling-v2-6"));
        assert_eq!(default_model("1.5"), Some("kling-v1-5"));
        assert_eq!(default_model("2.5"), None);
    }

    #[test]
    fn setup_refuses_what_cannot_work() {
        // Proves a bad base URL, empty keys and a zero timeout are refused at setup, and the secret never prints.
        let clock: Arc<dyn Clock> = Arc::new(crate::system::SystemClock::new());
        let config = KlingConfig::new("ak", "very-secret", UnitPrice::default());
        assert!(!format!("{config:?}").contains("very-secret"));
        assert_eq!(config.provider_id.as_str(), "kling");
        for url in ["", "api.klingai.com", "ftp://api.klingai.com", "https://"] {
            let bad = KlingConfig { base_url: url.to_owned(), ..config.clone() };
            assert!(matches!(KlingProvider::new(bad, clock.clone()), Err(KlingSetupError::BaseUrl(_))), "{url}");
        }
        let no_secret = KlingConfig { secret_key: String::new(), ..config.clone() };
        assert_eq!(KlingProvider::new(no_secret, clock.clone()).err(), Some(KlingSetupError::Keys));
        let no_time = KlingConfig { request_timeout: Duration::ZERO, ..config.clone() };
        assert_eq!(KlingProvider::new(no_time, clock.clone()).err(), Some(KlingSetupError::Timeout));
        let kling = KlingProvider::new(KlingConfig { base_url: format!("{DEFAULT_BASE_URL}/"), ..config }, clock);
        let kling = kling.expect("valid config");
        assert_eq!(kling.base_url, DEFAULT_BASE_URL);
        assert!(!format!("{kling:?}").contains("very-secret"));
    }
}
