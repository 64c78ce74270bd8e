-- ARGV: limit (at least 1). Returns {job, data, job, data, ...}, oldest first.
local jobs = redis.call('ZRANGE', KEYS[DEAD], 0, tonumber(ARGV[1]) - 1)
local out = {}
for _, job in ipairs(jobs) do
  out[#out + 1] = job
  out[#out + 1] = redis.call('HGET', KEYS[DEAD_INFO], job) or ''
end
return out
