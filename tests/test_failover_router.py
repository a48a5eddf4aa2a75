"""The router's rules, in-process: circuit breaker states, weights, least-busy, retries and the
deadline. Providers here are scripted stubs; the clock is injected - nothing waits on time except
the (tiny) back-offs the policy asks for."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest

from oneplan.config import CatalogFile
from oneplan.errors import (
    CircuitOpen,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamUnavailable,
)
from oneplan.protocols.canonical import ChatRequest, ChatResult, Delta
from oneplan.providers.base import Provider, ProviderSettings, Target
from oneplan.routing.catalog import build
from oneplan.routing.health import BreakerPolicy
from oneplan.routing.retry import RetryPolicy
from oneplan.routing.router import Router
from tests.support.gateway import ManualClock


class Stub(Provider):
    """Answers, or raises the next scripted error; ``gate`` holds answers back."""

    def __init__(self, name: str) -> None:
        super().__init__(ProviderSettings(name=name, kind="stub", base_url=""))
        self.script: list[UpstreamError] = []
        self.calls = 0
        self.gate: asyncio.Event | None = None

    async def complete(self, request: ChatRequest, target: Target) -> ChatResult:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.script:
            raise self.script.pop(0)
        return ChatResult(id="x", model=target.upstream, created=0, text=self.name)

    async def stream(self, request: ChatRequest, target: Target) -> AsyncIterator[Delta]:
        result = await self.complete(request, target)
        yield Delta(text=result.text)


def router(
    deployments: str, *, clock: ManualClock | None = None, strategy: str = "weighted", **retry: Any
) -> tuple[Router, dict[str, Stub]]:
    file = CatalogFile.model_validate(
        {
            "providers": {n: {"kind": "openai-compatible", "base_url": "http://127.0.0.1:9"} for n in "abc"},
            "models": {"m": {"providers": eval(deployments), "upstream": "u"}},
        }
    )
    catalog = build(file, "test.toml")
    stubs = {n: Stub(n) for n in "abc"}
    r = Router(
        catalog,
        dict(stubs),
        random.Random(1),
        retry=RetryPolicy(**{"retries": 2, "backoff": 0.001, "backoff_max": 0.002, "deadline": 5.0, **retry}),
        breaker=BreakerPolicy(failures=3, cooldown=10.0),
        strategy=strategy,
    )
    if clock is not None:
        r.health.clock = clock
    return r, stubs


def call(r: Router) -> str:
    entry = r.catalog.models["m"]
    result, _served = asyncio.run(r.complete(ChatRequest("m", []), entry, r.catalog.plans["default"]))
    return result.text or ""


def test_the_circuit_opens_fails_fast_probes_once_and_closes() -> None:
    clock = ManualClock(1000.0)
    r, stubs = router('["a"]', clock=clock, retries=0)
    a = stubs["a"]
    a.script = [UpstreamUnavailable("down")] * 3
    for _ in range(3):
        with pytest.raises(UpstreamUnavailable):
            call(r)
    assert a.calls == 3
    with pytest.raises(CircuitOpen) as caught:  # open: the provider is not even asked
        call(r)
    assert a.calls == 3 and caught.value.headers == {"retry-after": "10"} and caught.value.status == 503
    clock.advance(10)

    async def two_at_once() -> list[Any]:
        a.gate = asyncio.Event()
        entry, plan = r.catalog.models["m"], r.catalog.plans["default"]
        probe = asyncio.ensure_future(r.complete(ChatRequest("m", []), entry, plan))
        await asyncio.sleep(0)  # the probe is now waiting on the provider
        second = await asyncio.gather(r.complete(ChatRequest("m", []), entry, plan), return_exceptions=True)
        a.gate.set()
        return [await probe, *second]

    probe, second = asyncio.run(two_at_once())
    assert probe[0].text == "a" and isinstance(second, CircuitOpen)  # one probe only
    a.gate = None
    assert call(r) == "a" and r.health.get("a", "u").state == "closed"


def test_a_failed_probe_opens_the_circuit_again() -> None:
    clock = ManualClock(1000.0)
    r, stubs = router('["a"]', clock=clock, retries=0)
    stubs["a"].script = [UpstreamUnavailable("down")] * 4
    for _ in range(3):
        with pytest.raises(UpstreamUnavailable):
            call(r)
    clock.advance(10)
    with pytest.raises(UpstreamUnavailable):
        call(r)  # the probe
    with pytest.raises(CircuitOpen):
        call(r)
    assert stubs["a"].calls == 4


def test_an_open_deployment_is_skipped_for_its_sibling() -> None:
    r, stubs = router('[{"provider": "a", "weight": 1000}, {"provider": "b", "weight": 0.001}]', clock=ManualClock())
    stubs["a"].script = [UpstreamUnavailable("down")] * 3
    assert [call(r) for _ in range(5)] == ["b"] * 5
    assert stubs["a"].calls == 3  # after three failures in a row it is no longer tried


def test_weights_share_the_traffic() -> None:
    r, _stubs = router('[{"provider": "a", "weight": 3}, {"provider": "b", "weight": 1}]')
    share = Counter(call(r) for _ in range(2000))
    assert 0.70 < share["a"] / 2000 < 0.80


def test_least_busy_prefers_the_idle_deployment() -> None:
    r, _stubs = router('["a", "b"]', strategy="least-busy")
    r.health.get("a", "u").in_flight = 5
    assert Counter(call(r) for _ in range(50)) == {"b": 50}


def test_retries_stop_at_the_deadline_and_pass_the_providers_429_on() -> None:
    r, stubs = router('["a"]', deadline=1.0)
    stubs["a"].script = [UpstreamRateLimited("slow down", upstream_status=429, retry_after=30)]
    with pytest.raises(UpstreamRateLimited) as caught:
        call(r)
    assert stubs["a"].calls == 1 and caught.value.headers == {"retry-after": "30"}


def test_the_last_deployment_is_retried_after_a_back_off() -> None:
    r, stubs = router('["a", "b"]')
    for stub in stubs.values():
        stub.script = [UpstreamUnavailable("down")]
    assert call(r) in ("a", "b")
    assert stubs["a"].calls + stubs["b"].calls == 3  # each once, then the last one again


def test_the_callers_own_mistake_is_not_retried_nor_held_against_the_provider() -> None:
    r, stubs = router('["a", "b"]')
    for stub in stubs.values():
        stub.script = [UpstreamRejected("bad request", upstream_status=400)]
    with pytest.raises(UpstreamRejected):
        call(r)
    assert stubs["a"].calls + stubs["b"].calls == 1
    assert all(h.failures == 0 for h in r.health)
