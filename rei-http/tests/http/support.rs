//! A server on 127.0.0.1 over a fresh SQLite engine, API keys, and a client.

use std::sync::Arc;
use std::time::Duration;

use rei::Engine;
use rei_core::access::Scope;
use rei_core::ids::{PaymentId, UserId};
use rei_core::money::Money;
use rei_http::auth::make_key;
use rei_http::{HttpConfig, HttpState};
use reqwest::{Client, Method, RequestBuilder, Response};
use serde_json::Value;
use tokio::sync::oneshot;

/// A running server.
pub(crate) struct Server {
    pub(crate) base: String,
    pub(crate) engine: Arc<Engine>,
    pub(crate) client: Client,
    /// A key with every scope.
    pub(crate) admin: String,
    _dir: tempfile::TempDir,
    _stop: oneshot::Sender<()>,
}

/// What a test changes in the state before the server starts.
pub(crate) type Setup = Box<dyn FnOnce(&mut HttpState) + Send>;

pub(crate) async fn start() -> Server {
    start_with(Box::new(|_| {}), HttpConfig::default()).await
}

pub(crate) async fn start_with(setup: Setup, config: HttpConfig) -> Server {
    start_on(rei::Engine::builder(), setup, config).await
}

/// A server over an engine built by `builder` (a manual clock, a configuration) on a fresh SQLite file.
pub(crate) async fn start_on(builder: rei::EngineBuilder, setup: Setup, config: HttpConfig) -> Server {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("rei.db").display());
    serve_engine(builder.database_url(url), dir, setup, config).await
}

/// A server over PostgreSQL (`REI_TEST_POSTGRES_URL`, which `scripts/test` sets), in a schema of its own.
pub(crate) async fn start_pg() -> Server {
    start_pg_with(Box::new(|_| {})).await
}

/// [`start_pg`] with a setup of the state.
pub(crate) async fn start_pg_with(setup: Setup) -> Server {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let url = std::env::var("REI_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| panic!("REI_TEST_POSTGRES_URL is not set: run the suite with scripts/test"));
    let schema = format!("rei_http_{}_{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
    let config = rei::EngineConfig { postgres_schema: Some(schema), ..rei::EngineConfig::default() };
    let builder = rei::Engine::builder().database_url(url).config(config);
    serve_engine(builder, tempfile::tempdir().expect("temp dir"), setup, HttpConfig::default()).await
}

async fn serve_engine(builder: rei::EngineBuilder, dir: tempfile::TempDir, setup: Setup, config: HttpConfig) -> Server {
    let engine = Arc::new(builder.open().await.expect("engine"));
    let mut state = HttpState::new(engine.clone(), config);
    setup(&mut state);
    let router = rei_http::router(Arc::new(state));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(rei_http::serve(listener, router, async {
        let _ = stopped.await;
    }));
    let client = Client::builder().timeout(Duration::from_secs(30)).build().expect("client");
    let mut server = Server { base, engine, client, admin: String::new(), _dir: dir, _stop: stop };
    server.admin = server.key(&[Scope::Admin], 100_000).await;
    server
}

impl Server {
    /// Stores a new key and returns its token.
    pub(crate) async fn key(&self, scopes: &[Scope], rate_per_minute: u32) -> String {
        let key = make_key("test", scopes, rate_per_minute, self.engine.clock().now()).expect("key");
        self.engine.api_keys().create(&key.record).await.expect("store key");
        key.token
    }

    pub(crate) fn request(&self, method: Method, path: &str, token: &str) -> RequestBuilder {
        self.client.request(method, format!("{}{path}", self.base)).bearer_auth(token)
    }

    pub(crate) async fn get(&self, path: &str) -> Response {
        self.request(Method::GET, path, &self.admin).send().await.expect("send")
    }

    /// A POST with a fresh Idempotency-Key.
    pub(crate) async fn post(&self, path: &str, body: &Value) -> Response {
        self.post_keyed(path, body, &fresh_key()).await
    }

    pub(crate) async fn post_keyed(&self, path: &str, body: &Value, key: &str) -> Response {
        self.request(Method::POST, path, &self.admin)
            .header("Idempotency-Key", key)
            .json(body)
            .send()
            .await
            .expect("send")
    }

    pub(crate) async fn top_up(&self, user: i64, rubles: &str, payment: &str) {
        self.engine
            .billing()
            .top_up(UserId(user), Money::parse(rubles).expect("money"), PaymentId::parse(payment).expect("id"))
            .await
            .expect("top up");
    }

    pub(crate) async fn available(&self, user: i64) -> Money {
        self.engine.billing().balance(UserId(user)).await.expect("balance").available
    }
}

pub(crate) fn fresh_key() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!("k-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// The status and the JSON body; panics when the body is not JSON.
pub(crate) async fn json(r: Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let text = r.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}")))
}

/// Asserts a problem: the status, the problem media type and the code.
pub(crate) async fn problem(r: Response, status: u16, code: &str) -> Value {
    assert_eq!(r.status().as_u16(), status, "status");
    let media = r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    assert_eq!(media, "application/problem+json");
    let (_, body) = json(r).await;
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], status);
    assert_eq!(body["type"], format!("/problems/{code}"));
    body
}

/// The value of one series (`name{labels}` exactly as rendered) in Prometheus text, if it is there.
pub(crate) fn sample<'a>(text: &'a str, series: &str) -> Option<&'a str> {
    text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
}

/// A Prometheus recorder of a test's own (with the server's buckets), for counts that other tests of the binary
/// must not disturb (they share the global recorder). Set it with `metrics::set_default_local_recorder` at the
/// start of a test on tokio's default current-thread runtime: the server and the fakes run on the test's thread,
/// so everything they count lands in it.
pub(crate) fn own_recorder() -> metrics_exporter_prometheus::PrometheusRecorder {
    rei_http::ops::uninstalled_recorder().expect("the exporter's configuration")
}
