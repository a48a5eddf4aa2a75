"""Helpers for the console tests: roll-up vs ledger sums, signing in over plain HTTP."""

from __future__ import annotations

import os
import re
import select
from collections import Counter
from typing import Any

import httpx
from sqlalchemy import text

KEY = ("user_id", "model", "provider", "protocol", "status", "error_class")
SUMS = ("requests", "weight", "input_tokens", "output_tokens", "cached_tokens", "reasoning_tokens", "cost", "latency_ms", "ttft")


def ledger_sums(engine: Any) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    sql = (
        "SELECT user_id, model, COALESCE(provider, ''), protocol, status, COALESCE(error_class, ''), COUNT(*), "
        "SUM(weight), SUM(input_tokens), SUM(output_tokens), SUM(cached_tokens), SUM(reasoning_tokens), "
        "SUM(cost), SUM(latency_ms), COUNT(ttft_ms) FROM ledger "
        "GROUP BY user_id, model, COALESCE(provider, ''), protocol, status, COALESCE(error_class, '')"
    )
    with engine.connect() as conn:
        return {tuple(r[:6]): _round(r[6:]) for r in conn.execute(text(sql))}


def rollup_sums(engine: Any) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    sql = (
        "SELECT user_id, model, provider, protocol, status, error_class, SUM(requests), SUM(weight), "
        "SUM(input_tokens), SUM(output_tokens), SUM(cached_tokens), SUM(reasoning_tokens), SUM(cost), "
        "SUM(latency_ms_sum), SUM(ttft_count) FROM usage_hourly "
        "GROUP BY user_id, model, provider, protocol, status, error_class"
    )
    with engine.connect() as conn:
        return {tuple(r[:6]): _round(r[6:]) for r in conn.execute(text(sql))}


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
    assert server.proc is not None and server.proc.stdout is not None
    fd = server.proc.stdout.fileno()
    os.set_blocking(fd, False)
    text = ""
    while "sk-op-admin-" not in text and select.select([fd], [], [], 5)[0]:
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        text += chunk.decode()
    return next(w for w in text.split() if w.startswith("sk-op-admin-"))
