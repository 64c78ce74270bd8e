-- ARGV: job, rank, enqueued_at, not_before, capacity.
-- Returns 1 (added), 0 (already waiting or in flight) or -1 (full).
local job = ARGV[1]
if redis.call('HEXISTS', KEYS[TICKETS], job) == 1 then
  return 0
end
if redis.call('HLEN', KEYS[TICKETS]) >= tonumber(ARGV[5]) then
  return -1
end
redis.call('HSET', KEYS[TICKETS], job, ARGV[2] .. ' ' .. ARGV[3] .. ' ' .. ARGV[4])
-- A ticket due when it is enqueued goes straight to the ready set (scored by enqueued_at, as a promotion
-- would), so that dequeue has nothing to promote for it.
if tonumber(ARGV[4]) <= tonumber(ARGV[3]) then
  redis.call('ZADD', ready_key(tonumber(ARGV[2])), ARGV[3], job)
else
  redis.call('ZADD', waiting_key(tonumber(ARGV[2])), ARGV[4], job)
end
return 1
