"""Quota counters: admit (reserve a worst case) before forwarding, settle after with the real
usage, release on failure. The in-process backend serves one worker; ``redis_counters`` serves
several.

Admission is atomic: the in-process backend checks and reserves with no suspension point in
between, so N concurrent requests against Q remaining admit exactly what fits, in every unit.
Each window of a plan is a ``Charge`` on the reservation: where it is counted (its shape, and
for calendar kinds its period's start) and how much was reserved; settlement moves each charge
from the reservation to the real usage, in the same bucket.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from oneplan.errors import QuotaExceeded
from oneplan.metering.plans import Amounts, Need, Plan, Window, fit
from oneplan.metering.windows import Clock, Periods, WindowState, exact, periods_in, refusal_message

LOOKBACK_MONTH = 32 * 86400  # every calendar or anniversary period starts within this


@dataclass(slots=True)
class Charge:
    """One window's part of a reservation."""

    window: Window
    key: str  # the counter: "<unit>:r<seconds>" (rolling) or "<unit>:<kind><length>:<start>"
    end: float  # a period's end (rolling: 0)
    fixed: float
    per_output: float
    amount: float = 0.0  # reserved
    factor: float = 1.0  # the peak multiplier on this unit
    rolling: bool = False
    span: float = 0.0  # the window's length (a period's, this time) in seconds


@dataclass(slots=True)
class Demand:
    """What a request may cost, for admission: one ``Need`` per window of its plan."""

    needs: list[Need]
    weight: int = 1  # the model's weight (the ledger's ``weight``)
    requested: int | None = None  # output tokens asked for (None: no bound asked)
    multiplier: float = 1.0
    anchor: float | None = None  # the user's subscription time (anniversary windows)


@dataclass(slots=True)
class Reservation:
    user_id: int
    weight: int
    second: int
    states: list[WindowState]
    charges: list[Charge] = field(default_factory=list)
    output: int | None = None  # output tokens reserved (None: output is not metered)
    lowered_from: int | None = None  # max_tokens asked for, when lowered to fit
    binding: str | None = None  # the window that lowered it
    multiplier: float = 1.0
    settled: bool = False
    gen: str = ""  # the counters' generation it was admitted under (Redis)
    field: str = ""  # its in-flight entry (Redis): "<replica>:<request id>"
    value: str = ""  # the in-flight entry's value (Redis): enough to settle or release it anywhere


def exhausts(state: WindowState, weight: float) -> bool:
    """Budgets admit while not used up; request windows admit while the weight still fits."""
    if state.unit in ("credits", "tokens", "cost"):
        return state.used >= state.limit
    return state.used + weight > state.limit


def refusal(exhausted: list[WindowState], now: float) -> QuotaExceeded:
    """Name the window that binds longest: the caller can retry only once every one frees up."""
    state = max(exhausted, key=lambda s: s.resets_at or now)
    wait = max(0.0, (state.resets_at or now) - now)
    return QuotaExceeded(refusal_message(state, now), retry_after=wait, window=state.window)


def too_big(state: WindowState, need: float, requested: int | None, now: float) -> QuotaExceeded:
    """The request's worst case does not fit what is left (though the window is not used up)."""
    wait = max(0.0, (state.resets_at or now) - now)
    asked = f" with max_tokens={requested}" if requested is not None else ""
    return QuotaExceeded(
        f"This request{asked} could use up to {exact(round(need, 6))} of your plan's {state.window} "
        f"{state.unit} window, which has {exact(round(max(0.0, state.limit - state.used), 6))} of "
        f"{exact(state.limit)} left: lower max_tokens or shorten the input, or wait until it frees up "
        f"(in {int(wait + 0.999)}s).",
        retry_after=wait, window=state.window,
    )


def concurrency_refusal(limit: int) -> QuotaExceeded:
    return QuotaExceeded(
        f"Your plan allows {limit} requests in flight at once and that many are running: "
        "retry when one finishes.",
        retry_after=1.0, window="concurrency",
    )


def legacy_demand(plan: Plan, weight: int, anchor: float | None = None, multiplier: float = 1.0) -> Demand:
    """A request that asks for nothing but its weight (tests, usage reports, reading or
    rebuilding windows: weight 0)."""
    needs = []
    for w in plan.limits:
        fixed = float(weight) if w.unit == "requests" else (1.0 if w.unit == "calls" else 0.0)
        needs.append(Need(w, fixed, 0.0))
    return Demand(needs, weight, multiplier=multiplier, anchor=anchor)


def as_amounts(reservation: Reservation, tokens: int | Amounts, cost: float) -> Amounts:
    if isinstance(tokens, Amounts):
        return tokens
    return Amounts.charged(reservation.weight, tokens, 0.0, cost)


def grant(demand: Demand, plan: Plan, used: Callable[[Window], float]) -> tuple[int | None, Need | None]:
    """The output tokens to reserve, or ``(-1, need)`` / ``(-2, need)``: refused (used up /
    the worst case does not fit)."""
    granted, binding = fit(demand.needs, used, demand.requested)
    if granted is not None and granted < 0:
        return -1, binding
    metered = any(n.per_output > 0 for n in demand.needs)
    if not metered:
        return None, None
    requested = demand.requested
    if requested is not None and granted is not None and granted < requested:
        if plan.on_exceed == "refuse" or granted < min(plan.min_output_tokens, requested):
            return -2, binding
        return granted, binding
    return (requested if requested is not None else granted), None


class Counters(ABC):
    def __init__(self, clock: Clock, periods: Periods) -> None:
        self.clock = clock
        self.periods = periods  # the server's quota time zone
        # The plan of a user, by plan name, for rebuilding windows from ledger rows.
        self.plans: Callable[[str], Plan | None] = lambda name: None
        # A user's subscription time, for states asked without one (console, alerts).
        self.anchor_of: Callable[[int], float | None] = lambda user_id: None
        # Every plan in force, for how far back a rebuild must read the ledger.
        self.all_plans: Callable[[], Iterable[Plan]] = lambda: ()

    def periods_of(self, plan: Plan) -> Periods:
        return self.periods if plan.timezone is None else periods_in(plan.timezone)

    def charges(self, plan: Plan, demand: Demand, now: float) -> list[Charge]:
        periods = self.periods_of(plan)
        out = []
        multiplier = demand.multiplier
        for need in demand.needs:
            w = need.window
            factor = 1.0 if multiplier == 1.0 or w.unit == "calls" else plan.factor(w.unit, multiplier)
            if w.rolling:
                out.append(Charge(w, w.shape, 0.0, need.fixed, need.per_output, 0.0, factor, True, w.seconds))
                continue
            if w.kind == "calendar":
                start, end = periods.span(w.length, now)
            else:
                start, end = periods.anniversary(w.length, demand.anchor if demand.anchor is not None else now, now)
            out.append(Charge(w, f"{w.shape}:{int(start)}", end, need.fixed, need.per_output, 0.0, factor, False, end - start))
        return out

    def since(self, plans: Iterable[Plan], now: float) -> float:
        """How far back the ledger must be read to rebuild every window of ``plans``."""
        back = 0.0
        for plan in plans:
            for w in plan.limits:
                back = max(back, w.seconds if w.kind == "rolling" else LOOKBACK_MONTH)
        return now - max(back, LOOKBACK_MONTH)

    @abstractmethod
    async def admit(self, user_id: int, plan: Plan, demand: Demand | int, request_id: str = "") -> Reservation:
        """Reserve the worst case in every window, or raise ``QuotaExceeded``."""

    @abstractmethod
    def settle(self, reservation: Reservation, tokens: int | Amounts = 0, cost: float = 0.0) -> None:
        """The request succeeded (or was cancelled): charge its real usage instead of the
        reservation. Synchronous - it never waits on I/O, so a cancelled task can call it."""

    def committed(self, rows: Iterable[dict[str, Any]], generation: str) -> None:  # noqa: B027
        """The ledger rows ``rows`` are now in the database (under counter ``generation``)."""

    @abstractmethod
    async def release(self, reservation: Reservation) -> None:
        """The request failed: give the reservation back."""

    @abstractmethod
    async def states(
        self, user_id: int, plan: Plan, anchor: float | None = None, *, held: bool = False
    ) -> list[WindowState]:
        """Every window the plan limits, as it stands now; with ``held``, each state also says
        how much of its ``used`` requests in flight reserved (``WindowState.settled``)."""

    async def adopt(self, groups: Any) -> None:  # noqa: B027
        """Rows replayed from a dead process's journal are in the database (shared counters
        settle that process's requests from them)."""

    def load(self, rows: Iterable[tuple[Any, ...]]) -> None:  # noqa: B027
        """Rebuild from the ledger (see ``store.db.Database.charged_since``)."""

    async def start(self, view: Any) -> None:
        """At start-up: the ledger is the truth, the counters its cache (``view`` is the
        database: ``charged_since``)."""
        self.view = view
        now = self.clock()
        self.load(await asyncio.to_thread(view.charged_since, self.since(self.all_plans(), now)))

    @staticmethod
    def added_shapes(old: Plan | None, new: Plan) -> set[str]:
        """Window shapes ``new`` has and ``old`` has not: a user moved between them needs
        what they already used counted there too."""
        had = {w.shape for w in old.limits} if old is not None else set()
        return {w.shape for w in new.limits} - had

    async def backfill(self, user_id: int, old: Plan | None, new: Plan, anchor: float | None) -> None:  # noqa: B027
        """A user moves from plan ``old`` to ``new``: the windows only ``new`` has start from
        the ledger's rows, not from zero."""

    async def aclose(self) -> None:  # noqa: B027
        """Release connections."""


def row_amounts(row: tuple[Any, ...]) -> tuple[int, int, Amounts, float, str | None, float | None]:
    """A ``charged_since`` row: (user_id, second, amounts, multiplier, plan, anchor). Rows of
    five values (user_id, second, weight, tokens, cost) are the old shape."""
    user_id, second, weight, tokens, cost = row[:5]
    credits, calls, multiplier, plan, anchor = [*row[5:], 0.0, None, 1.0, None, None][:5]
    amounts = Amounts.charged(weight, tokens, credits, cost, calls if calls is not None else (1 if weight else 0))
    return int(user_id), int(second), amounts, float(multiplier or 1.0), plan, anchor


class _Rolling:
    __slots__ = ("buckets", "total")

    def __init__(self) -> None:
        self.buckets: deque[list[float]] = deque()  # [second, amount], oldest first
        self.total = 0.0

    def prune(self, cutoff: int) -> None:
        buckets = self.buckets
        while buckets and buckets[0][0] <= cutoff:
            self.total -= buckets.popleft()[1]
        if not buckets:
            self.total = 0.0  # no drift left behind

    def add(self, second: int, amount: float) -> None:
        buckets = self.buckets
        if not buckets or buckets[-1][0] < second:
            buckets.append([second, amount])
        elif buckets[-1][0] == second:
            buckets[-1][1] += amount
        else:  # a settlement for an older second
            i = len(buckets) - 1
            while i >= 0 and buckets[i][0] > second:
                i -= 1
            if i >= 0 and buckets[i][0] == second:
                buckets[i][1] += amount
            else:
                buckets.insert(i + 1, [second, amount])
        self.total += amount

    def frees_at(self, need: float, limit: float, length: int, now: float) -> float:
        excess = self.total + need - limit
        for second, amount in self.buckets:
            excess -= amount
            if excess <= 1e-9:
                return float(second + length)
        return float(self.buckets[-1][0] + length) if self.buckets else now


class _User:
    __slots__ = ("held", "inflight", "pending", "periods", "rolling")

    def __init__(self) -> None:
        self.rolling: dict[str, _Rolling] = {}
        self.periods: dict[str, float] = {}  # "<shape>:<start>" -> used
        self.held: dict[str, float] = {}  # counter -> what requests in flight reserved there
        self.inflight = 0
        self.pending: list[tuple[int, Amounts, float]] | None = None  # loaded rows not yet placed


class MemoryCounters(Counters):
    def __init__(self, clock: Clock, periods: Periods) -> None:
        super().__init__(clock, periods)
        self._users: dict[int, _User] = {}
        self.view: Any = None

    async def backfill(self, user_id: int, old: Plan | None, new: Plan, anchor: float | None) -> None:
        shapes = self.added_shapes(old, new)
        if not shapes or self.view is None:
            return
        now = self.clock()
        found = await asyncio.to_thread(self.view.charged_since, self.since([new], now), [user_id])
        rows = [(second, amounts, multiplier) for _, second, amounts, multiplier, _, _ in map(row_amounts, found)]
        rows.sort(key=lambda r: r[0])
        user = self._user(user_id)
        demand = legacy_demand(new, 0, anchor)
        fresh = [
            c for c in self.charges(new, demand, now)
            if c.window.shape in shapes and c.key not in user.rolling and c.key not in user.periods
        ]
        self._place(user, new, fresh, now, rows)

    def _user(self, user_id: int) -> _User:
        user = self._users.get(user_id)
        if user is None:
            user = self._users[user_id] = _User()
        return user

    def _place(
        self, user: _User, plan: Plan, charges: list[Charge], now: float,
        rows: list[tuple[int, Amounts, float]] | None = None,
    ) -> None:
        """Loaded ledger rows (else the user's pending ones) go into ``charges``' windows."""
        if rows is None:
            rows, user.pending = user.pending, None
        if not rows:
            return
        for charge in charges:
            w = charge.window
            for second, amounts, multiplier in rows:
                factor = plan.factor(w.unit, multiplier) if w.unit != "calls" else 1.0
                amount = amounts.of(w.unit) * factor
                if not amount:
                    continue
                if charge.rolling:
                    if second > int(now) - w.seconds:
                        self._rolling(user, charge.key).add(second, amount)
                else:
                    start = float(charge.key.rsplit(":", 1)[1])
                    if start <= second < charge.end:
                        user.periods[charge.key] = user.periods.get(charge.key, 0.0) + amount

    @staticmethod
    def _rolling(user: _User, key: str) -> _Rolling:
        found = user.rolling.get(key)
        if found is None:
            found = user.rolling[key] = _Rolling()
        return found

    def _used(self, user: _User, charge: Charge, now: float) -> float:
        if charge.rolling:
            rolling = user.rolling.get(charge.key)
            if rolling is None:
                rolling = user.rolling[charge.key] = _Rolling()
            buckets = rolling.buckets
            if buckets and buckets[0][0] <= int(now) - charge.span:
                rolling.prune(int(now) - int(charge.span))
            return rolling.total
        return user.periods.get(charge.key, 0.0)

    def _states(self, user: _User, charges: list[Charge], now: float) -> list[WindowState]:
        out = []
        for charge in charges:
            w = charge.window
            if charge.rolling:
                rolling = user.rolling.get(charge.key)
                if rolling is None or not rolling.buckets:
                    out.append(WindowState(w.name, 0.0, w.limit, None, w.unit, charge.span, w.kind))
                    continue
                need = max(charge.fixed, 1.0) if w.unit in ("requests", "calls") else 1.0
                used = rolling.total
                frees = rolling.frees_at(need, w.limit, w.seconds, now)
            else:
                used, frees = user.periods.get(charge.key, 0.0), charge.end
            held = min(used, max(0.0, user.held.get(charge.key, 0.0)))
            out.append(WindowState(w.name, used, w.limit, frees, w.unit, charge.span, w.kind, held))
        return out

    async def admit(self, user_id: int, plan: Plan, demand: Demand | int, request_id: str = "") -> Reservation:
        return self.admit_now(user_id, plan, demand)

    def admit_now(self, user_id: int, plan: Plan, demand: Demand | int) -> Reservation:
        if not isinstance(demand, Demand):
            demand = legacy_demand(plan, demand)
        now = self.clock()
        user = self._user(user_id)
        charges = self.charges(plan, demand, now)
        if user.pending is not None:
            self._place(user, plan, charges, now)
        if plan.concurrency is not None and user.inflight >= plan.concurrency:
            raise concurrency_refusal(plan.concurrency)
        if plan.meters_output:
            used = {c.window.name: self._used(user, c, now) for c in charges}
            granted, binding = grant(demand, plan, lambda w: used[w.name])
        else:  # request windows only: the weight fits or it does not
            granted, binding = None, None
            for c, need in zip(charges, demand.needs, strict=True):
                if c.fixed > c.window.limit - self._used(user, c, now) + 1e-9:
                    granted, binding = -1, need
                    break
        if granted is not None and granted < 0:
            assert binding is not None
            states = self._states(user, charges, now)
            state = next(s for s in states if s.window == binding.window.name)
            if granted == -1 and exhausts(state, binding.fixed):
                exhausted = [s for s, c in zip(states, charges, strict=True) if exhausts(s, c.fixed)]
                raise refusal(exhausted, now)
            raise too_big(state, binding.at(demand.requested or 0), demand.requested, now)
        output = granted or 0
        second = int(now)
        for charge in charges:
            amount = charge.amount = charge.fixed + charge.per_output * output if output else charge.fixed
            if not amount:
                continue
            if charge.rolling:
                self._rolling(user, charge.key).add(second, amount)
            else:
                user.periods[charge.key] = user.periods.get(charge.key, 0.0) + amount
            user.held[charge.key] = user.held.get(charge.key, 0.0) + amount
        user.inflight += 1
        requested = demand.requested
        lowered = requested if granted is not None and requested is not None and granted < requested else None
        return Reservation(
            user_id, demand.weight, second, self._states(user, charges, now), charges,
            output=granted, lowered_from=lowered, binding=binding.window.name if lowered and binding else None,
            multiplier=demand.multiplier,
        )

    def _move(self, user: _User, r: Reservation, charge: Charge, delta: float) -> None:
        if not delta:
            return
        if charge.rolling:
            rolling = user.rolling.get(charge.key)
            if rolling is not None:
                rolling.add(r.second, delta)
        elif charge.key in user.periods or charge.end > self.clock():
            user.periods[charge.key] = user.periods.get(charge.key, 0.0) + delta

    def settle(self, reservation: Reservation, tokens: int | Amounts = 0, cost: float = 0.0) -> None:
        if reservation.settled:
            return
        reservation.settled = True
        amounts = as_amounts(reservation, tokens, cost)
        user = self._user(reservation.user_id)
        user.inflight = max(0, user.inflight - 1)
        for charge in reservation.charges:
            actual = amounts.of(charge.window.unit) * charge.factor
            self._move(user, reservation, charge, actual - charge.amount)
            self._unhold(user, charge)

    async def release(self, reservation: Reservation) -> None:
        self.release_now(reservation)

    def release_now(self, reservation: Reservation) -> None:
        if reservation.settled:
            return
        reservation.settled = True
        user = self._user(reservation.user_id)
        user.inflight = max(0, user.inflight - 1)
        for charge in reservation.charges:
            self._move(user, reservation, charge, -charge.amount)
            self._unhold(user, charge)

    @staticmethod
    def _unhold(user: _User, charge: Charge) -> None:
        left = user.held.get(charge.key, 0.0) - charge.amount
        if left > 1e-9:
            user.held[charge.key] = left
        else:
            user.held.pop(charge.key, None)

    async def states(
        self, user_id: int, plan: Plan, anchor: float | None = None, *, held: bool = False
    ) -> list[WindowState]:
        return self.snapshot(user_id, plan, anchor)  # in memory, ``held`` costs nothing: always there

    def snapshot(self, user_id: int, plan: Plan, anchor: float | None = None) -> list[WindowState]:
        now = self.clock()
        user = self._user(user_id)
        demand = legacy_demand(plan, 0, anchor if anchor is not None else self.anchor_of(user_id))
        charges = self.charges(plan, demand, now)
        if user.pending is not None:
            self._place(user, plan, charges, now)
        states = self._states(user, charges, now)
        if plan.concurrency is not None:
            states.append(WindowState("concurrency", float(user.inflight), float(plan.concurrency), None, "concurrency"))
        return states

    def load(self, rows: Iterable[tuple[Any, ...]]) -> None:
        """Rows go into the windows of their user's plan now; rows whose plan is not known
        (the old row shape, a plan gone from the catalog) wait for the first plan asked about."""
        self._users.clear()
        plans: dict[int, tuple[str | None, float | None]] = {}
        for row in sorted(rows, key=lambda r: r[1]):
            user_id, second, amounts, multiplier, plan, anchor = row_amounts(row)
            user = self._user(user_id)
            if user.pending is None:
                user.pending = []
            user.pending.append((second, amounts, multiplier))
            plans[user_id] = (plan, anchor)
        now = self.clock()
        for user_id, (name, anchor) in plans.items():
            found = self.plans(name) if name else None
            if found is not None:
                demand = legacy_demand(found, 0, anchor)
                self._place(self._users[user_id], found, self.charges(found, demand, now), now)
