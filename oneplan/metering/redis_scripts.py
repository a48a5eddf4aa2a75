"""The Lua scripts behind ``redis_counters``: each one atomic on the Redis server.

Keys (``P`` is the prefix, ``U`` a user id; calendar keys carry their period's start)::

    P:gen              the counters' generation: missing = Redis lost its state (or never had it)
    P:lock             who is rebuilding from the ledger now (SET NX PX)
    P:U:5h:z / :c / :t seconds with requests (zset), weight per second (hash), rolling total
    P:U:w:<start>      requests this week        P:U:m:<start>   requests this month
    P:U:mt:<start>     tokens this month         P:U:mc:<start>  cost this month
    P:U:if             requests in flight: field "<replica>:<request id>",
                       value "<second>|<weight>|<week start>|<month start>|<generation>"
    P:r:<replica>:u    users with requests in flight on a replica   P:hb:<replica>  its heartbeat
    P:replicas         every replica that registered

Scripts touch keys of several users (a settlement batch), so this is for a single Redis primary
(with replicas or Sentinel for availability), not Redis Cluster.
"""

from __future__ import annotations

from oneplan.metering.windows import ROLLING_SECONDS

# Shared Lua: the rolling window of one user, pruned to ``now``.
_PRUNE = """
local function prune(z, c, t, now)
  local cutoff = math.floor(now) - @WINDOW@
  local expired = redis.call('ZRANGEBYSCORE', z, '-inf', cutoff)
  if #expired > 0 then
    local gone = 0
    for _, s in ipairs(expired) do
      gone = gone + tonumber(redis.call('HGET', c, s) or '0')
      redis.call('HDEL', c, s)
    end
    redis.call('ZREMRANGEBYSCORE', z, '-inf', cutoff)
    redis.call('DECRBY', t, gone)
  end
end
local function charge(z, c, t, w, m, second, weight, week_ttl, month_ttl)
  redis.call('ZADD', z, second, second)
  redis.call('HINCRBY', c, second, weight)
  local total = redis.call('INCRBY', t, weight)
  local week = redis.call('INCRBY', w, weight)
  redis.call('EXPIRE', w, week_ttl)
  local month = redis.call('INCRBY', m, weight)
  redis.call('EXPIRE', m, month_ttl)
  redis.call('EXPIRE', z, @TTL@)
  redis.call('EXPIRE', c, @TTL@)
  redis.call('EXPIRE', t, @TTL@)
  return total, week, month
end
"""

# KEYS: gen, z, c, t, week, month, tokens, cost, inflight, replica-users
# ARGV: now, weight, lim5h, limw, limm, limt, limc, week_ttl, month_ttl, field, value-prefix,
#       user id      (limits: -1 = none)
# Reply: {-1} Redis lost its state (rebuild first) | {0, window, used, frees, ...} refused |
#        {1, gen, total, frees, week, month, tokens, cost} admitted
ADMIT = (_PRUNE + """
local gen = redis.call('GET', KEYS[1])
if not gen then return {-1} end
local now = tonumber(ARGV[1])
local weight = tonumber(ARGV[2])
prune(KEYS[2], KEYS[3], KEYS[4], now)
local total = tonumber(redis.call('GET', KEYS[4]) or '0')
local week = tonumber(redis.call('GET', KEYS[5]) or '0')
local month = tonumber(redis.call('GET', KEYS[6]) or '0')
local tokens = tonumber(redis.call('GET', KEYS[7]) or '0')
local cost = tonumber(redis.call('GET', KEYS[8]) or '0')
local function frees(need, limit)
  local excess = total + need - limit
  local seconds = redis.call('ZRANGE', KEYS[2], 0, -1)
  for _, s in ipairs(seconds) do
    excess = excess - tonumber(redis.call('HGET', KEYS[3], s) or '0')
    if excess <= 0 then return tonumber(s) + @WINDOW@ end
  end
  if #seconds > 0 then return tonumber(seconds[#seconds]) + @WINDOW@ end
  return now
end
local lim5h, limw, limm = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local limt, limc = tonumber(ARGV[6]), tonumber(ARGV[7])
local out = {}
if lim5h >= 0 and total + weight > lim5h then
  table.insert(out, '5h'); table.insert(out, tostring(total)); table.insert(out, tostring(frees(math.max(weight, 1), lim5h)))
end
if limw >= 0 and week + weight > limw then table.insert(out, 'week'); table.insert(out, tostring(week)); table.insert(out, '') end
if limm >= 0 and month + weight > limm then table.insert(out, 'month'); table.insert(out, tostring(month)); table.insert(out, '') end
if limt >= 0 and tokens >= limt then table.insert(out, 'tokens_month'); table.insert(out, tostring(tokens)); table.insert(out, '') end
if limc >= 0 and cost >= limc then table.insert(out, 'cost_month'); table.insert(out, tostring(cost)); table.insert(out, '') end
if #out > 0 then
  table.insert(out, 1, 0)
  return out
end
local second = math.floor(now)
if weight > 0 then
  total, week, month = charge(KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], second, weight, ARGV[8], ARGV[9])
  redis.call('HSET', KEYS[9], ARGV[10], second .. '|' .. ARGV[11] .. '|' .. gen)
  redis.call('SADD', KEYS[10], ARGV[12])
end
local f = ''
if total > 0 and lim5h >= 0 then f = tostring(frees(1, lim5h)) end
return {1, gen, tostring(total), f, tostring(week), tostring(month), tostring(tokens), tostring(cost)}
""").replace("@WINDOW@", str(ROLLING_SECONDS)).replace("@TTL@", str(ROLLING_SECONDS + 60))

# A failed request gives its weight back - once (the in-flight entry is the token), and only to
# the generation that holds it (a Redis that lost its state holds nothing to give back).
# KEYS: gen, c, t, week, month, inflight   ARGV: second, weight, field, generation
RELEASE = """
if redis.call('GET', KEYS[1]) ~= ARGV[4] then return 0 end
if redis.call('HDEL', KEYS[6], ARGV[3]) == 0 then return 0 end
redis.call('HINCRBY', KEYS[2], ARGV[1], -tonumber(ARGV[2]))
redis.call('DECRBY', KEYS[3], ARGV[2])
if redis.call('EXISTS', KEYS[4]) == 1 then redis.call('DECRBY', KEYS[4], ARGV[2]) end
if redis.call('EXISTS', KEYS[5]) == 1 then redis.call('DECRBY', KEYS[5], ARGV[2]) end
return 1
"""

# Settle a batch of requests whose ledger rows are in the database. Per entry (13 ARGV each):
# prefix-user, field, generation the row was committed under, tokens, cost, weight to charge
# late (a request admitted before Redis lost its state and committed after the rebuild read the
# ledger: nobody else counts it), second, week start, month start, now, week ttl, month ttl,
# needs-entry (1: apply only by removing the in-flight entry - exactly once).
# KEYS: gen.  Reply per entry: 'ok' | 'skip' (a later rebuild counted it) | 'wait' (no state yet)
SETTLE = (_PRUNE + """
local gen = redis.call('GET', KEYS[1])
local out = {}
local n = 13
for i = 1, #ARGV, n do
  local base, field, committed = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  if not gen then
    table.insert(out, 'wait')
  elseif tonumber(gen) > tonumber(committed) then
    table.insert(out, 'skip')
  elseif tonumber(gen) < tonumber(committed) then
    table.insert(out, 'wait')
  else
    local removed = redis.call('HDEL', base .. ':if', field)
    if ARGV[i + 12] == '1' and removed == 0 then
      table.insert(out, 'skip')
    else
      local tokens, cost, late = tonumber(ARGV[i + 3]), tonumber(ARGV[i + 4]), tonumber(ARGV[i + 5])
      local week_start, month_start = ARGV[i + 7], ARGV[i + 8]
      if late > 0 then
        prune(base .. ':5h:z', base .. ':5h:c', base .. ':5h:t', tonumber(ARGV[i + 9]))
        charge(base .. ':5h:z', base .. ':5h:c', base .. ':5h:t', base .. ':w:' .. week_start,
               base .. ':m:' .. month_start, tonumber(ARGV[i + 6]), late, ARGV[i + 10], ARGV[i + 11])
      end
      if tokens > 0 then
        redis.call('INCRBY', base .. ':mt:' .. month_start, tokens)
        redis.call('EXPIRE', base .. ':mt:' .. month_start, ARGV[i + 11])
      end
      if cost > 0 then
        redis.call('INCRBYFLOAT', base .. ':mc:' .. month_start, cost)
        redis.call('EXPIRE', base .. ':mc:' .. month_start, ARGV[i + 11])
      end
      table.insert(out, 'ok')
    end
  end
end
return out
""").replace("@WINDOW@", str(ROLLING_SECONDS)).replace("@TTL@", str(ROLLING_SECONDS + 60))
