-- Gcra::check of rei-core, relative to now so that every value stays exact in Lua's doubles.
-- KEYS[1]: the key's TAT (Unix ms). ARGV: now, rate, period_ms, burst, cost, expiry slack ms, largest TAT lead.
-- Returns {1, new_tat} (allowed, saved), {0, retry_after_ms} (denied, nothing changed) or {2, 0} (the stored
-- TAT is too far ahead for exact arithmetic here; the caller decides with compare-and-set instead).
-- Ticks: one millisecond is `rate` ticks and one unit costs `period_ms` ticks, as in Gcra::check.
local function int(n)
  return string.format('%d', n)
end

-- ceil(a / b) for a >= 0, b >= 1, corrected for the rounding of the float division.
local function ceil_div(a, b)
  local q = math.floor(a / b)
  if q * b > a then
    q = q - 1
  elseif (q + 1) * b <= a then
    q = q + 1
  end
  if q * b < a then
    q = q + 1
  end
  return q
end

local now, rate, unit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local burst, cost = tonumber(ARGV[4]), tonumber(ARGV[5])
local lead = 0
local stored = redis.call('GET', KEYS[1])
if stored then
  local tat = tonumber(stored)
  if not tat or not string.match(stored, '^%-?%d+$') then
    error({err = 'ERR rei rate limiter: corrupt TAT at ' .. KEYS[1]})
  end
  if tat > now then
    lead = tat - now
  end
end
if lead > tonumber(ARGV[7]) then
  return {2, 0}
end
-- The new TAT and the earliest admission, in ticks after now.
local new_tat_ticks = lead * rate + cost * unit
local allow_at_ticks = new_tat_ticks - burst * unit
if allow_at_ticks <= 0 then
  local ahead = ceil_div(new_tat_ticks, rate)
  if ahead > 0 then
    redis.call('SET', KEYS[1], int(now + ahead), 'PX', int(ahead + tonumber(ARGV[6])))
  else
    -- A TAT not after now decides as an absent key.
    redis.call('DEL', KEYS[1])
  end
  return {1, int(now + ahead)}
end
return {0, int(ceil_div(allow_at_ticks, rate))}
