"""Wiring for tests that drive a provider against a fake upstream (canonical in, canonical out)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from oneplan.protocols.canonical import Accumulator, ChatRequest, ChatResult, Delta
from oneplan.providers.base import Provider, ProviderSettings, Target, Timeouts, provider_class
from tests.fakes.upstream import FakeUpstream

FAST = Timeouts(connect=2.0, first_token=5.0, idle=5.0, total=10.0)
SHORT = Timeouts(connect=1.0, first_token=0.3, idle=0.3, total=2.0)
# provider kind -> (its fake dialect, a current model of that provider)
KINDS = {
    "dashscope": ("dashscope", "qwen3.5-plus"),
    "zhipu": ("zhipu", "glm-5"),
    "moonshot": ("moonshot", "kimi-k2.5"),
    "minimax": ("minimax", "MiniMax-M2.5"),
    "openai-compatible": ("openai", "qwen3-32b"),
}


def make_provider(
    kind: str,
    up: FakeUpstream,
    *,
    timeouts: Timeouts = FAST,
    api_key: str | None = None,
    **options: Any,
) -> Provider:
    settings = ProviderSettings(
        name=f"{kind}-test",
        kind=kind,
        base_url=up.base_url,
        api_key=api_key or up.api_key,
        timeouts=timeouts,
        options=options,
    )
    return provider_class(kind)(settings)


def request(model: str, text: str = "hello", **kwargs: Any) -> ChatRequest:
    return ChatRequest(model=model, messages=[{"role": "user", "content": text}], **kwargs)


def target(model: str) -> Target:
    return Target(model=model, upstream=model)


async def collect(provider: Provider, req: ChatRequest) -> tuple[list[Delta], ChatResult]:
    """Stream an answer and fold it the way the gateway meters it."""
    deltas: list[Delta] = []
    acc = Accumulator()
    async for delta in provider.stream(req, target(req.model)):
        deltas.append(delta)
        acc.add(delta)
    return deltas, acc.result(id="x", model=req.model, created=0)


@asynccontextmanager
async def wired(
    kind: str, *, timeouts: Timeouts = FAST, **options: Any
) -> AsyncIterator[tuple[FakeUpstream, Provider]]:
    """A fake speaking the kind's dialect and a provider of that kind pointed at it."""
    with FakeUpstream(KINDS[kind][0]) as up:
        provider = make_provider(kind, up, timeouts=timeouts, **options)
        try:
            yield up, provider
        finally:
            await provider.aclose()
