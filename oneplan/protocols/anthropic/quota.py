"""Anthropic's rate-limit headers, beside the ones every client gets (``refusals.quota_headers``).

Claude Code and the ``anthropic`` SDK read ``anthropic-ratelimit-requests-*`` (from the tightest
request window) and ``anthropic-ratelimit-tokens-*`` (from the tightest token or credit window);
their resets are RFC 3339 instants, where OpenAI's ``x-ratelimit-reset-*`` are durations.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import UTC, datetime

from oneplan.metering.windows import WindowState, exact


def _rfc3339(ts: float) -> str:
    return _rfc3339_second(int(ts))


@functools.lru_cache(maxsize=1024)  # on every answer, and a window's reset moves once a second at most
def _rfc3339_second(second: int) -> str:
    return datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def quota_headers(states: Sequence[WindowState], tightest: WindowState | None, now: float) -> dict[str, str]:
    """``tightest``: the request window with the least left (None if the plan has none)."""
    out: dict[str, str] = {}
    windows = [s for s in states if s.unit in ("tokens", "credits")]
    if windows:
        tight = min(windows, key=lambda s: s.remaining)
        out["anthropic-ratelimit-tokens-limit"] = exact(int(tight.limit))
        out["anthropic-ratelimit-tokens-remaining"] = exact(int(tight.remaining))
        out["anthropic-ratelimit-tokens-reset"] = _rfc3339(tight.resets_at if tight.resets_at is not None else now)
    if tightest is not None:
        out["anthropic-ratelimit-requests-limit"] = exact(tightest.limit)
        out["anthropic-ratelimit-requests-remaining"] = exact(tightest.remaining)
        out["anthropic-ratelimit-requests-reset"] = _rfc3339(
            tightest.resets_at if tightest.resets_at is not None else now
        )
    return out
