-- Takes the best ready ticket for `worker` (promoting due waiting tickets first), leases it until `deadline`
-- and returns {job, ticket, lease_id}, or false when nothing is ready. Arguments are ARGV-style strings:
-- now, deadline, worker, aging step in ms (0: none), lease id seed, promotion batch.
local function take_next(now_s, deadline_s, worker, step_s, seed, batch)
  local now = tonumber(now_s)
  local step = tonumber(step_s)

  -- Promote waiting tickets whose not_before has come, keeping their place by enqueued_at.
  for rank = 0, 3 do
    local due = redis.call('ZRANGEBYSCORE', waiting_key(rank), '-inf', now_s, 'LIMIT', 0, batch)
    if #due > 0 then
      for _, job in ipairs(due) do
        local _, enq = ticket(job)
        redis.call('ZADD', ready_key(rank), enq, job)
      end
      redis.call('ZREM', waiting_key(rank), unpack(due))
    end
  end

  -- The head of each ready set is the oldest of its rank, hence also the most aged: the best ticket is the
  -- best of the four heads by (effective rank, enqueued_at, job).
  local best_job, best_rank, best_eff, best_enq
  for rank = 0, 3 do
    local head = redis.call('ZRANGE', ready_key(rank), 0, 0, 'WITHSCORES')
    if head[1] then
      local job, enq = head[1], tonumber(head[2])
      local eff = rank
      if step > 0 and now > enq then
        eff = math.max(0, rank - floor_div(now - enq, step))
      end
      if not best_job or eff < best_eff or (eff == best_eff and (enq < best_enq or (enq == best_enq and job < best_job))) then
        best_job, best_rank, best_eff, best_enq = job, rank, eff, enq
      end
    end
  end
  if not best_job then
    return false
  end

  redis.call('ZREM', ready_key(best_rank), best_job)
  -- A fresh counter starts from a time-derived seed, so that lease ids issued after the data was lost (a flush,
  -- a failover without persistence) do not repeat the ones stale holders may still carry.
  if redis.call('EXISTS', KEYS[LEASE_SEQ]) == 0 then
    redis.call('SET', KEYS[LEASE_SEQ], seed)
  end
  local lease_id = int(redis.call('INCR', KEYS[LEASE_SEQ]))
  redis.call('ZADD', KEYS[IN_FLIGHT], deadline_s, best_job)
  redis.call('HSET', KEYS[LEASES], best_job, lease_id .. ' ' .. worker)
  return {best_job, redis.call('HGET', KEYS[TICKETS], best_job), lease_id}
end
