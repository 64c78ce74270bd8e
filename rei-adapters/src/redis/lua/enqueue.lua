-- Stands alone (no prelude) and gets only the keys it touches. KEYS: the tickets hash, then the set the ticket
-- enters: the ready set of its rank when it is due at once (scored by enqueued_at, as a promotion would, so that
-- dequeue has nothing to promote for it), else the waiting set of its rank (scored by not_before).
-- ARGV: job, rank, enqueued_at, not_before, capacity, score in that set.
-- Returns 1 (added), 0 (already waiting or in flight) or -1 (full).
local job = ARGV[1]
if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[5]) then
  if redis.call('HEXISTS', KEYS[1], job) == 1 then
    return 0
  end
  return -1
end
if redis.call('HSETNX', KEYS[1], job, ARGV[2] .. ' ' .. ARGV[3] .. ' ' .. ARGV[4]) == 0 then
  return 0
end
redis.call('ZADD', KEYS[2], ARGV[6], job)
return 1
