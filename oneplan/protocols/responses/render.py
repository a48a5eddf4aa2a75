"""Canonical answers -> OpenAI Responses objects: output items, usage, the Response itself,
and error shapes. Shared by the whole-answer renderer and the stream renderer, so a streamed
answer's final ``response.completed`` is exactly what the non-streamed call would return.

Item ids derive from the response id and the output index (``msg_<resp>_01``): unique whenever
response ids are, identical between the streamed and whole forms, and stable for storage.
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson

from oneplan import refusals
from oneplan.errors import InvalidRequest, OneplanError, QuotaExceeded, UpstreamRateLimited
from oneplan.protocols.base import StreamContext
from oneplan.protocols.canonical import ChatRequest, ChatResult, Usage
from oneplan.protocols.openai_chat import openai_error_body
from oneplan.protocols.responses.parse import ResponsesEnvelope, ToolMap, encode_reasoning

ITEM_PREFIX = {
    "reasoning": "rs",
    "message": "msg",
    "function_call": "fc",
    "custom_tool_call": "ctc",
}
# Chat finish reasons that end a Response early, with the API's incomplete_details.reason.
INCOMPLETE_REASONS = {"length": "max_output_tokens", "content_filter": "content_filter"}


def new_call_id() -> str:
    return "call_" + uuid.uuid4().hex[:24]


def item_id(response_id: str, kind: str, output_index: int) -> str:
    base = response_id.removeprefix("resp_")
    return f"{ITEM_PREFIX.get(kind, 'item')}_{base}_{output_index:02d}"


def status_for(finish_reason: str | None) -> str:
    return "incomplete" if finish_reason in INCOMPLETE_REASONS else "completed"


def usage_dict(usage: Usage | None) -> dict[str, Any] | None:
    """The Responses usage object; ``None`` when the upstream reported nothing."""
    if usage is None:
        return None
    return {
        "input_tokens": usage.input_tokens,
        "input_tokens_details": {
            "cached_tokens": usage.cached_tokens,
            "cache_write_tokens": usage.cache_write_tokens,
        },
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "total_tokens": usage.total_tokens,
    }


# --------------------------------------------------------------------------- output items


def reasoning_item(
    item_id_: str,
    text: str,
    signature: str | None,
    *,
    encrypted: bool,
    status: str = "completed",
) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": item_id_,
        "type": "reasoning",
        "summary": [{"type": "summary_text", "text": text}] if text else [],
        "status": status,
    }
    if encrypted:
        item["encrypted_content"] = encode_reasoning(text, signature)
    return item


def output_text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def message_item(item_id_: str, text: str, status: str = "completed") -> dict[str, Any]:
    content = [output_text_part(text)] if status != "in_progress" else []
    return {
        "id": item_id_,
        "type": "message",
        "role": "assistant",
        "status": status,
        "content": content,
    }


def call_item(
    item_id_: str,
    call_id: str,
    name: str,
    arguments: str,
    tool_map: ToolMap,
    status: str = "completed",
) -> dict[str, Any]:
    """A ``function_call`` item, or a ``custom_tool_call`` when ``name`` is a free-form tool;
    namespaced names are split back into ``namespace`` and ``name``."""
    namespace, short = tool_map.namespaced.get(name, (None, name))
    if name in tool_map.custom:
        item: dict[str, Any] = {
            "id": item_id_,
            "type": "custom_tool_call",
            "call_id": call_id,
            "name": short,
            "input": custom_input(arguments) if status != "in_progress" else "",
        }
    else:
        item = {
            "id": item_id_,
            "type": "function_call",
            "call_id": call_id,
            "name": short,
            "arguments": arguments,
            "status": status,
        }
    if namespace:
        item["namespace"] = namespace
    return item


def custom_input(arguments: str) -> str:
    """The free-form input out of the ``{"input": ...}`` arguments the model produced."""
    try:
        data = orjson.loads(arguments) if arguments else {}
    except orjson.JSONDecodeError:
        return arguments
    value = data.get("input") if isinstance(data, dict) else None
    return value if isinstance(value, str) else arguments


def output_items(
    result: ChatResult,
    response_id: str | None = None,
    envelope: ResponsesEnvelope | None = None,
    *,
    encrypted_reasoning: bool = True,
) -> list[dict[str, Any]]:
    """A whole answer as Responses output items: reasoning, message, calls (in that order).

    For storage the default keeps ``encrypted_content`` so a continued conversation gets its
    reasoning (and signature) back.
    """
    response_id = response_id or result.id
    tool_map = envelope.tool_map if envelope is not None else ToolMap()
    status = status_for(result.finish_reason)
    items: list[dict[str, Any]] = []
    if result.reasoning or result.reasoning_signature:
        items.append(
            reasoning_item(
                item_id(response_id, "reasoning", len(items)),
                result.reasoning or "",
                result.reasoning_signature,
                encrypted=encrypted_reasoning,
            )
        )
    if result.text is not None or not (items or result.tool_calls):
        items.append(message_item(item_id(response_id, "message", len(items)), result.text or ""))
    for call in result.tool_calls:
        kind = "custom_tool_call" if call.name in tool_map.custom else "function_call"
        items.append(
            call_item(
                item_id(response_id, kind, len(items)),
                call.id,
                call.name,
                call.arguments,
                tool_map,
            )
        )
    if status == "incomplete" and items[-1]["type"] in ("reasoning", "message"):
        items[-1]["status"] = "incomplete"  # the item the answer was cut off in
    return items


# --------------------------------------------------------------------------- the Response


def default_envelope(request: ChatRequest | None) -> ResponsesEnvelope:
    """What the echo fields say when the server gave no envelope: rebuilt from the request."""
    if request is None:
        return ResponsesEnvelope()
    tools = [
        {
            "type": "function",
            "name": t["function"]["name"],
            "description": t["function"].get("description"),
            "parameters": t["function"].get("parameters"),
            "strict": t["function"].get("strict", False),
        }
        for t in request.tools or []
        if t.get("type") == "function"
    ]
    choice = request.tool_choice
    if isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        choice = {"type": "function", "name": choice["function"].get("name")}
    text = None
    if request.response_format is not None:
        fmt = request.response_format
        if fmt.get("type") == "json_schema":
            text = {"format": {"type": "json_schema", **fmt.get("json_schema", {})}}
        else:
            text = {"format": {"type": fmt.get("type", "text")}}
    effort = request.thinking.effort
    return ResponsesEnvelope(
        tools=tools,
        tool_choice=choice or "auto",
        parallel_tool_calls=request.parallel_tool_calls is not False,
        text=text,
        reasoning={"effort": effort} if effort else None,
        temperature=request.temperature,
        top_p=request.top_p,
        max_output_tokens=request.max_tokens,
        user=request.user,
    )


def response_object(
    ctx: StreamContext,
    envelope: ResponsesEnvelope,
    *,
    status: str,
    output: list[dict[str, Any]],
    usage: Usage | None = None,
    finish_reason: str | None = None,
    error: dict[str, Any] | None = None,
    completed_at: int | None = None,
) -> dict[str, Any]:
    """The Response object with every field the SDK types require echoed from the request."""
    incomplete = INCOMPLETE_REASONS.get(finish_reason or "") if status == "incomplete" else None
    return {
        "id": ctx.response_id,
        "object": "response",
        "created_at": ctx.created,
        "status": status,
        "background": False,
        "completed_at": completed_at if status == "completed" else None,
        "error": error,
        "incomplete_details": {"reason": incomplete} if incomplete else None,
        "instructions": envelope.instructions,
        "max_output_tokens": envelope.max_output_tokens,
        "metadata": envelope.metadata or {},
        "model": ctx.model,
        "output": output,
        "parallel_tool_calls": envelope.parallel_tool_calls,
        "previous_response_id": envelope.previous_response_id,
        "prompt_cache_key": envelope.prompt_cache_key,
        "reasoning": {
            "effort": (envelope.reasoning or {}).get("effort"),
            "summary": (envelope.reasoning or {}).get("summary"),
        },
        "service_tier": envelope.service_tier or "default",
        "store": envelope.store,
        "temperature": envelope.temperature if envelope.temperature is not None else 1.0,
        "text": _text_echo(envelope.text),
        "tool_choice": envelope.tool_choice,
        "tools": envelope.tools,
        "top_p": envelope.top_p if envelope.top_p is not None else 1.0,
        "truncation": envelope.truncation or "disabled",
        "usage": usage_dict(usage),
        "user": envelope.user,
    }


def _text_echo(text: dict[str, Any] | None) -> dict[str, Any]:
    echo = dict(text or {})
    echo.setdefault("format", {"type": "text"})
    return echo


def render_response(
    result: ChatResult, ctx: StreamContext, envelope: ResponsesEnvelope | None = None
) -> dict[str, Any]:
    """A whole answer as a Response object."""
    envelope = envelope or default_envelope(ctx.request)
    output = output_items(
        result, ctx.response_id, envelope, encrypted_reasoning=envelope.include_encrypted_reasoning
    )
    return response_object(
        ctx,
        envelope,
        status=status_for(result.finish_reason),
        output=output,
        usage=result.usage,
        finish_reason=result.finish_reason,
        completed_at=ctx.created,
    )


# --------------------------------------------------------------------------- errors


def error_body(error: OneplanError) -> dict[str, Any]:
    """The OpenAI error body every OpenAI client (and Codex) reads."""
    return openai_error_body(error)


def response_error(error: OneplanError) -> dict[str, Any]:
    """``response.error`` of a failed Response. Its ``code`` is one of the API's own codes:
    Codex retries ``rate_limit_exceeded`` after the "try again in Ns" in the message, and
    gives up at once on ``insufficient_quota`` (a plan window that frees up in hours)."""
    message = error.message
    if refusals.exhausted(error):
        code = "insufficient_quota"
    elif isinstance(error, QuotaExceeded | UpstreamRateLimited):
        code = "rate_limit_exceeded"
        retry = error.headers.get("retry-after")
        if retry and "try again in" not in message.lower():
            message = f"{message} Please try again in {retry}s."
    elif isinstance(error, InvalidRequest):
        code = "invalid_prompt"
    else:
        code = "server_error"
    return {"code": code, "message": message, "type": error.kind, "param": error.param}
