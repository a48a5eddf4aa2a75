"""Who is calling a console or self-service endpoint: a key (``Authorization: Bearer``) or a
console session (cookie + CSRF token on every state-changing call)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import orjson
from starlette.requests import Request
from starlette.responses import Response

from oneplan.console.sessions import COOKIE, Session, csrf_ok
from oneplan.errors import AuthenticationFailed, InvalidRequest, NotFound, OneplanError, PermissionDenied

if TYPE_CHECKING:
    from oneplan.console.sessions import SessionStore
    from oneplan.server.gateway import Gateway

log = logging.getLogger("oneplan.console")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_HEADER = "x-csrf-token"
Handler = Callable[[Request, "Caller"], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class Caller:
    user_id: int | None  # None: the operator
    user_name: str | None
    plan: str | None
    key_id: str | None
    session: Session | None

    @property
    def is_admin(self) -> bool:
        return self.user_id is None


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS), status_code=status, media_type="application/json",
        headers={"cache-control": "no-store", **(headers or {})},
    )


def error_json(exc: OneplanError) -> Response:
    body = {"error": {"message": exc.message, "type": exc.kind, "code": exc.code}}
    return json_response(body, exc.status, exc.headers)


def same_origin(request: Request) -> bool:
    """A browser's cross-site request names its origin; ours match the Host we were reached at."""
    origin = request.headers.get("origin") or request.headers.get("referer")
    if not origin:
        return request.headers.get("sec-fetch-site") in (None, "same-origin", "none")
    if origin == "null":
        return False
    return urlsplit(origin).netloc == request.headers.get("host")


async def caller(gateway: Gateway, sessions: SessionStore, request: Request) -> Caller:
    """The authenticated caller, or ``AuthenticationFailed``/``PermissionDenied``."""
    key = _bearer(request)
    if key is not None:
        if gateway.keys.is_admin(key):
            return Caller(None, None, None, None, None)
        record = await gateway.keys.authenticate(key, gateway.clock())
        return Caller(record.user_id, record.user_name, record.plan, record.key_id, None)
    token = request.cookies.get(COOKIE)
    if not token:
        raise AuthenticationFailed("Sign in at /console, or send your key as 'Authorization: Bearer KEY'.")
    session = await asyncio.to_thread(sessions.get, token, gateway.clock())
    if session is None:
        raise AuthenticationFailed("Your console session has ended: sign in again.")
    if request.method not in SAFE_METHODS and (
        not csrf_ok(token, request.headers.get(CSRF_HEADER)) or not same_origin(request)
    ):
        raise PermissionDenied("Cross-site request refused: the CSRF token is missing or wrong.")
    return Caller(session.user_id, session.user_name, session.plan, None, session)


def _bearer(request: Request) -> str | None:
    auth = request.headers.get("authorization")
    if auth:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return request.headers.get("x-api-key") or None


def endpoint(gateway: Gateway, sessions: SessionStore, handler: Handler, *, admin: bool = False) -> Callable[[Request], Awaitable[Response]]:
    """``handler(request, caller)`` behind authentication; ``admin`` endpoints refuse developers
    with a 403."""

    async def run(request: Request) -> Response:
        try:
            who = await caller(gateway, sessions, request)
            if admin and not who.is_admin:
                raise PermissionDenied("This endpoint is for the operator (the admin key).")
            if not admin and who.is_admin:
                raise InvalidRequest("The admin key has no usage of its own: use the /admin/... endpoints.")
            return await handler(request, who)
        except OneplanError as exc:
            return error_json(exc)
        except ValueError as exc:
            return error_json(NotFound(str(exc)) if str(exc).startswith("no ") else InvalidRequest(str(exc)))

    return run


async def json_body(request: Request) -> dict[str, Any]:
    try:
        data = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        raise InvalidRequest("The request body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    return data


async def admin_refusal(gateway: Gateway, request: Request) -> OneplanError | None:
    """For the admin API's endpoints that predate the console: None when an operator's console
    session makes this call (with its CSRF token when it changes something), else the error
    (403 for a developer's session)."""
    from oneplan.console.sessions import SessionStore

    if not request.cookies.get(COOKIE):
        return AuthenticationFailed("This endpoint needs the admin key.")
    try:
        who = await caller(gateway, SessionStore(gateway.db), request)
    except OneplanError as exc:
        return exc
    return None if who.is_admin else PermissionDenied("This endpoint is for the operator (the admin key).")
