-- The history of one user, newest first (GET /v1/users/{id}/ledger pages it by position).
CREATE INDEX ledger_transactions_user_seq ON ledger_transactions (user_id, seq);

-- API keys of the HTTP API: the SHA-256 of each key, never the key; scopes as a comma-separated list.
CREATE TABLE api_keys (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL,
    secret_hash     TEXT NOT NULL,
    scopes          TEXT NOT NULL,
    rate_per_minute BIGINT NOT NULL CHECK (rate_per_minute > 0),
    created_ms      BIGINT NOT NULL,
    revoked_ms      BIGINT
);

-- The stored response of each POST made with an Idempotency-Key, per API key. `status` is NULL while the
-- first request runs; `locked_until_ms` lets another claim it if that request's process died.
CREATE TABLE http_replays (
    api_key         TEXT NOT NULL,
    idem_key        TEXT NOT NULL,
    fingerprint     TEXT NOT NULL,
    created_ms      BIGINT NOT NULL,
    locked_until_ms BIGINT NOT NULL,
    status          BIGINT,
    content_type    TEXT,
    body            BYTEA NOT NULL DEFAULT '\x',
    PRIMARY KEY (api_key, idem_key)
);
CREATE INDEX http_replays_created ON http_replays (created_ms);
