//! Health and metrics.

use std::sync::Arc;

use serde_json::json;

use crate::support::{json, start};

#[tokio::test]
async fn health_says_live_and_ready() {
    // Proves /health/live and /health/ready on a migrated SQLite store with its in-process queue.
    let s = start().await;
    let (status, live) = json(s.client.get(format!("{}/health/live", s.base)).send().await.expect("send")).await;
    assert_eq!((status, live["status"].as_str()), (200, Some("ok")));
    let (status, ready) = json(s.client.get(format!("{}/health/ready", s.base)).send().await.expect("send")).await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!((ready["store"]["status"].as_str(), ready["queue"]["status"].as_str()), (Some("ok"), Some("ok")));
}

#[tokio::test]
async fn metrics_export_the_named_series() {
    // Proves /metrics in Prometheus text format with the request, ledger, queue and verify series, each counted
    // from what happened.
    let _ = rei_http::ops::recorder();
    let s = start().await;
    s.top_up(31, "10.00", "metrics-1").await;
    s.top_up(31, "10.00", "metrics-1").await;
    let (status, _) = json(s.post("/v1/quotes", &json!({"user_id": 31, "product": "image.nano-banana"})).await).await;
    assert_eq!(status, 201);
    // A confirm the wallet cannot cover (a refused move below the floor), and a queued job cancelled.
    let (_, poor) = json(s.post("/v1/quotes", &json!({"user_id": 32, "product": "image.nano-banana"})).await).await;
    let path = format!("/v1/quotes/{}/confirm", poor["id"].as_str().expect("id"));
    assert_eq!(s.post(&path, &json!({"user_id": 32})).await.status(), 402);
    // A refused reservation is ordinary; an adjustment taking more than the balance is the alert's business.
    let adjusted = s
        .engine
        .billing()
        .adjust(
            rei_core::ids::UserId(32),
            rei_core::money::Money::from_kopecks(-100),
            rei_core::ids::UserId(1),
            rei_core::guards::Reason::parse("too much").expect("reason"),
            rei_core::ids::IdempotencyKey::parse("metrics-overdraw").expect("key"),
        )
        .await;
    assert!(adjusted.is_err(), "{adjusted:?}");
    let (_, q) = json(s.post("/v1/quotes", &json!({"user_id": 31, "product": "image.nano-banana"})).await).await;
    let order = json!({"user_id": 31, "request": {"capability": "text_to_image", "prompt": "a cat"}});
    let (status, held) =
        json(s.post(&format!("/v1/quotes/{}/confirm", q["id"].as_str().expect("id")), &order).await).await;
    assert_eq!(status, 201, "{held}");
    let job = rei_core::ids::JobId::parse(held["job"]["id"].as_str().expect("job")).expect("id");
    s.engine.jobs().cancel(job).await.expect("cancel");
    let state = Arc::new(rei_http::HttpState::new(s.engine.clone(), rei_http::HttpConfig::default()));
    let report = rei_http::ops::verify_now(&state).await.expect("verify");
    assert!(report.is_clean());
    let r = s.client.get(format!("{}/metrics", s.base)).send().await.expect("send");
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("content-type").and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("text/plain")));
    let text = r.text().await.expect("body");
    for needle in [
        "http_requests_total{route=\"/v1/quotes\",method=\"POST\",status=\"201\"}",
        "http_request_duration_seconds_bucket{route=\"/v1/quotes\",method=\"POST\",le=\"0.005\"}",
        "ledger_ops_total{kind=\"top_up\",outcome=\"applied\"}",
        "ledger_ops_total{kind=\"top_up\",outcome=\"replayed\"}",
        "queue_length{priority=\"normal\"} ",
        "ledger_verify_drift_kopecks 0",
        "ledger_verify_last_run_timestamp_seconds",
        "ledger_negative_attempts ",
        "ledger_ops_total{kind=\"hold\",outcome=\"refused\"}",
        "ledger_ops_total{kind=\"release\",outcome=\"applied\"}",
        "jobs_total{status=\"cancelled\"}",
        "jobs_cancelled ",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
}

/// Orders a job for `user` through the API; its id.
async fn order(s: &crate::support::Server, user: i64) -> rei_core::ids::JobId {
    let (_, q) = json(s.post("/v1/quotes", &json!({"user_id": user, "product": "image.nano-banana"})).await).await;
    let order = json!({"user_id": user, "request": {"capability": "text_to_image", "prompt": "a cat"}});
    let (status, held) =
        json(s.post(&format!("/v1/quotes/{}/confirm", q["id"].as_str().expect("id")), &order).await).await;
    assert_eq!(status, 201, "{held}");
    rei_core::ids::JobId::parse(held["job"]["id"].as_str().expect("job")).expect("id")
}

#[tokio::test]
async fn each_job_is_timed_once_from_its_creation_to_its_end() {
    // Proves job_duration_seconds and the money counters on a manual clock: a job delivered 200 s after it was
    // ordered lands above the 180 s bucket, once although its completion is replayed, and its capture adds its
    // price to the revenue; one cancelled 10 s after it was ordered is timed as cancelled. A recorder of the
    // test's own: the other tests of the binary count jobs too.
    use std::time::Duration;
    let recorder = crate::support::own_recorder();
    let _local = metrics::set_default_local_recorder(&recorder);
    let clock =
        Arc::new(rei_core::testing::clock::ManualClock::new(rei_core::time::Timestamp::from_millis(1_800_000_000_000)));
    let s = crate::support::start_on(
        rei::Engine::builder().clock(clock.clone()),
        Box::new(|_| {}),
        rei_http::HttpConfig::default(),
    )
    .await;
    s.top_up(33, "100.00", "durations-33").await;
    let slow = order(&s, 33).await;
    clock.advance(Duration::from_secs(200));
    let worker = rei_core::jobs::WorkerId::parse("w-1").expect("worker");
    let leased = s.engine.jobs().lease(&worker).await.expect("lease").expect("a job");
    assert_eq!(leased.job.id, slow);
    let provider = rei_core::ids::ProviderId::parse("gemini").expect("provider");
    let done = s.engine.jobs().complete(&leased, provider.clone()).await.expect("complete");
    s.engine.jobs().complete(&leased, provider).await.expect("the completion replayed");
    let cancelled = order(&s, 33).await;
    clock.advance(Duration::from_secs(10));
    s.engine.jobs().cancel(cancelled).await.expect("cancel");

    let text = recorder.handle().render();
    let price = done.price.kopecks().to_string();
    for (series, value) in [
        ("job_duration_seconds_bucket{status=\"succeeded\",le=\"180\"}", "0"),
        ("job_duration_seconds_bucket{status=\"succeeded\",le=\"300\"}", "1"),
        ("job_duration_seconds_count{status=\"succeeded\"}", "1"),
        ("job_duration_seconds_sum{status=\"succeeded\"}", "200"),
        ("job_duration_seconds_bucket{status=\"cancelled\",le=\"5\"}", "0"),
        ("job_duration_seconds_bucket{status=\"cancelled\",le=\"10\"}", "1"),
        ("job_duration_seconds_count{status=\"cancelled\"}", "1"),
        ("revenue_kopecks_total", price.as_str()),
        ("topups_kopecks_total", "10000"),
    ] {
        assert_eq!(crate::support::sample(&text, series), Some(value), "{series} in:\n{text}");
    }
}

#[tokio::test]
async fn provider_costs_refunds_and_breakers_are_exported() {
    // Proves provider_cost_kopecks_total from an ended attempt's cost (not from its dispatch),
    // revenue_refunded_kopecks_total from a wallet refund of a captured job, and provider_breaker_state from a
    // router's report to the board (0 closed, 1 half-open, 2 open).
    use rei_core::generation::{AttemptOutcome, AttemptRecord};
    use rei_core::routing::{BreakerView, ProviderStatus};
    let recorder = crate::support::own_recorder();
    let _local = metrics::set_default_local_recorder(&recorder);
    let s = start().await;
    s.top_up(34, "100.00", "costs-34").await;
    let job = order(&s, 34).await;
    let worker = rei_core::jobs::WorkerId::parse("w-2").expect("worker");
    let leased = s.engine.jobs().lease(&worker).await.expect("lease").expect("a job");
    let provider = rei_core::ids::ProviderId::parse("kling").expect("provider");
    let now = s.engine.clock().now();
    let mut attempt = AttemptRecord {
        job,
        attempt: 1,
        provider: provider.clone(),
        model: "kling-v2-6".into(),
        outcome: AttemptOutcome::Dispatched,
        cost: rei_core::money::Money::from_kopecks(2_900),
        charged: rei_core::money::Money::ZERO,
        started_at: now,
        ended_at: None,
        error: None,
    };
    s.engine.attempts().record(&attempt).await.expect("dispatch recorded");
    attempt.outcome = AttemptOutcome::Succeeded;
    attempt.ended_at = Some(now);
    s.engine.attempts().record(&attempt).await.expect("end recorded");
    let done = s.engine.jobs().complete(&leased, provider).await.expect("complete");
    let refunded = rei_core::money::Money::from_kopecks(300);
    let key = rei_core::ids::IdempotencyKey::parse("refund-34").expect("key");
    s.engine.billing().refund(done.hold, refunded, key.clone()).await.expect("refund");
    s.engine.billing().refund(done.hold, refunded, key).await.expect("the refund replayed");
    let statuses: Vec<ProviderStatus> = [("kling", BreakerView::HalfOpen), ("gemini", BreakerView::Closed)]
        .into_iter()
        .map(|(name, breaker)| ProviderStatus {
            provider: rei_core::ids::ProviderId::parse(name).expect("provider"),
            breaker,
            score: None,
            latency_ewma_ms: None,
            successes: 0,
            outcomes: 0,
            reported_by: "w-2".into(),
            at: now,
        })
        .collect();
    s.engine.provider_board().publish(&statuses).await.expect("publish");

    let text = recorder.handle().render();
    for (series, value) in [
        ("provider_cost_kopecks_total{provider=\"kling\"}", "2900"),
        ("revenue_refunded_kopecks_total", "300"),
        ("provider_breaker_state{provider=\"kling\"}", "1"),
        ("provider_breaker_state{provider=\"gemini\"}", "0"),
    ] {
        assert_eq!(crate::support::sample(&text, series), Some(value), "{series} in:\n{text}");
    }
}
