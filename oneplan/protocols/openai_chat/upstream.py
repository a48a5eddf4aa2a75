"""OpenAI Chat Completions, outbound: the canonical request as a Chat Completions body, and
Chat Completions answers (whole, or one stream chunk at a time) as canonical.

Every provider that speaks Chat Completions (``providers/openai_compatible.py`` and the presets
built on it) calls these; what differs between providers comes in as arguments: the output
field's name, how a message goes out (``message``), where reasoning is read (``reasoning_of``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, cast

from oneplan.errors import UpstreamUnavailable
from oneplan.protocols.canonical import (
    ChatRequest,
    ChatResult,
    Delta,
    ToolCall,
    ToolCallDelta,
    Usage,
    text_of,
)

ReasoningOf = Callable[[dict[str, Any]], "str | None"]

FINISH = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
    "sensitive": "content_filter",  # Zhipu
    "eos": "stop",
    "max_tokens": "length",
}
_SAMPLING = ("temperature", "top_p", "seed", "presence_penalty", "frequency_penalty")


def encode(
    request: ChatRequest, upstream_model: str, *, stream: bool, max_tokens_field: str,
    message: Callable[[dict[str, Any]], dict[str, Any]],
) -> dict[str, Any]:
    """The request body, before the provider's reasoning switch (its ``apply_thinking``)."""
    body: dict[str, Any] = {
        "model": upstream_model,
        "messages": system_first([message(m) for m in cast("list[dict[str, Any]]", request.messages)]),
    }
    if stream:
        body["stream"] = True
        # Always ask for usage: metering must be exact even if the client did not ask.
        body["stream_options"] = {"include_usage": True}
    if request.max_tokens is not None:
        body[max_tokens_field] = request.max_tokens
    for key in _SAMPLING:
        value = getattr(request, key)
        if value is not None:
            body[key] = value
    if request.stop:
        body["stop"] = request.stop
    if request.response_format is not None:
        body["response_format"] = request.response_format
    if request.tools:
        # A tool's ``cache_control`` (from an Anthropic client) has no Chat Completions
        # slot: DashScope's explicit cache reads markers in ``messages`` only.
        body["tools"] = [without_cache(t) for t in cast("list[dict[str, Any]]", request.tools)]
        if request.tool_choice is not None:
            body["tool_choice"] = request.tool_choice
        if request.parallel_tool_calls is not None:
            body["parallel_tool_calls"] = request.parallel_tool_calls
    if request.extra:
        body.update(request.extra)
    return body


def system_first(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One system message, first: Qwen's chat template (vLLM, SGLang, Ollama) and several
    providers refuse any other arrangement. Leading system messages are merged; a system
    message later in the conversation (Claude Code sends them, Codex sends two up front)
    keeps its place as a user message."""
    lead = 0
    while lead < len(messages) and messages[lead].get("role") == "system":
        lead += 1
    if lead <= 1 and not any(m.get("role") == "system" for m in messages[lead:]):
        return messages
    merged = "\n\n".join(text_of(m.get("content"), "\n\n") for m in messages[:lead])
    out = [{"role": "system", "content": merged}] if lead else []
    for m in messages[lead:]:
        out.append({**m, "role": "user"} if m.get("role") == "system" else m)
    return out


def flatten_text(parts: list[Any], *, keep_cache: bool) -> Any:
    """Text-only content as one string (every provider accepts that; several reject arrays on
    text models); otherwise the parts, without ``cache_control`` unless the provider keeps it.

    A provider that caches explicitly (``keep_cache``) gets several parts as they are, marked
    or not: joining them would change an earlier turn's prompt as soon as the client moves its
    breakpoint to a later turn (Claude Code does, every turn), and lose the cached prefix."""
    text_only = all(isinstance(p, dict) and p.get("type") == "text" for p in parts)
    if keep_cache:
        if text_only and len(parts) == 1 and "cache_control" not in parts[0]:
            return str(parts[0].get("text", ""))  # the same prompt as the one-part list
        return parts
    if text_only:
        return "\n\n".join(str(p.get("text", "")) for p in parts)
    if not any(isinstance(p, dict) and "cache_control" in p for p in parts):
        return parts
    return [{k: v for k, v in p.items() if k != "cache_control"} if isinstance(p, dict) else p for p in parts]


def without_cache(tool: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in tool.items() if k != "cache_control"} if "cache_control" in tool else tool


def empty(delta: Delta) -> bool:
    return not (
        delta.text or delta.reasoning or delta.tool_calls or delta.finish_reason
        or delta.usage is not None or delta.reasoning_signature
    )


_INF = float("inf")


def _int(value: Any) -> int:
    """A count from a wire value: a number as a non-negative integer, anything else (null,
    text, a boolean, NaN, infinity) as 0."""
    if type(value) is int:  # the usual case, first
        return value if value > 0 else 0
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    return max(0, int(value)) if value == value and abs(value) != _INF else 0


def _first(*values: Any) -> int:
    """The first non-zero count of several spellings of one count."""
    for value in values:
        if (count := _int(value)):
            return count
    return 0


def reasoning_of(part: dict[str, Any]) -> str | None:
    """Reasoning text in a message or delta: ``reasoning_content`` (DashScope, GLM, Kimi,
    DeepSeek) or ``reasoning`` (vLLM >= 0.10, OpenRouter)."""
    value = part.get("reasoning_content")
    if value is None:
        value = part.get("reasoning")
    return value if isinstance(value, str) and value else None


_PLAIN_USAGE = frozenset(("prompt_tokens", "completion_tokens", "total_tokens"))


def parse_usage(raw: Any) -> Usage | None:
    """Chat Completions usage in the canonical classes. ``prompt_tokens`` includes the
    cache reads and writes (the OpenAI convention, which every preset here follows); the
    providers spell the cache counts differently:

    * reads: ``prompt_tokens_details.cached_tokens`` (OpenAI, DashScope, Zhipu, MiniMax),
      ``cached_tokens`` beside ``prompt_tokens`` (Moonshot), ``prompt_cache_hit_tokens``
      (DeepSeek, whose ``prompt_tokens`` is hits plus ``prompt_cache_miss_tokens``),
      ``cache_read_input_tokens`` (Anthropic-style names on some compatible servers);
    * writes: ``prompt_tokens_details.cache_creation_input_tokens`` (DashScope's explicit
      cache, with ``cache_creation.ephemeral_5m_input_tokens``), ``cache_write_tokens``
      (OpenRouter-style), ``cache_creation_input_tokens`` beside ``prompt_tokens``.
    """
    if not isinstance(raw, dict):
        return None
    if raw.keys() <= _PLAIN_USAGE:  # counts alone, no cache or reasoning details: no lookups
        return Usage.from_inclusive(_int(raw.get("prompt_tokens")), _int(raw.get("completion_tokens")))
    details = raw.get("prompt_tokens_details")
    details = details if isinstance(details, dict) else {}
    completion_details = raw.get("completion_tokens_details")
    completion_details = completion_details if isinstance(completion_details, dict) else {}
    creation = details.get("cache_creation") or raw.get("cache_creation")
    creation = creation if isinstance(creation, dict) else {}
    prompt = raw.get("prompt_tokens")
    if prompt is None and "prompt_cache_miss_tokens" in raw:  # DeepSeek's two halves
        prompt = _int(raw.get("prompt_cache_hit_tokens")) + _int(raw.get("prompt_cache_miss_tokens"))
    read = _first(
        details.get("cached_tokens"),
        raw.get("cached_tokens"),
        raw.get("prompt_cache_hit_tokens"),
        details.get("cache_read_input_tokens"),
        raw.get("cache_read_input_tokens"),
    )
    write = _first(
        details.get("cache_creation_input_tokens"),
        details.get("cache_write_tokens"),
        raw.get("cache_creation_input_tokens"),
    )
    if not write and creation:
        write = sum(_int(v) for v in creation.values())
    return Usage.from_inclusive(
        _int(prompt),
        _int(raw.get("completion_tokens")),
        read=read,
        write=write,
        write_1h=_int(creation.get("ephemeral_1h_input_tokens")),
        reasoning=_int(completion_details.get("reasoning_tokens")),
    )


def parse_chunk(
    obj: dict[str, Any], *, reasoning_of: ReasoningOf = reasoning_of,
    usage_of: Callable[[Any], Usage | None] = parse_usage,
) -> Delta | None:
    """One stream chunk as a delta (None: nothing in it)."""
    choices = obj.get("choices")
    usage = usage_of(obj.get("usage"))
    if not choices:
        return Delta(usage=usage) if usage else None
    choice = choices[0]
    if usage is None and "usage" in choice:  # Moonshot reports it inside the choice
        usage = usage_of(choice.get("usage"))
    delta = choice.get("delta") or {}
    calls = None
    raw_calls = delta.get("tool_calls")
    if raw_calls:
        calls = []
        for position, call in enumerate(raw_calls):
            fn = call.get("function") or {}
            calls.append(
                ToolCallDelta(
                    index=call.get("index", position),
                    id=call.get("id") or None,
                    name=fn.get("name") or None,
                    arguments=fn.get("arguments") or "",
                )
            )
    finish = choice.get("finish_reason")
    return Delta(
        text=delta.get("content") or None,
        reasoning=reasoning_of(delta),
        tool_calls=calls,
        finish_reason=FINISH.get(finish, "stop") if finish else None,
        usage=usage,
    )


def parse_response(
    obj: dict[str, Any], upstream_model: str, *, provider: str, reasoning_of: ReasoningOf = reasoning_of,
    usage_of: Callable[[Any], Usage | None] = parse_usage,
) -> ChatResult:
    """A whole answer; ``provider`` names the upstream in the error for one with no choices."""
    choices = obj.get("choices")
    if not choices:
        raise UpstreamUnavailable(f"{provider}: the answer has no choices")
    choice = choices[0]
    message = choice.get("message") or {}
    calls = [
        ToolCall(
            id=call.get("id") or f"call_{i}",
            name=(call.get("function") or {}).get("name") or "",
            arguments=(call.get("function") or {}).get("arguments") or "",
        )
        for i, call in enumerate(message.get("tool_calls") or [])
    ]
    finish = choice.get("finish_reason")
    return ChatResult(
        id=str(obj.get("id") or ""),
        model=str(obj.get("model") or upstream_model),
        created=int(obj.get("created") or time.time()),
        text=message.get("content") or None,
        reasoning=reasoning_of(message),
        tool_calls=calls,
        finish_reason=FINISH.get(finish, "stop") if finish else ("tool_calls" if calls else "stop"),
        usage=usage_of(obj.get("usage") or choice.get("usage")) or Usage(),
    )
