"""The Responses API's server side: ``previous_response_id``, ``store`` and
``GET``/``DELETE /v1/responses/{id}``.

Stateless by default: a response is kept only when the request says ``"store": true`` and the
operator's retention (``server.responses_retention_days``) is above zero. A stored response
holds its whole conversation (earlier turns' items, this input, this output) so a later request
can continue from it; it belongs to the user who made it - to anyone else its id does not exist.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import orjson
from sqlalchemy import delete, insert, select
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from oneplan.errors import NotFound, OneplanError
from oneplan.protocols import responses as rp
from oneplan.protocols.base import StreamContext, StreamRenderer
from oneplan.protocols.canonical import ChatRequest, ChatResult
from oneplan.server.auth import bearer
from oneplan.server.errors import error_response
from oneplan.server.pipeline import Call, Exchange
from oneplan.store import schema
from oneplan.store.db import Database, KeyRecord

PROTOCOL = rp.PROTOCOL


class ResponseStore:
    def __init__(self, db: Database, retention_days: float) -> None:
        self.db = db
        self.retention = retention_days * 86400

    @property
    def enabled(self) -> bool:
        return self.retention > 0

    def load(self, response_id: str, user_id: int, now: float) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
        t = schema.responses
        with self.db.engine.connect() as conn:
            row = conn.execute(
                select(t.c.body, t.c.conversation).where(
                    t.c.id == response_id, t.c.user_id == user_id, t.c.expires_at > now
                )
            ).first()
        return (orjson.loads(row.body), orjson.loads(row.conversation)) if row else None

    def save(self, response_id: str, user_id: int, body: dict[str, Any], items: list[dict[str, Any]], now: float) -> None:
        t = schema.responses
        with self.db.engine.begin() as conn:
            conn.execute(delete(t).where(t.c.expires_at <= now))  # retention, enforced as we go
            conn.execute(
                insert(t).values(
                    id=response_id, user_id=user_id, created_at=now, expires_at=now + self.retention,
                    body=orjson.dumps(body), conversation=orjson.dumps(items),
                )
            )

    def delete(self, response_id: str, user_id: int) -> bool:
        t = schema.responses
        with self.db.engine.begin() as conn:
            return bool(conn.execute(delete(t).where(t.c.id == response_id, t.c.user_id == user_id)).rowcount)


class ResponsesExchange(Exchange):
    """One Responses request: its envelope, its history, and storing it afterwards."""

    __slots__ = ("clock", "envelope", "history", "key", "store")

    def __init__(self, store: ResponseStore, clock: Any) -> None:
        super().__init__(PROTOCOL)
        self.store = store
        self.clock = clock
        self.envelope: rp.ResponsesEnvelope | None = None
        self.history: list[dict[str, Any]] = []
        self.key: KeyRecord | None = None

    async def parse(self, body: Any, key: KeyRecord) -> ChatRequest:
        request = PROTOCOL.parse(body)
        envelope = rp.parse_envelope(body)
        self.key = key
        if envelope.previous_response_id:
            found = await asyncio.to_thread(self.store.load, envelope.previous_response_id, key.user_id, self.clock())
            if found is None:
                raise NotFound(
                    f"Previous response with id '{envelope.previous_response_id}' not found.",
                    param="previous_response_id",
                )
            self.history = found[1]
            rp.prepend_history(request, self.history, envelope.tool_map)
        keep = isinstance(body, dict) and body.get("store") is True and self.store.enabled
        self.envelope = dataclasses.replace(envelope, store=keep)
        return request

    def render(self, result: ChatResult, ctx: StreamContext) -> dict[str, Any]:
        return rp.render_response(result, ctx, self.envelope)

    def renderer(self, ctx: StreamContext) -> StreamRenderer:
        return rp.renderer_for(ctx, self.envelope)

    @property
    def wants_result(self) -> bool:
        return self.envelope is not None and self.envelope.store

    async def completed(self, call: Call, result: ChatResult, ctx: StreamContext) -> None:
        envelope = self.envelope
        if envelope is None or not envelope.store or self.key is None:
            return
        result.id = call.id
        body = rp.render_response(result, ctx, envelope)
        items = self.history + envelope.input + rp.output_items(result, call.id, envelope)
        await asyncio.to_thread(self.store.save, call.id, self.key.user_id, body, items, self.clock())


def routes(gateway: Any, endpoint: Any) -> list[Route]:
    store = ResponseStore(gateway.db, gateway.catalog.server.responses_retention_days)

    def exchanges() -> Exchange:
        return ResponsesExchange(store, gateway.clock)

    async def owned(request: Request) -> tuple[KeyRecord, str] | Response:
        try:
            key = await gateway.keys.authenticate(bearer(request.headers), gateway.clock())
        except OneplanError as exc:
            return error_response(PROTOCOL, exc)
        response_id = request.path_params["response_id"]
        if len(response_id) > 200 or not response_id.isprintable():
            return missing(response_id[:200])  # no stored id looks like that
        return key, response_id

    def missing(response_id: str) -> Response:
        return error_response(PROTOCOL, NotFound(f"Response with id '{response_id}' not found.", param="response_id"))

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
        return Response(
            orjson.dumps({"id": response_id, "object": "response.deleted", "deleted": True}),
            media_type="application/json",
        )

    async def one(request: Request) -> Response:
        return await (remove if request.method == "DELETE" else get)(request)

    return [
        Route("/v1/responses", endpoint(gateway, exchanges), methods=["POST"]),
        Route("/responses", endpoint(gateway, exchanges), methods=["POST"]),
        Route("/v1/responses/{response_id}", one, methods=["GET", "DELETE"]),
    ]
