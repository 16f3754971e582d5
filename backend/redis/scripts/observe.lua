-- observe.lua: apply what a provider answer taught (backend.Backend.Observe):
-- limits and remaining values from a 2xx answer's headers, holds until reset,
-- and the whole-bucket block of a 429 (or any answer with retry-after).
--
-- ARGV: [1] clock, then the observation, then the default limits for a new
-- bucket. Reply: {"1"}.
local now = clock(ARGV[1])
local o, pos = read_observation(2)
local defaults = read_vector(pos)

local s = load_state() or new_state(now, defaults)
observe(s, now, o)
save_state(s, now, false)
return {'1'}
