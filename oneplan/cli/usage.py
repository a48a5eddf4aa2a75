"""``oneplan usage``: the ledger's totals and the quota windows, as a table or JSON."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import click
import orjson

from oneplan.metering.ledger import LedgerWriter
from oneplan.metering.report import usage_report
from oneplan.metering.windows import Periods, describe, exact


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    wait = max(0, int(ts - time.time()))
    hours, rest = divmod(wait, 3600)
    return f"{datetime.fromtimestamp(ts, UTC):%Y-%m-%d %H:%M} UTC (in {hours}h {rest // 60}m)"


def show_usage(ctx: Any, user_name: str | None, as_json: bool) -> None:
    db = ctx.db()
    # Rows a killed server left in its journal count too.
    LedgerWriter(db, ctx.data_dir / "ledger-dead.jsonl").replay(ctx.data_dir / "journal")
    catalog = ctx.catalog
    report = usage_report(db, catalog, Periods(catalog.server.quota_timezone), time.time, user_name)
    if as_json:
        click.echo(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    for user in report["users"]:
        totals = user["totals"]
        table = Table(title=f"{user['user']} (plan {user['plan']})", title_justify="left")
        for column in ("model", "requests", "input tokens", "output tokens", "cost"):
            table.add_column(column, justify="left" if column == "model" else "right")
        for row in user["models"]:
            table.add_row(
                row["model"], str(row["requests"]), str(row["input_tokens"] or 0),
                str(row["output_tokens"] or 0), f"{row['cost'] or 0:.6f}",
            )
        table.add_row(
            "[b]total", str(totals["requests"]), str(totals["input_tokens"]),
            str(totals["output_tokens"]), f"{totals['cost']:.6f}",
        )
        console.print(table)
        windows = Table(show_header=True, box=None)
        for column in ("quota", "used", "limit", "frees up"):
            windows.add_column(column)
        for w in user["windows"]:
            windows.add_row(describe(w["window"]), exact(w["used"]), exact(w["limit"]), _when(w["resets_at"]))
        console.print(windows)
        console.print()
