"""What a refusal tells a client beyond its status: may it try again, which code does its SDK
branch on, and what are the quota numbers. Decided here once, beside the error tree; each
protocol's error renderer and ``server/errors.py`` only put the decisions into their own shape.

Agents act on these, not on the message text:

* ``x-should-retry`` is read by the Anthropic and OpenAI SDKs (and so by Claude Code, OpenCode,
  Qwen Code, ...) before their own status rules: ``false`` stops them retrying a request that
  can only fail again (a bad key, a model not in the plan, a plan window that frees up in
  hours); without it a 401 is retried for minutes.
* ``insufficient_quota`` is OpenAI's code for "no quota left": Codex and the OpenAI SDKs give
  up at once on it and show the message, where ``rate_limit_exceeded`` makes them wait and
  reconnect. A plan window that frees up within ``RETRY_SOON`` seconds stays a rate limit.
* ``retry-after`` and the quota headers go on every 429, so a client that waits knows how
  long and a person sees which window binds.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import TYPE_CHECKING, NamedTuple

from oneplan.errors import OneplanError, QuotaExceeded, UpstreamError, UpstreamRateLimited, retry_after_header

if TYPE_CHECKING:
    from oneplan.metering.windows import WindowState
    from oneplan.protocols.base import Protocol

# A refusal that frees up within this many seconds is worth waiting for; a longer one is not.
RETRY_SOON = 300.0
# An upstream 429 that said nothing of when to come back: a short, honest guess.
UPSTREAM_RETRY_DEFAULT = 5.0
# The request windows that make up x-ratelimit-*-requests (the tightest of them).
_REQUEST_WINDOWS = ("5h", "week", "month")


def wait_seconds(error: OneplanError) -> float | None:
    """How long the caller should wait before the same request can succeed; None if unknown."""
    if isinstance(error, QuotaExceeded):
        return error.retry_after
    if isinstance(error, UpstreamRateLimited):
        return UPSTREAM_RETRY_DEFAULT if error.retry_after is None else error.retry_after
    if isinstance(error, UpstreamError):
        return error.retry_after
    return None


def exhausted(error: OneplanError) -> bool:
    """A plan window used up for longer than is worth waiting: OpenAI's ``insufficient_quota``.
    A wait of 0 is a window that waiting cannot free (a limit below the model's weight, or 0)."""
    return isinstance(error, QuotaExceeded) and (error.retry_after > RETRY_SOON or error.retry_after <= 0)


def should_retry(error: OneplanError) -> bool | None:
    """True or False when the answer is certain; None to leave it to the client's own rules
    (server errors, which clients retry with backoff anyway)."""
    if error.status == 429:
        if exhausted(error):
            return False
        wait = wait_seconds(error)
        return wait is None or wait <= RETRY_SOON
    if error.status in (408, 409):
        return True
    if isinstance(error, UpstreamError) and not error.retryable:
        return False  # the provider refused this request (or oneplan's credentials): again is no use
    if 400 <= error.status < 500:
        return False
    return None


def openai_type_and_code(error: OneplanError) -> tuple[str, str | None]:
    """``error.type`` and ``error.code`` of the OpenAI (Chat and Responses) error body."""
    if exhausted(error):
        return "insufficient_quota", "insufficient_quota"
    if error.status == 429:
        return error.kind, "rate_limit_exceeded"
    return error.kind, error.code


def headers(error: OneplanError) -> dict[str, str]:
    """The refusal's own headers: ``x-should-retry`` and ``retry-after``."""
    out = dict(error.headers)
    if error.status == 429 and "retry-after" not in out:
        out.update(retry_after_header(wait_seconds(error)))
    retry = should_retry(error)
    if retry is not None:
        out["x-should-retry"] = "true" if retry else "false"
    return out


def _duration(seconds: float) -> str:
    """OpenAI's ``x-ratelimit-reset-*`` format: ``1h2m3s``, ``45s``."""
    total = max(0, int(seconds + 0.999))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return "".join(f"{n}{u}" for n, u in ((hours, "h"), (minutes, "m")) if n) + f"{secs}s"


def quota_headers(states: Iterable[WindowState], now: float, protocol: Protocol | None = None) -> dict[str, str]:
    """Each window's ``x-oneplan-quota-<window>-*``; the IETF draft's ``RateLimit-Policy`` and
    ``RateLimit``; the tightest request window as OpenAI's ``x-ratelimit-*-requests``; and the
    caller's protocol's own (``Protocol.quota_headers``: Anthropic's ``anthropic-ratelimit-*``).
    They go on every answer: what depends only on a window's definition is made once
    (``_Window``), what changes per request - remaining, resets - here."""
    from oneplan.metering.windows import exact  # windows imports this module

    out: dict[str, str] = {}
    tightest: WindowState | None = None
    states_list = list(states)
    policies, limits = [], []
    for state in states_list:
        w = _window(state.window, state.limit, state.unit, state.span)
        remaining = state.remaining
        out[w.limit_name] = w.limit
        out[w.remaining_name] = exact(remaining)
        if state.resets_at is not None:
            out[w.reset_name] = str(int(state.resets_at))
        if w.requests and (tightest is None or remaining < tightest.remaining):
            tightest = state
        if w.policy is not None:
            policies.append(w.policy)
            limits.append(_limit_item(w, state, now))
    if policies:
        out["ratelimit-policy"] = ", ".join(policies)
        out["ratelimit"] = ", ".join(limits)
    if tightest is not None:
        out["x-ratelimit-limit-requests"] = exact(tightest.limit)
        out["x-ratelimit-remaining-requests"] = exact(tightest.remaining)
        if tightest.resets_at is not None:
            out["x-ratelimit-reset-requests"] = _duration(tightest.resets_at - now)
    if protocol is not None:
        out.update(protocol.quota_headers(states_list, tightest, now))
    return out


# The IETF draft's quota units (draft-ietf-httpapi-ratelimit-headers): "requests" and
# "concurrent-requests" are its own; token, credit and cost windows name their unit.
_IETF_UNIT = {"requests": "requests", "calls": "requests", "concurrency": "concurrent-requests",
              "tokens": "tokens", "credits": "credits", "cost": "cost"}


class _Window(NamedTuple):
    """What a window's headers say that does not change from request to request."""

    limit_name: str
    remaining_name: str
    reset_name: str
    limit: str
    requests: bool  # a request window: a candidate for OpenAI's ``x-ratelimit-*-requests``
    policy: str | None  # its ``RateLimit-Policy`` item; None: a fractional limit, left out
    item: str  # the start of its ``RateLimit`` item


@functools.lru_cache(maxsize=4096)
def _window(window: str, limit: float, unit: str, span: float | None) -> _Window:
    from oneplan.metering.windows import exact

    name = window.replace("_", "-")
    sf_name = window.replace("\\", "").replace('"', "")
    policy = None
    if float(limit).is_integer():
        policy = f'"{sf_name}";q={int(limit)}' + (f";w={int(span)}" if span else "")
        policy += f';qu="{_IETF_UNIT.get(unit, unit)}"'
    return _Window(
        f"x-oneplan-quota-{name}-limit", f"x-oneplan-quota-{name}-remaining", f"x-oneplan-quota-{name}-reset",
        exact(limit), window in _REQUEST_WINDOWS or unit == "requests", policy, f'"{sf_name}";r=',
    )


def _limit_item(w: _Window, state: WindowState, now: float) -> str:
    item = f"{w.item}{int(state.remaining)}"
    if state.resets_at is not None:
        item += f";t={max(0, int(state.resets_at - now + 0.999))}"
    return item

