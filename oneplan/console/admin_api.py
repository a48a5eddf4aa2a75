"""The operator's JSON endpoints (admin key or an operator console session): users with their
windows, plan changes, disabling, team totals, top users and models, errors, provider health,
and the ledger explorer with CSV export."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from sqlalchemy import update
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from oneplan.console import queries
from oneplan.console.access import Caller, endpoint, json_body, json_response
from oneplan.console.api import Readers, days, plan_limits, range_of, timezone, windows
from oneplan.errors import InvalidRequest, NotFound
from oneplan.metering import rollup
from oneplan.store import schema

if TYPE_CHECKING:
    from oneplan.console.sessions import SessionStore
    from oneplan.server.gateway import Gateway

LEDGER_FILTERS = ("user", "model", "provider", "status", "protocol")
CSV_COLUMNS = ("user", *queries.REQUEST_COLUMNS)


def set_disabled(db: Any, name: str, disabled: bool) -> None:
    with db.engine.begin() as conn:
        done = conn.execute(update(schema.users).where(schema.users.c.name == name).values(disabled=disabled)).rowcount
        if not done:
            raise NotFound(f"No user named {name!r}.")
        db._bump_keys_version(conn)


def routes(gateway: Gateway, sessions: SessionStore, readers: Readers) -> list[Route]:
    db = gateway.db

    async def overview(request: Request, who: Caller) -> Response:
        users = await readers.run(db.list_users)
        last = await readers.run(queries.last_requests, db)
        hour = rollup.hour_of(gateway.clock())
        usage = await readers.run(queries.hour_usage, db, (hour - 3600, hour))
        out = []
        for user in users:
            out.append(
                {
                    "name": user.name,
                    "plan": user.plan,
                    "disabled": user.disabled,
                    "created_at": user.created_at,
                    "last_request_at": last.get(user.id),
                    "windows": await windows(gateway, readers, user.id, user.plan, usage),
                }
            )
        plans = [plan_limits(gateway, name) for name in sorted(gateway.catalog.plans)]
        return json_response({"users": out, "plans": plans, "generated_at": gateway.clock()})

    async def change_user(request: Request, who: Caller) -> Response:
        name = request.path_params["name"]
        data = await json_body(request)
        if "plan" in data:
            plan = data["plan"]
            if plan not in gateway.catalog.plans:
                raise InvalidRequest(f"No plan {plan!r}: use one of {', '.join(sorted(gateway.catalog.plans))}.")
            await asyncio.to_thread(db.set_plan, name, plan)
        if "disabled" in data:
            if not isinstance(data["disabled"], bool):
                raise InvalidRequest("disabled: true or false.")
            await asyncio.to_thread(set_disabled, db, name, data["disabled"])
        if "plan" not in data and "disabled" not in data:
            raise InvalidRequest('Send {"plan": NAME} and/or {"disabled": true|false}.')
        await gateway.keys.reload()
        user = await asyncio.to_thread(db.get_user, name)
        if user is None:
            raise NotFound(f"No user named {name!r}.")
        return json_response({"name": user.name, "plan": user.plan, "disabled": user.disabled})

    async def series(request: Request, who: Caller) -> Response:
        seconds, step = range_of(request)
        by = _by(request)
        now = gateway.clock()
        data = await readers.run(queries.series, db, since=now - seconds, until=now + 1, step=step, tz=timezone(request), by=by)
        if by == "user":
            await _name_users(readers, db, [s for s in data["series"] if not s["other"]])
        return json_response(data)

    async def breakdown(request: Request, who: Caller) -> Response:
        by = _by(request)
        span = days(request)
        rows = await readers.run(
            queries.breakdown, db, by, since=gateway.clock() - span * 86400,
            latency=request.query_params.get("latency") == "1", daily=span >= 2,
        )
        if by == "user":
            await _name_users(readers, db, rows)
        return json_response({"by": by, "data": rows})

    async def errors(request: Request, who: Caller) -> Response:
        span = days(request, 7)
        return json_response({"data": await readers.run(queries.errors, db, gateway.clock() - span * 86400, span >= 2)})

    async def health(request: Request, who: Caller) -> Response:
        """Each deployment's circuit (this process's router) beside its last hour from the roll-up."""
        recent = await readers.run(queries.breakdown, db, "provider", since=gateway.clock() - 3600)
        by_provider = {r["provider"]: r for r in recent}
        deployments = []
        for state in gateway.router.health.snapshot():
            stats = by_provider.get(state["provider"], {})
            deployments.append(
                {
                    **state,
                    "last_hour_requests": stats.get("requests", 0),
                    "last_hour_error_rate": stats.get("error_rate", 0.0),
                    "last_hour_p50_latency_ms": stats.get("p50_latency_ms"),
                }
            )
        configured = [
            {"model": name, "provider": d.provider, "upstream": d.upstream}
            for name, entry in gateway.catalog.models.items()
            for d in entry.deployments
        ]
        return json_response({"deployments": deployments, "configured": configured})

    async def ledger(request: Request, who: Caller) -> Response:
        filters, after, limit = await _ledger_query(request, readers, db)
        rows = await readers.run(queries.ledger_page, db, filters, after=after, limit=limit)
        following = f"{rows[-1]['ts']!r}:{rows[-1]['id']}" if len(rows) == limit else None
        return json_response({"data": rows, "next": following})

    async def ledger_csv(request: Request, who: Caller) -> Response:
        filters, after, _ = await _ledger_query(request, readers, db)

        async def body() -> AsyncIterator[str]:
            buffer = io.StringIO()
            writer = csv.writer(buffer)
            writer.writerow(CSV_COLUMNS)
            cursor = after
            while True:
                rows = await readers.run(queries.ledger_page, db, filters, after=cursor, limit=5000)
                for row in rows:
                    writer.writerow([row.get(c) for c in CSV_COLUMNS])
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
                if len(rows) < 5000:
                    return
                cursor = (rows[-1]["ts"], rows[-1]["id"])

        return StreamingResponse(
            body(), media_type="text/csv",
            headers={"content-disposition": 'attachment; filename="oneplan-ledger.csv"', "cache-control": "no-store"},
        )

    def guard(handler: Any) -> Any:
        return endpoint(gateway, sessions, handler, admin=True)

    return [
        Route("/admin/overview", guard(overview), methods=["GET"]),
        Route("/admin/users/{name}", guard(change_user), methods=["PATCH"]),
        Route("/admin/series", guard(series), methods=["GET"]),
        Route("/admin/breakdown", guard(breakdown), methods=["GET"]),
        Route("/admin/errors", guard(errors), methods=["GET"]),
        Route("/admin/health", guard(health), methods=["GET"]),
        Route("/admin/ledger", guard(ledger), methods=["GET"]),
        Route("/admin/ledger.csv", guard(ledger_csv), methods=["GET"]),
    ]


def _by(request: Request) -> str:
    by = request.query_params.get("by", "model")
    if by not in queries.DIMENSIONS:
        raise InvalidRequest(f"by: use one of {', '.join(queries.DIMENSIONS)}.")
    return by


async def _name_users(readers: Readers, db: Any, rows: list[dict[str, Any]]) -> None:
    names = {u.id: u.name for u in await readers.run(db.list_users)}
    for row in rows:
        row["user"] = names.get(row["user"], str(row["user"]))


async def _ledger_query(request: Request, readers: Readers, db: Any) -> tuple[dict[str, Any], Any, int]:
    params = request.query_params
    filters: dict[str, Any] = {k: params[k] for k in LEDGER_FILTERS if params.get(k)}
    if "user" in filters:
        user = await readers.run(db.get_user, filters.pop("user"))
        filters["user_id"] = user.id if user is not None else -1
    for bound in ("since", "until"):
        if params.get(bound):
            try:
                filters[bound] = float(params[bound])
            except ValueError:
                raise InvalidRequest(f"{bound}: unix seconds.") from None
    after = None
    if params.get("after"):
        ts, _, request_id = params["after"].partition(":")
        try:
            after = (float(ts), request_id)
        except ValueError:
            raise InvalidRequest("after: the 'next' value of the previous page.") from None
    try:
        limit = min(500, max(1, int(params.get("limit", 50))))
    except ValueError:
        raise InvalidRequest("limit: a whole number up to 500.") from None
    return filters, after, limit
