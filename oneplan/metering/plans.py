"""Plans: any set of quota windows, peak multipliers, concurrency - and what one request costs
against each window.

A window is ``{unit, kind, length, limit}``:

* units - ``requests`` (model calls, each the model's ``weight``), ``credits`` (tokens weighted
  per model and token class: ``[models.X] credits = {input, cached_input, cache_write,
  output}``), ``tokens`` (input, every class, plus output) and ``cost`` (the model's prices);
  ``requests_per_minute`` counts calls (1 each, whatever the weight);
* kinds - ``rolling`` (any length, to the second: a charge counts for exactly ``length`` after
  it was admitted), ``calendar`` (``day``, ``week`` from Monday, ``month`` from the 1st, in the
  plan's time zone) and ``anniversary`` (a ``week`` or ``month`` that starts at the user's
  subscription time; a subscription on the 31st renews on the last day of shorter months).

The old keys (``requests_per_5h``, ``requests_per_week``, ``requests_per_month``,
``tokens_per_month``, ``cost_per_month``) are shorthands for windows named ``5h``, ``week``,
``month``, ``tokens_month`` and ``cost_month``.

**Zero overshoot.** Admission reserves a worst case in every window - the request's input bound
(its body's size in bytes: a byte-level BPE token is at least one byte) and its output bound
(``max_tokens``, capped to the model's ``max_output_tokens``) - and settlement charges the real
usage, giving the rest back. What one request can cost is linear in the output tokens it may
produce (``Need``: ``fixed + per_output * n``), so when the worst case does not fit, the plan
either refuses or lowers ``max_tokens`` to what fits (``on_exceed``).
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    from oneplan.config import PlanConfig
    from oneplan.protocols.canonical import Usage
    from oneplan.routing.catalog import ModelEntry

UNITS = ("requests", "credits", "tokens", "cost")
CALLS = "calls"  # requests_per_minute: one per call, whatever the model's weight
KINDS = ("rolling", "calendar", "anniversary")
CALENDAR = ("day", "week", "month")
ANNIVERSARY = ("week", "month")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_LENGTH = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_LEGACY = (
    # (PlanConfig key, window name, unit, kind, length)
    ("requests_per_5h", "5h", "requests", "rolling", "5h"),
    ("requests_per_week", "week", "requests", "calendar", "week"),
    ("requests_per_month", "month", "requests", "calendar", "month"),
    ("tokens_per_month", "tokens_month", "tokens", "calendar", "month"),
    ("cost_per_month", "cost_month", "cost", "calendar", "month"),
)


def rolling_seconds(length: str) -> int:
    """``"90s"``, ``"1m"``, ``"5h"``, ``"24h"``, ``"7d"``, ``"1w"`` in seconds."""
    match = _LENGTH.match(length)
    if match is None:
        raise ValueError(f"a rolling length is a number and a unit (s, m, h, d, w), like '5h' - not {length!r}")
    seconds = float(match.group(1)) * _SECONDS[match.group(2)]
    if seconds < 1 or seconds != int(seconds):
        raise ValueError(f"a rolling length is a whole number of seconds, at least one - not {length!r}")
    return int(seconds)


@dataclass(frozen=True, slots=True)
class Window:
    name: str  # what refusals, headers and the console call it
    unit: str  # requests | calls | credits | tokens | cost
    kind: str  # rolling | calendar | anniversary
    length: str  # rolling: "5h"...; calendar: day | week | month; anniversary: week | month
    limit: float
    seconds: int = 0  # a rolling window's length
    # What the counters key it by (with the period's start for calendar kinds): windows of the
    # same shape share their counts, so a user moved to another plan keeps what they used in
    # the windows both plans have.
    shape: str = field(default="", init=False, compare=False)
    rolling: bool = field(default=False, init=False, compare=False)
    # Token, credit and cost windows admit while not used up even for a zero worst case.
    budget: bool = field(default=False, init=False, compare=False)

    def __post_init__(self) -> None:
        rolling = self.kind == "rolling"
        shape = f"{self.unit}:r{self.seconds}" if rolling else f"{self.unit}:{self.kind[0]}{self.length}"
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "rolling", rolling)
        object.__setattr__(self, "budget", self.unit in ("credits", "tokens", "cost"))


@dataclass(frozen=True, slots=True)
class Peak:
    """Charges multiplied by ``multiplier`` from ``start`` to ``end`` o'clock (local; may wrap
    past midnight) on ``days``, for the models matching ``models``."""

    multiplier: float
    days: frozenset[int]  # 0 = Monday
    start: int
    end: int
    timezone: str
    models: tuple[str, ...] = ("*",)

    def applies(self, now: float, model: str) -> bool:
        if not any(p == "*" or fnmatch.fnmatchcase(model, p) for p in self.models):
            return False
        local = datetime.fromtimestamp(now, zone(self.timezone))
        hour, day = local.hour, local.weekday()
        if self.start <= self.end:
            return day in self.days and self.start <= hour < self.end
        # Wrapping past midnight: the early hours belong to the day the period began on.
        if hour >= self.start:
            return day in self.days
        return hour < self.end and (day - 1) % 7 in self.days


@lru_cache(maxsize=64)
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


@dataclass(frozen=True, slots=True)
class Credits:
    """Credits per token, by token class (Z.ai's GLM plan counts prompts in weighted tokens)."""

    input: float = 1.0
    cached_input: float | None = None  # default: input
    cache_write: float | None = None  # default: input
    output: float = 1.0

    def of(self, uncached: int, read: int, write: int, output: int) -> float:
        cached = self.input if self.cached_input is None else self.cached_input
        written = self.input if self.cache_write is None else self.cache_write
        return uncached * self.input + read * cached + write * written + output * self.output

    @property
    def worst_input(self) -> float:
        """The most one input token can cost (it may turn out a cache write)."""
        written = self.input if self.cache_write is None else self.cache_write
        cached = self.input if self.cached_input is None else self.cached_input
        return max(self.input, written, cached)


@dataclass(slots=True)  # made per window on every request: not frozen, see ``WindowState``
class Need:
    """What one request costs in a window: ``fixed + per_output * output tokens``."""

    window: Window
    fixed: float
    per_output: float

    def at(self, output: int) -> float:
        return self.fixed + self.per_output * output


@dataclass(slots=True)  # made on every settle: not frozen, see ``WindowState``
class Amounts:
    """A request's real usage in every unit, before the peak multiplier."""

    requests: float = 0.0
    calls: float = 0.0
    credits: float = 0.0
    tokens: float = 0.0
    cost: float = 0.0

    def of(self, unit: str) -> float:
        return float(getattr(self, unit))

    @classmethod
    def charged(cls, weight: Any, tokens: Any, credits: Any, cost: Any, calls: Any = 1.0) -> Amounts:
        """What a ledger row (or a sum of rows) charged: its weight, tokens, credits and cost,
        as the database or a row dict gives them (None for nothing)."""
        return cls(
            requests=float(weight or 0), calls=float(calls or 0), credits=float(credits or 0.0),
            tokens=float(tokens or 0), cost=float(cost or 0.0),
        )

    @classmethod
    def of_row(cls, row: Mapping[str, Any]) -> Amounts:
        """A ledger row's real usage in every unit."""
        tokens = int(row.get("input_tokens") or 0) + int(row.get("output_tokens") or 0)
        return cls.charged(row.get("weight"), tokens, row.get("credits"), row.get("cost"))


@dataclass(frozen=True, slots=True)
class Plan:
    name: str
    requests_per_5h: int | None = None
    requests_per_week: int | None = None
    requests_per_month: int | None = None
    tokens_per_month: int | None = None
    cost_per_month: float | None = None
    models: tuple[str, ...] = ("*",)
    windows: tuple[Window, ...] = ()  # beside the shorthands above
    concurrency: int | None = None  # requests in flight per user
    requests_per_minute: int | None = None
    peak: tuple[Peak, ...] = ()
    peak_units: tuple[str, ...] = ("requests", "credits")
    off_peak_multiplier: float = 1.0  # Z.ai charges half outside its peak hours
    timezone: str | None = None  # calendar windows' zone; None: server.quota_timezone
    on_exceed: str = "shorten"  # a worst case that does not fit: "shorten" max_tokens, or "refuse"
    min_output_tokens: int = 1  # shortening below this refuses instead
    limits: tuple[Window, ...] = field(default=(), init=False, compare=False)
    # Whether a request's output tokens count against any window (so it needs a bound).
    meters_output: bool = field(default=False, init=False, compare=False)
    _needs: dict[int, list[Need]] = field(default_factory=dict, init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        every: list[Window] = []
        for key, name, unit, kind, length in _LEGACY:
            value = getattr(self, key)
            if value is not None:
                seconds = rolling_seconds(length) if kind == "rolling" else 0
                every.append(Window(name, unit, kind, length, float(value), seconds))
        if self.requests_per_minute is not None:
            every.append(Window("rpm", CALLS, "rolling", "1m", float(self.requests_per_minute), 60))
        every.extend(self.windows)
        object.__setattr__(self, "limits", tuple(every))
        object.__setattr__(self, "meters_output", any(w.budget for w in every))

    def includes(self, model: str) -> bool:
        return _includes(self.models, model)

    def multiplier(self, now: float, model: str) -> float:
        value, matched = 1.0, False
        for rule in self.peak:
            if rule.applies(now, model):
                value *= rule.multiplier
                matched = True
        return value if matched else self.off_peak_multiplier

    def factor(self, unit: str, multiplier: float) -> float:
        return multiplier if unit in self.peak_units else 1.0

    def needs(self, entry: ModelEntry, weight: float, input_bound: int, multiplier: float) -> list[Need]:
        """What a request to ``entry`` with ``input_bound`` input tokens at most costs in every
        window, as a function of its output tokens (the same list for every request to a plan
        that meters nothing but requests: do not change it)."""
        if not self.meters_output and multiplier == 1.0:
            cached = self._needs.get(int(weight))
            if cached is None:
                cached = self._needs[int(weight)] = self._needs_of(entry, weight, input_bound, 1.0)
            return cached
        return self._needs_of(entry, weight, input_bound, multiplier)

    def _needs_of(self, entry: ModelEntry, weight: float, input_bound: int, multiplier: float) -> list[Need]:
        out = []
        credits: Credits = entry.credits
        for w in self.limits:
            f = self.factor(w.unit, multiplier)
            if w.unit == "requests":
                out.append(Need(w, weight * f, 0.0))
            elif w.unit == CALLS:
                out.append(Need(w, 1.0, 0.0))
            elif w.unit == "tokens":
                out.append(Need(w, input_bound * f, f))
            elif w.unit == "credits":
                out.append(Need(w, input_bound * credits.worst_input * f, credits.output * f))
            else:  # cost
                worst = entry.max_input_price
                out.append(Need(w, input_bound * worst / 1e6 * f, entry.output_price / 1e6 * f))
        return out


def amounts(entry: ModelEntry, usage: Usage, weight: float, cost: float) -> Amounts:
    """The real usage of one request in every unit (``cost`` as the ledger priced it)."""
    read = usage.cached_tokens
    write = usage.cache_write_tokens
    uncached = max(0, usage.input_tokens - read - write)
    return Amounts(
        requests=float(weight),
        calls=1.0,
        credits=entry.credits.of(uncached, read, write, usage.output_tokens),
        tokens=float(usage.input_tokens + usage.output_tokens),
        cost=cost,
    )


def fit(needs: list[Need], used: Callable[[Window], float], requested: int | None) -> tuple[int | None, Need | None]:
    """The most output tokens (up to ``requested``; None: unbounded) every window has room for,
    and the window that binds (None if all of ``requested`` fits). -1: nothing fits at all."""
    best: int | None = requested
    binding: Need | None = None
    for need in needs:
        w = need.window
        room = w.limit - used(w)
        if (w.budget and room <= 0) or need.fixed > room + 1e-9:
            return -1, need
        if need.per_output <= 0:
            continue
        most = math.floor((room - need.fixed) / need.per_output + 1e-9)
        if best is None or most < best:
            best, binding = most, need
    return best, binding


def plan_from_config(name: str, config: PlanConfig, default_timezone: str = "UTC") -> Plan:
    data = config.model_dump()
    tz = data.pop("timezone") or None
    windows = tuple(
        Window(
            w["name"] or default_name(w["unit"], w["kind"], w["length"]), w["unit"], w["kind"], w["length"],
            float(w["limit"]), rolling_seconds(w["length"]) if w["kind"] == "rolling" else 0,
        )
        for w in data.pop("windows")
    )
    peak = tuple(
        Peak(
            float(p["multiplier"]), frozenset(DAYS.index(d) for d in p["days"]), *hours(p["hours"]),
            p["timezone"] or tz or default_timezone, tuple(p["models"]),
        )
        for p in data.pop("peak")
    )
    return Plan(
        name=name, **{**data, "models": tuple(config.models), "peak_units": tuple(config.peak_units)},
        windows=windows, peak=peak, timezone=tz,
    )


def plan_from_spec(name: str, spec: dict[str, Any], default_timezone: str = "UTC") -> Plan:
    """A plan from its JSON (as ``[plans.NAME]`` takes it); ``pydantic.ValidationError`` names
    the field at fault."""
    from oneplan.config import PlanConfig

    return plan_from_config(name, PlanConfig.model_validate(spec), default_timezone)


def default_name(unit: str, kind: str, length: str) -> str:
    suffix = "_anniversary" if kind == "anniversary" else ""
    return f"{unit}_{length.strip()}{suffix}"


def hours(text: str) -> tuple[int, int]:
    """``"14-18"``: from 14:00 to 18:00 local (``"22-2"`` wraps past midnight)."""
    match = re.fullmatch(r"\s*(\d{1,2})\s*-\s*(\d{1,2})\s*", text)
    if match is None:
        raise ValueError(f"hours are 'START-END' in whole hours, like '14-18' - not {text!r}")
    start, end = int(match.group(1)), int(match.group(2))
    if not (0 <= start <= 23 and 0 <= end <= 24) or start == end:
        raise ValueError(f"hours run from 0 to 24 and START differs from END - not {text!r}")
    return start, end % 24 if end == 24 and start != 0 else end


__all__ = [
    "ANNIVERSARY", "CALENDAR", "CALLS", "DAYS", "KINDS", "UNITS", "Amounts", "Credits", "Need", "Peak",
    "Plan", "Window", "amounts", "fit", "plan_from_config", "plan_from_spec", "rolling_seconds",
]


@lru_cache(maxsize=4096)  # asked twice a request (admission, routing), of catalog names
def _includes(patterns: tuple[str, ...], model: str) -> bool:
    return any(p == "*" or p == model or fnmatch.fnmatchcase(model, p) for p in patterns)
