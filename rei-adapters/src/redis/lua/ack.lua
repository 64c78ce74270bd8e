-- ARGV: job, lease_id. Returns 1 (removed) or 0 (lease lost).
local job = ARGV[1]
if not holds(job, ARGV[2]) then
  return 0
end
redis.call('ZREM', KEYS[IN_FLIGHT], job)
redis.call('HDEL', KEYS[LEASES], job)
redis.call('HDEL', KEYS[TICKETS], job)
return 1
