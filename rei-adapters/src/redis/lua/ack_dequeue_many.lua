-- Ack leases, then take up to max tickets for one worker, in one step.
-- ARGV: n, then n pairs job, lease_id, then dequeue's: now, lease deadline, worker, aging step, lease id seed,
-- promotion batch, max.
-- Returns {lost, taken}: the positions of the leases no longer held, and take_many's list.
local lost = ack_many(1)
local d = 2 + 2 * tonumber(ARGV[1])
return {lost, take_many(ARGV[d], ARGV[d + 1], ARGV[d + 2], ARGV[d + 3], ARGV[d + 4], ARGV[d + 5], ARGV[d + 6])}
