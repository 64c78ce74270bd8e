//! API keys and HTTP replays in PostgreSQL (`api_keys`, `http_replays`); the steps are shared
//! (`sql::stores::access`), the statements are PostgreSQL's.

use sqlx::postgres::PgPool;

use crate::sql::stores::access::{self, AccessSql};

pub(crate) const SQL: AccessSql = AccessSql {
    insert_key: "INSERT INTO api_keys (id, name, secret_hash, scopes, rate_per_minute, created_ms, revoked_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING",
    key_by_id: "WHERE id = $1",
    revoke: "UPDATE api_keys SET revoked_ms = $2 WHERE id = $1 AND revoked_ms IS NULL",
    claim: "INSERT INTO http_replays (api_key, idem_key, fingerprint, created_ms, locked_until_ms) \
            VALUES ($1, $2, $3, $4, $5) ON CONFLICT (api_key, idem_key) DO NOTHING",
    reclaim: "UPDATE http_replays SET created_ms = $4, locked_until_ms = $5 \
              WHERE api_key = $1 AND idem_key = $2 AND fingerprint = $3 AND status IS NULL AND locked_until_ms <= $6",
    slot: "SELECT fingerprint, status, content_type, body FROM http_replays WHERE api_key = $1 AND idem_key = $2",
    finish: "UPDATE http_replays SET status = $1, content_type = $2, body = $3 \
             WHERE api_key = $4 AND idem_key = $5 AND fingerprint = $6",
    abandon: "DELETE FROM http_replays WHERE api_key = $1 AND idem_key = $2 AND fingerprint = $3 AND status IS NULL",
    purge: "DELETE FROM http_replays WHERE (api_key, idem_key) IN \
            (SELECT api_key, idem_key FROM http_replays WHERE created_ms < $1 ORDER BY created_ms LIMIT $2)",
};

access::api_key_store!(PgApiKeys, PgPool, SQL, "PostgreSQL");

pub use super::replays::PgReplays;
