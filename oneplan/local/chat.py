"""Canonical messages to a prompt, through the chat template the checkpoint ships.

The template is the model's own (ChatML with Qwen's tool and thinking conventions), so this module
only adapts OpenAI-shaped messages to what such templates read: text content as a string,
assistant tool-call arguments as objects (XML-style templates iterate over them), the earlier
reasoning as ``reasoning_content``, and ``enable_thinking`` from the request's thinking setting.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from oneplan.errors import InvalidRequest
from oneplan.protocols.canonical import ChatRequest, Message


def _text(content: Any, role: str) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text":
                parts.append(str(part.get("text", "")))
            else:
                raise InvalidRequest(
                    f"local models accept text only; a {role} message has a {kind!r} part",
                    param="messages",
                )
        return "".join(parts)
    raise InvalidRequest(f"unsupported {role} message content", param="messages")


def _arguments(raw: Any) -> Any:
    if isinstance(raw, str):
        try:
            parsed = json.loads(raw) if raw.strip() else {}
        except ValueError:
            return raw
        return parsed if isinstance(parsed, dict) else raw
    return raw if raw is not None else {}


def template_messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for message in messages:
        role: str | None = message.get("role")  # plain dicts at run time: checked below
        if role == "developer":
            role = "system"
        if role not in ("system", "user", "assistant", "tool"):
            raise InvalidRequest(f"unsupported message role {role!r}", param="messages")
        item: dict[str, Any] = {"role": role, "content": _text(message.get("content"), role)}
        if role == "assistant":
            if message.get("reasoning_content"):
                item["reasoning_content"] = str(message["reasoning_content"])
            calls = []
            for call in message.get("tool_calls") or []:
                fn = call.get("function", {})
                calls.append(
                    {
                        "id": call.get("id"),
                        "type": "function",
                        "function": {
                            "name": fn.get("name", ""),
                            "arguments": _arguments(fn.get("arguments")),
                        },
                    }
                )
            if calls:
                item["tool_calls"] = calls
        if role == "tool" and message.get("tool_call_id"):
            item["tool_call_id"] = message["tool_call_id"]
        out.append(item)
    return out


def render(tokenizer: Any, request: ChatRequest, *, thinks: bool) -> str:
    """The prompt text, ending with the assistant's generation prompt."""
    kwargs: dict[str, Any] = {}
    if thinks and request.thinking.enabled is not None:
        kwargs["enable_thinking"] = request.thinking.enabled
    tools: Sequence[Mapping[str, object]] | None = (
        request.tools if request.tools and request.tool_choice != "none" else None
    )
    if tools and any("cache_control" in t for t in tools):  # a hint for cloud caches, not prompt text
        tools = [{k: v for k, v in t.items() if k != "cache_control"} for t in tools]
    try:
        text = tokenizer.apply_chat_template(
            template_messages(request.messages),
            tools=tools,
            add_generation_prompt=True,
            tokenize=False,
            **kwargs,
        )
    except InvalidRequest:
        raise
    except Exception as exc:  # jinja2.TemplateError and the template's raise_exception()
        raise InvalidRequest(f"the model's chat template rejected the messages: {exc}") from None
    return str(text)


def opens_thinking(prompt: str) -> bool:
    """Did the template leave a ``<think>`` block open for the model to continue?"""
    tail = prompt[prompt.rfind("<|im_start|>assistant") :]
    return tail.rfind("<think>") > tail.rfind("</think>")
