"""Run-time plans on every replica, without a restart and without a query per request.

Every plan write (admin API, ``oneplan plans``) bumps the ``plans_version`` row of ``meta`` in
its own transaction. Each replica polls that row every ``server.plans_refresh_seconds`` and,
when it changed, reads the ``plans`` table and puts catalog ∪ run-time plans in force in one
assignment (``PlanBook.apply``). Users' plan changes bump ``keys_version``, which the key cache
polls; it calls ``sync`` first, so a user moved to a plan created a moment earlier finds it.

A database that cannot answer keeps the plans in memory, logged once until it answers again.
"""

from __future__ import annotations

import asyncio
import logging

from oneplan.routing.plan_book import PlanBook
from oneplan.store.db import Database

log = logging.getLogger("oneplan.plans")


class PlanSync:
    def __init__(self, db: Database, book: PlanBook, refresh_seconds: float) -> None:
        self.db = db
        self.book = book
        self.refresh_seconds = refresh_seconds
        self.version: str | None = None  # None: never loaded
        self.refreshes = 0
        self._failing = False
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.sync()
        self._task = asyncio.create_task(self._poll(), name="plan-sync-poll")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def refresh(self) -> None:
        """Read the run-time plans now (after this process wrote one, say)."""
        async with self._lock:
            # The version first: a write landing between the two reads is seen again next time.
            version, rows = await asyncio.to_thread(lambda: (self.db.versions()[0], self.db.list_plans()))
            self.book.apply(rows)
            self.version = version
            self.refreshes += 1

    async def sync(self) -> None:
        """Refresh if the database's plans changed; never raises (logs once while failing)."""
        try:
            version = (await asyncio.to_thread(self.db.versions))[0]
            if version != self.version:
                await self.refresh()
        except Exception as exc:
            if not self._failing:
                log.warning(
                    "reading run-time plans failed (%s); keeping the %d plans in memory", type(exc).__name__,
                    len(self.book.catalog.plans),
                )
            self._failing = True
            return
        if self._failing:
            log.info("run-time plans readable again")
        self._failing = False

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_seconds)
            await self.sync()
