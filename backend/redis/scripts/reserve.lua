-- reserve.lua: check-and-reserve in one bucket (backend.Backend.Reserve).
--
-- ARGV: [1] clock, [2] reservation id, [3] reservation TTL (microseconds),
-- then the cost vector (no amount negative), then the default limits for a
-- new bucket.
-- Reply: {allowed "1"|"0", retry after (microseconds), reason, taken vector}.
--
-- The bucket's expired reservations (up to RECLAIM_BATCH) are reclaimed first,
-- so that a crashed replica's reservations (a stuck probe, above all) stop
-- counting as soon as the bucket is used again. A reservation id that is
-- already recorded is admitted again with its recorded taken vector, taking
-- nothing. A denial on an existing bucket writes nothing.
local now = clock(ARGV[1])
local id = ARGV[2]
local ttl = read_number(3)
local cost, pos = read_amounts(4, 'cost')
local defaults = read_vector(pos)

local s = load_state()
local dirty = false
if not s then
  s = new_state(now, defaults)
  dirty = true
end
if reclaim(s, now, RECLAIM_BATCH) > 0 then
  dirty = true
end

local prior = redis.call('HGET', KEYS[3], id)
if prior then
  if dirty then
    save_state(s, now, false)
  end
  return {'1', '0', '', prior}
end

local allowed, wait, reason, taken = reserve(s, now, cost)
local encoded = encode_vector(taken)
if allowed then
  local deadline = now + ttl
  redis.call('HSET', KEYS[3], id, encoded)
  redis.call('ZADD', KEYS[2], num(deadline), id)
  s.res_until = math.max(s.res_until, deadline)
  save_state(s, now, true)
elseif dirty then
  save_state(s, now, false)
end
return {allowed and '1' or '0', num(wait), reason, encoded}
