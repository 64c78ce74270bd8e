-- Payment records: one row per payment REI created at a gateway, so that a payment whose notice never arrives is
-- looked at again (the reconciler) and a user's payments can be listed. Bookkeeping around the ledger: the money
-- truth is the top-up keyed by the payment id in ledger_payments.
CREATE TABLE payment_records (
    -- The gateway's id; "C" collation so that the listing order is the byte order every store uses.
    id               TEXT COLLATE "C" PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 128),
    provider         TEXT NOT NULL CHECK (provider IN ('yookassa', 'stars')),
    user_id          BIGINT NOT NULL,
    amount           BIGINT NOT NULL CHECK (amount >= 0),
    topup            TEXT NOT NULL CHECK (octet_length(topup) BETWEEN 1 AND 255),
    status           TEXT NOT NULL CHECK (status IN ('pending', 'succeeded', 'canceled', 'expired')),
    created_ms       BIGINT NOT NULL,
    updated_ms       BIGINT NOT NULL,
    next_check_ms    BIGINT NOT NULL,
    checks           BIGINT NOT NULL CHECK (checks BETWEEN 0 AND 4294967295),
    confirmation_url TEXT CHECK (octet_length(confirmation_url) BETWEEN 1 AND 2048)
);
-- due / overdue: pending records by next check.
CREATE INDEX payment_records_due ON payment_records (next_check_ms, id) WHERE status = 'pending';
-- expire_older_than: pending records by age.
CREATE INDEX payment_records_pending_created ON payment_records (created_ms, id) WHERE status = 'pending';
-- list_for_user, newest first.
CREATE INDEX payment_records_user_created ON payment_records (user_id, created_ms DESC, id DESC);

-- The last line of defence: the gateway's final word (succeeded, canceled) never changes, and a record's payment
-- (provider, user, amount, top-up) never changes; the stores decide the same in their conditional updates.
CREATE FUNCTION payment_records_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.status IN ('succeeded', 'canceled') AND NEW.status <> OLD.status THEN
        RAISE EXCEPTION 'payment % is %: its status never changes', OLD.id, OLD.status
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF OLD.status = 'expired' AND NEW.status = 'pending' THEN
        RAISE EXCEPTION 'payment % is expired: it is never pending again', OLD.id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF NEW.id <> OLD.id OR NEW.provider <> OLD.provider OR NEW.user_id <> OLD.user_id OR NEW.amount <> OLD.amount
        OR NEW.topup <> OLD.topup OR NEW.created_ms <> OLD.created_ms THEN
        RAISE EXCEPTION 'payment % keeps its provider, user, amount, top-up and creation time', OLD.id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER payment_records_guard BEFORE UPDATE ON payment_records
    FOR EACH ROW EXECUTE FUNCTION payment_records_guard();
