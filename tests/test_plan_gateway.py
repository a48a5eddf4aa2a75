"""Plans through the gateway with the official SDKs: a worst case lowered to fit is told in a
header and honoured upstream, a stream that runs past its reservation ends as the protocol's
length stop, concurrency frees as each request ends (an agent's back-to-back requests are never
refused), and the IETF RateLimit fields describe every window."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from tests.fakes import FakeUpstream
from tests.support.gateway import Gateway

LONG = " ".join(f"w{n}" for n in range(300))


def catalog(up: FakeUpstream, kind: str, dialect: str, plan: str) -> str:
    return f"""
[providers.up]
kind = "{kind}"
dialect = "{dialect}"
base_url = "{up.base_url}"
api_key = "{up.api_key}"

[models."m1"]
provider = "up"
input_price = 1.0
output_price = 2.0
credits = {{ input = 1, output = 2 }}

[aliases]
"claude-*" = "m1"

{plan}
"""


@pytest.fixture(params=[("openai-compatible", "openai", "openai"), ("anthropic-compatible", "anthropic", "anthropic")],
                ids=["openai-upstream", "anthropic-upstream"])
def upstream(request: pytest.FixtureRequest) -> Iterator[tuple[FakeUpstream, str, str]]:
    kind, dialect, fake = request.param
    with FakeUpstream(dialect=fake) as up:
        yield up, kind, dialect


def test_a_lowered_max_tokens_is_told_and_sent_and_a_runaway_stream_ends_as_max_tokens(
    tmp_path: Path, upstream: tuple[FakeUpstream, str, str]
) -> None:
    up, kind, dialect = upstream
    plan = '[plans.pro]\nwindows = [{ unit = "credits", kind = "rolling", length = "5h", limit = 400, name = "cr" }]'
    up.respond(lambda _body: {"text": LONG})  # 300 words, whatever max_tokens says
    with Gateway(tmp_path, catalog(up, kind, dialect, plan)) as gw:
        client = anthropic.Anthropic(base_url=gw.base_url, api_key=gw.key, max_retries=0)
        with client.messages.with_streaming_response.create(
            model="claude-sonnet-4-5", max_tokens=4096, stream=True,
            messages=[{"role": "user", "content": "write a lot"}],
        ) as raw:
            lowered = raw.headers["x-oneplan-max-tokens-lowered"]
            events = list(anthropic.Stream(cast_to=object, response=raw.http_response, client=client))  # type: ignore[arg-type]
        # 400 credits: the body's bytes (input, 1 each) and the rest for output at 2 each.
        granted = int(lowered.split(" to ")[1].split(":")[0])
        assert lowered.startswith("4096 to ") and "cr" in lowered and 0 < granted < 250
        sent = up.last.json
        assert sent["max_tokens"] == granted
        stop = [e for e in events if getattr(e, "type", None) == "message_delta" or (isinstance(e, dict) and e.get("type") == "message_delta")]
        assert stop, events
        delta = stop[-1] if isinstance(stop[-1], dict) else stop[-1].model_dump()
        assert delta["delta"]["stop_reason"] == "max_tokens"
        rows = [r for r in gw.ledger() if r["status"] == "ok"]
        assert rows[-1]["output_tokens"] == granted
        assert rows[-1]["credits"] <= 400


def test_openai_stream_past_its_reservation_ends_with_finish_reason_length(tmp_path: Path) -> None:
    with FakeUpstream(dialect="openai") as up:
        up.respond(lambda _body: {"text": LONG})
        plan = "[plans.pro]\ntokens_per_month = 1000000"
        with Gateway(tmp_path, catalog(up, "openai-compatible", "openai", plan)) as gw:
            client = openai.OpenAI(base_url=f"{gw.base_url}/v1", api_key=gw.key, max_retries=0)
            stream = client.chat.completions.create(
                model="m1", max_tokens=50, stream=True, messages=[{"role": "user", "content": "go"}],
                stream_options={"include_usage": True},
            )
            chunks = list(stream)
            finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
            assert finishes == ["length"]
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            assert len(text.split()) <= 51  # not the 300 words the upstream kept sending
            assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 50


def test_back_to_back_requests_under_a_concurrency_limit_of_one_are_never_refused(tmp_path: Path) -> None:
    with FakeUpstream(dialect="openai") as up:
        plan = "[plans.pro]\nconcurrency = 1\nrequests_per_5h = 1000"
        with Gateway(tmp_path, catalog(up, "openai-compatible", "openai", plan)) as gw:
            client = openai.OpenAI(base_url=f"{gw.base_url}/v1", api_key=gw.key, max_retries=0)
            for i in range(10):  # an agent's loop: each request starts as the previous one ends
                if i % 2:
                    list(client.chat.completions.create(model="m1", stream=True, messages=[{"role": "user", "content": "x"}]))
                else:
                    client.chat.completions.create(model="m1", messages=[{"role": "user", "content": "x"}])
            up.fault("drip", delay=0.2, times=1)

            async def two() -> list[int]:
                async with httpx.AsyncClient(timeout=30) as http:
                    body = {"model": "m1", "stream": True, "messages": [{"role": "user", "content": "x"}]}
                    auth = {"authorization": f"Bearer {gw.key}"}
                    slow = asyncio.create_task(http.post(f"{gw.base_url}/v1/chat/completions", json=body, headers=auth))
                    await asyncio.to_thread(up.wait_until, lambda: up.active == 1)
                    fast = await http.post(f"{gw.base_url}/v1/chat/completions", json=body, headers=auth)
                    assert "requests in flight" in fast.json()["error"]["message"]
                    return [(await slow).status_code, fast.status_code]

            assert asyncio.run(two()) == [200, 429]


def test_every_window_is_described_by_the_ietf_ratelimit_fields(tmp_path: Path) -> None:
    with FakeUpstream(dialect="openai") as up:
        plan = (
            "[plans.pro]\nrequests_per_5h = 100\nrequests_per_minute = 10\n"
            'windows = [{ unit = "tokens", kind = "calendar", length = "day", limit = 100000, name = "daily" }]'
        )
        with Gateway(tmp_path, catalog(up, "openai-compatible", "openai", plan)) as gw:
            r = httpx.post(f"{gw.base_url}/v1/chat/completions", headers={"authorization": f"Bearer {gw.key}"},
                           json={"model": "m1", "max_tokens": 100, "messages": [{"role": "user", "content": "x"}]})
            assert r.status_code == 200
            policy = r.headers["ratelimit-policy"]
            assert '"5h";q=100;w=18000;qu="requests"' in policy
            assert '"rpm";q=10;w=60;qu="requests"' in policy
            assert '"daily";q=100000;w=86400;qu="tokens"' in policy
            limits = dict(item.split(";", 1) for item in r.headers["ratelimit"].split(", "))
            assert limits['"5h"'].startswith("r=99;t=") and limits['"rpm"'].startswith("r=9;t=")
            assert int(limits['"daily"'].split(";")[0][2:]) < 100000  # the real usage was charged


def test_an_anniversary_month_resets_on_the_users_renewal_date(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from tests.support.gateway import ManualClock

    clock = ManualClock(datetime(2027, 2, 10, 12, 0, tzinfo=UTC).timestamp())
    with FakeUpstream(dialect="openai") as up:
        plan = '[plans.pro]\nwindows = [{ unit = "requests", kind = "anniversary", length = "month", limit = 5, name = "monthly" }]'
        with Gateway(tmp_path, catalog(up, "openai-compatible", "openai", plan), clock=clock) as gw:
            admin = httpx.Client(base_url=gw.base_url, headers={"authorization": f"Bearer {gw.admin_key}"}, timeout=30)
            made = admin.post("/admin/users", json={"name": "bob", "plan": "pro", "subscribed_at": "2026-10-31T08:00:00Z"})
            assert made.status_code in (200, 201), made.text
            key = admin.post("/admin/keys", json={"user": "bob"}).json()["key"]
            r = httpx.post(f"{gw.base_url}/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
                           json={"model": "m1", "messages": [{"role": "user", "content": "x"}]})
            assert r.status_code == 200, r.text
            # Subscribed on Oct 31: February's period ends on its last day, at the same hour.
            assert r.headers["x-oneplan-quota-monthly-reset"] == str(int(datetime(2027, 2, 28, 8, 0, tzinfo=UTC).timestamp()))
            assert r.headers["x-oneplan-quota-monthly-remaining"] == "4"
            usage = httpx.get(f"{gw.base_url}/v1/usage", headers={"authorization": f"Bearer {key}"}).json()
            monthly = next(w for w in usage["users"][0]["windows"] if w["window"] == "monthly")
            assert monthly["used"] == 1 and monthly["resets_at"] == datetime(2027, 2, 28, 8, 0, tzinfo=UTC).timestamp()
