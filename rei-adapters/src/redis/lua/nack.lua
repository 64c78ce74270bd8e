-- ARGV: job, lease_id, retry_at ('' for a dead letter), now, error, dead-letter capacity.
-- Returns 1 (done), 0 (lease lost) or -1 (dead letters full; the lease is kept).
local job = ARGV[1]
if not holds(job, ARGV[2]) then
  return 0
end
local rank, enq, nb = ticket(job)
if ARGV[3] ~= '' then
  redis.call('HSET', KEYS[TICKETS], job, int(rank) .. ' ' .. enq .. ' ' .. ARGV[3])
  redis.call('ZADD', waiting_key(rank), ARGV[3], job)
else
  -- One dead letter per job: a job given up again replaces its earlier letter, so that does not grow the list.
  if not redis.call('ZSCORE', KEYS[DEAD], job) and redis.call('ZCARD', KEYS[DEAD]) >= tonumber(ARGV[6]) then
    return -1
  end
  redis.call('ZADD', KEYS[DEAD], int(redis.call('INCR', KEYS[DEAD_SEQ])), job)
  redis.call('HSET', KEYS[DEAD_INFO], job, int(rank) .. ' ' .. enq .. ' ' .. nb .. ' ' .. ARGV[4] .. ' ' .. ARGV[5])
  redis.call('HDEL', KEYS[TICKETS], job)
end
redis.call('ZREM', KEYS[IN_FLIGHT], job)
redis.call('HDEL', KEYS[LEASES], job)
return 1
