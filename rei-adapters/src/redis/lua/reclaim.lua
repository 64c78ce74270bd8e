-- ARGV: now, batch. Puts up to batch leases whose deadline is before now back to waiting; returns how many.
local expired = redis.call('ZRANGEBYSCORE', KEYS[IN_FLIGHT], '-inf', '(' .. ARGV[1], 'LIMIT', 0, ARGV[2])
for _, job in ipairs(expired) do
  local rank, _, nb = ticket(job)
  redis.call('ZADD', waiting_key(rank), nb, job)
  redis.call('HDEL', KEYS[LEASES], job)
end
if #expired > 0 then
  redis.call('ZREM', KEYS[IN_FLIGHT], unpack(expired))
end
return #expired
