"""Two ``oneplan serve`` replicas on one PostgreSQL and one Redis: 500 concurrent requests
across both cross 80 % and 100 % of a window, and each crossing is one alert, not one per
replica; the replica holding a claimed delivery is killed with SIGKILL before the receiver
answers, and the other replica delivers it (with the same idempotency key)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, select

from oneplan.store import schema
from tests.alerts.receivers import HttpReceiver, wait_for
from tests.conftest import catalog_for
from tests.fakes import FakeUpstream
from tests.support.process import ServeProcess
from tests.support.services import postgres_database, require_redis


@pytest.fixture
def pg_url() -> Iterator[str]:
    yield from postgres_database()


def test_two_replicas_alert_once_per_crossing_and_survive_a_sigkill(
    tmp_path: Path, upstream: FakeUpstream, pg_url: str
) -> None:
    redis_url = require_redis()
    limit = 400
    with HttpReceiver() as hook:
        hook.hold.set()  # deliveries are claimed, then hang: a replica dies holding them
        extra = f"""
[alerts]
forecast_minutes = 0
poll_seconds = 0.05
lease_seconds = 4
timeout_seconds = 2
retry_base_seconds = 0.05

[alerts.channels.hook]
kind = "webhook"
url = "{hook.url}/alerts"

[alerts.plans.pro]
channels = ["hook"]
"""
        toml = catalog_for(upstream, plan=f"[plans.pro]\nrequests_per_5h = {limit}", extra=extra).replace(
            "[providers.up]",
            f'[server]\ndatabase_url = "{pg_url}"\nredis_url = "{redis_url}"\nredis_prefix = "t-{secrets.token_hex(4)}"\n\n[providers.up]',
        )
        config = tmp_path / "oneplan.toml"
        config.write_text(toml)
        replicas = [ServeProcess(config, tmp_path / f"replica-{i}") for i in range(2)]
        try:
            for replica in replicas:
                replica.start()
            made = replicas[0].cli("users", "create", "alice", "--plan", "pro")
            assert made.returncode == 0, made.stderr
            key = made.stdout.strip()

            async def burst() -> list[int]:
                limits = httpx.Limits(max_connections=500)
                async with httpx.AsyncClient(timeout=120, limits=limits) as http:
                    async def one(i: int) -> int:
                        r = await http.post(
                            f"{replicas[i % 2].url}/v1/chat/completions",
                            json={"model": "m1", "messages": [{"role": "user", "content": f"q{i}"}]},
                            headers={"authorization": f"Bearer {key}"},
                        )
                        return r.status_code
                    return await asyncio.gather(*(one(i) for i in range(500)))

            statuses = asyncio.run(burst())
            assert statuses.count(200) == limit and statuses.count(429) == 500 - limit
            wait_for(lambda: len(hook.requests) >= 2, timeout=30, what="both crossings claimed and sent")

            engine = create_engine(pg_url)
            dl = schema.alert_deliveries

            def leased() -> dict[str, str | None] | None:
                with engine.connect() as conn:
                    rows = dict(conn.execute(select(dl.c.id, dl.c.lease_owner)).all())
                return rows if len(rows) == 2 and any(rows.values()) else None

            # Both deliveries exist; at least one is claimed (held at the receiver) right now.
            owners = wait_for(leased, what="a claimed delivery")
            victim_pid = int(next(o for o in owners.values() if o).split(":")[1])
            victim = next(r for r in replicas if r.proc is not None and r.proc.pid == victim_pid)
            victim.kill()  # SIGKILL, with a delivery claimed and not delivered
            killed_ids = {d for d, owner in owners.items() if owner and int(owner.split(":")[1]) == victim_pid}
            hook.hold.clear()
            survivor = next(r for r in replicas if r is not victim)

            def all_sent() -> bool:
                with engine.connect() as conn:
                    return set(conn.execute(select(dl.c.state)).scalars()) == {"sent"}

            wait_for(all_sent, timeout=30, what="every delivery sent by the surviving replica")
            with engine.connect() as conn:
                events = conn.execute(select(schema.alert_events.c.key)).scalars().all()
                rows = conn.execute(select(dl.c.id, dl.c.attempts)).all()
            engine.dispose()
            status = survivor.cli("alerts", "status")
        finally:
            for replica in replicas:
                replica.stop()

    assert len(events) == 2  # one event per crossing, whichever replica saw it
    keys = [r.headers["Idempotency-Key"] for r in hook.requests]
    assert set(keys) == set(owners)  # every request to the receiver is one of the two deliveries
    bodies = {r.json["threshold"]: r.json for r in hook.requests}
    assert sorted(bodies) == [80, 100]
    assert bodies[80]["used"] >= 0.8 * limit and bodies[100]["used"] == limit
    # The killed replica's delivery was sent again after its lease ran out, under the same key.
    for delivery in killed_ids:
        assert keys.count(delivery) >= 2
        assert dict(rows)[delivery] >= 2
    assert status.returncode == 0 and "0 pending, 0 failed, 2 sent" in status.stdout
