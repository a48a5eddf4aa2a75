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
from oneplan.metering.redis_scripts import ADMIT, RECHARGE, RELEASE, REPLANT, SETTLE
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
        self._replant_script = self.redis.register_script(REPLANT)
        self._recharge = self.redis.register_script(RECHARGE)
        self.grace_seconds = 0.3  # a rebuild waits this long for other replicas to replant
        self._outstanding: dict[str, Reservation] = {}  # admitted, not yet fully settled or released
        self._committed_gen: dict[str, str] = {}  # field -> generation its row committed under
        self._replanted: dict[str, str] = {}  # field -> generation it was replanted into
        self._gen_seen: str | None = None
        self._pending: dict[str, _Pending] = {}  # field -> settled, row not yet committed
        self._ready: list[_Pending] = []  # rows committed: to send to Redis
        self._releases: list[Reservation] = []  # releases Redis did not take yet
        self._recovering: asyncio.Task[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._down = False
        self.rebuilds = 0  # rebuilds this replica did (observability, tests)
        self.reconciled = 0  # requests of dead replicas this one settled or released

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
            gen = str(gen)
            used = {"5h": float(total), "week": float(week), "month": float(month),
                    "tokens_month": float(tokens), "cost_month": float(cost)}
            resets = {"5h": float(frees) if frees else None, "week": week_end, "month": month_end,
                      "tokens_month": month_end, "cost_month": month_end}
            states = [WindowState(w, used[w], limit, resets[w]) for w, limit in _limits(plan).items()]
            reservation = Reservation(
                user_id, weight, int(now), week_start, month_start, states, gen=gen, field=field
            )
            if weight:
                self._outstanding[field] = reservation
            if gen != self._gen_seen:
                # The request is admitted: replanting older ones must not fail it (its weight is
                # charged and would leak). If Redis drops now, the flusher replants later.
                try:
                    await self._learned(gen)
                except self._errors as exc:
                    self._unavailable(exc)
            return reservation
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
            field = f"{self.replica}:{row['id']}"
            entry = self._pending.pop(field, None)
            if entry is None:
                continue
            self._committed_gen[field] = generation
            replanted = self._replanted.get(field)
            if replanted is not None and int(generation) < int(replanted):
                # Committed before the rebuild read the ledger, so the read counted it - and it
                # was replanted too: take the replant back.
                self._releases.append(entry.reservation)
                continue
            entry.committed = generation
            self._ready.append(entry)

    def _done(self, field: str) -> None:
        self._outstanding.pop(field, None)
        self._committed_gen.pop(field, None)
        self._replanted.pop(field, None)

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
            return
        self._done(reservation.field)

    async def _release_now(self, r: Reservation, tombstone: bool = False) -> None:
        keys = self._keys(r.user_id, r.week_start, r.month_start)
        base = self._base(r.user_id)
        await self.lean.evalsha(
            self._release.sha, RELEASE,
            [self._gen_key, keys[1], keys[2], keys[3], keys[4], f"{base}:if", f"{base}:gone"],
            [r.second, r.weight, r.field, r.gen, 1 if tombstone else 0],
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
            self._done(r.field)
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
        waiting = []
        for e, reply in zip(ready, replies, strict=True):
            if reply == "wait":
                waiting.append(e)
            else:
                self._done(e.reservation.field)
        self._ready[:0] = waiting

    async def _flusher(self) -> None:
        while True:
            await asyncio.sleep(self.flush_seconds)
            try:
                await self._watch_generation()
                await self.flush()
            except self._errors as exc:
                self._unavailable(exc)

    async def _watch_generation(self) -> None:
        """Notice a rebuild (in progress or done) and replant what this replica has in flight."""
        if not self._outstanding:
            return
        gen = await self.redis.get(self._gen_key)
        if gen is None:
            gen = await self.redis.get(f"{self.prefix}:rebuild")
        if gen is not None and gen != self._gen_seen:
            await self._learned(gen)

    async def _learned(self, gen: str) -> None:
        """A new generation: requests admitted under an older one are charged again in it,
        unless the rebuild's read of the ledger already counted them."""
        stale = [
            r for f, r in self._outstanding.items()
            if r.gen != gen and int(self._committed_gen.get(f, gen)) >= int(gen)
        ]
        if stale:
            now = self.clock()
            args: list[Any] = [gen]
            for r in stale:
                args += [
                    self._base(r.user_id), r.field, r.second, r.weight, int(r.week_start), int(r.month_start),
                    repr(now), max(60, int(r.week_start + 8 * 86400 - now)),
                    max(60, int(r.month_start + 40 * 86400 - now)),
                    f"{r.weight}|{int(r.week_start)}|{int(r.month_start)}",
                ]
            if not await self._replant_script(keys=[self._gen_key, f"{self.prefix}:rebuild"], args=args):
                return  # not that generation any more: the next look will tell
            for r in stale:
                r.gen = gen
                self._replanted[r.field] = gen
            log.warning("replanted %d requests in flight across a loss of the quota counters", len(stale))
        self._gen_seen = gen

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
        marker = f"{self.prefix}:rebuild"
        await self.redis.set(marker, generation, px=60_000)  # replicas replant into it from now on
        await self._load(rows, now)
        await self._learned(generation)
        await asyncio.sleep(self.grace_seconds)  # the others' flushers look every flush_seconds
        await self.redis.set(self._gen_key, generation)
        await self.redis.delete(marker)
        self.rebuilds += 1
        log.warning(
            "the quota counters were missing from Redis: rebuilt from the ledger "
            "(%d requests in %d seconds, generation %s)",
            sum(int(r[2] or 0) for r in rows), len(rows), generation,
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
                await self._release_now(r, tombstone=status == "missing")
        await self.flush()
        await self.redis.delete(users_key)
        await self.redis.srem(f"{self.prefix}:replicas", replica)
        self.reconciled += len(found)
        if found:
            log.warning("reconciled %d requests a dead replica left in flight", len(found))
        return len(found)

    async def adopt(self, groups: Sequence[tuple[list[dict[str, Any]], str]]) -> None:
        """Rows this process replayed from a dead predecessor's journal are now in the
        database: settle its requests in flight from them at once (not when its heartbeat
        expires), and charge again any a reconciler had released without a row."""
        by_replica: dict[str, list[tuple[dict[str, Any], str]]] = {}
        for rows, generation in groups:
            for row in rows:
                field = row.get("_field")
                if field and row.get("_res") and row.get("status") in ("ok", "cancelled") and row.get("weight"):
                    by_replica.setdefault(field.split(":", 1)[0], []).append((row, generation))
        for replica, items in by_replica.items():
            if replica == self.replica:
                continue
            reap = f"{self.prefix}:reap:{replica}"
            deadline = time.monotonic() + 30
            while not await self.redis.set(reap, self.replica, nx=True, px=60_000):
                if time.monotonic() > deadline:
                    raise BackendUnavailable("another replica holds a reconciliation lock for too long")
                await asyncio.sleep(0.05)  # another replica is reconciling it: wait for its verdicts
            try:
                await self._reap(replica)
                await self._recharge_rows(items)
            finally:
                await self.redis.delete(reap)

    async def _recharge_rows(self, items: list[tuple[dict[str, Any], str]]) -> None:
        now = self.clock()
        args: list[Any] = []
        for row, committed in items:
            second, weight, week_start, month_start, admitted = str(row["_res"]).split("|")
            args += [
                self._base(int(row["user_id"])), row["_field"], committed, admitted,
                int(row.get("input_tokens") or 0) + int(row.get("output_tokens") or 0),
                repr(float(row.get("cost") or 0.0)), weight, second, week_start, month_start, repr(now),
                max(60, int(float(month_start) + 40 * 86400 - now)),
            ]
        replies = await self._recharge(keys=[self._gen_key], args=args)
        charged = sum(1 for r in replies if r == "ok")
        if charged:
            log.warning("charged %d replayed requests a reconciler had released without their rows", charged)

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
