"""The Anthropic Messages endpoints: ``POST /v1/messages`` and ``/v1/messages/count_tokens``.

Claude Code and the ``anthropic`` SDK authenticate with ``x-api-key`` or a bearer token, add
``?beta=true`` and ``anthropic-beta`` headers (neither changes anything here), and keep a stream
alive through long silences with ``ping`` events.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from oneplan.errors import OneplanError
from oneplan.protocols import anthropic
from oneplan.protocols.base import StreamContext, StreamRenderer
from oneplan.protocols.canonical import ChatRequest
from oneplan.server.auth import bearer
from oneplan.server.errors import error_response
from oneplan.server.pipeline import Exchange, read_json
from oneplan.store.db import KeyRecord

PROTOCOL = anthropic.PROTOCOL


class MessagesExchange(Exchange):
    __slots__ = ("body",)
    ping_interval = 10.0

    def __init__(self) -> None:
        super().__init__(PROTOCOL)
        self.body: Any = None

    async def parse(self, body: Any, key: KeyRecord) -> ChatRequest:
        self.body = body
        return PROTOCOL.parse(body)

    def renderer(self, ctx: StreamContext) -> StreamRenderer:
        # message_start announces input tokens before the upstream has counted them.
        ctx.input_tokens_estimate = PROTOCOL.count_tokens(self.body)["input_tokens"]
        return PROTOCOL.renderer(ctx)


def routes(gateway: Any, endpoint: Any) -> list[Route]:
    async def count_tokens(request: Request) -> Response:
        try:
            key = await gateway.keys.authenticate(bearer(request.headers), gateway.clock())
            body = await read_json(request, gateway.catalog.server.max_body_bytes)
            chat = PROTOCOL.parse({"max_tokens": 1, **body} if isinstance(body, dict) else body)
            entry, _plan = gateway.pipeline.resolve(chat.model, key)
            deployment = entry.deployments[0]
            counter = gateway.providers[deployment.provider].token_counter(
                gateway.router.target(entry, deployment)
            )
            # The model's own tokenizer where one is at hand (local checkpoints), else the
            # documented estimate (protocols/anthropic_tokens.py).
            counted = PROTOCOL.count_tokens(body, counter)
        except OneplanError as exc:
            return error_response(PROTOCOL, exc)
        return Response(orjson.dumps(counted), media_type="application/json")

    return [
        Route("/v1/messages", endpoint(gateway, MessagesExchange), methods=["POST"]),
        Route("/v1/messages/count_tokens", count_tokens, methods=["POST"]),
    ]
