-- The ceiling of the PostgreSQL ledger schema: a pgbench script that writes, by hand and with no client-side
-- work, what the ledger writes for 32 hold -> capture cycles (64 operations): per batch one idempotency-key
-- lookup, one read of the rows it changes, and one data-modifying statement (transactions, postings, holds,
-- balances, the revenue shard), committed together. It skips what the adapter does besides (fingerprints,
-- the working set, overdraft and cap checks in Rust), so it bounds what any adapter on this schema can reach.
--
-- For a throwaway database only (its balances are funded without postings, so `rei verify` reports drift):
--   createdb ceiling && rei migrate --database-url postgres://.../ceiling
--   psql .../ceiling -c "INSERT INTO ledger_accounts (user_id, available) SELECT g, 1000000000 FROM generate_series(1, 20000) g"
--   pgbench -n -c 64 -j 2 -T 8 -M prepared -f scripts/ledger_ceiling.sql postgres://.../ceiling
-- Operations per second are pgbench's tps times 64.
\set u random(0, 19900)
\set r random(1, 2000000000)
BEGIN;
SELECT count(*) FROM ledger_transactions WHERE idem_key = ANY(ARRAY(SELECT 'h-' || :r || '-' || g FROM generate_series(1, 32) g));
SELECT user_id FROM ledger_accounts WHERE user_id BETWEEN :u + 1 AND :u + 32 ORDER BY user_id FOR UPDATE;
WITH v AS (SELECT :u + g AS uid, 'h-' || :r || '-' || g AS k FROM generate_series(1, 32) g),
t AS (INSERT INTO ledger_transactions (id, idem_key, fingerprint, kind, user_id, hold_id, amount, released, at_ms)
      SELECT decode(md5(k), 'hex'), k, 'fp', 'hold', uid, decode(md5('H' || k), 'hex'), 100, 0, 1 FROM v
      RETURNING seq, user_id, hold_id),
p AS (INSERT INTO ledger_postings (tx_seq, idx, account, user_id, amount)
      SELECT t.seq, i, CASE i WHEN 0 THEN 'available' ELSE 'held' END, t.user_id, CASE i WHEN 0 THEN -100 ELSE 100 END
      FROM t, generate_series(0, 1) i),
h AS (INSERT INTO ledger_holds (id, user_id, amount, state, created_ms, expires_ms)
      SELECT t.hold_id, t.user_id, 100, 'active', 1, 2 FROM t)
UPDATE ledger_accounts a SET available = available - 100, held = held + 100 FROM t WHERE a.user_id = t.user_id;
COMMIT;
BEGIN;
SELECT count(*) FROM ledger_transactions WHERE idem_key = ANY(ARRAY(SELECT 'ch-' || :r || '-' || g FROM generate_series(1, 32) g));
SELECT id FROM ledger_holds WHERE id = ANY(ARRAY(SELECT decode(md5('Hh-' || :r || '-' || g), 'hex') FROM generate_series(1, 32) g)) ORDER BY id FOR UPDATE;
SELECT user_id FROM ledger_accounts WHERE user_id BETWEEN :u + 1 AND :u + 32 ORDER BY user_id FOR UPDATE;
WITH v AS (SELECT :u + g AS uid, 'h-' || :r || '-' || g AS k FROM generate_series(1, 32) g),
t AS (INSERT INTO ledger_transactions (id, idem_key, fingerprint, kind, user_id, hold_id, amount, released, at_ms)
      SELECT decode(md5('C' || k), 'hex'), 'c' || k, 'fp', 'capture', uid, decode(md5('H' || k), 'hex'), 100, 0, 1 FROM v
      RETURNING seq, user_id, hold_id),
p AS (INSERT INTO ledger_postings (tx_seq, idx, account, user_id, amount)
      SELECT t.seq, i, CASE i WHEN 0 THEN 'held' ELSE 'revenue' END, CASE i WHEN 0 THEN t.user_id END,
             CASE i WHEN 0 THEN -100 ELSE 100 END
      FROM t, generate_series(0, 1) i),
h AS (UPDATE ledger_holds hh SET state = 'captured', captured = 100 FROM t WHERE hh.id = t.hold_id),
s AS (UPDATE ledger_system_accounts SET balance = balance + 3200 WHERE account = 'revenue' AND shard = :client_id % 16)
UPDATE ledger_accounts a SET held = held - 100 FROM t WHERE a.user_id = t.user_id;
COMMIT;
