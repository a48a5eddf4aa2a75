"""Replicas that die: each keeps a heartbeat in Redis, and what a replica killed with SIGKILL left
in flight (its in-flight entries) is settled from its ledger rows or given back by another
replica, under a lock (``reconcile``); rows a restarted replica replayed from its predecessor's
journal settle that predecessor's requests at once (``adopt``)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from oneplan.errors import BackendUnavailable
from oneplan.metering.entries import Pending, decode, moves, reservation_of
from oneplan.metering.plans import Amounts

if TYPE_CHECKING:
    from oneplan.metering.redis_counters import RedisCounters

log = logging.getLogger("oneplan.quota")


class Replicas:
    """The replica side of ``RedisCounters``: heartbeat, reconciliation, adoption."""

    def __init__(self, counters: RedisCounters) -> None:
        self.c = counters

    async def heartbeat(self) -> None:
        """Alive, and registered: a Redis that lost its state lost the registry too, and a
        replica missing from it would never be reconciled if it died."""
        pipe = self.c.redis.pipeline(transaction=False)
        pipe.set(self.c._heartbeat_key(self.c.replica), "1", px=self.c._heartbeat_ms)
        pipe.sadd(self.c._registry, self.c.replica)
        await pipe.execute()

    async def watch(self) -> None:
        while True:
            await asyncio.sleep(self.c.heartbeat_seconds / 3)
            try:
                await self.heartbeat()
                await self.reconcile()
            except self.c._errors as exc:
                self.c._unavailable(exc)
            except Exception:
                log.exception("reconciling dead replicas' requests failed; will retry")

    async def reconcile(self) -> int:
        """Settle or release what replicas that died (no heartbeat) left in flight."""
        done = 0
        for replica in await self.c.decoded.smembers(self.c._registry):
            if replica == self.c.replica or await self.c.redis.exists(self.c._heartbeat_key(replica)):
                continue
            reap = f"{self.c.prefix}:reap:{replica}"
            if not await self.c.redis.set(reap, self.c.replica, nx=True, px=60_000):
                continue
            try:
                done += len(await self._reap(replica))
            finally:
                await self.c.redis.delete(reap)
        return done

    async def _reap(self, replica: str) -> set[str]:
        assert self.c.view is not None
        users_key = self.c._users_key(replica)
        found: list[tuple[int, str, str]] = []
        for member in await self.c.decoded.smembers(users_key):
            base = self.c._base(int(member))
            entries = await self.c.decoded.hgetall(f"{base}:if")
            found += [(int(member), f, v) for f, v in entries.items() if f.startswith(replica + ":")]
            running = [f for f in await self.c.decoded.hkeys(f"{base}:run") if f.startswith(replica + ":")]
            if running:
                await self.c.redis.hdel(f"{base}:run", *running)
        ids = [f.split(":", 1)[1] for _, f, _ in found]
        outcomes = await asyncio.to_thread(self.c.view.outcomes, ids) if ids else {}
        # A rebuild in progress holds what was replanted into it: its rows settle there.
        generation = await self.c.decoded.get(self.c._gen_key) or await self.c.decoded.get(self.c._rebuild_key)
        for uid, f, value in found:
            entry = decode(value)
            status, amounts = outcomes.get(f.split(":", 1)[1], ("missing", Amounts()))
            if status in ("ok", "cancelled") and generation is not None:
                self.c._ready.append(Pending(reservation_of(uid, f, entry), amounts, committed=entry.gen))
            else:
                await self.c._release_now(uid, f, entry, tombstone=status == "missing")
        await self.c.flush()
        await self.c.redis.delete(users_key)
        await self.c.redis.srem(self.c._registry, replica)
        self.c.reconciled += len(found)
        if found:
            log.warning("reconciled %d requests a dead replica left in flight", len(found))
        return {f for _, f, _ in found}

    async def adopt(self, groups: Sequence[tuple[list[dict[str, Any]], str]]) -> None:
        """Rows this process replayed from a dead predecessor's journal are now in the
        database: settle its requests in flight from them at once (not when its heartbeat
        expires), and charge again any a reconciler had released without a row."""
        by_replica: dict[str, list[tuple[dict[str, Any], str]]] = {}
        for rows, generation in groups:
            for row in rows:
                field = row.get("_field")
                if field and row.get("_res") and row.get("status") in ("ok", "cancelled"):
                    by_replica.setdefault(field.split(":", 1)[0], []).append((row, generation))
        for replica, items in by_replica.items():
            if replica == self.c.replica:
                continue
            reap = f"{self.c.prefix}:reap:{replica}"
            deadline = time.monotonic() + 30
            while not await self.c.redis.set(reap, self.c.replica, nx=True, px=60_000):
                if time.monotonic() > deadline:
                    raise BackendUnavailable("another replica holds a reconciliation lock for too long")
                await asyncio.sleep(0.05)  # another replica is reconciling it: wait for its verdicts
            try:
                # A row whose in-flight entry was still there was settled from it just now.
                settled = await self._reap(replica)
                items = [(row, gen) for row, gen in items if row["_field"] not in settled]
                if items:
                    await self._recharge_rows(items)
            finally:
                await self.c.redis.delete(reap)

    async def _recharge_rows(self, items: list[tuple[dict[str, Any], str]]) -> None:
        now = self.c.clock()
        args: list[Any] = []
        for row, committed in items:
            entry = decode(str(row["_res"]))
            args += [
                self.c._base(int(row["user_id"])), row["_field"], committed, entry.gen, entry.second, repr(now),
                *moves(entry, Amounts.of_row(row), full=True),
            ]
        replies = await self.c._recharge(keys=[self.c._gen_key, self.c._rebuild_key], args=args)
        charged = sum(1 for r in replies if r == "ok")
        if charged:
            log.warning("charged %d replayed requests a reconciler had released without their rows", charged)
