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
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

from oneplan.errors import OneplanError, QuotaExceeded, UpstreamError, UpstreamRateLimited, retry_after_header
from oneplan.server.sse import header_lines

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
    return _duration_text(max(0, int(seconds + 0.999)))


@functools.lru_cache(maxsize=1024)  # on every answer; a window's reset moves once a second at most
def _duration_text(total: int) -> str:
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return "".join(f"{n}{u}" for n, u in ((hours, "h"), (minutes, "m")) if n) + f"{secs}s"


def quota_headers(states: Sequence[WindowState], now: float, protocol: Protocol | None = None) -> dict[str, str]:
    """``quota_block`` as a dict, for an answer built by Starlette (a refusal, an error)."""
    text = quota_block(states, now, protocol).decode("latin-1")
    return dict(line.split(": ", 1) for line in text.split("\r\n")[:-1])


def quota_block(states: Sequence[WindowState], now: float, protocol: Protocol | None = None) -> bytes:
    """Each window's ``x-oneplan-quota-<window>-*``; the IETF draft's ``RateLimit-Policy`` and
    ``RateLimit``; the tightest request window as OpenAI's ``x-ratelimit-*-requests``; and the
    caller's protocol's own (``Protocol.quota_headers``: Anthropic's ``anthropic-ratelimit-*``),
    as header lines ready for the answer's head (each ending in CRLF).

    They go on every answer, so they are written as bytes straight away: what depends only on a
    window's definition is made (and checked for anything that could split a head) once per
    window (``_Window``); what changes per request - remaining, resets - is numbers, which
    cannot."""
    lines = []
    tightest: WindowState | None = None
    least = 0.0
    policies, limits = [], []
    for state in states:
        w = _window(state.window, state.limit, state.unit, state.span)
        remaining = state.limit - state.used
        if remaining < 0.0:
            remaining = 0.0
        resets = state.resets_at
        if resets is None:
            lines.append(b"%s%s\r\n" % (w.head, _figure(remaining)))
        else:
            lines.append(b"%s%s%s%d\r\n" % (w.head, _figure(remaining), w.reset, int(resets)))
        if w.requests and (tightest is None or remaining < least):
            tightest, least = state, remaining
        if w.policy is not None:
            if resets is None:
                limits.append(b"%s%d" % (w.item, int(remaining)))
            else:
                limits.append(b"%s%d;t=%d" % (w.item, int(remaining), max(0, int(resets - now + 0.999))))
            policies.append(w.policy)
    if policies:
        lines.append(b"ratelimit-policy: %s\r\nratelimit: %s\r\n" % (b", ".join(policies), b", ".join(limits)))
    if tightest is not None:
        lines.append(b"x-ratelimit-limit-requests: %s\r\nx-ratelimit-remaining-requests: %s\r\n" % (
            _figure(tightest.limit), _figure(least)))
        if tightest.resets_at is not None:
            lines.append(b"x-ratelimit-reset-requests: %s\r\n" % _duration(tightest.resets_at - now).encode())
    if protocol is not None:
        own = protocol.quota_headers(states, tightest, now)
        if own:
            lines.append(header_lines(own))
    return b"".join(lines)


def _figure(value: float) -> bytes:
    """``windows.exact`` as bytes: an integral figure without the detour through ``str``."""
    if type(value) is int or value.is_integer():
        return b"%d" % value
    from oneplan.metering.windows import exact

    return exact(value).encode()


# The IETF draft's quota units (draft-ietf-httpapi-ratelimit-headers): "requests" and
# "concurrent-requests" are its own; token, credit and cost windows name their unit.
_IETF_UNIT = {"requests": "requests", "calls": "requests", "concurrency": "concurrent-requests",
              "tokens": "tokens", "credits": "credits", "cost": "cost"}


class _Window(NamedTuple):
    """What a window's headers say that does not change from request to request, rendered."""

    head: bytes  # its limit line, then the start of its remaining line
    reset: bytes  # the end of the remaining line, then the start of its reset line
    requests: bool  # a request window: a candidate for OpenAI's ``x-ratelimit-*-requests``
    policy: bytes | None  # its ``RateLimit-Policy`` item; None: a fractional limit, left out
    item: bytes  # the start of its ``RateLimit`` item


@functools.lru_cache(maxsize=4096)
def _window(window: str, limit: float, unit: str, span: float | None) -> _Window:
    from oneplan.metering.windows import exact

    name = window.replace("_", "-")
    sf_name = window.replace("\\", "").replace('"', "")
    policy = None
    if float(limit).is_integer():
        policy = f'"{sf_name}";q={int(limit)}' + (f";w={int(span)}" if span else "")
        policy += f';qu="{_IETF_UNIT.get(unit, unit)}"'
    limit_line = f"x-oneplan-quota-{name}-limit: {exact(limit)}\r\n"
    remaining, reset, item = f"x-oneplan-quota-{name}-remaining", f"x-oneplan-quota-{name}-reset", f'"{sf_name}";r='
    # Checked once, here (``header_lines`` raises): the config only lets plain names through,
    # and what is added per request is numbers.
    header_lines({remaining: limit_line[:-2], reset: "", "ratelimit-policy": policy or "", "ratelimit": item})
    return _Window(
        f"{limit_line}{remaining}: ".encode("latin-1"), f"\r\n{reset}: ".encode("latin-1"),
        window in _REQUEST_WINDOWS or unit == "requests",
        None if policy is None else policy.encode("latin-1"), item.encode("latin-1"),
    )
