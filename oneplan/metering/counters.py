"""Quota counters: admit (reserve) before forwarding, settle after with the real usage, release
on failure. The in-process backend serves one worker; ``redis_counters`` serves several.

Admission is atomic: the in-process backend checks and reserves with no suspension point in
between, so N concurrent requests against Q remaining admit exactly min(N, Q).
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from oneplan.errors import QuotaExceeded
from oneplan.metering.windows import ROLLING_SECONDS, Clock, Periods, WindowState, refusal_message
from oneplan.routing.catalog import Plan


@dataclass(slots=True)
class Reservation:
    user_id: int
    weight: int
    second: int
    week_start: float
    month_start: float
    states: list[WindowState]
    settled: bool = False
    gen: str = ""  # the counters' generation it was admitted under (Redis)
    field: str = ""  # its in-flight entry (Redis): "<replica>:<request id>"


def exhausts(state: WindowState, weight: int) -> bool:
    """Budgets admit while not used up; request windows admit while the weight still fits."""
    if state.window in ("tokens_month", "cost_month"):
        return state.used >= state.limit
    return state.used + weight > state.limit


def refusal(exhausted: list[WindowState], now: float) -> QuotaExceeded:
    """Name the window that binds longest: the caller can retry only once every one frees up."""
    state = max(exhausted, key=lambda s: s.resets_at or now)
    wait = max(0.0, (state.resets_at or now) - now)
    return QuotaExceeded(refusal_message(state, now), retry_after=wait, window=state.window)


class Counters(ABC):
    def __init__(self, clock: Clock, periods: Periods) -> None:
        self.clock = clock
        self.periods = periods

    @abstractmethod
    async def admit(self, user_id: int, plan: Plan, weight: int, request_id: str = "") -> Reservation:
        """Reserve ``weight`` requests in every window, or raise ``QuotaExceeded``."""

    @abstractmethod
    def settle(self, reservation: Reservation, tokens: int, cost: float) -> None:
        """The request succeeded (or was cancelled): keep the reservation, add its tokens and
        cost. Synchronous - it never waits on I/O, so a cancelled task can call it."""

    def committed(self, rows: Iterable[dict[str, Any]], generation: str) -> None:  # noqa: B027
        """The ledger rows ``rows`` are now in the database (under counter ``generation``)."""

    @abstractmethod
    async def release(self, reservation: Reservation) -> None:
        """The request failed: give the reserved requests back."""

    @abstractmethod
    async def states(self, user_id: int, plan: Plan) -> list[WindowState]:
        """Every window the plan limits, as it stands now."""

    def load(self, rows: Iterable[tuple[int, int, int, int, float]]) -> None:  # noqa: B027
        """Rebuild from the ledger: (user_id, second, weight, tokens, cost) rows."""

    async def start(self, view: Any) -> None:
        """At start-up: the ledger is the truth, the counters its cache (``view`` is the
        database: ``charged_since``)."""
        now = self.clock()
        since = min(now - ROLLING_SECONDS, self.periods.week(now)[0], self.periods.month(now)[0])
        self.load(await asyncio.to_thread(view.charged_since, since))

    async def aclose(self) -> None:  # noqa: B027
        """Release connections."""


class _User:
    __slots__ = ("cost", "month", "month_start", "rolling", "rolling_total", "tokens", "week", "week_start")

    def __init__(self) -> None:
        self.rolling: deque[list[int]] = deque()  # [second, weight], oldest first
        self.rolling_total = 0
        self.week_start = 0.0
        self.week = 0
        self.month_start = 0.0
        self.month = 0
        self.tokens = 0
        self.cost = 0.0


def _fits(user: _User, plan: Plan, weight: int) -> bool:
    """The admission test of ``exhausts`` on plain numbers (the common case, kept cheap)."""
    return (
        (plan.requests_per_5h is None or user.rolling_total + weight <= plan.requests_per_5h)
        and (plan.requests_per_week is None or user.week + weight <= plan.requests_per_week)
        and (plan.requests_per_month is None or user.month + weight <= plan.requests_per_month)
        and (plan.tokens_per_month is None or user.tokens < plan.tokens_per_month)
        and (plan.cost_per_month is None or user.cost < plan.cost_per_month)
    )


class MemoryCounters(Counters):
    def __init__(self, clock: Clock, periods: Periods) -> None:
        super().__init__(clock, periods)
        self._users: dict[int, _User] = {}

    def _user(self, user_id: int, now: float) -> _User:
        user = self._users.get(user_id)
        if user is None:
            user = self._users[user_id] = _User()
        cutoff = int(now) - ROLLING_SECONDS
        rolling = user.rolling
        while rolling and rolling[0][0] <= cutoff:
            user.rolling_total -= rolling.popleft()[1]
        week_start, _ = self.periods.week(now)
        if user.week_start != week_start:
            user.week_start, user.week = week_start, 0
        month_start, _ = self.periods.month(now)
        if user.month_start != month_start:
            user.month_start, user.month, user.tokens, user.cost = month_start, 0, 0, 0.0
        return user

    def _frees_at(self, user: _User, need: int, limit: int) -> float:
        """When enough of the rolling window expires for ``need`` more requests."""
        excess = user.rolling_total + need - limit
        for second, weight in user.rolling:
            excess -= weight
            if excess <= 0:
                return float(second + ROLLING_SECONDS)
        return float(user.rolling[-1][0] + ROLLING_SECONDS) if user.rolling else self.clock()

    def _states(self, user: _User, plan: Plan, now: float, weight: int = 0) -> list[WindowState]:
        out = []
        if plan.requests_per_5h is not None:
            frees = self._frees_at(user, max(weight, 1), plan.requests_per_5h) if user.rolling else None
            out.append(WindowState("5h", user.rolling_total, plan.requests_per_5h, frees))
        if plan.requests_per_week is not None:
            out.append(WindowState("week", user.week, plan.requests_per_week, self.periods.week(now)[1]))
        if plan.requests_per_month is not None:
            out.append(WindowState("month", user.month, plan.requests_per_month, self.periods.month(now)[1]))
        if plan.tokens_per_month is not None:
            out.append(WindowState("tokens_month", user.tokens, plan.tokens_per_month, self.periods.month(now)[1]))
        if plan.cost_per_month is not None:
            out.append(WindowState("cost_month", user.cost, plan.cost_per_month, self.periods.month(now)[1]))
        return out

    async def admit(self, user_id: int, plan: Plan, weight: int, request_id: str = "") -> Reservation:
        return self.admit_now(user_id, plan, weight)

    def admit_now(self, user_id: int, plan: Plan, weight: int) -> Reservation:
        now = self.clock()
        user = self._user(user_id, now)
        if not _fits(user, plan, weight):
            exhausted = [s for s in self._states(user, plan, now, weight) if exhausts(s, weight)]
            raise refusal(exhausted, now)
        second = int(now)
        if weight:
            rolling = user.rolling
            if rolling and rolling[-1][0] == second:
                rolling[-1][1] += weight
            else:
                rolling.append([second, weight])
            user.rolling_total += weight
            user.week += weight
            user.month += weight
        return Reservation(
            user_id, weight, second, user.week_start, user.month_start, self._states(user, plan, now)
        )

    def settle(self, reservation: Reservation, tokens: int, cost: float) -> None:
        if reservation.settled:
            return
        reservation.settled = True
        user = self._user(reservation.user_id, self.clock())
        if user.month_start == reservation.month_start:
            user.tokens += tokens
            user.cost += cost

    async def release(self, reservation: Reservation) -> None:
        if reservation.settled or not reservation.weight:
            return
        reservation.settled = True
        user = self._user(reservation.user_id, self.clock())
        for entry in reversed(user.rolling):
            if entry[0] == reservation.second:
                entry[1] -= reservation.weight
                user.rolling_total -= reservation.weight
                break
            if entry[0] < reservation.second:
                break
        if user.week_start == reservation.week_start:
            user.week -= reservation.weight
        if user.month_start == reservation.month_start:
            user.month -= reservation.weight

    async def states(self, user_id: int, plan: Plan) -> list[WindowState]:
        return self.snapshot(user_id, plan)

    def snapshot(self, user_id: int, plan: Plan) -> list[WindowState]:
        now = self.clock()
        return self._states(self._user(user_id, now), plan, now)

    def load(self, rows: Iterable[tuple[int, int, int, int, float]]) -> None:
        now = self.clock()
        week_start, _ = self.periods.week(now)
        month_start, _ = self.periods.month(now)
        cutoff = int(now) - ROLLING_SECONDS
        self._users.clear()
        for user_id, second, weight, tokens, cost in sorted(rows, key=lambda r: r[1]):
            user = self._user(user_id, now)
            weight, tokens, cost = int(weight or 0), int(tokens or 0), float(cost or 0.0)
            if second > cutoff and weight:
                user.rolling.append([int(second), weight])
                user.rolling_total += weight
            if second >= week_start:
                user.week += weight
            if second >= month_start:
                user.month += weight
                user.tokens += tokens
                user.cost += cost
