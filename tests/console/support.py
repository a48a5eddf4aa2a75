"""Helpers for the console tests: roll-up vs ledger sums, signing in over plain HTTP."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import httpx
from sqlalchemy import text

DETAIL = "model, COALESCE(provider, ''), protocol, status, COALESCE(error_class, '')"
LEDGER_SUMS = (
    "COUNT(*), SUM(weight), SUM(input_tokens), SUM(output_tokens), SUM(cached_tokens), SUM(reasoning_tokens), "
    "SUM(cost), SUM(cache_write_tokens), SUM(credits)"
)
ROLLUP_SUMS = (
    "SUM(requests), SUM(weight), SUM(input_tokens), SUM(output_tokens), SUM(cached_tokens), SUM(reasoning_tokens), "
    "SUM(cost), SUM(cache_write_tokens), SUM(credits)"
)


def _grouped(engine: Any, sql: str, width: int) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    with engine.connect() as conn:
        return {tuple(r[:width]): _round(r[width:]) for r in conn.execute(text(sql))}


def ledger_sums(engine: Any) -> dict[str, dict[tuple[Any, ...], tuple[Any, ...]]]:
    """The ledger, summed at each roll-up grain (over all hours and days)."""
    sums = _ledger_sums(engine)
    return {**sums, "team_daily": sums["team"], "users_daily": sums["users"]}


def _ledger_sums(engine: Any) -> dict[str, dict[tuple[Any, ...], tuple[Any, ...]]]:
    return {
        "detail": _grouped(engine, f"SELECT user_id, {DETAIL}, {LEDGER_SUMS}, SUM(latency_ms), COUNT(ttft_ms) "
                                   f"FROM ledger GROUP BY user_id, {DETAIL}", 6),
        "team": _grouped(engine, f"SELECT {DETAIL}, {LEDGER_SUMS}, SUM(latency_ms), COUNT(ttft_ms) FROM ledger GROUP BY {DETAIL}", 5),
        "users": _grouped(engine, f"SELECT user_id, {LEDGER_SUMS}, SUM(CASE WHEN status <> 'ok' THEN 1 ELSE 0 END) "
                                  "FROM ledger GROUP BY user_id", 1),
    }


def rollup_sums(engine: Any) -> dict[str, dict[tuple[Any, ...], tuple[Any, ...]]]:
    plain = "model, provider, protocol, status, error_class"
    return {
        "detail": _grouped(engine, f"SELECT user_id, {plain}, {ROLLUP_SUMS}, SUM(latency_ms_sum), SUM(ttft_count) "
                                   f"FROM usage_hourly GROUP BY user_id, {plain}", 6),
        "team": _grouped(engine, f"SELECT {plain}, {ROLLUP_SUMS}, SUM(latency_ms_sum), SUM(ttft_count) "
                                 f"FROM usage_team_hourly GROUP BY {plain}", 5),
        "users": _grouped(engine, f"SELECT user_id, {ROLLUP_SUMS}, SUM(errors) FROM usage_user_hourly GROUP BY user_id", 1),
        "team_daily": _grouped(engine, f"SELECT {plain}, {ROLLUP_SUMS}, SUM(latency_ms_sum), SUM(ttft_count) "
                                       f"FROM usage_team_daily GROUP BY {plain}", 5),
        "users_daily": _grouped(engine, f"SELECT user_id, {ROLLUP_SUMS}, SUM(errors) FROM usage_user_daily GROUP BY user_id", 1),
    }


def _round(values: Any) -> tuple[Any, ...]:
    return tuple(round(float(v), 6) if isinstance(v, float) else int(v) for v in values)


def statuses(engine: Any) -> Counter[str]:
    with engine.connect() as conn:
        return Counter(dict(conn.execute(text("SELECT status, COUNT(*) FROM ledger GROUP BY status")).all()))


def sign_in(base_url: str, key: str) -> httpx.Client:
    """A client holding a console session, signed in through the real form."""
    client = httpx.Client(base_url=base_url, timeout=30, follow_redirects=False)
    form = client.get("/console/sign-in")
    nonce = re.search(r'name="nonce" value="([^"]+)"', form.text)
    assert nonce, form.text
    done = client.post("/console/sign-in", data={"key": key, "nonce": nonce.group(1)}, headers={"origin": base_url})
    assert done.status_code == 303, done.text
    assert done.headers["location"] == "/console"
    page = client.get("/console")
    csrf = re.search(r'name="csrf-token" content="([^"]+)"', page.text)
    assert csrf, page.text
    client.headers["x-csrf-token"] = csrf.group(1)
    client.headers["origin"] = base_url
    return client


def ledger_rows_clean(db: Any) -> list[dict[str, Any]]:
    return db.ledger_rows()


def banner_admin_key(server: Any) -> str:
    text = server.printed()  # printed before uvicorn starts: there once the server is ready
    return next(w for w in text.split() if w.startswith("sk-op-admin-"))
