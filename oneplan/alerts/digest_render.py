"""The weekly digest as text, Markdown (chat channels), HTML (email) and a webhook payload."""

from __future__ import annotations

from datetime import datetime
from html import escape
from typing import Any
from zoneinfo import ZoneInfo


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:+.0f} %"


def _lines(who: str, f: dict[str, Any], tz: str) -> tuple[str, list[tuple[str, str]], list[str]]:
    zone = ZoneInfo(tz)
    start = datetime.fromtimestamp(f["week_start"], zone).strftime("%Y-%m-%d")
    title = f"oneplan weekly insights for {who}, week of {start}"
    t, last, ch = f["this_week"], f["last_week"], f["change_percent"]
    rows = [
        ("Requests", f"{t['requests']} (last week {last['requests']}, {_pct(ch['requests'])})"),
        ("Tokens", f"{t['tokens']} (last week {last['tokens']}, {_pct(ch['tokens'])})"),
        ("Cost", f"{t['cost']:.4f} (last week {last['cost']:.4f}, {_pct(ch['cost'])})"),
        ("Models", ", ".join(f"{m['model']} {100 * m['share']:.0f} %" for m in f["models"]) or "-"),
    ]
    hits = f["limit_hits"]
    if hits["total"]:
        days = ", ".join(f"{d} {n}" for d, n in hits["by_day"].items())
        rows.append(("Limit hits", f"{hits['total']} ({days}; most around {hits['hour']:02d}:00)"))
    else:
        rows.append(("Limit hits", "none"))
    share = f["cache_hit_share"]
    rows.append(("Cache hits", "-" if share is None else f"{100 * share:.0f} % of input tokens"))
    rows.append(("Busiest hours", ", ".join(f"{h['hour']:02d}:00 ({h['requests']})" for h in f["busiest_hours"]) or "-"))
    slow = f["slowest_model"]
    rows.append(("Slowest model", "-" if slow is None else f"{slow['model']} (median time to first token {slow['ttft_median_ms']:.0f} ms)"))
    return title, rows, f["suggestions"]


def render(who: str, f: dict[str, Any], tz: str = "UTC", link: str | None = None) -> dict[str, Any]:
    """The payload a digest event carries: every channel finds its form in it."""
    title, rows, tips = _lines(who, f, tz)
    text = "\n".join(f"{k}: {v}" for k, v in rows)
    if tips:
        text += "\n\nSuggestions:\n" + "\n".join(f"- {s}" for s in tips)
    if link:
        text += f"\n\n{link}"
    markdown = "\n".join(f"- **{k}**: {v}" for k, v in rows)
    if tips:
        markdown += "\n\n**Suggestions**\n" + "\n".join(f"- {s}" for s in tips)
    table = "".join(f"<tr><th align='left'>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in rows)
    html = (
        f"<html><body><h2>{escape(title)}</h2><table>{table}</table>"
        + (f"<h3>Suggestions</h3><ul>{''.join(f'<li>{escape(s)}</li>' for s in tips)}</ul>" if tips else "")
        + (f"<p><a href='{escape(link)}'>Open the console</a></p>" if link else "")
        + "</body></html>"
    )
    return {
        "event": "digest.weekly", "title": title, "text": text, "markdown": markdown, "html": html,
        "user": who, "figures": f, "link": link,
    }
