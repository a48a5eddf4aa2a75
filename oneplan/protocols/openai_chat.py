"""OpenAI Chat Completions, inbound: parse requests, render answers, chunks and errors.

The canonical form *is* Chat Completions, so parsing is mostly validation plus collecting the
many spellings of "think or don't" into one ``Thinking`` value.
"""

from __future__ import annotations

from typing import Any

import orjson

from oneplan import refusals
from oneplan.errors import InvalidRequest, OneplanError
from oneplan.protocols.base import Protocol, StreamContext, StreamRenderer
from oneplan.protocols.canonical import ChatRequest, ChatResult, Delta, Thinking, Usage
from oneplan.protocols.openai_chat_schema import check
from oneplan.protocols.validation import validate

_ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})
_NUMBERS = ("temperature", "top_p", "presence_penalty", "frequency_penalty")
# Fields with a canonical slot, read explicitly below.
_HANDLED = frozenset(
    {
        "model", "messages", "stream", "stream_options", "max_tokens", "max_completion_tokens",
        "temperature", "top_p", "seed", "presence_penalty", "frequency_penalty", "stop",
        "tools", "tool_choice", "parallel_tool_calls", "response_format", "reasoning_effort",
        "thinking", "enable_thinking", "thinking_budget", "user", "n",
    }
)
# OpenAI-platform features no other provider understands: accepted, not forwarded.
_DROPPED = frozenset(
    {
        "store", "metadata", "service_tier", "prompt_cache_key", "safety_identifier",
        "modalities", "audio", "prediction", "web_search_options", "verbosity", "functions",
        "function_call",
    }
)
_EFFORTS = frozenset({"none", "minimal", "low", "medium", "high", "xhigh"})


def _fail(message: str, param: str | None = None) -> InvalidRequest:
    return InvalidRequest(message, param=param)


def _thinking(body: dict[str, Any]) -> Thinking:
    """``reasoning_effort`` (OpenAI), ``thinking`` (GLM, Kimi, Anthropic-style),
    ``enable_thinking`` / ``thinking_budget`` (Qwen), ``chat_template_kwargs`` (vLLM)."""
    thinking = Thinking()
    effort = body.get("reasoning_effort")
    if effort is not None:
        if effort not in _EFFORTS:
            raise _fail(
                f"reasoning_effort must be one of {', '.join(sorted(_EFFORTS))}", "reasoning_effort"
            )
        thinking.effort = effort
        thinking.enabled = effort not in ("none", "minimal")
    spec = body.get("thinking")
    if spec is not None:
        if not isinstance(spec, dict) or spec.get("type") not in ("enabled", "disabled", "auto", "adaptive"):
            raise _fail('thinking must be {"type": "enabled"} or {"type": "disabled"}', "thinking")
        if spec["type"] in ("enabled", "disabled"):
            thinking.enabled = spec["type"] == "enabled"
        budget = spec.get("budget_tokens")
        if budget is not None:
            thinking.budget_tokens = _positive_int(budget, "thinking.budget_tokens")
    if "enable_thinking" in body:
        if not isinstance(body["enable_thinking"], bool):
            raise _fail("enable_thinking must be true or false", "enable_thinking")
        thinking.enabled = body["enable_thinking"]
    kwargs = body.get("chat_template_kwargs")
    if isinstance(kwargs, dict) and isinstance(kwargs.get("enable_thinking"), bool):
        thinking.enabled = kwargs["enable_thinking"]
    if body.get("thinking_budget") is not None:
        thinking.budget_tokens = _positive_int(body["thinking_budget"], "thinking_budget")
    return thinking


def _positive_int(value: Any, param: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise _fail(f"{param} must be a positive integer", param)
    return value


def _messages(raw: Any) -> list[dict[str, Any]]:
    if not isinstance(raw, list) or not raw:
        raise _fail("messages must be a non-empty array", "messages")
    out = []
    for i, message in enumerate(raw):
        if not isinstance(message, dict):
            raise _fail(f"messages[{i}] must be an object", f"messages[{i}]")
        role = message.get("role")
        if role not in _ROLES:
            raise _fail(
                f"messages[{i}].role must be one of system, developer, user, assistant, tool",
                f"messages[{i}].role",
            )
        content = message.get("content")
        if content is not None and not isinstance(content, (str, list)):
            raise _fail(f"messages[{i}].content must be a string or an array", f"messages[{i}].content")
        if role == "tool" and not isinstance(message.get("tool_call_id"), str):
            raise _fail(f"messages[{i}].tool_call_id is required for a tool message", f"messages[{i}]")
        if role == "developer":  # providers other than OpenAI only know "system"
            message = {**message, "role": "system"}
        calls = message.get("tool_calls")
        if calls is not None and not isinstance(calls, list):
            raise _fail(f"messages[{i}].tool_calls must be an array", f"messages[{i}].tool_calls")
        out.append(message)
    return out


def _tools(raw: Any) -> list[dict[str, Any]] | None:
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise _fail("tools must be an array", "tools")
    for i, tool in enumerate(raw):
        fn = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
            raise _fail(f"tools[{i}] must be {{type: function, function: {{name, ...}}}}", f"tools[{i}]")
    return raw or None


class OpenAIChat(Protocol):
    name = "openai_chat"

    def parse(self, body: Any) -> ChatRequest:
        validate(check, body, "brackets")  # every type below is now the documented one
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise _fail("model is required", "model")
        stream = body.get("stream", False)
        if not isinstance(stream, bool):
            raise _fail("stream must be true or false", "stream")
        if body.get("n") not in (None, 1):
            raise _fail("only n = 1 is supported", "n")
        max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
        stop = body.get("stop")
        if isinstance(stop, str):
            stop = [stop]
        elif stop is not None and (
            not isinstance(stop, list) or not all(isinstance(s, str) for s in stop)
        ):
            raise _fail("stop must be a string or an array of strings", "stop")
        request = ChatRequest(
            model=model,
            messages=_messages(body.get("messages")),
            stream=stream,
            tools=_tools(body.get("tools")),
            tool_choice=body.get("tool_choice"),
            parallel_tool_calls=body.get("parallel_tool_calls"),
            max_tokens=None if max_tokens is None else _positive_int(max_tokens, "max_tokens"),
            stop=stop or None,
            response_format=body.get("response_format"),
            thinking=_thinking(body),
            user=body.get("user") if isinstance(body.get("user"), str) else None,
        )
        for key in _NUMBERS:
            value = body.get(key)
            if value is not None:
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise _fail(f"{key} must be a number", key)
                setattr(request, key, value)
        seed = body.get("seed")
        if seed is not None:
            if isinstance(seed, bool) or not isinstance(seed, int):
                raise _fail("seed must be an integer", "seed")
            request.seed = seed
        options = body.get("stream_options")
        if isinstance(options, dict):
            request.include_usage = bool(options.get("include_usage"))
        request.extra = {
            k: v for k, v in body.items() if k not in _HANDLED and k not in _DROPPED
        }
        if _only_thinking_kwargs(body):  # said canonically in request.thinking
            request.extra.pop("chat_template_kwargs")
        return request

    def render(self, result: ChatResult, ctx: StreamContext) -> dict[str, Any]:
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

    def renderer(self, ctx: StreamContext) -> StreamRenderer:
        return ChatChunkRenderer(ctx)

    def error_body(self, error: OneplanError) -> dict[str, Any]:
        return openai_error_body(error)


def openai_error_body(error: OneplanError) -> dict[str, Any]:
    """The OpenAI error body every OpenAI client (and Codex) reads."""
    type_, code = refusals.openai_type_and_code(error)
    return {"error": {"message": error.message, "type": type_, "param": error.param, "code": code}}


def _only_thinking_kwargs(body: dict[str, Any]) -> bool:
    kwargs = body.get("chat_template_kwargs")
    return isinstance(kwargs, dict) and set(kwargs) <= {"enable_thinking"}


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


class ChatChunkRenderer(StreamRenderer):
    """Canonical deltas to ``chat.completion.chunk`` frames, one frame per upstream chunk."""

    __slots__ = ("_finished", "_prefix", "_started", "_usage", "ctx")

    def __init__(self, ctx: StreamContext) -> None:
        self.ctx = ctx
        # Every chunk shares id/object/created/model: encode that prefix once.
        head = orjson.dumps(
            {"id": ctx.response_id, "object": "chat.completion.chunk", "created": ctx.created, "model": ctx.model}
        )
        self._prefix = b"data: " + head[:-1] + b',"choices":'
        self._usage: Usage | None = None
        self._finished = False
        self._started = False

    def _frame(self, choices: bytes, usage: bytes = b"") -> bytes:
        return self._prefix + choices + usage + b"}\n\n"

    def _choice(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        return orjson.dumps([{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}])

    def start(self) -> bytes:
        self._started = True
        return self._frame(self._choice({"role": "assistant", "content": ""}))

    def feed(self, delta: Delta) -> bytes:
        out = b""
        body: dict[str, Any] = {}
        if delta.reasoning:
            body["reasoning_content"] = delta.reasoning
        if delta.text:
            body["content"] = delta.text
        if delta.tool_calls:
            calls = []
            for tc in delta.tool_calls:
                call: dict[str, Any] = {"index": tc.index}
                if tc.id:
                    call["id"] = tc.id
                    call["type"] = "function"
                fn: dict[str, Any] = {"arguments": tc.arguments}
                if tc.name:
                    fn["name"] = tc.name
                call["function"] = fn
                calls.append(call)
            body["tool_calls"] = calls
        if body:
            out = self._frame(self._choice(body))
        if delta.finish_reason and not self._finished:
            self._finished = True
            out += self._frame(self._choice({}, delta.finish_reason))
        if delta.usage is not None:
            self._usage = delta.usage
        return out

    def finish(self) -> bytes:
        out = b""
        if not self._finished:
            self._finished = True
            out += self._frame(self._choice({}, "stop"))
        if self.ctx.include_usage:
            usage = orjson.dumps(usage_body(self._usage or Usage()))
            out += self._frame(b"[]", b',"usage":' + usage)
        return out + b"data: [DONE]\n\n"

    def fail(self, error: OneplanError) -> bytes:
        body = PROTOCOL.error_body(error)
        return b"data: " + orjson.dumps(body) + b"\n\n"


PROTOCOL = OpenAIChat()
