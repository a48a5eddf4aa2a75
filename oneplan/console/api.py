"""Self-service JSON endpoints for a developer (their key, or their console session): their
windows with reset time and forecast, series, per-model table, recent requests, and keys."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select, update
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from oneplan.console import queries
from oneplan.console.access import Caller, endpoint, json_body, json_response
from oneplan.console.forecast import pace_per_second, window_view
from oneplan.errors import InvalidRequest, NotFound
from oneplan.metering import rollup
from oneplan.store import schema

if TYPE_CHECKING:
    from oneplan.console.sessions import SessionStore
    from oneplan.server.gateway import Gateway

RANGES = {"24h": (86400, "hour"), "7d": (7 * 86400, "hour"), "30d": (30 * 86400, "day"), "90d": (90 * 86400, "day")}


def timezone(request: Request) -> ZoneInfo:
    try:
        return ZoneInfo(request.query_params.get("tz") or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidRequest("tz: not a time zone name (e.g. Europe/Paris).") from None


def range_of(request: Request, default: str = "7d") -> tuple[int, str]:
    name = request.query_params.get("range", default)
    if name not in RANGES:
        raise InvalidRequest(f"range: use one of {', '.join(RANGES)}.")
    seconds, step = RANGES[name]
    return seconds, request.query_params.get("step", step)


def days(request: Request, default: int = 30) -> int:
    try:
        value = int(request.query_params.get("days", default))
    except ValueError:
        raise InvalidRequest("days: a whole number of days.") from None
    if not 1 <= value <= 3660:
        raise InvalidRequest("days: between 1 and 3660.")
    return value


class Readers:
    """The roll-up, built once per process before the first read."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self._built = False

    async def run(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        if not self._built:
            await asyncio.to_thread(rollup.ensure, self.gateway.db.engine)
            self._built = True
        await self.gateway.ledger.flush()  # what the caller just did shows up at once
        return await asyncio.to_thread(fn, *args, **kwargs)


async def windows(
    gateway: Gateway, readers: Readers, user_id: int, plan_name: str, usage: dict[tuple[int, int], dict[str, float]] | None = None,
) -> list[dict[str, Any]]:
    """A user's windows with their forecast; ``usage`` is ``hour_usage`` for this and the last
    hour when the caller already has it (the operator's overview, for every user at once)."""
    plan = gateway.catalog.plans.get(plan_name)
    if plan is None:
        return []
    now = gateway.clock()
    states = await gateway.counters.states(user_id, plan)
    hour = rollup.hour_of(now)
    if usage is None:
        usage = await readers.run(queries.hour_usage, gateway.db, (hour - 3600, hour), user_id)
    nothing = {"requests": 0.0, "tokens": 0.0, "cost": 0.0}
    pace = pace_per_second(usage.get((user_id, hour), nothing), usage.get((user_id, hour - 3600), nothing), now)
    return [window_view(s, pace, gateway.periods, now) for s in states]


def plan_limits(gateway: Gateway, plan_name: str) -> dict[str, Any]:
    plan = gateway.catalog.plans.get(plan_name)
    if plan is None:
        return {"name": plan_name, "missing": True}
    return {
        "name": plan.name,
        "requests_per_5h": plan.requests_per_5h,
        "requests_per_week": plan.requests_per_week,
        "requests_per_month": plan.requests_per_month,
        "tokens_per_month": plan.tokens_per_month,
        "cost_per_month": plan.cost_per_month,
        "windows": [
            {"name": w.name, "unit": w.unit, "kind": w.kind, "length": w.length, "limit": w.limit} for w in plan.limits
        ],
        "concurrency": plan.concurrency,
        "requests_per_minute": plan.requests_per_minute,
        "models": [m for m in gateway.catalog.models if plan.includes(m)],
    }


def routes(gateway: Gateway, sessions: SessionStore, readers: Readers) -> list[Route]:
    db = gateway.db

    async def me(request: Request, who: Caller) -> Response:
        assert who.user_id is not None and who.plan is not None
        return json_response(
            {
                "user": who.user_name,
                "plan": plan_limits(gateway, who.plan),
                "windows": await windows(gateway, readers, who.user_id, who.plan),
                "generated_at": gateway.clock(),
            }
        )

    async def series(request: Request, who: Caller) -> Response:
        seconds, step = range_of(request)
        now = gateway.clock()
        data = await readers.run(
            queries.series, db, since=now - seconds, until=now + 1, step=step, tz=timezone(request), user_id=who.user_id
        )
        return json_response(data)

    async def models(request: Request, who: Caller) -> Response:
        since = gateway.clock() - days(request) * 86400
        return json_response({"data": await readers.run(queries.breakdown, db, "model", user_id=who.user_id, since=since)})

    async def recent(request: Request, who: Caller) -> Response:
        assert who.user_id is not None
        try:
            limit = min(200, max(1, int(request.query_params.get("limit", 200))))
        except ValueError:
            raise InvalidRequest("limit: a whole number up to 200.") from None
        return json_response({"data": await readers.run(queries.recent, db, who.user_id, limit)})

    async def list_keys(request: Request, who: Caller) -> Response:
        assert who.user_name is not None
        return json_response({"data": await asyncio.to_thread(own_keys, db, who.user_name)})

    async def create_key(request: Request, who: Caller) -> Response:
        assert who.user_name is not None
        data = await json_body(request)
        name = data.get("name") or None
        if name is not None and (not isinstance(name, str) or len(name) > 100):
            raise InvalidRequest("name: a text of at most 100 characters.")
        expires_at = None
        if data.get("expires_in_days") is not None:
            try:
                expires_at = time.time() + 86400 * float(data["expires_in_days"])
            except (TypeError, ValueError):
                raise InvalidRequest("expires_in_days: a number of days.") from None
        key_id, key = await asyncio.to_thread(_create_named_key, db, who.user_name, expires_at, name)
        await gateway.keys.reload()
        return json_response({"key_id": key_id, "key": key, "name": name, "expires_at": expires_at}, 201)

    async def revoke_key(request: Request, who: Caller) -> Response:
        assert who.user_name is not None
        key_id = request.path_params["key_id"]
        mine = {k["id"] for k in await asyncio.to_thread(own_keys, db, who.user_name)}
        if key_id not in mine or not await asyncio.to_thread(db.revoke_key, key_id):
            raise NotFound(f"You have no active key {key_id!r}.")
        await gateway.keys.reload()
        return json_response({"revoked": key_id})

    def guard(handler: Any) -> Any:
        return endpoint(gateway, sessions, handler)

    return [
        Route("/v1/me", guard(me), methods=["GET"]),
        Route("/v1/me/series", guard(series), methods=["GET"]),
        Route("/v1/me/models", guard(models), methods=["GET"]),
        Route("/v1/me/requests", guard(recent), methods=["GET"]),
        Route("/v1/me/keys", guard(list_keys), methods=["GET"]),
        Route("/v1/me/keys", guard(create_key), methods=["POST"]),
        Route("/v1/me/keys/{key_id}", guard(revoke_key), methods=["DELETE"]),
    ]


def own_keys(db: Any, user_name: str) -> list[dict[str, Any]]:
    k, u = schema.api_keys, schema.users
    query = select(k.c.id, k.c.name).join(u, u.c.id == k.c.user_id).where(u.c.name == user_name)
    with db.engine.connect() as conn:
        names = dict(conn.execute(query).all())
    return [{**key, "name": names.get(key["id"])} for key in db.list_keys(user_name)]


def _create_named_key(db: Any, user_name: str, expires_at: float | None, name: str | None) -> tuple[str, str]:
    key_id, key = db.create_key(user_name, expires_at)
    if name:
        with db.engine.begin() as conn:
            conn.execute(update(schema.api_keys).where(schema.api_keys.c.id == key_id).values(name=name))
    return key_id, key
