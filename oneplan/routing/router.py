"""Choosing where a request goes, and trying the next place when one fails.

Candidates, in order: the model's deployments, then each fallback model the caller's plan
includes, with its deployments. Within a model the order is weighted-random (or least-busy), with
deployments cooling off after a 429 last; deployments whose circuit is open are skipped
(``health.py``). A failure before the first byte reached the client moves on to the next
candidate, or retries the last one after a back-off (``retry.py``); after that first byte the
stream belongs to the client and a failure ends it.

The hot path - one healthy deployment, no fault - costs a dictionary lookup, a few attribute
updates on the deployment's health and, for streams, one generator around the upstream's.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import quote

from oneplan.errors import CircuitOpen, OneplanError, UpstreamError
from oneplan.metering.plans import Plan
from oneplan.protocols.canonical import ChatRequest, ChatResult, Delta
from oneplan.providers.base import Provider, Target
from oneplan.routing.catalog import Catalog, Deployment, ModelEntry
from oneplan.routing.health import BreakerPolicy, DeploymentHealth, Health
from oneplan.routing.retry import RetryPolicy

T = TypeVar("T")
STRATEGIES = ("weighted", "least-busy")


def unreadable(provider: str, exc: BaseException) -> UpstreamError:
    """The boundary's mapping for anything a provider raised outside the error tree: an answer
    oneplan could not read (a 200 whose ``choices[0]`` is not an object, a broken event...) is
    the provider's failure - a 502 that fails over - never a 500."""
    return UpstreamError(
        f"The provider '{provider}' sent an answer oneplan could not read ({type(exc).__name__})."
    )


@dataclass(slots=True)
class Served:
    """Who answered, and how many tries it took."""

    model: ModelEntry
    deployment: Deployment
    attempts: int = 1

    @property
    def label(self) -> str:
        """For the ``x-oneplan-served-by`` header. Model and provider names are the operator's,
        and may hold what a header value cannot (``通义``, a quoted TOML key with a newline):
        those are percent-encoded, as UTF-8, so the header is always sendable."""
        return f"model={header_text(self.model.name)}; provider={header_text(self.deployment.provider)}"


# Printable ASCII but "%" passes as is; anything else is percent-encoded UTF-8 (RFC 3986's form,
# which RFC 8187 uses for header parameters), so the value reads back with one ``unquote``.
_HEADER_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) not in "%")


def header_text(text: str) -> str:
    """``text`` as a header value can carry it: unchanged when it is printable ASCII."""
    if text.isascii() and text.isprintable() and "%" not in text:
        return text
    return quote(text, safe=_HEADER_SAFE)


@dataclass(frozen=True, slots=True)
class Candidate:
    """One deployment of one model, with everything an attempt needs, built once."""

    model: ModelEntry
    deployment: Deployment
    provider: Provider
    target: Target
    health: DeploymentHealth


class Router:
    def __init__(
        self,
        catalog: Catalog,
        providers: dict[str, Provider],
        rng: random.Random | None = None,
        *,
        retry: RetryPolicy | None = None,
        breaker: BreakerPolicy | None = None,
        strategy: str = "weighted",
        health: Health | None = None,
    ) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"routing strategy must be one of {STRATEGIES}, not {strategy!r}")
        self.catalog = catalog
        self.providers = providers
        self.rng = rng or random.Random()
        self.retry = retry or RetryPolicy()
        self.health = health or Health(breaker)
        self.least_busy = strategy == "least-busy"
        self._candidates: dict[str, tuple[Candidate, ...]] = {
            name: tuple(self._candidate(entry, d) for d in entry.deployments)
            for name, entry in catalog.models.items()
        }

    @classmethod
    def from_catalog(cls, catalog: Catalog, providers: dict[str, Provider]) -> Router:
        """A router configured by the catalog's ``[routing]`` table."""
        r = catalog.routing
        return cls(
            catalog,
            providers,
            retry=RetryPolicy(r.retries, r.backoff_seconds, r.backoff_max_seconds, r.deadline_seconds),
            breaker=BreakerPolicy(r.circuit_failures, r.circuit_cooldown_seconds),
            strategy=r.strategy,
        )

    def _candidate(self, entry: ModelEntry, deployment: Deployment) -> Candidate:
        return Candidate(
            entry,
            deployment,
            self.providers[deployment.provider],
            Target(entry.name, deployment.upstream, entry.options),
            self.health.get(deployment.provider, deployment.upstream),
        )

    def target(self, entry: ModelEntry, deployment: Deployment) -> Target:
        return Target(entry.name, deployment.upstream, entry.options)

    # -- order ------------------------------------------------------------------------------

    def candidates(self, entry: ModelEntry, plan: Plan) -> list[Candidate]:
        now = self.health.now()
        out = self._order(self._candidates[entry.name], now)
        for name in entry.fallbacks:
            if plan.includes(name):
                out.extend(self._order(self._candidates[name], now))
        return out

    def _order(self, group: tuple[Candidate, ...], now: float) -> list[Candidate]:
        if len(group) == 1:
            return list(group)
        rng = self.rng
        if self.least_busy:
            # Fewest requests in flight per unit of weight; ties broken at random.
            ordered = sorted(group, key=lambda c: (c.health.in_flight / c.deployment.weight, rng.random()))
        else:
            # Weighted random order without replacement (Efraimidis-Spirakis keys).
            ordered = sorted(group, key=lambda c: -(rng.random() ** (1.0 / c.deployment.weight)))
        # Deployments cooling off after a 429 go last, in the same relative order.
        return sorted(ordered, key=lambda c: c.health.cooling(now))

    # -- calls ------------------------------------------------------------------------------

    async def complete(self, request: ChatRequest, entry: ModelEntry, plan: Plan) -> tuple[ChatResult, Served]:
        async def attempt(c: Candidate) -> ChatResult:
            try:
                return await c.provider.complete(request, c.target)
            finally:
                c.health.end()

        result, served, _ = await self._route(entry, plan, attempt)
        return result, served

    async def open_stream(
        self, request: ChatRequest, entry: ModelEntry, plan: Plan
    ) -> tuple[Served, Delta | None, AsyncIterator[Delta]]:
        """Start a stream somewhere: returns who serves it, its first delta (``None`` if the
        stream was empty) and the rest."""

        async def attempt(c: Candidate) -> tuple[Delta | None, AsyncIterator[Delta]]:
            stream = c.provider.stream(request, c.target)
            try:
                first = await anext(stream, None)
            except BaseException:
                c.health.end()
                aclose = getattr(stream, "aclose", None)
                if aclose is not None:
                    await aclose()
                raise
            return first, stream

        (first, stream), served, chosen = await self._route(entry, plan, attempt)
        return served, first, self._watched(stream, chosen.health, chosen.deployment.provider)

    async def _watched(
        self, stream: AsyncIterator[Delta], health: DeploymentHealth, provider: str
    ) -> AsyncIterator[Delta]:
        """The rest of a stream, telling the deployment's health how it ended."""
        try:
            try:
                async for delta in stream:
                    yield delta
            except (OneplanError, asyncio.CancelledError, GeneratorExit):
                raise
            except Exception as exc:
                raise unreadable(provider, exc) from exc
        except UpstreamError as exc:
            if exc.retryable:
                health.failed(exc, self.health.now())
            raise
        finally:
            health.end()
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()

    async def _route(
        self, entry: ModelEntry, plan: Plan, attempt: Callable[[Candidate], Awaitable[T]]
    ) -> tuple[T, Served, Candidate]:
        """Try candidates in order until one answers; see ``retry.py`` for the rules."""
        health, policy = self.health, self.retry
        now = health.now()
        deadline = now + policy.deadline
        candidates = self.candidates(entry, plan)
        last: UpstreamError | None = None
        attempts = retries = 0
        i = 0
        while True:
            # The next candidate whose circuit lets a request through now.
            while i < len(candidates) and not candidates[i].health.available(now):
                i += 1
            if i == len(candidates):
                raise self._exhausted(entry, candidates, last, attempts, now)
            c = candidates[i]
            attempts += 1
            c.health.begin(now, retry=attempts > 1)
            try:
                try:
                    result = await attempt(c)
                except (OneplanError, asyncio.CancelledError):
                    raise
                except Exception as exc:
                    raise unreadable(c.deployment.provider, exc) from exc
            except UpstreamError as exc:
                now = health.now()
                exc.deployment = c.deployment  # type: ignore[attr-defined]  # who failed, for the ledger
                if not exc.retryable:
                    c.health.neutral()
                    exc.attempts = attempts  # type: ignore[attr-defined]
                    raise
                c.health.failed(exc, now)
                last = exc
            except BaseException:
                c.health.neutral()  # cancelled (the caller went away): no verdict
                raise
            else:
                c.health.succeeded()
                served = Served(c.model, c.deployment, attempts)
                return result, served, c
            if i + 1 < len(candidates):
                i += 1  # another deployment: move on at once
                continue
            if retries >= policy.retries or not c.health.available(now):
                raise self._exhausted(entry, candidates, last, attempts, now)
            wait = policy.delay(retries, last, self.rng)
            if now + wait > deadline:
                raise self._exhausted(entry, candidates, last, attempts, now)
            retries += 1
            await asyncio.sleep(wait)
            now = health.now()

    def _exhausted(
        self,
        entry: ModelEntry,
        candidates: list[Candidate],
        last: UpstreamError | None,
        attempts: int,
        now: float,
    ) -> UpstreamError:
        if last is None:
            # Nothing was tried: every circuit is open. Fail fast, saying when to come back.
            wait = min((c.health.reopens_in(now) for c in candidates), default=0.0)
            last = CircuitOpen(
                f"Every provider serving '{entry.name}' is failing; oneplan will try again in "
                f"{max(1, round(wait))}s.",
                retry_after=wait,
            )
        last.attempts = attempts  # type: ignore[attr-defined]
        return last
