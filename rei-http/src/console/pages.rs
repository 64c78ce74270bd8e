//! Sign-in, the dashboard, the ledger and the SLOs.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use rei_core::access::Scope;
use rei_core::guards::AuditFilter;
use rei_core::ledger::{SystemAccount, VerifyReport};
use rei_core::money::Ratio;
use rei_core::reports::{Series, latency_p95_ms};
use rei_core::slo::{ErrorBudget, Window, burn_rate, evaluate};
use rei_core::time::Timestamp;
use rust_decimal::Decimal;
use serde::Deserialize;

use super::chart::{self, Line};
use super::session::{self, Via};
use super::{
    LOGIN_COOKIE, Notice, Operator, SESSION_COOKIE, St, cookie, csrf_field, head, now, page, posted, refused, rub,
    set_cookie, signed_in, unavailable, when,
};
use crate::HttpState;

const DAY: Duration = Duration::from_secs(86_400);

/// `GET /admin/login`: the Login Widget (when a bot is configured) and the API key form.
pub(crate) async fn login_page(State(state): St, headers: HeaderMap) -> Response {
    if Operator::of(&state, &headers).is_some() {
        return Redirect::to("/admin/dashboard").into_response();
    }
    let mut nonce = [0u8; 16];
    if getrandom::fill(&mut nonce).is_err() {
        return refused(StatusCode::SERVICE_UNAVAILABLE, "No randomness from the operating system.");
    }
    let nonce = crate::auth::hex(&nonce);
    let csrf = state.console.signer.csrf(&login_session(&nonce));
    let console = &state.console;
    let body = html! {
        (maud::DOCTYPE)
        html lang="en" {
            head { (head("Sign in")) }
            body.plain {
                main.login {
                    h1 { "REI console" }
                    @if let (Some(_), Some(bot)) = (&console.bot_token, &console.bot_username) {
                        section {
                            h2 { "With Telegram" }
                            p { "For the admins listed in ADMIN_IDS." }
                            script async src="https://telegram.org/js/telegram-widget.js?22"
                                data-telegram-login=(bot) data-size="large" data-auth-url="/admin/auth/telegram"
                                data-request-access="write" {}
                        }
                    } @else {
                        p.hint { "Telegram sign-in is off: set BOT_TOKEN and BOT_USERNAME for `rei serve`." }
                    }
                    section {
                        h2 { "With an API key" }
                        p { "A key with the admin scope (" code { "rei api-key create --scope admin" } ")." }
                        form method="post" action="/admin/login" {
                            input type="hidden" name="csrf" value=(csrf);
                            label { "API key " input type="password" name="api_key" autocomplete="off" required; }
                            button type="submit" { "Sign in" }
                        }
                    }
                }
            }
        }
    };
    let cookie = set_cookie(console, LOGIN_COOKIE, &nonce, Duration::from_secs(3_600));
    ([(header::SET_COOKIE, cookie)], body).into_response()
}

/// The pre-session of the sign-in form: its CSRF token is made from the login cookie's nonce.
fn login_session(nonce: &str) -> session::Session {
    session::Session {
        actor: session::API_KEY_ACTOR,
        via: Via::ApiKey,
        expires: Timestamp::from_millis(0),
        nonce: format!("login.{nonce}"),
    }
}

/// Sets the session cookie and goes to the dashboard.
fn open_session(state: &HttpState, actor: rei_core::ids::UserId, via: Via) -> Response {
    let console = &state.console;
    let Ok(session) = console.signer.open(actor, via, now(state), console.session_ttl) else {
        return refused(StatusCode::SERVICE_UNAVAILABLE, "No randomness from the operating system.");
    };
    let cookie = set_cookie(console, SESSION_COOKIE, &console.signer.seal(&session), console.session_ttl);
    tracing::info!(actor = actor.0, via = ?via, "console sign-in");
    ([(header::SET_COOKIE, cookie)], Redirect::to("/admin/dashboard")).into_response()
}

/// `POST /admin/login`: signs in with an API key that has the admin scope.
pub(crate) async fn login_with_key(State(state): St, request: Request) -> Response {
    let nonce = cookie(request.headers(), LOGIN_COOKIE).map(str::to_owned);
    let body = match axum::body::to_bytes(request.into_body(), super::FORM_MAX).await {
        Ok(b) => b,
        Err(_) => return refused(StatusCode::PAYLOAD_TOO_LARGE, "The form is too large."),
    };
    let Ok(form) = serde_urlencoded::from_bytes::<BTreeMap<String, String>>(&body) else {
        return refused(StatusCode::BAD_REQUEST, "The form is malformed.");
    };
    let token_ok = match (&nonce, form.get("csrf")) {
        (Some(nonce), Some(token)) => state.console.signer.csrf_ok(&login_session(nonce), token),
        _ => false,
    };
    if !token_ok {
        tracing::warn!("console sign-in refused: missing or wrong CSRF token");
        return refused(StatusCode::FORBIDDEN, "The sign-in form is stale or forged: open the sign-in page again.");
    }
    let key = form.get("api_key").map(|k| k.trim()).unwrap_or_default();
    let mut headers = HeaderMap::new();
    let Ok(value) = format!("Bearer {key}").parse() else {
        return refused(StatusCode::UNAUTHORIZED, "That is not an API key.");
    };
    headers.insert(header::AUTHORIZATION, value);
    match state.auth.authenticate(&headers).await {
        Ok(caller) if caller.0.allows(Scope::Admin) => open_session(&state, session::API_KEY_ACTOR, Via::ApiKey),
        Ok(caller) => {
            tracing::warn!(key = caller.0.id.as_str(), "console sign-in refused: the key has no admin scope");
            refused(StatusCode::FORBIDDEN, "That key has no admin scope: the console needs an admin key.")
        }
        Err(_) => {
            tracing::warn!("console sign-in refused: unknown, wrong or revoked key");
            refused(StatusCode::UNAUTHORIZED, "That key is unknown, wrong or revoked.")
        }
    }
}

/// `GET /admin/auth/telegram`: the Login Widget's redirect, checked and for `ADMIN_IDS` only.
pub(crate) async fn login_with_telegram(State(state): St, Query(fields): Query<BTreeMap<String, String>>) -> Response {
    let console = &state.console;
    let Some(token) = &console.bot_token else {
        return refused(StatusCode::NOT_FOUND, &session::LoginError::Off.to_string());
    };
    match session::check_login(&fields, token, now(&state), console.auth_max_age) {
        Ok(user) if console.admins.contains(&user.0) => open_session(&state, user, Via::Telegram),
        Ok(user) => {
            tracing::warn!(user = user.0, "console sign-in refused: not in ADMIN_IDS");
            refused(StatusCode::FORBIDDEN, "That Telegram account is not an admin of this bot (ADMIN_IDS).")
        }
        Err(e) => {
            tracing::warn!(error = %e, "console sign-in refused");
            refused(StatusCode::FORBIDDEN, &format!("Sign-in refused: {e}."))
        }
    }
}

/// `POST /admin/logout`.
pub(crate) async fn logout(State(state): St, request: Request) -> Response {
    if let Err(refusal) = posted(&state, request).await {
        return refusal;
    }
    let cookie = set_cookie(&state.console, SESSION_COOKIE, "", Duration::ZERO);
    ([(header::SET_COOKIE, cookie)], Redirect::to("/admin/login")).into_response()
}

/// The dashboard's ranges: their name, length and bucket.
const RANGES: [(&str, &str, u64, u64); 3] = [
    ("24h", "24 hours", 86_400, 3_600),
    ("7d", "7 days", 7 * 86_400, 6 * 3_600),
    ("30d", "30 days", 30 * 86_400, 86_400),
];

#[derive(Deserialize)]
pub(crate) struct RangeQuery {
    range: Option<String>,
}

/// The start of the UTC day of `at`.
fn day_start(at: Timestamp) -> Timestamp {
    let ms = at.as_millis();
    Timestamp::from_millis(ms - ms.rem_euclid(86_400_000))
}

/// `GET /admin/dashboard?range=24h|7d|30d`.
pub(crate) async fn dashboard(State(state): St, headers: HeaderMap, Query(q): Query<RangeQuery>) -> Response {
    let operator = match signed_in(&state, &headers) {
        Ok(o) => o,
        Err(r) => return r,
    };
    let range = q.range.as_deref().unwrap_or("24h");
    let (range, range_name, length, bucket) = RANGES.iter().copied().find(|r| r.0 == range).unwrap_or(RANGES[0]);
    let now = now(&state);
    let end = now.plus(Duration::from_millis(1));
    let today = day_start(now);
    let reports = state.engine.reports();
    let members = match state.engine.members().stats(now).await {
        Ok(m) => m,
        Err(e) => return unavailable("the members", &e),
    };
    let (jobs, money, totals) =
        match tokio::try_join!(reports.jobs(today, end), reports.money(today, end), reports.ledger_totals()) {
            Ok(t) => t,
            Err(e) => return unavailable("the reports", &e),
        };
    let since = end.minus(Duration::from_secs(length));
    let bucket = Duration::from_secs(bucket);
    let mut series = BTreeMap::new();
    for s in [Series::Revenue, Series::JobsSucceeded, Series::JobsFailed, Series::NewUsers, Series::TopUps] {
        match reports.series(s, since, end, bucket).await {
            Ok(points) => {
                series.insert(s.as_str(), points);
            }
            Err(e) => return unavailable("the charts", &e),
        }
    }
    let labels: Vec<String> = series
        .get(Series::Revenue.as_str())
        .map(|p| p.iter().map(|p| label(p.at, bucket)).collect())
        .unwrap_or_default();
    let values = |s: Series| -> Vec<i64> {
        series.get(s.as_str()).map(|p| p.iter().map(|p| p.value).collect()).unwrap_or_default()
    };
    let latency = match latency_lines(&state, since, end, bucket).await {
        Ok(l) => l,
        Err(r) => return r,
    };
    let kopecks = |v: i64| rub(rei_core::money::Money::from_kopecks(v));
    let count = |v: i64| v.to_string();
    let ms = |v: i64| format!("{v} ms");
    let colors = ["#2b6cb0", "#c05621", "#2f855a", "#6b46c1", "#b83280"];
    let latency_series: Vec<Line<'_>> = latency
        .iter()
        .zip(colors.iter().cycle())
        .map(|((name, values), color)| Line { name, color, values: values.clone() })
        .collect();
    let body = html! {
        section.kpis {
            (kpi("users", "Users", &members.total.to_string(), &format!("+{} today", members.joined_since_1d)))
            (kpi("active", "Active 1 / 7 / 30 days",
                &format!("{} / {} / {}", members.active_1d, members.active_7d, members.active_30d),
                &format!("{} paid", members.paid)))
            (kpi("generations", "Generations today", &jobs.total().to_string(),
                &format!("{} done, {} failed, {} running", jobs.succeeded, jobs.failed, jobs.running)))
            (kpi("revenue", "Revenue today", &rub(money.revenue), &format!("margin {}", rub(money.margin()))))
            (kpi("held", "Held now", &rub(totals.held), &format!("{} holds", totals.active_holds)))
            (kpi("topups", "Top-ups today", &rub(money.top_ups), &format!("{} payments", money.top_up_count)))
        }
        nav.ranges {
            "Range: "
            @for (id, name, _, _) in RANGES {
                a href={ "/admin/dashboard?range=" (id) } class=[(id == range).then_some("current")] { (name) }
            }
        }
        section.charts {
            (chart::bars("chart-revenue", &format!("Revenue, {range_name}"), &labels, &values(Series::Revenue),
                "#2b6cb0", &kopecks))
            (chart::lines("chart-generations", &format!("Generations by status, {range_name}"), &labels, &[
                Line { name: "succeeded", color: "#2f855a", values: values(Series::JobsSucceeded) },
                Line { name: "failed", color: "#c53030", values: values(Series::JobsFailed) },
            ], &count))
            (chart::bars("chart-users", &format!("New users, {range_name}"), &labels, &values(Series::NewUsers),
                "#6b46c1", &count))
            (chart::bars("chart-topups", &format!("Top-ups, {range_name}"), &labels, &values(Series::TopUps),
                "#b7791f", &kopecks))
            @if latency_series.is_empty() {
                figure.chart id="chart-latency" { figcaption { "Provider latency p95" } p.hint { "No provider answered in this range." } }
            } @else {
                (chart::lines("chart-latency", &format!("Provider latency p95, {range_name}"), &labels,
                    &latency_series, &ms))
            }
        }
    };
    let refresh = Some(state.console.refresh_seconds).filter(|s| *s > 0);
    page(&operator, "dashboard", "Dashboard", None, &body, refresh).into_response()
}

/// A bucket's label: the hour for hourly buckets, the day otherwise (UTC).
fn label(at: Timestamp, bucket: Duration) -> String {
    let format = if bucket < DAY { "%d %H:00" } else { "%m-%d" };
    jiff::Timestamp::from_millisecond(at.as_millis()).map(|t| t.strftime(format).to_string()).unwrap_or_default()
}

/// Each provider's p95 latency per bucket (0 where it had no success), by provider name.
async fn latency_lines(
    state: &HttpState,
    since: Timestamp,
    until: Timestamp,
    bucket: Duration,
) -> Result<Vec<(String, Vec<i64>)>, Response> {
    let reports = state.engine.reports();
    let mut by: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let mut start = since;
    let mut i = 0;
    while start < until {
        let end = start.plus(bucket).min(until);
        let usage = reports.providers(start, end).await.map_err(|e| unavailable("the providers", &e))?;
        for u in usage {
            let line = by.entry(u.provider.to_string()).or_default();
            line.resize(i, 0);
            let p95 = latency_p95_ms(&u.latency).map_or(0, |v| i64::try_from(v).unwrap_or(i64::MAX));
            line.push(p95);
        }
        start = end;
        i += 1;
    }
    Ok(by
        .into_iter()
        .map(|(name, mut values)| {
            values.resize(i, 0);
            (name, values)
        })
        .collect())
}

fn kpi(id: &str, name: &str, value: &str, detail: &str) -> Markup {
    html! {
        div.kpi id={ "kpi-" (id) } {
            span.name { (name) }
            span.value { (value) }
            span.detail { (detail) }
        }
    }
}

/// `GET /admin/ledger`: the totals and the audit log.
pub(crate) async fn ledger(State(state): St, headers: HeaderMap) -> Response {
    match signed_in(&state, &headers) {
        Ok(operator) => ledger_page(&state, &operator, None, None).await,
        Err(r) => r,
    }
}

/// `POST /admin/ledger/verify`: verifies the ledger now and shows the result.
pub(crate) async fn verify(State(state): St, request: Request) -> Response {
    let (operator, _) = match posted(&state, request).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    match state.engine.billing().verify().await {
        Ok(report) => {
            tracing::info!(clean = report.is_clean(), transactions = report.transactions, "console: ledger verified");
            ledger_page(&state, &operator, Some(&report), None).await
        }
        Err(e) => ledger_page(&state, &operator, None, Some(&Notice::failed(format!("Verify failed: {e}")))).await,
    }
}

async fn ledger_page(
    state: &HttpState,
    operator: &Operator,
    report: Option<&VerifyReport>,
    notice: Option<&Notice>,
) -> Response {
    let totals = match state.engine.reports().ledger_totals().await {
        Ok(t) => t,
        Err(e) => return unavailable("the ledger totals", &e),
    };
    let audit = match state.engine.audit().list(&AuditFilter::latest(50)).await {
        Ok(a) => a,
        Err(e) => return unavailable("the audit log", &e),
    };
    let system_sum = totals.system.iter().fold(0_i64, |a, (_, m)| a.saturating_add(m.kopecks()));
    let sum = totals.available.kopecks().saturating_add(totals.held.kopecks()).saturating_add(system_sum);
    let body = html! {
        section {
            h2 { "Verify" }
            form method="post" action="/admin/ledger/verify" {
                (csrf_field(operator))
                button type="submit" id="verify" { "Verify now" }
            }
            @if let Some(r) = report {
                div id="verify-result" class={ "verify " (if r.is_clean() { "clean" } else { "dirty" }) } {
                    p.status { (if r.is_clean() { "Clean" } else { "NOT CLEAN" }) }
                    p { (r.transactions) " transactions checked; every account's sum "
                        (rub(r.total)) " (zero when money is conserved)." }
                    @if !r.drifts.is_empty() {
                        table.drift {
                            thead { tr { th { "Account" } th { "Cached" } th { "From postings" } } }
                            tbody { @for d in &r.drifts {
                                tr { td { (format!("{:?}", d.account)) } td { (rub(d.cached)) } td { (rub(d.recomputed)) } }
                            } }
                        }
                    }
                    @if !r.unbalanced.is_empty() { p { "Unbalanced transactions: " (r.unbalanced.len()) } }
                    @if !r.below_floor.is_empty() { p { "Users below their floor: " (r.below_floor.len()) } }
                }
            }
        }
        section {
            h2 { "Accounts" }
            table id="accounts" {
                tbody {
                    tr { th { "Users' available" } td.money data-kopecks=(totals.available.kopecks()) { (rub(totals.available)) } }
                    tr { th { "Users' held (" (totals.active_holds) " holds)" } td.money data-kopecks=(totals.held.kopecks()) { (rub(totals.held)) } }
                    @for (account, balance) in &totals.system {
                        tr { th { (system_name(*account)) } td.money data-kopecks=(balance.kopecks()) { (rub(*balance)) } }
                    }
                    tr.sum { th { "Sum (zero in a sound ledger)" } td.money id="ledger-sum" data-kopecks=(sum) { (rub(rei_core::money::Money::from_kopecks(sum))) } }
                }
            }
            p { (totals.users_with_money) " users hold money." }
        }
        section {
            h2 { "Audit log" }
            table id="audit" {
                thead { tr { th { "When" } th { "Who" } th { "Action" } th { "Target" } th { "Outcome" } th { "Why" } } }
                tbody {
                    @for r in &audit {
                        tr {
                            td { (when(r.at)) }
                            td { (r.actor.0) " (" (format!("{:?}", r.actor_role)) ")" }
                            td { (format!("{:?}", r.action)) }
                            td { (r.target.as_str()) }
                            td { (format!("{:?}", r.outcome)) }
                            td { (r.reason.as_str()) }
                        }
                    }
                }
            }
        }
    };
    page(operator, "ledger", "Ledger", notice, &body, None).into_response()
}

fn system_name(account: SystemAccount) -> &'static str {
    match account {
        SystemAccount::Payments => "Payments (money that came in, negative)",
        SystemAccount::Revenue => "Revenue",
        SystemAccount::Promo => "Promo (grants and adjustments)",
        SystemAccount::RefundsOut => "Refunds to cards",
    }
}

/// A ratio as a percentage with two decimals.
fn percent(r: Ratio) -> String {
    format!("{}\u{a0}%", (r.value() * Decimal::ONE_HUNDRED).round_dp(2).normalize())
}

/// `GET /admin/slo`: each objective, its budget left and its burn rates.
pub(crate) async fn slo(State(state): St, headers: HeaderMap) -> Response {
    let operator = match signed_in(&state, &headers) {
        Ok(o) => o,
        Err(r) => return r,
    };
    let windows = match state.engine.reports().slo_windows(now(&state)).await {
        Ok(w) => w,
        Err(e) => return unavailable("the SLO windows", &e),
    };
    let body = html! {
        @for (slo, counts) in windows.by_slo() {
            @let day = counts.get(Window::D3);
            @let budget = ErrorBudget::of(&slo, day);
            @let alerts = evaluate(&slo, &counts);
            section.slo id={ "slo-" (slo.name()) } {
                h2 { (slo.name()) " — objective " (percent(slo.objective())) }
                p.budget {
                    "Error budget left over 3 days: " strong.budget-left { (percent(budget.remaining)) }
                    " (" (budget.consumed_bad) " bad of " (budget.allowed_bad.normalize()) " allowed)"
                }
                @if alerts.is_empty() {
                    p.ok { "No burn-rate alert." }
                } @else {
                    @for a in &alerts {
                        p.alert { (format!("{:?}", a.rule.severity())) ": burning " (a.long_burn.value().round_dp(1))
                            "x over " (window_name(a.rule.long())) " and " (a.short_burn.value().round_dp(1)) "x over "
                            (window_name(a.rule.short())) }
                    }
                }
                table {
                    thead { tr { th { "Window" } th { "Good" } th { "Total" } th { "Burn rate" } } }
                    tbody {
                        @for w in Window::ALL {
                            @let c = counts.get(w);
                            tr { td { (window_name(w)) } td { (c.good()) } td { (c.total()) }
                                td.burn { (burn_rate(&slo, c).value().round_dp(2).normalize()) "x" } }
                        }
                    }
                }
            }
        }
    };
    page(&operator, "slo", "SLOs", None, &body, None).into_response()
}

fn window_name(w: Window) -> &'static str {
    match w {
        Window::M5 => "5 min",
        Window::M30 => "30 min",
        Window::H1 => "1 h",
        Window::H6 => "6 h",
        Window::D1 => "1 day",
        Window::D3 => "3 days",
    }
}
