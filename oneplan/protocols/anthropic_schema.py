"""The types of an Anthropic Messages request (``/v1/messages``, ``/v1/messages/count_tokens``),
as the API reference documents them.

Only what oneplan reads is declared; the parser (``anthropic_parse``) decides what is required
and which values it accepts, and may now trust every type it reads. Content blocks: ``text``,
``image``, ``document``, ``tool_use``, ``tool_result``, ``thinking``, ``redacted_thinking``;
any other block type is the parser's to refuse by name.
"""

from __future__ import annotations

from typing import Literal

from oneplan.protocols.validation import (
    MAX_STOPS,
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


class TextBlock(Lenient):
    type: Literal["text"]
    text: str
    cache_control: JsonObject | None = None


class Source(Lenient):
    type: str | None = None
    media_type: str | None = None
    data: str | None = None
    url: str | None = None


class TextItem(Lenient):
    text: str | None = None


class DocumentSource(Source):
    content: one_of("a string or a list of text blocks", string=str, array=items(TextItem)) | None = None  # type: ignore[valid-type]


class ImageBlock(Lenient):
    type: Literal["image"]
    source: Source | None = None
    cache_control: JsonObject | None = None


class DocumentBlock(Lenient):
    type: Literal["document"]
    source: DocumentSource | None = None
    title: str | None = None
    cache_control: JsonObject | None = None


class ToolUseBlock(Lenient):
    type: Literal["tool_use"]
    id: Id
    name: Name
    input: JsonObject | None = None


class ThinkingBlock(Lenient):
    type: Literal["thinking"]
    thinking: str
    signature: str | None = None


class OtherBlock(Lenient):
    type: str | None = None


_PARTS = {"text": TextBlock, "image": ImageBlock, "document": DocumentBlock}
Part = tagged("type", _PARTS, OtherBlock)


class ToolResultBlock(Lenient):
    type: Literal["tool_result"]
    tool_use_id: Id
    content: one_of("a string or a list of content blocks", string=str, array=items(Part)) | None = None  # type: ignore[valid-type]
    is_error: bool | None = None
    cache_control: JsonObject | None = None


Block = tagged(
    "type",
    {**_PARTS, "tool_use": ToolUseBlock, "tool_result": ToolResultBlock, "thinking": ThinkingBlock},
    OtherBlock,
)
Content = one_of("a string or a list of content blocks", string=str, array=items(Block))


class Message(Lenient):
    role: Literal["user", "assistant", "system"]
    content: Content  # type: ignore[valid-type]


class Tool(Lenient):
    type: str | None = None
    name: Name | None = None
    description: str | None = None
    input_schema: JsonObject | None = None
    cache_control: JsonObject | None = None


class ToolChoice(Lenient):
    type: str | None = None
    name: Name | None = None
    disable_parallel_tool_use: bool | None = None


class ThinkingConfig(Lenient):
    type: str | None = None
    budget_tokens: int | None = None


class OutputConfig(Lenient):
    effort: str | None = None
    format: JsonObject | None = None


class Metadata(Lenient):
    user_id: Id | None = None


System = one_of("a string or a list of text blocks", string=str, array=items(Part))


class MessagesRequest(Lenient):
    model: Name | None = None
    max_tokens: int | None = None
    messages: items(Message) | None = None  # type: ignore[valid-type]
    system: System | None = None  # type: ignore[valid-type]
    tools: items(Tool, MAX_TOOLS) | None = None  # type: ignore[valid-type]
    tool_choice: ToolChoice | None = None
    stop_sequences: items(str, MAX_STOPS) | None = None  # type: ignore[valid-type]
    stream: bool | None = None
    temperature: Number | None = None
    top_p: Number | None = None
    top_k: int | None = None
    thinking: ThinkingConfig | None = None
    output_config: OutputConfig | None = None
    output_format: JsonObject | None = None
    metadata: Metadata | None = None


check = validator(MessagesRequest)
