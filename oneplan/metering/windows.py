"""Quota windows and their arithmetic, shared by every counter backend.

* ``5h``: a rolling window - a request counts for exactly five hours after it was admitted
  (to the second).
* ``week`` and ``month``: calendar periods in the operator's quota time zone (weeks begin on
  Monday 00:00, months on the 1st), reset when the period ends, like a billing cycle.
* ``tokens_month`` and ``cost_month``: monthly budgets; a request is admitted while the budget
  is not used up, and charged its real usage when it settles.
"""

from __future__ import annotations

import calendar
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from oneplan.refusals import RETRY_SOON

ROLLING_SECONDS = 5 * 3600
Clock = Callable[[], float]


# Not ``frozen``: a frozen dataclass sets each field through ``object.__setattr__``, 4-5x the
# cost of a plain one, and admission makes one of these per window on every request. Nothing
# changes one after it is made (nor hashes one).
@dataclass(slots=True)
class WindowState:
    window: str  # its name: "5h" | "week" | "month" | "tokens_month" | "cost_month" | a plan's own
    used: float
    limit: float
    resets_at: float | None  # when (unix seconds) capacity next frees up; None if nothing used
    unit: str = "requests"  # requests | calls | credits | tokens | cost | concurrency
    span: float | None = None  # the window's length in seconds (a period's, this time)
    kind: str = ""  # rolling | calendar | anniversary ("" for concurrency)
    held: float = 0.0  # the part of ``used`` that requests in flight reserved and have not settled

    @property
    def settled(self) -> float:
        """What requests that finished spent: ``used`` without the in-flight reservations."""
        return max(0.0, self.used - self.held)

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
            "unit": self.unit,
        }


class Periods:
    """Calendar period boundaries in one time zone, cached per period."""

    def __init__(self, tz: str = "UTC") -> None:
        self.tz = ZoneInfo(tz)
        self._week: tuple[float, float] = (0.0, 0.0)
        self._month: tuple[float, float] = (0.0, 0.0)
        # Each subscription's current anniversary period, by (length, anchor): admission asks
        # for it on every request, and it changes once a week or a month.
        self._anniversaries: dict[tuple[str, float], tuple[float, float]] = {}

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

    def day(self, now: float) -> tuple[float, float]:
        local = datetime.fromtimestamp(now, self.tz)
        start = local.replace(hour=0, minute=0, second=0, microsecond=0)
        # Wall-clock arithmetic: the next local midnight, 23 or 25 hours away across a DST change.
        return start.timestamp(), (start + timedelta(days=1)).timestamp()

    def span(self, length: str, now: float) -> tuple[float, float]:
        """The calendar ``day``, ``week`` or ``month`` holding ``now``."""
        if length == "week":
            return self.week(now)
        if length == "month":
            return self.month(now)
        return self.day(now)

    def anniversary(self, length: str, anchor: float, now: float) -> tuple[float, float]:
        """The ``week`` or ``month`` holding ``now`` that starts at the subscription time
        ``anchor`` (same weekday or day of month, same local time; a 31st renews on the last
        day of shorter months)."""
        if anchor == now:  # no subscription time known (it starts now): not worth keeping
            return self._anniversary(length, anchor, now)
        key = (length, anchor)
        found = self._anniversaries.get(key)
        if found is not None and found[0] <= now < found[1]:
            return found
        if len(self._anniversaries) >= _ANNIVERSARIES_KEPT:
            self._anniversaries.clear()
        span = self._anniversaries[key] = self._anniversary(length, anchor, now)
        return span

    def _anniversary(self, length: str, anchor: float, now: float) -> tuple[float, float]:
        start_local = datetime.fromtimestamp(anchor, self.tz)
        if length == "week":
            local = datetime.fromtimestamp(now, self.tz)
            days = (local.replace(tzinfo=None) - start_local.replace(tzinfo=None)).days
            weeks = days // 7
            for k in (weeks + 1, weeks, weeks - 1):
                begin = _at(start_local, start_local.date() + timedelta(weeks=k), self.tz)
                if begin <= now:
                    end = _at(start_local, start_local.date() + timedelta(weeks=k + 1), self.tz)
                    return begin, end
            raise AssertionError("unreachable")
        local = datetime.fromtimestamp(now, self.tz)
        index = (local.year - start_local.year) * 12 + local.month - start_local.month
        for k in (index + 1, index, index - 1):
            begin = _month_start(start_local, k, self.tz)
            if begin <= now:
                return begin, _month_start(start_local, k + 1, self.tz)
        raise AssertionError("unreachable")

    def month(self, now: float) -> tuple[float, float]:
        start, end = self._month
        if not start <= now < end:
            local = datetime.fromtimestamp(now, self.tz)
            first = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
            following = (first + timedelta(days=32)).replace(day=1)
            start, end = first.timestamp(), following.timestamp()
            self._month = (start, end)
        return start, end


_ANNIVERSARIES_KEPT = 100_000  # subscriptions whose period is kept (then all are forgotten)


def _at(anchor: datetime, day: date, tz: ZoneInfo) -> float:
    return datetime(day.year, day.month, day.day, anchor.hour, anchor.minute, anchor.second, tzinfo=tz).timestamp()


def _month_start(anchor: datetime, k: int, tz: ZoneInfo) -> float:
    """The start of the ``k``-th month after ``anchor``'s (negative: before)."""
    year, month = divmod(anchor.year * 12 + anchor.month - 1 + k, 12)
    month += 1
    day = min(anchor.day, calendar.monthrange(year, month)[1])
    return _at(anchor, date(year, month, day), tz)


_PERIODS: dict[str, Periods] = {}


def periods_in(tz: str) -> Periods:
    """The shared ``Periods`` of one time zone (their caches are per zone)."""
    found = _PERIODS.get(tz)
    if found is None:
        found = _PERIODS[tz] = Periods(tz)
    return found


def system_clock() -> float:
    return time.time()


_NAMED = {
    "5h": "5-hour request quota",
    "week": "weekly request quota",
    "month": "monthly request quota",
    "tokens_month": "monthly token budget",
    "cost_month": "monthly cost budget",
    "rpm": "requests-per-minute limit",
    "concurrency": "limit on requests in flight",
}
_UNIT_WORD = {"requests": "request quota", "calls": "request limit", "credits": "credit quota",
              "tokens": "token budget", "cost": "cost budget"}


def describe(window: str, unit: str | None = None) -> str:
    """A window's name as a sentence says it: ``5h`` -> "5-hour request quota", a plan's own
    ``credits_5h`` -> "credits_5h credit quota"."""
    named = _NAMED.get(window)
    if named is not None:
        return named
    return f"{window} {_UNIT_WORD.get(unit or '', 'quota')}"


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
            f"Your plan's {describe(state.window, state.unit)} is used up ({used}): quota exhausted. "
            f"It will reset at {when} (in {hours}h {minutes}m {seconds}s)."
        )
    return (
        f"Your plan's {describe(state.window, state.unit)} is used up ({used}). "
        f"It frees up at {when} (in {hours}h {minutes}m {seconds}s)."
    )
