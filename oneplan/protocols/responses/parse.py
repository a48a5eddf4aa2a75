"""OpenAI Responses requests -> the canonical ``ChatRequest``.

The Responses API carries a conversation as a flat list of *items* (messages, reasoning,
function calls and their outputs) where Chat Completions nests tool calls inside assistant
messages. This module folds items back into Chat messages:

* consecutive ``function_call`` items become one assistant message with ``tool_calls``; a call
  right after an assistant message is attached to it;
* a ``reasoning`` item becomes ``reasoning_content`` of the *next* assistant message (Kimi, GLM
  and MiniMax want earlier reasoning back on later turns); reasoning not followed by an
  assistant turn is dropped;
* ``custom_tool_call`` (Codex's free-form ``apply_patch``) is served through a function tool with
  one string parameter ``input``, see ``ToolMap``;
* any other ``*_call`` / ``*_call_output`` pair that carries a ``call_id`` (``local_shell_call``,
  ``shell_call``, ``apply_patch_call``...) is kept as a tool call and a tool message, so the history
  the client replays always stays well paired; items without a ``call_id`` that only a hosted
  tool could interpret (``web_search_call``, ``compaction``, ...) are dropped.

Hosted tools (``web_search``, ``file_search``, ``image_generation``, ``local_shell``,
``code_interpreter``, ``mcp``, ``tool_search``...) cannot be served by the upstreams oneplan fronts:
they are **dropped**, not refused, because Codex CLI sends some of them (``web_search``,
``image_generation``, ``tool_search``) by default and must keep working with the function tools
it also sends. They are still echoed back in the response's ``tools``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, cast

import orjson

from oneplan import sealing
from oneplan.errors import InvalidRequest
from oneplan.protocols.canonical import ChatRequest, Message, Tool
from oneplan.protocols.responses.options import (
    NAMESPACE_SEPARATOR,
    chat_name,
    opt_bool,
    opt_int,
    opt_number,
    require_object,
    response_format,
    thinking_for,
    tools_and_choice,
)
from oneplan.protocols.responses.schema import check
from oneplan.protocols.validation import validate

Resolver = Callable[[str], "dict[str, Any] | None"]


@dataclass(slots=True)
class ToolMap:
    """How Responses tool names map onto the flat Chat function names upstreams see.

    ``custom`` names are free-form tools (answered as ``custom_tool_call``); ``namespaced`` maps
    the flattened ``namespace__name`` back to ``(namespace, name)``.
    """

    custom: frozenset[str] = frozenset()
    namespaced: dict[str, tuple[str, str]] = field(default_factory=dict)

    def chat_name(self, name: str, namespace: str | None) -> str:
        return chat_name(name, namespace)


@dataclass(slots=True)
class ResponsesEnvelope:
    """What a Responses request says beyond the canonical request: storage, continuation and
    the fields the Response object echoes back. The server implements storage with it.

    ``store`` follows the API's default (``True``); oneplan keeps nothing unless the operator has
    turned response storage on, so the server must AND this with its own setting (and may echo
    the effective value by ``dataclasses.replace(envelope, store=...)``).
    """

    previous_response_id: str | None = None
    store: bool = True
    metadata: dict[str, str] | None = None
    instructions: str | None = None
    input: list[dict[str, Any]] = field(default_factory=list)
    tools: list[dict[str, Any]] = field(default_factory=list)
    tool_choice: Any = "auto"
    parallel_tool_calls: bool = True
    text: dict[str, Any] | None = None
    reasoning: dict[str, Any] | None = None
    include: list[str] = field(default_factory=list)
    temperature: float | None = None
    top_p: float | None = None
    max_output_tokens: int | None = None
    truncation: str | None = None
    user: str | None = None
    prompt_cache_key: str | None = None
    service_tier: str | None = None
    tool_map: ToolMap = field(default_factory=ToolMap)

    @property
    def include_encrypted_reasoning(self) -> bool:
        return "reasoning.encrypted_content" in self.include


# --------------------------------------------------------------------------- public functions


def parse_request(body: Any, resolve: Resolver | None = None) -> ChatRequest:
    """Validate a Responses body and translate it. ``resolve`` looks up ``item_reference`` ids
    (the server's store); without it a reference is an ``InvalidRequest``."""
    validate(check, body, "brackets")  # every type below is now the documented one
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("model: a model name is required", param="model")
    tool_map = tool_map_for(body.get("tools"))
    messages: list[dict[str, Any]] = []
    instructions = body.get("instructions")
    if instructions is not None:
        if not isinstance(instructions, str):
            raise InvalidRequest("instructions: must be a string", param="instructions")
        if instructions:
            messages.append({"role": "system", "content": instructions})
    items = input_items(body, resolve)
    messages.extend(items_to_messages(items, tool_map))
    if not messages and not body.get("previous_response_id"):
        raise InvalidRequest("input: at least one input item is required", param="input")
    tools, tool_choice = tools_and_choice(body.get("tools"), body.get("tool_choice"))
    return ChatRequest(
        model=model,
        messages=cast("list[Message]", messages),  # built in the canonical shape above
        stream=bool(body.get("stream", False)),
        tools=cast("list[Tool] | None", tools),
        tool_choice=tool_choice,
        parallel_tool_calls=opt_bool(body, "parallel_tool_calls"),
        max_tokens=opt_int(body, "max_output_tokens"),
        temperature=opt_number(body, "temperature"),
        top_p=opt_number(body, "top_p"),
        response_format=response_format(body.get("text")),
        thinking=thinking_for(body.get("reasoning")),
        include_usage=True,  # a Response always reports usage
        user=body.get("user") if isinstance(body.get("user"), str) else None,
    )


def parse_envelope(body: Any, resolve: Resolver | None = None) -> ResponsesEnvelope:
    """The non-canonical part of a Responses body (call after ``parse_request`` validated it)."""
    body = require_object(body)
    tools = body.get("tools") or []
    metadata = body.get("metadata")
    instructions = body.get("instructions")
    return ResponsesEnvelope(
        previous_response_id=body.get("previous_response_id") or None,
        store=bool(body.get("store", True)),
        metadata=metadata if isinstance(metadata, dict) else None,
        instructions=instructions if isinstance(instructions, str) else None,
        input=input_items(body, resolve),
        tools=[t for t in tools if isinstance(t, dict)],
        tool_choice=body.get("tool_choice") or "auto",
        parallel_tool_calls=bool(body.get("parallel_tool_calls", True)),
        text=body.get("text") if isinstance(body.get("text"), dict) else None,
        reasoning=body.get("reasoning") if isinstance(body.get("reasoning"), dict) else None,
        include=[i for i in body.get("include") or [] if isinstance(i, str)],
        temperature=opt_number(body, "temperature"),
        top_p=opt_number(body, "top_p"),
        max_output_tokens=opt_int(body, "max_output_tokens"),
        truncation=body.get("truncation") if isinstance(body.get("truncation"), str) else None,
        user=body.get("user") if isinstance(body.get("user"), str) else None,
        prompt_cache_key=body.get("prompt_cache_key") or None,
        service_tier=body.get("service_tier") or None,
        tool_map=tool_map_for(tools),
    )


def input_items(body: Any, resolve: Resolver | None = None) -> list[dict[str, Any]]:
    """``input`` as a list of normalised Responses items: a string becomes one user message,
    typeless messages get ``type: "message"``, string contents become ``input_text`` /
    ``output_text`` parts and item references are resolved (or refused)."""
    raw = require_object(body).get("input")
    if raw is None:
        return []
    if isinstance(raw, str):
        return [_message_item("user", [{"type": "input_text", "text": raw}])]
    if not isinstance(raw, list):
        raise InvalidRequest("input: must be a string or a list of items", param="input")
    items: list[dict[str, Any]] = []
    for index, item in enumerate(raw):
        if not isinstance(item, dict):
            raise InvalidRequest(f"input[{index}]: must be an object", param=f"input[{index}]")
        kind = item.get("type")
        if kind == "item_reference":
            items.append(_resolve(item, index, resolve))
        elif kind in (None, "message"):
            items.append(_normalise_message(item, index))
        else:
            items.append(item)
    return items


def items_to_messages(items: Iterable[dict[str, Any]], tool_map: ToolMap) -> list[dict[str, Any]]:
    """Fold Responses items into Chat Completions messages (see the module docstring)."""
    folder = _Folder(tool_map)
    for index, item in enumerate(items):
        folder.add(item, index)
    return folder.messages


def prepend_history(
    request: ChatRequest, stored_items: list[dict[str, Any]], tool_map: ToolMap | None = None
) -> None:
    """Put a previous response's items (its input items, then its output items) before this
    request's new turn, after the leading system messages (which therefore stay first, as
    Anthropic-dialect upstreams need). The previous ``instructions`` are not carried over, as
    the API documents."""
    history = items_to_messages(stored_items, tool_map or ToolMap())
    cut = 0
    while cut < len(request.messages) and request.messages[cut].get("role") == "system":
        cut += 1
    request.messages[cut:cut] = cast("list[Message]", history)


def tool_map_for(tools: Any) -> ToolMap:
    custom: set[str] = set()
    namespaced: dict[str, tuple[str, str]] = {}
    for tool in tools or []:
        if not isinstance(tool, dict):
            continue
        if tool.get("type") == "custom" and isinstance(tool.get("name"), str):
            custom.add(tool["name"])
        elif tool.get("type") == "namespace" and isinstance(tool.get("name"), str):
            for inner in tool.get("tools") or []:
                if isinstance(inner, dict) and isinstance(inner.get("name"), str):
                    flat = f"{tool['name']}{NAMESPACE_SEPARATOR}{inner['name']}"
                    namespaced[flat] = (tool["name"], inner["name"])
                    if inner.get("type") == "custom":
                        custom.add(flat)
    return ToolMap(custom=frozenset(custom), namespaced=namespaced)


def encode_reasoning(text: str | None, signature: str | None) -> str:
    """Reasoning and its signature, sealed with the server's key ring (``oneplan/sealing.py``): our
    own ``encrypted_content``, so a stateless client (Codex sends ``store: false``) can hand the
    model its earlier reasoning back without being able to read or forge it."""
    return sealing.seal_json({"r": text or "", "s": signature})


def decode_reasoning(blob: Any) -> tuple[str, str | None] | None:
    """Our own ``encrypted_content`` back into (reasoning, signature); ``None`` for anyone
    else's (OpenAI's real encrypted reasoning means nothing to other upstreams), a forgery,
    or one sealed with a key the ring no longer holds."""
    data = sealing.open_json(blob)
    if not isinstance(data, dict) or not isinstance(data.get("r"), str):
        return None
    signature = data.get("s")
    return data["r"], signature if isinstance(signature, str) else None


# --------------------------------------------------------------------------- items -> messages


class _Folder:
    """Accumulates messages; remembers pending reasoning and the assistant message that
    following calls attach to."""

    __slots__ = ("_assistant", "_reasoning", "_signature", "messages", "tool_map")

    def __init__(self, tool_map: ToolMap) -> None:
        self.messages: list[dict[str, Any]] = []
        self.tool_map = tool_map
        self._reasoning: list[str] = []
        self._signature: str | None = None
        self._assistant: dict[str, Any] | None = None  # open for tool calls to attach to

    def add(self, item: dict[str, Any], index: int) -> None:
        kind = item.get("type", "message")
        if not isinstance(kind, str):
            raise InvalidRequest(f"input[{index}].type: must be a string", param=f"input[{index}].type")
        if kind == "message":
            self._message(item, index)
        elif kind == "reasoning":
            self._reasoning_item(item)
        elif kind == "function_call":
            name = self.tool_map.chat_name(_str(item, "name", index), item.get("namespace"))
            self._call(_call_id(item, index), name, _arguments(item.get("arguments")))
        elif kind == "custom_tool_call":
            name = self.tool_map.chat_name(_str(item, "name", index), item.get("namespace"))
            args = orjson.dumps({"input": item.get("input") or ""}).decode()
            self._call(_call_id(item, index), name, args)
        elif kind.endswith("_call_output") and item.get("call_id"):
            self._tool_output(item, index)
        elif kind.endswith("_call") and item.get("call_id"):
            self._call(item["call_id"], kind[: -len("_call")], _generic_arguments(item))
        # Anything else (web_search_call without call_id, compaction, ...) only means something
        # to a hosted tool: dropped.

    def _message(self, item: dict[str, Any], index: int) -> None:
        role = item.get("role")
        if role == "assistant":
            message: dict[str, Any] = {"role": "assistant", "content": _assistant_text(item, index)}
            self._take_reasoning(message)
            self.messages.append(message)
            self._assistant = message
            return
        if role not in ("user", "system", "developer"):
            raise InvalidRequest(
                f"input[{index}].role: must be user, assistant, system or developer",
                param=f"input[{index}].role",
            )
        self._reasoning, self._signature, self._assistant = [], None, None
        if role == "user":
            self.messages.append({"role": "user", "content": _user_content(item, index)})
        else:  # developer is a system message to every upstream oneplan speaks to
            self.messages.append({"role": "system", "content": _plain_text(item, index)})

    def _reasoning_item(self, item: dict[str, Any]) -> None:
        decoded = decode_reasoning(item.get("encrypted_content"))
        if decoded is not None:
            text, signature = decoded
            if signature:
                self._signature = signature
        else:
            parts = item.get("content") or item.get("summary") or []
            text = "\n\n".join(
                p["text"] for p in parts if isinstance(p, dict) and isinstance(p.get("text"), str)
            )
        if text:
            self._reasoning.append(text)
        self._assistant = None  # a call after reasoning is a new assistant turn

    def _call(self, call_id: str, name: str, arguments: str) -> None:
        message = self._assistant
        if message is None:
            message = {"role": "assistant", "content": None}
            self._take_reasoning(message)
            self.messages.append(message)
            self._assistant = message
        message.setdefault("tool_calls", []).append(
            {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
        )

    def _tool_output(self, item: dict[str, Any], index: int) -> None:
        self._assistant = None
        message: dict[str, Any] = {
            "role": "tool",
            "tool_call_id": item["call_id"],
            "content": _tool_output_content(item.get("output"), index),
        }
        self.messages.append(message)

    def _take_reasoning(self, message: dict[str, Any]) -> None:
        if self._reasoning:
            message["reasoning_content"] = "\n\n".join(self._reasoning)
        if self._signature:
            message["reasoning_signature"] = self._signature
        self._reasoning, self._signature = [], None


def _normalise_message(item: dict[str, Any], index: int) -> dict[str, Any]:
    role = item.get("role")
    content = item.get("content")
    if isinstance(content, str):
        kind = "output_text" if role == "assistant" else "input_text"
        content = [{"type": kind, "text": content}]
    elif not isinstance(content, list):
        raise InvalidRequest(
            f"input[{index}].content: must be a string or a list of parts",
            param=f"input[{index}].content",
        )
    normalised = {**item, "type": "message", "content": content}
    return normalised


def _message_item(role: str, content: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "message", "role": role, "content": content}


def _resolve(item: dict[str, Any], index: int, resolve: Resolver | None) -> dict[str, Any]:
    ref = item.get("id")
    found = resolve(ref) if resolve is not None and isinstance(ref, str) else None
    if found is None:
        raise InvalidRequest(
            f"input[{index}]: item_reference {ref!r} cannot be resolved; send the item itself",
            param=f"input[{index}].id",
        )
    return found


def _texts(parts: list[Any], index: int) -> list[str]:
    texts = []
    for part in parts:
        if not isinstance(part, dict):
            raise InvalidRequest(f"input[{index}].content: parts must be objects")
        kind = part.get("type")
        if kind in ("input_text", "output_text", "text", "summary_text", "reasoning_text"):
            texts.append(part.get("text") or "")
        elif kind == "refusal":
            texts.append(part.get("refusal") or "")
        else:
            raise InvalidRequest(
                f"input[{index}].content: a {kind!r} part is not allowed here",
                param=f"input[{index}].content",
            )
    return texts


def _plain_text(item: dict[str, Any], index: int) -> str:
    return "\n\n".join(_texts(item["content"], index))


def _assistant_text(item: dict[str, Any], index: int) -> str | None:
    parts = item.get("content") or []
    text = "".join(_texts(parts, index))
    return text or None


def _user_content(item: dict[str, Any], index: int) -> str | list[dict[str, Any]]:
    parts = item["content"]
    if len(parts) == 1 and isinstance(parts[0], dict) and parts[0].get("type") == "input_text":
        return str(parts[0].get("text") or "")
    return [_user_part(part, index) for part in parts]


def _user_part(part: Any, index: int) -> dict[str, Any]:
    if not isinstance(part, dict):
        raise InvalidRequest(f"input[{index}].content: parts must be objects")
    kind = part.get("type")
    if kind in ("input_text", "output_text", "text"):
        return {"type": "text", "text": part.get("text") or ""}
    if kind == "refusal":
        return {"type": "text", "text": part.get("refusal") or ""}
    if kind == "input_image":
        url = part.get("image_url")
        if not isinstance(url, str) or not url:
            raise InvalidRequest(
                f"input[{index}]: input_image needs an image_url (an https or data: URL); "
                "file_id is not supported",
                param=f"input[{index}].content",
            )
        image: dict[str, Any] = {"url": url}
        if part.get("detail") in ("low", "high"):
            image["detail"] = part["detail"]
        return {"type": "image_url", "image_url": image}
    raise InvalidRequest(
        f"input[{index}].content: {kind!r} parts are not supported; use input_text or input_image",
        param=f"input[{index}].content",
    )


def _tool_output_content(output: Any, index: int) -> str | list[dict[str, Any]]:
    if isinstance(output, str):
        return output
    if isinstance(output, list):
        parts = [_user_part(p, index) for p in output]
        if all(p["type"] == "text" for p in parts):
            return "".join(p["text"] for p in parts)
        return parts
    if output is None:
        return ""
    return orjson.dumps(output).decode()


def _call_id(item: dict[str, Any], index: int) -> str:
    call_id = item.get("call_id") or item.get("id")
    if not isinstance(call_id, str) or not call_id:
        raise InvalidRequest(f"input[{index}].call_id: required", param=f"input[{index}].call_id")
    return call_id


def _str(item: dict[str, Any], key: str, index: int) -> str:
    value = item.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidRequest(f"input[{index}].{key}: required", param=f"input[{index}].{key}")
    return value


def _arguments(value: Any) -> str:
    if isinstance(value, str):
        return value
    return orjson.dumps(value if value is not None else {}).decode()


def _generic_arguments(item: dict[str, Any]) -> str:
    payload = {k: v for k, v in item.items() if k not in ("type", "id", "call_id", "status")}
    return orjson.dumps(payload).decode()
