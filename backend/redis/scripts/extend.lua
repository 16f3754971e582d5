-- extend.lua: renew the lease of a reservation in flight
-- (backend.Backend.Extend).
--
-- ARGV: [1] clock, [2] reservation id, [3] TTL (microseconds).
-- Reply: {found "1"|"0"}.
--
-- The reservation's deadline moves to now + TTL when that is later, and the
-- bucket's keys are kept alive past it. A reservation that is not recorded
-- (settled, recovered, unknown), or whose bucket state is gone, is not found
-- and nothing is written.
local now = clock(ARGV[1])
local id = ARGV[2]
local ttl = read_number(3)

local s = load_state()
if not s then
  return {'0'}
end
local deadline = redis.call('ZSCORE', KEYS[2], id)
if not deadline then
  return {'0'}
end
local want = now + ttl
if want > tonumber(deadline) then
  redis.call('ZADD', KEYS[2], num(want), id)
  if want > s.res_until then
    s.res_until = want
    save_state(s, now, false)
  end
end
return {'1'}
