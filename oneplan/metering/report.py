"""Usage reports: per-user and per-model totals, and each quota window's state.

Shared by ``oneplan usage`` (reading the database directly) and the HTTP API (``/v1/usage``,
``/admin/usage``). Window states come from the ledger, the source of truth, through the same
counter arithmetic that admits requests.
"""

from __future__ import annotations

from typing import Any

from oneplan.metering.counters import MemoryCounters
from oneplan.metering.windows import Clock, Periods
from oneplan.routing.catalog import Catalog
from oneplan.store.db import Database


def usage_report(
    db: Database, catalog: Catalog, periods: Periods, clock: Clock, user_name: str | None = None
) -> dict[str, Any]:
    users = db.list_users()
    if user_name is not None:
        users = [u for u in users if u.name == user_name]
        if not users:
            raise ValueError(f"no user named {user_name!r}")
    now = clock()
    counters = MemoryCounters(clock, periods)
    since = counters.since(catalog.plans.values(), now)
    counters.load(db.charged_since(since, [u.id for u in users]))
    totals = db.usage_totals(users[0].id if user_name is not None else None)
    report: dict[str, Any] = {"generated_at": now, "users": []}
    for user in users:
        plan = catalog.plans.get(user.plan)
        rows = [dict(t) for t in totals if t["user"] == user.name]
        for row in rows:
            row.pop("user")
        anchor = getattr(user, "subscribed_at", None) or user.created_at
        windows = counters.snapshot(user.id, plan, anchor) if plan is not None else []
        report["users"].append(
            {
                "user": user.name,
                "plan": user.plan,
                "models": rows,
                "totals": {
                    key: sum(r[key] or 0 for r in rows)
                    for key in ("requests", "charged_requests", "input_tokens", "output_tokens", "cost")
                },
                "windows": [w.as_dict() for w in windows],
            }
        )
    return report
