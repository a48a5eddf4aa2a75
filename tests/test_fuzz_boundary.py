"""Generated malformed requests against a real gateway, on SQLite and on PostgreSQL: no 5xx,
every error in the endpoint's protocol's shape, every 400 naming the field.

Bounded and seeded (about a minute for ~2,100 requests); ``bench/fuzz.py`` runs the same
generators for longer. The generators and the checks are in ``tests/support/fuzz.py``.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, seed, settings

from tests.fakes import FakeUpstream
from tests.support import fuzz
from tests.support.gateway import Gateway
from tests.support.services import postgres_database

# Per database: 2 x (700 + 500) = 2,400 generated requests in all (about 45 s).
INFERENCE_CASES = 700
ADMIN_CASES = 500


def fuzz_catalog(chat: FakeUpstream, messages: FakeUpstream, responses: FakeUpstream, database_url: str | None) -> str:
    server = f'database_url = "{database_url}"\n' if database_url else ""
    return f"""
[server]
responses_retention_days = 1
{server}
[providers.chat]
kind = "openai-compatible"
base_url = "{chat.base_url}"
api_key = "{chat.api_key}"
[providers.anthropic]
kind = "anthropic-compatible"
base_url = "{messages.base_url}"
api_key = "{messages.api_key}"
[providers.responses]
kind = "responses-compatible"
base_url = "{responses.base_url}"
api_key = "{responses.api_key}"

[models."m1"]
provider = "chat"
upstream = "Qwen/Qwen3-8B"
[models."ma"]
provider = "anthropic"
upstream = "claude-up"
[models."mr"]
provider = "responses"
upstream = "gpt-up"

[plans.pro]
requests_per_5h = 10000000
"""


class Target:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        # Headers and body go out in two writes: without TCP_NODELAY each request would wait
        # out the peer's delayed ACK (~40 ms).
        nodelay = httpx.HTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
        self.client = httpx.Client(base_url=gateway.base_url, timeout=60, transport=nodelay)
        self.sent = 0

    def send(self, case: fuzz.Case) -> None:
        key = self.gateway.admin_key if case.path.startswith("/admin/") else self.gateway.key
        headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
        reply = self.client.request(case.method, case.path, content=case.content(), headers=headers)
        self.sent += 1
        fuzz.check(case, reply.status_code, reply.headers.get("content-type", ""), reply.content)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def target(request: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    databases = postgres_database() if request.param == "postgresql" else (url for url in [None])
    url = next(databases)
    try:
        with (
            FakeUpstream(dialect="openai") as chat,
            FakeUpstream(dialect="anthropic") as messages,
            FakeUpstream(dialect="responses") as responses,
        ):
            catalog = fuzz_catalog(chat, messages, responses, url)
            with Gateway(tmp_path_factory.mktemp(request.param), catalog) as gw:
                target = Target(gw)
                yield target
                target.client.close()
    finally:
        databases.close()


def fuzz_settings(examples: int) -> settings:
    return settings(
        max_examples=examples,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
        print_blob=True,
    )


@seed(20261201)
@fuzz_settings(INFERENCE_CASES)
@given(case=fuzz.inference_cases())
def test_inference_endpoints_answer_malformed_requests_in_their_protocol(target: Target, case: fuzz.Case) -> None:
    target.send(case)


@seed(20261202)
@fuzz_settings(ADMIN_CASES)
@given(case=fuzz.admin_cases())
def test_admin_and_stored_response_endpoints_answer_malformed_requests(target: Target, case: fuzz.Case) -> None:
    target.send(case)


def test_seeds_are_valid_requests(tmp_path: Path) -> None:
    """Every seed the mutations start from is answered 200: the fuzz starts from the real thing."""
    with (
        FakeUpstream(dialect="openai") as chat,
        FakeUpstream(dialect="anthropic") as messages,
        FakeUpstream(dialect="responses") as responses,
        Gateway(tmp_path, fuzz_catalog(chat, messages, responses, None)) as gw,
        httpx.Client(base_url=gw.base_url, timeout=30) as client,
    ):
        headers = {"authorization": f"Bearer {gw.key}"}
        for path, seeds in [
            ("/v1/chat/completions", fuzz.CHAT),
            ("/v1/messages", fuzz.MESSAGES),
            ("/v1/messages/count_tokens", fuzz.COUNT_TOKENS),
            ("/v1/responses", fuzz.RESPONSES[:2]),
        ]:
            for body in seeds:
                reply = client.post(path, json=body, headers=headers)
                assert reply.status_code == 200, (path, body, reply.text)
        admin = {"authorization": f"Bearer {gw.admin_key}"}
        assert client.post("/admin/users", json=fuzz.ADMIN_USER, headers=admin).status_code == 201
        assert client.post("/admin/keys", json=fuzz.ADMIN_KEY, headers=admin).status_code == 201
