-- Adds tickets in the order given, each exactly as a lone enqueue would at its place in that order: a job that
-- already has a ticket (waiting or in flight, or added earlier in this call) gets 0 and changes nothing; else,
-- when waiting plus in-flight tickets have reached the capacity, -1; else the ticket is added, 1.
-- A ticket due when it is enqueued (not_before <= enqueued_at) goes straight to the ready set of its rank, scored
-- by enqueued_at as a promotion would score it, so that dequeue has nothing to promote for it; the others go to
-- the waiting set of their rank, scored by not_before.
-- The outcomes are decided in Lua from one read of the tickets hash, then written with one HSET and at most one
-- ZADD per set touched: a call from Lua costs Redis more than the command itself, so commands per ticket would
-- make the call glue most of the script's time. The caller bounds the tickets per call (unpack's stack).
-- Stands alone (no prelude). KEYS: the tickets hash, the ready sets of ranks 0-3, the waiting sets of ranks 0-3.
-- ARGV: capacity, then for each ticket: job; the KEYS index of the set it goes to (2-5 ready, 6-9 waiting, as
-- the caller decided from its rank and times); its score there; its tickets-hash value ("rank enqueued_at
-- not_before"). The caller builds the last three, so that the script parses and builds no numbers or strings.
-- Returns one status per ticket, in the order given.
local capacity = tonumber(ARGV[1])
local n = (#ARGV - 1) / 4
local out = {}
if n < 1 then
  return out
end
local jobs = {}
for k = 1, n do
  jobs[k] = ARGV[4 * k - 2]
end
local present = redis.call('HMGET', KEYS[1], unpack(jobs))
local size = redis.call('HLEN', KEYS[1])
-- Per set (its KEYS index, as given): its {score, job, ...} to add.
local added, fields, sets = {}, {}, {}
for k = 1, n do
  local i = 4 * k - 2
  local job = jobs[k]
  if present[k] or added[job] then
    out[k] = 0
  elseif size >= capacity then
    out[k] = -1
  else
    added[job] = true
    size = size + 1
    fields[#fields + 1] = job
    fields[#fields + 1] = ARGV[i + 3]
    local key = ARGV[i + 1]
    local set = sets[key]
    if not set then
      set = {}
      sets[key] = set
    end
    set[#set + 1] = ARGV[i + 2]
    set[#set + 1] = job
    out[k] = 1
  end
end
if #fields > 0 then
  redis.call('HSET', KEYS[1], unpack(fields))
  for key, set in pairs(sets) do
    redis.call('ZADD', KEYS[tonumber(key)], unpack(set))
  end
end
return out
