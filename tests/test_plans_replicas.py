"""Two ``oneplan serve`` replicas on one PostgreSQL and one Redis: a plan changed through replica
A's admin API (or the CLI) is enforced on replica B within ``server.plans_refresh_seconds``,
without a restart, and a user moved to another plan mid-window keeps what they used.

No sleeps as synchronisation: each step polls B for the observable effect (its usage report, its
model list) with a deadline, and the time it took is checked against the refresh bound."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from oneplan.store.db import Database
from tests.conftest import catalog_for
from tests.fakes import FakeUpstream
from tests.support.process import ServeProcess
from tests.support.services import postgres_database, require_redis

REFRESH = 0.2  # server.plans_refresh_seconds, injected
BOUND = 3.0  # the refresh, one key-cache poll, and two slow CI processes' worth of slack


@pytest.fixture
def pg_url() -> Iterator[str]:
    yield from postgres_database()


def until(what: str, probe: Callable[[], Any]) -> float:
    """Poll ``probe`` until it is true; the seconds it took (fails past 30 s)."""
    started = time.monotonic()
    while not probe():
        if time.monotonic() - started > 30:
            raise AssertionError(f"not seen within 30 s: {what}")
        time.sleep(0.02)
    return time.monotonic() - started


def test_plan_changes_through_one_replica_apply_on_the_other_without_a_restart(
    tmp_path: Path, upstream: FakeUpstream, pg_url: str
) -> None:
    redis_url = require_redis()
    server = (
        f'[server]\ndatabase_url = "{pg_url}"\nredis_url = "{redis_url}"\n'
        f'redis_prefix = "t-{secrets.token_hex(4)}"\nplans_refresh_seconds = {REFRESH}\n\n'
    )
    toml = catalog_for(upstream, plan="[plans.pro]\nrequests_per_5h = 1000").replace("[providers.up]", server + "[providers.up]")
    toml += '\n[models."m2"]\nprovider = "up"\nupstream = "up-model-2"\n'
    config = tmp_path / "oneplan.toml"
    config.write_text(toml)
    db = Database.open(tmp_path / "a", pg_url)  # the first start's admin key, taken before either replica
    admin_key = db.ensure_admin_key()
    db.close()
    assert admin_key is not None
    a, b = ServeProcess(config, tmp_path / "a"), ServeProcess(config, tmp_path / "b")
    try:
        a.start()
        b.start()
        made = a.cli("users", "create", "alice", "--plan", "pro")
        assert made.returncode == 0, made.stderr
        key = made.stdout.strip()
        alice = {"authorization": f"Bearer {key}"}
        operator = httpx.Client(base_url=a.url, headers={"authorization": f"Bearer {admin_key}"}, timeout=30)

        answered = [0]  # requests alice was served, on either replica

        def chat(replica: ServeProcess, model: str = "m1") -> int:
            status = httpx.post(
                f"{replica.url}/v1/chat/completions", headers=alice, timeout=30,
                json={"model": model, "messages": [{"role": "user", "content": "hi"}]},
            ).status_code
            answered[0] += status == 200
            return status

        def window_on_b() -> dict[str, Any]:
            report = httpx.get(f"{b.url}/v1/usage", headers=alice, timeout=30).json()["users"][0]
            return {"plan": report["plan"], **{w["window"]: (w["used"], w["limit"]) for w in report["windows"]}}

        def models_on_b() -> set[str]:
            return {m["id"] for m in httpx.get(f"{b.url}/v1/models", headers=alice, timeout=30).json()["data"]}

        assert [chat(b) for _ in range(3)] == [200] * 3
        until("B counts alice's requests", lambda: window_on_b()["5h"] == (3, 1000))

        # 1. The catalog's plan lowered through A's admin API: B enforces it, no restart.
        changed = operator.patch("/admin/plans/pro", json={"spec": {"requests_per_5h": 5}})
        assert changed.status_code == 200 and changed.json()["overrides_catalog"], changed.text
        took = until("B enforces pro's new limit", lambda: window_on_b()["5h"] == (3, 5))
        print(f"plan change through A's admin API enforced on B after {took:.2f} s (refresh {REFRESH} s)")
        assert took < BOUND, f"B took {took:.2f} s to pick up the plan change"
        assert [chat(b) for _ in range(3)] == [200, 200, 429]
        assert chat(a) == 429  # one count across both replicas

        # 2. A plan created on A, and alice moved to it mid-window: her 5 requests still count.
        created = operator.post("/admin/plans", json={"name": "lite", "spec": {"requests_per_5h": 7, "models": ["m1"]}})
        assert created.status_code == 201, created.text
        assert operator.patch("/admin/users/alice", json={"plan": "lite"}).status_code == 200
        took = until("B's key cache has alice on lite", lambda: models_on_b() == {"m1"})
        print(f"user's plan change through A applied on B after {took:.2f} s")
        assert took < BOUND, f"B took {took:.2f} s to pick up the user's plan change"
        assert window_on_b() == {"plan": "lite", "5h": (5, 7)}
        assert chat(b, "m2") == 403  # lite's models
        assert [chat(b) for _ in range(3)] == [200, 200, 429]

        # 3. The CLI, straight to the database: both replicas follow.
        raised = a.cli("plans", "set", "lite", "requests_per_5h=8")
        assert raised.returncode == 0, raised.stderr
        took = until("B sees the CLI's change", lambda: window_on_b()["5h"] == (7, 8))
        print(f"CLI plan change applied on B after {took:.2f} s")
        assert took < BOUND, f"B took {took:.2f} s to pick up the CLI's change"
        assert chat(b) == 200 and chat(a) == 429

        # 4. The override deleted on B: A is back on the catalog's pro for users moved back.
        assert httpx.patch(
            f"{b.url}/admin/users/alice", json={"plan": "pro"}, headers={"authorization": f"Bearer {admin_key}"}, timeout=30,
        ).status_code == 200
        deleted = httpx.delete(f"{b.url}/admin/plans/pro", headers={"authorization": f"Bearer {admin_key}"}, timeout=30)
        assert deleted.json() == {"deleted": "pro", "in_force": "catalog"}
        until("A is back on the catalog's pro", lambda: {
            p["name"]: p["source"] for p in operator.get("/admin/plans").json()["data"]
        }.get("pro") == "catalog" and chat(a) == 200)

        # 5. Moved to a plan with a window pro did not have (a week): the quota counters start it
        # from what she used, not from zero - two more requests, on either replica, and no more.
        spec = {"requests_per_week": answered[0] + 2}
        assert operator.post("/admin/plans", json={"name": "weekly", "spec": spec}).status_code == 201
        assert operator.patch("/admin/users/alice", json={"plan": "weekly"}).status_code == 200
        until("B has alice on weekly", lambda: window_on_b()["plan"] == "weekly")
        assert [chat(b), chat(a), chat(b), chat(a)] == [200, 200, 429, 429]
    finally:
        a.stop()
        b.stop()
