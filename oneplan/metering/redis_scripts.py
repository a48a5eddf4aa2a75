"""The Lua scripts behind ``redis_counters``: each one atomic on the Redis server.

Keys (``P`` is the prefix, ``U`` a user id; ``S`` a window's counter, see
``counters.Charge.key``: ``<unit>:r<seconds>`` rolling, ``<unit>:<kind><length>:<start>``
calendar or anniversary)::

    P:gen              the counters' generation: missing = Redis lost its state (or never had it)
    P:lock             who is rebuilding from the ledger now (SET NX PX)
    P:{U}:S:z / :c / :t  a rolling window: seconds with charges (zset), amount per second
                       (hash), the window's total
    P:{U}:S            a calendar or anniversary period's total (expires after its end)
    P:{U}:if           requests in flight: field "<replica>:<request id>", value
                       "<charges>|<second>|<output tokens>|<generation>" (``Reservation.value``)
    P:{U}:run          requests running (the concurrency limit): removed as each one ends
    P:{U}:gone         tombstones: requests a reconciler released without a ledger row
    P:{U}:late         requests charged in full without an in-flight entry to remove (``SETTLE``
                       late, ``RECHARGE``): the mark that makes a repeated script charge once
    P:r:<replica>:u    users with requests in flight on a replica   P:hb:<replica>  its heartbeat
    P:replicas         every replica that registered

Amounts are floats (``INCRBYFLOAT``): requests stay exact integers, credits and cost need
fractions. Scripts touch keys of several users (a settlement batch), so this is for a single
Redis primary (with replicas or Sentinel for availability), not Redis Cluster.
"""

from __future__ import annotations

# Shared Lua: pruning a rolling window, reading a window, moving an amount in or out of one.
_COMMON = """
local function fmt(x) return string.format('%.17g', x) end
local function prune(key, seconds, now)
  local z, c, t = key .. ':z', key .. ':c', key .. ':t'
  local cutoff = math.floor(now) - seconds
  local expired = redis.call('ZRANGEBYSCORE', z, '-inf', cutoff)
  if #expired > 0 then
    local gone = 0
    for _, s in ipairs(expired) do
      gone = gone + tonumber(redis.call('HGET', c, s) or '0')
      redis.call('HDEL', c, s)
    end
    redis.call('ZREMRANGEBYSCORE', z, '-inf', cutoff)
    if redis.call('ZCARD', z) == 0 then
      redis.call('DEL', t)
    else
      redis.call('INCRBYFLOAT', t, fmt(-gone))
    end
  end
end
local function used(kind, key)
  if kind == 'r' then return tonumber(redis.call('GET', key .. ':t') or '0') end
  return tonumber(redis.call('GET', key) or '0')
end
-- Move ``delta`` into the window at ``second``. Rolling: only while that second is in the
-- window. A period: only into its current counter, or (``create``) while the period lasts.
local function move(kind, key, second, delta, span, now, create)
  if delta == 0 then return end
  if kind == 'r' then
    if second <= math.floor(now) - span then return end
    redis.call('ZADD', key .. ':z', second, second)
    redis.call('HINCRBYFLOAT', key .. ':c', second, fmt(delta))
    redis.call('INCRBYFLOAT', key .. ':t', fmt(delta))
    for _, k in ipairs({key .. ':z', key .. ':c', key .. ':t'}) do redis.call('EXPIRE', k, span + 60) end
  else
    if redis.call('EXISTS', key) == 1 or (create and span > now) then
      redis.call('INCRBYFLOAT', key, fmt(delta))
      redis.call('EXPIRE', key, math.max(60, math.floor(span - now) + 3600))  -- the gateway's clock
    end
  end
end
-- Move each window's amount of an entry: ARGV[first..last] holds 4 values per window (kind,
-- counter, amount, span), as ``entries.moves`` lays them out; ``plus`` (optional) adds to each
-- counter's amount.
local function apply(base, first, last, second, now, create, plus)
  for j = first, last, 4 do
    local amount = tonumber(ARGV[j + 2]) + (plus and plus[ARGV[j + 1]] or 0)
    move(ARGV[j], base .. ':' .. ARGV[j + 1], second, amount, tonumber(ARGV[j + 3]), now, create)
  end
end
-- The first time a request is charged in full with no in-flight entry to take as the token:
-- true once per field, so a script run again (its reply lost, the client retried) charges once.
-- The mark lives as long as a tombstone; a Redis that loses it lost the charge too.
local function first_charge(base, field)
  if redis.call('HSETNX', base .. ':late', field, '1') == 0 then return false end
  redis.call('EXPIRE', base .. ':late', 8 * 86400)
  return true
end
-- A replica that (re-)enters the registry is alive: it is running this script. After Redis lost
-- its state the registry holds a replica again before its next heartbeat does, and a replica
-- in the registry without a heartbeat is taken for dead (its requests reconciled away).
local function register(registry, heartbeat, field, ms)
  if redis.call('SADD', registry, string.sub(field, 1, string.find(field, ':', 1, true) - 1)) == 1 then
    redis.call('SET', heartbeat, '1', 'PX', ms)
  end
end
-- When enough of a rolling window expires for ``need`` more.
local function frees(key, span, total, need, limit, now)
  local excess = total + need - limit
  local z, c = key .. ':z', key .. ':c'
  local start = 0
  local last = nil
  while true do
    local seconds = redis.call('ZRANGE', z, start, start + 63)
    if #seconds == 0 then break end
    for _, s in ipairs(seconds) do
      excess = excess - tonumber(redis.call('HGET', c, s) or '0')
      last = s
      if excess <= 1e-9 then return tostring(tonumber(s) + span) end
    end
    start = start + 64
  end
  if last then return tostring(tonumber(last) + span) end
  return ''
end
"""

# KEYS: gen, inflight, running, replica-users, replicas (the registry: a replica with entries in
#       flight is in it even if it registered before Redis lost its state), the replica's heartbeat
# ARGV: now, field, user id, concurrency (-1 none), requested output (-1 none), min output,
#       refuse (1: never lower it), charges (the entry's value prefix), key base, probe (1: only
#       read), heartbeat (ms), k, k finished fields (no longer running), n, then 8 per window:
#       kind, counter, fixed, per output token, span (rolling seconds / period end), limit,
#       budget (1/0), name
# Reply: {-1} Redis lost its state | {0, name, used, frees, fixed, ...} refused: used up |
#        {2, name, used, frees, need} the worst case does not fit | {3, running} concurrency |
#        {1, gen, output (-1: not metered), used, frees, ...} admitted
ADMIT = _COMMON + """
local gen = redis.call('GET', KEYS[1])
if not gen then return {-1} end
local now = tonumber(ARGV[1])
local field, uid = ARGV[2], ARGV[3]
local conc, requested, min_out = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local refuse, charges, base, probe = ARGV[7] == '1', ARGV[8], ARGV[9], ARGV[10] == '1'
local beat = ARGV[11]
local i = 12
local k = tonumber(ARGV[i]); i = i + 1
for _ = 1, k do redis.call('HDEL', KEYS[3], ARGV[i]); i = i + 1 end
if conc >= 0 and not probe then
  local running = redis.call('HLEN', KEYS[3])
  if running >= conc then return {3, tostring(running)} end
end
local n = tonumber(ARGV[i]); i = i + 1
local W = {}
for j = 1, n do
  local w = {kind = ARGV[i], key = base .. ':' .. ARGV[i + 1], fixed = tonumber(ARGV[i + 2]),
             per = tonumber(ARGV[i + 3]), span = tonumber(ARGV[i + 4]), limit = tonumber(ARGV[i + 5]),
             budget = ARGV[i + 6] == '1', name = ARGV[i + 7]}
  i = i + 8
  if w.kind == 'r' then prune(w.key, w.span, now) end
  w.used = used(w.kind, w.key)
  W[j] = w
end
local function frees_of(w, need)
  if w.kind == 'r' then return frees(w.key, w.span, w.used, math.max(need, 1), w.limit, now) end
  return tostring(w.span)
end
local best, bind, metered = requested, 0, false
local out = {}
if not probe then
  for j, w in ipairs(W) do
    local room = w.limit - w.used
    if (w.budget and room <= 0) or w.fixed > room + 1e-9 then
      table.insert(out, w.name); table.insert(out, fmt(w.used)); table.insert(out, frees_of(w, w.fixed))
      table.insert(out, fmt(w.fixed))
    elseif w.per > 0 then
      metered = true
      local most = math.floor((room - w.fixed) / w.per + 1e-9)
      if best < 0 or most < best then best = most; bind = j end
    end
  end
  if #out > 0 then
    table.insert(out, 1, 0)
    return out
  end
  if metered and requested >= 0 and best < requested then
    if refuse or best < math.min(min_out, requested) then
      local w = W[bind]
      return {2, w.name, fmt(w.used), frees_of(w, w.fixed + w.per * requested), fmt(w.fixed + w.per * requested)}
    end
  end
end
if not metered then best = -1 end
local output = math.max(best, 0)
local second = math.floor(now)
local reply = {1, gen, tostring(best)}
for _, w in ipairs(W) do
  if not probe then
    local amount = w.fixed + w.per * output
    if amount ~= 0 then
      move(w.kind, w.key, second, amount, w.span, now, true)
      w.used = w.used + amount
    end
  end
  table.insert(reply, fmt(w.used))
  if w.kind == 'r' then
    if w.used > 0 then table.insert(reply, frees(w.key, w.span, w.used, 1, w.limit, now)) else table.insert(reply, '') end
  else
    table.insert(reply, tostring(w.span))
  end
end
if not probe then
  redis.call('HSET', KEYS[2], field, charges .. '|' .. second .. '|' .. best .. '|' .. gen)
  redis.call('HSET', KEYS[3], field, second)
  redis.call('SADD', KEYS[4], uid)
  register(KEYS[5], KEYS[6], field, beat)
end
return reply
"""

# A failed request gives its reservation back - once (the in-flight entry is the token), and
# only to the generation that holds it (a Redis that lost its state holds nothing to give back).
# A reconciler releasing a dead replica's request that has no ledger row (yet) leaves a
# tombstone (``P:U:gone``: what it gave back, "counter=amount;..."), so that if the row turns up
# later - its journal replayed when the replica restarts, or the replica was not dead after all
# (a heartbeat that lapsed while it stalled) and settles it - the request is charged again, once.
# A rebuild in progress (``P:rebuild``) holds the requests replanted into it already: a release
# of one of them gives it back there too.
# KEYS: gen, inflight, gone, running, rebuild   ARGV: field, generation, tombstone, second, now,
#       key base, n, then 4 per window: kind, counter, amount, span
RELEASE = _COMMON + """
redis.call('HDEL', KEYS[4], ARGV[1])
local gen = redis.call('GET', KEYS[1]) or redis.call('GET', KEYS[5])
if gen ~= ARGV[2] then return 0 end
if redis.call('HDEL', KEYS[2], ARGV[1]) == 0 then return 0 end
local second, now, base = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
local n = tonumber(ARGV[7])
local i = 8
for _ = 1, n do
  move(ARGV[i], base .. ':' .. ARGV[i + 1], second, -tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3]), now, false)
  i = i + 4
end
if ARGV[3] == '1' then
  local back = {}
  for j = 8, i - 1, 4 do table.insert(back, ARGV[j + 1] .. '=' .. ARGV[j + 2]) end
  redis.call('HSET', KEYS[3], ARGV[1], table.concat(back, ';'))
  redis.call('EXPIRE', KEYS[3], 8 * 86400)
end
return 1
"""

# Settle a batch of requests whose ledger rows are in the database. Per entry: key base,
# field, the generation its row was committed under, needs-entry (1: apply only by removing
# the in-flight entry - exactly once; 0: charged late, in full - a request admitted before Redis
# lost its state and committed after the rebuild read the ledger: nobody else counts it),
# second, now, n, then 4 per window: kind, counter, amount (the change), span. An entry that
# needs its in-flight entry and finds a tombstone instead was given back by a reconciler that
# took its replica for dead: the change plus what was given back is its real usage, charged once.
# KEYS: gen.  Reply per entry: 'ok' | 'skip' (a later rebuild counted it) | 'wait' (no state yet)
SETTLE = _COMMON + """
local gen = redis.call('GET', KEYS[1])
local out = {}
local i = 1
while i <= #ARGV do
  local base, field, committed, needs = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local second, now, n = tonumber(ARGV[i + 4]), tonumber(ARGV[i + 5]), tonumber(ARGV[i + 6])
  local first = i + 7
  i = first + 4 * n
  if not gen then
    table.insert(out, 'wait')
  elseif tonumber(gen) > tonumber(committed) then
    table.insert(out, 'skip')
  elseif tonumber(gen) < tonumber(committed) then
    table.insert(out, 'wait')
  else
    local removed = redis.call('HDEL', base .. ':if', field)
    local back = needs == '1' and removed == 0 and redis.call('HGET', base .. ':gone', field)
    if back then
      redis.call('HDEL', base .. ':gone', field)
      first_charge(base, field)  -- the mark a replay of the row would find (``RECHARGE``)
      local given = {}
      for counter, amount in string.gmatch(back, '([^=;]+)=([^;]+)') do given[counter] = tonumber(amount) end
      apply(base, first, i - 1, second, now, true, given)
      table.insert(out, 'ok')
    elseif needs == '1' and removed == 0 then
      table.insert(out, 'skip')
    elseif needs == '0' and not first_charge(base, field) then
      table.insert(out, 'ok')  -- this very settlement ran before; its reply was lost
    else
      apply(base, first, i - 1, second, now, true)
      table.insert(out, 'ok')
    end
  end
end
return out
"""

# Replant requests this replica admitted before Redis lost its state and that no rebuild read
# can have counted (their ledger rows are not in the database yet): charged again under the new
# generation, with their in-flight entries, while the rebuild is in progress (``P:rebuild``
# names it) or just after - and their users are this replica's again, so that a reconciler
# finds the entries if the replica dies. Per entry: key base, field, user id, second, now, the
# entry's value without its generation, n, then 4 per window: kind, counter, amount, span.
# KEYS: gen, rebuild, replica-users, replicas, the replica's heartbeat.  ARGV[1]: the new
# generation, ARGV[2]: the heartbeat (ms).
# Reply: 1 replanted | 0 not this generation
REPLANT = _COMMON + """
local target = ARGV[1]
if redis.call('GET', KEYS[1]) ~= target and redis.call('GET', KEYS[2]) ~= target then return 0 end
local i = 3
while i <= #ARGV do
  local base, field, uid = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local second, now, value = tonumber(ARGV[i + 3]), tonumber(ARGV[i + 4]), ARGV[i + 5]
  local n = tonumber(ARGV[i + 6])
  local first = i + 7
  i = first + 4 * n
  local planted = value .. '|' .. target
  if redis.call('HGET', base .. ':if', field) ~= planted then  -- not when run again (reply lost)
    apply(base, first, i - 1, second, now, true)
    redis.call('HSET', base .. ':if', field, planted)
    redis.call('HSET', base .. ':run', field, second)
  end
  redis.call('SADD', KEYS[3], uid)
  register(KEYS[4], KEYS[5], field, ARGV[2])
end
return 1
"""

# Rows a restarted replica replayed from a dead predecessor's journal, whose in-flight entries
# are gone: charge them once if a reconciler released them without a row (tombstone), or if a
# rebuild read the ledger before the row was committed (into a rebuild still in progress, too).
# Per row: key base, field, committed generation, admitted generation, second, now, n, then 4
# per window: kind, counter, amount (the real usage), span.   KEYS: gen, rebuild.
# Reply per row: 'ok' | 'skip' (with no state and no rebuild begun, the coming rebuild's read
# of the ledger counts the row)
RECHARGE = _COMMON + """
local gen = redis.call('GET', KEYS[1]) or redis.call('GET', KEYS[2])
local out = {}
local i = 1
while i <= #ARGV do
  local base, field, committed, admitted = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local second, now, n = tonumber(ARGV[i + 4]), tonumber(ARGV[i + 5]), tonumber(ARGV[i + 6])
  local first = i + 7
  i = first + 4 * n
  local due = false
  if gen then
    local tombstone = redis.call('HDEL', base .. ':gone', field) == 1
    local unread = gen == committed and tonumber(committed) > tonumber(admitted)
    -- A tombstone is its own token (taken by the HDEL); the other case needs the mark.
    if tombstone then
      first_charge(base, field)
      due = true
    elseif unread then
      due = first_charge(base, field)
    end
  end
  if due then
    apply(base, first, i - 1, second, now, true)
    table.insert(out, 'ok')
  else
    table.insert(out, 'skip')
  end
end
return out
"""
