-- ARGV: job, lease_id. Returns 1 (removed) or 0 (lease lost).
if ack_one(ARGV[1], ARGV[2]) then
  return 1
end
return 0
