//! The `Idempotency-Key` of every POST under `/v1`: the first request under a key runs and its response is
//! stored; a repeat gets that response again (with `Idempotent-Replayed: true`) and runs nothing; the same key
//! with another method, path or body is refused with 409; a repeat while the first still runs gets 409 with
//! `Retry-After`. Keys are per API key. A 5xx is not stored (the request may be retried: the money moves
//! underneath are keyed too, so a retry never moves money twice).

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rei_core::access::{ReplayBegin, ReplaySlot, StoredResponse};
use sha2::{Digest, Sha256};

use crate::HttpState;
use crate::auth::hex;
use crate::problem::Problem;

/// The request header.
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
/// Set on a replayed response.
pub const REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");
/// The longest key accepted.
pub const KEY_LEN_MAX: usize = 255;
/// How long a first request holds its key before another may take it over (its process died).
pub const LOCK: Duration = Duration::from_secs(60);
/// The largest response stored for replay.
const STORED_BODY_MAX: usize = 1 << 20;

/// The layer: authenticates every POST, then runs it at most once per key.
pub(crate) async fn once_per_key(State(state): State<Arc<HttpState>>, request: Request, next: Next) -> Response {
    // The webhooks authenticate their own way (source address, secret token).
    if request.method() != Method::POST || !request.uri().path().starts_with("/v1/") {
        return next.run(request).await;
    }
    match run(&state, request, next).await {
        Ok(r) => r,
        Err(p) => p.into_response(),
    }
}

async fn run(state: &HttpState, request: Request, next: Next) -> Result<Response, Problem> {
    let (mut parts, body) = request.into_parts();
    let caller = state.auth.authenticate(&parts.headers).await?;
    let key = match parts.headers.get(&IDEMPOTENCY_KEY).map(HeaderValue::to_str) {
        None => {
            return Err(Problem::bad_request(
                "every POST needs an Idempotency-Key header (1 to 255 visible characters, unique per operation)",
            )
            .with_code("idempotency-key-required"));
        }
        Some(Ok(k)) if !k.is_empty() && k.len() <= KEY_LEN_MAX && k.bytes().all(|b| b.is_ascii_graphic()) => {
            k.to_owned()
        }
        Some(_) => {
            return Err(Problem::bad_request("the Idempotency-Key must be 1 to 255 visible ASCII characters")
                .with_code("idempotency-key-invalid"));
        }
    };
    let body = to_bytes(body, state.config.body_limit).await.map_err(|_| too_large(state.config.body_limit))?;
    let mut digest = Sha256::new();
    digest.update(parts.method.as_str().as_bytes());
    digest.update(b"\n");
    digest.update(parts.uri.path().as_bytes());
    digest.update(b"\n");
    digest.update(&body);
    let slot = ReplaySlot { api_key: caller.0.id.clone(), key, fingerprint: hex(&digest.finalize()) };
    let now = state.engine.clock().now();
    let begun = state
        .engine
        .replays()
        .begin(&slot, now, now.plus(LOCK))
        .await
        .map_err(|e| Problem::internal("the idempotency store", &e))?;
    match begun {
        ReplayBegin::Started => {}
        ReplayBegin::Replay(stored) => return Ok(replayed(stored)),
        ReplayBegin::Mismatch => {
            return Err(Problem::new(
                StatusCode::CONFLICT,
                "idempotency-key-reused",
                "The Idempotency-Key was used for another request",
                "this key was first sent with another method, path or body; use a new key for a new operation",
            ));
        }
        ReplayBegin::InProgress => {
            return Err(Problem::new(
                StatusCode::CONFLICT,
                "idempotency-key-in-progress",
                "The first request with this key is still running",
                "retry in a moment: the same request then gets the first one's answer",
            )
            .retry_after(1));
        }
    }
    parts.extensions.insert(caller);
    let response = next.run(Request::from_parts(parts, Body::from(body))).await;
    let (parts, body) = response.into_parts();
    let bytes = match to_bytes(body, STORED_BODY_MAX).await {
        Ok(b) => b,
        Err(e) => {
            let _ = state.engine.replays().abandon(&slot).await;
            return Err(Problem::internal("reading the response", &e));
        }
    };
    let replays = state.engine.replays();
    if parts.status.is_server_error() {
        if let Err(e) = replays.abandon(&slot).await {
            tracing::warn!(error = %e, "could not give an idempotency key back");
        }
    } else {
        let content_type = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/octet-stream")
            .to_owned();
        let stored = StoredResponse { status: parts.status.as_u16(), content_type, body: bytes.to_vec() };
        if let Err(e) = replays.finish(&slot, &stored).await {
            // The answer still goes out; a repeat then runs again, and the keyed money moves replay.
            tracing::warn!(error = %e, "could not store a response for replay");
        }
    }
    Ok(Response::from_parts(parts, Body::from(bytes)))
}

fn replayed(stored: StoredResponse) -> Response {
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    let mut response = (status, stored.body).into_response();
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&stored.content_type) {
        headers.insert(header::CONTENT_TYPE, v);
    }
    headers.insert(REPLAYED, HeaderValue::from_static("true"));
    response
}

pub(crate) fn too_large(limit: usize) -> Problem {
    Problem::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body-too-large",
        "The request body is too large",
        format!("bodies are at most {limit} bytes"),
    )
}
