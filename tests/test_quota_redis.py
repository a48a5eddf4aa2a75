"""Shared quota counters in Redis: exact across processes. Needs Redis on 127.0.0.1:6379
(.ci/run starts it; locally: redis-server --daemonize yes)."""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime

import pytest

from oneplan.errors import QuotaExceeded
from oneplan.metering.redis_counters import RedisCounters
from oneplan.metering.windows import ROLLING_SECONDS, Periods
from oneplan.routing.catalog import Plan
from tests.support.gateway import ManualClock
from tests.support.services import require_redis

URL = "redis://127.0.0.1:6379/0"
T0 = datetime(2026, 11, 18, 12, 0, 0, tzinfo=UTC).timestamp()


def make(clock: ManualClock, prefix: str) -> RedisCounters:
    return RedisCounters(URL, clock, Periods("UTC"), prefix=prefix)


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


def test_two_processes_worth_of_counters_admit_exactly_the_quota() -> None:
    prefix = "t-" + secrets.token_hex(4)
    clock = ManualClock(T0)
    plan = Plan("p", requests_per_5h=50, requests_per_week=1000)

    async def run() -> int:
        workers = [make(clock, prefix), make(clock, prefix)]  # two workers, one Redis

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


def test_rolling_window_release_and_budgets_match_the_in_process_rules() -> None:
    prefix = "t-" + secrets.token_hex(4)
    clock = ManualClock(T0)
    plan = Plan("p", requests_per_5h=2, tokens_per_month=100)

    async def run() -> None:
        c = make(clock, prefix)
        first = await c.admit(1, plan, 1)
        clock.advance(60)
        second = await c.admit(1, plan, 1)
        with pytest.raises(QuotaExceeded) as refused:
            await c.admit(1, plan, 1)
        assert refused.value.window == "5h"
        assert refused.value.retry_after == pytest.approx(ROLLING_SECONDS - 60)
        await c.release(second)  # failed upstream: not charged
        third = await c.admit(1, plan, 1)
        await c.settle(first, tokens=100, cost=0.0)
        await c.settle(third, tokens=0, cost=0.0)
        clock.advance(ROLLING_SECONDS)
        with pytest.raises(QuotaExceeded) as refused:
            await c.admit(1, plan, 1)
        assert refused.value.window == "tokens_month"
        await c.aclose()

    asyncio.run(run())


def test_rebuild_happens_once_per_redis_lifetime() -> None:
    prefix = "t-" + secrets.token_hex(4)
    clock = ManualClock(T0)
    plan = Plan("p", requests_per_5h=10)
    rows = [(3, int(T0 - 30), 4, 10, 0.0)]

    async def run() -> None:
        a, b = make(clock, prefix), make(clock, prefix)
        assert await a.rebuild(rows) is True
        assert await b.rebuild(rows) is False  # a second replica must not double count
        states = {s.window: s for s in await b.states(3, plan)}
        assert states["5h"].used == 4
        await a.aclose()
        await b.aclose()

    asyncio.run(run())


def test_the_refusal_names_the_window_that_binds_longest() -> None:
    prefix = "t-" + secrets.token_hex(4)
    clock = ManualClock(T0)
    plan = Plan("p", requests_per_5h=1, requests_per_week=1)

    async def run() -> None:
        c = make(clock, prefix)
        await c.admit(1, plan, 1)
        with pytest.raises(QuotaExceeded) as refused:
            await c.admit(1, plan, 1)
        assert refused.value.window == "week"
        assert refused.value.retry_after == pytest.approx(datetime(2026, 11, 23, tzinfo=UTC).timestamp() - T0)
        await c.aclose()

    asyncio.run(run())
