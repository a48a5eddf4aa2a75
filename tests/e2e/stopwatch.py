"""A pass-through HTTP proxy in front of ``oneplan serve`` that notes when each request arrived,
so a test can time an agent from its first request (not from its process start, which for a
Node CLI is seconds of loading) to its exit, and count its retries."""

from __future__ import annotations

import time
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

from tests.support.gateway import ServerThread

_HOP = {"host", "content-length", "connection", "transfer-encoding", "keep-alive"}


class Stopwatch:
    def __init__(self, target: str) -> None:
        self.target = target.rstrip("/")
        self.arrivals: list[tuple[float, str, str]] = []  # (monotonic, method, path)
        self._client: httpx.AsyncClient | None = None
        app = Starlette(routes=[Route("/{path:path}", self._relay, methods=["GET", "POST", "HEAD", "DELETE", "PUT"])])
        self._server = ServerThread(app)
        self.url = self._server.url

    async def _relay(self, request: Request) -> StreamingResponse:
        self.arrivals.append((time.monotonic(), request.method, request.url.path))
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=None)
        url = self.target + request.url.path + (f"?{request.url.query}" if request.url.query else "")
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        upstream = await self._client.send(
            self._client.build_request(request.method, url, headers=headers, content=await request.body()), stream=True
        )
        out = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP | {"content-encoding"}}
        return StreamingResponse(upstream.aiter_raw(), status_code=upstream.status_code, headers=out,
                                 background=BackgroundTask(upstream.aclose))

    def model_calls(self, path_suffixes: tuple[str, ...] = ("/messages", "/responses", "/chat/completions")) -> list[float]:
        return [t for t, method, path in self.arrivals if method == "POST" and path.endswith(path_suffixes)]

    def __enter__(self) -> Stopwatch:
        self._server.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.stop()
