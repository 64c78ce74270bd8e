-- Postings are checked once per INSERT statement instead of once per row: the foreign key to
-- ledger_transactions ran one lookup (and one row lock) per posting, which cost about a third of the
-- database's time per ledger operation. The statement-level trigger now checks, for every transaction a
-- statement adds postings to, that
--   * the postings sum to zero,
--   * the transaction exists (what the foreign key checked; transactions cannot be deleted, see 0001),
--   * the transaction row was written by this same database transaction: postings cannot be slipped into a
--     transaction committed earlier, not even balanced ones.
-- The transaction is looked up through its primary key once per transaction (the OFFSET 0 keeps the lookup a
-- nested index probe whatever the table's statistics say, never a scan of the whole table).
ALTER TABLE ledger_postings DROP CONSTRAINT ledger_postings_tx_seq_fkey;

CREATE OR REPLACE FUNCTION ledger_check_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    bad_seq BIGINT;
    problem TEXT;
BEGIN
    SELECT n.tx_seq,
           CASE WHEN n.total <> 0 THEN 'does not sum to zero'
                WHEN t.mine IS NULL THEN 'does not exist'
                ELSE 'was committed before: its postings are final' END
      INTO bad_seq, problem
      FROM (SELECT tx_seq, SUM(amount) AS total FROM new_postings GROUP BY tx_seq) n
      LEFT JOIN LATERAL (SELECT t.xmin = pg_current_xact_id()::xid AS mine
                           FROM ledger_transactions t
                          WHERE t.seq = n.tx_seq
                         OFFSET 0) t ON TRUE
     WHERE n.total <> 0 OR t.mine IS NOT TRUE
     LIMIT 1;
    IF bad_seq IS NOT NULL THEN
        RAISE EXCEPTION 'ledger transaction % %', bad_seq, problem USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END
$$;
