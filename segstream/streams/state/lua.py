"""Lua scripts that make each batch's writes one atomic, idempotent server-side step.

The fold runs in Redis (:data:`APPLY`, the default) or in the worker (:mod:`segstream.streams.state.hash_fold`,
then :data:`COMMIT` writes its result only if no other writer got there first); :data:`FINALIZE` records what
the batch emitted. VIEW reads customers as of a time for the dashboard and the sweep. Redis Lua numbers are
doubles: epoch milliseconds and cent sums stay far below 2**53, so they are exact.
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

# -- the fold in Redis (SEGSTREAM_REDIS_FOLD=redis) -------------------------------------------------------------
# It implements exactly CustomerState.add on the hash (the same tests as the worker's fold hold it there).

# The apply's fast path (cached window sums, rolled forward) serves a customer whose sums were cached at most
# this many days before today and whose latest event moves at most this many days: it reads 6 fields per day
# of gap, where the full pass reads every stored day.
FAST_GAP_DAYS = 4


# KEYS: the watermark of every shard the call touches, the customer hashes, one dedupe marker per event and
# the category hashes the call needs. On Redis Cluster a call holds one shard (its keys share a slot); on one
# Redis, every shard of the batch in one call. ARGV: ttl, the batch's as-of time (the worker's watermark: the
# largest event time it knows, this batch's included), JSON array [watermark, customer, marker, ts_ms, cents,
# categories, split, ...] per event in order, the first three and categories as indexes into KEYS
# (categories 0 when not declared; one argument: encoding the numbers as arguments was ~10 us/event of
# client time), and '1' when each reply row should end with the customer's category hash (a model that
# uses product preferences). split is 0 or [category, cents, ...]: the event's spend per category.
# Returns {the largest stored watermark, {delivery per event}, {customer index, row, ...}}; the rows are
# as of the given as-of time, so every shard of a batch answers as of the same time.
# Events are grouped per customer first, so each customer costs one HGETALL and one HSET however many of
# its events the batch holds (measured: ~12 calls per event before, 46 us/event; see the bench).
# Each stored field is visited once: window sums, the touched days' stored values and stale-day candidates
# come out of the same pass, with no per-customer tables of day buckets. Against parse_customer, then
# prune, then customer_row, that cut the script's time per event by 15-20% (36 -> 31 us at full speed,
# 61 -> 49 us on full-size hashes; same replies and the same hashes over 120k events).
APPLY = (
    _HELPERS
    + f"""
local NW = {len(WINDOWS_DAYS)}
local FAST_GAP = {FAST_GAP_DAYS}
"""
    + """
local floor, byte, sub = math.floor, string.byte, string.sub
local ttl, wm = tonumber(ARGV[1]), tonumber(ARGV[2])
local ev = cjson.decode(ARGV[3])
local with_categories = ARGV[4] == '1'
local stored_wm, shard_wm = 0, {}
local deliveries = {}
local order, pending = {}, {}
local category_key, category_add = {}, {}
for i = 1, #ev, 7 do
  local wi, ci, ts = ev[i], ev[i + 1], ev[i + 3]
  if not shard_wm[wi] then
    shard_wm[wi] = tonumber(redis.call('GET', KEYS[wi]) or '0')
    if shard_wm[wi] > stored_wm then stored_wm = shard_wm[wi] end
  end
  if not pending[ci] then pending[ci] = {}; order[#order + 1] = ci end
  if ev[i + 5] ~= 0 then category_key[ci] = ev[i + 5] end
  local marker_key = KEYS[ev[i + 2]]
  if redis.call('SET', marker_key, '1', 'NX', 'EX', ttl) then
    deliveries[#deliveries + 1] = 1
    local list = pending[ci]
    list[#list + 1] = ts
    list[#list + 1] = ev[i + 4]
    local split = ev[i + 6]
    if type(split) == 'table' then
      local add = category_add[ci]
      if not add then add = {}; category_add[ci] = add end
      for j = 1, #split, 2 do add[split[j]] = (add[split[j]] or 0) + split[j + 1] end
    end
  else
    deliveries[#deliveries + 1] = tonumber(redis.call('GET', marker_key)) + 1
  end
end
for wi, stored in pairs(shard_wm) do
  if wm > stored then redis.call('SET', KEYS[wi], wm) end
end
-- A day counts in window w when day > lows[w]. A customer's horizon (its latest event's day - RETENTION) is
-- at or below its cut (the later of the as-of day and its latest event's day, less RETENTION).
local as_of_day = floor(wm / DAY_MS)
local lows = {}
for w = 1, NW do lows[w] = as_of_day - WINDOWS[w] end
local cut = as_of_day - RETENTION
local customers = {}
-- The fields that decide the path (lt, wd, wc, p, r), the other fields every reply needs, then the cached
-- window sums (w1..w<2NW>: net cents per window, then purchases per window, as of day wd, valid while wc is
-- the customer's p + r, i.e. no event was added without updating them).
local KEEP = {'lt', 'wd', 'wc', 'p', 'r', 'ft', 'fp', 'lp', 'g', 'n', 'rc', 'sg', 'sp', 'sn', 'sv', 'sa', 'sd'}
local DECIDE = 5
local REST = {}
for k = DECIDE + 1, #KEEP do REST[#REST + 1] = KEEP[k] end
local NREST = #REST
for k = 1, 2 * NW do REST[NREST + k] = 'w' .. k end
local function add_to_windows(sums, day, cents, count)
  for w = 1, NW do
    if day > lows[w] then
      sums[w] = sums[w] + cents
      sums[NW + w] = sums[NW + w] + count
    end
  end
end
for _, ci in ipairs(order) do
  local key = KEYS[ci]
  local list = pending[ci]
  -- the new events per day; the stored buckets of those days are added below
  local net, qty, touched = {}, {}, {}
  local batch_lt
  for j = 1, #list, 2 do
    local cents = list[j + 1]
    local day = floor(list[j] / DAY_MS)
    if not net[day] then net[day] = 0; touched[#touched + 1] = day end
    net[day] = net[day] + cents
    if cents >= 0 then qty[day] = (qty[day] or 0) + 1 end
    if not batch_lt or list[j] > batch_lt then batch_lt = list[j] end
  end
  -- Fast path: the cached sums are rolled from wd to today by subtracting the few days that left each window,
  -- and only the fixed fields and the touched days are read. Only when the cache is valid and little changed
  -- (today at most FAST_GAP days after wd, the latest event at most FAST_GAP days later); otherwise the full
  -- pass below reads every stored day. Five fields decide, so the full pass pays one small HMGET more.
  local first = redis.call('HMGET', key, unpack(KEEP, 1, DECIDE))
  local h, sums, stale = {}, {}, {}
  for k = 1, DECIDE do if first[k] then h[KEEP[k]] = first[k] end end
  local old_lt = tonumber(h['lt'])
  local new_lt = old_lt
  if batch_lt and (not new_lt or batch_lt > new_lt) then new_lt = batch_lt end
  -- Day buckets at or below the horizon are out of every window as of any T >= the latest event: dropped.
  local horizon = new_lt and floor(new_lt / DAY_MS) - RETENTION
  local wd, fast = tonumber(h['wd']), false
  if not old_lt then
    fast, wd = true, as_of_day
  elseif wd and tonumber(h['wc']) == tonumber(h['p'] or 0) + tonumber(h['r'] or 0)
      and as_of_day >= wd and as_of_day - wd <= FAST_GAP
      and floor(new_lt / DAY_MS) - floor(old_lt / DAY_MS) <= FAST_GAP then
    fast = true
  end
  if fast then
    local got = {}
    if old_lt then  -- a new customer has nothing stored to read
      local names = {unpack(REST)}
      for _, day in ipairs(touched) do
        names[#names + 1] = 'd:' .. day; names[#names + 1] = 'q:' .. day
      end
      got = redis.call('HMGET', key, unpack(names))
      for k = 1, NREST do if got[k] then h[REST[k]] = got[k] end end
    end
    for k = 1, 2 * NW do sums[k] = tonumber(got[NREST + k]) or 0 end
    for t, day in ipairs(touched) do
      local stored_net, stored_qty = tonumber(got[#REST + 2 * t - 1]), tonumber(got[#REST + 2 * t])
      add_to_windows(sums, day, net[day], qty[day] or 0)
      if stored_net then net[day] = net[day] + stored_net end
      if stored_qty then qty[day] = (qty[day] or 0) + stored_qty end
    end
    if old_lt and as_of_day > wd then
      local leaving, window_of = {}, {}
      for w = 1, NW do
        for day = wd - WINDOWS[w] + 1, as_of_day - WINDOWS[w] do
          leaving[#leaving + 1] = 'd:' .. day; leaving[#leaving + 1] = 'q:' .. day
          window_of[#window_of + 1] = w
        end
      end
      if #leaving > 0 then
        local old = redis.call('HMGET', key, unpack(leaving))
        for i, w in ipairs(window_of) do
          -- the stored value before this batch: a new event on a leaving day is outside the window anyway
          local d, q = tonumber(old[2 * i - 1]), tonumber(old[2 * i])
          if d then sums[w] = sums[w] - d end
          if q then sums[NW + w] = sums[NW + w] - q end
        end
      end
    end
    if old_lt then
      for day = floor(old_lt / DAY_MS) - RETENTION + 1, horizon do
        stale[#stale + 1] = 'd:' .. day; stale[#stale + 1] = 'q:' .. day
      end
    end
  else
    -- Full pass: window sums, the touched days' stored values and stale-day candidates in one visit of each
    -- stored field. Stale days are at or below the horizon, which is at or below cut: only those few are
    -- looked at twice.
    local flat = redis.call('HGETALL', key)
    local maybe_stale = {}
    local cut = cut
    if old_lt and floor(old_lt / DAY_MS) > as_of_day then cut = floor(old_lt / DAY_MS) - RETENTION end
    h = {}
    for k = 1, 2 * NW do sums[k] = 0 end
    for i = 1, #flat, 2 do
      local f = flat[i]
      if byte(f, 2) == 58 then  -- 'd:<day>' (net cents) or 'q:<day>' (purchases); byte compares, no patterns
        local day, v = tonumber(sub(f, 3)), tonumber(flat[i + 1])
        local offset = byte(f, 1) == 100 and 0 or NW
        if day <= cut then maybe_stale[#maybe_stale + 1] = f; maybe_stale[#maybe_stale + 1] = day end
        if net[day] then
          if offset == 0 then net[day] = net[day] + v else qty[day] = (qty[day] or 0) + v end
        else
          for w = 1, NW do
            if day > lows[w] then sums[offset + w] = sums[offset + w] + v end
          end
        end
      else h[f] = flat[i + 1] end
    end
    if new_lt then
      for k = 1, #maybe_stale, 2 do
        if maybe_stale[k + 1] <= horizon then stale[#stale + 1] = maybe_stale[k] end
      end
      -- the touched days were left out of the pass: their stored + new values count below
      for _, day in ipairs(touched) do
        if day > horizon then add_to_windows(sums, day, net[day], qty[day] or 0) end
      end
    end
  end
  local args
  if #list > 0 then
    local ft, fp, lp = tonumber(h['ft']), tonumber(h['fp']), tonumber(h['lp'])
    local n, p, g = tonumber(h['n'] or 0), tonumber(h['p'] or 0), tonumber(h['g'] or 0)
    local r, rc = tonumber(h['r'] or 0), tonumber(h['rc'] or 0)
    for j = 1, #list, 2 do
      local ts, cents = list[j], list[j + 1]
      if not ft or ts < ft then ft = ts end
      n = n + cents
      if cents >= 0 then
        p = p + 1
        g = g + cents
        if not fp or ts < fp then fp = ts end
        if not lp or ts > lp then lp = ts end
      else
        r = r + 1
        rc = rc - cents
      end
    end
    h['ft'], h['lt'], h['n'], h['p'], h['g'], h['r'], h['rc'] = ft, new_lt, n, p, g, r, rc
    args = {'ft', h['ft'], 'lt', h['lt'], 'n', h['n'], 'p', h['p'], 'g', h['g'], 'r', h['r'], 'rc', h['rc'],
            'wd', as_of_day, 'wc', p + r}
    for k = 1, 2 * NW do args[#args + 1] = REST[NREST + k]; args[#args + 1] = sums[k] end
    if fp then
      h['fp'], h['lp'] = fp, lp
      args[#args + 1] = 'fp'; args[#args + 1] = h['fp']
      args[#args + 1] = 'lp'; args[#args + 1] = h['lp']
    end
    -- a new event's day that is already at or below the horizon is never written
    for _, day in ipairs(touched) do
      if day > horizon then
        args[#args + 1] = 'd:' .. day; args[#args + 1] = net[day]
        if qty[day] then args[#args + 1] = 'q:' .. day; args[#args + 1] = qty[day] end
      end
    end
    redis.call('HSET', key, unpack(args))
  end
  if #stale > 0 then redis.call('HDEL', key, unpack(stale)) end
  local add = category_add[ci]
  if add then
    for category, cents in pairs(add) do redis.call('HINCRBY', KEYS[category_key[ci]], category, cents) end
  end
  if new_lt then
    customers[#customers + 1] = ci
    local row = aggregate_row(h, sums)
    if with_categories then row[#row + 1] = redis.call('HGETALL', KEYS[category_key[ci]]) end
    customers[#customers + 1] = row
  end
end
return {stored_wm, deliveries, customers}
"""
)

# -- the fold in the worker (SEGSTREAM_REDIS_FOLD=worker) -----------------------------------------------------

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
