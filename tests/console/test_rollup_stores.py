"""The roll-up on both stores: written with the ledger rows, skipped for rows the ledger already
holds, rebuilt from the ledger when it was never built; SQLite and PostgreSQL alike."""

from __future__ import annotations

import random
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from oneplan.console import queries
from oneplan.metering import rollup
from oneplan.metering.ledger import LEDGER_DEFAULTS
from oneplan.store.db import Database
from tests.console.support import ledger_sums, rollup_sums
from tests.support.services import postgres_database


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        database = Database.open(tmp_path)
        yield database
        database.close()
        return
    for url in postgres_database():
        database = Database.open(tmp_path, url)
        yield database
        database.close()


def rows(user_ids: list[int], n: int, seed: int) -> list[dict[str, object]]:
    rnd = random.Random(seed)
    now = time.time()
    out = []
    for _ in range(n):
        failed = rnd.random() < 0.2
        out.append({
            **LEDGER_DEFAULTS, "id": secrets.token_hex(12), "ts": now - rnd.uniform(0, 3 * 86400),
            "user_id": rnd.choice(user_ids), "key_id": "k", "protocol": rnd.choice(["openai_chat", "anthropic"]),
            "model": rnd.choice(["m1", "m2"]), "provider": None if failed else "up", "stream": rnd.random() < 0.5,
            "status": "failed" if failed else "ok", "http_status": 502 if failed else 200,
            "error_class": "UpstreamTimeout" if failed else None, "weight": 0 if failed else 1,
            "input_tokens": 0 if failed else rnd.randrange(1, 5000), "output_tokens": 0 if failed else rnd.randrange(1, 900),
            "cached_tokens": 0, "reasoning_tokens": 0, "cost": rnd.random() / 100, "latency_ms": rnd.lognormvariate(6, 1),
            "ttft_ms": None if failed else rnd.lognormvariate(5, 1),
        })
        row = out[-1]
        if not failed:  # cache reads and writes inside the input, credits as a plan would charge
            row["cached_tokens"] = rnd.randrange(0, row["input_tokens"] // 2 + 1)
            row["cache_write_tokens"] = rnd.randrange(0, row["input_tokens"] // 3 + 1)
            row["credits"] = round(rnd.uniform(0, 50), 3)
    return out


def test_rollup_follows_the_ledger_and_rebuilds_from_it(db: Database) -> None:
    ids = [db.create_user(name, "pro")[0].id for name in ("alice", "bob", "carol")]
    first = rows(ids, 300, 1)
    db.insert_ledger(first[:200])
    db.insert_ledger(first[150:] + rows(ids, 100, 2))  # a replay overlapping the last batch
    assert rollup_sums(db.engine) == ledger_sums(db.engine)
    # A database whose roll-up was never built (it predates it) gets it from the ledger.
    with db.engine.begin() as conn:
        for table in rollup.TABLES:
            conn.exec_driver_sql(f"DELETE FROM {table}")
        conn.exec_driver_sql(f"DELETE FROM meta WHERE key = '{rollup.META_BUILT}'")
    assert rollup.ensure(db.engine) is True and rollup.ensure(db.engine) is False
    assert rollup_sums(db.engine) == ledger_sums(db.engine)
    by_model = {r["model"]: r for r in queries.breakdown(db, "model", since=time.time() - 4 * 86400, daily=True)}
    assert sum(r["requests"] for r in by_model.values()) == 400
    every = {r["id"]: r for r in first + rows(ids, 100, 2)}.values()  # each row once
    for column in ("cache_write_tokens", "cached_tokens"):
        assert sum(r[column] for r in by_model.values()) == sum(r[column] for r in every)
    assert sum(r["credits"] for r in by_model.values()) == pytest.approx(sum(r["credits"] for r in every))
    per_user = queries.breakdown(db, "user", since=time.time() - 4 * 86400)
    assert sum(r["requests"] for r in per_user) == 400 and sum(r["errors"] for r in per_user) == sum(
        1 for r in first + rows(ids, 100, 2) if r["status"] == "failed"
    )
