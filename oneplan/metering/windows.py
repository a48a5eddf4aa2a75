"""Quota windows and their arithmetic, shared by every counter backend.

* ``5h``: a rolling window - a request counts for exactly five hours after it was admitted
  (to the second).
* ``week`` and ``month``: calendar periods in the operator's quota time zone (weeks begin on
  Monday 00:00, months on the 1st), reset when the period ends, like a billing cycle.
* ``tokens_month`` and ``cost_month``: monthly budgets; a request is admitted while the budget
  is not used up, and charged its real usage when it settles.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from oneplan.refusals import RETRY_SOON

ROLLING_SECONDS = 5 * 3600
Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class WindowState:
    window: str  # "5h" | "week" | "month" | "tokens_month" | "cost_month"
    used: float
    limit: float
    resets_at: float | None  # when (unix seconds) capacity next frees up; None if nothing used

    @property
    def remaining(self) -> float:
        return max(0.0, self.limit - self.used)

    def as_dict(self) -> dict[str, object]:
        return {
            "window": self.window,
            "used": self.used,
            "limit": self.limit,
            "remaining": self.remaining,
            "resets_at": self.resets_at,
        }


class Periods:
    """Calendar period boundaries in one time zone, cached per period."""

    def __init__(self, tz: str = "UTC") -> None:
        self.tz = ZoneInfo(tz)
        self._week: tuple[float, float] = (0.0, 0.0)
        self._month: tuple[float, float] = (0.0, 0.0)

    def week(self, now: float) -> tuple[float, float]:
        start, end = self._week
        if not start <= now < end:
            local = datetime.fromtimestamp(now, self.tz)
            monday = (local - timedelta(days=local.weekday())).replace(
                hour=0, minute=0, second=0, microsecond=0
            )
            start, end = monday.timestamp(), (monday + timedelta(days=7)).timestamp()
            self._week = (start, end)
        return start, end

    def month(self, now: float) -> tuple[float, float]:
        start, end = self._month
        if not start <= now < end:
            local = datetime.fromtimestamp(now, self.tz)
            first = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
            following = (first + timedelta(days=32)).replace(day=1)
            start, end = first.timestamp(), following.timestamp()
            self._month = (start, end)
        return start, end


def system_clock() -> float:
    return time.time()


def describe(window: str) -> str:
    return {
        "5h": "5-hour request quota",
        "week": "weekly request quota",
        "month": "monthly request quota",
        "tokens_month": "monthly token budget",
        "cost_month": "monthly cost budget",
    }[window]


def exact(value: float) -> str:
    """A quota figure as people and headers want it: exact integers (``2000000``, never
    ``2e+06``), else a plain decimal."""
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.6f}".rstrip("0").rstrip(".")


def refusal_message(state: WindowState, now: float) -> str:
    """The window, used/limit and when it frees up. A wait past ``refusals.RETRY_SOON`` is
    worded as agents recognise a terminal quota ("quota ... exhausted", "will reset at": Qwen
    Code stops retrying on that and shows the message)."""
    wait = max(0.0, (state.resets_at or now) - now)
    hours, rest = divmod(int(wait + 0.999), 3600)
    minutes, seconds = divmod(rest, 60)
    when = datetime.fromtimestamp(state.resets_at or now, ZoneInfo("UTC")).strftime("%Y-%m-%d %H:%M:%S UTC")
    used = f"{exact(state.used)}/{exact(state.limit)}"
    if wait > RETRY_SOON:
        return (
            f"Your plan's {describe(state.window)} is used up ({used}): quota exhausted. "
            f"It will reset at {when} (in {hours}h {minutes}m {seconds}s)."
        )
    return (
        f"Your plan's {describe(state.window)} is used up ({used}). "
        f"It frees up at {when} (in {hours}h {minutes}m {seconds}s)."
    )
