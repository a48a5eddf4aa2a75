"""A bounded soak: thousands of requests at high concurrency with faults injected at random,
through the real gateway with the official openai SDK. What must hold at the end:

* every client got a well-formed success or a well-formed error - nothing hung, nothing was cut
  short silently;
* one ledger row per request; the tokens in the ledger equal the tokens the fakes reported for
  the answers that reached clients whole; the quota counters equal the ledger;
* memory does not keep growing: the second half of the run adds (almost) nothing.
"""

from __future__ import annotations

import asyncio
import gc
import os
import random
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.fakes import FakeUpstream
from tests.support.gateway import Gateway

REQUESTS = int(os.environ.get("ONEPLAN_SOAK_REQUESTS", "2000"))
CONCURRENCY = 100
TEXT = "one two three four five six seven eight"


def provider(name: str, up: FakeUpstream) -> str:
    return f"""
[providers.{name}]
kind = "dashscope"
base_url = "{up.base_url}"
api_key = "{up.api_key}"
[providers.{name}.timeouts]
connect = 2
first_token = 5
idle = 5
"""


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs /proc for RSS")
def test_soak_with_faults_keeps_the_ledger_exact(tmp_path: Path) -> None:
    with FakeUpstream("dashscope") as a, FakeUpstream("dashscope") as b, FakeUpstream("dashscope") as solo:
        # 20% of requests meet a fault somewhere: before the first byte (retried or failed over)
        # or after it (the client's stream ends with an error).
        a.fault("500", rate=0.2, seed=1)
        b.fault("drop_mid_stream", after=4, rate=0.1, seed=2)
        solo.fault("429", rate=0.2, seed=3)
        for up in (a, b, solo):
            up.reply(TEXT, times=REQUESTS * 2)
        toml = (
            """
[routing]
strategy = "least-busy"
retries = 1
backoff_seconds = 0.01
backoff_max_seconds = 0.02
circuit_failures = 1000
"""
            + provider("qwen-a", a)
            + provider("qwen-b", b)
            + provider("solo", solo)
            + """
[models."pair"]
providers = ["qwen-a", "qwen-b"]
upstream = "qwen3.5-plus"
input_price = 1.0
output_price = 2.0

[models."single"]
provider = "solo"
upstream = "qwen3.5-plus"

[plans.pro]
requests_per_month = 1000000
tokens_per_month = 1000000000
models = ["*"]
"""
        )
        with Gateway(tmp_path, toml) as gw:
            outcomes: Counter[str] = Counter()
            rng = random.Random(7)

            async def one(client: openai.AsyncOpenAI, sem: asyncio.Semaphore) -> None:
                model = "pair" if rng.random() < 0.7 else "single"
                stream = rng.random() < 0.5
                messages: Any = [{"role": "user", "content": "hello"}]
                async with sem:
                    try:
                        if stream:
                            text, finish = "", None
                            async for chunk in await client.chat.completions.create(
                                model=model, messages=messages, stream=True
                            ):
                                if chunk.choices:
                                    text += chunk.choices[0].delta.content or ""
                                    finish = chunk.choices[0].finish_reason or finish
                            assert (text, finish) == (TEXT, "stop"), (text, finish)
                        else:
                            done = await client.chat.completions.create(model=model, messages=messages)
                            assert done.choices[0].message.content == TEXT
                        outcomes["ok"] += 1
                    except openai.APIStatusError as exc:
                        assert isinstance(exc.body, dict) and exc.body.get("message"), exc.body
                        outcomes[f"http {exc.status_code}"] += 1
                    except openai.APIError as exc:  # an error event inside a stream
                        assert "mid-stream" in exc.message, exc.message
                        outcomes["stream error"] += 1

            async def run(n: int) -> None:
                sem = asyncio.Semaphore(CONCURRENCY)
                limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
                async with httpx.AsyncClient(limits=limits, timeout=30) as http:
                    client = openai.AsyncOpenAI(
                        base_url=gw.base_url + "/v1", api_key=gw.key, max_retries=0, http_client=http
                    )
                    await asyncio.wait_for(asyncio.gather(*(one(client, sem) for _ in range(n))), 120)

            half = REQUESTS // 2
            asyncio.run(run(half))
            for up in (a, b, solo):
                up.requests.clear()  # the fakes' own record of requests is not the gateway's memory
            gc.collect()
            rss_first = rss_mb()
            asyncio.run(run(REQUESTS - half))
            for up in (a, b, solo):
                up.requests.clear()
            gc.collect()
            rss_second = rss_mb()

            rows = gw.ledger()
            user = gw.state.db.get_user("alice")
            assert user is not None
            states = {s.window: s.used for s in gw.run(gw.state.counters.states(user.id, gw.catalog.plans["pro"]))}

        print(f"\noutcomes {dict(outcomes)}; RSS {rss_first:.1f} -> {rss_second:.1f} MB")
        assert sum(outcomes.values()) == REQUESTS
        assert outcomes["ok"] > REQUESTS * 0.8
        assert len(rows) == REQUESTS
        by_status = Counter(r["status"] for r in rows)
        assert by_status["ok"] == outcomes["ok"]
        assert by_status["failed"] == REQUESTS - outcomes["ok"]
        ok = [r for r in rows if r["status"] == "ok"]
        served = sum(up.served_tokens.total for up in (a, b, solo))
        assert sum(r["input_tokens"] + r["output_tokens"] for r in ok) == served
        assert sum(r["input_tokens"] + r["output_tokens"] for r in rows if r["status"] != "ok") == 0
        assert states["month"] == sum(r["weight"] for r in rows) == len(ok)
        assert states["tokens_month"] == served
        assert rss_second - rss_first < 15, f"RSS grew {rss_second - rss_first:.1f} MB in the second half"
