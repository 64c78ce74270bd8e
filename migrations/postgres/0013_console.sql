-- The operator console's lists: every payment newest first, a user's jobs newest first, new users per bucket; and
-- the provider board: what each worker's router last saw of each provider, and the models switched off.
CREATE INDEX payment_records_created ON payment_records (created_ms DESC, id DESC);
CREATE INDEX jobs_user ON jobs (user_id, id);
CREATE INDEX members_joined ON members (joined_ms);

CREATE TABLE provider_status (
    provider        TEXT PRIMARY KEY CHECK (length(provider) BETWEEN 1 AND 64),
    breaker         TEXT NOT NULL CHECK (breaker IN ('closed', 'open', 'half_open')),
    open_until_ms   BIGINT,
    score           TEXT CHECK (length(score) <= 40),
    latency_ms      BIGINT CHECK (latency_ms >= 0),
    successes       BIGINT NOT NULL CHECK (successes >= 0),
    outcomes        BIGINT NOT NULL CHECK (outcomes >= successes),
    reported_by     TEXT NOT NULL CHECK (length(reported_by) BETWEEN 1 AND 128),
    at_ms           BIGINT NOT NULL
);

CREATE TABLE model_switches (
    provider   TEXT NOT NULL CHECK (length(provider) BETWEEN 1 AND 64),
    model      TEXT NOT NULL CHECK (length(model) BETWEEN 1 AND 128),
    enabled    BIGINT NOT NULL CHECK (enabled IN (0, 1)),
    at_ms      BIGINT NOT NULL,
    PRIMARY KEY (provider, model)
);
