-- The operator console: admins retry jobs (a dead letter back in the queue, an unknown outcome found not done),
-- audited as 'retry_job', and switch models on and off, audited as 'set_model'. SQLite cannot change a CHECK constraint in place: the audit log is copied into a table
-- with the new constraint, then its indexes and append-only triggers are made again.
CREATE TABLE audit_log_next (
    id          BLOB PRIMARY KEY CHECK (length(id) = 16),
    at_ms       INTEGER NOT NULL,
    actor       INTEGER NOT NULL,
    actor_role  TEXT NOT NULL CHECK (actor_role IN ('user', 'admin', 'owner')),
    action      TEXT NOT NULL CHECK (action IN ('adjust', 'refund', 'cancel_job', 'ban', 'unban', 'role_change',
                                                'retry_job', 'set_model')),
    target      TEXT NOT NULL CHECK (length(target) BETWEEN 1 AND 200),
    reason      TEXT NOT NULL CHECK (length(reason) BETWEEN 1 AND 500),
    request_key TEXT NOT NULL UNIQUE CHECK (length(request_key) BETWEEN 1 AND 255),
    outcome     TEXT NOT NULL CHECK (outcome IN ('done', 'forbidden', 'failed'))
) STRICT;
INSERT INTO audit_log_next (id, at_ms, actor, actor_role, action, target, reason, request_key, outcome)
    SELECT id, at_ms, actor, actor_role, action, target, reason, request_key, outcome FROM audit_log;
DROP TABLE audit_log;
ALTER TABLE audit_log_next RENAME TO audit_log;
CREATE INDEX audit_log_at ON audit_log (at_ms DESC, id DESC);
CREATE INDEX audit_log_actor_at ON audit_log (actor, at_ms DESC, id DESC);
CREATE INDEX audit_log_action_at ON audit_log (action, at_ms DESC, id DESC);
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
