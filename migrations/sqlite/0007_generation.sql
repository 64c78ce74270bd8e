-- The generation pipeline: what a job asks for and what it produced, and one record per attempt with what the
-- provider charged, so that margin per job and per provider is known.
-- The request is written once, with the job; the result when an attempt produced it.
ALTER TABLE jobs ADD COLUMN request TEXT CHECK (length(CAST(request AS BLOB)) <= 32768);
ALTER TABLE jobs ADD COLUMN result TEXT CHECK (length(result) BETWEEN 1 AND 256);

CREATE TABLE job_attempts (
    job_id     BLOB NOT NULL CHECK (length(job_id) = 16),
    attempt    INTEGER NOT NULL CHECK (attempt BETWEEN 1 AND 4294967295),
    provider   TEXT NOT NULL CHECK (length(provider) BETWEEN 1 AND 64),
    model      TEXT NOT NULL CHECK (length(model) BETWEEN 1 AND 128),
    outcome    TEXT NOT NULL CHECK (outcome IN ('dispatched', 'succeeded', 'failed', 'rejected', 'late_result')),
    cost       INTEGER NOT NULL CHECK (cost >= 0),
    charged    INTEGER NOT NULL CHECK (charged >= 0),
    started_ms INTEGER NOT NULL,
    ended_ms   INTEGER,
    error      TEXT CHECK (length(CAST(error AS BLOB)) <= 512),
    PRIMARY KEY (job_id, attempt)
) STRICT;
-- Margin and health per provider over a time range.
CREATE INDEX job_attempts_provider_started ON job_attempts (provider, started_ms);
