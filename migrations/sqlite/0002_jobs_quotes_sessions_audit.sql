-- Jobs, quotes, usage sessions and the audit log.
-- Money is INTEGER kopecks; ids are 16-byte big-endian BLOBs (so byte order is id order); times are INTEGER Unix
-- milliseconds and durations INTEGER milliseconds; enums are lowercase TEXT named in CHECK constraints. Tables are
-- STRICT so that SQLite refuses a value of the wrong type instead of storing it.

-- The record of truth for jobs. Updates are compare-and-set on (state, attempts) by the adapter.
CREATE TABLE jobs (
    id                BLOB PRIMARY KEY CHECK (length(id) = 16),
    user_id           INTEGER NOT NULL,
    product           TEXT NOT NULL CHECK (length(product) BETWEEN 1 AND 128),
    priority          TEXT NOT NULL CHECK (priority IN ('critical', 'high', 'normal', 'low')),
    price             INTEGER NOT NULL CHECK (price >= 0),
    hold_id           BLOB NOT NULL CHECK (length(hold_id) = 16),
    state             TEXT NOT NULL CHECK (state IN ('quoted', 'confirmed', 'queued', 'running', 'unknown',
                                                     'succeeded', 'failed', 'cancelled')),
    attempts          INTEGER NOT NULL CHECK (attempts BETWEEN 0 AND 4294967295),
    max_attempts      INTEGER NOT NULL CHECK (max_attempts BETWEEN 1 AND 16),
    last_error        TEXT CHECK (length(CAST(last_error AS BLOB)) <= 512),
    provider          TEXT CHECK (length(provider) BETWEEN 1 AND 64),
    created_ms        INTEGER NOT NULL,
    updated_ms        INTEGER NOT NULL,
    not_before_ms     INTEGER NOT NULL,
    lease_deadline_ms INTEGER,
    lease_owner       TEXT CHECK (length(lease_owner) BETWEEN 1 AND 64)
) STRICT;
-- list_by_state: one state, pages by id.
CREATE INDEX jobs_state_id ON jobs (state, id);
-- expired_leases: running jobs, earliest deadline first, then id. Not a partial index: without statistics SQLite
-- would prefer jobs_state_id and sort.
CREATE INDEX jobs_state_lease ON jobs (state, lease_deadline_ms, id);

-- Quotes shown to users, kept until confirmed or purged after expiry.
CREATE TABLE quotes (
    id         BLOB PRIMARY KEY CHECK (length(id) = 16),
    user_id    INTEGER NOT NULL,
    product    TEXT NOT NULL CHECK (length(product) BETWEEN 1 AND 128),
    units      INTEGER NOT NULL CHECK (units >= 0),
    tier       TEXT NOT NULL CHECK (tier IN ('basic', 'pro', 'enterprise')),
    price      INTEGER NOT NULL,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL
) STRICT;
-- purge_expired: the oldest expiries first.
CREATE INDEX quotes_expires ON quotes (expires_ms, id);

-- Metered usage sessions. Updates are compare-and-set on (state, chunks, used_units) by the adapter. The rate
-- is an exact decimal number of kopecks per unit, kept as text so that no float ever touches it.
CREATE TABLE usage_sessions (
    id           BLOB PRIMARY KEY CHECK (length(id) = 16),
    user_id      INTEGER NOT NULL,
    hold_id      BLOB NOT NULL CHECK (length(hold_id) = 16),
    rate_kopecks TEXT NOT NULL CHECK (
        rate_kopecks GLOB '[0-9]*' AND rate_kopecks NOT GLOB '*[^0-9.]*' AND rate_kopecks NOT GLOB '*.*.*'
        AND rate_kopecks NOT GLOB '*.' AND length(rate_kopecks) <= 64
    ),
    chunk_units  INTEGER NOT NULL CHECK (chunk_units > 0),
    chunks       INTEGER NOT NULL CHECK (chunks BETWEEN 1 AND 100000),
    used_units   INTEGER NOT NULL CHECK (used_units >= 0),
    held         INTEGER NOT NULL,
    captured     INTEGER NOT NULL,
    state        TEXT NOT NULL CHECK (state IN ('open', 'closed', 'stopped')),
    opened_ms    INTEGER NOT NULL,
    expires_ms   INTEGER NOT NULL,
    hold_ttl_ms  INTEGER NOT NULL CHECK (hold_ttl_ms >= 0)
) STRICT;
-- open_sessions: open ones, oldest first.
CREATE INDEX usage_sessions_open ON usage_sessions (opened_ms, id) WHERE state = 'open';

-- The audit log of admin actions: one row per admin request key, append-only.
CREATE TABLE audit_log (
    id          BLOB PRIMARY KEY CHECK (length(id) = 16),
    at_ms       INTEGER NOT NULL,
    actor       INTEGER NOT NULL,
    actor_role  TEXT NOT NULL CHECK (actor_role IN ('user', 'admin', 'owner')),
    action      TEXT NOT NULL CHECK (action IN ('adjust', 'refund', 'cancel_job', 'ban', 'unban', 'role_change')),
    target      TEXT NOT NULL CHECK (length(target) BETWEEN 1 AND 200),
    reason      TEXT NOT NULL CHECK (length(reason) BETWEEN 1 AND 500),
    request_key TEXT NOT NULL UNIQUE CHECK (length(request_key) BETWEEN 1 AND 255),
    outcome     TEXT NOT NULL CHECK (outcome IN ('done', 'forbidden', 'failed'))
) STRICT;
-- list, newest first, unfiltered or by actor or by action.
CREATE INDEX audit_log_at ON audit_log (at_ms DESC, id DESC);
CREATE INDEX audit_log_actor_at ON audit_log (actor, at_ms DESC, id DESC);
CREATE INDEX audit_log_action_at ON audit_log (action, at_ms DESC, id DESC);

-- Append-only: the database itself refuses to change or remove an audit record (SQLite has no TRUNCATE; a
-- DELETE without WHERE fires these triggers too).
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit records are append-only: UPDATE on audit_log refused');
END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit records are append-only: DELETE on audit_log refused');
END;
-- REPLACE deletes the row it collides with without firing delete triggers (unless recursive triggers are on),
-- so an insert never gets as far as a collision: a repeated request key is skipped, as ON CONFLICT DO NOTHING
-- would, and a repeated id is refused.
CREATE TRIGGER audit_log_no_replace BEFORE INSERT ON audit_log
BEGIN
    SELECT RAISE(IGNORE) WHERE EXISTS (SELECT 1 FROM audit_log WHERE request_key = NEW.request_key);
    SELECT RAISE(ABORT, 'audit records are append-only: an insert over an existing id refused')
    WHERE EXISTS (SELECT 1 FROM audit_log WHERE id = NEW.id);
END;
