-- The bot's members: one row per user, with what growth and moderation need. Flags are 0/1 integers. A ban is
-- a reason (NULL: none) and an end (NULL: for ever).
CREATE TABLE members (
    user_id         INTEGER PRIMARY KEY,
    username        TEXT CHECK (username IS NULL OR (length(username) BETWEEN 1 AND 64
                                                     AND username NOT GLOB '*[^A-Za-z0-9_]*')),
    first_name      TEXT NOT NULL CHECK (length(CAST(first_name AS BLOB)) <= 128),
    language        TEXT NOT NULL CHECK (length(language) BETWEEN 1 AND 8),
    language_chosen INTEGER NOT NULL DEFAULT 0 CHECK (language_chosen IN (0, 1)),
    referral_code   TEXT NOT NULL UNIQUE CHECK (length(referral_code) = 10
                                                AND referral_code NOT GLOB '*[^a-z0-9]*'),
    referrer        INTEGER REFERENCES members (user_id) CHECK (referrer IS NULL OR referrer <> user_id),
    joined_ms       INTEGER NOT NULL,
    last_seen_ms    INTEGER NOT NULL,
    trial_granted   INTEGER NOT NULL DEFAULT 0 CHECK (trial_granted IN (0, 1)),
    paid_ms         INTEGER,
    ban_reason      TEXT CHECK (ban_reason IS NULL OR length(CAST(ban_reason AS BLOB)) <= 2000),
    ban_until_ms    INTEGER CHECK (ban_until_ms IS NULL OR ban_reason IS NOT NULL),
    blocked_ms      INTEGER
) STRICT;
-- by_username: the member seen last with a (lower-cased) username.
CREATE INDEX members_username ON members (lower(username), last_seen_ms DESC);
-- referees, newest first, and their count.
CREATE INDEX members_referrer ON members (referrer, joined_ms DESC, user_id DESC) WHERE referrer IS NOT NULL;

-- Promo codes (upper-case), and who redeemed each: one redemption per user and code, counted in `uses`.
CREATE TABLE promo_codes (
    code       TEXT PRIMARY KEY CHECK (length(code) BETWEEN 1 AND 32 AND code NOT GLOB '*[^A-Z0-9_-]*'),
    amount     INTEGER NOT NULL CHECK (amount > 0),
    uses_max   INTEGER NOT NULL CHECK (uses_max BETWEEN 1 AND 4294967295),
    uses       INTEGER NOT NULL DEFAULT 0 CHECK (uses >= 0 AND uses <= uses_max),
    expires_ms INTEGER,
    created_by INTEGER NOT NULL,
    created_ms INTEGER NOT NULL
) STRICT;
-- list, newest first.
CREATE INDEX promo_codes_created ON promo_codes (created_ms DESC, code DESC);

CREATE TABLE promo_redemptions (
    code        TEXT NOT NULL REFERENCES promo_codes (code),
    user_id     INTEGER NOT NULL,
    amount      INTEGER NOT NULL CHECK (amount > 0),
    redeemed_ms INTEGER NOT NULL,
    PRIMARY KEY (code, user_id)
) STRICT;
