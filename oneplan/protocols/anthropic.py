"""Anthropic Messages (``POST /v1/messages``), both directions.

Inbound (a client speaking Anthropic): ``PROTOCOL.parse`` / ``render`` / ``renderer`` /
``error_body``, plus ``PROTOCOL.count_tokens`` for ``/v1/messages/count_tokens``.

Upstream (a provider speaking Anthropic): ``to_upstream``, ``from_upstream``,
``UpstreamStreamParser``, ``upstream_error``; ``UsageMeter`` meters relayed same-protocol
streams without translating them.

The work lives in ``anthropic_parse`` (request -> canonical), ``anthropic_render`` (answers and
errors), ``anthropic_stream`` (the SSE state machine), ``anthropic_upstream`` (the reverse
direction) and ``anthropic_tokens`` (the local token estimate).
"""

from __future__ import annotations

from typing import Any

from oneplan.errors import OneplanError
from oneplan.protocols.anthropic_parse import parse
from oneplan.protocols.anthropic_render import (
    error_body,
    error_type,
    is_placeholder_signature,
    placeholder_signature,
    render,
)
from oneplan.protocols.anthropic_stream import AnthropicStreamRenderer, frame
from oneplan.protocols.anthropic_tokens import Tokenizer, count_tokens, estimate_text_tokens
from oneplan.protocols.anthropic_upstream import (
    UpstreamStreamParser,
    UsageMeter,
    from_upstream,
    to_upstream,
    upstream_error,
    usage_from_anthropic,
)
from oneplan.protocols.base import Protocol, StreamContext, StreamRenderer
from oneplan.protocols.canonical import ChatRequest, ChatResult

__all__ = [
    "PROTOCOL",
    "AnthropicProtocol",
    "AnthropicStreamRenderer",
    "Tokenizer",
    "UpstreamStreamParser",
    "UsageMeter",
    "count_tokens",
    "error_type",
    "estimate_text_tokens",
    "frame",
    "from_upstream",
    "is_placeholder_signature",
    "placeholder_signature",
    "to_upstream",
    "upstream_error",
    "usage_from_anthropic",
]


class AnthropicProtocol(Protocol):
    name = "anthropic"
    response_id_prefix = "msg_"

    def parse(self, body: Any) -> ChatRequest:
        return parse(body)

    def render(self, result: ChatResult, ctx: StreamContext) -> dict[str, Any]:
        return render(result, ctx)

    def renderer(self, ctx: StreamContext) -> StreamRenderer:
        return AnthropicStreamRenderer(ctx)

    def error_body(self, error: OneplanError) -> dict[str, Any]:
        return error_body(error)

    def count_tokens(self, body: Any, tokenizer: Tokenizer | None = None) -> dict[str, int]:
        """The ``/v1/messages/count_tokens`` response body: ``{"input_tokens": n}``."""
        return {"input_tokens": count_tokens(body, tokenizer)}


PROTOCOL = AnthropicProtocol()
