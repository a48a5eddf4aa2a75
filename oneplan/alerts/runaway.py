"""Runaway usage, from the ledger (shared by every replica, so the leader alone computes it),
and which providers' error rates breach a rule.

Runaway: a key's (or a user's) requests or spend in the last hour above ``factor`` times its
median over the active hours of the 7 days before - a loop, or a leaked key. The median needs
``history_hours`` active hours, and the last hour ``min_requests``: a new user is no runaway.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Integer, cast, func, select

from oneplan.store import schema
from oneplan.store.db import Database

HOURS = 7 * 24


@dataclass(frozen=True, slots=True)
class Runaway:
    user_id: int
    key_id: str | None  # None: the user as a whole
    metric: str  # "requests" | "cost"
    last_hour: float
    median: float


def hourly(db: Database, now: float) -> list[tuple[int, str, int, int, float]]:
    """(user_id, key_id, hour, requests, cost); hour ``HOURS`` is the last hour, 0 the oldest."""
    led = schema.ledger
    # Hour HOURS is (now - 3600, now]. Integer division of a positive integer truncates alike
    # on SQLite and PostgreSQL (whose cast rounds: a row in the last half second is clamped).
    origin = int(now) + 1 - (HOURS + 1) * 3600
    hour = (cast(led.c.ts, Integer) - origin) / 3600
    query = (
        select(led.c.user_id, led.c.key_id, hour, func.count(), func.sum(led.c.cost))
        .where(led.c.ts >= origin, led.c.ts <= now, led.c.status != "refused")
        .group_by(led.c.user_id, led.c.key_id, hour)
    )
    with db.engine.connect() as conn:
        return [
            (int(u), str(k), min(int(h), HOURS), int(n), float(c or 0.0)) for u, k, h, n, c in conn.execute(query)
        ]


def runaways(
    rows: list[tuple[int, str, int, int, float]], factor: float, min_requests: int, history_hours: int
) -> list[Runaway]:
    series: dict[tuple[int, str | None], dict[int, list[float]]] = defaultdict(lambda: defaultdict(lambda: [0.0, 0.0]))
    for user_id, key_id, hour, requests, cost in rows:
        for scope in ((user_id, key_id), (user_id, None)):
            cell = series[scope][hour]
            cell[0] += requests
            cell[1] += cost
    found = []
    for (user, key), hours in series.items():
        last = hours.get(HOURS)
        if last is None or last[0] < min_requests:
            continue
        history = [v for h, v in hours.items() if h < HOURS]
        if len(history) < history_hours:
            continue
        for i, metric in enumerate(("requests", "cost")):
            median = statistics.median(v[i] for v in history)
            if median > 0 and last[i] > factor * median:
                found.append(Runaway(user, key, metric, last[i], median))
    return found


def error_rate_breaches(
    errors: dict[str, tuple[int, int]], rate: float, min_requests: int
) -> list[dict[str, Any]]:
    return [
        {"provider": p, "total": n, "failed": f, "rate": f / n}
        for p, (n, f) in sorted(errors.items())
        if n >= min_requests and f / n > rate
    ]
