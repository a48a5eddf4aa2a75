"""Anthropic Messages (``POST /v1/messages``), both directions.

Inbound (a client speaking Anthropic): ``PROTOCOL.parse`` / ``render`` / ``renderer`` /
``error_body``, plus ``PROTOCOL.count_tokens`` for ``/v1/messages/count_tokens``. Claude Code
and the ``anthropic`` SDK authenticate with ``x-api-key`` or a bearer token, add ``?beta=true``
and ``anthropic-beta`` headers (neither changes anything here), and keep a stream alive through
long silences with ``ping`` events.

Upstream (a provider speaking Anthropic): ``CODEC`` (``to_upstream``, ``from_upstream``,
``UpstreamStreamParser``, whose ``UsageMeter`` folds a stream's usage events), ``upstream_error``.

The work lives in ``parse`` (request -> canonical, validated against ``schema``), ``render``
(answers and errors), ``stream`` (the SSE state machine), ``upstream`` (the reverse direction)
and ``tokens`` (the local token estimate).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

from oneplan.errors import OneplanError
from oneplan.metering.windows import WindowState
from oneplan.protocols.anthropic import quota
from oneplan.protocols.anthropic.parse import parse
from oneplan.protocols.anthropic.render import (
    error_body,
    error_type,
    is_placeholder_signature,
    placeholder_signature,
    render,
)
from oneplan.protocols.anthropic.stream import AnthropicStreamRenderer, frame
from oneplan.protocols.anthropic.tokens import Tokenizer, count_tokens, estimate_text_tokens
from oneplan.protocols.anthropic.upstream import (
    CODEC,
    UpstreamStreamParser,
    UsageMeter,
    from_upstream,
    to_upstream,
    upstream_error,
    usage_from_anthropic,
)
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

__all__ = [
    "CODEC",
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
    endpoints: ClassVar[tuple[Endpoint, ...]] = (
        Endpoint("/v1/messages"),
        Endpoint("/v1/messages/count_tokens", serves=Serves.COUNT_TOKENS),
    )
    prefixes = ("/v1/messages",)
    id_prefix = "msg_"
    dialect = "anthropic"
    codec = CODEC
    output_field = "max_tokens"
    ping_interval = 10.0

    def parse(self, body: Any) -> ChatRequest:
        return parse(body)

    def render(self, result: ChatResult, ctx: StreamContext) -> dict[str, Any]:
        return render(result, ctx)

    def renderer(self, ctx: StreamContext) -> StreamRenderer:
        return AnthropicStreamRenderer(ctx)

    def error_body(self, error: OneplanError) -> dict[str, Any]:
        return error_body(error)

    def accept(self, body: Any, params: Mapping[str, str] | None = None) -> Turn:
        request = parse(body)
        request.passthrough = Passthrough(self, body)
        return MessagesTurn(self, request)

    def with_output_limit(self, passthrough: Passthrough, tokens: int) -> Passthrough:
        """``max_tokens``, with a thinking budget kept below it (or thinking dropped when no
        budget Anthropic accepts fits)."""
        return Passthrough(self, thinking_below({**passthrough.body, "max_tokens": tokens}, tokens))

    def quota_headers(self, states: Sequence[WindowState], tightest: WindowState | None, now: float) -> dict[str, str]:
        """``anthropic-ratelimit-requests-*`` and ``anthropic-ratelimit-tokens-*`` (``quota``)."""
        return quota.quota_headers(states, tightest, now)

    def count_tokens(self, body: Any, tokenizer: Tokenizer | None = None) -> dict[str, int]:
        """The ``/v1/messages/count_tokens`` response body: ``{"input_tokens": n}``."""
        return {"input_tokens": count_tokens(body, tokenizer)}

    def count_tokens_body(self, body: Any, tokenizer_for: Callable[[str], Tokenizer | None]) -> dict[str, Any]:
        # Validated as a Messages request (which needs a max_tokens a count does not).
        chat = parse({"max_tokens": 1, **body} if isinstance(body, dict) else body)
        # The model's own tokenizer where one is at hand (local checkpoints), else the
        # documented estimate (``tokens``).
        return self.count_tokens(body, tokenizer_for(chat.model))


class MessagesTurn(Turn):
    __slots__ = ()

    def renderer(self, ctx: StreamContext) -> StreamRenderer:
        # message_start announces input tokens before the upstream has counted them.
        passthrough = self.request.passthrough
        ctx.input_tokens_estimate = count_tokens(passthrough.body if passthrough is not None else None)
        return AnthropicStreamRenderer(ctx)


PROTOCOL = AnthropicProtocol()
