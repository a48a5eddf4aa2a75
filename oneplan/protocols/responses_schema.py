"""The types of an OpenAI Responses request (``/v1/responses``), as the API reference documents
them.

Only what oneplan reads is declared; ``responses_parse`` and ``responses_options`` decide what
is required and what each value means. Input items are chosen by ``type`` (a typeless item is a
message); the many ``*_call`` / ``*_call_output`` items share one declaration, since oneplan
reads only their ``call_id``, ``name`` and ``output``.
"""

from __future__ import annotations

from typing import Any, Literal

from oneplan.protocols.validation import (
    MAX_TOOLS,
    Id,
    JsonObject,
    Lenient,
    Name,
    Number,
    items,
    one_of,
    tagged,
    validator,
)


class TextPart(Lenient):
    type: str
    text: str | None = None


class RefusalPart(Lenient):
    type: Literal["refusal"]
    refusal: str | None = None


class ImagePart(Lenient):
    type: Literal["input_image"]
    image_url: str | None = None
    detail: str | None = None


class OtherPart(Lenient):
    type: str | None = None


_TEXTS = ("input_text", "output_text", "text", "summary_text", "reasoning_text")
Part = tagged(
    "type", {**dict.fromkeys(_TEXTS, TextPart), "refusal": RefusalPart, "input_image": ImagePart}, OtherPart
)
Parts = items(Part)


class MessageItem(Lenient):
    type: Literal["message"] | None = None
    role: Literal["user", "assistant", "system", "developer"]
    content: one_of("a string or a list of content parts", string=str, array=Parts)  # type: ignore[valid-type]


class ReasoningItem(Lenient):
    type: Literal["reasoning"]
    encrypted_content: str | None = None
    summary: items(Any) | None = None  # type: ignore[valid-type]
    content: items(Any) | None = None  # type: ignore[valid-type]


class FunctionCallItem(Lenient):
    type: Literal["function_call", "custom_tool_call"]
    name: Name | None = None
    namespace: Name | None = None
    call_id: Id | None = None
    id: Id | None = None


class ItemReference(Lenient):
    type: Literal["item_reference"]
    id: Id | None = None


class OtherItem(Lenient):
    """``function_call_output``, ``custom_tool_call_output``, ``local_shell_call``,
    ``web_search_call``...: oneplan reads only these."""

    type: str | None = None
    call_id: Id | None = None
    id: Id | None = None
    output: one_of("a string or a list of content parts", string=str, array=Parts, object=JsonObject) | None = None  # type: ignore[valid-type]


Item = tagged(
    "type",
    {
        "message": MessageItem,
        "reasoning": ReasoningItem,
        "function_call": FunctionCallItem,
        "custom_tool_call": FunctionCallItem,
        "item_reference": ItemReference,
    },
    OtherItem,
    absent="message",
)


class Grammar(Lenient):
    type: str | None = None
    syntax: str | None = None
    definition: str | None = None


class FunctionTool(Lenient):
    type: Literal["function", "custom"]
    name: Name | None = None
    description: str | None = None
    parameters: JsonObject | None = None
    strict: bool | None = None
    format: Grammar | None = None


class HostedTool(Lenient):
    type: str


InnerTool = tagged("type", {"function": FunctionTool, "custom": FunctionTool}, HostedTool)


class NamespaceTool(Lenient):
    type: Literal["namespace"]
    name: Name
    description: str | None = None
    tools: items(InnerTool, MAX_TOOLS) | None = None  # type: ignore[valid-type]


Tool = tagged("type", {"function": FunctionTool, "custom": FunctionTool, "namespace": NamespaceTool}, HostedTool)


class AllowedTool(Lenient):
    name: Name | None = None
    namespace: Name | None = None


class ToolChoice(Lenient):
    type: str | None = None
    name: Name | None = None
    mode: str | None = None
    tools: items(AllowedTool, MAX_TOOLS) | None = None  # type: ignore[valid-type]


class TextFormat(Lenient):
    """``text.format``; its ``schema`` is the parser's to check."""

    type: str | None = None
    name: Name | None = None
    strict: bool | None = None
    description: str | None = None


class TextConfig(Lenient):
    format: TextFormat | None = None
    verbosity: str | None = None


class Reasoning(Lenient):
    effort: str | None = None
    summary: str | None = None


class ResponsesRequest(Lenient):
    model: Name | None = None
    input: one_of("a string or a list of items", string=str, array=items(Item)) | None = None  # type: ignore[valid-type]
    instructions: str | None = None
    previous_response_id: Id | None = None
    store: bool | None = None
    stream: bool | None = None
    metadata: JsonObject | None = None
    tools: items(Tool, MAX_TOOLS) | None = None  # type: ignore[valid-type]
    tool_choice: one_of("a string or an object", string=str, object=ToolChoice) | None = None  # type: ignore[valid-type]
    parallel_tool_calls: bool | None = None
    max_output_tokens: int | None = None
    temperature: Number | None = None
    top_p: Number | None = None
    text: TextConfig | None = None
    reasoning: Reasoning | None = None
    include: items(str, 64) | None = None  # type: ignore[valid-type]
    truncation: str | None = None
    user: Id | None = None
    prompt_cache_key: Id | None = None
    service_tier: str | None = None


check = validator(ResponsesRequest)
