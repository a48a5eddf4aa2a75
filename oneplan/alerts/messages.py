"""What an alert says: every payload names the user, the window, used / limit, when it frees
up and a link to the console, as fields (for webhooks) and as a title and text (for people)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from oneplan.alerts.detect import Crossing
from oneplan.metering.windows import WindowState, describe


def when(ts: float | None) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


def link(console_url: str | None, page: str) -> str | None:
    return f"{console_url.rstrip('/')}/{page}" if console_url else None


def _figure(window: str, value: float) -> str:
    return f"{value:.2f}" if window == "cost_month" else f"{value:g}"


def window_alert(
    crossing: Crossing, state: WindowState, user: str, plan: str, console_url: str | None, now: float
) -> dict[str, Any]:
    name = describe(state.window)
    percent = 100.0 * state.used / state.limit if state.limit else 0.0
    used = f"{_figure(state.window, state.used)} / {_figure(state.window, state.limit)}"
    if crossing.kind == "threshold":
        event = "quota.threshold"
        title = f"oneplan: {user} has used {crossing.threshold:g} % of the {name}"
        lead = f"{user} (plan {plan}) has used {percent:.0f} % of the {name}: {used}."
    else:
        event = "quota.forecast"
        title = f"oneplan: {user}'s {name} runs out in about {crossing.minutes:.0f} min"
        lead = (
            f"At the pace of the last minutes, {user} (plan {plan}) runs out of the {name} in about "
            f"{crossing.minutes:.0f} minutes: {used} used."
        )
    url = link(console_url, "usage")
    text = f"{lead} It frees up at {when(state.resets_at)}." + (f" {url}" if url else "")
    return {
        "event": event,
        "title": title,
        "text": text,
        "user": user,
        "plan": plan,
        "window": state.window,
        "window_name": name,
        "threshold": crossing.threshold,
        "minutes_left": None if crossing.minutes is None else round(crossing.minutes, 1),
        "used": state.used,
        "limit": state.limit,
        "percent": round(percent, 1),
        "resets_at": state.resets_at,
        "link": url,
        "at": now,
    }


def runaway_alert(
    scope: str, user: str, key_id: str | None, metric: str, last_hour: float, median: float, factor: float,
    console_url: str | None, now: float,
) -> dict[str, Any]:
    who = f"key {key_id} of {user}" if key_id else user
    unit = "requests" if metric == "requests" else "cost"
    shown = f"{last_hour:g}" if metric == "requests" else f"{last_hour:.4f}"
    url = link(console_url, "usage")
    text = (
        f"{who} made {shown} {unit} in the last hour, {last_hour / median:.1f} times its 7-day hourly "
        f"median ({median:g}); the alert fires above {factor:g} times. A loop, or a leaked key?"
        + (f" {url}" if url else "")
    )
    return {
        "event": "usage.runaway", "title": f"oneplan: runaway {unit} on {who}", "text": text,
        "user": user, "key_id": key_id, "scope": scope, "metric": metric, "last_hour": last_hour,
        "median": median, "factor": factor, "link": url, "at": now,
    }


def provider_alert(
    what: str, provider: str, upstream: str | None, detail: dict[str, Any], console_url: str | None, now: float
) -> dict[str, Any]:
    target = f"{provider}/{upstream}" if upstream else provider
    if what == "circuit":
        title = f"oneplan: circuit open for {target}"
        text = (
            f"The circuit of {target} opened after {detail.get('consecutive_failures')} consecutive failures "
            f"(last error: {detail.get('last_error') or '-'}); requests go to other deployments until it recovers."
        )
    else:
        title = f"oneplan: {target} fails {100 * detail['rate']:.0f} % of requests"
        text = f"{detail['failed']} of {detail['total']} requests to {target} failed in the last 5 minutes."
    url = link(console_url, "providers")
    return {
        "event": f"provider.{'circuit_open' if what == 'circuit' else 'error_rate'}", "title": title,
        "text": text + (f" {url}" if url else ""), "provider": provider, "upstream": upstream,
        **detail, "link": url, "at": now,
    }
