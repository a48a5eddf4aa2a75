"""The contract between the server and a wire protocol. The server knows protocols only through it.

A protocol is one subpackage of ``oneplan.protocols`` exposing one ``Protocol`` instance named
``PROTOCOL``, listed in ``registry.PROTOCOLS``. The instance owns everything protocol-specific:

* its name, and the HTTP ``endpoints`` it answers (paths, methods, what each one serves);
* ``prefixes``: the paths whose failures are answered in its error body (``error_body``);
* ``id_prefix``: how its response ids begin;
* ``api_key``: where its clients put their key;
* ``accept``: one request read into a ``Turn`` - the canonical ``ChatRequest`` beside an
  immutable ``Passthrough`` of the body as sent - and the turn renders the answer;
* the pass-through edits (``with_output_limit``): what a same-protocol upstream is sent when
  the gateway changes the request;
* optionally, stored state (``stores_state``; Responses' ``previous_response_id``): the turn
  says which stored conversation it continues and what to keep, the server does the storing;
* ``codec``: its outbound direction, when an upstream can speak it (``Codec``);
* ``quota_headers``: rate-limit headers its clients read, beside the ones every client gets
  (``refusals.quota_headers``).

Everything here is pure: no I/O.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

from oneplan.errors import NotFound, OneplanError
from oneplan.protocols.canonical import ChatRequest, ChatResult, Delta

if TYPE_CHECKING:
    from oneplan.metering.windows import WindowState


@dataclass(slots=True)
class StreamContext:
    """What a renderer knows when a stream opens."""

    response_id: str  # e.g. "chatcmpl-…", "msg_…", "resp_…"
    model: str  # the model name to show the client
    created: int  # unix seconds
    include_usage: bool = False  # the client asked to see usage
    input_tokens_estimate: int = 0  # for protocols that announce input tokens up front
    request: ChatRequest | None = None


class StreamRenderer(ABC):
    """An incremental state machine: canonical deltas in, wire bytes (SSE frames) out."""

    @abstractmethod
    def start(self) -> bytes:
        """Frames to send before the first delta (may be empty)."""

    @abstractmethod
    def feed(self, delta: Delta) -> bytes:
        """Frames for one delta (may be empty)."""

    @abstractmethod
    def finish(self) -> bytes:
        """Closing frames after the last delta."""

    @abstractmethod
    def fail(self, error: OneplanError) -> bytes:
        """Frames that end the stream with an error, in the protocol's own shape."""

    def ping(self) -> bytes:
        """A keep-alive frame while the upstream is silent."""
        return b": ping\n\n"


# -- the outbound direction -----------------------------------------------------------------


class UpstreamParser(ABC):
    """An upstream's stream, one decoded SSE event at a time, as canonical deltas."""

    __slots__ = ()

    @abstractmethod
    def feed(self, event: dict[str, Any]) -> list[Delta]:
        """The deltas one event holds (often none)."""


class Codec(ABC):
    """A protocol spoken to an upstream: the canonical request out, answers back."""

    __slots__ = ()

    @abstractmethod
    def encode(self, request: ChatRequest, upstream_model: str) -> dict[str, Any]:
        """The canonical request as this protocol's request body (``stream`` left unset)."""

    @abstractmethod
    def decode(self, body: dict[str, Any]) -> ChatResult:
        """A whole answer in this protocol, as canonical."""

    @abstractmethod
    def stream_parser(self) -> UpstreamParser:
        """A fresh incremental parser for one streamed answer."""


# -- the inbound direction ------------------------------------------------------------------


class Serves(StrEnum):
    """What an endpoint does; the server has one handler for each."""

    CHAT = "chat"  # one request through the pipeline
    COUNT_TOKENS = "count_tokens"  # ``Protocol.count_tokens_body``
    STORED = "stored"  # GET / DELETE one stored response (``stores_state``)


@dataclass(frozen=True, slots=True)
class Endpoint:
    path: str  # Starlette syntax; a parameter reaches ``accept`` as ``params``
    methods: tuple[str, ...] = ("POST",)
    serves: Serves = Serves.CHAT


class Passthrough(NamedTuple):
    """A request's body as the client sent it, in its protocol: what an upstream speaking that
    same protocol is sent instead of a body rebuilt from the canonical form. Immutable: an edit
    makes a new value (and a new top-level dict, the nested values shared)."""

    protocol: Protocol
    body: Mapping[str, Any]

    def capped(self, cap: int) -> Passthrough:
        """Held to a model's output limit (only where the body asks for an output size)."""
        return self.protocol.cap_output(self, cap)

    def with_output_limit(self, tokens: int) -> Passthrough:
        """Asking for at most ``tokens`` of output (a plan's room lowered it)."""
        return self.protocol.with_output_limit(self, tokens)

    def replace(self, **fields: Any) -> Passthrough:
        return Passthrough(self.protocol, {**self.body, **fields})

    def for_upstream(self, model: str, *, stream: bool) -> dict[str, Any]:
        """The body to send: the upstream's model name, and the stream flag the call needs."""
        body = dict(self.body)
        body["model"] = model
        body["stream"] = stream
        return body


class Turn:
    """One request as its protocol read it: the canonical request (which carries its
    ``Passthrough``) and how to answer it. Stateless protocols use this class as it is; one
    with per-request state (echoes, stored conversations) subclasses it."""

    __slots__ = ("protocol", "request")

    def __init__(self, protocol: Protocol, request: ChatRequest) -> None:
        self.protocol = protocol
        self.request = request

    def render(self, result: ChatResult, ctx: StreamContext) -> dict[str, Any]:
        return self.protocol.render(result, ctx)

    def renderer(self, ctx: StreamContext) -> StreamRenderer:
        return self.protocol.renderer(ctx)

    # -- stored state (protocols with ``stores_state``) ----------------------------------

    @property
    def continues(self) -> str | None:
        """The id of the stored conversation this request continues, if any."""
        return None

    def missing(self) -> OneplanError:
        """The error for a ``continues`` id that is not stored (or not the caller's)."""
        return NotFound("The conversation this request continues was not found.")

    def resume(self, history: list[dict[str, Any]]) -> None:
        """Continue the stored conversation ``history`` (its items, as ``stored`` kept them)."""

    def keep(self, allowed: bool) -> None:
        """Whether the server may store this turn (the operator's retention allows it)."""

    @property
    def stores(self) -> bool:
        """Whether the answer is to be stored (``stored`` is then called once it is whole)."""
        return False

    def stored(self, result: ChatResult, ctx: StreamContext) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """What to keep of this turn: the response body, and the whole conversation so far."""
        raise NotImplementedError


Tokenizer = Callable[[str], int]


class Protocol(ABC):
    name: ClassVar[str]  # "openai_chat" | "anthropic" | "responses"
    endpoints: ClassVar[tuple[Endpoint, ...]] = ()
    # Paths (the path itself, or below it) whose failures speak this protocol; the registry's
    # first protocol answers every other path.
    prefixes: ClassVar[tuple[str, ...]] = ()
    id_prefix: ClassVar[str] = "req-"
    # ``[providers.X] dialect = "..."`` for an upstream that speaks this protocol (None: none can).
    dialect: ClassVar[str | None] = None
    codec: ClassVar[Codec | None] = None
    # The body key a pass-through body asks for output with (None: not passed through).
    output_field: ClassVar[str | None] = None
    # Seconds of upstream silence after which a stream gets a keep-alive; None for none.
    ping_interval: ClassVar[float | None] = None
    stores_state: ClassVar[bool] = False

    @abstractmethod
    def parse(self, body: Any) -> ChatRequest:
        """Validate a decoded JSON body; raise ``InvalidRequest`` with a clear message."""

    @abstractmethod
    def render(self, result: ChatResult, ctx: StreamContext) -> dict[str, Any]:
        """A whole (non-streamed) answer as the protocol's response body."""

    @abstractmethod
    def renderer(self, ctx: StreamContext) -> StreamRenderer:
        """A fresh stream renderer."""

    @abstractmethod
    def error_body(self, error: OneplanError) -> dict[str, Any]:
        """The protocol's error body for ``error`` (status and headers come from the error)."""

    def accept(self, body: Any, params: Mapping[str, str] | None = None) -> Turn:
        """One request: parsed, with its pass-through. ``params``: the endpoint path's."""
        request = self.parse(body)
        request.passthrough = Passthrough(self, body)
        return Turn(self, request)

    def api_key(self, headers: Mapping[str, str]) -> str | None:
        """The caller's key, from the request headers."""
        return bearer_key(headers)

    def quota_headers(self, states: Sequence[WindowState], tightest: WindowState | None, now: float) -> dict[str, str]:
        """The protocol's own quota headers, added to every client's (``refusals.quota_headers``):
        ``states`` are the caller's windows, ``tightest`` the request window with the least left
        (None if there is none), ``now`` dates them. None by default."""
        return {}

    # -- pass-through edits --------------------------------------------------------------

    def cap_output(self, passthrough: Passthrough, cap: int) -> Passthrough:
        field = self.output_field
        if field and field in passthrough.body:
            return passthrough.replace(**{field: cap})
        return passthrough

    def with_output_limit(self, passthrough: Passthrough, tokens: int) -> Passthrough:
        field = self.output_field
        return passthrough.replace(**{field: tokens}) if field else passthrough

    # -- extra endpoints -----------------------------------------------------------------

    def count_tokens_body(self, body: Any, tokenizer_for: Callable[[str], Tokenizer | None]) -> dict[str, Any]:
        """A ``Serves.COUNT_TOKENS`` answer; ``tokenizer_for(model)`` resolves the model (and
        raises the gateway's refusal if the caller may not use it)."""
        raise NotImplementedError

    def stored_missing(self, response_id: str) -> OneplanError:
        """``Serves.STORED``: the error for an id not stored (or not the caller's)."""
        return NotFound(f"'{response_id}' not found.")

    def stored_deleted(self, response_id: str) -> dict[str, Any]:
        """``Serves.STORED``: the answer to a DELETE that removed ``response_id``."""
        return {"id": response_id, "deleted": True}


def thinking_below(body: dict[str, Any], tokens: int) -> dict[str, Any]:
    """``body`` (a fresh dict, edited in place) with an Anthropic-style ``thinking`` budget kept
    below an output limit of ``tokens``, or thinking dropped when no budget Anthropic accepts
    (1024 and up) fits."""
    thinking = body.get("thinking")
    if isinstance(thinking, dict) and isinstance(thinking.get("budget_tokens"), int) and thinking["budget_tokens"] >= tokens:
        if tokens > 1024:  # Anthropic's smallest budget
            body["thinking"] = {**thinking, "budget_tokens": tokens - 1}
        else:
            body.pop("thinking")
    return body


def bearer_key(headers: Mapping[str, str]) -> str | None:
    """The key from ``Authorization: Bearer`` or ``x-api-key`` (Anthropic clients)."""
    get = headers.get
    auth = get("authorization")
    if auth:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return str(value.strip())
    key = get("x-api-key")
    return str(key) if key else None


__all__ = [
    "Codec",
    "Endpoint",
    "Passthrough",
    "Protocol",
    "Serves",
    "StreamContext",
    "StreamRenderer",
    "Tokenizer",
    "Turn",
    "UpstreamParser",
    "bearer_key",
    "thinking_below",
]
