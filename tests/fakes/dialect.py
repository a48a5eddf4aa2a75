"""The interface every fake dialect implements, and their registry.

A dialect knows its URL layout, how it authenticates, how its errors look, what turns its
reasoning on, and how it renders a ``Plan`` as a JSON answer or as SSE frames.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import orjson

from tests.fakes.answers import Plan, Tokens
from tests.fakes.cache import PromptCache

DIALECTS: dict[str, type[Dialect]] = {}


def dialect(name: str) -> Callable[[type[Dialect]], type[Dialect]]:
    def add(cls: type[Dialect]) -> type[Dialect]:
        cls.name = name
        DIALECTS[name] = cls
        return cls

    return add


def sse(data: Any, event: str | None = None) -> bytes:
    """One server-sent event frame."""
    payload = data if isinstance(data, bytes) else orjson.dumps(data)
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + payload + b"\n\n"


class Dialect(ABC):
    name: ClassVar[str]
    prefix: ClassVar[str]  # path of the base URL a client is configured with
    endpoint: ClassVar[str]  # appended to the prefix by clients
    # Whether the provider caches explicitly at ``cache_control`` breakpoints (tests/fakes/cache.py).
    explicit_cache: ClassVar[bool] = False
    cache_order_anthropic: ClassVar[bool] = False  # tools and system blocks come first

    def __init__(self) -> None:
        self.created = int(time.time())
        self.cache = PromptCache(anthropic=self.cache_order_anthropic) if self.explicit_cache else None

    # -- request side ----------------------------------------------------------------------

    def authorized(self, headers: Mapping[str, str], key: str) -> bool:
        return headers.get("authorization", "") == f"Bearer {key}"

    def check(self, body: dict[str, Any], headers: Mapping[str, str]) -> tuple[int, str] | None:
        """A request the real provider refuses: ``(status, message)``; None when acceptable."""
        return None

    @abstractmethod
    def thinking(self, body: dict[str, Any]) -> tuple[bool, int | None]:
        """Whether this request gets reasoning (per the provider's switch and default), and
        the reasoning budget in tokens, if the request set one."""

    def wants_stream(self, body: dict[str, Any]) -> bool:
        return bool(body.get("stream"))

    # -- answer side -----------------------------------------------------------------------

    @abstractmethod
    def error_body(self, status: int, message: str | None = None) -> dict[str, Any]:
        """The provider's error body for an HTTP status."""

    def error_in_200(self, status: int, message: str | None = None) -> dict[str, Any]:
        """An error the provider reports inside a 200 answer."""
        return self.error_body(status, message)

    def stream_error(self, status: int, message: str | None = None) -> bytes:
        """An error reported inside an already started stream."""
        return sse(self.error_body(status, message))

    @abstractmethod
    def answer(self, body: dict[str, Any], plan: Plan) -> tuple[dict[str, Any], Tokens | None]:
        """A whole JSON answer, and the usage it reports (None when it reports none)."""

    @abstractmethod
    def frames(self, body: dict[str, Any], plan: Plan) -> tuple[list[bytes], Tokens | None]:
        """A streamed answer as SSE frames, and the usage the stream reports."""

    def malformed_frame(self) -> bytes:
        return b'data: {"id": "broken", "choices": [{"delta": {"content": "x"\n\n'
