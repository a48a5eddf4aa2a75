"""The weekly insights: figures computed from ledger rows, and one or two suggestions drawn
from them. Pure: the caller reads the rows (``rows_for``) and renders (``digest_render``).

"Requests" are the admitted ones (every status but ``refused``); a window-limit hit is a
``refused`` row, its window in ``error_class`` (``QuotaExceeded:5h``). Hours and days are in
the quota time zone.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select

from oneplan.metering.windows import Periods, describe
from oneplan.store import schema
from oneplan.store.db import Database

WEEK = 7 * 86400
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
COLUMNS = ("ts", "user_id", "model", "status", "error_class", "input_tokens", "output_tokens", "cached_tokens", "cost", "ttft_ms")


def rows_for(db: Database, start: float, user_id: int | None) -> list[dict[str, Any]]:
    """Rows of the week beginning ``start`` and the week before it."""
    led = schema.ledger
    query = select(*(led.c[c] for c in COLUMNS)).where(led.c.ts >= start - WEEK, led.c.ts < start + WEEK)
    if user_id is not None:
        query = query.where(led.c.user_id == user_id)
    with db.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]


def _totals(rows: list[dict[str, Any]]) -> dict[str, float]:
    return {
        "requests": len(rows),
        "tokens": sum((r["input_tokens"] or 0) + (r["output_tokens"] or 0) for r in rows),
        "cost": round(sum(r["cost"] or 0.0 for r in rows), 6),
    }


def _change(now: float, before: float) -> float | None:
    return None if not before else round(100.0 * (now - before) / before, 1)


def figures(
    rows: list[dict[str, Any]], start: float, tz: str = "UTC", plan_models: list[str] | None = None
) -> dict[str, Any]:
    zone = ZoneInfo(tz)
    week = [r for r in rows if start <= r["ts"] < start + WEEK]
    before = [r for r in rows if start - WEEK <= r["ts"] < start]
    served = [r for r in week if r["status"] != "refused"]
    refused = [r for r in week if r["status"] == "refused"]
    this, last = _totals(served), _totals([r for r in before if r["status"] != "refused"])

    by_model = Counter(r["model"] for r in served)
    models = [
        {"model": m, "requests": n, "share": round(n / len(served), 4)}
        for m, n in sorted(by_model.items(), key=lambda kv: (-kv[1], kv[0]))
    ]
    local = [datetime.fromtimestamp(r["ts"], zone) for r in served]
    busiest = [{"hour": h, "requests": n} for h, n in sorted(Counter(d.hour for d in local).items(), key=lambda kv: (-kv[1], kv[0]))[:3]]

    hits_local = [datetime.fromtimestamp(r["ts"], zone) for r in refused]
    hit_windows = Counter((r["error_class"] or "QuotaExceeded:?").split(":", 1)[-1] for r in refused)
    limit_hits = {
        "total": len(refused),
        "by_window": dict(sorted(hit_windows.items())),
        "by_day": {DAYS[d]: n for d, n in sorted(Counter(h.weekday() for h in hits_local).items())},
        "hour": Counter(h.hour for h in hits_local).most_common(1)[0][0] if refused else None,
    }
    input_tokens = sum(r["input_tokens"] or 0 for r in served)
    cached = sum(r["cached_tokens"] or 0 for r in served)
    ttft: dict[str, list[float]] = defaultdict(list)
    for r in served:
        if r["status"] == "ok" and r["ttft_ms"] is not None:
            ttft[r["model"]].append(float(r["ttft_ms"]))
    medians = {m: round(statistics.median(v), 1) for m, v in ttft.items()}
    slowest = max(medians.items(), key=lambda kv: (kv[1], kv[0])) if medians else None
    out: dict[str, Any] = {
        "week_start": start,
        "week_end": start + WEEK,
        "this_week": this,
        "last_week": last,
        "change_percent": {k: _change(this[k], last[k]) for k in this},
        "models": models,
        "limit_hits": limit_hits,
        "cache_hit_share": round(cached / input_tokens, 4) if input_tokens else None,
        "busiest_hours": busiest,
        "ttft_median_ms": dict(sorted(medians.items())),
        "slowest_model": {"model": slowest[0], "ttft_median_ms": slowest[1]} if slowest else None,
        "ttft_counts": {m: len(v) for m, v in ttft.items()},
    }
    out["suggestions"] = suggestions(out, plan_models)
    return out


def suggestions(f: dict[str, Any], plan_models: list[str] | None) -> list[str]:
    found: list[str] = []
    models, medians, counts = f["models"], f["ttft_median_ms"], f["ttft_counts"]
    if models and models[0]["share"] >= 0.5 and models[0]["model"] in medians:
        top = models[0]["model"]
        faster = [
            (ms, m) for m, ms in medians.items()
            if m != top and counts.get(m, 0) >= 5 and ms <= 0.8 * medians[top]
            and (plan_models is None or any(p == "*" or p == m for p in plan_models))
        ]
        if faster:
            ms, other = min(faster)
            found.append(
                f"{100 * models[0]['share']:.0f} % of your requests went to {top}; your plan also includes "
                f"{other}, which answered {100 * (1 - ms / medians[top]):.0f} % faster for you this week "
                f"(median time to first token {ms:.0f} ms against {medians[top]:.0f} ms)."
            )
    hits = f["limit_hits"]
    if hits["total"]:
        window = max(hits["by_window"].items(), key=lambda kv: kv[1])[0]
        name = describe(window) if window in ("5h", "week", "month", "tokens_month", "cost_month") else "plan limit"
        found.append(
            f"You hit the {name} {hits['total']} times, most often around {hits['hour']:02d}:00: spreading "
            f"long jobs away from that hour, or a larger plan, would avoid the refusals."
        )
    share = f["cache_hit_share"]
    if share is not None and share < 0.2 and f["this_week"]["tokens"] >= 100_000:
        found.append(
            f"Only {100 * share:.0f} % of your input tokens were cache hits: keeping the start of long prompts "
            f"(system prompt, tool list) unchanged between requests lets providers reuse it, cheaper and faster."
        )
    change = f["change_percent"]["cost"]
    if change is not None and change > 50 and models:
        found.append(f"Your spend rose {change:.0f} % on last week; {models[0]['model']} took most of your requests.")
    return found[:2]


def weekly(
    db: Database, start: float, *, tz: str, user_id: int | None, who: str, plan_models: list[str] | None,
    link: str | None,
) -> dict[str, Any]:
    """The digest payload of the week beginning ``start``, for one user or (``None``) everyone."""
    from oneplan.alerts.digest_render import render

    return render(who, figures(rows_for(db, start, user_id), start, tz, plan_models), tz, link)


def last_week_start(periods: Periods, now: float) -> float:
    """The start of the last complete week."""
    this_week, _ = periods.week(now)
    return periods.week(this_week - 1)[0]
