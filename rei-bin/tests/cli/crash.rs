//! Crash drills: a `rei worker` SIGKILLed at each point of a job's run (after the hold, after the submit, after
//! the provider's result was stored, after the capture but before the job record), then `rei gc --once` and a
//! new worker: the job ends exactly once, charged exactly once, and the ledger verifies.

use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rei::adapters::fakes::kling::{FakeKling, FakeKlingConfig};
use rei::core::generation::{GenerationRequest, VideoMode};
use rei::core::ids::{PaymentId, ProductId, UserId};
use rei::core::jobs::{JobState, Priority};
use rei::core::money::Money;
use rei::core::pricing::Tier;
use rei::core::routing::Capability;

const START: Money = Money::from_kopecks(100_000);
const LEASE_SECONDS: u64 = 2;

fn worker(url: &str, assets: &std::path::Path, kling: &str, fault: Option<&str>) -> Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rei"));
    command
        .args(["worker", "--database-url", url, "--concurrency", "1", "--poll-interval-ms", "20"])
        .args(["--lease-seconds", &LEASE_SECONDS.to_string(), "--grace-seconds", "1"])
        .arg("--assets-dir")
        .arg(assets)
        .env("KLING_ACCESS_KEY", "ak-crash")
        .env("KLING_SECRET_KEY", "sk-crash")
        .env("KLING_BASE_URL", kling)
        .env_remove("GEMINI_API_KEY")
        .env_remove("NANO_BANANA_API_KEY")
        .env_remove("REI_FAULT_AT")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(point) = fault {
        command.env("REI_FAULT_AT", point);
    }
    command.spawn().expect("start rei worker")
}

/// Waits (bounded) for the worker to say it reached `point`, then SIGKILLs it.
fn kill_at(mut child: Child, point: &str) {
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains(&format!("fault point {point} reached")) => break,
            Ok(line) => seen.push(line),
            Err(_) => panic!("the worker never reached {point}: {seen:?}"),
        }
    }
    child.kill().expect("SIGKILL the worker");
    child.wait().expect("reap the worker");
}

fn drill(point: &str, kling_submits: u64) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("crash.db").display());
    let assets = dir.path().join("assets");
    let kling = rt.block_on(FakeKling::start(FakeKlingConfig::new("ak-crash", "sk-crash"))).expect("fake Kling");
    let user = UserId(3);
    let job = rt.block_on(async {
        let engine = rei::Engine::open(&url).await.expect("engine");
        engine.billing().top_up(user, START, PaymentId::parse("pay-crash").expect("id")).await.expect("top up");
        let product = ProductId::parse("video.kling-2.6.5s").expect("id");
        let quote = engine.billing().quote(user, &product, 1, Tier::Basic).await.expect("quote");
        let mut request = GenerationRequest::text(Capability::TextToVideo, "a storm over the sea");
        request.duration_s = Some(5);
        request.mode = Some(VideoMode::Std);
        let job = engine.order(user, quote.id, request, Priority::Normal).await.expect("order");
        engine.close().await;
        job
    });

    kill_at(worker(&url, &assets, &kling.base_url(), Some(point)), point);
    // The dead worker's lease runs out; the collector recovers the job as the rule says.
    std::thread::sleep(Duration::from_secs(LEASE_SECONDS) + Duration::from_millis(500));
    let gc = Command::new(env!("CARGO_BIN_EXE_rei"))
        .args(["gc", "--database-url", &url, "--once"])
        .output()
        .expect("rei gc");
    assert!(gc.status.success(), "{}", String::from_utf8_lossy(&gc.stderr));

    let mut second = worker(&url, &assets, &kling.base_url(), None);
    let deadline = Instant::now() + Duration::from_secs(60);
    let ended = loop {
        let stored = rt.block_on(async {
            let engine = rei::Engine::open(&url).await.expect("engine");
            let stored = engine.jobs().get(job.id).await.expect("get").expect("job");
            engine.close().await;
            stored
        });
        if stored.state.is_terminal() {
            break stored;
        }
        assert!(Instant::now() < deadline, "after a crash at {point} the job is still {}", stored.state);
        std::thread::sleep(Duration::from_millis(100));
    };
    second.kill().expect("stop the second worker");
    second.wait().expect("reap");

    rt.block_on(async {
        let engine = rei::Engine::open(&url).await.expect("engine");
        let balance = engine.billing().balance(user).await.expect("balance");
        assert_eq!(ended.state, JobState::Succeeded, "crash at {point}: {ended:?}");
        assert_eq!(balance.available, Money::from_kopecks(START.kopecks() - ended.price.kopecks()), "one capture");
        assert_eq!(balance.held, Money::ZERO);
        assert!(ended.result.is_some(), "the result is recorded");
        assert!(engine.billing().verify().await.expect("verify").is_clean());
        engine.close().await;
    });
    assert_eq!(kling.records().submits, kling_submits, "submits to Kling after a crash at {point}");
    rt.block_on(kling.stop());
}

#[test]
fn a_worker_killed_after_the_hold_leaves_a_job_that_runs_once() {
    // Proves a crash before anything was sent retries the job: one submit, by the next worker.
    drill("leased", 1);
}

#[test]
fn a_worker_killed_after_the_submit_leaves_a_job_that_is_asked_about_not_resent() {
    // Proves a crash after Kling accepted the attempt makes it unknown, and the next worker asks Kling by the
    // attempt's id and delivers that result: one submit, one capture.
    drill("submitted", 1);
}

#[test]
fn a_worker_killed_after_the_result_was_stored_charges_once() {
    // Proves a crash between the stored result and the capture is settled by asking Kling again: one capture.
    drill("provider_succeeded", 1);
}

#[test]
fn a_worker_killed_after_the_capture_ends_the_job_as_the_ledger_says() {
    // Proves a crash between the capture and the job record ends the job Succeeded from the ledger, with no
    // second capture and no second submit.
    drill("captured", 1);
}

/// A 5-second video ordered for `user` (topped up first) on the database `url`.
fn ordered_video(
    rt: &tokio::runtime::Runtime,
    url: &str,
    user: UserId,
    payment: &str,
    prompt: &str,
) -> rei::core::jobs::Job {
    rt.block_on(async {
        let engine = rei::Engine::open(url).await.expect("engine");
        engine.billing().top_up(user, START, PaymentId::parse(payment).expect("id")).await.expect("top up");
        let product = ProductId::parse("video.kling-2.6.5s").expect("id");
        let quote = engine.billing().quote(user, &product, 1, Tier::Basic).await.expect("quote");
        let mut request = GenerationRequest::text(Capability::TextToVideo, prompt);
        request.duration_s = Some(5);
        let job = engine.order(user, quote.id, request, Priority::Normal).await.expect("order");
        engine.close().await;
        job
    })
}

/// A `rei worker` on `url` against the fake Kling at `kling`, with `extra` arguments, its stdout piped.
fn worker_with(url: &str, assets: &std::path::Path, kling: &str, extra: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_rei"))
        .args(["worker", "--database-url", url])
        .args(extra)
        .arg("--assets-dir")
        .arg(assets)
        .env("KLING_ACCESS_KEY", "ak-crash")
        .env("KLING_SECRET_KEY", "sk-crash")
        .env("KLING_BASE_URL", kling)
        .env_remove("GEMINI_API_KEY")
        .env_remove("NANO_BANANA_API_KEY")
        .env_remove("REI_FAULT_AT")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start rei worker")
}

#[test]
fn a_worker_stops_on_sigterm_and_finishes_its_job_first() {
    // Proves SIGTERM stops a worker cleanly: the job it is running (a video the fake Kling finishes after a
    // few polls) is delivered and charged before the process exits 0 and reports what it did.
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("term.db").display());
    let mut config = FakeKlingConfig::new("ak-crash", "sk-crash");
    config.polls_until_done = 10;
    let kling = rt.block_on(FakeKling::start(config)).expect("fake Kling");
    let user = UserId(4);
    let job = ordered_video(&rt, &url, user, "pay-term", "fireworks");
    let assets = dir.path().join("assets");
    let mut child =
        worker_with(&url, &assets, &kling.base_url(), &["--poll-interval-ms", "100", "--grace-seconds", "20"]);
    // Wait until Kling has the task, then ask the worker to stop.
    let deadline = Instant::now() + Duration::from_secs(30);
    while kling.records().submits == 0 {
        assert!(Instant::now() < deadline, "the worker never submitted");
        std::thread::sleep(Duration::from_millis(20));
    }
    let term = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill -TERM");
    assert!(term.success());
    let status = child.wait().expect("wait");
    let mut out = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().expect("stdout"), &mut out).expect("read");
    assert!(status.success(), "{status:?}: {out}");
    assert!(out.contains("stopped: 1 succeeded"), "{out}");
    rt.block_on(async {
        let engine = rei::Engine::open(&url).await.expect("engine");
        let stored = engine.jobs().get(job.id).await.expect("get").expect("job");
        assert_eq!(stored.state, JobState::Succeeded);
        let balance = engine.billing().balance(user).await.expect("balance");
        assert_eq!(balance.available, Money::from_kopecks(START.kopecks() - stored.price.kopecks()));
        engine.close().await;
    });
    rt.block_on(kling.stop());
}

#[test]
fn a_worker_exports_its_metrics() {
    // Proves `rei worker --metrics-listen`: after a job succeeds, the worker's /metrics counts it in
    // jobs_total{status="succeeded"}, the provider's attempt in provider_attempts_total and its time in the
    // provider_latency_seconds histogram, and the capture in ledger_ops_total.
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("metrics.db").display());
    let kling = rt.block_on(FakeKling::start(FakeKlingConfig::new("ak-crash", "sk-crash"))).expect("fake Kling");
    let job = ordered_video(&rt, &url, UserId(5), "pay-metrics", "a comet");
    let assets = dir.path().join("assets");
    let mut child =
        worker_with(&url, &assets, &kling.base_url(), &["--poll-interval-ms", "20", "--metrics-listen", "127.0.0.1:0"]);
    let mut lines = std::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    let addr = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| l.split("metrics on http://").nth(1).and_then(|r| r.split('/').next()).map(str::to_owned))
        .expect("the metrics address");
    let deadline = Instant::now() + Duration::from_secs(30);
    let text = loop {
        let mut stream = std::net::TcpStream::connect(&addr).expect("connect");
        std::io::Write::write_all(&mut stream, b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .expect("write");
        let mut text = String::new();
        std::io::Read::read_to_string(&mut stream, &mut text).expect("read");
        if text.contains("jobs_total{status=\"succeeded\"} 1") {
            break text;
        }
        assert!(Instant::now() < deadline, "the job never counted:\n{text}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = child.kill();
    let _ = child.wait();
    for needle in [
        "provider_attempts_total{provider=",
        "provider_latency_seconds_bucket{provider=",
        "ledger_ops_total{kind=\"capture\",outcome=\"applied\"} 1",
    ] {
        assert!(text.contains(needle), "{needle} missing:\n{text}");
    }
    rt.block_on(async {
        let engine = rei::Engine::open(&url).await.expect("engine");
        assert_eq!(engine.jobs().get(job.id).await.expect("get").expect("job").state, JobState::Succeeded);
        engine.close().await;
    });
}
