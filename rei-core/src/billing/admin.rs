//! [`AdminService`]: balance adjustments and refunds by admins, authorized by role and audited.

use std::sync::Arc;

use crate::billing::service::{BillingError, BillingService};
use crate::guards::{
    AuditAction, AuditLog, AuditLogError, AuditOutcome, AuditRecord, AuditTarget, Forbidden, Permission, Reason, Role,
    authorize,
};
use crate::ids::{AuditId, HoldId, IdGen, IdempotencyKey, UserId, new_id};
use crate::ledger::{LedgerError, Receipt};
use crate::money::Money;
use crate::time::Clock;

/// Who asks, as what, why, and under which request key (one request moves money and is audited once, however
/// often it is retried).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminRequest {
    /// The admin.
    pub actor: UserId,
    /// Their role now.
    pub role: Role,
    /// Why.
    pub reason: Reason,
    /// The request's idempotency key.
    pub key: IdempotencyKey,
}

/// Why an admin action failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminError {
    /// The role may not do this; the refusal was audited.
    #[error(transparent)]
    Forbidden(#[from] Forbidden),
    /// Billing refused or failed; the failure was audited.
    #[error(transparent)]
    Billing(#[from] BillingError),
    /// The action's outcome could not be audited. If it moved money, the money moved: retry the same request
    /// to write the missing record (the ledger replays, the audit log dedups on the request key).
    #[error(transparent)]
    Audit(#[from] AuditLogError),
    /// The audit target text was refused (an id too long to name).
    #[error("audit target {0:?} is not valid")]
    Target(String),
    /// The job service refused or failed (a job already running cannot be cancelled); the failure was audited.
    #[error(transparent)]
    Job(#[from] crate::jobs::JobError),
    /// An action of another service ([`AdminService::run_audited`]) refused or failed; the failure was audited.
    #[error("{0}")]
    Refused(String),
}

/// Admin actions on money, each authorized by [`authorize`] and written to the [`AuditLog`] with its outcome.
///
/// The record under the request key is the action's outcome as the ledger decided it: it is written only once
/// the ledger applied (or replayed) the move, from its receipt, so a request refused first and retried
/// successfully with the same key is recorded as done. Each refused or forbidden attempt gets a record of its
/// own, under a key derived from the request key and the attempt's record id. A crash between the ledger and
/// the log is repaired by retrying the request: the ledger replays and the record is written.
pub struct AdminService {
    billing: Arc<BillingService>,
    auditor: Auditor,
}

impl AdminService {
    /// A service over billing and the audit log.
    #[must_use]
    pub fn new(
        billing: Arc<BillingService>,
        audit: Arc<dyn AuditLog>,
        clock: Arc<dyn Clock>,
        ids: Arc<dyn IdGen>,
    ) -> AdminService {
        AdminService { billing, auditor: Auditor::new(audit, clock, ids) }
    }

    /// Adjusts `user`'s balance by a signed `amount` (`promo` on the other side).
    ///
    /// # Errors
    /// [`AdminError::Forbidden`] without [`Permission::AdjustBalance`]; [`AdminError::Billing`] when the ledger
    /// refuses; [`AdminError::Audit`] when the record could not be written.
    pub async fn adjust(&self, req: &AdminRequest, user: UserId, amount: Money) -> Result<Receipt, AdminError> {
        let target = format!("user:{user}");
        self.audited(req, AuditAction::Adjust, Permission::AdjustBalance, &target, async {
            let key = IdempotencyKey::derived("adjust", req.key.as_str()).map_err(LedgerError::from)?;
            self.billing.adjust(user, amount, req.actor, req.reason.clone(), key).await.map(|applied| applied.receipt)
        })
        .await
    }

    /// Gives `amount` of a captured hold back to its user's wallet.
    ///
    /// # Errors
    /// [`AdminError::Forbidden`] without [`Permission::Refund`]; [`AdminError::Billing`] when the ledger refuses;
    /// [`AdminError::Audit`] when the record could not be written.
    pub async fn refund(&self, req: &AdminRequest, hold: HoldId, amount: Money) -> Result<Receipt, AdminError> {
        let target = format!("hold:{hold}");
        self.audited(req, AuditAction::Refund, Permission::Refund, &target, async {
            let key = IdempotencyKey::derived("refund", req.key.as_str()).map_err(LedgerError::from)?;
            self.billing.refund(hold, amount, key).await.map(|applied| applied.receipt)
        })
        .await
    }

    /// Cancels a job that has not started and releases its hold (the job service's cancel, replayable), as
    /// [`AuditAction::CancelJob`] on `job:<id>`.
    ///
    /// # Errors
    /// [`AdminError::Forbidden`] without [`Permission::CancelAnyJob`]; [`AdminError::Job`] when the job service
    /// refuses (not found, running or ended already) or fails; [`AdminError::Audit`].
    pub async fn cancel_job(
        &self,
        req: &AdminRequest,
        jobs: &crate::jobs::JobService,
        job: crate::ids::JobId,
    ) -> Result<crate::jobs::Job, AdminError> {
        let target = format!("job:{job}");
        self.auditor
            .run(req, AuditAction::CancelJob, Permission::CancelAnyJob, &target, jobs.cancel(job))
            .await
            .map_err(|e| match e {
                AuditedError::Admin(e) => e,
                AuditedError::Action(e) => AdminError::Job(e),
            })
    }

    /// Runs `act`, an admin action of another service (a refund to the card through a payment gateway, a dead
    /// letter put back in the queue), authorized for `action`'s permission and audited on `target` like this
    /// service's own actions. `act` MUST be idempotent under `req.key`.
    ///
    /// # Errors
    /// [`AuditedError::Admin`]: forbidden (audited), a target that cannot be named (nothing ran) or a record that
    /// could not be written; [`AuditedError::Action`]: `act` failed (audited).
    pub async fn run_audited<T, E>(
        &self,
        req: &AdminRequest,
        action: AuditAction,
        target: &str,
        act: impl Future<Output = Result<T, E>>,
    ) -> Result<T, AuditedError<E>> {
        self.auditor.run(req, action, action.permission(), target, act).await
    }

    async fn audited(
        &self,
        req: &AdminRequest,
        action: AuditAction,
        permission: Permission,
        target: &str,
        act: impl Future<Output = Result<Receipt, BillingError>>,
    ) -> Result<Receipt, AdminError> {
        self.auditor.run(req, action, permission, target, act).await.map_err(|e| match e {
            AuditedError::Admin(e) => e,
            AuditedError::Action(e) => AdminError::Billing(e),
        })
    }
}

/// Why an audited action failed: refused or left unaudited ([`AdminError`]), or the action's own error (which
/// was audited as failed).
#[derive(Debug)]
pub enum AuditedError<E> {
    /// Forbidden, a target that cannot be named, or the record could not be written.
    Admin(AdminError),
    /// The action ran and failed.
    Action(E),
}

/// Runs admin actions authorized and audited: what every service with admin actions shares ([`AdminService`],
/// [`Growth`](crate::members::Growth)), with the record keys [`AdminService`] describes. An action it runs MUST
/// be idempotent under the request key, so that retrying a request whose record could not be written repairs it.
#[derive(Clone)]
pub(crate) struct Auditor {
    audit: Arc<dyn AuditLog>,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn IdGen>,
}

impl Auditor {
    /// An auditor writing to `audit`, stamping records with `clock` and numbering them from `ids`.
    pub(crate) fn new(audit: Arc<dyn AuditLog>, clock: Arc<dyn Clock>, ids: Arc<dyn IdGen>) -> Auditor {
        Auditor { audit, clock, ids }
    }

    /// Runs `act` if `req.role` has `permission`, then records `action` on `target` with how it ended.
    ///
    /// # Errors
    /// [`AuditedError::Admin`] with [`AdminError::Forbidden`] (audited), [`AdminError::Target`] (nothing ran),
    /// or [`AdminError::Audit`] when the record could not be written (whatever `act` did stands);
    /// [`AuditedError::Action`] when `act` failed (audited).
    pub(crate) async fn run<T, E>(
        &self,
        req: &AdminRequest,
        action: AuditAction,
        permission: Permission,
        target: &str,
        act: impl Future<Output = Result<T, E>>,
    ) -> Result<T, AuditedError<E>> {
        let target =
            AuditTarget::parse(target).map_err(|_| AuditedError::Admin(AdminError::Target(target.to_owned())))?;
        let (result, outcome) = match authorize(req.role, permission) {
            Err(forbidden) => (Err(AuditedError::Admin(AdminError::Forbidden(forbidden))), AuditOutcome::Forbidden),
            Ok(()) => match act.await {
                Ok(done) => (Ok(done), AuditOutcome::Done),
                Err(e) => (Err(AuditedError::Action(e)), AuditOutcome::Failed),
            },
        };
        let id = new_id::<AuditId>(&*self.ids);
        // The request key stands for what the action did; an attempt that did nothing is recorded on its own.
        let request_key = match outcome {
            AuditOutcome::Done => req.key.clone(),
            AuditOutcome::Forbidden | AuditOutcome::Failed => {
                IdempotencyKey::derived("attempt", format!("{id}.{}", req.key.as_str()))
                    .map_err(|e| AuditedError::Admin(AdminError::Billing(LedgerError::from(e).into())))?
            }
        };
        let record = AuditRecord {
            id,
            at: self.clock.now(),
            actor: req.actor,
            actor_role: req.role,
            action,
            target,
            reason: req.reason.clone(),
            request_key,
            outcome,
        };
        self.audit.append(record).await.map_err(|e| AuditedError::Admin(AdminError::Audit(e)))?;
        result
    }
}
