"""Quota counters in Redis, for several workers or replicas sharing one plan's windows.

Admission is one Lua script, so it is atomic across every process that shares the Redis: N
concurrent requests against Q remaining admit exactly min(N, Q) however they are spread over
workers. Time comes from the gateway's clock (passed in), like the in-process backend.

Keys, all hash-tagged by user so a cluster keeps one user's keys together:
``{p}:{uid}:5h:z`` (seconds with requests, scored by second), ``{p}:{uid}:5h:c`` (weight per
second), ``{p}:{uid}:5h:t`` (total), ``{p}:{uid}:w:<start>`` / ``m:<start>`` (calendar
periods), ``mt:<start>`` / ``mc:<start>`` (monthly tokens / cost).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

from oneplan.errors import BackendUnavailable
from oneplan.metering.counters import Counters, Reservation, refusal
from oneplan.metering.resp import LeanRedis, RespError
from oneplan.metering.windows import ROLLING_SECONDS, Clock, Periods, WindowState
from oneplan.routing.catalog import Plan

log = logging.getLogger("oneplan.quota")

# KEYS: z, c, t, week, month, tokens, cost
# ARGV: now, weight, lim5h, limw, limm, limt, limc, week_ttl, month_ttl, unsent tokens, unsent
#       cost (this process's settled usage not yet flushed)   (limits: -1 = none)
_ADMIT = """
local now = tonumber(ARGV[1])
local weight = tonumber(ARGV[2])
local cutoff = math.floor(now) - @WINDOW@
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', cutoff)
if #expired > 0 then
  local gone = 0
  for _, s in ipairs(expired) do
    gone = gone + tonumber(redis.call('HGET', KEYS[2], s) or '0')
    redis.call('HDEL', KEYS[2], s)
  end
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', cutoff)
  redis.call('DECRBY', KEYS[3], gone)
end
local total = tonumber(redis.call('GET', KEYS[3]) or '0')
local week = tonumber(redis.call('GET', KEYS[4]) or '0')
local month = tonumber(redis.call('GET', KEYS[5]) or '0')
local tokens = tonumber(redis.call('GET', KEYS[6]) or '0') + tonumber(ARGV[10])
local cost = tonumber(redis.call('GET', KEYS[7]) or '0') + tonumber(ARGV[11])
local function frees(need, limit)
  local excess = total + need - limit
  local seconds = redis.call('ZRANGE', KEYS[1], 0, -1)
  for _, s in ipairs(seconds) do
    excess = excess - tonumber(redis.call('HGET', KEYS[2], s) or '0')
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
  redis.call('ZADD', KEYS[1], second, second)
  redis.call('HINCRBY', KEYS[2], second, weight)
  total = redis.call('INCRBY', KEYS[3], weight)
  week = redis.call('INCRBY', KEYS[4], weight)
  redis.call('EXPIRE', KEYS[4], ARGV[8])
  month = redis.call('INCRBY', KEYS[5], weight)
  redis.call('EXPIRE', KEYS[5], ARGV[9])
  redis.call('EXPIRE', KEYS[1], @TTL@)
  redis.call('EXPIRE', KEYS[2], @TTL@)
  redis.call('EXPIRE', KEYS[3], @TTL@)
end
local f = ''
if total > 0 and lim5h >= 0 then f = tostring(frees(1, lim5h)) end
return {1, tostring(total), f, tostring(week), tostring(month), tostring(tokens), tostring(cost)}
""".replace("@WINDOW@", str(ROLLING_SECONDS)).replace("@TTL@", str(ROLLING_SECONDS + 60))

# KEYS: c, t, week, month   ARGV: second, weight
_RELEASE = """
local left = redis.call('HINCRBY', KEYS[1], ARGV[1], -tonumber(ARGV[2]))
redis.call('DECRBY', KEYS[2], ARGV[2])
if redis.call('EXISTS', KEYS[3]) == 1 then redis.call('DECRBY', KEYS[3], ARGV[2]) end
if redis.call('EXISTS', KEYS[4]) == 1 then redis.call('DECRBY', KEYS[4], ARGV[2]) end
return left
"""


def _limit(value: float | None) -> str:
    return "-1" if value is None else repr(value)


class RedisCounters(Counters):
    def __init__(
        self, url: str, clock: Clock, periods: Periods, prefix: str = "oneplan", max_connections: int = 64
    ) -> None:
        super().__init__(clock, periods)
        import redis.asyncio as redis

        # A bounded pool that waits for a free connection (the default one raises "Too many
        # connections" under load); a burst queues here instead of failing.
        pool = redis.BlockingConnectionPool.from_url(
            url, decode_responses=True, max_connections=max_connections, timeout=10
        )
        self.redis = redis.Redis(connection_pool=pool)
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError, RespError, TimeoutError)
        self.lean = LeanRedis(url)  # admissions: the one round trip every request makes
        self.prefix = prefix
        self._admit = self.redis.register_script(_ADMIT)
        self._release = self.redis.register_script(_RELEASE)
        self.flush_seconds = 0.05
        self._unsent: dict[tuple[int, float, float], list[Any]] = {}
        self._flusher: asyncio.Task[None] | None = None

    def _keys(self, user_id: int, week_start: float, month_start: float) -> list[str]:
        base = f"{self.prefix}:{{{user_id}}}"
        return [
            f"{base}:5h:z",
            f"{base}:5h:c",
            f"{base}:5h:t",
            f"{base}:w:{int(week_start)}",
            f"{base}:m:{int(month_start)}",
            f"{base}:mt:{int(month_start)}",
            f"{base}:mc:{int(month_start)}",
        ]

    async def admit(self, user_id: int, plan: Plan, weight: int) -> Reservation:
        now = self.clock()
        week_start, week_end = self.periods.week(now)
        month_start, month_end = self.periods.month(now)
        try:
            result = await self._call_admit(user_id, plan, weight, now, week_start, week_end, month_start, month_end)
        except self._errors as exc:
            raise BackendUnavailable(
                f"The quota store is unreachable ({type(exc).__name__}); try again shortly."
            ) from exc
        if int(result[0]) == 0:
            limits = _limits(plan)
            exhausted = []
            for i in range(1, len(result), 3):
                window, used, frees = result[i], float(result[i + 1]), result[i + 2]
                resets = float(frees) if frees else (week_end if window == "week" else month_end)
                exhausted.append(WindowState(window, used, limits[window], resets))
            raise refusal(exhausted, now)
        total, frees, week, month, tokens, cost = result[1:]
        used = {"5h": float(total), "week": float(week), "month": float(month),
                "tokens_month": float(tokens), "cost_month": float(cost)}
        resets = {"5h": float(frees) if frees else None, "week": week_end, "month": month_end,
                  "tokens_month": month_end, "cost_month": month_end}
        states = [WindowState(w, used[w], limit, resets[w]) for w, limit in _limits(plan).items()]
        return Reservation(user_id, weight, int(now), week_start, month_start, states)

    async def _call_admit(
        self, user_id: int, plan: Plan, weight: int, now: float,
        week_start: float, week_end: float, month_start: float, month_end: float,
    ) -> Any:
        return await self.lean.evalsha(
            self._admit.sha, _ADMIT,
            self._keys(user_id, week_start, month_start),
            [
                repr(now), weight,
                _limit(plan.requests_per_5h), _limit(plan.requests_per_week), _limit(plan.requests_per_month),
                _limit(plan.tokens_per_month), _limit(plan.cost_per_month),
                int(week_end - now) + 3600, int(month_end - now) + 3600,
                *self._unsent.get((user_id, week_start, month_start), (0, 0.0)),
            ],
        )

    async def settle(self, reservation: Reservation, tokens: int, cost: float) -> None:
        """Add the tokens and cost to the monthly budgets - in batches: a round trip per
        request would cost more than the request. Budgets admit while not used up, so they may
        trail by one flush (``flush_seconds``); the ledger stays the exact record."""
        reservation.settled = True
        if not (tokens or cost):
            return
        key = (reservation.user_id, reservation.week_start, reservation.month_start)
        slot = self._unsent.get(key)
        if slot is None:
            self._unsent[key] = [tokens, cost]
        else:
            slot[0] += tokens
            slot[1] += cost
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush_later())

    async def _flush_later(self) -> None:
        await asyncio.sleep(self.flush_seconds)
        try:
            await self.flush()
        except self._errors:
            log.exception("flushing token and cost budgets to Redis failed; the ledger keeps them")

    async def flush(self) -> None:
        unsent, self._unsent = self._unsent, {}
        if not unsent:
            return
        pipe = self.redis.pipeline(transaction=False)
        for (user_id, week_start, month_start), (tokens, cost) in unsent.items():
            keys = self._keys(user_id, week_start, month_start)
            if tokens:
                pipe.incrby(keys[5], tokens)
                pipe.expire(keys[5], 40 * 86400)
            if cost:
                pipe.incrbyfloat(keys[6], cost)
                pipe.expire(keys[6], 40 * 86400)
        await pipe.execute()

    async def release(self, reservation: Reservation) -> None:
        if reservation.settled or not reservation.weight:
            return
        reservation.settled = True
        keys = self._keys(reservation.user_id, reservation.week_start, reservation.month_start)
        try:
            await self._release(keys=[keys[1], keys[2], keys[3], keys[4]], args=[reservation.second, reservation.weight])
        except self._errors:
            # The failed request stays counted until its window passes; the ledger says failed.
            log.exception("giving a failed request's quota back failed (Redis unreachable)")

    async def states(self, user_id: int, plan: Plan) -> list[WindowState]:
        await self.flush()
        # An admission of weight 0 reads every window without changing any.
        reservation = await self.admit(user_id, plan, 0)
        return reservation.states

    async def rebuild(self, rows: Iterable[tuple[int, int, int, int, float]]) -> bool:
        """Load ledger rows once per Redis lifetime: the first gateway to start after Redis lost
        its data rebuilds; the others find the marker and skip (or they would double count)."""
        marker = f"{self.prefix}:loaded"
        if not await self.redis.set(marker, "1", nx=True):
            return False
        now = self.clock()
        week_start, _ = self.periods.week(now)
        month_start, _ = self.periods.month(now)
        cutoff = int(now) - ROLLING_SECONDS
        pipe = self.redis.pipeline(transaction=False)
        for user_id, second, weight, tokens, cost in rows:
            keys = self._keys(user_id, week_start, month_start)
            weight, tokens, cost = int(weight or 0), int(tokens or 0), float(cost or 0.0)
            if second > cutoff and weight:
                pipe.zadd(keys[0], {str(second): second})
                pipe.hincrby(keys[1], str(second), weight)
                pipe.incrby(keys[2], weight)
            if second >= week_start and weight:
                pipe.incrby(keys[3], weight)
            if second >= month_start:
                if weight:
                    pipe.incrby(keys[4], weight)
                if tokens:
                    pipe.incrby(keys[5], tokens)
                if cost:
                    pipe.incrbyfloat(keys[6], cost)
            for key in keys:
                pipe.expire(key, 40 * 86400)
        await pipe.execute()
        return True

    async def aclose(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
        await self.flush()
        await self.lean.aclose()
        await self.redis.aclose()


def _limits(plan: Plan) -> dict[str, float]:
    limits: dict[str, Any] = {
        "5h": plan.requests_per_5h, "week": plan.requests_per_week, "month": plan.requests_per_month,
        "tokens_month": plan.tokens_per_month, "cost_month": plan.cost_per_month,
    }
    return {k: float(v) for k, v in limits.items() if v is not None}
