-- KEYS[1]: a TAT. ARGV: the expected stored value ('' when absent), the new TAT, its time to live in ms
-- ('0': delete the key). Returns 1 when the stored value was the expected one and was replaced, else 0.
if (redis.call('GET', KEYS[1]) or '') ~= ARGV[1] then
  return 0
end
if ARGV[3] == '0' then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
end
return 1
