"""The types of an OpenAI Chat Completions request, as the API reference documents them.

Only what oneplan reads or forwards is declared; everything else a client sends is accepted
unread (see ``validation``). Content parts: ``text``, ``image_url``, ``input_audio``, ``file``,
``refusal``; other part types are left to the provider.
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


class TextPart(Lenient):
    type: Literal["text"]
    text: str


class ImageUrl(Lenient):
    url: str
    detail: str | None = None


class ImagePart(Lenient):
    type: Literal["image_url"]
    image_url: one_of("an object with a url", object=ImageUrl, string=str)  # type: ignore[valid-type]


class RefusalPart(Lenient):
    type: Literal["refusal"]
    refusal: str


class OtherPart(Lenient):
    type: Literal["text", "image_url", "refusal", "input_audio", "file"]


Part = tagged("type", {"text": TextPart, "image_url": ImagePart, "refusal": RefusalPart}, OtherPart)
Content = one_of("a string or an array of content parts", string=str, array=items(Part))


class CalledFunction(Lenient):
    name: Name | None = None
    arguments: str | None = None


class ToolCall(Lenient):
    id: Id | None = None
    type: str | None = None
    function: CalledFunction | None = None


class Message(Lenient):
    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: Content | None = None  # type: ignore[valid-type]
    name: Name | None = None
    tool_call_id: Id | None = None
    tool_calls: items(ToolCall) | None = None  # type: ignore[valid-type]
    reasoning_content: str | None = None


class Function(Lenient):
    name: Name | None = None
    description: str | None = None
    parameters: JsonObject | None = None
    strict: bool | None = None


class Tool(Lenient):
    type: str | None = None
    function: Function | None = None


class NamedFunction(Lenient):
    name: Name | None = None


class ToolChoice(Lenient):
    type: str | None = None
    function: NamedFunction | None = None


class ResponseFormat(Lenient):
    type: str | None = None
    json_schema: JsonObject | None = None


class StreamOptions(Lenient):
    include_usage: bool | None = None


class ThinkingSpec(Lenient):
    type: str | None = None
    budget_tokens: int | None = None


class ChatCompletionRequest(Lenient):
    model: Name | None = None
    messages: items(Message) | None = None  # type: ignore[valid-type]
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    n: int | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    temperature: Number | None = None
    top_p: Number | None = None
    presence_penalty: Number | None = None
    frequency_penalty: Number | None = None
    seed: int | None = None
    stop: one_of("a string or an array of strings", string=str, array=items(str, MAX_STOPS)) | None = None  # type: ignore[valid-type]
    tools: items(Tool, MAX_TOOLS) | None = None  # type: ignore[valid-type]
    tool_choice: one_of("a string or an object", string=str, object=ToolChoice) | None = None  # type: ignore[valid-type]
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    reasoning_effort: str | None = None
    thinking: ThinkingSpec | None = None
    enable_thinking: bool | None = None
    thinking_budget: int | None = None
    chat_template_kwargs: JsonObject | None = None
    user: Id | None = None


check = validator(ChatCompletionRequest)
