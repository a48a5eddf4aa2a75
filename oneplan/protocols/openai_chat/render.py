"""OpenAI Chat Completions answers and errors, as whole bodies."""

from __future__ import annotations

from typing import Any

from oneplan import refusals
from oneplan.errors import OneplanError
from oneplan.protocols.base import StreamContext
from oneplan.protocols.canonical import ChatResult, Usage


def render(result: ChatResult, ctx: StreamContext) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": result.text}
    if result.reasoning:
        message["reasoning_content"] = result.reasoning
    if result.tool_calls:
        message["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in result.tool_calls
        ]
    return {
        "id": ctx.response_id,
        "object": "chat.completion",
        "created": ctx.created,
        "model": ctx.model,
        "choices": [
            {"index": 0, "message": message, "finish_reason": result.finish_reason, "logprobs": None}
        ],
        "usage": usage_body(result.usage),
    }


def openai_error_body(error: OneplanError) -> dict[str, Any]:
    """The OpenAI error body every OpenAI client (and Codex) reads."""
    type_, code = refusals.openai_type_and_code(error)
    return {"error": {"message": error.message, "type": type_, "param": error.param, "code": code}}



def usage_body(usage: Usage) -> dict[str, Any]:
    """OpenAI's usage: ``prompt_tokens`` include the cache reads (``cached_tokens``) and the
    cache writes, which OpenAI has no field for; they are added as ``cache_write_tokens``
    (OpenRouter's name) when there are any."""
    details: dict[str, int] = {"cached_tokens": usage.cached_tokens}
    if usage.cache_write_tokens:
        details["cache_write_tokens"] = usage.cache_write_tokens
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.input_tokens + usage.output_tokens,
        "prompt_tokens_details": details,
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
    }

