-- Returns waiting tickets per rank (ready plus not yet promoted), then in flight, then dead letters.
local out = {}
for rank = 0, 3 do
  out[#out + 1] = redis.call('ZCARD', ready_key(rank)) + redis.call('ZCARD', waiting_key(rank))
end
out[#out + 1] = redis.call('ZCARD', KEYS[IN_FLIGHT])
out[#out + 1] = redis.call('ZCARD', KEYS[DEAD])
return out
