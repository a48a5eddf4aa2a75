"""Shared fixtures: fake upstreams and a gateway in front of them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes import FakeUpstream
from tests.support.gateway import Gateway

# Provider kind -> fake dialect.
KINDS = {
    "openai-compatible": "openai",
    "dashscope": "dashscope",
    "zhipu": "zhipu",
    "moonshot": "moonshot",
    "minimax": "minimax",
}


DEFAULT_PLAN = "[plans.pro]\nrequests_per_5h = 1000"


# A realistic upstream model per kind (fakes behave per model, like the real providers).
UPSTREAM_MODELS = {
    "openai-compatible": "Qwen/Qwen3-8B",
    "dashscope": "qwen3.5-plus",
    "zhipu": "glm-5",
    "moonshot": "kimi-k2.5",
    "minimax": "MiniMax-M2.5",
}


def catalog_for(
    up: FakeUpstream, kind: str = "openai-compatible", *, plan: str = DEFAULT_PLAN, extra: str = "",
    upstream: str = "up-model-1",
) -> str:
    return f"""
[providers.up]
kind = "{kind}"
base_url = "{up.base_url}"
api_key = "{up.api_key}"

[models."m1"]
provider = "up"
upstream = "{upstream}"
input_price = 2.0
output_price = 8.0

{plan}
{extra}
"""


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream(dialect="openai") as up:
        yield up


@pytest.fixture
def gateway(tmp_path: Path, upstream: FakeUpstream) -> Iterator[Gateway]:
    with Gateway(tmp_path, catalog_for(upstream)) as gw:
        yield gw


def _loopback_only() -> None:
    """No test may reach past this machine: a connect to anything but loopback fails loudly
    (a real provider, a telemetry endpoint, a mistyped URL)."""
    import ipaddress
    import socket

    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def check(sock: socket.socket, address: object) -> None:
        if sock.family not in (socket.AF_INET, socket.AF_INET6) or not isinstance(address, tuple):
            return
        host = str(address[0])
        try:
            allowed = ipaddress.ip_address(host.split("%")[0]).is_loopback
        except ValueError:
            allowed = host == "localhost"
        if not allowed:
            raise AssertionError(f"a test tried to connect to {host}: tests talk to 127.0.0.1 only")

    def connect(self: socket.socket, address: object) -> None:
        check(self, address)
        real_connect(self, address)  # type: ignore[arg-type]

    def connect_ex(self: socket.socket, address: object) -> int:
        check(self, address)
        return real_connect_ex(self, address)  # type: ignore[arg-type]

    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]


_loopback_only()
