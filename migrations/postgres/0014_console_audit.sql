-- The operator console: admins retry jobs (a dead letter back in the queue, an unknown outcome found not done),
-- audited as 'retry_job', and switch models on and off, audited as 'set_model'.
ALTER TABLE audit_log DROP CONSTRAINT audit_log_action_check;
ALTER TABLE audit_log ADD CONSTRAINT audit_log_action_check
    CHECK (action IN ('adjust', 'refund', 'cancel_job', 'ban', 'unban', 'role_change', 'retry_job', 'set_model'));
