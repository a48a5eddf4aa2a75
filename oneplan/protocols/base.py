"""What every inbound protocol module provides. The server knows protocols only through this.

A protocol module exposes one ``Protocol`` instance named ``PROTOCOL``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from oneplan.errors import OneplanError
from oneplan.protocols.canonical import ChatRequest, ChatResult, Delta


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


class Protocol(ABC):
    name: str  # "openai_chat" | "anthropic" | "responses"

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
