"""Alert endpoints: a developer's own settings (``GET``/``PUT /v1/alerts``, with their key or
console session), their weekly insights (``GET /v1/insights``; the team's for the operator), and
the outbox for the operator (``GET /admin/alerts``, admin key or operator session). A ``PUT``
without ``channels`` keeps the stored ones (the console's form changes thresholds only)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from oneplan.alerts import messages, subscriptions
from oneplan.alerts.digest import last_week_start, weekly
from oneplan.console.access import admin_refusal, caller
from oneplan.console.sessions import SessionStore
from oneplan.errors import InvalidRequest, OneplanError
from oneplan.protocols import openai_chat
from oneplan.server.auth import bearer
from oneplan.server.errors import error_response

if TYPE_CHECKING:
    from oneplan.server.gateway import Gateway

OPENAI = openai_chat.PROTOCOL


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


def routes(gateway: Gateway) -> list[Route]:
    alerts = gateway.alerts
    sessions = SessionStore(gateway.db)

    async def mine(request: Request) -> Response:
        try:
            key = await caller(gateway, sessions, request)
            if key.user_id is None:
                raise InvalidRequest("The admin key has no alerts of its own: see GET /admin/alerts.")
            if request.method == "PUT":
                try:
                    data = orjson.loads(await request.body())
                    if isinstance(data, dict) and "channels" not in data:
                        kept = await asyncio.to_thread(subscriptions.load, gateway.db, key.user_id)
                        data = {**data, "channels": (kept.get(key.user_id) or {}).get("channels", [])}
                    settings = subscriptions.validate(alerts.config, data)
                except orjson.JSONDecodeError:
                    raise InvalidRequest("The request body is not valid JSON.") from None
                except ValueError as exc:
                    raise InvalidRequest(str(exc)) from None
                await asyncio.to_thread(subscriptions.save, gateway.db, key.user_id, settings)
                alerts.forget(key.user_id)
            stored = await asyncio.to_thread(subscriptions.load, gateway.db, key.user_id)
            events = await asyncio.to_thread(alerts.outbox.events, gateway.clock() - 30 * 86400, key.user_id, 100)
        except OneplanError as exc:
            return error_response(OPENAI, exc)
        own = [
            {k: e.get(k) for k in ("key", "kind", "event", "title", "text", "window", "used", "limit", "at")}
            for e in events
        ]
        settings = stored.get(key.user_id) or subscriptions.UserSettings().model_dump()
        return _json({"settings": subscriptions.redact(settings), "events": own})

    async def insights(request: Request) -> Response:
        try:
            key = await caller(gateway, sessions, request)
        except OneplanError as exc:
            return error_response(OPENAI, exc)
        await gateway.ledger.flush()
        plan = gateway.catalog.plans.get(key.plan or "")
        start = last_week_start(gateway.periods, gateway.clock())
        payload = await asyncio.to_thread(
            lambda: weekly(
                gateway.db, start, tz=gateway.catalog.server.quota_timezone, user_id=key.user_id,
                who=key.user_name or "the team", plan_models=list(plan.models) if plan else None,
                link=messages.link(alerts.config.console_url, "usage"),
            )
        )
        return _json(payload)

    async def outbox(request: Request) -> Response:
        if not gateway.keys.is_admin(bearer(request.headers)):
            refused = await admin_refusal(gateway, request)
            if refused is not None:
                return error_response(OPENAI, refused)
        return _json(await asyncio.to_thread(alerts.outbox.status))

    return [
        Route("/v1/alerts", mine, methods=["GET", "PUT"]),
        Route("/v1/insights", insights, methods=["GET"]),
        Route("/admin/alerts", outbox, methods=["GET"]),
    ]
