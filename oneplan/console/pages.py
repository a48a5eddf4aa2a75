"""The console's HTML pages (server-rendered shells the scripts fill from the JSON endpoints),
sign-in and sign-out, and the static files; every response carries a strict CSP."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import orjson
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from oneplan.console.access import same_origin
from oneplan.console.sessions import COOKIE, PRESESSION_COOKIE, Session, SessionStore, SignInLimiter, csrf_ok
from oneplan.console.snippets import snippets
from oneplan.console.strings import EN
from oneplan.errors import OneplanError

if TYPE_CHECKING:
    from oneplan.server.gateway import Gateway

HERE = Path(__file__).parent
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}
STATIC_VERSION = hashlib.sha256(
    b"".join(p.read_bytes() for p in sorted((HERE / "static").iterdir()) if p.is_file())
).hexdigest()[:12]

templates = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]))


class SecuredStatic:
    """Static files with long caching (URLs carry a content version) and the same headers."""

    def __init__(self) -> None:
        self.files = StaticFiles(directory=HERE / "static")

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"cache-control"]
                headers += [
                    (b"cache-control", b"public, max-age=31536000, immutable"),
                    (b"x-content-type-options", b"nosniff"),
                    (b"content-security-policy", CSP.encode()),
                ]
                message = {**message, "headers": headers}
            await send(message)

        await self.files(scope, receive, send_with_headers)


def page(name: str, request: Request, status: int = 200, **context: Any) -> Response:
    html = templates.get_template(name).render(
        t=EN, strings_json=orjson.dumps(EN).decode().replace("</", "<\\/"), static="/console/static", v=STATIC_VERSION, **context
    )
    return Response(html, status_code=status, media_type="text/html; charset=utf-8", headers=SECURITY_HEADERS)


async def small_form(request: Request) -> dict[str, str]:
    """An urlencoded form of a few fields (no multipart: these forms carry a key or a token)."""
    body = await request.body()
    if len(body) > 16_384:
        return {}
    return {k: v[0] for k, v in parse_qs(body.decode(errors="replace")).items()}


def _cookie(response: Response, request: Request, name: str, value: str, max_age: int | None, path: str = "/") -> None:
    response.set_cookie(
        name, value, max_age=max_age, path=path, httponly=True, samesite="strict",
        secure=request.url.scheme == "https",
    )


def routes(gateway: Gateway, sessions: SessionStore, limiter: SignInLimiter) -> list[Route | Mount]:
    async def current(request: Request) -> Session | None:
        token = request.cookies.get(COOKIE)
        if not token:
            return None
        return await asyncio.to_thread(sessions.get, token, gateway.clock())

    def shell(request: Request, session: Session, name: str, status: int = 200) -> Response:
        plan = gateway.catalog.plans.get(session.plan or "")
        models = [m for m in gateway.catalog.models if plan is not None and plan.includes(m)] or list(gateway.catalog.models)
        base = str(request.base_url).rstrip("/")
        return page(
            name, request, status, session=session, csrf=session.csrf, snippets=snippets(base, models),
            who=session.user_name or EN["operator"], plans=sorted(gateway.catalog.plans),
        )

    async def console(request: Request) -> Response:
        session = await current(request)
        if session is None:
            return RedirectResponse("/console/sign-in", 303)
        return shell(request, session, "admin.html" if session.is_admin else "developer.html")

    async def admin_page(request: Request) -> Response:
        session = await current(request)
        if session is None:
            return RedirectResponse("/console/sign-in", 303)
        if not session.is_admin:
            return shell(request, session, "forbidden.html", 403)
        return shell(request, session, "admin.html")

    def sign_in_form(request: Request, error: str | None = None, status: int = 200) -> Response:
        nonce = secrets.token_urlsafe(24)
        response = page("sign_in.html", request, status, nonce=nonce, error=error)
        _cookie(response, request, PRESESSION_COOKIE, nonce, 600, "/console/sign-in")
        return response

    async def sign_in_get(request: Request) -> Response:
        if await current(request) is not None:
            return RedirectResponse("/console", 303)
        return sign_in_form(request)

    async def sign_in_post(request: Request) -> Response:
        wait = limiter.allow(request.client.host if request.client else "?")
        if wait:
            response = sign_in_form(request, EN["sign_in_limited"], 429)
            response.headers["retry-after"] = str(int(wait) + 1)
            return response
        form = await small_form(request)
        nonce = request.cookies.get(PRESESSION_COOKIE, "")
        sent = str(form.get("nonce") or "")
        if not same_origin(request) or not nonce or not hmac.compare_digest(nonce, sent):
            return sign_in_form(request, EN["sign_in_stale"], 403)
        key = str(form.get("key") or "").strip()
        now = gateway.clock()
        if gateway.keys.is_admin(key):
            token = await asyncio.to_thread(sessions.create, None, None, now)
        else:
            try:
                record = await gateway.keys.authenticate(key, now)
            except OneplanError:
                return sign_in_form(request, EN["sign_in_failed"], 401)
            token = await asyncio.to_thread(sessions.create, record.user_id, record.key_id, now)
        response = RedirectResponse("/console", 303)
        _cookie(response, request, COOKIE, token, int(sessions.seconds))
        response.delete_cookie(PRESESSION_COOKIE, path="/console/sign-in")
        return response

    async def sign_out(request: Request) -> Response:
        token = request.cookies.get(COOKIE)
        form = await small_form(request)
        if token:
            if not same_origin(request) or not csrf_ok(token, str(form.get("csrf") or "")):
                return Response("Cross-site request refused.", 403, headers=SECURITY_HEADERS)
            await asyncio.to_thread(sessions.end, token)
        response = RedirectResponse("/console/sign-in", 303)
        response.delete_cookie(COOKIE, path="/")
        return response

    return [
        Route("/console", console, methods=["GET"]),
        Route("/console/", console, methods=["GET"]),
        Route("/console/admin", admin_page, methods=["GET"]),
        Route("/console/sign-in", sign_in_get, methods=["GET"]),
        Route("/console/sign-in", sign_in_post, methods=["POST"]),
        Route("/console/sign-out", sign_out, methods=["POST"]),
        Mount("/console/static", app=SecuredStatic()),
    ]
