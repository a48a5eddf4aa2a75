"""The OpenAI Responses API (``POST /v1/responses``), both directions.

Pure translation, no storage: ``PROTOCOL.accept`` reads a request into a ``ResponsesTurn``,
which says which stored response it continues (``previous_response_id``) and, once answered,
what to keep; the server does the loading and storing (``server/stored.py``)::

    turn = PROTOCOL.accept(body)
    if turn.continues:
        turn.resume(store.load(turn.continues))              # or raise turn.missing()
    turn.keep(storage_enabled)
    ...
    body = turn.render(result, ctx)                          # or turn.renderer(ctx)
    if turn.stores:
        store.save(ctx.response_id, *turn.stored(result, ctx))

``render`` and ``renderer`` (the ``Protocol`` interface) work without the envelope: they echo
what the canonical request holds, answer custom tools as plain function calls and omit
``encrypted_content``. Use the ``*_for`` / ``render_response`` forms when the body is at hand.

Decisions (see the submodules' docstrings for the why):

* hosted tools (``web_search``, ``file_search``, ``image_generation``, ``local_shell``,
  ``tool_search``, ``mcp``...) are dropped, so Codex CLI's default tool set works;
* ``custom`` (free-form) tools are served as a function with one ``input`` string and answered
  as ``custom_tool_call`` items; ``namespace`` tools are flattened to ``namespace__name``;
* ``reasoning.effort`` "none"/"minimal" disables thinking, any other effort enables it;
* reasoning is shown as a reasoning summary; ``encrypted_content`` (when included) is an
  encoding of the reasoning and its signature, which oneplan reads back on a later turn;
* ``store`` defaults to true as in the API; the server stores only if the operator allows it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

from oneplan.errors import NotFound, OneplanError
from oneplan.protocols.base import (
    Endpoint,
    Passthrough,
    Protocol,
    Serves,
    StreamContext,
    StreamRenderer,
    Turn,
    thinking_below,
)
from oneplan.protocols.canonical import ChatRequest, ChatResult
from oneplan.protocols.responses.parse import (
    Resolver,
    ResponsesEnvelope,
    ToolMap,
    input_items,
    items_to_messages,
    parse_envelope,
    parse_request,
    prepend_history,
    tool_map_for,
)
from oneplan.protocols.responses.render import (
    error_body,
    output_items,
    render_response,
    response_error,
    usage_dict,
)
from oneplan.protocols.responses.stream import ResponsesStreamRenderer
from oneplan.protocols.responses.upstream import CODEC, UpstreamStreamParser, from_upstream, to_upstream

__all__ = [
    "CODEC",
    "PROTOCOL",
    "Resolver",
    "ResponsesEnvelope",
    "ResponsesProtocol",
    "ResponsesStreamRenderer",
    "ResponsesTurn",
    "ToolMap",
    "UpstreamStreamParser",
    "error_body",
    "from_upstream",
    "input_items",
    "items_to_messages",
    "output_items",
    "parse_envelope",
    "prepend_history",
    "render_response",
    "renderer_for",
    "response_error",
    "to_upstream",
    "tool_map_for",
    "usage_dict",
]


def renderer_for(ctx: StreamContext, envelope: ResponsesEnvelope | None = None) -> StreamRenderer:
    """A stream renderer that echoes ``envelope`` and knows its custom/namespaced tools."""
    return ResponsesStreamRenderer(ctx, envelope)


class ResponsesProtocol(Protocol):
    name = "responses"
    endpoints: ClassVar[tuple[Endpoint, ...]] = (
        Endpoint("/v1/responses"),
        Endpoint("/responses"),
        Endpoint("/v1/responses/{response_id}", ("GET", "DELETE"), Serves.STORED),
    )
    prefixes = ("/v1/responses", "/responses")
    id_prefix = "resp_"
    dialect = "responses"
    codec = CODEC
    output_field = "max_output_tokens"
    stores_state = True

    def parse(self, body: Any, resolve: Resolver | None = None) -> ChatRequest:
        return parse_request(body, resolve)

    def render(self, result: ChatResult, ctx: StreamContext) -> dict[str, Any]:
        return render_response(result, ctx)

    def renderer(self, ctx: StreamContext) -> StreamRenderer:
        return ResponsesStreamRenderer(ctx)

    def error_body(self, error: OneplanError) -> dict[str, Any]:
        return error_body(error)

    def accept(self, body: Any, params: Mapping[str, str] | None = None) -> Turn:
        request = parse_request(body)
        request.passthrough = Passthrough(self, body)
        return ResponsesTurn(self, request, parse_envelope(body))

    def with_output_limit(self, passthrough: Passthrough, tokens: int) -> Passthrough:
        """``max_output_tokens``, and an Anthropic-style ``thinking`` budget (which some
        Responses-compatible servers take) kept below it."""
        return Passthrough(self, thinking_below({**passthrough.body, "max_output_tokens": tokens}, tokens))

    def stored_missing(self, response_id: str) -> OneplanError:
        return NotFound(f"Response with id '{response_id}' not found.", param="response_id")

    def stored_deleted(self, response_id: str) -> dict[str, Any]:
        return {"id": response_id, "object": "response.deleted", "deleted": True}


class ResponsesTurn(Turn):
    """One Responses request: its envelope (echoed in the answer), the stored conversation it
    continues, and what to store of it afterwards."""

    __slots__ = ("envelope", "history", "wants_store")

    def __init__(self, protocol: Protocol, request: ChatRequest, envelope: ResponsesEnvelope) -> None:
        super().__init__(protocol, request)
        self.envelope = envelope
        self.history: list[dict[str, Any]] = []
        passthrough = request.passthrough
        self.wants_store = passthrough is not None and passthrough.body.get("store") is True

    def render(self, result: ChatResult, ctx: StreamContext) -> dict[str, Any]:
        return render_response(result, ctx, self.envelope)

    def renderer(self, ctx: StreamContext) -> StreamRenderer:
        return renderer_for(ctx, self.envelope)

    @property
    def continues(self) -> str | None:
        return self.envelope.previous_response_id

    def missing(self) -> OneplanError:
        return NotFound(
            f"Previous response with id '{self.envelope.previous_response_id}' not found.",
            param="previous_response_id",
        )

    def resume(self, history: list[dict[str, Any]]) -> None:
        self.history = history
        prepend_history(self.request, history, self.envelope.tool_map)

    def keep(self, allowed: bool) -> None:
        self.envelope = dataclasses.replace(self.envelope, store=self.wants_store and allowed)

    @property
    def stores(self) -> bool:
        return self.envelope.store

    def stored(self, result: ChatResult, ctx: StreamContext) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        envelope = self.envelope
        result.id = ctx.response_id
        body = render_response(result, ctx, envelope)
        items = self.history + envelope.input + output_items(result, ctx.response_id, envelope)
        return body, items


PROTOCOL = ResponsesProtocol()
