"""The Lua scripts behind `RedisLimiter`: the window of window.py, atomic in Redis.

Each scope has two hashes, `<prefix>{<scope>}:r` (requests) and `…:t` (tokens), mapping a
bucket index to its count. A script reads, trims, decides and writes in one step, so any
number of gateway processes sharing the Redis admit at most rpm per window together, in one
round trip per request. Keys expire on their own TTL_MS after their last write.

Without an injected `now` the scripts use the Redis server's clock (TIME), so replicas on
hosts whose clocks disagree still share one window. Redis 5+ replicates scripts by their
effects, which is what makes TIME allowed inside a script that writes.
"""

from __future__ import annotations

from teeroute_gateway.limits.window import BUCKET_S, SLOTS

TTL_MS = int(SLOTS * BUCKET_S * 1000) + 1000
"""The newest bucket counts for at most SLOTS buckets; one more second of slack."""

_COMMON = f"""
local SLOTS, BUCKET_S, TTL_MS = {SLOTS}, {BUCKET_S!r}, {TTL_MS}
local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local cur = math.floor(now / BUCKET_S)

-- The live buckets of a hash (oldest first), their total and the bucket to write to;
-- buckets that left the window are deleted on the way.
local function load(key)
  local flat = redis.call('HGETALL', key)
  local live, dead, total, newest = {{}}, {{}}, 0, cur
  for i = 1, #flat, 2 do
    local b = tonumber(flat[i])
    if b + SLOTS <= cur then
      dead[#dead + 1] = flat[i]
    else
      local n = tonumber(flat[i + 1])
      live[#live + 1] = {{b, n}}
      total = total + n
      if b > newest then newest = b end  -- the clock stepped back: keep counting forward
    end
  end
  if #dead > 0 then redis.call('HDEL', key, unpack(dead)) end
  table.sort(live, function(x, y) return x[1] < y[1] end)
  return {{live = live, total = total, newest = newest}}
end
"""

ADMIT = (
    _COMMON
    + """
-- KEYS: requests hash, tokens hash. ARGV: now ('' = server clock), rpm, tpm (0 = none).
-- Returns {allowed 0/1, reason, retry_after in ms (rounded up), limit (0 = none), remaining}.
local function wait(c, limit)
  local total = c.total
  for _, e in ipairs(c.live) do
    total = total - e[2]
    if total < limit then return math.max(0, (e[1] + SLOTS) * BUCKET_S - now) end
  end
  return 0
end

local rpm, tpm = tonumber(ARGV[2]), tonumber(ARGV[3])
local req = rpm > 0 and load(KEYS[1]) or nil
local tok = tpm > 0 and load(KEYS[2]) or nil
local over_r = req ~= nil and req.total >= rpm
local over_t = tok ~= nil and tok.total >= tpm
if over_r or over_t then
  local wait_r = over_r and wait(req, rpm) or 0
  local wait_t = over_t and wait(tok, tpm) or 0
  if over_r and wait_r >= wait_t then
    return {0, 'requests', math.ceil(wait_r * 1000), rpm, 0}
  end
  return {0, 'tokens', math.ceil(wait_t * 1000), tpm, 0}
end
if req then
  redis.call('HINCRBY', KEYS[1], req.newest, 1)
  redis.call('PEXPIRE', KEYS[1], TTL_MS)
  return {1, '', 0, rpm, rpm - req.total - 1}
end
return {1, '', 0, tpm, tpm - tok.total}
"""
)

RECORD = (
    _COMMON
    + """
-- KEYS: tokens hash. ARGV: now ('' = server clock), tokens.
local c = load(KEYS[1])
redis.call('HINCRBY', KEYS[1], c.newest, tonumber(ARGV[2]))
redis.call('PEXPIRE', KEYS[1], TTL_MS)
return 1
"""
)
