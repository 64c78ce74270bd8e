-- ARGV: now, lease deadline, worker, aging step in ms (0: none), lease id seed, promotion batch, max.
-- Returns take_many's list: {job, ticket, lease_id, ...}, empty when nothing is ready.
return take_many(ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7])
