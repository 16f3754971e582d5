-- get.lua: the bucket's state advanced to now (backend.Backend.Get). It
-- writes nothing: the advance is computed for the reply only.
--
-- ARGV: [1] clock. Reply: {} when the bucket does not exist, else the state
-- as state_reply renders it.
local now = clock(ARGV[1])
local s = load_state()
if not s then
  return {}
end
advance(s, now)
return state_reply(s)
