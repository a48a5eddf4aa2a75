"""The store on PostgreSQL, for several replicas sharing one database. Needs PostgreSQL on
127.0.0.1:5432 with trust auth (.ci/run starts it)."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from oneplan.metering.ledger import LEDGER_DEFAULTS
from oneplan.store.db import Database, hash_key
from tests.support.services import postgres_database


@pytest.fixture
def pg_url() -> Iterator[str]:
    yield from postgres_database()


def row(user_id: int, **over: object) -> dict[str, object]:
    base = {
        **LEDGER_DEFAULTS, "id": secrets.token_hex(12), "ts": time.time(), "user_id": user_id,
        "key_id": "k", "protocol": "openai_chat", "model": "m1", "stream": False, "status": "ok",
        "http_status": 200, "weight": 1, "latency_ms": 3.0, "input_tokens": 10, "output_tokens": 5,
    }
    base.update(over)
    return base


def test_migrations_users_keys_and_ledger_on_postgres(tmp_path: Path, pg_url: str) -> None:
    db = Database.open(tmp_path, pg_url)
    try:
        assert db.migrate() == []  # a second run applies nothing
        user, key_id, key = db.create_user("alice", "pro")
        assert db.lookup_key(hash_key(key)).user_name == "alice"
        rows = [row(user.id) for _ in range(50)] + [row(user.id, status="failed", weight=0, input_tokens=0, output_tokens=0)]
        db.insert_ledger(rows)
        db.insert_ledger(rows[:10])  # a replayed journal inserts nothing twice
        (totals,) = db.usage_totals()
        assert (totals["requests"], totals["charged_requests"], totals["input_tokens"]) == (51, 50, 500)
        charged = db.charged_since(time.time() - 60)
        assert sum(r[2] for r in charged) == 50
        assert db.revoke_key(key_id) and db.lookup_key(hash_key(key)).revoked_at is not None
        # A second replica opening the same database sees everything.
        other = Database.open(tmp_path / "other", pg_url)
        assert [u.name for u in other.list_users()] == ["alice"]
        other.close()
    finally:
        db.close()
