"""The canonical form every protocol translates to and every provider consumes.

It is OpenAI Chat Completions, typed, plus what Chat Completions lacks:

* ``ChatRequest.messages`` are Chat Completions message dicts (``Message``). An assistant
  message may carry ``reasoning_content`` (the model's earlier reasoning, which Kimi, GLM and
  MiniMax want back on later turns) and ``reasoning_signature`` (an Anthropic thinking
  signature, kept opaque). Content parts are ``TextPart`` and ``ImagePart``; a part may keep an
  Anthropic ``cache_control`` hint, and so may a tool definition (``Tool``, beside its
  ``function``). A ``tool`` message may carry ``is_error: True``. These are ``TypedDict``s: plain
  dicts at run time (a Chat Completions client's message keeps any other key it sent).
* ``ChatRequest.thinking`` says whether the caller wants reasoning, whatever the inbound protocol
  called it (``reasoning_effort``, ``thinking``, ``reasoning.effort``).
* A streamed answer is a sequence of ``Delta`` values, one per upstream chunk; ``Accumulator``
  folds them into the ``ChatResult`` a non-streamed call returns. Tool-call fragments are
  folded by ``ToolCallFolder``, the one bookkeeping the accumulator and the stream renderers share.

Finish reasons are Chat Completions': ``stop``, ``length``, ``tool_calls``, ``content_filter``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, NotRequired, Required, TypedDict

if TYPE_CHECKING:
    from oneplan.protocols.base import Passthrough

# An Anthropic cache hint, kept as the client sent it: {"type": "ephemeral", "ttl": "1h"}.
CacheControl = dict[str, Any]


class TextPart(TypedDict):
    type: Literal["text"]
    text: str
    cache_control: NotRequired[CacheControl]


class ImageURL(TypedDict):
    url: str  # https://... or data:<media type>;base64,...
    detail: NotRequired[str]


class ImagePart(TypedDict):
    type: Literal["image_url"]
    image_url: ImageURL
    cache_control: NotRequired[CacheControl]


ContentPart = TextPart | ImagePart


class FunctionCall(TypedDict):
    name: str
    arguments: str  # JSON text, exactly as the model produced it


class MessageToolCall(TypedDict):
    """One entry of an assistant message's ``tool_calls``."""

    id: str
    type: Literal["function"]
    function: FunctionCall


class Message(TypedDict, total=False):
    role: Required[Literal["system", "user", "assistant", "tool"]]
    content: str | list[ContentPart] | None
    name: str
    tool_calls: list[MessageToolCall]  # assistant
    tool_call_id: str  # tool
    is_error: bool  # tool: the call failed (Anthropic's ``is_error``)
    reasoning_content: str  # assistant: its earlier reasoning
    reasoning_signature: str  # assistant: an Anthropic thinking signature, opaque


class FunctionSpec(TypedDict, total=False):
    name: Required[str]
    description: str
    parameters: dict[str, Any]  # JSON Schema
    strict: bool


class Tool(TypedDict):
    type: Literal["function"]
    function: FunctionSpec
    cache_control: NotRequired[CacheControl]


@dataclass(slots=True)
class Thinking:
    """What the caller asked of reasoning. ``enabled=None`` leaves it to the provider."""

    enabled: bool | None = None
    budget_tokens: int | None = None
    effort: str | None = None  # "minimal" | "low" | "medium" | "high"
    # Anthropic's ``thinking.display``: "omitted" asks for thinking blocks without their text
    # (the reasoning still happens, is metered and keeps its signature).
    display: str | None = None


@dataclass(slots=True)
class ChatRequest:
    model: str
    messages: list[Message]
    stream: bool = False
    tools: list[Tool] | None = None
    tool_choice: Any = None  # "auto" | "none" | "required" | {"type": "function", ...}
    parallel_tool_calls: bool | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: list[str] | None = None
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    response_format: dict[str, Any] | None = None
    thinking: Thinking = field(default_factory=Thinking)
    include_usage: bool = False  # the *client* asked for usage in the stream
    user: str | None = None
    # Who is asking (the gateway's user id, never the client's ``user`` field): whose cached
    # prompt prefixes a local model may reuse. Not sent upstream.
    tenant: str | None = None
    # Provider-specific parameters the caller sent that have no canonical slot (top_k, ...).
    extra: dict[str, Any] = field(default_factory=dict)
    # The body as the client sent it, in its protocol (set by the protocol's ``accept``). A
    # provider speaking that same protocol forwards it (pass-through, with the protocol's own
    # edits) instead of rebuilding it from the fields above.
    passthrough: Passthrough | None = None


@dataclass(slots=True)
class Usage:
    """Token counts as the provider billed them, in one set of classes for every dialect.

    ``input_tokens`` is the whole prompt: the uncached part, the cache reads
    (``cached_tokens``) and the cache writes (``cache_write_tokens``, of which
    ``cache_write_1h_tokens`` were written with a one-hour lifetime, the rest with five
    minutes). ``output_tokens`` includes ``reasoning_tokens``.

    Dialects report these differently; build a ``Usage`` with ``from_inclusive`` when the
    provider's prompt count already holds the cache counts (OpenAI-style ``prompt_tokens``) and
    with ``from_exclusive`` when it reports them beside it (Anthropic-style ``input_tokens``).
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    cache_write_tokens: int = 0
    cache_write_1h_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def uncached_input_tokens(self) -> int:
        """Input tokens neither read from nor written to the prompt cache."""
        return max(0, self.input_tokens - self.cached_tokens - self.cache_write_tokens)

    @property
    def cache_write_5m_tokens(self) -> int:
        return max(0, self.cache_write_tokens - self.cache_write_1h_tokens)

    @classmethod
    def from_inclusive(
        cls, prompt: int, output: int, *, read: int = 0, write: int = 0, write_1h: int = 0, reasoning: int = 0
    ) -> Usage:
        """A prompt count that includes the cache reads and writes (OpenAI convention). A
        provider whose cache counts exceed its prompt count cannot have included them: they are
        then added, so no class ever goes negative."""
        prompt, read, write = _count(prompt), _count(read), _count(write)
        if read + write > prompt:
            prompt += read + write
        return cls._make(prompt, output, read, write, write_1h, reasoning)

    @classmethod
    def from_exclusive(
        cls, fresh: int, output: int, *, read: int = 0, write: int = 0, write_1h: int = 0, reasoning: int = 0
    ) -> Usage:
        """An uncached count with the cache reads and writes reported beside it (Anthropic)."""
        read, write = _count(read), _count(write)
        return cls._make(_count(fresh) + read + write, output, read, write, write_1h, reasoning)

    @classmethod
    def _make(cls, prompt: int, output: int, read: int, write: int, write_1h: int, reasoning: int) -> Usage:
        write_1h = min(_count(write_1h), write)
        return cls(
            input_tokens=prompt,
            output_tokens=_count(output),
            cached_tokens=read,
            reasoning_tokens=_count(reasoning),
            cache_write_tokens=write,
            cache_write_1h_tokens=write_1h,
        )


def text_of(content: Any, sep: str = "") -> str:
    """A message's text: its string, or its parts' texts joined with ``sep``."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return sep.join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def _count(value: Any) -> int:
    """A token count from a wire value: integers (and integral floats) as they are, anything
    else (missing, null, text, negative) as 0."""
    if type(value) is int:  # the usual case, first
        return value if value > 0 else 0
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return max(0, value)
    if isinstance(value, float) and value.is_integer():
        return max(0, int(value))
    return 0


@dataclass(slots=True)
class ToolCallDelta:
    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(slots=True)
class Delta:
    """One upstream chunk's worth of answer. Any field may be absent."""

    text: str | None = None
    reasoning: str | None = None
    reasoning_signature: str | None = None
    tool_calls: list[ToolCallDelta] | None = None
    finish_reason: str | None = None
    usage: Usage | None = None
    # More deltas are already at hand (the same network read brought them): a renderer may
    # hold this one's output and send them together, one write instead of many.
    more: bool = False


@dataclass(slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text, exactly as the model produced it


@dataclass(slots=True)
class ChatResult:
    id: str
    model: str
    created: int
    text: str | None = None
    reasoning: str | None = None
    reasoning_signature: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish_reason: str = "stop"
    usage: Usage = field(default_factory=Usage)


class CallSlot:
    """One tool call as folded so far from its fragments."""

    __slots__ = ("announced", "id", "index", "name", "parts")

    def __init__(self, index: int) -> None:
        self.index = index
        self.id: str | None = None
        self.name: str | None = None
        self.parts: list[str] = []  # the arguments so far, as they came
        self.announced = False  # the name is known, and ``ToolCallFolder.add`` said so

    @property
    def arguments(self) -> str:
        return "".join(self.parts)


class ToolCallFolder:
    """Folds streamed ``ToolCallDelta`` fragments into calls, one slot per index.

    The first id and the first name a call gets are its own; its arguments are every fragment's,
    in order. A call is *announced* once its name is known: ``add`` tells which fragment did it,
    so a stream renderer opens the call right then, with the arguments that came before the
    name, and passes later arguments straight on. Calls whose name never came are ``unnamed``.
    """

    __slots__ = ("_slots",)

    def __init__(self) -> None:
        self._slots: dict[int, CallSlot] = {}

    def add(self, fragment: ToolCallDelta) -> tuple[CallSlot, bool]:
        """Fold one fragment into its call; the flag is whether this fragment announced it."""
        slot = self._slots.get(fragment.index)
        if slot is None:
            slot = self._slots[fragment.index] = CallSlot(fragment.index)
        if fragment.id and not slot.id:
            slot.id = fragment.id
        if fragment.name and not slot.name:
            slot.name = fragment.name
        if fragment.arguments:
            slot.parts.append(fragment.arguments)
        if slot.announced or not slot.name:
            return slot, False
        slot.announced = True
        return slot, True

    def unnamed(self) -> list[CallSlot]:
        """The calls still waiting for a name, in the order their first fragments came."""
        return [slot for slot in self._slots.values() if not slot.announced]

    def calls(self) -> list[ToolCall]:
        """Every call, by index; a call without an id gets ``call_<index>``."""
        return [
            ToolCall(id=slot.id or f"call_{index}", name=slot.name or "", arguments=slot.arguments)
            for index, slot in sorted(self._slots.items())
        ]

    def clear(self) -> None:
        """Forget every call: a later fragment starts a new one, whatever its index."""
        self._slots = {}


class Accumulator:
    """Folds a ``Delta`` stream into a ``ChatResult``; also the place streams are metered."""

    __slots__ = ("_calls", "_reasoning", "_text", "finish_reason", "signature", "usage")

    def __init__(self) -> None:
        self._text: list[str] = []
        self._reasoning: list[str] = []
        self.signature: str | None = None
        self._calls = ToolCallFolder()
        self.finish_reason: str | None = None
        self.usage: Usage | None = None

    def add(self, delta: Delta) -> None:
        if delta.text:
            self._text.append(delta.text)
        if delta.reasoning:
            self._reasoning.append(delta.reasoning)
        if delta.reasoning_signature:
            self.signature = delta.reasoning_signature
        if delta.tool_calls:
            for tc in delta.tool_calls:
                self._calls.add(tc)
        if delta.finish_reason:
            self.finish_reason = delta.finish_reason
        if delta.usage is not None:
            self.usage = delta.usage

    @property
    def text(self) -> str:
        return "".join(self._text)

    @property
    def reasoning(self) -> str:
        return "".join(self._reasoning)

    @property
    def tool_calls(self) -> list[ToolCall]:
        return self._calls.calls()

    def result(self, *, id: str, model: str, created: int) -> ChatResult:
        calls = self.tool_calls
        finish = self.finish_reason or ("tool_calls" if calls else "stop")
        return ChatResult(
            id=id,
            model=model,
            created=created,
            text=self.text or None,
            reasoning=self.reasoning or None,
            reasoning_signature=self.signature,
            tool_calls=calls,
            finish_reason=finish,
            usage=self.usage or Usage(),
        )
