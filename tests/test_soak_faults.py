"""A bounded soak across two real replicas on PostgreSQL and Redis with everything going wrong
at once: upstream faults, Redis killed and restarted empty twice, and one replica killed with
SIGKILL and restarted. What must hold at the end:

* every answer a client received whole has exactly one ledger row, ``ok``, with the tokens the
  client was shown (the row's id is the answer's id);
* the quota counters in Redis equal the ledger's windows (after the dead replica's requests in
  flight are reconciled);
* no client saw a 500.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from oneplan.metering.redis_counters import RedisCounters
from oneplan.metering.windows import Periods
from oneplan.routing.catalog import Plan
from tests.fakes import FakeUpstream
from tests.support.process import ServeProcess
from tests.support.services import PrivateRedis, postgres_database

REQUESTS = int(os.environ.get("ONEPLAN_FAULT_SOAK_REQUESTS", "600"))
CONCURRENCY = 40


@pytest.fixture
def pg_url() -> Iterator[str]:
    yield from postgres_database()


def test_soak_with_redis_restarts_and_a_sigkill_keeps_ledger_and_counters_exact(tmp_path: Path, pg_url: str) -> None:
    with FakeUpstream("openai") as up, PrivateRedis() as redis:
        up.fault("500", rate=0.1, seed=11)
        config = tmp_path / "oneplan.toml"
        config.write_text(
            f'[providers.up]\nkind = "openai-compatible"\nbase_url = "{up.base_url}"\napi_key = "{up.api_key}"\n'
            '[models."m1"]\nprovider = "up"\n[routing]\nretries = 0\n'
            "[plans.pro]\nrequests_per_5h = 1000000\n"
            f'[server]\nredis_url = "{redis.url}"\ndatabase_url = "{pg_url}"\nreplica_heartbeat_seconds = 1\n'
        )
        a = ServeProcess(config, tmp_path / "a").start()
        b = ServeProcess(config, tmp_path / "b").start()
        replicas = [a, b]
        key = a.cli("users", "create", "alice", "--plan", "pro").stdout.strip()
        received: dict[str, int] = {}  # answer id -> tokens the client was shown
        outcomes: Counter[str] = Counter()
        rng = random.Random(5)
        events = {REQUESTS // 5: "redis", REQUESTS // 2: "kill", (3 * REQUESTS) // 4: "redis"}
        started = 0

        async def chaos(n: int) -> None:
            what = events.get(n)
            if what == "redis":
                redis.kill()
                redis.start()
            elif what == "kill":
                b.kill()
                replicas[1] = ServeProcess(config, tmp_path / "b")
                await asyncio.to_thread(replicas[1].start)

        async def one(client: httpx.AsyncClient) -> None:
            nonlocal started
            started += 1
            await chaos(started)
            stream = rng.random() < 0.5
            body: dict[str, Any] = {"model": "m1", "messages": [{"role": "user", "content": "hello"}], "stream": stream}
            if stream:
                body["stream_options"] = {"include_usage": True}
            server = replicas[rng.randrange(2)]
            try:
                reply = await client.post(server.url + "/v1/chat/completions", json=body,
                                          headers={"authorization": f"Bearer {key}"})
            except httpx.TransportError:
                outcomes["connection lost"] += 1  # the killed replica, or its port not yet back
                return
            assert reply.status_code != 500, reply.text
            if reply.status_code != 200:
                outcomes[f"http {reply.status_code}"] += 1
                return
            if stream:
                chunks = [json.loads(line[6:]) for line in reply.text.splitlines()
                          if line.startswith("data: {")]
                if not reply.text.rstrip().endswith("data: [DONE]"):
                    outcomes["stream cut"] += 1
                    return
                usage = next(c["usage"] for c in reversed(chunks) if c.get("usage"))
                answer_id = chunks[0]["id"]
            else:
                data = reply.json()
                usage, answer_id = data["usage"], data["id"]
            received[answer_id] = usage["prompt_tokens"] + usage["completion_tokens"]
            outcomes["ok"] += 1

        async def run() -> None:
            sem = asyncio.Semaphore(CONCURRENCY)
            async with httpx.AsyncClient(timeout=30) as client:
                async def bounded() -> None:
                    async with sem:
                        await one(client)

                await asyncio.wait_for(asyncio.gather(*(bounded() for _ in range(REQUESTS))), 300)

        try:
            asyncio.run(run())
            print(f"\noutcomes {dict(outcomes)}")
            assert outcomes["ok"] > REQUESTS * 0.6
            # The ledger, through the CLI (which also replays any journal left behind).
            import psycopg

            with psycopg.connect(pg_url.replace("postgresql+psycopg", "postgresql")) as conn:
                deadline = time.monotonic() + 20
                while True:
                    rows = {r[0]: (r[1], r[2]) for r in conn.execute(
                        "SELECT id, status, input_tokens + output_tokens FROM ledger")}
                    if all(i in rows for i in received) or time.monotonic() > deadline:
                        break
                    time.sleep(0.2)  # the replicas flush every 200 ms
            missing = [i for i in received if i not in rows]
            assert not missing, f"{len(missing)} answers clients received have no ledger row"
            assert all(rows[i] == ("ok", tokens) for i, tokens in received.items())

            async def counted() -> float:
                c = RedisCounters(redis.url, time.time, Periods("UTC"))
                try:
                    return (await c.states(1, Plan("pro", requests_per_5h=1000000)))[0].used
                finally:
                    await c.aclose()

            async def left() -> dict[str, Any]:
                c = RedisCounters(redis.url, time.time, Periods("UTC"))
                try:
                    held = {
                        what: await c.decoded.hgetall(f"oneplan:{{1}}:{what}") for what in ("if", "run", "gone", "late")
                    }
                    ids = [f.split(":", 1)[1] for f in held["if"]]
                    with psycopg.connect(pg_url.replace("postgresql+psycopg", "postgresql")) as conn:
                        found = {r[0]: (r[1], r[2]) for r in conn.execute(
                            "SELECT id, status, ts FROM ledger WHERE id = ANY(%s)", (ids,))}
                    return held | {
                        "gen": await c.decoded.get("oneplan:gen"),
                        "replicas": await c.decoded.smembers("oneplan:replicas"),
                        "their rows": found,
                    }
                finally:
                    await c.aclose()

            deadline = time.monotonic() + 30
            while True:
                report = json.loads(a.cli("usage", "--json").stdout)
                ledger_used = report["users"][0]["windows"][0]["used"]
                in_redis = asyncio.run(counted())
                if in_redis == ledger_used:
                    break
                assert time.monotonic() < deadline, (
                    f"Redis counts {in_redis}, the ledger {ledger_used}; left in Redis: {asyncio.run(left())}; "
                    + "; ".join(f"replica {i} printed: {r.printed()[-3000:]}" for i, r in enumerate(replicas))
                )
                time.sleep(0.3)  # the dead replica is reconciled once its heartbeat expires
        finally:
            for server in replicas:
                server.stop()
