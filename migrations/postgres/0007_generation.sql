-- The generation pipeline: what a job asks for and what it produced, and one record per attempt with what the
-- provider charged, so that margin per job and per provider is known.
-- The request is written once, with the job; the result when an attempt produced it.
ALTER TABLE jobs ADD COLUMN request TEXT CHECK (octet_length(request) <= 32768);
ALTER TABLE jobs ADD COLUMN result TEXT CHECK (length(result) BETWEEN 1 AND 256);

CREATE TABLE job_attempts (
    job_id     BYTEA NOT NULL CHECK (length(job_id) = 16),
    attempt    BIGINT NOT NULL CHECK (attempt BETWEEN 1 AND 4294967295),
    provider   TEXT NOT NULL CHECK (length(provider) BETWEEN 1 AND 64),
    model      TEXT NOT NULL CHECK (length(model) BETWEEN 1 AND 128),
    outcome    TEXT NOT NULL CHECK (outcome IN ('dispatched', 'succeeded', 'failed', 'rejected', 'late_result')),
    cost       BIGINT NOT NULL CHECK (cost >= 0),
    charged    BIGINT NOT NULL CHECK (charged >= 0),
    started_ms BIGINT NOT NULL,
    ended_ms   BIGINT,
    error      TEXT CHECK (octet_length(error) <= 512),
    PRIMARY KEY (job_id, attempt)
);
-- Margin and health per provider over a time range.
CREATE INDEX job_attempts_provider_started ON job_attempts (provider, started_ms);
