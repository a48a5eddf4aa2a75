"""The routes of every protocol in ``protocols.registry``: each endpoint a protocol declares,
served by the handler for what it serves (the pipeline, a token count, a stored response)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import partial
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from oneplan.errors import OneplanError
from oneplan.protocols.base import Endpoint, Protocol, Serves, Tokenizer
from oneplan.protocols.registry import PROTOCOLS
from oneplan.server.errors import error_response
from oneplan.server.exchange import Exchange, ExchangeFactory
from oneplan.server.pipeline import read_json
from oneplan.server.stored import ResponseStore

Handler = Callable[[Request], Any]


def routes(gateway: Any) -> list[Route]:
    out: list[Route] = []
    for protocol in PROTOCOLS:
        store = ResponseStore(gateway.db, gateway.catalog.server.responses_retention_days) if protocol.stores_state else None
        for endpoint in protocol.endpoints:
            out.append(Route(endpoint.path, _handler(gateway, protocol, endpoint, store), methods=list(endpoint.methods)))
    return out


def _handler(gateway: Any, protocol: Protocol, endpoint: Endpoint, store: ResponseStore | None) -> Handler:
    if endpoint.serves is Serves.CHAT:
        return chat(gateway, protocol, store, parameters="{" in endpoint.path)
    if endpoint.serves is Serves.COUNT_TOKENS:
        return count_tokens(gateway, protocol)
    if store is None:
        raise TypeError(f"{protocol.name}: {endpoint.path} serves stored responses, but the protocol stores none")
    return stored(gateway, protocol, store)


def chat(gateway: Any, protocol: Protocol, store: ResponseStore | None, *, parameters: bool) -> Handler:
    """One request through the pipeline. Marked ``hot``: ``FastFront`` calls it straight."""
    exchanges: ExchangeFactory = partial(Exchange, protocol, store, gateway.clock)

    async def endpoint(request: Request) -> Any:
        if parameters:
            params = request.path_params
            return await gateway.pipeline.handle(lambda: Exchange(protocol, store, gateway.clock, params), request)
        return await gateway.pipeline.handle(exchanges, request)

    endpoint.hot = True  # type: ignore[attr-defined]
    return endpoint


def count_tokens(gateway: Any, protocol: Protocol) -> Handler:
    async def endpoint(request: Request) -> Response:
        try:
            key = await gateway.keys.authenticate(protocol.api_key(request.headers), gateway.clock())
            body = await read_json(request, gateway.catalog.server.max_body_bytes)

            def tokenizer_for(model: str) -> Tokenizer | None:
                entry, _plan = gateway.pipeline.resolve(model, key)
                deployment = entry.deployments[0]
                return gateway.providers[deployment.provider].token_counter(  # type: ignore[no-any-return]
                    gateway.router.target(entry, deployment)
                )

            counted = protocol.count_tokens_body(body, tokenizer_for)
        except OneplanError as exc:
            return error_response(protocol, exc)
        return Response(orjson.dumps(counted), media_type="application/json")

    return endpoint


def stored(gateway: Any, protocol: Protocol, store: ResponseStore) -> Handler:
    """``GET`` (the stored response body) and ``DELETE`` one stored response of the caller's."""

    def missing(response_id: str) -> Response:
        return error_response(protocol, protocol.stored_missing(response_id))

    async def owned(request: Request) -> tuple[Any, str] | Response:
        try:
            key = await gateway.keys.authenticate(protocol.api_key(request.headers), gateway.clock())
        except OneplanError as exc:
            return error_response(protocol, exc)
        response_id = next(iter(request.path_params.values()))
        if len(response_id) > 200 or not response_id.isprintable():
            return missing(response_id[:200])  # no stored id looks like that
        return key, response_id

    async def get(request: Request) -> Response:
        who = await owned(request)
        if isinstance(who, Response):
            return who
        key, response_id = who
        found = await asyncio.to_thread(store.load, response_id, key.user_id, gateway.clock())
        if found is None:
            return missing(response_id)
        return Response(orjson.dumps(found[0]), media_type="application/json")

    async def remove(request: Request) -> Response:
        who = await owned(request)
        if isinstance(who, Response):
            return who
        key, response_id = who
        if not await asyncio.to_thread(store.delete, response_id, key.user_id):
            return missing(response_id)
        return Response(orjson.dumps(protocol.stored_deleted(response_id)), media_type="application/json")

    async def endpoint(request: Request) -> Response:
        return await (remove if request.method == "DELETE" else get)(request)

    return endpoint
