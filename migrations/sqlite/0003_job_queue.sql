-- The SQL job queue: tickets waiting or leased to workers, dead letters, and the counts that bound both.
-- Ids are 16-byte big-endian BLOBs; times are INTEGER Unix milliseconds; enums are lowercase TEXT named in CHECK
-- constraints; tables are STRICT. The queue holds tickets, not jobs: the jobs table stays the record of truth.

-- One row per job with a ticket: `waiting` (ready, or delayed until not_before_ms) or `in_flight` (leased until
-- lease_deadline_ms under lease_id, which is new for every delivery so that a former holder's calls miss).
CREATE TABLE job_queue (
    job               BLOB PRIMARY KEY CHECK (length(job) = 16),
    priority          TEXT NOT NULL CHECK (priority IN ('critical', 'high', 'normal', 'low')),
    -- The dequeue order sorts on the rank, so that an index can serve it.
    priority_rank     INTEGER NOT NULL GENERATED ALWAYS AS (
                          CASE priority WHEN 'critical' THEN 0 WHEN 'high' THEN 1 WHEN 'normal' THEN 2 ELSE 3 END
                      ) STORED,
    state             TEXT NOT NULL CHECK (state IN ('waiting', 'in_flight')),
    enqueued_ms       INTEGER NOT NULL,
    not_before_ms     INTEGER NOT NULL,
    lease_id          INTEGER CHECK (lease_id > 0),
    lease_owner       TEXT CHECK (length(lease_owner) BETWEEN 1 AND 64),
    lease_deadline_ms INTEGER,
    -- A waiting ticket has no lease; a ticket in flight has all of it.
    CHECK ((state = 'waiting') = (lease_id IS NULL AND lease_owner IS NULL AND lease_deadline_ms IS NULL)),
    CHECK ((state = 'in_flight') = (lease_id IS NOT NULL AND lease_owner IS NOT NULL AND lease_deadline_ms IS NOT NULL))
) STRICT;
-- dequeue without aging: the first waiting ticket in (rank, enqueued_ms, job) order whose not_before_ms has come.
-- Not a partial index: without statistics SQLite may not pick a partial one; the state leads instead.
CREATE INDEX job_queue_waiting ON job_queue (state, priority_rank, enqueued_ms, job);
-- reclaim_expired: leases whose deadline has passed.
CREATE INDEX job_queue_in_flight ON job_queue (state, lease_deadline_ms);

-- Tickets given up on, oldest first (seq), each with the last error. A job may be dead-lettered more than once.
CREATE TABLE job_dead_letters (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    job           BLOB NOT NULL CHECK (length(job) = 16),
    priority      TEXT NOT NULL CHECK (priority IN ('critical', 'high', 'normal', 'low')),
    enqueued_ms   INTEGER NOT NULL,
    not_before_ms INTEGER NOT NULL,
    error         TEXT NOT NULL CHECK (length(CAST(error AS BLOB)) <= 512),
    dead_ms       INTEGER NOT NULL
) STRICT;
-- replay_dead_letter: the oldest dead letter of one job.
CREATE INDEX job_dead_letters_job ON job_dead_letters (job, seq);

-- The sizes that the capacities bound, kept in the same transaction as every change of them so that a capacity
-- check is one row read instead of a count, and the last lease id handed out (SQLite has no sequences; every
-- delivery takes the next number, never reused).
CREATE TABLE job_queue_counts (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    tickets       INTEGER NOT NULL CHECK (tickets >= 0),
    dead_letters  INTEGER NOT NULL CHECK (dead_letters >= 0),
    last_lease_id INTEGER NOT NULL CHECK (last_lease_id >= 0)
) STRICT;
INSERT INTO job_queue_counts (id, tickets, dead_letters, last_lease_id) VALUES (1, 0, 0, 0);
