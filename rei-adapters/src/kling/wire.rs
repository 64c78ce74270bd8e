//! Kling's wire format: request bodies, the `{code, message, request_id, data}` envelope, the task object, and
//! the mapping of every answer into the port's types.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rei_core::generation::{AttemptRef, GenerationTask, Output, OutputMedia, ProviderError, RemoteMedia, TaskStatus};
use rei_core::jobs::ErrorText;
use rei_core::money::{UnitPrice, round_to_kopeck};
use rei_core::routing::Capability;
use rust_decimal::{Decimal, RoundingStrategy};
use serde::Deserialize;
use serde_json::{Map, Value};

/// Longest decimal text read from an answer (`final_unit_deduction`, `duration`).
const DECIMAL_LEN_MAX: usize = 32;
/// Longest task id accepted from Kling (its ids are 18 digits).
pub(super) const TASK_ID_LEN_MAX: usize = 128;
/// The longest `Retry-After` honoured; a longer one is cut to this.
const RETRY_AFTER_MAX: Duration = Duration::from_secs(600);

/// Words in a failed task's `task_status_msg` that mean the content was refused (the user's doing), in English
/// and in Chinese (内容 content, 安全 safety, 风险 risk, 敏感 sensitive, 违规 violation, 审核 moderation).
const REFUSAL_WORDS: [&str; 14] = [
    "content",
    "safety",
    "risk",
    "sensitive",
    "violat",
    "moderat",
    "inappropriate",
    "nsfw",
    "内容",
    "安全",
    "风险",
    "敏感",
    "违规",
    "审核",
];

/// Which of Kling's video APIs a capability goes to.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Endpoint {
    TextToVideo,
    ImageToVideo,
    VideoExtend,
}

impl Endpoint {
    /// The endpoint of `capability`; images are not Kling's.
    pub(super) fn of(capability: Capability) -> Result<Endpoint, ProviderError> {
        match capability {
            Capability::TextToVideo => Ok(Endpoint::TextToVideo),
            Capability::ImageToVideo => Ok(Endpoint::ImageToVideo),
            Capability::VideoToVideo => Ok(Endpoint::VideoExtend),
            Capability::TextToImage => Err(ProviderError::Unsupported { what: "text-to-image" }),
            Capability::ImageEdit => Err(ProviderError::Unsupported { what: "image editing" }),
        }
    }

    /// The create path; a task is queried at this path followed by `/{id}`.
    pub(super) const fn path(self) -> &'static str {
        match self {
            Endpoint::TextToVideo => "/v1/videos/text2video",
            Endpoint::ImageToVideo => "/v1/videos/image2video",
            Endpoint::VideoExtend => "/v1/videos/video-extend",
        }
    }
}

/// The create body of `task` on `endpoint`. Options the task leaves unset are left out (Kling's defaults apply);
/// video-extend takes no model, mode, duration or aspect ratio (they come from the source video).
pub(super) fn submit_body(
    endpoint: Endpoint,
    attempt: &AttemptRef,
    task: &GenerationTask,
    callback_url: Option<&str>,
) -> Result<Value, ProviderError> {
    let mut body = Map::new();
    let mut put = |name: &str, value: Value| {
        body.insert(name.to_owned(), value);
    };
    match endpoint {
        Endpoint::TextToVideo | Endpoint::ImageToVideo => {
            put("model_name", task.model.clone().into());
            if let Some(mode) = task.mode {
                put("mode", mode.as_str().into());
            }
            if let Some(ratio) = &task.aspect_ratio {
                put("aspect_ratio", ratio.as_str().into());
            }
            if let Some(seconds) = task.duration_s {
                put("duration", seconds.to_string().into());
            }
        }
        Endpoint::VideoExtend => {
            let video = task.source_video.as_deref().filter(|id| !id.is_empty()).ok_or_else(|| {
                ProviderError::Rejected { reason: ErrorText::new("video-to-video needs the video to continue") }
            })?;
            put("video_id", video.into());
        }
    }
    if endpoint == Endpoint::ImageToVideo {
        let image = task
            .images
            .first()
            .ok_or_else(|| ProviderError::Rejected { reason: ErrorText::new("image-to-video needs an input image") })?;
        put("image", STANDARD.encode(&image.bytes).into());
    }
    if endpoint == Endpoint::TextToVideo || !task.prompt.trim().is_empty() {
        put("prompt", task.prompt.clone().into());
    }
    put("external_task_id", attempt.external_id().into());
    if let Some(url) = callback_url {
        put("callback_url", url.into());
    }
    Ok(Value::Object(body))
}

/// One answer of Kling's API, read into what the mapping needs.
#[derive(Clone, PartialEq, Debug)]
pub(super) enum Reply {
    /// HTTP 2xx with `code` 0: the `data` object (`Null` when absent).
    Data(Value),
    /// The envelope with a `code` other than 0, or `code` 0 on an HTTP error status.
    Refused {
        /// The HTTP status.
        status: u16,
        /// The business code.
        code: i64,
        /// Kling's `message`.
        message: String,
        /// The `Retry-After` header, when one was sent.
        retry_after: Option<Duration>,
    },
    /// A body that is not the envelope (not JSON, no integer `code`).
    NotEnvelope {
        /// The HTTP status.
        status: u16,
        /// The `Retry-After` header, when one was sent.
        retry_after: Option<Duration>,
    },
}

#[derive(Deserialize)]
struct Envelope {
    code: i64,
    #[serde(default)]
    message: Value,
    #[serde(default)]
    data: Value,
}

impl Reply {
    /// Reads an answer's status and body.
    pub(super) fn parse(status: u16, retry_after: Option<Duration>, body: &[u8]) -> Reply {
        let Ok(envelope) = serde_json::from_slice::<Envelope>(body) else {
            return Reply::NotEnvelope { status, retry_after };
        };
        if envelope.code == 0 && (200..300).contains(&status) {
            return Reply::Data(envelope.data);
        }
        let message = match envelope.message {
            Value::String(text) => text,
            Value::Null => String::new(),
            other => other.to_string(),
        };
        Reply::Refused { status, code: envelope.code, message, retry_after }
    }

    /// `true` for Kling's "token not yet valid" (1003) and "token expired" (1004): worth one new token.
    pub(super) fn is_stale_token(&self) -> bool {
        matches!(self, Reply::Refused { status: 401, code: 1003 | 1004, .. })
    }
}

/// `Retry-After` in seconds, bounded by [`RETRY_AFTER_MAX`]; an HTTP date or anything else is ignored.
pub(super) fn retry_after(value: Option<&str>) -> Option<Duration> {
    let seconds: u64 = value?.trim().parse().ok()?;
    Some(Duration::from_secs(seconds).min(RETRY_AFTER_MAX))
}

/// What a submit's reply means: [`Reply::Data`] must carry the new task's id.
pub(super) fn submitted(reply: Reply) -> Result<(), ProviderError> {
    match reply {
        Reply::Data(data) => match data.get("task_id").and_then(task_id_text) {
            Some(_) => Ok(()),
            None => Err(garbage("kling accepted the task without a task_id")),
        },
        other => Err(refusal(other)),
    }
}

/// What a query's reply means. Kling's "not found" (code 1203, or HTTP 404 without the envelope) is
/// [`TaskStatus::NotFound`]: Kling never received the submit.
pub(super) fn queried(reply: Reply, unit_cost: UnitPrice) -> Result<TaskStatus, ProviderError> {
    match reply {
        Reply::Data(data) => task_status(data, unit_cost),
        Reply::Refused { code: 1203, .. } | Reply::NotEnvelope { status: 404, .. } => Ok(TaskStatus::NotFound),
        other => Err(refusal(other)),
    }
}

/// The port's error for a reply that is not [`Reply::Data`].
pub(super) fn refusal(reply: Reply) -> ProviderError {
    match reply {
        Reply::Data(_) => garbage("kling answered code 0 where an error was expected"),
        Reply::NotEnvelope { status, retry_after } => {
            if status >= 500 || status == 429 {
                ProviderError::Retryable {
                    reason: ErrorText::new(&format!("kling answered HTTP {status}")),
                    retry_after,
                }
            } else {
                garbage(&format!("kling answered HTTP {status} with a body that is not its JSON envelope"))
            }
        }
        Reply::Refused { status, code, message, retry_after } => {
            let reason = ErrorText::new(&format!("kling {code} (HTTP {status}): {message}"));
            match code {
                1301 | 1200 | 1201 | 1300 => ProviderError::Rejected { reason },
                1302 | 1303 | 5000 | 5001 | 5002 => ProviderError::Retryable { reason, retry_after },
                1000..=1004 | 1100..=1103 | 1202 | 1203 | 1304 => ProviderError::Unavailable { reason },
                _ if status >= 500 || status == 429 => ProviderError::Retryable { reason, retry_after },
                _ if (200..300).contains(&status) => ProviderError::Garbage { reason },
                _ => ProviderError::Unavailable { reason },
            }
        }
    }
}

/// Kling's task states.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum KlingTaskState {
    /// `submitted`: queued.
    Submitted,
    /// `processing`: being generated.
    Processing,
    /// `succeed`: done, with a result.
    Succeed,
    /// `failed`: done, without one.
    Failed,
}

impl KlingTaskState {
    /// Reads Kling's `task_status`.
    #[must_use]
    pub fn parse(text: &str) -> Option<KlingTaskState> {
        match text {
            "submitted" => Some(KlingTaskState::Submitted),
            "processing" => Some(KlingTaskState::Processing),
            "succeed" => Some(KlingTaskState::Succeed),
            "failed" => Some(KlingTaskState::Failed),
            _ => None,
        }
    }

    /// Kling's name.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            KlingTaskState::Submitted => "submitted",
            KlingTaskState::Processing => "processing",
            KlingTaskState::Succeed => "succeed",
            KlingTaskState::Failed => "failed",
        }
    }
}

/// The task object: `data` of a create or query answer, and the whole body of a callback. Only what REI reads.
#[derive(Deserialize)]
pub(super) struct TaskDto {
    pub(super) task_id: Value,
    pub(super) task_status: String,
    #[serde(default)]
    task_status_msg: Option<String>,
    #[serde(default)]
    pub(super) task_info: Option<TaskInfoDto>,
    #[serde(default)]
    task_result: Option<TaskResultDto>,
    #[serde(default)]
    final_unit_deduction: Option<Value>,
}

#[derive(Deserialize)]
pub(super) struct TaskInfoDto {
    #[serde(default)]
    pub(super) external_task_id: Option<String>,
}

#[derive(Deserialize)]
struct TaskResultDto {
    #[serde(default)]
    videos: Option<Vec<VideoDto>>,
}

#[derive(Deserialize)]
struct VideoDto {
    #[serde(default)]
    id: Option<Value>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    duration: Option<Value>,
}

/// A task id as text: Kling sends a string of digits; a bare number is taken too. Empty or overlong: `None`.
pub(super) fn task_id_text(value: &Value) -> Option<String> {
    let text = match value {
        Value::String(text) => text.clone(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    (!text.is_empty() && text.len() <= TASK_ID_LEN_MAX).then_some(text)
}

fn task_status(data: Value, unit_cost: UnitPrice) -> Result<TaskStatus, ProviderError> {
    let task: TaskDto =
        serde_json::from_value(data).map_err(|e| garbage(&format!("kling's task object is unreadable: {e}")))?;
    let state = KlingTaskState::parse(&task.task_status)
        .ok_or_else(|| garbage(&format!("kling's task_status {:?} is unknown", task.task_status)))?;
    match state {
        KlingTaskState::Submitted | KlingTaskState::Processing => Ok(TaskStatus::Pending { progress_percent: None }),
        KlingTaskState::Failed => Ok(TaskStatus::Failed(failure(task.task_status_msg.as_deref().unwrap_or("")))),
        KlingTaskState::Succeed => {
            let video = task
                .task_result
                .and_then(|r| r.videos)
                .and_then(|videos| videos.into_iter().next())
                .ok_or_else(|| garbage("kling's task succeeded without a video"))?;
            let url = video
                .url
                .filter(|url| url.starts_with("https://") || url.starts_with("http://"))
                .ok_or_else(|| garbage("kling's video has no http(s) url"))?;
            let units = units(task.final_unit_deduction.as_ref())?;
            let cost = units
                .checked_mul(unit_cost.kopecks())
                .and_then(|kopecks| round_to_kopeck(kopecks).ok())
                .ok_or_else(|| garbage("kling's final_unit_deduction times the unit cost is out of range"))?;
            Ok(TaskStatus::Done(Output {
                media: OutputMedia::Remote(RemoteMedia { url, mime: Some("video/mp4".to_owned()) }),
                cost,
                duration_ms: duration_ms(video.duration.as_ref())?,
                provider_ref: video.id.as_ref().and_then(task_id_text),
            }))
        }
    }
}

/// A failed task's error: refused content is the user's doing, anything else is worth another try.
pub(super) fn failure(message: &str) -> ProviderError {
    if message.trim().is_empty() {
        return ProviderError::Retryable {
            reason: ErrorText::new("kling task failed without a reason"),
            retry_after: None,
        };
    }
    let lower = message.to_lowercase();
    let reason = ErrorText::new(&format!("kling task failed: {message}"));
    if REFUSAL_WORDS.iter().any(|word| lower.contains(word)) {
        ProviderError::Rejected { reason }
    } else {
        ProviderError::Retryable { reason, retry_after: None }
    }
}

/// `final_unit_deduction`: a decimal string (a bare number is taken too); absent, null or empty is zero.
fn units(value: Option<&Value>) -> Result<Decimal, ProviderError> {
    match decimal(value) {
        Ok(Some(units)) => Ok(units),
        Ok(None) => Ok(Decimal::ZERO),
        Err(()) => Err(garbage("kling's final_unit_deduction is not a non-negative decimal")),
    }
}

/// A video's `duration` in seconds (`"5.1"`) as milliseconds (5,100), rounded half away from zero; absent,
/// null or empty is `None`.
fn duration_ms(value: Option<&Value>) -> Result<Option<u64>, ProviderError> {
    let bad = || garbage("kling's video duration is not a non-negative decimal of seconds");
    let Some(seconds) = decimal(value).map_err(|()| bad())? else {
        return Ok(None);
    };
    let ms = seconds
        .checked_mul(Decimal::from(1000))
        .ok_or_else(bad)?
        .round_dp_with_strategy(0, RoundingStrategy::MidpointAwayFromZero);
    u64::try_from(ms).map(Some).map_err(|_| bad())
}

/// A non-negative plain decimal (`1.5`, `10`) from a string or a number: `Ok(None)` when absent, null or empty,
/// `Err` for anything else (signs, exponents, separators, more than [`DECIMAL_LEN_MAX`] characters).
fn decimal(value: Option<&Value>) -> Result<Option<Decimal>, ()> {
    let text = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(text)) if text.is_empty() => return Ok(None),
        Some(Value::String(text)) => text.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(_) => return Err(()),
    };
    let (whole, fraction) = text.split_once('.').unwrap_or((&text, "0"));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if text.len() > DECIMAL_LEN_MAX || !digits(whole) || !digits(fraction) {
        return Err(());
    }
    Decimal::from_str_exact(&text).map(Some).map_err(|_| ())
}

pub(super) fn garbage(why: &str) -> ProviderError {
    ProviderError::Garbage { reason: ErrorText::new(why) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rei_core::money::Money;

    fn refused(status: u16, code: i64) -> ProviderError {
        refusal(Reply::Refused { status, code, message: "m".into(), retry_after: None })
    }

    #[test]
    fn every_documented_code_maps_to_what_the_worker_does() {
        // Proves Kling's error table maps as the issue says: balance and auth are not the user's fault, content
        // blocks are, rate limits and server errors are retried.
        for (status, code) in [(401, 1000), (401, 1001), (401, 1002), (401, 1003), (401, 1004)] {
            assert!(matches!(refused(status, code), ProviderError::Unavailable { .. }), "{code}");
        }
        for (status, code) in [(429, 1100), (429, 1101), (429, 1102), (403, 1103), (429, 1304), (404, 1202)] {
            assert!(matches!(refused(status, code), ProviderError::Unavailable { .. }), "{code}");
        }
        for (status, code) in [(400, 1200), (400, 1201), (400, 1300), (400, 1301)] {
            assert!(matches!(refused(status, code), ProviderError::Rejected { .. }), "{code}");
        }
        for (status, code) in [(429, 1302), (429, 1303), (500, 5000), (503, 5001), (504, 5002), (502, 7777)] {
            assert!(matches!(refused(status, code), ProviderError::Retryable { .. }), "{code}");
        }
        assert!(matches!(refused(200, 7777), ProviderError::Garbage { .. }));
        assert!(matches!(refused(400, 7777), ProviderError::Unavailable { .. }));
        let not_json = |status| refusal(Reply::parse(status, None, b"<html>"));
        assert!(matches!(not_json(200), ProviderError::Garbage { .. }));
        assert!(matches!(not_json(502), ProviderError::Retryable { .. }));
    }

    #[test]
    fn the_envelope_is_read_strictly() {
        // Proves only an integer code makes an envelope, and code 0 counts only on a success status.
        assert_eq!(Reply::parse(200, None, br#"{"code":0,"data":{"a":1}}"#), Reply::Data(serde_json::json!({"a":1})));
        for body in [&b""[..], b"null", b"[]", br#"{"code":"0"}"#, br#"{"message":"x"}"#, b"\xff\xfe"] {
            assert_eq!(Reply::parse(200, None, body), Reply::NotEnvelope { status: 200, retry_after: None });
        }
        assert!(matches!(Reply::parse(500, None, br#"{"code":0}"#), Reply::Refused { code: 0, status: 500, .. }));
        assert!(Reply::parse(401, None, br#"{"code":1004,"message":"expired"}"#).is_stale_token());
        assert!(!Reply::parse(401, None, br#"{"code":1002,"message":"invalid"}"#).is_stale_token());
        assert_eq!(retry_after(Some(" 3 ")), Some(Duration::from_secs(3)));
        assert_eq!(retry_after(Some("999999")), Some(RETRY_AFTER_MAX));
        assert_eq!(retry_after(Some("Wed, 21 Oct 2015 07:28:00 GMT")), None);
    }

    #[test]
    fn decimals_are_parsed_exactly_and_strictly() {
        // Proves units and durations are exact decimals and anything odd is refused rather than guessed.
        let s = |text: &str| Value::String(text.to_owned());
        assert_eq!(duration_ms(Some(&s("5.1"))), Ok(Some(5100)));
        assert_eq!(duration_ms(Some(&s("10"))), Ok(Some(10_000)));
        assert_eq!(duration_ms(Some(&s("5.0335"))), Ok(Some(5034)));
        assert_eq!(duration_ms(None), Ok(None));
        assert_eq!(units(Some(&s("1.5"))), Ok(Decimal::new(15, 1)));
        assert_eq!(units(Some(&serde_json::json!(2.5))), Ok(Decimal::new(25, 1)));
        assert_eq!(units(Some(&Value::Null)), Ok(Decimal::ZERO));
        for bad in ["-1", "+1", "1e3", "1_000", " 1", "1.", ".5", "1.2.3", "NaN", &"9".repeat(40)] {
            assert!(units(Some(&s(bad))).is_err(), "{bad}");
            assert!(duration_ms(Some(&s(bad))).is_err(), "{bad}");
        }
        assert!(units(Some(&serde_json::json!(true))).is_err());
        assert!(duration_ms(Some(&s("99999999999999999999999999"))).is_err());
    }

    #[test]
    fn a_succeeded_task_becomes_an_output_priced_at_the_unit_cost() {
        // Proves cost = units x unit cost rounded to the kopeck, with the duration, url and video id kept.
        let data = serde_json::json!({
            "task_id": "1", "task_status": "succeed", "final_unit_deduction": "1.5",
            "task_result": {"videos": [{"id": "v9", "url": "https://cdn/x.mp4", "duration": "5.1"}]}
        });
        let unit = UnitPrice::from_kopecks(Decimal::new(125, 1)).expect("positive");
        let Ok(TaskStatus::Done(out)) = task_status(data, unit) else { panic!("not done") };
        assert_eq!(out.cost, Money::from_kopecks(19));
        assert_eq!(out.duration_ms, Some(5100));
        assert_eq!(out.provider_ref.as_deref(), Some("v9"));
        let processing = serde_json::json!({"task_id": "1", "task_status": "processing", "task_result": {}});
        assert_eq!(task_status(processing, unit), Ok(TaskStatus::Pending { progress_percent: None }));
        for bad in [
            serde_json::json!({"task_id": "1", "task_status": "succeeded"}),
            serde_json::json!({"task_id": "1", "task_status": "succeed", "task_result": {}}),
            serde_json::json!({"task_id": "1", "task_status": "succeed", "task_result": {"videos": [{"url": "ftp://x"}]}}),
            serde_json::json!({"task_status": "succeed"}),
            serde_json::json!(null),
            serde_json::json!([1, 2]),
        ] {
            assert!(matches!(task_status(bad.clone(), unit), Err(ProviderError::Garbage { .. })), "{bad}");
        }
    }

    #[test]
    fn failure_messages_about_content_are_the_users_doing() {
        // Proves a content, safety or risk failure is not retried and anything else is.
        for refused in ["Content risk detected", "Failure to pass the risk control system", "SAFETY check", "内容违规"]
        {
            assert!(failure(refused).is_users_fault(), "{refused}");
        }
        for transient in ["internal error", "", "render timeout"] {
            assert!(matches!(failure(transient), ProviderError::Retryable { .. }), "{transient}");
        }
    }
}
