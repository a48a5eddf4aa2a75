"""OpenAI Chat Completions requests, inbound: validation, then the canonical ``ChatRequest``.

The canonical form *is* Chat Completions, so parsing is mostly validation plus collecting the
many spellings of "think or don't" into one ``Thinking`` value.
"""

from __future__ import annotations

from typing import Any, cast

from oneplan.errors import InvalidRequest
from oneplan.protocols.canonical import ChatRequest, Message, Thinking, Tool
from oneplan.protocols.openai_chat.schema import check
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


def _messages(raw: Any) -> list[Message]:
    if not isinstance(raw, list) or not raw:
        raise _fail("messages must be a non-empty array", "messages")
    out: list[Message] = []
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
        out.append(cast("Message", message))  # checked above; other keys go as sent
    return out


def _tools(raw: Any) -> list[Tool] | None:
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise _fail("tools must be an array", "tools")
    for i, tool in enumerate(raw):
        fn = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
            raise _fail(f"tools[{i}] must be {{type: function, function: {{name, ...}}}}", f"tools[{i}]")
    return cast("list[Tool]", raw) or None  # each checked above


def parse(body: Any) -> ChatRequest:
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


def _only_thinking_kwargs(body: dict[str, Any]) -> bool:
    kwargs = body.get("chat_template_kwargs")
    return isinstance(kwargs, dict) and set(kwargs) <= {"enable_thinking"}

