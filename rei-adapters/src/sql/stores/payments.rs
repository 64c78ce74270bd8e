//! [`PaymentStore`](rei_core::topups::PaymentStore) over either engine: one row per payment in `payment_records`.
//! Every change is one conditional statement, so the rule it checks (a final status never goes back, only a
//! pending record is rescheduled) is decided atomically with the write; triggers refuse the rest.

use std::time::Duration;

use rei_core::ids::{PaymentId, UserId};
use rei_core::time::Timestamp;
use rei_core::topups::{
    BATCH_LIMIT_MAX, FinalStatus, LIST_LIMIT_MAX, Marked, PaymentCursor, PaymentPage, PaymentProvider, PaymentRecord,
    PaymentRecordStatus, PaymentStoreError, check_record, effective_limit,
};

use super::engine::Engine;
use super::fields::{Fields, RowError, SqlRow};
use super::values::Value;

const TABLE: &str = "payment_records";

/// The columns of `payment_records`, in the order [`record_values`] lists them.
pub(crate) const COLUMNS: &str = "id, provider, user_id, amount, topup, status, created_ms, updated_ms, \
                                  next_check_ms, checks, confirmation_url";

/// The statements of the payment store in one engine's dialect (each after `SELECT {COLUMNS} FROM
/// payment_records` where it says "after the select").
pub(crate) struct PaymentSql {
    /// Inserts a row from [`record_values`] unless its id is stored.
    pub(crate) insert: &'static str,
    /// After the select: the row whose id is the 1st value.
    pub(crate) by_id: &'static str,
    /// Sets the status (2nd value) and update time (3rd) of the row whose id is the 1st, only where
    /// [`PaymentRecordStatus::may_become`] allows and the status differs.
    pub(crate) mark: &'static str,
    /// After the select: pending rows whose next check is at or before the 1st value, created after the 2nd,
    /// oldest next check first, at most the 3rd.
    pub(crate) due: &'static str,
    /// As `due`, but created at or before the 2nd value.
    pub(crate) overdue: &'static str,
    /// Adds one check (capped at `u32::MAX`) and sets the next check (2nd value) and update time (3rd) of the
    /// pending row whose id is the 1st.
    pub(crate) reschedule: &'static str,
    /// Marks expired, at the 2nd value, at most the 3rd value of pending rows created before the 1st, oldest
    /// first.
    pub(crate) expire: &'static str,
    /// After the select: the rows of the user (1st value), newest first, at most the 2nd.
    pub(crate) list_first: &'static str,
    /// After the select: the rows of the user (1st value) after the cursor (created ms 2nd, id 3rd), newest
    /// first, at most the 4th.
    pub(crate) list_after: &'static str,
    /// After the select: every user's rows, newest first, at most the 1st value.
    pub(crate) recent_first: &'static str,
    /// After the select: every user's rows after the cursor (created ms 1st, id 2nd), newest first, at most the
    /// 3rd.
    pub(crate) recent_after: &'static str,
}

fn unavailable(e: impl ToString) -> PaymentStoreError {
    PaymentStoreError::Unavailable { reason: e.to_string() }
}

fn corrupt(e: RowError) -> PaymentStoreError {
    PaymentStoreError::Unavailable { reason: format!("corrupt payment row: {e}") }
}

fn record_from_row<R: SqlRow>(row: &R) -> Result<PaymentRecord, RowError> {
    let f = Fields::new(TABLE, row);
    let confirmation_url = f.parsed_or_null("confirmation_url", |t| Ok::<_, &str>(t.to_owned()))?;
    Ok(PaymentRecord {
        id: f.parsed("id", PaymentId::parse)?,
        provider: f.named("provider", PaymentProvider::ALL, PaymentProvider::as_str)?,
        user: UserId(f.int("user_id")?),
        amount: f.money("amount")?,
        topup: f.text("topup")?,
        status: f.named("status", PaymentRecordStatus::ALL, PaymentRecordStatus::as_str)?,
        created_at: f.time("created_ms")?,
        updated_at: f.time("updated_ms")?,
        next_check_at: f.time("next_check_ms")?,
        checks: f.unsigned("checks")?,
        confirmation_url,
    })
}

fn record_values(r: &PaymentRecord) -> [Value<'_>; 11] {
    [
        r.id.as_str().into(),
        r.provider.as_str().into(),
        r.user.0.into(),
        r.amount.kopecks().into(),
        r.topup.as_str().into(),
        r.status.as_str().into(),
        r.created_at.as_millis().into(),
        r.updated_at.as_millis().into(),
        r.next_check_at.as_millis().into(),
        i64::from(r.checks).into(),
        r.confirmation_url.as_deref().into(),
    ]
}

fn rows_to_records<R: SqlRow>(rows: &[R]) -> Result<Vec<PaymentRecord>, PaymentStoreError> {
    rows.iter().map(|r| record_from_row(r).map_err(corrupt)).collect()
}

fn limit_value(limit: u32, max: u32) -> Value<'static> {
    i64::from(effective_limit(limit, max)).into()
}

/// [`PaymentStore::get`](rei_core::topups::PaymentStore::get).
pub(crate) async fn get<E: Engine>(
    db: &E,
    sql: &PaymentSql,
    id: &PaymentId,
) -> Result<Option<PaymentRecord>, PaymentStoreError> {
    let select = format!("SELECT {COLUMNS} FROM payment_records {}", sql.by_id);
    let row = db.fetch_optional(&select, vec![id.as_str().into()]).await.map_err(unavailable)?;
    row.as_ref().map(record_from_row).transpose().map_err(corrupt)
}

async fn stored<E: Engine>(db: &E, sql: &PaymentSql, id: &PaymentId) -> Result<PaymentRecord, PaymentStoreError> {
    get(db, sql, id).await?.ok_or_else(|| PaymentStoreError::NotFound { id: id.clone() })
}

/// [`PaymentStore::insert`](rei_core::topups::PaymentStore::insert).
pub(crate) async fn insert<E: Engine>(
    db: &E,
    sql: &PaymentSql,
    record: &PaymentRecord,
) -> Result<PaymentRecord, PaymentStoreError> {
    check_record(record)?;
    let inserted = db.execute(sql.insert, record_values(record).into()).await.map_err(unavailable)?;
    if inserted == 1 {
        return Ok(record.clone());
    }
    let first = get(db, sql, &record.id).await?.ok_or_else(|| PaymentStoreError::Unavailable {
        reason: format!("payment {} neither inserted nor found", record.id),
    })?;
    if first.same_payment(record) { Ok(first) } else { Err(PaymentStoreError::Conflict { id: record.id.clone() }) }
}

/// [`PaymentStore::mark`](rei_core::topups::PaymentStore::mark).
pub(crate) async fn mark<E: Engine>(
    db: &E,
    sql: &PaymentSql,
    id: &PaymentId,
    status: FinalStatus,
    now: Timestamp,
) -> Result<Marked, PaymentStoreError> {
    let values = vec![id.as_str().into(), PaymentRecordStatus::from(status).as_str().into(), now.as_millis().into()];
    let changed = db.execute(sql.mark, values).await.map_err(unavailable)? == 1;
    Ok(Marked { record: stored(db, sql, id).await?, changed })
}

/// [`PaymentStore::due`](rei_core::topups::PaymentStore::due) (`young`) or
/// [`PaymentStore::overdue`](rei_core::topups::PaymentStore::overdue).
pub(crate) async fn due<E: Engine>(
    db: &E,
    sql: &PaymentSql,
    now: Timestamp,
    max_age: Duration,
    limit: u32,
    young: bool,
) -> Result<Vec<PaymentRecord>, PaymentStoreError> {
    let tail = if young { sql.due } else { sql.overdue };
    let select = format!("SELECT {COLUMNS} FROM payment_records {tail}");
    let values =
        vec![now.as_millis().into(), now.minus(max_age).as_millis().into(), limit_value(limit, BATCH_LIMIT_MAX)];
    rows_to_records(&db.fetch_all(&select, values).await.map_err(unavailable)?)
}

/// [`PaymentStore::reschedule`](rei_core::topups::PaymentStore::reschedule).
pub(crate) async fn reschedule<E: Engine>(
    db: &E,
    sql: &PaymentSql,
    id: &PaymentId,
    next_check_at: Timestamp,
    now: Timestamp,
) -> Result<PaymentRecord, PaymentStoreError> {
    let values = vec![id.as_str().into(), next_check_at.as_millis().into(), now.as_millis().into()];
    db.execute(sql.reschedule, values).await.map_err(unavailable)?;
    stored(db, sql, id).await
}

/// [`PaymentStore::expire_older_than`](rei_core::topups::PaymentStore::expire_older_than).
pub(crate) async fn expire_older_than<E: Engine>(
    db: &E,
    sql: &PaymentSql,
    cutoff: Timestamp,
    now: Timestamp,
    limit: u32,
) -> Result<u64, PaymentStoreError> {
    let values = vec![cutoff.as_millis().into(), now.as_millis().into(), limit_value(limit, BATCH_LIMIT_MAX)];
    db.execute(sql.expire, values).await.map_err(unavailable)
}

/// [`PaymentStore::list_for_user`](rei_core::topups::PaymentStore::list_for_user) (and with no user
/// [`PaymentStore::list_recent`](rei_core::topups::PaymentStore::list_recent)): one row more than the page is
/// read to know whether another page follows.
pub(crate) async fn list_for_user<E: Engine>(
    db: &E,
    sql: &PaymentSql,
    user: Option<UserId>,
    cursor: Option<&PaymentCursor>,
    limit: u32,
) -> Result<PaymentPage, PaymentStoreError> {
    let limit = effective_limit(limit, LIST_LIMIT_MAX);
    let read = i64::from(limit) + 1;
    let (tail, values): (_, Vec<Value<'_>>) = match (user, cursor) {
        (Some(user), None) => (sql.list_first, vec![user.0.into(), read.into()]),
        (Some(user), Some(c)) => {
            (sql.list_after, vec![user.0.into(), c.created_at.as_millis().into(), c.id.as_str().into(), read.into()])
        }
        (None, None) => (sql.recent_first, vec![read.into()]),
        (None, Some(c)) => (sql.recent_after, vec![c.created_at.as_millis().into(), c.id.as_str().into(), read.into()]),
    };
    let select = format!("SELECT {COLUMNS} FROM payment_records {tail}");
    let mut records = rows_to_records(&db.fetch_all(&select, values).await.map_err(unavailable)?)?;
    let more = records.len() > limit as usize;
    records.truncate(limit as usize);
    let next = if more { records.last().map(PaymentCursor::after) } else { None };
    Ok(PaymentPage { records, next })
}

/// Defines an engine's [`rei_core::topups::PaymentStore`] as a struct `$store` over a `$pool`.
macro_rules! payment_store {
    ($store:ident, $pool:ty, $sql:expr, $engine:literal) => {
        $crate::sql::stores::engine::pool_store!(
            $store,
            $pool,
            concat!(
                "A [`PaymentStore`](rei_core::topups::PaymentStore) over a ",
                $engine,
                " pool; the schema comes from [`super::migrate`]."
            )
        );

        #[async_trait::async_trait]
        impl rei_core::topups::PaymentStore for $store {
            async fn insert(
                &self,
                record: &rei_core::topups::PaymentRecord,
            ) -> Result<rei_core::topups::PaymentRecord, rei_core::topups::PaymentStoreError> {
                $crate::sql::stores::payments::insert(&self.pool, &$sql, record).await
            }

            async fn get(
                &self,
                id: &rei_core::ids::PaymentId,
            ) -> Result<Option<rei_core::topups::PaymentRecord>, rei_core::topups::PaymentStoreError> {
                $crate::sql::stores::payments::get(&self.pool, &$sql, id).await
            }

            async fn mark(
                &self,
                id: &rei_core::ids::PaymentId,
                status: rei_core::topups::FinalStatus,
                now: rei_core::time::Timestamp,
            ) -> Result<rei_core::topups::Marked, rei_core::topups::PaymentStoreError> {
                $crate::sql::stores::payments::mark(&self.pool, &$sql, id, status, now).await
            }

            async fn due(
                &self,
                now: rei_core::time::Timestamp,
                max_age: std::time::Duration,
                limit: u32,
            ) -> Result<Vec<rei_core::topups::PaymentRecord>, rei_core::topups::PaymentStoreError> {
                $crate::sql::stores::payments::due(&self.pool, &$sql, now, max_age, limit, true).await
            }

            async fn overdue(
                &self,
                now: rei_core::time::Timestamp,
                max_age: std::time::Duration,
                limit: u32,
            ) -> Result<Vec<rei_core::topups::PaymentRecord>, rei_core::topups::PaymentStoreError> {
                $crate::sql::stores::payments::due(&self.pool, &$sql, now, max_age, limit, false).await
            }

            async fn reschedule(
                &self,
                id: &rei_core::ids::PaymentId,
                next_check_at: rei_core::time::Timestamp,
                now: rei_core::time::Timestamp,
            ) -> Result<rei_core::topups::PaymentRecord, rei_core::topups::PaymentStoreError> {
                $crate::sql::stores::payments::reschedule(&self.pool, &$sql, id, next_check_at, now).await
            }

            async fn expire_older_than(
                &self,
                cutoff: rei_core::time::Timestamp,
                now: rei_core::time::Timestamp,
                limit: u32,
            ) -> Result<u64, rei_core::topups::PaymentStoreError> {
                $crate::sql::stores::payments::expire_older_than(&self.pool, &$sql, cutoff, now, limit).await
            }

            async fn list_for_user(
                &self,
                user: rei_core::ids::UserId,
                cursor: Option<&rei_core::topups::PaymentCursor>,
                limit: u32,
            ) -> Result<rei_core::topups::PaymentPage, rei_core::topups::PaymentStoreError> {
                $crate::sql::stores::payments::list_for_user(&self.pool, &$sql, Some(user), cursor, limit).await
            }

            async fn list_recent(
                &self,
                cursor: Option<&rei_core::topups::PaymentCursor>,
                limit: u32,
            ) -> Result<rei_core::topups::PaymentPage, rei_core::topups::PaymentStoreError> {
                $crate::sql::stores::payments::list_for_user(&self.pool, &$sql, None, cursor, limit).await
            }
        }
    };
}
pub(crate) use payment_store;
