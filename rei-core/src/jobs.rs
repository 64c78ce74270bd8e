//! Generation jobs: the state machine, retry with backoff, the ports jobs run through, and [`JobService`].
//!
//! A job is quoted, confirmed (its price held), queued, leased by a worker, and ends `Succeeded` (the hold
//! captured), `Failed` or `Cancelled` (the hold released). A provider call whose outcome is not known leaves
//! the job `Unknown` until it is reconciled; no money moves in between. The [`JobStore`] is the record of
//! truth; the [`JobQueue`] only dispatches, delivers at least once, and can be rebuilt from the store.

mod model;
mod ports;
mod retry;
mod service;

pub use model::{
    ATTEMPTS_MAX, ErrorText, InvalidTransition, Job, JobEvent, JobSpecError, JobState, NewJob, Priority, WorkerId,
    transition,
};
pub use ports::{
    AckedAndTaken, BATCH_MAX, DeadLetter, Enqueued, JobBilling, JobBillingError, JobNotice, JobNotifier,
    JobNotifyError, JobQueue, JobQueueError, JobStore, JobStoreError, JobTicket, LIST_LIMIT_MAX, Lease, QueueLengths,
    QueueLimits, Settlement,
};
pub use retry::{BACKOFF_CAP_MAX, RetryPolicy, RetryPolicyError};
pub use service::{
    FailOutcome, JobConfigError, JobError, JobPorts, JobService, LEASE_MAX, LEASE_MIN, LEASE_SKIP_MAX, LeasedJob,
    ReconcileReport, RecoveryReport, Resolution,
};
