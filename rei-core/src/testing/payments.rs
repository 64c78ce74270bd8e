//! The in-memory [`PaymentStore`] and the conformance suite every payment store must pass.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;

use crate::ids::{PaymentId, UserId};
use crate::money::Money;
use crate::time::Timestamp;
use crate::topups::{
    BATCH_LIMIT_MAX, FinalStatus, LIST_LIMIT_MAX, Marked, PaymentCursor, PaymentPage, PaymentProvider, PaymentRecord,
    PaymentRecordStatus, PaymentStore, PaymentStoreError, check_record, effective_limit,
};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Payment records in a mutex; every call is one critical section, so each is atomic.
#[derive(Debug, Default)]
pub struct MemoryPayments {
    records: Mutex<BTreeMap<PaymentId, PaymentRecord>>,
}

impl MemoryPayments {
    /// No records.
    #[must_use]
    pub fn new() -> MemoryPayments {
        MemoryPayments::default()
    }
}

fn not_found(id: &PaymentId) -> PaymentStoreError {
    PaymentStoreError::NotFound { id: id.clone() }
}

/// Pending records due at `now` on the side of `now - max_age` that `young` says, oldest next check first.
fn due_side(
    records: &BTreeMap<PaymentId, PaymentRecord>,
    now: Timestamp,
    max_age: Duration,
    limit: u32,
    young: bool,
) -> Vec<PaymentRecord> {
    let cutoff = now.minus(max_age);
    let mut due: Vec<PaymentRecord> = records
        .values()
        .filter(|r| r.status == PaymentRecordStatus::Pending && r.next_check_at <= now)
        .filter(|r| (r.created_at > cutoff) == young)
        .cloned()
        .collect();
    due.sort_by(|a, b| (a.next_check_at, &a.id).cmp(&(b.next_check_at, &b.id)));
    due.truncate(effective_limit(limit, BATCH_LIMIT_MAX) as usize);
    due
}

#[async_trait]
impl PaymentStore for MemoryPayments {
    async fn insert(&self, record: &PaymentRecord) -> Result<PaymentRecord, PaymentStoreError> {
        check_record(record)?;
        let mut records = lock(&self.records);
        match records.get(&record.id) {
            Some(stored) if stored.same_payment(record) => Ok(stored.clone()),
            Some(_) => Err(PaymentStoreError::Conflict { id: record.id.clone() }),
            None => {
                records.insert(record.id.clone(), record.clone());
                Ok(record.clone())
            }
        }
    }

    async fn get(&self, id: &PaymentId) -> Result<Option<PaymentRecord>, PaymentStoreError> {
        Ok(lock(&self.records).get(id).cloned())
    }

    async fn mark(&self, id: &PaymentId, status: FinalStatus, now: Timestamp) -> Result<Marked, PaymentStoreError> {
        let mut records = lock(&self.records);
        let record = records.get_mut(id).ok_or_else(|| not_found(id))?;
        let changed = record.status.may_become(status) && record.status != PaymentRecordStatus::from(status);
        if changed {
            record.status = status.into();
            record.updated_at = now;
        }
        Ok(Marked { record: record.clone(), changed })
    }

    async fn due(
        &self,
        now: Timestamp,
        max_age: Duration,
        limit: u32,
    ) -> Result<Vec<PaymentRecord>, PaymentStoreError> {
        Ok(due_side(&lock(&self.records), now, max_age, limit, true))
    }

    async fn overdue(
        &self,
        now: Timestamp,
        max_age: Duration,
        limit: u32,
    ) -> Result<Vec<PaymentRecord>, PaymentStoreError> {
        Ok(due_side(&lock(&self.records), now, max_age, limit, false))
    }

    async fn reschedule(
        &self,
        id: &PaymentId,
        next_check_at: Timestamp,
        now: Timestamp,
    ) -> Result<PaymentRecord, PaymentStoreError> {
        let mut records = lock(&self.records);
        let record = records.get_mut(id).ok_or_else(|| not_found(id))?;
        if record.status == PaymentRecordStatus::Pending {
            record.checks = record.checks.saturating_add(1);
            record.next_check_at = next_check_at;
            record.updated_at = now;
        }
        Ok(record.clone())
    }

    async fn expire_older_than(&self, cutoff: Timestamp, now: Timestamp, limit: u32) -> Result<u64, PaymentStoreError> {
        let mut records = lock(&self.records);
        let mut old: Vec<&mut PaymentRecord> = records
            .values_mut()
            .filter(|r| r.status == PaymentRecordStatus::Pending && r.created_at < cutoff)
            .collect();
        old.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        let mut expired = 0;
        for record in old.into_iter().take(effective_limit(limit, BATCH_LIMIT_MAX) as usize) {
            record.status = PaymentRecordStatus::Expired;
            record.updated_at = now;
            expired += 1;
        }
        Ok(expired)
    }

    async fn list_for_user(
        &self,
        user: UserId,
        cursor: Option<&PaymentCursor>,
        limit: u32,
    ) -> Result<PaymentPage, PaymentStoreError> {
        self.list(Some(user), cursor, limit)
    }

    async fn list_recent(&self, cursor: Option<&PaymentCursor>, limit: u32) -> Result<PaymentPage, PaymentStoreError> {
        self.list(None, cursor, limit)
    }
}

impl MemoryPayments {
    /// A page of `user`'s records (everyone's with `None`), newest first.
    fn list(
        &self,
        user: Option<UserId>,
        cursor: Option<&PaymentCursor>,
        limit: u32,
    ) -> Result<PaymentPage, PaymentStoreError> {
        let limit = effective_limit(limit, LIST_LIMIT_MAX) as usize;
        let mut mine: Vec<PaymentRecord> = lock(&self.records)
            .values()
            .filter(|r| user.is_none_or(|u| r.user == u) && cursor.is_none_or(|c| c.precedes(r)))
            .cloned()
            .collect();
        mine.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
        let more = mine.len() > limit;
        mine.truncate(limit);
        let next = if more { mine.last().map(PaymentCursor::after) } else { None };
        Ok(PaymentPage { records: mine, next })
    }
}

fn at(ms: i64) -> Timestamp {
    Timestamp::from_millis(ms)
}

fn pid(n: u32) -> PaymentId {
    PaymentId::parse(&format!("2d000000-000f-5000-8000-{n:012x}")).unwrap_or_else(|e| panic!("payment id {n}: {e}"))
}

/// A pending YooKassa record `n` of `user` for `kopecks`, created at `created_ms`, first due a minute later.
#[must_use]
pub fn sample_payment(n: u32, user: i64, kopecks: i64, created_ms: i64) -> PaymentRecord {
    PaymentRecord {
        id: pid(n),
        provider: PaymentProvider::YooKassa,
        user: UserId(user),
        amount: Money::from_kopecks(kopecks),
        topup: format!("topup-{n}"),
        status: PaymentRecordStatus::Pending,
        created_at: at(created_ms),
        updated_at: at(created_ms),
        next_check_at: at(created_ms + 60_000),
        checks: 0,
        confirmation_url: Some(format!("https://pay.example/confirm/{n}")),
    }
}

fn ids(records: &[PaymentRecord]) -> Vec<PaymentId> {
    records.iter().map(|r| r.id.clone()).collect()
}

async fn must<T>(what: &str, call: impl Future<Output = Result<T, PaymentStoreError>>) -> T {
    call.await.unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// Runs every MUST of [`PaymentStore`] against fresh stores from `make`.
///
/// # Panics
/// On the first broken rule, naming it.
pub async fn payment_store_conformance<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn PaymentStore>>,
{
    insert_is_idempotent_on_id(make().await.as_ref()).await;
    a_final_status_never_goes_back(make().await.as_ref()).await;
    due_and_overdue_split_pending_records_by_age(make().await.as_ref()).await;
    reschedule_counts_checks_of_pending_records_only(make().await.as_ref()).await;
    expire_older_than_marks_old_pending_records(make().await.as_ref()).await;
    list_for_user_pages_newest_first(make().await.as_ref()).await;
    list_recent_pages_everyones_newest_first(make().await.as_ref()).await;
}

async fn list_recent_pages_everyones_newest_first(store: &dyn PaymentStore) {
    // Users 42 and 43 mixed, two at the same millisecond (ordered by id): every record once, newest first.
    for (n, user, created) in [(1, 42, 1_000), (2, 43, 2_000), (3, 42, 3_000), (4, 43, 3_000), (5, 44, 4_000)] {
        must("insert", store.insert(&sample_payment(n, user, 100, created))).await;
    }
    let mut seen = Vec::new();
    let mut cursor: Option<PaymentCursor> = None;
    for _ in 0..3 {
        let page = must("list recent", store.list_recent(cursor.as_ref(), 2)).await;
        assert!(page.records.len() <= 2, "a page holds at most the limit");
        seen.extend(ids(&page.records));
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, [pid(5), pid(4), pid(3), pid(2), pid(1)], "everyone's records, newest first, each once");
    let all = must("list recent", store.list_recent(None, 0)).await;
    assert_eq!(ids(&all.records), [pid(5)], "a limit of 0 is read as 1");
}

async fn insert_is_idempotent_on_id(store: &dyn PaymentStore) {
    let first = sample_payment(1, 42, 50_000, 1_000);
    assert_eq!(must("insert", store.insert(&first)).await, first, "a new record is stored as given");
    assert_eq!(must("get", store.get(&first.id)).await, Some(first.clone()), "and reads back whole");
    let mut again = sample_payment(1, 42, 50_000, 9_000);
    again.confirmation_url = None;
    assert_eq!(must("insert again", store.insert(&again)).await, first, "the same payment again: the stored one");
    let mut other_user = first.clone();
    other_user.user = UserId(43);
    let mut other_amount = first.clone();
    other_amount.amount = Money::from_kopecks(1);
    for clash in [other_user, other_amount] {
        let refused = store.insert(&clash).await;
        assert_eq!(refused, Err(PaymentStoreError::Conflict { id: first.id.clone() }), "another payment, same id");
    }
    assert_eq!(must("get", store.get(&first.id)).await, Some(first.clone()), "a clash changes nothing");
    assert_eq!(must("get missing", store.get(&pid(99))).await, None);
    let mut no_link = sample_payment(2, 42, 100, 1_000);
    no_link.confirmation_url = None;
    assert_eq!(must("insert without a link", store.insert(&no_link)).await, no_link);
    assert_eq!(must("get", store.get(&no_link.id)).await, Some(no_link));
    let mut bad = sample_payment(3, 42, 100, 1_000);
    bad.topup = "t".repeat(256);
    assert!(matches!(store.insert(&bad).await, Err(PaymentStoreError::Invalid { .. })), "a top-up id over 255 bytes");
    assert_eq!(must("get", store.get(&bad.id)).await, None, "a refused record is not stored");
}

async fn a_final_status_never_goes_back(store: &dyn PaymentStore) {
    use FinalStatus::{Canceled, Expired, Succeeded};
    let paid = sample_payment(1, 42, 50_000, 1_000);
    must("insert", store.insert(&paid)).await;
    let marked = must("mark succeeded", store.mark(&paid.id, Succeeded, at(2_000))).await;
    assert!(marked.changed);
    assert_eq!((marked.record.status, marked.record.updated_at), (PaymentRecordStatus::Succeeded, at(2_000)));
    for (late, when) in [(Canceled, 3_000), (Expired, 4_000), (Succeeded, 5_000)] {
        let after = must("mark after succeeded", store.mark(&paid.id, late, at(when))).await;
        assert!(!after.changed, "{late:?} after succeeded changes nothing");
        assert_eq!((after.record.status, after.record.updated_at), (PaymentRecordStatus::Succeeded, at(2_000)));
    }
    let canceled = sample_payment(2, 42, 50_000, 1_000);
    must("insert", store.insert(&canceled)).await;
    assert!(must("mark canceled", store.mark(&canceled.id, Canceled, at(2_000))).await.changed);
    for late in [Succeeded, Expired] {
        let after = must("mark after canceled", store.mark(&canceled.id, late, at(3_000))).await;
        assert_eq!((after.changed, after.record.status), (false, PaymentRecordStatus::Canceled), "{late:?}");
    }
    // Expired is REI giving up, not the gateway's word: the gateway's final word still replaces it, once.
    let late_paid = sample_payment(3, 42, 50_000, 1_000);
    must("insert", store.insert(&late_paid)).await;
    assert!(must("mark expired", store.mark(&late_paid.id, Expired, at(2_000))).await.changed);
    assert!(!must("expired again", store.mark(&late_paid.id, Expired, at(3_000))).await.changed);
    let paid_late = must("succeeded after expired", store.mark(&late_paid.id, Succeeded, at(4_000))).await;
    assert_eq!((paid_late.changed, paid_late.record.status), (true, PaymentRecordStatus::Succeeded));
    let back = must("canceled after that", store.mark(&late_paid.id, Canceled, at(5_000))).await;
    assert_eq!((back.changed, back.record.status), (false, PaymentRecordStatus::Succeeded));
    assert_eq!(store.mark(&pid(99), Succeeded, at(1)).await, Err(PaymentStoreError::NotFound { id: pid(99) }));
    let stored = must("get", store.get(&paid.id)).await.map(|r| r.status);
    assert_eq!(stored, Some(PaymentRecordStatus::Succeeded), "what mark returned is what is stored");
}

async fn due_and_overdue_split_pending_records_by_age(store: &dyn PaymentStore) {
    let hour = 3_600_000;
    let now = at(100 * hour);
    let max_age = Duration::from_secs(48 * 3600);
    // (n, created, next check): young and due, young and not yet due, old and due, old and not yet due.
    let plan = [
        (1, 90 * hour, 99 * hour),
        (2, 95 * hour, 98 * hour),
        (3, 99 * hour, 101 * hour),
        (4, 10 * hour, 97 * hour),
        (5, 52 * hour, 100 * hour),
        (6, 20 * hour, 200 * hour),
        (7, 60 * hour, 100 * hour),
    ];
    for (n, created, next) in plan {
        let mut record = sample_payment(n, 42, 100, created);
        record.next_check_at = at(next);
        must("insert", store.insert(&record)).await;
    }
    // Record 7 is young and due but final: never due again.
    must("mark", store.mark(&pid(7), FinalStatus::Succeeded, now)).await;
    // Created exactly max_age ago is old (5 is at 52 h, 48 h before 100 h).
    assert_eq!(ids(&must("due", store.due(now, max_age, 10)).await), vec![pid(2), pid(1)], "young, due, oldest next");
    assert_eq!(ids(&must("overdue", store.overdue(now, max_age, 10)).await), vec![pid(4), pid(5)], "old and due");
    assert_eq!(ids(&must("due, limit 1", store.due(now, max_age, 1)).await), vec![pid(2)], "the limit holds");
    assert_eq!(ids(&must("overdue, limit 1", store.overdue(now, max_age, 1)).await), vec![pid(4)]);
    let later = at(101 * hour);
    assert_eq!(ids(&must("due later", store.due(later, max_age, 10)).await), vec![pid(2), pid(1), pid(3)]);
    let all = must("due", store.due(now, max_age, 10)).await;
    assert!(all.iter().all(|r| r.status == PaymentRecordStatus::Pending), "only pending records are due");
}

async fn reschedule_counts_checks_of_pending_records_only(store: &dyn PaymentStore) {
    let record = sample_payment(1, 42, 100, 1_000);
    must("insert", store.insert(&record)).await;
    let once = must("reschedule", store.reschedule(&record.id, at(200_000), at(61_000))).await;
    assert_eq!((once.checks, once.next_check_at, once.updated_at), (1, at(200_000), at(61_000)));
    let twice = must("reschedule", store.reschedule(&record.id, at(500_000), at(200_000))).await;
    assert_eq!((twice.checks, twice.next_check_at), (2, at(500_000)));
    assert_eq!(must("get", store.get(&record.id)).await, Some(twice.clone()), "what it returned is stored");
    must("mark", store.mark(&record.id, FinalStatus::Canceled, at(300_000))).await;
    let after = must("reschedule a final record", store.reschedule(&record.id, at(900_000), at(400_000))).await;
    assert_eq!((after.checks, after.next_check_at, after.status), (2, at(500_000), PaymentRecordStatus::Canceled));
    let missing = store.reschedule(&pid(99), at(1), at(1)).await;
    assert_eq!(missing, Err(PaymentStoreError::NotFound { id: pid(99) }));
}

async fn expire_older_than_marks_old_pending_records(store: &dyn PaymentStore) {
    for (n, created) in [(1, 1_000), (2, 2_000), (3, 3_000), (4, 10_000), (5, 500)] {
        must("insert", store.insert(&sample_payment(n, 42, 100, created))).await;
    }
    must("mark", store.mark(&pid(5), FinalStatus::Succeeded, at(600))).await;
    assert_eq!(must("expire, limit 2", store.expire_older_than(at(5_000), at(20_000), 2)).await, 2, "the limit holds");
    assert_eq!(must("expire the rest", store.expire_older_than(at(5_000), at(21_000), 10)).await, 1);
    assert_eq!(must("nothing left", store.expire_older_than(at(5_000), at(22_000), 10)).await, 0);
    let status = |r: Option<PaymentRecord>| r.map(|r| (r.status, r.updated_at));
    assert_eq!(status(must("get", store.get(&pid(1))).await), Some((PaymentRecordStatus::Expired, at(20_000))));
    assert_eq!(status(must("get", store.get(&pid(3))).await), Some((PaymentRecordStatus::Expired, at(21_000))));
    assert_eq!(status(must("get", store.get(&pid(4))).await), Some((PaymentRecordStatus::Pending, at(10_000))));
    assert_eq!(status(must("get", store.get(&pid(5))).await), Some((PaymentRecordStatus::Succeeded, at(600))));
}

async fn list_for_user_pages_newest_first(store: &dyn PaymentStore) {
    // Five of user 42's (two created at the same millisecond, ordered by id) and one of user 43's.
    for (n, user, created) in [(1, 42, 1_000), (2, 42, 2_000), (3, 43, 2_500), (4, 42, 3_000), (5, 42, 3_000)] {
        must("insert", store.insert(&sample_payment(n, user, 100, created))).await;
    }
    must("insert", store.insert(&sample_payment(6, 42, 100, 4_000))).await;
    must("mark", store.mark(&pid(6), FinalStatus::Succeeded, at(5_000))).await;
    let mut seen = Vec::new();
    let mut cursor: Option<PaymentCursor> = None;
    let mut pages = 0;
    loop {
        let page = must("list", store.list_for_user(UserId(42), cursor.as_ref(), 2)).await;
        assert!(page.records.len() <= 2, "a page holds at most the limit");
        seen.extend(ids(&page.records));
        pages += 1;
        assert!(pages <= 3, "five records in pages of two end after three pages");
        match page.next {
            Some(next) => {
                let decoded = PaymentCursor::decode(&next.encode());
                assert_eq!(decoded.as_ref().ok(), Some(&next), "a cursor survives its text form");
                cursor = Some(next);
            }
            None => break,
        }
    }
    assert_eq!(seen, vec![pid(6), pid(5), pid(4), pid(2), pid(1)], "newest first, ties by id, each once");
    assert_eq!(pages, 3);
    let first = must("list", store.list_for_user(UserId(42), None, 0)).await;
    assert_eq!(ids(&first.records), vec![pid(6)], "a limit of zero is one");
    let all = must("list", store.list_for_user(UserId(42), None, 1_000)).await;
    assert_eq!((all.records.len(), all.next), (5, None), "one page holds all when the limit allows");
    assert_eq!(all.records[0].status, PaymentRecordStatus::Succeeded, "records are listed as they stand");
    let theirs = must("list", store.list_for_user(UserId(43), None, 10)).await;
    assert_eq!(ids(&theirs.records), vec![pid(3)], "only the user's own");
    let nobody = must("list", store.list_for_user(UserId(44), None, 10)).await;
    assert_eq!(nobody, PaymentPage::default());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_payments_pass_the_conformance_suite() {
        // Proves the in-memory payment store keeps every MUST of PaymentStore.
        payment_store_conformance(|| async { Arc::new(MemoryPayments::new()) as Arc<dyn PaymentStore> }).await;
    }

    #[test]
    fn cursors_round_trip_and_refuse_garbage() {
        // Proves the cursor's text form reads back and anything else is refused.
        let cursor = PaymentCursor { created_at: at(1_800_000_000_123), id: pid(7) };
        assert_eq!(PaymentCursor::decode(&cursor.encode()), Ok(cursor));
        for bad in ["", "12", "x:abc", "12:", "12:../x", ":abc"] {
            assert!(PaymentCursor::decode(bad).is_err(), "{bad:?}");
        }
    }
}
