"""The types of an OpenAI Chat Completions request, as the API reference documents them.

Only what oneplan reads or forwards is declared; everything else a client sends is accepted
unread (see ``validation``). Content parts ``text``, ``image_url`` and ``refusal`` are read;
other part types (``input_audio``, ``file``, a vLLM ``video_url``...) must still say their
type, and are left to the provider.
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
class TextPart(TypedDict, total=False):
    type: Required[Literal["text"]]
    text: Required[str]


@lenient
class ImageUrl(TypedDict, total=False):
    url: Required[str]
    detail: str | None


@lenient
class ImagePart(TypedDict, total=False):
    type: Required[Literal["image_url"]]
    image_url: Required[one_of("an object with a url", object=ImageUrl, string=str)]  # type: ignore[valid-type]


@lenient
class RefusalPart(TypedDict, total=False):
    type: Required[Literal["refusal"]]
    refusal: Required[str]


@lenient
class OtherPart(TypedDict, total=False):
    type: Required[str]  # input_audio, file, or what an OpenAI-compatible upstream knows


Part = tagged("type", {"text": TextPart, "image_url": ImagePart, "refusal": RefusalPart}, OtherPart)
Content = one_of("a string or an array of content parts", string=str, array=items(Part))


@lenient
class CalledFunction(TypedDict, total=False):
    name: Name | None
    arguments: str | None


@lenient
class ToolCall(TypedDict, total=False):
    id: Id | None
    type: str | None
    function: CalledFunction | None


@lenient
class Message(TypedDict, total=False):
    role: Required[Literal["system", "user", "assistant", "tool", "developer"]]
    content: Content | None  # type: ignore[valid-type]
    name: Name | None
    tool_call_id: Id | None
    tool_calls: items(ToolCall) | None  # type: ignore[valid-type]
    reasoning_content: str | None


@lenient
class Function(TypedDict, total=False):
    name: Name | None
    description: str | None
    parameters: JsonObject | None
    strict: bool | None


@lenient
class Tool(TypedDict, total=False):
    type: str | None
    function: Function | None


@lenient
class NamedFunction(TypedDict, total=False):
    name: Name | None


@lenient
class ToolChoice(TypedDict, total=False):
    type: str | None
    function: NamedFunction | None


@lenient
class ResponseFormat(TypedDict, total=False):
    type: str | None
    json_schema: JsonObject | None


@lenient
class StreamOptions(TypedDict, total=False):
    include_usage: bool | None


@lenient
class ThinkingSpec(TypedDict, total=False):
    type: str | None
    budget_tokens: int | None


@lenient
class ChatCompletionRequest(TypedDict, total=False):
    model: Name | None
    messages: items(Message) | None  # type: ignore[valid-type]
    stream: bool | None
    stream_options: StreamOptions | None
    n: int | None
    max_tokens: int | None
    max_completion_tokens: int | None
    temperature: Number | None
    top_p: Number | None
    presence_penalty: Number | None
    frequency_penalty: Number | None
    seed: int | None
    stop: one_of("a string or an array of strings", string=str, array=items(str, MAX_STOPS)) | None  # type: ignore[valid-type]
    tools: items(Tool, MAX_TOOLS) | None  # type: ignore[valid-type]
    tool_choice: one_of("a string or an object", string=str, object=ToolChoice) | None  # type: ignore[valid-type]
    parallel_tool_calls: bool | None
    response_format: ResponseFormat | None
    reasoning_effort: str | None
    thinking: ThinkingSpec | None
    enable_thinking: bool | None
    thinking_budget: int | None
    chat_template_kwargs: JsonObject | None
    user: Id | None


check = validator(ChatCompletionRequest)
