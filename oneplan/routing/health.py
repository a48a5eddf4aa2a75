"""Per-deployment health: a circuit breaker, the requests in flight, and counts for the admin
API and ``/metrics``.

A deployment is one model on one provider account (``qwen-a`` serving ``qwen3.5-plus``). Its
breaker works the usual way::

    closed ──(N failures in a row)──► open ──(cooldown elapsed)──► half-open
      ▲                                 ▲                              │ one probe request
      └────────── probe succeeded ──────┼──────── probe failed ────────┘

An open deployment is skipped, so a provider that is down costs callers nothing but a dictionary
lookup instead of a connect timeout each. Half-open lets exactly one request through; the others
keep using the alternatives (or fail fast) until that probe has answered.

A 429 with ``Retry-After`` also marks the deployment as *cooling* until then: other requests
prefer its siblings without counting it as broken.

Everything here runs on the event loop thread and never awaits, so it needs no locks; the
bookkeeping per request is a few attribute updates.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    failures: int = 5  # consecutive failures that open the circuit
    cooldown: float = 30.0  # seconds open before a probe is let through


class DeploymentHealth:
    """One deployment's breaker and counters. ``clock`` is monotonic seconds."""

    __slots__ = (
        "_wall",
        "clock",
        "consecutive",
        "cooling_until",
        "errors",
        "failures",
        "in_flight",
        "last_error",
        "last_error_at",
        "opened",
        "opened_at",
        "policy",
        "probing",
        "provider",
        "retries",
        "state",
        "successes",
        "upstream",
    )

    def __init__(self, provider: str, upstream: str, policy: BreakerPolicy, clock: Callable[[], float]) -> None:
        self.provider = provider
        self.upstream = upstream
        self.policy = policy
        self.clock = clock
        self._wall = time.time
        self.in_flight = 0
        self.reset()

    def reset(self) -> None:
        """Forget the past: circuit closed, counters zero (requests in flight stay counted)."""
        self.state = CLOSED
        self.consecutive = 0
        self.opened_at = 0.0
        self.cooling_until = 0.0
        self.probing = False
        self.successes = 0
        self.failures = 0
        self.retries = 0  # attempts here that were not a request's first attempt
        self.opened = 0  # times the circuit opened
        self.errors: dict[str, int] = {}  # error class -> count
        self.last_error: str | None = None
        self.last_error_at: float | None = None  # wall clock, for people

    # -- choosing ---------------------------------------------------------------------------

    def available(self, now: float) -> bool:
        """May a request be sent here now? (Does not claim the half-open probe.)"""
        if self.state == CLOSED:
            return True
        if self.state == OPEN:
            return now - self.opened_at >= self.policy.cooldown
        return not self.probing

    def cooling(self, now: float) -> bool:
        return self.cooling_until > now

    def reopens_in(self, now: float) -> float:
        """Seconds until this deployment takes requests again (0 if it does now)."""
        wait = 0.0
        if self.state == OPEN:
            wait = self.opened_at + self.policy.cooldown - now
        elif self.state == HALF_OPEN and self.probing:
            wait = self.policy.cooldown
        return max(0.0, wait, self.cooling_until - now)

    # -- one attempt ------------------------------------------------------------------------

    def begin(self, now: float, *, retry: bool) -> None:
        """An attempt starts here. Claims the probe when the circuit is due for one."""
        if self.state != CLOSED:
            self.state = HALF_OPEN
            self.probing = True
        self.in_flight += 1
        if retry:
            self.retries += 1

    def succeeded(self) -> None:
        """The deployment answered (its first byte arrived, or the whole answer)."""
        self.successes += 1
        self.consecutive = 0
        if self.state != CLOSED:
            self.state = CLOSED
            self.probing = False

    def failed(self, error: BaseException, now: float) -> None:
        """A failure that says something about the deployment (not the caller's own 4xx)."""
        name = type(error).__name__
        self.failures += 1
        self.errors[name] = self.errors.get(name, 0) + 1
        self.last_error = str(error)[:300]
        self.last_error_at = self._wall()
        self.consecutive += 1
        retry_after = getattr(error, "retry_after", None)
        if retry_after:
            self.cooling_until = max(self.cooling_until, now + float(retry_after))
        if self.state == HALF_OPEN or self.consecutive >= self.policy.failures:
            if self.state != OPEN:
                self.opened += 1
            self.state = OPEN
            self.opened_at = now
            self.probing = False

    def neutral(self) -> None:
        """The attempt ended without a verdict (the caller's 4xx, or the caller went away):
        free the probe so that the next request may probe instead."""
        if self.state == HALF_OPEN:
            self.probing = False

    def end(self) -> None:
        self.in_flight -= 1

    def snapshot(self, now: float) -> dict[str, Any]:
        state = self.state
        if state == OPEN and self.available(now):
            state = HALF_OPEN  # due for a probe: that is what the next request will do
        return {
            "provider": self.provider,
            "upstream": self.upstream,
            "state": state,
            "healthy": state == CLOSED and not self.cooling(now),
            "consecutive_failures": self.consecutive,
            "retry_in": round(self.reopens_in(now), 3),
            "in_flight": self.in_flight,
            "successes": self.successes,
            "failures": self.failures,
            "retries": self.retries,
            "opened": self.opened,
            "errors": dict(self.errors),
            "last_error": self.last_error,
            "last_error_at": self.last_error_at,
        }


class Health:
    """Every deployment's health, keyed by (provider, upstream model)."""

    def __init__(self, policy: BreakerPolicy | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy or BreakerPolicy()
        self.clock = clock
        self._by_key: dict[tuple[str, str], DeploymentHealth] = {}

    def get(self, provider: str, upstream: str) -> DeploymentHealth:
        key = (provider, upstream)
        health = self._by_key.get(key)
        if health is None:
            # The breaker reads the clock through the registry, so tests can swap it later.
            health = self._by_key[key] = DeploymentHealth(provider, upstream, self.policy, self.now)
        return health

    def now(self) -> float:
        return self.clock()

    def __iter__(self) -> Iterator[DeploymentHealth]:
        return iter(list(self._by_key.values()))

    def snapshot(self) -> list[dict[str, Any]]:
        now = self.clock()
        return [h.snapshot(now) for h in self]
