"""``FastFront`` serves the protocols' chat endpoints straight from uvicorn, bypassing
Starlette's middleware and router - plain paths and paths with parameters alike (a protocol
that names its model in the path, as Gemini's ``/v1beta/models/{model}:generateContent`` does)."""

from __future__ import annotations

import asyncio

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from oneplan.server.app import FastFront


async def hot(request: Request) -> JSONResponse:
    # Starlette's router puts the app in the scope; the fast path does not go through it.
    return JSONResponse({"params": dict(request.path_params), "via_starlette": "app" in request.scope})


hot.hot = True  # type: ignore[attr-defined]


def front() -> FastFront:
    routes = [
        Route("/v1/chat/completions", hot, methods=["POST"]),
        Route("/v1beta/models/{model}:generateContent", hot, methods=["POST"]),
        Route("/v1/responses/{response_id}", lambda r: JSONResponse({"via_starlette": True}), methods=["GET"]),
    ]
    return FastFront(Starlette(routes=routes), routes)


def post(path: str, method: str = "POST") -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=front())
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            return await client.request(method, path, json={})

    return asyncio.run(go())


def test_plain_and_parameterised_chat_paths_take_the_fast_path() -> None:
    assert post("/v1/chat/completions").json() == {"params": {}, "via_starlette": False}
    assert post("/v1beta/models/gemini-3:generateContent").json() == {
        "params": {"model": "gemini-3"}, "via_starlette": False,
    }


def test_everything_else_goes_through_starlette() -> None:
    assert post("/v1/responses/resp_1", "GET").json() == {"via_starlette": True}
    assert post("/v1beta/models/gemini-3:countTokens").status_code == 404
    assert post("/v1/chat/completions", "GET").status_code == 405


def test_a_parameterised_path_does_not_match_across_segments() -> None:
    assert post("/v1beta/models/a/b:generateContent").status_code == 404


