"""Quota counters in Redis, for several workers or replicas sharing one plan's windows - and
that heal when Redis loses its state or a replica dies.

Admission is one Lua script (``redis_scripts.ADMIT``), atomic across every process sharing the
Redis: N concurrent requests against Q remaining admit exactly min(N, Q). Time comes from the
gateway's clock, like the in-process backend.

What keeps the counters equal to the ledger when things go wrong:

* **Redis lost its state** (restarted empty, flushed, failed over to an empty replica). The
  ``gen`` key is missing, and every admission checks it inside its script, so no request is
  ever admitted against empty counters. The replica that sees it first takes the rebuild lock,
  reads the ledger under a database lock that orders it against every ledger flush, bumps the
  database's counter generation in the same transaction, loads the counters and sets ``gen``;
  the others wait for ``gen`` (bounded: then a 503). A request admitted before the loss is
  either in that read (its ledger row was committed before it) or charged by its own replica
  when its row is committed later (``late`` in ``SETTLE``): never both, never neither.
* **Tokens and cost** settle in batches after the request's ledger row is in the database
  (``committed``), at most ``flush_seconds`` later: the lag is bounded, and what a killed
  replica had not sent is found again from its in-flight entries.
* **A replica killed with SIGKILL** leaves in-flight entries (``P:U:if``) behind. Every replica
  keeps a heartbeat; entries of a replica whose heartbeat is gone are reconciled by another
  (under a lock): a request whose ledger row says it was answered is settled with its row's
  tokens and cost, any other gives its weight back.
* **Redis unreachable**: admissions fail fast with ``BackendUnavailable`` (a 503 with
  ``Retry-After`` in the caller's protocol), logged once per outage; releases and settlements
  are kept and retried; service resumes by itself.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from oneplan.errors import BackendUnavailable
from oneplan.metering.counters import Counters, Reservation, refusal
from oneplan.metering.redis_scripts import ADMIT, RELEASE, SETTLE
from oneplan.metering.resp import LeanRedis, RespError
from oneplan.metering.windows import ROLLING_SECONDS, Clock, Periods, WindowState
from oneplan.routing.catalog import Plan

log = logging.getLogger("oneplan.quota")

Rows = Sequence[tuple[int, int, int, int, float]]  # (user_id, second, weight, tokens, cost)


class LedgerView(Protocol):
    """What the counters read from the ledger (``store.db.Database`` implements it)."""

    def snapshot_for_counters(self, since: float) -> tuple[Rows, str]:
        """Charged rows since ``since`` and a new counter generation, in one transaction that
        no ledger flush can interleave with."""

    def outcomes(self, ids: Sequence[str]) -> dict[str, tuple[str, int, float]]:
        """Ledger rows by request id: (status, tokens, cost)."""


@dataclass(slots=True)
class _Pending:
    reservation: Reservation
    tokens: int
    cost: float
    committed: str | None = None  # the generation its ledger row was committed under


def _limit(value: float | None) -> str:
    return "-1" if value is None else repr(value)


class RedisCounters(Counters):
    def __init__(
        self,
        url: str,
        clock: Clock,
        periods: Periods,
        prefix: str = "oneplan",
        max_connections: int = 64,
        *,
        heartbeat_seconds: float = 10.0,
        rebuild_wait_seconds: float = 15.0,
        command_timeout: float = 2.0,
    ) -> None:
        super().__init__(clock, periods)
        import redis.asyncio as redis
        from redis.asyncio.retry import Retry
        from redis.backoff import ExponentialBackoff

        # A bounded pool that waits for a free connection (the default one raises "Too many
        # connections" under load); a burst queues here instead of failing. Pooled connections
        # outlive a Redis restart: a command on a dead one is retried on a fresh one.
        pool = redis.BlockingConnectionPool.from_url(
            url, decode_responses=True, max_connections=max_connections, timeout=10,
            socket_timeout=command_timeout * 5, socket_connect_timeout=command_timeout,
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.02), 2),
            retry_on_error=[redis.ConnectionError, redis.TimeoutError],
        )
        self.redis = redis.Redis(connection_pool=pool)
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError, RespError, TimeoutError)
        self.lean = LeanRedis(url, command_timeout=command_timeout)  # the per-request round trip
        self.prefix = prefix
        self.replica = secrets.token_hex(6)
        self.heartbeat_seconds = heartbeat_seconds
        self.rebuild_wait_seconds = rebuild_wait_seconds
        self.flush_seconds = 0.1
        self.view: LedgerView | None = None
        self._admit = self.redis.register_script(ADMIT)
        self._release = self.redis.register_script(RELEASE)
        self._settle = self.redis.register_script(SETTLE)
        self._pending: dict[str, _Pending] = {}  # request id -> settled, row not yet committed
        self._ready: list[_Pending] = []  # rows committed: to send to Redis
        self._releases: list[Reservation] = []  # releases Redis did not take yet
        self._recovering: asyncio.Task[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._down = False
        self.rebuilds = 0  # rebuilds this replica did (observability, tests)

    # -- keys -------------------------------------------------------------------------------

    def _base(self, user_id: int) -> str:
        return f"{self.prefix}:{{{user_id}}}"

    def _keys(self, user_id: int, week_start: float, month_start: float) -> list[str]:
        base = self._base(user_id)
        return [
            f"{base}:5h:z", f"{base}:5h:c", f"{base}:5h:t",
            f"{base}:w:{int(week_start)}", f"{base}:m:{int(month_start)}",
            f"{base}:mt:{int(month_start)}", f"{base}:mc:{int(month_start)}",
        ]

    @property
    def _gen_key(self) -> str:
        return f"{self.prefix}:gen"

    # -- admission --------------------------------------------------------------------------

    async def admit(self, user_id: int, plan: Plan, weight: int, request_id: str = "") -> Reservation:
        for _ in range(3):
            now = self.clock()
            week_start, week_end = self.periods.week(now)
            month_start, month_end = self.periods.month(now)
            field = f"{self.replica}:{request_id or secrets.token_hex(8)}"
            try:
                result = await self._call_admit(
                    user_id, plan, weight, now, week_start, week_end, month_start, month_end, field
                )
                status = int(result[0])
                if status == -1:
                    await self.recover()
                    continue
            except self._errors as exc:
                raise self._unavailable(exc) from exc
            self._up()
            if status == 0:
                limits = _limits(plan)
                exhausted = []
                for i in range(1, len(result), 3):
                    window, used, frees = result[i], float(result[i + 1]), result[i + 2]
                    resets = float(frees) if frees else (week_end if window == "week" else month_end)
                    exhausted.append(WindowState(window, used, limits[window], resets))
                raise refusal(exhausted, now)
            gen, total, frees, week, month, tokens, cost = result[1:]
            used = {"5h": float(total), "week": float(week), "month": float(month),
                    "tokens_month": float(tokens), "cost_month": float(cost)}
            resets = {"5h": float(frees) if frees else None, "week": week_end, "month": month_end,
                      "tokens_month": month_end, "cost_month": month_end}
            states = [WindowState(w, used[w], limit, resets[w]) for w, limit in _limits(plan).items()]
            return Reservation(
                user_id, weight, int(now), week_start, month_start, states, gen=str(gen), field=field
            )
        raise BackendUnavailable("The quota counters are being rebuilt; try again shortly.", retry_after=2)

    async def _call_admit(
        self, user_id: int, plan: Plan, weight: int, now: float,
        week_start: float, week_end: float, month_start: float, month_end: float, field: str,
    ) -> Any:
        base = self._base(user_id)
        return await self.lean.evalsha(
            self._admit.sha, ADMIT,
            [self._gen_key, *self._keys(user_id, week_start, month_start), f"{base}:if",
             f"{self.prefix}:r:{self.replica}:u"],
            [
                repr(now), weight,
                _limit(plan.requests_per_5h), _limit(plan.requests_per_week), _limit(plan.requests_per_month),
                _limit(plan.tokens_per_month), _limit(plan.cost_per_month),
                int(week_end - now) + 3600, int(month_end - now) + 3600,
                field, f"{weight}|{int(week_start)}|{int(month_start)}", user_id,
            ],
        )

    def _unavailable(self, exc: BaseException) -> BackendUnavailable:
        if not self._down:
            self._down = True
            log.error("Redis is unreachable (%s): requests get 503 until it answers again", type(exc).__name__)
        return BackendUnavailable(
            f"The quota store is unreachable ({type(exc).__name__}); try again shortly.", retry_after=2
        )

    def _up(self) -> None:
        if self._down:
            self._down = False
            log.warning("Redis answers again: admitting requests")

    # -- settling ---------------------------------------------------------------------------

    def settle(self, reservation: Reservation, tokens: int, cost: float) -> None:
        """Keep the reservation; its tokens and cost go to Redis once its ledger row is in the
        database (``committed``), batched - a round trip per request would cost more than the
        request."""
        if reservation.settled:
            return
        reservation.settled = True
        self._pending[reservation.field] = _Pending(reservation, tokens, cost)

    def committed(self, rows: Iterable[dict[str, Any]], generation: str) -> None:
        for row in rows:
            entry = self._pending.pop(f"{self.replica}:{row['id']}", None)
            if entry is not None:
                entry.committed = generation
                self._ready.append(entry)

    async def release(self, reservation: Reservation) -> None:
        if reservation.settled:
            return
        reservation.settled = True
        if not reservation.weight:
            return
        try:
            await self._release_now(reservation)
        except self._errors as exc:
            self._unavailable(exc)
            self._releases.append(reservation)  # retried by the flusher

    async def _release_now(self, r: Reservation) -> None:
        keys = self._keys(r.user_id, r.week_start, r.month_start)
        await self.lean.evalsha(
            self._release.sha, RELEASE,
            [self._gen_key, keys[1], keys[2], keys[3], keys[4], f"{self._base(r.user_id)}:if"],
            [r.second, r.weight, r.field, r.gen],
        )

    async def flush(self) -> None:
        """Send committed settlements and retry releases (the flusher does this on a timer)."""
        releases, self._releases = self._releases, []
        for i, r in enumerate(releases):
            try:
                await self._release_now(r)
            except self._errors:
                self._releases.extend(releases[i:])
                raise
        ready, self._ready = self._ready, []
        if not ready:
            return
        now = self.clock()
        args: list[Any] = []
        for e in ready:
            r = e.reservation
            late = r.weight if e.committed != r.gen else 0
            args += [
                self._base(r.user_id), r.field, e.committed, e.tokens, repr(float(e.cost)), late, r.second,
                int(r.week_start), int(r.month_start), repr(now),
                max(60, int(r.week_start + 8 * 86400 - now)), max(60, int(r.month_start + 40 * 86400 - now)),
                0 if late else 1,
            ]
        try:
            replies = await self._settle(keys=[self._gen_key], args=args)
        except self._errors:
            self._ready[:0] = ready
            raise
        self._ready[:0] = [e for e, reply in zip(ready, replies, strict=True) if reply == "wait"]

    async def _flusher(self) -> None:
        while True:
            await asyncio.sleep(self.flush_seconds)
            try:
                await self.flush()
            except self._errors as exc:
                self._unavailable(exc)

    # -- state ------------------------------------------------------------------------------

    async def states(self, user_id: int, plan: Plan) -> list[WindowState]:
        await self.flush()
        # An admission of weight 0 reads every window without changing any.
        reservation = await self.admit(user_id, plan, 0)
        return reservation.states

    async def start(self, view: LedgerView) -> None:
        """Join: heartbeat, rebuild if Redis has no state, reconcile dead replicas' requests."""
        self.view = view
        try:
            await self._heartbeat()
            await self.redis.sadd(f"{self.prefix}:replicas", self.replica)
            if await self.redis.get(self._gen_key) is None:
                await self.recover()
            await self.reconcile()
        except self._errors as exc:
            self._unavailable(exc)  # not fatal: the first request that reaches Redis recovers
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._flusher(), name="quota-settle"),
            loop.create_task(self._watch(), name="quota-replicas"),
        ]

    async def recover(self) -> None:
        """Rebuild from the ledger once across replicas, or wait for whoever is doing it."""
        if self._recovering is None or self._recovering.done():
            self._recovering = asyncio.get_running_loop().create_task(self._recover())
        await asyncio.shield(self._recovering)

    async def _recover(self) -> None:
        lock = f"{self.prefix}:lock"
        deadline = time.monotonic() + self.rebuild_wait_seconds
        while True:
            if await self.redis.set(lock, self.replica, nx=True, px=30_000):
                try:
                    if await self.redis.get(self._gen_key) is None:
                        await self._rebuild()
                finally:
                    if await self.redis.get(lock) == self.replica:
                        await self.redis.delete(lock)
                return
            if await self.redis.get(self._gen_key) is not None:
                return
            if time.monotonic() > deadline:
                raise BackendUnavailable("The quota counters are being rebuilt; try again shortly.", retry_after=2)
            await asyncio.sleep(0.05)  # another replica holds the lock: poll for its result

    async def _rebuild(self) -> None:
        assert self.view is not None, "RedisCounters.start() was not awaited"
        now = self.clock()
        since = min(now - ROLLING_SECONDS, self.periods.week(now)[0], self.periods.month(now)[0])
        rows, generation = await asyncio.to_thread(self.view.snapshot_for_counters, since)
        stale = [key async for key in self.redis.scan_iter(match=f"{self.prefix}:{{*", count=1000)]
        if stale:
            await self.redis.delete(*stale)
        await self._load(rows, now)
        await self.redis.set(self._gen_key, generation)
        self.rebuilds += 1
        log.warning(
            "the quota counters were missing from Redis: rebuilt from the ledger (%d rows, generation %s)",
            len(rows), generation,
        )

    async def _load(self, rows: Rows, now: float) -> None:
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

    # -- replicas ---------------------------------------------------------------------------

    async def _heartbeat(self) -> None:
        await self.redis.set(f"{self.prefix}:hb:{self.replica}", "1", px=int(self.heartbeat_seconds * 1000))

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_seconds / 3)
            try:
                await self._heartbeat()
                await self.reconcile()
            except self._errors as exc:
                self._unavailable(exc)
            except Exception:
                log.exception("reconciling dead replicas' requests failed; will retry")

    async def reconcile(self) -> int:
        """Settle or release what replicas that died (no heartbeat) left in flight."""
        done = 0
        for replica in await self.redis.smembers(f"{self.prefix}:replicas"):
            if replica == self.replica or await self.redis.exists(f"{self.prefix}:hb:{replica}"):
                continue
            reap = f"{self.prefix}:reap:{replica}"
            if not await self.redis.set(reap, self.replica, nx=True, px=60_000):
                continue
            try:
                done += await self._reap(replica)
            finally:
                await self.redis.delete(reap)
        return done

    async def _reap(self, replica: str) -> int:
        assert self.view is not None
        users_key = f"{self.prefix}:r:{replica}:u"
        found: list[tuple[int, str, str]] = []
        for uid in await self.redis.smembers(users_key):
            entries = await self.redis.hgetall(f"{self._base(int(uid))}:if")
            found += [(int(uid), f, v) for f, v in entries.items() if f.startswith(replica + ":")]
        ids = [f.split(":", 1)[1] for _, f, _ in found]
        outcomes = await asyncio.to_thread(self.view.outcomes, ids) if ids else {}
        generation = await self.redis.get(self._gen_key)
        for uid, f, value in found:
            second, weight, week_start, month_start, gen = value.split("|")
            r = Reservation(int(uid), int(weight), int(second), float(week_start), float(month_start), [],
                            gen=gen, field=f)
            status, tokens, cost = outcomes.get(f.split(":", 1)[1], ("missing", 0, 0.0))
            if status in ("ok", "cancelled") and generation is not None:
                self._ready.append(_Pending(r, tokens, cost, committed=gen))
            else:
                await self._release_now(r)
        await self.flush()
        await self.redis.delete(users_key)
        await self.redis.srem(f"{self.prefix}:replicas", replica)
        if found:
            log.warning("reconciled %d requests a dead replica left in flight", len(found))
        return len(found)

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        try:
            await self.flush()
            await self.redis.delete(f"{self.prefix}:hb:{self.replica}")
            if not self._pending:
                await self.redis.srem(f"{self.prefix}:replicas", self.replica)
        except self._errors:
            log.warning("closing the quota counters: Redis unreachable; another replica will reconcile")
        await self.lean.aclose()
        await self.redis.aclose()


def _limits(plan: Plan) -> dict[str, float]:
    limits: dict[str, Any] = {
        "5h": plan.requests_per_5h, "week": plan.requests_per_week, "month": plan.requests_per_month,
        "tokens_month": plan.tokens_per_month, "cost_month": plan.cost_per_month,
    }
    return {k: float(v) for k, v in limits.items() if v is not None}
