"""Anthropic Messages, outbound to the client: whole answers, error bodies, and the small
mappings the stream renderer shares (stop reasons, usage, signatures, tool inputs).

Anthropic counts input differently from the canonical form: its ``input_tokens`` are only the
tokens that were neither read from nor written to the prompt cache, and the two cache counts
are reported beside it. ``wire_usage`` does that subtraction in one place.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from oneplan import sealing
from oneplan.errors import OneplanError
from oneplan.protocols.base import StreamContext
from oneplan.protocols.canonical import ChatResult, Usage

# Signatures oneplan invents start with this, so a provider can tell them from real ones
# (a real Anthropic upstream rejects a thinking block whose signature it did not issue).
PLACEHOLDER_SIGNATURE_PREFIX = "oneplan-sig-"

_STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
}

# By status, as Anthropic documents them; anything else 4xx is invalid_request_error and
# anything else 5xx is api_error.
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def error_type(error: OneplanError) -> str:
    """Anthropic's error ``type`` for ``error``, decided by status so every subclass maps."""
    status = error.status
    known = _ERROR_TYPES.get(status)
    if known is not None:
        return known
    return "invalid_request_error" if 400 <= status < 500 else "api_error"


def error_body(error: OneplanError) -> dict[str, Any]:
    return {"type": "error", "error": {"type": error_type(error), "message": error.message}}


def placeholder_signature(thinking: str) -> str:
    """A stable stand-in signature for reasoning that came without one.

    Clients (Claude Code among them) store the signature and send the thinking block back on
    the next turn; deriving it from the text keeps it the same however often it is rendered.
    """
    digest = hashlib.sha256(thinking.encode("utf-8", "surrogatepass")).hexdigest()[:40]
    return PLACEHOLDER_SIGNATURE_PREFIX + digest


def sealed_signature(thinking: str) -> str:
    """For ``display: "omitted"``: the client gets no text, so the signature carries it, sealed
    (``oneplan/sealing.py``), and the next turn gets it back for upstreams that need it."""
    return PLACEHOLDER_SIGNATURE_PREFIX + sealing.seal_json({"r": thinking})


def reasoning_from_signature(signature: Any) -> str | None:
    """The reasoning a ``sealed_signature`` carries; None for any other signature."""
    if not isinstance(signature, str) or not signature.startswith(PLACEHOLDER_SIGNATURE_PREFIX):
        return None
    data = sealing.open_json(signature[len(PLACEHOLDER_SIGNATURE_PREFIX) :])
    return data["r"] if isinstance(data, dict) and isinstance(data.get("r"), str) else None


def is_placeholder_signature(signature: str | None) -> bool:
    return bool(signature) and signature.startswith(PLACEHOLDER_SIGNATURE_PREFIX)  # type: ignore[union-attr]


def stop_reason(
    finish_reason: str | None,
    *,
    has_tool_calls: bool = False,
    stop_sequence: str | None = None,
) -> str:
    """Canonical finish reason -> Anthropic ``stop_reason``.

    Some upstreams end a tool-calling turn with ``stop``; Anthropic clients look at
    ``tool_use`` to know a tool must run, so tool calls win over a plain stop.
    """
    if stop_sequence is not None and finish_reason in (None, "stop"):
        return "stop_sequence"
    if has_tool_calls and finish_reason in (None, "stop"):
        return "tool_use"
    return _STOP_REASONS.get(finish_reason or "stop", "end_turn")


def matched_stop_sequence(text_tail: str, stops: list[str] | None) -> str | None:
    """The request stop sequence the answer visibly ends with, if any.

    Canonical results do not say which stop sequence fired, and most OpenAI-dialect upstreams
    strip it, so this only recognises upstreams that leave it in the text.
    """
    if not stops or not text_tail:
        return None
    for stop in stops:
        if stop and text_tail.endswith(stop):
            return stop
    return None


def wire_usage(usage: Usage) -> dict[str, Any]:
    """Canonical usage -> Anthropic's, whose ``input_tokens`` exclude both cache counts. Writes
    with a one-hour lifetime are also split out in ``cache_creation`` (Anthropic's shape);
    without any, every write is a five-minute one and the total says it all."""
    out: dict[str, Any] = {
        "input_tokens": usage.uncached_input_tokens,
        "output_tokens": usage.output_tokens,
        "cache_creation_input_tokens": usage.cache_write_tokens,
        "cache_read_input_tokens": usage.cached_tokens,
    }
    if usage.cache_write_1h_tokens:
        out["cache_creation"] = {
            "ephemeral_5m_input_tokens": usage.cache_write_5m_tokens,
            "ephemeral_1h_input_tokens": usage.cache_write_1h_tokens,
        }
    return out


def tool_input(arguments: str) -> dict[str, Any]:
    """A tool call's JSON text as the object Anthropic's ``input`` must be. Never raises.

    Empty text is ``{}``; double-encoded JSON (a string holding an object) is unwrapped; a
    non-object value or unparseable text is kept under ``_raw_arguments`` so the client's
    validation tells the model what went wrong instead of the call silently losing its input.
    """
    if not arguments or arguments.isspace():
        return {}
    try:
        value = orjson.loads(arguments)
        if isinstance(value, str):
            value = orjson.loads(value)
    except orjson.JSONDecodeError:
        return {"_raw_arguments": arguments}
    if isinstance(value, dict):
        return value
    return {"_raw_arguments": arguments}


def tool_use_id(call_id: str | None, response_id: str, index: int) -> str:
    """The upstream's call id, or one unique to this response (tool results are keyed by it)."""
    if call_id:
        return call_id
    suffix = response_id.removeprefix("msg_") or "0"
    return f"toolu_{suffix}_{index}"


def omits_thinking(ctx: StreamContext) -> bool:
    """The caller asked for ``thinking.display: "omitted"``: thinking blocks keep their
    signature but carry no text (Anthropic's documented behaviour for that setting)."""
    return ctx.request is not None and ctx.request.thinking.display == "omitted"


def render(result: ChatResult, ctx: StreamContext) -> dict[str, Any]:
    """A whole answer as an Anthropic ``Message``."""
    content: list[dict[str, Any]] = []
    if result.reasoning:
        content.append(
            {
                "type": "thinking",
                "thinking": "" if omits_thinking(ctx) else result.reasoning,
                "signature": result.reasoning_signature
                or (sealed_signature(result.reasoning) if omits_thinking(ctx) else placeholder_signature(result.reasoning)),
            }
        )
    if result.text:
        content.append({"type": "text", "text": result.text})
    for index, call in enumerate(result.tool_calls):
        content.append(
            {
                "type": "tool_use",
                "id": tool_use_id(call.id, ctx.response_id, index),
                "name": call.name,
                "input": tool_input(call.arguments),
            }
        )
    if not content:
        # Anthropic may answer with no blocks; many clients read content[0].text regardless.
        content.append({"type": "text", "text": ""})
    sequence = getattr(result, "stop_sequence", None)
    if sequence is None and ctx.request is not None and result.text:
        sequence = matched_stop_sequence(result.text, ctx.request.stop)
    return {
        "id": ctx.response_id,
        "type": "message",
        "role": "assistant",
        "model": ctx.model,
        "content": content,
        "stop_reason": stop_reason(
            result.finish_reason,
            has_tool_calls=bool(result.tool_calls),
            stop_sequence=sequence,
        ),
        "stop_sequence": sequence,
        "usage": wire_usage(result.usage),
    }
