"""Each quota window as the console shows it: used / limit, when it frees up, and when it runs
out at the recent pace ("at this hour's pace the 5-hour window runs out at 15:40")."""

from __future__ import annotations

from typing import Any

from oneplan.metering.windows import ROLLING_SECONDS, Periods, WindowState, describe

UNIT = {"5h": "requests", "week": "requests", "month": "requests", "tokens_month": "tokens", "cost_month": "cost"}
_PACED = {"calls": "requests"}  # the unit whose hourly pace a window's unit follows


def pace_per_second(current_hour: dict[str, float], previous_hour: dict[str, float], now: float) -> dict[str, float]:
    """Use over the last 60 minutes: this hour so far plus the matching tail of the last one."""
    elapsed = now % 3600
    left_of_previous = 1.0 - elapsed / 3600
    return {unit: (current_hour[unit] + previous_hour[unit] * left_of_previous) / 3600 for unit in current_hour}


def window_view(state: WindowState, pace: dict[str, float], periods: Periods, now: float) -> dict[str, Any]:
    unit = UNIT.get(state.window) or state.unit
    rate = pace.get(_PACED.get(unit, unit), 0.0)
    view: dict[str, Any] = {
        **state.as_dict(),
        "label": describe(state.window, state.unit),
        "unit": unit,
        "percent": round(100 * state.used / state.limit, 1) if state.limit else 100.0,
        "pace_per_hour": rate * 3600,
        "runs_out_at": None,
    }
    remaining = state.remaining
    if rate <= 0 or remaining <= 0:
        view["runs_out_at"] = now if remaining <= 0 else None
        return view
    if state.window == "5h" or state.kind == "rolling":
        if rate * (state.span or ROLLING_SECONDS) < state.limit:
            return view  # at this pace old requests age out faster than the window fills
        ends = None
    elif state.window == "week":
        ends = periods.week(now)[1]
    elif state.window in ("month", "tokens_month", "cost_month"):
        ends = periods.month(now)[1]
    else:
        ends = state.resets_at
    runs_out = now + remaining / rate
    if ends is None or runs_out < ends:
        view["runs_out_at"] = runs_out
    return view
