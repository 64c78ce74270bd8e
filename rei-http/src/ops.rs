//! Health and metrics: `/health/live`, `/health/ready`, `/metrics` (Prometheus text format), the per-route
//! request metrics, and the periodic `verify` whose drift `/metrics` reports.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use rei_core::jobs::Priority;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::HttpState;

/// The buckets of every `_seconds` histogram but [`JOB_DURATION_BUCKETS`]: 1 ms to 10 min.
const SECONDS_BUCKETS: [f64; 16] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0, 600.0];

/// The buckets of `job_duration_seconds`: 1 s to 30 min, with 180 s, the latency objective's bound (the rules
/// in `deploy/prometheus/` read the `le="180"` bucket).
const JOB_DURATION_BUCKETS: [f64; 10] = [1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 180.0, 300.0, 600.0, 1800.0];

static RECORDER: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The process's Prometheus recorder, installed as the `metrics` facade's global recorder on first use.
/// `None` when another recorder was installed first (then `/metrics` says so).
#[must_use]
pub fn recorder() -> Option<PrometheusHandle> {
    RECORDER
        .get_or_init(|| match builder().and_then(PrometheusBuilder::install_recorder) {
            Ok(handle) => {
                describe();
                Some(handle)
            }
            Err(e) => {
                tracing::error!(error = %e, "the metrics recorder could not be installed");
                None
            }
        })
        .clone()
}

/// The exporter's configuration: the buckets of each histogram. The exporter tries a metric's full name before
/// prefixes and suffixes (it sorts its matchers `Full` < `Prefix` < `Suffix`), so `job_duration_seconds` gets
/// its own buckets although its name ends in `_seconds`.
fn builder() -> Result<PrometheusBuilder, metrics_exporter_prometheus::BuildError> {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full("job_duration_seconds".to_owned()), &JOB_DURATION_BUCKETS)?
        .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), &SECONDS_BUCKETS)
}

/// A recorder with the buckets of [`recorder`]'s, not installed: for counting what one piece of code did apart
/// from the rest of the process (`metrics::set_default_local_recorder`), as a test does.
///
/// # Errors
/// The exporter refused the bucket configuration.
pub fn uninstalled_recorder()
-> Result<metrics_exporter_prometheus::PrometheusRecorder, metrics_exporter_prometheus::BuildError> {
    builder().map(PrometheusBuilder::build_recorder)
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!("http_requests_total", "HTTP requests answered, by route, method and status");
    describe_histogram!("http_request_duration_seconds", Unit::Seconds, "Time to answer, by route and method");
    describe_counter!("payment_webhook_errors", "Payment notices refused or not handled, by reason");
    describe_gauge!("queue_length", "Jobs waiting in the queue, by priority");
    describe_gauge!("queue_in_flight", "Jobs leased to workers");
    describe_gauge!("queue_dead_letters", "Jobs given up");
    describe_gauge!("ledger_verify_drift_kopecks", "The sum of the drifts the last verify found (0 when clean)");
    describe_gauge!("ledger_verify_unbalanced", "Unbalanced transactions the last verify found");
    describe_gauge!("ledger_verify_last_run_timestamp_seconds", "When verify last ran");
    describe_gauge!("ledger_transactions", "Transactions in the ledger at the last verify");
    // Exported from the start at zero, so that an alert on its increase has a series before the first one.
    metrics::counter!("ledger_negative_attempts").increment(0);
    describe_counter!(
        "payments_total",
        "Payments by gateway (yookassa, stars) and outcome: succeeded (credited, once per payment), canceled (by \
         the payer or the gateway), failed (a genuine notice REI could not process; each failed delivery)"
    );
    describe_histogram!(
        "job_duration_seconds",
        Unit::Seconds,
        "From a job's creation to its final state, once per job, by final state (succeeded, failed, cancelled)"
    );
    describe_counter!("revenue_kopecks_total", "Money captured from holds, in kopecks");
    describe_counter!("revenue_refunded_kopecks_total", "Captured money given back to wallets, in kopecks");
    describe_counter!("topups_kopecks_total", "Money credited by top-ups, in kopecks");
    describe_counter!(
        "provider_cost_kopecks_total",
        "What the providers charged for ended attempts, in kopecks, by provider"
    );
    describe_gauge!(
        "provider_breaker_state",
        "This process's router's breaker of each provider: 0 closed, 1 half-open, 2 open"
    );
}

/// Counts and times every request by its route's pattern (never the raw path: ids would explode the series).
pub(crate) async fn track(request: Request, next: Next) -> Response {
    let route =
        request.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("http_requests_total", "route" => route.clone(), "method" => method.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("http_request_duration_seconds", "route" => route, "method" => method)
        .record(started.elapsed().as_secs_f64());
    response
}

/// The state of a check.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct Check {
    /// `ok` or `failed`.
    pub status: String,
    /// What failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Readiness: every dependency, checked now.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct Readiness {
    /// `ready` or `not_ready`.
    pub status: String,
    /// The database: reachable, and its migrations are this build's.
    pub store: Check,
    /// The job queue: reachable.
    pub queue: Check,
}

/// The process is up.
#[utoipa::path(get, path = "/health/live", tag = "operations", responses((status = 200, description = "Alive", body = Check)))]
pub(crate) async fn live() -> Json<Check> {
    Json(Check { status: "ok".to_owned(), detail: None })
}

fn check(result: Result<(), String>) -> Check {
    match result {
        Ok(()) => Check { status: "ok".to_owned(), detail: None },
        Err(detail) => Check { status: "failed".to_owned(), detail: Some(detail) },
    }
}

/// The store and the queue are reachable and the migrations current.
#[utoipa::path(get, path = "/health/ready", tag = "operations", responses(
    (status = 200, description = "Ready", body = Readiness),
    (status = 503, description = "Not ready: which check failed, and why", body = Readiness),
))]
pub(crate) async fn ready(State(state): State<Arc<HttpState>>) -> Response {
    let store = match tokio::time::timeout(Duration::from_secs(5), state.engine.database().pending_migrations()).await {
        Ok(Ok(pending)) if pending.is_empty() => Ok(()),
        Ok(Ok(pending)) => Err(format!("migrations {pending:?} are not applied: run `rei migrate`")),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("the database did not answer within 5 s".to_owned()),
    };
    let queue = match tokio::time::timeout(Duration::from_secs(5), state.engine.job_queue().len_by_priority()).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("the queue did not answer within 5 s".to_owned()),
    };
    let ok = store.is_ok() && queue.is_ok();
    let body = Readiness {
        status: if ok { "ready" } else { "not_ready" }.to_owned(),
        store: check(store),
        queue: check(queue),
    };
    let status = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(body)).into_response()
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses(
    (status = 200, description = "The metrics in Prometheus text format", content_type = "text/plain; version=0.0.4", body = String),
))]
pub(crate) async fn metrics(State(state): State<Arc<HttpState>>) -> Response {
    // The queue's depth is read from the queue itself at scrape time: it is the same for every server.
    if let Ok(lengths) = state.engine.job_queue().len_by_priority().await {
        for p in Priority::ALL {
            metrics::gauge!("queue_length", "priority" => p.to_string()).set(lengths.waiting(p) as f64);
        }
        metrics::gauge!("queue_in_flight").set(lengths.in_flight as f64);
        metrics::gauge!("queue_dead_letters").set(lengths.dead_letters as f64);
    }
    let Some(handle) = recorder() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "another metrics recorder is installed in this process\n")
            .into_response();
    };
    let mut response = handle.render().into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"));
    response
}

/// Runs `verify` now and publishes its result as gauges.
///
/// # Errors
/// The ledger's error.
pub async fn verify_now(state: &HttpState) -> Result<rei_core::ledger::VerifyReport, rei_core::billing::BillingError> {
    let report = state.engine.billing().verify().await?;
    let drift: i64 = report.drifts.iter().map(|d| (d.cached.kopecks() - d.recomputed.kopecks()).abs()).sum();
    metrics::gauge!("ledger_verify_drift_kopecks").set(drift as f64);
    metrics::gauge!("ledger_verify_unbalanced").set(report.unbalanced.len() as f64);
    metrics::gauge!("ledger_transactions").set(report.transactions as f64);
    let now_s = state.engine.clock().now().as_millis() / 1000;
    metrics::gauge!("ledger_verify_last_run_timestamp_seconds").set(now_s as f64);
    if !report.is_clean() {
        tracing::error!(?report, "the ledger does not verify");
    }
    Ok(report)
}

/// Runs [`verify_now`] every `interval` until the task is aborted, logging failures.
pub fn spawn_verify(state: Arc<HttpState>, interval: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            if let Err(e) = verify_now(&state).await {
                tracing::error!(error = %e, "verify failed");
            }
            tokio::time::sleep(interval).await;
        }
    })
}

/// `GET /metrics` and `GET /health/live` alone, for a process that serves nothing else (`rei worker
/// --metrics-listen`): the process's own counters, in Prometheus text format.
pub fn metrics_router() -> axum::Router {
    axum::Router::new()
        .route(
            "/metrics",
            axum::routing::get(|| async {
                match recorder() {
                    Some(handle) => {
                        ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], handle.render()).into_response()
                    }
                    None => {
                        (StatusCode::SERVICE_UNAVAILABLE, "another metrics recorder is installed\n").into_response()
                    }
                }
            }),
        )
        .route("/health/live", axum::routing::get(live))
}

#[cfg(test)]
mod tests {
    use super::uninstalled_recorder;

    fn rendered(record: impl FnOnce()) -> String {
        let recorder = uninstalled_recorder().expect("the exporter's configuration");
        metrics::with_local_recorder(&recorder, record);
        recorder.handle().render()
    }

    #[test]
    fn job_durations_get_their_own_buckets_and_other_seconds_the_shared_ones() {
        // Proves the matchers' precedence: `job_duration_seconds` is bucketed up to 30 min with a 180 s bucket
        // (the latency objective's bound), though its name also matches the `_seconds` suffix of every other
        // histogram, which keeps the 1 ms to 10 min buckets.
        let text = rendered(|| {
            metrics::histogram!("job_duration_seconds", "status" => "succeeded").record(150.0);
            metrics::histogram!("job_duration_seconds", "status" => "succeeded").record(200.0);
            metrics::histogram!("provider_latency_seconds", "provider" => "p", "outcome" => "succeeded").record(0.2);
        });
        for needle in [
            "job_duration_seconds_bucket{status=\"succeeded\",le=\"120\"} 0\n",
            "job_duration_seconds_bucket{status=\"succeeded\",le=\"180\"} 1\n",
            "job_duration_seconds_bucket{status=\"succeeded\",le=\"1800\"} 2\n",
            "job_duration_seconds_count{status=\"succeeded\"} 2\n",
            "provider_latency_seconds_bucket{provider=\"p\",outcome=\"succeeded\",le=\"0.001\"} 0\n",
            "provider_latency_seconds_bucket{provider=\"p\",outcome=\"succeeded\",le=\"0.25\"} 1\n",
        ] {
            assert!(text.contains(needle), "{needle} missing from:\n{text}");
        }
        assert!(!text.contains("job_duration_seconds_bucket{status=\"succeeded\",le=\"0.001\"}"), "{text}");
        assert!(!text.contains("provider_latency_seconds_bucket{provider=\"p\",outcome=\"succeeded\",le=\"180\"}"));
    }
}
