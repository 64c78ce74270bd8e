-- The history of one user, newest first (GET /v1/users/{id}/ledger pages it by position).
CREATE INDEX ledger_transactions_user_seq ON ledger_transactions (user_id, seq);

-- API keys of the HTTP API: the SHA-256 of each key, never the key; scopes as a comma-separated list.
CREATE TABLE api_keys (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL,
    secret_hash     TEXT NOT NULL,
    scopes          TEXT NOT NULL,
    rate_per_minute INTEGER NOT NULL CHECK (rate_per_minute > 0),
    created_ms      INTEGER NOT NULL,
    revoked_ms      INTEGER
) STRICT;

-- The stored response of each POST made with an Idempotency-Key, per API key. `status` is NULL while the
-- first request runs; `locked_until_ms` lets another claim it if that request's process died.
CREATE TABLE http_replays (
    api_key         TEXT NOT NULL,
    idem_key        TEXT NOT NULL,
    fingerprint     TEXT NOT NULL,
    created_ms      INTEGER NOT NULL,
    locked_until_ms INTEGER NOT NULL,
    status          INTEGER,
    content_type    TEXT,
    body            BLOB NOT NULL DEFAULT X'',
    PRIMARY KEY (api_key, idem_key)
) STRICT;
CREATE INDEX http_replays_created ON http_replays (created_ms);
