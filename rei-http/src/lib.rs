//! REI's HTTP surface, served by `rei serve`, or mounted by an embedder on its own axum server:
//!
//! - `POST /webhooks/yookassa`: payment notices, fail-closed ([`webhooks`]).
//! - `POST /webhooks/telegram`: Telegram's updates, behind the webhook's secret token.
//! - `/v1/…`: a JSON API for bots in any language ([`api`]), with API keys ([`auth`]), per-key rate limits, an
//!   `Idempotency-Key` on every POST ([`replay`]) and errors as `application/problem+json` ([`problem`]).
//! - `/openapi.json`: the OpenAPI 3.1 document, generated from the routes themselves.
//! - `/health/live`, `/health/ready`, `/metrics` ([`ops`]).
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! let engine = Arc::new(rei::Engine::open("sqlite://rei.db").await?);
//! let state = rei_http::HttpState::new(engine, rei_http::HttpConfig::default());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! rei_http::serve(listener, rei_http::router(Arc::new(state)), std::future::pending()).await?;
//! # Ok(()) }
//! ```

pub mod api;
pub mod auth;
pub mod console;
pub mod ops;
pub mod problem;
pub mod replay;
pub mod stars;
pub mod webhooks;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use axum::Router;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use rei::Engine;
use rei_core::guards::{InProcessRateLimiter, RateLimiter};
use rei_core::topups::TopUps;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Authenticator;
use crate::problem::Problem;
use crate::webhooks::{TelegramHook, WebhookSources};

/// Limits and timeouts of the server.
#[derive(Clone, Debug)]
pub struct HttpConfig {
    /// The largest request body of the API, in bytes (default 64 KiB).
    pub body_limit: usize,
    /// The largest webhook body, in bytes (default 64 KiB; YooKassa's and Telegram's notices are a few KiB).
    pub webhook_body_limit: usize,
    /// The most bytes of request headers (names and values) accepted (default 16 KiB); more is 431.
    pub header_limit: usize,
    /// How long a request may take before it is answered 503 (default 30 s).
    pub request_timeout: Duration,
}

impl Default for HttpConfig {
    fn default() -> HttpConfig {
        HttpConfig {
            body_limit: 64 * 1024,
            webhook_body_limit: 64 * 1024,
            header_limit: 16 * 1024,
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// Everything the routes use.
pub struct HttpState {
    /// The engine.
    pub engine: Arc<Engine>,
    /// Limits and timeouts.
    pub config: HttpConfig,
    /// API keys and their rate limits.
    pub auth: Authenticator,
    /// Top-ups through the payment gateway; `None`: the payment routes answer 503.
    pub topups: Option<Arc<TopUps>>,
    /// Who may send payment notices.
    pub webhooks: WebhookSources,
    /// Telegram's webhook; `None`: it answers 503.
    pub telegram: Option<TelegramHook>,
    /// Stars top-ups; `None`: `POST /v1/topups` with `stars` answers 503.
    pub stars: Option<Arc<stars::StarsHook>>,
    /// The operator console's sign-in.
    pub console: console::ConsoleConfig,
    /// Where results are stored, for the console's thumbnails; `None`: none are shown.
    pub assets: Option<Arc<dyn rei_core::generation::AssetStore>>,
}

impl HttpState {
    /// The state over `engine`, with keys rate limited in this process, no payment gateway and no bot.
    #[must_use]
    pub fn new(engine: Arc<Engine>, config: HttpConfig) -> HttpState {
        HttpState::with_limiter(engine, config, Arc::new(InProcessRateLimiter::new()))
    }

    /// The same, with keys rate limited by `limiter` (Redis's, shared by every server).
    #[must_use]
    pub fn with_limiter(engine: Arc<Engine>, config: HttpConfig, limiter: Arc<dyn RateLimiter>) -> HttpState {
        let auth = Authenticator::new(engine.api_keys().clone(), limiter, engine.clock().clone());
        HttpState {
            engine,
            config,
            auth,
            topups: None,
            webhooks: WebhookSources::default(),
            telegram: None,
            stars: None,
            console: console::ConsoleConfig::new(random_signer()),
            assets: None,
        }
    }
}

/// A console signer under a random secret; without randomness (which no supported system lacks), one under the
/// time and the process id, logged as an error.
fn random_signer() -> console::session::Signer {
    console::session::Signer::random().unwrap_or_else(|e| {
        tracing::error!(error = %e, "no randomness for the console's sessions: set CONSOLE_SECRET");
        let seed = format!("{:?}.{}", std::time::SystemTime::now(), std::process::id());
        console::session::Signer::new(seed.as_bytes())
    })
}

/// The OpenAPI document's frame; the paths come from the routes.
#[derive(OpenApi)]
#[openapi(
    info(title = "REI", description = "Billing and routing engine for AI-generation chat bots: the HTTP API. \
        Money is a decimal string in roubles. Every POST under /v1 needs an Idempotency-Key. Errors are \
        application/problem+json."),
    modifiers(&Security),
    tags(
        (name = "users", description = "Users, balances and their ledger"),
        (name = "payments", description = "Top-ups"),
        (name = "generation", description = "Quotes, confirms and jobs"),
        (name = "holds", description = "Holds for embedders that run their own providers"),
        (name = "webhooks", description = "Payment gateways and Telegram"),
        (name = "operations", description = "Health and metrics"),
    )
)]
struct ApiDoc;

struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("rei_<id>_<secret>")
                    .description(Some("An API key made with `rei api-key create`"))
                    .build(),
            ),
        );
    }
}

fn routes() -> OpenApiRouter<Arc<HttpState>> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(api::get_user))
        .routes(routes!(api::get_ledger))
        .routes(routes!(api::create_topup))
        .routes(routes!(api::create_quote))
        .routes(routes!(api::confirm_quote))
        .routes(routes!(api::get_job))
        .routes(routes!(api::capture_hold))
        .routes(routes!(api::release_hold))
        .routes(routes!(api::create_refund))
        .routes(routes!(webhooks::yookassa))
        .routes(routes!(webhooks::telegram))
        .routes(routes!(ops::live))
        .routes(routes!(ops::ready))
        .routes(routes!(ops::metrics))
}

/// The OpenAPI 3.1 document of every route.
#[must_use]
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes().split_for_parts().1
}

/// Every route, with the limits, the replay of POSTs and the request metrics.
pub fn router(state: Arc<HttpState>) -> Router {
    let (router, doc) = routes().split_for_parts();
    let doc = Arc::new(doc.to_pretty_json().unwrap_or_default());
    let config = state.config.clone();
    let header_limit = config.header_limit;
    router
        .route(
            "/openapi.json",
            axum::routing::get(move || {
                let doc = doc.clone();
                async move { ([(axum::http::header::CONTENT_TYPE, "application/json")], (*doc).clone()) }
            }),
        )
        .merge(console::routes())
        .fallback(|| async { Problem::not_found("no such route: see /openapi.json") })
        .layer(middleware::from_fn_with_state(state.clone(), replay::once_per_key))
        .layer(middleware::from_fn(move |r: Request, n: Next| headers_within(header_limit, r, n)))
        .layer(middleware::from_fn(ops::track))
        .layer(TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, config.request_timeout))
        .layer(CatchPanicLayer::custom(|_| {
            tracing::error!("a request handler panicked");
            Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal error",
                "the request failed; it is logged",
            )
            .into_response()
        }))
        .with_state(state)
}

async fn headers_within(limit: usize, request: Request, next: Next) -> Response {
    let size: usize = request.headers().iter().map(|(n, v)| n.as_str().len() + v.len()).sum();
    if size > limit {
        return Problem::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers-too-large",
            "The request headers are too large",
            format!("headers are at most {limit} bytes in all"),
        )
        .into_response();
    }
    next.run(request).await
}

/// Serves `router` on `listener` (HTTP/1.1, keep-alive) until `shutdown` completes, then lets requests in
/// flight finish.
///
/// # Errors
/// The listener's I/O error.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown)
        .await
}
