//! The provider board in PostgreSQL (`provider_status`, `model_switches`); the steps are shared
//! (`sql::stores::board`), the statements are PostgreSQL's.

use sqlx::postgres::PgPool;

use crate::sql::stores::board::{self, BoardSql};

const SQL: BoardSql = BoardSql {
    publish: "INSERT INTO provider_status (provider, breaker, open_until_ms, score, latency_ms, successes, outcomes, \
              reported_by, at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
              ON CONFLICT (provider) DO UPDATE SET breaker = excluded.breaker, open_until_ms = excluded.open_until_ms, \
              score = excluded.score, latency_ms = excluded.latency_ms, successes = excluded.successes, \
              outcomes = excluded.outcomes, reported_by = excluded.reported_by, at_ms = excluded.at_ms",
    statuses: "SELECT provider, breaker, open_until_ms, score, latency_ms, successes, outcomes, reported_by, at_ms \
               FROM provider_status ORDER BY provider LIMIT $1",
    set_model: "INSERT INTO model_switches (provider, model, enabled, at_ms) VALUES ($1, $2, $3, $4) \
                ON CONFLICT (provider, model) DO UPDATE SET enabled = excluded.enabled, at_ms = excluded.at_ms",
    models: "SELECT provider, model, enabled, at_ms FROM model_switches ORDER BY provider, model LIMIT $1",
};

board::board_store!(PgBoard, PgPool, SQL, "PostgreSQL");
