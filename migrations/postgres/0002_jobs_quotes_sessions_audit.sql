-- Jobs, quotes, usage sessions and the audit log.
-- Money is BIGINT kopecks; ids are 16-byte big-endian BYTEA (so byte order is id order); times are BIGINT Unix
-- milliseconds and durations BIGINT milliseconds; enums are lowercase TEXT named in CHECK constraints.

-- The record of truth for jobs. Updates are compare-and-set on (state, attempts) by the adapter.
CREATE TABLE jobs (
    id                BYTEA PRIMARY KEY CHECK (length(id) = 16),
    user_id           BIGINT NOT NULL,
    product           TEXT NOT NULL CHECK (length(product) BETWEEN 1 AND 128),
    priority          TEXT NOT NULL CHECK (priority IN ('critical', 'high', 'normal', 'low')),
    price             BIGINT NOT NULL CHECK (price >= 0),
    hold_id           BYTEA NOT NULL CHECK (length(hold_id) = 16),
    state             TEXT NOT NULL CHECK (state IN ('quoted', 'confirmed', 'queued', 'running', 'unknown',
                                                     'succeeded', 'failed', 'cancelled')),
    attempts          BIGINT NOT NULL CHECK (attempts BETWEEN 0 AND 4294967295),
    max_attempts      BIGINT NOT NULL CHECK (max_attempts BETWEEN 1 AND 16),
    last_error        TEXT CHECK (octet_length(last_error) <= 512),
    provider          TEXT CHECK (length(provider) BETWEEN 1 AND 64),
    created_ms        BIGINT NOT NULL,
    updated_ms        BIGINT NOT NULL,
    not_before_ms     BIGINT NOT NULL,
    lease_deadline_ms BIGINT,
    lease_owner       TEXT CHECK (length(lease_owner) BETWEEN 1 AND 64)
);
-- list_by_state: one state, pages by id.
CREATE INDEX jobs_state_id ON jobs (state, id);
-- expired_leases: running jobs, earliest deadline first, then id.
CREATE INDEX jobs_running_lease ON jobs (lease_deadline_ms, id) WHERE state = 'running';

-- Quotes shown to users, kept until confirmed or purged after expiry.
CREATE TABLE quotes (
    id         BYTEA PRIMARY KEY CHECK (length(id) = 16),
    user_id    BIGINT NOT NULL,
    product    TEXT NOT NULL CHECK (length(product) BETWEEN 1 AND 128),
    units      BIGINT NOT NULL CHECK (units >= 0),
    tier       TEXT NOT NULL CHECK (tier IN ('basic', 'pro', 'enterprise')),
    price      BIGINT NOT NULL,
    created_ms BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL
);
-- purge_expired: the oldest expiries first.
CREATE INDEX quotes_expires ON quotes (expires_ms, id);

-- Metered usage sessions. Updates are compare-and-set on (state, chunks, used_units) by the adapter. The rate
-- is an exact decimal number of kopecks per unit, kept as text so that no float ever touches it.
CREATE TABLE usage_sessions (
    id           BYTEA PRIMARY KEY CHECK (length(id) = 16),
    user_id      BIGINT NOT NULL,
    hold_id      BYTEA NOT NULL CHECK (length(hold_id) = 16),
    rate_kopecks TEXT NOT NULL CHECK (rate_kopecks ~ '^[0-9]+(\.[0-9]+)?$' AND length(rate_kopecks) <= 64),
    chunk_units  BIGINT NOT NULL CHECK (chunk_units > 0),
    chunks       BIGINT NOT NULL CHECK (chunks BETWEEN 1 AND 100000),
    used_units   BIGINT NOT NULL CHECK (used_units >= 0),
    held         BIGINT NOT NULL,
    captured     BIGINT NOT NULL,
    state        TEXT NOT NULL CHECK (state IN ('open', 'closed', 'stopped')),
    opened_ms    BIGINT NOT NULL,
    expires_ms   BIGINT NOT NULL,
    hold_ttl_ms  BIGINT NOT NULL CHECK (hold_ttl_ms >= 0)
);
-- open_sessions: open ones, oldest first.
CREATE INDEX usage_sessions_open ON usage_sessions (opened_ms, id) WHERE state = 'open';

-- The audit log of admin actions: one row per admin request key, append-only.
CREATE TABLE audit_log (
    id          BYTEA PRIMARY KEY CHECK (length(id) = 16),
    at_ms       BIGINT NOT NULL,
    actor       BIGINT NOT NULL,
    actor_role  TEXT NOT NULL CHECK (actor_role IN ('user', 'admin', 'owner')),
    action      TEXT NOT NULL CHECK (action IN ('adjust', 'refund', 'cancel_job', 'ban', 'unban', 'role_change')),
    target      TEXT NOT NULL CHECK (char_length(target) BETWEEN 1 AND 200),
    reason      TEXT NOT NULL CHECK (char_length(reason) BETWEEN 1 AND 500),
    request_key TEXT NOT NULL UNIQUE CHECK (length(request_key) BETWEEN 1 AND 255),
    outcome     TEXT NOT NULL CHECK (outcome IN ('done', 'forbidden', 'failed'))
);
-- list, newest first, unfiltered or by actor or by action.
CREATE INDEX audit_log_at ON audit_log (at_ms DESC, id DESC);
CREATE INDEX audit_log_actor_at ON audit_log (actor, at_ms DESC, id DESC);
CREATE INDEX audit_log_action_at ON audit_log (action, at_ms DESC, id DESC);

-- Append-only: the database itself refuses to change or remove an audit record.
CREATE FUNCTION audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit records are append-only: % on % refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'integrity_constraint_violation';
END
$$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();
