//! [`TopUps`]: money in through a [`PaymentGateway`], fail-closed. A payment is created under the caller's stable
//! top-up id; a notice about it is only a hint: the payment is fetched again and only the gateway's answer is
//! believed (status, amount, currency, our metadata), and the credit is keyed by the payment id, so a notice
//! delivered many times, a forged one, and the reconciler racing the webhook all credit at most once.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use crate::billing::{BillingError, BillingService};
use crate::ids::{IdempotencyKey, PaymentId, UserId};
use crate::money::Money;
use crate::payments::{GatewayError, Payment, PaymentGateway, PaymentRequest, PaymentStatus};

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
}

/// Top-ups through one gateway.
pub struct TopUps {
    gateway: Arc<dyn PaymentGateway>,
    billing: Arc<BillingService>,
}

impl TopUps {
    /// Top-ups through `gateway`, credited by `billing`.
    #[must_use]
    pub fn new(gateway: Arc<dyn PaymentGateway>, billing: Arc<BillingService>) -> TopUps {
        TopUps { gateway, billing }
    }

    /// Creates the payment of top-up `topup` (the caller's stable id: the same top-up asked twice is one
    /// payment) for `user`, and returns it with the link to pay.
    ///
    /// # Errors
    /// [`NoticeError::Gateway`]; [`NoticeError::Refused`] for a top-up id that cannot be a key.
    pub async fn create(
        &self,
        user: UserId,
        topup: &str,
        amount: Money,
        description: &str,
        return_url: &str,
    ) -> Result<Payment, NoticeError> {
        let key = IdempotencyKey::derived("topup", topup).map_err(|e| NoticeError::Refused { why: e.to_string() })?;
        let metadata =
            BTreeMap::from([(USER_KEY.to_owned(), user.0.to_string()), (TOPUP_KEY.to_owned(), topup.to_owned())]);
        let request = PaymentRequest {
            amount,
            description: description.to_owned(),
            return_url: return_url.to_owned(),
            metadata,
            receipt: None,
        };
        Ok(self.gateway.create_payment(&key, &request).await?)
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
            PaymentStatus::Canceled => return Ok(NoticeOutcome::Canceled { reason: payment.cancellation_reason }),
            status => return Ok(NoticeOutcome::NotPaid { status }),
        }
        if payment.currency != "RUB" {
            return Err(NoticeError::Refused { why: format!("payment {id} is in {}", payment.currency) });
        }
        let user = payment
            .metadata
            .get(USER_KEY)
            .and_then(|u| u.parse::<i64>().ok())
            .map(UserId)
            .ok_or_else(|| NoticeError::Refused { why: format!("payment {id} names no user of ours") })?;
        if !payment.amount.is_positive() {
            return Err(NoticeError::Refused { why: format!("payment {id} is of {}", payment.amount) });
        }
        let applied = self.billing.top_up(user, payment.amount, payment.id.clone()).await?;
        Ok(NoticeOutcome::Credited { payment: payment.id, user, amount: payment.amount, replayed: applied.replayed })
    }
}

fn payment_id(text: &str) -> Result<PaymentId, NoticeError> {
    PaymentId::parse(text).map_err(|_| NoticeError::Refused { why: "the notice's object id is not an id".to_owned() })
}

/// The addresses notices may come from: networks in CIDR form. YooKassa signs nothing, so this is the first of
/// the two checks (the second is asking the gateway).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct SourceAllowlist {
    networks: Vec<(IpAddr, u8)>,
}

/// A network that is not `address/bits` (or a bare address).
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
#[error("{0:?} is not an address or a network (a.b.c.d/n, x:y::/n)")]
pub struct NetworkError(pub String);

impl SourceAllowlist {
    /// YooKassa's published ranges.
    #[must_use]
    pub fn yookassa() -> SourceAllowlist {
        let ranges = [
            "185.71.76.0/27",
            "185.71.77.0/27",
            "77.75.153.0/25",
            "77.75.156.11",
            "77.75.156.35",
            "77.75.154.128/25",
            "2a02:5180::/32",
        ];
        match SourceAllowlist::parse(&ranges) {
            Ok(list) => list,
            Err(e) => panic!("invariant broken: a shipped range is invalid: {e}"),
        }
    }

    /// No address at all.
    #[must_use]
    pub fn none() -> SourceAllowlist {
        SourceAllowlist { networks: Vec::new() }
    }

    /// Reads networks such as `185.71.76.0/27`, `77.75.156.11`, `2a02:5180::/32`.
    ///
    /// # Errors
    /// [`NetworkError`] naming the first bad entry.
    pub fn parse(networks: &[&str]) -> Result<SourceAllowlist, NetworkError> {
        let mut parsed = Vec::with_capacity(networks.len());
        for text in networks {
            let bad = || NetworkError((*text).to_owned());
            let (addr, bits) = match text.split_once('/') {
                Some((a, b)) => (a.parse::<IpAddr>().map_err(|_| bad())?, b.parse::<u8>().map_err(|_| bad())?),
                None => {
                    let a = text.parse::<IpAddr>().map_err(|_| bad())?;
                    (a, if a.is_ipv4() { 32 } else { 128 })
                }
            };
            if bits > if addr.is_ipv4() { 32 } else { 128 } {
                return Err(bad());
            }
            parsed.push((addr, bits));
        }
        Ok(SourceAllowlist { networks: parsed })
    }

    /// `true` when `addr` is in one of the networks (an IPv4-mapped IPv6 address counts as its IPv4 address).
    #[must_use]
    pub fn contains(&self, addr: IpAddr) -> bool {
        let addr = match addr {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
            v4 => v4,
        };
        self.networks.iter().any(|(net, bits)| match (net, addr) {
            (IpAddr::V4(n), IpAddr::V4(a)) => prefix_eq(u128::from(n.to_bits()), u128::from(a.to_bits()), 32, *bits),
            (IpAddr::V6(n), IpAddr::V6(a)) => prefix_eq(n.to_bits(), a.to_bits(), 128, *bits),
            _ => false,
        })
    }
}

/// `true` when the first `bits` of two `width`-bit numbers agree.
fn prefix_eq(a: u128, b: u128, width: u32, bits: u8) -> bool {
    let bits = u32::from(bits);
    if bits == 0 {
        return true;
    }
    let shift = width - bits;
    (a >> shift) == (b >> shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_allowlist_admits_yookassas_ranges_and_nothing_else() {
        // Proves the first check of a notice: YooKassa's published networks in, everything else out.
        let list = SourceAllowlist::yookassa();
        for ok in [
            "185.71.76.1",
            "185.71.76.31",
            "77.75.153.127",
            "77.75.156.11",
            "2a02:5180:0:1509::1",
            "::ffff:185.71.77.5",
        ] {
            assert!(list.contains(ok.parse().expect("addr")), "{ok}");
        }
        for no in ["185.71.76.32", "77.75.156.12", "127.0.0.1", "10.0.0.1", "2a02:5181::1", "::1"] {
            assert!(!list.contains(no.parse().expect("addr")), "{no}");
        }
        assert!(SourceAllowlist::parse(&["10.0.0.0/33"]).is_err());
        assert!(SourceAllowlist::parse(&["not an address"]).is_err());
        assert!(SourceAllowlist::parse(&["0.0.0.0/0"]).expect("all").contains("8.8.8.8".parse().expect("addr")));
    }
}
