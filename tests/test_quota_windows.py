"""Quota windows with an injected clock: exact admission, roll-over, release, budgets."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from oneplan.errors import QuotaExceeded
from oneplan.metering.counters import MemoryCounters
from oneplan.metering.windows import ROLLING_SECONDS, Periods
from oneplan.routing.catalog import Plan
from tests.support.gateway import ManualClock

# A Wednesday, mid-month, mid-day (UTC).
T0 = datetime(2026, 11, 18, 12, 0, 0, tzinfo=UTC).timestamp()


def counters(clock: ManualClock, tz: str = "UTC") -> MemoryCounters:
    return MemoryCounters(clock, Periods(tz))


def admit(c: MemoryCounters, plan: Plan, weight: int = 1, user: int = 1):
    return asyncio.run(c.admit(user, plan, weight))


def test_rolling_five_hours_frees_each_request_exactly_five_hours_after_it() -> None:
    clock = ManualClock(T0)
    c = counters(clock)
    plan = Plan("p", requests_per_5h=3)
    admit(c, plan)
    clock.advance(60)
    admit(c, plan)
    admit(c, plan)
    with pytest.raises(QuotaExceeded) as refused:
        admit(c, plan)
    assert refused.value.window == "5h"
    assert refused.value.retry_after == pytest.approx(ROLLING_SECONDS - 60)
    assert "5-hour" in refused.value.message and "3/3" in refused.value.message
    clock.advance(ROLLING_SECONDS - 61)  # one second before the first frees up
    with pytest.raises(QuotaExceeded):
        admit(c, plan)
    clock.advance(1)
    admit(c, plan)  # the first request's slot is free now; the others are not
    with pytest.raises(QuotaExceeded):
        admit(c, plan)


def test_week_resets_on_monday_and_month_on_the_first() -> None:
    clock = ManualClock(T0)
    c = counters(clock)
    plan = Plan("p", requests_per_week=2, requests_per_month=3)
    admit(c, plan)
    admit(c, plan)
    with pytest.raises(QuotaExceeded) as refused:
        admit(c, plan)
    assert refused.value.window == "week"
    monday = datetime(2026, 11, 23, tzinfo=UTC).timestamp()
    assert refused.value.retry_after == pytest.approx(monday - T0)
    clock.now = monday
    admit(c, plan)
    with pytest.raises(QuotaExceeded) as refused:
        admit(c, plan)
    assert refused.value.window == "month"
    clock.now = datetime(2026, 12, 1, tzinfo=UTC).timestamp()
    admit(c, plan)


def test_quota_time_zone_moves_the_week_boundary() -> None:
    periods = Periods("Asia/Shanghai")
    start, end = periods.week(T0)
    assert datetime.fromtimestamp(start, UTC) == datetime(2026, 11, 15, 16, 0, tzinfo=UTC)
    assert end - start == 7 * 86400


def test_release_gives_back_a_failed_request() -> None:
    clock = ManualClock(T0)
    c = counters(clock)
    plan = Plan("p", requests_per_5h=1, requests_per_week=1, requests_per_month=1)
    reservation = admit(c, plan)
    asyncio.run(c.release(reservation))
    asyncio.run(c.release(reservation))  # twice is still once
    admit(c, plan)
    with pytest.raises(QuotaExceeded):
        admit(c, plan)


def test_weights_count_against_request_windows() -> None:
    c = counters(ManualClock(T0))
    plan = Plan("p", requests_per_5h=5)
    admit(c, plan, weight=3)
    with pytest.raises(QuotaExceeded):
        admit(c, plan, weight=3)
    admit(c, plan, weight=2)


def test_monthly_token_and_cost_budgets() -> None:
    clock = ManualClock(T0)
    c = counters(clock)
    plan = Plan("p", tokens_per_month=1000, cost_per_month=1.0)
    r = admit(c, plan)
    c.settle(r, tokens=1000, cost=0.1)
    with pytest.raises(QuotaExceeded) as refused:
        admit(c, plan)
    assert refused.value.window == "tokens_month"
    clock.now = datetime(2026, 12, 1, tzinfo=UTC).timestamp()
    r = admit(c, plan)
    c.settle(r, tokens=10, cost=1.5)
    with pytest.raises(QuotaExceeded) as refused:
        admit(c, plan)
    assert refused.value.window == "cost_month"


def test_users_are_counted_apart() -> None:
    c = counters(ManualClock(T0))
    plan = Plan("p", requests_per_5h=1)
    admit(c, plan, user=1)
    admit(c, plan, user=2)
    with pytest.raises(QuotaExceeded):
        admit(c, plan, user=1)


def test_concurrent_admissions_admit_exactly_the_remaining_quota() -> None:
    c = counters(ManualClock(T0))
    plan = Plan("p", requests_per_5h=50)

    async def many() -> list[bool]:
        async def one() -> bool:
            try:
                await c.admit(1, plan, 1)
                return True
            except QuotaExceeded:
                return False

        return await asyncio.gather(*(one() for _ in range(200)))

    assert sum(asyncio.run(many())) == 50


def test_rebuild_from_ledger_rows_restores_every_window() -> None:
    clock = ManualClock(T0)
    c = counters(clock)
    plan = Plan("p", requests_per_5h=10, requests_per_week=10, requests_per_month=10, tokens_per_month=10**6)
    rows = [
        (1, int(T0 - ROLLING_SECONDS - 10), 4, 100, 0.5),  # outside 5h, inside the week
        (1, int(T0 - 60), 2, 50, 0.25),
    ]
    c.load(rows)
    states = {s.window: s for s in c.snapshot(1, plan)}
    assert states["5h"].used == 2
    assert states["week"].used == 6
    assert states["month"].used == 6
    assert states["tokens_month"].used == 150
    assert states["5h"].resets_at == pytest.approx(T0 - 60 + ROLLING_SECONDS)


def test_when_several_windows_are_used_up_the_refusal_names_the_one_that_binds_longest() -> None:
    clock = ManualClock(T0)
    c = counters(clock)
    plan = Plan("p", requests_per_5h=1, requests_per_week=1)
    admit(c, plan)
    with pytest.raises(QuotaExceeded) as refused:
        admit(c, plan)
    assert refused.value.window == "week"
    assert refused.value.retry_after == pytest.approx(datetime(2026, 11, 23, tzinfo=UTC).timestamp() - T0)
