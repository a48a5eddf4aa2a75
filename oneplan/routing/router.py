"""Choosing where a request goes, and trying the next place when one fails.

Candidates, in order: the model's deployments (weighted random order, healthy ones first),
then each fallback model the caller's plan includes, with its deployments. A failure before the
first byte reached the client moves on to the next candidate; after that, it ends the stream.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from oneplan.errors import UpstreamError
from oneplan.protocols.canonical import ChatRequest, ChatResult, Delta
from oneplan.providers.base import Provider, Target
from oneplan.routing.catalog import Catalog, Deployment, ModelEntry, Plan


@dataclass(slots=True)
class Served:
    """Who answered, and how many tries it took."""

    model: ModelEntry
    deployment: Deployment
    attempts: int = 1
    errors: list[str] = field(default_factory=list)


class Router:
    def __init__(self, catalog: Catalog, providers: dict[str, Provider], rng: random.Random | None = None) -> None:
        self.catalog = catalog
        self.providers = providers
        self.rng = rng or random.Random()
        self._targets: dict[tuple[str, str, str], Target] = {}

    def target(self, entry: ModelEntry, deployment: Deployment) -> Target:
        key = (entry.name, deployment.provider, deployment.upstream)
        target = self._targets.get(key)
        if target is None:
            target = self._targets[key] = Target(entry.name, deployment.upstream, entry.options)
        return target

    def candidates(self, entry: ModelEntry, plan: Plan) -> list[tuple[ModelEntry, Deployment]]:
        out = [(entry, d) for d in self._order(entry.deployments)]
        for name in entry.fallbacks:
            if plan.includes(name):
                fallback = self.catalog.models[name]
                out.extend((fallback, d) for d in self._order(fallback.deployments))
        return out

    def _order(self, deployments: tuple[Deployment, ...]) -> list[Deployment]:
        if len(deployments) == 1:
            return list(deployments)
        # Weighted random order without replacement (Efraimidis-Spirakis keys).
        return sorted(deployments, key=lambda d: -(self.rng.random() ** (1.0 / d.weight)))

    async def complete(self, request: ChatRequest, entry: ModelEntry, plan: Plan) -> tuple[ChatResult, Served]:
        last: UpstreamError | None = None
        attempts = 0
        for model, deployment in self.candidates(entry, plan):
            attempts += 1
            provider = self.providers[deployment.provider]
            try:
                result = await provider.complete(request, self.target(model, deployment))
            except UpstreamError as exc:
                last = exc
                if not exc.retryable:
                    break
                continue
            return result, Served(model, deployment, attempts)
        assert last is not None
        last.attempts = attempts  # type: ignore[attr-defined]
        raise last

    async def open_stream(
        self, request: ChatRequest, entry: ModelEntry, plan: Plan
    ) -> tuple[Served, Delta | None, AsyncIterator[Delta]]:
        """Start a stream somewhere: returns who serves it, its first delta (``None`` if the
        stream was empty) and the rest."""
        last: UpstreamError | None = None
        attempts = 0
        for model, deployment in self.candidates(entry, plan):
            attempts += 1
            stream = self.providers[deployment.provider].stream(request, self.target(model, deployment))
            try:
                first = await anext(stream, None)
            except UpstreamError as exc:
                await stream.aclose()
                last = exc
                if not exc.retryable:
                    break
                continue
            return Served(model, deployment, attempts), first, stream
        assert last is not None
        last.attempts = attempts  # type: ignore[attr-defined]
        raise last
