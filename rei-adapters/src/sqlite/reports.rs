//! The report store in SQLite: read-only aggregates over the ledger, jobs, attempts and payment records; the steps
//! are shared (`sql::stores::reports`), the statements are SQLite's.
//!
//! The partial indexes of migration 0012 are used only when a query repeats their `WHERE` term word for word
//! (SQLite does not prove that `state = 'succeeded'` implies `state IN ('succeeded', 'failed')`), so every
//! statement that reads through one carries that term, even beside a narrower one.

use sqlx::sqlite::SqlitePool;

use crate::sql::stores::reports::{self, ReportSql, latency_bucket};

/// The window index of a time column against the window starts `?2` (shortest) to `?6`; `?7` is the longest's.
macro_rules! window_of {
    ($column:literal) => {
        concat!(
            "CASE WHEN ",
            $column,
            " >= ?2 THEN 0 WHEN ",
            $column,
            " >= ?3 THEN 1 WHEN ",
            $column,
            " >= ?4 THEN 2 ",
            "WHEN ",
            $column,
            " >= ?5 THEN 3 WHEN ",
            $column,
            " >= ?6 THEN 4 ELSE 5 END"
        )
    };
}

const SQL: ReportSql = ReportSql {
    jobs: "SELECT state, COUNT(*) AS n FROM jobs WHERE created_ms >= ?1 AND created_ms < ?2 GROUP BY state LIMIT 16",
    money: "SELECT kind, COALESCE(SUM(amount), 0) AS total, COUNT(*) AS n FROM ledger_transactions \
            WHERE kind IN ('top_up', 'capture', 'refund', 'refund_to_card', 'adjust') \
            AND at_ms >= ?1 AND at_ms < ?2 GROUP BY kind \
            UNION ALL \
            SELECT 'attempt_cost', COALESCE(SUM(cost), 0), COUNT(*) FROM job_attempts \
            WHERE started_ms >= ?1 AND started_ms < ?2",
    providers: concat!(
        "SELECT provider, CASE WHEN outcome = 'succeeded' AND ended_ms IS NOT NULL THEN ",
        latency_bucket!(),
        " ELSE -1 END AS bucket, COUNT(*) AS attempts, \
         SUM(CASE WHEN outcome = 'succeeded' THEN 1 ELSE 0 END) AS successes, \
         SUM(CASE WHEN outcome = 'failed' THEN 1 ELSE 0 END) AS failures, SUM(cost) AS cost, SUM(charged) AS charged \
         FROM job_attempts WHERE started_ms >= ?1 AND started_ms < ?2 \
         GROUP BY provider, bucket ORDER BY provider, bucket LIMIT ?3"
    ),
    ledger_totals: "SELECT a.available, a.held, a.active_holds, a.users_with_money, \
                    s.payments, s.revenue, s.promo, s.refunds_out \
                    FROM (SELECT COALESCE(SUM(available), 0) AS available, \
                              COALESCE(SUM(held), 0) AS held, \
                              COALESCE(SUM(active_holds), 0) AS active_holds, \
                              COALESCE(SUM(CASE WHEN available > 0 OR held > 0 THEN 1 ELSE 0 END), 0) \
                                  AS users_with_money \
                          FROM ledger_accounts) AS a, \
                         (SELECT COALESCE(SUM(CASE account WHEN 'payments' THEN balance END), 0) AS payments, \
                              COALESCE(SUM(CASE account WHEN 'revenue' THEN balance END), 0) AS revenue, \
                              COALESCE(SUM(CASE account WHEN 'promo' THEN balance END), 0) AS promo, \
                              COALESCE(SUM(CASE account WHEN 'refunds_out' THEN balance END), 0) AS refunds_out \
                          FROM ledger_system_accounts) AS s",
    job_success: concat!(
        "SELECT ",
        window_of!("updated_ms"),
        " AS w, SUM(CASE WHEN state = 'succeeded' THEN 1 ELSE 0 END) AS good, COUNT(*) AS total FROM jobs \
         WHERE state IN ('succeeded', 'failed') AND updated_ms >= ?7 AND updated_ms < ?1 GROUP BY w"
    ),
    payment_success: concat!(
        "SELECT ",
        window_of!("updated_ms"),
        " AS w, SUM(CASE WHEN status = 'succeeded' THEN 1 ELSE 0 END) AS good, COUNT(*) AS total \
         FROM payment_records WHERE status IN ('succeeded', 'canceled', 'expired') \
         AND updated_ms >= ?7 AND updated_ms < ?1 GROUP BY w"
    ),
    job_latency: concat!(
        "SELECT ",
        window_of!("updated_ms"),
        " AS w, SUM(CASE WHEN updated_ms - created_ms <= ?8 THEN 1 ELSE 0 END) AS good, COUNT(*) AS total \
         FROM jobs WHERE state IN ('succeeded', 'failed') AND state = 'succeeded' \
         AND updated_ms >= ?7 AND updated_ms < ?1 GROUP BY w"
    ),
    revenue: "SELECT (at_ms - ?1) / ?3 AS bucket, SUM(amount) AS value FROM ledger_transactions \
              WHERE kind IN ('top_up', 'capture', 'refund', 'refund_to_card', 'adjust') AND kind = 'capture' \
              AND at_ms >= ?1 AND at_ms < ?2 GROUP BY bucket ORDER BY bucket LIMIT ?4",
    top_ups: "SELECT (at_ms - ?1) / ?3 AS bucket, SUM(amount) AS value FROM ledger_transactions \
              WHERE kind IN ('top_up', 'capture', 'refund', 'refund_to_card', 'adjust') AND kind = 'top_up' \
              AND at_ms >= ?1 AND at_ms < ?2 GROUP BY bucket ORDER BY bucket LIMIT ?4",
    jobs_succeeded: "SELECT (updated_ms - ?1) / ?3 AS bucket, COUNT(*) AS value FROM jobs \
                     WHERE state IN ('succeeded', 'failed') AND state = 'succeeded' \
                     AND updated_ms >= ?1 AND updated_ms < ?2 GROUP BY bucket ORDER BY bucket LIMIT ?4",
    jobs_failed: "SELECT (updated_ms - ?1) / ?3 AS bucket, COUNT(*) AS value FROM jobs \
                  WHERE state IN ('succeeded', 'failed') AND state = 'failed' \
                  AND updated_ms >= ?1 AND updated_ms < ?2 GROUP BY bucket ORDER BY bucket LIMIT ?4",
    new_users: "SELECT (joined_ms - ?1) / ?3 AS bucket, COUNT(*) AS value FROM members \
                WHERE joined_ms >= ?1 AND joined_ms < ?2 GROUP BY bucket ORDER BY bucket LIMIT ?4",
};

reports::report_store!(SqliteReportStore, SqlitePool, SQL, "SQLite");

/// The statements of the report store by name, to `EXPLAIN` them: the integration tests check that each reads its
/// range through the index meant for it, and an operator can look at a plan on a real database the same way.
#[must_use]
pub fn statements() -> Vec<(&'static str, &'static str)> {
    SQL.named()
}
