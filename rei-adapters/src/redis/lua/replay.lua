-- ARGV: job, now, capacity. Returns 1 (done), -1 (queue full) or -2 (no dead letter for the job).
local job = ARGV[1]
if not redis.call('ZSCORE', KEYS[DEAD], job) then
  return -2
end
local present = redis.call('HEXISTS', KEYS[TICKETS], job) == 1
if not present and redis.call('HLEN', KEYS[TICKETS]) >= tonumber(ARGV[3]) then
  return -1
end
local info = redis.call('HGET', KEYS[DEAD_INFO], job)
local rank = info and string.match(info, '^([0-3]) ')
if not rank then
  error({err = 'ERR rei queue: corrupt dead letter for job ' .. job})
end
redis.call('ZREM', KEYS[DEAD], job)
redis.call('HDEL', KEYS[DEAD_INFO], job)
if not present then
  redis.call('HSET', KEYS[TICKETS], job, rank .. ' ' .. ARGV[2] .. ' ' .. ARGV[2])
  redis.call('ZADD', waiting_key(tonumber(rank)), ARGV[2], job)
end
return 1
