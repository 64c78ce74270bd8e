//! The bot's side of growth: [`BotObserver`] hears of every credited top-up (card or Stars), pays the referrer's
//! share through [`Growth::on_top_up`] and tells the people concerned, each message once however often the
//! credit is replayed.

use std::sync::Arc;

use async_trait::async_trait;
use rei_adapters::telegram::BotApi;
use rei_core::chat::UpdateLog;
use rei_core::ids::{PaymentId, UserId};
use rei_core::members::Growth;
use rei_core::money::Money;
use rei_core::time::Clock;
use rei_core::topups::TopUpObserver;

use crate::delivery::once_id;
use crate::i18n::{self, Lang, Text};

/// Pays referral shares and tells the payer (card top-ups; Stars are told by the bot itself) and the referrer.
pub struct BotObserver {
    /// Members and referrals.
    pub growth: Arc<Growth>,
    /// The bot's API.
    pub api: Arc<BotApi>,
    /// Where each message is claimed once.
    pub once: Arc<dyn UpdateLog>,
    /// The claims' time.
    pub clock: Arc<dyn Clock>,
}

impl BotObserver {
    async fn lang(&self, user: UserId) -> Lang {
        match self.growth.members().get(user).await {
            Ok(Some(m)) => Lang::from_code(Some(&m.language)),
            _ => Lang::Ru,
        }
    }

    /// Sends `text` to `user` unless message `kind` about `payment` went out before.
    async fn tell_once(&self, kind: u8, payment: &PaymentId, user: UserId, text: Text<'_>) {
        let id = once_id(kind, payment.as_str().as_bytes());
        match self.once.claim(id, self.clock.now()).await {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                tracing::warn!(error = %e, "could not claim a top-up message");
                return;
            }
        }
        let rendered = i18n::text(self.lang(user).await, &text);
        if let Err(e) = self.api.send_message(user.0, &rendered, None).await {
            tracing::warn!(user = %user, error = %e, "could not tell of a top-up");
        }
    }
}

#[async_trait]
impl TopUpObserver for BotObserver {
    async fn credited(&self, user: UserId, payment: &PaymentId, amount: Money) {
        let stars = payment.as_str().starts_with(rei_core::stars::PAYMENT_PREFIX);
        if !stars {
            self.tell_once(10, payment, user, Text::CardCredited { amount }).await;
        }
        match self.growth.on_top_up(user, payment, amount).await {
            Ok(Some((referrer, bonus))) => self.tell_once(11, payment, referrer, Text::ReferralTopUp { bonus }).await,
            Ok(None) => {}
            Err(e) => tracing::error!(user = %user, payment = %payment, error = %e,
                "the referral share of a top-up failed: the next replay of the credit pays it"),
        }
    }
}
