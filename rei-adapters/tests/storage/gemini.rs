//! The Gemini adapter against the fake Gemini API: every scripted outcome through `GeminiProvider`, mapped to
//! the exact port value, and what goes over the wire.

use std::time::{Duration, Instant};

use rei_adapters::fakes::gemini::{
    FakeGemini, FakeGeminiConfig, GeminiOutcome, IMAGE_MIME, IMAGE_PNG, RESPONSE_ID_PREFIX, THOUGHT_PNG,
};
use rei_adapters::gemini::{GeminiConfig, GeminiProvider, GeminiSetupError};
use rei_core::generation::{
    AspectRatio, AttemptRef, DownloadLimits, GenerationProvider, GenerationTask, ImageSize, InputImage, Media, Output,
    OutputMedia, ProviderError, RemoteMedia, Submission,
};
use rei_core::ids::JobId;
use rei_core::money::Money;
use rei_core::routing::Capability;

const KEY: &str = "test-key-1";
const FLASH: &str = "gemini-2.5-flash-image";
const PRO: &str = "gemini-3-pro-image-preview";

async fn fake() -> FakeGemini {
    FakeGemini::start(FakeGeminiConfig { api_key: KEY.to_owned(), thoughts: true }).await.expect("fake starts")
}

fn config(fake: &FakeGemini) -> GeminiConfig {
    let mut config = GeminiConfig::new(KEY);
    config.base_url = fake.base_url();
    config.timeout = Duration::from_secs(5);
    config.prices.insert(FLASH.to_owned(), Money::from_kopecks(3_21));
    config
}

fn provider(config: GeminiConfig) -> GeminiProvider {
    GeminiProvider::new(config).expect("provider")
}

fn attempt() -> AttemptRef {
    AttemptRef { job: JobId::from(7_u128), attempt: 1 }
}

fn task(model: &str) -> GenerationTask {
    GenerationTask {
        capability: Capability::TextToImage,
        model: model.to_owned(),
        prompt: "Сделай фото кота в космосе".to_owned(),
        images: Vec::new(),
        source_video: None,
        aspect_ratio: None,
        image_size: None,
        duration_s: None,
        mode: None,
    }
}

fn edit(model: &str) -> GenerationTask {
    GenerationTask {
        capability: Capability::ImageEdit,
        images: vec![
            InputImage { mime: "image/jpeg".to_owned(), bytes: vec![0xff, 0xd8, 0xff, 0xe0, 1, 2, 3] },
            InputImage { mime: "image/png".to_owned(), bytes: THOUGHT_PNG.to_vec() },
        ],
        ..task(model)
    }
}

async fn submit_with(fake: &FakeGemini, outcome: GeminiOutcome) -> Result<Submission, ProviderError> {
    fake.script().push(outcome);
    provider(config(fake)).submit(&attempt(), &task(FLASH)).await
}

fn done(result: Result<Submission, ProviderError>) -> Output {
    match result {
        Ok(Submission::Done(output)) => output,
        other => panic!("expected an image, got {other:?}"),
    }
}

fn inline(output: &Output) -> &Media {
    match &output.media {
        OutputMedia::Inline(media) => media,
        OutputMedia::Remote(remote) => panic!("expected inline media, got {remote:?}"),
    }
}

#[tokio::test]
async fn a_success_returns_the_final_image_at_the_configured_price() {
    // Proves the image returned is the final one (not the thought draft before it), with its bytes and media
    // type, the configured price as cost, and the response id as reference.
    let fake = fake().await;
    let mut config = config(&fake);
    config.base_url.push('/');
    let output = done(provider(config).submit(&attempt(), &task(FLASH)).await);
    assert_eq!(inline(&output), &Media { mime: IMAGE_MIME.to_owned(), bytes: IMAGE_PNG.to_vec() });
    assert_ne!(IMAGE_PNG, THOUGHT_PNG, "the draft differs from the final image");
    assert_eq!(output.cost, Money::from_kopecks(3_21));
    assert_eq!(output.duration_ms, None);
    assert_eq!(output.provider_ref, Some(format!("{RESPONSE_ID_PREFIX}1")));
    assert_eq!(fake.requests(), 1);
    assert_eq!(fake.images_generated(), 1);
    assert_eq!(fake.last_model().as_deref(), Some(FLASH));
    let body = fake.last_body().expect("a JSON body");
    assert_eq!(body["contents"][0]["role"], "user");
    assert_eq!(body["contents"][0]["parts"][0]["text"], "Сделай фото кота в космосе");
    assert_eq!(body["generationConfig"]["responseModalities"], serde_json::json!(["TEXT", "IMAGE"]));
    assert!(body["generationConfig"].get("imageConfig").is_none(), "no image options chosen: {body}");
}

#[tokio::test]
async fn the_last_of_several_final_images_is_taken() {
    // Proves that of several non-thought images the last is returned, and a later thought draft is skipped.
    let fake = fake().await;
    let b64 = |b: &[u8]| {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(b)
    };
    let body = serde_json::json!({"candidates": [{"content": {"parts": [
        {"inlineData": {"mimeType": "image/png", "data": b64(&THOUGHT_PNG)}},
        {"inlineData": {"mimeType": "image/jpeg", "data": b64(b"\xff\xd8\xff final")}},
        {"inlineData": {"mimeType": "image/png", "data": b64(&IMAGE_PNG)}, "thought": true}
    ]}, "finishReason": "STOP"}]});
    let output = done(submit_with(&fake, GeminiOutcome::Raw { status: 200, body: body.to_string() }).await);
    assert_eq!(inline(&output), &Media { mime: "image/jpeg".to_owned(), bytes: b"\xff\xd8\xff final".to_vec() });
    assert_eq!(output.provider_ref, None, "no responseId in this answer");
}

#[tokio::test]
async fn image_size_is_sent_only_to_models_that_take_it() {
    // Proves imageSize reaches Pro and is left out for 2.5 Flash, while the aspect ratio goes to both, and that
    // the cost follows the size for the model that takes it.
    let fake = fake().await;
    let provider = provider(config(&fake));
    let sized = |model: &str| GenerationTask {
        aspect_ratio: Some(AspectRatio::parse("16:9").expect("ratio")),
        image_size: Some(ImageSize::FourK),
        ..task(model)
    };
    let output = done(provider.submit(&attempt(), &sized(PRO)).await);
    let body = fake.last_body().expect("body");
    assert_eq!(fake.last_model().as_deref(), Some(PRO));
    assert_eq!(body["generationConfig"]["imageConfig"], serde_json::json!({"aspectRatio": "16:9", "imageSize": "4K"}));
    assert_eq!(Some(output.cost), provider.config().price(PRO, Some(ImageSize::FourK)));
    assert_ne!(Some(output.cost), provider.config().price(PRO, Some(ImageSize::OneK)), "4K costs more");

    let output = done(provider.submit(&attempt(), &sized(FLASH)).await);
    let body = fake.last_body().expect("body");
    assert_eq!(fake.last_model().as_deref(), Some(FLASH));
    assert_eq!(body["generationConfig"]["imageConfig"], serde_json::json!({"aspectRatio": "16:9"}));
    assert_eq!(output.cost, Money::from_kopecks(3_21));
}

#[tokio::test]
async fn input_images_are_sent_inline_only_for_edits() {
    // Proves an edit sends each input image as inlineData (its type, standard base64) after the prompt, and a
    // text-to-image request sends none.
    use base64::Engine as _;
    let fake = fake().await;
    let provider = provider(config(&fake));
    done(provider.submit(&attempt(), &task(FLASH)).await);
    assert_eq!(fake.last_sent_inline_data(), Some(false));

    let edit = edit(FLASH);
    done(provider.submit(&attempt(), &edit).await);
    assert_eq!(fake.last_sent_inline_data(), Some(true));
    let body = fake.last_body().expect("body");
    let parts = body["contents"][0]["parts"].as_array().expect("parts");
    assert_eq!(parts.len(), 3);
    assert_eq!(parts[0]["text"], edit.prompt.as_str());
    for (part, image) in parts[1..].iter().zip(&edit.images) {
        assert_eq!(part["inlineData"]["mimeType"], image.mime.as_str());
        let data = part["inlineData"]["data"].as_str().expect("data");
        assert_eq!(base64::engine::general_purpose::STANDARD.decode(data).expect("standard base64"), image.bytes);
    }
}

#[tokio::test]
async fn a_slow_answer_within_the_timeout_is_a_success() {
    // Proves a slow answer that arrives before the client timeout is taken.
    let fake = fake().await;
    let output = done(submit_with(&fake, GeminiOutcome::Slow(Duration::from_millis(100))).await);
    assert_eq!(inline(&output).bytes, IMAGE_PNG.to_vec());
}

#[tokio::test]
async fn server_errors_are_retryable_without_a_delay() {
    // Proves 500 INTERNAL, 503 UNAVAILABLE and a non-JSON 502 are transient, with no retry delay given.
    let fake = fake().await;
    let outcomes = [
        (GeminiOutcome::ServerError, "HTTP 500 INTERNAL"),
        (GeminiOutcome::Overloaded, "HTTP 503 UNAVAILABLE"),
        (GeminiOutcome::Raw { status: 502, body: "<html>Bad Gateway</html>".to_owned() }, "HTTP 502"),
    ];
    for (outcome, prefix) in outcomes {
        match submit_with(&fake, outcome).await {
            Err(ProviderError::Retryable { reason, retry_after: None }) => {
                assert!(reason.as_str().starts_with(prefix), "{reason}");
            }
            other => panic!("{prefix}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_hang_is_a_timeout() {
    // Proves a provider that does not answer yields Timeout (outcome unknown) once the client timeout passes.
    let fake = fake().await;
    fake.script().push(GeminiOutcome::Timeout);
    let mut config = config(&fake);
    config.timeout = Duration::from_millis(300);
    let started = Instant::now();
    let result = provider(config).submit(&attempt(), &task(FLASH)).await;
    assert!(matches!(result, Err(ProviderError::Timeout { .. })), "{result:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "the client gave up on time: {:?}", started.elapsed());
}

#[tokio::test]
async fn a_success_after_the_timeout_is_a_timeout_though_the_image_was_made() {
    // Proves the case the worker must treat as unknown: the client times out, and the provider still made (and
    // bills) the image, which cannot be fetched afterwards.
    let fake = fake().await;
    fake.script().push(GeminiOutcome::SucceedAfterTimeout(Duration::from_millis(600)));
    let mut config = config(&fake);
    config.timeout = Duration::from_millis(300);
    let provider = provider(config);
    let result = provider.submit(&attempt(), &task(FLASH)).await;
    assert!(matches!(result, Err(ProviderError::Timeout { .. })), "{result:?}");
    assert!(!provider.can_query());
    tokio::time::timeout(Duration::from_secs(5), fake.wait_images_generated(1)).await.expect("the image was made");
    assert_eq!(fake.images_generated(), 1);
}

#[tokio::test]
async fn a_blocked_prompt_is_rejected() {
    // Proves promptFeedback.blockReason is the user's fault, and says why.
    let fake = fake().await;
    match submit_with(&fake, GeminiOutcome::Blocked).await {
        Err(e @ ProviderError::Rejected { .. }) => {
            assert!(e.is_users_fault());
            assert!(e.to_string().contains("PROHIBITED_CONTENT"), "{e}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn an_image_safety_finish_is_rejected() {
    // Proves finishReason IMAGE_SAFETY without an image is the user's fault, and says why.
    let fake = fake().await;
    match submit_with(&fake, GeminiOutcome::ImageSafety).await {
        Err(ProviderError::Rejected { reason }) => assert!(reason.as_str().contains("IMAGE_SAFETY"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_silent_refusal_is_garbage() {
    // Proves STOP with text only counts against the provider, naming the finish reason and quoting the text.
    let fake = fake().await;
    match submit_with(&fake, GeminiOutcome::SilentRefusal).await {
        Err(ProviderError::Garbage { reason }) => {
            assert!(reason.as_str().contains("finishReason STOP"), "{reason}");
            assert!(reason.as_str().contains("describe it instead"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_rate_limit_carries_googles_retry_delay() {
    // Proves 429 RESOURCE_EXHAUSTED is retryable after exactly RetryInfo.retryDelay, whole and fractional.
    let fake = fake().await;
    for delay in [Duration::from_secs(28), Duration::from_millis(1500)] {
        match submit_with(&fake, GeminiOutcome::RateLimited(delay)).await {
            Err(ProviderError::Retryable { reason, retry_after }) => {
                assert_eq!(retry_after, Some(delay));
                assert!(reason.as_str().starts_with("HTTP 429 RESOURCE_EXHAUSTED"), "{reason}");
            }
            other => panic!("{delay:?}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_refused_region_makes_the_provider_unavailable() {
    // Proves 400 FAILED_PRECONDITION (region) is not the user's fault: fail over to a proxy or reseller.
    let fake = fake().await;
    match submit_with(&fake, GeminiOutcome::RegionRefused).await {
        Err(e @ ProviderError::Unavailable { .. }) => {
            assert!(!e.is_users_fault());
            assert!(e.to_string().contains("User location is not supported"), "{e}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn an_invalid_argument_is_rejected() {
    // Proves 400 INVALID_ARGUMENT about the request itself is the user's fault.
    let fake = fake().await;
    let body =
        r#"{"error":{"code":400,"message":"Request payload size exceeds the limit","status":"INVALID_ARGUMENT"}}"#;
    let result = submit_with(&fake, GeminiOutcome::Raw { status: 400, body: body.to_owned() }).await;
    assert!(
        matches!(&result, Err(ProviderError::Rejected { reason }) if reason.as_str().contains("payload size")),
        "{result:?}"
    );
}

#[tokio::test]
async fn a_body_that_is_not_json_is_garbage() {
    // Proves an HTTP 200 that is not JSON counts against the provider.
    let fake = fake().await;
    let result = submit_with(&fake, GeminiOutcome::Garbage).await;
    assert!(
        matches!(&result, Err(ProviderError::Garbage { reason }) if reason.as_str().contains("not JSON")),
        "{result:?}"
    );
}

#[tokio::test]
async fn answers_are_read_within_the_size_limit() {
    // Proves a large image under the limit arrives whole, and an answer over the limit is refused as Garbage.
    let fake = fake().await;
    let mut config = config(&fake);
    config.response_max_bytes = 2 * 1024 * 1024;
    let provider = provider(config);
    fake.script().push(GeminiOutcome::HugeImage(1024 * 1024));
    let output = done(provider.submit(&attempt(), &task(FLASH)).await);
    let media = inline(&output);
    assert_eq!(media.bytes.len(), 1024 * 1024);
    assert_eq!(&media.bytes[..IMAGE_PNG.len()], IMAGE_PNG.as_slice());

    fake.script().push(GeminiOutcome::HugeImage(2 * 1024 * 1024));
    let result = provider.submit(&attempt(), &task(FLASH)).await;
    assert!(
        matches!(&result, Err(ProviderError::Garbage { reason }) if reason.as_str().contains("over the limit")),
        "{result:?}"
    );
}

#[tokio::test]
async fn a_wrong_or_missing_key_makes_the_provider_unavailable() {
    // Proves the fake checks x-goog-api-key, and that a refused key (400 API_KEY_INVALID, 403 PERMISSION_DENIED)
    // is the provider's problem, not the user's.
    let fake = fake().await;
    let mut wrong = config(&fake);
    wrong.api_key = "not-the-key".to_owned();
    let result = provider(wrong).submit(&attempt(), &task(FLASH)).await;
    assert!(
        matches!(&result, Err(ProviderError::Unavailable { reason }) if reason.as_str().contains("API key not valid")),
        "{result:?}"
    );
    assert_eq!(fake.images_generated(), 0);
    assert_eq!(fake.script().pending(), 0, "nothing was scripted, nothing taken");

    let forbidden =
        r#"{"error":{"code":403,"message":"Method doesn't allow unregistered callers.","status":"PERMISSION_DENIED"}}"#;
    let result = submit_with(&fake, GeminiOutcome::Raw { status: 403, body: forbidden.to_owned() }).await;
    assert!(
        matches!(&result, Err(ProviderError::Unavailable { reason }) if reason.as_str().contains("PERMISSION_DENIED")),
        "{result:?}"
    );

    let missing = reqwest::Client::new()
        .post(format!("{}/v1beta/models/{FLASH}:generateContent", fake.base_url()))
        .body(r#"{"contents":[{"parts":[{"text":"x"}]}]}"#)
        .send()
        .await
        .expect("the fake answers");
    assert_eq!(missing.status().as_u16(), 403);
    let body: serde_json::Value = missing.json().await.expect("json");
    assert_eq!(body["error"]["status"], "PERMISSION_DENIED");
}

#[tokio::test]
async fn tasks_it_cannot_serve_are_refused_before_anything_is_sent() {
    // Proves video, mismatched inputs, an unpriced model and a model id unfit for a URL never reach the API.
    let fake = fake().await;
    let provider = provider(config(&fake));
    let video = GenerationTask { capability: Capability::TextToVideo, ..task(FLASH) };
    assert_eq!(provider.submit(&attempt(), &video).await, Err(ProviderError::Unsupported { what: "video generation" }));
    let edit_without_image = GenerationTask { images: Vec::new(), ..edit(FLASH) };
    assert!(matches!(provider.submit(&attempt(), &edit_without_image).await, Err(ProviderError::Rejected { .. })));
    let text_with_image = GenerationTask { capability: Capability::TextToImage, ..edit(FLASH) };
    assert!(matches!(provider.submit(&attempt(), &text_with_image).await, Err(ProviderError::Rejected { .. })));
    let unpriced = provider.submit(&attempt(), &task("imagen-4.0-generate-001")).await;
    assert!(
        matches!(&unpriced, Err(ProviderError::Unavailable { reason }) if reason.as_str().contains("no price")),
        "{unpriced:?}"
    );
    let traversal = provider.submit(&attempt(), &task("../../v1/secrets")).await;
    assert!(matches!(traversal, Err(ProviderError::Unavailable { .. })));
    assert_eq!(fake.requests(), 0);
}

#[tokio::test]
async fn query_and_download_are_unsupported() {
    // Proves the synchronous API admits it cannot find an attempt again nor serve results at a URL.
    let fake = fake().await;
    let provider = provider(config(&fake));
    assert_eq!(provider.id().as_str(), "gemini");
    assert!(!provider.can_query());
    assert_eq!(provider.query(&attempt(), &task(FLASH)).await, Err(ProviderError::Unsupported { what: "query" }));
    let remote = RemoteMedia { url: format!("{}/x.png", fake.base_url()), mime: None };
    assert_eq!(
        provider.download(&remote, &DownloadLimits::default()).await,
        Err(ProviderError::Unsupported { what: "download" })
    );
    assert_eq!(provider.cancel(&attempt(), &task(FLASH)).await, Err(ProviderError::Unsupported { what: "cancel" }));
    assert_eq!(fake.requests(), 0);
}

#[tokio::test]
async fn a_refused_connection_is_retryable() {
    // Proves a request that never left (nothing listening) is retryable: the provider cannot have done anything.
    let fake = fake().await;
    let config = config(&fake);
    fake.stop().await;
    let result = provider(config).submit(&attempt(), &task(FLASH)).await;
    assert!(matches!(result, Err(ProviderError::Retryable { retry_after: None, .. })), "{result:?}");
}

#[test]
fn configurations_that_cannot_work_are_refused() {
    // Proves an empty or unprintable key, a base URL that is not http(s) and zero limits are refused at setup.
    for key in ["", "has space", "ключ"] {
        assert!(matches!(GeminiProvider::new(GeminiConfig::new(key)), Err(GeminiSetupError::ApiKey)), "{key:?}");
    }
    for url in ["", "generativelanguage.googleapis.com", "ftp://example.com", "https://example.com/?key=x"] {
        let config = GeminiConfig { base_url: url.to_owned(), ..GeminiConfig::new(KEY) };
        assert!(matches!(GeminiProvider::new(config), Err(GeminiSetupError::BaseUrl { .. })), "{url:?}");
    }
    let zero = GeminiConfig { timeout: Duration::ZERO, ..GeminiConfig::new(KEY) };
    assert!(matches!(GeminiProvider::new(zero), Err(GeminiSetupError::Limits)));
    let proxy = GeminiConfig { base_url: "https://proxy.example/google/".to_owned(), ..GeminiConfig::new(KEY) };
    assert!(GeminiProvider::new(proxy).is_ok());
}

/// What a [`raw_server`] does after the head of its answer.
#[derive(Clone, Copy)]
enum Tail {
    /// Closes the connection.
    Close,
    /// Writes 64 KiB chunks until the client hangs up (at most 64 MiB).
    Chunks,
    /// Keeps the connection open, silent.
    Stall,
}

/// A one-connection HTTP server that writes `head`, then does `tail`: for answers the fake's framework would not
/// send.
async fn raw_server(head: &[u8], tail: Tail) -> String {
    let head = head.to_vec();
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let Ok((mut socket, _)) = listener.accept().await else { return };
        let mut request = vec![0_u8; 64 * 1024];
        let _ = socket.read(&mut request).await;
        if socket.write_all(&head).await.is_err() {
            return;
        }
        match tail {
            Tail::Close => {}
            Tail::Chunks => {
                let chunk = [b"10000\r\n".as_slice(), &[b'A'; 0x10000], b"\r\n"].concat();
                for _ in 0..1024 {
                    if socket.write_all(&chunk).await.is_err() {
                        return;
                    }
                }
            }
            Tail::Stall => {
                let _ = socket.read(&mut request).await;
            }
        }
    });
    format!("http://{addr}")
}

const CHUNKED: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
const CUT: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{\"candid";

#[tokio::test]
async fn an_answer_streamed_past_the_limit_is_cut_off() {
    // Proves an answer without a declared length is refused as Garbage as soon as it passes the limit, not read
    // to its end.
    let mut config = GeminiConfig::new(KEY);
    config.base_url = raw_server(CHUNKED, Tail::Chunks).await;
    config.response_max_bytes = 1024 * 1024;
    let result = provider(config).submit(&attempt(), &task(FLASH)).await;
    assert!(
        matches!(&result, Err(ProviderError::Garbage { reason }) if reason.as_str().contains("over the limit")),
        "{result:?}"
    );
}

#[tokio::test]
async fn an_answer_cut_short_is_garbage_and_one_that_stalls_is_a_timeout() {
    // Proves the transport mapping of a broken HTTP 200 answer: the connection closed mid-body is a truncated
    // answer (Garbage), and a body that stops arriving runs into the client timeout (Timeout).
    let mut config = GeminiConfig::new(KEY);
    config.base_url = raw_server(CUT, Tail::Close).await;
    let result = provider(config.clone()).submit(&attempt(), &task(FLASH)).await;
    assert!(matches!(result, Err(ProviderError::Garbage { .. })), "{result:?}");

    config.base_url = raw_server(CUT, Tail::Stall).await;
    config.timeout = Duration::from_millis(300);
    let result = provider(config).submit(&attempt(), &task(FLASH)).await;
    assert!(matches!(result, Err(ProviderError::Timeout { .. })), "{result:?}");
}

#[tokio::test]
async fn redirects_are_not_followed() {
    // Proves the key header is never carried to wherever a redirect points: the 3xx is an error and the
    // redirect's target sees no request.
    let fake = fake().await;
    let head = format!(
        "HTTP/1.1 307 Temporary Redirect\r\nlocation: {}/v1beta/models/{FLASH}:generateContent\r\ncontent-length: 0\r\n\r\n",
        fake.base_url()
    );
    let mut config = config(&fake);
    config.base_url = raw_server(head.as_bytes(), Tail::Close).await;
    let result = provider(config).submit(&attempt(), &task(FLASH)).await;
    assert!(
        matches!(&result, Err(ProviderError::Unavailable { reason }) if reason.as_str().starts_with("HTTP 307")),
        "{result:?}"
    );
    assert_eq!(fake.requests(), 0);
}
