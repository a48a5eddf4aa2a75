"""The types of an OpenAI Responses request (``/v1/responses``), as the API reference documents
them.

Only what oneplan reads is declared; ``parse`` and ``options`` decide what
is required and what each value means. Input items are chosen by ``type`` (a typeless item is a
message); the many ``*_call`` / ``*_call_output`` items share one declaration, since oneplan
reads only their ``call_id``, ``name`` and ``output``.
"""

from __future__ import annotations

from typing import Any, Literal, Required

from typing_extensions import TypedDict  # pydantic needs this one before Python 3.12

from oneplan.protocols.validation import (
    MAX_TOOLS,
    Id,
    JsonObject,
    Name,
    Number,
    items,
    lenient,
    one_of,
    tagged,
    validator,
)


@lenient
class TextPart(TypedDict, total=False):
    type: Required[str]
    text: str | None


@lenient
class RefusalPart(TypedDict, total=False):
    type: Required[Literal["refusal"]]
    refusal: str | None


@lenient
class ImagePart(TypedDict, total=False):
    type: Required[Literal["input_image"]]
    image_url: str | None
    detail: str | None


@lenient
class OtherPart(TypedDict, total=False):
    type: str | None


_TEXTS = ("input_text", "output_text", "text", "summary_text", "reasoning_text")
Part = tagged(
    "type", {**dict.fromkeys(_TEXTS, TextPart), "refusal": RefusalPart, "input_image": ImagePart}, OtherPart
)
Parts = items(Part)


@lenient
class MessageItem(TypedDict, total=False):
    type: Literal["message"] | None
    role: Required[Literal["user", "assistant", "system", "developer"]]
    content: Required[one_of("a string or a list of content parts", string=str, array=Parts)]  # type: ignore[valid-type]


@lenient
class ReasoningItem(TypedDict, total=False):
    type: Required[Literal["reasoning"]]
    encrypted_content: str | None
    summary: items(Any) | None  # type: ignore[valid-type]
    content: items(Any) | None  # type: ignore[valid-type]


@lenient
class FunctionCallItem(TypedDict, total=False):
    type: Required[Literal["function_call", "custom_tool_call"]]
    name: Name | None
    namespace: Name | None
    call_id: Id | None
    id: Id | None


@lenient
class ItemReference(TypedDict, total=False):
    type: Required[Literal["item_reference"]]
    id: Id | None


@lenient
class OtherItem(TypedDict, total=False):
    """``function_call_output``, ``custom_tool_call_output``, ``local_shell_call``,
    ``web_search_call``...: oneplan reads only these."""

    type: str | None
    call_id: Id | None
    id: Id | None
    output: one_of("a string or a list of content parts", string=str, array=Parts, object=JsonObject) | None  # type: ignore[valid-type]


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


@lenient
class Grammar(TypedDict, total=False):
    type: str | None
    syntax: str | None
    definition: str | None


@lenient
class FunctionTool(TypedDict, total=False):
    type: Required[Literal["function", "custom"]]
    name: Name | None
    description: str | None
    parameters: JsonObject | None
    strict: bool | None
    format: Grammar | None


@lenient
class HostedTool(TypedDict, total=False):
    type: Required[str]


InnerTool = tagged("type", {"function": FunctionTool, "custom": FunctionTool}, HostedTool)


@lenient
class NamespaceTool(TypedDict, total=False):
    type: Required[Literal["namespace"]]
    name: Required[Name]
    description: str | None
    tools: items(InnerTool, MAX_TOOLS) | None  # type: ignore[valid-type]


Tool = tagged("type", {"function": FunctionTool, "custom": FunctionTool, "namespace": NamespaceTool}, HostedTool)


@lenient
class AllowedTool(TypedDict, total=False):
    name: Name | None
    namespace: Name | None


@lenient
class ToolChoice(TypedDict, total=False):
    type: str | None
    name: Name | None
    mode: str | None
    tools: items(AllowedTool, MAX_TOOLS) | None  # type: ignore[valid-type]


@lenient
class TextFormat(TypedDict, total=False):
    """``text.format``; its ``schema`` is the parser's to check."""

    type: str | None
    name: Name | None
    strict: bool | None
    description: str | None


@lenient
class TextConfig(TypedDict, total=False):
    format: TextFormat | None
    verbosity: str | None


@lenient
class Reasoning(TypedDict, total=False):
    effort: str | None
    summary: str | None


@lenient
class ResponsesRequest(TypedDict, total=False):
    model: Name | None
    input: one_of("a string or a list of items", string=str, array=items(Item)) | None  # type: ignore[valid-type]
    instructions: str | None
    previous_response_id: Id | None
    store: bool | None
    stream: bool | None
    metadata: JsonObject | None
    tools: items(Tool, MAX_TOOLS) | None  # type: ignore[valid-type]
    tool_choice: one_of("a string or an object", string=str, object=ToolChoice) | None  # type: ignore[valid-type]
    parallel_tool_calls: bool | None
    max_output_tokens: int | None
    temperature: Number | None
    top_p: Number | None
    text: TextConfig | None
    reasoning: Reasoning | None
    include: items(str, 64) | None  # type: ignore[valid-type]
    truncation: str | None
    user: Id | None
    prompt_cache_key: Id | None
    service_tier: str | None


check = validator(ResponsesRequest)
