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
