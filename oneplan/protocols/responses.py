"""The OpenAI Responses API (``POST /v1/responses``) as an inbound protocol.

Pure translation, no storage. The server wires it like this::

    request = PROTOCOL.parse(body, resolve=store.item)        # item_reference -> stored item
    envelope = parse_envelope(body, resolve=store.item)
    if envelope.previous_response_id:
        prepend_history(request, store.items(envelope.previous_response_id), envelope.tool_map)
    ...
    body = render_response(result, ctx, envelope)             # or renderer_for(ctx, envelope)
    if envelope.store and storage_enabled:
        store.save(body["id"], envelope.input + output_items(result, body["id"], envelope))

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

from typing import Any

from oneplan.errors import OneplanError
from oneplan.protocols.base import Protocol, StreamContext, StreamRenderer
from oneplan.protocols.canonical import ChatRequest, ChatResult
from oneplan.protocols.responses_parse import (
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
from oneplan.protocols.responses_render import (
    error_body,
    new_response_id,
    output_items,
    render_response,
    response_error,
    usage_dict,
)
from oneplan.protocols.responses_stream import ResponsesStreamRenderer
from oneplan.protocols.responses_upstream import UpstreamStreamParser, from_upstream, to_upstream

__all__ = [
    "PROTOCOL",
    "Resolver",
    "ResponsesEnvelope",
    "ResponsesProtocol",
    "ResponsesStreamRenderer",
    "ToolMap",
    "UpstreamStreamParser",
    "error_body",
    "from_upstream",
    "input_items",
    "items_to_messages",
    "new_response_id",
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

    def parse(self, body: Any, resolve: Resolver | None = None) -> ChatRequest:
        return parse_request(body, resolve)

    def render(self, result: ChatResult, ctx: StreamContext) -> dict[str, Any]:
        return render_response(result, ctx)

    def renderer(self, ctx: StreamContext) -> StreamRenderer:
        return ResponsesStreamRenderer(ctx)

    def error_body(self, error: OneplanError) -> dict[str, Any]:
        return error_body(error)


PROTOCOL = ResponsesProtocol()
