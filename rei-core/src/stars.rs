//! Telegram Stars top-ups: [`StarsPayments`] sells wallet roubles for Stars through the bot, over the
//! [`StarsApi`] port (the Bot API's payment methods).
//!
//! The flow: [`StarsPayments::invoice`] makes an invoice (currency `XTR`, one price, our payload
//! `rei:<user>:<topup>`), the bot sends it; Telegram asks the bot with a `pre_checkout_query`, which
//! [`StarsPayments::pre_checkout`] answers at once (pure, no I/O: Telegram cancels the purchase after 10 s);
//! Telegram then delivers a `successful_payment` service message, and only that credits the wallet
//! ([`StarsPayments::on_successful_payment`]), keyed by Telegram's charge id. A refund
//! ([`StarsPayments::refund`]) takes the money out of the wallet first and only then gives the Stars back.
//!
//! Money rule: a charge of `n` Stars credits `n × rub_per_star` in whole kopecks (an integer product, no
//! rounding anywhere); the ledger records it as `payments -x, available +x` under the payment id
//! `stars:<telegram_payment_charge_id>`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::billing::{BillingError, BillingService};
use crate::ids::{IdempotencyKey, PaymentId, UserId};
use crate::ledger::LedgerError;
use crate::money::Money;
use crate::topups::TopUpObserver;

/// The currency of Telegram Stars.
pub const CURRENCY: &str = "XTR";
/// The prefix of a Stars payment's [`PaymentId`]: `stars:<telegram_payment_charge_id>`.
pub const PAYMENT_PREFIX: &str = "stars";
/// The longest invoice title Telegram takes, in characters.
pub const TITLE_CHARS_MAX: usize = 32;
/// The longest invoice description Telegram takes, in characters.
pub const DESCRIPTION_CHARS_MAX: usize = 255;
/// The longest invoice payload Telegram takes, in bytes.
pub const PAYLOAD_BYTES_MAX: usize = 128;
/// The longest top-up id a payload carries, in bytes (`rei:` + a user id + `:` + this fits in
/// [`PAYLOAD_BYTES_MAX`]).
pub const TOPUP_ID_LEN_MAX: usize = 64;
/// The longest Telegram charge id accepted: what fits a [`PaymentId`] after `stars:`.
pub const CHARGE_ID_LEN_MAX: usize = PaymentId::LEN_MAX - PAYMENT_PREFIX.len() - 1;
/// The dearest Star a configuration may set, in kopecks (1 000 000 ₽). It keeps every possible charge
/// (`u32::MAX` Stars) far inside `i64` kopecks, which [`StarsPayments::refund`] relies on.
pub const RUB_PER_STAR_MAX: Money = Money::from_kopecks(100_000_000);

/// What a Star sells for and what an invoice says.
///
/// Invariant (checked by [`StarsConfig::validate`], so by [`StarsPayments::new`]): `0 < rub_per_star <=`
/// [`RUB_PER_STAR_MAX`], `1 <= min_stars <= max_stars`, a title of 1 to [`TITLE_CHARS_MAX`] characters and a
/// description of 1 to [`DESCRIPTION_CHARS_MAX`].
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct StarsConfig {
    /// Roubles credited per Star.
    pub rub_per_star: Money,
    /// The fewest Stars one invoice sells.
    pub min_stars: u32,
    /// The most Stars one invoice sells.
    pub max_stars: u32,
    /// The invoice's title.
    pub title: String,
    /// The invoice's description.
    pub description: String,
}

impl Default for StarsConfig {
    /// 1.50 ₽ per Star, 1 to 100 000 Stars per invoice.
    fn default() -> Self {
        StarsConfig {
            rub_per_star: Money::from_kopecks(150),
            min_stars: 1,
            max_stars: 100_000,
            title: "Пополнение баланса".to_owned(),
            description: "Пополнение баланса в боте за Telegram Stars".to_owned(),
        }
    }
}

/// Why a [`StarsConfig`] is unusable.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum StarsConfigError {
    /// The rate is zero, negative or above [`RUB_PER_STAR_MAX`].
    #[error("rub_per_star must be above 0 and at most {RUB_PER_STAR_MAX}, not {rate}")]
    Rate {
        /// The rate given.
        rate: Money,
    },
    /// `min_stars` is zero or above `max_stars`.
    #[error("the Stars limits must satisfy 1 <= min_stars <= max_stars, not {min}..={max}")]
    Limits {
        /// The minimum given.
        min: u32,
        /// The maximum given.
        max: u32,
    },
    /// The title is empty or longer than [`TITLE_CHARS_MAX`] characters.
    #[error("the invoice title must be 1 to {TITLE_CHARS_MAX} characters, not {chars}")]
    Title {
        /// Its length in characters.
        chars: usize,
    },
    /// The description is empty or longer than [`DESCRIPTION_CHARS_MAX`] characters.
    #[error("the invoice description must be 1 to {DESCRIPTION_CHARS_MAX} characters, not {chars}")]
    Description {
        /// Its length in characters.
        chars: usize,
    },
}

impl StarsConfig {
    /// Checks the invariant.
    ///
    /// # Errors
    /// [`StarsConfigError`] naming the first value that is wrong.
    pub fn validate(&self) -> Result<(), StarsConfigError> {
        if !self.rub_per_star.is_positive() || self.rub_per_star > RUB_PER_STAR_MAX {
            return Err(StarsConfigError::Rate { rate: self.rub_per_star });
        }
        if self.min_stars == 0 || self.min_stars > self.max_stars {
            return Err(StarsConfigError::Limits { min: self.min_stars, max: self.max_stars });
        }
        let title = self.title.chars().count();
        if title == 0 || title > TITLE_CHARS_MAX {
            return Err(StarsConfigError::Title { chars: title });
        }
        let description = self.description.chars().count();
        if description == 0 || description > DESCRIPTION_CHARS_MAX {
            return Err(StarsConfigError::Description { chars: description });
        }
        Ok(())
    }

    /// What `stars` Stars credit: `stars × rub_per_star`, exact. Never overflows for a validated
    /// configuration (see [`RUB_PER_STAR_MAX`]); `None` otherwise.
    #[must_use]
    pub fn amount_for(&self, stars: u32) -> Option<Money> {
        self.rub_per_star.checked_mul(i64::from(stars))
    }
}

/// Why a text is not one of our invoice payloads.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum PayloadError {
    /// Empty or longer than [`PAYLOAD_BYTES_MAX`] bytes.
    #[error("the payload must be 1 to {PAYLOAD_BYTES_MAX} bytes")]
    Length,
    /// Not `rei:<user>:<topup>`.
    #[error("the payload is not rei:<user>:<topup>")]
    Shape,
    /// The user part is not a decimal user id.
    #[error("the payload's user is not a user id")]
    User,
    /// The top-up id is empty, longer than [`TOPUP_ID_LEN_MAX`] or has characters outside `A-Za-z0-9_-`.
    #[error("the top-up id must be 1 to {TOPUP_ID_LEN_MAX} characters of A-Za-z0-9 _ -")]
    TopupId,
}

/// Our reference on an invoice, `rei:<user_id>:<topup_id>`: whom to credit and which top-up it is. Telegram
/// sends it back in the pre-checkout query and in the successful payment.
///
/// Invariant: the top-up id is 1 to [`TOPUP_ID_LEN_MAX`] characters of `A-Za-z0-9_-`, so the text is at most
/// [`PAYLOAD_BYTES_MAX`] bytes and splits back unambiguously.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct StarsPayload {
    user: UserId,
    topup_id: String,
}

impl StarsPayload {
    /// The payload of top-up `topup_id` (the caller's stable id) for `user`.
    ///
    /// # Errors
    /// [`PayloadError::TopupId`] for an id outside the safe alphabet or too long.
    pub fn new(user: UserId, topup_id: &str) -> Result<StarsPayload, PayloadError> {
        let ok = !topup_id.is_empty()
            && topup_id.len() <= TOPUP_ID_LEN_MAX
            && topup_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if ok { Ok(StarsPayload { user, topup_id: topup_id.to_owned() }) } else { Err(PayloadError::TopupId) }
    }

    /// Reads a payload back (untrusted text from an update).
    ///
    /// # Errors
    /// [`PayloadError`] for anything [`StarsPayload`]'s `Display` does not print.
    pub fn parse(text: &str) -> Result<StarsPayload, PayloadError> {
        if text.is_empty() || text.len() > PAYLOAD_BYTES_MAX {
            return Err(PayloadError::Length);
        }
        let rest = text.strip_prefix("rei:").ok_or(PayloadError::Shape)?;
        let (user, topup) = rest.split_once(':').ok_or(PayloadError::Shape)?;
        // Only the canonical decimal form, so that one payload has one text.
        let digits = user.strip_prefix('-').unwrap_or(user);
        let canonical = !digits.is_empty()
            && digits.bytes().all(|b| b.is_ascii_digit())
            && (digits == "0" || !digits.starts_with('0'))
            && user != "-0";
        let user = user.parse::<i64>().ok().filter(|_| canonical).ok_or(PayloadError::User)?;
        StarsPayload::new(UserId(user), topup)
    }

    /// Whom the invoice credits.
    #[must_use]
    pub fn user(&self) -> UserId {
        self.user
    }

    /// The top-up it is.
    #[must_use]
    pub fn topup_id(&self) -> &str {
        &self.topup_id
    }
}

impl fmt::Display for StarsPayload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rei:{}:{}", self.user.0, self.topup_id)
    }
}

/// An invoice for Stars: one price of `stars` Stars in [`CURRENCY`].
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct StarsInvoice {
    /// 1 to [`TITLE_CHARS_MAX`] characters.
    pub title: String,
    /// 1 to [`DESCRIPTION_CHARS_MAX`] characters.
    pub description: String,
    /// Our reference; travels as its `Display` text.
    pub payload: StarsPayload,
    /// Always [`CURRENCY`].
    pub currency: &'static str,
    /// The price, in whole Stars (Stars have no minor units).
    pub stars: u32,
}

/// A `pre_checkout_query`: Telegram asks whether to go on with a purchase.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct PreCheckout {
    /// The query's id, to answer it by.
    pub id: String,
    /// Who is paying.
    pub from: UserId,
    /// The invoice's currency (`XTR` for Stars).
    pub currency: String,
    /// The price, in Stars.
    pub total_amount: u32,
    /// The invoice's payload, as Telegram sends it back.
    pub invoice_payload: String,
}

/// A `successful_payment` service message: the user paid.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct SuccessfulPayment {
    /// Who paid.
    pub from: UserId,
    /// The currency (`XTR` for Stars).
    pub currency: String,
    /// How much, in Stars.
    pub total_amount: u32,
    /// The invoice's payload.
    pub invoice_payload: String,
    /// Telegram's id of the charge: the key of the credit and what a refund names.
    pub telegram_payment_charge_id: String,
    /// The provider's id of the charge (empty or Telegram's own for Stars).
    pub provider_payment_charge_id: String,
}

/// Why a purchase is refused (at pre-checkout, or when its payment arrives).
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum Refusal {
    /// The invoice is not in [`CURRENCY`].
    #[error("currency {currency:?} is not XTR")]
    Currency {
        /// What was sent.
        currency: String,
    },
    /// The payload is not ours.
    #[error(transparent)]
    Payload(#[from] PayloadError),
    /// The payload names another user than the payer.
    #[error("user {payer} pays an invoice of user {invoiced}")]
    OtherUser {
        /// Who pays.
        payer: UserId,
        /// Whom the invoice credits.
        invoiced: UserId,
    },
    /// The number of Stars is outside the configured limits.
    #[error("{stars} Stars is outside {min}..={max}")]
    Stars {
        /// Asked.
        stars: u32,
        /// The configured minimum.
        min: u32,
        /// The configured maximum.
        max: u32,
    },
    /// Telegram's charge id cannot be a payment id (empty, too long, odd characters).
    #[error("the charge id is not 1 to {CHARGE_ID_LEN_MAX} characters of A-Za-z0-9 _ - : . ~")]
    ChargeId,
}

impl Refusal {
    /// What the user is shown (Telegram displays a pre-checkout refusal's `error_message`).
    #[must_use]
    pub fn message(&self) -> String {
        match self {
            Refusal::Currency { .. } => "Оплата принимается только в Telegram Stars.".to_owned(),
            Refusal::Payload(_) | Refusal::ChargeId => {
                "Этот счёт недействителен. Запросите новый счёт в боте.".to_owned()
            }
            Refusal::OtherUser { .. } => {
                "Этот счёт выставлен другому пользователю. Запросите свой счёт в боте.".to_owned()
            }
            Refusal::Stars { min, max, .. } => format!("Пополнение возможно на сумму от {min} до {max} звёзд."),
        }
    }
}

/// The answer to a [`PreCheckout`].
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum PreCheckoutAnswer {
    /// Go on (`ok: true`).
    Accept,
    /// Cancel the purchase (`ok: false`, `error_message` = [`Refusal::message`]).
    Refuse(Refusal),
}

/// What `refundStarPayment` came to.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum StarsRefund {
    /// The Stars went back now.
    Refunded,
    /// Telegram says the charge was refunded before (`CHARGE_ALREADY_REFUNDED`): done, reconciled.
    AlreadyRefunded,
}

/// Why a Bot API payment call failed.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum StarsApiError {
    /// Telegram refused the request (a 4xx other than 401 and 429): repeating it will not help.
    #[error("telegram refused: {reason}")]
    Rejected {
        /// What it said.
        reason: String,
    },
    /// The bot token was refused: a configuration problem.
    #[error("telegram refused the bot token")]
    Unauthorized,
    /// Too many requests: Telegram freezes the bot's calls for `retry_after`.
    #[error("telegram rate limit, retry after {retry_after:?}")]
    RateLimited {
        /// How long to wait.
        retry_after: Duration,
    },
    /// Telegram could not be reached or failed (5xx, a timeout): the outcome is unknown.
    #[error("telegram is unavailable: {reason}")]
    Unavailable {
        /// What was seen.
        reason: String,
    },
    /// The answer could not be understood.
    #[error("unusable answer from telegram: {reason}")]
    Garbage {
        /// What was wrong.
        reason: String,
    },
}

/// The Bot API's payment methods, as the bot calls them.
///
/// Contract: every method MUST return only once Telegram answered (or the call failed), and MUST map
/// Telegram's errors into [`StarsApiError`] by what the caller can do; no method may print the bot token in an
/// error.
#[async_trait]
pub trait StarsApi: Send + Sync {
    /// Sends `invoice` into the chat `chat_id` (`sendInvoice`, `XTR`, no provider token, one price).
    ///
    /// # Errors
    /// [`StarsApiError`].
    async fn send_invoice(&self, chat_id: i64, invoice: &StarsInvoice) -> Result<(), StarsApiError>;

    /// A `https://t.me/$…` link paying `invoice` (`createInvoiceLink`).
    ///
    /// # Errors
    /// [`StarsApiError`].
    async fn create_invoice_link(&self, invoice: &StarsInvoice) -> Result<String, StarsApiError>;

    /// Answers the pre-checkout query `query_id` (`answerPreCheckoutQuery`). MUST be called within 10 s of
    /// the query, or Telegram cancels the purchase.
    ///
    /// # Errors
    /// [`StarsApiError`].
    async fn answer_pre_checkout(&self, query_id: &str, answer: &PreCheckoutAnswer) -> Result<(), StarsApiError>;

    /// Gives the Stars of the charge `charge_id` back to `user` (`refundStarPayment`). A charge refunded before
    /// MUST come back as [`StarsRefund::AlreadyRefunded`], not as an error.
    ///
    /// # Errors
    /// [`StarsApiError`].
    async fn refund_star_payment(&self, user: UserId, charge_id: &str) -> Result<StarsRefund, StarsApiError>;
}

/// A credited Stars payment.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct StarsCredit {
    /// Whose wallet.
    pub user: UserId,
    /// What was credited (`stars × rub_per_star`).
    pub amount: Money,
    /// The Stars paid.
    pub stars: u32,
    /// Telegram's charge id.
    pub charge_id: String,
    /// The invoice's payload (the top-up it was).
    pub payload: StarsPayload,
    /// `true` when an earlier delivery of the same payment credited it: nothing moved now.
    pub replayed: bool,
}

/// A done Stars refund.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct StarsRefundOutcome {
    /// Whose.
    pub user: UserId,
    /// Telegram's charge id.
    pub charge_id: String,
    /// What left the wallet.
    pub amount: Money,
    /// `true` when an earlier call took the money out of the wallet: nothing moved in the ledger now.
    pub replayed: bool,
    /// What Telegram said: refunded now, or before (reconciled).
    pub telegram: StarsRefund,
}

/// Why a Stars operation failed.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum StarsError {
    /// The purchase or payment does not match what we sell (see [`Refusal`]); nothing changed. For a refused
    /// `successful_payment` the Stars are with the bot: reconcile with `getStarTransactions` and give them
    /// back with `refundStarPayment` to the payer.
    #[error("refused: {0}")]
    Refused(#[from] Refusal),
    /// A refund asked for another amount than the charge left in the ledger: a Stars charge is refunded whole.
    /// Nothing changed.
    #[error("a Stars charge is refunded whole: {refundable} refundable, {requested} asked")]
    RefundAmount {
        /// What the charge credited and is not yet refunded.
        refundable: Money,
        /// What the caller asked.
        requested: Money,
    },
    /// The ledger refused or failed (a refund of a charge never credited or of another user's, a wallet that
    /// no longer holds the money, a store failure).
    #[error(transparent)]
    Billing(#[from] BillingError),
    /// Telegram refused the refund. The wallet money stays taken (in `refunds_out`); see
    /// [`StarsPayments::refund`] for what an operator does.
    #[error("telegram refused to refund charge {charge_id} ({amount} stays taken from the wallet): {reason}")]
    RefundRejected {
        /// The charge.
        charge_id: String,
        /// What the ledger took.
        amount: Money,
        /// What Telegram said.
        reason: String,
    },
    /// Telegram did not confirm the refund (unreachable, rate limit, garbage, the token refused): the wallet
    /// money is taken; repeat the same refund, which moves no more money and asks Telegram again.
    #[error("the refund of charge {charge_id} is not confirmed ({amount} taken from the wallet): {source}")]
    RefundPending {
        /// The charge.
        charge_id: String,
        /// What the ledger took.
        amount: Money,
        /// What went wrong.
        source: StarsApiError,
    },
}

/// Stars top-ups, credited by a [`BillingService`].
pub struct StarsPayments {
    billing: Arc<BillingService>,
    config: StarsConfig,
    observers: Vec<Arc<dyn TopUpObserver>>,
}

impl fmt::Debug for StarsPayments {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StarsPayments").field("config", &self.config).finish_non_exhaustive()
    }
}

impl StarsPayments {
    /// Stars top-ups at `config`'s rate, credited by `billing`.
    ///
    /// # Errors
    /// [`StarsConfigError`] for a configuration that breaks [`StarsConfig`]'s invariant.
    pub fn new(billing: Arc<BillingService>, config: StarsConfig) -> Result<StarsPayments, StarsConfigError> {
        config.validate()?;
        Ok(StarsPayments { billing, config, observers: Vec::new() })
    }

    /// Adds `observer`, told of every credit [`Self::on_successful_payment`] makes or replays, under the
    /// payment id `stars:<telegram_payment_charge_id>`.
    #[must_use]
    pub fn with_observer(mut self, observer: Arc<dyn TopUpObserver>) -> StarsPayments {
        self.observers.push(observer);
        self
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &StarsConfig {
        &self.config
    }

    /// The invoice of top-up `topup_id` (the caller's stable id) of `stars` Stars for `user`. Making it moves
    /// nothing; the caller sends it with [`StarsApi::send_invoice`] or [`StarsApi::create_invoice_link`].
    ///
    /// # Errors
    /// [`StarsError::Refused`] with [`Refusal::Stars`] outside the limits or [`Refusal::Payload`] for a top-up
    /// id outside the payload's alphabet.
    pub fn invoice(&self, user: UserId, stars: u32, topup_id: &str) -> Result<StarsInvoice, StarsError> {
        self.check_stars(stars)?;
        let payload = StarsPayload::new(user, topup_id).map_err(Refusal::from)?;
        Ok(StarsInvoice {
            title: self.config.title.clone(),
            description: self.config.description.clone(),
            payload,
            currency: CURRENCY,
            stars,
        })
    }

    /// The answer to a pre-checkout query: accept when the currency is `XTR`, the payload is ours and names
    /// the payer, and the Stars are within the limits. Pure and immediate (no I/O): Telegram waits at most
    /// 10 s for the answer. Accepting promises nothing; only [`Self::on_successful_payment`] credits.
    #[must_use]
    pub fn pre_checkout(&self, query: &PreCheckout) -> PreCheckoutAnswer {
        match self.check(query.from, &query.currency, query.total_amount, &query.invoice_payload) {
            Ok(_) => PreCheckoutAnswer::Accept,
            Err(refusal) => PreCheckoutAnswer::Refuse(refusal),
        }
    }

    /// Credits a `successful_payment`: the same checks as [`Self::pre_checkout`] again (the update may be
    /// forged or the configuration changed in between: fail closed), then `total_amount × rub_per_star` through
    /// [`BillingService::top_up`] under the payment id `stars:<telegram_payment_charge_id>`. The same payment
    /// delivered many times, also at once, credits once; every repeat returns the first credit with
    /// `replayed` set. Each observer ([`Self::with_observer`]) is told after the credit and after every repeat.
    ///
    /// # Errors
    /// [`StarsError::Refused`] when the payment does not match (nothing changed); [`StarsError::Billing`] when
    /// the ledger failed (repeat: the credit is keyed).
    pub async fn on_successful_payment(&self, payment: &SuccessfulPayment) -> Result<StarsCredit, StarsError> {
        let (payload, amount) =
            self.check(payment.from, &payment.currency, payment.total_amount, &payment.invoice_payload)?;
        let id = payment_id(&payment.telegram_payment_charge_id)?;
        let applied = self.billing.top_up(payload.user(), amount, id.clone()).await?;
        for observer in &self.observers {
            observer.credited(payload.user(), &id, applied.receipt.amount).await;
        }
        Ok(StarsCredit {
            user: payload.user(),
            amount: applied.receipt.amount,
            stars: payment.total_amount,
            charge_id: payment.telegram_payment_charge_id.clone(),
            payload,
            replayed: applied.replayed,
        })
    }

    /// Refunds the Stars charge `charge_id` of `user`, whose credit was `amount`.
    ///
    /// Order, and why: the wallet money goes first, then the Stars. The money leaves the wallet with
    /// [`BillingService::refund_to_card`] (`available -x, refunds_out +x`) under the key
    /// `stars-refund:<charge>`, so repeated or concurrent refunds take it once and a wallet that no longer
    /// holds it (the user spent it) refuses before Telegram is asked; only then is `refundStarPayment`
    /// called. The other order could give the Stars back while the same money is being spent.
    ///
    /// Telegram refunds a charge whole, so `amount` must be everything the charge credited and is not yet
    /// refunded; the ledger is asked what that is first (a refund of more than refundable is refused without
    /// recording anything) and another amount is refused, so a partial refund can never give all the Stars
    /// back for part of the money.
    ///
    /// Telegram's answers: `True` is [`StarsRefund::Refunded`]; `CHARGE_ALREADY_REFUNDED` is
    /// [`StarsRefund::AlreadyRefunded`], done and reconciled (Telegram reports it even for refunds that went
    /// through, and for every repeat of this call). An unknown outcome (timeout, 5xx, rate limit, garbage, a
    /// refused token) is [`StarsError::RefundPending`]: call `refund` again with the same arguments, which
    /// moves no money and asks Telegram again.
    ///
    /// The decision for a refusal ([`StarsError::RefundRejected`], e.g. an unknown charge): the wallet money
    /// stays taken, in `refunds_out`, as money owed to the user outside the wallet. It is not put back
    /// automatically, because a later repeat of the refund would then give the Stars back as well as the
    /// wallet money. An operator either repeats the refund once the cause is fixed (same arguments: the
    /// ledger replays, Telegram is asked again), or gives the money back to the wallet with an admin
    /// adjustment of `+amount` whose reason names the charge, after which the charge MUST NOT be refunded
    /// again (the refusal, the charge and the amount are in the error for the audit record).
    ///
    /// # Errors
    /// [`StarsError::Refused`] for a charge id that is not a payment id; [`StarsError::RefundAmount`];
    /// [`StarsError::Billing`] (the charge was never credited, is another user's, or the wallet does not hold
    /// the money: nothing moved); [`StarsError::RefundRejected`]; [`StarsError::RefundPending`].
    pub async fn refund(
        &self,
        user: UserId,
        charge_id: &str,
        amount: Money,
        api: &dyn StarsApi,
    ) -> Result<StarsRefundOutcome, StarsError> {
        let payment = payment_id(charge_id)?;
        let key = IdempotencyKey::derived("stars-refund", charge_id).map_err(|_| Refusal::ChargeId)?;
        let refundable = self.refundable(user, &payment, charge_id).await?;
        // Nothing refundable left: either this refund happened before (the ledger replays it below) or the
        // ledger refuses it; either way the ledger decides, not this check.
        if refundable.is_positive() && amount != refundable {
            return Err(StarsError::RefundAmount { refundable, requested: amount });
        }
        let applied = self.billing.refund_to_card(user, payment, amount, key).await?;
        let telegram = match api.refund_star_payment(user, charge_id).await {
            Ok(done) => done,
            Err(StarsApiError::Rejected { reason }) => {
                return Err(StarsError::RefundRejected { charge_id: charge_id.to_owned(), amount, reason });
            }
            Err(source) => return Err(StarsError::RefundPending { charge_id: charge_id.to_owned(), amount, source }),
        };
        Ok(StarsRefundOutcome {
            user,
            charge_id: charge_id.to_owned(),
            amount: applied.receipt.amount,
            replayed: applied.replayed,
            telegram,
        })
    }

    /// What the charge credited and is not yet refunded, as the ledger has it: a card refund of more than any
    /// charge can be, which the ledger refuses with the refundable amount and records nothing for (a refused
    /// operation leaves nothing under its key). It cannot apply: no Stars payment reaches `i64::MAX` kopecks
    /// (see [`RUB_PER_STAR_MAX`]).
    async fn refundable(&self, user: UserId, payment: &PaymentId, charge_id: &str) -> Result<Money, StarsError> {
        let probe = IdempotencyKey::derived("stars-refund-probe", charge_id).map_err(|_| Refusal::ChargeId)?;
        let beyond = Money::from_kopecks(i64::MAX);
        match self.billing.refund_to_card(user, payment.clone(), beyond, probe).await {
            Err(BillingError::Ledger(LedgerError::RefundExceedsPayment { refundable, .. })) => Ok(refundable),
            Err(e) => Err(e.into()),
            Ok(_) => panic!("invariant broken: a card refund of i64::MAX kopecks of Stars charge {charge_id} applied"),
        }
    }

    fn check_stars(&self, stars: u32) -> Result<Money, Refusal> {
        let (min, max) = (self.config.min_stars, self.config.max_stars);
        match self.config.amount_for(stars) {
            Some(amount) if (min..=max).contains(&stars) => Ok(amount),
            _ => Err(Refusal::Stars { stars, min, max }),
        }
    }

    /// The checks of a purchase, at pre-checkout and at payment: its payload and what it credits.
    fn check(&self, from: UserId, currency: &str, stars: u32, payload: &str) -> Result<(StarsPayload, Money), Refusal> {
        if currency != CURRENCY {
            return Err(Refusal::Currency { currency: currency.chars().take(16).collect() });
        }
        let payload = StarsPayload::parse(payload)?;
        if payload.user() != from {
            return Err(Refusal::OtherUser { payer: from, invoiced: payload.user() });
        }
        let amount = self.check_stars(stars)?;
        Ok((payload, amount))
    }
}

/// The payment id of a charge: `stars:<telegram_payment_charge_id>`.
///
/// # Errors
/// [`Refusal::ChargeId`] for a charge id that cannot be one.
pub fn payment_id(charge_id: &str) -> Result<PaymentId, Refusal> {
    if charge_id.is_empty() || charge_id.len() > CHARGE_ID_LEN_MAX {
        return Err(Refusal::ChargeId);
    }
    PaymentId::parse(&format!("{PAYMENT_PREFIX}:{charge_id}")).map_err(|_| Refusal::ChargeId)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_configuration_is_valid_and_bad_ones_are_named() {
        // Proves the shipped default passes its own checks and each broken value is refused by name.
        assert_eq!(StarsConfig::default().validate(), Ok(()));
        let bad = |f: fn(&mut StarsConfig)| {
            let mut c = StarsConfig::default();
            f(&mut c);
            c.validate()
        };
        assert!(matches!(bad(|c| c.rub_per_star = Money::ZERO), Err(StarsConfigError::Rate { .. })));
        assert!(matches!(
            bad(|c| c.rub_per_star = Money::from_kopecks(100_000_001)),
            Err(StarsConfigError::Rate { .. })
        ));
        assert!(matches!(bad(|c| c.min_stars = 0), Err(StarsConfigError::Limits { .. })));
        assert!(matches!(bad(|c| c.max_stars = 0), Err(StarsConfigError::Limits { .. })));
        assert!(matches!(bad(|c| c.title = String::new()), Err(StarsConfigError::Title { chars: 0 })));
        assert!(matches!(bad(|c| c.title = "я".repeat(33)), Err(StarsConfigError::Title { chars: 33 })));
        assert_eq!(bad(|c| c.title = "я".repeat(32)), Ok(()), "characters, not bytes");
        assert!(matches!(bad(|c| c.description = "d".repeat(256)), Err(StarsConfigError::Description { .. })));
    }

    #[test]
    fn amounts_are_exact_kopecks_and_never_overflow_for_a_valid_rate() {
        // Proves stars × rate is an exact integer product, and the largest possible charge at the dearest
        // allowed rate still fits.
        let c = StarsConfig::default();
        assert_eq!(c.amount_for(1), Some(Money::from_kopecks(150)));
        assert_eq!(c.amount_for(3), Some(Money::from_kopecks(450)));
        assert_eq!(c.amount_for(100_000), Some(Money::from_kopecks(15_000_000)));
        let dearest = StarsConfig { rub_per_star: RUB_PER_STAR_MAX, ..StarsConfig::default() };
        let most = dearest.amount_for(u32::MAX).expect("fits");
        assert!(most < Money::from_kopecks(i64::MAX));
    }

    #[test]
    fn payloads_round_trip_and_junk_is_refused() {
        // Proves our payload prints and parses back, stays within 128 bytes, and anything else is refused.
        let p = StarsPayload::new(UserId(42), "t-1_A").expect("payload");
        assert_eq!(p.to_string(), "rei:42:t-1_A");
        assert_eq!(StarsPayload::parse("rei:42:t-1_A"), Ok(p));
        let longest = StarsPayload::new(UserId(i64::MIN), &"x".repeat(TOPUP_ID_LEN_MAX)).expect("payload");
        assert!(longest.to_string().len() <= PAYLOAD_BYTES_MAX);
        assert_eq!(StarsPayload::parse(&longest.to_string()), Ok(longest));
        assert_eq!(StarsPayload::parse(""), Err(PayloadError::Length));
        assert_eq!(StarsPayload::parse(&"r".repeat(129)), Err(PayloadError::Length));
        assert_eq!(StarsPayload::parse("other:1:t"), Err(PayloadError::Shape));
        assert_eq!(StarsPayload::parse("rei:42"), Err(PayloadError::Shape));
        for user in ["rei:x:t", "rei::t", "rei:042:t", "rei:-0:t", "rei:+4:t", "rei:99999999999999999999:t"] {
            assert_eq!(StarsPayload::parse(user), Err(PayloadError::User), "{user}");
        }
        for topup in ["rei:4:", "rei:4:a:b", "rei:4:a b", "rei:4:счёт", &format!("rei:4:{}", "x".repeat(65))] {
            assert_eq!(StarsPayload::parse(topup), Err(PayloadError::TopupId), "{topup}");
        }
        assert_eq!(StarsPayload::parse("rei:-5:t").map(|p| p.user()), Ok(UserId(-5)));
    }

    #[test]
    fn charge_ids_become_payment_ids_or_are_refused() {
        // Proves the credit's key: `stars:<charge>` for a charge id the key alphabet takes, a refusal otherwise.
        assert_eq!(payment_id("stxAb_1-2").map(|p| p.as_str().to_owned()), Ok("stars:stxAb_1-2".to_owned()));
        assert_eq!(payment_id(""), Err(Refusal::ChargeId));
        assert_eq!(payment_id("a b"), Err(Refusal::ChargeId));
        assert_eq!(payment_id(&"c".repeat(CHARGE_ID_LEN_MAX + 1)), Err(Refusal::ChargeId));
        assert!(payment_id(&"c".repeat(CHARGE_ID_LEN_MAX)).is_ok());
    }

    #[test]
    fn refusals_tell_the_user_something_readable() {
        // Proves every refusal has a non-empty message for the user, and the limits appear in theirs.
        let stars = Refusal::Stars { stars: 0, min: 1, max: 100 };
        assert!(stars.message().contains("1") && stars.message().contains("100"));
        for r in [
            Refusal::Currency { currency: "USD".into() },
            Refusal::Payload(PayloadError::Shape),
            Refusal::OtherUser { payer: UserId(1), invoiced: UserId(2) },
            Refusal::ChargeId,
        ] {
            assert!(!r.message().is_empty());
        }
    }
}

#[cfg(all(test, feature = "testing"))]
mod service_tests {
    use std::sync::Mutex;

    use super::*;
    use crate::billing::BillingConfig;
    use crate::ledger::SystemAccount;
    use crate::pricing::{Pricer, PricingConfig};
    use crate::testing::billing::MemoryQuotes;
    use crate::testing::clock::{ManualClock, SeqIds};
    use crate::testing::ledger::MemoryLedger;
    use crate::time::Timestamp;

    const ALICE: UserId = UserId(42);
    const BOB: UserId = UserId(43);

    fn stars() -> (StarsPayments, Arc<BillingService>) {
        let billing = Arc::new(BillingService::new(
            Arc::new(MemoryLedger::new()),
            Arc::new(MemoryQuotes::new()),
            Arc::new(ManualClock::new(Timestamp::from_millis(1_800_000_000_000))),
            Arc::new(SeqIds::new(9)),
            Pricer::new(PricingConfig::example()),
            BillingConfig::default(),
        ));
        let config = StarsConfig { min_stars: 10, max_stars: 1_000, ..StarsConfig::default() };
        (StarsPayments::new(billing.clone(), config).expect("config"), billing)
    }

    fn paid(from: UserId, stars: u32, payload: &str, charge: &str) -> SuccessfulPayment {
        SuccessfulPayment {
            from,
            currency: CURRENCY.into(),
            total_amount: stars,
            invoice_payload: payload.into(),
            telegram_payment_charge_id: charge.into(),
            provider_payment_charge_id: String::new(),
        }
    }

    /// A Bot API that answers each refund from a script and counts the calls.
    struct Api {
        answers: Mutex<Vec<Result<StarsRefund, StarsApiError>>>,
        calls: Mutex<u32>,
    }

    impl Api {
        fn new(mut answers: Vec<Result<StarsRefund, StarsApiError>>) -> Api {
            answers.reverse();
            Api { answers: Mutex::new(answers), calls: Mutex::new(0) }
        }
        fn calls(&self) -> u32 {
            *self.calls.lock().expect("lock")
        }
    }

    #[async_trait]
    impl StarsApi for Api {
        async fn send_invoice(&self, _: i64, _: &StarsInvoice) -> Result<(), StarsApiError> {
            Ok(())
        }
        async fn create_invoice_link(&self, _: &StarsInvoice) -> Result<String, StarsApiError> {
            Ok("https://t.me/$x".into())
        }
        async fn answer_pre_checkout(&self, _: &str, _: &PreCheckoutAnswer) -> Result<(), StarsApiError> {
            Ok(())
        }
        async fn refund_star_payment(&self, _: UserId, _: &str) -> Result<StarsRefund, StarsApiError> {
            *self.calls.lock().expect("lock") += 1;
            self.answers.lock().expect("lock").pop().unwrap_or(Ok(StarsRefund::AlreadyRefunded))
        }
    }

    #[tokio::test]
    async fn invoices_and_pre_checkout_accept_only_what_we_sell() {
        // Proves the invoice carries XTR, our payload and the Stars, and pre-checkout refuses another currency,
        // a foreign payload, another user's invoice and Stars outside the limits.
        let (s, _) = stars();
        let invoice = s.invoice(ALICE, 100, "t1").expect("invoice");
        assert_eq!((invoice.currency, invoice.stars), ("XTR", 100));
        assert_eq!(invoice.payload.to_string(), "rei:42:t1");
        assert!(matches!(s.invoice(ALICE, 9, "t1"), Err(StarsError::Refused(Refusal::Stars { .. }))));
        assert!(matches!(s.invoice(ALICE, 10, "t 1"), Err(StarsError::Refused(Refusal::Payload(_)))));
        let query = |from, currency: &str, stars, payload: &str| PreCheckout {
            id: "q".into(),
            from,
            currency: currency.into(),
            total_amount: stars,
            invoice_payload: payload.into(),
        };
        assert_eq!(s.pre_checkout(&query(ALICE, "XTR", 100, "rei:42:t1")), PreCheckoutAnswer::Accept);
        let refused = |q| match s.pre_checkout(&q) {
            PreCheckoutAnswer::Refuse(r) => r,
            PreCheckoutAnswer::Accept => panic!("accepted {q:?}"),
        };
        assert!(matches!(refused(query(ALICE, "RUB", 100, "rei:42:t1")), Refusal::Currency { .. }));
        assert!(matches!(refused(query(ALICE, "XTR", 100, "spam")), Refusal::Payload(_)));
        assert!(matches!(refused(query(BOB, "XTR", 100, "rei:42:t1")), Refusal::OtherUser { .. }));
        assert!(matches!(refused(query(ALICE, "XTR", 1_001, "rei:42:t1")), Refusal::Stars { .. }));
        assert!(matches!(refused(query(ALICE, "XTR", 0, "rei:42:t1")), Refusal::Stars { .. }));
    }

    #[tokio::test]
    async fn a_payment_credits_stars_times_the_rate_once() {
        // Proves the credit: 100 Stars at 1.50 are 150.00 in the wallet, a repeat replays the first credit, and a
        // mismatching payment changes nothing.
        let (s, billing) = stars();
        let first = s.on_successful_payment(&paid(ALICE, 100, "rei:42:t1", "ch1")).await.expect("credit");
        assert_eq!((first.amount, first.replayed, first.user), (Money::from_kopecks(15_000), false, ALICE));
        let again = s.on_successful_payment(&paid(ALICE, 100, "rei:42:t1", "ch1")).await.expect("replay");
        assert!(again.replayed);
        assert_eq!(billing.balance(ALICE).await.expect("balance").available, Money::from_kopecks(15_000));
        for wrong in [
            SuccessfulPayment { currency: "RUB".into(), ..paid(ALICE, 100, "rei:42:t2", "ch2") },
            paid(BOB, 100, "rei:42:t2", "ch2"),
            paid(ALICE, 100, "rei:42:t2", "bad charge"),
            paid(ALICE, 5_000, "rei:42:t2", "ch2"),
        ] {
            let e = s.on_successful_payment(&wrong).await.expect_err("refused");
            assert!(matches!(e, StarsError::Refused(_)), "{e:?}");
        }
        assert_eq!(billing.balance(ALICE).await.expect("balance").available, Money::from_kopecks(15_000));
        assert_eq!(billing.balance(BOB).await.expect("balance").available, Money::ZERO);
        assert!(billing.verify().await.expect("verify").is_clean());
    }

    #[tokio::test]
    async fn a_refund_takes_the_wallet_money_once_then_gives_the_stars_back() {
        // Proves the refund order and idempotence: the wallet is debited once, Telegram's "already refunded" on
        // a repeat is done, a partial amount is refused, and a wallet that spent the money refuses before
        // Telegram is asked.
        let (s, billing) = stars();
        s.on_successful_payment(&paid(ALICE, 100, "rei:42:t1", "ch1")).await.expect("credit");
        let api = Api::new(vec![Ok(StarsRefund::Refunded)]);
        let partial = s.refund(ALICE, "ch1", Money::from_kopecks(100), &api).await.expect_err("partial");
        assert!(
            matches!(partial, StarsError::RefundAmount { refundable, .. } if refundable == Money::from_kopecks(15_000))
        );
        assert_eq!(api.calls(), 0);
        let full = Money::from_kopecks(15_000);
        let done = s.refund(ALICE, "ch1", full, &api).await.expect("refund");
        assert_eq!((done.amount, done.replayed, done.telegram), (full, false, StarsRefund::Refunded));
        let again = s.refund(ALICE, "ch1", full, &api).await.expect("repeat");
        assert_eq!((again.replayed, again.telegram), (true, StarsRefund::AlreadyRefunded));
        assert_eq!(billing.balance(ALICE).await.expect("balance").available, Money::ZERO);
        let out = billing.ledger().system_balance(SystemAccount::RefundsOut).await.expect("refunds_out");
        assert_eq!(out, full, "taken once");
        let e = s.refund(BOB, "ch1", full, &api).await.expect_err("not bob's");
        assert!(matches!(e, StarsError::Billing(_)), "{e:?}");
        let e = s.refund(ALICE, "never", full, &api).await.expect_err("never credited");
        assert!(matches!(e, StarsError::Billing(_)), "{e:?}");
        assert_eq!(api.calls(), 2, "Telegram is asked only after the ledger agreed");
        assert!(billing.verify().await.expect("verify").is_clean());
    }

    #[tokio::test]
    async fn a_refused_or_unconfirmed_refund_keeps_the_money_taken_and_can_be_repeated() {
        // Proves the refusal decision: the wallet money stays taken once whatever Telegram says, an unknown
        // outcome asks to repeat, and the repeat moves no more money.
        let (s, billing) = stars();
        s.on_successful_payment(&paid(ALICE, 10, "rei:42:t1", "ch9")).await.expect("credit");
        let full = Money::from_kopecks(1_500);
        let api = Api::new(vec![
            Err(StarsApiError::Rejected { reason: "CHARGE_NOT_FOUND".into() }),
            Err(StarsApiError::Unavailable { reason: "timeout".into() }),
            Ok(StarsRefund::Refunded),
        ]);
        let e = s.refund(ALICE, "ch9", full, &api).await.expect_err("rejected");
        assert!(matches!(&e, StarsError::RefundRejected { amount, .. } if *amount == full), "{e:?}");
        let e = s.refund(ALICE, "ch9", full, &api).await.expect_err("pending");
        assert!(matches!(&e, StarsError::RefundPending { .. }), "{e:?}");
        let done = s.refund(ALICE, "ch9", full, &api).await.expect("done");
        assert!(done.replayed);
        assert_eq!(billing.balance(ALICE).await.expect("balance").available, Money::ZERO);
        let out = billing.ledger().system_balance(SystemAccount::RefundsOut).await.expect("refunds_out");
        assert_eq!(out, full);
    }

    #[tokio::test]
    async fn a_wallet_that_spent_the_money_refuses_the_refund_before_telegram_is_asked() {
        // Proves fail-closed refunds: without the money in the wallet nothing moves and the Stars stay.
        let (s, billing) = stars();
        s.on_successful_payment(&paid(ALICE, 10, "rei:42:t1", "ch7")).await.expect("credit");
        let key = IdempotencyKey::parse("spend").expect("key");
        billing.hold(ALICE, crate::ids::HoldId::from(1), Money::from_kopecks(1_000), None, key).await.expect("hold");
        let api = Api::new(vec![]);
        let e = s.refund(ALICE, "ch7", Money::from_kopecks(1_500), &api).await.expect_err("spent");
        assert!(matches!(e, StarsError::Billing(BillingError::Ledger(LedgerError::InsufficientFunds { .. }))), "{e:?}");
        assert_eq!(api.calls(), 0);
    }
}
