"""The routes of every protocol in ``protocols.registry``: each endpoint a protocol declares,
served by the handler for what it serves (the pipeline, a token count, a stored response)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, Any

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
from oneplan.store.db import KeyRecord

if TYPE_CHECKING:
    from oneplan.server.gateway import Gateway

Handler = Callable[[Request], Any]
KeyedHandler = Callable[[Request, KeyRecord], Awaitable[Response]]


def keyed(gateway: Gateway, protocol: Protocol, handler: KeyedHandler) -> Callable[[Request], Awaitable[Response]]:
    """``handler`` called with the caller's key, authenticated where ``protocol`` carries it;
    a failure of either is answered in that protocol's error shape."""

    async def endpoint(request: Request) -> Response:
        try:
            key = await gateway.keys.authenticate(protocol.api_key(request.headers), gateway.clock())
            return await handler(request, key)
        except OneplanError as exc:
            return error_response(protocol, exc)

    return endpoint


def routes(gateway: Gateway) -> list[Route]:
    out: list[Route] = []
    for protocol in PROTOCOLS:
        store = ResponseStore(gateway.db, gateway.catalog.server.responses_retention_days) if protocol.stores_state else None
        for endpoint in protocol.endpoints:
            out.append(Route(endpoint.path, _handler(gateway, protocol, endpoint, store), methods=list(endpoint.methods)))
    return out


def _handler(gateway: Gateway, protocol: Protocol, endpoint: Endpoint, store: ResponseStore | None) -> Handler:
    if endpoint.serves is Serves.CHAT:
        return chat(gateway, protocol, store, parameters="{" in endpoint.path)
    if endpoint.serves is Serves.COUNT_TOKENS:
        return count_tokens(gateway, protocol)
    if store is None:
        raise TypeError(f"{protocol.name}: {endpoint.path} serves stored responses, but the protocol stores none")
    return stored(gateway, protocol, store)


def chat(gateway: Gateway, protocol: Protocol, store: ResponseStore | None, *, parameters: bool) -> Handler:
    """One request through the pipeline. Marked ``hot``: ``FastFront`` calls it straight."""
    exchanges: ExchangeFactory = partial(Exchange, protocol, store, gateway.clock)

    async def endpoint(request: Request) -> Any:
        if parameters:
            params = request.path_params
            return await gateway.pipeline.handle(lambda: Exchange(protocol, store, gateway.clock, params), request)
        return await gateway.pipeline.handle(exchanges, request)

    endpoint.hot = True  # type: ignore[attr-defined]
    return endpoint


def count_tokens(gateway: Gateway, protocol: Protocol) -> Handler:
    async def count(request: Request, key: KeyRecord) -> Response:
        body = await read_json(request, gateway.catalog.server.max_body_bytes)

        def tokenizer_for(model: str) -> Tokenizer | None:
            entry, _plan = gateway.pipeline.resolve(model, key)
            deployment = entry.deployments[0]
            return gateway.providers[deployment.provider].token_counter(gateway.router.target(entry, deployment))

        return Response(orjson.dumps(protocol.count_tokens_body(body, tokenizer_for)), media_type="application/json")

    return keyed(gateway, protocol, count)


def stored(gateway: Gateway, protocol: Protocol, store: ResponseStore) -> Handler:
    """``GET`` (the stored response body) and ``DELETE`` one stored response of the caller's."""

    def missing(response_id: str) -> Response:
        return error_response(protocol, protocol.stored_missing(response_id))

    async def one(request: Request, key: KeyRecord) -> Response:
        response_id = next(iter(request.path_params.values()))
        if len(response_id) > 200 or not response_id.isprintable():
            return missing(response_id[:200])  # no stored id looks like that
        if request.method == "DELETE":
            if not await asyncio.to_thread(store.delete, response_id, key.user_id):
                return missing(response_id)
            return Response(orjson.dumps(protocol.stored_deleted(response_id)), media_type="application/json")
        found = await asyncio.to_thread(store.load, response_id, key.user_id, gateway.clock())
        if found is None:
            return missing(response_id)
        return Response(orjson.dumps(found[0]), media_type="application/json")

    return keyed(gateway, protocol, one)
