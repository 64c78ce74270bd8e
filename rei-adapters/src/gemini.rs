//! Google's Gemini API `generateContent` for the "Nano Banana" image models (feature `gemini`).
//!
//! The API is synchronous: one `POST {base}/v1beta/models/{model}:generateContent` answers with the image inline,
//! so [`GeminiProvider::submit`] returns [`Submission::Done`] and nothing can be queried afterwards. An attempt
//! whose answer was lost (a timeout) cannot be found again, only repeated.
//!
//! The base URL is configurable: a bot in a region Google refuses (Russia among them: HTTP 400
//! `FAILED_PRECONDITION` "User location is not supported") goes through a proxy, or a reseller that mirrors the
//! native API under its own base URL.
//!
//! How answers map onto [`ProviderError`]:
//! - an image: the last non-thought `inlineData` part of the first candidate, at the model's configured price;
//! - `promptFeedback.blockReason`, or a safety finish reason without an image: [`ProviderError::Rejected`];
//! - any other answer without an image (the "silent refusal": `STOP` with text only; `NO_IMAGE`, `IMAGE_OTHER`,
//!   `MAX_TOKENS`), and anything unreadable or over the size limit: [`ProviderError::Garbage`];
//! - HTTP 429 and 5xx: [`ProviderError::Retryable`], after `RetryInfo.retryDelay` when Google gives one;
//! - region refused, bad or missing key, no permission, unknown model: [`ProviderError::Unavailable`];
//! - HTTP 400 `INVALID_ARGUMENT` about the request itself: [`ProviderError::Rejected`].

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use rei_core::generation::{
    AttemptRef, DownloadLimits, GenerationProvider, GenerationTask, INPUT_IMAGES_MAX, ImageSize, Media, Output,
    OutputMedia, ProviderError, RemoteMedia, Submission, TaskStatus,
};
use rei_core::ids::ProviderId;
use rei_core::jobs::ErrorText;
use rei_core::money::Money;
use rei_core::routing::Capability;
use reqwest::header::{HeaderValue, RETRY_AFTER};
use serde::{Deserialize, Serialize};

use crate::http;

/// Google's endpoint.
pub const DEFAULT_BASE_URL: &str = "https://generativelanguage.googleapis.com";
/// How long one call may take by default: a Pro 4K image takes up to about a minute.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);
/// The largest answer read by default: a 4K PNG is some 20 MB, a third more in base64.
pub const DEFAULT_RESPONSE_MAX_BYTES: usize = 64 * 1024 * 1024;
/// The rouble rate the shipped prices are converted at: kopecks per US dollar (82 ₽).
pub const DEFAULT_KOPECKS_PER_USD: u32 = 8_200;

/// The most bytes of an error answer read: Google's error bodies are a few hundred bytes.
const ERROR_BODY_MAX_BYTES: usize = 64 * 1024;
/// The most bytes of the model's own text quoted in an error.
const QUOTE_LEN_MAX: usize = 200;
/// The longest media type accepted from an answer.
const MIME_LEN_MAX: usize = 100;
/// The longest model id put in a URL.
const MODEL_LEN_MAX: usize = 128;

/// Google's list prices per image, in thousandths of a US dollar (reference: pricing, paid tier).
/// `gemini-2.5-flash-image`: 1,290 output tokens at $30 per million; `gemini-3-pro-image-preview`: $0.134 at 1K or
/// 2K; `gemini-3.1-flash-image-preview`: about $0.067 at 1K (a third-party figure).
const LIST_PRICES_MILLS: [(&str, u32); 3] =
    [("gemini-2.5-flash-image", 39), ("gemini-3-pro-image-preview", 134), ("gemini-3.1-flash-image-preview", 67)];
/// The sizes priced apart from their model's price: Pro at 4K $0.24; 3.1 Flash at 512 about $0.045 and at 4K about
/// $0.151 (third-party figures). 3.1 Flash at 2K has no published figure and takes the model's price.
const LIST_SIZE_PRICES_MILLS: [(&str, ImageSize, u32); 3] = [
    ("gemini-3-pro-image-preview", ImageSize::FourK, 240),
    ("gemini-3.1-flash-image-preview", ImageSize::Half, 45),
    ("gemini-3.1-flash-image-preview", ImageSize::FourK, 151),
];
/// The models that take `imageConfig.imageSize`; the others refuse it.
const SIZED_MODELS: [&str; 2] = ["gemini-3-pro-image-preview", "gemini-3.1-flash-image-preview"];

/// Finish reasons that mean the content was refused: the user's request is at fault.
const REFUSAL_FINISH_REASONS: [&str; 8] = [
    "SAFETY",
    "IMAGE_SAFETY",
    "PROHIBITED_CONTENT",
    "IMAGE_PROHIBITED_CONTENT",
    "BLOCKLIST",
    "SPII",
    "RECITATION",
    "IMAGE_RECITATION",
];

/// Base64 as Google writes it (standard alphabet), read whether or not it is padded.
const BASE64_STANDARD: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);
/// The URL-safe alphabet, which protobuf's JSON mapping also allows.
const BASE64_URL_SAFE: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A price for one model at one image size, above the model's own price in [`GeminiConfig::prices`].
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct SizePrice {
    /// The model id.
    pub model: String,
    /// The size.
    pub size: ImageSize,
    /// What Google charges us per image of that size.
    pub price: Money,
}

/// How to reach the Gemini API and what it costs.
#[derive(Clone)]
pub struct GeminiConfig {
    /// The provider's id in the catalogue (`gemini`).
    pub provider_id: ProviderId,
    /// `https://generativelanguage.googleapis.com`, or a proxy's or a reseller's base that mirrors the native API
    /// (any path prefix included, no trailing slash needed).
    pub base_url: String,
    /// The API key, sent as `x-goog-api-key`.
    pub api_key: String,
    /// The longest one call may take, answer included.
    pub timeout: Duration,
    /// What Google charges us per image, by model id: [`Output::cost`]. A model without a price is not called.
    pub prices: BTreeMap<String, Money>,
    /// Prices of particular sizes, for models in [`GeminiConfig::sized_models`]; they win over `prices`.
    pub size_prices: Vec<SizePrice>,
    /// The models that take `imageSize`; the size is left out of calls to the others.
    pub sized_models: BTreeSet<String>,
    /// The largest answer read; a larger one is refused as [`ProviderError::Garbage`].
    pub response_max_bytes: usize,
}

impl GeminiConfig {
    /// Google's endpoint with `api_key`, the shipped prices at [`DEFAULT_KOPECKS_PER_USD`], the shipped list of
    /// sized models, [`DEFAULT_TIMEOUT`] and [`DEFAULT_RESPONSE_MAX_BYTES`].
    #[must_use]
    pub fn new(api_key: &str) -> GeminiConfig {
        let provider_id = match ProviderId::parse("gemini") {
            Ok(id) => id,
            Err(e) => panic!("invariant broken: the literal provider id is invalid: {e}"),
        };
        GeminiConfig {
            provider_id,
            base_url: DEFAULT_BASE_URL.to_owned(),
            api_key: api_key.to_owned(),
            timeout: DEFAULT_TIMEOUT,
            prices: BTreeMap::new(),
            size_prices: Vec::new(),
            sized_models: SIZED_MODELS.iter().map(|m| (*m).to_owned()).collect(),
            response_max_bytes: DEFAULT_RESPONSE_MAX_BYTES,
        }
        .at_usd_rate(DEFAULT_KOPECKS_PER_USD)
    }

    /// The shipped list prices converted at `kopecks_per_usd`, each rounded up to the kopeck, in place of
    /// [`GeminiConfig::prices`] and [`GeminiConfig::size_prices`].
    #[must_use]
    pub fn at_usd_rate(mut self, kopecks_per_usd: u32) -> GeminiConfig {
        let convert = |mills: u32| {
            let tenths_of_kopeck = i64::from(mills) * i64::from(kopecks_per_usd);
            Money::from_kopecks((tenths_of_kopeck + 999) / 1000)
        };
        self.prices = LIST_PRICES_MILLS.iter().map(|(model, mills)| ((*model).to_owned(), convert(*mills))).collect();
        self.size_prices = LIST_SIZE_PRICES_MILLS
            .iter()
            .map(|(model, size, mills)| SizePrice { model: (*model).to_owned(), size: *size, price: convert(*mills) })
            .collect();
        self
    }

    /// `true` when `model` takes `imageSize`.
    #[must_use]
    pub fn takes_image_size(&self, model: &str) -> bool {
        self.sized_models.contains(model)
    }

    /// What one image of `model` costs us at `size` (the size counts only for models that take one), or `None`
    /// when no price is configured.
    #[must_use]
    pub fn price(&self, model: &str, size: Option<ImageSize>) -> Option<Money> {
        let size = size.filter(|_| self.takes_image_size(model));
        let by_size = size.and_then(|size| self.size_prices.iter().find(|p| p.model == model && p.size == size));
        by_size.map(|p| p.price).or_else(|| self.prices.get(model).copied())
    }
}

impl fmt::Debug for GeminiConfig {
    /// Everything but the API key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeminiConfig")
            .field("provider_id", &self.provider_id)
            .field("base_url", &self.base_url)
            .field("api_key", &"<redacted>")
            .field("timeout", &self.timeout)
            .field("prices", &self.prices)
            .field("size_prices", &self.size_prices)
            .field("sized_models", &self.sized_models)
            .field("response_max_bytes", &self.response_max_bytes)
            .finish()
    }
}

/// Why a [`GeminiProvider`] cannot be built from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum GeminiSetupError {
    /// The API key is empty or holds characters a header cannot carry.
    #[error("the Gemini API key must be non-empty visible ASCII")]
    ApiKey,
    /// The base URL is not an absolute `http` or `https` URL.
    #[error("the Gemini base URL must be an absolute http(s) URL, got {url:?}")]
    BaseUrl {
        /// What was given.
        url: String,
    },
    /// A zero timeout or a zero answer size limit.
    #[error("the Gemini timeout and answer size limit must be above zero")]
    Limits,
    /// The HTTP client could not be built.
    #[error("failed to build the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
}

/// The [`GenerationProvider`] for Gemini's image models.
pub struct GeminiProvider {
    config: GeminiConfig,
    /// `base_url` without its trailing slashes.
    base: String,
    key: HeaderValue,
    client: reqwest::Client,
}

impl fmt::Debug for GeminiProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeminiProvider").field("config", &self.config).finish_non_exhaustive()
    }
}

impl GeminiProvider {
    /// A provider calling the API `config` names, with its own HTTP client.
    ///
    /// # Errors
    /// A [`GeminiSetupError`] for a key, base URL or limit that cannot work, or a client that cannot be built.
    pub fn new(config: GeminiConfig) -> Result<GeminiProvider, GeminiSetupError> {
        let key_ok = !config.api_key.is_empty() && config.api_key.bytes().all(|b| b.is_ascii_graphic());
        let mut key = HeaderValue::from_str(&config.api_key).ok().filter(|_| key_ok).ok_or(GeminiSetupError::ApiKey)?;
        key.set_sensitive(true);
        let base = config.base_url.trim_end_matches('/').to_owned();
        let url_ok = reqwest::Url::parse(&base)
            .is_ok_and(|url| matches!(url.scheme(), "http" | "https") && url.has_host() && url.query().is_none());
        if !url_ok {
            return Err(GeminiSetupError::BaseUrl { url: config.base_url });
        }
        if config.timeout.is_zero() || config.response_max_bytes == 0 {
            return Err(GeminiSetupError::Limits);
        }
        // No redirects: reqwest strips only its known credential headers on a cross-host redirect, not
        // `x-goog-api-key`. Google does not redirect these calls; a 3xx is mapped like any other error.
        let client = http::client_builder(config.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(GeminiSetupError::Client)?;
        Ok(GeminiProvider { config, base, key, client })
    }

    /// The configuration in use.
    #[must_use]
    pub fn config(&self) -> &GeminiConfig {
        &self.config
    }

    /// Checks `task` before anything is sent, and finds its price.
    fn price_of(&self, task: &GenerationTask) -> Result<Money, ProviderError> {
        let rejected = |why: &str| ProviderError::Rejected { reason: ErrorText::new(why) };
        match task.capability {
            Capability::TextToImage if !task.images.is_empty() => {
                return Err(rejected("text-to-image takes no input images; an edit does"));
            }
            Capability::ImageEdit if task.images.is_empty() => {
                return Err(rejected("an image edit needs at least one input image"));
            }
            Capability::TextToImage | Capability::ImageEdit => {}
            Capability::TextToVideo | Capability::ImageToVideo | Capability::VideoToVideo => {
                return Err(ProviderError::Unsupported { what: "video generation" });
            }
        }
        if task.images.len() > INPUT_IMAGES_MAX {
            return Err(rejected(&format!("at most {INPUT_IMAGES_MAX} input images are taken")));
        }
        if task.prompt.trim().is_empty() {
            return Err(rejected("the prompt is empty"));
        }
        let model_ok = !task.model.is_empty()
            && task.model.len() <= MODEL_LEN_MAX
            && task.model.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
        if !model_ok {
            return Err(ProviderError::Unavailable {
                reason: ErrorText::new(&format!("model id {:?} is not a Gemini model id", task.model)),
            });
        }
        self.config.price(&task.model, task.image_size).ok_or_else(|| ProviderError::Unavailable {
            reason: ErrorText::new(&format!("no price is configured for model {}", task.model)),
        })
    }
}

#[async_trait]
impl GenerationProvider for GeminiProvider {
    fn id(&self) -> &ProviderId {
        &self.config.provider_id
    }

    /// `false`: `generateContent` answers within the call and keeps nothing to ask about later.
    fn can_query(&self) -> bool {
        false
    }

    /// Calls `generateContent` and returns the image. Gemini takes no client id, so `attempt` is not sent.
    async fn submit(&self, attempt: &AttemptRef, task: &GenerationTask) -> Result<Submission, ProviderError> {
        let _ = attempt;
        let price = self.price_of(task)?;
        let body = request_body(task, self.config.takes_image_size(&task.model));
        let url = format!("{}/v1beta/models/{}:generateContent", self.base, task.model);
        let mut response = self
            .client
            .post(url)
            .header("x-goog-api-key", self.key.clone())
            .json(&body)
            .send()
            .await
            .map_err(|e| http::send_error(&e))?;
        let status = response.status();
        if status.is_success() {
            let body = read_bounded(&mut response, self.config.response_max_bytes).await?;
            return parse_answer(&body, price).map(Submission::Done);
        }
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        // The status is known whatever happens to the body, so a body that cannot be read is mapped by it alone.
        let body = read_bounded(&mut response, ERROR_BODY_MAX_BYTES).await.unwrap_or_default();
        Err(map_error(status.as_u16(), &body, retry_after))
    }

    /// [`ProviderError::Unsupported`]: there is nothing to find an attempt by.
    async fn query(&self, attempt: &AttemptRef, task: &GenerationTask) -> Result<TaskStatus, ProviderError> {
        let _ = (attempt, task);
        Err(ProviderError::Unsupported { what: "query" })
    }

    /// [`ProviderError::Unsupported`]: results come inline, never at a URL.
    async fn download(&self, media: &RemoteMedia, limits: &DownloadLimits) -> Result<Media, ProviderError> {
        let _ = (media, limits);
        Err(ProviderError::Unsupported { what: "download" })
    }
}

/// Reads the body, refusing it as soon as it passes `max_bytes`.
async fn read_bounded(response: &mut reqwest::Response, max_bytes: usize) -> Result<Vec<u8>, ProviderError> {
    let too_large = || ProviderError::Garbage {
        reason: ErrorText::new(&format!("the answer is over the limit of {max_bytes} bytes")),
    };
    let declared = response.content_length();
    if declared.is_some_and(|len| len > max_bytes as u64) {
        return Err(too_large());
    }
    let mut bytes = Vec::with_capacity(declared.map_or(0, |len| usize::try_from(len).unwrap_or(0)));
    while let Some(chunk) = response.chunk().await.map_err(|e| http::send_error(&e))? {
        if bytes.len().saturating_add(chunk.len()) > max_bytes {
            return Err(too_large());
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GenerateRequest<'a> {
    contents: [RequestContent<'a>; 1],
    generation_config: GenerationConfig<'a>,
}

#[derive(Serialize)]
struct RequestContent<'a> {
    role: &'static str,
    parts: Vec<RequestPart<'a>>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum RequestPart<'a> {
    Text {
        text: &'a str,
    },
    Inline {
        #[serde(rename = "inlineData")]
        inline_data: RequestInlineData<'a>,
    },
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RequestInlineData<'a> {
    mime_type: &'a str,
    data: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GenerationConfig<'a> {
    response_modalities: [&'static str; 2],
    #[serde(skip_serializing_if = "Option::is_none")]
    image_config: Option<ImageConfig<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ImageConfig<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    aspect_ratio: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    image_size: Option<&'static str>,
}

/// The request: the prompt, then each input image inline; the size only when the model takes one.
fn request_body(task: &GenerationTask, takes_image_size: bool) -> GenerateRequest<'_> {
    let mut parts = Vec::with_capacity(1 + task.images.len());
    parts.push(RequestPart::Text { text: &task.prompt });
    for image in &task.images {
        let data = base64::engine::general_purpose::STANDARD.encode(&image.bytes);
        parts.push(RequestPart::Inline { inline_data: RequestInlineData { mime_type: &image.mime, data } });
    }
    let aspect_ratio = task.aspect_ratio.as_ref().map(|r| r.as_str());
    let image_size = task.image_size.filter(|_| takes_image_size).map(ImageSize::as_str);
    let image_config =
        (aspect_ratio.is_some() || image_size.is_some()).then_some(ImageConfig { aspect_ratio, image_size });
    GenerateRequest {
        contents: [RequestContent { role: "user", parts }],
        generation_config: GenerationConfig { response_modalities: ["TEXT", "IMAGE"], image_config },
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Answer<'a> {
    #[serde(default, borrow)]
    candidates: Option<Vec<Candidate<'a>>>,
    #[serde(default)]
    prompt_feedback: Option<PromptFeedback>,
    #[serde(default)]
    response_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PromptFeedback {
    #[serde(default)]
    block_reason: Option<String>,
    #[serde(default)]
    block_reason_message: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Candidate<'a> {
    #[serde(default, borrow)]
    content: Option<AnswerContent<'a>>,
    #[serde(default)]
    finish_reason: Option<String>,
    #[serde(default)]
    finish_message: Option<String>,
}

#[derive(Deserialize)]
struct AnswerContent<'a> {
    #[serde(default, borrow)]
    parts: Option<Vec<AnswerPart<'a>>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AnswerPart<'a> {
    #[serde(default, borrow)]
    text: Option<Cow<'a, str>>,
    #[serde(default, borrow, alias = "inline_data")]
    inline_data: Option<AnswerInlineData<'a>>,
    #[serde(default)]
    thought: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AnswerInlineData<'a> {
    #[serde(default, alias = "mime_type")]
    mime_type: Option<String>,
    #[serde(default, borrow)]
    data: Option<Cow<'a, str>>,
}

/// What an HTTP 2xx `generateContent` answer means, exactly as [`GeminiProvider`]'s `submit` reads it: the image
/// at `price`, or why there is none. Never panics, whatever the body.
///
/// # Errors
/// The [`ProviderError`] the answer maps to.
pub fn read_answer(body: &[u8], price: Money) -> Result<Output, ProviderError> {
    parse_answer(body, price)
}

/// What an error answer (its HTTP status and body) means, as [`GeminiProvider`] reads it. Never panics.
#[must_use]
pub fn read_error(http_status: u16, body: &[u8]) -> ProviderError {
    map_error(http_status, body, None)
}

/// Maps an HTTP 2xx answer: the image, or why there is none.
fn parse_answer(body: &[u8], price: Money) -> Result<Output, ProviderError> {
    let garbage = |why: String| ProviderError::Garbage { reason: ErrorText::new(&why) };
    let answer: Answer<'_> =
        serde_json::from_slice(body).map_err(|e| garbage(format!("the answer is not JSON: {e}")))?;
    if let Some(reason) = answer.prompt_feedback.as_ref().and_then(|f| f.block_reason.as_deref()) {
        let detail = answer.prompt_feedback.as_ref().and_then(|f| f.block_reason_message.as_deref());
        let text = format!("the prompt was blocked by Google ({}){}", clip(reason), suffix(detail));
        return Err(ProviderError::Rejected { reason: ErrorText::new(&text) });
    }
    let Some(candidate) = answer.candidates.as_ref().and_then(|c| c.first()) else {
        return Err(garbage("the answer has no candidates".to_owned()));
    };
    let parts = candidate.content.as_ref().and_then(|c| c.parts.as_deref()).unwrap_or_default();
    let image = parts.iter().rev().filter(|p| p.thought != Some(true)).find_map(|p| p.inline_data.as_ref());
    if let Some(image) = image {
        let media = decode_image(image)?;
        let provider_ref = answer.response_id.filter(|id| !id.is_empty()).map(|id| clip(&id).to_owned());
        return Ok(Output { media: OutputMedia::Inline(media), cost: price, duration_ms: None, provider_ref });
    }
    let finish = candidate.finish_reason.as_deref().unwrap_or("none given");
    let said = parts.iter().filter(|p| p.thought != Some(true)).find_map(|p| p.text.as_deref());
    let detail = candidate.finish_message.as_deref().or(said);
    if REFUSAL_FINISH_REASONS.contains(&finish) {
        let text = format!("the image was refused by Google ({finish}){}", suffix(detail));
        return Err(ProviderError::Rejected { reason: ErrorText::new(&text) });
    }
    Err(garbage(format!("no image in the answer (finishReason {}){}", clip(finish), suffix(detail))))
}

/// The image of an `inlineData` part: its bytes decoded, its media type as Google said (or, unsaid, as its first
/// bytes show).
fn decode_image(image: &AnswerInlineData<'_>) -> Result<Media, ProviderError> {
    let garbage = |why: &str| ProviderError::Garbage { reason: ErrorText::new(why) };
    let data = image.data.as_deref().unwrap_or_default().trim();
    let bytes = BASE64_STANDARD
        .decode(data)
        .or_else(|_| BASE64_URL_SAFE.decode(data))
        .map_err(|_| garbage("the image's inlineData is not base64"))?;
    if bytes.is_empty() {
        return Err(garbage("the image's inlineData is empty"));
    }
    let said = image.mime_type.as_deref().map(str::trim).filter(|m| !m.is_empty());
    let mime = match said {
        Some(m) if m.len() <= MIME_LEN_MAX && m.starts_with("image/") && m.bytes().all(|b| b.is_ascii_graphic()) => {
            m.to_owned()
        }
        Some(m) => return Err(garbage(&format!("inlineData of type {:?} is not an image", clip(m)))),
        None => {
            sniff_image(&bytes).ok_or_else(|| garbage("inlineData without a mimeType is not a known image"))?.to_owned()
        }
    };
    Ok(Media { mime, bytes })
}

/// The media type of a PNG, JPEG, WebP or GIF, from its first bytes.
fn sniff_image(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if bytes.starts_with(&[0xff, 0xd8, 0xff]) {
        Some("image/jpeg")
    } else if bytes.len() >= 12 && bytes.starts_with(b"RIFF") && bytes.get(8..12) == Some(b"WEBP") {
        Some("image/webp")
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        Some("image/gif")
    } else {
        None
    }
}

#[derive(Deserialize)]
struct ErrorEnvelope {
    error: ErrorBody,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    details: Option<serde_json::Value>,
}

/// What can be done about an error answer: Google's `status` first, the HTTP status where it says nothing known.
fn map_error(http_status: u16, body: &[u8], retry_after_header: Option<Duration>) -> ProviderError {
    let error = serde_json::from_slice::<ErrorEnvelope>(body).ok().map(|e| e.error);
    let status = error.as_ref().and_then(|e| e.status.as_deref()).unwrap_or("");
    let message = match error.as_ref() {
        Some(e) => e.message.as_deref().map(clip).unwrap_or_default().to_owned(),
        None => clip(&String::from_utf8_lossy(body)).trim().to_owned(),
    };
    let details = error.as_ref().and_then(|e| e.details.as_ref()).and_then(|d| d.as_array());
    let detail_of = |suffix: &str, field: &str| {
        details
            .into_iter()
            .flatten()
            .filter(|d| d["@type"].as_str().is_some_and(|t| t.ends_with(suffix)))
            .find_map(|d| d[field].as_str().map(str::to_owned))
    };
    let retry_after = detail_of("google.rpc.RetryInfo", "retryDelay")
        .and_then(|delay| parse_retry_delay(&delay))
        .or(retry_after_header);
    // An invalid or expired key is answered 400 INVALID_ARGUMENT with ErrorInfo reason API_KEY_INVALID: ours.
    let key_refused = detail_of("google.rpc.ErrorInfo", "reason").is_some_and(|r| r.starts_with("API_KEY"));
    let reason = ErrorText::new(&if status.is_empty() {
        format!("HTTP {http_status}: {message}")
    } else {
        format!("HTTP {http_status} {}: {message}", clip(status))
    });
    let rejected = || ProviderError::Rejected { reason: reason.clone() };
    let unavailable = || ProviderError::Unavailable { reason: reason.clone() };
    let retryable = || ProviderError::Retryable { reason: reason.clone(), retry_after };
    match status {
        "INVALID_ARGUMENT" if key_refused => unavailable(),
        "INVALID_ARGUMENT" | "OUT_OF_RANGE" => rejected(),
        "FAILED_PRECONDITION" | "UNAUTHENTICATED" | "PERMISSION_DENIED" | "NOT_FOUND" => unavailable(),
        "RESOURCE_EXHAUSTED" | "INTERNAL" | "UNAVAILABLE" | "DEADLINE_EXCEEDED" | "ABORTED" | "UNKNOWN" => retryable(),
        _ => match http_status {
            400 | 413 => rejected(),
            408 | 429 | 500..=599 => retryable(),
            _ => unavailable(),
        },
    }
}

/// Reads a protobuf JSON duration (`"28s"`, `"1.5s"`, `"0.000000001s"`); digits past nanoseconds are dropped.
fn parse_retry_delay(text: &str) -> Option<Duration> {
    let number = text.trim().strip_suffix('s')?;
    let (whole, fraction) = match number.split_once('.') {
        Some((whole, fraction)) if !fraction.is_empty() => (whole, fraction),
        Some(_) => return None,
        None => (number, ""),
    };
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: u64 = whole.parse().ok()?;
    let mut nanos: u32 = 0;
    let mut digits = fraction.bytes().chain(std::iter::repeat(b'0'));
    for _ in 0..9 {
        nanos = nanos * 10 + u32::from(digits.next().unwrap_or(b'0') - b'0');
    }
    Some(Duration::new(secs, nanos))
}

/// `text` cut to [`QUOTE_LEN_MAX`] bytes at a character boundary.
fn clip(text: &str) -> &str {
    let mut end = text.len().min(QUOTE_LEN_MAX);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// `": {detail}"`, clipped, or nothing.
fn suffix(detail: Option<&str>) -> String {
    match detail.map(str::trim).filter(|d| !d.is_empty()) {
        Some(d) => format!(": {}", clip(d)),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRICE: Money = Money::from_kopecks(320);

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    fn answer(json: &serde_json::Value) -> Result<Output, ProviderError> {
        parse_answer(json.to_string().as_bytes(), PRICE)
    }

    #[test]
    fn retry_delays_are_read_without_floats() {
        // Proves protobuf durations become exact Durations and anything else is ignored, never a panic.
        let ok = [
            ("28s", Duration::from_secs(28)),
            ("1.5s", Duration::from_millis(1500)),
            ("0.000000001s", Duration::from_nanos(1)),
            (" 2.250s ", Duration::from_millis(2250)),
            ("3.1234567899s", Duration::new(3, 123_456_789)),
            ("0s", Duration::ZERO),
        ];
        for (text, want) in ok {
            assert_eq!(parse_retry_delay(text), Some(want), "{text}");
        }
        for bad in ["", "s", "28", "-1s", "1.s", ".5s", "1.5.5s", "abcs", "1e3s", "99999999999999999999999s", "٣s"] {
            assert_eq!(parse_retry_delay(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_last_non_thought_image_is_taken() {
        // Proves thought drafts are skipped and, of several final images, the last one is returned.
        let json = serde_json::json!({"candidates": [{"content": {"parts": [
            {"inlineData": {"mimeType": "image/png", "data": b64(b"draft")}, "thought": true},
            {"inlineData": {"mimeType": "image/jpeg", "data": b64(b"first")}},
            {"text": "here"},
            {"inline_data": {"mime_type": "image/webp", "data": b64(b"last")}},
            {"inlineData": {"mimeType": "image/png", "data": b64(b"late draft")}, "thought": true}
        ]}, "finishReason": "STOP"}], "responseId": "r-1"});
        let out = answer(&json).expect("image");
        assert_eq!(out.media, OutputMedia::Inline(Media { mime: "image/webp".into(), bytes: b"last".to_vec() }));
        assert_eq!((out.cost, out.duration_ms, out.provider_ref.as_deref()), (PRICE, None, Some("r-1")));
    }

    #[test]
    fn answers_without_an_image_are_refusals_or_garbage() {
        // Proves safety outcomes blame the request and every other imageless answer counts against the provider.
        let blocked = serde_json::json!({"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}});
        assert!(
            matches!(answer(&blocked), Err(ProviderError::Rejected { reason }) if reason.as_str().contains("PROHIBITED_CONTENT"))
        );
        for finish in REFUSAL_FINISH_REASONS {
            let json =
                serde_json::json!({"candidates": [{"content": {"parts": [{"text": "no"}]}, "finishReason": finish}]});
            assert!(
                matches!(answer(&json), Err(ProviderError::Rejected { reason }) if reason.as_str().contains(finish)),
                "{finish}"
            );
        }
        for finish in ["STOP", "NO_IMAGE", "IMAGE_OTHER", "OTHER", "MAX_TOKENS", "LANGUAGE"] {
            let json = serde_json::json!({"candidates": [{"content": {"parts": [{"text": "a cat"}]}, "finishReason": finish}]});
            assert!(
                matches!(answer(&json), Err(ProviderError::Garbage { reason }) if reason.as_str().contains(finish)),
                "{finish}"
            );
        }
        let thought_only = serde_json::json!({"candidates": [{"content": {"parts": [
            {"inlineData": {"mimeType": "image/png", "data": b64(b"draft")}, "thought": true}]}, "finishReason": "STOP"}]});
        assert!(matches!(answer(&thought_only), Err(ProviderError::Garbage { .. })));
    }

    #[test]
    fn malformed_answers_are_garbage_never_a_panic() {
        // Proves untrusted bodies of every broken shape map to Garbage.
        let png = b"\x89PNG\r\n\x1a\n....";
        let bodies: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b"<html>oops</html>".to_vec(),
            b"null".to_vec(),
            b"[]".to_vec(),
            b"{}".to_vec(),
            br#"{"candidates":[]}"#.to_vec(),
            br#"{"candidates":null}"#.to_vec(),
            br#"{"candidates":[{}]}"#.to_vec(),
            br#"{"candidates":[{"content":{"parts":[{"inlineData":{"mimeType":"image/png","data":"!!!"}}]}}]}"#.to_vec(),
            br#"{"candidates":[{"content":{"parts":[{"inlineData":{"mimeType":"image/png","data":""}}]}}]}"#.to_vec(),
            br#"{"candidates":[{"content":{"parts":[{"inlineData":{"mimeType":"image/png"}}]}}]}"#.to_vec(),
            br#"{"candidates":[{"content":{"parts":[{"inlineData":{"mimeType":"text/html","data":"QUJD"}}]}}]}"#.to_vec(),
            br#"{"candidates":[{"content":{"parts":[{"inlineData":{"data":"QUJD"}}]}}]}"#.to_vec(),
            br#"{"candidates":[{"content":{"parts":"x"}}]}"#.to_vec(),
            br#"{"candidates":[{"content":{"parts":[{"inlineData":{"mimeType":"image/png","data":"QUJD"},"thought":"yes"}]}}]}"#.to_vec(),
            vec![0xff, 0xfe, 0x00],
        ];
        for body in &bodies {
            assert!(
                matches!(parse_answer(body, PRICE), Err(ProviderError::Garbage { .. })),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        let unsaid = serde_json::json!({"candidates": [{"content": {"parts": [{"inlineData": {"data": b64(png)}}]}}]});
        assert!(
            matches!(answer(&unsaid), Ok(Output { media: OutputMedia::Inline(Media { mime, .. }), .. }) if mime == "image/png")
        );
        let unpadded = serde_json::json!({"candidates": [{"content": {"parts": [
            {"inlineData": {"mimeType": "image/png", "data": b64(b"ab").trim_end_matches('=')}}]}}]});
        assert!(
            matches!(answer(&unpadded), Ok(Output { media: OutputMedia::Inline(Media { bytes, .. }), .. }) if bytes == b"ab")
        );
    }

    #[test]
    fn errors_map_by_googles_status_then_by_http() {
        // Proves each documented error lands on the variant that tells the worker what to do.
        let body = |code: u16, status: &str, details: serde_json::Value| {
            serde_json::json!({"error": {"code": code, "message": "m", "status": status, "details": details}})
                .to_string()
                .into_bytes()
        };
        let retry = serde_json::json!([
            {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": []},
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "28s"}
        ]);
        assert_eq!(
            map_error(429, &body(429, "RESOURCE_EXHAUSTED", retry), None),
            ProviderError::Retryable {
                reason: ErrorText::new("HTTP 429 RESOURCE_EXHAUSTED: m"),
                retry_after: Some(Duration::from_secs(28))
            }
        );
        let key =
            serde_json::json!([{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}]);
        assert!(matches!(map_error(400, &body(400, "INVALID_ARGUMENT", key), None), ProviderError::Unavailable { .. }));
        let none = serde_json::Value::Null;
        let cases = [
            (400, "INVALID_ARGUMENT", "rejected"),
            (400, "FAILED_PRECONDITION", "unavailable"),
            (401, "UNAUTHENTICATED", "unavailable"),
            (403, "PERMISSION_DENIED", "unavailable"),
            (404, "NOT_FOUND", "unavailable"),
            (500, "INTERNAL", "retryable"),
            (503, "UNAVAILABLE", "retryable"),
            (504, "DEADLINE_EXCEEDED", "retryable"),
            (502, "SOMETHING_NEW", "retryable"),
            (418, "SOMETHING_NEW", "unavailable"),
        ];
        for (code, status, want) in cases {
            let got = match map_error(code, &body(code, status, none.clone()), None) {
                ProviderError::Rejected { .. } => "rejected",
                ProviderError::Unavailable { .. } => "unavailable",
                ProviderError::Retryable { retry_after: None, .. } => "retryable",
                other => panic!("{code} {status}: {other:?}"),
            };
            assert_eq!(got, want, "{code} {status}");
        }
        let by_http =
            [(400, "rejected"), (403, "unavailable"), (429, "retryable"), (502, "retryable"), (302, "unavailable")];
        for (code, want) in by_http {
            let got = match map_error(code, b"<html>Bad Gateway</html>", Some(Duration::from_secs(3))) {
                ProviderError::Rejected { .. } => "rejected",
                ProviderError::Unavailable { .. } => "unavailable",
                ProviderError::Retryable { retry_after: Some(d), .. } if d == Duration::from_secs(3) => "retryable",
                other => panic!("{code}: {other:?}"),
            };
            assert_eq!(got, want, "{code}");
        }
        let huge = format!(
            r#"{{"error":{{"status":"INTERNAL","message":"{}","details":{{"not":"a list"}}}}}}"#,
            "я".repeat(50_000)
        );
        match map_error(500, huge.as_bytes(), None) {
            ProviderError::Retryable { reason, .. } => assert!(reason.as_str().len() <= ErrorText::LEN_MAX),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn prices_follow_the_model_and_the_size_it_takes() {
        // Proves the shipped prices convert without floats and a size counts only for models that take one.
        let config = GeminiConfig::new("k");
        assert_eq!(config.price("gemini-2.5-flash-image", None), Some(Money::from_kopecks(320)));
        assert_eq!(config.price("gemini-2.5-flash-image", Some(ImageSize::FourK)), Some(Money::from_kopecks(320)));
        assert_eq!(config.price("gemini-3-pro-image-preview", Some(ImageSize::TwoK)), Some(Money::from_kopecks(1099)));
        assert_eq!(config.price("gemini-3-pro-image-preview", Some(ImageSize::FourK)), Some(Money::from_kopecks(1968)));
        assert_eq!(config.price("imagen-4", None), None);
        let at_100 = GeminiConfig::new("k").at_usd_rate(10_000);
        assert_eq!(at_100.price("gemini-3-pro-image-preview", None), Some(Money::from_kopecks(1340)));
        assert!(!format!("{config:?}").contains("\"k\""), "the key is not printed");
    }
}
