-- Adds tickets one by one in the order given, each exactly as a lone enqueue would at its place in that order:
-- a job that already has a ticket (waiting or in flight, or added earlier in this call) gets 0 and changes
-- nothing; else, when waiting plus in-flight tickets have reached the capacity, -1; else the ticket is added, 1.
-- A ticket due when it is enqueued (not_before <= enqueued_at) goes straight to the ready set of its rank, scored
-- by enqueued_at as a promotion would score it, so that dequeue has nothing to promote for it; the others go to
-- the waiting set of their rank, scored by not_before.
-- Stands alone (no prelude). KEYS: the tickets hash, the ready sets of ranks 0-3, the waiting sets of ranks 0-3.
-- ARGV: capacity, then job, rank, enqueued_at, not_before of each ticket.
-- Returns one status per ticket, in the order given.
local capacity = tonumber(ARGV[1])
local size = redis.call('HLEN', KEYS[1])
local out = {}
for i = 2, #ARGV, 4 do
  local job, rank, enq, nb = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2], ARGV[i + 3]
  local status = 0
  if size >= capacity then
    -- HEXISTS answers 1 for a job already present (status 0) and 0 for a new one (status -1, full).
    status = redis.call('HEXISTS', KEYS[1], job) - 1
  elseif redis.call('HSETNX', KEYS[1], job, ARGV[i + 1] .. ' ' .. enq .. ' ' .. nb) == 1 then
    size = size + 1
    if tonumber(nb) <= tonumber(enq) then
      redis.call('ZADD', KEYS[2 + rank], enq, job)
    else
      redis.call('ZADD', KEYS[6 + rank], nb, job)
    end
    status = 1
  end
  out[#out + 1] = status
end
return out
