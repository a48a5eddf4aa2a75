"""``oneplan statusline``: one line for Claude Code's ``statusLine`` setting - the caller's
tightest quota window and what is left of it. Standard library only (the base install)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

UNITS = {"requests": "", "calls": "", "tokens": " tok", "credits": " cr", "cost": "", "concurrency": " running"}
SHORT = {"5h": "5h", "week": "week", "month": "month", "tokens_month": "tokens/mo", "cost_month": "cost/mo"}


def _amount(unit: str, value: float) -> str:
    if unit == "cost":
        return f"${value:,.2f}"
    return f"{value:,.0f}{UNITS.get(unit, '')}"


def line(me: dict[str, Any], now: float) -> str:
    windows = me.get("windows") or []
    head = f"oneplan {me.get('plan', {}).get('name', '?')}"
    if not windows:
        return f"{head} · no limits"
    tight = max(windows, key=lambda w: (w["used"] / w["limit"]) if w["limit"] else 1.0)
    unit = tight.get("unit", "requests")
    parts = [
        head,
        f"{SHORT.get(tight['window'], tight['window'])} {_amount(unit, tight['used'])}/{_amount(unit, tight['limit'])}",
        f"{_amount(unit, tight['remaining'])} left",
    ]
    if tight.get("resets_at"):
        parts.append("frees " + time.strftime("%H:%M", time.localtime(tight["resets_at"])))
    if tight.get("runs_out_at") and tight["remaining"] > 0:
        parts.append("runs out " + time.strftime("%H:%M", time.localtime(tight["runs_out_at"])))
    return " · ".join(parts)


def fetch(url: str, key: str, timeout: float = 5.0) -> dict[str, Any]:
    request = urllib.request.Request(url.rstrip("/") + "/v1/me", headers={"authorization": f"Bearer {key}"})
    with urllib.request.urlopen(request, timeout=timeout) as reply:
        data: dict[str, Any] = json.loads(reply.read())
    return data


def statusline(url: str, key: str | None) -> tuple[str, int]:
    """(the line, exit status)."""
    if not key:
        return "oneplan: set ONEPLAN_API_KEY to your key", 1
    try:
        return line(fetch(url, key), time.time()), 0
    except urllib.error.HTTPError as exc:
        return f"oneplan: {'key refused' if exc.code == 401 else f'HTTP {exc.code}'}", 1
    except (urllib.error.URLError, OSError):
        return f"oneplan: no server at {url}", 1
