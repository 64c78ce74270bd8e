-- The bot's members: one row per user, with what growth and moderation need. Flags are 0/1 integers, as in
-- SQLite, so both engines share one row reader. A ban is a reason (NULL: none) and an end (NULL: for ever).
CREATE TABLE members (
    user_id         BIGINT PRIMARY KEY,
    username        TEXT CHECK (username ~ '^[A-Za-z0-9_]{1,64}$'),
    first_name      TEXT NOT NULL CHECK (octet_length(first_name) <= 128),
    language        TEXT NOT NULL CHECK (octet_length(language) BETWEEN 1 AND 8),
    language_chosen BIGINT NOT NULL DEFAULT 0 CHECK (language_chosen IN (0, 1)),
    referral_code   TEXT NOT NULL UNIQUE CHECK (referral_code ~ '^[a-z0-9]{10}$'),
    referrer        BIGINT REFERENCES members (user_id),
    joined_ms       BIGINT NOT NULL,
    last_seen_ms    BIGINT NOT NULL,
    trial_granted   BIGINT NOT NULL DEFAULT 0 CHECK (trial_granted IN (0, 1)),
    paid_ms         BIGINT,
    ban_reason      TEXT CHECK (octet_length(ban_reason) <= 2000),
    ban_until_ms    BIGINT,
    blocked_ms      BIGINT,
    CHECK (referrer IS NULL OR referrer <> user_id),
    CHECK (ban_until_ms IS NULL OR ban_reason IS NOT NULL)
);
-- by_username: the member seen last with a (lower-cased) username.
CREATE INDEX members_username ON members (lower(username), last_seen_ms DESC);
-- referees, newest first, and their count.
CREATE INDEX members_referrer ON members (referrer, joined_ms DESC, user_id DESC) WHERE referrer IS NOT NULL;

-- Promo codes (upper-case), and who redeemed each: one redemption per user and code, counted in `uses`.
CREATE TABLE promo_codes (
    code       TEXT PRIMARY KEY CHECK (code ~ '^[A-Z0-9_-]{1,32}$'),
    amount     BIGINT NOT NULL CHECK (amount > 0),
    uses_max   BIGINT NOT NULL CHECK (uses_max BETWEEN 1 AND 4294967295),
    uses       BIGINT NOT NULL DEFAULT 0 CHECK (uses >= 0 AND uses <= uses_max),
    expires_ms BIGINT,
    created_by BIGINT NOT NULL,
    created_ms BIGINT NOT NULL
);
-- list, newest first.
CREATE INDEX promo_codes_created ON promo_codes (created_ms DESC, code DESC);

CREATE TABLE promo_redemptions (
    code        TEXT NOT NULL REFERENCES promo_codes (code),
    user_id     BIGINT NOT NULL,
    amount      BIGINT NOT NULL CHECK (amount > 0),
    redeemed_ms BIGINT NOT NULL,
    PRIMARY KEY (code, user_id)
);
