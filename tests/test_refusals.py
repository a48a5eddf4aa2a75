"""Refusals that agents understand, in each protocol: ``x-should-retry``, OpenAI's
``insufficient_quota`` for a plan window that frees up in hours, ``retry-after`` and the quota
headers on every 429, Anthropic's ``rate_limit_error`` with ``anthropic-ratelimit-*``.

Through the real gateway and the real SDKs: the SDKs' own retry logic is what agents run on.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from tests.conftest import catalog_for
from tests.fakes import FakeUpstream
from tests.support.gateway import Gateway, ManualClock

T0 = datetime(2026, 11, 18, 12, 0, 0, tzinfo=UTC).timestamp()
CHAT = {"model": "m1", "messages": [{"role": "user", "content": "hi"}]}
MESSAGES = {"model": "m1", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}
RESPONSES = {"model": "m1", "input": "hi"}
ENDPOINTS = [
    pytest.param("/v1/chat/completions", CHAT, id="chat"),
    pytest.param("/v1/messages", MESSAGES, id="messages"),
    pytest.param("/v1/responses", RESPONSES, id="responses"),
]


def post(gw: Gateway, path: str, body: dict, key: str | None = None) -> httpx.Response:
    return httpx.post(
        gw.base_url + path, json=body, headers={"authorization": f"Bearer {key or gw.key}"}, timeout=30
    )


@pytest.fixture
def gateway(tmp_path: Path, upstream: FakeUpstream):
    plan = '[plans.pro]\nrequests_per_5h = 2\nmodels = ["m1"]\n[plans.other]\nrequests_per_5h = 9\nmodels = ["m2"]'
    extra = '[models."m2"]\nprovider = "up"\n[routing]\nretries = 0'
    with Gateway(tmp_path, catalog_for(upstream, plan=plan, extra=extra), clock=ManualClock(T0)) as gw:
        yield gw


@pytest.mark.parametrize(("path", "body"), ENDPOINTS)
@pytest.mark.parametrize(
    ("change", "status"),
    [
        ({"key": "sk-op-not-a-real-key"}, 401),
        ({"model": "m2"}, 403),
        ({"model": "no-such-model"}, 404),
        ({"model": ""}, 400),
    ],
    ids=["bad-key", "not-in-plan", "no-model", "bad-request"],
)
def test_client_mistakes_say_do_not_retry(gateway: Gateway, path: str, body: dict, change: dict, status: int) -> None:
    key = change.get("key")
    sent = {**body, **{k: v for k, v in change.items() if k != "key"}}
    resp = post(gateway, path, sent, key=key)
    assert resp.status_code == status, resp.text
    assert resp.headers["x-should-retry"] == "false"


def test_an_exhausted_window_is_insufficient_quota_with_the_numbers(gateway: Gateway, upstream: FakeUpstream) -> None:
    for _ in range(2):
        assert post(gateway, "/v1/chat/completions", CHAT).status_code == 200
    gateway.clock.advance(60)
    resp = post(gateway, "/v1/chat/completions", CHAT)
    assert resp.status_code == 429
    error = resp.json()["error"]
    assert error["type"] == "insufficient_quota" and error["code"] == "insufficient_quota"
    # The window's name, used/limit and when it frees up stay in the message.
    assert "5-hour request quota" in error["message"] and "(2/2)" in error["message"]
    assert "2026-11-18 17:00:00 UTC" in error["message"]
    headers = resp.headers
    assert headers["x-should-retry"] == "false"
    assert headers["retry-after"] == str(5 * 3600 - 60)
    assert headers["x-oneplan-quota-5h-limit"] == "2"
    assert headers["x-oneplan-quota-5h-remaining"] == "0"
    assert headers["x-oneplan-quota-5h-reset"] == str(int(T0 + 5 * 3600))
    assert headers["x-ratelimit-limit-requests"] == "2"
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert headers["x-ratelimit-reset-requests"] == "4h59m0s"

    # The OpenAI SDK does not retry it (it would, 2 more times, on a plain 429).
    client = openai.OpenAI(base_url=f"{gateway.base_url}/v1", api_key=gateway.key, max_retries=2)
    before = len(upstream.requests)
    refused_before = sum(1 for r in gateway.ledger() if r["status"] == "refused")
    with pytest.raises(openai.RateLimitError) as raised:
        client.chat.completions.create(**CHAT)
    assert raised.value.code == "insufficient_quota"
    assert sum(1 for r in gateway.ledger() if r["status"] == "refused") == refused_before + 1
    assert len(upstream.requests) == before

    # Responses: the same decision in its shape.
    resp = post(gateway, "/v1/responses", RESPONSES)
    assert resp.status_code == 429 and resp.json()["error"]["code"] == "insufficient_quota"
    assert resp.headers["x-should-retry"] == "false" and resp.headers["x-oneplan-quota-5h-remaining"] == "0"


def test_anthropic_refusal_is_rate_limit_error_with_its_headers(gateway: Gateway) -> None:
    for _ in range(2):
        assert post(gateway, "/v1/messages", MESSAGES).status_code == 200
    client = anthropic.Anthropic(base_url=gateway.base_url, api_key=gateway.key, max_retries=3)
    with pytest.raises(anthropic.RateLimitError) as raised:
        client.messages.create(**MESSAGES)
    assert raised.value.body["error"]["type"] == "rate_limit_error"
    assert "5-hour request quota" in raised.value.message
    headers = raised.value.response.headers
    assert headers["x-should-retry"] == "false"
    assert headers["anthropic-ratelimit-requests-limit"] == "2"
    assert headers["anthropic-ratelimit-requests-remaining"] == "0"
    assert headers["anthropic-ratelimit-requests-reset"] == "2026-11-18T17:00:00Z"
    assert headers["retry-after"] == str(5 * 3600)
    # One request reached oneplan: the SDK honoured x-should-retry (max_retries=3).
    assert sum(1 for r in gateway.ledger() if r["status"] == "refused") == 1


def test_a_short_wait_stays_retryable(gateway: Gateway) -> None:
    assert post(gateway, "/v1/chat/completions", CHAT).status_code == 200
    gateway.clock.advance(5 * 3600 - 120)  # the first request frees its slot in 120 s
    assert post(gateway, "/v1/chat/completions", CHAT).status_code == 200
    resp = post(gateway, "/v1/chat/completions", CHAT)
    assert resp.status_code == 429
    assert resp.json()["error"]["code"] == "rate_limit_exceeded"
    assert resp.json()["error"]["type"] == "rate_limit_error"
    assert resp.headers["x-should-retry"] == "true"
    assert resp.headers["retry-after"] == "120"
    assert resp.headers["x-oneplan-quota-5h-remaining"] == "0"


def test_an_upstream_429_carries_retry_after_and_the_quota_headers(gateway: Gateway, upstream: FakeUpstream) -> None:
    upstream.fault("429", times=10, retry_after=30)
    resp = post(gateway, "/v1/chat/completions", CHAT)
    assert resp.status_code == 429, resp.text
    assert resp.headers["retry-after"] == "30"
    assert resp.headers["x-should-retry"] == "true"
    assert "x-oneplan-quota-5h-limit" in resp.headers


def test_a_window_no_wait_can_free_is_not_retryable(tmp_path: Path, upstream: FakeUpstream) -> None:
    plan = "[plans.pro]\nrequests_per_5h = 0"
    with Gateway(tmp_path, catalog_for(upstream, plan=plan), clock=ManualClock(T0)) as gw:
        resp = post(gw, "/v1/chat/completions", CHAT)
    assert resp.status_code == 429
    assert resp.json()["error"]["code"] == "insufficient_quota"
    assert resp.headers["x-should-retry"] == "false"
