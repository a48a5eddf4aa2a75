"""Crossings, forecasts, runaways and digests as pure functions of their inputs."""

from __future__ import annotations

from datetime import UTC, datetime

from oneplan.alerts.detect import Pace, crossings
from oneplan.alerts.runaway import HOURS, error_rate_breaches, runaways
from oneplan.metering.windows import Periods, WindowState

NOW = datetime(2026, 11, 18, 12, tzinfo=UTC).timestamp()


def test_thresholds_fire_at_or_above_and_rolling_rearms_below_the_margin() -> None:
    periods = Periods("UTC")
    states = [WindowState("5h", 81, 100, NOW + 10), WindowState("week", 79, 100, NOW + 99)]
    fired, rearm = crossings("plan:p", (80, 100), 0, 1, states, {}, periods, NOW, 10)
    assert [(c.window, c.threshold, c.period) for c in fired] == [("5h", 80, "rolling")]
    assert rearm == ["plan:p|1|5h|100"]  # 81 % is below 90 %: 100 re-arms; the week never does
    low = [WindowState("5h", 69, 100, NOW + 10)]
    assert crossings("plan:p", (80, 100), 0, 1, low, {}, periods, NOW, 10)[1] == ["plan:p|1|5h|80", "plan:p|1|5h|100"]
    week = crossings("plan:p", (80,), 0, 1, [WindowState("week", 80, 100, None)], {}, periods, NOW, 10)[0]
    assert week[0].period == str(int(periods.week(NOW)[0]))


def test_forecast_from_the_recent_pace() -> None:
    pace = Pace()
    assert pace.add(1, WindowState("5h", 10, 100, None), NOW) is None
    left = pace.add(1, WindowState("5h", 40, 100, None), NOW + 300)  # 30 requests in 5 min
    assert left == 10.0  # 60 remaining at 6 a minute
    fired, _ = crossings("p", (), 15, 1, [WindowState("5h", 40, 100, None)], {"5h": left}, Periods(), NOW, 10)
    assert [(c.kind, c.minutes) for c in fired] == [("forecast", 10.0)]
    assert crossings("p", (), 5, 1, [WindowState("5h", 40, 100, None)], {"5h": left}, Periods(), NOW, 10)[0] == []


def test_runaway_against_the_median_of_active_hours() -> None:
    history = [(1, "key_a", h, 10, 0.01) for h in range(0, HOURS, 12)]  # 14 active hours of 10
    assert runaways([*history, (1, "key_a", HOURS, 49, 0.04)], 5, 20, 6) == []
    found = runaways([*history, (1, "key_a", HOURS, 51, 0.06)], 5, 20, 6)
    assert {(r.key_id, r.metric, r.last_hour, r.median) for r in found} == {
        ("key_a", "requests", 51, 10), (None, "requests", 51, 10),
        ("key_a", "cost", 0.06, 0.01), (None, "cost", 0.06, 0.01),
    }
    assert runaways([*history[:3], (1, "key_a", HOURS, 500, 1.0)], 5, 20, 6) == []  # too little history
    assert runaways([*history, (1, "key_a", HOURS, 15, 1.0)], 1.1, 20, 6) == []  # below min_requests


def test_error_rate_breaches() -> None:
    got = error_rate_breaches({"a": (20, 11), "b": (20, 9), "c": (5, 5)}, 0.5, 10)
    assert got == [{"provider": "a", "total": 20, "failed": 11, "rate": 0.55}]
