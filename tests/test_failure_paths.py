"""Failure paths through the real gateway: a malformed upstream answer, a Redis outage, a
client that leaves during Anthropic pings, internal errors after admission. Each must end in
exactly one ledger row, the quota given back (or kept, for an answer that was delivered), and
an error in the caller's protocol - never a 500 for someone else's fault."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import orjson
import pytest

from oneplan.protocols.anthropic import AnthropicProtocol as MessagesExchange
from tests.conftest import catalog_for
from tests.fakes import FakeUpstream
from tests.support.gateway import Gateway, ServerThread
from tests.support.services import PrivateRedis


class BrokenProvider:
    """An OpenAI-compatible endpoint (a real HTTP server) that answers every POST with 200 and
    a body no client could read."""

    def __init__(self, body: Any) -> None:
        self.body = orjson.dumps(body)
        self.calls = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        while (await receive()).get("more_body", False):
            pass
        self.calls += 1
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": self.body})


@pytest.fixture
def broken_up() -> Iterator[ServerThread]:
    server = ServerThread(BrokenProvider({"id": "x", "object": "chat.completion", "choices": [5]}))
    server.start()
    yield server
    server.stop()


def catalog_with_broken(broken_url: str, good: FakeUpstream) -> str:
    return f"""
[providers.broken]
kind = "openai-compatible"
base_url = "{broken_url}/v1"

[providers.good]
kind = "openai-compatible"
base_url = "{good.base_url}"
api_key = "{good.api_key}"

[models."m1"]
provider = "broken"
fallbacks = ["m2"]

[models."m2"]
provider = "good"

[models."solo"]
provider = "broken"

[routing]
retries = 0

[plans.pro]
requests_per_5h = 100
"""


def test_a_malformed_upstream_200_fails_over_or_is_a_502_and_costs_nothing(
    tmp_path: Path, upstream: FakeUpstream, broken_up: ServerThread
) -> None:
    with Gateway(tmp_path, catalog_with_broken(broken_up.url, upstream)) as gw:
        client = openai.OpenAI(base_url=gw.base_url + "/v1", api_key=gw.key, max_retries=0)
        done = client.chat.completions.create(model="m1", messages=[{"role": "user", "content": "hi"}])
        assert done.choices[0].message.content  # the fallback answered
        with pytest.raises(openai.APIStatusError) as failed:
            client.chat.completions.create(model="solo", messages=[{"role": "user", "content": "hi"}])
        assert failed.value.status_code == 502
        assert "could not read" in failed.value.message
        claude = anthropic.Anthropic(base_url=gw.base_url, api_key=gw.key, max_retries=0)
        with pytest.raises(anthropic.APIStatusError) as refused:
            claude.messages.create(model="solo", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
        assert refused.value.status_code == 502
        assert refused.value.body["type"] == "error"  # type: ignore[index]
        rows = gw.ledger()
        assert [r["status"] for r in rows] == ["ok", "failed", "failed"]
        assert rows[1]["error_class"] == "UpstreamError" and rows[1]["weight"] == 0
        assert rows[1]["provider"] == "broken"  # who failed, for errors by provider
        usage = httpx.get(gw.base_url + "/v1/usage", headers={"authorization": f"Bearer {gw.key}"}).json()
        (window,) = usage["users"][0]["windows"]
        assert window["used"] == 1  # only the answered request is charged


def test_an_internal_error_after_admission_settles_and_answers_in_the_callers_shape(
    tmp_path: Path, upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    from oneplan.protocols import responses as rp

    def explode(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("renderer bug")

    with Gateway(tmp_path, catalog_for(upstream)) as gw:
        monkeypatch.setattr(rp, "render_response", explode)
        monkeypatch.setattr(rp, "renderer_for", explode)
        client = openai.OpenAI(base_url=gw.base_url + "/v1", api_key=gw.key, max_retries=0)
        with pytest.raises(openai.InternalServerError) as failed:
            client.responses.create(model="m1", input="hi")
        assert failed.value.body["message"].startswith("Internal error")  # type: ignore[index]
        with pytest.raises(openai.InternalServerError):
            client.responses.create(model="m1", input="hi", stream=True)
        rows = gw.ledger()
        assert [r["status"] for r in rows] == ["failed", "failed"]
        assert all(r["error_class"] == "InternalError:RuntimeError" for r in rows)
        usage = httpx.get(gw.base_url + "/v1/usage", headers={"authorization": f"Bearer {gw.key}"}).json()
        assert usage["users"][0]["windows"][0]["used"] == 0  # both reservations given back


def test_a_stream_that_fails_inside_oneplan_still_ends_with_a_terminal_event(
    tmp_path: Path, upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    from oneplan.protocols.responses.stream import ResponsesStreamRenderer

    original = ResponsesStreamRenderer.feed
    calls = {"n": 0}

    def feed(self: Any, delta: Any) -> bytes:
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyError("bug mid-stream")
        return original(self, delta)

    upstream.reply("one two three four five six")
    with Gateway(tmp_path, catalog_for(upstream)) as gw:
        monkeypatch.setattr(ResponsesStreamRenderer, "feed", feed)
        client = openai.OpenAI(base_url=gw.base_url + "/v1", api_key=gw.key, max_retries=0)
        events = [e.type for e in client.responses.create(model="m1", input="hi", stream=True)]
        assert events[-1] == "response.failed"
        (row,) = gw.ledger()
        assert row["status"] == "failed" and row["error_class"] == "InternalError:KeyError"


def test_a_client_leaving_during_anthropic_pings_settles_once_without_a_race(
    tmp_path: Path, upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(MessagesExchange, "ping_interval", 0.05)
    upstream.reply("slow " * 40)
    upstream.fault("drip", delay=0.4)
    with caplog.at_level(logging.WARNING), Gateway(tmp_path, catalog_for(upstream)) as gw:
        body = {"model": "m1", "max_tokens": 100, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
        headers = {"x-api-key": gw.key, "anthropic-version": "2023-06-01"}
        with httpx.Client(base_url=gw.base_url, timeout=10) as http, http.stream(
            "POST", "/v1/messages", json=body, headers=headers
        ) as reply:
            assert reply.status_code == 200
            seen = ""
            for text in reply.iter_text():
                seen += text
                if "event: ping" in seen:
                    break  # hang up while the upstream is silent between frames
        assert upstream.wait_until(lambda: upstream.cancelled == 1, timeout=10)
        (row,) = gw.ledger()
        assert row["status"] == "cancelled"
    messages = " ".join(r.getMessage() + str(r.exc_info or "") for r in caplog.records)
    assert "already running" not in messages and "Task exception" not in messages


def test_redis_down_is_a_503_in_each_protocol_then_heals_with_exact_counters(
    tmp_path: Path, upstream: FakeUpstream
) -> None:
    with PrivateRedis() as redis:
        catalog = catalog_for(upstream, extra=f'[server]\nredis_url = "{redis.url}"')
        with Gateway(tmp_path, catalog) as gw:
            client = openai.OpenAI(base_url=gw.base_url + "/v1", api_key=gw.key, max_retries=0)
            client.chat.completions.create(model="m1", messages=[{"role": "user", "content": "hi"}])
            redis.kill()
            with pytest.raises(openai.APIStatusError) as down:
                client.chat.completions.create(model="m1", messages=[{"role": "user", "content": "hi"}])
            assert down.value.status_code == 503 and down.value.response.headers["retry-after"]
            claude = anthropic.Anthropic(base_url=gw.base_url, api_key=gw.key, max_retries=0)
            with pytest.raises(anthropic.APIStatusError) as down_anthropic:
                claude.messages.create(model="m1", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
            assert down_anthropic.value.status_code == 503
            assert down_anthropic.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]
            redis.start()  # back, and empty
            for _ in range(3):
                client.chat.completions.create(model="m1", messages=[{"role": "user", "content": "hi"}])
            states = gw.run(gw.state.counters.states(1, gw.catalog.plans["pro"]))
            assert states[0].used == 4  # 1 before the outage (rebuilt from the ledger) + 3 after
            assert [r["status"] for r in gw.ledger()] == ["ok", "ok", "ok", "ok"]


def test_quota_headers_are_exact_integers(tmp_path: Path, upstream: FakeUpstream) -> None:
    plan = "[plans.big]\nrequests_per_5h = 2000000\nrequests_per_month = 90000000"
    with Gateway(tmp_path, catalog_for(upstream, plan=plan)) as gw:
        reply = httpx.post(
            gw.base_url + "/v1/chat/completions", headers={"authorization": f"Bearer {gw.key}"},
            json={"model": "m1", "messages": [{"role": "user", "content": "hi"}]},
        )
        assert reply.status_code == 200
        assert reply.headers["x-oneplan-quota-5h-limit"] == "2000000"
        assert reply.headers["x-oneplan-quota-5h-remaining"] == "1999999"
        assert reply.headers["x-oneplan-quota-month-limit"] == "90000000"

