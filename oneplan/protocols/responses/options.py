"""Responses request options -> canonical ones: tools, tool_choice, text.format, reasoning.

Hosted tools are dropped (see ``parse``); ``custom`` tools become a function with one
``input`` string whose description carries the tool's grammar; ``namespace`` tools are flattened
to ``namespace__name`` functions.
"""

from __future__ import annotations

from typing import Any

from oneplan.errors import InvalidRequest
from oneplan.protocols.canonical import Thinking

# reasoning.effort values that mean "do not think" on a provider that only has an on/off switch.
NO_THINKING_EFFORTS = ("none", "minimal")
NAMESPACE_SEPARATOR = "__"
_CUSTOM_INPUT_SCHEMA = {
    "type": "object",
    "properties": {"input": {"type": "string", "description": "The raw input for the tool."}},
    "required": ["input"],
    "additionalProperties": False,
}


def chat_name(name: str, namespace: str | None) -> str:
    """The flat function name upstreams see for a (possibly namespaced) Responses tool."""
    return f"{namespace}{NAMESPACE_SEPARATOR}{name}" if namespace else name


def tools_and_choice(tools: Any, choice: Any) -> tuple[list[dict[str, Any]] | None, Any]:
    if tools is not None and not isinstance(tools, list):
        raise InvalidRequest("tools: must be a list", param="tools")
    chat: list[dict[str, Any]] = []
    for index, tool in enumerate(tools or []):
        if not isinstance(tool, dict):
            raise InvalidRequest(f"tools[{index}]: must be an object", param=f"tools[{index}]")
        chat.extend(_chat_tools(tool, index, None))
    chat_choice = _tool_choice(choice)
    if isinstance(choice, dict) and choice.get("type") == "allowed_tools":
        allowed = {
            chat_name(t.get("name", ""), t.get("namespace"))
            for t in choice.get("tools") or []
            if isinstance(t, dict)
        }
        chat = [t for t in chat if t["function"]["name"] in allowed]
    return (chat or None), (chat_choice if chat else None)


def _chat_tools(tool: dict[str, Any], index: int, namespace: str | None) -> list[dict[str, Any]]:
    kind = tool.get("type")
    if kind == "namespace":
        inner = tool.get("tools") or []
        return [t for i in inner if isinstance(i, dict) for t in _chat_tools(i, index, tool["name"])]
    if kind not in ("function", "custom"):
        return []  # a hosted tool: see the module docstring
    name = tool.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidRequest(f"tools[{index}].name: required", param=f"tools[{index}].name")
    function: dict[str, Any] = {"name": chat_name(name, namespace)}
    description = tool.get("description") or ""
    if kind == "custom":
        fmt = tool.get("format") or {}
        if fmt.get("type") == "grammar" and fmt.get("definition"):
            description += (
                f"\n\nThe input must follow this {fmt.get('syntax', '')} grammar:\n{fmt['definition']}"
            )
        function["parameters"] = _CUSTOM_INPUT_SCHEMA
    else:
        function["parameters"] = tool.get("parameters") or {"type": "object", "properties": {}}
        if tool.get("strict") is not None:
            function["strict"] = bool(tool["strict"])
    if description:
        function["description"] = description.strip()
    return [{"type": "function", "function": function}]


def _tool_choice(choice: Any) -> Any:
    if choice is None:
        return None
    if choice in ("auto", "none", "required"):
        return choice
    if isinstance(choice, dict):
        kind = choice.get("type")
        if kind in ("function", "custom") and isinstance(choice.get("name"), str):
            return {"type": "function", "function": {"name": choice["name"]}}
        if kind == "allowed_tools":
            return "required" if choice.get("mode") == "required" else "auto"
        return "auto"  # a hosted tool was asked for; it has been dropped
    raise InvalidRequest("tool_choice: must be auto, none, required or an object", param="tool_choice")


def response_format(text: Any) -> dict[str, Any] | None:
    if not isinstance(text, dict):
        return None
    fmt = text.get("format")
    if not isinstance(fmt, dict):
        return None
    kind = fmt.get("type")
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema":
        if not isinstance(fmt.get("schema"), dict):
            raise InvalidRequest("text.format.schema: required", param="text.format.schema")
        schema: dict[str, Any] = {"name": fmt.get("name") or "response", "schema": fmt["schema"]}
        if fmt.get("strict") is not None:
            schema["strict"] = bool(fmt["strict"])
        if fmt.get("description"):
            schema["description"] = fmt["description"]
        return {"type": "json_schema", "json_schema": schema}
    return None


def thinking_for(reasoning: Any) -> Thinking:
    """``reasoning.effort`` "none"/"minimal" turn thinking off (the closest an on/off provider
    gets to "as little as possible"); any other effort turns it on; the effort itself is kept
    for providers with levels. No ``reasoning`` leaves the provider's default."""
    if not isinstance(reasoning, dict):
        return Thinking()
    effort = reasoning.get("effort")
    if not isinstance(effort, str):
        return Thinking()
    return Thinking(enabled=effort not in NO_THINKING_EFFORTS, effort=effort)


def require_object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object")
    return body


def opt_bool(body: dict[str, Any], key: str) -> bool | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise InvalidRequest(f"{key}: must be a boolean", param=key)
    return value


def opt_int(body: dict[str, Any], key: str) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidRequest(f"{key}: must be a positive integer", param=key)
    return value


def opt_number(body: dict[str, Any], key: str) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidRequest(f"{key}: must be a number", param=key)
    return float(value)
