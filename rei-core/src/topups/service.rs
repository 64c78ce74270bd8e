//! [`TopUps`]: money in through a [`PaymentGateway`], fail-closed. A payment is created under the caller's stable
//! top-up id; a notice about it is only a hint: the payment is fetched again and only the gateway's answer is
//! believed (status, amount, currency, our metadata), and the credit is keyed by the payment id, so a notice
//! delivered many times, a forged one, and the reconciler racing the webhook all credit at most once.
//!
//! Every payment is recorded in a [`PaymentStore`]: `create` records it pending, `settle` marks it succeeded
//! after the credit (or cancelled). The record is bookkeeping; the ledger's keyed credit stays the money truth.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::observer::TopUpObserver;
use super::store::{FinalStatus, PaymentProvider, PaymentRecord, PaymentRecordStatus, PaymentStore, PaymentStoreError};
use super::store::{TOPUP_LEN_MAX, check_record};
use crate::billing::{BillingError, BillingService};
use crate::ids::{IdempotencyKey, PaymentId, UserId};
use crate::money::Money;
use crate::payments::{GatewayError, Payment, PaymentGateway, PaymentRequest, PaymentStatus};
use crate::time::Clock;

/// The metadata key a payment names its user under.
pub const USER_KEY: &str = "user_id";
/// The metadata key a payment names its top-up under.
pub const TOPUP_KEY: &str = "topup_id";

/// What a gateway's notice says happened (the adapter reads the wire body into it).
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum NoticeEvent {
    /// `payment.succeeded`.
    PaymentSucceeded,
    /// `payment.canceled`.
    PaymentCanceled,
    /// `payment.waiting_for_capture`.
    PaymentWaitingForCapture,
    /// `refund.succeeded`.
    RefundSucceeded,
    /// Anything else: acknowledged and logged.
    Other(String),
}

/// A notice: the event and the id of the object it is about.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Notice {
    /// What happened.
    pub event: NoticeEvent,
    /// The payment's (or refund's) id at the gateway.
    pub object_id: String,
}

/// What a notice (or a reconciler's look) came to.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum NoticeOutcome {
    /// The payment is paid and the user's balance credited (`replayed`: credited before, nothing moved now).
    Credited {
        /// The payment.
        payment: PaymentId,
        /// Whose balance.
        user: UserId,
        /// How much.
        amount: Money,
        /// `true` when an earlier notice or look had credited it.
        replayed: bool,
    },
    /// The gateway says the payment is not paid yet: nothing credited (the reconciler looks again later).
    NotPaid {
        /// Its status.
        status: PaymentStatus,
    },
    /// The gateway says the payment was cancelled: nothing to credit, ever.
    Canceled {
        /// Why, as the gateway says.
        reason: Option<String>,
    },
    /// A refund the gateway confirms; the ledger moved when the refund was asked for.
    RefundConfirmed,
    /// An event REI does not act on; acknowledged.
    Ignored {
        /// The event's name.
        event: String,
    },
}

/// Why a notice was refused or not handled.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum NoticeError {
    /// The notice does not match what the gateway says (unknown object, a status it does not have, a payment
    /// that is not ours): a forgery or a mistake. Answer 4xx; nothing changed.
    #[error("notice refused: {why}")]
    Refused {
        /// What did not match.
        why: String,
    },
    /// The gateway could not be asked: answer 5xx so that the notice is delivered again.
    #[error(transparent)]
    Gateway(#[from] GatewayError),
    /// The ledger failed: answer 5xx so that the notice is delivered again (the credit is keyed).
    #[error(transparent)]
    Billing(#[from] BillingError),
    /// The payment record could not be written: answer 5xx so that the notice is delivered again (a credit made
    /// before the failure is replayed, not repeated).
    #[error(transparent)]
    Store(#[from] PaymentStoreError),
}

/// What [`TopUps`] works through.
pub struct TopUpPorts {
    /// The payment provider's API.
    pub gateway: Arc<dyn PaymentGateway>,
    /// Credits the ledger, keyed by the payment id.
    pub billing: Arc<BillingService>,
    /// Where every payment is recorded.
    pub payments: Arc<dyn PaymentStore>,
    /// The time records are stamped with.
    pub clock: Arc<dyn Clock>,
}

/// How [`TopUps`] makes and records its payments.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct TopUpsConfig {
    /// Which provider the gateway is (kept on each record). Default: YooKassa.
    pub provider: PaymentProvider,
    /// How long after creation the reconciler first asks about a payment whose notice has not come. Default:
    /// 1 minute, as [`ReconcilerConfig::first_check_after`](super::ReconcilerConfig::first_check_after).
    pub first_check_after: Duration,
    /// The 54-FZ receipt sent with every payment, when the shop issues them (its item, VAT code, payment mode
    /// and subject, tax system, and the buyer's contact to send it to); the amount is the payment's. Default:
    /// none.
    pub receipt: Option<crate::payments::Receipt>,
}

impl Default for TopUpsConfig {
    fn default() -> TopUpsConfig {
        TopUpsConfig { provider: PaymentProvider::YooKassa, first_check_after: Duration::from_secs(60), receipt: None }
    }
}

/// Top-ups through one gateway.
pub struct TopUps {
    gateway: Arc<dyn PaymentGateway>,
    billing: Arc<BillingService>,
    payments: Arc<dyn PaymentStore>,
    clock: Arc<dyn Clock>,
    config: TopUpsConfig,
    observers: Vec<Arc<dyn TopUpObserver>>,
}

impl TopUps {
    /// Top-ups through `ports.gateway`, credited by `ports.billing`, recorded in `ports.payments`.
    #[must_use]
    pub fn new(ports: TopUpPorts, config: TopUpsConfig) -> TopUps {
        let TopUpPorts { gateway, billing, payments, clock } = ports;
        TopUps { gateway, billing, payments, clock, config, observers: Vec::new() }
    }

    /// Adds `observer`, told of every credit [`Self::settle`] makes or replays (so on the webhook's path and the
    /// reconciler's), right after the ledger credited and before the record is marked.
    #[must_use]
    pub fn with_observer(mut self, observer: Arc<dyn TopUpObserver>) -> TopUps {
        self.observers.push(observer);
        self
    }

    /// The provider of this gateway's payments.
    #[must_use]
    pub fn provider(&self) -> PaymentProvider {
        self.config.provider
    }

    /// The store the payments are recorded in.
    #[must_use]
    pub fn payments(&self) -> &Arc<dyn PaymentStore> {
        &self.payments
    }

    /// Creates the payment of top-up `topup` (the caller's stable id: the same top-up asked twice is one
    /// payment and one record) for `user`, records it pending, and returns it with the link to pay.
    ///
    /// A failure to record is an error although the gateway created the payment: the caller repeats `create`
    /// with the same `topup`, which returns the same payment and records it then.
    ///
    /// # Errors
    /// [`NoticeError::Gateway`]; [`NoticeError::Store`]; [`NoticeError::Refused`] for a top-up id that is empty,
    /// longer than [`TOPUP_LEN_MAX`] bytes or cannot be a key, and for a gateway answer that is not the payment
    /// asked for.
    pub async fn create(
        &self,
        user: UserId,
        topup: &str,
        amount: Money,
        description: &str,
        return_url: &str,
    ) -> Result<Payment, NoticeError> {
        if topup.is_empty() || topup.len() > TOPUP_LEN_MAX {
            return Err(NoticeError::Refused { why: format!("a top-up id is 1 to {TOPUP_LEN_MAX} bytes") });
        }
        let key = IdempotencyKey::derived("topup", topup).map_err(|e| NoticeError::Refused { why: e.to_string() })?;
        let metadata =
            BTreeMap::from([(USER_KEY.to_owned(), user.0.to_string()), (TOPUP_KEY.to_owned(), topup.to_owned())]);
        let request = PaymentRequest {
            amount,
            description: description.to_owned(),
            return_url: return_url.to_owned(),
            metadata,
            receipt: self.config.receipt.clone(),
        };
        let payment = self.gateway.create_payment(&key, &request).await?;
        if payment.currency != "RUB" || payment.amount != amount {
            return Err(NoticeError::Refused {
                why: format!("asked for {amount} RUB, the gateway created {} {}", payment.amount, payment.currency),
            });
        }
        let now = self.clock.now();
        let record = PaymentRecord {
            id: payment.id.clone(),
            provider: self.config.provider,
            user,
            amount: payment.amount,
            topup: topup.to_owned(),
            status: PaymentRecordStatus::Pending,
            created_at: now,
            updated_at: now,
            next_check_at: now.plus(self.config.first_check_after),
            checks: 0,
            confirmation_url: payment.confirmation_url.clone(),
        };
        self.payments.insert(&record).await?;
        Ok(payment)
    }

    /// Refunds `amount` of payment `payment` to the card it came from, as the caller's refund `refund_id` (a
    /// stable id: the same refund asked again is one refund). The wallet money goes first, through the ledger
    /// (never more than the payment brought in, nor more than the wallet holds), keyed by the refund id; then the
    /// gateway is asked under the same key. A gateway failure leaves the money taken (in `refunds_out`): repeat
    /// with the same `refund_id` (the ledger replays, the gateway's idempotence returns the first refund); a
    /// refund the gateway refuses outright is an operator's to put back with an adjustment.
    ///
    /// # Errors
    /// [`NoticeError::Billing`] when the ledger refuses (nothing taken); [`NoticeError::Gateway`] after it;
    /// [`NoticeError::Refused`] for a refund id that cannot be a key.
    pub async fn refund(
        &self,
        user: UserId,
        payment: &PaymentId,
        amount: Money,
        refund_id: &str,
        description: Option<&str>,
    ) -> Result<crate::payments::Refund, NoticeError> {
        let key =
            IdempotencyKey::derived("refund", refund_id).map_err(|e| NoticeError::Refused { why: e.to_string() })?;
        self.billing.refund_to_card(user, payment.clone(), amount, key.clone()).await?;
        let request = crate::payments::RefundRequest {
            payment: payment.clone(),
            amount,
            description: description.map(str::to_owned),
        };
        Ok(self.gateway.create_refund(&key, &request).await?)
    }

    /// Handles a notice: asks the gateway about the object and acts only on its answer.
    ///
    /// # Errors
    /// [`NoticeError::Refused`] when the gateway's answer does not bear the notice out; gateway and ledger errors.
    pub async fn on_notice(&self, notice: &Notice) -> Result<NoticeOutcome, NoticeError> {
        match &notice.event {
            NoticeEvent::PaymentSucceeded => {
                let outcome = self.settle(&payment_id(&notice.object_id)?).await?;
                match outcome {
                    NoticeOutcome::Credited { .. } => Ok(outcome),
                    other => Err(NoticeError::Refused { why: format!("the gateway says {other:?}, not succeeded") }),
                }
            }
            NoticeEvent::PaymentCanceled | NoticeEvent::PaymentWaitingForCapture => {
                self.settle(&payment_id(&notice.object_id)?).await
            }
            NoticeEvent::RefundSucceeded => match self.gateway.refund(&notice.object_id).await {
                Ok(refund) if refund.status == crate::payments::RefundStatus::Succeeded => {
                    Ok(NoticeOutcome::RefundConfirmed)
                }
                Ok(refund) => Err(NoticeError::Refused { why: format!("the refund is {:?}", refund.status) }),
                Err(GatewayError::NotFound) => Err(NoticeError::Refused { why: "no such refund".to_owned() }),
                Err(e) => Err(e.into()),
            },
            NoticeEvent::Other(event) => Ok(NoticeOutcome::Ignored { event: event.clone() }),
        }
    }

    /// Looks at a payment and credits it if the gateway says it is paid: the webhook's path and the
    /// reconciler's (which looks at pending payments whose notice never came).
    ///
    /// # Errors
    /// [`NoticeError::Refused`] for a payment the gateway does not know or that is not ours; gateway and ledger
    /// errors.
    pub async fn settle(&self, id: &PaymentId) -> Result<NoticeOutcome, NoticeError> {
        let payment = match self.gateway.payment(id).await {
            Ok(payment) => payment,
            Err(GatewayError::NotFound) => return Err(NoticeError::Refused { why: format!("no payment {id}") }),
            Err(e) => return Err(e.into()),
        };
        if payment.id != *id {
            return Err(NoticeError::Refused { why: format!("asked for {id}, the gateway answered {}", payment.id) });
        }
        match payment.status {
            PaymentStatus::Succeeded => {}
            PaymentStatus::Canceled => {
                self.record_final(&payment, FinalStatus::Canceled).await?;
                return Ok(NoticeOutcome::Canceled { reason: payment.cancellation_reason });
            }
            status => return Ok(NoticeOutcome::NotPaid { status }),
        }
        if payment.currency != "RUB" {
            return Err(NoticeError::Refused { why: format!("payment {id} is in {}", payment.currency) });
        }
        let user = user_of(&payment)
            .ok_or_else(|| NoticeError::Refused { why: format!("payment {id} names no user of ours") })?;
        if !payment.amount.is_positive() {
            return Err(NoticeError::Refused { why: format!("payment {id} is of {}", payment.amount) });
        }
        let applied = self.billing.top_up(user, payment.amount, payment.id.clone()).await?;
        for observer in &self.observers {
            observer.credited(user, &payment.id, applied.receipt.amount).await;
        }
        self.record_final(&payment, FinalStatus::Succeeded).await?;
        Ok(NoticeOutcome::Credited { payment: payment.id, user, amount: payment.amount, replayed: applied.replayed })
    }

    /// Marks the record of `payment` with the gateway's final word. A payment with no record (created before
    /// records were kept, or whose recording failed) gets one from the gateway's answer, when that names a user
    /// of ours; one that names none is left unrecorded.
    async fn record_final(&self, payment: &Payment, status: FinalStatus) -> Result<(), NoticeError> {
        let now = self.clock.now();
        match self.payments.mark(&payment.id, status, now).await {
            Ok(_) => return Ok(()),
            Err(PaymentStoreError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        let Some(user) = user_of(payment) else { return Ok(()) };
        let topup = payment.metadata.get(TOPUP_KEY).cloned().unwrap_or_else(|| payment.id.as_str().to_owned());
        let record = PaymentRecord {
            id: payment.id.clone(),
            provider: self.config.provider,
            user,
            amount: payment.amount,
            topup,
            status: PaymentRecordStatus::Pending,
            created_at: now,
            updated_at: now,
            next_check_at: now,
            checks: 0,
            confirmation_url: None,
        };
        if check_record(&record).is_err() {
            // The gateway's metadata cannot make a record (a top-up id that is too long): bookkeeping only, the
            // credit stands.
            return Ok(());
        }
        self.payments.insert(&record).await?;
        self.payments.mark(&payment.id, status, now).await?;
        Ok(())
    }
}

/// The user a payment's metadata names.
fn user_of(payment: &Payment) -> Option<UserId> {
    payment.metadata.get(USER_KEY).and_then(|u| u.parse::<i64>().ok()).map(UserId)
}

fn payment_id(text: &str) -> Result<PaymentId, NoticeError> {
    PaymentId::parse(text).map_err(|_| NoticeError::Refused { why: "the notice's object id is not an id".to_owned() })
}
