-- Shared by every queue script but enqueue_many.lua. KEYS, always in this order; a script gets the shortest prefix
-- holding the keys it touches (1-11 to ack or heartbeat, 1-12 to lease, all 15 otherwise):
--   1-4   ready tickets, one sorted set per priority rank, scored by enqueued_at (ties: job id, as members
--         are fixed-width hex and Redis orders equal scores by member)
--   5-8   waiting tickets not yet promoted to ready, one sorted set per rank, scored by not_before
--   9     in-flight tickets, scored by lease deadline
--   10    tickets: job -> "rank enqueued_at not_before" for every waiting or in-flight job
--   11    leases: job -> "lease_id worker" for every in-flight job
--   12    lease id counter
--   13    dead letters: job, scored by a dead-letter sequence number (oldest first)
--   14    dead-letter data: job -> "rank enqueued_at not_before at error"
--   15    dead-letter sequence counter
-- Times and counters stay below 2^53, so Lua's doubles hold them exactly; numbers written back to Redis go
-- through int(), because Lua's own number-to-string conversion keeps only 14 digits.
local IN_FLIGHT, TICKETS, LEASES, LEASE_SEQ, DEAD, DEAD_INFO, DEAD_SEQ = 9, 10, 11, 12, 13, 14, 15

local function int(n)
  return string.format('%d', n)
end

local function ready_key(rank)
  return KEYS[1 + rank]
end

local function waiting_key(rank)
  return KEYS[5 + rank]
end

-- The ticket of a waiting or in-flight job: rank (a number), enqueued_at and not_before (decimal strings).
local function ticket(job)
  local t = redis.call('HGET', KEYS[TICKETS], job)
  if not t then
    error({err = 'ERR rei queue: no ticket for job ' .. job})
  end
  local rank, enq, nb = string.match(t, '^([0-3]) (%-?%d+) (%-?%d+)$')
  if not rank then
    error({err = 'ERR rei queue: corrupt ticket for job ' .. job})
  end
  return tonumber(rank), enq, nb
end

-- True when lease_id (a decimal string) is the current delivery of job.
local function holds(job, lease_id)
  local l = redis.call('HGET', KEYS[LEASES], job)
  return l ~= false and string.match(l, '^(%d+) ') == lease_id
end

-- Acks one delivery: when lease_id is the current delivery of job, removes the job's ticket and lease and
-- returns true; else changes nothing and returns false (the lease was lost).
local function ack_one(job, lease_id)
  if not holds(job, lease_id) then
    return false
  end
  redis.call('ZREM', KEYS[IN_FLIGHT], job)
  redis.call('HDEL', KEYS[LEASES], job)
  redis.call('HDEL', KEYS[TICKETS], job)
  return true
end

-- floor(a / b) for b >= 1, corrected for the rounding of the float division.
local function floor_div(a, b)
  local q = math.floor(a / b)
  if q * b > a then
    q = q - 1
  elseif (q + 1) * b <= a then
    q = q + 1
  end
  return q
end
