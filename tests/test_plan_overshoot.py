"""Zero overshoot through the gateway: 300 concurrent streaming requests against a budget with
room for 40 requests' worst case, in one process and across two replicas sharing Redis and
PostgreSQL. The upstream ignores ``max_tokens`` (it streams 400 words whatever is asked), so the
gateway must end each stream where its reservation ends. Whatever is spent stays within the
limit, every refused request is told which window and why, every shortened one is told it was.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from oneplan.config import CatalogFile
from oneplan.routing.catalog import build
from oneplan.server.app import create_app
from oneplan.server.gateway import Gateway as GatewayState
from oneplan.store.db import Database
from tests.fakes import FakeUpstream
from tests.support.gateway import ServerThread
from tests.support.services import postgres_database, require_redis

MAX_TOKENS = 200
WORDS = 400
# Per unit: the model's figures and what one request's worst case costs (input bound: the
# body's bytes at the dearest input class, output: max_tokens at the output rate).
CREDITS = {"input": 1.0, "cached_input": 0.1, "cache_write": 1.25, "output": 4.0}


def body(i: int) -> bytes:
    return orjson.dumps({
        "model": "m1", "stream": True, "max_tokens": MAX_TOKENS,
        "messages": [{"role": "user", "content": f"question {i:04d}"}],
    })


SIZE = len(body(0))


def worst(unit: str) -> float:
    return {
        "credits": SIZE * 1.25 + MAX_TOKENS * 4.0,
        "tokens": SIZE + MAX_TOKENS,
        "cost": (SIZE * 2.0 + MAX_TOKENS * 8.0) / 1e6,
    }[unit]


def catalog(up: FakeUpstream, unit: str, server: str = "") -> str:
    limit = worst(unit) * 40 + worst(unit) / 3
    credits = ", ".join(f"{k} = {v}" for k, v in CREDITS.items())
    return f"""
[providers.up]
kind = "openai-compatible"
base_url = "{up.base_url}"
api_key = "{up.api_key}"

[models."m1"]
provider = "up"
input_price = 2.0
output_price = 8.0
credits = {{ {credits} }}

[plans.glm]
windows = [{{ unit = "{unit}", kind = "rolling", length = "5h", limit = {limit!r}, name = "budget" }}]
min_output_tokens = {MAX_TOKENS}

[server]
{server}
"""


class Replicas:
    """One or two gateways on the same database (and Redis), a user 'alice' on plan glm."""

    def __init__(self, tmp_path: Path, toml: str, count: int) -> None:
        import tomllib

        self.catalog = build(CatalogFile.model_validate(tomllib.loads(toml)), "test.toml")
        db = Database.open(tmp_path / "r0", self.catalog.server.database_url)
        _user, _key, self.key = db.create_user("alice", "glm")
        db.close()
        self.states = [GatewayState(self.catalog, tmp_path / f"r{i}") for i in range(count)]
        self.threads = [ServerThread(create_app(s)) for s in self.states]

    def __enter__(self) -> Replicas:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        for t in self.threads:
            t.stop()

    @property
    def urls(self) -> list[str]:
        return [t.url for t in self.threads]

    def ledger(self) -> list[dict[str, Any]]:
        for state, thread in zip(self.states, self.threads, strict=True):
            assert thread.loop is not None
            asyncio.run_coroutine_threadsafe(state.ledger.flush(), thread.loop).result(30)
        return self.states[0].db.ledger_rows()


@pytest.fixture(params=["one process", "two replicas on Redis"])
def deployment(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param == "one process":
        yield ""
        return
    require_redis()
    gen = postgres_database()
    url = next(gen)
    import secrets

    yield f'redis_url = "redis://127.0.0.1:6379/0"\nredis_prefix = "over-{secrets.token_hex(4)}"\ndatabase_url = "{url}"'
    next(gen, None)


@pytest.mark.parametrize("unit", ["credits", "tokens", "cost"])
def test_300_concurrent_streams_never_spend_past_the_budget(tmp_path: Path, deployment: str, unit: str) -> None:
    with ExitStack() as stack:
        up = stack.enter_context(FakeUpstream(dialect="openai"))
        up.respond(lambda _body: {"text": " ".join(f"w{n}" for n in range(WORDS))})
        gw = stack.enter_context(Replicas(tmp_path, catalog(up, unit, deployment), 2 if deployment else 1))
        limit = worst(unit) * 40 + worst(unit) / 3

        async def burst() -> list[tuple[int, dict[str, str], str]]:
            async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=300)) as http:
                async def one(i: int) -> tuple[int, dict[str, str], str]:
                    url = gw.urls[i % len(gw.urls)]
                    r = await http.post(f"{url}/v1/chat/completions", content=body(i), headers={
                        "authorization": f"Bearer {gw.key}", "content-type": "application/json",
                    })
                    return r.status_code, dict(r.headers), r.text
                return await asyncio.gather(*(one(i) for i in range(300)))

        results = asyncio.run(burst())
        ok = [r for r in results if r[0] == 200]
        refused = [r for r in results if r[0] == 429]
        assert len(ok) + len(refused) == 300
        assert len(ok) == 40  # exactly the worst cases that fit
        for _status, _headers, text in refused:
            message = orjson.loads(text)["error"]["message"]
            assert "budget" in message and ("used up" in message or "lower max_tokens" in message)
        for _status, _headers, text in ok:
            frames = [orjson.loads(line[6:]) for line in text.splitlines() if line.startswith("data: {")]
            finishes = [c["finish_reason"] for f in frames for c in f.get("choices", []) if c.get("finish_reason")]
            assert finishes == ["length"]  # ended where the reservation ended, as a length stop
        rows = [r for r in gw.ledger() if r["status"] == "ok"]
        assert len(rows) == 40 and all(r["output_tokens"] == MAX_TOKENS for r in rows)
        spent = sum({
            "credits": r["credits"], "tokens": r["input_tokens"] + r["output_tokens"], "cost": r["cost"],
        }[unit] for r in rows)
        overshoot = max(0.0, spent - limit)
        print(f"\n{(deployment and 'two replicas') or 'one process'} {unit}: 40 of 300 admitted, "
              f"spent {spent:.6g} of {limit:.6g}: overshoot {overshoot}")
        assert overshoot == 0
