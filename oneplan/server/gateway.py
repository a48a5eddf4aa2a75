"""Everything one gateway process holds: catalog, database, keys, counters, ledger, providers."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from oneplan import sealing
from oneplan.alerts.service import Alerts
from oneplan.metering.counters import Counters, MemoryCounters
from oneplan.metering.ledger import Ledger
from oneplan.metering.rows import LedgerRow
from oneplan.metering.windows import Clock, Periods, system_clock
from oneplan.providers.build import build_providers
from oneplan.routing.catalog import Catalog
from oneplan.routing.plan_book import PlanBook
from oneplan.routing.router import Router
from oneplan.server import heap
from oneplan.server.auth import KeyCache
from oneplan.server.metrics import Metrics
from oneplan.server.pipeline import Pipeline
from oneplan.server.plan_sync import PlanSync
from oneplan.server.settlement import Books
from oneplan.store.db import Database

log = logging.getLogger("oneplan")


def make_counters(catalog: Catalog, clock: Clock, periods: Periods) -> Counters:
    """In-process counters for one worker; Redis when several processes share quotas."""
    url = catalog.server.redis_url
    if url:
        from oneplan.metering.redis_counters import RedisCounters

        counters = RedisCounters(
            url, clock, periods, prefix=catalog.server.redis_prefix,
            heartbeat_seconds=catalog.server.replica_heartbeat_seconds,
        )
        # Replicas share one catalog file: theirs flush as often as this one.
        counters.backfill_wait_seconds = max(1.0, 3 * catalog.server.ledger_flush_seconds)
        return counters
    return MemoryCounters(clock, periods)


class Gateway:
    def __init__(
        self,
        catalog: Catalog,
        data_dir: Path,
        *,
        clock: Clock = system_clock,
        counters: Counters | None = None,
        settle_heap: bool = False,
    ) -> None:
        self.settle_heap = settle_heap  # a server process of its own (``server/heap.py``)
        self.catalog = catalog
        self.data_dir = data_dir
        self.clock = clock
        self.periods = Periods(catalog.server.quota_timezone)
        self.db = Database.open(data_dir, catalog.server.database_url)
        self.counters = counters or make_counters(catalog, clock, self.periods)
        self.ledger = Ledger(
            self.db, data_dir / "journal", catalog.server.ledger_flush_seconds, on_commit=self.counters.committed
        )
        refresh = catalog.server.plans_refresh_seconds
        self.plans = PlanSync(self.db, PlanBook(catalog), refresh)  # run-time plans, on every replica
        self.keys = KeyCache(
            self.db, poll_seconds=min(1.0, refresh), before_reload=self.plans.sync, on_plan_change=self._moved
        )
        self.providers = build_providers(catalog)
        self.router = Router.from_catalog(catalog, self.providers)
        self.metrics = Metrics(self.router.health)
        self.metrics.watch_ledger(self.ledger)
        self.books = Books(self.ledger, self.counters, self.observe, catalog.server.store_prompts)
        self.pipeline = Pipeline(
            catalog=catalog, auth=self.keys, admission=self.counters, router=self.router, books=self.books,
            clock=clock,
        )
        self.alerts = Alerts(self)  # oneplan/alerts/: fed by observe(), never in a request's way
        self.ready = False

    async def start(self) -> None:
        for entry in self.catalog.models.values():
            for deployment in entry.deployments:
                await self.providers[deployment.provider].preload(self.router.target(entry, deployment))
        sealing.install(await asyncio.to_thread(sealing.load, self.db, self.catalog.server.reasoning_keys))
        await self.ledger.start()  # first: an earlier process's rows reach the database
        await self.plans.start()  # before the keys: the plans they name
        await self.keys.start()
        self.counters.plans = lambda name: self.catalog.plans.get(name)  # rebuilding windows from rows
        self.counters.anchor_of = self.keys.subscribed_at
        self.counters.all_plans = lambda: self.catalog.plans.values()
        await self.counters.start(self.db)  # the ledger is the truth; the counters its cache
        self.ledger.on_replay = self.counters.adopt
        await self.ledger.adopt_replayed()  # a killed predecessor's requests, settled from its rows
        await self.alerts.start()
        if self.settle_heap:
            heap.settle()
        self.ready = True

    async def close(self) -> None:
        self.ready = False
        await self.alerts.close()
        await self.keys.close()
        await self.plans.close()
        await self.ledger.close()
        await self.counters.aclose()
        for provider in self.providers.values():
            await provider.aclose()
        self.db.close()

    async def _moved(self, before: Any, after: Any) -> None:
        """A user's plan changed: the windows the new plan adds count what they already used."""
        new = self.catalog.plans.get(after.plan)
        if new is not None:
            await self.ledger.flush()  # this replica's rows so far are in what it reads
            await self.counters.backfill(after.user_id, self.catalog.plans.get(before.plan), new, after.subscribed_at)

    def observe(self, row: LedgerRow) -> None:
        """A finished request, for metrics and alerts."""
        self.metrics.observe(row)
        self.alerts.observe(row)
