"""The canonical form <-> an upstream that serves the Responses API natively.

Used by providers whose dialect is ``responses``: ``to_upstream`` builds the request body,
``from_upstream`` reads a whole Response, ``UpstreamStreamParser`` turns its event stream into
canonical deltas. oneplan calls upstreams statelessly (``store: false``, the whole history every
time), so earlier reasoning is not sent back: an upstream's reasoning items are only valid with
its own encrypted content, which the canonical form does not carry.
"""

from __future__ import annotations

from typing import Any, cast

import orjson

from oneplan.errors import UpstreamError, UpstreamRateLimited, UpstreamRejected
from oneplan.protocols.base import Codec, UpstreamParser
from oneplan.protocols.canonical import (
    ChatRequest,
    ChatResult,
    Delta,
    Message,
    Tool,
    ToolCall,
    ToolCallDelta,
    Usage,
    text_of,
)

_INCOMPLETE_FINISH = {"max_output_tokens": "length", "content_filter": "content_filter"}


# --------------------------------------------------------------------------- requests


def to_upstream(request: ChatRequest, upstream_model: str) -> dict[str, Any]:
    """A Responses request body for ``request``. Leading system messages become
    ``instructions``; later ones stay as ``system`` messages in place."""
    messages = request.messages
    head = 0
    while head < len(messages) and messages[head].get("role") == "system":
        head += 1
    body: dict[str, Any] = {"model": upstream_model, "stream": request.stream, "store": False}
    instructions = "\n\n".join(text_of(m.get("content")) for m in messages[:head])
    if instructions:
        body["instructions"] = instructions
    body["input"] = [item for m in messages[head:] for item in _items_of(m)]
    if request.tools:
        body["tools"] = [_tool(t) for t in request.tools if t.get("type") == "function"]
    if request.tool_choice is not None:
        body["tool_choice"] = _choice(request.tool_choice)
    if request.parallel_tool_calls is not None:
        body["parallel_tool_calls"] = request.parallel_tool_calls
    if request.max_tokens is not None:
        body["max_output_tokens"] = request.max_tokens
    for key in ("temperature", "top_p", "user"):
        value = getattr(request, key)
        if value is not None:
            body[key] = value
    if request.response_format is not None:
        body["text"] = {"format": _format(request.response_format)}
    thinking = request.thinking
    if thinking.enabled is False:
        body["reasoning"] = {"effort": "none" if thinking.effort is None else thinking.effort}
    elif thinking.enabled or thinking.effort:
        body["reasoning"] = {"effort": thinking.effort or "medium", "summary": "auto"}
    body.update(request.extra)
    return body


def _parts(content: Any, *, assistant: bool) -> list[dict[str, Any]]:
    kind = "output_text" if assistant else "input_text"
    if isinstance(content, str):
        return [{"type": kind, "text": content}]
    parts: list[dict[str, Any]] = []
    for part in content or []:
        if part.get("type") == "text":
            parts.append({"type": kind, "text": part.get("text", "")})
        elif part.get("type") == "image_url":
            image = part.get("image_url") or {}
            parts.append(
                {
                    "type": "input_image",
                    "image_url": image.get("url"),
                    "detail": image.get("detail", "auto"),
                }
            )
    return parts


def _items_of(message: Message) -> list[dict[str, Any]]:
    role = message.get("role")
    content = message.get("content")
    if role == "tool":
        output = content if isinstance(content, str) else _parts(content, assistant=False)
        return [
            {
                "type": "function_call_output",
                "call_id": message.get("tool_call_id"),
                "output": output,
            }
        ]
    if role == "assistant":
        items: list[dict[str, Any]] = []
        text = text_of(content)
        if text:
            items.append(
                {
                    "type": "message",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": text}],
                }
            )
        for call in message.get("tool_calls") or []:
            function = cast("dict[str, Any]", call).get("function") or {}  # a client's, whatever it holds
            items.append(
                {
                    "type": "function_call",
                    "call_id": call.get("id"),
                    "name": function.get("name"),
                    "arguments": function.get("arguments") or "{}",
                }
            )
        return items
    role = role if role in ("user", "system", "developer") else "user"
    return [{"type": "message", "role": role, "content": _parts(content, assistant=False)}]


def _tool(tool: Tool) -> dict[str, Any]:
    function = tool["function"]
    out: dict[str, Any] = {
        "type": "function",
        "name": function["name"],
        "parameters": function.get("parameters") or {"type": "object", "properties": {}},
        "strict": bool(function.get("strict", False)),
    }
    if function.get("description"):
        out["description"] = function["description"]
    return out


def _choice(choice: Any) -> Any:
    if isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        return {"type": "function", "name": choice["function"].get("name")}
    return choice


def _format(fmt: dict[str, Any]) -> dict[str, Any]:
    if fmt.get("type") == "json_schema":
        return {"type": "json_schema", **(fmt.get("json_schema") or {})}
    return {"type": fmt.get("type", "text")}


# --------------------------------------------------------------------------- whole answers


def usage_from(data: Any) -> Usage | None:
    """Responses usage: ``input_tokens`` include the cache reads
    (``input_tokens_details.cached_tokens``) and writes (``cache_write_tokens``, where an
    upstream reports them)."""
    if not isinstance(data, dict):
        return None
    details = data.get("input_tokens_details")
    details = details if isinstance(details, dict) else {}
    out_details = data.get("output_tokens_details")
    out_details = out_details if isinstance(out_details, dict) else {}
    return Usage.from_inclusive(
        data.get("input_tokens") or 0,
        data.get("output_tokens") or 0,
        read=details.get("cached_tokens") or 0,
        write=details.get("cache_write_tokens") or 0,
        reasoning=out_details.get("reasoning_tokens") or 0,
    )


def error_from(error: Any, status: int | None = None) -> UpstreamError:
    """An upstream's error object (``response.error`` or an ``error`` event) as ours."""
    error = error if isinstance(error, dict) else {}
    message = str(error.get("message") or "the upstream failed the response")
    code = error.get("code")
    if code in ("rate_limit_exceeded", "insufficient_quota"):
        return UpstreamRateLimited(f"upstream: {message}", upstream_status=429)
    if code in ("invalid_prompt", "context_length_exceeded") or str(code or "").startswith("invalid_"):
        return UpstreamRejected(f"upstream: {message}", upstream_status=status or 400)
    return UpstreamError(f"upstream: {message}", upstream_status=status)


def from_upstream(body: Any) -> ChatResult:
    """A whole Response (non-streamed) as a ``ChatResult``."""
    if not isinstance(body, dict):
        raise UpstreamError("upstream: the response is not a JSON object")
    if body.get("status") == "failed" or body.get("error"):
        raise error_from(body.get("error"))
    texts: list[str] = []
    reasoning: list[str] = []
    calls: list[ToolCall] = []
    for item in body.get("output") or []:
        kind = item.get("type")
        if kind == "message":
            for part in item.get("content") or []:
                if part.get("type") == "output_text":
                    texts.append(part.get("text") or "")
                elif part.get("type") == "refusal":
                    texts.append(part.get("refusal") or "")
        elif kind == "reasoning":
            parts = item.get("content") or item.get("summary") or []
            reasoning.extend(p.get("text") or "" for p in parts)
        elif kind == "function_call":
            calls.append(
                ToolCall(
                    id=item.get("call_id") or "",
                    name=item.get("name") or "",
                    arguments=item.get("arguments") or "",
                )
            )
        elif kind == "custom_tool_call":
            arguments = orjson.dumps({"input": item.get("input") or ""}).decode()
            calls.append(
                ToolCall(id=item.get("call_id") or "", name=item.get("name") or "", arguments=arguments)
            )
    return ChatResult(
        id=str(body.get("id") or ""),
        model=str(body.get("model") or ""),
        created=int(body.get("created_at") or 0),
        text="".join(texts) if texts else None,
        reasoning="\n\n".join(reasoning) if reasoning else None,
        tool_calls=calls,
        finish_reason=_finish(body, bool(calls)),
        usage=usage_from(body.get("usage")) or Usage(),
    )


def _finish(response: dict[str, Any], has_calls: bool) -> str:
    if response.get("status") == "incomplete":
        reason = (response.get("incomplete_details") or {}).get("reason")
        return _INCOMPLETE_FINISH.get(str(reason), "length")
    return "tool_calls" if has_calls else "stop"


# --------------------------------------------------------------------------- streams


class UpstreamStreamParser(UpstreamParser):
    """Responses stream events (decoded ``data`` objects) -> canonical deltas, one event at a
    time. Tool calls are numbered in the order their items open; ``response.failed`` and
    ``error`` events raise ``UpstreamError``."""

    __slots__ = ("_args_seen", "_calls", "_has_calls", "done")

    def __init__(self) -> None:
        self._calls: dict[int, int] = {}  # output_index -> tool call index
        self._args_seen: set[int] = set()
        self._has_calls = False
        self.done = False

    def feed(self, event: dict[str, Any]) -> list[Delta]:
        kind = event.get("type")
        if kind in ("response.output_text.delta", "response.refusal.delta"):
            delta = event.get("delta")
            return [Delta(text=delta)] if delta else []
        if kind in ("response.reasoning_summary_text.delta", "response.reasoning_text.delta"):
            delta = event.get("delta")
            return [Delta(reasoning=delta)] if delta else []
        if kind == "response.reasoning_summary_part.added":
            # OpenAI summarises in several parts (paragraphs) per reasoning item.
            later = int(event.get("summary_index") or 0) > 0
            return [Delta(reasoning="\n\n")] if later else []
        if kind == "response.output_item.added":
            return self._item_added(event)
        if kind in (
            "response.function_call_arguments.delta",
            "response.custom_tool_call_input.delta",
        ):
            index = self._calls.get(int(event.get("output_index") or 0))
            delta = event.get("delta")
            if index is None or not delta or kind.startswith("response.custom"):
                return []
            self._args_seen.add(index)
            return [Delta(tool_calls=[ToolCallDelta(index=index, arguments=delta)])]
        if kind == "response.output_item.done":
            return self._item_done(event)
        if kind in ("response.completed", "response.incomplete"):
            self.done = True
            response = event.get("response") or {}
            return [
                Delta(
                    finish_reason=_finish(response, self._has_calls),
                    usage=usage_from(response.get("usage")),
                )
            ]
        if kind == "response.failed":
            self.done = True
            raise error_from((event.get("response") or {}).get("error"))
        if kind == "error":
            self.done = True
            raise error_from(event.get("error") if isinstance(event.get("error"), dict) else event)
        return []

    def _item_added(self, event: dict[str, Any]) -> list[Delta]:
        item = event.get("item") or {}
        if item.get("type") not in ("function_call", "custom_tool_call"):
            return []
        index = len(self._calls)
        self._calls[int(event.get("output_index") or 0)] = index
        self._has_calls = True
        call = ToolCallDelta(index=index, id=item.get("call_id"), name=item.get("name"))
        return [Delta(tool_calls=[call])]

    def _item_done(self, event: dict[str, Any]) -> list[Delta]:
        item = event.get("item") or {}
        kind = item.get("type")
        if kind not in ("function_call", "custom_tool_call"):
            return []
        output_index = int(event.get("output_index") or 0)
        deltas = [] if output_index in self._calls else self._item_added(event)
        index = self._calls[output_index]
        if index in self._args_seen:
            return deltas
        if kind == "custom_tool_call":
            arguments = orjson.dumps({"input": item.get("input") or ""}).decode()
        else:
            arguments = item.get("arguments") or ""
        if arguments:
            self._args_seen.add(index)
            deltas.append(Delta(tool_calls=[ToolCallDelta(index=index, arguments=arguments)]))
        return deltas


class ResponsesCodec(Codec):
    """OpenAI Responses spoken to an upstream."""

    __slots__ = ()

    def encode(self, request: ChatRequest, upstream_model: str) -> dict[str, Any]:
        return to_upstream(request, upstream_model)

    def decode(self, body: dict[str, Any]) -> ChatResult:
        return from_upstream(body)

    def stream_parser(self) -> UpstreamParser:
        return UpstreamStreamParser()


CODEC = ResponsesCodec()
