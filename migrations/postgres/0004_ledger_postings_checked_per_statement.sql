-- Postings are checked once per INSERT statement instead of once per row: the foreign key to
-- ledger_transactions ran one lookup per posting, which cost about a third of the database's time per ledger
-- operation. The statement-level trigger now checks, for every transaction a statement adds postings to, that
--   * the postings sum to zero,
--   * the transaction exists (what the foreign key checked; transactions cannot be deleted, see 0001),
--   * the statement wrote all of the transaction's postings: none can be slipped into a transaction written
--     earlier, even balanced ones.
ALTER TABLE ledger_postings DROP CONSTRAINT ledger_postings_tx_seq_fkey;

CREATE OR REPLACE FUNCTION ledger_check_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    bad_seq BIGINT;
    problem TEXT;
BEGIN
    SELECT n.tx_seq,
           CASE WHEN n.total <> 0 THEN 'does not sum to zero'
                WHEN t.seq IS NULL THEN 'does not exist'
                ELSE 'already has postings' END
      INTO bad_seq, problem
      FROM (SELECT tx_seq, SUM(amount) AS total, COUNT(*) AS n FROM new_postings GROUP BY tx_seq) n
      LEFT JOIN ledger_transactions t ON t.seq = n.tx_seq
     WHERE n.total <> 0
        OR t.seq IS NULL
        OR (SELECT COUNT(*) FROM ledger_postings p WHERE p.tx_seq = n.tx_seq) <> n.n
     LIMIT 1;
    IF bad_seq IS NOT NULL THEN
        RAISE EXCEPTION 'ledger transaction % %', bad_seq, problem USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END
$$;
