//! Telegram Stars on the webhook: `pre_checkout_query` answered in the handler itself (Telegram waits at most
//! 10 s), `successful_payment` credited once keyed by its charge id and recorded with the other payments, and
//! Stars invoice links for `POST /v1/topups`.

use std::sync::Arc;

use async_trait::async_trait;
use rei_adapters::telegram::{BotApi, Update, parse_update};
use rei_core::stars::{PreCheckoutAnswer, StarsApi, StarsCredit, StarsError, StarsPayments, SuccessfulPayment};
use rei_core::time::Clock;
use rei_core::topups::{FinalStatus, PaymentProvider, PaymentRecord, PaymentRecordStatus, PaymentStore};
use serde_json::json;

use crate::webhooks::{UpdateError, UpdateHandler};

/// Stars top-ups over a bot.
pub struct StarsHook {
    /// The rules and the credit.
    pub payments: Arc<StarsPayments>,
    /// The bot's API.
    pub api: Arc<BotApi>,
    /// Where payments are recorded.
    pub records: Arc<dyn PaymentStore>,
    /// Whose time the records carry.
    pub clock: Arc<dyn Clock>,
}

impl StarsHook {
    /// Records a credited Stars payment as succeeded (once: a repeat finds it there).
    async fn record(&self, credit: &StarsCredit) -> Result<(), UpdateError> {
        let Ok(id) = rei_core::stars::payment_id(&credit.charge_id) else { return Ok(()) };
        let now = self.clock.now();
        let record = PaymentRecord {
            id: id.clone(),
            provider: PaymentProvider::Stars,
            user: credit.user,
            amount: credit.amount,
            topup: credit.payload.topup_id().to_owned(),
            status: PaymentRecordStatus::Pending,
            created_at: now,
            updated_at: now,
            next_check_at: now.plus(std::time::Duration::from_secs(24 * 60 * 60)),
            checks: 0,
            confirmation_url: None,
        };
        let unavailable = |e: &dyn std::fmt::Display| UpdateError::Unavailable(format!("recording the payment: {e}"));
        self.records.insert(&record).await.map_err(|e| unavailable(&e))?;
        self.records.mark(&id, FinalStatus::Succeeded, now).await.map_err(|e| unavailable(&e))?;
        Ok(())
    }
}

impl StarsHook {
    /// Credits a `successful_payment` once (keyed by its charge id) and records it; `None` for a payment that is
    /// not ours to credit (logged for an operator to reconcile and refund). Telling the payer is the caller's
    /// (the bot says it in their language; [`UpdateHandler::handle`] in Russian).
    ///
    /// # Errors
    /// [`UpdateError::Unavailable`] when the ledger or the payment store could not be reached.
    pub async fn credit(&self, payment: &SuccessfulPayment) -> Result<Option<StarsCredit>, UpdateError> {
        match self.payments.on_successful_payment(payment).await {
            Ok(credit) => {
                if let Err(e) = self.record(&credit).await {
                    crate::webhooks::payment_failed(PaymentProvider::Stars.as_str());
                    return Err(e);
                }
                tracing::info!(user = %credit.user, amount = %credit.amount, stars = credit.stars,
                    charge = credit.charge_id, replayed = credit.replayed, "stars payment credited");
                Ok(Some(credit))
            }
            // Telegram took the Stars but the payment is not ours to credit (a forgery behind a leaked secret, or
            // a changed configuration): acknowledged so that it is not redelivered for ever, and logged for an
            // operator to reconcile with getStarTransactions and refund.
            Err(StarsError::Refused(why)) => {
                metrics::counter!("payment_webhook_errors", "provider" => "stars", "reason" => "refused").increment(1);
                tracing::error!(user = %payment.from, charge = payment.telegram_payment_charge_id, ?why,
                    "stars payment NOT credited: reconcile and refund");
                Ok(None)
            }
            Err(e) => {
                crate::webhooks::payment_failed(PaymentProvider::Stars.as_str());
                Err(UpdateError::Unavailable(e.to_string()))
            }
        }
    }
}

#[async_trait]
impl UpdateHandler for StarsHook {
    async fn handle(&self, body: &[u8]) -> Result<(), UpdateError> {
        let update = parse_update(body).map_err(|e| UpdateError::Malformed(e.to_string()))?;
        match update {
            Update::PreCheckout { query, .. } => {
                let answer = self.payments.pre_checkout(&query);
                if let PreCheckoutAnswer::Refuse(why) = &answer {
                    tracing::warn!(user = %query.from, ?why, "stars pre-checkout refused");
                }
                self.api
                    .answer_pre_checkout(&query.id, &answer)
                    .await
                    .map_err(|e| UpdateError::Unavailable(format!("answering the pre-checkout: {e}")))
            }
            Update::SuccessfulPayment { chat_id, payment, .. } => {
                let Some(credit) = self.credit(&payment).await? else { return Ok(()) };
                if !credit.replayed {
                    let text = format!("Баланс пополнен на {} ₽ ({} ⭐).", credit.amount, credit.stars);
                    if let Err(e) = self.api.call("sendMessage", &json!({"chat_id": chat_id, "text": text})).await {
                        tracing::warn!(error = %e, "could not confirm a stars payment to the user");
                    }
                }
                Ok(())
            }
            // The bot's conversations are not handled by the payments hook.
            Update::Message { .. }
            | Update::CallbackQuery { .. }
            | Update::MemberStatus { .. }
            | Update::Other { .. } => Ok(()),
        }
    }
}
