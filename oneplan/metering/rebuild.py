"""Rebuilding the shared counters from the ledger: after Redis lost its state (once across
replicas, under a lock, inside a database transaction no ledger flush interleaves with), and
for the windows a user's new plan adds (``backfill``, once across replicas)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from oneplan.errors import BackendUnavailable
from oneplan.metering.counters import legacy_demand, row_amounts
from oneplan.metering.plans import Plan

if TYPE_CHECKING:
    from oneplan.metering.redis_counters import RedisCounters, Rows

log = logging.getLogger("oneplan.quota")

_BACKFILLED = "done"  # a backfill marker's value once the window holds the user's history

# Rows of a user whose plan is unknown (gone from the catalog) rebuild the shorthand windows.
EVERY_SHORTHAND = Plan(
    "", requests_per_5h=0, requests_per_week=0, requests_per_month=0, tokens_per_month=0, cost_per_month=0
)


class Rebuild:
    """The ledger-reading side of ``RedisCounters``."""

    def __init__(self, counters: RedisCounters) -> None:
        self.c = counters
        self._recovering: asyncio.Task[None] | None = None

    async def recover(self) -> None:
        """Rebuild from the ledger once across replicas, or wait for whoever is doing it."""
        if self._recovering is None or self._recovering.done():
            self._recovering = asyncio.get_running_loop().create_task(self._recover())
        await asyncio.shield(self._recovering)

    async def _recover(self) -> None:
        lock = f"{self.c.prefix}:lock"
        deadline = time.monotonic() + self.c.rebuild_wait_seconds
        while True:
            if await self.c.redis.set(lock, self.c.replica, nx=True, px=30_000):
                try:
                    if await self.c.decoded.get(self.c._gen_key) is None:
                        await self._rebuild()
                finally:
                    if await self.c.decoded.get(lock) == self.c.replica:
                        await self.c.redis.delete(lock)
                return
            if await self.c.decoded.get(self.c._gen_key) is not None:
                return
            if time.monotonic() > deadline:
                raise BackendUnavailable("The quota counters are being rebuilt; try again shortly.", retry_after=2)
            await asyncio.sleep(0.05)  # another replica holds the lock: poll for its result

    async def _rebuild(self) -> None:
        assert self.c.view is not None, "RedisCounters.start() was not awaited"
        now = self.c.clock()
        rows, generation = await asyncio.to_thread(self.c.view.snapshot_for_counters, self.c.since(self.c.all_plans(), now))
        stale = [key async for key in self.c.redis.scan_iter(match=f"{self.c.prefix}:{{*", count=1000)]
        if stale:
            await self.c.redis.delete(*stale)
        marker = self.c._rebuild_key
        await self.c.redis.set(marker, generation, px=60_000)  # replicas replant into it from now on
        await self._load(rows, now)
        await self.c._learned(generation)
        await asyncio.sleep(self.c.grace_seconds)  # the others' flushers look every flush_seconds
        await self.c.redis.set(self.c._gen_key, generation)
        await self.c.redis.delete(marker)
        self.c.rebuilds += 1
        log.warning(
            "the quota counters were missing from Redis: rebuilt from the ledger "
            "(%d requests in %d seconds, generation %s)",
            sum(int(r[2] or 0) for r in rows), len(rows), generation,
        )

    async def backfill(self, user_id: int, old: Plan | None, new: Plan, anchor: float | None) -> None:
        """The windows only ``new`` has get the user's ledger rows - once across replicas (a
        marker per window, taken with SET NX, elects the replica that does it)."""
        shapes = self.c.added_shapes(old, new)
        if not shapes or self.c.view is None:
            return
        base = self.c._base(user_id)
        mine = set()
        for shape in sorted(shapes):
            if await self.c.redis.set(f"{base}:bf:{shape}", self.c.replica, nx=True, ex=70 * 86400):
                mine.add(shape)
        if mine:
            # The other replicas' rows reach the database within their ledger flush: read once
            # theirs so far are there too.
            await asyncio.sleep(self.c.backfill_wait_seconds)
            now = self.c.clock()
            rows = await asyncio.to_thread(self.c.view.charged_since, self.c.since([new], now), [user_id])
            await self._load(rows, now, plan=new, shapes=mine, anchor=anchor)
            for shape in mine:
                await self.c.redis.set(f"{base}:bf:{shape}", _BACKFILLED, keepttl=True)
        # Whoever backfills a window, this replica admits against it only once it holds the
        # user's history: the caller switches the user's plan when this returns. Not for a
        # backfiller that is gone (no heartbeat: died mid-way, or a marker older than "done"),
        # and not for longer than it should take.
        deadline = time.monotonic() + self.c.backfill_wait_seconds + 10
        for shape in sorted(shapes - mine):
            while (holder := await self.c.decoded.get(f"{base}:bf:{shape}")) not in (_BACKFILLED, None):
                if not await self.c.redis.exists(self.c._heartbeat_key(holder)):
                    break
                if time.monotonic() > deadline:
                    log.warning("another replica's backfill of a new plan window is not done; going on without it")
                    return
                await asyncio.sleep(0.05)

    async def _load(
        self, rows: Rows, now: float, *, plan: Plan | None = None, shapes: set[str] | None = None,
        anchor: float | None = None,
    ) -> None:
        """Every ledger row into the windows of its user's plan (or of ``plan``, only those of
        ``shapes``), in the period it was admitted in (periods that have ended are skipped)."""
        pipe = self.c.redis.pipeline(transaction=False)
        for row in rows:
            user_id, second, amounts, multiplier, plan_name, row_anchor = row_amounts(row)
            target = plan or (self.c.plans(plan_name) if plan_name else None) or EVERY_SHORTHAND
            demand = legacy_demand(target, 0, row_anchor if anchor is None else anchor, multiplier)
            base = self.c._base(user_id)
            for c in self.c.charges(target, demand, float(second)):
                if shapes is not None and c.window.shape not in shapes:
                    continue
                amount = amounts.of(c.window.unit) * c.factor
                if not amount:
                    continue
                key = f"{base}:{c.key}"
                if c.rolling:
                    if second <= int(now) - c.window.seconds:
                        continue
                    pipe.zadd(f"{key}:z", {str(second): second})
                    pipe.hincrbyfloat(f"{key}:c", str(second), amount)
                    pipe.incrbyfloat(f"{key}:t", amount)
                    for k in (f"{key}:z", f"{key}:c", f"{key}:t"):
                        pipe.expire(k, c.window.seconds + 60)
                elif c.end > now:
                    pipe.incrbyfloat(key, amount)
                    pipe.expire(key, max(60, int(c.end - now) + 3600))
        await pipe.execute()
