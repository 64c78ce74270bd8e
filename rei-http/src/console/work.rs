//! Jobs (the queue, running jobs, unknown outcomes, dead letters), payments and providers, with their actions.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::{Path, Query, Request, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use rei_core::ids::{JobId, PaymentId, ProviderId, UserId};
use rei_core::jobs::{Job, JobState, Priority};
use rei_core::money::{Money, Ratio};
use rei_core::reports::latency_p95_ms;
use rei_core::topups::{PaymentProvider, PaymentRecord, PaymentRecordStatus};
use serde::Deserialize;

use super::{Form, Notice, Operator, St, csrf_field, now, page, posted, rub, signed_in, unavailable, when};
use crate::HttpState;

/// `GET /admin/jobs`.
pub(crate) async fn jobs(State(state): St, headers: HeaderMap) -> Response {
    match signed_in(&state, &headers) {
        Ok(operator) => jobs_page(&state, &operator, None).await,
        Err(r) => r,
    }
}

async fn jobs_page(state: &HttpState, operator: &Operator, notice: Option<&Notice>) -> Response {
    let engine = &state.engine;
    let lengths = match engine.job_queue().len_by_priority().await {
        Ok(l) => l,
        Err(e) => return unavailable("the queue", &e),
    };
    let dead = match engine.job_queue().dead_letters(50).await {
        Ok(d) => d,
        Err(e) => return unavailable("the dead letters", &e),
    };
    let mut lists = BTreeMap::new();
    for s in [JobState::Running, JobState::Unknown, JobState::Queued] {
        match engine.jobs().list(s, None, 50).await {
            Ok(list) => {
                lists.insert(s.to_string(), list);
            }
            Err(e) => return unavailable("the jobs", &e),
        }
    }
    let mut dead_jobs = Vec::with_capacity(dead.len());
    for d in &dead {
        match engine.jobs().get(d.ticket.job).await {
            Ok(job) => dead_jobs.push((d, job)),
            Err(e) => return unavailable("a dead letter's job", &e),
        }
    }
    let list = |s: JobState| lists.get(&s.to_string()).map(Vec::as_slice).unwrap_or_default();
    let now = now(state);
    let body = html! {
        section.kpis id="queue" {
            @for p in [Priority::Critical, Priority::High, Priority::Normal, Priority::Low] {
                div.kpi id={ "queue-" (format!("{p:?}").to_lowercase()) } {
                    span.name { (format!("{p:?}")) " waiting" } span.value { (lengths.waiting(p)) }
                }
            }
            div.kpi id="queue-in-flight" { span.name { "Running (leased)" } span.value { (lengths.in_flight) } }
            div.kpi id="queue-dead" { span.name { "Dead letters" } span.value { (lengths.dead_letters) } }
        }
        section {
            h2 { "Running" }
            (job_table("running", list(JobState::Running), now, |_| html! {}))
        }
        section {
            h2 { "Unknown outcome" }
            p.hint { "The provider was called and did not say how it went. Retry if it did not do the work; release \
                     the money if it failed. The reconciler resolves these on its own when the provider answers." }
            (job_table("unknown", list(JobState::Unknown), now, |j| html! {
                (action(operator, j.id, "retry", "Retry"))
                (action(operator, j.id, "release", "Fail, release money"))
            }))
        }
        section {
            h2 { "Queued" }
            (job_table("queued", list(JobState::Queued), now, |j| html! {
                (action(operator, j.id, "cancel", "Cancel, release money"))
            }))
        }
        section {
            h2 { "Dead letters" }
            table id="dead" {
                thead { tr { th { "Job" } th { "Given up" } th { "Why" } th { "Job state" } th { "Money" } th {} } }
                tbody {
                    @for (d, job) in &dead_jobs {
                        tr data-job=(d.ticket.job) {
                            td { code { (d.ticket.job) } }
                            td { (when(d.at)) }
                            td { (d.error.as_str()) }
                            td.state { (job.as_ref().map_or_else(|| "missing".to_owned(), |j| j.state.to_string())) }
                            td { (job.as_ref().map_or("", |j| money_state(j.state))) }
                            td {
                                @if job.as_ref().is_some_and(|j| !j.state.is_terminal()) {
                                    (action(operator, d.ticket.job, "retry", "Retry"))
                                    (action(operator, d.ticket.job, "release", "Cancel, release money"))
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    page(operator, "jobs", "Jobs", notice, &body, None).into_response()
}

fn money_state(state: JobState) -> &'static str {
    match state {
        JobState::Succeeded => "captured",
        JobState::Failed | JobState::Cancelled => "released",
        _ => "held",
    }
}

fn job_table(id: &str, jobs: &[Job], now: rei_core::time::Timestamp, actions: impl Fn(&Job) -> Markup) -> Markup {
    html! {
        table id=(id) {
            thead { tr { th { "Job" } th { "User" } th { "Product" } th { "Price" } th { "Age" } th { "Attempts" } th { "Provider" } th {} } }
            tbody {
                @for j in jobs {
                    tr data-job=(j.id) {
                        td { code { (j.id) } }
                        td { a href={ "/admin/users/" (j.user.0) } { (j.user.0) } }
                        td { (j.product) }
                        td.money { (rub(j.price)) }
                        td { (now.since(j.created_at).as_secs() / 60) " min" }
                        td { (j.attempts) "/" (j.max_attempts) }
                        td { (j.provider.as_ref().map(ToString::to_string).unwrap_or_default()) }
                        td { (actions(j)) }
                    }
                }
                @if jobs.is_empty() { tr { td colspan="8" { "None." } } }
            }
        }
    }
}

fn action(operator: &Operator, job: JobId, what: &str, label: &str) -> Markup {
    html! {
        form.inline method="post" action={ "/admin/jobs/" (job) "/" (what) } {
            (csrf_field(operator))
            button type="submit" name="do" value=(what) { (label) }
        }
    }
}

async fn job_action(state: &HttpState, request: Request, id: &str, what: &str) -> Response {
    let (operator, form) = match posted(state, request).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let Ok(job) = JobId::parse(id) else {
        return jobs_page(state, &operator, Some(&Notice::failed("That is not a job id."))).await;
    };
    let req = match operator.request(&form, &format!("console {what} of {job}")) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let engine = &state.engine;
    let done = match what {
        "cancel" => engine.cancel_job(&req, job).await,
        "retry" => engine.retry_job(&req, job).await,
        _ => engine.release_job(&req, job).await,
    };
    let notice = match done {
        Ok(j) => Notice::done(format!("Job {job}: {what} done; it is {} now ({}).", j.state, money_state(j.state))),
        Err(e) => {
            tracing::warn!(job = %job, error = %e, "console job action refused");
            Notice::failed(format!("Job {job}: {e}"))
        }
    };
    jobs_page(state, &operator, Some(&notice)).await
}

/// `POST /admin/jobs/{id}/cancel`: a queued job cancelled, its money released.
pub(crate) async fn cancel(State(state): St, Path(id): Path<String>, request: Request) -> Response {
    job_action(&state, request, &id, "cancel").await
}

/// `POST /admin/jobs/{id}/retry`.
pub(crate) async fn retry(State(state): St, Path(id): Path<String>, request: Request) -> Response {
    job_action(&state, request, &id, "retry").await
}

/// `POST /admin/jobs/{id}/release`.
pub(crate) async fn release(State(state): St, Path(id): Path<String>, request: Request) -> Response {
    job_action(&state, request, &id, "release").await
}

#[derive(Deserialize)]
pub(crate) struct PaymentQuery {
    provider: Option<String>,
    status: Option<String>,
}

/// `GET /admin/payments?provider=yookassa|stars&status=…`.
pub(crate) async fn payments(State(state): St, headers: HeaderMap, Query(q): Query<PaymentQuery>) -> Response {
    match signed_in(&state, &headers) {
        Ok(operator) => payments_page(&state, &operator, &q, None).await,
        Err(r) => r,
    }
}

fn provider_name(p: PaymentProvider) -> &'static str {
    match p {
        PaymentProvider::YooKassa => "yookassa",
        PaymentProvider::Stars => "stars",
    }
}

fn status_name(s: PaymentRecordStatus) -> &'static str {
    match s {
        PaymentRecordStatus::Pending => "pending",
        PaymentRecordStatus::Succeeded => "succeeded",
        PaymentRecordStatus::Canceled => "canceled",
        PaymentRecordStatus::Expired => "expired",
    }
}

async fn payments_page(state: &HttpState, operator: &Operator, q: &PaymentQuery, notice: Option<&Notice>) -> Response {
    let page_of = match state.engine.payments().list_recent(None, 200).await {
        Ok(p) => p,
        Err(e) => return unavailable("the payments", &e),
    };
    let provider = q.provider.as_deref().filter(|p| !p.is_empty());
    let status = q.status.as_deref().filter(|s| !s.is_empty());
    let records: Vec<PaymentRecord> = page_of
        .records
        .into_iter()
        .filter(|r| provider.is_none_or(|p| provider_name(r.provider) == p))
        .filter(|r| status.is_none_or(|s| status_name(r.status) == s))
        .collect();
    let sum =
        Money::checked_sum(records.iter().filter(|r| r.status == PaymentRecordStatus::Succeeded).map(|r| r.amount))
            .unwrap_or(Money::ZERO);
    let body = html! {
        form.search method="get" action="/admin/payments" {
            label { "Gateway " select name="provider" {
                option value="" { "all" }
                @for p in PaymentProvider::ALL { option value=(provider_name(p)) selected[provider == Some(provider_name(p))] { (provider_name(p)) } }
            } }
            label { "Status " select name="status" {
                option value="" { "all" }
                @for s in ["pending", "succeeded", "canceled", "expired"] { option value=(s) selected[status == Some(s)] { (s) } }
            } }
            button type="submit" { "Show" }
        }
        p { (records.len()) " payments shown (the newest 200), " (rub(sum)) " succeeded." }
        (payment_table(operator, &records, true))
    };
    page(operator, "payments", "Payments", notice, &body, None).into_response()
}

/// A table of payments; with `refunds`, each succeeded payment has a refund form.
pub(crate) fn payment_table(operator: &Operator, records: &[PaymentRecord], refunds: bool) -> Markup {
    html! {
        table.payments id="payments" {
            thead { tr { th { "Created" } th { "Gateway" } th { "Payment" } th { "User" } th { "Amount" } th { "Status" } @if refunds { th { "Refund" } } } }
            tbody {
                @for r in records {
                    tr data-payment=(r.id) {
                        td { (when(r.created_at)) }
                        td { (provider_name(r.provider)) }
                        td { code { (r.id) } }
                        td { a href={ "/admin/users/" (r.user.0) } { (r.user.0) } }
                        td.money { (rub(r.amount)) }
                        td.status { (status_name(r.status)) }
                        @if refunds {
                            td {
                                @if r.status == PaymentRecordStatus::Succeeded {
                                    form.inline method="post" action="/admin/payments/refund" {
                                        (csrf_field(operator))
                                        input type="hidden" name="payment" value=(r.id);
                                        input type="hidden" name="user" value=(r.user.0);
                                        @if r.provider == PaymentProvider::Stars {
                                            input type="hidden" name="amount" value=(r.amount);
                                            button type="submit" { "Refund " (rub(r.amount)) }
                                        } @else {
                                            input name="amount" value=(r.amount) size="8";
                                            button type="submit" { "Refund to card" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                @if records.is_empty() { tr { td colspan="7" { "None." } } }
            }
        }
    }
}

/// `POST /admin/payments/refund`: money back to the card (YooKassa) or the Stars back (Telegram), audited as a
/// refund of `payment:<id>`.
pub(crate) async fn refund_payment(State(state): St, request: Request) -> Response {
    let (operator, form) = match posted(&state, request).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let q = PaymentQuery { provider: None, status: None };
    let notice = match refund(&state, &operator, &form).await {
        Ok(done) => Notice::done(done),
        Err(e) => {
            tracing::warn!(error = %e, "console refund refused");
            Notice::failed(e)
        }
    };
    payments_page(&state, &operator, &q, Some(&notice)).await
}

async fn refund(state: &HttpState, operator: &Operator, form: &Form) -> Result<String, String> {
    let payment = form.get("payment").ok_or("no payment")?;
    let record = PaymentId::parse(payment).map_err(|e| format!("payment: {e}"))?;
    let user = UserId(form.get("user").and_then(|u| u.parse().ok()).ok_or("no user")?);
    let amount = Money::parse(form.get("amount").ok_or("no amount")?).map_err(|e| format!("amount: {e}"))?;
    let stored = state.engine.payments().get(&record).await.map_err(|e| e.to_string())?.ok_or("no such payment")?;
    if stored.user != user {
        return Err("that payment is another user's".to_owned());
    }
    let req = operator.request(form, &format!("console refund of {payment}")).map_err(|_| "bad request")?;
    let refund_id = format!("console-{}", req.key.as_str());
    let target = format!("payment:{payment}");
    let act = async {
        match stored.provider {
            PaymentProvider::Stars => {
                let Some(stars) = &state.stars else {
                    return Err("Telegram Stars need the bot: set BOT_TOKEN".to_owned());
                };
                let charge = payment.strip_prefix("stars:").unwrap_or(payment);
                stars.payments.refund(user, charge, amount, &*stars.api).await.map_err(|e| e.to_string())?;
                Ok(format!("{} Stars payment refunded.", rub(amount)))
            }
            PaymentProvider::YooKassa => {
                let Some(topups) = &state.topups else {
                    return Err(
                        "no payment gateway is configured: set YOOKASSA_SHOP_ID and YOOKASSA_SECRET_KEY".to_owned()
                    );
                };
                let refund = topups
                    .refund(user, &record, amount, &refund_id, Some("Refund by the operator"))
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(format!("Refund {} of {}: {:?}.", refund.id, rub(refund.amount), refund.status))
            }
        }
    };
    match state.engine.admin().run_audited(&req, rei_core::guards::AuditAction::Refund, &target, act).await {
        Ok(done) => Ok(done),
        Err(rei_core::billing::AuditedError::Admin(e)) => Err(e.to_string()),
        Err(rei_core::billing::AuditedError::Action(e)) => Err(e),
    }
}

/// `GET /admin/providers`: health, usage, cost and margin per provider, and the models' switches.
pub(crate) async fn providers(State(state): St, headers: HeaderMap) -> Response {
    match signed_in(&state, &headers) {
        Ok(operator) => providers_page(&state, &operator, None).await,
        Err(r) => r,
    }
}

fn percent_of(part: u64, whole: u64) -> String {
    if whole == 0 {
        return "—".to_owned();
    }
    let r = Ratio::new(rust_decimal::Decimal::from(part) / rust_decimal::Decimal::from(whole));
    format!("{}\u{a0}%", (r.value() * rust_decimal::Decimal::ONE_HUNDRED).round_dp(1).normalize())
}

async fn providers_page(state: &HttpState, operator: &Operator, notice: Option<&Notice>) -> Response {
    let engine = &state.engine;
    let now = now(state);
    let since = now.minus(Duration::from_secs(86_400));
    let usage = match engine.reports().providers(since, now.plus(Duration::from_millis(1))).await {
        Ok(u) => u,
        Err(e) => return unavailable("the providers' usage", &e),
    };
    let board = engine.provider_board();
    let (statuses, switches) = match tokio::try_join!(board.statuses(), board.models()) {
        Ok(b) => b,
        Err(e) => return unavailable("the provider board", &e),
    };
    let mut names: Vec<String> = usage.iter().map(|u| u.provider.to_string()).collect();
    names.extend(statuses.iter().map(|s| s.provider.to_string()));
    names.extend(state.console.models.iter().map(|(p, _)| p.to_string()));
    names.sort();
    names.dedup();
    let mut models: Vec<(String, String)> =
        state.console.models.iter().map(|(p, m)| (p.to_string(), m.clone())).collect();
    models.extend(switches.iter().map(|s| (s.provider.to_string(), s.model.clone())));
    models.sort();
    models.dedup();
    let body = html! {
        table id="providers" {
            thead { tr {
                th { "Provider" } th { "Breaker" } th { "Score" } th { "Latency (EWMA)" } th { "Recent success" }
                th { "Attempts 24 h" } th { "Success rate" } th { "p95" } th { "Cost" } th { "Charged" } th { "Margin" }
            } }
            tbody {
                @for name in &names {
                    @let status = statuses.iter().find(|s| s.provider.as_str() == name);
                    @let used = usage.iter().find(|u| u.provider.as_str() == name);
                    tr data-provider=(name) {
                        td { (name) }
                        td.breaker { @match status {
                            Some(s) => { span class={ "breaker " (s.breaker.as_str()) } { (s.breaker.as_str()) }
                                @if let rei_core::routing::BreakerView::Open { until } = s.breaker { " until " (when(until)) } }
                            None => { span.hint { "no worker reported" } }
                        } }
                        td { (status.and_then(|s| s.score).map(|s| s.round_dp(3).to_string()).unwrap_or_default()) }
                        td { (status.and_then(|s| s.latency_ewma_ms).map(|l| format!("{l} ms")).unwrap_or_default()) }
                        td { (status.map(|s| percent_of(u64::from(s.successes), u64::from(s.outcomes))).unwrap_or_default()) }
                        td.attempts { (used.map_or(0, |u| u.attempts)) }
                        td { (used.map(|u| percent_of(u.successes, u.successes + u.failures)).unwrap_or_default()) }
                        td { (used.and_then(|u| latency_p95_ms(&u.latency)).map(|l| if l == u64::MAX { "over the largest bucket".to_owned() } else { format!("≤ {l} ms") }).unwrap_or_default()) }
                        td.money { (used.map(|u| rub(u.cost)).unwrap_or_default()) }
                        td.money { (used.map(|u| rub(u.charged)).unwrap_or_default()) }
                        td.money { (used.map(|u| rub(Money::from_kopecks(u.charged.kopecks().saturating_sub(u.cost.kopecks())))).unwrap_or_default()) }
                    }
                }
            }
        }
        section {
            h2 { "Models" }
            p.hint { "A model switched off is not offered to new jobs by any worker (they read the switches every few seconds)." }
            table id="models" {
                thead { tr { th { "Provider" } th { "Model" } th { "State" } th {} } }
                tbody {
                    @for (provider, model) in &models {
                        @let enabled = switches.iter().find(|s| s.provider.as_str() == provider && &s.model == model).is_none_or(|s| s.enabled);
                        tr data-model={ (provider) "/" (model) } {
                            td { (provider) } td { (model) }
                            td.state { (if enabled { "on" } else { "off" }) }
                            td { form.inline method="post" action="/admin/providers/model" {
                                (csrf_field(operator))
                                input type="hidden" name="provider" value=(provider);
                                input type="hidden" name="model" value=(model);
                                input type="hidden" name="enabled" value=(if enabled { "false" } else { "true" });
                                button type="submit" { (if enabled { "Switch off" } else { "Switch on" }) }
                            } }
                        }
                    }
                }
            }
        }
    };
    page(operator, "providers", "Providers", notice, &body, None).into_response()
}

/// `POST /admin/providers/model`: switches a model on or off, audited.
pub(crate) async fn switch_model(State(state): St, request: Request) -> Response {
    let (operator, form) = match posted(&state, request).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let notice = match switch(&state, &operator, &form).await {
        Ok(done) => Notice::done(done),
        Err(e) => {
            tracing::warn!(error = %e, "console model switch refused");
            Notice::failed(e)
        }
    };
    providers_page(&state, &operator, Some(&notice)).await
}

async fn switch(state: &HttpState, operator: &Operator, form: &Form) -> Result<String, String> {
    let provider = ProviderId::parse(form.get("provider").ok_or("no provider")?).map_err(|e| e.to_string())?;
    let model = form.get("model").ok_or("no model")?;
    let enabled = form.get("enabled") == Some("true");
    let what = if enabled { "on" } else { "off" };
    let req = operator.request(form, &format!("console: {provider}/{model} {what}")).map_err(|_| "bad request")?;
    state.engine.set_model(&req, &provider, model, enabled).await.map_err(|e| e.to_string())?;
    Ok(format!("{provider}/{model} switched {what}."))
}
