//! [`BillingService`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::billing::quotes::{QuoteRecord, QuoteStore};
use crate::caps::{CapsConfig, SpendCaps};
use crate::guards::Reason;
use crate::ids::{HoldId, IdGen, IdempotencyKey, PaymentId, ProductId, ProviderId, QuoteId, TxId, UserId, new_id};
use crate::jobs::{JobBillingError, Settlement};
use crate::ledger::{
    Applied, Balance, HoldState, LedgerCommand, LedgerError, LedgerOp, LedgerStore, StoreError, VerifyReport,
};
use crate::money::Money;
use crate::pricing::{Pricer, Quote, QuoteError, Tier};
use crate::time::{Clock, Timestamp};

/// How billing behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BillingConfig {
    /// How long a confirmed job's hold lives past its quote's expiry before the reaper may expire it. Longer
    /// than a job's worst case (attempts × provider timeout), so that a slow success can still be captured.
    pub hold_ttl: Duration,
    /// Per-user caps (hourly, daily), checked with every hold.
    pub user_caps: SpendCaps,
    /// Per-provider daily budgets.
    pub provider_budgets: BTreeMap<ProviderId, Money>,
    /// Most holds the reaper expires in one pass.
    pub reap_batch_max: usize,
    /// Most jobs a user may have running at once: a confirm is refused with
    /// [`LedgerError::TooManyActiveHolds`] while the user has this many holds active (jobs not yet charged or
    /// given back, and usage sessions), checked atomically with the hold. `None`: no limit. Default: 2.
    pub jobs_running_max: Option<u32>,
}

impl Default for BillingConfig {
    fn default() -> Self {
        BillingConfig {
            hold_ttl: Duration::from_secs(60 * 60),
            user_caps: SpendCaps::NONE,
            provider_budgets: BTreeMap::new(),
            reap_batch_max: 1_000,
            jobs_running_max: Some(2),
        }
    }
}

impl BillingConfig {
    /// The caps for a hold paying `provider`.
    #[must_use]
    pub fn caps_for(&self, provider: Option<&ProviderId>) -> SpendCaps {
        self.caps().for_provider(provider)
    }

    /// The caps as one value, for the other services that hold money ([`crate::usage::UsageService`]).
    #[must_use]
    pub fn caps(&self) -> CapsConfig {
        CapsConfig { user: self.user_caps, provider_budgets: self.provider_budgets.clone() }
    }
}

/// Why a billing call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BillingError {
    /// The ledger refused or failed.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// Pricing refused (unknown product, zero units, margin below the floor).
    #[error(transparent)]
    Pricing(#[from] QuoteError),
    /// No such quote (never made, or purged after expiry).
    #[error("quote {quote} not found")]
    QuoteNotFound {
        /// Which.
        quote: QuoteId,
    },
    /// The quote belongs to another user.
    #[error("quote {quote} belongs to another user")]
    QuoteOwner {
        /// Which.
        quote: QuoteId,
    },
    /// The quote expired; ask for a new one.
    #[error("quote {quote} expired at {expired_at}")]
    QuoteExpired {
        /// Which.
        quote: QuoteId,
        /// When.
        expired_at: Timestamp,
    },
    /// A store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A confirmed quote: the money is held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confirmation {
    /// The quote.
    pub quote: QuoteId,
    /// The hold; its number is the quote's, so one quote holds at most once.
    pub hold: HoldId,
    /// What was sold.
    pub product: ProductId,
    /// What is held.
    pub amount: Money,
    /// When the hold lapses.
    pub expires_at: Timestamp,
    /// `true` when this confirm was a replay of an earlier one.
    pub replayed: bool,
}

/// What one reaper pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReapReport {
    /// Holds expired now.
    pub expired: Vec<HoldId>,
    /// Holds the reaper found due but could not expire (a concurrent capture or release won the race), with
    /// why.
    pub skipped: Vec<(HoldId, LedgerError)>,
}

/// The money side of the engine. Cheap to share: hold it in an `Arc`.
pub struct BillingService {
    ledger: Arc<dyn LedgerStore>,
    quotes: Arc<dyn QuoteStore>,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn IdGen>,
    pricer: Pricer,
    config: BillingConfig,
}

impl BillingService {
    /// A service over these ports.
    #[must_use]
    pub fn new(
        ledger: Arc<dyn LedgerStore>,
        quotes: Arc<dyn QuoteStore>,
        clock: Arc<dyn Clock>,
        ids: Arc<dyn IdGen>,
        pricer: Pricer,
        config: BillingConfig,
    ) -> BillingService {
        BillingService { ledger, quotes, clock, ids, pricer, config }
    }

    /// The ledger this service writes to.
    #[must_use]
    pub fn ledger(&self) -> &Arc<dyn LedgerStore> {
        &self.ledger
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &BillingConfig {
        &self.config
    }

    /// `true` when the price list prices `product` (a seller checks its catalogue against it at start-up).
    #[must_use]
    pub fn sells(&self, product: &ProductId) -> bool {
        self.pricer.config().spec().products.contains_key(product)
    }

    async fn apply(&self, key: IdempotencyKey, op: LedgerOp) -> Result<Applied, BillingError> {
        let cmd = LedgerCommand { key, tx: new_id::<TxId>(&*self.ids), at: self.clock.now(), op };
        Ok(self.ledger.apply(cmd).await?)
    }

    /// Credits a gateway payment. The key is the payment id, so the same notification twice credits once (the
    /// second call returns the first receipt with `replayed` set). Call it only after the gateway confirmed the
    /// payment server-side.
    ///
    /// # Errors
    /// [`BillingError::Ledger`] for a non-positive amount or a store failure.
    pub async fn top_up(&self, user: UserId, amount: Money, payment: PaymentId) -> Result<Applied, BillingError> {
        let key = IdempotencyKey::derived("topup", payment.as_str()).map_err(LedgerError::from)?;
        self.apply(key, LedgerOp::TopUp { user, amount, payment }).await
    }

    /// Prices `units` of `product` for a user of `tier` and keeps the quote for confirmation.
    ///
    /// # Errors
    /// [`BillingError::Pricing`] when pricing refuses; [`BillingError::Store`] when the quote store failed.
    pub async fn quote(
        &self,
        user: UserId,
        product: &ProductId,
        units: u64,
        tier: Tier,
    ) -> Result<Quote, BillingError> {
        let now = self.clock.now();
        let quote = self.pricer.quote(product, units, tier, now, new_id::<QuoteId>(&*self.ids))?;
        let record = QuoteRecord {
            id: quote.id,
            user,
            product: quote.product.clone(),
            units,
            tier,
            price: quote.price,
            created_at: now,
            expires_at: quote.expires_at,
        };
        self.quotes.put(record).await?;
        Ok(quote)
    }

    /// Confirms a quote: locks its price and holds it, with the caps checked in the same atomic step. The hold
    /// id and the key come from the quote, so confirming twice holds once.
    ///
    /// # Errors
    /// [`BillingError::QuoteNotFound`], [`BillingError::QuoteOwner`], [`BillingError::QuoteExpired`], or the
    /// ledger's refusal (insufficient funds, a spend cap).
    pub async fn confirm(
        &self,
        user: UserId,
        quote: QuoteId,
        provider: Option<&ProviderId>,
    ) -> Result<Confirmation, BillingError> {
        let record = self.quotes.get(quote).await?.ok_or(BillingError::QuoteNotFound { quote })?;
        if record.user != user {
            return Err(BillingError::QuoteOwner { quote });
        }
        let hold = HoldId::from(quote.as_u128());
        let key = IdempotencyKey::derived("confirm", quote).map_err(LedgerError::from)?;
        // The hold's expiry derives from the quote, not from the clock, so that concurrent or repeated confirms
        // build the same operation and the ledger treats all but the first as replays.
        let expires_at = record.expires_at.plus(self.config.hold_ttl);
        let op = self.hold_op(&record, provider, expires_at);
        // A replayed confirm returns the first outcome even after the quote expired (the hold is read only then).
        if self.clock.now() >= record.expires_at && self.ledger.hold(hold).await?.is_none() {
            return Err(BillingError::QuoteExpired { quote, expired_at: record.expires_at });
        }
        let applied = self.apply(key, op).await?;
        Ok(Confirmation {
            quote,
            hold,
            product: record.product,
            amount: applied.receipt.amount,
            expires_at,
            replayed: applied.replayed,
        })
    }

    fn hold_op(&self, record: &QuoteRecord, provider: Option<&ProviderId>, expires_at: Timestamp) -> LedgerOp {
        LedgerOp::Hold {
            user: record.user,
            hold: HoldId::from(record.id.as_u128()),
            amount: record.price,
            provider: provider.cloned(),
            expires_at,
            caps: SpendCaps { active_holds_max: self.config.jobs_running_max, ..self.config.caps_for(provider) },
        }
    }

    /// Holds `amount` directly (for embedders that price elsewhere), under the configured caps.
    ///
    /// # Errors
    /// The ledger's refusal (insufficient funds, a spend cap, a reused hold id).
    pub async fn hold(
        &self,
        user: UserId,
        hold: HoldId,
        amount: Money,
        provider: Option<&ProviderId>,
        key: IdempotencyKey,
    ) -> Result<Applied, BillingError> {
        let expires_at = self.clock.now().plus(self.config.hold_ttl);
        let caps = self.config.caps_for(provider);
        let op = LedgerOp::Hold { user, hold, amount, provider: provider.cloned(), expires_at, caps };
        self.apply(key, op).await
    }

    /// Raises a live hold by `amount` (a dearer failover) and pushes its expiry one hold TTL past now.
    ///
    /// # Errors
    /// The ledger's refusal (insufficient funds, a spend cap, a hold no longer live).
    pub async fn raise(&self, hold: HoldId, amount: Money, key: IdempotencyKey) -> Result<Applied, BillingError> {
        let current = self.ledger.hold(hold).await?.ok_or(LedgerError::HoldNotFound { hold })?;
        let expires_at = self.clock.now().plus(self.config.hold_ttl).max(current.expires_at);
        let caps = self.config.caps_for(current.provider.as_ref());
        self.apply(key, LedgerOp::Raise { hold, amount, expires_at, caps }).await
    }

    /// Charges `amount` of a hold and releases the rest, in one transaction. The result says whether this call
    /// was a replay of an earlier one with the same key.
    ///
    /// # Errors
    /// The ledger's refusal (more than held, a hold no longer live).
    pub async fn capture(&self, hold: HoldId, amount: Money, key: IdempotencyKey) -> Result<Applied, BillingError> {
        self.apply(key, LedgerOp::Capture { hold, amount }).await
    }

    /// Charges `amount` of a hold under the key derived from the hold, `capture:<hold>`, as [`Self::confirm`]
    /// derives its key from the quote: capturing the same hold twice charges once, and the second call comes
    /// back with `replayed` set. It is the key [`crate::jobs::JobService`] captures a job's hold with
    /// (`capture:<job>`, and a job's id has its hold's number), so a job and a direct call cannot both charge.
    ///
    /// # Errors
    /// The ledger's refusal (more than held, a hold no longer live, the key already used for another amount).
    pub async fn capture_hold(&self, hold: HoldId, amount: Money) -> Result<Applied, BillingError> {
        self.capture(hold, amount, IdempotencyKey::derived("capture", hold).map_err(LedgerError::from)?).await
    }

    /// Gives a hold back.
    ///
    /// # Errors
    /// The ledger's refusal (a hold that already ended).
    pub async fn release(&self, hold: HoldId, key: IdempotencyKey) -> Result<Applied, BillingError> {
        self.apply(key, LedgerOp::Release { hold }).await
    }

    /// Gives captured money back to the wallet, up to what was captured.
    ///
    /// # Errors
    /// The ledger's refusal (more than refundable, a hold not captured).
    pub async fn refund(&self, hold: HoldId, amount: Money, key: IdempotencyKey) -> Result<Applied, BillingError> {
        self.apply(key, LedgerOp::Refund { hold, amount }).await
    }

    /// Takes wallet money out for a card refund of `payment` (the gateway's refund call comes after, with the
    /// same key).
    ///
    /// # Errors
    /// The ledger's refusal (more than the payment brought in, not enough in the wallet).
    pub async fn refund_to_card(
        &self,
        user: UserId,
        payment: PaymentId,
        amount: Money,
        key: IdempotencyKey,
    ) -> Result<Applied, BillingError> {
        self.apply(key, LedgerOp::RefundToCard { user, payment, amount }).await
    }

    /// Adjusts a balance by a signed amount on behalf of `actor`, with a reason. Authorization and the audit
    /// record belong to the caller's admin service.
    ///
    /// # Errors
    /// The ledger's refusal (zero, or a debit past the overdraft limit).
    pub async fn adjust(
        &self,
        user: UserId,
        amount: Money,
        actor: UserId,
        reason: Reason,
        key: IdempotencyKey,
    ) -> Result<Applied, BillingError> {
        self.apply(key, LedgerOp::Adjust { user, amount, actor, reason }).await
    }

    /// A user's balances.
    ///
    /// # Errors
    /// [`BillingError::Store`] when the store failed.
    pub async fn balance(&self, user: UserId) -> Result<Balance, BillingError> {
        Ok(self.ledger.balance(user).await?)
    }

    /// Recomputes every balance from the postings.
    ///
    /// # Errors
    /// [`BillingError::Store`] when the store failed.
    pub async fn verify(&self) -> Result<VerifyReport, BillingError> {
        Ok(self.ledger.verify().await?)
    }

    /// Expires every hold whose TTL passed, up to the configured batch; each with the key `expire:<hold>`, so
    /// two reapers racing expire each hold once.
    ///
    /// # Errors
    /// [`BillingError::Store`] when the store failed.
    pub async fn reap_expired(&self) -> Result<ReapReport, BillingError> {
        let now = self.clock.now();
        let due = self.ledger.holds_due(now, self.config.reap_batch_max).await?;
        let mut report = ReapReport::default();
        for hold in due {
            let key = IdempotencyKey::derived("expire", hold).map_err(LedgerError::from)?;
            match self.apply(key, LedgerOp::Expire { hold }).await {
                Ok(_) => report.expired.push(hold),
                Err(BillingError::Ledger(LedgerError::Store(e))) => return Err(e.into()),
                Err(BillingError::Ledger(e)) => report.skipped.push((hold, e)),
                Err(e) => return Err(e),
            }
        }
        Ok(report)
    }
}

#[async_trait::async_trait]
impl crate::jobs::JobBilling for BillingService {
    async fn capture(&self, hold: HoldId, amount: Money, key: &IdempotencyKey) -> Result<Settlement, JobBillingError> {
        match BillingService::capture(self, hold, amount, key.clone()).await {
            Ok(_) => Ok(Settlement::Captured),
            // Past its TTL the hold can only be expired: do it now (with the reaper's key, so the two expire it
            // once), and the job learns that the money went back.
            Err(BillingError::Ledger(LedgerError::HoldExpired { .. })) => {
                let key = IdempotencyKey::derived("expire", hold)
                    .map_err(|e| JobBillingError::Rejected { reason: e.to_string() })?;
                match self.apply(key, LedgerOp::Expire { hold }).await {
                    Ok(_) => Ok(Settlement::GaveBack),
                    Err(e) => ended(e),
                }
            }
            Err(e) => ended(e),
        }
    }

    async fn release(&self, hold: HoldId, key: &IdempotencyKey) -> Result<Settlement, JobBillingError> {
        match BillingService::release(self, hold, key.clone()).await {
            Ok(_) => Ok(Settlement::GaveBack),
            Err(e) => ended(e),
        }
    }

    async fn settlement(&self, hold: HoldId) -> Result<Option<Settlement>, JobBillingError> {
        let stored = self.ledger.hold(hold).await.map_err(|e| job_billing_error(e.into()))?;
        match stored.map(|h| h.state) {
            None => Err(JobBillingError::Rejected { reason: format!("hold {hold} not found") }),
            Some(HoldState::Active) => Ok(None),
            Some(HoldState::Captured) => Ok(Some(Settlement::Captured)),
            Some(HoldState::Released | HoldState::Expired) => Ok(Some(Settlement::GaveBack)),
        }
    }
}

/// A refusal that says how the hold ended is that ending; anything else is an error.
fn ended(e: BillingError) -> Result<Settlement, JobBillingError> {
    match e {
        BillingError::Ledger(LedgerError::HoldNotActive { state: HoldState::Captured, .. }) => Ok(Settlement::Captured),
        BillingError::Ledger(LedgerError::HoldNotActive {
            state: HoldState::Released | HoldState::Expired, ..
        }) => Ok(Settlement::GaveBack),
        other => Err(job_billing_error(other)),
    }
}

/// A store failure may pass; anything else the ledger said is final.
fn job_billing_error(e: BillingError) -> JobBillingError {
    match e {
        BillingError::Ledger(LedgerError::Store(s)) | BillingError::Store(s) => {
            JobBillingError::Unavailable { reason: s.to_string() }
        }
        other => JobBillingError::Rejected { reason: other.to_string() },
    }
}
