"""Lua scripts that make each batch one atomic, idempotent server-side step.

They implement exactly :meth:`segstream.models.customer_state.CustomerState.add` on a Redis hash (a golden
test runs the same events through both). Redis Lua numbers are doubles: epoch milliseconds and cent sums
stay far below 2**53, so they are exact.
"""

from __future__ import annotations

from segstream.models.customer_state import BUCKET_RETENTION_DAYS
from segstream.models.features import DAY_MS, WINDOWS_DAYS

# read_customer(key, as_of, prune) -> the aggregates in AGGREGATE_FIELDS order, then sg sp sn sv sa.
_READ_CUSTOMER = f"""
local DAY_MS = {DAY_MS}
local WINDOWS = {{{", ".join(str(w) for w in WINDOWS_DAYS)}}}
local RETENTION = {BUCKET_RETENTION_DAYS}

local function read_customer(key, as_of, prune)
  local flat = redis.call('HGETALL', key)
  if #flat == 0 then return false end
  local h = {{}}
  local net, qty = {{}}, {{}}
  for i = 1, #flat, 2 do
    local f, v = flat[i], flat[i + 1]
    local kind, day = string.match(f, '^([dq]):(%-?%d+)$')
    if kind == 'd' then net[tonumber(day)] = tonumber(v)
    elseif kind == 'q' then qty[tonumber(day)] = tonumber(v)
    else h[f] = v end
  end
  local as_of_day = math.floor(as_of / DAY_MS)
  local sums = {{}}
  for w = 1, #WINDOWS do sums[w] = 0; sums[#WINDOWS + w] = 0 end
  for day, cents in pairs(net) do
    for w = 1, #WINDOWS do
      if day > as_of_day - WINDOWS[w] then sums[w] = sums[w] + cents end
    end
  end
  for day, count in pairs(qty) do
    for w = 1, #WINDOWS do
      if day > as_of_day - WINDOWS[w] then sums[#WINDOWS + w] = sums[#WINDOWS + w] + count end
    end
  end
  if prune then
    local horizon = math.floor(tonumber(h['lt']) / DAY_MS) - RETENTION
    local stale = {{}}
    for day, _ in pairs(net) do
      if day <= horizon then stale[#stale + 1] = 'd:' .. string.format('%d', day) end
    end
    for day, _ in pairs(qty) do
      if day <= horizon then stale[#stale + 1] = 'q:' .. string.format('%d', day) end
    end
    if #stale > 0 then redis.call('HDEL', key, unpack(stale)) end
  end
  local row = {{
    tonumber(h['ft']), tonumber(h['lt']), tonumber(h['fp'] or -1), tonumber(h['lp'] or -1),
    tonumber(h['p'] or 0), tonumber(h['g'] or 0), tonumber(h['n'] or 0), tonumber(h['r'] or 0),
    tonumber(h['rc'] or 0)
  }}
  for i = 1, #sums do row[#row + 1] = sums[i] end
  row[#row + 1] = h['sg'] or ''
  row[#row + 1] = h['sp'] or ''
  row[#row + 1] = h['sn'] or '0'
  row[#row + 1] = h['sv'] or ''
  row[#row + 1] = h['sa'] or '0'
  return row
end
"""

# ARGV: root, ttl, then (event_id, customer_id, ts_ms, cents) per event.
# Returns {watermark, {delivery per event}, {customer_id, row, customer_id, row, ...}}.
APPLY = (
    _READ_CUSTOMER
    + """
local root, ttl = ARGV[1], tonumber(ARGV[2])
local wm = tonumber(redis.call('GET', root .. ':wm') or '0')
local deliveries = {}
local touched, order = {}, {}
for i = 3, #ARGV, 4 do
  local eid, cid, ts, cents = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3])
  if ts > wm then wm = ts end
  if not touched[cid] then touched[cid] = true; order[#order + 1] = cid end
  local marker = redis.call('GET', root .. ':e:' .. eid)
  if marker then
    deliveries[#deliveries + 1] = tonumber(marker) + 1
  else
    redis.call('SET', root .. ':e:' .. eid, '1', 'EX', ttl)
    deliveries[#deliveries + 1] = 1
    local key = root .. ':c:' .. cid
    -- Written back as the original decimal strings: Lua formats numbers with 14 significant digits.
    local ts_s, cents_s = ARGV[i + 2], ARGV[i + 3]
    local ft, lt = redis.call('HGET', key, 'ft'), redis.call('HGET', key, 'lt')
    if not ft or ts < tonumber(ft) then redis.call('HSET', key, 'ft', ts_s) end
    if not lt or ts > tonumber(lt) then redis.call('HSET', key, 'lt', ts_s) end
    redis.call('HINCRBY', key, 'n', cents_s)
    local day = string.format('%d', math.floor(ts / DAY_MS))
    redis.call('HINCRBY', key, 'd:' .. day, cents_s)
    if cents >= 0 then
      redis.call('HINCRBY', key, 'p', 1)
      redis.call('HINCRBY', key, 'g', cents_s)
      redis.call('HINCRBY', key, 'q:' .. day, 1)
      local fp, lp = redis.call('HGET', key, 'fp'), redis.call('HGET', key, 'lp')
      if not fp or ts < tonumber(fp) then redis.call('HSET', key, 'fp', ts_s) end
      if not lp or ts > tonumber(lp) then redis.call('HSET', key, 'lp', ts_s) end
    else
      redis.call('HINCRBY', key, 'r', 1)
      redis.call('HINCRBY', key, 'rc', string.sub(cents_s, 2))
    end
  end
end
redis.call('SET', root .. ':wm', string.format('%d', wm))
local customers = {}
for _, cid in ipairs(order) do
  local row = read_customer(root .. ':c:' .. cid, wm, true)
  if row then customers[#customers + 1] = cid; customers[#customers + 1] = row end
end
return {wm, deliveries, customers}
"""
)

# ARGV: root, as_of (or -1 for the watermark), customer ids... Returns {as_of, {cid, row, ...}}.
VIEW = (
    _READ_CUSTOMER
    + """
local root = ARGV[1]
local as_of = tonumber(ARGV[2])
if as_of < 0 then as_of = tonumber(redis.call('GET', root .. ':wm') or '0') end
local customers = {}
for i = 3, #ARGV do
  local row = read_customer(root .. ':c:' .. ARGV[i], as_of, false)
  if row then customers[#customers + 1] = ARGV[i]; customers[#customers + 1] = row end
end
return {as_of, customers}
"""
)

# ARGV: root, ttl, history length, JSON {segments, changes, sales, done, due}.
FINALIZE = """
local root, ttl, keep = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local batch = cjson.decode(ARGV[4])
for cid, rec in pairs(batch['segments']) do
  local key = root .. ':c:' .. cid
  redis.call('HSET', key, 'sg', rec[1], 'sp', rec[2], 'sn', rec[3], 'sv', rec[4], 'sa', rec[5])
end
for _, change in ipairs(batch['changes']) do
  local key = root .. ':h:' .. change[1]
  redis.call('LPUSH', key, change[2])
  redis.call('LTRIM', key, 0, keep - 1)
end
for _, sale in ipairs(batch['sales']) do
  local marker = redis.call('GET', root .. ':e:' .. sale[1])
  if marker ~= '2' then
    redis.call('HINCRBY', root .. ':sales', sale[2] .. ':total', sale[4])
    redis.call('HINCRBY', root .. ':sales', sale[2] .. ':segment:' .. sale[3], sale[4])
  end
end
for _, eid in ipairs(batch['done']) do
  redis.call('SET', root .. ':e:' .. eid, '2', 'EX', ttl)
end
for cid, at in pairs(batch['due']) do
  redis.call('ZADD', root .. ':due', at, cid)
end
return #batch['done']
"""
