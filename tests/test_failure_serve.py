"""Failure paths against real ``oneplan serve`` processes: values PostgreSQL rejects, a front
that bounds request heads and bodies, Redis restarted empty under load with two replicas, and a
replica killed with SIGKILL while requests are in flight."""

from __future__ import annotations

import asyncio
import json
import socket
import time
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


@pytest.fixture
def pg_url() -> Iterator[str]:
    yield from postgres_database()


def provider(up: FakeUpstream, name: str = "up") -> str:
    return f'[providers.{name}]\nkind = "openai-compatible"\nbase_url = "{up.base_url}"\napi_key = "{up.api_key}"\n'


def chat(url: str, key: str, model: str = "m1", stream: bool = False, timeout: float = 30) -> httpx.Response:
    return httpx.post(
        url + "/v1/chat/completions", headers={"authorization": f"Bearer {key}"}, timeout=timeout,
        json={"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]},
    )


def usage_of(server: ServeProcess) -> dict[str, Any]:
    done = server.cli("usage", "--json")
    assert done.returncode == 0, done.stderr
    return {u["user"]: u for u in json.loads(done.stdout)["users"]}


def test_values_the_database_rejects_never_wedge_the_ledger(tmp_path: Path, pg_url: str) -> None:
    import psycopg

    with FakeUpstream("openai") as up:
        config = tmp_path / "oneplan.toml"
        config.write_text(
            provider(up)
            + '[models."m1"]\nprovider = "up"\n[models."mp"]\nprovider = "up"\nupstream = "poison-model"\n'
            + f'[plans.pro]\nrequests_per_5h = 100\n[server]\nstore_prompts = true\ndatabase_url = "{pg_url}"\n'
        )
        server = ServeProcess(config, tmp_path / "data").start()
        try:
            alice = server.cli("users", "create", "alice", "--plan", "pro").stdout.strip()
            bob = server.cli("users", "create", "bob", "--plan", "pro").stdout.strip()
            # A row PostgreSQL will refuse whatever oneplan does to it: an operator's constraint.
            with psycopg.connect(pg_url.replace("postgresql+psycopg", "postgresql"), autocommit=True) as conn:
                conn.execute("ALTER TABLE ledger ADD CONSTRAINT no_poison CHECK (upstream_model <> 'poison-model')")
            up.reply("before\x00after", usage=(2**40, 5))  # NUL in the completion, 2^40 prompt tokens
            assert chat(server.url, alice).status_code == 200
            assert chat(server.url, bob).status_code == 200
            assert chat(server.url, alice, "mp").status_code == 200  # answered: the row is set aside
            assert chat(server.url, bob).status_code == 200
            mine = httpx.get(server.url + "/v1/usage", headers={"authorization": f"Bearer {bob}"})
            assert mine.status_code == 200
            report = usage_of(server)
            assert report["bob"]["totals"]["requests"] == 2 and report["alice"]["totals"]["requests"] == 1
            status = json.loads(server.cli("ledger", "status", "--json").stdout)
            assert status["set_aside_rows"] == 1
            with psycopg.connect(pg_url.replace("postgresql+psycopg", "postgresql")) as conn:
                anomalies, completion, tokens = conn.execute(
                    "SELECT anomalies, completion, input_tokens FROM ledger WHERE anomalies IS NOT NULL"
                ).fetchone()
            assert "input_tokens clamped" in anomalies and "completion NUL removed" in anomalies
            assert completion == "beforeafter" and tokens == 2**31 - 1
            assert server.terminate() == 0  # shutdown is not blocked by anything
        finally:
            server.stop()
        assert "before" not in server.output and up.api_key not in server.output  # no values in the log
        again = ServeProcess(config, tmp_path / "data").start()  # and the next start is not either
        try:
            assert chat(again.url, bob).status_code == 200
            deadline = time.monotonic() + 10  # the live journal empties at each flush (200 ms)
            while json.loads(again.cli("ledger", "status", "--json").stdout)["journal_rows"]:
                assert time.monotonic() < deadline, "ledger rows stay in the journal"
        finally:
            again.stop()


def _raw(port: int, data: bytes, wait: float = 10) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
        if data:
            sock.sendall(data)
        out = b""
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            out += chunk
        return out


def test_the_front_bounds_heads_slow_clients_and_bodies(tmp_path: Path) -> None:
    with FakeUpstream("openai") as up:
        config = tmp_path / "oneplan.toml"
        config.write_text(
            provider(up) + '[models."m1"]\nprovider = "up"\n[plans.pro]\nrequests_per_5h = 100\n'
            + "[server]\nmax_body_bytes = 1048576\nheader_timeout_seconds = 1\nmax_header_bytes = 16384\n"
        )
        server = ServeProcess(config, tmp_path / "data").start()
        try:
            key = server.cli("users", "create", "alice", "--plan", "pro").stdout.strip()
            huge = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n"
            assert _raw(server.port, huge).startswith(b"HTTP/1.1 431 ")
            t0 = time.monotonic()
            slow = _raw(server.port, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")  # and then nothing
            assert slow.startswith(b"HTTP/1.1 408 ") and time.monotonic() - t0 < 5
            idle = _raw(server.port, b"")  # a connection that never sends a byte is reaped too
            assert idle.startswith(b"HTTP/1.1 408 ")
            big = httpx.post(
                server.url + "/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
                content=b'{"model": "m1", "messages": "' + b"x" * (30 * 2**20) + b'"}', timeout=30,
            )
            assert big.status_code == 413
            assert big.json()["error"]["type"] == "request_too_large"
            assert chat(server.url, key).status_code == 200  # and the server is fine
        finally:
            server.stop()


def _replica_config(path: Path, up: FakeUpstream, redis_url: str, db_url: str, limit: int) -> Path:
    path.write_text(
        provider(up) + '[models."m1"]\nprovider = "up"\n'
        + f"[plans.pro]\nrequests_per_5h = {limit}\n"
        + f'[server]\nredis_url = "{redis_url}"\ndatabase_url = "{db_url}"\nreplica_heartbeat_seconds = 1\n'
    )
    return path


async def _hammer(urls: list[str], key: str, attempts: int, on_answer: Any) -> dict[str, int]:
    outcome = {"ok": 0, "refused": 0, "unavailable": 0, "broken": 0}

    async with httpx.AsyncClient(timeout=30) as client:

        async def one(i: int) -> None:
            url = urls[i % len(urls)]
            for _ in range(200):  # a client that retries 503s, as SDKs do
                try:
                    async with client.stream(
                        "POST", url + "/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
                        json={"model": "m1", "stream": True, "messages": [{"role": "user", "content": "hi"}]},
                    ) as reply:
                        body = (await reply.aread()).decode()
                except httpx.TransportError:
                    outcome["broken"] += 1
                    return
                if reply.status_code == 503:
                    outcome["unavailable"] += 1
                    await asyncio.sleep(0.05)
                    continue
                if reply.status_code == 429:
                    outcome["refused"] += 1
                    return
                assert reply.status_code == 200 and "[DONE]" in body, body[-300:]
                outcome["ok"] += 1
                on_answer(outcome["ok"])
                return

        await asyncio.gather(*(one(i) for i in range(attempts)))
    return outcome


def test_redis_restarted_empty_under_load_two_replicas_neither_bypass_nor_double_count(
    tmp_path: Path, pg_url: str
) -> None:
    limit = 40
    with FakeUpstream("openai") as up, PrivateRedis() as redis:
        up.fault("drip", delay=0.03, rate=1.0, seed=1)  # streams take a while: some are in flight
        config = _replica_config(tmp_path / "oneplan.toml", up, redis.url, pg_url, limit)
        a = ServeProcess(config, tmp_path / "a").start()
        b = ServeProcess(config, tmp_path / "b").start()
        try:
            key = a.cli("users", "create", "alice", "--plan", "pro").stdout.strip()
            for url in (a.url, b.url):  # both replicas know the key (they poll the database)
                deadline = time.monotonic() + 10
                while httpx.get(url + "/v1/models", headers={"authorization": f"Bearer {key}"}).status_code != 200:
                    assert time.monotonic() < deadline
            restarted: list[bool] = []

            def on_answer(count: int) -> None:
                if count == limit // 2 and not restarted:
                    restarted.append(True)
                    redis.kill()
                    redis.start()  # back at once, and empty

            outcome = asyncio.run(_hammer([a.url, b.url], key, limit * 3, on_answer))
            assert restarted
            assert outcome["ok"] == limit, outcome  # not one more (bypass), not one less (double count)
            assert outcome["broken"] == 0
            first, second = chat(a.url, key).status_code, chat(b.url, key).status_code
            assert (first, second) == (429, 429)
            for replica in (a, b):  # both lived throughout: neither had its requests reconciled away
                assert "dead replica" not in replica.printed()
            report = usage_of(a)
            assert report["alice"]["totals"]["charged_requests"] == limit
            (window,) = report["alice"]["windows"]
            assert window["used"] == limit
        finally:
            a.stop()
            b.stop()


def test_sigkill_with_requests_in_flight_then_restart_counters_equal_the_ledger(tmp_path: Path) -> None:
    plan = Plan("pro", requests_per_5h=100)
    with FakeUpstream("openai") as up, PrivateRedis() as redis:
        db_url = f"sqlite:///{tmp_path / 'shared.db'}"
        config = _replica_config(tmp_path / "oneplan.toml", up, redis.url, db_url, 100)
        server = ServeProcess(config, tmp_path / "data").start()
        key = server.cli("users", "create", "alice", "--plan", "pro").stdout.strip()
        for _ in range(3):
            assert chat(server.url, key).status_code == 200
        up.fault("drip", delay=0.5, rate=1.0, seed=2)

        async def in_flight() -> None:
            async with httpx.AsyncClient(timeout=30) as client:
                async def one() -> None:
                    try:
                        async with client.stream(
                            "POST", server.url + "/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
                            json={"model": "m1", "stream": True, "messages": [{"role": "user", "content": "hi"}]},
                        ) as reply:
                            async for _ in reply.aiter_bytes():
                                pass
                    except httpx.TransportError:
                        pass

                tasks = [asyncio.create_task(one()) for _ in range(5)]
                deadline = time.monotonic() + 10
                while up.active < 5:
                    assert time.monotonic() < deadline, "the streams never reached the upstream"
                    await asyncio.sleep(0.02)
                server.kill()  # SIGKILL, five streams in flight
                await asyncio.gather(*tasks)

        asyncio.run(in_flight())
        up.clear_faults()
        again = ServeProcess(config, tmp_path / "data").start()
        try:
            async def redis_used() -> float:
                c = RedisCounters(redis.url, time.time, Periods("UTC"))
                try:
                    return (await c.states(1, plan))[0].used
                finally:
                    await c.aclose()

            deadline = time.monotonic() + 20
            while True:
                ledger_used = usage_of(again)["alice"]["windows"][0]["used"]
                counted = asyncio.run(redis_used())
                if counted == ledger_used:
                    break
                assert time.monotonic() < deadline, f"counters {counted} != ledger {ledger_used}"
                time.sleep(0.2)  # polling another process's reconciliation, with a deadline
            assert ledger_used == 3  # the killed streams never answered: nothing charged
        finally:
            again.stop()
