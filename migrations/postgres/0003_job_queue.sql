-- The SQL job queue: tickets waiting or leased to workers, dead letters, and the counts that bound both.
-- Ids are 16-byte big-endian BYTEA; times are BIGINT Unix milliseconds; enums are lowercase TEXT named in CHECK
-- constraints. The queue holds tickets, not jobs: the jobs table stays the record of truth.

-- One row per job with a ticket: `waiting` (ready, or delayed until not_before_ms) or `in_flight` (leased until
-- lease_deadline_ms under lease_id, which is new for every delivery so that a former holder's calls miss).
CREATE TABLE job_queue (
    job               BYTEA PRIMARY KEY CHECK (length(job) = 16),
    priority          TEXT NOT NULL CHECK (priority IN ('critical', 'high', 'normal', 'low')),
    -- The dequeue order sorts on the rank, so that an index can serve it.
    priority_rank     SMALLINT NOT NULL GENERATED ALWAYS AS (
                          CASE priority WHEN 'critical' THEN 0 WHEN 'high' THEN 1 WHEN 'normal' THEN 2 ELSE 3 END
                      ) STORED,
    state             TEXT NOT NULL CHECK (state IN ('waiting', 'in_flight')),
    enqueued_ms       BIGINT NOT NULL,
    not_before_ms     BIGINT NOT NULL,
    lease_id          BIGINT CHECK (lease_id > 0),
    lease_owner       TEXT CHECK (length(lease_owner) BETWEEN 1 AND 64),
    lease_deadline_ms BIGINT,
    -- A waiting ticket has no lease; a ticket in flight has all of it.
    CHECK ((state = 'waiting') = (lease_id IS NULL AND lease_owner IS NULL AND lease_deadline_ms IS NULL)),
    CHECK ((state = 'in_flight') = (lease_id IS NOT NULL AND lease_owner IS NOT NULL AND lease_deadline_ms IS NOT NULL))
);
-- dequeue without aging: the first waiting ticket in (rank, enqueued_ms, job) order whose not_before_ms has come.
CREATE INDEX job_queue_waiting ON job_queue (priority_rank, enqueued_ms, job) WHERE state = 'waiting';
-- reclaim_expired: leases whose deadline has passed.
CREATE INDEX job_queue_in_flight ON job_queue (lease_deadline_ms) WHERE state = 'in_flight';

-- Every delivery gets the next number; never reused, so a redelivered ticket never repeats an old lease id.
CREATE SEQUENCE job_queue_lease_ids AS BIGINT MINVALUE 1;

-- Tickets given up on, oldest first (seq), each with the last error. A job may be dead-lettered more than once.
CREATE TABLE job_dead_letters (
    seq           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job           BYTEA NOT NULL CHECK (length(job) = 16),
    priority      TEXT NOT NULL CHECK (priority IN ('critical', 'high', 'normal', 'low')),
    enqueued_ms   BIGINT NOT NULL,
    not_before_ms BIGINT NOT NULL,
    error         TEXT NOT NULL CHECK (octet_length(error) <= 512),
    dead_ms       BIGINT NOT NULL
);
-- replay_dead_letter: the oldest dead letter of one job.
CREATE INDEX job_dead_letters_job ON job_dead_letters (job, seq);

-- The sizes that the capacities bound, kept in the same transaction as every change of them so that a capacity
-- check is one row read instead of a count. Dequeue, reclaim and retry move tickets between states without
-- changing these, so the hot concurrent path never touches this row.
CREATE TABLE job_queue_counts (
    id           SMALLINT PRIMARY KEY CHECK (id = 1),
    tickets      BIGINT NOT NULL CHECK (tickets >= 0),
    dead_letters BIGINT NOT NULL CHECK (dead_letters >= 0)
);
INSERT INTO job_queue_counts (id, tickets, dead_letters) VALUES (1, 0, 0);
