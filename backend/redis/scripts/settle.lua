-- settle.lua: end a reservation with its actual usage (backend.Backend.Settle).
--
-- ARGV: [1] clock, [2] reservation id, then the actual usage vector (no
-- amount negative), the
-- default limits for a bucket the observation creates, and "1" followed by
-- the observation, or "0" alone.
-- Reply: {found "1"|"0", taken vector or ""}.
--
-- The observation (the response headers, folded into the same round trip) is
-- applied first. An actual usage of all zeros releases the reservation
-- entirely. An id that is not recorded (unknown, settled, or recovered as an
-- orphan) changes nothing but the observation. When the bucket's state is
-- gone (expired or evicted) while its reservation record is not, the record is
-- dropped and reported as not found: there is nothing left to refund into.
local now = clock(ARGV[1])
local id = ARGV[2]
local actual, pos = read_amounts(3, 'usage')
local defaults
defaults, pos = read_vector(pos)
local has_obs = ARGV[pos] == '1'

local s = load_state()
local dirty = false
if has_obs then
  if not s then
    s = new_state(now, defaults)
  end
  observe(s, now, (read_observation(pos + 1)))
  dirty = true
end

local recorded = redis.call('HGET', KEYS[3], id)
if not recorded then
  if dirty then
    save_state(s, now, false)
  end
  return {'0', ''}
end
redis.call('HDEL', KEYS[3], id)
redis.call('ZREM', KEYS[2], id)
if not s then
  return {'0', ''}
end
settle(s, now, decode_vector(recorded), actual)
save_state(s, now, false)
return {'1', recorded}
