"""Shared quota counters in Redis: exact across processes. Needs Redis on 127.0.0.1:6379
(.ci/run starts it; locally: redis-server --daemonize yes)."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest

from oneplan.errors import BackendUnavailable, QuotaExceeded
from oneplan.metering.redis_counters import RedisCounters
from oneplan.metering.windows import ROLLING_SECONDS, Periods
from oneplan.routing.catalog import Plan
from oneplan.store.db import Database
from tests.support.gateway import ManualClock
from tests.support.services import ReplyCutter, require_redis

URL = "redis://127.0.0.1:6379/0"
T0 = datetime(2026, 11, 18, 12, 0, 0, tzinfo=UTC).timestamp()


def make(clock: ManualClock, prefix: str, **kw: object) -> RedisCounters:
    return RedisCounters(URL, clock, Periods("UTC"), prefix=prefix, **kw)  # type: ignore[arg-type]


async def started(clock: ManualClock, prefix: str, db: Database, **kw: object) -> RedisCounters:
    c = make(clock, prefix, **kw)
    await c.start(db)
    return c


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database.open(tmp_path)
    yield database
    database.close()


async def _ping() -> None:
    c = make(ManualClock(T0), "ping")
    try:
        await c.redis.ping()
    finally:
        await c.aclose()


@pytest.fixture(scope="module", autouse=True)
def redis_running() -> None:
    require_redis()
    asyncio.run(_ping())


def test_two_processes_worth_of_counters_admit_exactly_the_quota(db: Database) -> None:
    prefix = "t-" + secrets.token_hex(4)
    clock = ManualClock(T0)
    plan = Plan("p", requests_per_5h=50, requests_per_week=1000)

    async def run() -> int:
        workers = [await started(clock, prefix, db), await started(clock, prefix, db)]  # two workers, one Redis

        async def one(i: int) -> bool:
            try:
                await workers[i % 2].admit(7, plan, 1)
                return True
            except QuotaExceeded:
                return False

        admitted = sum(await asyncio.gather(*(one(i) for i in range(200))))
        states = {s.window: s for s in await workers[0].states(7, plan)}
        assert states["5h"].used == 50 and states["week"].used == 50
        for w in workers:
            await w.aclose()
        return admitted

    assert asyncio.run(run()) == 50


def test_rolling_window_release_and_budgets_match_the_in_process_rules(db: Database) -> None:
    prefix = "t-" + secrets.token_hex(4)
    clock = ManualClock(T0)
    plan = Plan("p", requests_per_5h=2, tokens_per_month=100)

    async def run() -> None:
        c = await started(clock, prefix, db)
        first = await c.admit(1, plan, 1, "r1")
        clock.advance(60)
        second = await c.admit(1, plan, 1)
        with pytest.raises(QuotaExceeded) as refused:
            await c.admit(1, plan, 1)
        assert refused.value.window == "5h"
        assert refused.value.retry_after == pytest.approx(ROLLING_SECONDS - 60)
        await c.release(second)  # failed upstream: not charged
        third = await c.admit(1, plan, 1, "r3")
        c.settle(first, tokens=100, cost=0.0)
        c.settle(third, tokens=0, cost=0.0)
        # Budgets are charged once the ledger rows are in the database (the ledger says so).
        c.committed([{"id": "r1"}, {"id": "r3"}], first.gen)
        await c.flush()
        clock.advance(ROLLING_SECONDS)
        with pytest.raises(QuotaExceeded) as refused:
            await c.admit(1, plan, 1)
        assert refused.value.window == "tokens_month"
        await c.aclose()

    asyncio.run(run())


def test_the_refusal_names_the_window_that_binds_longest(db: Database) -> None:
    prefix = "t-" + secrets.token_hex(4)
    clock = ManualClock(T0)
    plan = Plan("p", requests_per_5h=1, requests_per_week=1)

    async def run() -> None:
        c = await started(clock, prefix, db)
        await c.admit(1, plan, 1)
        with pytest.raises(QuotaExceeded) as refused:
            await c.admit(1, plan, 1)
        assert refused.value.window == "week"
        assert refused.value.retry_after == pytest.approx(datetime(2026, 11, 23, tzinfo=UTC).timestamp() - T0)
        await c.aclose()

    asyncio.run(run())



@asynccontextmanager
async def behind_a_hop(prefix: str, db: Database) -> AsyncIterator[tuple[ReplyCutter, RedisCounters, RedisCounters]]:
    """Counters that reach Redis through a ``ReplyCutter`` (with a real clock: the flusher runs
    on its own timer), and a direct client to look at what Redis holds."""
    hop = ReplyCutter()
    c = RedisCounters(await hop.start(), time.time, Periods("UTC"), prefix=prefix)
    await c.start(db)
    direct = make(ManualClock(T0), prefix)
    try:
        yield hop, c, direct
    finally:
        await c.aclose()
        await direct.aclose()
        hop.close()


def test_an_admission_whose_answer_is_lost_but_ran_in_redis_is_given_back(db: Database) -> None:
    """Redis runs the admission script, and the connection drops before its answer arrives.
    The caller got a 503 and no ledger row will come, so the charge Redis made must be given
    back by the gateway itself - not leak for as long as the replica lives."""
    prefix = "t-" + secrets.token_hex(4)
    plan = Plan("p", requests_per_5h=10)

    async def run() -> None:
        async with behind_a_hop(prefix, db) as (hop, c, direct):
            await c.admit(3, plan, 1, "kept")
            hop.cut = True
            with pytest.raises(BackendUnavailable):
                await c.admit(3, plan, 1, "lost")
            hop.cut = False
            inflight = await direct.redis.hkeys(f"{prefix}:{{3}}:if")
            assert sorted(k.split(":", 1)[1] for k in inflight) == ["kept", "lost"]  # it did run
            deadline = time.monotonic() + 15
            while (used := (await c.states(3, plan))[0].used) != 1:
                assert time.monotonic() < deadline, f"Redis counts {used} requests; one was admitted"
                await asyncio.sleep(0.05)
            inflight = await direct.redis.hkeys(f"{prefix}:{{3}}:if")
            assert [k.split(":", 1)[1] for k in inflight] == ["kept"]
            assert c.given_back == 1

    asyncio.run(run())


def test_an_admission_cancelled_while_its_answer_is_on_the_way_is_given_back(db: Database) -> None:
    """The admission script runs in Redis and, before its answer arrives, the caller's task is
    cancelled (the client went away): nobody will settle the charge, so the gateway gives it
    back itself."""
    prefix = "t-" + secrets.token_hex(4)
    plan = Plan("p", requests_per_5h=10)

    async def run() -> None:
        async with behind_a_hop(prefix, db) as (hop, c, direct):
            hop.flowing.clear()
            admitting = asyncio.create_task(c.admit(3, plan, 1, "gone"))
            deadline = time.monotonic() + 10
            while not await direct.redis.hexists(f"{prefix}:{{3}}:if", f"{c.replica}:gone"):
                assert time.monotonic() < deadline, "the admission never reached Redis"
                await asyncio.sleep(0.01)
            admitting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await admitting
            hop.flowing.set()
            while (await direct.redis.hlen(f"{prefix}:{{3}}:if")) != 0:
                assert time.monotonic() < deadline, "the cancelled admission's charge was never given back"
                await asyncio.sleep(0.05)
            assert (await c.states(3, plan))[0].used == 0

    asyncio.run(run())
