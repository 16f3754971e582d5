-- prelude.lua: the accounting arithmetic of limiter/bucket (state.go), ported
-- to Redis Lua. It is concatenated, after a header of constants generated from
-- the Go package (NDIM, DIM_NAMES, DEFAULT_WINDOW, ...), in front of every
-- operation script, so that each operation runs as one atomic script and the
-- arithmetic has one source here.
--
-- Units: times and durations are microseconds (Redis TIME precision), times
-- are microseconds since the Unix epoch, and 0 stands for "no time" (Go's
-- zero time.Time). Amounts are Lua numbers (doubles): exact up to 2^53.
--
-- Every script receives the same three keys of one bucket, which share one
-- cluster hash tag:
--   KEYS[1] state  hash: meta fields and one field per dimension
--   KEYS[2] res    sorted set: reservation id -> deadline (microseconds)
--   KEYS[3] taken  hash: reservation id -> taken vector ("1,0,600,...")
-- ARGV[1] is always the clock: empty for Redis TIME (production), or a fixed
-- instant in microseconds (tests that step through instants).

-- num renders a number without losing precision. Redis converts Lua numbers
-- handed to redis.call with 14 significant digits, which would truncate
-- microsecond timestamps: every number written or returned goes through num.
local function num(x)
  if x == 0 then
    return '0' -- most fields of most states: skip the formatting
  end
  return string.format('%.17g', x)
end

-- UNKNOWN_DIM is the stored form of a dimension about which nothing is known.
local UNKNOWN_DIM = '0,0,0,0,0'

-- encode_dim renders a dimension for its state field.
local function encode_dim(d)
  if d.limit == 0 and d.window == 0 and d.level == 0 and d.hold_until == 0 and d.hold_refill == 0 then
    return UNKNOWN_DIM
  end
  return num(d.limit) .. ',' .. num(d.window) .. ',' .. num(d.level) .. ',' .. num(d.hold_until) .. ',' .. num(d.hold_refill)
end

local function clock(arg)
  local t = tonumber(arg)
  if t then
    return t
  end
  local tm = redis.call('TIME')
  return tonumber(tm[1]) * 1000000 + tonumber(tm[2])
end

-- read_number returns ARGV[pos] as a number, failing the script when it is
-- not one (a caller bug, never silently zero).
local function read_number(pos)
  local v = tonumber(ARGV[pos])
  if not v then
    error('arl: argument ' .. pos .. ' is not a number: ' .. tostring(ARGV[pos]))
  end
  return v
end

-- read_vector reads NDIM numbers from ARGV starting at pos; it returns the
-- vector and the position after it.
local function read_vector(pos)
  local v = {}
  for i = 1, NDIM do
    v[i] = read_number(pos + i - 1)
  end
  return v, pos + NDIM
end

-- read_amounts reads a vector of amounts (a cost, or a usage, as what says)
-- like read_vector, and refuses a negative amount with an error reply that
-- starts with ARLINVALID, which Go decodes to backend.ErrInvalid. Scripts
-- read their amounts before they write anything.
local function read_amounts(pos, what)
  local v, after = read_vector(pos)
  for i = 1, NDIM do
    if v[i] < 0 then
      error({err = 'ARLINVALID ' .. what .. ' ' .. num(v[i]) .. ' in ' .. DIM_NAMES[i] .. ' is negative'})
    end
  end
  return v, after
end

-- read_observation reads an observation from ARGV starting at pos: at,
-- retry_after, reason, then per dimension limit, remaining, has_remaining,
-- reset, window. It returns the observation and the position after it.
local function read_observation(pos)
  local o = {at = read_number(pos), retry_after = read_number(pos + 1), reason = ARGV[pos + 2], dims = {}}
  pos = pos + 3
  for i = 1, NDIM do
    o.dims[i] = {
      limit = read_number(pos),
      remaining = read_number(pos + 1),
      has_remaining = ARGV[pos + 2] == '1',
      reset = read_number(pos + 3),
      window = read_number(pos + 4),
    }
    pos = pos + 5
  end
  return o, pos
end

local function encode_vector(v)
  local parts = {}
  for i = 1, NDIM do
    parts[i] = num(v[i])
  end
  return table.concat(parts, ',')
end

local function decode_vector(s)
  local v, i = {}, 0
  for part in string.gmatch(s, '[^,]+') do
    i = i + 1
    v[i] = tonumber(part)
    if not v[i] then
      error('arl: corrupt vector: ' .. s)
    end
  end
  if i ~= NDIM then
    error('arl: corrupt vector: ' .. s)
  end
  return v
end

local function zero_vector()
  local v = {}
  for i = 1, NDIM do
    v[i] = 0
  end
  return v
end

local function new_dim()
  return {limit = 0, window = 0, level = 0, hold_until = 0, hold_refill = 0}
end

-- new_state is bucket.New: every dimension with a default limit is known and full.
local function new_state(now, limits)
  local s = {updated = now, blocked_until = 0, block_reason = '', learned = false,
    inflight = 0, observed_at = 0, res_until = 0, expires_at = 0, dims = {}}
  for i = 1, NDIM do
    local d = new_dim()
    if limits[i] > 0 then
      d.limit, d.window, d.level = limits[i], DEFAULT_WINDOW[i], limits[i]
    end
    s.dims[i] = d
  end
  return s
end

local function meta_number(h, field)
  local raw = h[field]
  if raw == nil then
    return 0
  end
  local v = tonumber(raw)
  if not v then
    error('arl: corrupt state field ' .. field .. ': ' .. raw)
  end
  return v
end

-- load_state reads the bucket's state hash; nil when the bucket does not exist.
local function load_state()
  local raw = redis.call('HGETALL', KEYS[1])
  if #raw == 0 then
    return nil
  end
  local h = {}
  for i = 1, #raw, 2 do
    h[raw[i]] = raw[i + 1]
  end
  local s = {
    updated = meta_number(h, 'updated'),
    blocked_until = meta_number(h, 'blocked_until'),
    block_reason = h.block_reason or '',
    learned = h.learned == '1',
    inflight = meta_number(h, 'inflight'),
    observed_at = meta_number(h, 'observed_at'),
    res_until = meta_number(h, 'res_until'),
    expires_at = meta_number(h, 'expires_at'),
    dims = {},
  }
  for i = 1, NDIM do
    local d = new_dim()
    local f = h[DIM_NAMES[i]]
    if f and f ~= UNKNOWN_DIM then
      local a, b, c, e, g = string.match(f, '^([^,]+),([^,]+),([^,]+),([^,]+),([^,]+)$')
      d.limit, d.window, d.level = tonumber(a), tonumber(b), tonumber(c)
      d.hold_until, d.hold_refill = tonumber(e), tonumber(g)
      if not (d.limit and d.window and d.level and d.hold_until and d.hold_refill) then
        error('arl: corrupt state field ' .. DIM_NAMES[i] .. ': ' .. f)
      end
    end
    s.dims[i] = d
  end
  return s
end

-- expiry returns the instant until which the bucket's keys must live: the
-- idle TTL from now, extended to outlive the longest window, any hold or
-- block, and the latest reservation deadline, each by TTL_MARGIN.
local function expiry(s, now)
  local ttl = IDLE_TTL
  for i = 1, NDIM do
    local d = s.dims[i]
    ttl = math.max(ttl, d.window + TTL_MARGIN, d.hold_until - now + TTL_MARGIN)
  end
  ttl = math.max(ttl, s.blocked_until - now + TTL_MARGIN, s.res_until - now + TTL_MARGIN)
  return now + ttl
end

-- save_state writes the whole state and keeps the bucket's keys alive. The
-- expiry last set on the keys is kept in the state (expires_at); a write sets
-- it again only when it would end more than TTL_SLACK (less than TTL_MARGIN)
-- before the one needed now, so most writes pay no PEXPIRE. reserved says a
-- reservation was just added: the reservation keys, which may have just been
-- created, get the expiry too.
local function save_state(s, now, reserved)
  local want = expiry(s, now)
  local refresh = want > s.expires_at + TTL_SLACK
  if refresh then
    s.expires_at = want
  end
  local args = {
    'updated', num(s.updated),
    'blocked_until', num(s.blocked_until),
    'block_reason', s.block_reason,
    'learned', s.learned and '1' or '0',
    'inflight', num(s.inflight),
    'observed_at', num(s.observed_at),
    'res_until', num(s.res_until),
    'expires_at', num(s.expires_at),
  }
  for i = 1, NDIM do
    args[#args + 1] = DIM_NAMES[i]
    args[#args + 1] = encode_dim(s.dims[i])
  end
  redis.call('HSET', KEYS[1], unpack(args))
  if refresh or reserved then
    local ms = num(math.ceil((s.expires_at - now) / 1000))
    if refresh then
      redis.call('PEXPIRE', KEYS[1], ms)
    end
    redis.call('PEXPIRE', KEYS[2], ms)
    redis.call('PEXPIRE', KEYS[3], ms)
  end
end

-- state_reply is the state as the flat list of strings that Go decodes:
-- updated, blocked_until, block_reason, learned, inflight, observed_at, then
-- per dimension limit, window, level, hold_until, hold_refill.
local function state_reply(s)
  local r = {num(s.updated), num(s.blocked_until), s.block_reason, s.learned and '1' or '0',
    num(s.inflight), num(s.observed_at)}
  for i = 1, NDIM do
    local d = s.dims[i]
    r[#r + 1] = num(d.limit)
    r[#r + 1] = num(d.window)
    r[#r + 1] = num(d.level)
    r[#r + 1] = num(d.hold_until)
    r[#r + 1] = num(d.hold_refill)
  end
  return r
end

-- rate is Dim.rate: the refill rate in units per microsecond, 0 when unknown.
local function rate(d)
  if d.limit <= 0 or d.window <= 0 then
    return 0
  end
  return d.limit / d.window
end

-- clamp is Dim.clamp: the level never exceeds a known capacity.
local function clamp(d)
  if d.limit > 0 and d.level > d.limit then
    d.level = d.limit
  end
end

-- known is State.Known.
local function known(s)
  for i = 1, NDIM do
    if s.dims[i].limit > 0 then
      return true
    end
  end
  return false
end

-- advance is State.Advance: refill up to now, and end holds whose reset has
-- come. An instant not after updated changes nothing.
local function advance(s, now)
  if now <= s.updated then
    return
  end
  for i = 1, NDIM do
    local d = s.dims[i]
    local from = s.updated
    local held = false
    if d.hold_until ~= 0 then
      if now < d.hold_until then
        held = true
      else
        d.level = d.level + d.hold_refill
        from = d.hold_until
        d.hold_until, d.hold_refill = 0, 0
      end
    end
    if not held then
      d.level = d.level + rate(d) * (now - from)
      clamp(d)
    end
  end
  s.updated = now
end

-- ceil_wait is durationCeil: a wait rounded up to the microsecond, never
-- reported shorter than it is, and bounded by the longest Go duration.
local function ceil_wait(us)
  if us >= MAX_WAIT then
    return MAX_WAIT
  end
  return math.ceil(us)
end

-- dim_wait is Dim.wait: how long from now until cost fits in the dimension
-- (requires the dimension advanced to now).
local function dim_wait(d, now, cost)
  local held = now < d.hold_until
  if d.limit <= 0 then
    if held then
      return d.hold_until - now
    end
    return 0
  end
  local need = math.min(cost, d.limit)
  local level = d.level
  local wait = 0
  if held then
    if level + EPSILON >= need then
      return 0
    end
    wait = d.hold_until - now
    level = math.min(level + d.hold_refill, d.limit)
  end
  if level + EPSILON >= need then
    return wait
  end
  return wait + ceil_wait((need - level) / rate(d))
end

-- check is State.Check: advance to now and report whether cost fits. It
-- returns allowed, the wait in microseconds and the reason.
local function check(s, now, cost)
  advance(s, now)
  if now < s.blocked_until then
    return false, s.blocked_until - now, s.block_reason
  end
  if not s.learned and not known(s) and s.inflight > 0 then
    return false, PROBE_RETRY, REASON_PROBE
  end
  local wait, reason = 0, ''
  for i = 1, NDIM do
    if cost[i] > 0 then
      local w = dim_wait(s.dims[i], now, cost[i])
      if w > wait then
        wait, reason = w, DIM_NAMES[i]
      end
    end
  end
  if wait > 0 then
    return false, wait, reason
  end
  return true, 0, ''
end

-- reserve is State.Reserve: check, then take cost from every known dimension
-- and count one more request in flight. It returns allowed, wait, reason and
-- the taken vector.
local function reserve(s, now, cost)
  local taken = zero_vector()
  local allowed, wait, reason = check(s, now, cost)
  if not allowed then
    return false, wait, reason, taken
  end
  for i = 1, NDIM do
    local d = s.dims[i]
    if d.limit > 0 and cost[i] ~= 0 then
      d.level = d.level - cost[i]
      taken[i] = cost[i]
    end
  end
  s.inflight = s.inflight + 1
  return true, 0, '', taken
end

-- settle is State.Settle: give back taken - actual in the dimensions the
-- reservation took from, never above capacity.
local function settle(s, now, taken, actual)
  advance(s, now)
  for i = 1, NDIM do
    local d = s.dims[i]
    if d.limit > 0 and taken[i] ~= 0 then
      d.level = d.level + (taken[i] - actual[i])
      clamp(d)
    end
  end
  if s.inflight > 0 then
    s.inflight = s.inflight - 1
  end
end

-- observe_dims is State.observeDims: what a fresh answer reported of each
-- dimension, its remaining values brought forward from anchor to now.
local function observe_dims(s, now, anchor, o)
  local elapsed = now - anchor
  for i = 1, NDIM do
    local d, od = s.dims[i], o.dims[i]
    if od.window > 0 then
      d.window = od.window
    end
    if od.limit > 0 and od.limit ~= d.limit then
      if d.limit == 0 then
        d.level = od.limit
      else
        d.level = d.level + (od.limit - d.limit)
      end
      d.limit = od.limit
      if d.window == 0 then
        d.window = DEFAULT_WINDOW[i]
      end
      clamp(d)
    end
    if od.has_remaining then
      local exhausted = od.remaining <= 0 and od.reset > 0
      local hold = anchor + od.reset
      -- An exhausted dimension whose reset has passed is full again at the
      -- provider: it caps nothing.
      if not (exhausted and hold <= now) then
        local remaining = math.max(od.remaining, 0)
        if not exhausted then
          remaining = remaining + rate(d) * elapsed
          if d.limit > 0 then
            remaining = math.min(remaining, d.limit)
          end
        end
        if d.level > remaining or d.limit == 0 then
          d.level = remaining
        end
        if exhausted and hold > d.hold_until then
          d.hold_until = hold
          d.hold_refill = d.limit
        end
      end
    end
  end
end

-- observe is State.Observe: learn limits, cap levels at the provider's
-- remaining, hold exhausted dimensions until their reset, and block the bucket
-- on retry-after. A stale observation (older than the newest applied) teaches
-- only its retry hint. The answer speaks of the instant o.at (now when 0):
-- its remaining values are refilled forward to now, and its resets and retry
-- hints count from then, so an answer folded into a later settlement teaches
-- what it taught on arrival. o.at is the clock of the replica that received
-- the answer: later than now (Redis TIME) it counts as now, and so does a
-- newest instant applied later than now, so that one replica whose clock runs
-- ahead cannot make every other replica's answers stale.
local function observe(s, now, o)
  advance(s, now)
  o.at = math.min(o.at, now)
  s.observed_at = math.min(s.observed_at, now)
  local anchor = now
  if o.at ~= 0 then
    anchor = o.at
  end
  local stale = o.at ~= 0 and o.at < s.observed_at
  if not stale then -- a stale answer leaves what a newer one taught
    observe_dims(s, now, anchor, o)
    if o.at > s.observed_at then
      s.observed_at = o.at
    end
  end
  s.learned = true
  if o.retry_after > 0 then
    local blocked = anchor + o.retry_after
    if blocked > now and blocked > s.blocked_until then
      s.blocked_until = blocked
      s.block_reason = o.reason
    end
  end
end

-- reclaim releases up to limit reservations whose deadline has passed
-- (deadline before now), as RecoverOrphans does for the memory backend: each
-- is settled with no usage, so what it took returns. It returns how many it
-- ended. s may be nil (the state was lost): the records are removed all the
-- same.
local function reclaim(s, now, limit)
  local ids = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. num(now), 'LIMIT', 0, limit)
  if #ids == 0 then
    return 0
  end
  if s then
    local taken = redis.call('HMGET', KEYS[3], unpack(ids))
    for i = 1, #ids do
      local t = zero_vector()
      if taken[i] then
        t = decode_vector(taken[i])
      end
      settle(s, now, t, zero_vector())
    end
  end
  redis.call('ZREM', KEYS[2], unpack(ids))
  redis.call('HDEL', KEYS[3], unpack(ids))
  return #ids
end
