"""The types of an Anthropic Messages request (``/v1/messages``, ``/v1/messages/count_tokens``),
as the API reference documents them.

Only what oneplan reads is declared; the parser (``parse``) decides what is required
and which values it accepts, and may now trust every type it reads. Content blocks: ``text``,
``image``, ``document``, ``tool_use``, ``tool_result``, ``thinking``, ``redacted_thinking``;
any other block type is the parser's to refuse by name.
"""

from __future__ import annotations

from typing import Literal, Required

from typing_extensions import TypedDict  # pydantic needs this one before Python 3.12

from oneplan.protocols.validation import (
    MAX_STOPS,
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
class TextBlock(TypedDict, total=False):
    type: Required[Literal["text"]]
    text: Required[str]
    cache_control: JsonObject | None


@lenient
class Source(TypedDict, total=False):
    type: str | None
    media_type: str | None
    data: str | None
    url: str | None


@lenient
class TextItem(TypedDict, total=False):
    text: str | None


@lenient
class DocumentSource(Source, total=False):
    content: one_of("a string or a list of text blocks", string=str, array=items(TextItem)) | None  # type: ignore[valid-type]


@lenient
class ImageBlock(TypedDict, total=False):
    type: Required[Literal["image"]]
    source: Source | None
    cache_control: JsonObject | None


@lenient
class DocumentBlock(TypedDict, total=False):
    type: Required[Literal["document"]]
    source: DocumentSource | None
    title: str | None
    cache_control: JsonObject | None


@lenient
class ToolUseBlock(TypedDict, total=False):
    type: Required[Literal["tool_use"]]
    id: Required[Id]
    name: Required[Name]
    input: JsonObject | None


@lenient
class ThinkingBlock(TypedDict, total=False):
    type: Required[Literal["thinking"]]
    thinking: Required[str]
    signature: str | None


@lenient
class OtherBlock(TypedDict, total=False):
    type: str | None


_PARTS = {"text": TextBlock, "image": ImageBlock, "document": DocumentBlock}
Part = tagged("type", _PARTS, OtherBlock)


@lenient
class ToolResultBlock(TypedDict, total=False):
    type: Required[Literal["tool_result"]]
    tool_use_id: Required[Id]
    content: one_of("a string or a list of content blocks", string=str, array=items(Part)) | None  # type: ignore[valid-type]
    is_error: bool | None
    cache_control: JsonObject | None


Block = tagged(
    "type",
    {**_PARTS, "tool_use": ToolUseBlock, "tool_result": ToolResultBlock, "thinking": ThinkingBlock},
    OtherBlock,
)
Content = one_of("a string or a list of content blocks", string=str, array=items(Block))


@lenient
class Message(TypedDict, total=False):
    role: Required[Literal["user", "assistant", "system"]]
    content: Required[Content]  # type: ignore[valid-type]


@lenient
class Tool(TypedDict, total=False):
    type: str | None
    name: Name | None
    description: str | None
    input_schema: JsonObject | None
    cache_control: JsonObject | None


@lenient
class ToolChoice(TypedDict, total=False):
    type: str | None
    name: Name | None
    disable_parallel_tool_use: bool | None


@lenient
class ThinkingConfig(TypedDict, total=False):
    type: str | None
    budget_tokens: int | None


@lenient
class OutputConfig(TypedDict, total=False):
    effort: str | None
    format: JsonObject | None


@lenient
class Metadata(TypedDict, total=False):
    user_id: Id | None


System = one_of("a string or a list of text blocks", string=str, array=items(Part))


@lenient
class MessagesRequest(TypedDict, total=False):
    model: Name | None
    max_tokens: int | None
    messages: items(Message) | None  # type: ignore[valid-type]
    system: System | None  # type: ignore[valid-type]
    tools: items(Tool, MAX_TOOLS) | None  # type: ignore[valid-type]
    tool_choice: ToolChoice | None
    stop_sequences: items(str, MAX_STOPS) | None  # type: ignore[valid-type]
    stream: bool | None
    temperature: Number | None
    top_p: Number | None
    top_k: int | None
    thinking: ThinkingConfig | None
    output_config: OutputConfig | None
    output_format: JsonObject | None
    metadata: Metadata | None


check = validator(MessagesRequest)
