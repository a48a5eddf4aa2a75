"""The ASGI application: routes only; the work happens in ``Pipeline`` and ``Gateway``."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route

from oneplan.console.routes import routes as console_routes
from oneplan.errors import AuthenticationFailed, NotFound, OneplanError
from oneplan.protocols import openai_chat
from oneplan.server import admin, plans_api
from oneplan.server.alerts_api import routes as alerts_routes
from oneplan.server.errors import error_response, internal_error, protocol_for
from oneplan.server.gateway import Gateway
from oneplan.server.protocol_routes import keyed
from oneplan.server.protocol_routes import routes as protocol_routes
from oneplan.store.db import KeyRecord

log = logging.getLogger("oneplan")
OPENAI = openai_chat.PROTOCOL


def json_response(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


class FastFront:
    """The inference endpoints, straight from uvicorn to the pipeline; everything else through
    Starlette's middleware and router.

    The pipeline renders every error it knows in the caller's protocol, so Starlette's
    exception middleware has nothing to add on these paths; skipping it and the route scan is
    ~15% of a request's CPU at thousands of requests a second (README, "Performance").

    The hot routes are the protocols' chat endpoints (``protocol_routes``): a plain path is one
    dict lookup; a path with parameters (a model in the path, say) is matched as Starlette
    would, its parameters in ``request.path_params``."""

    def __init__(self, app: Starlette, routes: list[Any]) -> None:
        self.app = app
        hot = [r for r in routes if isinstance(r, Route) and getattr(r.endpoint, "hot", False)]
        self.hot = {r.path: r.endpoint for r in hot if not r.param_convertors}
        self.patterns = [r for r in hot if r.param_convertors]

    def endpoint_for(self, scope: Any) -> Any:
        """The hot endpoint for a POST's ``scope`` (its ``path_params`` set), or None. Also what
        the HTTP protocol asks to serve a request without ASGI (``server/hot.py``)."""
        endpoint = self.hot.get(scope["path"])
        if endpoint is not None or not self.patterns:
            return endpoint
        for route in self.patterns:
            match, child = route.matches(scope)
            if match is Match.FULL:
                scope.update(child)  # path_params, as Starlette's router sets them
                return route.endpoint
        return None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            endpoint = self.endpoint_for(scope)
            if endpoint is not None:
                request = Request(scope, receive, send)
                try:
                    response = await endpoint(request)
                except Exception:
                    log.exception("unhandled error on POST %s", scope["path"])
                    response = internal_error(scope["path"])
                await response(scope, receive, send)
                return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = False

        async def tracked(message: Any) -> None:
            nonlocal sent
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                sent = True

        try:
            await self.app(scope, receive, tracked)
        except Exception:
            # Starlette re-raises after its exception handler answered (``server_error`` below,
            # which logged it): the answer is out and says ``connection: close``. Only an
            # exception mid-response is left to uvicorn, which must cut the connection.
            if not sent:
                raise


def create_app(gateway: Gateway) -> FastFront:
    async def models(request: Request, key: KeyRecord) -> Response:
        plan = gateway.catalog.plans.get(key.plan)
        data = [
            {
                "id": name,
                "object": "model",
                "created": 0,
                "owned_by": entry.deployments[0].provider,
            }
            for name, entry in gateway.catalog.models.items()
            if plan is not None and plan.includes(name)
        ]
        if "model" in request.path_params:
            found = next((m for m in data if m["id"] == request.path_params["model"]), None)
            if found is None:
                return error_response(OPENAI, NotFound(f"The model '{request.path_params['model']}' does not exist."))
            return json_response(found)
        return json_response({"object": "list", "data": data})

    async def my_usage(request: Request, key: KeyRecord) -> Response:
        return json_response(await admin.usage_report(gateway, key.user_name))

    async def healthz(request: Request) -> Response:
        return json_response({"status": "ok"})

    async def metrics(request: Request) -> Response:
        body, content_type = gateway.metrics.render()
        return Response(body, media_type=content_type)

    async def readyz(request: Request) -> Response:
        problems = await admin.readiness(gateway)
        return json_response({"status": "ok" if not problems else "unavailable", "problems": problems}, 200 if not problems else 503)

    routes = [
        *protocol_routes(gateway),
        Route("/v1/models", keyed(gateway, OPENAI, models), methods=["GET"]),
        Route("/v1/models/{model:path}", keyed(gateway, OPENAI, models), methods=["GET"]),
        Route("/v1/usage", keyed(gateway, OPENAI, my_usage), methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        *admin.routes(gateway),
        *plans_api.routes(gateway),
        *alerts_routes(gateway),
        *console_routes(gateway),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await gateway.start()
        try:
            yield
        finally:
            await gateway.close()

    async def http_error(request: Request, exc: Exception) -> Response:
        """Starlette's own 404 and 405 (and any ``HTTPException``), in the path's protocol."""
        assert isinstance(exc, HTTPException)
        status = exc.status_code
        path = request.url.path
        error: OneplanError
        headers = {k.lower(): v for k, v in (exc.headers or {}).items()}
        if status == 404:
            error = NotFound(f"No route {request.method} {path}.")
        else:
            message = str(exc.detail)
            if status == 405 and "allow" in headers:
                message = f"{request.method} is not allowed on {path}: use {headers['allow']}."
            error = OneplanError(message)
            error.status = status
            error.kind = "invalid_request_error"
        return error_response(protocol_for(path), error, headers)

    async def server_error(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return internal_error(request.url.path, close=True)

    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: http_error, Exception: server_error},
    )
    return FastFront(app, routes)


__all__ = ["AuthenticationFailed", "create_app"]
