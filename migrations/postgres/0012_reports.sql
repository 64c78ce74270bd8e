-- Reports (the bot's /admin_stats and /admin_slo, the sandbox summary, the operator console) read ranges of time;
-- these indexes find each range without a scan of the whole table. An index is partial where reports read only
-- some rows, so that writing the other rows (holds, raises, releases, expiries; jobs still running; pending
-- payments) costs nothing more, and it carries the columns the report reads, for index-only scans.

-- Money by kind, and the money series: top-ups, captures, refunds, card refunds and adjustments by kind and time.
CREATE INDEX ledger_transactions_flow ON ledger_transactions (kind, at_ms) INCLUDE (amount)
    WHERE kind IN ('top_up', 'capture', 'refund', 'refund_to_card', 'adjust');

-- Jobs by creation time, with their state.
CREATE INDEX jobs_created ON jobs (created_ms, state);

-- Jobs by the time they finished: a job in a final state accepts no further change, so its updated_ms is that time.
CREATE INDEX jobs_finished ON jobs (state, updated_ms) INCLUDE (created_ms) WHERE state IN ('succeeded', 'failed');

-- Attempts by start time, every provider at once (job_attempts_provider_started serves one provider).
CREATE INDEX job_attempts_started ON job_attempts (started_ms);

-- Payments by the time they reached a final status.
CREATE INDEX payment_records_finished ON payment_records (updated_ms) INCLUDE (status)
    WHERE status IN ('succeeded', 'canceled', 'expired');
