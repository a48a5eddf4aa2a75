"""The plan engine: every unit and kind of window, with an injected clock, on the in-process
counters and on Redis - roll-over to the second, anniversary months across month ends, DST in
the plan's time zone, peak boundaries, concurrency and requests per minute, worst-case
reservations that never overshoot."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from oneplan.errors import QuotaExceeded
from oneplan.metering.counters import Counters, Demand, MemoryCounters
from oneplan.metering.plans import Amounts, Credits, Plan, amounts, plan_from_spec
from oneplan.metering.windows import Periods
from oneplan.protocols.canonical import Usage
from oneplan.routing.catalog import Deployment, ModelEntry
from oneplan.store.db import Database
from tests.support.gateway import ManualClock
from tests.support.services import require_redis

T0 = datetime(2026, 11, 18, 12, 0, 0, tzinfo=UTC).timestamp()  # a Wednesday
MODEL = ModelEntry(
    "glm", (Deployment("up", "glm-up"),), input_price=2.0, output_price=8.0, cached_input_price=0.5,
    credits=Credits(input=1.0, cached_input=0.1, cache_write=1.25, output=4.0),
)


class Backend:
    def __init__(self, kind: str, clock: ManualClock, tmp_path: Path) -> None:
        self.kind, self.clock, self.tmp_path = kind, clock, tmp_path
        self.db: Database | None = None
        self.loop = asyncio.new_event_loop()
        self.made: list[Counters] = []

    def counters(self) -> Counters:
        if self.kind == "memory":
            c: Counters = MemoryCounters(self.clock, Periods("UTC"))
        else:
            from oneplan.metering.redis_counters import RedisCounters

            if self.db is None:
                self.db = Database.open(self.tmp_path)
            c = RedisCounters("redis://127.0.0.1:6379/0", self.clock, Periods("UTC"), prefix=self.prefix)
            self.run(c.start(self.db))
        self.made.append(c)
        return c

    @property
    def prefix(self) -> str:
        if not hasattr(self, "_prefix"):
            self._prefix = "plans-" + secrets.token_hex(4)
        return self._prefix

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def close(self) -> None:
        for c in self.made:
            self.run(c.aclose())
        self.loop.close()
        if self.db is not None:
            self.db.close()


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "redis":
        require_redis()
    b = Backend(request.param, ManualClock(T0), tmp_path)
    yield b
    b.close()


def demand(plan: Plan, *, input_bound: int = 0, requested: int | None = None, anchor: float | None = None,
           now: float = T0, model: ModelEntry = MODEL) -> Demand:
    multiplier = plan.multiplier(now, model.name)
    return Demand(plan.needs(model, model.weight, input_bound, multiplier), model.weight, requested, multiplier, anchor)


def admit(b: Backend, c: Counters, plan: Plan, user: int = 1, **kw: Any):  # type: ignore[no-untyped-def]
    return b.run(c.admit(user, plan, demand(plan, now=b.clock(), **kw), secrets.token_hex(6)))


def used(b: Backend, c: Counters, plan: Plan, user: int = 1, anchor: float | None = None) -> dict[str, float]:
    return {s.window: s.used for s in b.run(c.states(user, plan, anchor))}


def plan_of(**spec: Any) -> Plan:
    return plan_from_spec("p", spec)


def test_a_one_minute_rolling_window_frees_each_request_exactly_a_minute_later(backend: Backend) -> None:
    c = backend.counters()
    plan = plan_of(windows=[{"unit": "requests", "kind": "rolling", "length": "1m", "limit": 2}])
    admit(backend, c, plan)
    backend.clock.advance(30)
    admit(backend, c, plan)
    with pytest.raises(QuotaExceeded) as refused:
        admit(backend, c, plan)
    assert refused.value.window == "requests_1m" and refused.value.retry_after == pytest.approx(30)
    backend.clock.advance(29.999)
    with pytest.raises(QuotaExceeded):
        admit(backend, c, plan)
    backend.clock.advance(0.001)  # 60 s after the first: its slot is free, the second's is not
    admit(backend, c, plan)
    with pytest.raises(QuotaExceeded):
        admit(backend, c, plan)


def test_calendar_day_resets_at_local_midnight_across_a_dst_change(backend: Backend) -> None:
    tz = ZoneInfo("America/New_York")
    c = backend.counters()
    plan = plan_of(timezone="America/New_York", windows=[{"unit": "requests", "kind": "calendar", "length": "day", "limit": 1}])
    # 2026-03-08 is 23 hours long in New York (clocks go from 02:00 to 03:00).
    backend.clock.now = datetime(2026, 3, 8, 0, 30, tzinfo=tz).timestamp()
    admit(backend, c, plan)
    with pytest.raises(QuotaExceeded) as refused:
        admit(backend, c, plan)
    midnight = datetime(2026, 3, 9, 0, 0, tzinfo=tz).timestamp()
    assert refused.value.retry_after == pytest.approx(midnight - backend.clock.now)
    assert midnight - datetime(2026, 3, 8, 0, 0, tzinfo=tz).timestamp() == 23 * 3600
    backend.clock.now = midnight - 1
    with pytest.raises(QuotaExceeded):
        admit(backend, c, plan)
    backend.clock.now = midnight
    admit(backend, c, plan)


def test_calendar_week_starts_monday_in_the_plan_zone_and_month_on_the_first(backend: Backend) -> None:
    tz = ZoneInfo("Asia/Shanghai")
    c = backend.counters()
    plan = plan_of(timezone="Asia/Shanghai", windows=[
        {"unit": "requests", "kind": "calendar", "length": "week", "limit": 1, "name": "wk"},
        {"unit": "requests", "kind": "calendar", "length": "month", "limit": 5, "name": "mo"},
    ])
    backend.clock.now = datetime(2026, 11, 29, 23, 59, 59, tzinfo=tz).timestamp()  # Sunday, last second
    admit(backend, c, plan)
    with pytest.raises(QuotaExceeded) as refused:
        admit(backend, c, plan)
    assert refused.value.window == "wk" and refused.value.retry_after == pytest.approx(1)
    backend.clock.advance(1)  # Monday 00:00 in Shanghai (Sunday 16:00 UTC)
    admit(backend, c, plan)
    assert used(backend, c, plan) == {"wk": 1, "mo": 2}
    backend.clock.now = datetime(2026, 12, 1, 0, 0, tzinfo=tz).timestamp()  # a new month, same week
    with pytest.raises(QuotaExceeded):
        admit(backend, c, plan)
    assert used(backend, c, plan)["mo"] == 0


@pytest.mark.parametrize(("year", "february_end"), [(2027, 28), (2028, 29)])
def test_an_anniversary_month_from_the_31st_renews_on_the_last_day_of_shorter_months(
    backend: Backend, year: int, february_end: int
) -> None:
    c = backend.counters()
    plan = plan_of(windows=[{"unit": "requests", "kind": "anniversary", "length": "month", "limit": 1}])
    anchor = datetime(year - 1, 12, 31, 9, 30, tzinfo=UTC).timestamp()  # subscribed Dec 31, 09:30
    renewals = [datetime(year, 1, 31, 9, 30, tzinfo=UTC), datetime(year, 2, february_end, 9, 30, tzinfo=UTC),
                datetime(year, 3, 31, 9, 30, tzinfo=UTC), datetime(year, 4, 30, 9, 30, tzinfo=UTC)]
    backend.clock.now = renewals[0].timestamp() - 10
    admit(backend, c, plan, anchor=anchor)
    for renewal in renewals:
        with pytest.raises(QuotaExceeded) as refused:
            admit(backend, c, plan, anchor=anchor)
        assert refused.value.retry_after == pytest.approx(renewal.timestamp() - backend.clock.now)
        backend.clock.now = renewal.timestamp() - 0.5
        with pytest.raises(QuotaExceeded):
            admit(backend, c, plan, anchor=anchor)
        backend.clock.now = renewal.timestamp()  # to the second
        admit(backend, c, plan, anchor=anchor)


def test_an_anniversary_week_follows_the_subscription_weekday_and_hour(backend: Backend) -> None:
    c = backend.counters()
    plan = plan_of(windows=[{"unit": "requests", "kind": "anniversary", "length": "week", "limit": 1}])
    anchor = datetime(2026, 11, 5, 18, 0, tzinfo=UTC).timestamp()  # a Thursday, 18:00
    admit(backend, c, plan, anchor=anchor)  # Wednesday Nov 18: the week began Thursday Nov 12
    with pytest.raises(QuotaExceeded) as refused:
        admit(backend, c, plan, anchor=anchor)
    assert refused.value.retry_after == pytest.approx(datetime(2026, 11, 19, 18, 0, tzinfo=UTC).timestamp() - T0)


def test_peak_hours_multiply_charges_from_the_first_to_the_last_second(backend: Backend) -> None:
    tz = ZoneInfo("Asia/Shanghai")
    c = backend.counters()
    plan = plan_of(
        windows=[{"unit": "requests", "kind": "calendar", "length": "month", "limit": 1000, "name": "mo"}],
        peak=[{"multiplier": 3, "days": ["mon", "tue", "wed", "thu", "fri"], "hours": "14-18", "timezone": "Asia/Shanghai"}],
    )
    expected = 0
    for moment, factor in [
        (datetime(2026, 11, 18, 13, 59, 59, tzinfo=tz), 1),  # Wednesday, a second before peak
        (datetime(2026, 11, 18, 14, 0, 0, tzinfo=tz), 3),
        (datetime(2026, 11, 18, 17, 59, 59, tzinfo=tz), 3),
        (datetime(2026, 11, 18, 18, 0, 0, tzinfo=tz), 1),
        (datetime(2026, 11, 21, 15, 0, 0, tzinfo=tz), 1),  # Saturday: off-peak all day
    ]:
        backend.clock.now = moment.timestamp()
        r = admit(backend, c, plan)
        assert r.multiplier == factor
        expected += factor
        assert used(backend, c, plan)["mo"] == expected


def test_a_peak_that_wraps_past_midnight_belongs_to_the_day_it_began(backend: Backend) -> None:
    plan = plan_of(peak=[{"multiplier": 2, "days": ["fri"], "hours": "22-2"}], requests_per_month=100)
    friday_late = datetime(2026, 11, 20, 23, 0, tzinfo=UTC).timestamp()
    saturday_early = datetime(2026, 11, 21, 1, 59, tzinfo=UTC).timestamp()
    saturday_late = datetime(2026, 11, 21, 23, 0, tzinfo=UTC).timestamp()
    assert plan.multiplier(friday_late, "glm") == 2
    assert plan.multiplier(saturday_early, "glm") == 2
    assert plan.multiplier(saturday_late, "glm") == 1
    assert plan.multiplier(datetime(2026, 11, 21, 2, 0, tzinfo=UTC).timestamp(), "glm") == 1


def test_credits_reserve_the_worst_case_and_settle_the_real_classes(backend: Backend) -> None:
    c = backend.counters()
    plan = plan_of(windows=[{"unit": "credits", "kind": "rolling", "length": "5h", "limit": 10_000}])
    # Worst case: 1000 input tokens at the dearest input class (cache write, 1.25) + 500 out * 4.
    r = admit(backend, c, plan, input_bound=1000, requested=500)
    assert r.output == 500 and used(backend, c, plan)["credits_5h"] == pytest.approx(1250 + 2000)
    usage = Usage(input_tokens=600, output_tokens=100, cached_tokens=400, cache_write_tokens=100)
    real = amounts(MODEL, usage, 1, 0.0)
    assert real.credits == pytest.approx(100 * 1.0 + 400 * 0.1 + 100 * 1.25 + 100 * 4.0)
    c.settle(r, real)
    _settle_redis(backend, c, r)
    assert used(backend, c, plan)["credits_5h"] == pytest.approx(665)


def test_states_tell_what_requests_in_flight_hold_from_what_was_settled(backend: Backend) -> None:
    """``used`` counts the worst case of requests in flight (nothing may overshoot); alerts and
    digests speak of what was spent, so each state also says how much of it is only held."""
    c = backend.counters()
    plan = plan_of(windows=[
        {"unit": "tokens", "kind": "rolling", "length": "5h", "limit": 10_000, "name": "tok"},
        {"unit": "requests", "kind": "calendar", "length": "month", "limit": 100, "name": "req"},
    ])

    def view() -> dict[str, tuple[float, float]]:
        return {s.window: (s.used, s.settled) for s in backend.run(c.states(1, plan, held=True))}

    first = admit(backend, c, plan, input_bound=100, requested=400)
    second = admit(backend, c, plan, input_bound=200, requested=300)
    assert view() == {"tok": (1000, 0), "req": (2, 0)}
    c.settle(first, Amounts(requests=1, calls=1, tokens=150))
    # Redis: finished, its row not committed yet - what it spent is known here already.
    assert {w: settled for w, (_, settled) in view().items()} == {"tok": 150, "req": 1}
    _settle_redis(backend, c, first)
    assert view() == {"tok": (650, 150), "req": (2, 1)}
    backend.run(c.release(second))  # failed upstream: nothing spent, nothing held
    if backend.kind == "redis":
        backend.run(c.flush())  # type: ignore[attr-defined]
    assert view() == {"tok": (150, 150), "req": (1, 1)}


def _settle_redis(backend: Backend, c: Counters, r: Any) -> None:
    """Redis settles once the ledger row is committed: say it is."""
    if backend.kind == "redis":
        c.committed([{"id": r.field.split(":", 1)[1]}], r.gen)
        backend.run(c.flush())  # type: ignore[attr-defined]


def test_what_does_not_fit_is_shortened_or_refused_as_the_plan_says(backend: Backend) -> None:
    c = backend.counters()
    window = {"unit": "tokens", "kind": "calendar", "length": "month", "limit": 1000, "name": "tok"}
    shorten = plan_of(windows=[window])
    admit(backend, c, shorten, input_bound=100, requested=300)  # reserves 400
    r = admit(backend, c, shorten, input_bound=100, requested=800, user=1)  # 600 left: 100 in + 500 out
    assert r.output == 500 and r.lowered_from == 800 and r.binding == "tok"
    with pytest.raises(QuotaExceeded) as refused:  # nothing left for even one output token
        admit(backend, c, shorten, input_bound=100, requested=10)
    assert refused.value.window == "tok"
    refuse = plan_of(windows=[window], on_exceed="refuse")
    with pytest.raises(QuotaExceeded) as told:
        admit(backend, c, refuse, input_bound=10, requested=10, user=2)
        admit(backend, c, refuse, input_bound=10, requested=2000, user=2)
    assert "max_tokens=2000" in str(told.value) and "lower max_tokens" in str(told.value)


def test_concurrency_counts_requests_in_flight_and_frees_as_each_ends(backend: Backend) -> None:
    c = backend.counters()
    plan = plan_of(concurrency=2, requests_per_5h=100)
    a = admit(backend, c, plan)
    b = admit(backend, c, plan)
    with pytest.raises(QuotaExceeded) as refused:
        admit(backend, c, plan)
    assert refused.value.window == "concurrency" and refused.value.retry_after == 1
    c.settle(a, Amounts(requests=1, calls=1))
    third = admit(backend, c, plan)  # a ended: at once a slot is free (the same replica knows)
    backend.run(c.release(b))
    admit(backend, c, plan)
    c.settle(third, Amounts(requests=1, calls=1))


def test_requests_per_minute_counts_calls_whatever_the_weight(backend: Backend) -> None:
    c = backend.counters()
    heavy = ModelEntry("heavy", (Deployment("up", "h"),), weight=5)
    plan = plan_of(requests_per_minute=2, requests_per_5h=1000)
    for _ in range(2):
        admit(backend, c, plan, model=heavy)
    with pytest.raises(QuotaExceeded) as refused:
        admit(backend, c, plan, model=heavy)
    assert refused.value.window == "rpm"
    assert used(backend, c, plan) == {"5h": 10, "rpm": 2}


@pytest.mark.parametrize("unit", ["credits", "tokens", "cost"])
def test_300_concurrent_requests_never_overshoot_a_budget(backend: Backend, unit: str) -> None:
    c = backend.counters()
    need = {"credits": 100 * 1.25 + 200 * 4.0, "tokens": 300, "cost": (100 * 2.0 + 200 * 8.0) / 1e6}[unit]
    limit = need * 40 + need / 2  # room for 40 worst cases and a half
    plan = plan_of(windows=[{"unit": unit, "kind": "rolling", "length": "5h", "limit": limit, "name": "budget"}],
                   min_output_tokens=200)

    async def burst() -> list[Any]:
        async def one(i: int) -> Any:
            try:
                return await c.admit(1, plan, demand(plan, input_bound=100, requested=200), f"r{i}")
            except QuotaExceeded:
                return None
        return await asyncio.gather(*(one(i) for i in range(300)))

    admitted = [r for r in backend.run(burst()) if r is not None]
    assert len(admitted) == 40
    spent = used(backend, c, plan)["budget"]
    overshoot = max(0.0, spent - limit)
    print(f"\n{backend.kind} {unit}: {len(admitted)} admitted, spent {spent:.6g} of {limit:.6g}, overshoot {overshoot}")
    assert overshoot == 0
    for r in admitted:  # the real usage is smaller: what is left comes back
        usage = Usage(input_tokens=50, output_tokens=20)
        c.settle(r, amounts(MODEL, usage, 1, MODEL.cost(50, 20, 0)))
        _settle_redis(backend, c, r)
    settled = used(backend, c, plan)["budget"]
    real = {"credits": 40 * (50 + 80), "tokens": 40 * 70, "cost": 40 * MODEL.cost(50, 20, 0)}[unit]
    assert settled == pytest.approx(real)


def test_a_plan_change_keeps_what_the_user_used_in_windows_both_plans_have(backend: Backend) -> None:
    c = backend.counters()
    lite = plan_of(requests_per_5h=10)
    pro = plan_of(requests_per_5h=100, requests_per_minute=50)
    for _ in range(4):
        admit(backend, c, lite)
    assert used(backend, c, pro)["5h"] == 4


def test_rebuilt_from_the_ledger_every_window_comes_back(tmp_path: Path) -> None:
    clock = ManualClock(T0)
    plan = plan_of(windows=[{"unit": "credits", "kind": "anniversary", "length": "month", "limit": 1e6, "name": "cr"}],
                   requests_per_5h=100, peak=[{"multiplier": 3, "hours": "0-24"}])
    rows = [(1, int(T0 - 60), 2, 500, 0.01, 700.0, 2, 3.0, "p", T0 - 10 * 86400)]
    c = MemoryCounters(clock, Periods("UTC"))
    c.load(rows)
    states = {s.window: s.used for s in c.snapshot(1, plan, T0 - 10 * 86400)}
    assert states == {"5h": 6, "cr": 2100}


def test_a_rolling_window_longer_than_two_months_is_rebuilt_whole(backend: Backend, tmp_path: Path) -> None:
    """The counters start from the ledger as far back as the plans in force reach: a 90-day
    rolling window counts a request from 80 days ago after a restart."""
    from oneplan.metering.ledger import LEDGER_DEFAULTS, fit

    plan = plan_of(windows=[{"unit": "requests", "kind": "rolling", "length": "90d", "limit": 3, "name": "q"}])
    backend.db = Database.open(tmp_path)
    user, _key_id, _key = backend.db.create_user("alice", "p")
    assert user.id == 1
    backend.db.insert_ledger([
        fit({**LEDGER_DEFAULTS, "id": f"old{i}", "ts": T0 - days * 86400, "user_id": 1, "key_id": "k",
             "protocol": "openai_chat", "model": "glm", "stream": False, "status": "ok", "http_status": 200,
             "weight": 1, "latency_ms": 1.0, "plan": "p"})
        for i, days in enumerate((80, 95))  # the second is out of the window
    ])
    if backend.kind == "memory":
        c = MemoryCounters(backend.clock, Periods("UTC"))
        c.plans = lambda name: plan if name == "p" else None
        c.all_plans = lambda: [plan]
        backend.run(c.start(backend.db))
        backend.made.append(c)
    else:
        from oneplan.metering.redis_counters import RedisCounters

        c = RedisCounters("redis://127.0.0.1:6379/0", backend.clock, Periods("UTC"), prefix=backend.prefix)
        c.plans = lambda name: plan if name == "p" else None
        c.all_plans = lambda: [plan]
        backend.made.append(c)
        backend.run(c.start(backend.db))
    assert used(backend, c, plan) == {"q": 1}


def test_off_peak_hours_charge_the_off_peak_multiplier() -> None:
    plan = plan_of(requests_per_5h=100, off_peak_multiplier=0.5,
                   peak=[{"multiplier": 1, "days": ["mon", "tue", "wed", "thu", "fri"], "hours": "14-18",
                          "timezone": "Asia/Singapore"}])
    sgt = ZoneInfo("Asia/Singapore")
    assert plan.multiplier(datetime(2026, 11, 18, 15, 0, tzinfo=sgt).timestamp(), "glm") == 1
    assert plan.multiplier(datetime(2026, 11, 18, 18, 0, tzinfo=sgt).timestamp(), "glm") == 0.5
    assert plan.multiplier(datetime(2026, 11, 21, 15, 0, tzinfo=sgt).timestamp(), "glm") == 0.5


@pytest.mark.parametrize("unit", ["requests", "credits", "tokens", "cost"])
@pytest.mark.parametrize(("kind", "length"), [("rolling", "90s"), ("calendar", "day"), ("anniversary", "week")])
def test_every_unit_and_kind_fills_refuses_and_rolls_over_to_the_second(
    backend: Backend, unit: str, kind: str, length: str
) -> None:
    c = backend.counters()
    # One request's worst case (10 input tokens, 5 output) in each unit, on MODEL.
    one = {"requests": 1.0, "credits": 10 * 1.25 + 5 * 4.0, "tokens": 15.0, "cost": (10 * 2.0 + 5 * 8.0) / 1e6}[unit]
    plan = plan_of(windows=[{"unit": unit, "kind": kind, "length": length, "limit": one * 2, "name": "w"}],
                   min_output_tokens=5)
    anchor = T0 - 3 * 86400 - 5 * 3600  # subscribed on a Sunday, 07:00
    ends = {"rolling": T0 + 90, "calendar": datetime(2026, 11, 19, tzinfo=UTC).timestamp(),
            "anniversary": anchor + 7 * 86400}[kind]
    for _ in range(2):
        admit(backend, c, plan, input_bound=10, requested=5, anchor=anchor)
    with pytest.raises(QuotaExceeded) as refused:
        admit(backend, c, plan, input_bound=10, requested=5, anchor=anchor)
    assert refused.value.window == "w"
    assert refused.value.retry_after == pytest.approx(ends - T0)
    backend.clock.now = ends - 1
    with pytest.raises(QuotaExceeded):
        admit(backend, c, plan, input_bound=10, requested=5, anchor=anchor)
    backend.clock.now = ends
    admit(backend, c, plan, input_bound=10, requested=5, anchor=anchor)
    assert used(backend, c, plan, anchor=anchor)["w"] == pytest.approx(one)


@pytest.mark.parametrize("tz", ["UTC", "America/New_York", "Asia/Shanghai"])
def test_a_cached_anniversary_period_is_the_one_computed_afresh(tz: str) -> None:
    """Admission asks for a subscription's anniversary period on every request, so it is kept
    while ``now`` stays inside it: across renewals, DST changes and a clock set back, the kept
    answer is the fresh one."""
    import random

    periods, fresh = Periods(tz), Periods(tz)
    rng = random.Random(5)
    anchors = [datetime(2026, m, d, h, tzinfo=UTC).timestamp() for m, d, h in ((1, 31, 23), (3, 8, 7), (10, 31, 1), (2, 28, 12))]
    now = datetime(2026, 11, 1, tzinfo=UTC).timestamp()
    for _ in range(3000):
        now += rng.choice([1.0, 3600.0, 86400.0 * 3, -86400.0 * 2])  # mostly forward, sometimes back
        for anchor in anchors:
            for length in ("week", "month"):
                assert periods.anniversary(length, anchor, now) == fresh._anniversary(length, anchor, now)
