//! The `/v1` JSON API for bots in any language: users and their ledger, top-ups, quotes and confirms, jobs,
//! and the capture and release of holds. Money is always a decimal string in roubles (`"150.00"`), never a
//! JSON number; ids are UUID-shaped strings; times are RFC 3339 in UTC.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rei::EngineError;
use rei_core::access::Scope;
use rei_core::generation::GenerationRequest;
use rei_core::ids::{HoldId, IdempotencyKey, JobId, ProductId, QuoteId, UserId};
use rei_core::jobs::{Job, Priority};
use rei_core::ledger::{Account, Applied, HistoryEntry, LedgerError};
use rei_core::money::Money;
use rei_core::pricing::{Quote, Tier};
use rei_core::topups::NoticeError;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::HttpState;
use crate::auth::Caller;
use crate::problem::{Problem, ProblemBody};

/// Extracts a JSON body, answering a problem (400) instead of axum's plain-text rejection.
pub struct Body<T>(pub T);

impl<T, S> axum::extract::FromRequest<S> for Body<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Problem> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Body(v)),
            Err(e) => Err(Problem::bad_request(e.body_text()).with_code("invalid-body")),
        }
    }
}

fn money(text: &str, field: &str) -> Result<Money, Problem> {
    Money::parse(text)
        .map_err(|e| Problem::bad_request(format!("{field}: {e} (a decimal string in roubles, e.g. \"150.00\")")))
}

fn id_of<T>(text: &str, what: &str, parse: impl Fn(&str) -> Result<T, rei_core::ids::IdError>) -> Result<T, Problem> {
    parse(text).map_err(|_| Problem::not_found(format!("no {what} {text:?}: ids are UUID-shaped")))
}

/// A user and their balance.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct UserView {
    /// The user's id.
    pub user_id: i64,
    /// Spendable now.
    #[schema(example = "150.00")]
    pub available: String,
    /// Reserved for running jobs.
    #[schema(example = "0.00")]
    pub held: String,
    /// How far below zero `available` may go.
    pub overdraft_limit: String,
    /// Holds active now.
    pub active_holds: u32,
}

/// A user's balance (every user exists, with nothing, until money moves).
#[utoipa::path(get, path = "/v1/users/{id}", tag = "users", security(("api_key" = [])),
    params(("id" = i64, Path, description = "The user's id")),
    responses(
        (status = 200, description = "The user and their balance", body = UserView),
        (status = 401, description = "No valid API key", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks `users:read`", body = ProblemBody, content_type = "application/problem+json"),
        (status = 429, description = "The key's rate is exceeded", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub(crate) async fn get_user(
    State(state): State<Arc<HttpState>>,
    caller: Caller,
    Path(id): Path<i64>,
) -> Result<Json<UserView>, Problem> {
    caller.require(Scope::UsersRead)?;
    let b = state.engine.billing().balance(UserId(id)).await?;
    Ok(Json(UserView {
        user_id: id,
        available: b.available.to_string(),
        held: b.held.to_string(),
        overdraft_limit: b.overdraft_limit.to_string(),
        active_holds: b.active_holds,
    }))
}

/// The page asked for.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LedgerQuery {
    /// The `next_cursor` of the previous page; absent for the newest entries.
    pub cursor: Option<String>,
    /// Entries per page, 1 to 200 (default 50).
    pub limit: Option<u32>,
}

/// One money move of a user.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct LedgerEntry {
    /// The transaction's id.
    pub id: String,
    /// `top_up`, `hold`, `raise`, `capture`, `release`, `expire`, `refund`, `refund_to_card`, `adjust`.
    pub kind: String,
    /// When.
    pub at: String,
    /// How much `available` changed (signed).
    #[schema(example = "-150.00")]
    pub available_change: String,
    /// How much `held` changed (signed).
    pub held_change: String,
    /// The hold it concerns.
    pub hold_id: Option<String>,
    /// The payment it concerns.
    pub payment_id: Option<String>,
    /// Why (adjustments).
    pub reason: Option<String>,
}

/// A page of a user's ledger, newest first.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct LedgerPage {
    /// The user.
    pub user_id: i64,
    /// The entries.
    pub entries: Vec<LedgerEntry>,
    /// Pass it as `cursor` for the next (older) page; absent on the last page.
    pub next_cursor: Option<String>,
}

fn entry_of(user: UserId, e: &HistoryEntry) -> LedgerEntry {
    let t = &e.transaction;
    let sum = |want: fn(&Account, UserId) -> bool| {
        Money::checked_sum(t.postings.iter().filter(|p| want(&p.account, user)).map(|p| p.amount)).unwrap_or_default()
    };
    LedgerEntry {
        id: t.id.to_string(),
        kind: t.kind.as_str().to_owned(),
        at: t.at.to_string(),
        available_change: sum(|a, u| *a == Account::Available(u)).to_string(),
        held_change: sum(|a, u| *a == Account::Held(u)).to_string(),
        hold_id: t.hold.map(|h| h.to_string()),
        payment_id: t.payment.as_ref().map(ToString::to_string),
        reason: t.reason.as_ref().map(|r| r.as_str().to_owned()),
    }
}

/// A user's ledger history, newest first, by cursor.
#[utoipa::path(get, path = "/v1/users/{id}/ledger", tag = "users", security(("api_key" = [])),
    params(("id" = i64, Path, description = "The user's id"), LedgerQuery),
    responses(
        (status = 200, description = "A page of the history", body = LedgerPage),
        (status = 400, description = "A bad cursor or limit", body = ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "No valid API key", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks `ledger:read`", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub(crate) async fn get_ledger(
    State(state): State<Arc<HttpState>>,
    caller: Caller,
    Path(id): Path<i64>,
    Query(q): Query<LedgerQuery>,
) -> Result<Json<LedgerPage>, Problem> {
    caller.require(Scope::LedgerRead)?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(Problem::bad_request("limit is 1 to 200"));
    }
    let before = match q.cursor.as_deref() {
        None => None,
        Some(c) => Some(c.parse::<u64>().map_err(|_| Problem::bad_request("cursor: pass a next_cursor back"))?),
    };
    let user = UserId(id);
    let page = state
        .engine
        .ledger()
        .history(user, before, limit as usize)
        .await
        .map_err(|e| Problem::internal("reading the ledger", &e))?;
    let next_cursor = (page.len() == limit as usize).then(|| page.last().map(|e| e.position.to_string())).flatten();
    Ok(Json(LedgerPage { user_id: id, entries: page.iter().map(|e| entry_of(user, e)).collect(), next_cursor }))
}

/// A top-up to create: a YooKassa payment (in roubles) or a Telegram Stars invoice (in Stars).
#[derive(Serialize, Deserialize, ToSchema)]
pub struct TopUpRequest {
    /// Whose balance.
    pub user_id: i64,
    /// `yookassa` (default) or `stars`.
    pub provider: Option<String>,
    /// How much, in roubles (YooKassa).
    #[schema(example = "500.00")]
    pub amount: Option<String>,
    /// How many Stars (Stars); credited at the configured rate.
    pub stars: Option<u32>,
    /// Your stable id of this top-up: asking again with it is the same payment. YooKassa: 1 to 64 of
    /// `A-Za-z0-9 _ - . : ~`; Stars: 1 to 64 of `A-Za-z0-9 _ -`.
    pub topup_id: String,
    /// Where the payer comes back to after paying (YooKassa).
    pub return_url: Option<String>,
    /// Shown to the payer (default "Пополнение баланса"; YooKassa).
    pub description: Option<String>,
}

/// A payment to make.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct TopUpView {
    /// `yookassa` or `stars`.
    pub provider: String,
    /// The gateway's payment id (YooKassa); a Stars payment gets its id when paid.
    pub payment_id: Option<String>,
    /// `pending`, `waiting_for_capture`, `succeeded`, `canceled`.
    pub status: String,
    /// How much the balance grows, in roubles.
    pub amount: String,
    /// Send the payer here (YooKassa's payment page, or the Stars invoice link).
    pub confirmation_url: Option<String>,
}

fn status_name(s: rei_core::payments::PaymentStatus) -> &'static str {
    use rei_core::payments::PaymentStatus as P;
    match s {
        P::Pending => "pending",
        P::WaitingForCapture => "waiting_for_capture",
        P::Succeeded => "succeeded",
        P::Canceled => "canceled",
    }
}

/// Creates the payment of a top-up and returns the link to pay; the balance is credited when the gateway
/// confirms it (webhook or reconciler), once.
#[utoipa::path(post, path = "/v1/topups", tag = "payments", security(("api_key" = [])),
    params(("Idempotency-Key" = String, Header, description = "Unique per operation: a repeat returns the first response")),
    request_body = TopUpRequest,
    responses(
        (status = 201, description = "The payment, with the link to pay", body = TopUpView),
        (status = 400, description = "A malformed body or a missing Idempotency-Key", body = ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "No valid API key", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks `topups:write`", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "The Idempotency-Key was used for another request", body = ProblemBody, content_type = "application/problem+json"),
        (status = 502, description = "The gateway refused", body = ProblemBody, content_type = "application/problem+json"),
        (status = 503, description = "Payments are not configured, or the gateway is unreachable", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub(crate) async fn create_topup(
    State(state): State<Arc<HttpState>>,
    caller: Caller,
    Body(body): Body<TopUpRequest>,
) -> Result<Response, Problem> {
    caller.require(Scope::TopUpsWrite)?;
    match body.provider.as_deref().unwrap_or("yookassa") {
        "yookassa" => yookassa_topup(&state, &body).await,
        "stars" => stars_topup(&state, &body).await,
        other => Err(Problem::bad_request(format!("provider {other:?}: yookassa or stars"))),
    }
}

async fn yookassa_topup(state: &HttpState, body: &TopUpRequest) -> Result<Response, Problem> {
    let Some(topups) = &state.topups else {
        return Err(Problem::unavailable(
            "payments-not-configured",
            "no payment gateway is configured: set YOOKASSA_SHOP_ID and YOOKASSA_SECRET_KEY",
        ));
    };
    let amount = money(body.amount.as_deref().ok_or_else(|| Problem::bad_request("amount is required"))?, "amount")?;
    if !amount.is_positive() {
        return Err(Problem::bad_request("amount must be above zero"));
    }
    let return_url = body.return_url.as_deref().ok_or_else(|| Problem::bad_request("return_url is required"))?;
    let description = body.description.as_deref().unwrap_or("Пополнение баланса");
    let payment = topups
        .create(UserId(body.user_id), &body.topup_id, amount, description, return_url)
        .await
        .map_err(|e| gateway_problem(&e))?;
    let view = TopUpView {
        provider: "yookassa".to_owned(),
        payment_id: Some(payment.id.to_string()),
        status: status_name(payment.status).to_owned(),
        amount: payment.amount.to_string(),
        confirmation_url: payment.confirmation_url,
    };
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

async fn stars_topup(state: &HttpState, body: &TopUpRequest) -> Result<Response, Problem> {
    use rei_core::stars::{StarsApi, StarsError};
    let Some(stars) = &state.stars else {
        return Err(Problem::unavailable("stars-not-configured", "Telegram Stars need the bot: set BOT_TOKEN"));
    };
    let count = body.stars.ok_or_else(|| Problem::bad_request("stars is required"))?;
    let invoice = stars.payments.invoice(UserId(body.user_id), count, &body.topup_id).map_err(|e| match e {
        StarsError::Refused(why) => Problem::bad_request(why.to_string()).with_code("topup-refused"),
        other => Problem::internal("the Stars invoice", &other),
    })?;
    let amount = stars.payments.config().amount_for(count).ok_or_else(|| Problem::bad_request("too many stars"))?;
    let link = stars.api.create_invoice_link(&invoice).await.map_err(|e| {
        Problem::unavailable("telegram-unavailable", format!("Telegram did not make the invoice: {e}")).retry_after(5)
    })?;
    let view = TopUpView {
        provider: "stars".to_owned(),
        payment_id: None,
        status: "pending".to_owned(),
        amount: amount.to_string(),
        confirmation_url: Some(link),
    };
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

pub(crate) fn gateway_problem(e: &NoticeError) -> Problem {
    use rei_core::payments::GatewayError as G;
    match e {
        NoticeError::Refused { why } => Problem::bad_request(why.clone()).with_code("topup-refused"),
        NoticeError::Gateway(G::Rejected { reason }) => {
            Problem::new(StatusCode::BAD_GATEWAY, "gateway-refused", "The payment gateway refused", reason.clone())
        }
        NoticeError::Gateway(G::Unavailable { reason }) => {
            Problem::unavailable("gateway-unavailable", format!("the payment gateway is unavailable: {reason}"))
                .retry_after(5)
        }
        NoticeError::Gateway(other) => Problem::internal("the payment gateway", other),
        NoticeError::Billing(b) => Problem::from(b.clone()),
        NoticeError::Store(s) => Problem::internal("the payment records", s),
    }
}

/// A price to ask for.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct QuoteRequest {
    /// Who buys.
    pub user_id: i64,
    /// The product (`image.nano-banana`, `video.kling-2.6.5s`, …).
    pub product: String,
    /// How many units (default 1).
    pub units: Option<u64>,
    /// `basic` (default), `pro`, `enterprise`.
    pub tier: Option<String>,
}

/// How a price was reached, in exact kopecks: `cost_total + margin_added + time_adjustment − tier_discount_amount
/// + rounding_adjustment = price`.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct BreakdownView {
    /// The unit's name.
    pub unit: String,
    /// Provider cost of one unit.
    pub unit_cost: String,
    /// Provider cost of all units.
    pub cost_total: String,
    /// The margin added.
    pub margin_added: String,
    /// The peak or cheap-window adjustment.
    pub time_adjustment: String,
    /// The tier's discount.
    pub tier_discount_amount: String,
    /// What rounding to kopecks added.
    pub rounding_adjustment: String,
}

/// A price, valid until `expires_at`.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct QuoteView {
    /// The quote's id: confirm it.
    pub id: String,
    /// Who it is for.
    pub user_id: i64,
    /// What is sold.
    pub product: String,
    /// How many units.
    pub units: u64,
    /// The tier.
    pub tier: String,
    /// The price.
    #[schema(example = "15.00")]
    pub price: String,
    /// Confirm before this.
    pub expires_at: String,
    /// How the price was reached.
    pub breakdown: BreakdownView,
}

fn quote_view(user: i64, q: &Quote) -> QuoteView {
    let b = &q.breakdown;
    QuoteView {
        id: q.id.to_string(),
        user_id: user,
        product: q.product.to_string(),
        units: q.units,
        tier: q.tier.to_string(),
        price: q.price.to_string(),
        expires_at: q.expires_at.to_string(),
        breakdown: BreakdownView {
            unit: b.unit.clone(),
            unit_cost: b.unit_cost.to_string(),
            cost_total: b.cost_total.to_string(),
            margin_added: b.margin_added.to_string(),
            time_adjustment: b.time_adjustment.to_string(),
            tier_discount_amount: b.tier_discount_amount.to_string(),
            rounding_adjustment: b.rounding_adjustment.to_string(),
        },
    }
}

/// Prices a product for a user; the quote is kept until it expires.
#[utoipa::path(post, path = "/v1/quotes", tag = "generation", security(("api_key" = [])),
    params(("Idempotency-Key" = String, Header, description = "Unique per operation: a repeat returns the first response")),
    request_body = QuoteRequest,
    responses(
        (status = 201, description = "The quote", body = QuoteView),
        (status = 400, description = "A malformed body or a missing Idempotency-Key", body = ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "No valid API key", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks `quotes:write`", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "The Idempotency-Key was used for another request", body = ProblemBody, content_type = "application/problem+json"),
        (status = 422, description = "The product cannot be priced", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub(crate) async fn create_quote(
    State(state): State<Arc<HttpState>>,
    caller: Caller,
    Body(body): Body<QuoteRequest>,
) -> Result<Response, Problem> {
    caller.require(Scope::QuotesWrite)?;
    let product = ProductId::parse(&body.product)
        .map_err(|e| Problem::bad_request(format!("product: {e}")).with_code("invalid-body"))?;
    let tier = match body.tier.as_deref().unwrap_or("basic") {
        "basic" => Tier::Basic,
        "pro" => Tier::Pro,
        "enterprise" => Tier::Enterprise,
        other => return Err(Problem::bad_request(format!("tier {other:?}: basic, pro or enterprise"))),
    };
    let units = body.units.unwrap_or(1);
    let quote = state.engine.billing().quote(UserId(body.user_id), &product, units, tier).await?;
    Ok((StatusCode::CREATED, Json(quote_view(body.user_id, &quote))).into_response())
}

/// What to generate, for a confirm that queues a job.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct GenerationBody {
    /// `text_to_image`, `image_edit`, `text_to_video`, `image_to_video`, `video_to_video`.
    pub capability: String,
    /// Only this model may serve it.
    pub model: Option<String>,
    /// The prompt.
    pub prompt: String,
    /// Input images, as asset keys.
    #[serde(default)]
    pub images: Vec<String>,
    /// The provider's id of a video to continue.
    pub source_video: Option<String>,
    /// `1:1`, `16:9`, …
    pub aspect_ratio: Option<String>,
    /// `1K`, `2K`, `4K`.
    pub image_size: Option<String>,
    /// Seconds of video.
    pub duration_s: Option<u32>,
    /// `std` or `pro` (video).
    pub mode: Option<String>,
}

impl GenerationBody {
    /// The request, read through the job's own strict text form (so that the API accepts exactly what a job
    /// can keep).
    fn request(&self) -> Result<GenerationRequest, Problem> {
        let mut lines = vec![("capability", self.capability.clone())];
        lines.extend(self.model.clone().map(|m| ("model", m)));
        lines.push(("prompt", self.prompt.clone()));
        lines.extend(self.images.iter().map(|i| ("image", i.clone())));
        lines.extend(self.source_video.clone().map(|v| ("source_video", v)));
        lines.extend(self.aspect_ratio.clone().map(|v| ("aspect_ratio", v)));
        lines.extend(self.image_size.clone().map(|v| ("image_size", v)));
        lines.extend(self.duration_s.map(|v| ("duration_s", v.to_string())));
        lines.extend(self.mode.clone().map(|v| ("mode", v)));
        let mut text = String::new();
        for (name, value) in lines {
            text.push_str(name);
            text.push('=');
            for c in value.chars() {
                match c {
                    '\\' => text.push_str("\\\\"),
                    '\n' => text.push_str("\\n"),
                    '\r' => text.push_str("\\r"),
                    c => text.push(c),
                }
            }
            text.push('\n');
        }
        GenerationRequest::decode(&text).map_err(|e| {
            Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid-request", "Cannot generate this", e.to_string())
        })
    }
}

/// A confirm: the user agrees to the quoted price.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct ConfirmRequest {
    /// Who confirms (the quote's user).
    pub user_id: i64,
    /// What to generate: REI holds the money and queues the job, and its workers charge on success and give the
    /// money back on failure. Absent: only the hold is made, and you capture or release it yourself.
    pub request: Option<GenerationBody>,
    /// `critical`, `high`, `normal` (default), `low`.
    pub priority: Option<String>,
}

/// A job.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct JobView {
    /// The job's id (the quote's).
    pub id: String,
    /// Who pays.
    pub user_id: i64,
    /// What is generated.
    pub product: String,
    /// `quoted`, `confirmed`, `queued`, `running`, `unknown`, `succeeded`, `failed`, `cancelled`.
    pub state: String,
    /// The locked price.
    pub price: String,
    /// The hold that reserves it.
    pub hold_id: String,
    /// Attempts started.
    pub attempts: u32,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// The provider of the current or last attempt.
    pub provider: Option<String>,
    /// Why the last attempt did not succeed.
    pub last_error: Option<String>,
    /// The result's asset key, once generated.
    pub result: Option<String>,
    /// When it was made.
    pub created_at: String,
    /// When it last changed.
    pub updated_at: String,
}

fn job_view(j: &Job) -> JobView {
    JobView {
        id: j.id.to_string(),
        user_id: j.user.0,
        product: j.product.to_string(),
        state: j.state.to_string(),
        price: j.price.to_string(),
        hold_id: j.hold.to_string(),
        attempts: j.attempts,
        max_attempts: j.max_attempts,
        provider: j.provider.as_ref().map(ToString::to_string),
        last_error: j.last_error.as_ref().map(|e| e.as_str().to_owned()),
        result: j.result.as_ref().map(|r| r.as_str().to_owned()),
        created_at: j.created_at.to_string(),
        updated_at: j.updated_at.to_string(),
    }
}

/// The money held for a confirmed quote.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct ConfirmView {
    /// The quote.
    pub quote_id: String,
    /// The hold (capture or release it when no job was queued).
    pub hold_id: String,
    /// What is held.
    pub amount: String,
    /// When the hold lapses if nothing ends it.
    pub expires_at: String,
    /// The job queued, when a request was given.
    pub job: Option<JobView>,
}

/// Confirms a quote: holds its price (under the caps and the limit on jobs at once) and, given a request,
/// queues the job. Confirming the same quote again holds nothing more.
#[utoipa::path(post, path = "/v1/quotes/{id}/confirm", tag = "generation", security(("api_key" = [])),
    params(("id" = String, Path, description = "The quote's id"),
           ("Idempotency-Key" = String, Header, description = "Unique per operation: a repeat returns the first response")),
    request_body = ConfirmRequest,
    responses(
        (status = 201, description = "Held (and queued)", body = ConfirmView),
        (status = 400, description = "A malformed body or a missing Idempotency-Key", body = ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "No valid API key", body = ProblemBody, content_type = "application/problem+json"),
        (status = 402, description = "Not enough money", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks `quotes:write`, a spend cap is reached, or the quote is another user's", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such quote", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "The Idempotency-Key was used for another request", body = ProblemBody, content_type = "application/problem+json"),
        (status = 410, description = "The quote expired", body = ProblemBody, content_type = "application/problem+json"),
        (status = 422, description = "The request cannot be generated", body = ProblemBody, content_type = "application/problem+json"),
        (status = 429, description = "Too many jobs running at once", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub(crate) async fn confirm_quote(
    State(state): State<Arc<HttpState>>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<ConfirmRequest>,
) -> Result<Response, Problem> {
    caller.require(Scope::QuotesWrite)?;
    let quote = id_of(&id, "quote", QuoteId::parse)?;
    let user = UserId(body.user_id);
    let priority = match body.priority.as_deref().unwrap_or("normal") {
        "critical" => Priority::Critical,
        "high" => Priority::High,
        "normal" => Priority::Normal,
        "low" => Priority::Low,
        other => return Err(Problem::bad_request(format!("priority {other:?}: critical, high, normal or low"))),
    };
    let view = match &body.request {
        Some(request) => {
            let request = request.request()?;
            let job = state.engine.order(user, quote, request, priority).await.map_err(order_problem)?;
            let hold = state.engine.ledger().hold(job.hold).await.map_err(|e| Problem::internal("the ledger", &e))?;
            ConfirmView {
                quote_id: quote.to_string(),
                hold_id: job.hold.to_string(),
                amount: job.price.to_string(),
                expires_at: hold.map(|h| h.expires_at.to_string()).unwrap_or_default(),
                job: Some(job_view(&job)),
            }
        }
        None => {
            let c = state.engine.billing().confirm(user, quote, None).await?;
            ConfirmView {
                quote_id: quote.to_string(),
                hold_id: c.hold.to_string(),
                amount: c.amount.to_string(),
                expires_at: c.expires_at.to_string(),
                job: None,
            }
        }
    };
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

fn order_problem(e: EngineError) -> Problem {
    match e {
        EngineError::Confirm(b) => Problem::from(b),
        EngineError::Request(r) => {
            Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid-request", "Cannot generate this", r.to_string())
        }
        other => Problem::internal("queueing the job", &other),
    }
}

/// A job and where it is.
#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "generation", security(("api_key" = [])),
    params(("id" = String, Path, description = "The job's id (the quote's)")),
    responses(
        (status = 200, description = "The job", body = JobView),
        (status = 401, description = "No valid API key", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks `jobs:read`", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such job", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub(crate) async fn get_job(
    State(state): State<Arc<HttpState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<JobView>, Problem> {
    caller.require(Scope::JobsRead)?;
    let job_id = id_of(&id, "job", JobId::parse)?;
    let job = state.engine.jobs().get(job_id).await.map_err(|e| Problem::internal("reading the job", &e))?;
    job.map(|j| Json(job_view(&j))).ok_or_else(|| Problem::not_found(format!("no job {id}")))
}

/// A capture.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct CaptureRequest {
    /// How much to charge, at most the hold; the rest goes back to the user.
    #[schema(example = "15.00")]
    pub amount: String,
}

/// A money move done.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct ReceiptView {
    /// The ledger transaction.
    pub transaction_id: String,
    /// Its kind.
    pub kind: String,
    /// The hold.
    pub hold_id: Option<String>,
    /// What was charged (a capture) or given back (a release).
    pub amount: String,
    /// What went back to `available`.
    pub released: String,
    /// When.
    pub at: String,
    /// `true` when an earlier call had done it.
    pub replayed: bool,
}

fn receipt_view(a: &Applied) -> ReceiptView {
    let r = &a.receipt;
    ReceiptView {
        transaction_id: r.tx.to_string(),
        kind: r.kind.as_str().to_owned(),
        hold_id: r.hold.map(|h| h.to_string()),
        amount: r.amount.to_string(),
        released: r.released.to_string(),
        at: r.at.to_string(),
        replayed: a.replayed,
    }
}

/// Refuses to settle a hold whose job REI runs: its workers capture or release it.
async fn own_hold(state: &HttpState, hold: HoldId) -> Result<(), Problem> {
    let job = state
        .engine
        .jobs()
        .get(JobId::from(hold.as_u128()))
        .await
        .map_err(|e| Problem::internal("reading the job", &e))?;
    match job {
        Some(j) if j.request.is_some() => Err(Problem::new(
            StatusCode::CONFLICT,
            "hold-owned-by-job",
            "REI's workers settle this hold",
            format!("hold {hold} belongs to job {} ({}); cancel the job instead", j.id, j.state),
        )),
        _ => Ok(()),
    }
}

/// Charges a hold (once: a second capture of the same hold returns the first receipt), giving the rest back.
#[utoipa::path(post, path = "/v1/holds/{id}/capture", tag = "holds", security(("api_key" = [])),
    params(("id" = String, Path, description = "The hold's id"),
           ("Idempotency-Key" = String, Header, description = "Unique per operation: a repeat returns the first response")),
    request_body = CaptureRequest,
    responses(
        (status = 200, description = "Captured", body = ReceiptView),
        (status = 400, description = "A malformed body or a missing Idempotency-Key", body = ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "No valid API key", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks `holds:write`", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such hold", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "The hold has ended, belongs to a job REI runs, or the key was reused", body = ProblemBody, content_type = "application/problem+json"),
        (status = 422, description = "More than the hold", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub(crate) async fn capture_hold(
    State(state): State<Arc<HttpState>>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<CaptureRequest>,
) -> Result<Json<ReceiptView>, Problem> {
    caller.require(Scope::HoldsWrite)?;
    let hold = id_of(&id, "hold", HoldId::parse)?;
    let amount = money(&body.amount, "amount")?;
    own_hold(&state, hold).await?;
    let applied = state.engine.billing().capture_hold(hold, amount).await?;
    Ok(Json(receipt_view(&applied)))
}

/// Gives a hold back to the user (once).
#[utoipa::path(post, path = "/v1/holds/{id}/release", tag = "holds", security(("api_key" = [])),
    params(("id" = String, Path, description = "The hold's id"),
           ("Idempotency-Key" = String, Header, description = "Unique per operation: a repeat returns the first response")),
    responses(
        (status = 200, description = "Released", body = ReceiptView),
        (status = 400, description = "A missing Idempotency-Key", body = ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "No valid API key", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks `holds:write`", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such hold", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "The hold has ended, belongs to a job REI runs, or the key was reused", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub(crate) async fn release_hold(
    State(state): State<Arc<HttpState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<ReceiptView>, Problem> {
    caller.require(Scope::HoldsWrite)?;
    let hold = id_of(&id, "hold", HoldId::parse)?;
    own_hold(&state, hold).await?;
    let key = IdempotencyKey::derived("release", hold).map_err(|e| Problem::from(LedgerError::from(e)))?;
    let applied = state.engine.billing().release(hold, key).await?;
    Ok(Json(receipt_view(&applied)))
}

/// A refund to the payer: a YooKassa payment back to its card, or a Stars charge back in Stars.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct RefundRequest {
    /// Whose wallet the money leaves.
    pub user_id: i64,
    /// The payment: YooKassa's id, or `stars:<telegram_payment_charge_id>`.
    pub payment_id: String,
    /// How much, in roubles (a Stars charge is refunded whole: its full credit).
    #[schema(example = "100.00")]
    pub amount: String,
    /// Your stable id of this refund (YooKassa): asking again with it is the same refund.
    pub refund_id: Option<String>,
    /// Why, shown to the payer (YooKassa).
    pub description: Option<String>,
}

/// A refund made.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct RefundView {
    /// `yookassa` or `stars`.
    pub provider: String,
    /// The payment refunded.
    pub payment_id: String,
    /// The gateway's refund id (YooKassa); absent for Stars.
    pub refund_id: Option<String>,
    /// What left the wallet.
    pub amount: String,
    /// `pending`, `succeeded` or `canceled` (YooKassa); `succeeded` or `already_refunded` (Stars).
    pub status: String,
}

/// Refunds a payment to the payer: the wallet money first (never more than the payment brought in), keyed by the
/// refund, then the gateway. Operators only (`admin`).
#[utoipa::path(post, path = "/v1/refunds", tag = "payments", security(("api_key" = [])),
    params(("Idempotency-Key" = String, Header, description = "Unique per operation: a repeat returns the first response")),
    request_body = RefundRequest,
    responses(
        (status = 201, description = "Refunded (or asked for)", body = RefundView),
        (status = 400, description = "A malformed body or a missing Idempotency-Key", body = ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "No valid API key", body = ProblemBody, content_type = "application/problem+json"),
        (status = 402, description = "The wallet no longer holds the money", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks `admin`", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "More than the payment brought in, another user's payment, or a reused key", body = ProblemBody, content_type = "application/problem+json"),
        (status = 502, description = "The gateway refused; the money stays taken", body = ProblemBody, content_type = "application/problem+json"),
        (status = 503, description = "The gateway is not configured or unavailable; repeat", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub(crate) async fn create_refund(
    State(state): State<Arc<HttpState>>,
    caller: Caller,
    Body(body): Body<RefundRequest>,
) -> Result<Response, Problem> {
    use rei_core::ids::PaymentId;
    use rei_core::stars::{StarsError, StarsRefund};
    caller.require(Scope::Admin)?;
    let amount = money(&body.amount, "amount")?;
    let user = UserId(body.user_id);
    let view = if let Some(charge) = body.payment_id.strip_prefix("stars:") {
        let Some(stars) = &state.stars else {
            return Err(Problem::unavailable("stars-not-configured", "Telegram Stars need the bot: set BOT_TOKEN"));
        };
        let done = stars.payments.refund(user, charge, amount, &*stars.api).await.map_err(|e| match e {
            StarsError::Billing(b) => Problem::from(b),
            StarsError::Refused(why) => Problem::bad_request(why.to_string()).with_code("refund-refused"),
            StarsError::RefundAmount { .. } => {
                Problem::new(StatusCode::CONFLICT, "refund-amount", "A Stars charge is refunded whole", e.to_string())
            }
            StarsError::RefundRejected { .. } => {
                Problem::new(StatusCode::BAD_GATEWAY, "gateway-refused", "Telegram refused the refund", e.to_string())
            }
            StarsError::RefundPending { .. } => {
                Problem::unavailable("gateway-unavailable", format!("{e}: repeat the refund")).retry_after(5)
            }
        })?;
        RefundView {
            provider: "stars".to_owned(),
            payment_id: body.payment_id.clone(),
            refund_id: None,
            amount: done.amount.to_string(),
            status: match done.telegram {
                StarsRefund::Refunded => "succeeded",
                StarsRefund::AlreadyRefunded => "already_refunded",
            }
            .to_owned(),
        }
    } else {
        let Some(topups) = &state.topups else {
            return Err(Problem::unavailable(
                "payments-not-configured",
                "no payment gateway is configured: set YOOKASSA_SHOP_ID and YOOKASSA_SECRET_KEY",
            ));
        };
        let refund_id = body.refund_id.as_deref().ok_or_else(|| Problem::bad_request("refund_id is required"))?;
        let payment =
            PaymentId::parse(&body.payment_id).map_err(|e| Problem::bad_request(format!("payment_id: {e}")))?;
        let refund = topups
            .refund(user, &payment, amount, refund_id, body.description.as_deref())
            .await
            .map_err(|e| gateway_problem(&e))?;
        use rei_core::payments::RefundStatus as R;
        RefundView {
            provider: "yookassa".to_owned(),
            payment_id: refund.payment.to_string(),
            refund_id: Some(refund.id),
            amount: refund.amount.to_string(),
            status: match refund.status {
                R::Pending => "pending",
                R::Succeeded => "succeeded",
                R::Canceled => "canceled",
            }
            .to_owned(),
        }
    };
    Ok((StatusCode::CREATED, Json(view)).into_response())
}
