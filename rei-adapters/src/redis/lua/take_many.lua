-- Leases up to `max` ready tickets to `worker` until `deadline`: exactly the tickets, in the same order, that
-- `max` single takes would hand out (each promoting due waiting tickets first, then taking the best ready one),
-- stopping when nothing is ready. Returns a flat list {job, ticket, lease_id, job, ticket, lease_id, ...},
-- empty when nothing was taken. Arguments are ARGV-style strings: now, deadline, worker, aging step in ms
-- (0: none), lease id seed, promotion batch, max.
-- Heads of a ready set a first read asks for.
local HEAD_CHUNK = 4

local function take_many(now_s, deadline_s, worker, step_s, seed, batch_s, max_s)
  local now, step, batch, max = tonumber(now_s), tonumber(step_s), tonumber(batch_s), tonumber(max_s)
  local out = {}
  if max < 1 then
    return out
  end
  -- Empty sorted sets do not exist: one command finds an empty queue, and one finds nothing to promote.
  local waiting_keys = {waiting_key(0), waiting_key(1), waiting_key(2), waiting_key(3)}
  if redis.call('EXISTS', ready_key(0), ready_key(1), ready_key(2), ready_key(3), unpack(waiting_keys)) == 0 then
    return out
  end
  local waiting = redis.call('EXISTS', unpack(waiting_keys)) > 0

  -- Per rank (indexed rank + 1): the jobs at the head of its ready set read so far, in order; their enqueued_at
  -- (numbers, converted once per read; only with aging, for without it a rank's order is its set's order and
  -- ranks never mix); the position of the next one to consider; how many heads its last read asked for; the
  -- tickets taken from it and not yet removed from its ready set; and whether its last promotion moved a whole
  -- batch (then a single take would promote again before its pick).
  local heads, enqs, next_head, asked, pending, full = {}, {}, {}, {}, {}, {}

  -- Promotes waiting tickets whose not_before has come, keeping their place by enqueued_at.
  local function promote(rank)
    if not waiting then
      full[rank + 1] = false
      return
    end
    local due = redis.call('ZRANGEBYSCORE', waiting_key(rank), '-inf', now_s, 'LIMIT', 0, batch)
    if #due > 0 then
      local scored = {}
      for i, job in ipairs(due) do
        local _, enq = ticket(job)
        scored[2 * i - 1], scored[2 * i] = enq, job
      end
      redis.call('ZADD', ready_key(rank), unpack(scored))
      redis.call('ZREM', waiting_key(rank), unpack(due))
    end
    full[rank + 1] = #due >= batch
  end

  local function remove_pending(rank)
    if #pending[rank + 1] > 0 then
      redis.call('ZREM', ready_key(rank), unpack(pending[rank + 1]))
      pending[rank + 1] = {}
    end
  end

  -- Reads the first `want` tickets of a ready set: the head is the oldest of its rank, hence also the most
  -- aged, so taking heads in turn merges the four sets in the order single takes pick. Every value read costs
  -- the script a string (and a score a conversion), so a first read asks for HEAD_CHUNK, and a rank whose heads
  -- ran out is read again, for twice as many, only if its last read came back full.
  local function read_heads(rank, want)
    remove_pending(rank)
    local r = rank + 1
    if step > 0 then
      local scored = redis.call('ZRANGE', ready_key(rank), 0, want - 1, 'WITHSCORES')
      local jobs, times = {}, {}
      for i = 1, #scored, 2 do
        jobs[#jobs + 1] = scored[i]
        times[#times + 1] = tonumber(scored[i + 1])
      end
      heads[r], enqs[r] = jobs, times
    else
      heads[r] = redis.call('ZRANGE', ready_key(rank), 0, want - 1)
    end
    next_head[r] = 1
    asked[r] = want
  end

  for rank = 0, 3 do
    pending[rank + 1] = {}
    promote(rank)
  end

  local picked = {}
  while #picked < max do
    if #picked > 0 then
      for rank = 0, 3 do
        if full[rank + 1] then
          promote(rank)
          read_heads(rank, max - #picked)
        end
      end
    end
    -- The best ticket is the best of the four heads by (effective rank, enqueued_at, job); without aging, the
    -- head of the first rank that has one (so the ranks after it are not even read).
    local best_job, best_rank, best_eff, best_enq
    for rank = 0, 3 do
      local r = rank + 1
      if not heads[r] then
        read_heads(rank, math.min(max - #picked, HEAD_CHUNK))
      elseif next_head[r] > #heads[r] and #heads[r] == asked[r] then
        read_heads(rank, math.min(max - #picked, 2 * asked[r]))
      end
      local i = next_head[r]
      local job = heads[r][i]
      if job then
        if step == 0 then
          best_job, best_rank = job, rank
          break
        end
        local enq = enqs[r][i]
        local eff = rank
        if now > enq then
          eff = math.max(0, rank - floor_div(now - enq, step))
        end
        if not best_job or eff < best_eff or (eff == best_eff and (enq < best_enq or (enq == best_enq and job < best_job))) then
          best_job, best_rank, best_eff, best_enq = job, rank, eff, enq
        end
      end
    end
    if not best_job then
      break
    end
    next_head[best_rank + 1] = next_head[best_rank + 1] + 1
    local p = pending[best_rank + 1]
    p[#p + 1] = best_job
    picked[#picked + 1] = best_job
  end
  if #picked == 0 then
    return out
  end

  -- Every ready ticket has a ticket entry; a missing one is reported before anything is leased.
  local tickets = redis.call('HMGET', KEYS[TICKETS], unpack(picked))
  for i, job in ipairs(picked) do
    if not tickets[i] then
      error({err = 'ERR rei queue: no ticket for job ' .. job})
    end
  end
  for rank = 0, 3 do
    remove_pending(rank)
  end
  -- A fresh counter starts from a time-derived seed, so that lease ids issued after the data was lost (a flush,
  -- a failover without persistence) do not repeat the ones stale holders may still carry. INCRBY counts a
  -- missing counter from 0, so an answer of exactly #picked means it was missing (or held 0): then restart it.
  local first = redis.call('INCRBY', KEYS[LEASE_SEQ], #picked) - #picked
  if first == 0 then
    first = tonumber(seed)
    redis.call('SET', KEYS[LEASE_SEQ], int(first + #picked))
  end
  local in_flight, leases = {}, {}
  for i, job in ipairs(picked) do
    local lease_id = int(first + i)
    in_flight[2 * i - 1], in_flight[2 * i] = deadline_s, job
    leases[2 * i - 1], leases[2 * i] = job, lease_id .. ' ' .. worker
    out[3 * i - 2], out[3 * i - 1], out[3 * i] = job, tickets[i], lease_id
  end
  redis.call('ZADD', KEYS[IN_FLIGHT], unpack(in_flight))
  redis.call('HSET', KEYS[LEASES], unpack(leases))
  return out
end
