//! [`Problem`]: every error of the HTTP surface, as `application/problem+json` (RFC 9457).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rei_core::billing::BillingError;
use rei_core::ledger::LedgerError;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The media type of a problem.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// A problem as sent: `type` and `code` name it for programs, `title` and `detail` say it for people.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize, ToSchema)]
pub struct ProblemBody {
    /// A URI reference naming the problem: `/problems/{code}`.
    #[serde(rename = "type")]
    pub kind: String,
    /// A short summary of the problem type.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What happened in this case, and what to do about it.
    pub detail: String,
    /// The problem's stable name (`insufficient-funds`, `quote-expired`, …).
    pub code: String,
    /// Seconds to wait before trying again, when waiting helps.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
}

/// An error answer.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Problem {
    status: StatusCode,
    code: &'static str,
    title: &'static str,
    detail: String,
    retry_after: Option<u64>,
}

impl Problem {
    /// A problem of `status`, named `code`, summarized by `title`, explained by `detail`.
    #[must_use]
    pub fn new(status: StatusCode, code: &'static str, title: &'static str, detail: impl Into<String>) -> Problem {
        Problem { status, code, title, detail: detail.into(), retry_after: None }
    }

    /// The same problem under another code.
    #[must_use]
    pub fn with_code(mut self, code: &'static str) -> Problem {
        self.code = code;
        self
    }

    /// Says how long to wait (also sent as `Retry-After`).
    #[must_use]
    pub fn retry_after(mut self, seconds: u64) -> Problem {
        self.retry_after = Some(seconds);
        self
    }

    /// Its status.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// Its code.
    #[must_use]
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// 400: the request is malformed.
    #[must_use]
    pub fn bad_request(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::BAD_REQUEST, "bad-request", "The request is malformed", detail)
    }

    /// 404: nothing at this id.
    #[must_use]
    pub fn not_found(what: impl Into<String>) -> Problem {
        Problem::new(StatusCode::NOT_FOUND, "not-found", "Not found", what)
    }

    /// 503: a part of the service is not configured or not reachable.
    #[must_use]
    pub fn unavailable(code: &'static str, detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::SERVICE_UNAVAILABLE, code, "Service unavailable", detail)
    }

    /// 500: something failed inside; the detail is logged, not sent.
    #[must_use]
    pub fn internal(context: &str, e: &dyn std::fmt::Display) -> Problem {
        tracing::error!(context, error = %e, "request failed");
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            format!("{context} failed; it is logged. Retry with the same Idempotency-Key: nothing is applied twice"),
        )
    }

    /// The body it sends.
    #[must_use]
    pub fn body(&self) -> ProblemBody {
        ProblemBody {
            kind: format!("/problems/{}", self.code),
            title: self.title.to_owned(),
            status: self.status.as_u16(),
            detail: self.detail.clone(),
            code: self.code.to_owned(),
            retry_after: self.retry_after,
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.body()).unwrap_or_default();
        let mut response = (self.status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<BillingError> for Problem {
    fn from(e: BillingError) -> Problem {
        use StatusCode as S;
        let detail = e.to_string();
        match &e {
            BillingError::QuoteNotFound { .. } => {
                Problem::new(S::NOT_FOUND, "quote-not-found", "No such quote", detail + ": ask for a new quote")
            }
            BillingError::QuoteOwner { .. } => {
                Problem::new(S::FORBIDDEN, "quote-owner", "The quote belongs to another user", detail)
            }
            BillingError::QuoteExpired { .. } => {
                Problem::new(S::GONE, "quote-expired", "The quote expired", detail + ": ask for a new quote")
            }
            BillingError::Pricing(_) => Problem::new(S::UNPROCESSABLE_ENTITY, "pricing", "Cannot price this", detail),
            BillingError::Ledger(l) => Problem::from(l.clone()),
            BillingError::Store(s) => Problem::internal("the ledger", s),
        }
    }
}

impl From<LedgerError> for Problem {
    fn from(e: LedgerError) -> Problem {
        use StatusCode as S;
        let detail = e.to_string();
        match &e {
            LedgerError::InsufficientFunds { .. } => Problem::new(
                S::PAYMENT_REQUIRED,
                "insufficient-funds",
                "Not enough money",
                detail + ": top the balance up",
            ),
            LedgerError::SpendCap(_) => Problem::new(S::FORBIDDEN, "spend-cap", "A spend cap is reached", detail),
            LedgerError::TooManyActiveHolds { .. } => Problem::new(
                S::TOO_MANY_REQUESTS,
                "too-many-running",
                "Too many jobs running",
                detail + ": wait for one to end",
            )
            .retry_after(5),
            LedgerError::HoldNotFound { .. } => Problem::new(S::NOT_FOUND, "hold-not-found", "No such hold", detail),
            LedgerError::HoldNotActive { .. } | LedgerError::HoldExpired { .. } => {
                Problem::new(S::CONFLICT, "hold-ended", "The hold has ended", detail)
            }
            LedgerError::CaptureExceedsHold { .. } => {
                Problem::new(S::UNPROCESSABLE_ENTITY, "capture-exceeds-hold", "More than the hold", detail)
            }
            LedgerError::InvalidAmount { .. } | LedgerError::Overflow => {
                Problem::new(S::UNPROCESSABLE_ENTITY, "invalid-amount", "Invalid amount", detail)
            }
            LedgerError::KeyConflict { .. } => {
                Problem::new(S::CONFLICT, "key-conflict", "The key was used for another operation", detail)
            }
            LedgerError::Store(s) => Problem::internal("the ledger", s),
            _ => Problem::new(S::CONFLICT, "ledger-refused", "The ledger refused", detail),
        }
    }
}
