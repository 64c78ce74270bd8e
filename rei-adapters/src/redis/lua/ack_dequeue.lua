-- Ack one lease and take the next ticket for the same worker, in one step.
-- ARGV: job, lease_id, then dequeue's: now, lease deadline, worker, aging step, lease id seed, promotion batch.
-- Returns 0 (the lease was lost: nothing acked, nothing taken), 1 (acked, nothing ready), or
-- {job, ticket, lease_id} (acked, and this ticket is leased).
if not ack_one(ARGV[1], ARGV[2]) then
  return 0
end
local taken = take_many(ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], '1')
if #taken == 0 then
  return 1
end
return taken
