"""What the console shows, read from the hourly roll-up (and, for single requests, the ledger
through its indexes). Synchronous: callers run these in a worker thread."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Select, Table, and_, func, literal, or_, select

from oneplan.metering import rollup
from oneplan.store import schema
from oneplan.store.db import Database

H = schema.usage_hourly  # per user, in detail
TEAM = schema.usage_team_hourly  # the same without the user
PER_USER = schema.usage_user_hourly  # per user, totals only
TEAM_DAILY = schema.usage_team_daily  # the team's and each user's totals per UTC day
PER_USER_DAILY = schema.usage_user_daily
UTC = ZoneInfo("UTC")
L = schema.ledger
# Token classes as the ledger keeps them: input_tokens holds the cache reads (cached_tokens)
# and the cache writes (cache_write_tokens); output_tokens holds reasoning_tokens.
TOKENS = ("input_tokens", "cached_tokens", "cache_write_tokens", "output_tokens", "reasoning_tokens")
REQUEST_COLUMNS = (
    "id", "ts", "model", "protocol", "provider", "stream", "status", "http_status", "error_class",
    "input_tokens", "cached_tokens", "cache_write_tokens", "output_tokens", "reasoning_tokens", "cost",
    "latency_ms", "ttft_ms", "attempts",
)
DIMENSIONS = ("model", "provider", "protocol", "user")


def _table(by: str, user_id: int | None, daily: bool = False) -> Table:
    """The smallest roll-up that answers: one user's detail, per-user totals, or the team's,
    by hour or (for the operator's long ranges) by UTC day."""
    if user_id is not None:
        return H
    if by == "user":
        return PER_USER_DAILY if daily else PER_USER
    return TEAM_DAILY if daily else TEAM


def _time(table: Table) -> Any:
    return table.c.day if "day" in table.c else table.c.hour


def _dim(table: Table, by: str) -> Any:
    return table.c.user_id if by == "user" else table.c[by]


def _where(query: Select[Any], table: Table, user_id: int | None, since: float | None, until: float | None = None) -> Select[Any]:
    if user_id is not None:
        query = query.where(table.c.user_id == user_id)
    time = _time(table)
    if since is not None:
        query = query.where(time >= (int(since // rollup.DAY) * rollup.DAY if "day" in table.c else rollup.hour_of(since)))
    if until is not None:
        query = query.where(time < until)
    return query


def _hist(table: Table, prefix: str) -> list[Any]:
    return [func.sum(table.c[f"{prefix}{i:02d}"]) for i in range(rollup.BUCKETS)]


def breakdown(
    db: Database, by: str, *, user_id: int | None = None, since: float | None = None, latency: bool = True,
    daily: bool = False,
) -> list[dict[str, Any]]:
    """Per ``by`` (model, provider, protocol, user): requests, token classes, cost, error rate,
    and (``latency``, not per user) p50 latency and time to first token. ``daily``: from the
    start of the UTC day holding ``since`` (the operator's long ranges)."""
    table = _table(by, user_id, daily)
    latency = latency and "errors" not in table.c
    errors = func.sum(table.c.errors) if "errors" in table.c else func.sum(table.c.requests).filter(table.c.status != "ok")
    dim = _dim(table, by)
    query = select(
        dim,
        func.sum(table.c.requests),
        func.sum(table.c.weight),
        *(func.sum(table.c[t]) for t in TOKENS),
        func.sum(table.c.cost),
        func.sum(table.c.credits),
        errors,
        *(_hist(table, "lat_b") + _hist(table, "ttft_b") if latency else ()),
    ).group_by(dim)
    with db.engine.connect() as conn:
        rows = conn.execute(_where(query, table, user_id, since)).all()
    out = []
    n = rollup.BUCKETS
    cost = 3 + len(TOKENS)  # the columns after the dimension, requests, weight and tokens
    hist = cost + 3  # after cost, credits and errors
    for row in rows:
        requests = int(row[1] or 0)
        errors_n = int(row[cost + 2] or 0)
        entry = {
            by: row[0],
            "requests": requests,
            "charged_requests": int(row[2] or 0),
            **{t: int(row[3 + i] or 0) for i, t in enumerate(TOKENS)},
            "cost": float(row[cost] or 0.0),
            "credits": float(row[cost + 1] or 0.0),
            "errors": errors_n,
            "error_rate": (errors_n / requests) if requests else 0.0,
        }
        if latency:
            entry["p50_latency_ms"] = rollup.percentile([int(v or 0) for v in row[hist : hist + n]], 0.5)
            entry["p50_ttft_ms"] = rollup.percentile([int(v or 0) for v in row[hist + n : hist + 2 * n]], 0.5)
        out.append(entry)
    out.sort(key=lambda r: (-r["requests"], str(r[by])))
    return out


def series(
    db: Database, *, since: float, until: float, step: str, tz: ZoneInfo, by: str = "model", user_id: int | None = None,
    top: int = 12,
) -> dict[str, Any]:
    """Requests, tokens and cost per ``step`` (hour or day in ``tz``), one series per ``by``:
    the biggest ``top`` and the rest as one. The operator's daily series are per UTC day
    (``timezone`` in the answer says so)."""
    table = _table(by, user_id, daily=step == "day" and user_id is None)
    if "day" in table.c:
        tz = UTC
    dim = _dim(table, by)
    time = _time(table)
    sums = (func.sum(table.c.requests), func.sum(table.c.input_tokens + table.c.output_tokens), func.sum(table.c.cost))
    rows: list[Sequence[Any]]  # (time, name, requests, tokens, cost)
    ranking: list[Sequence[Any]]  # (name, requests)
    with db.engine.connect() as conn:
        if user_id is not None:  # one developer's few models: one pass, ranked here
            rows = list(conn.execute(_where(select(time, dim, *sums).group_by(time, dim), table, user_id, since, until)))
            totals: dict[Any, int] = {}
            for row in rows:
                totals[row[1]] = totals.get(row[1], 0) + int(row[2] or 0)
            ranking = sorted(totals.items(), key=lambda kv: (-kv[1], str(kv[0])))
            names = [name for name, _ in ranking[:top]]
            if len(ranking) > top:
                kept = set(names)
                rows = [row if row[1] in kept else (row[0], None, *row[2:]) for row in rows]
        else:
            ranking = list(conn.execute(
                _where(select(dim, func.sum(table.c.requests)).group_by(dim), table, user_id, since, until)
            ))
            ranking.sort(key=lambda r: (-(r[1] or 0), str(r[0])))
            names = [r[0] for r in ranking[:top]]
            rows = list(conn.execute(
                _where(select(time, dim, *sums).where(dim.in_(names)).group_by(time, dim), table, user_id, since, until)
            ))
        if user_id is None and len(ranking) > top:  # everything else, summed by the database
            rows += conn.execute(
                _where(
                    select(time, literal(None), *sums).where(dim.not_in(names)).group_by(time), table, user_id, since, until
                )
            )
    starts = _steps(since, until, step, tz)
    index = {s: i for i, s in enumerate(starts)}
    out: dict[Any, dict[str, list[float]]] = {name: _zeros(len(starts)) for name in names}
    if len(ranking) > top:
        out[None] = _zeros(len(starts))
    slot: dict[int, int | None] = {}  # hour -> step index, computed once per hour
    for hour, name, requests, tokens, cost in rows:
        i = slot.get(hour, -1)
        if i == -1:
            i = slot[hour] = index.get(_step_start(float(hour), step, tz))
        if i is None:
            continue
        entry = out[name]
        entry["requests"][i] += int(requests or 0)
        entry["tokens"][i] += int(tokens or 0)
        entry["cost"][i] += float(cost or 0.0)
    return {
        "step": step,
        "by": by,
        "timezone": str(tz),
        "starts": starts,
        "series": [{by: name, "other": name is None, **values} for name, values in out.items()],
    }


def _zeros(n: int) -> dict[str, list[float]]:
    return {k: [0] * n for k in ("requests", "tokens", "cost")}


def _step_start(ts: float, step: str, tz: ZoneInfo) -> float:
    if step == "hour":
        return float(rollup.hour_of(ts))
    local = datetime.fromtimestamp(ts, tz)
    return local.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()


def _steps(since: float, until: float, step: str, tz: ZoneInfo) -> list[float]:
    starts: list[float] = []
    cursor = _step_start(since, step, tz)
    while cursor < until:
        starts.append(cursor)
        if step == "hour":
            cursor += 3600
        else:  # the next local midnight, across daylight-saving changes
            cursor = _step_start(cursor + 26 * 3600, step, tz)
    return starts


def hour_usage(db: Database, hours: tuple[int, ...], user_id: int | None = None) -> dict[tuple[int, int], dict[str, float]]:
    """Charged requests, tokens and cost per (user, hour) for a few hours, for pace."""
    t = PER_USER
    query = select(
        t.c.user_id, t.c.hour, t.c.weight, t.c.input_tokens + t.c.output_tokens, t.c.cost
    ).where(t.c.hour.in_(hours))
    if user_id is not None:
        query = query.where(t.c.user_id == user_id)
    with db.engine.connect() as conn:
        return {
            (u, h): {"requests": float(w or 0), "tokens": float(k or 0), "cost": float(c or 0)}
            for u, h, w, k, c in conn.execute(query)
        }


def errors(db: Database, since: float, daily: bool = False) -> list[dict[str, Any]]:
    t = TEAM_DAILY if daily else TEAM
    query = (
        select(t.c.error_class, t.c.provider, t.c.status, func.sum(t.c.requests))
        .where(t.c.status != "ok")
        .group_by(t.c.error_class, t.c.provider, t.c.status)
    )
    with db.engine.connect() as conn:
        rows = conn.execute(_where(query, t, None, since)).all()
    out = [
        {"error_class": e or None, "provider": p or None, "status": s, "requests": int(n or 0)} for e, p, s, n in rows
    ]
    out.sort(key=lambda r: -r["requests"])
    return out


def last_requests(db: Database) -> dict[int, float]:
    """Each user's last request time, one index probe per user."""
    users = select(schema.users.c.id).subquery()
    last = select(func.max(L.c.ts)).where(L.c.user_id == users.c.id).scalar_subquery()
    with db.engine.connect() as conn:
        return {uid: ts for uid, ts in conn.execute(select(users.c.id, last)) if ts is not None}


def recent(db: Database, user_id: int, limit: int = 200) -> list[dict[str, Any]]:
    query = (
        select(*(L.c[c] for c in REQUEST_COLUMNS))
        .where(L.c.user_id == user_id)
        .order_by(L.c.ts.desc(), L.c.id.desc())
        .limit(limit)
    )
    with db.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]


def ledger_page(db: Database, filters: dict[str, Any], *, after: tuple[float, str] | None, limit: int) -> list[dict[str, Any]]:
    """One page of the ledger, newest first, by keyset on (ts, id): never an OFFSET."""
    names = {u.id: u.name for u in db.list_users()}
    query = select(L.c.user_id, *(L.c[c] for c in REQUEST_COLUMNS))
    for column in ("user_id", "model", "provider", "status", "protocol"):
        if filters.get(column) is not None:
            query = query.where(L.c[column] == filters[column])
    if filters.get("since") is not None:
        query = query.where(L.c.ts >= filters["since"])
    if filters.get("until") is not None:
        query = query.where(L.c.ts < filters["until"])
    if after is not None:
        ts, request_id = after
        # ``ts <= t`` alone bounds the index range; the OR settles ties on the id.
        query = query.where(L.c.ts <= ts, or_(L.c.ts < ts, and_(L.c.ts == ts, L.c.id < request_id)))
    query = query.order_by(L.c.ts.desc(), L.c.id.desc()).limit(limit)
    with db.engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(query)]
    for row in rows:
        row["user"] = names.get(row.pop("user_id"))
    return rows
