//! The Kling adapter against the fake Kling: every scripted outcome through `KlingProvider`, the JWT it signs,
//! its re-signing, and callback parsing. Everything runs on 127.0.0.1; nothing reaches the internet.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use rei_adapters::fakes::kling::{FakeKling, FakeKlingConfig, KlingOutcome, SAMPLE_MP4};
use rei_adapters::kling::{CallbackError, KlingCallback, KlingConfig, KlingProvider, KlingTaskState, parse_callback};
use rei_core::generation::{
    AspectRatio, AttemptRef, DownloadLimits, GenerationProvider, GenerationTask, InputImage, Media, Output,
    OutputMedia, ProviderError, RemoteMedia, Submission, TaskStatus, VideoMode,
};
use rei_core::ids::JobId;
use rei_core::money::{Money, UnitPrice};
use rei_core::routing::Capability;
use rei_core::testing::clock::ManualClock;
use rei_core::time::Timestamp;
use serde_json::{Value, json};
use sha2::Sha256;

const ACCESS_KEY: &str = "ak-test";
const SECRET_KEY: &str = "sk-test-secret";
/// 2026-01-01T00:00:00Z.
const START_S: i64 = 1_767_225_600;
/// The first task id the fake hands out.
const FIRST_TASK: &str = "867283741759111000";
/// A client timeout short enough for the tests that wait it out.
const SHORT: Duration = Duration::from_secs(1);

struct Rig {
    fake: FakeKling,
    kling: KlingProvider,
    clock: Arc<ManualClock>,
}

/// A fake and a provider on one manual clock, tasks done on their first query unless `fake` says otherwise.
async fn rig_with(fake: impl FnOnce(&mut FakeKlingConfig), kling: impl FnOnce(&mut KlingConfig)) -> Rig {
    let clock = Arc::new(ManualClock::new(Timestamp::from_millis(START_S * 1000)));
    let mut fake_config = FakeKlingConfig::new(ACCESS_KEY, SECRET_KEY);
    fake_config.clock = clock.clone();
    fake_config.polls_until_done = 0;
    fake(&mut fake_config);
    let fake = FakeKling::start(fake_config).await.expect("the fake starts");
    let mut config = KlingConfig::new(ACCESS_KEY, SECRET_KEY, unit_cost());
    config.base_url = fake.base_url();
    config.request_timeout = Duration::from_secs(5);
    kling(&mut config);
    let kling = KlingProvider::new(config, clock.clone()).expect("a valid config");
    Rig { fake, kling, clock }
}

async fn rig() -> Rig {
    rig_with(|_| {}, |_| {}).await
}

/// 12.5 kopecks per Kling unit.
fn unit_cost() -> UnitPrice {
    UnitPrice::parse("0.125").expect("a valid rate")
}

fn attempt(n: u32) -> AttemptRef {
    AttemptRef { job: JobId::from(0x0123_4567_89ab_cdef_u128), attempt: n }
}

fn text_to_video() -> GenerationTask {
    GenerationTask {
        capability: Capability::TextToVideo,
        model: "kling-v2-6".to_owned(),
        prompt: "a cat surfing at dawn".to_owned(),
        images: Vec::new(),
        source_video: None,
        aspect_ratio: Some(AspectRatio::parse("9:16").expect("a valid ratio")),
        image_size: None,
        duration_s: Some(5),
        mode: Some(VideoMode::Pro),
    }
}

fn done(status: TaskStatus) -> Output {
    match status {
        TaskStatus::Done(output) => output,
        other => panic!("expected Done, got {other:?}"),
    }
}

fn remote(output: &Output) -> RemoteMedia {
    match &output.media {
        OutputMedia::Remote(media) => media.clone(),
        OutputMedia::Inline(_) => panic!("kling results are remote"),
    }
}

/// Submits `outcome` as attempt 1 of a text-to-video task and returns what submit said.
async fn submit_scripted(rig: &Rig, outcome: KlingOutcome) -> Result<Submission, ProviderError> {
    rig.fake.script().push(outcome);
    rig.kling.submit(&attempt(1), &text_to_video()).await
}

fn claims(token: &str) -> (Value, Value) {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "{token}");
    let json = |part: &str| -> Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("base64url without padding")).expect("json")
    };
    (json(parts[0]), json(parts[1]))
}

#[tokio::test]
async fn a_text_to_video_task_is_submitted_polled_priced_and_downloaded() {
    // Proves the create body, the query by external id through submitted and processing, the cost from units x
    // unit cost rounded to the kopeck, the duration in ms, and the result downloaded within its limits.
    let rig = rig_with(
        |fake| fake.polls_until_done = 2,
        |kling| kling.callback_url = Some("https://bot.example/kling/callback".to_owned()),
    )
    .await;
    let a = attempt(1);
    assert_eq!(rig.kling.submit(&a, &text_to_video()).await, Ok(Submission::Accepted));
    let records = rig.fake.records();
    assert_eq!(records.last_submit_path.as_deref(), Some("/v1/videos/text2video"));
    assert_eq!(
        records.last_submit_body,
        Some(json!({
            "model_name": "kling-v2-6",
            "prompt": "a cat surfing at dawn",
            "mode": "pro",
            "aspect_ratio": "9:16",
            "duration": "5",
            "external_task_id": a.external_id(),
            "callback_url": "https://bot.example/kling/callback",
        }))
    );
    let pending = TaskStatus::Pending { progress_percent: None };
    assert_eq!(rig.kling.query(&a, &text_to_video()).await, Ok(pending.clone()));
    assert_eq!(rig.kling.query(&a, &text_to_video()).await, Ok(pending));
    let output = done(rig.kling.query(&a, &text_to_video()).await.expect("queried"));
    let path = format!("/v1/videos/text2video/{}", a.external_id());
    assert_eq!(rig.fake.records().last_query_path, Some(path));
    // 1.5 units x 12.5 kopecks = 18.75 kopecks, rounded half away from zero.
    assert_eq!(output.cost, Money::from_kopecks(19));
    assert_eq!(output.duration_ms, Some(5100));
    assert_eq!(output.provider_ref, Some(format!("vid-{FIRST_TASK}")));
    let media = remote(&output);
    assert_eq!(
        media,
        RemoteMedia {
            url: format!("{}/files/{FIRST_TASK}.mp4", rig.fake.base_url()),
            mime: Some("video/mp4".to_owned())
        }
    );
    let limits = DownloadLimits { max_bytes: 1024, timeout: Duration::from_secs(2) };
    let file = rig.kling.download(&media, &limits).await;
    assert_eq!(file, Ok(Media { mime: "video/mp4".to_owned(), bytes: SAMPLE_MP4.to_vec() }));
    assert_eq!(rig.fake.records().downloads, 1);
    assert_eq!(rig.fake.records().auth_rejections, 0);
}

#[tokio::test]
async fn image_to_video_sends_the_image_as_raw_base64() {
    // Proves image2video gets the first image as plain base64 (no data: prefix), no empty prompt, and is
    // queried on its own endpoint.
    let rig = rig().await;
    let png = b"\x89PNG\r\n\x1a\n-not-really-a-png".to_vec();
    let task = GenerationTask {
        capability: Capability::ImageToVideo,
        model: "kling-v1-5".to_owned(),
        prompt: String::new(),
        images: vec![InputImage { mime: "image/png".to_owned(), bytes: png.clone() }],
        source_video: None,
        aspect_ratio: None,
        image_size: None,
        duration_s: Some(10),
        mode: Some(VideoMode::Std),
    };
    let a = attempt(2);
    assert_eq!(rig.kling.submit(&a, &task).await, Ok(Submission::Accepted));
    let records = rig.fake.records();
    assert_eq!(records.last_submit_path.as_deref(), Some("/v1/videos/image2video"));
    assert_eq!(
        records.last_submit_body,
        Some(json!({
            "model_name": "kling-v1-5",
            "image": STANDARD.encode(&png),
            "mode": "std",
            "duration": "10",
            "external_task_id": a.external_id(),
        }))
    );
    let output = done(rig.kling.query(&a, &task).await.expect("queried"));
    assert_eq!(output.cost, Money::from_kopecks(19));
    let path = format!("/v1/videos/image2video/{}", a.external_id());
    assert_eq!(rig.fake.records().last_query_path, Some(path));
}

#[tokio::test]
async fn video_to_video_extends_the_source_video_without_model_or_mode() {
    // Proves video-extend names the source video and sends no model, mode, duration or aspect ratio.
    let rig = rig().await;
    let task = GenerationTask {
        capability: Capability::VideoToVideo,
        source_video: Some("860000000000000001".to_owned()),
        prompt: "and then it rains".to_owned(),
        ..text_to_video()
    };
    let a = attempt(3);
    assert_eq!(rig.kling.submit(&a, &task).await, Ok(Submission::Accepted));
    let records = rig.fake.records();
    assert_eq!(records.last_submit_path.as_deref(), Some("/v1/videos/video-extend"));
    assert_eq!(
        records.last_submit_body,
        Some(json!({
            "video_id": "860000000000000001",
            "prompt": "and then it rains",
            "external_task_id": a.external_id(),
        }))
    );
    let output = done(rig.kling.query(&a, &task).await.expect("queried"));
    assert_eq!(output.provider_ref, Some(format!("vid-{FIRST_TASK}")));
    let path = format!("/v1/videos/video-extend/{}", a.external_id());
    assert_eq!(rig.fake.records().last_query_path, Some(path));
}

#[tokio::test]
async fn image_capabilities_are_unsupported_and_send_nothing() {
    // Proves Kling is never asked for images: submit and query refuse before any request.
    let rig = rig().await;
    for capability in [Capability::TextToImage, Capability::ImageEdit] {
        let task = GenerationTask { capability, duration_s: None, mode: None, ..text_to_video() };
        assert!(matches!(rig.kling.submit(&attempt(1), &task).await, Err(ProviderError::Unsupported { .. })));
        assert!(matches!(rig.kling.query(&attempt(1), &task).await, Err(ProviderError::Unsupported { .. })));
    }
    assert!(rig.kling.can_query());
    assert_eq!(rig.kling.id().as_str(), "kling");
    let records = rig.fake.records();
    assert_eq!((records.submits, records.queries), (0, 0));
}

#[tokio::test]
async fn a_slow_answer_within_the_timeout_is_accepted() {
    // Proves a slow but timely answer is a normal acceptance.
    let rig = rig().await;
    assert_eq!(submit_scripted(&rig, KlingOutcome::Slow(Duration::from_millis(200))).await, Ok(Submission::Accepted));
    assert!(matches!(rig.kling.query(&attempt(1), &text_to_video()).await, Ok(TaskStatus::Done(_))));
}

#[tokio::test]
async fn server_errors_are_retryable() {
    // Proves HTTP 500 / 5000 is a transient failure that left no task behind.
    let rig = rig().await;
    let err = submit_scripted(&rig, KlingOutcome::ServerError).await.expect_err("refused");
    assert!(matches!(&err, ProviderError::Retryable { retry_after: None, reason } if reason.as_str().contains("5000")));
    assert_eq!(rig.kling.query(&attempt(1), &text_to_video()).await, Ok(TaskStatus::NotFound));
}

#[tokio::test]
async fn a_submit_that_never_answers_is_a_timeout_and_left_no_task() {
    // Proves a hung submit ends at the client timeout as Timeout (outcome unknown), and the query then learns
    // Kling never created the task.
    let rig = rig_with(|_| {}, |kling| kling.request_timeout = SHORT).await;
    let started = Instant::now();
    let err = submit_scripted(&rig, KlingOutcome::Timeout).await.expect_err("no answer");
    assert!(matches!(err, ProviderError::Timeout { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    assert_eq!(rig.kling.query(&attempt(1), &text_to_video()).await, Ok(TaskStatus::NotFound));
    // The hung answer does not keep the fake from stopping.
    tokio::time::timeout(Duration::from_secs(3), rig.fake.stop()).await.expect("the fake stops promptly");
}

#[tokio::test]
async fn a_task_created_before_the_answer_timed_out_is_found_by_its_external_id() {
    // Proves the lost-answer case: submit times out, yet the query by our attempt id finds the finished task,
    // so the worker can charge once instead of generating twice.
    let rig = rig_with(|_| {}, |kling| kling.request_timeout = SHORT).await;
    let err = submit_scripted(&rig, KlingOutcome::SucceedAfterTimeout(Duration::from_secs(5))).await;
    assert!(matches!(err, Err(ProviderError::Timeout { .. })), "{err:?}");
    assert_eq!(rig.fake.tasks(), 1);
    let output = done(rig.kling.query(&attempt(1), &text_to_video()).await.expect("queried"));
    assert_eq!(output.cost, Money::from_kopecks(19));
    let path = format!("/v1/videos/text2video/{}", attempt(1).external_id());
    assert_eq!(rig.fake.records().last_query_path, Some(path));
}

#[tokio::test]
async fn content_blocks_are_the_users_fault() {
    // Proves 1301 is Rejected: no retry, no failover.
    let rig = rig().await;
    let err = submit_scripted(&rig, KlingOutcome::ContentBlocked).await.expect_err("refused");
    assert!(matches!(&err, ProviderError::Rejected { reason } if reason.as_str().contains("1301")), "{err:?}");
    assert!(err.is_users_fault());
}

#[tokio::test]
async fn an_account_out_of_balance_is_unavailable() {
    // Proves 1102 is Unavailable: the provider's problem, not the user's.
    let rig = rig().await;
    let err = submit_scripted(&rig, KlingOutcome::OutOfBalance).await.expect_err("refused");
    assert!(matches!(&err, ProviderError::Unavailable { reason } if reason.as_str().contains("1102")), "{err:?}");
    assert!(!err.is_users_fault());
}

#[tokio::test]
async fn rate_limits_are_retried_after_what_kling_says() {
    // Proves 1302 is Retryable and carries the Retry-After the answer gave.
    let rig = rig().await;
    let err = submit_scripted(&rig, KlingOutcome::RateLimited).await.expect_err("refused");
    assert!(
        matches!(&err, ProviderError::Retryable { retry_after: Some(d), reason }
            if *d == Duration::from_secs(1) && reason.as_str().contains("1302")),
        "{err:?}"
    );
}

#[tokio::test]
async fn an_answer_that_is_not_the_envelope_is_garbage() {
    // Proves HTTP 200 with a non-JSON body is Garbage, not an acceptance.
    let rig = rig().await;
    let err = submit_scripted(&rig, KlingOutcome::Garbage).await.expect_err("unusable");
    assert!(matches!(err, ProviderError::Garbage { .. }), "{err:?}");
}

#[tokio::test]
async fn failed_tasks_map_by_their_reason() {
    // Proves a task failed for its content is Rejected and one failed for anything else is Retryable.
    let rig = rig().await;
    rig.fake.script().push(KlingOutcome::TaskFails("Failure to pass the risk control system".to_owned()));
    rig.fake.script().push(KlingOutcome::TaskFails("internal render error".to_owned()));
    let task = text_to_video();
    for n in [1, 2] {
        assert_eq!(rig.kling.submit(&attempt(n), &task).await, Ok(Submission::Accepted));
    }
    match rig.kling.query(&attempt(1), &task).await {
        Ok(TaskStatus::Failed(ProviderError::Rejected { reason })) => {
            assert!(reason.as_str().contains("risk control"), "{reason}");
        }
        other => panic!("expected a rejected failure, got {other:?}"),
    }
    assert!(matches!(
        rig.kling.query(&attempt(2), &task).await,
        Ok(TaskStatus::Failed(ProviderError::Retryable { .. }))
    ));
}

#[tokio::test]
async fn a_result_over_the_size_limit_is_garbage() {
    // Proves a result larger than the download limit is refused, and the same result within a larger limit is
    // downloaded whole.
    let rig = rig().await;
    let size = 2 * 1024 * 1024;
    assert_eq!(submit_scripted(&rig, KlingOutcome::HugeResult(size)).await, Ok(Submission::Accepted));
    let media = remote(&done(rig.kling.query(&attempt(1), &text_to_video()).await.expect("queried")));
    let small = DownloadLimits { max_bytes: 1024 * 1024, timeout: Duration::from_secs(5) };
    let err = rig.kling.download(&media, &small).await.expect_err("too large");
    assert!(matches!(err, ProviderError::Garbage { .. }), "{err:?}");
    let large = DownloadLimits { max_bytes: 4 * 1024 * 1024, timeout: Duration::from_secs(5) };
    let file = rig.kling.download(&media, &large).await.expect("within the limit");
    assert_eq!(file.bytes.len() as u64, size);
    assert_eq!(&file.bytes[..SAMPLE_MP4.len()], SAMPLE_MP4);
}

#[tokio::test]
async fn a_truncated_result_is_garbage() {
    // Proves a result body shorter than its Content-Length is refused.
    let rig = rig().await;
    assert_eq!(submit_scripted(&rig, KlingOutcome::TruncatedResult).await, Ok(Submission::Accepted));
    let media = remote(&done(rig.kling.query(&attempt(1), &text_to_video()).await.expect("queried")));
    let err = rig.kling.download(&media, &DownloadLimits::default()).await.expect_err("truncated");
    assert!(matches!(err, ProviderError::Garbage { .. }), "{err:?}");
}

#[tokio::test]
async fn absent_units_cost_nothing_and_durations_are_exact() {
    // Proves a task without final_unit_deduction costs zero and a whole-second duration is read exactly.
    let rig = rig_with(
        |fake| {
            fake.units_per_task = None;
            fake.video_duration = "10".to_owned();
        },
        |_| {},
    )
    .await;
    assert_eq!(submit_scripted(&rig, KlingOutcome::Success).await, Ok(Submission::Accepted));
    let output = done(rig.kling.query(&attempt(1), &text_to_video()).await.expect("queried"));
    assert_eq!(output.cost, Money::ZERO);
    assert_eq!(output.duration_ms, Some(10_000));
}

#[tokio::test]
async fn an_attempt_kling_never_received_is_not_found() {
    // Proves a query for an unknown external id is NotFound, not an error.
    let rig = rig().await;
    assert_eq!(rig.kling.query(&attempt(9), &text_to_video()).await, Ok(TaskStatus::NotFound));
}

#[tokio::test]
async fn the_token_is_an_hs256_jwt_of_the_access_key() {
    // Proves the JWT's header, its claims (iss, exp = now + 1800, nbf = now - 5) and its HMAC-SHA256 signature
    // with the secret key, checked here independently of both the adapter and the fake.
    let rig = rig().await;
    assert_eq!(submit_scripted(&rig, KlingOutcome::Success).await, Ok(Submission::Accepted));
    let tokens = rig.fake.records().tokens;
    assert_eq!(tokens.len(), 1);
    let (header, claims) = claims(&tokens[0]);
    assert_eq!(header, json!({"alg": "HS256", "typ": "JWT"}));
    assert_eq!(claims, json!({"iss": ACCESS_KEY, "exp": START_S + 1800, "nbf": START_S - 5}));
    let (signed, signature) = tokens[0].rsplit_once('.').expect("three parts");
    let signature = URL_SAFE_NO_PAD.decode(signature).expect("base64url");
    let verify = |key: &str| {
        let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("any key length");
        mac.update(signed.as_bytes());
        mac.verify_slice(&signature).is_ok()
    };
    assert!(verify(SECRET_KEY));
    assert!(!verify("another-secret"));
}

#[tokio::test]
async fn the_token_is_reused_then_signed_anew_near_its_end() {
    // Proves the cached token is sent while five minutes or more of its life remain and replaced after.
    let rig = rig().await;
    let task = text_to_video();
    assert_eq!(rig.kling.submit(&attempt(1), &task).await, Ok(Submission::Accepted));
    rig.clock.advance(Duration::from_secs(1500));
    rig.kling.query(&attempt(1), &task).await.expect("queried");
    rig.clock.advance(Duration::from_secs(1));
    rig.kling.query(&attempt(1), &task).await.expect("queried");
    let records = rig.fake.records();
    assert_eq!(records.tokens.len(), 3);
    assert_eq!(records.tokens[1], records.tokens[0]);
    assert_ne!(records.tokens[2], records.tokens[0]);
    let (_, claims) = claims(&records.tokens[2]);
    assert_eq!(claims["exp"], json!(START_S + 1501 + 1800));
    assert_eq!(claims["nbf"], json!(START_S + 1501 - 5));
    assert_eq!(records.auth_rejections, 0);
}

#[tokio::test]
async fn a_token_kling_calls_expired_is_signed_anew_and_the_call_repeated_once() {
    // Proves that on 401/1004 the call is repeated once with a new token, and that a second refusal is final.
    let kling_clock = Arc::new(ManualClock::new(Timestamp::from_millis(START_S * 1000)));
    let fake_clock = Arc::new(ManualClock::new(Timestamp::from_millis(START_S * 1000)));
    let rig = rig_with(|fake| fake.clock = fake_clock.clone(), |_| {}).await;
    let kling = {
        let mut config = KlingConfig::new(ACCESS_KEY, SECRET_KEY, unit_cost());
        config.base_url = rig.fake.base_url();
        KlingProvider::new(config, kling_clock.clone()).expect("a valid config")
    };
    let task = text_to_video();
    assert_eq!(kling.submit(&attempt(1), &task).await, Ok(Submission::Accepted));
    // Our clock says 400 s of life remain; Kling's, 100 s ahead of the token's exp, calls it expired.
    kling_clock.advance(Duration::from_secs(1400));
    fake_clock.advance(Duration::from_secs(1900));
    assert!(matches!(kling.query(&attempt(1), &task).await, Ok(TaskStatus::Done(_))));
    let records = rig.fake.records();
    assert_eq!(records.auth_rejections, 1);
    assert_eq!(records.tokens.len(), 3);
    assert_eq!(records.tokens[1], records.tokens[0]);
    assert_ne!(records.tokens[2], records.tokens[0]);
    // Kling's clock so far ahead that even a new token is expired: one repeat, then Unavailable.
    fake_clock.advance(Duration::from_secs(10_000));
    let err = kling.query(&attempt(1), &task).await.expect_err("refused");
    assert!(matches!(&err, ProviderError::Unavailable { reason } if reason.as_str().contains("1004")), "{err:?}");
    let records = rig.fake.records();
    assert_eq!((records.auth_rejections, records.queries), (3, 4));
}

#[tokio::test]
async fn a_wrong_secret_is_unavailable_and_not_repeated() {
    // Proves a token Kling cannot verify (1002) fails over as Unavailable after a single request.
    let rig = rig_with(|fake| fake.secret_key = "the-real-secret".to_owned(), |_| {}).await;
    let err = rig.kling.submit(&attempt(1), &text_to_video()).await.expect_err("refused");
    assert!(matches!(&err, ProviderError::Unavailable { reason } if reason.as_str().contains("1002")), "{err:?}");
    let records = rig.fake.records();
    assert_eq!((records.submits, records.auth_rejections), (1, 1));
    assert_eq!(rig.fake.tasks(), 0);
}

#[tokio::test]
async fn a_refused_connection_is_retryable() {
    // Proves a submit that could not connect is Retryable: the request never left.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let clock = Arc::new(ManualClock::new(Timestamp::from_millis(START_S * 1000)));
    let mut config = KlingConfig::new(ACCESS_KEY, SECRET_KEY, unit_cost());
    config.base_url = format!("http://{addr}");
    config.request_timeout = SHORT;
    let kling = KlingProvider::new(config, clock).expect("a valid config");
    let err = kling.submit(&attempt(1), &text_to_video()).await.expect_err("no server");
    assert!(matches!(err, ProviderError::Retryable { .. }), "{err:?}");
}

#[test]
fn callbacks_are_read_from_the_bare_task_object() {
    // Proves a real-shaped callback names its task, state and attempt, and anything else is refused.
    let a = attempt(4);
    let body = json!({
        "task_id": "867283741759111202",
        "task_status": "succeed",
        "task_status_msg": "",
        "task_info": {"external_task_id": a.external_id()},
        "task_result": {"videos": [{"id": "v1", "url": "https://cdn.example/v1.mp4", "duration": "5.1"}]},
        "final_unit_deduction": "1.5",
        "created_at": 1_722_769_557_708_i64,
        "updated_at": 1_722_769_557_708_i64,
    });
    let parsed = parse_callback(body.to_string().as_bytes());
    assert_eq!(
        parsed,
        Ok(KlingCallback { task_id: "867283741759111202".to_owned(), state: KlingTaskState::Succeed, attempt: a })
    );
    let with = |field: &str, value: Value| {
        let mut changed = body.clone();
        changed[field] = value;
        parse_callback(changed.to_string().as_bytes())
    };
    assert!(matches!(parse_callback(b"not json"), Err(CallbackError::Malformed(_))));
    assert!(matches!(parse_callback(b""), Err(CallbackError::Malformed(_))));
    assert!(matches!(
        parse_callback(&json!({"code": 0, "data": body}).to_string().into_bytes()),
        Err(CallbackError::Malformed(_))
    ));
    assert!(matches!(with("task_id", json!("")), Err(CallbackError::Malformed(_))));
    assert!(matches!(with("task_status", json!("succeeded")), Err(CallbackError::UnknownState(_))));
    assert_eq!(with("task_info", json!({"external_task_id": "my-123"})), Err(CallbackError::NotOurs));
    assert_eq!(with("task_info", json!({})), Err(CallbackError::NotOurs));
    assert!(matches!(with("task_status", json!("failed")), Ok(KlingCallback { state: KlingTaskState::Failed, .. })));
    let huge = vec![b' '; 2 * 1024 * 1024];
    assert_eq!(parse_callback(&huge), Err(CallbackError::TooLarge));
}
