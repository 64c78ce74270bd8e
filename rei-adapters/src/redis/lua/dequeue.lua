-- ARGV: now, lease deadline, worker, aging step in ms (0: none), lease id seed, promotion batch.
-- Returns {job, ticket, lease_id} or nil.
return take_next(ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6])
