"""Lua scripts that make each batch's writes one atomic, idempotent server-side step.

The fold itself runs in the worker (:mod:`segstream.streams.state.hash_fold`); :data:`COMMIT` writes its
result only if no other writer got there first, and :data:`FINALIZE` records what the batch emitted. VIEW
reads customers as of a time for the dashboard and the sweep. Redis Lua numbers are doubles: epoch
milliseconds and cent sums stay far below 2**53, so they are exact.
"""

from __future__ import annotations

from segstream.models.customer_state import BUCKET_RETENTION_DAYS
from segstream.models.features import DAY_MS, WINDOWS_DAYS

# Shared helpers: parse a customer hash and build the reply row (the aggregates in AGGREGATE_FIELDS order,
# then sg sp sn sv sa sd).
_HELPERS = f"""
local DAY_MS = {DAY_MS}
local WINDOWS = {{{", ".join(str(w) for w in WINDOWS_DAYS)}}}
local RETENTION = {BUCKET_RETENTION_DAYS}

-- Numbers go to redis.call and into '..' as they are: Redis writes a Lua number with %.17g (exact for the
-- integers stored here, all below 2^53) and '..' uses %.14g (only day numbers and segment ids are joined
-- that way). Against string.format('%d') per value the scripts' time did not change measurably.

local function parse_customer(flat)
  local h, net, qty = {{}}, {{}}, {{}}
  for i = 1, #flat, 2 do
    local f, v = flat[i], flat[i + 1]
    -- byte compares instead of a pattern match per field: this loop runs over every day bucket
    if string.byte(f, 2) == 58 then  -- 'd:<day>' (net cents) or 'q:<day>' (purchases)
      local kind = string.byte(f, 1)
      if kind == 100 then net[tonumber(string.sub(f, 3))] = tonumber(v)
      elseif kind == 113 then qty[tonumber(string.sub(f, 3))] = tonumber(v)
      else h[f] = v end
    else h[f] = v end
  end
  return h, net, qty
end

-- The reply row: the fold's scalars, the window sums (net cents per window, then purchases per window) and
-- the segment record.
local function aggregate_row(h, sums)
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
  row[#row + 1] = h['sd'] or '0'
  return row
end

local function customer_row(h, net, qty, as_of)
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
  return aggregate_row(h, sums)
end
"""

# KEYS: the watermark of every shard the call touches, the batch's customer hashes, one dedupe marker per new
# event and the category hashes it adds to (on Redis Cluster one shard's keys; on one Redis any). ARGV: ttl,
# the batch's as-of time, JSON {c: [[customer, p, r, [field, value, ...], [field, ...]], ...],
# m: [marker, ...], w: [watermark, ...], k: [[category hash, [category, cents, ...]], ...]} with keys as
# indexes into KEYS. The worker folded the batch into each customer's hash as it last knew it
# (segstream/streams/state/hash_fold.py); this commits it, all or nothing: if any customer's p or r is no
# longer what the worker folded into (another writer folded events in meanwhile, as in a rebalance, or the
# worker's kept fold is stale), nothing is written and 0 is returned, so the worker reads and folds again.
# p + r counts the events folded in, so any fold changes one of them. Returns {1, {per customer: p r sg sp
# sn sv sa sd}}: the segment records as they are now, read in the same atomic step, so the worker need not
# read them before.
COMMIT = """
local ttl, wm = tonumber(ARGV[1]), tonumber(ARGV[2])
local batch = cjson.decode(ARGV[3])
local records = {}
for i, c in ipairs(batch['c']) do
  local now = redis.call('HMGET', KEYS[c[1]], 'p', 'r', 'sg', 'sp', 'sn', 'sv', 'sa', 'sd')
  if (now[1] or '') ~= c[2] or (now[2] or '') ~= c[3] then return 0 end
  records[i] = now
end
for _, c in ipairs(batch['c']) do
  if #c[4] > 0 then redis.call('HSET', KEYS[c[1]], unpack(c[4])) end
  if #c[5] > 0 then redis.call('HDEL', KEYS[c[1]], unpack(c[5])) end
end
for _, m in ipairs(batch['m']) do redis.call('SET', KEYS[m], '1', 'EX', ttl) end
for _, w in ipairs(batch['w']) do
  if wm > tonumber(redis.call('GET', KEYS[w]) or '0') then redis.call('SET', KEYS[w], wm) end
end
for _, k in ipairs(batch['k']) do
  local add = k[2]
  for j = 1, #add, 2 do redis.call('HINCRBY', KEYS[k[1]], add[j], add[j + 1]) end
end
return {1, records}
"""

# KEYS: n customer hashes (one shard's on Redis Cluster, any on one Redis), then their n category hashes.
# ARGV: as_of, n. Returns {customer index, row + {category hash}, ...} for those that exist.
VIEW = (
    _HELPERS
    + """
local as_of, n = tonumber(ARGV[1]), tonumber(ARGV[2])
local customers = {}
for i = 1, n do
  local h, net, qty = parse_customer(redis.call('HGETALL', KEYS[i]))
  if h['ft'] then
    local row = customer_row(h, net, qty, as_of)
    row[#row + 1] = redis.call('HGETALL', KEYS[n + i])
    customers[#customers + 1] = i
    customers[#customers + 1] = row
  end
end
return customers
"""
)

# KEYS: every sales hash, due set, customer hash, history list, dedupe marker and cap set the call names (each
# once; one shard's on Redis Cluster, every shard's on one Redis). ARGV: ttl, history length, JSON
# {segments: [[key, sg, sp, sn, sv, sa, sd]], changes: [[key, entry]],
# sales: [[marker, sales key, '<day>:total', '<day>:segment:<id>', cents]], done: [marker],
# due: [[due key, customer id, at]],
# cooldowns: [[key, campaign, at]], caps: [[key, [trigger ids]]]}, where a key or marker is an index into KEYS.
FINALIZE = """
local ttl, keep = tonumber(ARGV[1]), tonumber(ARGV[2])
local batch = cjson.decode(ARGV[3])
for _, rec in ipairs(batch['segments']) do
  redis.call('HSET', KEYS[rec[1]], 'sg', rec[2], 'sp', rec[3], 'sn', rec[4], 'sv', rec[5], 'sa', rec[6], 'sd', rec[7])
end
for _, change in ipairs(batch['changes']) do
  local key = KEYS[change[1]]
  redis.call('LPUSH', key, change[2])
  redis.call('LTRIM', key, 0, keep - 1)
end
-- One SET ... GET per event both marks it done and says whether it already was (then its sale was counted
-- before); sales are summed per field first, so a batch costs one HINCRBY per (day, series), not per event.
-- The worker names the fields, so no string is built here per event (that was ~15% of the script's time).
local sale_of = {}
for _, sale in ipairs(batch['sales']) do sale_of[sale[1]] = sale end
local totals, order = {}, {}
local function count_sale(sale)
  local at, cents = sale[2], sale[5]
  local t = totals[at]
  if not t then t = {}; totals[at] = t; order[#order + 1] = at end
  t[sale[3]] = (t[sale[3]] or 0) + cents
  t[sale[4]] = (t[sale[4]] or 0) + cents
end
local marked = {}
for _, m in ipairs(batch['done']) do
  local before = redis.call('SET', KEYS[m], '2', 'EX', ttl, 'GET')
  marked[m] = true
  local sale = sale_of[m]
  if sale and before ~= '2' then count_sale(sale) end
end
for _, sale in ipairs(batch['sales']) do
  if not marked[sale[1]] and redis.call('GET', KEYS[sale[1]]) ~= '2' then count_sale(sale) end
end
for _, at in ipairs(order) do
  for f, cents in pairs(totals[at]) do redis.call('HINCRBY', KEYS[at], f, cents) end
end
for _, d in ipairs(batch['due']) do
  redis.call('ZADD', KEYS[d[1]], d[3], d[2])
end
-- Campaign decisions, in the same atomic step as the segment records they were made from.
for _, c in ipairs(batch['cooldowns']) do
  redis.call('HSET', KEYS[c[1]], 'k.' .. c[2], c[3])
end
-- A set of trigger ids per (shard, day, campaign): a retried finalize adds nothing twice. Kept 3 days.
for _, c in ipairs(batch['caps']) do
  redis.call('SADD', KEYS[c[1]], unpack(c[2]))
  redis.call('EXPIRE', KEYS[c[1]], 259200)
end
return #batch['done']
"""

# KEYS: a shard's sweep lease. ARGV: owner, lease ms. Takes the lease when free or renews it when ours:
# exactly one worker sweeps a shard at a time, and a dead worker's shards pass on when its lease runs out.
CLAIM = """
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""
