//! The operator console under `/admin`: server-rendered pages (templates compiled into the binary) over the
//! engine's stores, for the operators in `ADMIN_IDS` (signed in with the Telegram Login Widget) or holders of an
//! API key with the `admin` scope.
//!
//! - Sign-in: `GET /admin/login`, the widget's `GET /admin/auth/telegram` ([`session::check_login`]), the key's
//!   `POST /admin/login`; a session is a signed cookie (`HttpOnly; Secure; SameSite=Strict`), see [`session`].
//! - Every form carries the session's CSRF token and a request key: a POST without the right token is refused
//!   and changes nothing; the same form sent twice acts once (the key is the action's idempotency key).
//! - Every action needs the admin role and goes through the audited admin services.
//! - Every answer carries a strict Content-Security-Policy (scripts and styles from this server only, plus the
//!   widget's script from telegram.org on the sign-in page), `X-Frame-Options: DENY`, `nosniff`, `no-store`.
//!
//! Pages: dashboard (KPIs and charts), users (search, a user's money, jobs, payments and referrals, with
//! adjust, refund and ban), jobs (queue, running, dead letters and unknown outcomes), payments, providers,
//! ledger (verify, totals, audit log) and SLOs.

// A refusal is the page the handler answers with at once; it is returned by value, as axum takes it.
#![allow(clippy::result_large_err)]

mod chart;
mod pages;
mod people;
pub mod session;
mod work;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::{DOCTYPE, Markup, html};
use rei_core::billing::AdminRequest;
use rei_core::guards::{Reason, Role};
use rei_core::ids::{IdempotencyKey, UserId};
use rei_core::money::Money;
use rei_core::time::Timestamp;

use crate::HttpState;
use session::{Session, Signer};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "rei_console";
/// The cookie that ties the sign-in form to its CSRF token before there is a session.
const LOGIN_COOKIE: &str = "rei_console_login";

/// How the console signs operators in.
#[derive(Clone, Debug)]
pub struct ConsoleConfig {
    /// The bot's token: the key of the Login Widget's hash. `None`: only API keys sign in.
    pub bot_token: Option<String>,
    /// The bot's username, for the widget's `data-telegram-login`.
    pub bot_username: Option<String>,
    /// The Telegram users who may sign in with the widget (`ADMIN_IDS`).
    pub admins: Vec<i64>,
    /// The oldest `auth_date` a widget answer may carry (default 10 minutes).
    pub auth_max_age: Duration,
    /// How long a session lasts (default 12 hours).
    pub session_ttl: Duration,
    /// Signs sessions and CSRF tokens. Every server of one deployment needs the same (`CONSOLE_SECRET`); a random
    /// one lasts as long as the process.
    pub signer: Signer,
    /// Marks the session cookie `Secure` (default `true`; browsers keep it over `http://localhost` too).
    pub secure_cookie: bool,
    /// How often the dashboard reloads itself, in seconds (default 30; 0: never).
    pub refresh_seconds: u32,
    /// The models the providers page lists with their switches (besides any switched already).
    pub models: Vec<(rei_core::ids::ProviderId, String)>,
}

impl ConsoleConfig {
    /// A console with no widget (API keys only) under `signer`.
    #[must_use]
    pub fn new(signer: Signer) -> ConsoleConfig {
        ConsoleConfig {
            bot_token: None,
            bot_username: None,
            admins: Vec::new(),
            auth_max_age: Duration::from_secs(600),
            session_ttl: Duration::from_secs(12 * 3_600),
            signer,
            secure_cookie: true,
            refresh_seconds: 30,
            models: Vec::new(),
        }
    }
}

/// The console's routes, to merge into the server's router.
pub fn routes() -> Router<Arc<HttpState>> {
    Router::new()
        .route("/admin", get(|| async { Redirect::to("/admin/dashboard") }))
        .route("/admin/", get(|| async { Redirect::to("/admin/dashboard") }))
        .route("/admin/login", get(pages::login_page).post(pages::login_with_key))
        .route("/admin/auth/telegram", get(pages::login_with_telegram))
        .route("/admin/logout", post(pages::logout))
        .route("/admin/static/console.css", get(|| async { asset("text/css", include_str!("console/console.css")) }))
        .route(
            "/admin/static/console.js",
            get(|| async { asset("text/javascript", include_str!("console/console.js")) }),
        )
        .route("/admin/dashboard", get(pages::dashboard))
        .route("/admin/ledger", get(pages::ledger))
        .route("/admin/ledger/verify", post(pages::verify))
        .route("/admin/slo", get(pages::slo))
        .route("/admin/users", get(people::users))
        .route("/admin/users/{id}", get(people::user))
        .route("/admin/users/{id}/adjust", post(people::adjust))
        .route("/admin/users/{id}/refund", post(people::refund))
        .route("/admin/users/{id}/ban", post(people::ban))
        .route("/admin/users/{id}/unban", post(people::unban))
        .route("/admin/results/{job}", get(people::result))
        .route("/admin/jobs", get(work::jobs))
        .route("/admin/jobs/{id}/cancel", post(work::cancel))
        .route("/admin/jobs/{id}/retry", post(work::retry))
        .route("/admin/jobs/{id}/release", post(work::release))
        .route("/admin/payments", get(work::payments))
        .route("/admin/payments/refund", post(work::refund_payment))
        .route("/admin/providers", get(work::providers))
        .route("/admin/providers/model", post(work::switch_model))
        .route("/admin/{*rest}", axum::routing::any(not_found))
        .layer(middleware::from_fn(secure_headers))
}

async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, plain_page("Not found", "There is no such console page.")).into_response()
}

fn asset(kind: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, kind), (header::CACHE_CONTROL, "public, max-age=300")], body).into_response()
}

/// The headers every console answer carries.
async fn secure_headers(request: Request, next: Next) -> Response {
    let login = request.uri().path() == "/admin/login";
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    // The sign-in page loads the Login Widget: a script from telegram.org that frames oauth.telegram.org.
    let csp = if login {
        "default-src 'none'; script-src 'self' https://telegram.org; frame-src https://oauth.telegram.org; \
         style-src 'self'; img-src 'self' data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    } else {
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; \
         form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    };
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(csp));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find_map(|(k, v)| (k == name).then_some(v))
}

fn set_cookie(config: &ConsoleConfig, name: &str, value: &str, max_age: Duration) -> String {
    let secure = if config.secure_cookie { "; Secure" } else { "" };
    format!("{name}={value}; Path=/admin; HttpOnly; SameSite=Strict; Max-Age={}{secure}", max_age.as_secs())
}

fn now(state: &HttpState) -> Timestamp {
    state.engine.clock().now()
}

/// A signed-in operator: their session and the CSRF token of their forms.
pub(crate) struct Operator {
    session: Session,
    csrf: String,
}

impl Operator {
    /// The operator of the request, if its session cookie is valid.
    fn of(state: &HttpState, headers: &HeaderMap) -> Option<Operator> {
        let signer = &state.console.signer;
        let session = signer.unseal(cookie(headers, SESSION_COOKIE)?, now(state))?;
        let csrf = signer.csrf(&session);
        Some(Operator { session, csrf })
    }

    /// The role the session acts with: every console operator is an admin.
    const fn role(&self) -> Role {
        Role::Admin
    }

    /// An admin request for an action, keyed by the form's request key.
    fn request(&self, form: &Form, reason: &str) -> Result<AdminRequest, Response> {
        let reason = Reason::parse(reason).map_err(|e| refused(StatusCode::BAD_REQUEST, &e.to_string()))?;
        // The form's request key is the action's idempotency key: without one, two different forms would be
        // taken for one.
        let key = form
            .get("key")
            .filter(|k| k.len() <= 64)
            .ok_or_else(|| refused(StatusCode::BAD_REQUEST, "The form has no request key: reload the page."))?;
        let key = IdempotencyKey::derived("console", format!("{}.{key}", self.session.actor.0))
            .map_err(|e| refused(StatusCode::BAD_REQUEST, &format!("the form's request key: {e}")))?;
        Ok(AdminRequest { actor: self.session.actor, role: self.role(), reason, key })
    }
}

/// The page a GET answers: the operator's, or a redirect to the sign-in page.
fn signed_in(state: &HttpState, headers: &HeaderMap) -> Result<Operator, Response> {
    Operator::of(state, headers).ok_or_else(|| Redirect::to("/admin/login").into_response())
}

/// A form's fields.
pub(crate) struct Form(HashMap<String, String>);

impl Form {
    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str).filter(|v| !v.is_empty())
    }
}

/// The largest console form, in bytes.
const FORM_MAX: usize = 16 * 1024;

/// The operator of a POST whose CSRF token is the session's, with the form's fields; a refusal page otherwise
/// (the request changes nothing).
async fn posted(state: &HttpState, request: Request) -> Result<(Operator, Form), Response> {
    let operator = Operator::of(state, request.headers()).ok_or_else(|| {
        refused(StatusCode::FORBIDDEN, "You are not signed in (or the session ended): sign in again.")
    })?;
    let body = axum::body::to_bytes(request.into_body(), FORM_MAX)
        .await
        .map_err(|_| refused(StatusCode::PAYLOAD_TOO_LARGE, "The form is too large."))?;
    let fields: HashMap<String, String> =
        serde_urlencoded::from_bytes(&body).map_err(|_| refused(StatusCode::BAD_REQUEST, "The form is malformed."))?;
    let form = Form(fields);
    let token = form.get("csrf").unwrap_or_default();
    if !state.console.signer.csrf_ok(&operator.session, token) {
        tracing::warn!(actor = operator.session.actor.0, "console form refused: missing or wrong CSRF token");
        return Err(refused(
            StatusCode::FORBIDDEN,
            "The form's security token is missing or wrong (a stale page, or a form from another site): reload the \
             page and send it again. Nothing was changed.",
        ));
    }
    Ok((operator, form))
}

/// A refusal page with `status`.
fn refused(status: StatusCode, why: &str) -> Response {
    (status, plain_page("Refused", why)).into_response()
}

/// A page outside the signed-in frame (sign-in, refusals).
fn plain_page(title: &str, text: &str) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head { (head(title)) }
            body.plain {
                main {
                    h1 { (title) }
                    p.message { (text) }
                    p { a href="/admin/dashboard" { "Back to the console" } }
                }
            }
        }
    }
}

fn head(title: &str) -> Markup {
    html! {
        meta charset="utf-8";
        meta name="viewport" content="width=device-width, initial-scale=1";
        title { (title) " · REI console" }
        link rel="stylesheet" href="/admin/static/console.css";
        script src="/admin/static/console.js" defer {}
    }
}

/// The console's pages, in the navigation's order.
const NAV: [(&str, &str); 7] = [
    ("dashboard", "Dashboard"),
    ("users", "Users"),
    ("jobs", "Jobs"),
    ("payments", "Payments"),
    ("providers", "Providers"),
    ("ledger", "Ledger"),
    ("slo", "SLOs"),
];

/// A signed-in page: the navigation, an optional notice (what the last action did), `body`, and with `refresh`
/// a reload every so many seconds.
fn page(
    operator: &Operator,
    current: &str,
    title: &str,
    notice: Option<&Notice>,
    body: &Markup,
    refresh: Option<u32>,
) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head { (head(title)) }
            body data-page=(current) data-refresh=[refresh] {
                header {
                    span.brand { "REI" }
                    nav {
                        @for (id, name) in NAV {
                            a href={ "/admin/" (id) } class=[(id == current).then_some("current")] { (name) }
                        }
                    }
                    form.logout method="post" action="/admin/logout" {
                        (csrf_field(operator))
                        span.who { (who(&operator.session)) }
                        button type="submit" { "Sign out" }
                    }
                }
                main {
                    h1 { (title) }
                    @if let Some(notice) = notice {
                        p class={ "notice " (notice.kind) } id="notice" { (notice.text) }
                    }
                    (body)
                }
            }
        }
    }
}

fn who(session: &Session) -> String {
    match session.via {
        session::Via::Telegram => format!("admin {}", session.actor.0),
        session::Via::ApiKey => "admin (API key)".to_owned(),
    }
}

/// What an action did, shown on the page it returns to.
pub(crate) struct Notice {
    kind: &'static str,
    text: String,
}

impl Notice {
    fn done(text: impl Into<String>) -> Notice {
        Notice { kind: "done", text: text.into() }
    }

    fn failed(text: impl Into<String>) -> Notice {
        Notice { kind: "failed", text: text.into() }
    }
}

/// The hidden fields every form carries: the CSRF token and a fresh request key.
fn csrf_field(operator: &Operator) -> Markup {
    let mut key = [0u8; 12];
    let key = getrandom::fill(&mut key).map(|()| crate::auth::hex(&key)).unwrap_or_default();
    html! {
        input type="hidden" name="csrf" value=(operator.csrf);
        input type="hidden" name="key" value=(key);
    }
}

/// Money as the console prints it: `1 234.50 ₽` (non-breaking spaces between thousands and before the sign).
#[must_use]
pub fn rub(money: Money) -> String {
    let k = money.kopecks();
    let sign = if k < 0 { "-" } else { "" };
    let abs = k.unsigned_abs();
    let rubles = (abs / 100).to_string();
    let mut grouped = String::new();
    for (i, c) in rubles.chars().enumerate() {
        if i > 0 && (rubles.len() - i).is_multiple_of(3) {
            grouped.push('\u{a0}');
        }
        grouped.push(c);
    }
    format!("{sign}{grouped}.{:02}\u{a0}₽", abs % 100)
}

/// A time as the console prints it: UTC, to the second.
fn when(at: Timestamp) -> String {
    jiff::Timestamp::from_millisecond(at.as_millis())
        .map(|t| t.strftime("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|_| at.as_millis().to_string())
}

/// An error of a store, as a page the operator can act on, and a log line.
fn unavailable(what: &str, e: &dyn std::fmt::Display) -> Response {
    tracing::error!(error = %e, "console: {what}");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        plain_page("Unavailable", &format!("Could not read {what}: {e}. Check the database, then reload.")),
    )
        .into_response()
}

/// A user id read from a path or a form.
fn user_id(text: &str) -> Result<UserId, Response> {
    text.trim().parse::<i64>().map(UserId).map_err(|_| refused(StatusCode::BAD_REQUEST, "That is not a user id."))
}

/// The state the console needs from [`HttpState`], for the handlers' signatures.
pub(crate) type St = State<Arc<HttpState>>;
