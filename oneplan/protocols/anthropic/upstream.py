"""Anthropic Messages as an *upstream* dialect: canonical -> request body, response -> canonical.

DashScope, Zhipu, Moonshot and MiniMax all serve an Anthropic-compatible endpoint; a provider
module that talks to one calls ``to_upstream`` for the body, ``from_upstream`` for a whole answer
and feeds each decoded SSE ``data`` object to an ``UpstreamStreamParser``, whose ``UsageMeter``
folds the stream's usage events. Same-protocol traffic differs only on the way up (the client's
body is forwarded as it came, ``Passthrough``): its answer comes back through the same parser.

Usage meets the canonical convention here: canonical ``input_tokens`` include cache reads and
cache writes (Anthropic reports them beside ``input_tokens``), ``cached_tokens`` are the reads,
``cache_write_tokens`` the writes (``cache_write_1h_tokens`` those with a one-hour lifetime).
"""

from __future__ import annotations

import re
import time
from typing import Any, cast

import orjson

from oneplan.errors import (
    InvalidRequest,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from oneplan.protocols.anthropic.render import placeholder_signature, tool_input
from oneplan.protocols.base import Codec, UpstreamParser
from oneplan.protocols.canonical import (
    ChatRequest,
    ChatResult,
    Delta,
    Message,
    ToolCall,
    ToolCallDelta,
    Usage,
)

DEFAULT_MAX_TOKENS = 8192  # Anthropic requires max_tokens; used when the caller set none
MIN_THINKING_BUDGET = 1024  # Anthropic's floor for thinking.budget_tokens
_EFFORT_BUDGETS = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 16384, "xhigh": 32768}
_DEFAULT_BUDGET = 4096

_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
_TOOL_ID_INVALID = re.compile(r"[^a-zA-Z0-9_-]")
_DATA_URL = re.compile(r"data:([^;,]+);base64,(.*)", re.DOTALL)


# -- canonical -> Anthropic request -----------------------------------------------------------


def _tool_id(call_id: str) -> str:
    """Anthropic ids must match ``[a-zA-Z0-9_-]+``; Kimi's look like ``functions.f:0``."""
    return _TOOL_ID_INVALID.sub("_", call_id) or "toolu_0"


def _with_cache(block: dict[str, Any], part: dict[str, Any]) -> dict[str, Any]:
    if part.get("cache_control") is not None:
        block["cache_control"] = part["cache_control"]
    return block


def _part(part: dict[str, Any]) -> dict[str, Any] | None:
    kind = part.get("type")
    if kind == "text":
        text = part.get("text") or ""
        return _with_cache({"type": "text", "text": text}, part) if text else None
    if kind == "image_url":
        image = part.get("image_url")
        url = image.get("url", "") if isinstance(image, dict) else str(image or "")
        match = _DATA_URL.match(url)
        if match:
            source = {"type": "base64", "media_type": match.group(1), "data": match.group(2)}
        else:
            source = {"type": "url", "url": url}
        return _with_cache({"type": "image", "source": source}, part)
    raise InvalidRequest(
        f"messages: a content part of type {kind!r} cannot be sent to an Anthropic-dialect upstream",
        param="messages",
    )


def _blocks(content: Any) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    return [b for p in content if isinstance(p, dict) and (b := _part(p)) is not None]


def _assistant_blocks(message: Message) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    reasoning = message.get("reasoning_content")
    if reasoning:
        signature = message.get("reasoning_signature") or placeholder_signature(reasoning)
        blocks.append({"type": "thinking", "thinking": reasoning, "signature": signature})
    blocks.extend(_blocks(message.get("content")))
    for call in message.get("tool_calls") or ():
        function = cast("dict[str, Any]", call).get("function") or {}  # a client's, whatever it holds
        blocks.append(
            {
                "type": "tool_use",
                "id": _tool_id(str(call.get("id") or "")),
                "name": function.get("name") or "",
                "input": tool_input(function.get("arguments") or ""),
            }
        )
    return blocks


def _tool_result(message: Message) -> dict[str, Any]:
    content = message.get("content")
    block: dict[str, Any] = {
        "type": "tool_result",
        "tool_use_id": _tool_id(str(message.get("tool_call_id") or "")),
        "content": content if isinstance(content, str) else _blocks(content),
    }
    if message.get("is_error"):
        block["is_error"] = True
    return block


def _system(parts: list[dict[str, Any]]) -> str | list[dict[str, Any]] | None:
    if not parts:
        return None
    if any("cache_control" in p for p in parts):
        return parts
    return "\n\n".join(p["text"] for p in parts)


def _thinking(request: ChatRequest, max_tokens: int) -> tuple[dict[str, Any] | None, int]:
    """``(thinking, max_tokens)``. Anthropic wants ``1024 <= budget_tokens < max_tokens`` and
    counts thinking inside ``max_tokens``: when the caller's limit cannot hold the smallest
    budget, the budget is added on top so the visible answer keeps its allowance."""
    spec = request.thinking
    enabled = spec.enabled
    if enabled is None and spec.effort is not None:
        enabled = spec.effort != "none"
    if enabled is None:
        return None, max_tokens
    if not enabled:
        return {"type": "disabled"}, max_tokens
    budget = spec.budget_tokens or _EFFORT_BUDGETS.get(spec.effort or "", _DEFAULT_BUDGET)
    budget = max(MIN_THINKING_BUDGET, budget)
    if budget >= max_tokens:
        if max_tokens > MIN_THINKING_BUDGET:
            budget = max_tokens - 1
        else:
            max_tokens += budget
    return {"type": "enabled", "budget_tokens": budget}, max_tokens


def _tool_choice(request: ChatRequest) -> dict[str, Any] | None:
    choice = request.tool_choice
    out: dict[str, Any] | None
    if choice is None:
        out = None
    elif choice == "auto":
        out = {"type": "auto"}
    elif choice == "required":
        out = {"type": "any"}
    elif choice == "none":
        return {"type": "none"}
    elif isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name") or choice.get("name")
        out = {"type": "tool", "name": name} if name else {"type": "auto"}
    else:
        out = {"type": "auto"}
    if request.parallel_tool_calls is False and request.tools:
        out = out or {"type": "auto"}
        out["disable_parallel_tool_use"] = True
    return out


def to_upstream(request: ChatRequest, upstream_model: str) -> dict[str, Any]:
    """The Anthropic Messages body for ``request``, addressed to ``upstream_model``.

    System and developer messages, wherever they sit, become the top-level ``system``; tool
    messages become ``tool_result`` blocks of a user turn; consecutive turns of one role are
    merged, since Anthropic wants user and assistant to alternate. Earlier reasoning goes back
    as thinking blocks carrying their signature (a placeholder when the reasoning came from a
    provider that signs nothing; a real Anthropic upstream rejects that, others ignore it).
    """
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []

    def add(role: str, blocks: list[dict[str, Any]]) -> None:
        if not blocks:
            return
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})

    for message in request.messages:
        role = message.get("role")
        if role in ("system", "developer"):
            system.extend(_blocks(message.get("content")))
        elif role == "user":
            add("user", _blocks(message.get("content")))
        elif role == "assistant":
            add("assistant", _assistant_blocks(message))
        elif role == "tool":
            add("user", [_tool_result(message)])
    body: dict[str, Any] = {"model": upstream_model, "messages": turns}
    max_tokens = request.max_tokens or DEFAULT_MAX_TOKENS
    thinking, max_tokens = _thinking(request, max_tokens)
    body["max_tokens"] = max_tokens
    if thinking is not None:
        body["thinking"] = thinking
    if (sys := _system(system)) is not None:
        body["system"] = sys
    if request.tools:
        body["tools"] = [
            {
                "name": fn.get("name", ""),
                **({"description": fn["description"]} if fn.get("description") else {}),
                "input_schema": fn.get("parameters") or {"type": "object", "properties": {}},
                **({"cache_control": tool["cache_control"]} if tool.get("cache_control") else {}),
            }
            for tool in cast("list[dict[str, Any]]", request.tools)  # a client's, whatever it holds
            if (fn := tool.get("function") or {})
        ]
    if (choice := _tool_choice(request)) is not None:
        body["tool_choice"] = choice
    if request.stop:
        body["stop_sequences"] = list(request.stop)
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.top_p is not None:
        body["top_p"] = request.top_p
    if request.extra.get("top_k") is not None:
        body["top_k"] = request.extra["top_k"]
    if request.user:
        body["metadata"] = {"user_id": request.user}
    if request.stream:
        body["stream"] = True
    return body


# -- Anthropic answers -> canonical -----------------------------------------------------------


def finish_reason(stop_reason: str | None) -> str | None:
    return None if stop_reason is None else _FINISH.get(stop_reason, "stop")


def usage_from_anthropic(usage: dict[str, Any] | None) -> Usage:
    """Anthropic usage -> canonical. Anthropic's ``input_tokens`` exclude both cache counts,
    which it reports beside them (``cache_read_input_tokens``, ``cache_creation_input_tokens``)
    and splits writes by lifetime in ``cache_creation.ephemeral_5m_input_tokens`` /
    ``ephemeral_1h_input_tokens``; MiniMax's, DashScope's and Kimi's Anthropic endpoints use
    the same fields. Canonical input includes them all."""
    usage = usage or {}
    creation = usage.get("cache_creation")
    creation = creation if isinstance(creation, dict) else {}
    write = usage.get("cache_creation_input_tokens")
    split_5m = creation.get("ephemeral_5m_input_tokens")
    split_1h = creation.get("ephemeral_1h_input_tokens")
    if not write and creation:  # only the split was reported
        write = sum(v for v in (split_5m, split_1h) if isinstance(v, int) and not isinstance(v, bool))
    return Usage.from_exclusive(
        usage.get("input_tokens") or 0,
        usage.get("output_tokens") or 0,
        read=usage.get("cache_read_input_tokens") or 0,
        write=write or 0,
        write_1h=split_1h or 0,
    )


def upstream_error(status: int | None, body: Any) -> UpstreamError:
    """An Anthropic error (HTTP status and/or ``{"type":"error","error":{...}}``) as the
    ``UpstreamError`` subclass the router understands. Status wins; the type fills in when a
    stream failed after its 200."""
    error = body.get("error") if isinstance(body, dict) else None
    kind = error.get("type") if isinstance(error, dict) else None
    text = error.get("message") if isinstance(error, dict) else None
    message = f"upstream {kind or 'error'}: {text or body!r}"
    if status is None:
        status = {
            "invalid_request_error": 400,
            "authentication_error": 401,
            "billing_error": 402,
            "permission_error": 403,
            "not_found_error": 404,
            "request_too_large": 413,
            "rate_limit_error": 429,
            "timeout_error": 504,
            "overloaded_error": 529,
        }.get(kind or "", 500)
    if status == 429:
        return UpstreamRateLimited(message, upstream_status=status)
    if status in (503, 529):
        return UpstreamUnavailable(message, upstream_status=status)
    if status == 504:
        return UpstreamTimeout(message, upstream_status=status)
    if 400 <= status < 500:
        return UpstreamRejected(message, upstream_status=status)
    return UpstreamError(message, upstream_status=status)


def from_upstream(body: dict[str, Any], *, created: int | None = None) -> ChatResult:
    """A whole Anthropic ``Message`` as a ``ChatResult``; an error body raises."""
    if body.get("type") == "error":
        raise upstream_error(None, body)
    text: list[str] = []
    reasoning: list[str] = []
    signature: str | None = None
    calls: list[ToolCall] = []
    for block in body.get("content") or ():
        kind = block.get("type")
        if kind == "text":
            text.append(block.get("text") or "")
        elif kind == "thinking":
            reasoning.append(block.get("thinking") or "")
            signature = block.get("signature") or signature
        elif kind == "tool_use":
            arguments = orjson.dumps(block.get("input") or {}).decode()
            calls.append(
                ToolCall(
                    id=block.get("id") or f"toolu_{len(calls)}",
                    name=block.get("name") or "",
                    arguments=arguments,
                )
            )
    return ChatResult(
        id=body.get("id") or "",
        model=body.get("model") or "",
        created=int(time.time()) if created is None else created,
        text="".join(text) or None,
        reasoning="".join(reasoning) or None,
        reasoning_signature=signature,
        tool_calls=calls,
        finish_reason=finish_reason(body.get("stop_reason")) or ("tool_calls" if calls else "stop"),
        usage=usage_from_anthropic(body.get("usage")),
    )


class UsageMeter:
    """Watches an Anthropic event stream (decoded ``data`` objects) and keeps its usage.

    ``message_start`` carries the input side, ``message_delta`` the cumulative output (and, on
    newer servers, final input counts, which replace the earlier ones).
    """

    __slots__ = ("_usage", "completed", "error", "finish_reason", "id", "model", "stop_sequence")

    def __init__(self) -> None:
        self._usage: dict[str, Any] = {}
        self.finish_reason: str | None = None
        self.stop_sequence: str | None = None
        self.error: dict[str, Any] | None = None
        self.completed = False
        self.id: str | None = None
        self.model: str | None = None

    def feed(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "message_start":
            message = event.get("message") or {}
            self.id = message.get("id")
            self.model = message.get("model")
            self._merge(message.get("usage"))
        elif kind == "message_delta":
            delta = event.get("delta") or {}
            if delta.get("stop_reason") is not None:
                self.finish_reason = finish_reason(delta["stop_reason"])
            self.stop_sequence = delta.get("stop_sequence") or self.stop_sequence
            self._merge(event.get("usage"))
        elif kind == "message_stop":
            self.completed = True
        elif kind == "error":
            self.error = event.get("error") or {}

    def _merge(self, usage: Any) -> None:
        if isinstance(usage, dict):
            for key, value in usage.items():
                if isinstance(value, int) and not isinstance(value, bool):
                    self._usage[key] = value
                elif key == "cache_creation" and isinstance(value, dict):  # the split by lifetime
                    self._usage[key] = {**(self._usage.get(key) or {}), **value}

    @property
    def usage(self) -> Usage:
        return usage_from_anthropic(self._usage)


class UpstreamStreamParser(UpstreamParser):
    """Anthropic SSE events (decoded ``data`` objects) -> canonical ``Delta`` values.

    Tool-use blocks get canonical tool indices 0, 1, ... in the order they start. The last
    delta, from ``message_delta``, carries the finish reason and the whole usage. An ``error``
    event raises the matching ``UpstreamError``.
    """

    __slots__ = ("_args_seen", "_tools", "meter")

    def __init__(self) -> None:
        self.meter = UsageMeter()
        self._tools: dict[int, int] = {}  # block index -> canonical tool index
        self._args_seen: set[int] = set()

    def feed(self, event: dict[str, Any]) -> list[Delta]:
        kind = event.get("type")
        if kind == "content_block_delta":
            delta = event.get("delta") or {}
            dtype = delta.get("type")
            if dtype == "text_delta":
                return [Delta(text=delta.get("text"))] if delta.get("text") else []
            if dtype == "thinking_delta":
                return [Delta(reasoning=delta.get("thinking"))] if delta.get("thinking") else []
            if dtype == "signature_delta":
                return [Delta(reasoning_signature=delta.get("signature"))] if delta.get("signature") else []
            if dtype == "input_json_delta":
                tool = self._tools.get(event.get("index", -1))
                fragment = delta.get("partial_json") or ""
                if tool is None or not fragment:
                    return []
                self._args_seen.add(tool)
                return [Delta(tool_calls=[ToolCallDelta(index=tool, arguments=fragment)])]
            return []
        if kind == "content_block_start":
            return self._start(event)
        if kind == "content_block_stop":
            tool = self._tools.get(event.get("index", -1))
            if tool is not None and tool not in self._args_seen:
                self._args_seen.add(tool)  # a call with no input: "{}" keeps it valid JSON
                return [Delta(tool_calls=[ToolCallDelta(index=tool, arguments="{}")])]
            return []
        if kind == "error":
            raise upstream_error(None, event)
        self.meter.feed(event)
        if kind == "message_delta":
            return [Delta(finish_reason=self.meter.finish_reason, usage=self.meter.usage)]
        return []

    def _start(self, event: dict[str, Any]) -> list[Delta]:
        block = event.get("content_block") or {}
        kind = block.get("type")
        if kind == "text" and block.get("text"):
            return [Delta(text=block["text"])]
        if kind == "thinking" and (block.get("thinking") or block.get("signature")):
            return [
                Delta(
                    reasoning=block.get("thinking") or None,
                    reasoning_signature=block.get("signature") or None,
                )
            ]
        if kind == "tool_use":
            tool = self._tools[event.get("index", -1)] = len(self._tools)
            call = ToolCallDelta(index=tool, id=block.get("id"), name=block.get("name"))
            if block.get("input"):  # some servers send the whole input up front
                call.arguments = orjson.dumps(block["input"]).decode()
                self._args_seen.add(tool)
            return [Delta(tool_calls=[call])]
        return []

    @property
    def usage(self) -> Usage:
        return self.meter.usage


class AnthropicCodec(Codec):
    """Anthropic Messages spoken to an upstream."""

    __slots__ = ()

    def encode(self, request: ChatRequest, upstream_model: str) -> dict[str, Any]:
        return to_upstream(request, upstream_model)

    def decode(self, body: dict[str, Any]) -> ChatResult:
        return from_upstream(body)

    def stream_parser(self) -> UpstreamParser:
        return UpstreamStreamParser()


CODEC = AnthropicCodec()
