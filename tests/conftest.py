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
