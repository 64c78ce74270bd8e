//! What the provider adapters share (feature `http`): one HTTP client configuration, the mapping of transport
//! errors into [`ProviderError`], and downloads bounded in size and time.

use std::time::Duration;

use rei_core::generation::{DownloadLimits, Media, ProviderError, RemoteMedia};
use rei_core::jobs::ErrorText;

/// Longest an idle pooled connection is kept.
const POOL_IDLE: Duration = Duration::from_secs(90);
/// Longest a TCP connect may take before the call is given up as not sent.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A client for one provider: `timeout` bounds each whole call (connect, send, answer).
///
/// # Errors
/// The builder's error (the TLS backend failed to initialise).
pub fn client(timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    client_builder(timeout).build()
}

/// [`client`]'s settings, for an adapter that needs one more (Gemini refuses redirects, which would carry its
/// key header to another host).
pub fn client_builder(timeout: Duration) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(CONNECT_TIMEOUT.min(timeout))
        .pool_idle_timeout(POOL_IDLE)
        .user_agent(concat!("rei/", env!("CARGO_PKG_VERSION")))
}

/// The port's error for a failed send. A connect failure means the request never left: retryable, and the
/// provider cannot have done anything. A timeout, or a connection broken after the request was written, leaves
/// the outcome unknown.
#[must_use]
pub fn send_error(e: &reqwest::Error) -> ProviderError {
    let reason = ErrorText::new(&error_chain(e));
    if e.is_connect() {
        ProviderError::Retryable { reason, retry_after: None }
    } else if e.is_timeout() || e.is_request() || e.is_body() {
        ProviderError::Timeout { reason }
    } else if e.is_decode() {
        ProviderError::Garbage { reason }
    } else {
        ProviderError::Timeout { reason }
    }
}

/// `e` and its sources, one line.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Downloads `media` within `limits`: a declared length over the limit is refused before the body is read, a
/// body that grows past it is cut off, a body shorter than its declared length is refused as truncated, and the
/// whole download is bounded by `limits.timeout`.
///
/// # Errors
/// [`ProviderError::Garbage`] for too large, truncated or empty bodies; [`ProviderError::Timeout`] past the
/// time limit; [`ProviderError::Retryable`] for HTTP errors and failed connects.
pub async fn download(
    client: &reqwest::Client,
    media: &RemoteMedia,
    limits: &DownloadLimits,
) -> Result<Media, ProviderError> {
    match tokio::time::timeout(limits.timeout, download_unbounded_in_time(client, media, limits.max_bytes)).await {
        Ok(result) => result,
        Err(_) => Err(ProviderError::Timeout {
            reason: ErrorText::new(&format!("download not finished within {:?}", limits.timeout)),
        }),
    }
}

async fn download_unbounded_in_time(
    client: &reqwest::Client,
    media: &RemoteMedia,
    max_bytes: u64,
) -> Result<Media, ProviderError> {
    let garbage = |why: String| ProviderError::Garbage { reason: ErrorText::new(&why) };
    let mut response = client.get(&media.url).send().await.map_err(|e| download_error(&e))?;
    let status = response.status();
    if !status.is_success() {
        return Err(ProviderError::Retryable {
            reason: ErrorText::new(&format!("download answered HTTP {status}")),
            retry_after: None,
        });
    }
    let declared = response.content_length();
    if let Some(len) = declared
        && len > max_bytes
    {
        return Err(garbage(format!("result of {len} bytes is over the limit of {max_bytes}")));
    }
    let mime = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or(v).trim().to_owned())
        .filter(|v| !v.is_empty() && v != "application/octet-stream")
        .or_else(|| media.mime.clone())
        .unwrap_or_else(|| "application/octet-stream".to_owned());
    let capacity = usize::try_from(declared.unwrap_or(0).min(max_bytes)).unwrap_or(0);
    let mut bytes = Vec::with_capacity(capacity);
    loop {
        let chunk = response.chunk().await.map_err(|e| garbage(format!("result cut short: {}", error_chain(&e))))?;
        let Some(chunk) = chunk else { break };
        if bytes.len() as u64 + chunk.len() as u64 > max_bytes {
            return Err(garbage(format!("result is over the limit of {max_bytes} bytes")));
        }
        bytes.extend_from_slice(&chunk);
    }
    if let Some(len) = declared
        && bytes.len() as u64 != len
    {
        return Err(garbage(format!("result truncated: {} of {len} bytes", bytes.len())));
    }
    if bytes.is_empty() {
        return Err(garbage("result is empty".to_owned()));
    }
    Ok(Media { mime, bytes })
}

/// A download's send error: nothing is unknown about a GET, so a timeout is retryable like any other.
fn download_error(e: &reqwest::Error) -> ProviderError {
    let reason = ErrorText::new(&format!("download failed: {}", error_chain(e)));
    if e.is_timeout() {
        ProviderError::Timeout { reason }
    } else {
        ProviderError::Retryable { reason, retry_after: None }
    }
}
