"""Windows as the console shows them: the pace of the last hour and when a window runs out."""

from __future__ import annotations

from datetime import UTC, datetime

from oneplan.console.forecast import pace_per_second, window_view
from oneplan.metering.rollup import EDGES, bucket, percentile
from oneplan.metering.windows import Periods, WindowState

NOW = datetime(2026, 12, 2, 10, 15, tzinfo=UTC).timestamp()  # a Wednesday, a quarter past ten


def test_pace_counts_this_hour_and_the_matching_tail_of_the_last() -> None:
    pace = pace_per_second({"requests": 30, "tokens": 0, "cost": 0}, {"requests": 40, "tokens": 0, "cost": 0}, NOW)
    assert pace["requests"] * 3600 == 30 + 40 * 0.75


def test_a_week_window_runs_out_at_the_pace_or_lasts_until_it_resets() -> None:
    periods = Periods("UTC")
    week = WindowState("week", used=900, limit=1000, resets_at=periods.week(NOW)[1])
    fast = window_view(week, {"requests": 50 / 3600}, periods, NOW)  # 100 left at 50 an hour
    assert fast["runs_out_at"] == NOW + 2 * 3600 and fast["percent"] == 90.0
    slow = window_view(week, {"requests": 0.1 / 3600}, periods, NOW)  # 1000 hours to go: it resets first
    assert slow["runs_out_at"] is None and slow["pace_per_hour"] > 0


def test_the_rolling_window_runs_out_only_when_the_pace_outruns_five_hours() -> None:
    state = WindowState("5h", used=60, limit=100, resets_at=NOW + 3600)
    assert window_view(state, {"requests": 10 / 3600}, Periods(), NOW)["runs_out_at"] is None  # 50 per 5h < 100
    assert window_view(state, {"requests": 40 / 3600}, Periods(), NOW)["runs_out_at"] == NOW + 3600
    done = window_view(WindowState("5h", used=100, limit=100, resets_at=NOW + 60), {}, Periods(), NOW)
    assert done["runs_out_at"] == NOW and done["remaining"] == 0


def test_histogram_p50_lands_in_the_right_bucket() -> None:
    values = [120.0] * 60 + [900.0] * 40
    histogram = [0] * (len(EDGES) + 1)
    for v in values:
        histogram[bucket(v)] += 1
    p50 = percentile(histogram, 0.5)
    assert p50 is not None and 100 <= p50 < 200
    assert percentile([0] * (len(EDGES) + 1), 0.5) is None
