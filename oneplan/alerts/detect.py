"""Threshold crossings and forecast-to-exhaustion, from window states. Pure: the outbox makes
a firing happen once; this only says what the numbers cross.

A calendar window (week, month, budgets) fires each threshold once per period. The rolling
5-hour window fires once and re-arms when usage falls ``rearm_percent`` below the threshold
(so a window hovering at 80 % does not alert on every request).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

from oneplan.metering.windows import WindowState

ROLLING = "rolling"
PACE_SECONDS = 900.0  # the forecast's pace is usage over the last 15 minutes
PACE_MIN_SECONDS = 60.0  # and needs a minute of it


@dataclass(frozen=True, slots=True)
class Crossing:
    key: str  # rule|user|window|what: the state row
    period: str
    kind: str  # "threshold" | "forecast"
    window: str
    threshold: float | None  # percent, for thresholds
    minutes: float | None  # for forecasts: when it runs out at this pace


def period_of(state: WindowState, periods: Any, now: float) -> str:
    if state.window == "5h":
        return ROLLING
    start, _ = periods.week(now) if state.window == "week" else periods.month(now)
    return str(int(start))


def state_key(rule_id: str, user_id: int, window: str, what: str) -> str:
    return f"{rule_id}|{user_id}|{window}|{what}"


class Pace:
    """Recent (time, used) samples per user and window, for the forecast."""

    def __init__(self) -> None:
        self._samples: dict[tuple[int, str], deque[tuple[float, float]]] = {}

    def add(self, user_id: int, state: WindowState, now: float) -> float | None:
        """Minutes until the window runs out at the recent pace; None if unknown or idle."""
        samples = self._samples.setdefault((user_id, state.window), deque())
        while samples and (samples[0][0] < now - PACE_SECONDS or samples[0][1] > state.used):
            samples.popleft()  # too old, or the window reset / rolled
        samples.append((now, state.used))
        first_t, first_used = samples[0]
        span = now - first_t
        if span < PACE_MIN_SECONDS or state.used <= first_used:
            return None
        rate = (state.used - first_used) / span  # per second
        return state.remaining / rate / 60.0


def crossings(
    rule_id: str, thresholds: tuple[float, ...], forecast_minutes: float, user_id: int,
    states: list[WindowState], minutes_left: dict[str, float | None], periods: Any, now: float,
    rearm_percent: float,
) -> tuple[list[Crossing], list[str]]:
    """What is crossed now, and the rolling keys that fell far enough below to re-arm."""
    fired: list[Crossing] = []
    rearm: list[str] = []
    for state in states:
        if not state.limit:
            continue
        percent = 100.0 * state.used / state.limit
        period = period_of(state, periods, now)
        for threshold in thresholds:
            key = state_key(rule_id, user_id, state.window, f"{threshold:g}")
            if percent >= threshold:
                fired.append(Crossing(key, period, "threshold", state.window, threshold, None))
            elif period == ROLLING and percent < threshold - rearm_percent:
                rearm.append(key)
        if forecast_minutes:
            key = state_key(rule_id, user_id, state.window, "forecast")
            left = minutes_left.get(state.window)
            if left is not None and left <= forecast_minutes and state.remaining > 0:
                fired.append(Crossing(key, period, "forecast", state.window, None, left))
            elif period == ROLLING and (left is None or left > 2 * forecast_minutes):
                rearm.append(key)
    return fired, rearm
