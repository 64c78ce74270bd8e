-- The ledger: cached balances, append-only transactions and postings, holds, payments.
-- Money is INTEGER kopecks; ids are 16-byte big-endian BLOBs; times are INTEGER Unix milliseconds.
-- STRICT tables, so a value of the wrong type is refused rather than silently stored.

CREATE TABLE ledger_accounts (
    user_id         INTEGER PRIMARY KEY,
    available       INTEGER NOT NULL DEFAULT 0,
    held            INTEGER NOT NULL DEFAULT 0,
    overdraft_limit INTEGER NOT NULL DEFAULT 0,
    CONSTRAINT ledger_accounts_limit_non_negative CHECK (overdraft_limit >= 0),
    CONSTRAINT ledger_accounts_available_floor CHECK (available >= -overdraft_limit),
    CONSTRAINT ledger_accounts_held_non_negative CHECK (held >= 0)
) STRICT;

CREATE TABLE ledger_system_accounts (
    account TEXT PRIMARY KEY CHECK (account IN ('payments', 'revenue', 'promo', 'refunds_out')),
    balance INTEGER NOT NULL DEFAULT 0
) STRICT;
INSERT INTO ledger_system_accounts (account) VALUES ('payments'), ('revenue'), ('promo'), ('refunds_out');

-- One row per applied command: the transaction, and the record of its idempotency key. The single writer
-- assigns `seq` explicitly (max + 1), so commit order is seq order.
CREATE TABLE ledger_transactions (
    seq         INTEGER PRIMARY KEY,
    id          BLOB NOT NULL UNIQUE CHECK (length(id) = 16),
    idem_key    TEXT NOT NULL UNIQUE,
    fingerprint TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('top_up', 'hold', 'raise', 'capture', 'release', 'expire', 'refund',
                                              'refund_to_card', 'adjust')),
    user_id     INTEGER NOT NULL,
    hold_id     BLOB CHECK (hold_id IS NULL OR length(hold_id) = 16),
    payment_id  TEXT,
    actor       INTEGER,
    reason      TEXT,
    amount      INTEGER NOT NULL,
    released    INTEGER NOT NULL,
    at_ms       INTEGER NOT NULL
) STRICT;

-- A transaction's postings are inserted before its row (see the balance trigger below), so the reference is
-- checked at commit.
CREATE TABLE ledger_postings (
    tx_seq  INTEGER NOT NULL REFERENCES ledger_transactions (seq) DEFERRABLE INITIALLY DEFERRED,
    idx     INTEGER NOT NULL CHECK (idx >= 0),
    account TEXT NOT NULL CHECK (account IN ('available', 'held', 'payments', 'revenue', 'promo', 'refunds_out')),
    user_id INTEGER,
    amount  INTEGER NOT NULL,
    PRIMARY KEY (tx_seq, idx),
    CONSTRAINT ledger_postings_user_accounts CHECK ((account IN ('available', 'held')) = (user_id IS NOT NULL))
) STRICT, WITHOUT ROWID;
CREATE INDEX ledger_postings_account ON ledger_postings (account, user_id);

CREATE TABLE ledger_holds (
    id         BLOB PRIMARY KEY CHECK (length(id) = 16),
    user_id    INTEGER NOT NULL,
    provider   TEXT,
    amount     INTEGER NOT NULL CHECK (amount > 0),
    captured   INTEGER NOT NULL DEFAULT 0,
    refunded   INTEGER NOT NULL DEFAULT 0,
    state      TEXT NOT NULL CHECK (state IN ('active', 'captured', 'released', 'expired')),
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL,
    CONSTRAINT ledger_holds_captured_bounds CHECK (captured >= 0 AND captured <= amount),
    CONSTRAINT ledger_holds_refunded_bounds CHECK (refunded >= 0 AND refunded <= captured),
    CONSTRAINT ledger_holds_captured_only_when_captured CHECK (state = 'captured' OR captured = 0)
) STRICT;
CREATE INDEX ledger_holds_user_created ON ledger_holds (user_id, created_ms);
CREATE INDEX ledger_holds_provider_created ON ledger_holds (provider, created_ms) WHERE provider IS NOT NULL;
CREATE INDEX ledger_holds_due ON ledger_holds (expires_ms, id) WHERE state = 'active';

CREATE TABLE ledger_payments (
    id       TEXT PRIMARY KEY,
    user_id  INTEGER NOT NULL,
    amount   INTEGER NOT NULL CHECK (amount > 0),
    refunded INTEGER NOT NULL DEFAULT 0,
    CONSTRAINT ledger_payments_refunded_bounds CHECK (refunded >= 0 AND refunded <= amount)
) STRICT;

-- Append-only: the database itself refuses to change or remove a committed transaction or posting.
CREATE TRIGGER ledger_postings_no_update BEFORE UPDATE ON ledger_postings
BEGIN
    SELECT RAISE(ABORT, 'ledger rows are append-only: UPDATE on ledger_postings refused');
END;
CREATE TRIGGER ledger_postings_no_delete BEFORE DELETE ON ledger_postings
BEGIN
    SELECT RAISE(ABORT, 'ledger rows are append-only: DELETE on ledger_postings refused');
END;
CREATE TRIGGER ledger_transactions_no_update BEFORE UPDATE ON ledger_transactions
BEGIN
    SELECT RAISE(ABORT, 'ledger rows are append-only: UPDATE on ledger_transactions refused');
END;
CREATE TRIGGER ledger_transactions_no_delete BEFORE DELETE ON ledger_transactions
BEGIN
    SELECT RAISE(ABORT, 'ledger rows are append-only: DELETE on ledger_transactions refused');
END;

-- An INSERT OR REPLACE would delete a committed transaction without firing the delete trigger (SQLite fires
-- delete triggers on replace only with recursive triggers on), so a clashing insert is refused up front.
CREATE TRIGGER ledger_transactions_no_replace BEFORE INSERT ON ledger_transactions
WHEN EXISTS (SELECT 1 FROM ledger_transactions WHERE seq = NEW.seq OR id = NEW.id OR idem_key = NEW.idem_key)
BEGIN
    SELECT RAISE(ABORT, 'ledger rows are append-only: a committed transaction cannot be replaced');
END;

-- Balanced, the last line of defence: a transaction's postings go in first, then its row, and the row is
-- refused unless those postings sum to zero. A transaction needs at least one posting, except a raise of zero
-- (it only moves a hold's expiry). Postings cannot be added to a transaction already written, so the check
-- made when the row went in stays true.
CREATE TRIGGER ledger_postings_only_before_their_transaction BEFORE INSERT ON ledger_postings
WHEN EXISTS (SELECT 1 FROM ledger_transactions WHERE seq = NEW.tx_seq)
BEGIN
    SELECT RAISE(ABORT, 'ledger postings must be inserted before their transaction');
END;
CREATE TRIGGER ledger_transactions_balanced AFTER INSERT ON ledger_transactions
WHEN (SELECT COALESCE(SUM(amount), 0) FROM ledger_postings WHERE tx_seq = NEW.seq) <> 0
  OR (NOT EXISTS (SELECT 1 FROM ledger_postings WHERE tx_seq = NEW.seq)
      AND NOT (NEW.kind = 'raise' AND NEW.amount = 0))
BEGIN
    SELECT RAISE(ABORT, 'ledger transaction does not sum to zero');
END;

-- Verify: every cached balance that differs from the sum of its postings. Cached values and posting sums are
-- stacked and grouped per account (GROUP BY treats the NULL user of system accounts as one group).
CREATE VIEW ledger_drift (account, user_id, cached, recomputed) AS
SELECT account, user_id, SUM(cached), SUM(recomputed)
FROM (
    SELECT 'available' AS account, user_id, available AS cached, 0 AS recomputed FROM ledger_accounts
    UNION ALL
    SELECT 'held', user_id, held, 0 FROM ledger_accounts
    UNION ALL
    SELECT account, NULL, balance, 0 FROM ledger_system_accounts
    UNION ALL
    SELECT account, user_id, 0, SUM(amount) FROM ledger_postings GROUP BY account, user_id
)
GROUP BY account, user_id
HAVING SUM(cached) <> SUM(recomputed);
