"""``oneplan alerts status`` and ``oneplan insights preview``, from the database directly."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import click
import orjson


def _when(ts: float | None) -> str:
    return "-" if ts is None else f"{datetime.fromtimestamp(ts, UTC):%Y-%m-%d %H:%M:%S} UTC"


def show_status(ctx: Any, as_json: bool) -> None:
    from oneplan.alerts.outbox import Outbox

    status = Outbox(ctx.db()).status()
    if as_json:
        click.echo(orjson.dumps(status, option=orjson.OPT_INDENT_2).decode())
        return
    counts = status["counts"]
    click.echo(f"deliveries: {counts['pending']} pending, {counts['failed']} failed, {counts['sent']} sent")
    for d in status["open"]:
        nxt = "" if d["state"] == "failed" else f", next try {_when(d['next_at'])}"
        click.echo(
            f"{d['state']:<8} {d['kind']:<9} {d['channel']:<16} attempts {d['attempts']}{nxt}  "
            f"{(d['last_error'] or '')[:80]}"
        )


def show_preview(ctx: Any, user_name: str | None, week_of: str | None, as_json: bool, html: bool) -> None:
    from oneplan.alerts import messages
    from oneplan.alerts.digest import last_week_start, weekly
    from oneplan.metering.windows import Periods
    from oneplan.store.journal import recover

    db = ctx.db()
    recover(ctx.data_dir / "journal", db.insert_ledger)
    catalog = ctx.catalog
    periods = Periods(catalog.server.quota_timezone)
    if week_of is not None:
        try:
            day = datetime.fromisoformat(week_of).replace(tzinfo=periods.tz)
        except ValueError:
            raise ValueError(f"--week-of {week_of!r}: give a date like 2026-11-16") from None
        start = periods.week(day.timestamp())[0]
    else:
        start = last_week_start(periods, time.time())
    user_id, who, models = None, "everyone", None
    if user_name is not None:
        user = db.get_user(user_name)
        if user is None:
            raise ValueError(f"no user named {user_name!r} (see: oneplan users list)")
        plan = catalog.plans.get(user.plan)
        user_id, who, models = user.id, user.name, list(plan.models) if plan else None
    payload = weekly(
        db, start, tz=catalog.server.quota_timezone, user_id=user_id, who=who, plan_models=models,
        link=messages.link(catalog.alerts.console_url, "usage"),
    )
    if as_json:
        click.echo(orjson.dumps(payload, option=orjson.OPT_INDENT_2).decode())
    elif html:
        click.echo(payload["html"])
    else:
        click.echo(payload["title"])
        click.echo()
        click.echo(payload["text"])
