-- ledger_verify() reports its sums as NUMERIC: SUM over BIGINT is exact in PostgreSQL, and casting it back to
-- BIGINT could fail on a damaged ledger, which verify must report rather than refuse to read. The rules that
-- decide what is wrong (drift, unbalanced, below the floor, total) live in the application, shared by every
-- engine; this function only aggregates.
DROP FUNCTION ledger_verify();

CREATE FUNCTION ledger_verify()
RETURNS TABLE (account TEXT, user_id BIGINT, cached NUMERIC, recomputed NUMERIC)
LANGUAGE sql STABLE AS $$
    WITH sums AS (
        SELECT p.account, p.user_id, SUM(p.amount) AS total,
               p.account || ':' || COALESCE(p.user_id::TEXT, '') AS k
        FROM ledger_postings p GROUP BY p.account, p.user_id
    ), cached AS (
        SELECT 'available'::TEXT AS account, a.user_id, a.available::NUMERIC AS balance, 'available:' || a.user_id AS k
        FROM ledger_accounts a
        UNION ALL
        SELECT 'held', a.user_id, a.held::NUMERIC, 'held:' || a.user_id FROM ledger_accounts a
        UNION ALL
        SELECT s.account, NULL::BIGINT, SUM(s.balance), s.account || ':' FROM ledger_system_accounts s
        GROUP BY s.account
    )
    SELECT COALESCE(c.account, s.account), COALESCE(c.user_id, s.user_id), COALESCE(c.balance, 0), COALESCE(s.total, 0)
    FROM cached c FULL OUTER JOIN sums s ON c.k = s.k
    WHERE COALESCE(c.balance, 0) <> COALESCE(s.total, 0)
$$;
