//! A small W3C WebDriver client that drives Debian's headless Chromium through chromedriver, for the browser
//! tests of the HTTP surface's pages.
//!
//! A test binary includes it as a module by path, from a file directly under `tests/`:
//!
//! ```text
//! #[path = "support/webdriver.rs"]
//! mod webdriver;
//! ```
//!
//! (from `tests/NAME/main.rs` the path is `"../support/webdriver.rs"`). `tests/support/` holds no `main.rs`, so
//! Cargo builds no test binary of its own from it.
//!
//! [`Browser::start`] spawns chromedriver (`$REI_CHROMEDRIVER`, else `/usr/bin/chromedriver`) on a free loopback
//! port and opens one session of headless Chromium (`$REI_CHROMIUM`, else `/usr/bin/chromium`) with a fresh
//! profile in a temporary directory. Dropping the [`Browser`] ends the session and kills chromedriver, also
//! when a test panics. Every method panics with what it was doing and WebDriver's error when it fails: this is
//! test code, a failure is a failed test. `find`, `text` and the waits poll for up to five seconds.
//! `scripts/servers start` installs Chromium and chromedriver and writes their paths into its env file.

// Each test binary that includes the module uses only part of it.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::{Client, Method};
use serde_json::{Value, json};

/// How long `find`, `text` and the waits poll before they fail.
pub(crate) const WAIT: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(50);
// The W3C web element identifier.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";
const INSTALL: &str = "install Debian's chromium and chromium-driver (scripts/servers start does it)";

/// One WebDriver session: the client and the session's base URL (`http://127.0.0.1:PORT/session/ID`).
struct Session {
    http: Client,
    url: String,
}

/// An error answered by chromedriver (or the transport to it).
#[derive(Debug)]
struct WdError {
    error: String,
    message: String,
}

impl std::fmt::Display for WdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.error, self.message)
    }
}

/// A WebDriver request to `url`: the answer's `value`, or the error it names.
async fn request(http: &Client, method: Method, url: &str, body: Option<Value>) -> Result<Value, WdError> {
    let transport = |e: reqwest::Error| WdError { error: "transport".to_owned(), message: e.to_string() };
    let mut req = http.request(method.clone(), url);
    if method == Method::POST {
        req = req.json(&body.unwrap_or_else(|| json!({})));
    }
    let resp = req.send().await.map_err(transport)?;
    let status = resp.status();
    let answer: Value = resp.json().await.map_err(transport)?;
    let value = answer.get("value").cloned().unwrap_or(Value::Null);
    if status.is_success() {
        return Ok(value);
    }
    let field = |name: &str| value.get(name).and_then(Value::as_str).unwrap_or_default().to_owned();
    Err(WdError { error: format!("{} {status}", field("error")), message: field("message") })
}

impl Session {
    async fn send(&self, method: Method, path: &str, body: Option<Value>) -> Result<Value, WdError> {
        request(&self.http, method, &format!("{}{path}", self.url), body).await
    }

    /// `send`, panicking with `what` on an error.
    async fn cmd(&self, what: &str, method: Method, path: &str, body: Option<Value>) -> Value {
        self.send(method, path, body).await.unwrap_or_else(|e| panic!("webdriver: {what}: {e}"))
    }

    /// The first element matching `css` under `scope` (`""` for the document, `/element/ID` for an element),
    /// polling for up to [`WAIT`] when `wait` is set.
    async fn locate(self: &Arc<Self>, scope: &str, css: &str, wait: bool) -> Option<Element> {
        let started = Instant::now();
        loop {
            let found = self
                .send(Method::POST, &format!("{scope}/element"), Some(json!({"using": "css selector", "value": css})))
                .await;
            match found {
                Ok(value) => return Some(self.element(&value, css)),
                Err(e) if e.error.starts_with("no such element") => {
                    if !wait || started.elapsed() >= WAIT {
                        return None;
                    }
                }
                Err(e) => panic!("webdriver: find {css:?}: {e}"),
            }
            tokio::time::sleep(POLL).await;
        }
    }

    fn element(self: &Arc<Self>, value: &Value, css: &str) -> Element {
        let id = value
            .get(ELEMENT_KEY)
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("webdriver: find {css:?}: no element reference in {value}"));
        Element { session: Arc::clone(self), id: id.to_owned(), css: css.to_owned() }
    }
}

/// A cookie as the browser holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Cookie {
    pub(crate) name: String,
    pub(crate) value: String,
    pub(crate) http_only: bool,
    pub(crate) secure: bool,
    /// `Strict`, `Lax` or `None` as the browser reports it; absent when it reports none.
    pub(crate) same_site: Option<String>,
    pub(crate) path: String,
    pub(crate) domain: String,
}

/// Headless Chromium under a chromedriver this value owns.
pub(crate) struct Browser {
    session: Arc<Session>,
    driver: Child,
    /// chromedriver's address, for ending the session from `Drop`.
    addr: SocketAddr,
    session_id: String,
    ended: bool,
    _profile: tempfile::TempDir,
}

fn binary(var: &str, default: &str) -> PathBuf {
    let path = std::env::var_os(var).map_or_else(|| PathBuf::from(default), PathBuf::from);
    assert!(path.exists(), "{} not found (set {var} or {INSTALL})", path.display());
    path
}

fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a loopback port");
    listener.local_addr().expect("a bound listener's address").port()
}

impl Browser {
    /// Spawns chromedriver, waits until it is ready and opens a session of headless Chromium.
    pub(crate) async fn start() -> Browser {
        let driver_path = binary("REI_CHROMEDRIVER", "/usr/bin/chromedriver");
        let chromium = binary("REI_CHROMIUM", "/usr/bin/chromium");
        let http = Client::builder().timeout(Duration::from_secs(60)).build().expect("an HTTP client");
        // The port is free when picked but may be taken before chromedriver binds it: then it exits, and
        // another port is tried.
        let mut attempts = 0;
        let (driver, addr) = loop {
            attempts += 1;
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
            let mut driver = Command::new(&driver_path)
                .arg(format!("--port={}", addr.port()))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("spawn {}: {e} ({INSTALL})", driver_path.display()));
            match wait_ready(&http, &mut driver, addr).await {
                Ok(()) => break (driver, addr),
                Err(why) => {
                    let _ = driver.kill();
                    let _ = driver.wait();
                    assert!(attempts < 3, "chromedriver {} did not start: {why}", driver_path.display());
                }
            }
        };
        let profile = tempfile::Builder::new().prefix("rei-chromium-").tempdir().expect("a profile directory");
        let args = [
            "--headless=new".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-quic".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--window-size=1280,900".to_owned(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "pageLoadStrategy": "normal",
            "timeouts": {"implicit": 0, "pageLoad": 30_000, "script": 30_000},
            "goog:chromeOptions": {"binary": chromium, "args": args},
        }}});
        let mut driver = driver;
        let created = match request(&http, Method::POST, &format!("http://{addr}/session"), Some(capabilities)).await {
            Ok(created) => created,
            Err(e) => {
                let _ = driver.kill();
                let _ = driver.wait();
                panic!("webdriver: new session of {}: {e}", chromium.display());
            }
        };
        let session_id = created.get("sessionId").and_then(Value::as_str).expect("a session id").to_owned();
        let session = Arc::new(Session { http, url: format!("http://{addr}/session/{session_id}") });
        Browser { session, driver, addr, session_id, ended: false, _profile: profile }
    }

    /// Navigates to `url` and waits for the page to load.
    pub(crate) async fn goto(&self, url: &str) {
        self.session.cmd(&format!("go to {url}"), Method::POST, "/url", Some(json!({"url": url}))).await;
    }

    pub(crate) async fn current_url(&self) -> String {
        self.string("current URL", "/url").await
    }

    pub(crate) async fn title(&self) -> String {
        self.string("title", "/title").await
    }

    /// The page's HTML as the browser now holds it.
    pub(crate) async fn source(&self) -> String {
        self.string("page source", "/source").await
    }

    async fn string(&self, what: &str, path: &str) -> String {
        let value = self.session.cmd(what, Method::GET, path, None).await;
        value.as_str().unwrap_or_else(|| panic!("webdriver: {what}: not a string: {value}")).to_owned()
    }

    /// The first element matching `css`, waiting up to [`WAIT`] for one to appear.
    pub(crate) async fn find(&self, css: &str) -> Element {
        match self.session.locate("", css, true).await {
            Some(element) => element,
            None => panic!("no element matches {css:?} after {WAIT:?} on {}", self.current_url().await),
        }
    }

    /// The first element matching `css` now, if any (no waiting).
    pub(crate) async fn try_find(&self, css: &str) -> Option<Element> {
        self.session.locate("", css, false).await
    }

    /// Every element matching `css` now (no waiting).
    pub(crate) async fn find_all(&self, css: &str) -> Vec<Element> {
        let what = format!("find all {css:?}");
        let found = self
            .session
            .cmd(&what, Method::POST, "/elements", Some(json!({"using": "css selector", "value": css})))
            .await;
        let list = found.as_array().unwrap_or_else(|| panic!("webdriver: {what}: not a list: {found}"));
        list.iter().map(|value| self.session.element(value, css)).collect()
    }

    /// The visible text of the first element matching `css` (waiting like [`Browser::find`]).
    pub(crate) async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await
    }

    /// Runs `script` (a function body: `return` gives its value) with `args` as `arguments`.
    pub(crate) async fn execute(&self, script: &str, args: Vec<Value>) -> Value {
        let body = json!({"script": script, "args": args});
        self.session.cmd(&format!("execute {script:?}"), Method::POST, "/execute/sync", Some(body)).await
    }

    /// Polls the JavaScript expression `expression` until it is truthy, for up to [`WAIT`]; panics saying
    /// that `what` did not happen.
    pub(crate) async fn wait_for(&self, what: &str, expression: &str) -> Value {
        let script = format!("return ({expression});");
        let started = Instant::now();
        loop {
            let value = self.execute(&script, Vec::new()).await;
            let truthy = match &value {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::Number(n) => n.as_f64().is_some_and(|n| n != 0.0 && !n.is_nan()),
                Value::String(s) => !s.is_empty(),
                Value::Array(_) | Value::Object(_) => true,
            };
            if truthy {
                return value;
            }
            assert!(started.elapsed() < WAIT, "{what}: `{expression}` still {value} after {WAIT:?}");
            tokio::time::sleep(POLL).await;
        }
    }

    /// Polls `check` (`async || ...`) until it gives true, for up to [`WAIT`]; panics saying that `what` did not
    /// happen.
    pub(crate) async fn wait_until(&self, what: &str, mut check: impl AsyncFnMut() -> bool) {
        let started = Instant::now();
        while !check().await {
            assert!(started.elapsed() < WAIT, "{what}: still not so after {WAIT:?}");
            tokio::time::sleep(POLL).await;
        }
    }

    /// A PNG of the viewport written to `$REI_SCREENSHOTS/NAME.png`, else `<workspace>/target/screenshots/`.
    pub(crate) async fn screenshot(&self, name: &str) -> PathBuf {
        let dir = std::env::var_os("REI_SCREENSHOTS").map_or_else(
            || Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("target").join("screenshots"),
            PathBuf::from,
        );
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        let encoded = self.string("screenshot", "/screenshot").await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(encoded.as_bytes())
            .unwrap_or_else(|e| panic!("webdriver: screenshot: not base64: {e}"));
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }

    /// The cookies the browser holds for the current page.
    pub(crate) async fn cookies(&self) -> Vec<Cookie> {
        let value = self.session.cmd("cookies", Method::GET, "/cookie", None).await;
        let list = value.as_array().unwrap_or_else(|| panic!("webdriver: cookies: not a list: {value}"));
        list.iter()
            .map(|c| {
                let text = |k: &str| c.get(k).and_then(Value::as_str).map(str::to_owned);
                let flag = |k: &str| c.get(k).and_then(Value::as_bool).unwrap_or(false);
                Cookie {
                    name: text("name").unwrap_or_default(),
                    value: text("value").unwrap_or_default(),
                    http_only: flag("httpOnly"),
                    secure: flag("secure"),
                    same_site: text("sameSite"),
                    path: text("path").unwrap_or_else(|| "/".to_owned()),
                    domain: text("domain").unwrap_or_default(),
                }
            })
            .collect()
    }

    /// Deletes every cookie of the current page's domain.
    pub(crate) async fn delete_cookies(&self) {
        self.session.cmd("delete cookies", Method::DELETE, "/cookie", None).await;
    }

    /// Adds a cookie for the current page's domain (path `/`).
    pub(crate) async fn add_cookie(&self, name: &str, value: &str) {
        let body = json!({"cookie": {"name": name, "value": value, "path": "/"}});
        self.session.cmd(&format!("add cookie {name}"), Method::POST, "/cookie", Some(body)).await;
    }

    /// Ends the session (closing Chromium) and stops chromedriver.
    pub(crate) async fn quit(mut self) {
        self.ended = true;
        self.session.cmd("end session", Method::DELETE, "", None).await;
    }
}

/// Waits until chromedriver on `addr` answers `/status` with ready, or exits, or ten seconds pass.
async fn wait_ready(http: &Client, driver: &mut Child, addr: SocketAddr) -> Result<(), String> {
    let started = Instant::now();
    loop {
        if let Some(status) = driver.try_wait().map_err(|e| e.to_string())? {
            return Err(format!("it exited ({status}) before it was ready on {addr}"));
        }
        if let Ok(status) = request(http, Method::GET, &format!("http://{addr}/status"), None).await
            && status.get("ready").and_then(Value::as_bool) == Some(true)
        {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(10) {
            return Err(format!("not ready on {addr} after 10 s"));
        }
        tokio::time::sleep(POLL).await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Without an async runtime to lean on here, the session is ended over a plain blocking connection, so
        // that Chromium exits too (killing chromedriver alone would leave it running).
        if !self.ended
            && let Ok(mut stream) = TcpStream::connect_timeout(&self.addr, Duration::from_secs(2))
        {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
            let request = format!(
                "DELETE /session/{} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
                self.session_id, self.addr
            );
            if stream.write_all(request.as_bytes()).is_ok() {
                read_one_response(&mut stream);
            }
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Reads one HTTP response (chromedriver keeps the connection open after it, whatever the request asks).
fn read_one_response(stream: &mut TcpStream) {
    let mut got = Vec::new();
    let mut chunk = [0_u8; 4096];
    loop {
        let Ok(n) = stream.read(&mut chunk) else { return };
        if n == 0 {
            return;
        }
        got.extend_from_slice(&chunk[..n]);
        let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
        let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
        let length = head
            .lines()
            .find_map(|line| line.strip_prefix("content-length:"))
            .and_then(|n| n.trim().parse::<usize>().ok())
            .unwrap_or(0);
        if got.len() >= end + 4 + length {
            return;
        }
    }
}

/// An element of the page, found by a CSS selector.
pub(crate) struct Element {
    session: Arc<Session>,
    id: String,
    /// The selector it was found by, for failure messages.
    css: String,
}

impl Element {
    async fn cmd(&self, what: &str, method: Method, path: &str, body: Option<Value>) -> Value {
        let what = format!("{what} {:?}", self.css);
        self.session.cmd(&what, method, &format!("/element/{}{path}", self.id), body).await
    }

    pub(crate) async fn click(&self) {
        self.cmd("click", Method::POST, "/click", None).await;
    }

    /// The element as a script argument of [`Browser::execute`].
    pub(crate) fn json(&self) -> Value {
        serde_json::json!({ ELEMENT_KEY: self.id })
    }

    /// Types `text` into the element.
    pub(crate) async fn send_keys(&self, text: &str) {
        self.cmd("type into", Method::POST, "/value", Some(json!({"text": text}))).await;
    }

    pub(crate) async fn clear(&self) {
        self.cmd("clear", Method::POST, "/clear", None).await;
    }

    /// The element's visible text.
    pub(crate) async fn text(&self) -> String {
        let value = self.cmd("text of", Method::GET, "/text", None).await;
        value.as_str().unwrap_or_default().to_owned()
    }

    /// The element's attribute `name` as written in the page, if it has one.
    pub(crate) async fn attr(&self, name: &str) -> Option<String> {
        let value = self.cmd(&format!("attribute {name} of"), Method::GET, &format!("/attribute/{name}"), None).await;
        value.as_str().map(str::to_owned)
    }

    /// The element's DOM property `name` (`value` of an input is what is typed in it now), if not null.
    pub(crate) async fn prop(&self, name: &str) -> Option<Value> {
        let value = self.cmd(&format!("property {name} of"), Method::GET, &format!("/property/{name}"), None).await;
        (!value.is_null()).then_some(value)
    }

    /// The first element matching `css` inside this one, waiting up to [`WAIT`].
    pub(crate) async fn find(&self, css: &str) -> Element {
        match self.session.locate(&format!("/element/{}", self.id), css, true).await {
            Some(element) => element,
            None => panic!("no element matches {css:?} inside {:?} after {WAIT:?}", self.css),
        }
    }
}
