-- The ledger: cached balances, append-only transactions and postings, holds, payments.
-- Money is BIGINT kopecks; ids are 16-byte big-endian BYTEA; times are BIGINT Unix milliseconds.

CREATE TABLE ledger_accounts (
    user_id         BIGINT PRIMARY KEY,
    available       BIGINT NOT NULL DEFAULT 0,
    held            BIGINT NOT NULL DEFAULT 0,
    overdraft_limit BIGINT NOT NULL DEFAULT 0,
    CONSTRAINT ledger_accounts_limit_non_negative CHECK (overdraft_limit >= 0),
    CONSTRAINT ledger_accounts_available_floor CHECK (available >= -overdraft_limit),
    CONSTRAINT ledger_accounts_held_non_negative CHECK (held >= 0)
);

-- Each system account is spread over 16 shard rows so that concurrent writers do not queue on one hot row
-- (every capture credits revenue); its balance is the sum of its shards.
CREATE TABLE ledger_system_accounts (
    account TEXT NOT NULL CHECK (account IN ('payments', 'revenue', 'promo', 'refunds_out')),
    shard   SMALLINT NOT NULL CHECK (shard >= 0 AND shard < 16),
    balance BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (account, shard)
);
INSERT INTO ledger_system_accounts (account, shard)
SELECT a, s FROM UNNEST(ARRAY['payments', 'revenue', 'promo', 'refunds_out']) AS a, generate_series(0, 15) AS s;

-- One row per applied command: the transaction, and the record of its idempotency key.
CREATE TABLE ledger_transactions (
    seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id          BYTEA NOT NULL UNIQUE CHECK (length(id) = 16),
    idem_key    TEXT NOT NULL UNIQUE,
    fingerprint TEXT NOT NULL,
    kind        TEXT NOT NULL,
    user_id     BIGINT NOT NULL,
    hold_id     BYTEA,
    payment_id  TEXT,
    actor       BIGINT,
    reason      TEXT,
    amount      BIGINT NOT NULL,
    released    BIGINT NOT NULL,
    at_ms       BIGINT NOT NULL
);

CREATE TABLE ledger_postings (
    tx_seq  BIGINT NOT NULL REFERENCES ledger_transactions (seq),
    idx     SMALLINT NOT NULL,
    account TEXT NOT NULL CHECK (account IN ('available', 'held', 'payments', 'revenue', 'promo', 'refunds_out')),
    user_id BIGINT,
    amount  BIGINT NOT NULL,
    PRIMARY KEY (tx_seq, idx),
    CONSTRAINT ledger_postings_user_accounts CHECK ((account IN ('available', 'held')) = (user_id IS NOT NULL))
);

CREATE TABLE ledger_holds (
    id         BYTEA PRIMARY KEY CHECK (length(id) = 16),
    user_id    BIGINT NOT NULL,
    provider   TEXT,
    amount     BIGINT NOT NULL CHECK (amount > 0),
    captured   BIGINT NOT NULL DEFAULT 0,
    refunded   BIGINT NOT NULL DEFAULT 0,
    state      TEXT NOT NULL CHECK (state IN ('active', 'captured', 'released', 'expired')),
    created_ms BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL,
    CONSTRAINT ledger_holds_captured_bounds CHECK (captured >= 0 AND captured <= amount),
    CONSTRAINT ledger_holds_refunded_bounds CHECK (refunded >= 0 AND refunded <= captured),
    CONSTRAINT ledger_holds_captured_only_when_captured CHECK (state = 'captured' OR captured = 0)
);
CREATE INDEX ledger_holds_user_created ON ledger_holds (user_id, created_ms);
CREATE INDEX ledger_holds_provider_created ON ledger_holds (provider, created_ms) WHERE provider IS NOT NULL;
CREATE INDEX ledger_holds_due ON ledger_holds (expires_ms, id) WHERE state = 'active';

CREATE TABLE ledger_payments (
    id       TEXT PRIMARY KEY,
    user_id  BIGINT NOT NULL,
    amount   BIGINT NOT NULL CHECK (amount > 0),
    refunded BIGINT NOT NULL DEFAULT 0,
    CONSTRAINT ledger_payments_refunded_bounds CHECK (refunded >= 0 AND refunded <= amount)
);

-- Rows locked to serialize provider-budget checks across processes.
CREATE TABLE ledger_provider_locks (provider TEXT PRIMARY KEY);

-- Append-only: the database itself refuses to change or remove a committed transaction or posting.
CREATE FUNCTION ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger rows are append-only: % on % refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'integrity_constraint_violation';
END
$$;
CREATE TRIGGER ledger_postings_append_only BEFORE UPDATE OR DELETE ON ledger_postings
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_postings_no_truncate BEFORE TRUNCATE ON ledger_postings
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_transactions_append_only BEFORE UPDATE OR DELETE ON ledger_transactions
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_transactions_no_truncate BEFORE TRUNCATE ON ledger_transactions
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();

-- Balanced: the postings a statement inserts sum to zero per transaction. The adapter inserts all postings of a
-- transaction in one statement, so this checks every transaction whole.
CREATE FUNCTION ledger_check_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    bad BIGINT;
BEGIN
    SELECT tx_seq INTO bad FROM new_postings GROUP BY tx_seq HAVING SUM(amount) <> 0 LIMIT 1;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'ledger transaction % does not sum to zero', bad USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER ledger_postings_balanced AFTER INSERT ON ledger_postings
    REFERENCING NEW TABLE AS new_postings FOR EACH STATEMENT EXECUTE FUNCTION ledger_check_balanced();

-- Verify: every cached balance that differs from the sum of its postings.
CREATE FUNCTION ledger_verify()
RETURNS TABLE (account TEXT, user_id BIGINT, cached BIGINT, recomputed BIGINT)
LANGUAGE sql STABLE AS $$
    WITH sums AS (
        SELECT p.account, p.user_id, SUM(p.amount)::BIGINT AS total,
               p.account || ':' || COALESCE(p.user_id::TEXT, '') AS k
        FROM ledger_postings p GROUP BY p.account, p.user_id
    ), cached AS (
        SELECT 'available'::TEXT AS account, a.user_id, a.available AS balance, 'available:' || a.user_id AS k
        FROM ledger_accounts a
        UNION ALL
        SELECT 'held', a.user_id, a.held, 'held:' || a.user_id FROM ledger_accounts a
        UNION ALL
        SELECT s.account, NULL::BIGINT, SUM(s.balance)::BIGINT, s.account || ':' FROM ledger_system_accounts s
        GROUP BY s.account
    )
    SELECT COALESCE(c.account, s.account), COALESCE(c.user_id, s.user_id), COALESCE(c.balance, 0), COALESCE(s.total, 0)
    FROM cached c FULL OUTER JOIN sums s ON c.k = s.k
    WHERE COALESCE(c.balance, 0) <> COALESCE(s.total, 0)
$$;
