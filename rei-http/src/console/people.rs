//! Users: search, one user's money, jobs, payments and referrals, and the actions on them (adjust, refund, ban,
//! unban), each through the audited admin services.

use std::time::Duration;

use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use rei_core::generation::AssetKey;
use rei_core::ids::{JobId, UserId};
use rei_core::jobs::Job;
use rei_core::ledger::Account;
use rei_core::members::{GrowthConfig, Member};
use rei_core::money::Money;
use serde::Deserialize;

use super::{
    Form, Notice, Operator, St, csrf_field, now, page, posted, refused, rub, signed_in, unavailable, user_id, when,
};
use crate::HttpState;

#[derive(Deserialize)]
pub(crate) struct Search {
    q: Option<String>,
}

/// The member named by an id, `@username` (or a bare username) or a referral code.
async fn find(state: &HttpState, who: &str) -> Result<Option<Member>, Response> {
    let members = state.engine.members();
    let who = who.trim();
    let found = if let Ok(id) = who.parse::<i64>() {
        members.get(UserId(id)).await
    } else if let Some(name) = who.strip_prefix('@') {
        members.by_username(name).await
    } else {
        match members.by_referral_code(who).await {
            Ok(None) => members.by_username(who).await,
            other => other,
        }
    };
    found.map_err(|e| unavailable("the members", &e))
}

/// `GET /admin/users?q=…`: the search, and the member found.
pub(crate) async fn users(State(state): St, headers: HeaderMap, Query(search): Query<Search>) -> Response {
    let operator = match signed_in(&state, &headers) {
        Ok(o) => o,
        Err(r) => return r,
    };
    let q = search.q.unwrap_or_default();
    let found = if q.trim().is_empty() {
        None
    } else {
        match find(&state, &q).await {
            Ok(found) => Some(found),
            Err(r) => return r,
        }
    };
    let body = html! {
        form.search method="get" action="/admin/users" {
            input type="search" name="q" value=(q) placeholder="id, @username or referral code" autofocus;
            button type="submit" { "Search" }
        }
        @match &found {
            Some(Some(m)) => {
                p id="found" { "Found " a href={ "/admin/users/" (m.user.0) } { (name_of(m)) } "." }
            }
            Some(None) => { p.hint id="not-found" { "No user matches “" (q) "”." } }
            None => {}
        }
    };
    // One match goes straight to the user's page.
    if let Some(Some(m)) = &found {
        return axum::response::Redirect::to(&format!("/admin/users/{}", m.user.0)).into_response();
    }
    page(&operator, "users", "Users", None, &body, None).into_response()
}

fn name_of(m: &Member) -> String {
    match &m.username {
        Some(u) => format!("{} (@{u}, {})", m.first_name, m.user.0),
        None => format!("{} ({})", m.first_name, m.user.0),
    }
}

/// `GET /admin/users/{id}`.
pub(crate) async fn user(State(state): St, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let operator = match signed_in(&state, &headers) {
        Ok(o) => o,
        Err(r) => return r,
    };
    let user = match user_id(&id) {
        Ok(u) => u,
        Err(r) => return r,
    };
    user_page(&state, &operator, user, None).await
}

async fn user_page(state: &HttpState, operator: &Operator, user: UserId, notice: Option<&Notice>) -> Response {
    let engine = &state.engine;
    let member = match engine.members().get(user).await {
        Ok(m) => m,
        Err(e) => return unavailable("the member", &e),
    };
    let balance = match engine.billing().balance(user).await {
        Ok(b) => b,
        Err(e) => return unavailable("the balance", &e),
    };
    let history = match engine.ledger().history(user, None, 20).await {
        Ok(h) => h,
        Err(e) => return unavailable("the ledger history", &e),
    };
    let jobs = match engine.jobs().list_for_user(user, None, 20).await {
        Ok(j) => j,
        Err(e) => return unavailable("the jobs", &e),
    };
    let payments = match engine.payments().list_for_user(user, None, 20).await {
        Ok(p) => p.records,
        Err(e) => return unavailable("the payments", &e),
    };
    let (referees, referee_count) =
        match tokio::try_join!(engine.members().referees(user, 20), engine.members().referee_count(user)) {
            Ok(r) => r,
            Err(e) => return unavailable("the referrals", &e),
        };
    let now = now(state);
    let title = member.as_ref().map_or_else(|| format!("User {}", user.0), name_of);
    let body = html! {
        section.card id="balance" {
            div.kpi { span.name { "Available" } span.value id="available" data-kopecks=(balance.available.kopecks()) { (rub(balance.available)) } }
            div.kpi { span.name { "Held" } span.value id="held" data-kopecks=(balance.held.kopecks()) { (rub(balance.held)) }
                span.detail { (balance.active_holds) " holds" } }
            @if let Some(m) = &member {
                div.kpi { span.name { "Status" }
                    span.value id="status" { (if m.is_banned(now) { "banned" } else if m.blocked_at.is_some() { "blocked the bot" } else { "active" }) }
                    span.detail { "joined " (when(m.joined_at)) ", seen " (when(m.last_seen_at)) } }
                div.kpi { span.name { "Referral code" } span.value { (m.referral_code) }
                    span.detail { (referee_count) " referred" @if let Some(r) = m.referrer { ", referred by " a href={ "/admin/users/" (r.0) } { (r.0) } } } }
            } @else {
                p.hint { "This user never started the bot (no member record); their money is shown all the same." }
            }
        }
        section.actions {
            form.action id="adjust" method="post" action={ "/admin/users/" (user.0) "/adjust" } {
                (csrf_field(operator))
                h3 { "Adjust the balance" }
                label { "Amount (±₽) " input name="amount" required placeholder="-50.00"; }
                label { "Reason " input name="reason" required; }
                button type="submit" { "Adjust" }
            }
            form.action id="refund" method="post" action={ "/admin/users/" (user.0) "/refund" } {
                (csrf_field(operator))
                h3 { "Refund a job to the wallet" }
                label { "Job " select name="job" required {
                    @for j in jobs.iter().filter(|j| j.state == rei_core::jobs::JobState::Succeeded) {
                        option value=(j.id) { (j.id) " — " (j.product) " " (rub(j.price)) }
                    }
                } }
                label { "Amount (empty: the whole price) " input name="amount"; }
                button type="submit" { "Refund" }
            }
            @if member.as_ref().is_some_and(|m| m.is_banned(now)) {
                form.action id="unban" method="post" action={ "/admin/users/" (user.0) "/unban" } {
                    (csrf_field(operator))
                    h3 { "Ban" }
                    p { "Banned" @if let Some(until) = member.as_ref().and_then(|m| m.ban.as_ref()).and_then(|b| b.until) { " until " (when(until)) } "." }
                    button type="submit" { "Unban" }
                }
            } @else if member.is_some() {
                form.action id="ban" method="post" action={ "/admin/users/" (user.0) "/ban" } {
                    (csrf_field(operator))
                    h3 { "Ban" }
                    label { "Days (empty: for good) " input name="days" type="number" min="1" max="3650"; }
                    label { "Reason " input name="reason" required; }
                    button type="submit" { "Ban" }
                }
            }
        }
        section {
            h2 { "Jobs" }
            table id="jobs" {
                thead { tr { th { "Job" } th { "Created" } th { "Product" } th { "Price" } th { "State" } th { "Result" } } }
                tbody { @for j in &jobs { (job_row(j)) } }
            }
        }
        section {
            h2 { "Ledger" }
            table id="history" {
                thead { tr { th { "When" } th { "Kind" } th { "Available" } th { "Held" } th { "Why" } } }
                tbody {
                    @for e in &history {
                        @let tx = &e.transaction;
                        tr {
                            td { (when(tx.at)) }
                            td { (tx.kind.as_str()) }
                            td.money { (rub(delta(tx, Account::Available(user)))) }
                            td.money { (rub(delta(tx, Account::Held(user)))) }
                            td { (tx.reason.as_ref().map(|r| r.as_str().to_owned()).unwrap_or_default()) }
                        }
                    }
                }
            }
        }
        section {
            h2 { "Payments" }
            (super::work::payment_table(operator, &payments, false))
        }
        section {
            h2 { "Referrals" }
            @if referees.is_empty() { p.hint { "No one joined with this user's code." } }
            ul id="referees" { @for r in &referees { li { a href={ "/admin/users/" (r.user.0) } { (name_of(r)) } " joined " (when(r.joined_at)) } } }
        }
    };
    page(operator, "users", &title, notice, &body, None).into_response()
}

fn job_row(j: &Job) -> Markup {
    html! {
        tr data-job=(j.id) {
            td { code { (j.id) } }
            td { (when(j.created_at)) }
            td { (j.product) }
            td.money { (rub(j.price)) }
            td.state { (j.state) }
            td {
                @if let Some(result) = &j.result {
                    @if result.mime().starts_with("image/") {
                        a href={ "/admin/results/" (j.id) } { img.thumb src={ "/admin/results/" (j.id) } alt={ "result of " (j.id) } loading="lazy"; }
                    } @else {
                        a href={ "/admin/results/" (j.id) } { "video" }
                    }
                } @else if let Some(e) = &j.last_error {
                    span.error { (e.as_str()) }
                }
            }
        }
    }
}

/// What `tx` moved on `account`.
fn delta(tx: &rei_core::ledger::Transaction, account: Account) -> Money {
    Money::from_kopecks(tx.postings.iter().filter(|p| p.account == account).map(|p| p.amount.kopecks()).sum())
}

/// `GET /admin/results/{job}`: a job's stored result, for its thumbnail.
pub(crate) async fn result(State(state): St, headers: HeaderMap, Path(job): Path<String>) -> Response {
    if let Err(r) = signed_in(&state, &headers) {
        return r;
    }
    let Ok(job) = JobId::parse(&job) else { return refused(StatusCode::BAD_REQUEST, "That is not a job id.") };
    let Some(assets) = &state.assets else {
        return refused(StatusCode::NOT_FOUND, "This server has no asset store configured.");
    };
    let key: Option<AssetKey> = match state.engine.jobs().get(job).await {
        Ok(j) => j.and_then(|j| j.result),
        Err(e) => return unavailable("the job", &e),
    };
    let Some(key) = key else { return refused(StatusCode::NOT_FOUND, "That job has no result.") };
    match assets.get(&key).await {
        Ok(Some(bytes)) => {
            ([(header::CONTENT_TYPE, key.mime()), (header::CACHE_CONTROL, "private, max-age=3600")], bytes)
                .into_response()
        }
        Ok(None) => refused(StatusCode::NOT_FOUND, "The result was removed (garbage collected)."),
        Err(e) => unavailable("the result", &e),
    }
}

/// Runs a user action from a form and shows the user's page with what it did.
async fn act(
    state: &HttpState,
    request: Request,
    id: &str,
    run: impl AsyncFnOnce(&HttpState, &Operator, &Form, UserId) -> Result<String, String>,
) -> Response {
    let (operator, form) = match posted(state, request).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let user = match user_id(id) {
        Ok(u) => u,
        Err(r) => return r,
    };
    let notice = match run(state, &operator, &form, user).await {
        Ok(done) => Notice::done(done),
        Err(failed) => {
            tracing::warn!(actor = operator.session.actor.0, user = user.0, error = %failed, "console action refused");
            Notice::failed(failed)
        }
    };
    user_page(state, &operator, user, Some(&notice)).await
}

fn money_field(form: &Form, name: &str) -> Result<Money, String> {
    let text = form.get(name).ok_or_else(|| format!("the {name} is missing"))?;
    Money::parse(text.trim().trim_start_matches('+')).map_err(|e| format!("the {name} “{text}”: {e}"))
}

/// `POST /admin/users/{id}/adjust`: credits or debits the wallet, with a reason.
pub(crate) async fn adjust(State(state): St, Path(id): Path<String>, request: Request) -> Response {
    act(&state, request, &id, async |state, operator, form, user| {
        let amount = money_field(form, "amount")?;
        let reason = form.get("reason").ok_or("a reason is required")?;
        let req = operator.request(form, reason).map_err(|_| "the reason is too long or not printable".to_owned())?;
        state.engine.admin().adjust(&req, user, amount).await.map_err(|e| e.to_string())?;
        Ok(format!("Adjusted by {}.", rub(amount)))
    })
    .await
}

/// `POST /admin/users/{id}/refund`: gives a captured job's money back to the wallet.
pub(crate) async fn refund(State(state): St, Path(id): Path<String>, request: Request) -> Response {
    act(&state, request, &id, async |state, operator, form, user| {
        let job = form.get("job").and_then(|j| JobId::parse(j).ok()).ok_or("choose a job")?;
        let job = state.engine.jobs().get(job).await.map_err(|e| e.to_string())?.ok_or("no such job")?;
        if job.user != user {
            return Err("that job is another user's".to_owned());
        }
        let amount = if form.get("amount").is_some() { money_field(form, "amount")? } else { job.price };
        let req = operator.request(form, &format!("console refund of {}", job.id)).map_err(|_| "bad request")?;
        state.engine.admin().refund(&req, job.hold, amount).await.map_err(|e| e.to_string())?;
        Ok(format!("Refunded {} of job {}.", rub(amount), job.id))
    })
    .await
}

/// `POST /admin/users/{id}/ban`.
pub(crate) async fn ban(State(state): St, Path(id): Path<String>, request: Request) -> Response {
    act(&state, request, &id, async |state, operator, form, user| {
        if state.console.admins.contains(&user.0) {
            return Err("admins are not banned: remove them from ADMIN_IDS first".to_owned());
        }
        let days = match form.get("days") {
            None => None,
            Some(d) => Some(d.parse::<u64>().ok().filter(|d| (1..=3_650).contains(d)).ok_or("days: 1 to 3650")?),
        };
        let reason = form.get("reason").ok_or("a reason is required")?;
        let req = operator.request(form, reason).map_err(|_| "the reason is too long or not printable")?;
        let until = days.map(|d| now(state).plus(Duration::from_secs(d * 86_400)));
        state.engine.growth(GrowthConfig::default()).ban(&req, user, until).await.map_err(|e| e.to_string())?;
        Ok(match until {
            Some(t) => format!("Banned until {}.", when(t)),
            None => "Banned.".to_owned(),
        })
    })
    .await
}

/// `POST /admin/users/{id}/unban`.
pub(crate) async fn unban(State(state): St, Path(id): Path<String>, request: Request) -> Response {
    act(&state, request, &id, async |state, operator, form, user| {
        let req = operator.request(form, &format!("console unban of {}", user.0)).map_err(|_| "bad request")?;
        state.engine.growth(GrowthConfig::default()).unban(&req, user).await.map_err(|e| e.to_string())?;
        Ok("Unbanned.".to_owned())
    })
    .await
}
