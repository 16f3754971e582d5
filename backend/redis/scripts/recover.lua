-- recover.lua: orphan recovery of one bucket (one page of
-- backend.Backend.RecoverOrphans): end up to a batch of reservations whose
-- deadline has passed, releasing what they took.
--
-- ARGV: [1] clock, [2] batch size. Reply: {number ended}; a reply equal to the
-- batch size means more may remain.
local now = clock(ARGV[1])
local batch = read_number(2)

local s = load_state()
local n = reclaim(s, now, batch)
if n > 0 and s then
  save_state(s, now, false)
end
return {num(n)}
