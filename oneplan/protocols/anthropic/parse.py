"""Anthropic Messages request -> canonical ``ChatRequest``.

What does not map one-to-one, and why:

* ``tool_result`` blocks live inside a *user* turn in Anthropic and are ``tool`` messages in
  Chat Completions. A user turn is split: its tool results first (the model's calls must be
  answered before anything else is said), then whatever text and images remain.
* ``thinking`` blocks in assistant history become ``reasoning_content`` plus an opaque
  ``reasoning_signature``; ``redacted_thinking`` is encrypted for Anthropic alone and dropped.
* Anthropic *server* tools (``web_search_…``, ``code_execution_…``, ``bash_…`` and the other
  typed tools) run on Anthropic's side; no other provider can run them, so a request naming one
  is refused with a message saying so rather than answered as if the tool did not exist.
* ``cache_control`` stays on text and image parts and on tool definitions (providers with
  explicit caching use it; the outbound codecs drop it where the upstream would refuse it); on
  tool-use blocks it has no canonical slot and is dropped.
* Unknown top-level fields are ignored: Anthropic adds fields often, and refusing a whole
  request over an optional one helps nobody.
"""

from __future__ import annotations

from typing import Any, cast

import orjson

from oneplan.errors import InvalidRequest
from oneplan.protocols.anthropic.render import reasoning_from_signature
from oneplan.protocols.anthropic.schema import check
from oneplan.protocols.canonical import ChatRequest, Message, Thinking, Tool
from oneplan.protocols.validation import validate

_EFFORTS = frozenset({"low", "medium", "high"})
_DISPLAYS = frozenset({"summarized", "omitted"})


def _fail(message: str, param: str) -> InvalidRequest:
    return InvalidRequest(f"{param}: {message}", param=param)


def _dict(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail("must be an object", path)
    return value


def _str(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise _fail("must be a string", path)
    return value


def _int(value: Any, path: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail("must be an integer", path)
    if value < minimum:
        raise _fail(f"must be at least {minimum}", path)
    return value


def _number(value: Any, path: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail("must be a number", path)
    if not low <= value <= high:
        raise _fail(f"must be between {low:g} and {high:g}", path)
    return float(value)


def _with_cache(part: dict[str, Any], block: dict[str, Any]) -> dict[str, Any]:
    cache = block.get("cache_control")
    if cache is not None:
        part["cache_control"] = cache
    return part


def _text_part(block: dict[str, Any], path: str) -> dict[str, Any]:
    return _with_cache({"type": "text", "text": _str(block.get("text"), f"{path}.text")}, block)


def _image_part(block: dict[str, Any], path: str) -> dict[str, Any]:
    source = _dict(block.get("source"), f"{path}.source")
    kind = source.get("type")
    if kind == "base64":
        media = _str(source.get("media_type"), f"{path}.source.media_type")
        data = _str(source.get("data"), f"{path}.source.data")
        url = f"data:{media};base64,{data}"
    elif kind == "url":
        url = _str(source.get("url"), f"{path}.source.url")
    else:
        raise _fail(f"unsupported image source type {kind!r}: use base64 or url", f"{path}.source.type")
    return _with_cache({"type": "image_url", "image_url": {"url": url}}, block)


def _document_part(block: dict[str, Any], path: str) -> dict[str, Any]:
    """Plain-text documents become text; PDFs and files have no canonical form yet."""
    source = _dict(block.get("source"), f"{path}.source")
    kind = source.get("type")
    if kind == "text":
        text = _str(source.get("data"), f"{path}.source.data")
    elif kind == "content":
        inner = source.get("content")
        if isinstance(inner, str):
            text = inner
        elif isinstance(inner, list):
            text = "\n".join(
                _str(
                    _dict(b, f"{path}.source.content.{i}").get("text"),
                    f"{path}.source.content.{i}.text",
                )
                for i, b in enumerate(inner)
            )
        else:
            raise _fail("must be a string or a list of text blocks", f"{path}.source.content")
    else:
        raise _fail(
            f"document source type {kind!r} is not supported by oneplan: send the text instead",
            f"{path}.source.type",
        )
    title = block.get("title")
    if isinstance(title, str) and title:
        text = f"{title}\n\n{text}"
    return _with_cache({"type": "text", "text": text}, block)


def _user_part(block: dict[str, Any], kind: Any, path: str) -> dict[str, Any]:
    if kind == "text":
        return _text_part(block, path)
    if kind == "image":
        return _image_part(block, path)
    if kind == "document":
        return _document_part(block, path)
    raise _fail(f"unsupported content block type {kind!r} in a user message", f"{path}.type")


def _tool_result(block: dict[str, Any], path: str) -> dict[str, Any]:
    call_id = _str(block.get("tool_use_id"), f"{path}.tool_use_id")
    raw = block.get("content")
    content: str | list[dict[str, Any]]
    if raw is None:
        content = ""
    elif isinstance(raw, str):
        content = raw
        if block.get("cache_control") is not None:
            content = [_with_cache({"type": "text", "text": raw}, block)]
    elif isinstance(raw, list):
        parts = []
        for i, item in enumerate(raw):
            item = _dict(item, f"{path}.content.{i}")
            parts.append(_user_part(item, item.get("type"), f"{path}.content.{i}"))
        if parts and block.get("cache_control") is not None:
            parts[-1] = _with_cache(parts[-1], block)
        # All-text results read best as one string for upstreams that reject part lists here.
        if all(p["type"] == "text" and "cache_control" not in p for p in parts):
            content = "\n".join(p["text"] for p in parts)
        else:
            content = parts
    else:
        raise _fail("must be a string or a list of content blocks", f"{path}.content")
    message: dict[str, Any] = {"role": "tool", "tool_call_id": call_id, "content": content}
    if block.get("is_error") is True:
        message["is_error"] = True
    return message


def _user(content: Any, path: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"role": "user", "content": content}]
    if not isinstance(content, list):
        raise _fail("must be a string or a list of content blocks", f"{path}.content")
    tools: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for i, block in enumerate(content):
        where = f"{path}.content.{i}"
        block = _dict(block, where)
        kind = block.get("type")
        if kind == "tool_result":
            tools.append(_tool_result(block, where))
        else:
            parts.append(_user_part(block, kind, where))
    if parts or not tools:
        tools.append({"role": "user", "content": parts})
    return tools


def _assistant(content: Any, path: str) -> dict[str, Any]:
    if isinstance(content, str):
        return {"role": "assistant", "content": content}
    if not isinstance(content, list):
        raise _fail("must be a string or a list of content blocks", f"{path}.content")
    parts: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    reasoning: list[str] = []
    signature: str | None = None
    for i, block in enumerate(content):
        where = f"{path}.content.{i}"
        block = _dict(block, where)
        kind = block.get("type")
        if kind == "text":
            parts.append(_text_part(block, where))
        elif kind == "tool_use":
            arguments = orjson.dumps(_dict(block.get("input", {}), f"{where}.input")).decode()
            calls.append(
                {
                    "id": _str(block.get("id"), f"{where}.id"),
                    "type": "function",
                    "function": {
                        "name": _str(block.get("name"), f"{where}.name"),
                        "arguments": arguments,
                    },
                }
            )
        elif kind == "thinking":
            text = _str(block.get("thinking"), f"{where}.thinking")
            sig = block.get("signature")
            # A block shown with display "omitted" comes back empty: its sealed signature has it.
            reasoning.append(text or reasoning_from_signature(sig) or "")
            if isinstance(sig, str) and sig:
                signature = sig
        elif kind == "redacted_thinking":
            continue
        else:
            raise _fail(f"unsupported content block type {kind!r} in an assistant message", f"{where}.type")
    message: dict[str, Any] = {"role": "assistant"}
    if any("cache_control" in p for p in parts):
        message["content"] = parts
    else:
        message["content"] = "".join(p["text"] for p in parts) if parts else None
    if calls:
        message["tool_calls"] = calls
    if reasoning:
        message["reasoning_content"] = "".join(reasoning)
        if signature is not None:
            message["reasoning_signature"] = signature
    return message


def _system(system: Any, path: str = "system") -> dict[str, Any] | None:
    if system is None:
        return None
    if isinstance(system, str):
        return {"role": "system", "content": system} if system else None
    if not isinstance(system, list):
        raise _fail("must be a string or a list of text blocks", path)
    parts = []
    for i, block in enumerate(system):
        block = _dict(block, f"{path}.{i}")
        if block.get("type") != "text":
            raise _fail("system blocks must be of type 'text'", f"{path}.{i}.type")
        parts.append(_text_part(block, f"{path}.{i}"))
    return {"role": "system", "content": parts} if parts else None


def _messages(raw: Any) -> list[dict[str, Any]]:
    if not isinstance(raw, list):
        raise _fail("field required (a list of messages)", "messages")
    if not raw:
        raise _fail("at least one message is required", "messages")
    out: list[dict[str, Any]] = []
    for i, message in enumerate(raw):
        path = f"messages.{i}"
        message = _dict(message, path)
        role = message.get("role")
        if "content" not in message:
            raise _fail("field required", f"{path}.content")
        if role == "user":
            out.extend(_user(message["content"], path))
        elif role == "assistant":
            out.append(_assistant(message["content"], path))
        elif role == "system":  # a mid-conversation system message (Claude Code sends them)
            if (system := _system(message["content"], f"{path}.content")) is not None:
                out.append(system)
        else:
            raise _fail(f"role must be 'user', 'assistant' or 'system', not {role!r}", f"{path}.role")
    return out


def _tools(raw: Any) -> list[dict[str, Any]] | None:
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise _fail("must be a list", "tools")
    tools = []
    for i, tool in enumerate(raw):
        path = f"tools.{i}"
        tool = _dict(tool, path)
        kind = tool.get("type")
        if kind not in (None, "custom"):
            raise _fail(
                f"Anthropic server tool {kind!r} is not available through oneplan; "
                "declare a custom tool with name, description and input_schema instead",
                f"{path}.type",
            )
        function: dict[str, Any] = {
            "name": _str(tool.get("name"), f"{path}.name"),
            "parameters": _dict(tool.get("input_schema"), f"{path}.input_schema"),
        }
        if tool.get("description") is not None:
            function["description"] = _str(tool["description"], f"{path}.description")
        canonical: dict[str, Any] = {"type": "function", "function": function}
        if isinstance(tool.get("cache_control"), dict):  # a cache breakpoint after the tools
            canonical["cache_control"] = tool["cache_control"]
        tools.append(canonical)
    return tools or None


def _tool_choice(raw: Any) -> tuple[Any, bool | None]:
    """``(tool_choice, parallel_tool_calls)``."""
    if raw is None:
        return None, None
    choice = _dict(raw, "tool_choice")
    kind = choice.get("type")
    parallel = False if choice.get("disable_parallel_tool_use") is True else None
    if kind == "auto":
        return "auto", parallel
    if kind == "any":
        return "required", parallel
    if kind == "none":
        return "none", parallel
    if kind == "tool":
        name = _str(choice.get("name"), "tool_choice.name")
        return {"type": "function", "function": {"name": name}}, parallel
    raise _fail("type must be one of auto, any, tool, none", "tool_choice.type")


def _thinking(body: dict[str, Any]) -> Thinking:
    # In the Messages API a request without ``thinking`` asks for no extended thinking, so the
    # provider's own default (Qwen 3.5 and GLM think unless told not to) is switched off.
    thinking = Thinking(enabled=False)
    spec = body.get("thinking")
    if spec is not None:
        spec = _dict(spec, "thinking")
        kind = spec.get("type")
        if kind == "enabled":
            thinking.enabled = True
            thinking.budget_tokens = _int(spec.get("budget_tokens"), "thinking.budget_tokens", 1)
        elif kind == "adaptive":
            thinking.enabled = True
        elif kind == "disabled":
            thinking.enabled = False
        else:
            raise _fail("type must be one of enabled, disabled, adaptive", "thinking.type")
        display = spec.get("display")
        if display is not None:
            if display not in _DISPLAYS:
                raise _fail("display must be one of summarized, omitted", "thinking.display")
            thinking.display = display
    config = body.get("output_config")
    if isinstance(config, dict) and config.get("effort") in _EFFORTS:
        thinking.effort = config["effort"]
    return thinking


def _response_format(body: dict[str, Any]) -> dict[str, Any] | None:
    """Structured outputs (``output_format`` or ``output_config.format``) -> json_schema."""
    config = body.get("output_config")
    spec = body.get("output_format")
    if spec is None and isinstance(config, dict):
        spec = config.get("format")
    if spec is None:
        return None
    spec = _dict(spec, "output_format")
    if spec.get("type") != "json_schema":
        raise _fail("type must be 'json_schema'", "output_format.type")
    schema = _dict(spec.get("schema"), "output_format.schema")
    return {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": schema, "strict": True},
    }


def parse(body: Any) -> ChatRequest:
    """Validate an Anthropic Messages body and translate it; ``InvalidRequest`` names the field."""
    validate(check, body, "dots")  # every type below is now the documented one
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _fail("field required (a model name)", "model")
    if "max_tokens" not in body:
        raise _fail("field required", "max_tokens")
    max_tokens = _int(body["max_tokens"], "max_tokens", 1)
    messages = _messages(body.get("messages"))
    system = _system(body.get("system"))
    if system is not None:
        messages.insert(0, system)
    tool_choice, parallel = _tool_choice(body.get("tool_choice"))
    stop = body.get("stop_sequences")
    if stop is not None:
        if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
            raise _fail("must be a list of strings", "stop_sequences")
        stop = stop or None
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise _fail("must be true or false", "stream")
    request = ChatRequest(
        model=model,
        messages=cast("list[Message]", messages),  # built in the canonical shape above
        stream=stream,
        tools=cast("list[Tool] | None", _tools(body.get("tools"))),
        tool_choice=tool_choice,
        parallel_tool_calls=parallel,
        max_tokens=max_tokens,
        stop=stop,
        response_format=_response_format(body),
        thinking=_thinking(body),
        include_usage=True,  # Anthropic streams always carry usage
    )
    if body.get("temperature") is not None:
        request.temperature = _number(body["temperature"], "temperature", 0.0, 1.0)
    if body.get("top_p") is not None:
        request.top_p = _number(body["top_p"], "top_p", 0.0, 1.0)
    if body.get("top_k") is not None:
        request.extra["top_k"] = _int(body["top_k"], "top_k", 0)
    metadata = body.get("metadata")
    if metadata is not None:
        user = _dict(metadata, "metadata").get("user_id")
        if user is not None:
            request.user = _str(user, "metadata.user_id")
    return request
