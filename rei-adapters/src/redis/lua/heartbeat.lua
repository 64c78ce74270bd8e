-- ARGV: job, lease_id, now, new deadline. Returns 1 (extended) or 0 (lease lost).
local job = ARGV[1]
if not holds(job, ARGV[2]) then
  return 0
end
local deadline = redis.call('ZSCORE', KEYS[IN_FLIGHT], job)
if not deadline or tonumber(deadline) < tonumber(ARGV[3]) then
  return 0
end
redis.call('ZADD', KEYS[IN_FLIGHT], ARGV[4], job)
return 1
