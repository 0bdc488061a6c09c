"""The Lua scripts of :class:`~service.engine.framebuffer.redis.RedisFrameBuffer`: each a stream operation done in
one atomic step (one round trip), on the keys :func:`~service.engine.framebuffer.redis.stream_keys` names."""

from __future__ import annotations

from typing import Final

# Shared Lua helpers: read counters, compute the needed frame range, read it, refresh TTLs.
_COMMON: Final = """
local function counters()
  local m = redis.call('HMGET', KEYS[1], 'cursor', 'high', 'maxi', 'received', 'trim', 'closed')
  return tonumber(m[1]), tonumber(m[2]), tonumber(m[3]), tonumber(m[4]), tonumber(m[5]), tonumber(m[6])
end
local function touch(ttl)
  for i = 1, #KEYS do redis.call('PEXPIRE', KEYS[i], ttl) end
end
-- frames lo..hi that the windows of targets [start, stop) may use; {} when there are no targets
local function needed(start, stop, newest, lag_left, lag_right, causal)
  if stop <= start then return -1, -2 end
  local lo = math.max(0, start - lag_left)
  local hi = causal and stop - 1 or math.min(newest, stop - 1 + lag_right)
  return lo, hi
end
-- the smoothing state valid at `start`: {cursor, blob} (the replaced one for a replay), else {cursor, false}
local function smoothing(start)
  local s = redis.call('HMGET', KEYS[1], 'scur', 'smooth', 'spcur', 'sprev')
  local cur = tonumber(s[1]) or 0
  if cur == start then return {cur, s[2] or ''} end
  if s[3] and tonumber(s[3]) == start then return {start, s[4] or ''} end
  return {cur, false}
end
-- received frames past the contiguous `high` (out of order, not yet emitted) the frames hash no longer holds (evicted):
-- every frame 0..high came once, so `received - (high + 1)` of them came past it; `trim` frames were dropped on purpose
local function lost_ahead(received, trim, high, maxi)
  if redis.call('HLEN', KEYS[2]) >= received - trim then return 0 end
  local held = 0
  for i = high + 1, maxi do held = held + redis.call('HEXISTS', KEYS[2], i) end
  return received - (high + 1) - held
end
local function read(lo, hi)
  if hi < lo then return {} end
  local fields = {}
  for i = lo, hi do fields[#fields + 1] = i end
  return redis.call('HMGET', KEYS[2], unpack(fields))
end
"""

# KEYS: meta frames emits tracker
# ARGV: index record tracker_or_empty seen_token('' = no check) new_token lag_left lag_right causal ttl_ms margin
#       max_ahead
# returns {'missing'} | {'closed'} | {'conflict', meta_json, token, tracked, tracker_or_nil} | {'range', high}
#       | {'lost', index}
#       | {status, cursor, high, maxi, received, closed, start, stop, newest, lo, {records}, {scur, smooth|nil}, lost}
APPEND: Final = (
    _COMMON
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return {'missing'} end
local cursor, high, maxi, received, trim, closed = counters()
if closed == 1 then return {'closed'} end
local ttl = tonumber(ARGV[9])
local stored = redis.call('HMGET', KEYS[1], 'ttok', 'meta', 'tracked')
local token = stored[1]
if ARGV[4] ~= '' and ARGV[4] ~= token then
  touch(ttl)
  return {'conflict', stored[2], token, tonumber(stored[3]) or 0, redis.call('GET', KEYS[4])}
end
local idx = tonumber(ARGV[1])
if idx < 0 or idx > high + 1 + tonumber(ARGV[11]) then return {'range', high} end
local lag_left, lag_right = tonumber(ARGV[6]), tonumber(ARGV[7])
local causal = ARGV[8] == '1'
if idx < trim or redis.call('HEXISTS', KEYS[2], idx) == 1 then
  local e = redis.call('HGET', KEYS[3], idx)
  if not e and idx >= trim then return {'lost', idx} end  -- a stored frame's emission is kept as long as it (evicted)
  local start, stop, newest = 0, 0, -1
  if e then
    local a, b, n = string.match(e, '(-?%d+),(-?%d+),(-?%d+)')
    start, stop, newest = tonumber(a), tonumber(b), tonumber(n)
  end
  local lo, hi = needed(start, stop, newest, lag_left, lag_right, causal)
  if stop > start and lo < trim then start, stop, lo, hi = 0, 0, -1, -2 end
  touch(ttl)
  return {'duplicate', cursor, high, maxi, received, closed, start, stop, newest, lo, read(lo, hi), smoothing(start), 0}
end
redis.call('HSET', KEYS[2], idx, ARGV[2])
if ARGV[3] ~= '' then
  redis.call('SET', KEYS[4], ARGV[3])
  redis.call('HSET', KEYS[1], 'ttok', ARGV[5], 'tracked', 1)
end
received = received + 1
if idx > maxi then maxi = idx end
while redis.call('HEXISTS', KEYS[2], high + 1) == 1 do high = high + 1 end
local last = causal and high or high - lag_right
local start = cursor
local stop = math.max(cursor, last + 1)
redis.call('HSET', KEYS[3], idx, start .. ',' .. stop .. ',' .. high)
cursor = stop
local lo, hi = needed(start, stop, high, lag_left, lag_right, causal)
local records = read(lo, hi)
-- keep the last `margin` targets' frames and the whole latest emission's, so its frame can be retried
local keep_from = math.min(start, cursor - tonumber(ARGV[10])) - lag_left
while trim < keep_from do
  redis.call('HDEL', KEYS[2], trim)
  redis.call('HDEL', KEYS[3], trim)
  trim = trim + 1
end
redis.call('HSET', KEYS[1], 'cursor', cursor, 'high', high, 'maxi', maxi, 'received', received, 'trim', trim)
touch(ttl)
local lost = lost_ahead(received, trim, high, maxi)
return {'added', cursor, high, maxi, received, closed, start, stop, high, lo, records, smoothing(start), lost}
"""
)

# KEYS: meta frames emits tracker; ARGV: lag_left lag_right causal ttl_ms
FLUSH: Final = (
    _COMMON
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return {'missing'} end
local cursor, high, maxi, received, trim = counters()
redis.call('HSET', KEYS[1], 'closed', 1)
local start = cursor
local stop = math.max(cursor, maxi + 1)
local lo, hi = needed(start, stop, maxi, tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3] == '1')
touch(tonumber(ARGV[4]))
local lost = lost_ahead(received, trim, high, maxi)
return {'added', cursor, high, maxi, received, 1, start, stop, maxi, lo, read(lo, hi), smoothing(start), lost}
"""
)

# KEYS: meta; ARGV: expected_cursor cursor state ttl_ms → 1 stored | 0 not (another state is stored) | -1 missing
SMOOTHED: Final = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local s = redis.call('HMGET', KEYS[1], 'scur', 'smooth')
if (tonumber(s[1]) or 0) ~= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'spcur', s[1] or 0, 'sprev', s[2] or '', 'scur', ARGV[2], 'smooth', ARGV[3])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[4]))
return 1
"""

# KEYS: meta frames emits tracker closed; ARGV: meta_json ttl_ms token
CREATE: Final = """
if redis.call('HSETNX', KEYS[1], 'meta', ARGV[1]) == 0 then return 0 end
redis.call('DEL', KEYS[5])
redis.call('HSET', KEYS[1], 'cursor', 0, 'high', -1, 'maxi', -1, 'received', 0, 'trim', 0, 'closed', 0, 'ttok', ARGV[3])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
return 1
"""

# KEYS: meta frames emits tracker closed; ARGV: answer ('' = none) ttl_ms → how many of the stream's keys existed
DELETE: Final = """
local existed = redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
if ARGV[1] ~= '' then redis.call('SET', KEYS[5], ARGV[1], 'PX', tonumber(ARGV[2])) end
return existed
"""
