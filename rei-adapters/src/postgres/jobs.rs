//! [`JobStore`](rei_core::jobs::JobStore) in PostgreSQL: one row per job in `jobs`; the steps are shared with SQLite
//! (`sql::stores::jobs`), the statements are PostgreSQL's.

use sqlx::postgres::PgPool;

use crate::sql::stores::jobs::{self, JobSql};

/// The replacement of every column but the id, guarded by the expected state ($18).
macro_rules! update_sql {
    ($fence:literal) => {
        concat!(
            "UPDATE jobs SET user_id = $2, product = $3, priority = $4, price = $5, hold_id = $6, state = $7, ",
            "attempts = $8, max_attempts = $9, last_error = $10, provider = $11, created_ms = $12, ",
            "updated_ms = $13, not_before_ms = $14, lease_deadline_ms = $15, lease_owner = $16, ",
            "result = $17 WHERE id = $1 AND state = $18",
            $fence
        )
    };
}

const SQL: JobSql = JobSql {
    insert: "INSERT INTO jobs (id, user_id, product, priority, price, hold_id, state, attempts, max_attempts, \
             last_error, provider, created_ms, updated_ms, not_before_ms, lease_deadline_ms, lease_owner, result, \
             request) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18) \
             ON CONFLICT (id) DO NOTHING",
    update: update_sql!(""),
    update_fenced: update_sql!(" AND attempts = $8"),
    state_of: "SELECT state, attempts FROM jobs WHERE id = $1",
    by_id: "WHERE id = $1",
    by_state: "WHERE state = $1 ORDER BY id LIMIT $2",
    by_state_after: "WHERE state = $1 AND id > $2 ORDER BY id LIMIT $3",
    // Served by jobs_user (migration 0013).
    by_user: "WHERE user_id = $1 ORDER BY id DESC LIMIT $2",
    by_user_before: "WHERE user_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3",
    // The literal state matches the partial index jobs_running_lease.
    expired_leases: "WHERE state = 'running' AND lease_deadline_ms < $1 ORDER BY lease_deadline_ms, id LIMIT $2",
};

jobs::job_store!(PgJobStore, PgPool, SQL, "PostgreSQL");
