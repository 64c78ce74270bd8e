//! The browser harness (`tests/support/webdriver.rs`) against a tiny page served on loopback: headless Chromium loads
//! it and runs its script, a typed form is posted, a screenshot is a PNG, and a cookie set `HttpOnly; Secure;
//! SameSite=Strict` over plain http is kept and sent back on `localhost` and on `127.0.0.1`, the cookie the
//! operator console's sign-in relies on.

use crate::webdriver::Browser;
use axum::Router;
use axum::http::{HeaderMap, header};
use axum::response::{Html, IntoResponse};
use axum::routing::{get, post};
use tokio::net::TcpListener;

const SESSION_COOKIE: &str = "rei_console=s3cr3t; HttpOnly; Secure; SameSite=Strict; Path=/";

const PAGE: &str = r#"<!doctype html>
<html><head><title>REI smoke</title></head>
<body>
  <p id="status">loading</p>
  <form method="post" action="/submit">
    <input id="note" name="note" type="text">
    <button id="send" type="submit">Send</button>
  </form>
  <button id="more" type="button" onclick="document.getElementById('count').textContent++">More</button>
  <span id="count">0</span>
  <script>document.getElementById('status').textContent = 'ready';</script>
</body></html>"#;

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The value of `name` in an `application/x-www-form-urlencoded` body.
fn form_field(body: &str, name: &str) -> Option<String> {
    body.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == name).then(|| percent_decode(&value.replace('+', " ")))
    })
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn submit(body: String) -> Html<String> {
    let note = form_field(&body, "note").unwrap_or_default();
    Html(format!(
        "<!doctype html><title>Sent</title><p id=\"result\">You sent: {}</p><p id=\"raw\">{}</p>",
        escape(&note),
        escape(&body)
    ))
}

async fn set_cookie() -> impl IntoResponse {
    ([(header::SET_COOKIE, SESSION_COOKIE)], Html("<!doctype html><title>Set</title><p id=\"done\">set</p>"))
}

async fn echo_cookie(headers: HeaderMap) -> Html<String> {
    let cookie = headers.get(header::COOKIE).and_then(|v| v.to_str().ok()).unwrap_or("none");
    Html(format!("<!doctype html><title>Echo</title><pre id=\"cookie\">{}</pre>", escape(cookie)))
}

/// Serves the page on 127.0.0.1; the port.
async fn serve() -> u16 {
    let app = Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/submit", post(submit))
        .route("/set-cookie", get(set_cookie))
        .route("/echo-cookie", get(echo_cookie));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
    let port = listener.local_addr().expect("the listener's address").port();
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve the page") });
    port
}

#[tokio::test]
async fn the_page_loads_and_its_script_runs() {
    let port = serve().await;
    let browser = Browser::start().await;
    let base = format!("http://127.0.0.1:{port}");
    browser.goto(&format!("{base}/")).await;
    assert_eq!(browser.title().await, "REI smoke");
    assert_eq!(browser.current_url().await, format!("{base}/"));
    assert_eq!(browser.text("#status").await, "ready");
    assert!(browser.source().await.contains("id=\"note\""));
    assert!(browser.try_find("#missing").await.is_none());
    assert_eq!(browser.find_all("button").await.len(), 2);
    assert_eq!(browser.find("form").await.find("#send").await.attr("type").await.as_deref(), Some("submit"));

    let more = browser.find("#more").await;
    more.click().await;
    more.click().await;
    assert_eq!(browser.text("#count").await, "2");
    browser.execute("document.getElementById('count').textContent = arguments[0];", vec!["40".into()]).await;
    more.click().await;
    browser.wait_for("the count to reach 41", "document.getElementById('count').textContent === '41'").await;
    let two = serde_json::json!(2);
    assert_eq!(browser.execute("return arguments[0] + 1;", vec![two]).await, 3);
    browser.wait_until("the count to read 41", async || browser.text("#count").await == "41").await;
    browser.quit().await;
}

#[tokio::test]
async fn a_typed_form_is_posted_and_its_result_shown() {
    let port = serve().await;
    let browser = Browser::start().await;
    browser.goto(&format!("http://127.0.0.1:{port}/")).await;
    let note = browser.find("#note").await;
    note.send_keys("wrong").await;
    note.clear().await;
    note.send_keys("Привет & <b>bye</b>").await;
    assert_eq!(note.prop("value").await, Some("Привет & <b>bye</b>".into()));
    browser.find("#send").await.click().await;
    assert_eq!(browser.text("#result").await, "You sent: Привет & <b>bye</b>");
    assert_eq!(browser.title().await, "Sent");
    assert_eq!(browser.current_url().await, format!("http://127.0.0.1:{port}/submit"));
}

#[tokio::test]
async fn a_screenshot_is_a_png_file() {
    let port = serve().await;
    let browser = Browser::start().await;
    browser.goto(&format!("http://127.0.0.1:{port}/")).await;
    browser.find("#note").await.send_keys("screenshot").await;
    let path = browser.screenshot("browser-smoke").await;
    let png = std::fs::read(&path).expect("read the screenshot");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "{} is not a PNG", path.display());
    assert!(png.len() > 1000, "{} has only {} bytes", path.display(), png.len());
}

/// Sets the console-style cookie over plain http on `host`, then reports what the browser holds and what it
/// sends back on the next request.
async fn secure_cookie_round_trip(host: &str) -> (Vec<crate::webdriver::Cookie>, String) {
    let port = serve().await;
    let browser = Browser::start().await;
    let base = format!("http://{host}:{port}");
    browser.goto(&format!("{base}/set-cookie")).await;
    assert_eq!(browser.text("#done").await, "set");
    let cookies = browser.cookies().await;
    browser.goto(&format!("{base}/echo-cookie")).await;
    let sent = browser.text("#cookie").await;

    // The harness's own cookie handling on the same origin.
    browser.delete_cookies().await;
    assert!(browser.cookies().await.is_empty());
    browser.goto(&format!("{base}/echo-cookie")).await;
    assert_eq!(browser.text("#cookie").await, "none");
    browser.add_cookie("added", "by-webdriver").await;
    browser.goto(&format!("{base}/echo-cookie")).await;
    assert_eq!(browser.text("#cookie").await, "added=by-webdriver");
    (cookies, sent)
}

fn assert_kept_and_sent(host: &str, cookies: &[crate::webdriver::Cookie], sent: &str) {
    let cookie = cookies
        .iter()
        .find(|c| c.name == "rei_console")
        .unwrap_or_else(|| panic!("Chromium dropped the Secure cookie set over http://{host}: holds {cookies:?}"));
    assert_eq!(cookie.value, "s3cr3t");
    assert!(cookie.http_only && cookie.secure, "{cookie:?}");
    assert_eq!(cookie.same_site.as_deref(), Some("Strict"));
    assert_eq!(cookie.path, "/");
    assert_eq!(sent, "rei_console=s3cr3t", "what Chromium sent back to http://{host}");
}

#[tokio::test]
async fn a_secure_strict_http_only_cookie_over_http_is_kept_on_localhost() {
    let (cookies, sent) = secure_cookie_round_trip("localhost").await;
    assert_kept_and_sent("localhost", &cookies, &sent);
}

#[tokio::test]
async fn a_secure_strict_http_only_cookie_over_http_is_kept_on_127_0_0_1() {
    let (cookies, sent) = secure_cookie_round_trip("127.0.0.1").await;
    assert_kept_and_sent("127.0.0.1", &cookies, &sent);
}
