"""A request's in-flight entry in Redis, as text: which windows it charged and how much, so that
whoever settles or releases it - its own replica, a reconciler after a SIGKILL, a replay of its
journal - moves exactly what it reserved (``redis_scripts``' ``move`` applies the moves)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from oneplan.metering.counters import Charge, Reservation
from oneplan.metering.plans import Amounts, Window


@dataclass(slots=True)
class Pending:
    """A finished request's real usage, waiting for its ledger row to be committed."""

    reservation: Reservation
    amounts: Amounts
    committed: str | None = None  # the generation its ledger row was committed under


@dataclass(slots=True)
class Entry:
    """An in-flight entry's value, decoded: each window it charged, and how much."""

    charges: list[tuple[str, str, str, float, float]]  # (kind, counter, unit, factor, amount)
    spans: list[float]
    second: int
    output: int
    gen: str


def encode(charges: list[Charge]) -> str:
    """The entry's charges: "kind,counter,unit,factor,fixed,per-output,span;..." """
    return ";".join(
        f"{'r' if c.rolling else 'p'},{c.key},{c.window.unit},{c.factor!r},{c.fixed!r},{c.per_output!r},"
        f"{c.window.seconds if c.rolling else int(c.end)}"
        for c in charges
    )


def decode(value: str) -> Entry:
    specs, second, output, gen = value.rsplit("|", 3)
    out = max(int(float(output)), 0)
    charges, spans = [], []
    for spec in specs.split(";") if specs else []:
        kind, key, unit, factor, fixed, per, span = spec.split(",")
        charges.append((kind, key, unit, float(factor), float(fixed) + float(per) * out))
        spans.append(float(span))
    return Entry(charges, spans, int(float(second)), int(float(output)), gen)


def entry_of(r: Reservation) -> Entry:
    return Entry(
        [("r" if c.rolling else "p", c.key, c.window.unit, c.factor, c.amount) for c in r.charges],
        [float(c.window.seconds if c.rolling else int(c.end)) for c in r.charges],
        r.second, -1 if r.output is None else r.output, r.gen,
    )


def moves(entry: Entry, amounts: Amounts | None, *, full: bool) -> list[Any]:
    """4 values per window: kind, counter, amount, span - the real usage (``full``), or its
    difference from the reservation, or (``amounts`` None) the reservation itself."""
    out: list[Any] = [len(entry.charges)]
    for (kind, key, unit, factor, reserved), span in zip(entry.charges, entry.spans, strict=True):
        if amounts is None:
            amount = reserved
        else:
            actual = amounts.of(unit) * factor
            amount = actual if full else actual - reserved
        out += [kind, key, repr(float(amount)), repr(span) if kind == "r" else str(int(span))]
    return out


def reservation_of(user_id: int, field: str, entry: Entry) -> Reservation:
    """A dead replica's request, from its in-flight entry, to settle it here."""
    charges = []
    for (kind, key, unit, factor, amount), span in zip(entry.charges, entry.spans, strict=True):
        rolling = kind == "r"
        window = Window(key, unit, "rolling" if rolling else "calendar", "", 0.0, int(span) if rolling else 0)
        charges.append(Charge(window, key, 0.0 if rolling else span, amount, 0.0, amount, factor, rolling, span))
    return Reservation(user_id, 0, entry.second, [], charges, gen=entry.gen, field=field)
