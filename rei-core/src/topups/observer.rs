//! [`TopUpObserver`]: what else happens when a top-up is credited (a referrer's share, a member's first
//! payment), told by [`TopUps`](super::TopUps) and [`StarsPayments`](crate::stars::StarsPayments).

use async_trait::async_trait;

use crate::ids::{PaymentId, UserId};
use crate::money::Money;

/// Told of every credited top-up.
///
/// Contract: the caller tells it after each credit and again after each replay of one (a notice delivered
/// again, the reconciler looking at a payment the webhook settled), so `credited` MUST be idempotent per
/// `payment`. It has no error to return: what fails is the observer's to log or repair, and the caller goes on
/// (the credit stands either way).
#[async_trait]
pub trait TopUpObserver: Send + Sync {
    /// `payment` credited `amount` to `user` (now, or earlier when this is a replay).
    async fn credited(&self, user: UserId, payment: &PaymentId, amount: Money);
}
