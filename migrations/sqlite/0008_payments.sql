-- Payment records: one row per payment REI created at a gateway, so that a payment whose notice never arrives is
-- looked at again (the reconciler) and a user's payments can be listed. Bookkeeping around the ledger: the money
-- truth is the top-up keyed by the payment id in ledger_payments.
CREATE TABLE payment_records (
    id               TEXT NOT NULL PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 128),
    provider         TEXT NOT NULL CHECK (provider IN ('yookassa', 'stars')),
    user_id          INTEGER NOT NULL,
    amount           INTEGER NOT NULL CHECK (amount >= 0),
    topup            TEXT NOT NULL CHECK (length(CAST(topup AS BLOB)) BETWEEN 1 AND 255),
    status           TEXT NOT NULL CHECK (status IN ('pending', 'succeeded', 'canceled', 'expired')),
    created_ms       INTEGER NOT NULL,
    updated_ms       INTEGER NOT NULL,
    next_check_ms    INTEGER NOT NULL,
    checks           INTEGER NOT NULL CHECK (checks BETWEEN 0 AND 4294967295),
    confirmation_url TEXT CHECK (length(CAST(confirmation_url AS BLOB)) BETWEEN 1 AND 2048)
) STRICT;
-- due / overdue: pending records by next check.
CREATE INDEX payment_records_due ON payment_records (next_check_ms, id) WHERE status = 'pending';
-- expire_older_than: pending records by age.
CREATE INDEX payment_records_pending_created ON payment_records (created_ms, id) WHERE status = 'pending';
-- list_for_user, newest first.
CREATE INDEX payment_records_user_created ON payment_records (user_id, created_ms DESC, id DESC);

-- The last line of defence: the gateway's final word (succeeded, canceled) never changes, and a record's payment
-- (provider, user, amount, top-up) never changes; the stores decide the same in their conditional updates.
CREATE TRIGGER payment_records_final BEFORE UPDATE OF status ON payment_records
    WHEN (OLD.status IN ('succeeded', 'canceled') AND NEW.status <> OLD.status)
        OR (OLD.status = 'expired' AND NEW.status = 'pending')
BEGIN
    SELECT RAISE(ABORT, 'payment_records: a final status never changes');
END;
CREATE TRIGGER payment_records_same_payment BEFORE UPDATE ON payment_records
    WHEN NEW.id <> OLD.id OR NEW.provider <> OLD.provider OR NEW.user_id <> OLD.user_id
        OR NEW.amount <> OLD.amount OR NEW.topup <> OLD.topup OR NEW.created_ms <> OLD.created_ms
BEGIN
    SELECT RAISE(ABORT, 'payment_records: a record keeps its provider, user, amount, top-up and creation time');
END;
