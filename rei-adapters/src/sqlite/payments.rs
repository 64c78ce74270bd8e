//! [`PaymentStore`](rei_core::topups::PaymentStore) in SQLite: one row per payment in `payment_records`; the
//! steps are shared (`sql::stores::payments`), the statements are SQLite's. Each change is one statement whose
//! `WHERE` states the rule, and SQLite runs one writer at a time, so two racing marks cannot both win.

use sqlx::sqlite::SqlitePool;

use crate::sql::stores::payments::{self, PaymentSql};

const SQL: PaymentSql = PaymentSql {
    insert: "INSERT INTO payment_records (id, provider, user_id, amount, topup, status, created_ms, updated_ms, \
             next_check_ms, checks, confirmation_url) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) \
             ON CONFLICT (id) DO NOTHING",
    by_id: "WHERE id = ?1",
    mark: "UPDATE payment_records SET status = ?2, updated_ms = ?3 WHERE id = ?1 AND status <> ?2 \
           AND (status = 'pending' OR (status = 'expired' AND ?2 IN ('succeeded', 'canceled')))",
    due: "WHERE status = 'pending' AND next_check_ms <= ?1 AND created_ms > ?2 ORDER BY next_check_ms, id LIMIT ?3",
    overdue: "WHERE status = 'pending' AND next_check_ms <= ?1 AND created_ms <= ?2 \
              ORDER BY next_check_ms, id LIMIT ?3",
    reschedule: "UPDATE payment_records SET checks = MIN(checks + 1, 4294967295), next_check_ms = ?2, \
                 updated_ms = ?3 WHERE id = ?1 AND status = 'pending'",
    expire: "UPDATE payment_records SET status = 'expired', updated_ms = ?2 WHERE status = 'pending' AND id IN \
             (SELECT id FROM payment_records WHERE status = 'pending' AND created_ms < ?1 \
             ORDER BY created_ms, id LIMIT ?3)",
    list_first: "WHERE user_id = ?1 ORDER BY created_ms DESC, id DESC LIMIT ?2",
    list_after: "WHERE user_id = ?1 AND (created_ms < ?2 OR (created_ms = ?2 AND id < ?3)) \
                 ORDER BY created_ms DESC, id DESC LIMIT ?4",
    recent_first: "ORDER BY created_ms DESC, id DESC LIMIT ?1",
    recent_after: "WHERE created_ms < ?1 OR (created_ms = ?1 AND id < ?2) ORDER BY created_ms DESC, id DESC LIMIT ?3",
};

payments::payment_store!(SqlitePaymentStore, SqlitePool, SQL, "SQLite");
