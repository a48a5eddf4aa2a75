"""OpenAI Chat Completions (``POST /v1/chat/completions``), both directions.

Inbound: ``parse`` (validation against ``schema``), ``render`` (answers and errors), ``stream``
(``chat.completion.chunk`` frames). Outbound: ``upstream``, the functions every
Chat Completions provider (``providers/openai_compatible.py`` and its presets) builds its
requests and reads its answers with. Its paths are also the gateway's default: a path no
protocol claims is answered in OpenAI's error shape.
"""

from __future__ import annotations

from typing import Any, ClassVar

from oneplan.errors import OneplanError
from oneplan.protocols.base import Endpoint, Protocol, StreamContext, StreamRenderer
from oneplan.protocols.canonical import ChatRequest, ChatResult
from oneplan.protocols.openai_chat.parse import parse
from oneplan.protocols.openai_chat.render import openai_error_body, render, usage_body
from oneplan.protocols.openai_chat.stream import ChatChunkRenderer

__all__ = ["PROTOCOL", "ChatChunkRenderer", "OpenAIChat", "openai_error_body", "usage_body"]


class OpenAIChat(Protocol):
    name = "openai_chat"
    endpoints: ClassVar[tuple[Endpoint, ...]] = (Endpoint("/v1/chat/completions"), Endpoint("/chat/completions"))
    id_prefix = "chatcmpl-"
    dialect = "openai"

    def parse(self, body: Any) -> ChatRequest:
        return parse(body)

    def render(self, result: ChatResult, ctx: StreamContext) -> dict[str, Any]:
        return render(result, ctx)

    def renderer(self, ctx: StreamContext) -> StreamRenderer:
        return ChatChunkRenderer(ctx)

    def error_body(self, error: OneplanError) -> dict[str, Any]:
        return openai_error_body(error)


PROTOCOL = OpenAIChat()
