-- Spend caps count each amount when it was held (a hold's own amount and every raise), not the whole hold at
-- its creation, so a hold that lives for hours is bound by every window it runs through.
--   * A user's tranches are their hold and raise transactions: an index finds those of the last day.
--   * A budgeted hold's tranches are found through its user's when it ends, to give back what it released.
--   * A provider's daily budget is kept in per-minute counters, so checking it is a bounded read (at most
--     1,440 rows) rather than a scan of a day of every user's holds.
-- Holds placed before this migration are not budgeted: provider budgets count holds placed from now on.
ALTER TABLE ledger_holds ADD COLUMN budgeted INTEGER NOT NULL DEFAULT 0
    CHECK (budgeted IN (0, 1) AND (budgeted = 0 OR provider IS NOT NULL));

CREATE TABLE ledger_provider_spend (
    provider  TEXT NOT NULL CHECK (length(provider) BETWEEN 1 AND 64),
    bucket_ms INTEGER NOT NULL CHECK (bucket_ms % 60000 = 0),
    amount    INTEGER NOT NULL CHECK (amount >= 0),
    PRIMARY KEY (provider, bucket_ms)
) STRICT, WITHOUT ROWID;

CREATE INDEX ledger_transactions_user_tranches ON ledger_transactions (user_id, at_ms)
    WHERE kind IN ('hold', 'raise') AND amount > 0;

-- A limit on holds active at once (jobs running at once) is checked on the user's balance row, which keeps the
-- count of the user's active holds (so the check needs no read of the holds).
ALTER TABLE ledger_accounts ADD COLUMN active_holds INTEGER NOT NULL DEFAULT 0 CHECK (active_holds >= 0);
UPDATE ledger_accounts SET active_holds =
    (SELECT COUNT(*) FROM ledger_holds h WHERE h.user_id = ledger_accounts.user_id AND h.state = 'active');

-- The caps no longer read holds by creation time.
DROP INDEX ledger_holds_user_created;
DROP INDEX ledger_holds_provider_created;
