//! [`AttemptLog`](rei_core::generation::AttemptLog) in PostgreSQL: one row per attempt in `job_attempts`; the steps are
//! shared (`sql::stores::attempts`), the statements are PostgreSQL's.

use sqlx::postgres::PgPool;

use crate::sql::stores::attempts::{self, AttemptSql};

const SQL: AttemptSql = AttemptSql {
    upsert: "INSERT INTO job_attempts (job_id, attempt, provider, model, outcome, cost, charged, started_ms, \
             ended_ms, error) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
             ON CONFLICT (job_id, attempt) DO UPDATE SET provider = excluded.provider, model = excluded.model, \
             outcome = excluded.outcome, cost = excluded.cost, charged = excluded.charged, \
             started_ms = excluded.started_ms, ended_ms = excluded.ended_ms, error = excluded.error",
    by_job: "WHERE job_id = $1 ORDER BY attempt",
};

attempts::attempt_log!(PgAttemptLog, PgPool, SQL, "PostgreSQL");
