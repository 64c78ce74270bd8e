-- Acks leases, in order, each as ack.lua would: ARGV[first] is their count n, then come n pairs job, lease_id.
-- Returns the positions (1-based) of the leases that were no longer held; a lease given twice is acked once.
local function ack_many(first)
  local n = tonumber(ARGV[first])
  local lost = {}
  if n < 1 then
    return lost
  end
  local jobs = {}
  for i = 1, n do
    jobs[i] = ARGV[first + 2 * i - 1]
  end
  local current = redis.call('HMGET', KEYS[LEASES], unpack(jobs))
  local acked, done = {}, {}
  for i, job in ipairs(jobs) do
    local l = current[i]
    if acked[job] or not l or string.match(l, '^(%d+) ') ~= ARGV[first + 2 * i] then
      lost[#lost + 1] = i
    else
      acked[job] = true
      done[#done + 1] = job
    end
  end
  if #done > 0 then
    redis.call('ZREM', KEYS[IN_FLIGHT], unpack(done))
    redis.call('HDEL', KEYS[LEASES], unpack(done))
    redis.call('HDEL', KEYS[TICKETS], unpack(done))
  end
  return lost
end
