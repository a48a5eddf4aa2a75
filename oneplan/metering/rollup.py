"""The hourly roll-up of the ledger, which every console page and report reads.

Three grains of the same sums, so that no page reads more rows than it shows:

* ``usage_hourly`` - per (user, hour, model, provider, protocol, status, error class): request
  counts, token classes, cost, latency and time-to-first-token sums and histograms (a p50
  within a bucket). A developer's pages read their own rows of it.
* ``usage_team_hourly`` - the same without the user: the operator's charts, tables, errors and
  provider figures.
* ``usage_user_hourly`` - per (hour, user) totals and errors: the operator's per-user figures.
* ``usage_team_daily`` and ``usage_user_daily`` - the last two per UTC day, for the operator's
  30- and 90-day views (a developer's own daily view is cut from their hours in their time zone).

The ledger writer calls ``add()`` in the same transaction as the ledger rows it inserts, before
the insert, so the two commit or roll back together; rows the ledger already holds (a journal
replayed twice) are skipped, exactly like the insert's ``ON CONFLICT DO NOTHING``. ``ensure()``
rebuilds the roll-up from the ledger, in SQL, when it was never built (a database that predates
it).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection

HOUR = 3600
# Histogram bucket upper edges in milliseconds: bucket i holds values in [EDGES[i-1], EDGES[i]).
EDGES = (50, 100, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 5000, 8000, 13000, 30000, 60000)
BUCKETS = len(EDGES) + 1
LAT = tuple(f"lat_b{i:02d}" for i in range(BUCKETS))
TTFT = tuple(f"ttft_b{i:02d}" for i in range(BUCKETS))
DETAIL = ("model", "provider", "protocol", "status", "error_class")
# Token classes: input_tokens holds cached_tokens (cache reads) and cache_write_tokens.
TOTALS = (
    "requests", "weight", "input_tokens", "output_tokens", "cached_tokens", "reasoning_tokens", "cost",
    "cache_write_tokens", "credits",
)
SUMS = (*TOTALS, "latency_ms_sum", "ttft_ms_sum", "ttft_count", *LAT, *TTFT)
# A ledger row's values summed into TOTALS (after "requests", which counts rows), in order.
_ROW_TOTALS = TOTALS[1:]
_FLOAT_TOTALS = tuple(i for i, c in enumerate(TOTALS) if c in ("cost", "credits"))
# table -> (key columns, summed columns)
TABLES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "usage_hourly": (("user_id", "hour", *DETAIL), SUMS),
    "usage_team_hourly": (("hour", *DETAIL), SUMS),
    "usage_user_hourly": (("hour", "user_id"), (*TOTALS, "errors")),
    "usage_team_daily": (("day", *DETAIL), SUMS),
    "usage_user_daily": (("day", "user_id"), (*TOTALS, "errors")),
}
DAY = 86400
META_BUILT = "rollup_built"
_CHUNK = 500
_LAT0, _TTFT0 = SUMS.index(LAT[0]), SUMS.index(TTFT[0])
_LATENCY, _TTFT_SUM, _TTFT_COUNT = SUMS.index("latency_ms_sum"), SUMS.index("ttft_ms_sum"), SUMS.index("ttft_count")


def hour_of(ts: float) -> int:
    return int(ts // HOUR) * HOUR


def bucket(ms: float) -> int:
    return bisect.bisect_right(EDGES, ms)


def aggregate(rows: Sequence[dict[str, Any]]) -> dict[str, dict[tuple[Any, ...], list[Any]]]:
    """Roll-up increments for ``rows``: table -> key -> values in its summed columns' order."""
    detail: dict[tuple[Any, ...], list[Any]] = {}
    # ``hour_of`` inlined, and the row read through one bound ``get``: this runs for every row.
    for row in rows:
        get = row.get
        key = (
            row["user_id"], int(row["ts"] // HOUR) * HOUR, row["model"], get("provider") or "",
            row["protocol"], row["status"], get("error_class") or "",
        )
        acc = detail.get(key)
        if acc is None:
            acc = detail[key] = [0] * len(SUMS)
            for i in _FLOAT_TOTALS:
                acc[i] = 0.0
        acc[0] += 1
        for i, value in enumerate(map(get, _ROW_TOTALS), 1):
            if value:  # credits: what the plan charged, absent (None) on rows without
                acc[i] += value
        latency = row["latency_ms"]
        acc[_LATENCY] += latency
        acc[_LAT0 + bucket(latency)] += 1
        ttft = get("ttft_ms")
        if ttft is not None:
            acc[_TTFT_SUM] += ttft
            acc[_TTFT_COUNT] += 1
            acc[_TTFT0 + bucket(ttft)] += 1
    team: dict[tuple[Any, ...], list[Any]] = {}
    users: dict[tuple[Any, ...], list[Any]] = {}
    n = len(TOTALS)
    for key, values in detail.items():
        into = team.setdefault(key[1:], [0] * len(SUMS))
        for i, v in enumerate(values):
            into[i] += v
        per_user = users.setdefault((key[1], key[0]), [0] * (n + 1))
        for i in range(n):
            per_user[i] += values[i]
        if key[5] != "ok":
            per_user[n] += values[0]
    return {
        "usage_hourly": detail,
        "usage_team_hourly": team,
        "usage_user_hourly": users,
        "usage_team_daily": _by_day(team),
        "usage_user_daily": _by_day(users),
    }


def _by_day(hourly: dict[tuple[Any, ...], list[Any]]) -> dict[tuple[Any, ...], list[Any]]:
    daily: dict[tuple[Any, ...], list[Any]] = {}
    for key, values in hourly.items():
        into = daily.setdefault((key[0] // DAY * DAY, *key[1:]), [0] * len(values))
        for i, v in enumerate(values):
            into[i] += v
    return daily


def _mark(conn: Connection) -> str:
    return "?" if conn.dialect.paramstyle == "qmark" else "%s"


def _upsert_sql(table: str, mark: str) -> str:
    key, sums = TABLES[table]
    columns = (*key, *sums)
    updates = ", ".join(f"{c} = {table}.{c} + excluded.{c}" for c in sums)
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join([mark] * len(columns))}) "
        f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}"
    )


def add(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Count ``rows`` that the ledger does not hold yet; call before inserting them, in the
    same transaction."""
    if not rows:
        return
    ensure_in(conn)
    mark = _mark(conn)
    fresh: dict[str, dict[str, Any]] = {}
    for row in rows:
        fresh.setdefault(row["id"], row)
    ids = list(fresh)
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        known = conn.exec_driver_sql(
            f"SELECT id FROM ledger WHERE id IN ({', '.join([mark] * len(chunk))})", tuple(chunk)
        ).scalars()
        for request_id in known:
            fresh.pop(request_id, None)
    if not fresh:
        return
    for table, increments in aggregate(list(fresh.values())).items():
        # Sorted keys: two writers upserting the same rows take their locks in one order.
        conn.exec_driver_sql(_upsert_sql(table, mark), [(*k, *increments[k]) for k in sorted(increments)])


def _hour_sql(dialect: str) -> str:
    return "CAST(floor(ts / 3600) AS BIGINT) * 3600" if dialect == "postgresql" else "CAST(ts / 3600 AS INTEGER) * 3600"


def _rebuild_detail_sql(dialect: str) -> str:
    hour = _hour_sql(dialect)

    def hist(column: str) -> list[str]:
        parts = []
        for i in range(BUCKETS):
            low = f"{column} >= {EDGES[i - 1]}" if i else f"{column} IS NOT NULL"
            high = f" AND {column} < {EDGES[i]}" if i < len(EDGES) else ""
            parts.append(f"SUM(CASE WHEN {low}{high} THEN 1 ELSE 0 END)")
        return parts

    key, sums = TABLES["usage_hourly"]
    select = [
        "user_id", hour, "model", "COALESCE(provider, '')", "protocol", "status", "COALESCE(error_class, '')",
        "COUNT(*)", *(f"SUM({c})" for c in _ROW_TOTALS), "SUM(latency_ms)", "COALESCE(SUM(ttft_ms), 0)",
        "COUNT(ttft_ms)",
        *hist("latency_ms"), *hist("ttft_ms"),
    ]
    return (
        f"INSERT INTO usage_hourly ({', '.join((*key, *sums))}) SELECT {', '.join(select)} FROM ledger "
        f"GROUP BY user_id, {hour}, model, COALESCE(provider, ''), protocol, status, COALESCE(error_class, '')"
    )


def _rebuild_from_detail_sql() -> list[str]:
    key, sums = TABLES["usage_team_hourly"]
    team = (
        f"INSERT INTO usage_team_hourly ({', '.join((*key, *sums))}) "
        f"SELECT {', '.join(key)}, {', '.join(f'SUM({c})' for c in sums)} FROM usage_hourly GROUP BY {', '.join(key)}"
    )
    key, sums = TABLES["usage_user_hourly"]
    users = (
        f"INSERT INTO usage_user_hourly ({', '.join((*key, *sums))}) "
        f"SELECT hour, user_id, {', '.join(f'SUM({c})' for c in TOTALS)}, "
        "SUM(CASE WHEN status <> 'ok' THEN requests ELSE 0 END) FROM usage_hourly GROUP BY hour, user_id"
    )
    daily = []
    for table, source in (("usage_team_daily", "usage_team_hourly"), ("usage_user_daily", "usage_user_hourly")):
        key, sums = TABLES[table]
        rest = ", ".join(key[1:])
        daily.append(
            f"INSERT INTO {table} ({', '.join((*key, *sums))}) SELECT hour / {DAY} * {DAY}, {rest}, "
            f"{', '.join(f'SUM({c})' for c in sums)} FROM {source} GROUP BY hour / {DAY} * {DAY}, {rest}"
        )
    return [team, users, *daily]


def rebuild(conn: Connection) -> None:
    """Recompute the whole roll-up from the ledger."""
    for table in TABLES:
        conn.exec_driver_sql(f"DELETE FROM {table}")
    conn.exec_driver_sql(_rebuild_detail_sql(conn.dialect.name))
    for sql in _rebuild_from_detail_sql():
        conn.exec_driver_sql(sql)
    mark = _mark(conn)
    conn.exec_driver_sql(f"DELETE FROM meta WHERE key = {mark}", (META_BUILT,))
    conn.exec_driver_sql(f"INSERT INTO meta (key, value) VALUES ({mark}, {mark})", (META_BUILT, "1"))


def ensure_in(conn: Connection) -> bool:
    """Build the roll-up if it never was; True if it did."""
    mark = _mark(conn)
    if conn.exec_driver_sql(f"SELECT value FROM meta WHERE key = {mark}", (META_BUILT,)).scalar():
        return False
    rebuild(conn)
    return True


def ensure(engine: Any) -> bool:
    with engine.begin() as conn:
        return ensure_in(conn)


def percentile(histogram: Sequence[int], q: float) -> float | None:
    """The ``q`` quantile (0..1) of a bucket histogram, interpolated linearly in its bucket."""
    total = sum(histogram)
    if not total:
        return None
    rank = q * total
    seen = 0
    for i, count in enumerate(histogram):
        if count and seen + count >= rank:
            low = EDGES[i - 1] if i else 0.0
            high = EDGES[i] if i < len(EDGES) else EDGES[-1] * 2
            return low + (high - low) * max(0.0, rank - seen) / count
        seen += count
    return float(EDGES[-1] * 2)
